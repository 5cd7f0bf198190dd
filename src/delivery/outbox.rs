//! The outbox: the durable queue between the alert engine and PagerTree, and
//! the durable alert state and session marks that live in the same database.
//!
//! One SQLite file, `<data_dir>/outbox.db`, in WAL mode with
//! `synchronous=FULL`: a commit is on disk (fsynced) when it returns, so
//! neither `kill -9` nor a power cut loses an event that counted as stored.
//! Group commit keeps that affordable: the committer thread
//! ([`crate::alert::sink::spawn_sink`]) hands every queued event to
//! [`Outbox::commit`] at once and all of them go in one transaction.
//!
//! Tables (operators may read them with the `sqlite3` shell):
//! - `outbox`: undelivered events in commit order (`seq`). A row holds what
//!   is needed to send it later — the body bytes, the endpoint name, the
//!   node's URL override, the format — while the token and timeouts are read
//!   from the config at send time, so a corrected config takes effect.
//!   `state` is `pending` or `parked`; attempts, the next attempt time and the
//!   last error survive a restart.
//! - `dead_letter`: events older than `max_age` that never got through, with
//!   the reason. Never deleted except by `outbox drop`.
//! - `alert_state`: the last committed event per (task, node, alert id),
//!   written in the same transaction as its outbox row; an OK deletes it
//!   (as Kapacitor's topic store does). [`AlertStateStore`] reads it.
//! - `sessions`: which (task, node) UDF sessions are open, for task revival
//!   after an agent restart.
//! - `revivals`: where the revival of each task marked at the last start
//!   stands (`kapacitor-pagertree tasks` shows it); emptied at every start.
//!
//! `PRAGMA user_version` changes only for a change an older agent cannot
//! read safely: a new table (as `revivals` was) is created `IF NOT EXISTS`
//! by whichever agent opens the file, and an older agent ignores it, so
//! going back a version stays possible.
//!
//! Events whose route says `dryRun` are logged, never stored nor sent.
//!
//! Degraded mode: when the database cannot store (disk full, read-only, I/O
//! error) [`Outbox::commit`] keeps the group in a bounded memory queue
//! (`delivery.memory_queue` events) and still returns `Ok`: the dispatcher
//! delivers those events from memory (a page that goes out beats a page kept
//! safe on a full disk), the `degraded` metric is 1 and [`Outbox::is_ready`]
//! is false. Their rows are written once the disk recovers (each commit
//! first tries to flush the memory queue). Only when the memory queue is
//! full does `commit` fail, and the committer thread then holds the sessions
//! back (nothing is dropped).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Notify;

use crate::alert::sink::{CommitError, Committer};
use crate::alert::store::{AlertStateStore, StoreError, StoredAlert};
use crate::alert::{Event, Format, Level};
use crate::delivery::pagertree::{self, Endpoints};
use crate::ops::metrics::metrics;
use crate::ops::now_ns;
use crate::ops::redact;

mod held;
mod marks;

/// The database's file name under the data directory.
pub const DB_FILE: &str = "outbox.db";

