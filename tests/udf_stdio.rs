//! `kapacitor-pagertree stdio`, the child of Kapacitor's `prog =` mode: a
//! relay to the running agent, driven by the Kapacitor emulator over the
//! child's stdin and stdout.

mod support;

use std::process::Stdio;
use std::time::Duration;

use kapacitor_pagertree::proto::response;
use std::os::fd::OwnedFd;
use std::process::{Child, Command};
use support::kapacitor::{Kapacitor, error_text, opt, point};
use support::{Agent, BIN};
use tokio::net::unix::pipe;

fn relay(args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("stdio")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The child's stdin and stdout as async pipes.
fn pipes(child: &mut Child) -> (pipe::Receiver, pipe::Sender) {
    let stdin = pipe::Sender::from_owned_fd(OwnedFd::from(child.stdin.take().unwrap())).unwrap();
    let stdout =
        pipe::Receiver::from_owned_fd(OwnedFd::from(child.stdout.take().unwrap())).unwrap();
    (stdout, stdin)
}

fn over_child(child: &mut Child) -> Kapacitor {
    let (stdout, stdin) = pipes(child);
    Kapacitor::over_io(stdout, stdin, Duration::from_secs(10))
}

async fn exit_within(child: &mut Child, d: Duration) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < d, "the relay did not exit within {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_conversation_through_the_relay() {
    let agent = Agent::start();
    let data_dir = agent.data_dir();
    let mut child = relay(&["--data-dir", data_dir.to_str().unwrap()]);
    let mut k = over_child(&mut child);

    assert!(k.info().await.options.contains_key("levelFrom"));
    k.init_ok(
        "relayed",
        "pagertree2",
        vec![
            opt("levelFrom").string("level"),
            opt("idFrom").string("alertID"),
            opt("dryRun"),
        ],
    )
    .await;
    assert!(k.restore(b"old".to_vec()).await.success);
    k.point(
        point("cpu")
            .tag("alertID", "relay-1")
            .tag("level", "CRITICAL"),
    )
    .await;
    k.keepalive().await;
    let (emitted, snap) = k.snapshot().await;
    assert!(!snap.is_empty());
    assert!(
        emitted
            .iter()
            .any(|m| matches!(m, response::Message::Point(p) if p.tags["alertID"] == "relay-1")),
        "{emitted:?}"
    );
    assert!(
        agent.log().contains("\"id\":\"relay-1\""),
        "{}",
        agent.log()
    );

    // Kapacitor closes stdin: the relay half-closes, relays the rest, exits 0.
    let rest = k.close().await;
    assert_eq!(error_text(&rest), None);
    let status = exit_within(&mut child, Duration::from_secs(5)).await;
    assert!(status.success(), "{status}");
    // All state stayed in the agent: the session was the agent's own.
    assert!(
        agent.wait_log("task=relayed", Duration::from_secs(5))
            || agent.log().contains("task=\"relayed\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_through_the_batch_relay_exits_on_eof() {
    let agent = Agent::start();
    let mut child = relay(&[
        "--batch",
        "--socket",
        agent.batch_socket().to_str().unwrap(),
    ]);
    let mut k = over_child(&mut child);
    let info = k.info().await;
    assert_eq!(
        info.wants,
        kapacitor_pagertree::proto::EdgeType::Batch as i32
    );
    assert!(k.close().await.is_empty());
    let status = exit_within(&mut child, Duration::from_secs(5)).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_exits_when_the_agent_closes_first() {
    let agent = Agent::start();
    let mut child = relay(&["--socket", agent.stream_socket().to_str().unwrap()]);
    let (mut stdout, mut stdin) = pipes(&mut child);
    // An empty frame: the agent answers ErrorResponse and closes; stdin stays open.
    tokio::io::AsyncWriteExt::write_all(&mut stdin, &[0])
        .await
        .unwrap();
    let status = exit_within(&mut child, Duration::from_secs(5)).await;
    assert!(status.success(), "{status}");
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut out)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out).contains("no message set"));
    drop(stdin);
}

#[tokio::test]
async fn clear_error_without_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = relay(&["--data-dir", dir.path().to_str().unwrap()]);
    drop(child.stdin.take());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "nothing may reach Kapacitor's stdout"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no kapacitor-pagertree agent is listening on"),
        "{err}"
    );
    assert!(err.contains("stream.sock"), "{err}");
}
