//! Task revival after an agent restart (docs/architecture.md, *Restarts*).
//!
//! Kapacitor never reconnects a broken UDF session: every task whose session
//! the previous agent process held stops with an error and stays stopped
//! until it is disabled and enabled again. The session marks say which
//! tasks those are. For every task still marked when the agent starts —
//! one revival per task, however many UDF nodes it has — this module polls
//! Kapacitor's API (`GET /kapacitor/v1/tasks/ID`) until either:
//!
//! - an Init for the task arrives: Kapacitor restarted it by itself (it
//!   restarted too, or a human re-enabled it): nothing is touched;
//! - the task shows `enabled` and not `executing` (Kapacitor notices a broken
//!   session only at its next write, up to `timeout/2` after the restart, so
//!   it usually still shows `executing: true` for seconds): then
//!   `PATCH {"status":"disabled"}` and `PATCH {"status":"enabled"}` — a PATCH
//!   to `enabled` on an enabled task changes nothing.
//!
//! Never touched: a task that is `disabled` (a human disabled it; its mark
//! is dropped), a task that no longer exists (404; its mark is dropped).
//! Tasks that ended normally or whose Init was refused are never marked, so
//! they never get here. Kapacitor may be down (it restarts too): failed calls
//! are retried with backoff, bounded by `revive_for`; then the agent gives
//! up loudly (an ERROR naming the task and the command to run) and keeps the
//! mark, so the next start tries again.
//!
//! Every step is one log line with the task id; `/metrics` counts the
//! outcomes (`revivals_total{outcome, reason}`); the state of each task is
//! recorded through [`MarkStore::record`] for `kapacitor-pagertree tasks`.
//!
//! The module talks to Kapacitor and to the marks through two small traits
//! ([`TaskApi`], [`MarkStore`]) so that its rules are tested here against a
//! deterministic fake with paused time.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ops::now_ns;

/// What Kapacitor says about a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found {
        /// `"status": "enabled"` (else `"disabled"`).
        enabled: bool,
        executing: bool,
        /// Kapacitor's last error for the task (`""` when none).
        error: String,
    },
    /// 404: the task does not exist (any more).
    NotFound,
}

/// Why a call to Kapacitor's API did not get an answer the revival can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiFailure {
    /// Worth trying again: connection refused or reset, timeout, 5xx.
    #[error("{0}")]
    Unreachable(String),
    /// Trying again will not help: the credentials are refused (401/403)
    /// or Kapacitor does not understand the request (other 4xx).
    #[error("{0}")]
    Refused(String),
}

/// Kapacitor's task API, as revival uses it.
pub trait TaskApi: Send + Sync + 'static {
    /// `GET /kapacitor/v1/tasks/ID`.
    fn get_task(&self, id: &str) -> impl Future<Output = Result<Lookup, ApiFailure>> + Send;
    /// `PATCH /kapacitor/v1/tasks/ID` `{"status": "enabled"|"disabled"}`;
    /// the task as Kapacitor shows it after the change.
    fn set_status(
        &self,
        id: &str,
        enabled: bool,
    ) -> impl Future<Output = Result<Lookup, ApiFailure>> + Send;
}

/// Where a task's revival stands (shown by `kapacitor-pagertree tasks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revival {
    /// Not done yet; `detail` says what it waits for.
    Waiting { detail: String },
    /// An Init arrived before anything was done: Kapacitor restarted it.
    Reconnected,
    /// Disabled and enabled again by this agent.
    Revived,
    /// Not touched, on purpose; the mark is dropped.
    Skipped { why: String },
    /// Given up after `revive_for` (or at once, when Kapacitor refused the
    /// agent's credentials); the mark is kept.
    GaveUp { why: String },
    /// `revive_tasks = false`: not revived; the mark is kept.
    Off,
}

impl Revival {
    /// The state's name as stored and shown.
    pub fn name(&self) -> &'static str {
        match self {
            Revival::Waiting { .. } => "waiting",
            Revival::Reconnected => "reconnected",
            Revival::Revived => "revived",
            Revival::Skipped { .. } => "skipped",
            Revival::GaveUp { .. } => "gave up",
            Revival::Off => "off",
        }
    }

    /// What else is known (why skipped, why given up, what it waits for).
    pub fn detail(&self) -> &str {
        match self {
            Revival::Waiting { detail } => detail,
            Revival::Skipped { why } | Revival::GaveUp { why } => why,
            Revival::Reconnected => "an Init arrived before anything was done: not touched",
            Revival::Revived => "disabled and enabled again",
            Revival::Off => "revive_tasks = false; the mark is kept",
        }
    }
}

