//! `serve`: the daemon's wiring, from a merged [`Config`] to a running agent
//! and back to exit 0 — data dir → delivery sink → node factory → the stream
//! and batch sockets → signals → graceful shutdown. Each piece lives in its
//! own module; this one only puts them together, in order.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::node::{AlertFactory, NodeEnv};
use crate::alert::store::MemoryStore;
use crate::alert::{Event, ServerInfo};
use crate::delivery::log_sink::LogCommitter;
use crate::delivery::{CommitError, Committer, Sink, spawn_sink};
use crate::ops::config::{Config, ConfigError};
use crate::proto::EdgeType;
use crate::udf::handler::HandlerFactory;
use crate::udf::server::{self, ServerError};
use crate::udf::session::{LogSessionEvents, SessionContext, SessionEvents, SessionSettings};

/// **For tests only**: milliseconds to wait before processing each data frame,
/// making every node slow on purpose (keepalive and backpressure tests). Read
/// once at start.
pub const ENV_FAULT_PROCESS_DELAY_MS: &str = "KAPACITOR_PAGERTREE_FAULT_PROCESS_DELAY_MS";
/// **For benchmarks only**: `1` discards events instead of logging them, so a
/// throughput run measures the protocol and the node, not the log.
pub const ENV_BENCH_DISCARD_EVENTS: &str = "KAPACITOR_PAGERTREE_BENCH_DISCARD_EVENTS";

/// Messages the delivery queue holds before `Sink::submit` waits.
const SINK_QUEUE: usize = 8192;
/// How long open sessions get, at shutdown, to finish what they read.
const SESSION_DRAIN_LIMIT: Duration = Duration::from_secs(10);

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
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("{name}={value:?} is not a number of milliseconds")]
    FaultHook { name: &'static str, value: String },
}

/// Test and benchmark hooks, from the environment (never from the config
/// file: they exist only so tests can make the agent misbehave).
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub fault_process_delay: Option<Duration>,
    pub discard_events: bool,
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
        Ok(Hooks {
            fault_process_delay,
            discard_events,
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

/// The delivery sink `serve` uses, with the alert store it feeds.
pub fn build_sink(hooks: &Hooks) -> (Sink, std::thread::JoinHandle<()>, MemoryStore) {
    let store = MemoryStore::new();
    let (sink, handle) = if hooks.discard_events {
        spawn_sink(DiscardCommitter, SINK_QUEUE)
    } else {
        spawn_sink(
            crate::ops::status::ViewingCommitter::new(LogCommitter::new(store.clone())),
            SINK_QUEUE,
        )
    };
    (sink, handle, store)
}

/// Runs the agent until SIGTERM or SIGINT (see [`serve_with`]): the alert
/// node behind both sockets, events to the log committer. `Ok` means exit 0.
pub async fn serve(config: Config) -> Result<(), AppError> {
    let hooks = Hooks::from_env()?;
    let (sink, committer, store) = build_sink(&hooks);
    let env = NodeEnv::new(
        Arc::new(config.clone()),
        Arc::new(store),
        server_info(&config),
    );
    let factory = Arc::new(AlertFactory::new(env));
    let result = serve_with(&config, factory, sink, &hooks, CancellationToken::new()).await;
    // Every Sink clone is gone once the sessions ended: the committer commits
    // what is queued and stops.
    let joined = tokio::task::spawn_blocking(move || committer.join());
    if tokio::time::timeout(SESSION_DRAIN_LIMIT, joined)
        .await
        .is_err()
    {
        tracing::warn!("the delivery committer did not stop in time; exiting anyway");
    }
    result
}

/// `.ServerInfo` for templates: the `[kapacitor]` values, else Kapacitor's
/// defaults (`localhost`, empty ids).
pub fn server_info(config: &Config) -> ServerInfo {
    let k = &config.kapacitor;
    let d = ServerInfo::default();
    ServerInfo {
        hostname: k.hostname.clone().unwrap_or(d.hostname),
        cluster_id: k.cluster_id.clone().unwrap_or(d.cluster_id),
        server_id: k.server_id.clone().unwrap_or(d.server_id),
    }
}

/// Runs the agent with `factory` until SIGTERM or SIGINT, then shuts down
/// gracefully: stop accepting, let sessions finish what they read, remove the
/// socket files, commit what was handed on. `Ok` means exit 0.
pub async fn serve_with(
    config: &Config,
    factory: Arc<dyn HandlerFactory>,
    sink: Sink,
    hooks: &Hooks,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    serve_with_events(
        config,
        factory,
        sink,
        Arc::new(LogSessionEvents),
        hooks,
        shutdown,
    )
    .await
}

/// [`serve_with`], with `events` receiving the life of every session (the
/// durable agent keeps session marks for restart safety).
pub async fn serve_with_events(
    config: &Config,
    factory: Arc<dyn HandlerFactory>,
    sink: Sink,
    events: Arc<dyn SessionEvents>,
    hooks: &Hooks,
    shutdown: CancellationToken,
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
    let settings = |edge| {
        let mut s = SessionSettings::new(edge, server_cfg.max_frame_bytes);
        s.fault_process_delay = hooks.fault_process_delay;
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
    let accept: Vec<_> = [
        (stream, settings(EdgeType::Stream)),
        (batch, settings(EdgeType::Batch)),
    ]
    .into_iter()
    .map(|(socket, settings)| {
        let (ctx, shutdown, tracker) = (ctx.clone(), shutdown.clone(), tracker.clone());
        tokio::spawn(async move {
            server::serve(&socket, settings, ctx, shutdown, tracker).await;
            // Removed as soon as we stop accepting, so a new agent can start.
            socket.remove_file();
            drop(socket);
        })
    })
    .collect();
    drop(ctx);

    wait_for_signal(&shutdown, || {
        // Both sockets listen and SIGTERM is handled: ready for /readyz and
        // for systemd (Type=notify).
        crate::ops::status::readiness().set_stream_listening(true);
        crate::ops::status::readiness().set_batch_listening(true);
        crate::ops::systemd::notify_ready(&stream_path, &batch_path);
    })
    .await?;
    crate::ops::systemd::notify_stopping();
    crate::ops::status::readiness().set_stream_listening(false);
    crate::ops::status::readiness().set_batch_listening(false);
    shutdown.cancel();
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
            "sessions still open after {SESSION_DRAIN_LIMIT:?}; exiting anyway"
        );
    }
    tracing::info!("kapacitor-pagertree stopped");
    Ok(())
}

/// Returns at SIGTERM or SIGINT, or when `shutdown` is cancelled by the caller.
/// `ready` runs once the handlers are installed (a SIGTERM right after
/// systemd's READY must be a graceful stop, not the default kill).
async fn wait_for_signal(
    shutdown: &CancellationToken,
    ready: impl FnOnce(),
) -> Result<(), AppError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(AppError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AppError::Signals)?;
    ready();
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        _ = shutdown.cancelled() => {}
    }
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
    async fn serve_with_stops_on_cancel_and_removes_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.data_dir = dir.path().join("data");
        let hooks = Hooks::default();
        let (sink, _committer, store) = build_sink(&hooks);
        let env = NodeEnv::new(
            Arc::new(config.clone()),
            Arc::new(store),
            ServerInfo::default(),
        );
        let shutdown = CancellationToken::new();
        let task = {
            let (config, shutdown) = (config.clone(), shutdown.clone());
            tokio::spawn(async move {
                serve_with(
                    &config,
                    Arc::new(AlertFactory::new(env)),
                    sink,
                    &Hooks::default(),
                    shutdown,
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
