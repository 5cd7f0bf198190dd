//! The dispatcher: takes committed rows out of the outbox and gets them
//! accepted by PagerTree, in order per alert, concurrently across alerts.
//!
//! Ordering: rows are queued per key = (address at commit time, alert id).
//! Only the head of a key's queue is ever attempted, and only one request per
//! key is on the wire at a time, so a resolve never overtakes its create.
//! Across keys up to `concurrency` requests run at once.
//!
//! Failures (see [`crate::delivery::pagertree::classify`]):
//! - 5xx, 408, timeouts, connection errors: exponential backoff from
//!   `retry_initial` to `retry_max` with jitter (a random half of the step),
//!   so a fleet of alerts does not hammer PagerTree in lockstep after an outage;
//! - 429: `Retry-After` (seconds or HTTP date) when given, else `retry_max`;
//!   never more than `retry_max` (the log line says when it was capped);
//! - other 4xx, redirects, an endpoint missing from the config: *parked* —
//!   kept, logged at error level, retried every `parked_retry`, and holding
//!   back the later events of its key until it goes through, an operator
//!   retries or drops it (`outbox retry|drop`; noticed within a second), or it
//!   ages out;
//! - a head older than `max_age` moves to the dead-letter table with the
//!   reason and releases its key.
//!
//! Nothing marks a row "in flight" on disk: a row is in flight only while its
//! request is on the wire, in memory; after a crash it is simply sent again
//! (at-least-once, docs/pagertree.md *Repeats*).
//!
//! The dispatcher wakes on the outbox's [`tokio::sync::Notify`] after every
//! commit, and once a second regardless (rows written by another process,
//! operator actions, metrics). Database work runs on its own thread
//! (`pagertree-dispatch-db`), batched into one transaction per wake-up, so
//! the async runtime never blocks on SQLite and acknowledgements of a burst
//! cost one write, not one per event.
//!
//! Shutdown: when the [`CancellationToken`] fires no new request starts;
//! requests on the wire get `shutdown_grace` to finish, then are abandoned
//! (their rows stay pending and go out after the restart).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::delivery::backoff::Backoff;
use crate::delivery::outbox::{self, Outbox, OutboxError, StoredRow};
use crate::delivery::pagertree::{self, Answer, HttpClient, Outcome, SendError};
use crate::ops::config::DeliveryConfig;
use crate::ops::metrics::{OutcomeLabel, metrics};
use crate::ops::now_ns;
use crate::ops::redact;

/// The dispatcher's settings (from `[delivery]`).
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchConfig {
    pub concurrency: usize,
    pub max_age: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub parked_retry: Duration,
    pub shutdown_grace: Duration,
    /// At most this many rows are held in memory; more wait in the database.
    pub window: usize,
    /// How often the dispatcher looks for rows written by other processes,
    /// operator actions, and refreshes the gauges.
    pub tick: Duration,
}

impl From<&DeliveryConfig> for DispatchConfig {
    fn from(d: &DeliveryConfig) -> Self {
        Self {
            concurrency: d.concurrency.max(1),
            max_age: d.max_age,
            retry_initial: d.retry_initial,
            retry_max: d.retry_max.max(d.retry_initial),
            parked_retry: d.parked_retry,
            shutdown_grace: d.shutdown_grace,
            window: 50_000,
            tick: Duration::from_secs(1),
        }
    }
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self::from(&DeliveryConfig::default())
    }
}

/// Why the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("cannot start the dispatcher's database thread: {0}")]
    Thread(std::io::Error),
}

/// The state of rows by sequence number: `None` when gone; else (parked,
/// next attempt in wall-clock ns).
type RowStates = Vec<(i64, Option<(bool, i64)>)>;

