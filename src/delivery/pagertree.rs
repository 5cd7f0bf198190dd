//! PagerTree: the two payload formats, endpoint resolution and the HTTP client.
//!
//! This module owns what goes on the wire and how an answer is read:
//!
//! - [`body`]: an [`Event`] → request body bytes. Format `kapacitor` is exactly
//!   Kapacitor's `alert.Data` JSON ([`crate::alert::json::alert_data_json`]), which
//!   PagerTree's Kapacitor integration reads; format `webhook` is PagerTree's
//!   generic Webhook v3 body ([`webhook_body`]).
//! - [`Endpoints`]: the `[endpoints.NAME]` tables and `delivery.default_endpoint`;
//!   [`Endpoints::resolve`] turns a node's [`Route`] into a [`Target`] (what the
//!   outbox row stores), [`Endpoints::send_params`] finds the URL and token at
//!   send time, so a corrected config takes effect for rows already stored.
//! - [`HttpClient`]: reqwest with rustls, per-endpoint connect and request
//!   timeouts, no redirects (a redirected POST would turn into a GET and a
//!   page would be lost while looking delivered), proxies from the
//!   environment (`HTTPS_PROXY`, `NO_PROXY`: reqwest reads them by default).
//! - [`classify`]: an answer (or a failure to get one) → what the dispatcher
//!   does next, per docs/pagertree.md *Responses*.
//!
//! Every error text that could carry a URL or token is redacted
//! ([`crate::ops::redact`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use crate::alert::{Event, Format, Level, Route};
use crate::ops::config::{Config, EndpointConfig, PayloadFormat};
use crate::ops::redact;

/// The request body of an event in the given format.
pub fn body(event: &Event, format: Format) -> Vec<u8> {
    match format {
        Format::Kapacitor => kapacitor_body(event),
        Format::Webhook => webhook_body(event),
    }
}

/// Kapacitor's `alert.Data` JSON, byte for byte what `|alert().post()` sends.
pub fn kapacitor_body(event: &Event) -> Vec<u8> {
    crate::alert::json::alert_data_json(event)
}

/// The urgency a webhook event carries for `level`: the node's
/// `.urgency(level, urgency)` (the last one given for a level wins), else the
/// default INFO→low, WARNING→medium, CRITICAL→critical. OK has none.
pub fn urgency(route: &Route, level: Level) -> Option<&str> {
    if let Some((_, u)) = route.urgency.iter().rev().find(|(l, _)| *l == level) {
        return Some(u.as_str());
    }
    match level {
        Level::OK => None,
        Level::INFO => Some("low"),
        Level::WARNING => Some("medium"),
        Level::CRITICAL => Some("critical"),
    }
}

#[derive(Serialize)]
struct WebhookBody<'a> {
    event_type: &'static str,
    id: &'a str,
    title: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    urgency: Option<&'a str>,
    tags: Vec<String>,
    meta: WebhookMeta<'a>,
    dedup_keys: [&'a str; 1],
}

/// Kept by PagerTree as the alert's metadata (none of the `incident` keys:
/// promoting alerts to incidents is a PagerTree-side decision).
#[derive(Serialize)]
struct WebhookMeta<'a> {
    task: &'a str,
    node: &'a str,
    level: &'static str,
    previous_level: &'static str,
    time: String,
    duration: i64,
    recoverable: bool,
}

/// PagerTree's generic Webhook v3 body: `event_type` create (any non-OK
/// level) or resolve (OK), the alert id as `id` and as the only dedup key (a
/// repeated create folds into the open alert), message → title, details →
/// description, urgency from [`urgency`], the node's `.tags()` as `name:value`
/// taken from the point's tags (a missing tag is left out).
pub fn webhook_body(event: &Event) -> Vec<u8> {
    let tags = event
        .route
        .tags
        .iter()
        .filter_map(|name| event.data.tags.get(name).map(|v| format!("{name}:{v}")))
        .collect();
    let b = WebhookBody {
        event_type: if event.level == Level::OK {
            "resolve"
        } else {
            "create"
        },
        id: &event.id,
        title: &event.message,
        description: &event.details,
        urgency: urgency(&event.route, event.level),
        tags,
        meta: WebhookMeta {
            task: &event.task,
            node: &event.node,
            level: event.level.as_str(),
            previous_level: event.previous_level.as_str(),
            time: crate::gofmt::rfc3339_nano(event.time),
            duration: event.duration,
            recoverable: event.recoverable,
        },
        dedup_keys: [&event.id],
    };
    // Serializing plain strings and numbers into a Vec cannot fail.
    serde_json::to_vec(&b).unwrap_or_default()
}