/// Schema version (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    task            TEXT NOT NULL,
    node            TEXT NOT NULL,
    alert_id        TEXT NOT NULL,
    level           TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    url_override    TEXT,
    url             TEXT NOT NULL,
    format          TEXT NOT NULL,
    body            BLOB NOT NULL,
    created_ns      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    state           TEXT NOT NULL DEFAULT 'pending',
    next_attempt_ns INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq             INTEGER PRIMARY KEY,
    task            TEXT NOT NULL,
    node            TEXT NOT NULL,
    alert_id        TEXT NOT NULL,
    level           TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    url_override    TEXT,
    url             TEXT NOT NULL,
    format          TEXT NOT NULL,
    body            BLOB NOT NULL,
    created_ns      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    last_error      TEXT,
    reason          TEXT NOT NULL,
    dead_at_ns      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_state (
    task    TEXT NOT NULL,
    node    TEXT NOT NULL,
    id      TEXT NOT NULL,
    level   INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    PRIMARY KEY (task, node, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    task         TEXT NOT NULL,
    node         TEXT NOT NULL,
    edge         TEXT NOT NULL,
    marked_at_ns INTEGER NOT NULL,
    PRIMARY KEY (task, node)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revivals (
    task   TEXT PRIMARY KEY NOT NULL,
    state  TEXT NOT NULL,
    at_ns  INTEGER NOT NULL,
    detail TEXT NOT NULL
) WITHOUT ROWID;
";

const INSERT_ROW: &str = "INSERT INTO outbox (task, node, alert_id, level, endpoint, url_override, url, format, body, created_ns) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const UPSERT_STATE: &str = "INSERT OR REPLACE INTO alert_state (task, node, id, level, time_ns) VALUES (?1, ?2, ?3, ?4, ?5)";
const DELETE_STATE: &str = "DELETE FROM alert_state WHERE task = ?1 AND node = ?2 AND id = ?3";
const UPSERT_SESSION: &str =
    "INSERT OR REPLACE INTO sessions (task, node, edge, marked_at_ns) VALUES (?1, ?2, ?3, ?4)";
const DELETE_SESSION: &str = "DELETE FROM sessions WHERE task = ?1 AND node = ?2";

/// Inserts one outbox row with [`INSERT_ROW`].
fn insert_row(ins: &mut rusqlite::CachedStatement<'_>, row: &StoredRow) -> rusqlite::Result<usize> {
    ins.execute(params![
        row.task,
        row.node,
        row.alert_id,
        row.level,
        row.endpoint,
        row.url_override,
        row.url,
        row.format.as_str(),
        &row.body[..],
        row.created_ns,
    ])
}

/// Sets an alert's kept state: `None` (an OK) deletes it, else upserts.
fn put_state(
    up: &mut rusqlite::CachedStatement<'_>,
    del: &mut rusqlite::CachedStatement<'_>,
    (task, node, id): (&str, &str, &str),
    state: Option<StoredAlert>,
) -> rusqlite::Result<usize> {
    match state {
        Some(s) => up.execute(params![task, node, id, s.level as u8 as i64, s.time]),
        None => del.execute(params![task, node, id]),
    }
}

/// The state an event leaves its alert in: none after an OK.
fn state_of(e: &Event) -> Option<StoredAlert> {
    (e.level != Level::OK).then_some(StoredAlert {
        level: e.level,
        time: e.time,
    })
}

const ROW_COLUMNS: &str = "seq, task, node, alert_id, level, endpoint, url_override, url, format, body, created_ns, \
     attempts, state, next_attempt_ns, last_error";

/// An outbox failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the outbox database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "outbox database {path} has schema version {found}; this agent knows version {SCHEMA_VERSION}"
    )]
    Version { path: PathBuf, found: i64 },
    #[error("outbox: {what}: {source}")]
    Sql {
        what: &'static str,
        source: rusqlite::Error,
    },
}

/// A spill file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Spill(#[from] crate::delivery::spill::SpillError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> OutboxError {
    move |source| OutboxError::Sql { what, source }
}

/// One undelivered event as the dispatcher sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    /// Commit order; unique for good (AUTOINCREMENT never reuses a value).
    /// Rows only in memory (degraded mode) have negative numbers.
    pub seq: i64,
    pub task: String,
    pub node: String,
    pub alert_id: String,
    pub level: String,
    pub endpoint: String,
    pub url_override: Option<String>,
    /// The address at commit time: with `alert_id`, the per-alert order key.
    pub url: String,
    pub format: Format,
    pub body: Bytes,
    pub created_ns: i64,
    pub attempts: u32,
    pub parked: bool,
    pub next_attempt_ns: i64,
    pub last_error: Option<String>,
}

fn row_from_sql(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
    let format: String = r.get(8)?;
    let body: Vec<u8> = r.get(9)?;
    let state: String = r.get(12)?;
    Ok(StoredRow {
        seq: r.get(0)?,
        task: r.get(1)?,
        node: r.get(2)?,
        alert_id: r.get(3)?,
        level: r.get(4)?,
        endpoint: r.get(5)?,
        url_override: r.get(6)?,
        url: r.get(7)?,
        format: Format::parse(&format).unwrap_or_default(),
        body: Bytes::from(body),
        created_ns: r.get(10)?,
        attempts: r.get::<_, i64>(11)?.clamp(0, u32::MAX as i64) as u32,
        parked: state == "parked",
        next_attempt_ns: r.get(13)?,
        last_error: r.get(14)?,
    })
}

