//! The real agent, end to end: Kapacitor (the emulator) sends points to
//! `serve`, which pages a fake PagerTree; the agent is killed with SIGKILL
//! while requests are on the wire and started again on the same data
//! directory. Nothing that was committed (a snapshot answered) is lost, per
//! alert id the order holds, and the only repeats are of the requests that
//! were on the wire.

mod support;

#[path = "support/pagertree.rs"]
mod pagertree;

use std::time::{Duration, Instant};

use pagertree::{FakePagerTree, Fault, Fmt};
use support::Agent;
use support::kapacitor::{Kapacitor, opt, point};

const IDS: usize = 10;
const ROUNDS: usize = 12;
const LEVELS: [&str; 4] = ["CRITICAL", "OK", "WARNING", "OK"];

fn marker(i: usize, n: usize) -> String {
    format!("a{i}#{n} {}", LEVELS[n % 4])
}

async fn start(config: String, dir: Option<tempfile::TempDir>) -> Agent {
    tokio::task::spawn_blocking(move || {
        let b = Agent::builder().config(&config);
        match dir {
            Some(d) => b.dir(d).start(),
            None => b.start(),
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_agent_mid_delivery_then_restart_loses_nothing() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_agentKILL", Fmt::Kapacitor, None);
    // Every answer takes 0–400 ms, each a different time: requests are on
    // the wire most of the time and complete out of order, so per-id order
    // holds only if the agent never sends two events of one id at once.
    fake.set_outage(Some(Fault::Jitter(Duration::from_millis(400))));
    // concurrency 16 > 10 ids: the agent could put two events of one id on
    // the wire together, and only its per-id order stops it.
    let config = format!(
        "[delivery]\ndefault_endpoint = \"pt\"\nretry_initial = \"50ms\"\nretry_max = \"200ms\"\nconcurrency = 16\n\
         [endpoints.pt]\nurl = \"{url}\"\n"
    );
    let agent = start(config.clone(), None).await;
    let mut k = Kapacitor::connect(agent.stream_socket()).await;
    k.init_ok(
        "crash",
        "pagertree1",
        vec![
            opt("levelFrom").string("level"),
            opt("idFrom").string("alertID"),
            opt("messageFrom").string("message"),
        ],
    )
    .await;
    let t0 = 1_764_000_000_000_000_000i64;
    for n in 0..ROUNDS {
        for i in 0..IDS {
            k.point(
                point("cpu")
                    .time(t0 + n as i64 * 1_000_000_000)
                    .tag("alertID", &format!("a{i}"))
                    .tag("level", LEVELS[n % 4])
                    .string_field("message", &marker(i, n))
                    .field("v", n as f64),
            )
            .await;
        }
    }
    // The snapshot answer means every event before it is committed.
    let _ = k.snapshot().await;
    let committed = IDS * ROUNDS;
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.accepted_count() < 10 || fake.in_flight() == 0 {
        assert!(
            Instant::now() < deadline,
            "no delivery progress; log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let in_flight = fake.in_flight();
    let dir = tokio::task::spawn_blocking(move || agent.kill_keep_dir())
        .await
        .unwrap();
    drop(k);
    wait_quiet(&fake).await; // the requests on the wire land
    let before = fake.accepted_count();
    fake.set_outage(None);

    let agent = start(config, Some(dir)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: std::collections::HashSet<String> =
            fake.accepted().into_iter().map(|a| a.marker).collect();
        if got.len() >= committed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {committed} events delivered after the restart; log:\n{}",
            got.len(),
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_quiet(&fake).await;
    let accepted = fake.accepted();
    // Per id: in order before the kill and after the restart (the restart
    // re-sends what the killed agent had not recorded as delivered).
    for i in 0..IDS {
        let id = format!("a{i}");
        let want: Vec<String> = (0..ROUNDS).map(|n| marker(i, n)).collect();
        let of = |range: &[pagertree::Accepted]| pagertree::markers_of(range, &id);
        let (pre, post) = (of(&accepted[..before]), of(&accepted[before..]));
        pagertree::assert_order_across_restart(&id, &pre, &post, &want);
        let mut all = pre.clone();
        all.extend(post);
        assert_eq!(
            pagertree::first_occurrences(&all),
            want,
            "{id}: not every event arrived"
        );
    }
    let dups = accepted.len() - committed;
    eprintln!(
        "killed with {in_flight} on the wire and {before} accepted; {} accepted in all, {dups} repeats",
        accepted.len()
    );
    // Repeats are of what the killed agent had on the wire or had answered
    // but not yet recorded: at most `concurrency` (16) each.
    assert!(
        dups <= 2 * 16,
        "{dups} repeats but {in_flight} were on the wire"
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}

/// Waits until no request is on the wire (generous deadline).
async fn wait_quiet(fake: &FakePagerTree) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.in_flight() > 0 {
        assert!(Instant::now() < deadline, "requests still on the wire");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