/// Where one event goes, decided when it is committed and stored in its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The config endpoint's name (`""` when neither the node nor the config
    /// names one: then only `url_override` can address it).
    pub endpoint: String,
    /// The node's `.url()`, which replaces only the endpoint's address.
    pub url_override: Option<String>,
    /// The address as resolved at commit time: the order key's first half.
    pub url: String,
    pub format: Format,
}

/// What a request needs at send time, looked up from the current config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendParams {
    pub url: String,
    pub token: Option<String>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

impl From<PayloadFormat> for Format {
    fn from(f: PayloadFormat) -> Format {
        match f {
            PayloadFormat::Kapacitor => Format::Kapacitor,
            PayloadFormat::Webhook => Format::Webhook,
        }
    }
}

/// The configured endpoints and the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Endpoints {
    map: BTreeMap<String, EndpointConfig>,
    default_endpoint: String,
}

impl Endpoints {
    pub fn from_config(config: &Config) -> Self {
        // Tokens are scrubbed from every output of the process from now on.
        redact::register_secrets(config.endpoints.values().map(|e| e.token.as_str()));
        Self {
            map: config.endpoints.clone(),
            default_endpoint: config.delivery.default_endpoint.clone(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&EndpointConfig> {
        self.map.get(name)
    }

    /// The node's route → target: `.endpoint()` names a config endpoint (else
    /// the default), `.url()` overrides its address, the format is the node's,
    /// else the endpoint's, else `kapacitor`.
    pub fn resolve(&self, route: &Route) -> Target {
        let endpoint = route
            .endpoint
            .clone()
            .unwrap_or_else(|| self.default_endpoint.clone());
        let ep = self.map.get(&endpoint);
        let url = route
            .url
            .clone()
            .or_else(|| ep.map(|e| e.url.clone()))
            .unwrap_or_default();
        let format = route
            .format
            .or_else(|| ep.map(|e| e.format.into()))
            .unwrap_or_default();
        Target {
            endpoint,
            url_override: route.url.clone(),
            url,
            format,
        }
    }

    /// URL, token and timeouts for a stored row, from the config as it is now.
    pub fn send_params(
        &self,
        endpoint: &str,
        url_override: Option<&str>,
    ) -> Result<SendParams, String> {
        let ep = self.map.get(endpoint);
        let defaults = EndpointConfig::default();
        let cfg = ep.unwrap_or(&defaults);
        let url = match (url_override, ep) {
            (Some(u), _) => u.to_string(),
            (None, Some(e)) if !e.url.is_empty() => e.url.clone(),
            (None, Some(_)) => {
                return Err(format!("endpoint {endpoint:?} has no url in the config"));
            }
            (None, None) if endpoint.is_empty() => {
                return Err("no url() on the node and no default_endpoint in the config".into());
            }
            (None, None) => return Err(format!("no endpoint named {endpoint:?} in the config")),
        };
        Ok(SendParams {
            url,
            token: (!cfg.token.is_empty()).then(|| cfg.token.clone()),
            timeout: cfg.timeout,
            connect_timeout: cfg.connect_timeout,
        })
    }

    /// Configuration mistakes worth a warning at start: a token on a
    /// `kapacitor`-format endpoint (PagerTree's Kapacitor integration has no
    /// token and ignores it), an endpoint without a URL, a default endpoint
    /// that does not exist.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        for (name, e) in &self.map {
            if e.url.is_empty() {
                w.push(format!("endpoint {name:?} has no url"));
            }
            if e.format == PayloadFormat::Kapacitor && !e.token.is_empty() {
                w.push(format!(
                    "endpoint {name:?} ({}) has a token but format \"kapacitor\": PagerTree's Kapacitor integration \
                     ignores tokens; use format = \"webhook\" to have it checked",
                    redact::url(&e.url)
                ));
            }
        }
        if !self.default_endpoint.is_empty() && !self.map.contains_key(&self.default_endpoint) {
            w.push(format!(
                "default_endpoint {:?} is not defined under [endpoints]",
                self.default_endpoint
            ));
        }
        w
    }

    /// Every secret of the config (tokens), to scrub from free text.
    pub fn secrets(&self) -> Vec<&str> {
        self.map
            .values()
            .filter(|e| !e.token.is_empty())
            .map(|e| e.token.as_str())
            .collect()
    }
}

/// What PagerTree (or the network) answered to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After` as a wait from now (seconds or an HTTP date).
    pub retry_after: Option<Duration>,
    /// The start of the response body, for logs.
    pub body: String,
    pub elapsed: Duration,
}

