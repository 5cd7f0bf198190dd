//! Kapacitor's task API (`/kapacitor/v1/tasks/ID`) as task revival uses it
//! ([`TaskApi`]), over the one [`KapacitorClient`] (auth, TLS, timeout).
//! Maps Kapacitor's answers: 200 → the task's `status`, `executing` and
//! `error`; 404 → not found; 408, 429, 5xx and no answer → worth trying
//! again; any other status (401/403: the credentials) → refused.

use std::time::Duration;

use serde::Deserialize;

use crate::kapacitor::client::{ApiError, KapacitorClient, Method};
use crate::kapacitor::revive::{ApiFailure, Lookup, TaskApi};
use crate::ops::config::KapacitorConfig;

/// Each request (connect, answer, body) gets this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The task API of one Kapacitor.
pub struct KapacitorTasks {
    client: KapacitorClient,
    /// Secrets that must never appear in an error text.
    secrets: [String; 2],
}

impl KapacitorTasks {
    pub fn new(config: &KapacitorConfig) -> Result<KapacitorTasks, ApiError> {
        Ok(KapacitorTasks {
            client: KapacitorClient::new(config, REQUEST_TIMEOUT)?,
            secrets: [config.password.clone(), config.shared_secret.clone()],
        })
    }

    fn path(id: &str) -> String {
        format!("/kapacitor/v1/tasks/{id}")
    }

    /// The error with its causes, on one line, scrubbed of secrets.
    fn describe(&self, e: &ApiError) -> String {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        crate::ops::redact::text(&e.with_causes(), &secrets)
    }

    async fn call(&self, method: Method<'_>, id: &str) -> Result<Lookup, ApiFailure> {
        let what = match method {
            Method::Get => "GET /kapacitor/v1/tasks/ID".to_string(),
            Method::Patch(body) => format!("PATCH /kapacitor/v1/tasks/ID {body}"),
        };
        let answer = match self.client.send(method, &Self::path(id)).await {
            Ok(a) => a,
            Err(e) => return Err(ApiFailure::Unreachable(self.describe(&e))),
        };
        let kapacitor_says = || {
            serde_json::from_slice::<ErrorJson>(&answer.body)
                .map(|e| e.error)
                .unwrap_or_else(|_| {
                    String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)]).into_owned()
                })
        };
        match answer.status {
            200 => {
                let t: TaskJson = serde_json::from_slice(&answer.body).map_err(|e| {
                    ApiFailure::Refused(format!("{what}: the answer is not a Kapacitor task: {e}"))
                })?;
                Ok(Lookup::Found {
                    enabled: t.status == "enabled",
                    executing: t.executing,
                    error: t.error,
                })
            }
            404 => Ok(Lookup::NotFound),
            s @ (408 | 429 | 500..=599) => Err(ApiFailure::Unreachable(format!(
                "{what}: HTTP {s}: {}",
                kapacitor_says()
            ))),
            s => Err(ApiFailure::Refused(format!(
                "{what}: HTTP {s}: {}",
                kapacitor_says()
            ))),
        }
    }
}

impl TaskApi for KapacitorTasks {
    async fn get_task(&self, id: &str) -> Result<Lookup, ApiFailure> {
        self.call(Method::Get, id).await
    }

    async fn set_status(&self, id: &str, enabled: bool) -> Result<Lookup, ApiFailure> {
        let body = if enabled {
            r#"{"status":"enabled"}"#
        } else {
            r#"{"status":"disabled"}"#
        };
        self.call(Method::Patch(body), id).await
    }
}
