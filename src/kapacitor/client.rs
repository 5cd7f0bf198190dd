//! Kapacitor's HTTP API: one client for every request the agent makes of
//! it (the `.ServerInfo` read; task revival's reads and PATCHes of tasks).
//! It owns the connection settings of `[kapacitor]`: the base URL, authentication (basic, or a
//! short-lived HS256 bearer token signed with `shared_secret`, written by
//! hand: three base64url parts and one HMAC), `insecure_skip_verify`, and
//! one timeout that bounds a whole request (connect, answer, body).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ops::config::KapacitorConfig;
use crate::ops::redact;

/// Lifetime of a signed bearer token: one request.
const TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Why a request to Kapacitor's API failed. URLs are shown redacted.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("{method} {url}: {source}")]
    Http {
        method: &'static str,
        url: String,
        source: reqwest::Error,
    },
    #[error("{method} {url}: HTTP {status}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
    },
    #[error("{method} {url}: no answer within {after:?}")]
    Timeout {
        method: &'static str,
        url: String,
        after: Duration,
    },
}

impl ApiError {
    /// The error and its causes on one line (reqwest's own text leaves out
    /// the cause: connection refused, a DNS or TLS failure). Not redacted
    /// beyond the URL: scrub secrets with `ops::redact::text`.
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let s_text = s.to_string();
            if !text.contains(&s_text) {
                text.push_str(": ");
                text.push_str(&s_text);
            }
            source = s.source();
        }
        text
    }
}

/// How requests authenticate.
#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic {
        username: String,
        password: String,
    },
    /// Kapacitor's `shared-secret`: a fresh signed token per request.
    Bearer {
        username: String,
        secret: String,
    },
}

/// A client of one Kapacitor's API. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct KapacitorClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    timeout: Duration,
}

impl KapacitorClient {
    /// A client for `[kapacitor]`; every request gets at most `timeout`.
    pub fn new(config: &KapacitorConfig, timeout: Duration) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .danger_accept_invalid_certs(config.insecure_skip_verify)
            .build()
            .map_err(ApiError::Client)?;
        let auth = if !config.shared_secret.is_empty() {
            Auth::Bearer {
                username: config.username.clone(),
                secret: config.shared_secret.clone(),
            }
        } else if !config.username.is_empty() {
            Auth::Basic {
                username: config.username.clone(),
                password: config.password.clone(),
            }
        } else {
            Auth::None
        };
        Ok(Self {
            http,
            base: config.url.trim_end_matches('/').to_string(),
            auth,
            timeout,
        })
    }

    /// `{url}{path}`: `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`: the body of a `200 OK` answer.
    pub async fn get(&self, path: &str) -> Result<Vec<u8>, ApiError> {
        let answer = self.send(Method::Get, path).await?;
        if answer.status != 200 {
            return Err(ApiError::Status {
                method: Method::Get.as_str(),
                url: redact::url(&self.url(path)),
                status: answer.status,
            });
        }
        Ok(answer.body)
    }

    /// One request with the configured authentication, bounded by the
    /// timeout: the answer whatever its status (the caller decides what a
    /// status means). A JSON `body` goes with `Content-Type: application/json`.
    pub async fn send(&self, method: Method<'_>, path: &str) -> Result<Answer, ApiError> {
        let name = method.as_str();
        let url = self.url(path);
        let shown = redact::url(&url);
        let http = |source| ApiError::Http {
            method: name,
            url: shown.clone(),
            source,
        };
        let mut req = match method {
            Method::Get => self.http.get(&url),
            Method::Patch(body) => self
                .http
                .patch(&url)
                .header("Content-Type", "application/json")
                .body(body.to_string()),
        };
        match &self.auth {
            Auth::None => {}
            Auth::Basic { username, password } => req = req.basic_auth(username, Some(password)),
            Auth::Bearer { username, secret } => {
                req = req.bearer_auth(sign_token(username, secret, now_s()))
            }
        }
        tokio::time::timeout(self.timeout, async {
            let resp = req.send().await.map_err(http)?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map(|b| b.to_vec()).map_err(http)?;
            Ok(Answer { status, body })
        })
        .await
        .map_err(|_| ApiError::Timeout {
            method: name,
            url: shown.clone(),
            after: self.timeout,
        })?
    }
}

/// A request's method (and body).
#[derive(Debug, Clone, Copy)]
pub enum Method<'a> {
    Get,
    /// `PATCH` with this JSON body.
    Patch(&'a str),
}

impl Method<'_> {
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Patch(_) => "PATCH",
        }
    }
}

/// Kapacitor's answer: its status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A JWT (HS256) with the claims Kapacitor checks: `username`, `exp`.
pub fn sign_token(username: &str, secret: &str, now_s: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "username": username,
        "exp": now_s + TOKEN_LIFETIME.as_secs(),
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    // HMAC accepts keys of any length; the error case cannot happen.
    let sig = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{signing_input}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_a_known_hs256_signature() {
        // The three parts decode to the header, the claims, and the MAC of
        // the first two under the secret.
        let t = sign_token("bob", "secret", 1_000);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "HS256");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["username"], "bob");
        assert_eq!(claims["exp"], 1_060);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .unwrap();
    }

    #[test]
    fn hmac_sha256_is_rfc_4231() {
        // RFC 4231, test case 2.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