/// A request that got no HTTP answer. Messages are redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("cannot build an HTTP client: {0}")]
    Client(String),
    /// Not an http(s) URL: only a config or TICKscript fix helps.
    #[error("not a usable http(s) URL: {0}")]
    BadUrl(String),
}

/// What the dispatcher does with a row after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: remove the row.
    Delivered { status: u16 },
    /// 5xx, 408, timeouts, connection errors: back off and retry.
    Transient { reason: String },
    /// 429: wait `retry_after` if PagerTree sent one, else `retry_max`.
    RateLimited {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// 402, 403, 405, other 4xx, redirects, a config without the endpoint:
    /// a human must act. Keep, hold the id back, retry slowly, alarm loudly.
    Park { reason: String },
}

/// docs/pagertree.md *Responses*, as a decision.
pub fn classify(result: &Result<Answer, SendError>) -> Outcome {
    let a = match result {
        Ok(a) => a,
        Err(e @ SendError::BadUrl(_)) => {
            return Outcome::Park {
                reason: e.to_string(),
            };
        }
        Err(SendError::Client(e)) => {
            return Outcome::Park {
                reason: format!("cannot build an HTTP client: {e}"),
            };
        }
        Err(e) => {
            return Outcome::Transient {
                reason: e.to_string(),
            };
        }
    };
    let s = a.status;
    let snippet = if a.body.is_empty() {
        String::new()
    } else {
        format!(": {}", a.body)
    };
    match s {
        200..=299 => Outcome::Delivered { status: s },
        429 => Outcome::RateLimited {
            retry_after: a.retry_after,
            reason: match a.retry_after {
                Some(d) => format!("429 rate limited, Retry-After {d:?}"),
                None => "429 rate limited, no Retry-After".into(),
            },
        },
        408 | 500..=599 => Outcome::Transient {
            reason: format!("HTTP {s}{snippet}"),
        },
        402 => Outcome::Park {
            reason: format!(
                "HTTP 402: PagerTree account subscription inactive or plan too small{snippet}"
            ),
        },
        403 => Outcome::Park {
            reason: format!("HTTP 403: refused (wrong or missing token?){snippet}"),
        },
        405 => Outcome::Park {
            reason: format!("HTTP 405: integration disabled{snippet}"),
        },
        300..=399 => Outcome::Park {
            reason: format!("HTTP {s}: redirect (fix the endpoint URL){snippet}"),
        },
        400..=499 => Outcome::Park {
            reason: format!("HTTP {s}: refused{snippet}"),
        },
        _ => Outcome::Transient {
            reason: format!("unexpected HTTP status {s}"),
        },
    }
}

/// Parses `Retry-After`: delay-seconds, or an HTTP date (IMF-fixdate, e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`) taken relative to `now` (a date in the
/// past means "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(v)?;
    let now_s = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(at.saturating_sub(now_s).max(0) as u64))
}

/// IMF-fixdate → seconds since the epoch.
fn parse_http_date(v: &str) -> Option<i64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let (_, rest) = v.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: i64 = parts.next()?.parse().ok()?;
    let mon = parts.next()?;
    let year: i64 = parts.next()?.parse().ok()?;
    let hms = parts.next()?;
    if parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| *x == mon)? as i64 + 1;
    let mut t = hms.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let s: i64 = t.next()?.parse().ok()?;
    if !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(crate::gofmt::days_from_civil(year, m, day) * 86_400 + h * 3600 + mi * 60 + s)
}

/// The HTTP client: one reqwest client per connect timeout (reqwest sets it
/// per client; the request timeout is set per request), shared connection
/// pools, rustls, no redirects, proxies from the environment.
#[derive(Debug, Default)]
pub struct HttpClient {
    clients: Mutex<HashMap<Duration, reqwest::Client>>,
}

/// The longest response body kept for logs.
const BODY_SNIPPET: usize = 300;

/// The most of a response body ever read (PagerTree answers a few hundred
/// bytes; a larger body is cut, and its connection closed, not pooled).
pub const BODY_READ_LIMIT: usize = 4096;

