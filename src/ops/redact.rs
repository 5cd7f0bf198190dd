//! Redaction of secrets in everything a human or a log collector sees.
//!
//! A PagerTree endpoint URL is a credential: whoever knows
//! `https://api.pagertree.com/integration/int_ODCWagoG9` can page the on-call
//! person. [`text`] is *the* redaction: every output boundary passes its text
//! through it — the log (a writer wrapped around stderr, see
//! [`crate::ops::logging`]), the HTTP API (`/api/v1/alerts`) and the CLI
//! (`outbox list`, `send-test`, `alerts`). It covers:
//!
//! - URLs of any scheme (`https://…`, `ftp://…`): [`url`] keeps scheme, host
//!   and all but the last path segment; the last segment keeps a short prefix
//!   (`int_OD…`); user-info, query and fragment become `…`;
//! - bare paths such as `/integration/int_…?token=…` (an endpoint echoing the
//!   request line in an error body): the segment after `/integration/` is cut;
//! - `int_…` ids anywhere in text;
//! - query strings (`?k=v…` → `?…`);
//! - `token=…`, `password: …`, `secret=…`, `api_key=…` values;
//! - every configured token ([`register_secrets`], plus those passed in).
//!
//! It is idempotent (redacting redacted text changes nothing) and never
//! touches `"` or `\`, so a JSON line stays JSON. [`token`] says only whether
//! a token is set.

use std::sync::{LazyLock, RwLock};

use regex::Regex;

/// The marker that stands for removed characters.
const CUT: &str = "…";

/// Characters that end a URL or a value in free text (JSON and log
/// punctuation included, so a redaction never eats a quote or an escape).
const STOP: &str = r#"\s"'\\<>,;()\[\]{}`"#;

static SCHEME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z][A-Za-z0-9+.\-]*://").expect("scheme regex"));
static BARE_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?i)(/integrations?/)([^/?#{STOP}]+)")).expect("path regex")
});
static INT_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bint_[A-Za-z0-9_\-]{3,}").expect("id regex"));
static QUERY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"\?[^?#{STOP}=]*=[^{STOP}]*")).expect("query regex"));
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)\b((?:[a-z0-9_\-]*token)|password|passwd|secret|api[_\-]?key)("?\s*[=:]\s*"?)([^&{STOP}]+)"#
    ))
    .expect("key-value regex")
});

/// Tokens of the configuration, scrubbed from every [`text`].
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds secrets (endpoint tokens) that [`text`] removes from every output of
/// this process. Shorter than 4 characters: ignored (they would match
/// everywhere and hide nothing worth hiding).
pub fn register_secrets<'a>(secrets: impl IntoIterator<Item = &'a str>) {
    let mut all = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    for s in secrets {
        if s.len() >= 4 && !all.iter().any(|x| x == s) {
            all.push(s.to_string());
        }
    }
}

/// Redacts one URL: scheme, host and all but the last path segment stay (an
/// operator must recognise the endpoint); the last segment keeps a short
/// prefix; user-info, query and fragment are replaced by `…`.
///
/// `https://api.pagertree.com/integration/int_ODCWagoG9?x=1` →
/// `https://api.pagertree.com/integration/int_OD…?…`.
pub fn url(raw: &str) -> String {
    let (before_fragment, had_fragment) = match raw.split_once('#') {
        Some((b, _)) => (b, true),
        None => (raw, false),
    };
    let (base, had_query) = match before_fragment.split_once('?') {
        Some((b, _)) => (b, true),
        None => (before_fragment, false),
    };
    // scheme://authority/path
    let (scheme, rest) = match base.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, base),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{CUT}@{host}"),
        None => authority.to_string(),
    };
    let mut out = String::with_capacity(raw.len().min(96));
    if let Some(s) = scheme {
        out.push_str(s);
        out.push_str("://");
    }
    out.push_str(&authority);
    if !path.is_empty() {
        let trimmed = path.trim_end_matches('/');
        let trailing = &path[trimmed.len()..];
        match trimmed.rsplit_once('/') {
            Some((dir, last)) => {
                out.push_str(dir);
                out.push('/');
                out.push_str(&segment(last));
            }
            None => out.push_str(&segment(trimmed)),
        }
        out.push_str(trailing);
    }
    if had_query {
        out.push('?');
        out.push_str(CUT);
    }
    if had_fragment {
        out.push('#');
        out.push_str(CUT);
    }
    // An integration id in an earlier segment (`…/int_x/alerts`).
    ids(&out).into_owned()
}

/// The visible prefix of a secret path segment: `int_` plus two characters
/// for PagerTree ids, else two characters. Idempotent: an already cut
/// segment is returned as it is.
fn segment(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    let keep = if s.starts_with("int_") { 6 } else { 2 };
    let count = s.chars().count();
    if s.ends_with(CUT) && count <= keep + 1 {
        return s.to_string();
    }
    if count <= 2 {
        // Too short to hide anything by prefixing: hide it all.
        return CUT.to_string();
    }
    let visible: String = s.chars().take(keep).collect();
    format!("{visible}{CUT}")
}

/// `int_…` ids anywhere: `int_` and two characters stay.
fn ids(s: &str) -> std::borrow::Cow<'_, str> {
    INT_ID.replace_all(s, |c: &regex::Captures<'_>| segment(&c[0]))
}

/// A token is never shown; only whether one is set.
pub fn token(t: &str) -> &'static str {
    if t.is_empty() {
        "(none)"
    } else {
        "(set, redacted)"
    }
}

