//! The `alerts` command: finds the running agent's local HTTP API, reads
//! `GET /api/v1/alerts`, and prints the open alerts as a table.

use std::time::Duration;

use crate::ops::config::{Config, HttpAddr};
use crate::tools::http::{ALERTS_PATH, AlertsResponse};

/// Why the alerts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// The configuration does not say where the agent listens (exit 2).
    #[error("{0}")]
    Address(String),
    /// The agent could not be reached or answered badly (exit 1).
    #[error("{0}")]
    Fetch(String),
}

/// The base URL of the running agent's HTTP API. The configuration giving
/// no address is [`AlertsError::Address`] (exit 2); the agent's recorded
/// address being unreadable — it is not running — is [`AlertsError::Fetch`]
/// (exit 1).
pub fn agent_url(config: &Config, explicit: Option<String>) -> Result<String, AlertsError> {
    if let Some(u) = explicit {
        let u = u.trim_end_matches('/').to_string();
        return Ok(if u.contains("://") {
            u
        } else {
            format!("http://{u}")
        });
    }
    let addr = match config.server.http_listen().map_err(AlertsError::Address)? {
        HttpAddr::Off => {
            return Err(AlertsError::Address(
                "http_addr is \"off\": the agent has no local API (set it, or give --url)".into(),
            ));
        }
        HttpAddr::Listen(a) if a.port() == 0 => {
            let file = crate::tools::http::addr_file(&config.server.data_dir);
            let text = std::fs::read_to_string(&file).map_err(|e| {
                AlertsError::Fetch(format!(
                    "http_addr has port 0 and {} cannot be read ({e}): is the agent running with --data-dir {}?",
                    file.display(),
                    config.server.data_dir.display()
                ))
            })?;
            text.trim().parse().map_err(|_| {
                AlertsError::Fetch(format!("{} does not hold an address", file.display()))
            })?
        }
        HttpAddr::Listen(a) => a,
    };
    // A wildcard listen address is reached on loopback.
    let addr = if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    Ok(format!("http://{addr}"))
}

/// `GET {base}/api/v1/alerts`: the answer's body, as the agent sent it.
pub fn fetch(config: &Config, explicit: Option<String>) -> Result<String, AlertsError> {
    let base = agent_url(config, explicit)?;
    let url = format!("{base}{ALERTS_PATH}");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| e.to_string())?;
                let resp = client.get(&url).send().await.map_err(|e| {
                    format!("cannot reach the agent at {base}: {e} (is `kapacitor-pagertree serve` running with this http_addr?)")
                })?;
                let status = resp.status();
                let body = resp.text().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("{url} answered {status}: {}", body.trim()));
                }
                Ok(body)
            })
        })
        // The CLI's output boundary (the agent redacts too; an older one may not).
        .map(|body| crate::ops::redact::text(&body, &[]))
        .map_err(AlertsError::Fetch)
}

/// The alerts JSON as an aligned table ("no open alerts" when empty).
pub fn table(body: &str) -> Result<String, String> {
    let parsed: AlertsResponse = serde_json::from_str(body)
        .map_err(|e| format!("the agent did not answer with the alerts JSON: {e}"))?;
    if parsed.alerts.is_empty() {
        return Ok("no open alerts\n".into());
    }
    let header = ["TASK", "NODE", "ID", "LEVEL", "SINCE", "DELIVERY"].map(String::from);
    let rows: Vec<[String; 6]> = parsed
        .alerts
        .iter()
        .map(|a| {
            let delivery = match &a.delivery_detail {
                Some(d) => format!("{} ({d})", a.delivery.as_str()),
                None => a.delivery.as_str().to_string(),
            };
            [
                a.task.clone(),
                a.node.clone(),
                a.id.clone(),
                a.level.to_string(),
                if a.since.is_empty() {
                    "(before restart)".to_string()
                } else {
                    a.since.clone()
                },
                delivery,
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    Ok(out)
}
