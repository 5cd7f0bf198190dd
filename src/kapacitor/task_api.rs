//! [`TaskApi`] over Kapacitor's HTTP API with the `[kapacitor]` settings:
//! `url`, basic auth (`username`/`password`) or an HS256 bearer token signed
//! with `shared_secret`, `insecure_skip_verify`; every request bounded by
//! [`REQUEST_TIMEOUT`].

use std::time::Duration;

use serde::Deserialize;

use crate::kapacitor::revive::{ApiFailure, Lookup, TaskApi};
use crate::ops::config::KapacitorConfig;

/// Each request (connect, answer, body) gets this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for Kapacitor's API: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// Kapacitor's tasks endpoint.
pub struct HttpTaskApi {
    client: reqwest::Client,
    config: KapacitorConfig,
}

/// The fields of Kapacitor's task JSON (`client/v1` `Task`) revival reads.
#[derive(Debug, Deserialize)]
struct TaskJson {
    status: String,
    executing: bool,
    #[serde(default)]
    error: String,
}

/// Kapacitor's error JSON (`httpd.HttpError`).
#[derive(Debug, Deserialize)]
struct ErrorJson {
    error: String,
}

impl HttpTaskApi {
    pub fn new(config: &KapacitorConfig) -> Result<HttpTaskApi, ClientError> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .danger_accept_invalid_certs(config.insecure_skip_verify)
            .build()?;
        Ok(HttpTaskApi {
            client,
            config: config.clone(),
        })
    }

    fn url(&self, id: &str) -> String {
        format!(
            "{}/kapacitor/v1/tasks/{id}",
            self.config.url.trim_end_matches('/')
        )
    }

    /// The error and its causes, one line, without the URL (the task id
    /// is in every log line already) and with no secret in it.
    fn describe(&self, what: &str, e: reqwest::Error) -> String {
        let e = e.without_url();
        let mut text = format!("{what}: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        crate::delivery::redact::text(&text, &[&self.config.password, &self.config.shared_secret])
    }

    async fn call(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Lookup, ApiFailure> {
        let k = &self.config;
        let req = if !k.shared_secret.is_empty() {
            req.bearer_auth(crate::ops::server_info::sign_token(
                &k.username,
                &k.shared_secret,
                crate::ops::server_info::now_s(),
            ))
        } else if !k.username.is_empty() {
            req.basic_auth(&k.username, Some(&k.password))
        } else {
            req
        };
        let resp = req
            .send()
            .await
            .map_err(|e| ApiFailure::Unreachable(self.describe(what, e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ApiFailure::Unreachable(self.describe(what, e)))?;
        let kapacitor_says = || {
            serde_json::from_slice::<ErrorJson>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| {
                    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
                })
        };
        match status {
            200 => {
                let t: TaskJson = serde_json::from_slice(&body).map_err(|e| {
                    ApiFailure::Refused(format!("{what}: the answer is not a Kapacitor task: {e}"))
                })?;
                Ok(Lookup::Found {
                    enabled: t.status == "enabled",
                    executing: t.executing,
                    error: t.error,
                })
            }
            404 => Ok(Lookup::NotFound),
            408 | 429 | 500..=599 => Err(ApiFailure::Unreachable(format!(
                "{what}: HTTP {status}: {}",
                kapacitor_says()
            ))),
            _ => Err(ApiFailure::Refused(format!(
                "{what}: HTTP {status}: {}",
                kapacitor_says()
            ))),
        }
    }
}

impl TaskApi for HttpTaskApi {
    async fn get_task(&self, id: &str) -> Result<Lookup, ApiFailure> {
        self.call(self.client.get(self.url(id)), "GET /kapacitor/v1/tasks/ID")
            .await
    }

    async fn set_status(&self, id: &str, enabled: bool) -> Result<Lookup, ApiFailure> {
        let status = if enabled { "enabled" } else { "disabled" };
        let req = self
            .client
            .patch(self.url(id))
            .header("Content-Type", "application/json")
            .body(format!("{{\"status\":\"{status}\"}}"));
        let what = if enabled {
            "PATCH /kapacitor/v1/tasks/ID {\"status\":\"enabled\"}"
        } else {
            "PATCH /kapacitor/v1/tasks/ID {\"status\":\"disabled\"}"
        };
        self.call(req, what).await
    }
}