/// Work for the database thread.
enum DbOp {
    Load {
        after: i64,
        limit: usize,
        reply: oneshot::Sender<rusqlite::Result<Vec<StoredRow>>>,
    },
    Delivered {
        seq: i64,
    },
    Failed {
        seq: i64,
        attempts: u32,
        next_attempt_ns: i64,
        parked: bool,
        error: String,
    },
    DeadLetter {
        seq: i64,
        reason: String,
    },
    States {
        seqs: Vec<i64>,
        reply: oneshot::Sender<RowStates>,
    },
    Stats {
        reply: oneshot::Sender<(i64, Option<i64>)>,
    },
}

/// The database thread: applies each batch of operations in one transaction.
fn db_loop(conn: rusqlite::Connection, rx: std_mpsc::Receiver<DbOp>) {
    let mut conn = conn;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(op) = rx.try_recv() {
            batch.push(op);
        }
        // New rows are read first, outside the write transaction, so a
        // fresh event never waits for the committer's fsync to be loaded.
        let mut writes = Vec::with_capacity(batch.len());
        for op in batch {
            match op {
                DbOp::Load {
                    after,
                    limit,
                    reply,
                } => {
                    let _ = reply.send(outbox::load_rows(&conn, after, limit));
                }
                DbOp::Stats { reply } => {
                    let r = conn
                        .query_row("SELECT count(*), min(created_ns) FROM outbox", [], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .unwrap_or((0, None));
                    let _ = reply.send(r);
                }
                other => writes.push(other),
            }
        }
        if writes.is_empty() {
            continue;
        }
        let batch = writes;
        let mut replies: Vec<Box<dyn FnOnce()>> = Vec::new();
        // IMMEDIATE: take the write lock up front (waiting for the committer
        // under the busy timeout) rather than failing on a lock upgrade.
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, "outbox: cannot begin a transaction; delivery marks lost (events may repeat)");
                continue;
            }
        };
        for op in batch {
            match op {
                // Reads were answered before the transaction.
                DbOp::Load { .. } | DbOp::Stats { .. } => {}
                DbOp::Delivered { seq } => {
                    if let Err(e) = tx.execute("DELETE FROM outbox WHERE seq = ?1", [seq]) {
                        tracing::error!(seq, error = %e, "outbox: cannot remove a delivered row (it will be sent again)");
                    }
                }
                DbOp::Failed {
                    seq,
                    attempts,
                    next_attempt_ns,
                    parked,
                    error,
                } => {
                    let r = tx.execute(
                        "UPDATE outbox SET attempts = ?2, next_attempt_ns = ?3, state = ?4, last_error = ?5 \
                         WHERE seq = ?1",
                        rusqlite::params![
                            seq,
                            attempts as i64,
                            next_attempt_ns,
                            if parked { "parked" } else { "pending" },
                            error
                        ],
                    );
                    if let Err(e) = r {
                        tracing::error!(seq, error = %e, "outbox: cannot record a failed attempt");
                    }
                }
                DbOp::DeadLetter { seq, reason } => {
                    let r = tx
                        .execute(
                            "INSERT OR REPLACE INTO dead_letter SELECT seq, task, node, alert_id, level, endpoint, \
                             url_override, url, format, body, created_ns, attempts, last_error, ?2, ?3 \
                             FROM outbox WHERE seq = ?1",
                            rusqlite::params![seq, reason, now_ns()],
                        )
                        .and_then(|_| tx.execute("DELETE FROM outbox WHERE seq = ?1", [seq]));
                    if let Err(e) = r {
                        tracing::error!(seq, error = %e, "outbox: cannot move a row to the dead-letter table");
                    }
                }
                DbOp::States { seqs, reply } => {
                    let out: Vec<_> = seqs
                        .into_iter()
                        .map(|s| (s, outbox::row_state(&tx, s).ok().flatten()))
                        .collect();
                    replies.push(Box::new(move || {
                        let _ = reply.send(out);
                    }));
                }
            }
        }
        if let Err(e) = tx.commit() {
            tracing::error!(error = %e, "outbox: cannot commit delivery marks (events may repeat)");
        }
        for r in replies {
            r();
        }
    }
}

