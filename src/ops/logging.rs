//! The log: `tracing` events to stderr, human text on a terminal and JSON
//! lines otherwise (systemd's journal keeps stderr; JSON keeps fields such as
//! `id`, `alert_level` and `endpoint` searchable).
//!
//! Every line goes through [`crate::ops::redact::text`] on its way out
//! ([`RedactingStderr`]): a secret that reaches a log field by any path (a
//! response body, a library's error, an option echoed back) is cut there.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::ops::config::LogFormat;

/// The logger could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("log_level {level:?}: {reason}")]
    Filter { level: String, reason: String },
    #[error("a logger is already installed")]
    AlreadySet,
}

/// Whether the installed logger writes JSON lines.
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True when the process's logger writes JSON: then every line on stderr must
/// be a JSON object, so nothing else may print there.
pub fn json() -> bool {
    JSON.load(std::sync::atomic::Ordering::Relaxed)
}

/// Which format `auto` means here: text when stderr is a terminal.
pub fn resolve(format: LogFormat) -> LogFormat {
    match format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Text,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    }
}

/// Installs the process's logger. `level` is a level (`info`) or an
/// `EnvFilter` directive list (`info,kapacitor_pagertree::delivery=debug`).
pub fn init(format: LogFormat, level: &str) -> Result<(), LoggingError> {
    let filter = EnvFilter::builder()
        .parse(level.trim())
        .map_err(|e| LoggingError::Filter {
            level: level.to_string(),
            reason: e.to_string(),
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingStderr);
    let resolved = resolve(format);
    JSON.store(
        resolved == LogFormat::Json,
        std::sync::atomic::Ordering::Relaxed,
    );
    let result = match resolved {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        _ => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    result.map_err(|_| LoggingError::AlreadySet)
}

/// Logging for the short-lived tools: warnings and errors as text unless
/// the command line asked otherwise (`level_flag`; `format_flag` means
/// `--log-format` was given, so the configured format applies).
pub fn init_for_tool(
    config: &crate::ops::config::Config,
    level_flag: Option<&str>,
    format_flag: bool,
) -> Result<(), LoggingError> {
    let level = level_flag.unwrap_or("warn");
    let format = if format_flag {
        config.server.log_format_kind().unwrap_or(LogFormat::Text)
    } else {
        LogFormat::Text
    };
    init(format, level)
}

/// Logging for the `stdio` relay, whose stdout is the protocol: text to
/// stderr (which Kapacitor copies to its log), warnings unless `level_flag`.
pub fn init_for_relay(level_flag: Option<&str>) -> Result<(), LoggingError> {
    init(LogFormat::Text, level_flag.unwrap_or("warn"))
}

/// The daemon's logger, from the configuration; the configuration's
/// warnings are then logged.
pub fn init_for_daemon(loaded: &crate::ops::config::Loaded) -> Result<(), LoggingError> {
    let format = loaded
        .config
        .server
        .log_format_kind()
        .unwrap_or(LogFormat::Auto);
    init(format, &loaded.config.server.log_level)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok(())
}

/// stderr behind the redaction: the fmt layer writes each formatted event
/// with one `write_all`, so each call holds whole lines.
pub struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = crate::ops::redact::text(&text, &[]);
        std::io::stderr().lock().write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_formats_are_kept() {
        assert_eq!(resolve(LogFormat::Json), LogFormat::Json);
        assert_eq!(resolve(LogFormat::Text), LogFormat::Text);
        assert_ne!(resolve(LogFormat::Auto), LogFormat::Auto);
    }

    #[test]
    fn a_bad_filter_is_an_error_naming_it() {
        let e = init(LogFormat::Text, "info,=[").unwrap_err();
        assert!(e.to_string().contains("info,=["), "{e}");
    }
}
