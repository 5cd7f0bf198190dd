//! The stream and batch Unix sockets: binding them safely (a stale file left
//! by a crash is removed, a live agent is never displaced), their file mode and
//! group (Kapacitor runs as its own user), and the accept loop — one isolated
//! task per connection, bounded, shutdown-aware.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ops::metrics::{EdgeLabel, metrics};
use crate::proto::EdgeType;
use crate::udf::session::{self, SessionContext, SessionSettings, edge_name};

/// How often at most the "connection refused" WARN line is written while
/// connections are refused at the limit (the line counts the refusals).
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

/// `server.max_connections`: the connections served at once on both sockets
/// together. Beyond it a new connection is closed at once (Kapacitor logs
/// the task's error and retries), counted in `connections_refused_total`,
/// logged (at most once per [`REFUSED_LOG_EVERY`]) and shown by `/readyz`.
pub struct ConnectionLimit {
    max: usize,
    state: Mutex<LimitState>,
    /// Told (open, max) after every change, under the lock (so the last
    /// call is the current count): the caller's readiness report.
    on_change: Box<dyn Fn(usize, usize) + Send + Sync>,
}

impl std::fmt::Debug for ConnectionLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLimit")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct LimitState {
    open: usize,
    /// Refusals not yet reported in a log line, and when the last line was.
    unreported: u64,
    last_log: Option<Instant>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionPermit {
    limit: Arc<ConnectionLimit>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut st = self.limit.lock();
        st.open = st.open.saturating_sub(1);
        (self.limit.on_change)(st.open, self.limit.max);
    }
}

impl ConnectionLimit {
    /// `on_change` is told (open, max) now and after every change.
    pub fn new(max: usize, on_change: impl Fn(usize, usize) + Send + Sync + 'static) -> Arc<Self> {
        on_change(0, max);
        Arc::new(Self {
            max,
            state: Mutex::new(LimitState::default()),
            on_change: Box::new(on_change),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimitState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more connection, or `None` at the limit (the refusal
    /// is counted, and logged when the last line is old enough).
    pub fn try_admit(self: &Arc<Self>, edge: &'static str) -> Option<ConnectionPermit> {
        let mut st = self.lock();
        if st.open < self.max {
            st.open += 1;
            (self.on_change)(st.open, self.max);
            return Some(ConnectionPermit {
                limit: Arc::clone(self),
            });
        }
        st.unreported += 1;
        metrics()
            .connections_refused_total
            .get_or_create(&EdgeLabel { edge })
            .inc();
        let now = Instant::now();
        if st
            .last_log
            .is_none_or(|t| now.duration_since(t) >= REFUSED_LOG_EVERY)
        {
            tracing::warn!(
                edge,
                open = st.open,
                refused = st.unreported,
                "connection refused: server.max_connections ({}) connections are open; \
                 closed {} new connection(s) since the last such line (raise \
                 server.max_connections if Kapacitor really runs this many nodes)",
                self.max,
                st.unreported
            );
            st.unreported = 0;
            st.last_log = Some(now);
        }
        None
    }
}

/// Why a socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "another agent is already listening on {path}: stop it first, or give this one its own \
         --data-dir / --stream-socket / --batch-socket"
    )]
    InUse { path: PathBuf },
    #[error(
        "{path} exists and is not a socket; refusing to remove it (choose another socket path)"
    )]
    NotASocket { path: PathBuf },
    #[error("cannot remove the stale socket file {path}: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("cannot create the socket directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot set mode {mode:04o} on {path}: {source}")]
    Chmod {
        path: PathBuf,
        mode: u32,
        source: io::Error,
    },
    #[error("server.socket_group: no group named {group:?} on this machine")]
    UnknownGroup { group: String },
    #[error(
        "cannot give {path} to group {group:?}: {source} (is the agent a member of that group?)"
    )]
    Chown {
        path: PathBuf,
        group: String,
        source: io::Error,
    },
}

/// A bound socket; the file is removed when it is dropped (if it is still ours).
#[derive(Debug)]
pub struct BoundSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
    pub edge: EdgeType,
    /// (device, inode) of the file we created: we never remove another's.
    identity: (u64, u64),
}

impl BoundSocket {
    /// Removes the socket file if it is still the one this agent created.
    pub fn remove_file(&self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && (m.dev(), m.ino()) == self.identity
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the socket file");
        }
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        self.remove_file();
    }
}

