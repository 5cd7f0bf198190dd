//! Outbox commit rate with group commit, against a raw SQLite insert of the
//! same bytes with the same settings (WAL, synchronous=FULL) in the same run;
//! then the latency from submitting an event to the start of its HTTP
//! request when PagerTree answers at once (printed as percentiles); then the
//! trade of `[delivery] commit_window`: a trickle of events through the Sink
//! into the outbox with windows 0, 2 ms and 10 ms in the same run, printing
//! transactions (fsyncs) per 1,000 events and the submit → committed latency.
//!
//! Run: `cargo bench --bench outbox` (about a minute).

#[path = "../tests/support/pagertree.rs"]
mod pagertree;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kapacitor_pagertree::alert::sink::{
    CommitError, Committer, spawn_sink, spawn_sink_with_window,
};
use kapacitor_pagertree::alert::{Event, FieldValue, Level, Route, Series, SeriesValue};
use kapacitor_pagertree::delivery::dispatch::{DispatchConfig, Dispatcher};
use kapacitor_pagertree::delivery::outbox::Outbox;
use kapacitor_pagertree::delivery::pagertree::Endpoints;

/// A typical event (~300 bytes of JSON).
fn event(i: usize, route: Arc<Route>) -> Event {
    let mut tags = BTreeMap::new();
    tags.insert("host".to_string(), format!("web{}", i % 100));
    Event {
        task: "cpu_alert".into(),
        node: "pagertree2".into(),
        id: format!("cpu:host=web{}", i % 100),
        message: format!("cpu:host=web{} is CRITICAL", i % 100),
        details: String::new(),
        time: 1_764_000_000_000_000_000 + i as i64,
        duration: 60_000_000_000,
        level: if i.is_multiple_of(2) {
            Level::CRITICAL
        } else {
            Level::OK
        },
        previous_level: Level::WARNING,
        recoverable: true,
        data: Series {
            name: "cpu".into(),
            tags,
            columns: vec!["time".into(), "usage_idle".into()],
            values: vec![vec![
                SeriesValue::Time(1_764_000_000_000_000_000),
                SeriesValue::Field(FieldValue::Float(3.5)),
            ]],
        },
        route,
    }
}

fn events(n: usize) -> Vec<Event> {
    let route = Arc::new(Route {
        url: Some("https://api.pagertree.com/integration/int_bench".into()),
        ..Route::default()
    });
    (0..n).map(|i| event(i, route.clone())).collect()
}

