//! The delivery stack as `serve` starts it from a config: events handed to
//! the sink reach PagerTree, the alert state is durable, shutdown keeps what
//! was not delivered for the next start.

#[path = "support/pagertree.rs"]
mod pagertree;

#[path = "support/delivery_harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{config, event};
use kapacitor_pagertree::alert::{Level, Route};
use kapacitor_pagertree::delivery::service::Delivery;
use kapacitor_pagertree::ops::metrics::{OutcomeLabel, metrics};
use pagertree::{FakePagerTree, Fault, Fmt};
use tokio_util::sync::CancellationToken;

/// Waits until `check` holds: the dispatcher counts an outcome after the
/// answer reached it, so a metric may lag what the fake PagerTree saw.
async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_deliver_shutdown_restart() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_service1", Fmt::Webhook, Some("t0ken"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&format!(
        "[server]\ndata_dir = \"{}\"\n[delivery]\ndefault_endpoint = \"pt\"\nshutdown_grace = \"100ms\"\n\
         retry_initial = \"10ms\"\nretry_max = \"50ms\"\n\
         [endpoints.pt]\nurl = \"{url}\"\nformat = \"webhook\"\ntoken = \"t0ken\"\n",
        dir.path().display()
    ));
    let shutdown = CancellationToken::new();
    let d = Delivery::start(&cfg, &shutdown).unwrap();
    let sink = d.sink();
    let route = Arc::new(Route::default());
    sink.submit(Box::new(event("s1", Level::CRITICAL, 0, route.clone())))
        .await
        .unwrap();
    sink.submit(Box::new(event("s2", Level::WARNING, 0, route.clone())))
        .await
        .unwrap();
    sink.barrier().await.unwrap();
    assert!(fake.wait_accepted(2, Duration::from_secs(10)).await);
    let st = d.store().load("task", "pagertree1").unwrap();
    assert_eq!(st.len(), 2);
    assert!(d.outbox().is_ready());
    let m = metrics();
    let delivered = || {
        m.deliveries_total
            .get_or_create(&OutcomeLabel {
                outcome: "delivered",
            })
            .get()
    };
    wait_until("two deliveries counted", || delivered() >= 2).await;

    // PagerTree goes away; SIGTERM; the event stays in the outbox.
    fake.set_outage(Some(Fault::Status(503)));
    sink.submit(Box::new(event("s1", Level::OK, 1, route.clone())))
        .await
        .unwrap();
    sink.barrier().await.unwrap();
    wait_until("a retry counted", || m.retries_total.get() >= 1).await;
    assert_eq!(m.degraded.get(), 0);
    drop(sink);
    shutdown.cancel();
    let left = d.shutdown(Duration::from_secs(30)).await;
    assert!(left.is_empty(), "uncommitted events: {left:?}");

    fake.set_outage(None);
    let shutdown = CancellationToken::new();
    let d = Delivery::start(&cfg, &shutdown).unwrap();
    assert!(fake.wait_accepted(3, Duration::from_secs(10)).await);
    assert_eq!(fake.accepted()[2].marker, "s1#1 OK");
    let st = d.store().load("task", "pagertree1").unwrap();
    assert_eq!(st.keys().collect::<Vec<_>>(), ["s2"]);
    wait_until("an empty outbox counted", || m.outbox_depth.get() == 0).await;
    assert_eq!(m.parked.get(), 0);
    let text = kapacitor_pagertree::ops::metrics::encode();
    assert!(
        text.contains("kapacitor_pagertree_deliveries_total{outcome=\"delivered\"}"),
        "{text}"
    );
    shutdown.cancel();
    let left = d.shutdown(Duration::from_secs(30)).await;
    assert!(left.is_empty(), "uncommitted events: {left:?}");
}
