//! The library side of `send-test` and `outbox list|retry|drop`, against the
//! fake PagerTree.

#[path = "support/pagertree.rs"]
mod pagertree;

#[path = "support/delivery_harness.rs"]
mod harness;

use std::time::Duration;

use harness::{Harness, config, event, fast, route_endpoint};
use kapacitor_pagertree::alert::{Format, Level};
use kapacitor_pagertree::delivery::cli;
use pagertree::{Action, FakePagerTree, Fmt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_creates_then_resolves_in_both_formats() {
    let fake = FakePagerTree::start().await;
    let kap = fake.integration("int_ODCWagoG9", Fmt::Kapacitor, None);
    let hook = fake.integration("int_webHOOK77", Fmt::Webhook, Some("tok-abcdef"));
    let cfg = config(&format!(
        "[delivery]\ndefault_endpoint = \"kap\"\n[endpoints.kap]\nurl = \"{kap}\"\n\
         [endpoints.hook]\nurl = \"{hook}\"\nformat = \"webhook\"\ntoken = \"tok-abcdef\"\n"
    ));
    let r = cli::send_test(&cfg, None, None, None).await.unwrap();
    assert!(r.ok(), "{r}");
    let text = r.to_string();
    assert!(
        text.contains("int_OD…") && !text.contains("ODCWagoG9"),
        "{text}"
    );
    let r = cli::send_test(&cfg, Some("hook"), None, None)
        .await
        .unwrap();
    assert!(r.ok(), "{r}");
    assert!(!r.to_string().contains("tok-abcdef"));
    let acc = fake.accepted();
    assert_eq!(
        acc.iter().map(|a| a.action).collect::<Vec<_>>(),
        [
            Action::Create,
            Action::Resolve,
            Action::Create,
            Action::Resolve
        ]
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert!(!fake.alert("int_ODCWagoG9", &acc[0].id).open);
    assert!(!fake.alert("int_webHOOK77", &acc[2].id).open);

    // A wrong token is reported as what the agent would do: park.
    fake.set_token("int_webHOOK77", Some("other"));
    let r = cli::send_test(&cfg, Some("hook"), None, Some(Format::Webhook))
        .await
        .unwrap();
    assert!(!r.ok());
    let text = r.to_string();
    assert!(
        text.contains("403") && text.contains("park") && text.contains("FAILED"),
        "{text}"
    );

    // An unreachable URL: no answer, transient.
    let r = cli::send_test(
        &cfg,
        None,
        Some("http://127.0.0.1:9/integration/int_nothere"),
        None,
    )
    .await
    .unwrap();
    assert!(!r.ok());
    assert!(r.steps.iter().all(|s| s.status.is_none()), "{r}");
    assert!(r.to_string().contains("int_no…"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_list_retry_drop() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_listTEST1", Fmt::Kapacitor, None);
    fake.force_status("int_listTEST1", Some(405));
    let cfg = config(&format!("[endpoints.ops]\nurl = \"{url}\"\n"));
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(dir.path(), &cfg, fast());
    h.submit(event("x", Level::CRITICAL, 0, route_endpoint("ops")))
        .await;
    h.submit(event("y", Level::CRITICAL, 0, route_endpoint("ops")))
        .await;
    assert!(fake.wait_seen(2, Duration::from_secs(10)).await);

    // The CLI opens the same database (as a second process would). The
    // parked state is written just after the answer: poll for it.
    let ob = cli::open_existing(dir.path(), &cfg).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let listing = loop {
        let listing = cli::list(&ob).unwrap();
        if listing.held.len() == 2 || std::time::Instant::now() > deadline {
            break listing;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(listing.held.len(), 2);
    assert_eq!(listing.pending, 2);
    let text = listing.to_string();
    assert!(
        text.contains("2 parked") && text.contains("405") && text.contains("int_li…"),
        "{text}"
    );
    assert!(!text.contains("int_listTEST1"), "{text}");

    let x = listing.held.iter().find(|e| e.alert_id == "x").unwrap().seq;
    let y = listing.held.iter().find(|e| e.alert_id == "y").unwrap().seq;
    let dropped = cli::drop_events(&ob, &cli::parse_selection(&[y.to_string()]).unwrap()).unwrap();
    assert_eq!(dropped.events.len(), 1);
    assert!(dropped.to_string().contains("1 event(s) dropped"));
    fake.force_status("int_listTEST1", None);
    let retried = cli::retry(
        &ob,
        &cli::parse_selection(&[x.to_string(), "999999".into()]).unwrap(),
    )
    .unwrap();
    let text = retried.to_string();
    assert!(
        text.contains("1 event(s) retried")
            && text.contains("no parked or dead-lettered event #999999"),
        "{text}"
    );
    assert!(fake.wait_accepted(1, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.accepted()
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>(),
        ["x"]
    );
    let listing = cli::list(&ob).unwrap();
    assert_eq!((listing.held.len(), listing.pending), (0, 0), "{listing}");
    h.stop().await;
}
