//! Redaction of secrets in everything a human or a log collector sees.
//!
//! A PagerTree endpoint URL is a credential: whoever knows
//! `https://api.pagertree.com/integration/int_ODCWagoG9` can page the on-call
//! person. So every log line, error and CLI output that names an endpoint goes
//! through [`url`]: the integration id (the last path segment) is cut to a
//! short prefix (`int_OD…`), any query string, fragment and user-info are
//! replaced by `…`. Tokens go through [`token`] and are never shown.
//! [`text`] scrubs free text (an error message from a library) of URLs.

/// The marker that stands for removed characters.
const CUT: &str = "…";

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
    out
}

/// The visible prefix of a secret path segment: `int_` plus two characters
/// for PagerTree ids, else two characters.
fn segment(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    let keep = if s.starts_with("int_") { 6 } else { 2 };
    let visible: String = s.chars().take(keep).collect();
    if visible.len() == s.len() && s.chars().count() <= 2 {
        // Too short to hide anything by prefixing: hide it all.
        return CUT.to_string();
    }
    format!("{visible}{CUT}")
}

/// A token is never shown; only whether one is set.
pub fn token(t: &str) -> &'static str {
    if t.is_empty() {
        "(none)"
    } else {
        "(set, redacted)"
    }
}

/// Scrubs free text (e.g. a library's error message) of anything that looks
/// like a URL, redacting each with [`url`], and of the given secrets (tokens).
pub fn text(msg: &str, secrets: &[&str]) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(pos) = find_scheme(rest) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | '<' | ','))
            .unwrap_or(tail.len());
        out.push_str(&url(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(s) {
            out = out.replace(s, "(token redacted)");
        }
    }
    out
}

fn find_scheme(s: &str) -> Option<usize> {
    let a = s.find("http://");
    let b = s.find("https://");
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (x, y) => x.or(y),
    }
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
}
