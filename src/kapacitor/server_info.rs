//! `.ServerInfo` for templates, resolved once per agent (docs/config.md,
//! `[kapacitor]`): values set in the config win; otherwise the agent reads
//! them from Kapacitor's API (`GET /kapacitor/v1/debug/vars`, top-level
//! `host`, `cluster_id`, `server_id`) when the first Init arrives — Kapacitor
//! is certainly up then — and keeps them in `data_dir/server_info.json` for
//! good, so alert ids built from them never change. When that read fails,
//! Kapacitor's defaults (`localhost`, empty ids) hold for this run only,
//! with a warning that says to set them in `[kapacitor]`.
//!
//! This module owns that resolution: the provider the nodes read
//! ([`KapacitorServerInfo`]), the persisted file, and the read itself through
//! the API client ([`crate::kapacitor::client`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::alert::ServerInfo;
use crate::alert::node::ServerInfoProvider;
use crate::kapacitor::client::{ApiError, KapacitorClient};
use crate::ops::config::KapacitorConfig;
use crate::ops::redact;

/// The file in `data_dir` that keeps the values read from Kapacitor.
pub const FILE_NAME: &str = "server_info.json";
/// Kapacitor's expvar endpoint.
pub const VARS_PATH: &str = "/kapacitor/v1/debug/vars";
/// The whole read (connect, answer, body) gets this long: an Init waits for
/// it once per agent, and Kapacitor times a UDF out after its `timeout`.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Why `.ServerInfo` could not be read from Kapacitor (or kept).
#[derive(Debug, thiserror::Error)]
pub enum ServerInfoError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("GET {url}: the answer is not a JSON object: {source}")]
    Json {
        url: String,
        source: serde_json::Error,
    },
    #[error("GET {url}: the answer has no string {key:?}")]
    MissingKey { url: String, key: &'static str },
    #[error("cannot run the request: {0}")]
    Runtime(std::io::Error),
    #[error("the request thread panicked")]
    Panicked,
    #[error("cannot keep the values in {path}: {source}")]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The provider the agent hands its nodes: resolves on the first call, then
/// answers from memory. Concurrent first calls wait for the same read.
#[derive(Debug)]
pub struct KapacitorServerInfo {
    config: KapacitorConfig,
    data_dir: PathBuf,
    timeout: Duration,
    resolved: OnceLock<ServerInfo>,
}

impl KapacitorServerInfo {
    pub fn new(config: &KapacitorConfig, data_dir: &Path) -> Self {
        Self {
            config: config.clone(),
            data_dir: data_dir.to_path_buf(),
            timeout: FETCH_TIMEOUT,
            resolved: OnceLock::new(),
        }
    }

    /// The values the config sets, complete: nothing to read.
    fn config_complete(&self) -> Option<ServerInfo> {
        let k = &self.config;
        Some(ServerInfo {
            hostname: k.hostname.clone()?,
            cluster_id: k.cluster_id.clone()?,
            server_id: k.server_id.clone()?,
        })
    }

    fn with_config(&self, base: ServerInfo) -> ServerInfo {
        configured(&self.config, base)
    }

    fn resolve(&self) -> ServerInfo {
        if let Some(si) = self.config_complete() {
            return si;
        }
        let path = self.data_dir.join(FILE_NAME);
        match load(&path) {
            Ok(Some(si)) => return self.with_config(si),
            Ok(None) => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e,
                "cannot read the kept ServerInfo; reading it from Kapacitor again"),
        }
        let url = vars_url(&self.config.url);
        match fetch_blocking(&self.config, self.timeout) {
            Ok(si) => {
                match persist(&path, &si) {
                    Ok(()) => tracing::info!(
                        hostname = %si.hostname, cluster_id = %si.cluster_id, server_id = %si.server_id,
                        url = %redact::url(&url),
                        "ServerInfo read from Kapacitor; kept in {} for good", path.display()
                    ),
                    Err(e) => tracing::warn!(
                        hostname = %si.hostname, cluster_id = %si.cluster_id, server_id = %si.server_id,
                        url = %redact::url(&url), error = %e,
                        "ServerInfo read from Kapacitor but not kept: it is used for this run only"
                    ),
                }
                self.with_config(si)
            }
            Err(e) => {
                tracing::warn!(
                    error = %redact::text(&e.to_string(), &self.secrets()),
                    "cannot read ServerInfo from Kapacitor: for what [kapacitor] does not set, using \
                     Kapacitor's defaults (hostname \"localhost\", empty cluster/server ids) for this \
                     run only. Set hostname, cluster_id and server_id in [kapacitor] so alert ids \
                     built from .ServerInfo never change"
                );
                self.with_config(ServerInfo::default())
            }
        }
    }

    fn secrets(&self) -> [&str; 2] {
        [&self.config.password, &self.config.shared_secret]
    }
}

