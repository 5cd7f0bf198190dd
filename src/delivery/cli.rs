//! What `kapacitor-pagertree outbox list|retry|drop` and `send-test` do, as
//! library functions the command line wires up (it owns the arguments and
//! the exit codes; this module owns the work and the wording).
//!
//! Every line printed here is redacted: endpoint URLs show `int_XX…` at
//! most, tokens never appear.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::alert::{Event, Format, Level, Route, Series};
use crate::delivery::outbox::{HeldEvent, HeldKind, Outbox, OutboxError, Selection};
use crate::delivery::pagertree::{self, Endpoints, HttpClient, Outcome};
use crate::ops::config::Config;
use crate::ops::now_ns;
use crate::ops::redact;

/// A CLI-level failure, with what the user should fix.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("no outbox at {0}: is --data-dir right? (the agent creates it at its first start)")]
    NoOutbox(String),
    #[error("{0:?} is neither `all` nor an event number (see `outbox list`)")]
    BadSelection(String),
    #[error("say which events: `all` or their numbers (see `outbox list`)")]
    EmptySelection,
    #[error(
        "send-test needs an endpoint: --endpoint NAME, --url URL, or a default_endpoint in the config"
    )]
    NoEndpoint,
    #[error("send-test: {0}")]
    Endpoint(String),
    #[error(transparent)]
    Import(#[from] crate::delivery::outbox::ImportError),
}

/// `outbox import FILE`: the spill file's events into the outbox.
pub fn import(outbox: &Outbox, file: &Path) -> Result<String, CliError> {
    let n = outbox.import(file)?;
    Ok(format!(
        "imported {n} event(s) from {}; remove the file now (importing it again sends them again)\n",
        file.display()
    ))
}

/// Opens the outbox of a data directory for inspection; refuses to create one.
pub fn open_existing(data_dir: &Path, config: &Config) -> Result<Outbox, CliError> {
    let db = data_dir.join(crate::delivery::outbox::DB_FILE);
    if !db.exists() {
        return Err(CliError::NoOutbox(db.display().to_string()));
    }
    Ok(Outbox::open(
        data_dir,
        Endpoints::from_config(config),
        config.delivery.memory_queue,
    )?)
}

/// Parses the events an `outbox retry|drop` acts on: `all`, or numbers.
pub fn parse_selection<S: AsRef<str>>(args: &[S]) -> Result<Selection, CliError> {
    if args.is_empty() {
        return Err(CliError::EmptySelection);
    }
    if args.len() == 1 && args[0].as_ref().eq_ignore_ascii_case("all") {
        return Ok(Selection::All);
    }
    args.iter()
        .map(|a| {
            a.as_ref()
                .trim()
                .parse::<i64>()
                .map_err(|_| CliError::BadSelection(a.as_ref().to_string()))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Selection::Seqs)
}

/// `outbox list`: the parked and dead-lettered events, and how many wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub held: Vec<HeldEvent>,
    /// Undelivered rows (pending and parked).
    pub pending: u64,
    pub oldest_pending_ns: Option<i64>,
    pub now_ns: i64,
}

pub fn list(outbox: &Outbox) -> Result<Listing, CliError> {
    let held = outbox.held()?;
    let (pending, oldest_pending_ns) = outbox.pending()?;
    Ok(Listing {
        held,
        pending,
        oldest_pending_ns,
        now_ns: now_ns(),
    })
}

fn age(now: i64, then: i64) -> String {
    let secs = ((now - then).max(0) / 1_000_000_000) as u64;
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// One line of text without newlines or tabs (reasons can hold response bodies).
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

impl fmt::Display for Listing {
    /// The CLI's output boundary: the text goes through the one redaction.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        self.render(&mut text)?;
        f.write_str(&redact::text(&text, &[]))
    }
}

impl Listing {
    fn render(&self, f: &mut String) -> fmt::Result {
        use std::fmt::Write as _;
        let oldest = self
            .oldest_pending_ns
            .map(|o| format!(", oldest {} old", age(self.now_ns, o)))
            .unwrap_or_default();
        writeln!(f, "{} event(s) waiting for delivery{oldest}", self.pending)?;
        let parked = self
            .held
            .iter()
            .filter(|h| h.kind == HeldKind::Parked)
            .count();
        let dead = self.held.len() - parked;
        writeln!(
            f,
            "{parked} parked (PagerTree refused them; a human must act), {dead} in the dead-letter table"
        )?;
        if self.held.is_empty() {
            return Ok(());
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<11} {:>8} {:>10} {:>8}  {:<9} {:<30} {:<20} REASON",
            "KIND", "NUMBER", "AGE", "ATTEMPTS", "LEVEL", "ALERT ID", "TASK/NODE"
        )?;
        for h in &self.held {
            writeln!(
                f,
                "{:<11} {:>8} {:>10} {:>8}  {:<9} {:<30} {:<20} {}",
                h.kind.as_str(),
                h.seq,
                age(self.now_ns, h.created_ns),
                h.attempts,
                h.level,
                one_line(&h.alert_id, 30),
                one_line(&format!("{}/{}", h.task, h.node), 20),
                one_line(&h.reason, 160),
            )?;
            let ep = if h.endpoint.is_empty() {
                String::new()
            } else {
                format!("endpoint {:?}, ", h.endpoint)
            };
            writeln!(f, "{:>22} {ep}{} ({})", "→", h.url_redacted, h.format)?;
        }
        Ok(())
    }
}