/// The marks a revival reads and changes, and where it records its state.
pub trait MarkStore: Send + Sync + 'static {
    /// Drops `task`'s marks made before `before_ns` (those of the previous
    /// agent process; a session of this run keeps its own mark).
    fn drop_marks(&self, task: &str, before_ns: i64);
    /// Records where `task`'s revival stands, as of `at_ns`.
    fn record(&self, task: &str, state: &Revival, at_ns: i64);
}

/// The tasks whose Init arrived in this run, among those to revive: the
/// session-lifecycle receiver reports every successful Init here.
#[derive(Debug)]
pub struct Arrivals {
    watched: HashSet<String>,
    seen: Mutex<HashSet<String>>,
    changed: watch::Sender<u64>,
}

impl Arrivals {
    /// Watches these tasks (the ones marked at start); other Inits are
    /// ignored, so this stays as small as the marks.
    pub fn new(tasks: impl IntoIterator<Item = String>) -> Arrivals {
        Arrivals {
            watched: tasks.into_iter().collect(),
            seen: Mutex::new(HashSet::new()),
            changed: watch::channel(0).0,
        }
    }

    /// A successful Init for `task` arrived.
    pub fn initialized(&self, task: &str) {
        if !self.watched.contains(task) {
            return;
        }
        let new = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task.to_string());
        if new {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Whether an Init for `task` arrived in this run.
    pub fn arrived(&self, task: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(task)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// Requests to Kapacitor's API in flight at once, across all tasks: many
/// marked tasks must not flood a Kapacitor that is starting up.
pub const MAX_IN_FLIGHT: usize = 8;

/// How revival paces itself.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Give up on a task this long after the start (`[kapacitor] revive_for`).
    pub revive_for: Duration,
    /// Between two looks at a task Kapacitor still shows executing.
    pub poll: Duration,
    /// First wait after a failed call; doubled up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// After the two PATCHes, how long to wait for the task's Init before
    /// saying (in the log) that it did not come.
    pub confirm_within: Duration,
}

impl Settings {
    pub fn new(revive_for: Duration) -> Settings {
        Settings {
            revive_for,
            poll: Duration::from_secs(1),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(15),
            confirm_within: Duration::from_secs(30),
        }
    }
}

/// One task to revive and the nodes it had marked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub task: String,
    pub nodes: Vec<String>,
}

/// Groups (task, node) marks by task: one revival per task.
pub fn plan<'a>(marks: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Plan> {
    let mut by_task: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (task, node) in marks {
        by_task.entry(task).or_default().push(node.to_string());
    }
    by_task
        .into_iter()
        .map(|(task, nodes)| Plan {
            task: task.to_string(),
            nodes,
        })
        .collect()
}

/// How one task's revival ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Revived,
    Reconnected,
    SkippedDisabled,
    SkippedDeleted,
    GaveUp,
    /// The agent is stopping; the mark is kept.
    Interrupted,
}

/// The command that revives `task` by hand.
pub fn by_hand(task: &str) -> String {
    format!("kapacitor disable {task} && kapacitor enable {task}")
}

fn count(outcome: &'static str, reason: &'static str) {
    crate::ops::metrics::metrics()
        .revivals_total
        .get_or_create(&crate::ops::metrics::RevivalLabel { outcome, reason })
        .inc();
}

/// `revive_tasks = false`: records every planned task as not revived and
/// says so once.
pub fn off<M: MarkStore>(plans: &[Plan], marks: &M) {
    if plans.is_empty() {
        return;
    }
    let at = now_ns();
    for p in plans {
        marks.record(&p.task, &Revival::Off, at);
    }
    let tasks: Vec<&str> = plans.iter().map(|p| p.task.as_str()).collect();
    tracing::warn!(
        tasks = %tasks.join(","),
        "revival: revive_tasks = false, so {} task(s) marked open when the agent stopped are not \
         revived; unless Kapacitor restarts them, revive each by hand: kapacitor disable ID && \
         kapacitor enable ID",
        tasks.len()
    );
}