/// Reads at most `limit` bytes of a response body, chunk by chunk: a huge or
/// endless body costs `limit` bytes, not its length. A body read whole goes
/// back to the pool; a cut one is dropped with its connection.
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match resp.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c[..c.len().min(limit - out.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// The largest `i <= max` that does not split a UTF-8 character of `b`.
fn floor_char_boundary(b: &[u8], max: usize) -> usize {
    let mut i = b.len().min(max);
    while i > 0 && i < b.len() && (b[i] & 0xC0) == 0x80 {
        i -= 1;
    }
    i
}

impl HttpClient {
    pub fn new() -> Self {
        Self::default()
    }

    fn client(&self, connect_timeout: Duration) -> Result<reqwest::Client, SendError> {
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&connect_timeout) {
            return Ok(c.clone());
        }
        let c = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kapacitor-pagertree/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| SendError::Client(error_text(&e, &[])))?;
        map.insert(connect_timeout, c.clone());
        Ok(c)
    }

    /// POSTs `body` as JSON to `p.url`, with the token header when set.
    pub async fn post(&self, p: &SendParams, body: Bytes) -> Result<Answer, SendError> {
        check_url(&p.url)?;
        let client = self.client(p.connect_timeout)?;
        let started = Instant::now();
        let mut req = client
            .post(&p.url)
            .timeout(p.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(t) = &p.token {
            req = req.header("pagertree-token", t);
        }
        let secrets: Vec<&str> = p.token.as_deref().into_iter().collect();
        let resp = req
            .send()
            .await
            .map_err(|e| map_err(&e, p.timeout, &secrets))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let bytes = read_capped(resp, BODY_READ_LIMIT).await;
        let end = floor_char_boundary(&bytes, BODY_SNIPPET);
        let body = redact::text(String::from_utf8_lossy(&bytes[..end]).trim(), &secrets);
        Ok(Answer {
            status,
            retry_after,
            body,
            elapsed: started.elapsed(),
        })
    }
}

/// An endpoint URL must be absolute http or https with a host.
pub fn check_url(url: &str) -> Result<(), SendError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(u) => Err(SendError::BadUrl(format!(
            "{} (scheme {:?})",
            redact::url(url),
            u.scheme()
        ))),
        Err(e) => Err(SendError::BadUrl(format!("{} ({e})", redact::url(url)))),
    }
}

fn map_err(e: &reqwest::Error, timeout: Duration, secrets: &[&str]) -> SendError {
    if e.is_timeout() {
        SendError::Timeout(timeout)
    } else if e.is_connect() {
        SendError::Connect(error_text(e, secrets))
    } else {
        SendError::Request(error_text(e, secrets))
    }
}

