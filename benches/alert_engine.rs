//! The alert engine's throughput and memory, in process (issue: *Performance*).
//!
//! `cargo bench --bench alert_engine` (a plain timing main, no harness):
//!
//! 1. Throughput: three rules (`"value" > 90`, `> 80`, `> 70`) with
//!    `stateChangesOnly`, 10,000 groups, points cycling through the groups;
//!    points/s of the node next to a baseline in the same run (a bare loop
//!    that looks the point's group up in a `HashMap<Box<str>, u64>` and reads
//!    its `value` field — the least any implementation must do), and heap
//!    allocations per point counted by a counting allocator (0 expected when
//!    no event fires).
//! 2. Memory: RSS before and after 1,000,000 distinct groups have state, per group.
//!
//! `BENCH_ROUNDS` (default 300) sets how many rounds of 10,000 points are
//! timed; `BENCH_ONLY=throughput|mode2|memory` runs one part.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use kapacitor_pagertree::alert::Destinations;
use kapacitor_pagertree::alert::ServerInfo;
use kapacitor_pagertree::alert::handler::Output;
use kapacitor_pagertree::alert::node::{AlertFactory, AlertNode, NodeEnv};
use kapacitor_pagertree::alert::store::MemoryStore;
use kapacitor_pagertree::proto::option_value::Value;
use kapacitor_pagertree::proto::{
    EdgeType, InitRequest, Option as Opt, OptionValue, Point, ValueType,
};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const GROUPS: usize = 10_000;

fn s(v: &str) -> OptionValue {
    OptionValue {
        r#type: ValueType::String as i32,
        value: Some(Value::StringValue(v.into())),
    }
}

fn node() -> AlertNode {
    node_with(vec![
        ("crit", Some("\"value\" > 90")),
        ("warn", Some("\"value\" > 80")),
        ("info", Some("\"value\" > 70")),
        ("stateChangesOnly", None),
        ("dryRun", None),
    ])
}

fn node_with(options: Vec<(&str, Option<&str>)>) -> AlertNode {
    let env = NodeEnv::new(
        Destinations::default(),
        Arc::new(MemoryStore::new()),
        ServerInfo::default(),
    );
    let req = InitRequest {
        options: options
            .into_iter()
            .map(|(name, value)| Opt {
                name: name.into(),
                values: value.map(s).into_iter().collect(),
            })
            .collect(),
        task_id: "bench".into(),
        node_id: "alert1".into(),
    };
    AlertFactory::new(env)
        .build(EdgeType::Stream, &req)
        .expect("init")
}

fn point(group: usize, value: f64) -> Point {
    let host = format!("server{group:07}");
    let mut p = Point {
        time: 0,
        name: "cpu".into(),
        database: "telegraf".into(),
        retention_policy: "autogen".into(),
        group: format!("host={host}"),
        dimensions: vec!["host".into()],
        ..Default::default()
    };
    p.tags.insert("host".into(), host);
    p.fields_double.insert("value".into(), value);
    p
}

