//! Drives the delivery layer through the library: an outbox in a temporary
//! data directory, the committer thread behind a `Sink`, the dispatcher,
//! and events whose message is unique so each one can be followed to the
//! fake PagerTree.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kapacitor_pagertree::alert::sink::{Sink, spawn_sink};
use kapacitor_pagertree::alert::{Event, Level, Route, Series};
use kapacitor_pagertree::delivery::dispatch::{DispatchConfig, Dispatcher};
use kapacitor_pagertree::delivery::outbox::Outbox;
use kapacitor_pagertree::delivery::pagertree::Endpoints;
use kapacitor_pagertree::ops::config::Config;
use tokio_util::sync::CancellationToken;

/// Retries fast so fault tests take seconds, not minutes.
pub fn fast() -> DispatchConfig {
    DispatchConfig {
        concurrency: 16,
        max_age: Duration::from_secs(3600),
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        parked_retry: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(1),
        window: 50_000,
        tick: Duration::from_millis(100),
    }
}

pub fn config(toml: &str) -> Config {
    Config::from_toml(toml, "test.toml").expect("test config")
}

pub fn route_url(url: &str) -> Arc<Route> {
    Arc::new(Route {
        url: Some(url.to_string()),
        ..Route::default()
    })
}

pub fn route_endpoint(name: &str) -> Arc<Route> {
    Arc::new(Route {
        endpoint: Some(name.to_string()),
        ..Route::default()
    })
}

/// An event whose message `"<id>#<n> <LEVEL>"` identifies it.
pub fn event(id: &str, level: Level, n: usize, route: Arc<Route>) -> Event {
    let mut tags = std::collections::BTreeMap::new();
    tags.insert("host".to_string(), id.to_string());
    Event {
        task: "task".into(),
        node: "pagertree1".into(),
        id: id.to_string(),
        message: marker(id, n, level),
        details: format!("details of {id} #{n}"),
        time: 1_764_000_000_000_000_000 + n as i64 * 1_000_000_000,
        duration: n as i64 * 1_000_000_000,
        level,
        previous_level: Level::OK,
        recoverable: true,
        data: Series {
            name: "cpu".into(),
            tags,
            columns: vec!["time".into()],
            values: vec![],
        },
        route,
    }
}

pub fn marker(id: &str, n: usize, level: Level) -> String {
    format!("{id}#{n} {level}")
}

/// Levels cycling through a plausible alert life: creates and resolves.
pub fn level_at(n: usize) -> Level {
    [
        Level::WARNING,
        Level::CRITICAL,
        Level::OK,
        Level::INFO,
        Level::OK,
    ][n % 5]
}

pub struct Harness {
    pub outbox: Outbox,
    pub sink: Option<Sink>,
    commit_thread: Option<kapacitor_pagertree::alert::sink::CommitterHandle>,
    dispatcher: Option<Dispatcher>,
    pub cancel: CancellationToken,
    /// The markers submitted per id, in order.
    pub expected: HashMap<String, Vec<String>>,
    pub submitted: usize,
}

impl Harness {
    /// Opens the outbox under `dir` and starts the committer and dispatcher.
    pub fn start(dir: &Path, config: &Config, dcfg: DispatchConfig) -> Harness {
        let mut h = Harness::open(dir, config);
        h.start_dispatcher(dcfg);
        h
    }

    /// Opens the outbox and the committer only.
    pub fn open(dir: &Path, config: &Config) -> Harness {
        let outbox =
            Outbox::open(dir, Endpoints::from_config(config), 10_000).expect("open outbox");
        let (sink, commit_thread) = spawn_sink(outbox.clone(), 4096);
        Harness {
            outbox,
            sink: Some(sink),
            commit_thread: Some(commit_thread),
            dispatcher: None,
            cancel: CancellationToken::new(),
            expected: HashMap::new(),
            submitted: 0,
        }
    }

    pub fn start_dispatcher(&mut self, dcfg: DispatchConfig) {
        self.cancel = CancellationToken::new();
        self.dispatcher = Some(
            Dispatcher::spawn(self.outbox.clone(), dcfg, self.cancel.clone()).expect("dispatcher"),
        );
    }

    pub async fn submit(&mut self, e: Event) {
        self.expected
            .entry(e.id.clone())
            .or_default()
            .push(e.message.clone());
        self.submitted += 1;
        self.sink
            .as_ref()
            .expect("sink open")
            .submit(Box::new(e))
            .await
            .expect("submit");
    }

    pub async fn barrier(&self) {
        self.sink
            .as_ref()
            .expect("sink open")
            .barrier()
            .await
            .expect("barrier");
    }

    /// Stops the dispatcher (after its shutdown grace).
    pub async fn stop_dispatcher(&mut self) {
        self.cancel.cancel();
        if let Some(d) = self.dispatcher.take() {
            d.join().await;
        }
    }

    /// Stops everything, committing what was submitted.
    pub async fn stop(mut self) {
        self.stop_dispatcher().await;
        self.sink.take();
        if let Some(t) = self.commit_thread.take() {
            tokio::task::spawn_blocking(move || t.join())
                .await
                .expect("join")
                .expect("commit thread");
        }
    }
}

/// Asserts that every id's accepted markers are exactly what was submitted,
/// allowing only consecutive repeats (at-least-once).
pub fn assert_exact_order(
    expected: &HashMap<String, Vec<String>>,
    got: &HashMap<String, Vec<String>>,
) {
    for (id, want) in expected {
        let have = got.get(id).cloned().unwrap_or_default();
        let collapsed = crate::pagertree::collapse(&have);
        assert_eq!(&collapsed, want, "id {id}: accepted {have:?}");
    }
    assert_eq!(
        expected.len(),
        got.len(),
        "ids accepted that were never submitted"
    );
}

/// Asserts that every submitted event arrived and that the first arrival of
/// each is in submission order per id (late originals of timed-out requests
/// may repeat afterwards).
pub fn assert_first_order(
    expected: &HashMap<String, Vec<String>>,
    got: &HashMap<String, Vec<String>>,
) {
    for (id, want) in expected {
        let have = got.get(id).cloned().unwrap_or_default();
        assert_eq!(
            &crate::pagertree::first_occurrences(&have),
            want,
            "id {id}: accepted {have:?}"
        );
    }
}