/// One key's queue.
#[derive(Debug)]
struct Queue {
    rows: VecDeque<StoredRow>,
    in_flight: bool,
    /// When the head may be attempted.
    due: Instant,
    /// The head is parked (counted in the `parked` gauge).
    parked: bool,
    /// The key is in the ready list.
    in_ready: bool,
}

/// What a request task reports back.
struct Done {
    key: Arc<str>,
    seq: i64,
    outcome: Outcome,
    answer: Result<Answer, SendError>,
}

struct State {
    outbox: Outbox,
    cfg: DispatchConfig,
    client: Arc<HttpClient>,
    /// Delivery marks and row states (in order with the marks).
    db: std_mpsc::Sender<DbOp>,
    /// New rows and counts.
    db_read: std_mpsc::Sender<DbOp>,
    queues: HashMap<Arc<str>, Queue>,
    ready: VecDeque<Arc<str>>,
    timers: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    inflight: JoinSet<Done>,
    held: usize,
    max_seq: i64,
    /// The most negative in-memory (degraded) sequence number queued.
    min_mem_seq: i64,
    db_exhausted: bool,
}

/// The running dispatcher.
#[derive(Debug)]
pub struct Dispatcher {
    task: tokio::task::JoinHandle<()>,
}

impl Dispatcher {
    /// Starts delivering the outbox's rows. Must be called inside a tokio
    /// runtime. Rows left by a previous run (pending or parked) are resumed.
    pub fn spawn(
        outbox: Outbox,
        cfg: DispatchConfig,
        cancel: CancellationToken,
    ) -> Result<Dispatcher, DispatchError> {
        // Two threads, two connections: new rows are read by one (WAL
        // readers never wait), delivery marks are written by the other
        // (which may wait for the committer's lock).
        let conn = outbox::connect(outbox.path(), false)?;
        let read_conn = outbox::connect(outbox.path(), false)?;
        let (tx, rx) = std_mpsc::channel();
        let (read_tx, read_rx) = std_mpsc::channel();
        let db_thread = std::thread::Builder::new()
            .name("pagertree-dispatch-db".into())
            .spawn(move || db_loop(conn, rx))
            .map_err(DispatchError::Thread)?;
        let read_thread = std::thread::Builder::new()
            .name("pagertree-dispatch-read".into())
            .spawn(move || db_loop(read_conn, read_rx))
            .map_err(DispatchError::Thread)?;
        for w in outbox.endpoints().warnings() {
            tracing::warn!("{w}");
        }
        let state = State::new(outbox, cfg, tx, read_tx);
        let task = tokio::spawn(async move {
            state.run(cancel).await;
            // The state (and the database sender) is gone: the thread
            // finishes its last batch and ends.
            let _ = tokio::task::spawn_blocking(move || {
                let _ = read_thread.join();
                db_thread.join()
            })
            .await;
        });
        Ok(Dispatcher { task })
    }

    /// Waits until the dispatcher has stopped (after its token fired and the
    /// grace period for requests on the wire passed).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

fn key_of(row: &StoredRow) -> Arc<str> {
    let mut k = String::with_capacity(row.url.len() + row.alert_id.len() + 1);
    k.push_str(&row.url);
    k.push('\n');
    k.push_str(&row.alert_id);
    Arc::from(k)
}

/// Wall-clock nanoseconds → an `Instant` (now when in the past).
fn instant_of(ns: i64) -> Instant {
    let now = now_ns();
    if ns <= now {
        Instant::now()
    } else {
        later(Duration::from_nanos((ns - now) as u64))
    }
}

/// Now plus `d`, capped at a year (a config such as `max_age = "1000y"`
/// must not overflow the clock).
fn later(d: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 86_400);
    Instant::now() + d.min(YEAR)
}

/// How long ago a row was created.
fn age(row: &StoredRow) -> Duration {
    Duration::from_nanos(now_ns().saturating_sub(row.created_ns).max(0) as u64)
}