/// The daemon's revival, started by `app::run` once both sockets listen
/// (Kapacitor connects as soon as a task is enabled again): for the tasks
/// marked when this agent process started (`plans`), over Kapacitor's HTTP
/// API with the `[kapacitor]` settings; or, with `revive_tasks = false`,
/// only the record that they are not revived. Ends when every task has an
/// outcome or `shutdown` is cancelled.
pub async fn run(
    config: crate::ops::config::KapacitorConfig,
    outbox: crate::delivery::outbox::Outbox,
    arrivals: Arc<Arrivals>,
    plans: Vec<Plan>,
    started_ns: i64,
    shutdown: CancellationToken,
) {
    if plans.is_empty() {
        return;
    }
    if !config.revive_tasks {
        off(&plans, &outbox);
        return;
    }
    let api = match crate::kapacitor::tasks::KapacitorTasks::new(&config) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            for p in &plans {
                give_up(&outbox, &p.task, &e.to_string(), "refused");
            }
            return;
        }
    };
    let settings = Settings::new(config.revive_for);
    tracing::info!(
        tasks = plans.len(),
        kapacitor = %crate::ops::redact::url(&config.url),
        revive_for = %humantime::format_duration(settings.revive_for),
        "revival: {} task(s) had a UDF session open when the agent stopped; bringing back those Kapacitor stopped",
        plans.len()
    );
    let outcomes = revive_all(
        api,
        Arc::new(outbox),
        arrivals,
        plans,
        settings,
        started_ns,
        shutdown,
    )
    .await;
    let n = |o: Outcome| outcomes.iter().filter(|(_, x)| *x == o).count();
    tracing::info!(
        revived = n(Outcome::Revived),
        reconnected = n(Outcome::Reconnected),
        skipped = n(Outcome::SkippedDisabled) + n(Outcome::SkippedDeleted),
        gave_up = n(Outcome::GaveUp),
        interrupted = n(Outcome::Interrupted),
        "revival: done"
    );
}