/// The one redaction of free text (log lines, API bodies, CLI output,
/// error messages, response bodies): see the module doc for what it covers.
/// `secrets` are extra tokens to remove besides the registered ones.
pub fn text(msg: &str, secrets: &[&str]) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(m) = SCHEME.find(rest) {
        out.push_str(&bare(&rest[..m.start()]));
        let tail = &rest[m.start()..];
        let end = tail
            .find(|c: char| c.is_whitespace() || STOP_CHARS.contains(c))
            .unwrap_or(tail.len());
        out.push_str(&url(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(&bare(rest));
    let registered = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    for s in secrets
        .iter()
        .copied()
        .chain(registered.iter().map(String::as_str))
        .filter(|s| s.len() >= 4)
    {
        if out.contains(s) {
            out = out.replace(s, "(token redacted)");
        }
    }
    out
}

/// Where a URL ends in free text: [`STOP`] less the brackets (an IPv6
/// host), whitespace tested apart.
const STOP_CHARS: &str = "\"'\\<>,;(){}`";

/// Redacts text that holds no `scheme://` URL: bare integration paths,
/// `int_` ids, query strings and `key=value` secrets.
fn bare(s: &str) -> String {
    let s = BARE_PATH.replace_all(s, |c: &regex::Captures<'_>| {
        format!("{}{}", &c[1], segment(&c[2]))
    });
    let s = ids(&s).into_owned();
    let s = QUERY.replace_all(&s, |c: &regex::Captures<'_>| {
        if c[0].len() == 1 + CUT.len() && c[0].ends_with(CUT) {
            c[0].to_string()
        } else {
            format!("?{CUT}")
        }
    });
    KEY_VALUE
        .replace_all(&s, |c: &regex::Captures<'_>| {
            if &c[3] == CUT {
                c[0].to_string()
            } else {
                format!("{}{}{CUT}", &c[1], &c[2])
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integration_id_keeps_a_short_prefix() {
        assert_eq!(
            url("https://api.pagertree.com/integration/int_ODCWagoG9"),
            "https://api.pagertree.com/integration/int_OD…"
        );
    }

    #[test]
    fn query_fragment_and_userinfo_are_cut() {
        assert_eq!(
            url("https://user:pw@api.pagertree.com/integration/int_ODCWagoG9?token=abc#frag"),
            "https://…@api.pagertree.com/integration/int_OD…?…#…"
        );
    }

    #[test]
    fn other_paths_keep_two_characters_and_trailing_slash() {
        assert_eq!(
            url("http://127.0.0.1:8080/hooks/secretvalue/"),
            "http://127.0.0.1:8080/hooks/se…/"
        );
        assert_eq!(url("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(url("http://h/ab"), "http://h/…");
        assert_eq!(url("not a url"), "not a url");
    }

    #[test]
    fn short_integration_id_is_not_shown_whole() {
        assert_eq!(
            url("https://x/integration/int_A"),
            "https://x/integration/int_A…"
        );
    }

    #[test]
    fn tokens_are_never_shown() {
        assert_eq!(token(""), "(none)");
        assert_eq!(token("s3cr3t"), "(set, redacted)");
    }

    #[test]
    fn free_text_is_scrubbed() {
        let msg = "error sending request for url (https://api.pagertree.com/integration/int_ODCWagoG9?q=1): token s3cr3t-value refused";
        let got = text(msg, &["s3cr3t-value"]);
        assert_eq!(
            got,
            "error sending request for url (https://api.pagertree.com/integration/int_OD…?…): token (token redacted) refused"
        );
        assert!(!got.contains("ODCWagoG9"));
    }

    #[test]
    fn bare_paths_ids_queries_and_tokens_in_echoed_bodies() {
        let body = "Cannot POST /integration/int_ODCWagoG9?token=s3cr3tT0ken (see int_QQQQQQQ9) password=hunter22";
        let got = text(body, &[]);
        for secret in ["ODCWagoG9", "s3cr3tT0ken", "QQQQQQQ9", "hunter22"] {
            assert!(!got.contains(secret), "{secret} in {got}");
        }
        assert_eq!(
            got,
            "Cannot POST /integration/int_OD…?… (see int_QQ…) password=…"
        );
    }

    #[test]
    fn any_scheme_and_userinfo() {
        let got = text(
            "refused ftp://bob:pa55word@h:21/integration/int_ABCDEF?token=x",
            &[],
        );
        assert_eq!(got, "refused ftp://…@h:21/integration/int_AB…?…");
        let got = text("bad http://[::1/integration/int_ABCDEF?token=zz", &[]);
        assert!(!got.contains("ABCDEF") && !got.contains("zz"), "{got}");
    }

    #[test]
    fn json_stays_json_and_redaction_is_idempotent() {
        let line = r#"{"msg":"HTTP 404: {\"error\":\"Cannot POST /integration/int_ODCWagoG9?token=abc\"}","token":"abcd1234","url":"http://u:p@h/integration/int_ODCWagoG9"}"#;
        let once = text(line, &[]);
        let v: serde_json::Value = serde_json::from_str(&once).expect(&once);
        assert!(
            !once.contains("ODCWagoG9") && !once.contains("abcd1234"),
            "{once}"
        );
        assert_eq!(v["url"], "http://…@h/integration/int_OD…");
        assert_eq!(text(&once, &[]), once);
    }

    #[test]
    fn registered_secrets_are_removed_everywhere() {
        register_secrets(["zq-registered-9"]);
        assert_eq!(text("x zq-registered-9 y", &[]), "x (token redacted) y");
    }
}
