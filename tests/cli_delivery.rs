//! `send-test` and `outbox list|retry|drop` through the real binary, and
//! `serve` delivering to a PagerTree stand-in (tests/support/pagertree.rs):
//! a refused event is parked, visible in `outbox list` and `alerts`, and
//! goes out after `outbox retry`.

mod support;

#[path = "support/pagertree.rs"]
mod pagertree;

use std::time::{Duration, Instant};

use pagertree::{FakePagerTree, Fmt};
use support::Agent;
use support::kapacitor::{Kapacitor, level_and_id, opt, point};
use support::{bin, run, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_creates_and_resolves_a_test_alert() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_sendTEST1", Fmt::Kapacitor, None);
    let o = run(vec!["send-test".into(), "--url".into(), url.clone()]).await;
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("OK: PagerTree accepted the create and the resolve"),
        "{out}"
    );
    assert!(
        !out.contains("int_sendTEST1"),
        "the integration id is redacted: {out}"
    );
    let accepted = fake.accepted();
    assert_eq!(accepted.len(), 2, "{out}");
    assert_eq!(accepted[0].action, pagertree::Action::Create);
    assert_eq!(accepted[1].action, pagertree::Action::Resolve);
    assert_eq!(accepted[0].id, accepted[1].id);
    assert!(accepted[0].id.starts_with("kapacitor-pagertree-send-test-"));

    // A refusing integration: exit 1 and the verdict the agent would take.
    fake.force_status("int_sendTEST1", Some(403));
    let o = run(vec!["send-test".into(), "--url".into(), url]).await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("403") && out.contains("park") && out.contains("FAILED"),
        "{out}"
    );

    // No endpoint at all: a usage error.
    let o = run(vec!["send-test".into()]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("send-test needs an endpoint"),
        "{}",
        text(&o)
    );
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_events_are_parked_listed_retried_and_dropped() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_oncallX1", Fmt::Kapacitor, None);
    fake.force_status("int_oncallX1", Some(403));
    let config = format!(
        "[delivery]\ndefault_endpoint = \"oncall\"\nretry_initial = \"100ms\"\n[endpoints.oncall]\nurl = \"{url}\"\n"
    );
    let agent = Agent::builder()
        .config(&config)
        .arg("--http-addr")
        .arg("127.0.0.1:0")
        .start();
    let data = agent.data_dir().display().to_string();
    let base = agent.http_base();

    let mut k = Kapacitor::connect(agent.stream_socket()).await;
    k.init_ok("cpu_alert", "pagertree2", level_and_id()).await;
    let t0 = 1_700_000_000_000_000_000i64;
    k.point(
        point("cpu")
            .time(t0)
            .tag("alertID", "web01")
            .tag("level", "CRITICAL")
            .field("v", 99.0),
    )
    .await;
    k.point(
        point("cpu")
            .time(t0)
            .tag("alertID", "web02")
            .tag("level", "WARNING")
            .field("v", 85.0),
    )
    .await;
    let _ = k.snapshot().await;

    // Both are refused and parked.
    let outbox = |action: &[&str]| {
        let mut args = vec!["outbox".to_string()];
        args.extend(action.iter().map(|s| s.to_string()));
        args.extend([
            "--data-dir".to_string(),
            data.clone(),
            "--config".to_string(),
        ]);
        args
    };
    let cfg_path = agent
        .data_dir()
        .parent()
        .unwrap()
        .join("agent.toml")
        .display()
        .to_string();
    let list = |cfg: String| {
        let mut a = outbox(&["list"]);
        a.push(cfg);
        a
    };
    let mut listing = String::new();
    wait_for("two parked events", async || {
        let o = run(list(cfg_path.clone())).await;
        listing = text(&o);
        o.status.success() && listing.contains("2 parked")
    })
    .await;
    assert!(
        listing.contains("web01") && listing.contains("web02"),
        "{listing}"
    );
    assert!(listing.contains("403"), "the reason is shown: {listing}");
    assert!(!listing.contains("int_oncallX1"), "redacted: {listing}");

    // `alerts` shows them parked, with PagerTree's answer.
    wait_for("alerts to show parked", async || {
        let o = run(vec![
            "alerts".into(),
            "--url".into(),
            base.clone(),
            "--format".into(),
            "json".into(),
        ])
        .await;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["alerts"]
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|x| x["delivery"] == "parked"))
    })
    .await;

    // The number of web02's event, from the listing's table.
    let seq_of = |listing: &str, id: &str| -> String {
        let line = listing
            .lines()
            .find(|l| l.starts_with("parked") && l.contains(id))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    let web02 = seq_of(&listing, "web02");
    let mut drop_args = outbox(&["drop", &web02]);
    drop_args.push(cfg_path.clone());
    let o = run(drop_args).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 event(s) dropped"), "{}", text(&o));

    // PagerTree is fixed; retry everything left: web01 goes out.
    fake.force_status("int_oncallX1", None);
    let mut retry_args = outbox(&["retry", "all"]);
    retry_args.push(cfg_path.clone());
    let o = run(retry_args).await;
    assert!(
        o.status.success() && text(&o).contains("1 event(s) retried"),
        "{}",
        text(&o)
    );
    assert!(
        fake.wait_accepted(1, Duration::from_secs(30)).await,
        "web01 was not delivered after retry"
    );
    let accepted = fake.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].id, "web01");

    wait_for("alerts to show web01 delivered", async || {
        let o = run(vec![
            "alerts".into(),
            "--url".into(),
            base.clone(),
            "--format".into(),
            "json".into(),
        ])
        .await;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["id"] == "web01" && x["delivery"] == "delivered")
        })
    })
    .await;
    let o = run(list(cfg_path.clone())).await;
    assert!(
        text(&o).contains("0 event(s) waiting") && text(&o).contains("0 parked"),
        "{}",
        text(&o)
    );

    // Bad selections are usage errors.
    let mut bad = outbox(&["retry", "first"]);
    bad.push(cfg_path);
    let o = run(bad).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    k.close().await;
}

