//! Go RE2 regular expressions on the `regex` crate.
//!
//! TICKscript regex literals are Go `regexp` patterns. The two dialects agree
//! on almost everything (leftmost-first matching, `(?P<n>…)`, `$` without
//! `(?m)` at the very end), but differ silently in a few places, so a pattern
//! is translated before it is compiled:
//! - `\d \w \s \b` (and their negations) are ASCII in Go, Unicode in `regex`:
//!   they become explicit ASCII classes (`\s` is `[\t\n\f\r ]`: no `\v`).
//! - inside a class, `&&`, `~~`, `--` and a nested `[` are set operations in
//!   `regex` and literals in Go: they are escaped; `[:alpha:]` stays.
//! - `\<` and `\>` are literals in Go, word boundaries in `regex`.
//! - Go accepts what `regex` refuses: `\Q…\E`, octal `\123`, a `{` that does
//!   not start a repetition: rewritten.
//! - `regex` accepts what Go refuses: `(?x)`, `(?u)`, `(?R)`, repetition counts
//!   above 1000, stacked repetitions (`a**`), `\u…`/`\U…` escapes, long
//!   Unicode class names (`\p{Letter}`): refused here too.

use std::fmt;

/// A compiled Go pattern: the Go text (what prints back) and its translation.
#[derive(Clone)]
pub struct GoRegex {
    pattern: String,
    re: regex::Regex,
}

/// Why a Go pattern does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regex /{pattern}/: {reason}")]
pub struct RegexError {
    pub pattern: String,
    pub reason: String,
}

impl GoRegex {
    /// Compiles a Go RE2 pattern with Go's meaning.
    pub fn new(pattern: &str) -> Result<GoRegex, RegexError> {
        let err = |reason: String| RegexError {
            pattern: pattern.to_string(),
            reason,
        };
        let translated = translate(pattern).map_err(err)?;
        let re = regex::Regex::new(&translated).map_err(|e| err(e.to_string()))?;
        Ok(GoRegex {
            pattern: pattern.to_string(),
            re,
        })
    }

    /// The Go pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Go's `MatchString`: is there a match anywhere in `s`.
    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }

    /// Go's `ReplaceAllString`: `$1`, `${name}`, `$name` expand as in Go
    /// (`$1W` names the group `1W`, which does not exist, so it expands to
    /// nothing — the `regex` crate has the same rule).
    pub fn replace_all(&self, src: &str, repl: &str) -> String {
        self.re.replace_all(src, repl).into_owned()
    }
}

impl fmt::Debug for GoRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.pattern)
    }
}

