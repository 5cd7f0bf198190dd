//! The configuration file: every table and key of the agreed layout
//! (README, *Configuration*). Unknown tables and keys are errors that name
//! them: a silently ignored `retry_max` is a 3 a.m. surprise.
//!
//! Precedence: flags > environment > file > defaults. This module owns the
//! file and defaults; [`Config::apply_env`] the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A configuration problem, with the file, key and reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{origin}: {key}: {reason}")]
    Invalid {
        origin: String,
        key: String,
        reason: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub kapacitor: KapacitorConfig,
    pub delivery: DeliveryConfig,
    pub endpoints: BTreeMap<String, EndpointConfig>,
}

/// `server.max_connections` by default: Kapacitor opens one connection per
/// `@pagertree()` node of each running task, so 1024 is far above a real
/// deployment, and at the measured cost of an idle session bounds what a
/// local peer can make the agent hold.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The largest `server.max_connections`: each connection is a file
/// descriptor (the shipped unit sets LimitNOFILE) and a session's memory.
pub const MAX_MAX_CONNECTIONS: usize = 65_536;

/// `[server]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// Default: `<data_dir>/stream.sock`.
    pub stream_socket: Option<PathBuf>,
    /// Default: `<data_dir>/batch.sock`.
    pub batch_socket: Option<PathBuf>,
    /// Octal permission bits of the socket files, e.g. `"0660"`.
    pub socket_mode: String,
    /// Group of the socket files (the group Kapacitor runs as); empty: unchanged.
    pub socket_group: String,
    /// `"off"` disables the HTTP listener.
    pub http_addr: String,
    pub max_frame_bytes: usize,
    /// UDF connections served at once on both sockets together; beyond it a
    /// new connection is closed at once.
    pub max_connections: usize,
    pub log_format: String,
    pub log_level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./kapacitor-pagertree-data"),
            stream_socket: None,
            batch_socket: None,
            socket_mode: "0660".into(),
            socket_group: String::new(),
            http_addr: "127.0.0.1:9096".into(),
            max_frame_bytes: 16 * 1024 * 1024,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            log_format: "auto".into(),
            log_level: "info".into(),
        }
    }
}

impl ServerConfig {
    pub fn stream_socket_path(&self) -> PathBuf {
        self.stream_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("stream.sock"))
    }

    pub fn batch_socket_path(&self) -> PathBuf {
        self.batch_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("batch.sock"))
    }

    /// The socket mode as permission bits.
    pub fn socket_mode_bits(&self) -> Result<u32, ConfigError> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| ConfigError::Invalid {
                origin: "server".into(),
                key: "socket_mode".into(),
                reason: format!(
                    "{:?} is not an octal file mode such as \"0660\"",
                    self.socket_mode
                ),
            })
    }
}

/// `[kapacitor]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KapacitorConfig {
    pub hostname: Option<String>,
    pub cluster_id: Option<String>,
    pub server_id: Option<String>,
    pub url: String,
    pub username: String,
    pub password: String,
    pub shared_secret: String,
    pub insecure_skip_verify: bool,
    pub revive_tasks: bool,
    #[serde(deserialize_with = "de_duration")]
    pub revive_for: Duration,
}

impl Default for KapacitorConfig {
    fn default() -> Self {
        Self {
            hostname: None,
            cluster_id: None,
            server_id: None,
            url: "http://localhost:9092".into(),
            username: String::new(),
            password: String::new(),
            shared_secret: String::new(),
            insecure_skip_verify: false,
            revive_tasks: true,
            revive_for: Duration::from_secs(600),
        }
    }
}

/// The default `[delivery] spill_file`: outside any data directory, on a
/// path that survives a reboot (`/var/tmp`). The contrib systemd unit (whose
/// `PrivateTmp=yes` empties `/var/tmp` at stop) sets it under its
/// `LogsDirectory=` instead.
pub const DEFAULT_SPILL_FILE: &str = "/var/tmp/kapacitor-pagertree.spill.jsonl";

