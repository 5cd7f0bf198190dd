//! The alert engine: what Kapacitor's alert node does, reproduced for
//! `@pagertree()`. This module owns the shared vocabulary ([`Level`],
//! [`Event`], [`Series`]); the submodules own the rules.
//!
//! - [`node`]: options → a compiled node (validated at Init); per-group state;
//!   Mode 1 (level expressions) and Mode 2 (`levelFrom`).
//! - [`expr`]: TICKscript lambda expressions (lexer, parser, evaluator).
//! - [`template`]: Go `text/template` and `html/template` for id/message/details.
//! - [`state`]: level history, flapping, stateChangesOnly/renotify, durations.
//! - [`store`]: the last event per (task, node, id) a restarted node starts from.

pub mod expr;
pub mod handler;
pub mod json;
pub mod node;
pub mod sink;
pub mod state;
pub mod store;
pub mod template;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// An alert level, ordered as Kapacitor orders them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    #[default]
    OK = 0,
    INFO = 1,
    WARNING = 2,
    CRITICAL = 3,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 4] = [Level::OK, Level::INFO, Level::WARNING, Level::CRITICAL];

    /// The exact text Kapacitor writes: `OK`, `INFO`, `WARNING`, `CRITICAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::OK => "OK",
            Level::INFO => "INFO",
            Level::WARNING => "WARNING",
            Level::CRITICAL => "CRITICAL",
        }
    }

    /// Parses a level name as Mode 2 reads it from a tag or field: `OK`, `INFO`,
    /// `WARNING`/`WARN`, `CRITICAL`/`CRIT`, in any case.
    pub fn parse(s: &str) -> Option<Level> {
        let s = s.trim();
        [
            ("OK", Level::OK),
            ("INFO", Level::INFO),
            ("WARNING", Level::WARNING),
            ("WARN", Level::WARNING),
            ("CRITICAL", Level::CRITICAL),
            ("CRIT", Level::CRITICAL),
        ]
        .into_iter()
        .find(|(name, _)| s.eq_ignore_ascii_case(name))
        .map(|(_, l)| l)
    }

    /// The level from its number (0..=3), as stored in the state store.
    pub fn from_u8(n: u8) -> Option<Level> {
        Level::ALL.get(n as usize).copied()
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field value of a point, typed as Kapacitor types it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Float(f64),
    Int(i64),
    String(String),
    Bool(bool),
}

/// One value of a series row: the first column is always the time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SeriesValue {
    /// Nanoseconds since the epoch (printed RFC 3339).
    Time(i64),
    Field(FieldValue),
    /// A column the point does not have (batch rows); JSON `null`.
    Null,
}

/// Kapacitor's `models.Row`: what `data.series[0]` of an alert holds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub tags: BTreeMap<String, String>,
    /// `time` first, then the field (and, for batches, extra tag) names.
    pub columns: Vec<String>,
    pub values: Vec<Vec<SeriesValue>>,
}

/// A PagerTree payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The JSON Kapacitor's alert node posts (PagerTree's Kapacitor integration).
    #[default]
    Kapacitor,
    /// PagerTree's generic Webhook integration.
    Webhook,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "kapacitor" => Some(Format::Kapacitor),
            "webhook" => Some(Format::Webhook),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Kapacitor => "kapacitor",
            Format::Webhook => "webhook",
        }
    }
}

/// Where a node's events may go, as far as its options need to know: the
/// named endpoints of the agent's configuration with their payload format,
/// and the default endpoint's name (empty: none). The daemon builds it from
/// its configuration; the engine reads no configuration itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Destinations {
    pub endpoints: BTreeMap<String, Format>,
    pub default_endpoint: String,
}

/// Where and how a node's events go: the delivery options of one node,
/// shared by all its events.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Route {
    /// `.url()`: overrides the endpoint's address.
    pub url: Option<String>,
    /// `.endpoint()`: a named endpoint of the config (else the default endpoint).
    pub endpoint: Option<String>,
    /// `.format()`: else the endpoint's format, else `kapacitor`.
    pub format: Option<Format>,
    /// `.urgency(level, urgency)`, accumulated (webhook format).
    pub urgency: Vec<(Level, String)>,
    /// `.tags()`: point tag names sent as PagerTree tags (webhook format).
    pub tags: Vec<String>,
    /// `.dryRun()`: log, keep state, emit; send and store nothing.
    pub dry_run: bool,
}

/// One alert event: what Kapacitor's alert node hands to its handlers
/// (`alert.Data`), plus where it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub task: String,
    pub node: String,
    pub id: String,
    pub message: String,
    pub details: String,
    /// Nanoseconds since the epoch.
    pub time: i64,
    /// Nanoseconds from the alert's first non-OK event to this one.
    pub duration: i64,
    pub level: Level,
    pub previous_level: Level,
    pub recoverable: bool,
    /// The point or batch that produced the event, as `data.series[0]`.
    pub data: Series,
    pub route: Arc<Route>,
}

/// Kapacitor's `ServerInfo`, as templates see it (`.ServerInfo.Hostname` …).
/// Resolved once per agent (README, *Configuration*, `[kapacitor]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub hostname: String,
    pub cluster_id: String,
    pub server_id: String,
}

impl Default for ServerInfo {
    /// Kapacitor's own defaults: `localhost` and empty ids.
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            cluster_id: String::new(),
            server_id: String::new(),
        }
    }
}