/// Revives every planned task concurrently; returns when each has an
/// outcome (or `shutdown` is cancelled). `started_ns` is when this agent
/// process started: marks older than that are the previous process's.
pub async fn revive_all<A: TaskApi, M: MarkStore>(
    api: Arc<A>,
    marks: Arc<M>,
    arrivals: Arc<Arrivals>,
    plans: Vec<Plan>,
    settings: Settings,
    started_ns: i64,
    shutdown: CancellationToken,
) -> Vec<(String, Outcome)> {
    let mut set = tokio::task::JoinSet::new();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    for p in plans {
        let run = Reviver {
            api: api.clone(),
            in_flight: in_flight.clone(),
            marks: marks.clone(),
            arrivals: arrivals.clone(),
            settings: settings.clone(),
            started_ns,
            shutdown: shutdown.clone(),
        };
        set.spawn(async move {
            let outcome = run.revive(&p).await;
            (p.task, outcome)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            out.push(r);
        }
    }
    out.sort();
    out
}

struct Reviver<A, M> {
    api: Arc<A>,
    /// Bounds the requests in flight to Kapacitor across tasks.
    in_flight: Arc<tokio::sync::Semaphore>,
    marks: Arc<M>,
    arrivals: Arc<Arrivals>,
    settings: Settings,
    started_ns: i64,
    shutdown: CancellationToken,
}

/// What to do after one look at the task.
enum Next {
    Done(Outcome),
    /// Look again after this long; `why` is what it waits for (logged
    /// when it changes, as a warning when `trouble`).
    Wait {
        after: Duration,
        why: String,
        trouble: bool,
    },
}

impl<A: TaskApi, M: MarkStore> Reviver<A, M> {
    async fn revive(&self, plan: &Plan) -> Outcome {
        let task = plan.task.as_str();
        let deadline = Instant::now() + self.settings.revive_for;
        let mut arrivals = self.arrivals.subscribe();
        let mut backoff = self.settings.backoff_initial;
        // True once this agent disabled the task: a disabled task is then
        // ours to enable, not a human's decision.
        let mut we_disabled = false;
        let mut last_why = String::new();
        tracing::info!(
            task = %task,
            nodes = %plan.nodes.join(","),
            "revival: the task's UDF session was open when the agent stopped; checking it in Kapacitor"
        );
        self.record(
            task,
            Revival::Waiting {
                detail: "checking the task in Kapacitor".into(),
            },
        );
        loop {
            if self.shutdown.is_cancelled() {
                tracing::info!(
                    task = %task,
                    "revival: the agent is stopping; the mark is kept for the next start"
                );
                return Outcome::Interrupted;
            }
            let next = self.step(task, &mut we_disabled, &mut backoff).await;
            let (after, why, trouble) = match next {
                Next::Done(o) => return o,
                Next::Wait {
                    after,
                    why,
                    trouble,
                } => (after, why, trouble),
            };
            if why != last_why {
                if trouble {
                    tracing::warn!(
                        task = %task,
                        "revival: waiting: {why}; trying again for up to revive_for = {}",
                        humantime::format_duration(self.settings.revive_for)
                    );
                } else {
                    tracing::info!(task = %task, "revival: waiting: {why}");
                }
                self.record(
                    task,
                    Revival::Waiting {
                        detail: why.clone(),
                    },
                );
                last_why = why;
            }
            let now = Instant::now();
            if now >= deadline {
                return self.give_up(task, &last_why, "deadline");
            }
            tokio::select! {
                _ = tokio::time::sleep(after.min(deadline - now)) => {}
                _ = arrivals.changed() => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    /// One look at the task, and what follows from it.
    async fn step(&self, task: &str, we_disabled: &mut bool, backoff: &mut Duration) -> Next {
        if self.arrivals.arrived(task) {
            return self.reconnected(task);
        }
        let failed = |e: ApiFailure, backoff: &mut Duration| -> Next {
            match e {
                ApiFailure::Unreachable(e) => {
                    let after = *backoff;
                    *backoff = (*backoff * 2).min(self.settings.backoff_max);
                    let why = format!("Kapacitor's API did not answer: {e}");
                    Next::Wait {
                        after,
                        why,
                        trouble: true,
                    }
                }
                ApiFailure::Refused(e) => Next::Done(self.give_up(
                    task,
                    &format!("Kapacitor refused the request: {e} (check [kapacitor] url, username, password, shared_secret and that the user may read and PATCH tasks)"),
                    "refused",
                )),
            }
        };
        let look = match self.request(self.api.get_task(task)).await {
            Ok(l) => l,
            Err(e) => return failed(e, backoff),
        };
        *backoff = self.settings.backoff_initial;
        match look {
            Lookup::NotFound => self.deleted(task),
            Lookup::Found { enabled: false, .. } if !*we_disabled => {
                self.marks.drop_marks(task, self.started_ns);
                count("skipped", "disabled");
                tracing::info!(
                    task = %task,
                    "revival: the task is disabled in Kapacitor (a human disabled it): not touched; its mark is dropped"
                );
                self.record(
                    task,
                    Revival::Skipped {
                        why: "disabled in Kapacitor (by a human): not touched".into(),
                    },
                );
                Next::Done(Outcome::SkippedDisabled)
            }
            Lookup::Found {
                enabled: true,
                executing: true,
                ..
            } => {
                Next::Wait {
                    after: self.settings.poll,
                    why: "Kapacitor still shows the task executing (it notices the broken session at its next write)".into(),
                    trouble: false,
                }
            }
            Lookup::Found { enabled, error, .. } => {
                // Enabled and not executing (stopped by the broken session),
                // or disabled by this agent a moment ago.
                if self.arrivals.arrived(task) {
                    return self.reconnected(task);
                }
                if enabled {
                    tracing::info!(task = %task, kapacitor_error = %error,
                        "revival: the task is enabled but not executing: disabling it");
                    match self.request(self.api.set_status(task, false)).await {
                        Ok(Lookup::NotFound) => return self.deleted(task),
                        Ok(Lookup::Found { .. }) => *we_disabled = true,
                        Err(e) => return failed(e, backoff),
                    }
                }
                tracing::info!(task = %task, "revival: the task is disabled: enabling it");
                match self.request(self.api.set_status(task, true)).await {
                    Ok(Lookup::NotFound) => return self.deleted(task),
                    Ok(Lookup::Found { .. }) => {}
                    Err(e) => return failed(e, backoff),
                }
                count("revived", "");
                tracing::info!(
                    task = %task,
                    "revival: task revived: disabled and enabled again; Kapacitor opens its UDF sessions anew"
                );
                self.record(task, Revival::Revived);
                self.confirm(task).await;
                Next::Done(Outcome::Revived)
            }
        }
    }

    /// One request to Kapacitor, waiting its turn among all tasks'.
    async fn request<T>(&self, call: impl Future<Output = T>) -> T {
        // Never closed; if it were, the call simply goes unbounded.
        let _permit = self.in_flight.acquire().await.ok();
        call.await
    }

    fn reconnected(&self, task: &str) -> Next {
        count("skipped", "reconnected");
        tracing::info!(
            task = %task,
            "revival: the task reconnected by itself (its Init arrived): not touched"
        );
        self.record(task, Revival::Reconnected);
        Next::Done(Outcome::Reconnected)
    }

    fn deleted(&self, task: &str) -> Next {
        self.marks.drop_marks(task, self.started_ns);
        count("skipped", "deleted");
        tracing::warn!(
            task = %task,
            "revival: the task no longer exists in Kapacitor (404): its mark is dropped"
        );
        self.record(
            task,
            Revival::Skipped {
                why: "no longer exists in Kapacitor (404)".into(),
            },
        );
        Next::Done(Outcome::SkippedDeleted)
    }

    fn give_up(&self, task: &str, why: &str, reason: &'static str) -> Outcome {
        let why = if reason == "deadline" {
            format!(
                "not revived within revive_for = {}: {why}",
                humantime::format_duration(self.settings.revive_for)
            )
        } else {
            why.to_string()
        };
        give_up(self.marks.as_ref(), task, &why, reason)
    }

    /// After the PATCHes: the task's Init should follow; log whether it did.
    async fn confirm(&self, task: &str) {
        let start = Instant::now();
        let mut arrivals = self.arrivals.subscribe();
        loop {
            if self.arrivals.arrived(task) {
                tracing::info!(
                    task = %task,
                    after = ?start.elapsed(),
                    "revival: the task is running again through this agent (its Init arrived)"
                );
                return;
            }
            let left = self.settings.confirm_within.saturating_sub(start.elapsed());
            if left.is_zero() {
                tracing::warn!(
                    task = %task,
                    "revival: the task was enabled again but no Init arrived within {:?}: see `kapacitor show {task}`",
                    self.settings.confirm_within
                );
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(left) => {}
                _ = arrivals.changed() => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    fn record(&self, task: &str, state: Revival) {
        self.marks.record(task, &state, now_ns());
    }
}

/// Gives up on `task`: counted (`failed`, `reason`), logged at ERROR with the
/// command that revives it by hand, recorded for `tasks`; its mark is kept.
fn give_up(marks: &impl MarkStore, task: &str, why: &str, reason: &'static str) -> Outcome {
    count("failed", reason);
    tracing::error!(
        task = %task,
        "revival: gave up on task {task}: {why}. Its mark is kept (the next agent start tries again). \
         The task stays stopped until revived by hand: {}",
        by_hand(task)
    );
    marks.record(
        task,
        &Revival::GaveUp {
            why: format!("{why}; run: {}", by_hand(task)),
        },
        now_ns(),
    );
    Outcome::GaveUp
}

/// The outbox keeps the marks and the revival states. A failed write is
/// logged and otherwise harmless: a mark not dropped is looked at again at
/// the next start; a state not recorded only leaves `tasks` behind.
impl MarkStore for crate::delivery::outbox::Outbox {
    fn drop_marks(&self, task: &str, before_ns: i64) {
        if let Err(e) = crate::ops::run_blocking(|| self.drop_session_marks(task, before_ns)) {
            tracing::warn!(task = %task, error = %e,
                "revival: cannot drop the task's mark; the next agent start looks at it again");
        }
    }

    fn record(&self, task: &str, state: &Revival, at_ns: i64) {
        if let Err(e) = crate::ops::run_blocking(|| {
            self.record_revival(task, state.name(), at_ns, state.detail())
        }) {
            tracing::warn!(task = %task, error = %e,
                "revival: cannot record the revival state; `tasks` may show an older one");
        }
    }
}

#[cfg(test)]
mod tests;
