//! A PagerTree outage of 60 seconds during a stream of state changes: every
//! event is delivered afterwards, in order per alert id, and retries back
//! off instead of hammering the service. The outage length is a parameter
//! of [`outage_run`]; this is the suite's only long test.

#[path = "support/pagertree.rs"]
mod pagertree;

#[path = "support/delivery_harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{Harness, assert_exact_order, config, event, fast, level_at, route_endpoint};
use pagertree::{FakePagerTree, Fault, Fmt};

/// Streams state changes of `ids` alerts every `every` for the whole
/// `outage` (first half: 503s, second half: connection resets), lifts it,
/// and checks that everything arrives in order within `recover`.
async fn outage_run(outage: Duration, ids: usize, every: Duration, recover: Duration) {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_outage", Fmt::Webhook, None);
    let cfg = config(&format!(
        "[endpoints.pt]\nurl = \"{url}\"\nformat = \"webhook\"\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut dcfg = fast();
    dcfg.retry_initial = Duration::from_millis(100);
    dcfg.retry_max = Duration::from_secs(2);
    let mut h = Harness::start(dir.path(), &cfg, dcfg);
    let r = route_endpoint("pt");

    // A few events go through before the outage.
    for i in 0..ids {
        h.submit(event(&format!("o{i}"), level_at(0), 0, r.clone()))
            .await;
    }
    assert!(fake.wait_accepted(ids, Duration::from_secs(10)).await);

    fake.set_outage(Some(Fault::Status(503)));
    let start = Instant::now();
    let mut n = 1;
    let mut switched = false;
    while start.elapsed() < outage {
        if !switched && start.elapsed() >= outage / 2 {
            fake.set_outage(Some(Fault::Reset));
            switched = true;
        }
        for i in 0..ids {
            h.submit(event(&format!("o{i}"), level_at(n), n, r.clone()))
                .await;
        }
        n += 1;
        tokio::time::sleep(every).await;
    }
    let during = fake.seen().len();
    fake.set_outage(None);
    let lifted = Instant::now();
    let total = h.submitted;
    assert!(
        fake.wait_accepted(total, recover).await,
        "accepted {} of {total}",
        fake.accepted_count()
    );
    let caught_up = lifted.elapsed();
    eprintln!(
        "outage {outage:?}: {total} events, {during} requests refused during the outage, \
         all delivered {caught_up:?} after it ended"
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_exact_order(&h.expected, &fake.per_id());
    // Backoff, not hammering: per id at most one attempt per retry_initial
    // doubling up to retry_max (2 s) — well under 2 attempts a second.
    let per_id_per_sec = during as f64 / ids as f64 / outage.as_secs_f64();
    assert!(
        per_id_per_sec < 2.0,
        "{per_id_per_sec} attempts per id per second during the outage"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_second_outage_during_a_stream_loses_and_reorders_nothing() {
    outage_run(
        Duration::from_secs(60),
        20,
        Duration::from_millis(100),
        Duration::from_secs(30),
    )
    .await;
}
