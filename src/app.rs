//! The daemon assembled: [`run`] takes a merged [`Config`] and a root
//! [`CancellationToken`] and owns the start and stop order — data dir, local
//! HTTP API, delivery (outbox, committer, dispatcher), node factory, the
//! stream and batch sockets, then task revival (once they listen); then,
//! once the caller cancels the token (main does at SIGTERM/SIGINT):
//! revival and sessions, sink, committer, dispatcher grace, HTTP. Each
//! piece lives in its own module; this one only puts them together, in
//! order. It also builds the engine's values from the config
//! ([`destinations`], [`node_counters`], [`node_env`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::handler::HandlerFactory;
use crate::alert::node::{AlertFactory, NodeCounters, NodeEnv};
use crate::alert::sink::{CommitError, Committer, CommitterHandle, Sink, spawn_sink};
use crate::alert::store::{AlertStateStore, MemoryStore};
use crate::alert::{Destinations, Event, Level, ServerInfo};
use crate::delivery::log_sink::LogCommitter;
use crate::delivery::service::{Delivery, DeliveryError};
use crate::kapacitor::marks::OutboxSessionEvents;
use crate::kapacitor::revive;
use crate::kapacitor::server_info::KapacitorServerInfo;
use crate::ops::config::{Config, ConfigError, HttpAddr};
use crate::ops::metrics::{LevelLabel, metrics};
use crate::ops::systemd;
use crate::proto::EdgeType;
use crate::tools::http::{self, HttpError};
use crate::tools::status::{ViewingCommitter, alerts_view, readiness, watch_outbox};
use crate::udf::server::{self, ServerError};
use crate::udf::session::{LogSessionEvents, SessionContext, SessionEvents, SessionSettings};

/// **For tests only**: milliseconds to wait before processing each data frame,
/// making every node slow on purpose (keepalive and backpressure tests). Read
/// once at start.
pub const ENV_FAULT_PROCESS_DELAY_MS: &str = "KAPACITOR_PAGERTREE_FAULT_PROCESS_DELAY_MS";
/// **For benchmarks only**: `1` discards events instead of logging them, so a
/// throughput run measures the protocol and the node, not the log.
pub const ENV_BENCH_DISCARD_EVENTS: &str = "KAPACITOR_PAGERTREE_BENCH_DISCARD_EVENTS";

/// **For tests only**: `1` freezes the outbox database at its size at start
/// (SQLite's `max_page_count`), so every later commit fails with SQLite's own
/// `SQLITE_FULL` — the error a full disk gives — where a test cannot mount a
/// tiny tmpfs.
pub const ENV_FAULT_OUTBOX_FULL: &str = "KAPACITOR_PAGERTREE_FAULT_OUTBOX_FULL";

/// Messages the delivery queue holds before `Sink::submit` waits.
const SINK_QUEUE: usize = 8192;
/// How long open sessions get, at shutdown, to finish what they read.
const SESSION_DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// At shutdown, after the sessions: how long the committer gets to store
/// what they handed on (it normally needs a commit or two).
const COMMIT_LIMIT: Duration = Duration::from_secs(5);
/// After the drain limit, sessions still open have their writers cut (a
/// client that stopped reading); they get this long to commit and end.
const SESSION_CUT_LIMIT: Duration = Duration::from_secs(3);

/// Why the agent could not start (or stop cleanly).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("server.http_addr: {0}")]
    HttpAddr(String),
    #[error("cannot read the HTTP listener's address: {0}")]
    HttpLocalAddr(std::io::Error),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error("{name}={value:?} is not a number of milliseconds")]
    FaultHook { name: &'static str, value: String },
    #[error(
        "{count} event(s) held only in memory (the outbox could not store them) were written to the spill file {path}; the next start imports them (or: outbox import {path})"
    )]
    Spilled { count: usize, path: PathBuf },
    #[error(
        "{count} event(s) held only in memory (the outbox could not store them) could not be written anywhere ({reason}); each is logged above at ERROR with its body"
    )]
    Lost { count: usize, reason: String },
    #[error(
        "{count} event(s) handed to delivery were never committed: the committer did not finish within {limit:?} (see the errors above); they are lost"
    )]
    Uncommitted { count: usize, limit: Duration },
    #[error(
        "the shutdown task that stores or spills events held only in memory failed ({0}): those events (if any) may be lost"
    )]
    SettleFailed(String),
}