/// What `outbox retry|drop` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acted {
    pub verb: &'static str,
    pub events: Vec<HeldEvent>,
    pub requested: Selection,
}

impl fmt::Display for Acted {
    /// The CLI's output boundary: the text goes through the one redaction.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        self.render(&mut text)?;
        f.write_str(&redact::text(&text, &[]))
    }
}

impl Acted {
    fn render(&self, f: &mut String) -> fmt::Result {
        use std::fmt::Write as _;
        for h in &self.events {
            writeln!(
                f,
                "{} {} #{} {} {} → {}",
                self.verb,
                h.kind.as_str(),
                h.seq,
                h.level,
                one_line(&h.alert_id, 60),
                h.url_redacted
            )?;
        }
        if let Selection::Seqs(asked) = &self.requested {
            for s in asked
                .iter()
                .filter(|s| !self.events.iter().any(|h| h.seq == **s))
            {
                writeln!(f, "no parked or dead-lettered event #{s}")?;
            }
        }
        writeln!(f, "{} event(s) {}", self.events.len(), self.verb)
    }
}

/// `outbox retry`: parked events are attempted again at once by a running
/// agent (within a second); dead letters go back to the end of the queue.
pub fn retry(outbox: &Outbox, sel: &Selection) -> Result<Acted, CliError> {
    Ok(Acted {
        verb: "retried",
        events: outbox.retry(sel)?,
        requested: sel.clone(),
    })
}

/// `outbox drop`: deletes parked or dead-lettered events for good.
pub fn drop_events(outbox: &Outbox, sel: &Selection) -> Result<Acted, CliError> {
    Ok(Acted {
        verb: "dropped",
        events: outbox.drop_held(sel)?,
        requested: sel.clone(),
    })
}

/// One request of a `send-test`.
#[derive(Debug, Clone, PartialEq)]
pub struct TestStep {
    /// `create` or `resolve`.
    pub what: &'static str,
    pub status: Option<u16>,
    /// The decision the dispatcher would take (delivered, retry, parked…).
    pub verdict: String,
    pub elapsed: Duration,
    pub body: String,
}

/// What `send-test` found.
#[derive(Debug, Clone, PartialEq)]
pub struct TestReport {
    pub url_redacted: String,
    pub endpoint: String,
    pub format: Format,
    pub token_set: bool,
    pub alert_id: String,
    pub steps: Vec<TestStep>,
    pub warnings: Vec<String>,
}

impl TestReport {
    /// Both requests were accepted.
    pub fn ok(&self) -> bool {
        self.steps.len() == 2
            && self
                .steps
                .iter()
                .all(|s| s.status.is_some_and(|c| (200..300).contains(&c)))
    }
}

impl fmt::Display for TestReport {
    /// The CLI's output boundary: the text goes through the one redaction.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        self.render(&mut text)?;
        f.write_str(&redact::text(&text, &[]))
    }
}

impl TestReport {
    fn render(&self, f: &mut String) -> fmt::Result {
        use std::fmt::Write as _;
        let ep = if self.endpoint.is_empty() {
            String::new()
        } else {
            format!("endpoint {:?}, ", self.endpoint)
        };
        writeln!(
            f,
            "send-test to {ep}{} (format {}, token {})",
            self.url_redacted,
            self.format.as_str(),
            if self.token_set { "set" } else { "none" }
        )?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        for s in &self.steps {
            let status = s
                .status
                .map(|c| c.to_string())
                .unwrap_or_else(|| "no answer".into());
            write!(
                f,
                "{:<8} alert {:?}: {status} in {:?} → {}",
                s.what, self.alert_id, s.elapsed, s.verdict
            )?;
            if !s.body.is_empty() {
                write!(f, " ({})", one_line(&s.body, 200))?;
            }
            writeln!(f)?;
        }
        if self.ok() {
            writeln!(
                f,
                "OK: PagerTree accepted the create and the resolve (check the alert in PagerTree)"
            )
        } else {
            writeln!(f, "FAILED: see the answers above")
        }
    }
}