/// `[delivery]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub default_endpoint: String,
    pub concurrency: usize,
    #[serde(deserialize_with = "de_duration")]
    pub max_age: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub retry_initial: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub retry_max: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub parked_retry: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub commit_window: Duration,
    pub memory_queue: usize,
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_grace: Duration,
    /// Where events held only in memory (degraded mode) are written at
    /// shutdown when the outbox still cannot store them and they were not
    /// delivered within `shutdown_grace`: JSON lines, mode 0600, read back
    /// at the next start (or by `outbox import`). Must not be under the
    /// data directory (that disk is the one that failed).
    pub spill_file: PathBuf,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            default_endpoint: String::new(),
            concurrency: 16,
            max_age: Duration::from_secs(24 * 3600),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            parked_retry: Duration::from_secs(600),
            commit_window: Duration::from_millis(2),
            memory_queue: 100_000,
            shutdown_grace: Duration::from_secs(5),
            spill_file: PathBuf::from(DEFAULT_SPILL_FILE),
        }
    }
}

/// An endpoint's payload format as the configuration names it. The daemon
/// maps it onto the engine's `alert::Format` (config is a leaf: it imports no
/// other layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The JSON Kapacitor's alert node posts (PagerTree's Kapacitor integration).
    #[default]
    Kapacitor,
    /// PagerTree's generic Webhook integration.
    Webhook,
}

impl PayloadFormat {
    pub fn parse(s: &str) -> Option<PayloadFormat> {
        match s {
            "kapacitor" => Some(PayloadFormat::Kapacitor),
            "webhook" => Some(PayloadFormat::Webhook),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Kapacitor => "kapacitor",
            PayloadFormat::Webhook => "webhook",
        }
    }
}

