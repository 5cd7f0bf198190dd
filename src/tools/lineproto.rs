//! InfluxDB line protocol, as `simulate` reads recorded data:
//! `measurement[,tag=value…] field=value[,field=value…] [timestamp]`.
//!
//! Escapes as InfluxDB writes them: in the measurement `\,` and `\ `; in tag
//! keys, tag values and field keys also `\=`; in string field values `\"` and
//! `\\`. Field types: float (`1`, `1.5`, `-2e3`, `.5`, `1.`), integer (`1i`),
//! unsigned (`1u`, kept as an integer as Kapacitor does), boolean (`t`,
//! `true`, `F`, `FALSE`…) and string (`"…"`, which may span lines: InfluxDB
//! writes a newline in a string field as it is). Lines starting with `#` and
//! blank lines are skipped. The timestamp is an integer in the chosen
//! precision.
//!
//! Why not InfluxData's `influxdb-line-protocol` crate (2.0.0, the IOx
//! parser): it rejects floats that InfluxDB 1.x — whose parser Kapacitor
//! vendors, `models.scanNumber` — accepts: `cpu v=.5 1` and `cpu v=-.5 1`
//! ("No fields were provided") and `cpu v=1. 1` ("Could not parse entire
//! line. Found trailing content: '. 1'"); and its errors carry no column.
//! Everything else we checked it parses as this module does (escapes, `i`/`u`,
//! all boolean spellings, quoted strings with `\"`, `\\` and newlines,
//! negative timestamps); precision is the caller's in both. The cases are
//! the test `influxdb_accepts_these_floats` below.

use std::collections::BTreeMap;

use crate::alert::FieldValue;

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePoint {
    pub measurement: String,
    pub tags: BTreeMap<String, String>,
    /// In line order.
    pub fields: Vec<(String, FieldValue)>,
    /// Nanoseconds since the epoch.
    pub time: i64,
    /// 1-based line number, for messages.
    pub line: usize,
}

/// The unit of the timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl Precision {
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "ns" | "n" => Some(Precision::Nanoseconds),
            "us" | "u" | "µs" => Some(Precision::Microseconds),
            "ms" => Some(Precision::Milliseconds),
            "s" => Some(Precision::Seconds),
            _ => None,
        }
    }

    fn nanos(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
        }
    }
}

/// A line that cannot be read, with where and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {reason}")]
pub struct LineError {
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

/// Parses a whole file; stops at the first bad line.
pub fn parse(text: &str, precision: Precision) -> Result<Vec<LinePoint>, LineError> {
    let mut out = Vec::new();
    for (number, raw) in logical_lines(text) {
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let offset = line.len() - trimmed.len();
        let mut p = LineParser {
            s: trimmed.as_bytes(),
            pos: 0,
            line: number,
            offset,
        };
        out.push(p.point(precision)?);
    }
    Ok(out)
}

/// Splits `text` into points' lines as InfluxDB does (`models.scanLine`): a
/// newline inside a quoted string field value belongs to the value. Yields
/// the 1-based number of the line each starts on and its text without the
/// newline. A comment line ends at its newline whatever it holds.
fn logical_lines(text: &str) -> Vec<(usize, &str)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut number) = (0, 1);
    while start < b.len() {
        let first = number;
        let comment = b[start..]
            .iter()
            .find(|c| !matches!(c, b' ' | b'\t'))
            .is_some_and(|&c| c == b'#');
        let end = if comment {
            b[start..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| start + p)
        } else {
            point_end(b, start, &mut number)
        };
        out.push((first, &text[start..end]));
        number += 1;
        start = end + 1;
    }
    out
}

/// Where the point starting at `start` ends: the first newline outside a
/// quoted string field value (counted into `number`), or the end.
fn point_end(b: &[u8], start: usize, number: &mut usize) -> usize {
    let (mut fields, mut quoted, mut equals, mut commas) = (false, false, 0usize, 0usize);
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'\n' if !quoted => break,
            b'\n' => *number += 1,
            b'\\' if i + 1 < b.len() && b[i + 1] != b'\n' => i += 1,
            b' ' => fields = true,
            b'=' if fields && !quoted => equals += 1,
            b',' if fields && !quoted => commas += 1,
            b'"' if fields && equals > commas => quoted = !quoted,
            _ => {}
        }
        i += 1;
    }
    i
}

struct LineParser<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
    offset: usize,
}