/// A session mark: Kapacitor has this (task, node) session open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMark {
    pub task: String,
    pub node: String,
    /// `stream` or `batch`.
    pub edge: String,
    pub marked_at_ns: i64,
}

/// One task's revival state, as recorded at the last start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevivalRow {
    pub task: String,
    /// `waiting`, `reconnected`, `revived`, `skipped`, `gave up`, `off`.
    pub state: String,
    pub at_ns: i64,
    pub detail: String,
}

/// Where a held (not deliverable now) event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldKind {
    Parked,
    DeadLetter,
}

impl HeldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HeldKind::Parked => "parked",
            HeldKind::DeadLetter => "dead-letter",
        }
    }
}

/// A pending event that failed transiently and waits for its next try
/// (`alerts` shows its alert as `retrying`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryingEvent {
    pub seq: i64,
    pub task: String,
    pub node: String,
    pub alert_id: String,
    pub last_error: String,
}

/// A parked or dead-lettered event, as `outbox list` shows it. The URL is
/// already redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldEvent {
    pub kind: HeldKind,
    pub seq: i64,
    pub task: String,
    pub node: String,
    pub alert_id: String,
    pub level: String,
    pub endpoint: String,
    pub url_redacted: String,
    pub format: String,
    pub created_ns: i64,
    pub attempts: i64,
    /// The last error (parked) or why it was moved (dead letter).
    pub reason: String,
    /// When it was moved to the dead-letter table.
    pub dead_at_ns: Option<i64>,
}

/// Which held events an `outbox retry|drop` acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Seqs(Vec<i64>),
}

impl Selection {
    fn matches(&self, seq: i64) -> bool {
        match self {
            Selection::All => true,
            Selection::Seqs(s) => s.contains(&seq),
        }
    }
}

/// Events kept in memory while the database cannot store them.
#[derive(Debug, Default)]
pub(crate) struct MemoryQueue {
    /// Events not yet in the database, in commit order, with the negative
    /// sequence numbers the dispatcher knows them by.
    pub(crate) rows: VecDeque<(StoredRow, Event)>,
    /// Sequence numbers the dispatcher delivered while they were in memory.
    pub(crate) delivered: std::collections::HashSet<i64>,
    next_seq: i64,
    /// Alert-state and session changes made while degraded (applied in
    /// memory on reads, written on recovery).
    state: HashMap<(String, String, String), Option<StoredAlert>>,
    sessions: HashMap<(String, String), Option<SessionMark>>,
}

/// The degraded reason shown while the outbox keeps failing for the reason
/// already kept.
const STILL_FAILING: &str = "still failing";

impl MemoryQueue {
    /// The rows not delivered yet, in commit order: what still has to be
    /// stored, delivered or spilled.
    pub(crate) fn undelivered(&self) -> impl Iterator<Item = &(StoredRow, Event)> {
        self.rows
            .iter()
            .filter(|(r, _)| !self.delivered.contains(&r.seq))
    }
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// The committer's connection (also session marks and admin writes).
    conn: Mutex<Connection>,
    /// Reads from other threads (alert-state loads at Init) never wait for a
    /// group commit's fsync.
    read: Mutex<Connection>,
    notify: Arc<Notify>,
    endpoints: RwLock<Arc<Endpoints>>,
    memory: Mutex<MemoryQueue>,
    memory_limit: usize,
    degraded: AtomicBool,
    last_degraded_log: Mutex<Option<Instant>>,
    /// Why the outbox went degraded (repeated in the rate-limited log line).
    degraded_why: Mutex<String>,
}

/// The durable outbox. Cheap to clone: every clone is the same database.
/// Give one clone to [`crate::alert::sink::spawn_sink`] (it is the
/// [`Committer`]), one to the sessions as their [`AlertStateStore`], one to
/// [`crate::delivery::dispatch::Dispatcher::spawn`].
#[derive(Debug, Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