impl PartialEq for GoRegex {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

const DIGIT: &str = "0-9";
const WORD: &str = "0-9A-Za-z_";
const SPACE: &str = "\\t\\n\\f\\r ";

/// General-category long names and binary properties the `regex` crate knows
/// and Go does not (Go knows 1–2 letter categories and script names).
const NOT_GO_CLASSES: &[&str] = &[
    "Letter",
    "Cased_Letter",
    "Uppercase_Letter",
    "Lowercase_Letter",
    "Titlecase_Letter",
    "Modifier_Letter",
    "Other_Letter",
    "Mark",
    "Combining_Mark",
    "Nonspacing_Mark",
    "Spacing_Mark",
    "Enclosing_Mark",
    "Number",
    "Decimal_Number",
    "Letter_Number",
    "Other_Number",
    "Punctuation",
    "Connector_Punctuation",
    "Dash_Punctuation",
    "Open_Punctuation",
    "Close_Punctuation",
    "Initial_Punctuation",
    "Final_Punctuation",
    "Other_Punctuation",
    "Symbol",
    "Math_Symbol",
    "Currency_Symbol",
    "Modifier_Symbol",
    "Other_Symbol",
    "Separator",
    "Space_Separator",
    "Line_Separator",
    "Paragraph_Separator",
    "Other",
    "Control",
    "Format",
    "Surrogate",
    "Private_Use",
    "Unassigned",
    "Alphabetic",
    "Alpha",
    "Lowercase",
    "Uppercase",
    "White_Space",
    "Whitespace",
    "Emoji",
    "Math",
    "Ideographic",
    "Digit",
    "Assigned",
    "ASCII",
];

fn octal_escape(chars: &[char], i: &mut usize, first: char) -> Result<String, String> {
    // Go: `\1`..`\7` need a second octal digit (a single digit would be a
    // backreference); `\0` takes up to two more.
    let next_is_octal = |j: usize| chars.get(j).is_some_and(|c| ('0'..='7').contains(c));
    if first != '0' && !next_is_octal(*i + 1) {
        return Err(format!("invalid escape sequence: `\\{first}`"));
    }
    let mut v = first as u32 - '0' as u32;
    for _ in 0..2 {
        if next_is_octal(*i + 1) {
            *i += 1;
            v = v * 8 + (chars[*i] as u32 - '0' as u32);
        } else {
            break;
        }
    }
    Ok(format!("\\x{{{v:X}}}"))
}

/// Copies `\x41` or `\x{1F600}` (at `chars[*i] == 'x'`) through whole, so
/// the braces are not taken for a literal `{`.
fn hex_escape(chars: &[char], i: &mut usize) -> Result<String, String> {
    let rest = &chars[*i + 1..];
    let len = if rest.first() == Some(&'{') {
        rest.iter()
            .position(|&c| c == '}')
            .ok_or("invalid escape sequence: `\\x{`")?
            + 1
    } else {
        2.min(rest.len())
    };
    let body: String = rest[..len].iter().collect();
    *i += len;
    Ok(format!("\\x{body}"))
}

/// Reads a `\p`/`\P` class name starting after the letter; returns the text
/// to emit.
fn unicode_class(chars: &[char], i: &mut usize, letter: char) -> Result<String, String> {
    let name: String = match chars.get(*i + 1) {
        Some('{') => {
            let close = chars[*i + 1..]
                .iter()
                .position(|&c| c == '}')
                .ok_or_else(|| "invalid character class range: missing }".to_string())?;
            let name: String = chars[*i + 2..*i + 1 + close].iter().collect();
            *i += close + 1;
            name
        }
        Some(&c) => {
            *i += 1;
            c.to_string()
        }
        None => return Err(format!("invalid escape sequence: `\\{letter}`")),
    };
    let bare = name.strip_prefix('^').unwrap_or(&name);
    let ok = bare.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !NOT_GO_CLASSES.contains(&bare);
    if !ok {
        return Err(format!(
            "invalid character class range: `\\{letter}{{{name}}}`"
        ));
    }
    if let Some(bare) = name.strip_prefix('^') {
        let flipped = if letter == 'p' { 'P' } else { 'p' };
        return Ok(format!("\\{flipped}{{{bare}}}"));
    }
    Ok(format!("\\{letter}{{{name}}}"))
}

/// Parses `{n}`, `{n,}`, `{n,m}` at `chars[i]`; returns its length and counts.
fn repeat_at(chars: &[char], i: usize) -> Option<(usize, u64, Option<u64>)> {
    let mut j = i + 1;
    let num = |j: &mut usize| -> Option<u64> {
        let start = *j;
        while chars.get(*j).is_some_and(|c| c.is_ascii_digit()) {
            *j += 1;
        }
        if *j == start {
            return None;
        }
        // Saturate: anything this long is over Go's limit of 1000 anyway.
        Some(
            chars[start..*j]
                .iter()
                .collect::<String>()
                .parse()
                .unwrap_or(u64::MAX),
        )
    };
    let min = num(&mut j)?;
    let max = match chars.get(j) {
        Some('}') => Some(min),
        Some(',') => {
            j += 1;
            if chars.get(j) == Some(&'}') {
                None
            } else {
                Some(num(&mut j)?)
            }
        }
        _ => return None,
    };
    if chars.get(j) != Some(&'}') {
        return None;
    }
    Some((j + 1 - i, min, max))
}

/// Translates a Go pattern into the `regex` crate's syntax with the same
/// meaning (see the module docs), or says why Go would refuse it.
pub fn translate(p: &str) -> Result<String, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() + 8);
    let mut i = 0;
    // Whether the previous item was a repetition (Go refuses `a**`).
    let mut after_repeat = false;
    while i < chars.len() {
        let c = chars[i];
        let mut is_repeat = false;
        match c {
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    return Err("trailing backslash at end of expression".into());
                };
                i += 1;
                match e {
                    'd' => out.push_str("[0-9]"),
                    'D' => out.push_str("[^0-9]"),
                    'w' => out.push_str("[0-9A-Za-z_]"),
                    'W' => out.push_str("[^0-9A-Za-z_]"),
                    's' => out.push_str("[\\t\\n\\f\\r ]"),
                    'S' => out.push_str("[^\\t\\n\\f\\r ]"),
                    'b' => out.push_str("(?-u:\\b)"),
                    'B' => out.push_str("(?-u:\\B)"),
                    'Q' => {
                        let rest: String = chars[i + 1..].iter().collect();
                        let (lit, consumed) = match rest.find("\\E") {
                            Some(end) => (&rest[..end], rest[..end].chars().count() + 2),
                            None => (rest.as_str(), rest.chars().count()),
                        };
                        out.push_str(&regex::escape(lit));
                        i += consumed;
                    }
                    '0'..='7' => out.push_str(&octal_escape(&chars, &mut i, e)?),
                    'p' | 'P' => out.push_str(&unicode_class(&chars, &mut i, e)?),
                    '<' | '>' => out.push(e),
                    'x' => out.push_str(&hex_escape(&chars, &mut i)?),
                    'A' | 'z' | 'a' | 'f' | 't' | 'n' | 'r' | 'v' => {
                        out.push('\\');
                        out.push(e);
                    }
                    e if e.is_ascii_punctuation() => {
                        out.push('\\');
                        out.push(e);
                    }
                    // Go: any other escaped ASCII non-word character is itself.
                    e if e.is_ascii() && !e.is_ascii_alphanumeric() => {
                        out.push_str(&format!("\\x{{{:X}}}", e as u32));
                    }
                    e => return Err(format!("invalid escape sequence: `\\{e}`")),
                }
            }
            '[' => {
                i = translate_class(&chars, i, &mut out)?;
            }
            '{' => match repeat_at(&chars, i) {
                Some((len, min, max)) => {
                    if min > 1000 || max.is_some_and(|m| m > 1000 || m < min) {
                        let text: String = chars[i..i + len].iter().collect();
                        return Err(format!("invalid repeat count: `{text}`"));
                    }
                    if after_repeat {
                        return Err("invalid nested repetition operator".into());
                    }
                    out.extend(&chars[i..i + len]);
                    i += len - 1;
                    is_repeat = true;
                }
                None => out.push_str("\\{"),
            },
            '}' => out.push_str("\\}"),
            '*' | '+' | '?' => {
                if after_repeat {
                    return Err(format!("invalid nested repetition operator: `{c}`"));
                }
                out.push(c);
                is_repeat = true;
            }
            '(' if chars.get(i + 1) == Some(&'?') => {
                // Flags: Go knows i, m, s, U (and `-`); names `P<n>` and `<n>`.
                let mut j = i + 2;
                if !matches!(chars.get(j), Some('P' | '<')) {
                    while let Some(&f) = chars.get(j) {
                        match f {
                            'i' | 'm' | 's' | 'U' | '-' => j += 1,
                            ':' | ')' => break,
                            other => {
                                return Err(format!(
                                    "invalid or unsupported Perl syntax: `(?{other}`"
                                ));
                            }
                        }
                    }
                }
                out.push_str("(?");
                i += 1;
            }
            _ => out.push(c),
        }
        if is_repeat {
            // A lazy marker belongs to the repetition.
            if chars.get(i + 1) == Some(&'?') {
                out.push('?');
                i += 1;
            }
        }
        after_repeat = is_repeat;
        i += 1;
    }
    Ok(out)
}