impl LineParser<'_> {
    fn err(&self, reason: impl Into<String>) -> LineError {
        LineError {
            line: self.line,
            column: self.offset + self.pos + 1,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// A tag or field key (`kind`) and the `=` after it; `empty` is the
    /// error for a missing key.
    fn key_then_eq(&mut self, kind: &str, empty: &str) -> Result<String, LineError> {
        let key = self.token(b",= ", b",= ")?;
        if key.is_empty() {
            return Err(self.err(empty));
        }
        if self.peek() != Some(b'=') {
            return Err(self.err(format!("{kind} {key:?} has no '=value'")));
        }
        self.pos += 1;
        Ok(key)
    }

    /// Reads up to an unescaped byte of `stops`; `escapable` bytes lose their backslash.
    fn token(&mut self, stops: &[u8], escapable: &[u8]) -> Result<String, LineError> {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            if c == b'\\' {
                if let Some(&n) = self.s.get(self.pos + 1)
                    && (escapable.contains(&n) || n == b'\\')
                {
                    out.push(n);
                    self.pos += 2;
                    continue;
                }
                out.push(c);
                self.pos += 1;
                continue;
            }
            if stops.contains(&c) {
                break;
            }
            out.push(c);
            self.pos += 1;
        }
        String::from_utf8(out).map_err(|_| self.err("not UTF-8"))
    }

    fn point(&mut self, precision: Precision) -> Result<LinePoint, LineError> {
        let measurement = self.token(b", ", b", ")?;
        if measurement.is_empty() {
            return Err(self.err("missing measurement"));
        }
        let mut tags = BTreeMap::new();
        while self.peek() == Some(b',') {
            self.pos += 1;
            let key = self.key_then_eq("tag", "empty tag key")?;
            let value = self.token(b", ", b",= ")?;
            if value.is_empty() {
                return Err(self.err(format!("tag {key:?} has an empty value")));
            }
            tags.insert(key, value);
        }
        if self.peek() != Some(b' ') {
            return Err(self.err("expected a space before the fields"));
        }
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        let mut fields = Vec::new();
        loop {
            let key = self.key_then_eq(
                "field",
                "missing field key (a point needs at least one field)",
            )?;
            let value = self.field_value(&key)?;
            fields.push((key, value));
            match self.peek() {
                Some(b',') => self.pos += 1,
                _ => break,
            }
        }
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        let ts_start = self.pos;
        let ts = self.token(b" ", b"")?;
        if ts.is_empty() {
            return Err(self.err("missing timestamp; simulate needs one on every line"));
        }
        let n: i64 = ts.parse().map_err(|_| {
            self.pos = ts_start;
            self.err(format!("timestamp {ts:?} is not an integer"))
        })?;
        let time = n
            .checked_mul(precision.nanos())
            .ok_or_else(|| self.err("timestamp out of range"))?;
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        if self.pos < self.s.len() {
            return Err(self.err("unexpected text after the timestamp"));
        }
        Ok(LinePoint {
            measurement,
            tags,
            fields,
            time,
            line: self.line,
        })
    }

    fn field_value(&mut self, key: &str) -> Result<FieldValue, LineError> {
        if self.peek() == Some(b'"') {
            self.pos += 1;
            let mut out = Vec::new();
            loop {
                match self.peek() {
                    None => return Err(self.err(format!("field {key:?}: unterminated string"))),
                    Some(b'"') => {
                        self.pos += 1;
                        break;
                    }
                    Some(b'\\') if matches!(self.s.get(self.pos + 1), Some(b'"' | b'\\')) => {
                        out.push(self.s[self.pos + 1]);
                        self.pos += 2;
                    }
                    Some(c) => {
                        out.push(c);
                        self.pos += 1;
                    }
                }
            }
            return String::from_utf8(out)
                .map(FieldValue::String)
                .map_err(|_| self.err("not UTF-8"));
        }
        let start = self.pos;
        let raw = self.token(b", ", b"")?;
        let bad = |p: &mut Self, what: &str| {
            p.pos = start;
            p.err(format!("field {key:?}: {raw:?} is not {what}"))
        };
        if raw.is_empty() {
            return Err(self.err(format!("field {key:?} has no value")));
        }
        match raw.as_str() {
            "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Bool(true)),
            "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Bool(false)),
            _ => {}
        }
        if let Some(i) = raw.strip_suffix('i') {
            return i
                .parse()
                .map(FieldValue::Int)
                .map_err(|_| bad(self, "an integer"));
        }
        if let Some(u) = raw.strip_suffix('u') {
            let v: u64 = u.parse().map_err(|_| bad(self, "an unsigned integer"))?;
            return i64::try_from(v)
                .map(FieldValue::Int)
                .map_err(|_| bad(self, "an integer Kapacitor can hold"));
        }
        // Line protocol floats: digits, '-', '.', exponent — never inf/nan,
        // and '+' only in the exponent (InfluxDB refuses `+1`).
        let b = raw.as_bytes();
        if !b.iter().enumerate().all(|(i, &c)| {
            c.is_ascii_digit()
                || matches!(c, b'-' | b'.' | b'e' | b'E')
                || (c == b'+' && i > 0 && matches!(b[i - 1], b'e' | b'E'))
        }) {
            return Err(bad(self, "a number, boolean or \"string\""));
        }
        raw.parse::<f64>()
            .map(FieldValue::Float)
            .map_err(|_| bad(self, "a number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_escapes_and_timestamps() {
        let text = "# recorded\n\
                    cpu\\ load,host=web\\ 1,dc=a\\,b\\=c value=91.5,n=3i,u=4u,ok=t,s=\"say \\\"hi\\\" \\\\o/\" 1000000000\n\
                    \n\
                    mem free=-1e3,up=FALSE 2000000000";
        let p = parse(text, Precision::Nanoseconds).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].measurement, "cpu load");
        assert_eq!(p[0].tags["host"], "web 1");
        assert_eq!(p[0].tags["dc"], "a,b=c");
        assert_eq!(
            p[0].fields,
            vec![
                ("value".into(), FieldValue::Float(91.5)),
                ("n".into(), FieldValue::Int(3)),
                ("u".into(), FieldValue::Int(4)),
                ("ok".into(), FieldValue::Bool(true)),
                ("s".into(), FieldValue::String("say \"hi\" \\o/".into())),
            ]
        );
        assert_eq!(p[0].time, 1_000_000_000);
        assert_eq!(p[0].line, 2);
        assert_eq!(p[1].fields[0].1, FieldValue::Float(-1000.0));
        assert_eq!(p[1].fields[1].1, FieldValue::Bool(false));
        assert_eq!(p[1].line, 4);
    }

    #[test]
    fn precision_scales_timestamps() {
        let p = parse("cpu v=1 3", Precision::Seconds).unwrap();
        assert_eq!(p[0].time, 3_000_000_000);
        let p = parse("cpu v=1 -3", Precision::Milliseconds).unwrap();
        assert_eq!(p[0].time, -3_000_000);
        assert_eq!(Precision::parse("us"), Some(Precision::Microseconds));
    }

    #[test]
    fn errors_say_line_column_and_why() {
        let e = parse("cpu v=1 1\ncpu,host v=1 1", Precision::Nanoseconds).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("host"), "{e}");
        let e = parse("cpu v=abc 1", Precision::Nanoseconds).unwrap_err();
        assert_eq!((e.line, e.column), (1, 7));
        assert!(e.to_string().contains("\"abc\""), "{e}");
        let e = parse("cpu v=1", Precision::Nanoseconds).unwrap_err();
        assert!(e.reason.contains("missing timestamp"), "{e}");
        let e = parse("cpu v=\"open 1", Precision::Nanoseconds).unwrap_err();
        assert!(e.reason.contains("unterminated"), "{e}");
        let e = parse("cpu v=1 12x", Precision::Nanoseconds).unwrap_err();
        assert!(e.reason.contains("not an integer"), "{e}");
        let e = parse("cpu v=1i9 1", Precision::Nanoseconds).unwrap_err();
        assert!(e.reason.contains("is not a number"), "{e}");
        let e = parse("cpu v=99999999999999999999u 1", Precision::Nanoseconds).unwrap_err();
        assert!(e.reason.contains("integer"), "{e}");
        let e = parse("cpu 1", Precision::Nanoseconds).unwrap_err();
        assert!(e.reason.contains("no '=value'"), "{e}");
    }

    /// InfluxDB 1.x (and so Kapacitor) accepts these; the `influxdb-line-protocol`
    /// crate refuses the first three, which is why this module exists.
    #[test]
    fn influxdb_accepts_these_floats() {
        for (text, want) in [
            ("cpu v=.5 1", 0.5),
            ("cpu v=-.5 1", -0.5),
            ("cpu v=1. 1", 1.0),
            ("cpu v=1E+5 1", 100_000.0),
            ("cpu v=-1.5e-3 1", -0.0015),
        ] {
            let p = parse(text, Precision::Nanoseconds).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(p[0].fields[0].1, FieldValue::Float(want), "{text}");
        }
        for refused in ["cpu v=+1 1", "cpu v=1e 1", "cpu v=. 1", "cpu v=1.2.3 1"] {
            assert!(parse(refused, Precision::Nanoseconds).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_string_field_may_span_lines() {
        let text = "# a comment with a \"quote\n\
                    alert message=\"disk full\non /var\",v=1 1\n\
                    cpu,host=a\\ b v=2 2\n";
        let p = parse(text, Precision::Nanoseconds).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0].fields[0].1,
            FieldValue::String("disk full\non /var".into())
        );
        assert_eq!(p[0].fields[1].1, FieldValue::Float(1.0));
        assert_eq!(p[0].line, 2);
        assert_eq!(p[1].tags["host"], "a b");
        assert_eq!(p[1].line, 4);
        let e = parse(
            "cpu v=1 1\ncpu s=\"open\n\ncpu v=2 2",
            Precision::Nanoseconds,
        )
        .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("unterminated"), "{e}");
    }

    proptest::proptest! {
        /// Whatever the bytes, the parser answers with a value or an error, never a panic.
        #[test]
        fn never_panics(s in "(?s).{0,200}") {
            let _ = parse(&s, Precision::Nanoseconds);
        }

        #[test]
        fn never_panics_on_near_misses(s in "[a-z'\"/\\|@.(),=:*0-9 \n#µ_-]{0,120}") {
            let _ = parse(&s, Precision::Nanoseconds);
        }
    }
}
