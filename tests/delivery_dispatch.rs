//! The delivery layer against a fake PagerTree that applies PagerTree's
//! rules: both formats, tokens, per-id order under faults, 429 Retry-After,
//! parking, dead letters, shutdown and restart, a 10,000-event burst.

#[path = "support/pagertree.rs"]
mod pagertree;

#[path = "support/delivery_harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{
    Harness, assert_exact_order, assert_first_order, config, event, fast, level_at, route_endpoint,
    route_url,
};
use kapacitor_pagertree::alert::{Level, Route};
use kapacitor_pagertree::delivery::outbox::{HeldKind, Selection};
use kapacitor_pagertree::delivery::pagertree::Endpoints;
use pagertree::{Action, FakePagerTree, Fault, Fmt};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_formats_are_accepted_with_pagertree_rules() {
    let fake = FakePagerTree::start().await;
    let kap = fake.integration("int_kapACITOR1", Fmt::Kapacitor, None);
    let hook = fake.integration("int_hookWEBHK2", Fmt::Webhook, Some("tok-s3cret"));
    let cfg = config(&format!(
        "[delivery]\ndefault_endpoint = \"kap\"\n\
         [endpoints.kap]\nurl = \"{kap}\"\n\
         [endpoints.hook]\nurl = \"{hook}\"\nformat = \"webhook\"\ntoken = \"tok-s3cret\"\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(dir.path(), &cfg, fast());
    let default_route = std::sync::Arc::new(Route::default());
    let hook_route = std::sync::Arc::new(Route {
        endpoint: Some("hook".into()),
        tags: vec!["host".into()],
        urgency: vec![(Level::WARNING, "high".into())],
        ..Route::default()
    });
    let mut sent_kapacitor = Vec::new();
    for i in 0..5 {
        for (n, level) in [Level::CRITICAL, Level::WARNING, Level::OK]
            .into_iter()
            .enumerate()
        {
            let e = event(&format!("k{i}"), level, n, default_route.clone());
            sent_kapacitor.push(e.clone());
            h.submit(e).await;
            h.submit(event(&format!("w{i}"), level, n, hook_route.clone()))
                .await;
        }
    }
    assert!(
        fake.wait_accepted(30, WAIT).await,
        "accepted {}",
        fake.accepted_count()
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_exact_order(&h.expected, &fake.per_id());
    let accepted = fake.accepted();
    // Kapacitor format: exactly the bytes of Kapacitor's alert.Data JSON.
    for e in &sent_kapacitor {
        let a = accepted.iter().find(|a| a.marker == e.message).unwrap();
        assert_eq!(a.raw, kapacitor_pagertree::alert::json::alert_data_json(e));
        assert_eq!(a.integration, "int_kapACITOR1");
        let want_action = if e.level == Level::OK {
            Action::Resolve
        } else {
            Action::Create
        };
        assert_eq!(a.action, want_action);
        assert_eq!(a.token, None);
    }
    let crit = accepted
        .iter()
        .find(|a| a.marker == "k0#0 CRITICAL")
        .unwrap();
    assert_eq!(crit.urgency.as_deref(), Some("critical"));
    // Webhook format: token header, urgency mapping, tags, dedup key.
    let w = accepted
        .iter()
        .find(|a| a.marker == "w0#1 WARNING")
        .unwrap();
    assert_eq!(w.token.as_deref(), Some("tok-s3cret"));
    assert_eq!(w.urgency.as_deref(), Some("high"));
    assert_eq!(w.body["tags"], serde_json::json!(["host:w0"]));
    assert_eq!(w.body["dedup_keys"], serde_json::json!(["w0"]));
    let c = accepted
        .iter()
        .find(|a| a.marker == "w0#0 CRITICAL")
        .unwrap();
    assert_eq!(c.urgency.as_deref(), Some("critical"));
    // The webhook's second create folded into the open alert; the resolve closed it.
    let rec = fake.alert("int_hookWEBHK2", "w0");
    assert_eq!(
        (rec.opened, rec.folded, rec.resolved, rec.open),
        (1, 1, 1, false)
    );
    let rec = fake.alert("int_kapACITOR1", "k0");
    assert!(
        !rec.open && rec.resolved == 1 && rec.orphan_resolves == 0,
        "{rec:?}"
    );
    h.stop().await;
    assert_eq!(
        kapacitor_pagertree::delivery::outbox::Outbox::open(dir.path(), Endpoints::default(), 1)
            .unwrap()
            .pending()
            .unwrap()
            .0,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_parks_and_holds_back_until_fixed_and_retried() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_ODCWagoG9", Fmt::Webhook, Some("right"));
    let cfg = config(&format!(
        "[endpoints.hook]\nurl = \"{url}\"\nformat = \"webhook\"\ntoken = \"wrong\"\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(dir.path(), &cfg, fast());
    let r = route_endpoint("hook");
    h.submit(event("a", Level::CRITICAL, 0, r.clone())).await;
    h.submit(event("a", Level::OK, 1, r.clone())).await;
    h.submit(event("b", Level::CRITICAL, 0, r.clone())).await;
    assert!(fake.wait_seen(2, WAIT).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Both heads were refused once; nothing retried at speed, nothing accepted.
    let seen = fake.seen();
    assert_eq!(
        seen.len(),
        2,
        "parked rows must not be retried fast: {seen:?}"
    );
    assert!(seen.iter().all(|s| s.status == Some(403)));
    assert_eq!(fake.accepted_count(), 0);
    let held = h.outbox.held().unwrap();
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(
        held.iter()
            .all(|x| x.kind == HeldKind::Parked && x.reason.contains("403")),
        "{held:?}"
    );
    assert!(
        held.iter()
            .all(|x| x.url_redacted.ends_with("/integration/int_OD…")),
        "{held:?}"
    );
    // Fix the config, then the operator retries: delivered, in order.
    h.outbox
        .set_endpoints(Endpoints::from_config(&config(&format!(
            "[endpoints.hook]\nurl = \"{url}\"\nformat = \"webhook\"\ntoken = \"right\"\n"
        ))));
    let retried = h.outbox.retry(&Selection::All).unwrap();
    assert_eq!(retried.len(), 2);
    assert!(
        fake.wait_accepted(3, WAIT).await,
        "accepted {}",
        fake.accepted_count()
    );
    assert_exact_order(&h.expected, &fake.per_id());
    assert!(
        fake.accepted()
            .iter()
            .all(|a| a.token.as_deref() == Some("right"))
    );
    assert!(h.outbox.held().unwrap().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_integration_parks_retries_slowly_and_drop_releases_the_id() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_disabled01", Fmt::Kapacitor, None);
    fake.force_status("int_disabled01", Some(405));
    let dir = tempfile::tempdir().unwrap();
    let mut dcfg = fast();
    dcfg.parked_retry = Duration::from_millis(400);
    let mut h = Harness::start(dir.path(), &config(""), dcfg);
    let r = route_url(&url);
    h.submit(event("a", Level::CRITICAL, 0, r.clone())).await;
    h.submit(event("a", Level::OK, 1, r.clone())).await;
    // Parked retries come every parked_retry, never faster.
    assert!(fake.wait_seen(3, WAIT).await);
    let seen = fake.seen();
    for pair in seen.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(380),
            "parked retry after {gap:?}"
        );
    }
    assert!(seen.iter().all(|s| s.status == Some(405)));
    // 402 is parked the same way (poll: the next parked retry answers 402).
    fake.force_status("int_disabled01", Some(402));
    let held = poll_held(&h, |held| held.len() == 1 && held[0].reason.contains("402")).await;
    assert_eq!(held.len(), 1, "only the head is attempted: {held:?}");
    assert!(held[0].reason.contains("402"), "{held:?}");
    // The operator drops the create: the resolve goes out (the integration is back).
    let dropped = h
        .outbox
        .drop_held(&Selection::Seqs(vec![held[0].seq]))
        .unwrap();
    assert_eq!(dropped.len(), 1);
    // Noticed within a tick: the resolve becomes the head and is parked in turn.
    let dropped_seq = dropped[0].seq;
    poll_held(&h, |held| held.len() == 1 && held[0].seq != dropped_seq).await;
    fake.force_status("int_disabled01", None);
    assert!(fake.wait_accepted(1, WAIT).await);
    let acc = fake.accepted();
    assert_eq!(acc.len(), 1);
    assert_eq!(acc[0].marker, "a#1 OK");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_in_seconds_and_dates_else_retry_max() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_ratelimit", Fmt::Kapacitor, None);
    let dir = tempfile::tempdir().unwrap();
    let mut dcfg = fast();
    // Above the Retry-After waits below: retry_max caps every wait.
    dcfg.retry_max = Duration::from_millis(3000);
    let mut h = Harness::start(dir.path(), &config(""), dcfg);
    let r = route_url(&url);

    // Seconds.
    fake.push_faults([Fault::RateLimit(Some("1".into()))]);
    h.submit(event("s", Level::CRITICAL, 0, r.clone())).await;
    assert!(fake.wait_accepted(1, WAIT).await);
    let gap = fake.accepted()[0].at.duration_since(fake.seen()[0].at);
    // Waiting less than 1 s (e.g. retry_max, 700 ms) fails here; a unit
    // misread as something longer fails `wait_accepted`. No upper bound:
    // latencies are for benches, not for a busy 2-core machine.
    assert!(
        gap >= Duration::from_millis(990),
        "Retry-After 1 honoured: {gap:?}"
    );

    // An HTTP date two seconds ahead (whole seconds: at least one second).
    let when = httpdate(std::time::SystemTime::now() + Duration::from_secs(2));
    fake.push_faults([Fault::RateLimit(Some(when))]);
    h.submit(event("d", Level::CRITICAL, 0, r.clone())).await;
    assert!(fake.wait_accepted(2, WAIT).await);
    let seen = fake.seen();
    let gap = fake.accepted()[1].at.duration_since(seen[2].at);
    assert!(
        gap >= Duration::from_millis(990),
        "Retry-After date honoured: {gap:?}"
    );

    // No Retry-After: wait retry_max.
    fake.push_faults([Fault::RateLimit(None)]);
    h.submit(event("n", Level::CRITICAL, 0, r.clone())).await;
    assert!(fake.wait_accepted(3, WAIT).await);
    let seen = fake.seen();
    let gap = fake.accepted()[2].at.duration_since(seen[4].at);
    assert!(
        gap >= Duration::from_millis(2990),
        "429 without Retry-After waits retry_max: {gap:?}"
    );
    assert_exact_order(&h.expected, &fake.per_id());
    h.stop().await;
}

/// Formats an IMF-fixdate (what `Retry-After` carries).
fn httpdate(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = kapacitor_pagertree::gofmt::civil_from_days(days);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][m as usize - 1];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_old_events_move_to_the_dead_letter_table_and_release_the_id() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_deadletter", Fmt::Kapacitor, None);
    let dir = tempfile::tempdir().unwrap();
    let mut dcfg = fast();
    dcfg.max_age = Duration::from_secs(2);
    let mut h = Harness::start(dir.path(), &config(""), dcfg);
    let r = route_url(&url);
    fake.set_outage(Some(Fault::Status(503)));
    let t0 = Instant::now();
    h.submit(event("a", Level::CRITICAL, 0, r.clone())).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    h.submit(event("a", Level::OK, 1, r.clone())).await;
    // The create ages out at ~2 s; the resolve (1.5 s old at 2.5 s) survives.
    tokio::time::sleep_until((t0 + Duration::from_millis(2500)).into()).await;
    fake.set_outage(None);
    assert!(fake.wait_accepted(1, WAIT).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acc = fake.accepted();
    assert_eq!(
        acc.iter().map(|a| a.marker.as_str()).collect::<Vec<_>>(),
        ["a#1 OK"]
    );
    let held = h.outbox.held().unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].kind, HeldKind::DeadLetter);
    assert!(
        held[0].reason.contains("max_age") && held[0].reason.contains("503"),
        "{}",
        held[0].reason
    );
    assert!(held[0].attempts >= 2);
    // Retrying the dead letter sends it again (the operator's choice).
    h.outbox.retry(&Selection::All).unwrap();
    assert!(fake.wait_accepted(2, WAIT).await);
    assert_eq!(fake.accepted()[1].marker, "a#0 CRITICAL");
    h.stop().await;
}

/// A small deterministic generator (no test-time randomness).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_id_order_holds_under_5xx_429_and_resets() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_faulty", Fmt::Webhook, None);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&format!(
        "[endpoints.w]\nurl = \"{url}\"\nformat = \"webhook\"\n"
    ));
    let mut h = Harness::start(dir.path(), &cfg, fast());
    let mut rng = Lcg(42);
    let faults: Vec<Fault> = (0..400)
        .map(|_| match rng.next() % 10 {
            0 | 1 => Fault::Status(500),
            2 => Fault::Status(503),
            3 => Fault::RateLimit(Some("0".into())),
            4 => Fault::Reset,
            _ => Fault::Delay(Duration::from_millis(rng.next() % 5)),
        })
        .collect();
    fake.push_faults(faults);
    let r = route_endpoint("w");
    for n in 0..12 {
        for i in 0..25 {
            h.submit(event(&format!("id{i}"), level_at(n), n, r.clone()))
                .await;
        }
    }
    assert!(
        fake.wait_accepted(300, Duration::from_secs(60)).await,
        "accepted {}",
        fake.accepted_count()
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_exact_order(&h.expected, &fake.per_id());
    for i in 0..25 {
        assert_eq!(
            fake.alert("int_faulty", &format!("id{i}")).orphan_resolves,
            0
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_time_out_and_are_retried_without_reordering() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_slow", Fmt::Webhook, None);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&format!(
        "[endpoints.w]\nurl = \"{url}\"\nformat = \"webhook\"\ntimeout = \"150ms\"\n"
    ));
    let mut h = Harness::start(dir.path(), &cfg, fast());
    let mut faults = Vec::new();
    for i in 0..30 {
        faults.push(if i % 3 == 0 {
            Fault::Delay(Duration::from_millis(400))
        } else {
            Fault::Delay(Duration::ZERO)
        });
    }
    fake.push_faults(faults);
    let r = route_endpoint("w");
    for n in 0..6 {
        for i in 0..5 {
            h.submit(event(&format!("s{i}"), level_at(n), n, r.clone()))
                .await;
        }
    }
    assert!(fake.wait_accepted(30, WAIT).await);
    // Late originals of timed-out requests may land after their retries.
    wait_quiet(&fake).await;
    assert_first_order(&h.expected, &fake.per_id());
    h.stop().await;
    assert_eq!(
        kapacitor_pagertree::delivery::outbox::Outbox::open(dir.path(), Endpoints::default(), 1)
            .unwrap()
            .pending()
            .unwrap()
            .0,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_10000_events_is_delivered_in_order() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_burst", Fmt::Kapacitor, None);
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(dir.path(), &config(""), fast());
    let r = route_url(&url);
    let t0 = Instant::now();
    for n in 0..10 {
        for i in 0..1000 {
            h.submit(event(&format!("b{i}"), level_at(n), n, r.clone()))
                .await;
        }
    }
    h.barrier().await;
    let committed = t0.elapsed();
    assert!(
        fake.wait_accepted(10_000, Duration::from_secs(120)).await,
        "accepted {}",
        fake.accepted_count()
    );
    let delivered = t0.elapsed();
    eprintln!("10,000 events: committed in {committed:?}, delivered in {delivered:?}");
    assert_eq!(
        fake.accepted_count(),
        10_000,
        "no duplicates without faults"
    );
    assert_exact_order(&h.expected, &fake.per_id());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_in_flight_requests_a_grace_then_a_restart_resends() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_shutdown", Fmt::Kapacitor, None);
    let dir = tempfile::tempdir().unwrap();
    let mut dcfg = fast();
    dcfg.shutdown_grace = Duration::from_millis(200);
    let cfg = config("");
    let mut h = Harness::start(dir.path(), &cfg, dcfg.clone());
    let r = route_url(&url);
    // The create is held 10 s: a shutdown that waited for it, instead of
    // giving it the 200 ms grace, would take about 10 s.
    fake.push_faults([Fault::Delay(Duration::from_secs(10))]);
    h.submit(event("g", Level::CRITICAL, 0, r.clone())).await;
    h.submit(event("g", Level::OK, 1, r.clone())).await;
    let deadline = Instant::now() + WAIT;
    while fake.in_flight() == 0 {
        assert!(Instant::now() < deadline, "the create never went out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    h.stop().await;
    let took = t.elapsed();
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    // Both rows are still in the outbox; a new agent sends them, in order.
    let mut h2 = Harness::start(dir.path(), &cfg, dcfg);
    h2.expected
        .insert("g".into(), vec!["g#0 CRITICAL".into(), "g#1 OK".into()]);
    assert!(fake.wait_accepted(2, WAIT).await);
    wait_quiet(&fake).await; // the slow original lands too
    let per_id = fake.per_id();
    assert_first_order(&h2.expected, &per_id);
    h2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_endpoint_parks_until_the_config_has_it() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_late", Fmt::Kapacitor, None);
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(dir.path(), &config(""), fast());
    h.submit(event("x", Level::CRITICAL, 0, route_endpoint("later")))
        .await;
    let held = poll_held(&h, |held| !held.is_empty()).await;
    assert_eq!(held.len(), 1);
    assert!(held[0].reason.contains("later"), "{held:?}");
    h.outbox
        .set_endpoints(Endpoints::from_config(&config(&format!(
            "[endpoints.later]\nurl = \"{url}\"\n"
        ))));
    h.outbox.retry(&Selection::All).unwrap();
    assert!(fake.wait_accepted(1, WAIT).await);
    assert_eq!(fake.violations(), Vec::<String>::new());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_the_memory_window_streams_through_in_order() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_window", Fmt::Kapacitor, None);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("");
    // Commit a backlog with no dispatcher running.
    let mut h = Harness::open(dir.path(), &cfg);
    let r = route_url(&url);
    for n in 0..40 {
        for i in 0..5 {
            h.submit(event(&format!("w{i}"), level_at(n), n, r.clone()))
                .await;
        }
    }
    h.barrier().await;
    let mut dcfg = fast();
    dcfg.window = 16;
    dcfg.tick = Duration::from_secs(3600); // refills must not wait for the tick
    h.start_dispatcher(dcfg);
    assert!(
        fake.wait_accepted(200, Duration::from_secs(20)).await,
        "accepted {}",
        fake.accepted_count()
    );
    assert_exact_order(&h.expected, &fake.per_id());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagertree_unreachable_then_back() {
    // A port with nothing listening: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/integration/int_comeback");
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(dir.path(), &config(""), fast());
    let r = route_url(&url);
    for n in 0..4 {
        h.submit(event("u", level_at(n), n, r.clone())).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        h.outbox.pending().unwrap().0,
        4,
        "nothing is lost while unreachable"
    );
    let fake = FakePagerTree::start_on(&format!("127.0.0.1:{port}")).await;
    fake.integration("int_comeback", Fmt::Kapacitor, None);
    assert!(fake.wait_accepted(4, WAIT).await);
    assert_exact_order(&h.expected, &fake.per_id());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_event_ages_out_to_the_dead_letter_table_and_releases_its_id() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_parkage", Fmt::Kapacitor, None);
    fake.force_status("int_parkage", Some(403));
    let dir = tempfile::tempdir().unwrap();
    let mut dcfg = fast();
    dcfg.max_age = Duration::from_millis(1500);
    dcfg.parked_retry = Duration::from_secs(600);
    let mut h = Harness::start(dir.path(), &config(""), dcfg);
    let r = route_url(&url);
    h.submit(event("p", Level::CRITICAL, 0, r.clone())).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    h.submit(event("p", Level::OK, 1, r.clone())).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.force_status("int_parkage", None);
    // The create is dead-lettered at 1.5 s (not at the 10-minute parked
    // retry); then the resolve goes out.
    assert!(fake.wait_accepted(1, Duration::from_secs(5)).await);
    assert_eq!(fake.accepted()[0].marker, "p#1 OK");
    // The move is written by the dispatcher's batched writer, which may land
    // just after the id is released in memory: wait for it, never sleep.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let held = loop {
        let held = h.outbox.held().unwrap();
        if held.first().is_some_and(|e| e.kind == HeldKind::DeadLetter)
            || std::time::Instant::now() > deadline
        {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].kind, HeldKind::DeadLetter);
    assert!(held[0].reason.contains("403"), "{}", held[0].reason);
    h.stop().await;
}

/// Waits until no request is on the wire (generous deadline).
async fn wait_quiet(fake: &FakePagerTree) {
    let deadline = Instant::now() + WAIT;
    while fake.in_flight() > 0 {
        assert!(Instant::now() < deadline, "requests still on the wire");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the parked/dead-lettered rows until `done` holds (generous
/// deadline), instead of reading them after a sleep.
async fn poll_held(
    h: &Harness,
    done: impl Fn(&[kapacitor_pagertree::delivery::outbox::HeldEvent]) -> bool,
) -> Vec<kapacitor_pagertree::delivery::outbox::HeldEvent> {
    let deadline = Instant::now() + WAIT;
    loop {
        let held = h.outbox.held().unwrap();
        if done(&held) {
            return held;
        }
        assert!(
            Instant::now() < deadline,
            "held rows never became right: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