impl ServerInfoProvider for KapacitorServerInfo {
    fn server_info(&self) -> ServerInfo {
        if let Some(si) = self.resolved.get() {
            return si.clone();
        }
        // The first Init (and any arriving meanwhile) waits, off the
        // runtime's scheduling where it can: at most `timeout`, once.
        crate::ops::run_blocking(|| self.resolved.get_or_init(|| self.resolve()).clone())
    }
}

/// The `[kapacitor]` values over `base`, field by field.
pub fn configured(k: &KapacitorConfig, base: ServerInfo) -> ServerInfo {
    ServerInfo {
        hostname: k.hostname.clone().unwrap_or(base.hostname),
        cluster_id: k.cluster_id.clone().unwrap_or(base.cluster_id),
        server_id: k.server_id.clone().unwrap_or(base.server_id),
    }
}

/// The kept values, if any.
pub fn load(path: &Path) -> Result<Option<ServerInfo>, std::io::Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the values atomically (temp file, fsync, rename).
pub fn persist(path: &Path, si: &ServerInfo) -> Result<(), ServerInfoError> {
    use std::io::Write;
    let err = |source| ServerInfoError::Persist {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(si).map_err(|e| err(e.into()))?;
    // Private like the rest of the data directory, whatever the umask.
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)
            .map_err(err)?
    };
    f.write_all(&body).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// `{url}/kapacitor/v1/debug/vars`.
pub fn vars_url(base: &str) -> String {
    format!("{}{VARS_PATH}", base.trim_end_matches('/'))
}

/// Reads ServerInfo on a thread of its own (its own small runtime), so it
/// works from any caller and never parks a runtime worker on a future.
fn fetch_blocking(
    config: &KapacitorConfig,
    timeout: Duration,
) -> Result<ServerInfo, ServerInfoError> {
    let config = config.clone();
    let job = move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ServerInfoError::Runtime)?;
        rt.block_on(fetch(&config, timeout))
    };
    std::thread::Builder::new()
        .name("server-info".into())
        .spawn(job)
        .map_err(ServerInfoError::Runtime)?
        .join()
        .map_err(|_| ServerInfoError::Panicked)?
}

/// `GET /kapacitor/v1/debug/vars` through the [`KapacitorClient`].
pub async fn fetch(
    config: &KapacitorConfig,
    timeout: Duration,
) -> Result<ServerInfo, ServerInfoError> {
    let client = KapacitorClient::new(config, timeout)?;
    let body = client.get(VARS_PATH).await?;
    parse_vars(&body, &redact::url(&client.url(VARS_PATH)))
}