/// `send-test`: sends a CRITICAL create and then its OK resolve, once each
/// (no retries), to the endpoint named (`endpoint`), or the `url` (with the
/// named or default endpoint's token and timeouts), in `format` or the
/// endpoint's, and reports each answer. The resolve is sent even when the
/// create failed, so no test alert is left open by a partial success.
pub async fn send_test(
    config: &Config,
    endpoint: Option<&str>,
    url: Option<&str>,
    format: Option<Format>,
) -> Result<TestReport, CliError> {
    let endpoints = Endpoints::from_config(config);
    let route = Route {
        url: url.map(str::to_string),
        endpoint: endpoint.map(str::to_string),
        format,
        ..Route::default()
    };
    let target = endpoints.resolve(&route);
    if target.url.is_empty() && target.endpoint.is_empty() {
        return Err(CliError::NoEndpoint);
    }
    let params = endpoints
        .send_params(&target.endpoint, target.url_override.as_deref())
        .map_err(|e| CliError::Endpoint(redact::text(&e, &endpoints.secrets())))?;
    let mut warnings = Vec::new();
    if target.format == Format::Kapacitor && params.token.is_some() {
        warnings.push(
            "a token is set but the format is kapacitor: PagerTree's Kapacitor integration ignores tokens".to_string(),
        );
    }
    let now = now_ns();
    let alert_id = format!("kapacitor-pagertree-send-test-{}", now / 1_000_000_000);
    let mut tags = std::collections::BTreeMap::new();
    tags.insert("source".to_string(), "send-test".to_string());
    let route = std::sync::Arc::new(route);
    let mut ev = Event {
        task: "send-test".into(),
        node: "send-test".into(),
        id: alert_id.clone(),
        message: format!(
            "{alert_id} is CRITICAL (a test from kapacitor-pagertree; it resolves itself)"
        ),
        details: "Sent by `kapacitor-pagertree send-test` to check the endpoint. No action needed."
            .into(),
        time: now,
        duration: 0,
        level: Level::CRITICAL,
        previous_level: Level::OK,
        recoverable: true,
        data: Series {
            name: "send-test".into(),
            tags,
            columns: vec!["time".into()],
            values: Vec::new(),
        },
        route,
    };
    let client = HttpClient::new();
    let secrets = endpoints.secrets();
    let mut steps = Vec::new();
    for what in ["create", "resolve"] {
        if what == "resolve" {
            ev.previous_level = Level::CRITICAL;
            ev.level = Level::OK;
            ev.message = format!("{alert_id} is OK");
            ev.time = now_ns();
            ev.duration = ev.time - now;
        }
        let body = pagertree::body(&ev, target.format);
        let started = std::time::Instant::now();
        let answer = client.post(&params, body.into()).await;
        let elapsed = started.elapsed();
        let verdict = match pagertree::classify(&answer) {
            Outcome::Delivered { .. } => "accepted".to_string(),
            Outcome::Transient { reason } => {
                format!("transient failure, the agent would retry: {reason}")
            }
            Outcome::RateLimited { reason, .. } => {
                format!("rate limited, the agent would wait: {reason}")
            }
            Outcome::Park { reason } => format!("refused, the agent would park it: {reason}"),
        };
        steps.push(TestStep {
            what,
            status: answer.as_ref().ok().map(|a| a.status),
            verdict: redact::text(&verdict, &secrets),
            elapsed,
            body: answer.map(|a| a.body).unwrap_or_default(),
        });
    }
    Ok(TestReport {
        url_redacted: redact::url(&params.url),
        endpoint: target.endpoint,
        format: target.format,
        token_set: params.token.is_some(),
        alert_id,
        steps,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections() {
        assert_eq!(parse_selection(&["all"]).unwrap(), Selection::All);
        assert_eq!(
            parse_selection(&["3", "17"]).unwrap(),
            Selection::Seqs(vec![3, 17])
        );
        assert!(matches!(
            parse_selection(&["x"]),
            Err(CliError::BadSelection(_))
        ));
        assert!(matches!(
            parse_selection::<&str>(&[]),
            Err(CliError::EmptySelection)
        ));
    }

    #[test]
    fn listing_is_redacted_and_readable() {
        let l = Listing {
            held: vec![HeldEvent {
                kind: HeldKind::Parked,
                seq: 12,
                task: "cpu".into(),
                node: "pagertree2".into(),
                alert_id: "cpu:host=web1".into(),
                level: "CRITICAL".into(),
                endpoint: "ops".into(),
                url_redacted: redact::url("https://api.pagertree.com/integration/int_ODCWagoG9"),
                format: "kapacitor".into(),
                created_ns: 0,
                attempts: 3,
                reason: "HTTP 403: refused\nsecond line".into(),
                dead_at_ns: None,
            }],
            pending: 4,
            oldest_pending_ns: Some(0),
            now_ns: 90 * 1_000_000_000,
        };
        let text = l.to_string();
        assert!(
            text.contains("4 event(s) waiting for delivery, oldest 1m 30s old"),
            "{text}"
        );
        assert!(text.contains("1 parked"), "{text}");
        assert!(
            text.contains("int_OD…") && !text.contains("ODCWagoG9"),
            "{text}"
        );
        assert!(text.contains("HTTP 403: refused second line"), "{text}");
        assert!(
            text.contains("parked") && text.contains("      12"),
            "{text}"
        );
    }

    #[test]
    fn open_existing_refuses_to_create() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_existing(dir.path(), &Config::default()).unwrap_err();
        assert!(matches!(e, CliError::NoOutbox(_)));
    }

    #[tokio::test]
    async fn send_test_needs_an_endpoint() {
        let e = send_test(&Config::default(), None, None, None)
            .await
            .unwrap_err();
        assert!(matches!(e, CliError::NoEndpoint), "{e}");
        let e = send_test(&Config::default(), Some("nope"), None, None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