/// `[endpoints.NAME]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointConfig {
    pub url: String,
    pub format: PayloadFormat,
    pub token: String,
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            format: PayloadFormat::Kapacitor,
            token: String::new(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Parses a duration as the config writes it: `"10s"`, `"5m"`, `"24h"`, `"2ms"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration such as \"10s\", \"5m\" or \"24h\" ({e})"))
}

impl Config {
    /// Parses a config file's text; `origin` names it in errors. Every
    /// unknown or ill-typed key is reported, not only the first.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        let (config, errors) = Self::from_toml_collecting(text, origin)?;
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Parses a config file's text, keeping every key that is valid on its
    /// own and returning one error per key that is not (unknown table, unknown
    /// key, wrong type or value), so `check` lists them all at once. Only a
    /// TOML syntax error, after which nothing can be read, is returned alone.
    pub fn from_toml_collecting(
        text: &str,
        origin: &str,
    ) -> Result<(Config, Vec<ConfigError>), ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut errors = Vec::new();
        let mut invalid = |key: String, reason: String| {
            errors.push(ConfigError::Invalid {
                origin: origin.to_string(),
                key,
                reason,
            })
        };
        // Each key is tried on its own (a document holding only it), and kept
        // when it deserializes: the error of one never hides another's.
        let alone = |path: &[&str], value: &toml::Value| -> Result<(), String> {
            let mut doc = value.clone();
            for name in path.iter().rev() {
                let mut t = toml::Table::new();
                t.insert((*name).to_string(), doc);
                doc = toml::Value::Table(t);
            }
            doc.try_into::<Config>()
                .map(drop)
                .map_err(|e| reason_of(&e.to_string()))
        };
        let mut kept = toml::Table::new();
        for (name, value) in table {
            match (name.as_str(), value) {
                ("server" | "kapacitor" | "delivery", toml::Value::Table(keys)) => {
                    let mut good = toml::Table::new();
                    for (key, v) in keys {
                        match alone(&[&name, &key], &v) {
                            Ok(()) => {
                                good.insert(key, v);
                            }
                            Err(reason) => invalid(format!("{name}.{key}"), reason),
                        }
                    }
                    kept.insert(name, toml::Value::Table(good));
                }
                ("endpoints", toml::Value::Table(endpoints)) => {
                    let mut good_endpoints = toml::Table::new();
                    for (endpoint, e) in endpoints {
                        let toml::Value::Table(keys) = e else {
                            invalid(
                                format!("endpoints.{endpoint}"),
                                "must be a table [endpoints.NAME]".into(),
                            );
                            continue;
                        };
                        let mut good = toml::Table::new();
                        for (key, v) in keys {
                            match alone(&["endpoints", &endpoint, &key], &v) {
                                Ok(()) => {
                                    good.insert(key, v);
                                }
                                Err(reason) => {
                                    invalid(format!("endpoints.{endpoint}.{key}"), reason)
                                }
                            }
                        }
                        good_endpoints.insert(endpoint, toml::Value::Table(good));
                    }
                    kept.insert(name, toml::Value::Table(good_endpoints));
                }
                ("server" | "kapacitor" | "delivery" | "endpoints", _) => {
                    invalid(name.clone(), format!("must be a table [{name}]"))
                }
                _ => invalid(
                    name,
                    "unknown table (known: server, kapacitor, delivery, endpoints)".into(),
                ),
            }
        }
        let config =
            toml::Value::Table(kept)
                .try_into::<Config>()
                .map_err(|e| ConfigError::Parse {
                    path: origin.to_string(),
                    message: e.to_string().trim_end().to_string(),
                })?;
        Ok((config, errors))
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let (config, errors) = Self::load_collecting(path)?;
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Reads a config file: what is valid, and an error per key that is not.
    fn load_collecting(path: &Path) -> Result<(Config, Vec<ConfigError>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_collecting(&text, &path.display().to_string())
    }
}

/// serde's message for one key, in the config's words ("unknown field" is
/// an unknown key here).
fn reason_of(message: &str) -> String {
    let m = message.trim();
    match m.strip_prefix("unknown field ") {
        Some(rest) => format!(
            "unknown key{}",
            rest.split_once(", expected")
                .map(|(_, known)| format!(" (known:{})", known.trim_start_matches(" one of")))
                .unwrap_or_default()
        ),
        None => m.to_string(),
    }
}

/// Several configuration problems, reported together so one run of
/// `check` lists everything to fix.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// The prefix of every environment variable the agent reads.
pub const ENV_PREFIX: &str = "KAPACITOR_PAGERTREE_";
/// The config file path (`--config`).
pub const ENV_CONFIG: &str = "KAPACITOR_PAGERTREE_CONFIG";
/// The shortcut that defines endpoint `default` and makes it the default.
pub const ENV_URL: &str = "KAPACITOR_PAGERTREE_URL";
/// The name of the endpoint [`ENV_URL`] defines.
pub const DEFAULT_ENDPOINT_NAME: &str = "default";

/// The keys of `[endpoints.NAME]`, longest first so that an environment
/// suffix `_CONNECT_TIMEOUT` is not read as `_TIMEOUT`.
const ENDPOINT_KEYS: [&str; 5] = ["connect_timeout", "timeout", "format", "token", "url"];

/// Where each key's value came from (`server.http_addr` → `flag --http-addr`),
/// so an error names the place the user has to edit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origins {
    file: Option<String>,
    set: BTreeMap<String, String>,
}

impl Origins {
    /// The origin of a dotted key: the flag or variable that set it, else the
    /// file (a key absent from the file is still "in" it: that is where to add it),
    /// else `defaults`.
    pub fn of(&self, key: &str) -> String {
        if let Some(o) = self.set.get(key) {
            return o.clone();
        }
        // An endpoint created by the environment owns its other keys too.
        if let Some(rest) = key.strip_prefix("endpoints.")
            && let Some((name, _)) = rest.rsplit_once('.')
            && let Some(o) = self.set.get(&format!("endpoints.{name}.url"))
        {
            return o.clone();
        }
        self.file.clone().unwrap_or_else(|| "defaults".to_string())
    }

    fn note(&mut self, key: &str, origin: String) {
        self.set.insert(key.to_string(), origin);
    }
}

/// The command-line flags that override the configuration (highest precedence).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub stream_socket: Option<PathBuf>,
    pub batch_socket: Option<PathBuf>,
    pub http_addr: Option<String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
}

/// The effective configuration with where each value came from and the
/// warnings validation found (not errors: the agent starts, but says so).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub origins: Origins,
    pub warnings: Vec<String>,
}

/// `log_format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text on a terminal, JSON lines otherwise (systemd's journal).
    Auto,
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "auto" => Some(LogFormat::Auto),
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// The HTTP listener setting: `"off"` or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAddr {
    Off,
    Listen(std::net::SocketAddr),
}

impl ServerConfig {
    /// The parsed `http_addr`: `off`, an IP address with its port, or a host
    /// name with its port (`localhost:9096`), resolved here (blocking: call
    /// it off the async runtime or through `ops::run_blocking`). Of a name's
    /// addresses the first IPv4 one is used, else the first.
    pub fn http_listen(&self) -> Result<HttpAddr, String> {
        let s = self.http_addr.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(HttpAddr::Off);
        }
        if let Ok(addr) = s.parse() {
            return Ok(HttpAddr::Listen(addr));
        }
        let usage = || {
            format!(
                "{s:?} is not \"off\" or host:port such as \"127.0.0.1:9096\" or \"localhost:9096\""
            )
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(usage)?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(usage());
        }
        use std::net::ToSocketAddrs;
        let addrs: Vec<std::net::SocketAddr> = s
            .to_socket_addrs()
            .map_err(|e| format!("{s:?}: cannot resolve {host:?}: {e}"))?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .map(HttpAddr::Listen)
            .ok_or_else(|| format!("{s:?}: {host:?} resolves to no address"))
    }

    /// The parsed `log_format`.
    pub fn log_format_kind(&self) -> Result<LogFormat, String> {
        LogFormat::parse(self.log_format.trim())
            .ok_or_else(|| format!("{:?} is not one of auto, text, json", self.log_format))
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{v:?} is not a boolean (true or false)")),
    }
}