/// A reqwest error with its causes, without the URL, scrubbed.
fn error_text(e: &reqwest::Error, secrets: &[&str]) -> String {
    use std::error::Error as _;
    let mut s = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.source();
    s.push_str(if e.is_connect() {
        "connection error"
    } else if e.is_body() {
        "body error"
    } else if e.is_request() {
        "request error"
    } else {
        "error"
    });
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    redact::text(&s, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Series;
    use std::sync::Arc;

    fn event(level: Level, route: Route) -> Event {
        let mut tags = BTreeMap::new();
        tags.insert("host".to_string(), "web1".to_string());
        tags.insert("dc".to_string(), "eu".to_string());
        Event {
            task: "t".into(),
            node: "pagertree2".into(),
            id: "cpu:host=web1".into(),
            message: "cpu is CRITICAL".into(),
            details: "<b>hot</b>".into(),
            time: 1_580_702_706_003_000_000,
            duration: 60_000_000_000,
            level,
            previous_level: Level::OK,
            recoverable: true,
            data: Series {
                name: "cpu".into(),
                tags,
                columns: vec!["time".into()],
                values: vec![],
            },
            route: Arc::new(route),
        }
    }

    #[test]
    fn webhook_create_has_every_key() {
        let route = Route {
            tags: vec!["host".into(), "nope".into()],
            ..Route::default()
        };
        let v: serde_json::Value =
            serde_json::from_slice(&webhook_body(&event(Level::CRITICAL, route))).unwrap();
        assert_eq!(v["event_type"], "create");
        assert_eq!(v["id"], "cpu:host=web1");
        assert_eq!(v["title"], "cpu is CRITICAL");
        assert_eq!(v["description"], "<b>hot</b>");
        assert_eq!(v["urgency"], "critical");
        assert_eq!(v["tags"], serde_json::json!(["host:web1"]));
        assert_eq!(v["dedup_keys"], serde_json::json!(["cpu:host=web1"]));
        assert_eq!(v["meta"]["task"], "t");
        assert_eq!(v["meta"]["time"], "2020-02-03T04:05:06.003Z");
        assert_eq!(v["meta"]["duration"], 60_000_000_000i64);
    }

    #[test]
    fn webhook_resolve_and_urgency_mapping() {
        let route = Route {
            urgency: vec![
                (Level::WARNING, "low".into()),
                (Level::WARNING, "high".into()),
            ],
            ..Route::default()
        };
        let v: serde_json::Value =
            serde_json::from_slice(&webhook_body(&event(Level::OK, route.clone()))).unwrap();
        assert_eq!(v["event_type"], "resolve");
        assert!(v.get("urgency").is_none());
        assert_eq!(urgency(&route, Level::WARNING), Some("high"));
        assert_eq!(urgency(&route, Level::INFO), Some("low"));
        assert_eq!(urgency(&Route::default(), Level::WARNING), Some("medium"));
    }

    #[test]
    fn resolve_targets() {
        let cfg = Config::from_toml(
            "[delivery]\ndefault_endpoint = \"main\"\n\
             [endpoints.main]\nurl = \"https://a/integration/int_main\"\n\
             [endpoints.hook]\nurl = \"https://a/integration/int_hook\"\nformat = \"webhook\"\ntoken = \"tok\"\ntimeout = \"3s\"\n",
            "t",
        )
        .unwrap();
        let eps = Endpoints::from_config(&cfg);
        let t = eps.resolve(&Route::default());
        assert_eq!(
            (t.endpoint.as_str(), t.url.as_str(), t.format),
            ("main", "https://a/integration/int_main", Format::Kapacitor)
        );
        let t = eps.resolve(&Route {
            endpoint: Some("hook".into()),
            url: Some("http://o/x".into()),
            ..Route::default()
        });
        assert_eq!(
            (t.url.as_str(), t.format, t.url_override.as_deref()),
            ("http://o/x", Format::Webhook, Some("http://o/x"))
        );
        let p = eps.send_params("hook", Some("http://o/x")).unwrap();
        assert_eq!(
            (p.url.as_str(), p.token.as_deref(), p.timeout),
            ("http://o/x", Some("tok"), Duration::from_secs(3))
        );
        assert!(eps.send_params("gone", None).unwrap_err().contains("gone"));
        assert!(eps.send_params("", None).is_err());
        let t = eps.resolve(&Route {
            format: Some(Format::Webhook),
            ..Route::default()
        });
        assert_eq!(t.format, Format::Webhook);
        assert!(eps.warnings().is_empty());
    }

    #[test]
    fn warns_about_kapacitor_tokens() {
        let cfg = Config::from_toml(
            "[delivery]\ndefault_endpoint = \"x\"\n[endpoints.k]\nurl = \"https://a/integration/int_ODCWagoG9\"\ntoken = \"t\"\n",
            "t",
        )
        .unwrap();
        let w = Endpoints::from_config(&cfg).warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("int_OD…") && !w[0].contains("ODCWagoG9"),
            "{w:?}"
        );
    }

    fn answer(status: u16, retry_after: Option<Duration>) -> Result<Answer, SendError> {
        Ok(Answer {
            status,
            retry_after,
            body: String::new(),
            elapsed: Duration::ZERO,
        })
    }

    #[test]
    fn classification_follows_pagertree() {
        assert_eq!(
            classify(&answer(200, None)),
            Outcome::Delivered { status: 200 }
        );
        assert!(matches!(
            classify(&answer(500, None)),
            Outcome::Transient { .. }
        ));
        assert!(matches!(
            classify(&answer(503, None)),
            Outcome::Transient { .. }
        ));
        assert!(matches!(
            classify(&answer(408, None)),
            Outcome::Transient { .. }
        ));
        assert_eq!(
            classify(&answer(429, Some(Duration::from_secs(7)))),
            Outcome::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
                reason: "429 rate limited, Retry-After 7s".into()
            }
        );
        assert!(matches!(
            classify(&answer(429, None)),
            Outcome::RateLimited {
                retry_after: None,
                ..
            }
        ));
        for s in [301, 400, 402, 403, 404, 405, 422] {
            assert!(
                matches!(classify(&answer(s, None)), Outcome::Park { .. }),
                "{s}"
            );
        }
        assert!(matches!(
            classify(&Err(SendError::Timeout(Duration::from_secs(1)))),
            Outcome::Transient { .. }
        ));
        assert!(matches!(
            classify(&Err(SendError::Connect("refused".into()))),
            Outcome::Transient { .. }
        ));
    }

    #[test]
    fn unusable_urls_park() {
        assert!(check_url("https://api.pagertree.com/integration/int_x").is_ok());
        assert!(check_url("http://127.0.0.1:9/integration/int_x").is_ok());
        for bad in [
            "",
            "api.pagertree.com/integration/int_x",
            "ftp://h/int_x",
            "https://",
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(
                matches!(classify(&Err(e.clone())), Outcome::Park { .. }),
                "{bad}: {e}"
            );
        }
        let e = check_url("ftp://h/integration/int_ODCWagoG9")
            .unwrap_err()
            .to_string();
        assert!(e.contains("int_OD…") && !e.contains("ODCWagoG9"), "{e}");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Foo 1994 08:49:47 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