/// Test and benchmark hooks, from the environment (never from the config
/// file: they exist only so tests can make the agent misbehave).
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub fault_process_delay: Option<Duration>,
    pub discard_events: bool,
    pub fault_outbox_full: bool,
}

impl Hooks {
    pub fn from_env() -> Result<Hooks, AppError> {
        let fault_process_delay = match std::env::var(ENV_FAULT_PROCESS_DELAY_MS) {
            Ok(v) => {
                let ms: u64 = v.trim().parse().map_err(|_| AppError::FaultHook {
                    name: ENV_FAULT_PROCESS_DELAY_MS,
                    value: v.clone(),
                })?;
                tracing::warn!(
                    "{ENV_FAULT_PROCESS_DELAY_MS}={ms}: every data frame is delayed on purpose (tests only)"
                );
                Some(Duration::from_millis(ms))
            }
            Err(_) => None,
        };
        let discard_events = std::env::var(ENV_BENCH_DISCARD_EVENTS).is_ok_and(|v| v == "1");
        if discard_events {
            tracing::warn!(
                "{ENV_BENCH_DISCARD_EVENTS}=1: alert events are discarded (benchmarks only)"
            );
        }
        let fault_outbox_full = std::env::var(ENV_FAULT_OUTBOX_FULL).is_ok_and(|v| v == "1");
        if fault_outbox_full {
            tracing::warn!("{ENV_FAULT_OUTBOX_FULL}=1: the outbox cannot grow (tests only)");
        }
        Ok(Hooks {
            fault_process_delay,
            discard_events,
            fault_outbox_full,
        })
    }
}

/// Drops every event: the benchmark's sink.
struct DiscardCommitter;

impl Committer for DiscardCommitter {
    fn commit(&mut self, _events: &[Event]) -> Result<(), CommitError> {
        Ok(())
    }
}