fn instant_to_ns(at: Instant) -> i64 {
    now_ns().saturating_add(at.saturating_duration_since(Instant::now()).as_nanos() as i64)
}

impl State {
    /// A dispatcher with nothing loaded yet; `db` and `db_read` reach the
    /// writing and the reading database thread.
    fn new(
        outbox: Outbox,
        cfg: DispatchConfig,
        db: std_mpsc::Sender<DbOp>,
        db_read: std_mpsc::Sender<DbOp>,
    ) -> State {
        State {
            outbox,
            cfg,
            client: Arc::new(HttpClient::new()),
            db,
            db_read,
            queues: HashMap::new(),
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            inflight: JoinSet::new(),
            held: 0,
            max_seq: 0,
            min_mem_seq: 0,
            db_exhausted: false,
        }
    }

    async fn run(mut self, cancel: CancellationToken) {
        let notify = self.outbox.notifier();
        let mut tick = tokio::time::interval(self.cfg.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.load().await;
        // Set at shutdown while events are held only in memory (degraded):
        // they get `shutdown_grace` to go out before anything is abandoned.
        let mut drain_until: Option<Instant> = None;
        loop {
            if drain_until.is_some() && self.outbox.memory_only() == 0 {
                break;
            }
            self.start_ready();
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                biased;
                _ = cancel.cancelled(), if drain_until.is_none() => {
                    let held = self.outbox.memory_only();
                    if held == 0 {
                        break;
                    }
                    tracing::warn!(
                        events = held, grace = ?self.cfg.shutdown_grace,
                        "stopping with events held only in memory (the outbox cannot store): delivering them within the grace"
                    );
                    drain_until = Some(later(self.cfg.shutdown_grace));
                }
                _ = sleep_until_opt(drain_until) => break,
                Some(done) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                    if let Ok(done) = done {
                        self.finish(done);
                    }
                    // A backlog larger than the window: refill at half.
                    if !self.db_exhausted && self.held < self.cfg.window / 2 {
                        self.load().await;
                    }
                }
                _ = notify.notified() => self.load().await,
                _ = sleep_until_opt(next_timer) => self.fire_timers(),
                _ = tick.tick() => {
                    if !self.outbox.is_ready() {
                        let ob = self.outbox.clone();
                        let _ = tokio::task::spawn_blocking(move || ob.try_recover()).await;
                    }
                    self.load().await;
                    self.reconcile().await;
                    self.stats().await;
                }
            }
        }
        self.shutdown(drain_until).await;
    }

    /// Waits for the requests on the wire up to `shutdown_grace`, counted
    /// from `drain_until`'s start when memory-only events were drained.
    async fn shutdown(&mut self, drain_until: Option<Instant>) {
        let n = self.inflight.len();
        if n > 0 {
            tracing::info!(in_flight = n, grace = ?self.cfg.shutdown_grace, "stopping delivery: waiting for requests on the wire");
        }
        let deadline = drain_until.unwrap_or_else(|| later(self.cfg.shutdown_grace));
        while !self.inflight.is_empty() {
            tokio::select! {
                Some(done) = self.inflight.join_next() => {
                    if let Ok(done) = done {
                        self.finish(done);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        abandoned = self.inflight.len(),
                        "shutdown grace over: abandoning requests on the wire; they are sent again after the restart"
                    );
                    self.inflight.abort_all();
                    while self.inflight.join_next().await.is_some() {}
                    break;
                }
            }
        }
    }

    fn in_memory(&self) -> usize {
        self.held
    }

    /// Loads newly committed rows (and, when degraded, rows held in memory).
    async fn load(&mut self) {
        loop {
            let room = self.cfg.window.saturating_sub(self.in_memory());
            if room == 0 {
                self.db_exhausted = false;
                break;
            }
            let limit = room.min(5_000);
            let (reply, rx) = oneshot::channel();
            if self
                .db_read
                .send(DbOp::Load {
                    after: self.max_seq,
                    limit,
                    reply,
                })
                .is_err()
            {
                return;
            }
            let rows = match rx.await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "outbox: cannot read pending rows; retrying in a second");
                    return;
                }
                Err(_) => return,
            };
            let n = rows.len();
            for row in rows {
                self.max_seq = self.max_seq.max(row.seq);
                self.enqueue(row);
            }
            if n < limit {
                self.db_exhausted = true;
                break;
            }
        }
        self.load_memory();
    }

    /// Degraded mode: queue the rows the outbox holds in memory, after every
    /// stored row (they were committed after all of them); forget memory
    /// copies the outbox has since written to disk (they come back as rows).
    fn load_memory(&mut self) {
        let fresh: Vec<StoredRow>;
        let flushed;
        {
            let mem = self.outbox.memory();
            flushed = self.min_mem_seq < 0
                && mem
                    .rows
                    .front()
                    .is_none_or(|(r, _)| r.seq < self.min_mem_seq);
            fresh = if self.db_exhausted {
                mem.rows
                    .iter()
                    .filter(|(r, _)| r.seq < self.min_mem_seq)
                    .map(|(r, _)| r.clone())
                    .collect()
            } else {
                Vec::new()
            };
        }
        if flushed {
            self.purge_memory_rows();
            // Every row the memory queue holds now is newer than the purged
            // ones (sequence numbers keep going down): start over.
            self.min_mem_seq = 0;
        }
        for row in fresh {
            self.min_mem_seq = self.min_mem_seq.min(row.seq);
            self.enqueue(row);
        }
    }

    /// Removes queued memory rows (negative seq) that are not on the wire.
    fn purge_memory_rows(&mut self) {
        let keys: Vec<Arc<str>> = self.queues.keys().cloned().collect();
        for key in keys {
            let Some(q) = self.queues.get_mut(&key) else {
                continue;
            };
            let before = q.rows.len();
            let keep_head = q.in_flight;
            let mut i = 0;
            q.rows.retain(|r| {
                let keep = r.seq >= 0 || (keep_head && i == 0);
                i += 1;
                keep
            });
            self.held -= before - q.rows.len();
            if !keep_head {
                self.head_changed(&key);
            }
        }
    }

    fn enqueue(&mut self, row: StoredRow) {
        let key = key_of(&row);
        self.held += 1;
        let q = self.queues.entry(key.clone()).or_insert_with(|| Queue {
            rows: VecDeque::new(),
            in_flight: false,
            due: Instant::now(),
            parked: false,
            in_ready: false,
        });
        q.rows.push_back(row);
        if q.rows.len() == 1 && !q.in_flight {
            self.head_changed(&key);
        }
    }

    /// The head of `key` changed (or its queue emptied): set its due time and
    /// parked flag from the row, and schedule it.
    fn head_changed(&mut self, key: &Arc<str>) {
        let Some(q) = self.queues.get_mut(key) else {
            return;
        };
        if q.parked {
            q.parked = false;
            metrics().parked.dec();
        }
        let Some(head) = q.rows.front() else {
            self.queues.remove(key);
            return;
        };
        q.due = instant_of(head.next_attempt_ns);
        if head.parked {
            q.parked = true;
            metrics().parked.inc();
        }
        self.schedule(key.clone());
    }

    fn schedule(&mut self, key: Arc<str>) {
        let Some(q) = self.queues.get_mut(&key) else {
            return;
        };
        if q.due <= Instant::now() {
            if !q.in_ready {
                q.in_ready = true;
                self.ready.push_back(key);
            }
        } else {
            self.timers.push(Reverse((q.due, key)));
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, key))) = self.timers.pop() {
                self.schedule(key);
            }
        }
    }

    /// Starts requests for ready keys, up to the concurrency bound.
    fn start_ready(&mut self) {
        while self.inflight.len() < self.cfg.concurrency {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            let Some(q) = self.queues.get_mut(&key) else {
                continue;
            };
            q.in_ready = false;
            if q.in_flight {
                continue;
            }
            if q.due > Instant::now() {
                // Its head changed while it waited in the ready list.
                let due = q.due;
                self.timers.push(Reverse((due, key)));
                continue;
            }
            let Some(head) = q.rows.front() else { continue };
            let age = age(head);
            if age > self.cfg.max_age {
                self.dead_letter(&key, age);
                continue;
            }
            let endpoints = self.outbox.endpoints();
            let params = match endpoints.send_params(&head.endpoint, head.url_override.as_deref()) {
                Ok(p) => p,
                Err(reason) => {
                    let seq = head.seq;
                    let done = Done {
                        key: key.clone(),
                        seq,
                        outcome: Outcome::Park {
                            reason: reason.clone(),
                        },
                        answer: Err(SendError::Request(reason)),
                    };
                    q.in_flight = true;
                    self.finish(done);
                    continue;
                }
            };
            q.in_flight = true;
            let seq = head.seq;
            let body = head.body.clone();
            let client = self.client.clone();
            self.inflight.spawn(async move {
                let answer = client.post(&params, body).await;
                let outcome = pagertree::classify(&answer);
                Done {
                    key,
                    seq,
                    outcome,
                    answer,
                }
            });
        }
    }

    fn dead_letter(&mut self, key: &Arc<str>, age: Duration) {
        let Some(q) = self.queues.get_mut(key) else {
            return;
        };
        let Some(row) = q.rows.pop_front() else {
            return;
        };
        self.held -= 1;
        let reason = format!(
            "older than max_age ({:?}) after {} attempt(s); last error: {}",
            self.cfg.max_age,
            row.attempts,
            row.last_error.as_deref().unwrap_or("none")
        );
        log_sent(&row, "dead_lettered", None, row.attempts, None);
        tracing::error!(
            seq = row.seq, task = %row.task, node = %row.node, id = %row.alert_id, alert_level = %row.level,
            url = %redact::url(&row.url), age = ?age, reason = %reason,
            "event moved to the dead-letter table: it was never accepted by PagerTree (see `outbox list`)"
        );
        if row.seq >= 0 {
            let _ = self.db.send(DbOp::DeadLetter {
                seq: row.seq,
                reason,
            });
        } else {
            // Degraded: nowhere durable to put it. The log line above (with
            // the body below) is its trace.
            tracing::error!(seq = row.seq, body = %String::from_utf8_lossy(&row.body), "dead letter held in memory only");
            self.outbox.memory().delivered.insert(row.seq);
        }
        metrics()
            .deliveries_total
            .get_or_create(&OutcomeLabel {
                outcome: "dead_letter",
            })
            .inc();
        metrics().outbox_depth.dec();
        self.head_changed(key);
    }

    fn backoff(&self, attempts: u32) -> Duration {
        Backoff::new(self.cfg.retry_initial, self.cfg.retry_max).delay(attempts)
    }

    /// Handles the outcome of one attempt of a key's head.
    fn finish(&mut self, done: Done) {
        let Done {
            key,
            seq,
            outcome,
            answer,
        } = done;
        let Some(q) = self.queues.get_mut(&key) else {
            return;
        };
        q.in_flight = false;
        let Some(head) = q.rows.front_mut() else {
            return;
        };
        if head.seq != seq {
            // The head was dropped by an operator while on the wire.
            self.head_changed(&key);
            return;
        }
        let status = answer.as_ref().map(|a| a.status).ok();
        let verdict = match &outcome {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Transient { .. } | Outcome::RateLimited { .. } => "retry",
            Outcome::Park { .. } => "parked",
        };
        log_sent(
            head,
            verdict,
            status,
            head.attempts + 1,
            answer.as_ref().err(),
        );
        match outcome {
            Outcome::Delivered { .. } => {
                let row = q.rows.pop_front();
                self.held -= 1;
                let Some(row) = row else { return };
                let was_parked = q.parked;
                if row.seq >= 0 {
                    let _ = self.db.send(DbOp::Delivered { seq: row.seq });
                } else {
                    self.outbox.memory().delivered.insert(row.seq);
                }
                let m = metrics();
                m.deliveries_total
                    .get_or_create(&OutcomeLabel {
                        outcome: "delivered",
                    })
                    .inc();
                m.outbox_depth.dec();
                let latency = (now_ns() - row.created_ns).max(0) as f64 / 1e9;
                m.delivery_latency_seconds.observe(latency);
                if was_parked || row.attempts > 0 {
                    tracing::info!(
                        seq = row.seq, id = %row.alert_id, alert_level = %row.level, attempts = row.attempts + 1,
                        was_parked, url = %redact::url(&row.url), "event delivered after earlier failures"
                    );
                }
                self.head_changed(&key);
            }
            Outcome::Transient { reason } => {
                head.attempts += 1;
                let attempts = head.attempts;
                let wait = self.backoff(attempts);
                self.retry_later(&key, wait, reason, false);
            }
            Outcome::RateLimited {
                retry_after,
                reason,
            } => {
                head.attempts += 1;
                let cfg = &self.cfg;
                // Every wait is capped by retry_max: a Retry-After of days
                // would otherwise age the event out before its next try.
                let (wait, reason) = match retry_after {
                    Some(d) if d > cfg.retry_max => (
                        cfg.retry_max,
                        format!(
                            "{reason}; waiting retry_max ({}) instead",
                            humantime::format_duration(cfg.retry_max)
                        ),
                    ),
                    Some(d) => (d, reason),
                    None => (cfg.retry_max, reason),
                };
                self.retry_later(&key, wait, reason, false);
            }
            Outcome::Park { reason } => {
                head.attempts += 1;
                if !q.parked {
                    q.parked = true;
                    metrics().parked.inc();
                }
                let wait = self.cfg.parked_retry;
                self.retry_later(&key, wait, reason, true);
            }
        }
    }

    /// Records a failed attempt of `key`'s head and schedules the next one
    /// (never later than the moment the row ages out).
    fn retry_later(&mut self, key: &Arc<str>, wait: Duration, reason: String, parked: bool) {
        let max_age = self.cfg.max_age;
        let Some(q) = self.queues.get_mut(key) else {
            return;
        };
        let Some(head) = q.rows.front_mut() else {
            return;
        };
        let age = age(head);
        let until_dead = max_age
            .saturating_sub(age)
            .saturating_add(Duration::from_millis(1));
        let wait = wait.min(until_dead);
        let due = later(wait);
        q.due = due;
        head.parked = parked;
        head.next_attempt_ns = instant_to_ns(due).max(1);
        head.last_error = Some(reason.clone());
        let url = redact::url(&head.url);
        let m = metrics();
        if parked {
            m.deliveries_total
                .get_or_create(&OutcomeLabel { outcome: "parked" })
                .inc();
            tracing::error!(
                seq = head.seq, task = %head.task, node = %head.node, id = %head.alert_id, alert_level = %head.level,
                url = %url, attempts = head.attempts, reason = %reason, retry_in = ?wait,
                "PARKED: PagerTree refused the event; a human must act (fix the config, then `outbox retry`). \
                 Later events of this alert wait behind it"
            );
        } else {
            m.deliveries_total
                .get_or_create(&OutcomeLabel { outcome: "retry" })
                .inc();
            m.retries_total.inc();
            if head.attempts == 1 || head.attempts.is_multiple_of(10) {
                tracing::warn!(
                    seq = head.seq, id = %head.alert_id, alert_level = %head.level, url = %url,
                    attempts = head.attempts, reason = %reason, retry_in = ?wait, "delivery failed; will retry"
                );
            }
        }
        if head.seq >= 0 {
            let _ = self.db.send(DbOp::Failed {
                seq: head.seq,
                attempts: head.attempts,
                next_attempt_ns: head.next_attempt_ns,
                parked,
                error: reason,
            });
        }
        self.schedule(key.clone());
    }

    /// Notices operator actions on heads that wait (parked or backing off):
    /// a dropped row releases its key; a retried one is due now.
    async fn reconcile(&mut self) {
        let soon = Instant::now();
        let waiting: Vec<i64> = self
            .queues
            .values()
            .filter(|q| !q.in_flight && q.due > soon)
            .filter_map(|q| q.rows.front())
            .filter(|r| r.seq >= 0)
            .map(|r| r.seq)
            .collect();
        if waiting.is_empty() {
            return;
        }
        // Every waiting head, each second (what `outbox retry|drop` promise),
        // asked in batches so no one database operation grows without bound.
        let mut states: HashMap<i64, Option<(bool, i64)>> = HashMap::with_capacity(waiting.len());
        for seqs in waiting.chunks(1000) {
            let (reply, rx) = oneshot::channel();
            if self
                .db
                .send(DbOp::States {
                    seqs: seqs.to_vec(),
                    reply,
                })
                .is_err()
            {
                return;
            }
            let Ok(batch) = rx.await else { return };
            states.extend(batch);
        }
        let keys: Vec<Arc<str>> = self.queues.keys().cloned().collect();
        for key in keys {
            let Some(q) = self.queues.get_mut(&key) else {
                continue;
            };
            if q.in_flight {
                continue;
            }
            let Some(head) = q.rows.front_mut() else {
                continue;
            };
            match states.get(&head.seq) {
                Some(None) => {
                    tracing::warn!(seq = head.seq, id = %head.alert_id, "event removed from the outbox by an operator");
                    q.rows.pop_front();
                    self.held -= 1;
                    metrics().outbox_depth.dec();
                    self.head_changed(&key);
                }
                Some(Some((parked, next))) if !*parked && *next == 0 => {
                    tracing::info!(seq = head.seq, id = %head.alert_id, "operator retry: attempting now");
                    head.parked = false;
                    head.attempts = 0;
                    head.next_attempt_ns = 0;
                    self.head_changed(&key);
                }
                _ => {}
            }
        }
    }

    async fn stats(&mut self) {
        let (reply, rx) = oneshot::channel();
        if self.db_read.send(DbOp::Stats { reply }).is_err() {
            return;
        }
        let Ok((count, oldest)) = rx.await else {
            return;
        };
        let mem = self.outbox.memory();
        let mem_rows = mem.undelivered().count() as i64;
        let mem_oldest = mem.rows.front().map(|(r, _)| r.created_ns);
        drop(mem);
        let m = metrics();
        m.outbox_depth.set(count + mem_rows);
        let oldest = match (oldest, mem_oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        m.outbox_oldest_age_seconds.set(
            oldest
                .map(|o| (now_ns() - o).max(0) / 1_000_000_000)
                .unwrap_or(0),
        );
    }
}

/// The one info line per event attempt (issue #5): which alert, where to
/// (endpoint name and redacted address: the integration id is a secret), and
/// what came of it, with PagerTree's status (or why there was none).
fn log_sent(
    row: &StoredRow,
    outcome: &'static str,
    status: Option<u16>,
    attempt: u32,
    error: Option<&SendError>,
) {
    let endpoint = if row.endpoint.is_empty() {
        "(url)"
    } else {
        row.endpoint.as_str()
    };
    let status = status.map_or_else(|| "none".to_string(), |s| s.to_string());
    let error = error.map(|e| redact::text(&e.to_string(), &[]));
    tracing::info!(
        seq = row.seq,
        id = %row.alert_id,
        alert_level = %row.level,
        endpoint,
        url = %redact::url(&row.url),
        outcome,
        status = %status,
        attempt,
        error = error.as_deref().unwrap_or(""),
        "event {outcome}"
    );
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
