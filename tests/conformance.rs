//! Every conformance case through the real agent, exactly as conformance
//! README §8 states: the real binary, one Kapacitor-emulator connection per
//! task on the stream or batch socket, the options as `InitRequest`, the
//! input as `Point`/`BeginBatch`…`EndBatch` frames, a `SnapshotRequest`
//! barrier before switching connections, and the events compared as the
//! fake PagerTree received them (kapacitor format, byte for byte).
//!
//! The restart control restarts the agent process: every session ends
//! normally (half-close, wait for EOF), the agent gets SIGTERM, a new agent
//! starts on the same data directory, and every session opens again with
//! Init and a `RestoreRequest` carrying the snapshot taken on that task's
//! connection before its first input item (stale on purpose). The alert
//! state must come from the agent's durable store, never from the snapshot.

mod support;

#[path = "support/conformance.rs"]
#[macro_use]
mod conformance;
#[path = "support/pagertree.rs"]
mod pagertree;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use conformance::{Case, EmittedCollector, Input, Observed, RunResult};
use kapacitor_pagertree::proto::{Response, response};
use pagertree::{FakePagerTree, Fmt};
use support::Agent;
use support::kapacitor::{Kapacitor, Opt};

const NODE: &str = "pagertree2";

/// The integration name of a task: one integration per task, so each
/// received event is attributed to the task that sent it.
fn integration_of(task: &str) -> String {
    let clean: String = task
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("int_{clean}")
}

fn start_agent(case: &Case, dir: Option<tempfile::TempDir>) -> Agent {
    let mut toml = String::new();
    if let Some(info) = &case.server_info {
        toml.push_str(&conformance::kapacitor_toml(info));
    }
    // Short backoff: a case never waits on a retry it does not exercise.
    toml.push_str("[delivery]\nretry_initial = \"50ms\"\nretry_max = \"1s\"\n");
    let mut b = Agent::builder().config(&toml);
    if let Some(dir) = dir {
        b = b.dir(dir);
    }
    b.start()
}

fn messages(rs: Vec<Response>) -> Vec<response::Message> {
    rs.into_iter()
        .map(|r| {
            r.message
                .expect("the agent wrote a Response with no message")
        })
        .collect()
}

struct Sessions {
    conns: HashMap<String, Kapacitor>,
    emitted: HashMap<String, EmittedCollector>,
}

async fn open_sessions(
    agent: &Agent,
    case: &Case,
    fake: &FakePagerTree,
    stale: &HashMap<String, Vec<u8>>,
) -> Sessions {
    let socket = if case.edge_batch {
        agent.batch_socket()
    } else {
        agent.stream_socket()
    };
    let mut conns = HashMap::new();
    for t in &case.tasks {
        let mut k = Kapacitor::connect(socket).await;
        let url = fake.url(&integration_of(&t.task));
        let opts: Vec<Opt> = conformance::init_options(&t.alert, &url)
            .into_iter()
            .map(Opt)
            .collect();
        let init = k.init(&t.task, NODE, opts).await;
        assert!(init.success, "{}: Init refused: {}", case.name, init.error);
        if let Some(snap) = stale.get(&t.task) {
            let r = k.restore(snap.clone()).await;
            assert!(r.success, "{}: Restore refused: {}", case.name, r.error);
        }
        conns.insert(t.task.clone(), k);
    }
    Sessions {
        conns,
        emitted: HashMap::new(),
    }
}

impl Sessions {
    /// The SnapshotRequest barrier on one connection: everything sent before
    /// it is processed and its events committed.
    async fn barrier(&mut self, task: &str, result: &mut RunResult) -> Vec<u8> {
        let k = self.conns.get_mut(task).expect("task connection");
        let (before, snap) = k.snapshot().await;
        self.emitted
            .entry(task.to_string())
            .or_default()
            .take(before, result);
        snap
    }

    async fn close_all(mut self, result: &mut RunResult) {
        for (task, k) in self.conns.drain() {
            let rest = messages(k.close().await);
            self.emitted.entry(task).or_default().take(rest, result);
        }
    }
}

async fn run(case: &Case) -> RunResult {
    let fake = FakePagerTree::start().await;
    for t in &case.tasks {
        fake.integration(&integration_of(&t.task), Fmt::Kapacitor, None);
    }
    let mut agent = start_agent(case, None);
    let mut result = RunResult::default();
    let mut stale: HashMap<String, Vec<u8>> = HashMap::new();
    let mut sessions = open_sessions(&agent, case, &fake, &HashMap::new()).await;
    // A snapshot of every connection before its first input: what a
    // minutes-old Kapacitor snapshot would hand back after the restart.
    for t in &case.tasks {
        let snap = sessions.barrier(&t.task, &mut result).await;
        stale.insert(t.task.clone(), snap);
    }
    let mut last: Option<String> = None;
    for input in &case.inputs {
        let task = match input {
            Input::Restart => {
                if let Some(prev) = last.take() {
                    sessions.barrier(&prev, &mut result).await;
                }
                sessions.close_all(&mut result).await;
                let status = agent.terminate();
                assert!(status.success(), "{}: agent exit {status}", case.name);
                let dir = agent.kill_keep_dir();
                agent = start_agent(case, Some(dir));
                sessions = open_sessions(&agent, case, &fake, &stale).await;
                continue;
            }
            Input::Point { task, .. } | Input::Batch { task, .. } => task.clone(),
        };
        if let Some(prev) = &last
            && prev != &task
        {
            sessions.barrier(prev, &mut result).await;
        }
        let k = sessions.conns.get(&task).expect("task connection");
        match input {
            Input::Point { point, .. } => k.point(point.clone()).await,
            Input::Batch {
                begin, points, end, ..
            } => {
                k.begin_batch(begin.clone()).await;
                for p in points {
                    k.point(p.clone()).await;
                }
                k.end_batch(end.clone()).await;
            }
            Input::Restart => unreachable!(),
        }
        last = Some(task);
    }
    if let Some(prev) = last.take() {
        sessions.barrier(&prev, &mut result).await;
    }
    sessions.close_all(&mut result).await;

    // Everything is committed; wait for delivery, then a moment more so an
    // unexpected extra event would be seen too.
    let expected = case.raw["expected_events"].as_array().map_or(0, Vec::len);
    assert!(
        fake.wait_accepted(expected, Duration::from_secs(30)).await,
        "{}: PagerTree received {} of {expected} events; agent log:\n{}",
        case.name,
        fake.accepted_count(),
        agent.log()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let violations = fake.violations();
    assert!(
        violations.is_empty(),
        "{}: PagerTree rules broken: {violations:?}",
        case.name
    );

    let by_integration: BTreeMap<String, String> = case
        .tasks
        .iter()
        .map(|t| (integration_of(&t.task), t.task.clone()))
        .collect();
    for a in fake.accepted() {
        let task = by_integration
            .get(&a.integration)
            .unwrap_or_else(|| panic!("event for unknown integration {}", a.integration))
            .clone();
        result.events.push(Observed { task, body: a.raw });
    }
    result
}

/// Runs a case on its own runtime (each test is independent).
fn run_blocking(case: &Case) -> RunResult {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(case))
}

conformance_tests!(run_blocking);