fn parse_count(v: &str) -> Result<usize, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{v:?} is not a whole number"))
}

fn parse_format(v: &str) -> Result<PayloadFormat, String> {
    PayloadFormat::parse(v.trim())
        .ok_or_else(|| format!("{v:?} is not a format; use kapacitor or webhook"))
}

/// Checks that a URL is absolute http(s) with a host.
fn check_http_url(url: &str) -> Result<(), String> {
    if url.trim().is_empty() {
        return Err("is required (the PagerTree integration URL)".into());
    }
    let u = reqwest::Url::parse(url.trim())
        .map_err(|e| format!("{} is not a URL: {e}", crate::ops::redact::url(url)))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!("scheme {:?} is not http or https", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// The longest path a Unix socket may have (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

impl Config {
    /// Sets one key from its text, as the environment and flags give it.
    /// `key` is dotted: `server.data_dir`, `endpoints.ops.url`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let (table, rest) = key.split_once('.').ok_or("unknown key")?;
        let v = value.to_string();
        match table {
            "server" => {
                let s = &mut self.server;
                match rest {
                    "data_dir" => s.data_dir = PathBuf::from(v),
                    "stream_socket" => s.stream_socket = Some(PathBuf::from(v)),
                    "batch_socket" => s.batch_socket = Some(PathBuf::from(v)),
                    "socket_mode" => s.socket_mode = v,
                    "socket_group" => s.socket_group = v,
                    "http_addr" => s.http_addr = v,
                    "max_frame_bytes" => s.max_frame_bytes = parse_count(&v)?,
                    "max_connections" => s.max_connections = parse_count(&v)?,
                    "log_format" => s.log_format = v,
                    "log_level" => s.log_level = v,
                    _ => return Err("unknown key in [server]".into()),
                }
            }
            "kapacitor" => {
                let k = &mut self.kapacitor;
                match rest {
                    "hostname" => k.hostname = Some(v),
                    "cluster_id" => k.cluster_id = Some(v),
                    "server_id" => k.server_id = Some(v),
                    "url" => k.url = v,
                    "username" => k.username = v,
                    "password" => k.password = v,
                    "shared_secret" => k.shared_secret = v,
                    "insecure_skip_verify" => k.insecure_skip_verify = parse_bool(&v)?,
                    "revive_tasks" => k.revive_tasks = parse_bool(&v)?,
                    "revive_for" => k.revive_for = parse_duration(&v)?,
                    _ => return Err("unknown key in [kapacitor]".into()),
                }
            }
            "delivery" => {
                let d = &mut self.delivery;
                match rest {
                    "default_endpoint" => d.default_endpoint = v,
                    "concurrency" => d.concurrency = parse_count(&v)?,
                    "max_age" => d.max_age = parse_duration(&v)?,
                    "retry_initial" => d.retry_initial = parse_duration(&v)?,
                    "retry_max" => d.retry_max = parse_duration(&v)?,
                    "parked_retry" => d.parked_retry = parse_duration(&v)?,
                    "commit_window" => d.commit_window = parse_duration(&v)?,
                    "memory_queue" => d.memory_queue = parse_count(&v)?,
                    "shutdown_grace" => d.shutdown_grace = parse_duration(&v)?,
                    "spill_file" => d.spill_file = PathBuf::from(v),
                    _ => return Err("unknown key in [delivery]".into()),
                }
            }
            "endpoints" => {
                let (name, k) = rest.rsplit_once('.').ok_or("unknown key")?;
                if name.is_empty() {
                    return Err("an endpoint needs a name".into());
                }
                if !ENDPOINT_KEYS.contains(&k) {
                    return Err("unknown key in [endpoints.NAME]".into());
                }
                let e = self.endpoints.entry(name.to_string()).or_default();
                match k {
                    "url" => e.url = v,
                    "format" => e.format = parse_format(&v)?,
                    "token" => e.token = v,
                    "timeout" => e.timeout = parse_duration(&v)?,
                    "connect_timeout" => e.connect_timeout = parse_duration(&v)?,
                    _ => return Err("unknown key in [endpoints.NAME]".into()),
                }
            }
            _ => return Err("unknown table".into()),
        }
        Ok(())
    }

    /// Applies `KAPACITOR_PAGERTREE_*` variables (any iterator of name/value
    /// pairs, so tests need not touch the process environment).
    ///
    /// `KAPACITOR_PAGERTREE_<TABLE>_<KEY>` sets a key; an unknown key of a
    /// known table is an error. `KAPACITOR_PAGERTREE_ENDPOINTS_<NAME>_<KEY>`
    /// sets an endpoint's key (NAME matches a file endpoint case-insensitively,
    /// else is taken in lower case). `KAPACITOR_PAGERTREE_URL` defines endpoint
    /// `default` and makes it the default; an explicit
    /// `KAPACITOR_PAGERTREE_DELIVERY_DEFAULT_ENDPOINT` still wins. Variables
    /// under the prefix that name no table come back as warnings.
    pub fn apply_env<I>(
        &mut self,
        vars: I,
        origins: &mut Origins,
    ) -> Result<Vec<String>, ConfigErrors>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        // The shortcut first, so specific variables override what it implies.
        vars.sort_by_key(|(k, _)| (k != ENV_URL, k.clone()));
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for (name, value) in vars {
            let origin = format!("environment {name}");
            let rest = &name[ENV_PREFIX.len()..];
            if name == ENV_CONFIG {
                continue;
            }
            if name == ENV_URL {
                let key = format!("endpoints.{DEFAULT_ENDPOINT_NAME}.url");
                self.endpoints
                    .entry(DEFAULT_ENDPOINT_NAME.to_string())
                    .or_default()
                    .url = value;
                self.delivery.default_endpoint = DEFAULT_ENDPOINT_NAME.to_string();
                origins.note(&key, origin.clone());
                origins.note("delivery.default_endpoint", origin);
                continue;
            }
            // Test and benchmark hooks (`..._FAULT_*`, `..._BENCH_*`) are not settings.
            if rest.starts_with("FAULT_") || rest.starts_with("BENCH_") {
                continue;
            }
            let Some(key) = self.env_key(rest) else {
                warnings.push(format!(
                    "{origin}: ignored: no such setting (variables are KAPACITOR_PAGERTREE_<TABLE>_<KEY>, \
                     e.g. KAPACITOR_PAGERTREE_SERVER_DATA_DIR)"
                ));
                continue;
            };
            match self.set(&key, &value) {
                Ok(()) => origins.note(&key, origin),
                Err(reason) => errors.push(ConfigError::Invalid {
                    origin,
                    key,
                    reason,
                }),
            }
        }
        if errors.is_empty() {
            Ok(warnings)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The dotted key an environment variable (prefix removed) names, or
    /// `None` when it names no table.
    fn env_key(&self, rest: &str) -> Option<String> {
        for table in ["server", "kapacitor", "delivery"] {
            if let Some(k) = rest.strip_prefix(&format!("{}_", table.to_ascii_uppercase())) {
                return Some(format!("{table}.{}", k.to_ascii_lowercase()));
            }
        }
        let rest = rest.strip_prefix("ENDPOINTS_")?;
        for k in ENDPOINT_KEYS {
            let suffix = format!("_{}", k.to_ascii_uppercase());
            if let Some(env_name) = rest.strip_suffix(&suffix) {
                let name = self
                    .endpoints
                    .keys()
                    .find(|n| n.to_ascii_uppercase().replace('-', "_") == env_name)
                    .cloned()
                    .unwrap_or_else(|| env_name.to_ascii_lowercase());
                return Some(format!("endpoints.{name}.{k}"));
            }
        }
        // ENDPOINTS_<NAME>_<unknown>: a key error, not a stray variable.
        Some(format!("endpoints.{}.?", rest.to_ascii_lowercase()))
    }

    /// Applies the command-line flags (highest precedence).
    pub fn apply_overrides(&mut self, o: &Overrides, origins: &mut Origins) {
        let mut put = |key: &str, flag: &str| origins.note(key, format!("flag {flag}"));
        if let Some(v) = &o.data_dir {
            self.server.data_dir = v.clone();
            put("server.data_dir", "--data-dir");
        }
        if let Some(v) = &o.stream_socket {
            self.server.stream_socket = Some(v.clone());
            put("server.stream_socket", "--stream-socket");
        }
        if let Some(v) = &o.batch_socket {
            self.server.batch_socket = Some(v.clone());
            put("server.batch_socket", "--batch-socket");
        }
        if let Some(v) = &o.http_addr {
            self.server.http_addr = v.clone();
            put("server.http_addr", "--http-addr");
        }
        if let Some(v) = &o.log_format {
            self.server.log_format = v.clone();
            put("server.log_format", "--log-format");
        }
        if let Some(v) = &o.log_level {
            self.server.log_level = v.clone();
            put("server.log_level", "--log-level");
        }
    }

    /// Checks every value and combination; returns the warnings, or every
    /// error found, each naming where the value came from, the key and why.
    pub fn validate(&self, origins: &Origins) -> Result<Vec<String>, ConfigErrors> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        macro_rules! err {
            ($key:expr, $reason:expr $(,)?) => {{
                let key: &str = $key;
                errors.push(ConfigError::Invalid {
                    origin: origins.of(key),
                    key: key.to_string(),
                    reason: $reason,
                })
            }};
        }
        let s = &self.server;
        if s.data_dir.as_os_str().is_empty() {
            err!("server.data_dir", "must not be empty".into());
        }
        if let Err(ConfigError::Invalid { reason, .. }) = s.socket_mode_bits() {
            err!("server.socket_mode", reason);
        }
        match s.http_listen() {
            Err(reason) => err!("server.http_addr", reason),
            Ok(HttpAddr::Listen(a)) if !a.ip().is_loopback() => warnings.push(format!(
                "{}: server.http_addr: {a} is not a loopback address: /metrics and the alerts API \
                 (alert ids and messages) are reachable from the network; firewall it or use 127.0.0.1",
                origins.of("server.http_addr")
            )),
            Ok(_) => {}
        }
        if let Err(reason) = s.log_format_kind() {
            err!("server.log_format", reason);
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(s.log_level.trim()) {
            err!(
                "server.log_level",
                format!(
                    "{:?} is not a level (error, warn, info, debug, trace) or filter: {e}",
                    s.log_level
                ),
            );
        }
        if s.max_frame_bytes < 1024 {
            err!(
                "server.max_frame_bytes",
                format!("{} is too small; at least 1024", s.max_frame_bytes),
            );
        }
        if !(1..=MAX_MAX_CONNECTIONS).contains(&s.max_connections) {
            err!(
                "server.max_connections",
                format!(
                    "{} is out of range; between 1 and {MAX_MAX_CONNECTIONS}",
                    s.max_connections
                ),
            );
        }
        let (stream, batch) = (s.stream_socket_path(), s.batch_socket_path());
        if stream == batch {
            err!(
                "server.batch_socket",
                format!(
                    "{} is also the stream socket; the two edges need two sockets",
                    batch.display()
                ),
            );
        }
        for (key, p, set) in [
            ("server.stream_socket", &stream, s.stream_socket.is_some()),
            ("server.batch_socket", &batch, s.batch_socket.is_some()),
        ] {
            let len = p.as_os_str().len();
            if len > MAX_SOCKET_PATH {
                let reason = format!(
                    "{} is {len} bytes; a Unix socket path may have at most {MAX_SOCKET_PATH}",
                    p.display()
                );
                if set {
                    err!(key, format!("{reason} (set a shorter path)"));
                } else {
                    // The default path under data_dir: the data dir made it too long.
                    errors.push(ConfigError::Invalid {
                        origin: origins.of("server.data_dir"),
                        key: key.to_string(),
                        reason: format!(
                            "{reason}: it is <data_dir>/{}, and server.data_dir makes it too long (use a shorter data_dir or set {key})",
                            p.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()
                        ),
                    });
                }
            }
        }
        // serve would refuse it at bind: refuse it here already.
        if !s.socket_group.is_empty() && crate::ops::lookup_group(&s.socket_group).is_none() {
            err!(
                "server.socket_group",
                format!(
                    "no group named {:?} on this machine (the group Kapacitor runs as, e.g. kapacitor)",
                    s.socket_group
                )
            );
        }
        let k = &self.kapacitor;
        if let Err(reason) = check_http_url(&k.url) {
            err!("kapacitor.url", reason);
        }
        if !k.shared_secret.is_empty() && k.username.is_empty() {
            err!(
                "kapacitor.shared_secret",
                "needs kapacitor.username (the token's username claim)".into(),
            );
        }
        if !k.password.is_empty() && k.username.is_empty() {
            err!("kapacitor.password", "needs kapacitor.username".into());
        }
        let d = &self.delivery;
        if !d.default_endpoint.is_empty() && !self.endpoints.contains_key(&d.default_endpoint) {
            let known: Vec<&str> = self.endpoints.keys().map(String::as_str).collect();
            err!(
                "delivery.default_endpoint",
                format!(
                    "{:?} names no [endpoints.{}] table (defined: {})",
                    d.default_endpoint,
                    d.default_endpoint,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        if d.concurrency == 0 {
            err!("delivery.concurrency", "must be at least 1".into());
        }
        if d.memory_queue == 0 {
            err!("delivery.memory_queue", "must be at least 1".into());
        }
        if d.spill_file.file_name().is_none() {
            err!("delivery.spill_file", "must name a file".into());
        } else if std::path::absolute(&d.spill_file).is_ok_and(|f| {
            std::path::absolute(&self.server.data_dir).is_ok_and(|dd| f.starts_with(dd))
        }) {
            err!(
                "delivery.spill_file",
                format!(
                    "{} is under the data directory {}: it is where events go when that disk fails",
                    d.spill_file.display(),
                    self.server.data_dir.display()
                ),
            );
        }
        if d.retry_initial.is_zero() {
            err!("delivery.retry_initial", "must be more than 0s".into());
        }
        if d.retry_initial > d.retry_max {
            err!(
                "delivery.retry_max",
                format!(
                    "{} is less than retry_initial ({})",
                    humantime::format_duration(d.retry_max),
                    humantime::format_duration(d.retry_initial)
                ),
            );
        }
        if d.max_age.is_zero() {
            err!("delivery.max_age", "must be more than 0s".into());
        }
        if d.commit_window > Duration::from_secs(1) {
            err!(
                "delivery.commit_window",
                format!(
                    "{} is more than 1s: every event would wait that long before it is stored and sent",
                    humantime::format_duration(d.commit_window)
                )
            );
        }
        if d.parked_retry.is_zero() {
            err!("delivery.parked_retry", "must be more than 0s".into());
        }
        for (name, e) in &self.endpoints {
            let key = |k: &str| format!("endpoints.{name}.{k}");
            if let Err(reason) = check_http_url(&e.url) {
                err!(&key("url"), reason);
            }
            if e.timeout.is_zero() {
                err!(&key("timeout"), "must be more than 0s".into());
            }
            if e.connect_timeout.is_zero() {
                err!(&key("connect_timeout"), "must be more than 0s".into());
            }
            if !e.token.is_empty() && e.format == PayloadFormat::Kapacitor {
                warnings.push(format!(
                    "{}: {}: a token is sent only with format = \"webhook\"; the kapacitor format ignores it",
                    origins.of(&key("token")),
                    key("token")
                ));
            }
        }
        if self.endpoints.is_empty() {
            warnings.push(
                "no endpoint is configured: nodes need .url() or .dryRun(); set KAPACITOR_PAGERTREE_URL or add an [endpoints.NAME] table"
                    .to_string(),
            );
        } else if d.default_endpoint.is_empty() {
            warnings.push(
                "delivery.default_endpoint is not set: nodes need .endpoint('NAME') or .url()"
                    .to_string(),
            );
        }
        if errors.is_empty() {
            Ok(warnings)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The effective configuration: defaults, then the file (if any), then the
    /// environment, then the flags; validated.
    pub fn load_effective<I>(
        path: Option<&Path>,
        env: I,
        overrides: &Overrides,
    ) -> Result<Loaded, ConfigErrors>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut origins = Origins::default();
        // Every problem at once: the file's, the environment's and the
        // validation's (of what is left when the bad keys are dropped).
        let (mut config, mut errors) = match path {
            Some(p) => {
                origins.file = Some(p.display().to_string());
                Config::load_collecting(p)?
            }
            None => (Config::default(), Vec::new()),
        };
        let mut warnings = match config.apply_env(env, &mut origins) {
            Ok(w) => w,
            Err(e) => {
                errors.extend(e.0);
                Vec::new()
            }
        };
        config.apply_overrides(overrides, &mut origins);
        match config.validate(&origins) {
            Ok(w) => warnings.extend(w),
            Err(e) => errors.extend(e.0),
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Loaded {
            config,
            origins,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests;