/// This thread's CPU time in seconds: on a shared machine the wall clock
/// also counts the time other processes held the core.
fn cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn throughput(rounds: usize) {
    // 30% of the groups sit at INFO, WARNING or CRITICAL; the rest are OK. After
    // the warm-up round every level is unchanged, so no event fires.
    let mut points: Vec<Point> = (0..GROUPS)
        .map(|g| point(g, ((g * 7) % 100) as f64 + 0.5))
        .collect();
    let mut node = node();
    let mut out = Output::default();
    let mut events = 0usize;
    for p in &mut points {
        node.evaluate_point(p, &mut out);
        events += out.events.len();
        out.events.clear();
        out.responses.clear();
    }
    println!("warm-up: {} groups, {events} events", node.group_count());

    let total = rounds * GROUPS;
    let allocs0 = ALLOCS.load(Ordering::Relaxed);
    let c0 = cpu_secs();
    let t0 = Instant::now();
    let mut t = 1i64;
    for _ in 0..rounds {
        for p in &mut points {
            p.time = t;
            node.evaluate_point(p, &mut out);
            if !out.is_empty() {
                events += out.events.len();
                out.events.clear();
                out.responses.clear();
            }
        }
        t += 1_000_000_000;
    }
    let node_secs = t0.elapsed().as_secs_f64();
    let node_cpu = cpu_secs() - c0;
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs0;

    // Baseline: group lookup + field read, nothing else.
    let mut map: HashMap<Box<str>, u64> = points
        .iter()
        .map(|p| (p.group.clone().into_boxed_str(), 0))
        .collect();
    let c0 = cpu_secs();
    let t0 = Instant::now();
    for _ in 0..rounds {
        for p in &points {
            let v = p.fields_double.get("value").copied().unwrap_or(0.0);
            if let Some(c) = map.get_mut(p.group.as_str()) {
                *c += (v > 90.0) as u64;
            }
        }
    }
    black_box(&map);
    let base_secs = t0.elapsed().as_secs_f64();
    let base_cpu = cpu_secs() - c0;

    println!(
        "node:     {total} points: wall {node_secs:.3}s = {:.0} points/s; thread CPU {node_cpu:.3}s = {:.0} points/s ({:.0} ns/point); {events} events, {:.4} allocations/point",
        total as f64 / node_secs,
        total as f64 / node_cpu,
        node_cpu * 1e9 / total as f64,
        allocs as f64 / total as f64
    );
    println!(
        "baseline: {total} lookups: wall {base_secs:.3}s = {:.0} points/s; thread CPU {base_cpu:.3}s = {:.0} points/s ({:.0} ns/point) [HashMap<Box<str>,_> get + field read]",
        total as f64 / base_secs,
        total as f64 / base_cpu,
        base_cpu * 1e9 / total as f64
    );
}

fn memory(groups: usize, non_ok_every: usize) {
    let mut node = node();
    let mut out = Output::default();
    let mut p = point(0, 10.0);
    let host = String::with_capacity(16);
    let mut host = host;
    let before = rss_bytes();
    for g in 0..groups {
        host.clear();
        let _ = write!(host, "server{g:07}");
        p.group.clear();
        p.group.push_str("host=");
        p.group.push_str(&host);
        if let Some(h) = p.tags.get_mut("host") {
            h.clone_from(&host);
        }
        let value = if non_ok_every > 0 && g % non_ok_every == 0 {
            95.0
        } else {
            10.0
        };
        p.fields_double.insert("value".into(), value);
        node.evaluate_point(&p, &mut out);
        out.events.clear();
        out.responses.clear();
    }
    let after = rss_bytes();
    println!(
        "memory:   {} groups ({}), RSS {:.1} MiB -> {:.1} MiB: {:.0} bytes/group",
        node.group_count(),
        if non_ok_every > 0 {
            format!("1 in {non_ok_every} non-OK")
        } else {
            "all OK".into()
        },
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after.saturating_sub(before)) as f64 / groups as f64
    );
    drop(node);
}

/// Mode 2 with every point an event (the udf benchmark's mirror-equivalent
/// work inside the node): level, id and message read from the point, the
/// default `{{ json . }}` details rendered, the point emitted.
fn mode2_events(points: usize) {
    let mut node = node_with(vec![
        ("levelFrom", Some("level")),
        ("idFrom", Some("alertID")),
        ("messageFrom", Some("message")),
        ("dryRun", None),
    ]);
    let mut ps: Vec<Point> = (0..1000)
        .map(|g| {
            let mut p = point(g, 95.0);
            p.tags.insert("level".into(), "CRITICAL".into());
            p.tags.insert("alertID".into(), format!("cpu:{g}"));
            p.fields_string
                .insert("message".into(), format!("cpu:{g} is CRITICAL"));
            p
        })
        .collect();
    let mut out = Output::default();
    let c0 = cpu_secs();
    let mut events = 0;
    for i in 0..points {
        let p = &mut ps[i % 1000];
        p.time = i as i64;
        node.evaluate_point(p, &mut out);
        events += out.events.len();
        out.events.clear();
        out.responses.clear();
    }
    let cpu = cpu_secs() - c0;
    println!(
        "mode 2:   {points} points, {events} events (default details rendered): thread CPU {cpu:.3}s = {:.0} events/s ({:.0} ns/event)",
        events as f64 / cpu,
        cpu * 1e9 / events.max(1) as f64
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(300);
    // BENCH_ONLY=throughput|mode2|memory runs one part (e.g. under perf).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only == part;
    if run("throughput") {
        throughput(rounds);
    }
    if run("mode2") {
        mode2_events(200_000);
    }
    if run("memory") {
        memory(1_000_000, 0);
        memory(1_000_000, 10);
    }
}