fn commit_rate(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(dir.path(), Endpoints::default(), 1000).unwrap();
    let mut g = c.benchmark_group("commit");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for group in [1usize, 100, 1000] {
        let evs = events(group);
        g.throughput(Throughput::Elements(group as u64));
        g.bench_function(format!("outbox_group_{group}"), |b| {
            b.iter(|| outbox.commit(&evs).unwrap())
        });
        // The baseline: the same body bytes inserted raw, same pragmas.
        let raw = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
        raw.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .unwrap();
        raw.execute_batch("PRAGMA synchronous=FULL; CREATE TABLE IF NOT EXISTS t (seq INTEGER PRIMARY KEY, body BLOB)")
            .unwrap();
        let bodies: Vec<Vec<u8>> = evs
            .iter()
            .map(kapacitor_pagertree::alert::json::alert_data_json)
            .collect();
        let mut raw = raw;
        g.bench_function(format!("raw_sqlite_group_{group}"), |b| {
            b.iter(|| {
                let tx = raw.transaction().unwrap();
                {
                    let mut st = tx
                        .prepare_cached("INSERT INTO t (body) VALUES (?1)")
                        .unwrap();
                    for body in &bodies {
                        st.execute([body]).unwrap();
                    }
                }
                tx.commit().unwrap();
            })
        });
    }
    g.finish();

    // Through the Sink: what the sessions see (group commit forms by itself).
    let mut g = c.benchmark_group("sink");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sink, _thread) = spawn_sink(outbox.clone(), 4096);
    let n = 5000;
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("submit_5000_then_barrier", |b| {
        b.iter_batched(
            || events(n),
            |evs| {
                rt.block_on(async {
                    for e in evs {
                        sink.submit(Box::new(e)).await.unwrap();
                    }
                    sink.barrier().await.unwrap();
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Latency to the start of the HTTP request (the fake's arrival time), one
/// event at a time, PagerTree answering at once: from the trigger (the
/// commit call, fsync included) and from the end of the commit.
fn latency(_c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let fake = pagertree::FakePagerTree::start().await;
        let url = fake.integration("int_latency", pagertree::Fmt::Kapacitor, None);
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), Endpoints::default(), 1000).unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let d =
            Dispatcher::spawn(outbox.clone(), DispatchConfig::default(), cancel.clone()).unwrap();
        let route = Arc::new(Route {
            url: Some(url),
            ..Route::default()
        });
        let mut from_trigger = Vec::new();
        let mut from_commit = Vec::new();
        for i in 0..1000 {
            let e = event(i, route.clone());
            let mut ob = outbox.clone();
            let (t0, t1) = tokio::task::spawn_blocking(move || {
                let t0 = Instant::now();
                ob.commit(std::slice::from_ref(&e)).unwrap();
                (t0, Instant::now())
            })
            .await
            .unwrap();
            assert!(fake.wait_accepted(i + 1, Duration::from_secs(10)).await);
            let at = fake.accepted()[i].at;
            from_trigger.push(at.duration_since(t0));
            from_commit.push(at.saturating_duration_since(t1));
        }
        for (what, lat) in [
            ("trigger (commit call)", &mut from_trigger),
            ("end of commit", &mut from_commit),
        ] {
            lat.sort();
            let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
            println!(
                "latency {what} → request start, {} events: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
                lat.len(),
                p(0.5),
                p(0.9),
                p(0.99),
                lat[lat.len() - 1]
            );
        }
        cancel.cancel();
        d.join().await;
    });
}

/// When a transaction ended, and the `time`s of its events.
type Commits = Arc<std::sync::Mutex<Vec<(Instant, Vec<i64>)>>>;

/// The outbox, recording when each group's transaction ended and its events.
struct Timed {
    outbox: Outbox,
    done: Commits,
}

impl Committer for Timed {
    fn commit(&mut self, events: &[Event]) -> Result<(), CommitError> {
        self.outbox.commit(events)?;
        let times = events.iter().map(|e| e.time).collect();
        self.done.lock().unwrap().push((Instant::now(), times));
        Ok(())
    }
}

/// A trickle (one event every 200 µs, like many sessions each sending now
/// and then) through the Sink into the outbox, per commit window: how many
/// transactions, and how long from submit until the event's commit ended.
fn commit_window(_c: &mut Criterion) {
    const N: usize = 2000;
    const GAP: Duration = Duration::from_micros(200);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for window in [
        Duration::ZERO,
        Duration::from_millis(2),
        Duration::from_millis(10),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), Endpoints::default(), 1000).unwrap();
        let done: Commits = Arc::default();
        let timed = Timed {
            outbox,
            done: done.clone(),
        };
        let (sink, thread) = spawn_sink_with_window(timed, 4096, window);
        let evs = events(N);
        let base = evs[0].time;
        let mut submitted = Vec::with_capacity(N);
        let start = Instant::now();
        for (i, e) in evs.into_iter().enumerate() {
            // Paced from the start, so a slow submit does not slow the trickle.
            let due = start + GAP * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            submitted.push(Instant::now());
            rt.block_on(sink.submit(Box::new(e))).unwrap();
        }
        rt.block_on(sink.barrier()).unwrap();
        let elapsed = start.elapsed();
        drop(sink);
        thread.join().unwrap();
        let done = done.lock().unwrap();
        let mut lat: Vec<Duration> = done
            .iter()
            .flat_map(|(at, times)| {
                times
                    .iter()
                    .map(|t| at.duration_since(submitted[(t - base) as usize]))
                    .collect::<Vec<_>>()
            })
            .collect();
        lat.sort();
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        println!(
            "commit_window {window:?}: {N} events, one per {GAP:?}: {} transactions ({:.0} per 1000 events), \
             {:.0} events/s; submit → committed p50 {:?}, p99 {:?}, max {:?}",
            done.len(),
            done.len() as f64 * 1000.0 / N as f64,
            N as f64 / elapsed.as_secs_f64(),
            p(0.5),
            p(0.99),
            lat[lat.len() - 1]
        );
    }
}

criterion_group!(benches, commit_rate, latency, commit_window);
criterion_main!(benches);