/// Translates the class starting at `chars[start] == '['`; returns the index
/// of its closing `]`.
fn translate_class(chars: &[char], start: usize, out: &mut String) -> Result<usize, String> {
    let mut i = start + 1;
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    // A `]` first is a literal in both dialects.
    if chars.get(i) == Some(&']') {
        out.push_str("\\]");
        i += 1;
    }
    let mut prev_dash = false;
    while i < chars.len() {
        let c = chars[i];
        let mut dash = false;
        match c {
            ']' => {
                out.push(']');
                return Ok(i);
            }
            '[' => {
                // POSIX classes stay (not as the end of a range, where Go
                // reads one character); any other `[` is a literal in Go.
                if !prev_dash && chars.get(i + 1) == Some(&':') {
                    let rest: String = chars[i..].iter().collect();
                    if let Some(end) = rest.get(2..).and_then(|r| r.find(":]")).map(|e| e + 2) {
                        let name = &rest[2..end];
                        let bare = name.strip_prefix('^').unwrap_or(name);
                        const POSIX: [&str; 14] = [
                            "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower",
                            "print", "punct", "space", "upper", "word", "xdigit",
                        ];
                        // Go: `[:name:]` must name a POSIX class.
                        if !POSIX.contains(&bare) {
                            return Err(format!(
                                "invalid character class range: `{}`",
                                &rest[..end + 2]
                            ));
                        }
                        out.push_str(&rest[..end + 2]);
                        i += rest[..end + 2].chars().count();
                        continue;
                    }
                }
                out.push_str("\\[");
            }
            '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '-' => {
                if prev_dash {
                    out.push_str("\\-");
                } else {
                    out.push('-');
                    dash = true;
                }
            }
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    return Err("trailing backslash at end of expression".into());
                };
                i += 1;
                match e {
                    'd' => out.push_str(DIGIT),
                    'w' => out.push_str(WORD),
                    's' => out.push_str(SPACE),
                    'D' => out.push_str(&format!("[^{DIGIT}]")),
                    'W' => out.push_str(&format!("[^{WORD}]")),
                    'S' => out.push_str(&format!("[^{SPACE}]")),
                    '0'..='7' => out.push_str(&octal_escape(chars, &mut i, e)?),
                    'p' | 'P' => out.push_str(&unicode_class(chars, &mut i, e)?),
                    'x' => out.push_str(&hex_escape(chars, &mut i)?),
                    'a' | 'f' | 't' | 'n' | 'r' | 'v' => {
                        out.push('\\');
                        out.push(e);
                    }
                    e if e.is_ascii_punctuation() => {
                        out.push('\\');
                        out.push(e);
                    }
                    // Go: any other escaped ASCII non-word character is itself.
                    e if e.is_ascii() && !e.is_ascii_alphanumeric() => {
                        out.push_str(&format!("\\x{{{:X}}}", e as u32));
                    }
                    e => return Err(format!("invalid escape sequence: `\\{e}`")),
                }
            }
            _ => out.push(c),
        }
        prev_dash = dash;
        i += 1;
    }
    Err("missing closing ]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        GoRegex::new(p).unwrap().is_match(s)
    }

    #[test]
    fn perl_classes_are_ascii() {
        assert!(m(r"^\d$", "7"));
        assert!(!m(r"^\d$", "٣"), "Go's \\d is ASCII");
        assert!(!m(r"^\w$", "é"));
        assert!(m(r"^\W$", "é"));
        assert!(!m(r"^\s$", "\u{0b}"), "Go's \\s has no \\v");
        assert!(m(r"^\s$", "\t"));
        assert!(!m(r"^[\d]$", "٣"));
        assert!(m(r"^[^\d]$", "x"));
        assert!(m(r"^[\D]$", "x"));
        assert!(!m(r"^[\D]$", "1"));
        assert!(m(r"\bfoo\b", "a foo b"));
        assert!(!m(r"é\b", "é"), "ASCII word boundary: é is not a word char");
        assert!(m(r"a\b", "aé"));
        assert!(
            m(r"(?i)^\w$", "\u{212a}"),
            "Go folds \\w under (?i): the Kelvin sign matches"
        );
    }

    #[test]
    fn class_set_operators_are_literals() {
        assert!(m(r"^[a&&b]+$", "a&&b"));
        assert!(m(r"^[a~~b]+$", "~"));
        assert!(m(r"^[[a]+$", "[a"));
        assert!(m(r"^[[:alpha:]]+$", "abc"));
        assert!(!m(r"^[[:alpha:]]+$", "a1"));
        assert!(m(r"^[]a]+$", "]a"));
        assert!(m(r"^[a-]$", "-"));
    }

    #[test]
    fn go_only_syntax_is_rewritten() {
        assert!(m(r"\Qa.b\E", "a.b"));
        assert!(!m(r"\Qa.b\E", "axb"));
        assert!(m(r"\101", "A"), "octal escape");
        assert!(m(r"\0", "\0"));
        assert!(m(r"a{", "a{"), "a lone {{ is a literal in Go");
        assert!(m(r"a{x}", "a{x}"));
        assert!(m(r"a{2}", "aa"));
        assert!(m(r"\<a\>", "<a>"));
        assert!(m(r"\x{1F600}", "😀"));
        assert!(m(r"^\x41$", "A"));
    }

    #[test]
    fn rust_only_syntax_is_refused() {
        for p in [
            r"(?x)a b",
            r"a{1001}",
            r"a**",
            r"a+*",
            r"a*?+",
            r"\p{Letter}",
            r"\u0041",
            r"\1",
            r"(?u)a",
        ] {
            assert!(GoRegex::new(p).is_err(), "{p} must be refused");
        }
        for p in [
            r"a*?",
            r"(a*)*",
            r"\pL",
            r"\p{Greek}",
            r"(?i)abc",
            r"(?P<x>a)",
            r"(?s:.)",
            r"a{2,3}?",
        ] {
            assert!(GoRegex::new(p).is_ok(), "{p} must compile");
        }
    }

    #[test]
    fn replace_expands_like_go() {
        let re = GoRegex::new("a(x*)b").unwrap();
        assert_eq!(re.replace_all("-ab-axxb-", "T"), "-T-T-");
        assert_eq!(re.replace_all("-ab-axxb-", "$1W"), "---");
        assert_eq!(re.replace_all("-ab-axxb-", "${1}W"), "-W-xxW-");
    }

    /// Odd patterns, with what Go 1.19 answers: refused, or how it matches
    /// `[`, `:` and `]`.
    #[test]
    fn odd_patterns_as_go() {
        let cases: [(&str, Option<[bool; 3]>); 12] = [
            ("[[:]", Some([true, true, false])),
            ("[[:]]", Some([false, false, false])),
            ("[[:^]", Some([true, true, false])),
            ("[[::]]", None),
            ("[a[:", None),
            (r"\p{", None),
            (r"\x{", None),
            (r"\Q", Some([true, true, true])),
            (r"[\", None),
            ("a{1,", Some([false, false, false])),
            ("(?", None),
            ("[[:alpha:]", None),
        ];
        for (p, want) in cases {
            let got = GoRegex::new(p)
                .ok()
                .map(|re| ["[", ":", "]"].map(|s| re.is_match(s)));
            assert_eq!(got, want, "/{p}/");
        }
    }
}