/// The `kapacitor.conf` lines that point Kapacitor at these sockets.
pub fn kapacitor_conf_snippet(stream: &Path, batch: &Path) -> String {
    format!(
        "[udf]\n[udf.functions]\n  [udf.functions.pagertree]\n    socket = \"{}\"\n    timeout = \"10s\"\n  \
         [udf.functions.pagertreeBatch]\n    socket = \"{}\"\n    timeout = \"10s\"\n",
        stream.display(),
        batch.display()
    )
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The sink of the agent without delivery (benchmarks: discards; else the
/// log committer), with the alert store it feeds.
pub fn build_sink(hooks: &Hooks) -> (Sink, CommitterHandle, MemoryStore) {
    let store = MemoryStore::new();
    let (sink, handle) = if hooks.discard_events {
        spawn_sink(DiscardCommitter, SINK_QUEUE)
    } else {
        spawn_sink(
            ViewingCommitter::new(LogCommitter::new(store.clone())),
            SINK_QUEUE,
        )
    };
    (sink, handle, store)
}

/// Where events may go, as the engine needs to know it at Init: the
/// configured endpoints with their formats, and the default endpoint.
pub fn destinations(config: &Config) -> Destinations {
    Destinations {
        endpoints: config
            .endpoints
            .iter()
            .map(|(name, e)| (name.clone(), e.format.into()))
            .collect(),
        default_endpoint: config.delivery.default_endpoint.clone(),
    }
}

/// The engine's counters, as handles into the agent's metrics registry.
pub fn node_counters() -> NodeCounters {
    let m = metrics();
    NodeCounters {
        events: Level::ALL.map(|l| {
            m.events_total
                .get_or_create(&LevelLabel { level: l.as_str() })
                .clone()
        }),
        events_inhibited: m.events_inhibited_total.clone(),
        bad_levels: m.bad_levels_total.clone(),
        expression_errors: m.expression_errors_total.clone(),
    }
}

/// What the daemon's nodes share: destinations from `config`, the agent's
/// counters, `store` and a fixed `server_info`.
pub fn node_env(
    config: &Config,
    store: Arc<dyn AlertStateStore>,
    server_info: ServerInfo,
) -> NodeEnv {
    let mut env = NodeEnv::new(destinations(config), store, server_info);
    env.counters = node_counters();
    env
}

/// `.ServerInfo` for templates: the `[kapacitor]` values, else Kapacitor's
/// defaults (`localhost`, empty ids).
pub fn server_info(config: &Config) -> ServerInfo {
    crate::kapacitor::server_info::configured(&config.kapacitor, ServerInfo::default())
}

/// The engine the agent runs, with in-memory state and ServerInfo from the
/// config (else Kapacitor's defaults): for the offline tools (`simulate`).
pub fn offline_factory(config: &Config) -> AlertFactory {
    AlertFactory::new(node_env(
        config,
        Arc::new(MemoryStore::new()),
        server_info(config),
    ))
}

/// The daemon's node factory: ServerInfo from the config, else read once
/// from Kapacitor's API at the first Init and kept in data_dir.
pub fn daemon_factory(config: &Config, store: Arc<dyn AlertStateStore>) -> AlertFactory {
    let mut env = node_env(config, store, ServerInfo::default());
    env.server_info = Arc::new(KapacitorServerInfo::new(
        &config.kapacitor,
        &config.server.data_dir,
    ));
    AlertFactory::new(env)
}

/// Runs the agent until `shutdown` is cancelled, then stops it in order.
///
/// Start: the data dir, the local HTTP API (when `http_addr` is not off),
/// delivery (outbox, committer, dispatcher; for benchmarks only, a sink that
/// discards), the node factory, the two sockets; then readiness (`/readyz`,
/// systemd `READY=1`) and task revival (the previous process's marked
/// tasks, through Kapacitor's API). The caller installs its signal handlers
/// before calling, so a SIGTERM right after READY is a graceful stop.
///
/// Stop, once `shutdown` fires: revival stops where it is (marks kept); the
/// sessions (stop accepting, finish what
/// they read, drop their sinks), then the sink and its committer (commits
/// what is queued), then the dispatcher (its `shutdown_grace` for requests
/// on the wire), then the HTTP API and the outbox watcher. Each stage has its
/// own token, cancelled here in that order: a child of `shutdown` would fire
/// with it, all at once. `Ok` means exit 0.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    let hooks = Hooks::from_env()?;
    crate::ops::restrict_umask();
    std::fs::create_dir_all(&config.server.data_dir).map_err(|source| AppError::DataDir {
        path: config.server.data_dir.clone(),
        source,
    })?;
    let http_stop = CancellationToken::new();
    let addr_file = http::addr_file(&config.server.data_dir);
    let mut http_task = None;
    // A host name is resolved (blocking, once, at start).
    match crate::ops::run_blocking(|| config.server.http_listen()) {
        Ok(HttpAddr::Listen(addr)) => {
            let listener = http::bind(addr).await?;
            let bound = listener.local_addr().map_err(AppError::HttpLocalAddr)?;
            // `alerts` finds the agent here when http_addr has port 0.
            if let Err(e) = std::fs::write(&addr_file, format!("{bound}\n")) {
                tracing::warn!(error = %e, path = %addr_file.display(), "cannot record the HTTP address");
            }
            tracing::info!(addr = %bound, "HTTP listening: /metrics /healthz /readyz /api/v1/alerts");
            http_task = Some(tokio::spawn(http::serve_http(listener, http_stop.clone())));
        }
        Ok(HttpAddr::Off) => {
            let _ = std::fs::remove_file(&addr_file);
        }
        // Validated at load; unreachable in practice, refused all the same.
        Err(e) => return Err(AppError::HttpAddr(e)),
    }

    let result = if hooks.discard_events {
        // Benchmarks only: no outbox, no delivery.
        let (sink, committer, store) = build_sink(&hooks);
        let factory = daemon_factory(&config, Arc::new(store));
        let result = run_sessions(
            &config,
            Arc::new(factory),
            sink,
            Arc::new(LogSessionEvents),
            &hooks,
            shutdown,
            None,
        )
        .await;
        let _ = tokio::task::spawn_blocking(move || committer.join()).await;
        result
    } else {
        run_durable(&config, &hooks, shutdown, &http_stop).await
    };
    http_stop.cancel();
    if let Some(t) = http_task {
        let _ = t.await;
    }
    let _ = std::fs::remove_file(&addr_file);
    result
}

/// The durable path: sessions → committer (group commit into the outbox,
/// alert state in the same transaction) → dispatcher → PagerTree.
async fn run_durable(
    config: &Config,
    hooks: &Hooks,
    shutdown: CancellationToken,
    watch_stop: &CancellationToken,
) -> Result<(), AppError> {
    // Session marks older than this are the previous agent process's.
    let started_ns = crate::ops::now_ns();
    let delivery = Delivery::start_with(config, &CancellationToken::new(), |outbox| {
        ViewingCommitter::new(outbox).logging()
    })?;
    let outbox = delivery.outbox().clone();
    tracing::info!(path = %outbox.path().display(), "outbox open");
    import_spill(&outbox, &config.delivery.spill_file).await;
    if hooks.fault_outbox_full {
        outbox.fault_freeze_size();
    }
    // The alerts view starts from the kept alert state, not empty: an alert
    // open before a restart is listed before its next event.
    match outbox.open_alerts() {
        Ok(open) => {
            tracing::info!(open = open.len(), "open alerts restored from the outbox");
            alerts_view().seed(open);
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the kept alert state; `alerts` shows only alerts with a new event")
        }
    }
    let watcher = tokio::spawn(watch_outbox(outbox.clone(), watch_stop.clone()));
    // Task revival (docs/architecture.md, *Restarts*): the tasks whose
    // sessions were open when the previous agent process stopped, read
    // before the sockets listen; every Init of this run is reported to it;
    // it starts once both sockets listen and stops with the sessions.
    let plans = match outbox.marked_sessions() {
        Ok(marks) => revive::plan(marks.iter().map(|m| (m.task.as_str(), m.node.as_str()))),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the session marks: no task is revived after this start");
            vec![]
        }
    };
    if let Err(e) = outbox.clear_revivals() {
        tracing::warn!(error = %e, "cannot clear the last start's revival states; `tasks` may show old ones");
    }
    let arrivals = Arc::new(revive::Arrivals::new(plans.iter().map(|p| p.task.clone())));
    let (listening, listening_rx) = tokio::sync::oneshot::channel();
    let revival = tokio::spawn({
        let (kapacitor, outbox, arrivals) =
            (config.kapacitor.clone(), outbox.clone(), arrivals.clone());
        let shutdown = shutdown.clone();
        async move {
            if listening_rx.await.is_ok() {
                revive::run(kapacitor, outbox, arrivals, plans, started_ns, shutdown).await;
            }
        }
    });
    let factory = daemon_factory(config, delivery.store());
    let events = Arc::new(OutboxSessionEvents::new(outbox.clone()).with_arrivals(arrivals));
    let result = run_sessions(
        config,
        Arc::new(factory),
        delivery.sink(),
        events,
        hooks,
        shutdown,
        Some(listening),
    )
    .await;
    // Revival stopped with `shutdown` (or never started: no socket).
    let _ = revival.await;
    // Every Sink clone is gone with the sessions: the committer commits what
    // is queued and ends (or, its commits still failing at COMMIT_LIMIT,
    // gives its events back); then the dispatcher gets shutdown_grace for
    // requests on the wire. What is not delivered stays in the outbox.
    let unfinished = delivery.shutdown(COMMIT_LIMIT).await;
    watch_stop.cancel();
    let _ = watcher.await;
    let settled = settle_memory(
        outbox,
        config.delivery.spill_file.clone(),
        unfinished.events,
    )
    .await;
    if unfinished.stranded > 0 {
        tracing::error!(
            events = unfinished.stranded,
            "events handed to delivery were never committed (the committer did not finish): they are lost"
        );
        return result.and(settled).and(Err(AppError::Uncommitted {
            count: unfinished.stranded,
            limit: COMMIT_LIMIT,
        }));
    }
    result.and(settled)
}

