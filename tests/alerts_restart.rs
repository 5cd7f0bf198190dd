//! The alerts view after an agent restart: alerts open before it are listed
//! from the kept alert state (the outbox's `alert_state`), before any new
//! event; closed ones are not.

mod support;

#[path = "support/pagertree.rs"]
mod pagertree;

use std::process::Command;
use std::time::{Duration, Instant};

use pagertree::{FakePagerTree, Fmt};
use support::Agent;
use support::kapacitor::{Kapacitor, opt, point};

fn alerts(base: &str, json: bool) -> String {
    let mut c = Command::new(support::BIN);
    c.args(["alerts", "--url", base]);
    if json {
        c.args(["--format", "json"]);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn base(agent: &Agent) -> String {
    format!(
        "http://{}",
        std::fs::read_to_string(agent.data_dir().join("http.addr"))
            .unwrap()
            .trim()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_alerts_are_listed_again_after_a_restart() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_restartV1", Fmt::Kapacitor, None);
    let cfg = format!(
        "[kapacitor]\nhostname = \"h\"\ncluster_id = \"c\"\nserver_id = \"s\"\n\
         [delivery]\ndefault_endpoint = \"oncall\"\n[endpoints.oncall]\nurl = \"{url}\"\n"
    );
    let mut agent = Agent::builder()
        .config(&cfg)
        .arg("--http-addr")
        .arg("127.0.0.1:0")
        .start();
    let mut k = Kapacitor::connect(agent.stream_socket()).await;
    assert!(
        k.init(
            "cpu",
            "pagertree2",
            vec![
                opt("levelFrom").string("level"),
                opt("idFrom").string("host")
            ]
        )
        .await
        .success
    );
    let t0 = 1_700_000_000_000_000_000i64;
    for (host, level, dt) in [
        ("web01", "CRITICAL", 0),
        ("web02", "WARNING", 0),
        ("web02", "OK", 1),
    ] {
        k.point(
            point("cpu")
                .time(t0 + dt * 1_000_000_000)
                .tag("host", host)
                .tag("level", level)
                .field("v", 1.0),
        )
        .await;
    }
    let _ = k.snapshot().await;
    assert!(fake.wait_accepted(3, Duration::from_secs(20)).await);
    assert!(agent.terminate().success());
    drop(k);

    let dir = agent.kill_keep_dir();
    let agent = Agent::builder()
        .config(&cfg)
        .arg("--http-addr")
        .arg("127.0.0.1:0")
        .dir(dir)
        .start();
    let base = base(&agent);
    // No new event: the view comes from the kept state (the watcher marks
    // it delivered once it sees the empty outbox).
    let start = Instant::now();
    let v = loop {
        let v: serde_json::Value = serde_json::from_str(
            &tokio::task::spawn_blocking({
                let b = base.clone();
                move || alerts(&b, true)
            })
            .await
            .unwrap(),
        )
        .unwrap();
        if v["alerts"][0]["delivery"] == "delivered" {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let list = v["alerts"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["id"], "web01");
    assert_eq!(list[0]["level"], "CRITICAL");
    assert_eq!(list[0]["task"], "cpu");
    assert_eq!(list[0]["since"], "");
    assert_eq!(list[0]["last_event"], "2023-11-14T22:13:20Z");
    let table = tokio::task::spawn_blocking(move || alerts(&base, false))
        .await
        .unwrap();
    assert!(
        table.contains("web01") && table.contains("(before restart)"),
        "{table}"
    );
}