/// Opens a connection with the agent's settings.
pub(crate) fn connect(path: &Path, full_sync: bool) -> Result<Connection, OutboxError> {
    let conn = Connection::open(path).map_err(|source| OutboxError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql("setting busy_timeout"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(sql("setting journal_mode=WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "outbox database is not in WAL mode");
    }
    // FULL: every commit is fsynced. The dispatcher's own connection uses
    // NORMAL: losing its last "delivered" marks to a power cut only means
    // sending those events again (at-least-once), never losing one.
    let sync = if full_sync { "FULL" } else { "NORMAL" };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA foreign_keys=OFF;"
    ))
    .map_err(sql("setting synchronous"))?;
    Ok(conn)
}

/// The database holds endpoint URLs and tokens: it is created 0640 (SQLite
/// gives its `-wal` and `-shm` the database's mode), and a database or
/// companion file left readable by others (an older version, a loose umask)
/// loses its group-write and other bits. Best effort: a failure shows at
/// open.
fn private_files(db: &Path) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(db);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(meta) = std::fs::metadata(&p) {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & !0o640 != 0 {
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o640));
            }
        }
    }
}

impl Outbox {
    /// Opens (creating if needed) `<data_dir>/outbox.db`.
    pub fn open(
        data_dir: &Path,
        endpoints: Endpoints,
        memory_queue: usize,
    ) -> Result<Outbox, OutboxError> {
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(data_dir)
                .map_err(|source| OutboxError::CreateDir {
                    path: data_dir.to_path_buf(),
                    source,
                })?;
        }
        let path = data_dir.join(DB_FILE);
        private_files(&path);
        let conn = connect(&path, true)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql("reading the schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(OutboxError::Version {
                path,
                found: version,
            });
        }
        conn.execute_batch(SCHEMA)
            .map_err(sql("creating the schema"))?;
        conn.execute_batch(&format!("PRAGMA user_version={SCHEMA_VERSION}"))
            .map_err(sql("writing the schema version"))?;
        let read = connect(&path, true)?;
        Ok(Outbox {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
                read: Mutex::new(read),
                notify: Arc::new(Notify::new()),
                endpoints: RwLock::new(Arc::new(endpoints)),
                memory: Mutex::new(MemoryQueue {
                    next_seq: -1,
                    ..MemoryQueue::default()
                }),
                memory_limit: memory_queue.max(1),
                degraded: AtomicBool::new(false),
                last_degraded_log: Mutex::new(None),
                degraded_why: Mutex::new(String::new()),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Notified after every commit: the dispatcher wakes on it.
    pub fn notifier(&self) -> Arc<Notify> {
        self.inner.notify.clone()
    }

    /// The endpoints as configured now.
    pub fn endpoints(&self) -> Arc<Endpoints> {
        self.inner
            .endpoints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the endpoints (a config reload): rows already stored use the
    /// new tokens, timeouts and addresses at their next attempt.
    pub fn set_endpoints(&self, endpoints: Endpoints) {
        *self
            .inner
            .endpoints
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(endpoints);
    }

    /// False while degraded (the database cannot store): `/readyz` fails.
    pub fn is_ready(&self) -> bool {
        !self.inner.degraded.load(Ordering::Relaxed)
    }

    /// Degraded mode: tries to write what waits in memory now (the
    /// dispatcher calls it every tick while degraded, so recovery does not
    /// wait for the next event). True when nothing waits in memory. Blocks
    /// on SQLite: call it off the async runtime.
    pub fn try_recover(&self) -> bool {
        if self.is_ready() {
            return true;
        }
        let mut conn = self.conn();
        self.flush_memory(&mut conn)
    }

    /// Events held only in memory (degraded mode) and not yet delivered:
    /// what a shutdown must store, deliver or spill.
    pub fn memory_only(&self) -> usize {
        self.memory().undelivered().count()
    }

    /// Shutdown, degraded: appends the events held only in memory (not
    /// delivered), then `later` (events a committer gave back, never
    /// stored: they come after), to the spill file `path`, and forgets the
    /// memory ones. Returns how many were written (0: nothing to write). On
    /// an error the memory ones stay in memory.
    pub fn spill(
        &self,
        path: &Path,
        later: &[Event],
    ) -> Result<usize, crate::delivery::spill::SpillError> {
        let mut mem = self.memory();
        let later = self.rows_of(later, now_ns());
        let lines: Vec<crate::delivery::spill::SpillLine> = mem
            .undelivered()
            .map(|(r, e)| (r, e.time))
            .chain(later.iter().map(|(r, e)| (r, e.time)))
            .map(|(r, time_ns)| crate::delivery::spill::SpillLine {
                task: r.task.clone(),
                node: r.node.clone(),
                alert_id: r.alert_id.clone(),
                level: r.level.clone(),
                endpoint: r.endpoint.clone(),
                url_override: r.url_override.clone(),
                url: r.url.clone(),
                format: r.format.as_str().to_string(),
                body: String::from_utf8_lossy(&r.body).into_owned(),
                created_ns: r.created_ns,
                time_ns,
            })
            .collect();
        if lines.is_empty() {
            return Ok(0);
        }
        crate::delivery::spill::write(path, &lines)?;
        mem.rows.clear();
        mem.delivered.clear();
        Ok(lines.len())
    }

    /// Last resort at shutdown (no spill file could be written): each event
    /// held only in memory, then each of `later` (as [`Self::spill`]), as
    /// one ERROR log line with its body.
    pub fn log_memory_only(&self, later: &[Event]) {
        let mem = self.memory();
        let later = self.rows_of(later, now_ns());
        for r in mem
            .undelivered()
            .map(|(r, _)| r)
            .chain(later.iter().map(|(r, _)| r))
        {
            tracing::error!(
                task = %r.task, node = %r.node, id = %r.alert_id, alert_level = %r.level,
                endpoint = %r.endpoint, format = r.format.as_str(), created_ns = r.created_ns,
                body = %String::from_utf8_lossy(&r.body),
                "event held only in memory at shutdown, not stored anywhere"
            );
        }
    }

    /// Tests only (`KAPACITOR_PAGERTREE_FAULT_OUTBOX_FULL`): the committer's
    /// connection may not grow the database past its size now, so the next
    /// commit gets `SQLITE_FULL` from SQLite, as on a full disk.
    pub fn fault_freeze_size(&self) {
        let conn = self.conn();
        let r = conn
            .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
            .and_then(|n| {
                conn.query_row(&format!("PRAGMA max_page_count = {n}"), [], |r| {
                    r.get::<_, i64>(0)
                })
            });
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot freeze the outbox size (fault hook)");
        }
    }

    /// Reads a spill file into the outbox: its events become pending rows
    /// (after every row stored now) and set the alert state, all in one
    /// transaction; the dispatcher is woken. All or nothing.
    pub fn import(&self, path: &Path) -> Result<usize, ImportError> {
        let lines = crate::delivery::spill::read(path)?;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("importing a spill file"))?;
        {
            let mut ins = tx
                .prepare_cached(INSERT_ROW)
                .map_err(sql("importing a spill file"))?;
            let mut up = tx
                .prepare_cached(UPSERT_STATE)
                .map_err(sql("importing a spill file"))?;
            let mut del = tx
                .prepare_cached(DELETE_STATE)
                .map_err(sql("importing a spill file"))?;
            for l in &lines {
                ins.execute(params![
                    l.task,
                    l.node,
                    l.alert_id,
                    l.level,
                    l.endpoint,
                    l.url_override,
                    l.url,
                    l.format,
                    l.body.as_bytes(),
                    l.created_ns,
                ])
                .map_err(sql("importing a spill file"))?;
                let state = Level::parse(&l.level)
                    .filter(|&level| level != Level::OK)
                    .map(|level| StoredAlert {
                        level,
                        time: l.time_ns,
                    });
                put_state(&mut up, &mut del, (&l.task, &l.node, &l.alert_id), state)
                    .map_err(sql("importing a spill file"))?;
            }
        }
        tx.commit().map_err(sql("importing a spill file"))?;
        drop(conn);
        metrics().outbox_depth.inc_by(lines.len() as i64);
        self.inner.notify.notify_one();
        Ok(lines.len())
    }

    pub(crate) fn memory(&self) -> std::sync::MutexGuard<'_, MemoryQueue> {
        self.inner.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.inner.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection for reads from other threads (the committer's own,
    /// [`Self::conn`], is held across each group commit and its fsync).
    pub(crate) fn read(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.inner.read.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a group in one transaction: the outbox rows and the alert
    /// state.
    fn write_group(conn: &mut Connection, rows: &[(StoredRow, &Event)]) -> rusqlite::Result<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut ins = tx.prepare_cached(INSERT_ROW)?;
            let mut up = tx.prepare_cached(UPSERT_STATE)?;
            let mut del = tx.prepare_cached(DELETE_STATE)?;
            for (row, e) in rows {
                insert_row(&mut ins, row)?;
                put_state(&mut up, &mut del, (&e.task, &e.node, &e.id), state_of(e))?;
            }
        }
        tx.commit()
    }

    /// The outbox rows of `events` (none for `dryRun` ones: see
    /// [`Self::log_dry_run`]).
    fn rows_of<'a>(&self, events: &'a [Event], created_ns: i64) -> Vec<(StoredRow, &'a Event)> {
        let endpoints = self.endpoints();
        let mut rows = Vec::with_capacity(events.len());
        for e in events.iter().filter(|e| !e.route.dry_run) {
            let target = endpoints.resolve(&e.route);
            let body = pagertree::body(e, target.format);
            rows.push((
                StoredRow {
                    seq: 0,
                    task: e.task.clone(),
                    node: e.node.clone(),
                    alert_id: e.id.clone(),
                    level: e.level.as_str().to_string(),
                    endpoint: target.endpoint,
                    url_override: target.url_override,
                    url: target.url,
                    format: target.format,
                    body: Bytes::from(body),
                    created_ns,
                    attempts: 0,
                    parked: false,
                    next_attempt_ns: 0,
                    last_error: None,
                },
                e,
            ));
        }
        rows
    }

    /// Degraded mode: tries to write what waits in memory (not yet
    /// delivered) and the state changes made meanwhile. True when the
    /// memory queue is empty afterwards.
    fn flush_memory(&self, conn: &mut Connection) -> bool {
        let mut mem = self.memory();
        if mem.rows.is_empty() && mem.state.is_empty() && mem.sessions.is_empty() {
            return true;
        }
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut ins = tx.prepare_cached(INSERT_ROW)?;
                for (row, _) in mem.undelivered() {
                    insert_row(&mut ins, row)?;
                }
                let mut up = tx.prepare_cached(UPSERT_STATE)?;
                let mut del = tx.prepare_cached(DELETE_STATE)?;
                for ((task, node, id), st) in &mem.state {
                    put_state(&mut up, &mut del, (task, node, id), *st)?;
                }
                for ((task, node), m) in &mem.sessions {
                    match m {
                        Some(m) => {
                            tx.execute(UPSERT_SESSION, params![task, node, m.edge, m.marked_at_ns])?
                        }
                        None => tx.execute(DELETE_SESSION, params![task, node])?,
                    };
                }
            }
            tx.commit()
        })();
        match result {
            Ok(()) => {
                // What was written: the delivered ones were not.
                let n = mem.undelivered().count();
                // The dispatcher forgets the memory copies and reads the rows
                // back from the database (with new sequence numbers).
                mem.rows.clear();
                mem.delivered.clear();
                mem.state.clear();
                mem.sessions.clear();
                drop(mem);
                self.set_degraded(false, None);
                tracing::warn!(
                    events = n,
                    "outbox recovered: events held in memory are stored again"
                );
                true
            }
            Err(_) => false,
        }
    }

    /// `why`: the storage error; `None` when the outbox is still failing
    /// for the reason already kept (the first error stays on display).
    fn set_degraded(&self, on: bool, why: Option<&str>) {
        let was = self.inner.degraded.swap(on, Ordering::Relaxed);
        metrics().degraded.set(on as i64);
        if on {
            let mut last = self
                .inner
                .last_degraded_log
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let mut kept = self
                .inner
                .degraded_why
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !was || kept.is_empty() || why.is_some() {
                *kept = why.unwrap_or(STILL_FAILING).to_string();
            }
            if !was || last.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                *last = Some(Instant::now());
                tracing::error!(
                    path = %self.inner.path.display(), error = %kept,
                    "DEGRADED: the outbox cannot store; events wait in memory and are still delivered from there"
                );
            }
        }
    }

    /// Degraded mode: keeps a group in memory, or refuses when full.
    /// `why` as for [`Self::set_degraded`].
    fn hold_in_memory(
        &self,
        rows: Vec<(StoredRow, &Event)>,
        why: Option<&str>,
    ) -> Result<(), CommitError> {
        let mut mem = self.memory();
        if mem.rows.len() + rows.len() > self.inner.memory_limit {
            return Err(CommitError {
                count: rows.len(),
                reason: format!(
                    "the outbox cannot store ({}) and the memory queue is full ({} events)",
                    why.unwrap_or(STILL_FAILING),
                    self.inner.memory_limit
                ),
            });
        }
        for (mut row, e) in rows {
            row.seq = mem.next_seq;
            mem.next_seq -= 1;
            mem.state
                .insert((e.task.clone(), e.node.clone(), e.id.clone()), state_of(e));
            mem.rows.push_back((row, e.clone()));
        }
        drop(mem);
        self.set_degraded(true, why);
        Ok(())
    }

    /// The open alerts of one node, including changes held in memory.
    fn load_state(
        &self,
        task: &str,
        node: &str,
    ) -> Result<HashMap<String, StoredAlert>, OutboxError> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, level, time_ns FROM alert_state WHERE task = ?1 AND node = ?2",
            )
            .map_err(sql("reading alert state"))?;
        let rows = stmt
            .query_map(params![task, node], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(sql("reading alert state"))?;
        let mut out = HashMap::new();
        for r in rows {
            let (id, level, time) = r.map_err(sql("reading alert state"))?;
            match Level::from_u8(level.clamp(0, 255) as u8) {
                Some(level) => {
                    out.insert(id, StoredAlert { level, time });
                }
                None => tracing::warn!(
                    task,
                    node,
                    id,
                    level,
                    "alert state row with an unknown level ignored"
                ),
            }
        }
        drop(stmt);
        drop(conn);
        let mem = self.memory();
        for ((t, n, id), st) in &mem.state {
            if t == task && n == node {
                match st {
                    Some(s) => out.insert(id.clone(), *s),
                    None => out.remove(id),
                };
            }
        }
        Ok(out)
    }

    /// Every open (non-OK) alert of every node, with changes held in memory:
    /// what the alerts view starts from after a restart. Ordered by task,
    /// node, id.
    pub fn open_alerts(&self) -> Result<Vec<(String, String, String, StoredAlert)>, OutboxError> {
        let conn = self.read();
        let mut stmt = conn
            .prepare("SELECT task, node, id, level, time_ns FROM alert_state")
            .map_err(sql("reading alert state"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(sql("reading alert state"))?;
        let mut all = std::collections::BTreeMap::new();
        for r in rows {
            let (task, node, id, level, time) = r.map_err(sql("reading alert state"))?;
            if let Some(level) = Level::from_u8(level.clamp(0, 255) as u8) {
                all.insert((task, node, id), StoredAlert { level, time });
            }
        }
        drop(stmt);
        drop(conn);
        let mem = self.memory();
        for (key, st) in &mem.state {
            match st {
                Some(s) => all.insert(key.clone(), *s),
                None => all.remove(key),
            };
        }
        Ok(all
            .into_iter()
            .filter(|(_, s)| s.level != Level::OK)
            .map(|((t, n, i), s)| (t, n, i, s))
            .collect())
    }
}

/// Errors that mean "the database cannot store" (degraded mode): a full,
/// read-only or failing disk, and a database file corrupted under the
/// running agent (issue 13, item 3: commits that fail forever must show in
/// `/readyz` and `degraded`, and their events must be held, delivered and,
/// at shutdown, spilled like any other degraded event).
pub(crate) fn is_storage_error(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => {
            matches!(
                f.code,
                DiskFull
                    | SystemIoFailure
                    | ReadOnly
                    | CannotOpen
                    | DatabaseBusy
                    | DatabaseLocked
                    | DatabaseCorrupt
                    | NotADatabase
            )
        }
        _ => false,
    }
}