/// The three top-level string vars of Kapacitor's expvar answer.
pub fn parse_vars(body: &[u8], url: &str) -> Result<ServerInfo, ServerInfoError> {
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|source| ServerInfoError::Json {
            url: url.into(),
            source,
        })?;
    let get = |key: &'static str| {
        v.get(key)
            .and_then(|x| x.as_str())
            .map(str::to_owned)
            .ok_or(ServerInfoError::MissingKey {
                url: url.into(),
                key,
            })
    };
    Ok(ServerInfo {
        hostname: get("host")?,
        cluster_id: get("cluster_id")?,
        server_id: get("server_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_vars_reads_top_level_strings() {
        let body = br#"{"cluster_id":"c-1","server_id":"s-1","host":"kap01","num_tasks":3,"kapacitor":{}}"#;
        let si = parse_vars(body, "u").unwrap();
        assert_eq!(
            (si.hostname, si.cluster_id, si.server_id),
            ("kap01".into(), "c-1".into(), "s-1".into())
        );
        assert!(matches!(
            parse_vars(br#"{"host":"h","cluster_id":"c"}"#, "u"),
            Err(ServerInfoError::MissingKey {
                key: "server_id",
                ..
            })
        ));
        assert!(matches!(
            parse_vars(b"[]", "u"),
            Err(ServerInfoError::Json { .. })
        ));
    }

    #[test]
    fn config_values_win_and_kept_file_is_used_without_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = KapacitorConfig {
            // Nothing listens here: a read would fail and give localhost.
            url: "http://127.0.0.1:9".into(),
            ..KapacitorConfig::default()
        };
        persist(
            &dir.path().join(FILE_NAME),
            &ServerInfo {
                hostname: "kept".into(),
                cluster_id: "kc".into(),
                server_id: "ks".into(),
            },
        )
        .unwrap();
        k.cluster_id = Some("from-config".into());
        let p = KapacitorServerInfo::new(&k, dir.path());
        let si = p.server_info();
        assert_eq!(
            (
                si.hostname.as_str(),
                si.cluster_id.as_str(),
                si.server_id.as_str()
            ),
            ("kept", "from-config", "ks")
        );
    }

    #[test]
    fn failed_read_gives_defaults_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let k = KapacitorConfig {
            url: "http://127.0.0.1:9".into(),
            ..KapacitorConfig::default()
        };
        let p = KapacitorServerInfo::new(&k, dir.path());
        assert_eq!(p.server_info(), ServerInfo::default());
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn concurrent_first_calls_share_one_read() {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        {
            let hits = hits.clone();
            std::thread::spawn(move || {
                for c in listener.incoming().flatten() {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let mut r = BufReader::new(c.try_clone().unwrap());
                    let mut l = String::new();
                    while r.read_line(&mut l).unwrap_or(0) > 2 {
                        l.clear();
                    }
                    // Slow enough that every caller arrives during the read.
                    std::thread::sleep(Duration::from_millis(200));
                    let body = r#"{"host":"h","cluster_id":"c","server_id":"s"}"#;
                    let mut c = c;
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
        let dir = tempfile::tempdir().unwrap();
        let k = KapacitorConfig {
            url: format!("http://{addr}"),
            ..KapacitorConfig::default()
        };
        let p = Arc::new(KapacitorServerInfo::new(&k, dir.path()));
        let callers: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || p.server_info())
            })
            .collect();
        for c in callers {
            assert_eq!(c.join().unwrap().hostname, "h");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(
            load(&dir.path().join(FILE_NAME))
                .unwrap()
                .unwrap()
                .server_id,
            "s"
        );
    }

    #[test]
    fn a_silent_api_costs_at_most_the_timeout() {
        // Accepts and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = std::thread::spawn(move || listener.accept().map(|(c, _)| c));
        let dir = tempfile::tempdir().unwrap();
        let k = KapacitorConfig {
            url: format!("http://{addr}"),
            ..KapacitorConfig::default()
        };
        let mut p = KapacitorServerInfo::new(&k, dir.path());
        p.timeout = Duration::from_millis(200);
        let start = std::time::Instant::now();
        assert_eq!(p.server_info(), ServerInfo::default());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        // Resolved once: the second call does not wait again.
        let start = std::time::Instant::now();
        assert_eq!(p.server_info(), ServerInfo::default());
        assert!(start.elapsed() < Duration::from_millis(50));
        drop(held.join());
    }
}
