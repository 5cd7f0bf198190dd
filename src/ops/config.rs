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

use crate::alert::Format;

/// A configuration problem, with the file, key and reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{origin}: {key}: {reason}")]
    Invalid { origin: String, key: String, reason: String },
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
            log_format: "auto".into(),
            log_level: "info".into(),
        }
    }
}

impl ServerConfig {
    pub fn stream_socket_path(&self) -> PathBuf {
        self.stream_socket.clone().unwrap_or_else(|| self.data_dir.join("stream.sock"))
    }

    pub fn batch_socket_path(&self) -> PathBuf {
        self.batch_socket.clone().unwrap_or_else(|| self.data_dir.join("batch.sock"))
    }

    /// The socket mode as permission bits.
    pub fn socket_mode_bits(&self) -> Result<u32, ConfigError> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| ConfigError::Invalid {
                origin: "server".into(),
                key: "socket_mode".into(),
                reason: format!("{:?} is not an octal file mode such as \"0660\"", self.socket_mode),
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
        }
    }
}

/// `[endpoints.NAME]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointConfig {
    pub url: String,
    pub format: Format,
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
            format: Format::Kapacitor,
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
    /// Parses a config file's text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", "t.toml").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.server.stream_socket_path(), PathBuf::from("./kapacitor-pagertree-data/stream.sock"));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("[delivery]\nretry_maxx = \"1s\"\n", "t.toml").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("retry_maxx"), "{text}");
        assert!(text.contains("t.toml"), "{text}");
    }

    #[test]
    fn durations_and_endpoints_parse() {
        let c = Config::from_toml(
            "[delivery]\nretry_max = \"2m\"\n[endpoints.ops]\nurl = \"https://x/integration/int_1\"\nformat = \"webhook\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.delivery.retry_max, Duration::from_secs(120));
        assert_eq!(c.endpoints["ops"].format, Format::Webhook);
    }
}