/// Binds `path` for `edge`: removes a stale socket file nobody listens on,
/// refuses if another agent listens, then applies mode and group.
/// Must run inside a tokio runtime.
pub fn bind(
    path: &Path,
    edge: EdgeType,
    mode: u32,
    group: &str,
) -> Result<BoundSocket, ServerError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    remove_stale(path)?;
    let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        ServerError::Chmod {
            path: path.to_path_buf(),
            mode,
            source,
        }
    })?;
    let stat = || {
        std::fs::symlink_metadata(path).map_err(|source| ServerError::Bind {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut m = stat()?;
    // chown only when the group is not already right. Under the shipped unit
    // (Group=kapacitor) the socket is created in that group, and the unit's
    // SystemCallFilter=~@privileged forbids chown: calling it anyway would
    // fail (or, without SystemCallErrorNumber=, kill the agent at start).
    if !group.is_empty() {
        let gid = lookup_group(group)?;
        if m.gid() != gid {
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(|source| {
                ServerError::Chown {
                    path: path.to_path_buf(),
                    group: group.to_string(),
                    source,
                }
            })?;
            m = stat()?;
        }
    }
    Ok(BoundSocket {
        listener,
        path: path.to_path_buf(),
        edge,
        identity: (m.dev(), m.ino()),
    })
}

/// A socket file left by a crash would make `bind` fail: remove it, but only
/// if it is a socket and nobody answers on it.
fn remove_stale(path: &Path) -> Result<(), ServerError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ServerError::Bind {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ServerError::InUse {
            path: path.to_path_buf(),
        }),
        Err(e)
            if e.kind() == io::ErrorKind::ConnectionRefused
                || e.kind() == io::ErrorKind::NotFound =>
        {
            tracing::info!(path = %path.display(), "removing a stale socket file (nobody listens on it)");
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(ServerError::RemoveStale {
                    path: path.to_path_buf(),
                    source,
                }),
            }
        }
        // Permission denied and the like: not ours to judge or remove.
        Err(source) => Err(ServerError::RemoveStale {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A group name (or a numeric gid) to a gid.
pub fn lookup_group(group: &str) -> Result<u32, ServerError> {
    crate::ops::lookup_group(group).ok_or_else(|| ServerError::UnknownGroup {
        group: group.to_string(),
    })
}

/// Accepts connections on `socket` until `shutdown`, each served by its own
/// session task (tracked by `tracker`, so shutdown can wait for them), as
/// long as `limit` has room; beyond it a connection is closed at once.
pub async fn accept_sessions(
    socket: &BoundSocket,
    settings: SessionSettings,
    ctx: Arc<SessionContext>,
    limit: Arc<ConnectionLimit>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let edge = edge_name(socket.edge);
    let label = EdgeLabel { edge };
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = socket.listener.accept() => match a {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    tracing::error!(edge, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(permit) = limit.try_admit(edge) else {
            drop(stream);
            continue;
        };
        metrics().connections_total.get_or_create(&label).inc();
        let open = metrics().connections_open.get_or_create(&label).clone();
        open.inc();
        let id = session::next_session_id();
        tracing::debug!(session = id, edge, "connection accepted");
        let (r, w) = stream.into_split();
        let (settings, ctx, shutdown) = (settings.clone(), ctx.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _permit = permit;
            session::run(id, r, w, settings, ctx, shutdown).await;
            open.dec();
        });
    }
    tracing::info!(edge, path = %socket.path.display(), "stopped accepting connections");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_socket_is_replaced_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // A stale socket: bound then the listener dropped without removing the file.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let a = bind(&path, EdgeType::Stream, 0o660, "").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o660);
        // A live one is refused, and left alone.
        let err = bind(&path, EdgeType::Stream, 0o660, "").unwrap_err();
        assert!(matches!(err, ServerError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("already listening"));
        drop(a);
        assert!(!path.exists(), "the socket file is removed on drop");
    }

    #[test]
    fn the_limit_admits_refuses_and_reports() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let seen = Arc::new(AtomicUsize::new(usize::MAX));
        let s = seen.clone();
        let limit = ConnectionLimit::new(2, move |open, _| s.store(open, Ordering::SeqCst));
        assert_eq!(seen.load(Ordering::SeqCst), 0);
        let a = limit.try_admit("stream").unwrap();
        let b = limit.try_admit("batch").unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        assert!(limit.try_admit("stream").is_none());
        drop(a);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        let _c = limit.try_admit("stream").unwrap();
        drop(b);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_regular_file_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        std::fs::write(&path, "data").unwrap();
        assert!(matches!(
            bind(&path, EdgeType::Stream, 0o660, ""),
            Err(ServerError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }

    #[tokio::test]
    async fn group_by_name_or_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // Our own primary group is always allowed.
        let gid = unsafe { libc::getegid() };
        let s = bind(&path, EdgeType::Batch, 0o600, &gid.to_string()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().gid(), gid);
        drop(s);
        assert!(matches!(
            lookup_group("no-such-group-xyz"),
            Err(ServerError::UnknownGroup { .. })
        ));
        assert_eq!(lookup_group("root").unwrap(), 0);
    }
}
