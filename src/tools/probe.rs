//! `check --connect`: does an address answer at all? One GET, never an alert.

use std::time::Duration;

use crate::ops::redact;

/// One GET; any HTTP status means the endpoint answers. Errors never show
/// the URL's path (it is the secret).
pub async fn probe(url: &str, connect_timeout: Duration, timeout: Duration) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .user_agent(concat!(
            "kapacitor-pagertree/",
            env!("CARGO_PKG_VERSION"),
            " (check)"
        ))
        .build()
        .map_err(|e| e.to_string())?;
    match client.get(url).send().await {
        Ok(resp) => Ok(resp.status().as_u16()),
        Err(e) => {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            // reqwest's message includes the URL; keep only the cause chain.
            let mut cause = String::new();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                cause = s.to_string();
                src = s.source();
            }
            Err(format!(
                "{kind} ({}){}",
                redact::url(url),
                if cause.is_empty() {
                    String::new()
                } else {
                    format!(": {cause}")
                }
            ))
        }
    }
}