#[test]
fn outbox_without_an_outbox_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["outbox", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no outbox at"),
        "{}",
        text(&o)
    );
}

/// The promise: `KAPACITOR_PAGERTREE_URL=… kapacitor-pagertree serve`
/// works with no file — a Mode 1 node with no url() or endpoint() pages
/// the `default` endpoint, and the resolve follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_variable_alone_delivers() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_envONLY1", Fmt::Kapacitor, None);
    let agent = Agent::builder()
        .env("KAPACITOR_PAGERTREE_URL", &url)
        .start();
    let mut k = Kapacitor::connect(agent.stream_socket()).await;
    k.init_ok(
        "cpu",
        "pagertree2",
        vec![
            opt("crit").string("\"value\" > 90"),
            opt("id").string("cpu:{{ index .Tags \"host\" }}"),
        ],
    )
    .await;
    let t0 = 1_700_000_000_000_000_000i64;
    k.point(
        point("cpu")
            .time(t0)
            .dimension("host", "web01")
            .field("value", 95.0),
    )
    .await;
    k.point(
        point("cpu")
            .time(t0 + 60_000_000_000)
            .dimension("host", "web01")
            .field("value", 10.0),
    )
    .await;
    let _ = k.snapshot().await;
    assert!(
        fake.wait_accepted(2, Duration::from_secs(30)).await,
        "{}",
        agent.log()
    );
    let accepted = fake.accepted();
    assert_eq!(accepted[0].id, "cpu:web01");
    assert_eq!(accepted[0].action, pagertree::Action::Create);
    assert_eq!(accepted[0].level.as_deref(), Some("CRITICAL"));
    assert_eq!(accepted[1].action, pagertree::Action::Resolve);
    assert!(
        !agent.log().contains("int_envONLY1"),
        "the integration id never reaches the log"
    );
    k.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_sends_show_retrying_then_delivered() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_flaky1", Fmt::Kapacitor, None);
    fake.set_outage(Some(pagertree::Fault::Status(503)));
    let config = format!(
        "[delivery]\ndefault_endpoint = \"oncall\"\nretry_initial = \"100ms\"\nretry_max = \"200ms\"\n[endpoints.oncall]\nurl = \"{url}\"\n"
    );
    let agent = Agent::builder()
        .config(&config)
        .arg("--http-addr")
        .arg("127.0.0.1:0")
        .start();
    let base = agent.http_base();
    let mut k = Kapacitor::connect(agent.stream_socket()).await;
    k.init_ok("cpu_alert", "pagertree2", level_and_id()).await;
    k.point(
        point("cpu")
            .time(1_700_000_000_000_000_000)
            .tag("alertID", "web01")
            .tag("level", "CRITICAL")
            .field("v", 99.0),
    )
    .await;
    let _ = k.snapshot().await;
    let delivery = async || {
        let o = run(vec![
            "alerts".into(),
            "--url".into(),
            base.clone(),
            "--format".into(),
            "json".into(),
        ])
        .await;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["alerts"][0].clone()
    };
    // 503s: the alert's event is retrying, with PagerTree's answer.
    wait_for("alerts to show retrying", async || {
        let a = delivery().await;
        a["delivery"] == "retrying"
            && a["delivery_detail"]
                .as_str()
                .is_some_and(|d| d.contains("503"))
    })
    .await;
    let o = run(vec!["alerts".into(), "--url".into(), base.clone()]).await;
    let table = text(&o);
    assert!(
        table.contains("retrying (") && table.contains("503"),
        "{table}"
    );
    // PagerTree is back: delivered.
    fake.set_outage(None);
    wait_for("alerts to show delivered", async || {
        delivery().await["delivery"] == "delivered"
    })
    .await;
    k.close().await;
}