/// At start: a spill file left by a degraded shutdown goes into the outbox
/// (then is removed); a failure is logged and the file kept for the next try.
async fn import_spill(outbox: &crate::delivery::outbox::Outbox, path: &Path) {
    if !path.exists() {
        return;
    }
    let (ob, p) = (outbox.clone(), path.to_path_buf());
    let imported = tokio::task::spawn_blocking(move || ob.import(&p)).await;
    match imported {
        Ok(Ok(n)) => {
            tracing::warn!(events = n, path = %path.display(), "events spilled at the last shutdown imported into the outbox");
            if let Err(e) = std::fs::remove_file(path) {
                tracing::error!(error = %e, path = %path.display(), "cannot remove the imported spill file: remove it by hand, or its events are imported again at the next start");
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, path = %path.display(), "cannot import the spill file; it is kept and tried again at the next start (or: outbox import)")
        }
        Err(e) => tracing::error!(error = %e, "the spill import task failed"),
    }
}

/// At shutdown, after the dispatcher's grace: events still held only in
/// memory (degraded), then `given_back` (events a committer that gave up
/// never stored; they are newer), go to the outbox if it stores again, else
/// to the spill file, else to the log line by line. Anything but the outbox
/// is an ERROR and a non-zero exit: never a silent loss.
async fn settle_memory(
    outbox: crate::delivery::outbox::Outbox,
    spill: PathBuf,
    given_back: Vec<crate::alert::Event>,
) -> Result<(), AppError> {
    let settled = tokio::task::spawn_blocking(move || {
        let held = outbox.memory_only();
        if held == 0 && given_back.is_empty() {
            return Ok(());
        }
        if outbox.try_recover()
            && outbox.memory_only() == 0
            && (given_back.is_empty() || outbox.clone().commit(&given_back).is_ok())
        {
            tracing::warn!(
                events = held + given_back.len(),
                "events held in memory stored in the outbox at shutdown"
            );
            return Ok(());
        }
        match outbox.spill(&spill, &given_back) {
            // Only dryRun events were given back: nothing to keep.
            Ok(0) => Ok(()),
            Ok(count) => {
                tracing::error!(
                    events = count, path = %spill.display(),
                    "events held only in memory written to the spill file: the next start imports them"
                );
                Err(AppError::Spilled { count, path: spill })
            }
            Err(e) => {
                let count = outbox.memory_only() + given_back.len();
                outbox.log_memory_only(&given_back);
                tracing::error!(events = count, error = %e, "events held only in memory could not be stored or spilled: they are in the log lines above only");
                Err(AppError::Lost {
                    count,
                    reason: e.to_string(),
                })
            }
        }
    })
    .await;
    settled.unwrap_or_else(|e| Err(AppError::SettleFailed(e.to_string())))
}

