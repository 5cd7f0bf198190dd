//! Session marks for restart safety (docs/architecture.md, *Restarts*), through
//! the real binary and read with `kapacitor-pagertree tasks`: a successful
//! Init marks (task, node, edge); Kapacitor closing or aborting the session
//! clears the mark; a refused Init never marks; the agent's own SIGTERM
//! keeps the marks of the sessions still open.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::Agent;
use support::kapacitor::{Kapacitor, opt};

fn tasks(data: &std::path::Path) -> String {
    let o = Command::new(support::BIN)
        .args(["tasks", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Runs `tasks` (off the runtime's threads) until `check` holds.
async fn wait_tasks(data: &std::path::Path, what: &str, check: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let d = data.to_path_buf();
        let out = tokio::task::spawn_blocking(move || tasks(&d))
            .await
            .unwrap();
        if check(&out) {
            return out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ok_opts() -> Vec<support::kapacitor::Opt> {
    vec![opt("levelFrom").string("level")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_follow_kapacitor_and_survive_the_agents_own_shutdown() {
    // An endpoint is required for an Init to succeed; nothing is sent here.
    let mut agent = Agent::builder()
        .config("[delivery]\ndefault_endpoint = \"oncall\"\n[endpoints.oncall]\nurl = \"http://127.0.0.1:9/integration/int_marks\"\n")
        .start();
    let data = agent.data_dir();

    let mut kept = Kapacitor::connect(agent.stream_socket()).await;
    assert!(
        kept.init("task_kept", "pagertree2", ok_opts())
            .await
            .success
    );
    let mut batch = Kapacitor::connect(agent.batch_socket()).await;
    assert!(
        batch
            .init("task_batch", "pagertreeBatch3", ok_opts())
            .await
            .success
    );
    let mut closed = Kapacitor::connect(agent.stream_socket()).await;
    assert!(
        closed
            .init("task_closed", "pagertree2", ok_opts())
            .await
            .success
    );
    let mut aborted = Kapacitor::connect(agent.stream_socket()).await;
    assert!(
        aborted
            .init("task_aborted", "pagertree2", ok_opts())
            .await
            .success
    );
    let mut refused = Kapacitor::connect(agent.stream_socket()).await;
    let r = refused
        .init(
            "task_refused",
            "pagertree2",
            vec![opt("noSuchOption").string("x")],
        )
        .await;
    assert!(!r.success);

    let out = wait_tasks(&data, "four marks", |t| t.starts_with("4 ")).await;
    for t in ["task_kept", "task_batch", "task_closed", "task_aborted"] {
        assert!(out.contains(t), "{out}");
    }
    assert!(!out.contains("task_refused"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("task_batch") && l.contains("batch")),
        "{out}"
    );

    // Kapacitor ends two sessions: a half-close and an abort (reset).
    closed.close().await;
    aborted.abort();
    drop(aborted);
    refused.close().await;
    let out = wait_tasks(&data, "two cleared", |t| t.starts_with("2 ")).await;
    assert!(
        !out.contains("task_closed") && !out.contains("task_aborted"),
        "{out}"
    );

    // The agent itself stops: the open sessions stay marked.
    let status = agent.terminate();
    assert!(status.success(), "{}", agent.log());
    drop((kept, batch));
    let out = tasks(&data);
    assert!(out.starts_with("2 "), "{out}");
    assert!(
        out.contains("task_kept") && out.contains("task_batch"),
        "{out}"
    );

    let log = agent.log();
    assert!(log.contains("session mark cleared"), "{log}");
    assert!(log.contains("session mark kept for revival"), "{log}");
    assert!(log.contains("how_ended=\"shutdown\""), "{log}");
}

#[test]
fn tasks_without_an_outbox_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(support::BIN)
        .args(["tasks", "--data-dir"])
        .arg(dir.path().join("nothing"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no outbox"));
}
