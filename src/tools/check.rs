//! The `check` command: what the effective configuration says, and with
//! `--connect` whether every endpoint and Kapacitor answer.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::kapacitor::client::{KapacitorClient, Method};
use crate::ops::config::{Config, Loaded};
use crate::ops::redact;
use crate::tools::probe::probe;

/// The lines `check` prints for a valid configuration: where it came from,
/// the paths and addresses, each endpoint (redacted), then the warnings.
pub fn summary(loaded: &Loaded, file: Option<&Path>) -> String {
    let c = &loaded.config;
    let source = match file {
        Some(p) => p.display().to_string(),
        None => "no file (defaults and environment)".to_string(),
    };
    let mut out = String::new();
    let _ = writeln!(out, "configuration: {source}: valid");
    let _ = writeln!(out, "  data dir:      {}", c.server.data_dir.display());
    let _ = writeln!(
        out,
        "  stream socket: {}",
        c.server.stream_socket_path().display()
    );
    let _ = writeln!(
        out,
        "  batch socket:  {}",
        c.server.batch_socket_path().display()
    );
    let _ = writeln!(out, "  http:          {}", c.server.http_addr);
    let _ = writeln!(out, "  kapacitor:     {}", c.kapacitor.url);
    if c.endpoints.is_empty() {
        let _ = writeln!(out, "  endpoints:     none");
    }
    for (name, e) in &c.endpoints {
        let default = if c.delivery.default_endpoint == *name {
            " (default)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  endpoint {name}{default}: {} format {}",
            redact::url(&e.url),
            e.format.as_str()
        );
    }
    for w in &loaded.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

/// Contacts every endpoint and Kapacitor's ping, handing each result line
/// to `say` as it comes; returns how many endpoints failed (Kapacitor not
/// answering is a warning only).
pub async fn connect(c: &Config, mut say: impl FnMut(String)) -> usize {
    let mut failed = 0;
    for (name, e) in &c.endpoints {
        match probe(&e.url, e.connect_timeout, e.timeout).await {
            Ok(status) => say(format!("endpoint {name}: answers (HTTP {status})")),
            Err(why) => {
                failed += 1;
                say(format!("endpoint {name}: FAILED: {why}"));
            }
        }
    }
    // The daemon's own client: TLS settings and authentication as serve uses them.
    let ping = async {
        let client = KapacitorClient::new(&c.kapacitor, Duration::from_secs(10))?;
        client
            .send(Method::Get, "/kapacitor/v1/ping")
            .await
            .map(|a| a.status)
    };
    match ping.await {
        Ok(status) => say(format!(
            "kapacitor {}: answers (HTTP {status})",
            c.kapacitor.url
        )),
        Err(e) => say(format!(
            "warning: kapacitor {}: {} (needed for ServerInfo and to revive tasks after a restart)",
            c.kapacitor.url,
            redact::text(
                &e.with_causes(),
                &[&c.kapacitor.password, &c.kapacitor.shared_secret]
            )
        )),
    }
    failed
}