/// Serves `factory` on the stream and batch sockets until `shutdown`, then
/// stops gracefully: stop accepting, let sessions finish what they read,
/// remove the socket files. `events` receives the life of every session
/// (the durable agent keeps session marks for restart safety); `listening`
/// is told once both sockets listen (task revival starts then).
pub async fn run_sessions(
    config: &Config,
    factory: Arc<dyn HandlerFactory>,
    sink: Sink,
    events: Arc<dyn SessionEvents>,
    hooks: &Hooks,
    shutdown: CancellationToken,
    listening: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), AppError> {
    let server_cfg = &config.server;
    let mode = server_cfg.socket_mode_bits()?;
    std::fs::create_dir_all(&server_cfg.data_dir).map_err(|source| AppError::DataDir {
        path: server_cfg.data_dir.clone(),
        source,
    })?;
    let stream_path = absolute(&server_cfg.stream_socket_path());
    let batch_path = absolute(&server_cfg.batch_socket_path());
    let stream = server::bind(
        &stream_path,
        EdgeType::Stream,
        mode,
        &server_cfg.socket_group,
    )?;
    let batch = server::bind(&batch_path, EdgeType::Batch, mode, &server_cfg.socket_group)?;

    let ctx = Arc::new(SessionContext {
        factory,
        sink,
        events,
    });
    let cut = CancellationToken::new();
    let settings = |edge| {
        let mut s = SessionSettings::new(edge, server_cfg.max_frame_bytes);
        s.fault_process_delay = hooks.fault_process_delay;
        s.cut = cut.clone();
        s
    };

    tracing::info!(
        stream_socket = %stream_path.display(),
        batch_socket = %batch_path.display(),
        data_dir = %absolute(&server_cfg.data_dir).display(),
        "kapacitor-pagertree {} listening", env!("CARGO_PKG_VERSION")
    );
    // Under JSON logs (the journal) every line must be JSON: the snippet is a
    // log event there, plain text otherwise.
    if crate::ops::logging::json() {
        tracing::info!(
            kapacitor_conf = %kapacitor_conf_snippet(&stream_path, &batch_path),
            "point Kapacitor at this agent with these kapacitor.conf lines, then restart Kapacitor"
        );
    } else {
        eprintln!(
            "kapacitor-pagertree is listening.\n  stream socket: {}\n  batch socket:  {}\n  data dir:      {}\n\
         Point Kapacitor at it with these kapacitor.conf lines, then restart Kapacitor:\n\n{}",
            stream_path.display(),
            batch_path.display(),
            absolute(&server_cfg.data_dir).display(),
            kapacitor_conf_snippet(&stream_path, &batch_path)
        );
    }

    let tracker = TaskTracker::new();
    let limit = server::ConnectionLimit::new(server_cfg.max_connections, |open, max| {
        readiness().set_connections(open, max)
    });
    let accept: Vec<_> = [
        (stream, settings(EdgeType::Stream)),
        (batch, settings(EdgeType::Batch)),
    ]
    .into_iter()
    .map(|(socket, settings)| {
        let (ctx, shutdown, tracker) = (ctx.clone(), shutdown.clone(), tracker.clone());
        let limit = limit.clone();
        tokio::spawn(async move {
            server::accept_sessions(&socket, settings, ctx, limit, shutdown, tracker).await;
            // Removed as soon as we stop accepting, so a new agent can start.
            socket.remove_file();
            drop(socket);
        })
    })
    .collect();
    drop(ctx);

    // Both sockets listen (and the caller handles SIGTERM): ready for
    // /readyz and for systemd (Type=notify).
    readiness().set_stream_listening(true);
    readiness().set_batch_listening(true);
    systemd::notify_ready(&stream_path, &batch_path);
    if let Some(l) = listening {
        let _ = l.send(());
    }
    shutdown.cancelled().await;
    systemd::notify_stopping();
    readiness().set_stream_listening(false);
    readiness().set_batch_listening(false);
    for a in accept {
        let _ = a.await;
    }
    tracker.close();
    if tokio::time::timeout(SESSION_DRAIN_LIMIT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tracker.len(),
            "sessions still open after {SESSION_DRAIN_LIMIT:?} (a client that stopped reading?): cutting their writers; what they read is still committed"
        );
        cut.cancel();
        if tokio::time::timeout(SESSION_CUT_LIMIT, tracker.wait())
            .await
            .is_err()
        {
            tracing::error!(
                open = tracker.len(),
                "sessions still open after their writers were cut (the outbox cannot take their events?); stopping without them"
            );
        }
    }
    tracing::info!("kapacitor-pagertree stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_names_both_functions_and_sockets() {
        let s = kapacitor_conf_snippet(
            Path::new("/run/k/stream.sock"),
            Path::new("/run/k/batch.sock"),
        );
        assert!(s.contains("[udf.functions.pagertree]\n    socket = \"/run/k/stream.sock\"\n    timeout = \"10s\""), "{s}");
        assert!(
            s.contains("[udf.functions.pagertreeBatch]\n    socket = \"/run/k/batch.sock\""),
            "{s}"
        );
        // It is valid TOML, as kapacitor.conf is.
        let v: toml::Value = toml::from_str(&s).unwrap();
        assert_eq!(
            v["udf"]["functions"]["pagertreeBatch"]["timeout"].as_str(),
            Some("10s")
        );
    }

    #[test]
    fn server_info_prefers_config_values() {
        let mut c = Config::default();
        assert_eq!(server_info(&c), ServerInfo::default());
        c.kapacitor.hostname = Some("kap1".into());
        c.kapacitor.cluster_id = Some("c-1".into());
        let si = server_info(&c);
        assert_eq!(
            (
                si.hostname.as_str(),
                si.cluster_id.as_str(),
                si.server_id.as_str()
            ),
            ("kap1", "c-1", "")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_sessions_stops_on_cancel_and_removes_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.data_dir = dir.path().join("data");
        let hooks = Hooks::default();
        let (sink, _committer, store) = build_sink(&hooks);
        let env = node_env(&config, Arc::new(store), ServerInfo::default());
        let shutdown = CancellationToken::new();
        let task = {
            let (config, shutdown) = (config.clone(), shutdown.clone());
            tokio::spawn(async move {
                run_sessions(
                    &config,
                    Arc::new(AlertFactory::new(env)),
                    sink,
                    Arc::new(LogSessionEvents),
                    &Hooks::default(),
                    shutdown,
                    None,
                )
                .await
            })
        };
        let stream = config.server.stream_socket_path();
        let start = std::time::Instant::now();
        while tokio::net::UnixStream::connect(&stream).await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(config.server.batch_socket_path().exists());
        shutdown.cancel();
        task.await.unwrap().unwrap();
        assert!(!stream.exists());
        assert!(!config.server.batch_socket_path().exists());
    }
}
