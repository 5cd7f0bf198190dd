//! `kill -9` of a process running the outbox and dispatcher while requests
//! are on the wire, then a restart on the same data directory: nothing that
//! was committed is lost, per-id order holds, the only duplicates are of
//! requests that were in flight, and the alert state is the last committed
//! event of each id.
//!
//! The "agent" is this test binary run again as a child (`child_agent`, an
//! ignored test the parent runs with `--ignored`; it does nothing unless
//! `KPT_CRASH_CHILD` is set): it commits events in batches and prints
//! `COMMITTED <n>` after each barrier, so the parent knows exactly which
//! events were durable when it sent SIGKILL.
//!
//! So that both checks can fail: the fake answers after a different delay
//! for each request (`Fault::Jitter`), so a dispatcher that let two events of
//! one id travel together would deliver them out of order; and each id's
//! level cycle is shifted by its index, so whatever round the kill lands in,
//! most ids have an open (non-OK) alert whose state must survive.

#[path = "support/pagertree.rs"]
mod pagertree;

#[path = "support/delivery_harness.rs"]
mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Harness, config, event, fast, level_at, route_url};
use pagertree::{FakePagerTree, Fault, Fmt};

const IDS: usize = 20;
const ROUNDS: usize = 25;
const BATCH: usize = 20;

fn events(url: &str) -> Vec<kapacitor_pagertree::alert::Event> {
    let r = route_url(url);
    let mut out = Vec::new();
    for n in 0..ROUNDS {
        for i in 0..IDS {
            // Shifted per id: every round leaves 12 of the 20 ids non-OK.
            out.push(event(&format!("c{i}"), level_at(n + i), n, r.clone()));
        }
    }
    out
}