/// A corrupt database (as opposed to a full or failing disk): the operator
/// must replace the file, which the log line says how to do.
fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

impl Committer for Outbox {
    fn commit(&mut self, events: &[Event]) -> Result<(), CommitError> {
        let r = self.commit_rows(events);
        if r.is_ok() {
            // Once per event: a failed commit is retried with the same group.
            self.log_dry_run(events);
        }
        r
    }
}

impl Outbox {
    /// The `dryRun` events of a committed group, one log line each.
    fn log_dry_run(&self, events: &[Event]) {
        let mut dry = events.iter().filter(|e| e.route.dry_run).peekable();
        if dry.peek().is_none() {
            return;
        }
        let endpoints = self.endpoints();
        for e in dry {
            let target = endpoints.resolve(&e.route);
            let body = pagertree::body(e, target.format);
            tracing::info!(
                target: "pagertree::dry_run",
                task = %e.task, node = %e.node, id = %e.id, alert_level = %e.level,
                endpoint = %target.endpoint, url = %redact::url(&target.url), format = target.format.as_str(),
                body = %String::from_utf8_lossy(&body).trim_end(),
                "dryRun: event not sent"
            );
        }
    }

    fn commit_rows(&mut self, events: &[Event]) -> Result<(), CommitError> {
        let rows = self.rows_of(events, now_ns());
        if rows.is_empty() {
            return Ok(());
        }
        let n = rows.len() as i64;
        let mut conn = self.conn();
        // While degraded, events must not overtake the ones held in memory.
        if !self.flush_memory(&mut conn) {
            drop(conn);
            let r = self.hold_in_memory(rows, None);
            self.inner.notify.notify_one();
            return r;
        }
        match Self::write_group(&mut conn, &rows) {
            Ok(()) => {
                drop(conn);
                metrics().outbox_depth.inc_by(n);
                self.inner.notify.notify_one();
                Ok(())
            }
            Err(e) if is_storage_error(&e) => {
                drop(conn);
                let why = if is_corruption(&e) {
                    format!(
                        "{e}: the database file is corrupt. Stop the agent (events held in memory then go to [delivery] spill_file), \
                         move {0} and its -wal/-shm aside, start it again (a new outbox is created and the spill file imported); \
                         `sqlite3 <old file> .recover` may save its undelivered rows",
                        self.inner.path.display()
                    )
                } else {
                    e.to_string()
                };
                let r = self.hold_in_memory(rows, Some(&why));
                self.inner.notify.notify_one();
                r
            }
            Err(e) => Err(CommitError {
                count: rows.len(),
                reason: format!("outbox {}: {e}", self.inner.path.display()),
            }),
        }
    }
}

impl AlertStateStore for Outbox {
    fn load(&self, task: &str, node: &str) -> Result<HashMap<String, StoredAlert>, StoreError> {
        self.load_state(task, node)
            .map_err(|e| StoreError(e.to_string()))
    }
}

/// Reads up to `limit` rows after `after_seq`, in order.
pub(crate) fn load_rows(
    conn: &Connection,
    after_seq: i64,
    limit: usize,
) -> rusqlite::Result<Vec<StoredRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after_seq, limit as i64], row_from_sql)?;
    rows.collect()
}

/// The current state of a row: `None` when it is gone (dropped).
pub(crate) fn row_state(conn: &Connection, seq: i64) -> rusqlite::Result<Option<(bool, i64)>> {
    conn.prepare_cached("SELECT state, next_attempt_ns FROM outbox WHERE seq = ?1")?
        .query_row(params![seq], |r| {
            Ok((r.get::<_, String>(0)? == "parked", r.get(1)?))
        })
        .optional()
}

#[cfg(test)]
mod tests;
