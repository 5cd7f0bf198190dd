//! The dispatcher's log (issue #5): one info line per event sent, with the
//! alert id, level, endpoint name, redacted address, and the outcome with
//! PagerTree's status — and never an integration id in full.

mod support;

#[path = "support/pagertree.rs"]
mod pagertree;

use std::time::{Duration, Instant};

use pagertree::{FakePagerTree, Fmt};
use support::Agent;
use support::kapacitor::{Kapacitor, opt, point};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_send_is_one_info_line_without_secrets() {
    let fake = FakePagerTree::start().await;
    let good = fake.integration("int_logGOOD7x", Fmt::Kapacitor, None);
    let refused = fake.integration("int_logREFUSED", Fmt::Kapacitor, None);
    fake.force_status("int_logREFUSED", Some(403));
    let cfg = format!(
        "[kapacitor]\nhostname = \"h\"\ncluster_id = \"c\"\nserver_id = \"s\"\n\
         [delivery]\ndefault_endpoint = \"oncall\"\n\
         [endpoints.oncall]\nurl = \"{good}\"\n[endpoints.legal]\nurl = \"{refused}\"\n"
    );
    let agent = Agent::builder().config(&cfg).start();

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
    let mut k2 = Kapacitor::connect(agent.stream_socket()).await;
    assert!(
        k2.init(
            "cpu",
            "pagertree3",
            vec![
                opt("levelFrom").string("level"),
                opt("idFrom").string("host"),
                opt("endpoint").string("legal"),
            ]
        )
        .await
        .success
    );
    let p = |host: &str| {
        point("cpu")
            .time(1_700_000_000_000_000_000)
            .tag("host", host)
            .tag("level", "CRITICAL")
            .field("v", 1.0)
    };
    k.point(p("web01")).await;
    k2.point(p("db07")).await;
    let _ = k.snapshot().await;
    let _ = k2.snapshot().await;

    let start = Instant::now();
    let delivered = |log: &str| {
        log.lines()
            .find(|l| l.contains("event delivered") && l.contains("web01"))
            .map(str::to_owned)
    };
    let parked = |log: &str| {
        log.lines()
            .find(|l| l.contains("event parked") && l.contains("db07"))
            .map(str::to_owned)
    };
    while delivered(&agent.log()).is_none() || parked(&agent.log()).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no dispatch lines:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = agent.log();
    let d = delivered(&log).unwrap();
    assert!(d.contains(" INFO "), "{d}");
    for want in [
        "id=web01",
        "alert_level=CRITICAL",
        "endpoint=\"oncall\"",
        "outcome=\"delivered\"",
        "status=200",
        "attempt=1",
        "int_lo…",
    ] {
        assert!(d.contains(want), "{want} in {d}");
    }
    let pk = parked(&log).unwrap();
    assert!(pk.contains(" INFO "), "{pk}");
    for want in [
        "id=db07",
        "endpoint=\"legal\"",
        "outcome=\"parked\"",
        "status=403",
    ] {
        assert!(pk.contains(want), "{want} in {pk}");
    }
    for secret in ["int_logGOOD7x", "int_logREFUSED"] {
        assert!(!log.contains(secret), "{secret} leaked:\n{log}");
    }
}