/// The child: commits every event (printing progress), then waits to be
/// killed. Not a test of its own: the kill -9 test runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of kill_9_with_requests_in_flight_then_restart_loses_nothing, which runs it"]
async fn child_agent() {
    let (Ok(dir), Ok(url)) = (
        std::env::var("KPT_CRASH_CHILD"),
        std::env::var("KPT_CRASH_URL"),
    ) else {
        return; // not running as the child
    };
    let mut h = Harness::start(std::path::Path::new(&dir), &config(""), fast());
    let mut n = 0;
    for chunk in events(&url).chunks(BATCH) {
        for e in chunk {
            h.submit(e.clone()).await;
        }
        h.barrier().await;
        n += chunk.len();
        println!("COMMITTED {n}");
        // Keep committing while deliveries go on, so the kill lands mid-stream.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_requests_in_flight_then_restart_loses_nothing() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_crash", Fmt::Kapacitor, None);
    // Every request takes 0–300 ms, each a different time: at any moment up
    // to `concurrency` are on the wire, and they complete out of order.
    fake.set_outage(Some(Fault::Jitter(Duration::from_millis(300))));
    let dir = tempfile::tempdir().unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_agent",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KPT_CRASH_CHILD", dir.path())
        .env("KPT_CRASH_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("COMMITTED ") {
                let _ = tx.send(n.trim().parse::<usize>().unwrap_or(0));
            }
        }
    });
    // Wait until a good part is committed and requests are on the wire.
    let mut committed = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed < 200 || fake.accepted_count() < 30 || fake.in_flight() == 0 {
        assert!(
            Instant::now() < deadline,
            "child made no progress (committed {committed})"
        );
        if let Ok(Some(n)) = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await {
            committed = n;
        }
    }
    let in_flight_at_kill = fake.in_flight();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    while let Ok(n) = rx.try_recv() {
        committed = committed.max(n);
    }
    // Requests that were on the wire still complete on the server side.
    wait_quiet(&fake).await;
    let before_restart: std::collections::HashSet<String> =
        fake.accepted().into_iter().map(|a| a.marker).collect();
    let accepted_before_restart = before_restart.len();
    let accepted_before_restart_total = fake.accepted_count();
    fake.set_outage(None);

    // Restart on the same data directory.
    let all = events(&url);
    let mut h = Harness::start(dir.path(), &config(""), fast());
    let stored = h.outbox.pending().unwrap().0 as usize;
    eprintln!(
        "killed with {committed} committed, {in_flight_at_kill} in flight, {accepted_before_restart} accepted; \
         {stored} rows pending after restart"
    );
    // Everything committed arrives (events after the last COMMITTED line may
    // have been committed too).
    let want: Vec<String> = all[..committed].iter().map(|e| e.message.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: std::collections::HashSet<String> =
            fake.accepted().into_iter().map(|a| a.marker).collect();
        if want.iter().all(|m| got.contains(m)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed events missing after restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_quiet(&fake).await; // stragglers land
    let accepted = fake.accepted();
    // Per id: arrival order is the submission order, before and after the
    // restart (repeats only of what the killed process had not recorded).
    let split = accepted_before_restart_total;
    for i in 0..IDS {
        let id = format!("c{i}");
        let of = |range: &[pagertree::Accepted]| pagertree::markers_of(range, &id);
        let expected: Vec<String> = all
            .iter()
            .filter(|e| e.id == id)
            .map(|e| e.message.clone())
            .collect();
        pagertree::assert_order_across_restart(
            &id,
            &of(&accepted[..split]),
            &of(&accepted[split..]),
            &expected,
        );
    }
    // Duplicates only of what was in flight at the kill.
    let dups = accepted.len()
        - pagertree::first_occurrences(&accepted.iter().map(|a| &a.marker).collect::<Vec<_>>())
            .len();
    eprintln!("{} accepted, {dups} duplicates", accepted.len());
    // A repeat is of an event the killed process had sent: on the wire, or
    // answered but not yet recorded as delivered (at most `concurrency`
    // each). Nothing sent after the restart repeats.
    let mut seen = std::collections::HashSet::new();
    for a in &accepted {
        if !seen.insert(a.marker.clone()) {
            assert!(
                before_restart.contains(&a.marker),
                "{} repeated but was first sent after the restart",
                a.marker
            );
        }
    }
    assert!(
        dups <= 2 * fast().concurrency,
        "{dups} duplicates, {in_flight_at_kill} were in flight at the kill"
    );
    h.stop().await;
    // Nothing left behind.
    let left = kapacitor_pagertree::delivery::outbox::Outbox::open(
        dir.path(),
        kapacitor_pagertree::delivery::pagertree::Endpoints::default(),
        1,
    )
    .unwrap()
    .pending()
    .unwrap()
    .0;
    assert_eq!(left, 0);
    // Exactly the events that were committed reached PagerTree (nothing
    // uncommitted can), so their count gives the committed prefix, and the
    // alert state must be the last committed event per id.
    let unique = accepted
        .iter()
        .map(|a| a.marker.clone())
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert!(unique >= committed);
    let mut want_state = std::collections::HashMap::new();
    for e in &all[..unique] {
        if e.level == kapacitor_pagertree::alert::Level::OK {
            want_state.remove(&e.id);
        } else {
            want_state.insert(e.id.clone(), (e.level, e.time));
        }
    }
    // The kill landed with alerts open: the comparison below has teeth.
    assert!(
        want_state.len() >= IDS / 2,
        "only {} open alerts at the kill",
        want_state.len()
    );
    h = Harness::open(dir.path(), &config(""));
    let st =
        kapacitor_pagertree::alert::store::AlertStateStore::load(&h.outbox, "task", "pagertree1")
            .unwrap();
    let got: std::collections::HashMap<_, _> = st
        .into_iter()
        .map(|(k, v)| (k, (v.level, v.time)))
        .collect();
    assert_eq!(got, want_state);
    h.stop().await;
}

/// Waits until no request is on the wire (generous deadline).
async fn wait_quiet(fake: &FakePagerTree) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.in_flight() > 0 {
        assert!(Instant::now() < deadline, "requests still on the wire");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
