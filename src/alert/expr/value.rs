//! Values and types of the lambda language, and the Go conversions
//! (`strconv`, influxql durations, float-to-int) its functions rely on.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::regex::GoRegex;

/// Kapacitor's `ast.ValueType` for the values a lambda handles; `Display`
/// prints Kapacitor's names (`boolean`, not `bool`), which its error
/// messages use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    Float,
    Int,
    String,
    Bool,
    Regex,
    Time,
    Duration,
    /// A referenced name that the point does not have.
    Missing,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Float => "float",
            Type::Int => "int",
            Type::String => "string",
            Type::Bool => "boolean",
            Type::Regex => "regex",
            Type::Time => "time",
            Type::Duration => "duration",
            Type::Missing => "missing",
        })
    }
}

/// A value an expression produced (or, for [`super::call_function`], takes).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    String(String),
    Bool(bool),
    /// Nanoseconds.
    Duration(i64),
    Regex(Arc<GoRegex>),
    /// Nanoseconds since the epoch.
    Time(i64),
    /// The value of a name the point does not have (what `isPresent` tests).
    Missing,
    /// Go's `nil`: never produced by an expression; direct function calls
    /// may pass it, and every function refuses it.
    Nil,
}

/// A value as a [`Scope`](super::Scope) hands it out: borrowed, so that
/// evaluating a threshold on a point allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bool(bool),
    /// The name is bound to Go's `nil` (evaluation fails: `referenced value
    /// "x" is nil.`). The alert node never needs it; tests of Kapacitor's
    /// evaluator do.
    Nil,
    /// The name is both a field and a tag of the point. Kapacitor's alert
    /// node refuses to choose (`cannot have field and tags with same name
    /// "x"`): evaluation fails.
    Ambiguous,
}

/// The evaluator's working value: strings and regexes borrow from the
/// compiled expression or the scope where they can.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Bool(bool),
    Duration(i64),
    Regex(&'a GoRegex),
    Time(i64),
    Missing,
    Nil,
}

impl Val<'_> {
    /// The value's type; `None` for nil (Kapacitor's `InvalidType`).
    pub(crate) fn typ(&self) -> Option<Type> {
        Some(match self {
            Val::Int(_) => Type::Int,
            Val::Float(_) => Type::Float,
            Val::Str(_) => Type::String,
            Val::Bool(_) => Type::Bool,
            Val::Duration(_) => Type::Duration,
            Val::Regex(_) => Type::Regex,
            Val::Time(_) => Type::Time,
            Val::Missing => Type::Missing,
            Val::Nil => return None,
        })
    }

    /// How Go's `%T` names the value's type, for function error messages.
    pub(crate) fn go_type(&self) -> &'static str {
        match self {
            Val::Int(_) => "int64",
            Val::Float(_) => "float64",
            Val::Str(_) => "string",
            Val::Bool(_) => "bool",
            Val::Duration(_) => "time.Duration",
            Val::Regex(_) => "*regexp.Regexp",
            Val::Time(_) => "time.Time",
            Val::Missing => "*ast.Missing",
            Val::Nil => "<nil>",
        }
    }

    pub(crate) fn to_value(&self, regexes: impl FnOnce(&GoRegex) -> Arc<GoRegex>) -> Value {
        match self {
            Val::Int(i) => Value::Int(*i),
            Val::Float(f) => Value::Float(*f),
            Val::Str(s) => Value::String(s.to_string()),
            Val::Bool(b) => Value::Bool(*b),
            Val::Duration(d) => Value::Duration(*d),
            Val::Regex(r) => Value::Regex(regexes(r)),
            Val::Time(t) => Value::Time(*t),
            Val::Missing => Value::Missing,
            Val::Nil => Value::Nil,
        }
    }
}

impl Value {
    /// The value's type; `None` for nil.
    pub fn typ(&self) -> Option<Type> {
        self.as_val().typ()
    }

    pub(crate) fn as_val(&self) -> Val<'_> {
        match self {
            Value::Int(i) => Val::Int(*i),
            Value::Float(f) => Val::Float(*f),
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
            Value::Bool(b) => Val::Bool(*b),
            Value::Duration(d) => Val::Duration(*d),
            Value::Regex(r) => Val::Regex(r),
            Value::Time(t) => Val::Time(*t),
            Value::Missing => Val::Missing,
            Value::Nil => Val::Nil,
        }
    }
}

/// Go's `int64(f)` on amd64 (where Kapacitor runs): truncation, and
/// `math.MinInt64` for NaN and out-of-range values.
pub(crate) fn go_f64_to_i64(f: f64) -> i64 {
    if f.is_nan() || !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// `strconv.FormatFloat(f, 'f', -1, 64)`.
pub(crate) fn format_float_f(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    format!("{f}")
}

/// `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

/// `strconv.ParseInt(s, 10, 64)`.
pub(crate) fn parse_int(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseInt: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.ParseInt: parsing {s:?}: value out of range"))
}

/// `strconv.ParseFloat(s, 64)` for decimal text, with Go's digit
/// underscores (`1_000`); Go's hexadecimal floats (`0x1p-2`) are refused.
pub(crate) fn parse_float(s: &str) -> Result<f64, String> {
    let syntax = || format!("strconv.ParseFloat: parsing {s:?}: invalid syntax");
    if s.contains('_') {
        // Go accepts an underscore only between two digits.
        let b = s.as_bytes();
        let between_digits = b.iter().enumerate().all(|(i, &c)| {
            c != b'_'
                || (i > 0
                    && b[i - 1].is_ascii_digit()
                    && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        });
        if !between_digits {
            return Err(syntax());
        }
        return parse_float(&s.replace('_', "")).map_err(|_| syntax());
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    let special = matches!(lower.as_str(), "inf" | "infinity" | "nan");
    if !special
        && !body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(syntax());
    }
    let f: f64 = s.parse().map_err(|_| syntax())?;
    if f.is_infinite() && !special {
        return Err(format!(
            "strconv.ParseFloat: parsing {s:?}: value out of range"
        ));
    }
    Ok(f)
}

/// influxql's `ParseDuration`: `1h30m`, `-5s`, `10ms`, `3u`/`3µ`, `7ns`,
/// `2d`, `1w`. Overflow wraps as in Go, except the sign check Go makes.
pub(crate) fn parse_influx_duration(s: &str) -> Option<i64> {
    let a: Vec<char> = s.chars().collect();
    if a.len() < 2 {
        return None;
    }
    let mut i = 0;
    let negative = a[0] == '-';
    if negative {
        i += 1;
    }
    let mut d: i64 = 0;
    while i < a.len() {
        let start = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        if i >= a.len() || i == start {
            return None;
        }
        let n: i64 = a[start..i].iter().collect::<String>().parse().ok()?;
        let unit: i64 = match a[i] {
            'n' if a.get(i + 1) == Some(&'s') => {
                i += 1;
                1
            }
            'u' | 'µ' => 1_000,
            'm' if a.get(i + 1) == Some(&'s') => {
                i += 1;
                1_000_000
            }
            'm' => 60_000_000_000,
            's' => 1_000_000_000,
            'h' => 3_600_000_000_000,
            'd' => 86_400_000_000_000,
            'w' => 604_800_000_000_000,
            _ => return None,
        };
        d = d.wrapping_add(n.wrapping_mul(unit));
        i += 1;
    }
    if d < 0 && !negative {
        return None;
    }
    Some(if negative { d.wrapping_neg() } else { d })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_conversions() {
        assert_eq!(go_f64_to_i64(2.9), 2);
        assert_eq!(go_f64_to_i64(-2.9), -2);
        assert_eq!(go_f64_to_i64(f64::NAN), i64::MIN);
        assert_eq!(go_f64_to_i64(1e300), i64::MIN);
        assert_eq!(format_float_f(0.0), "0");
        assert_eq!(format_float_f(2.9999), "2.9999");
        assert_eq!(format_float_f(1e21), "1000000000000000000000");
        assert_eq!(format_float_f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(parse_bool("T"), Ok(true));
        assert!(parse_bool("yes").is_err());
        assert_eq!(parse_int("+12"), Ok(12));
        assert_eq!(
            parse_int("2.5").unwrap_err(),
            "strconv.ParseInt: parsing \"2.5\": invalid syntax"
        );
        assert!(
            parse_int("99999999999999999999")
                .unwrap_err()
                .contains("out of range")
        );
        assert_eq!(parse_float("1e3"), Ok(1000.0));
        assert_eq!(parse_float("1_000.5"), Ok(1000.5));
        assert!(parse_float("1__0").is_err());
        assert!(parse_float("_1").is_err());
        assert_eq!(parse_float("-Inf"), Ok(f64::NEG_INFINITY));
        assert!(parse_float("1e400").unwrap_err().contains("out of range"));
        assert_eq!(
            parse_float("asdf").unwrap_err(),
            "strconv.ParseFloat: parsing \"asdf\": invalid syntax"
        );
        assert_eq!(parse_influx_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_influx_duration("-10ms"), Some(-10_000_000));
        assert_eq!(parse_influx_duration("7ns"), Some(7));
        assert_eq!(parse_influx_duration("2µ"), Some(2_000));
        assert_eq!(parse_influx_duration("5"), None);
        assert_eq!(parse_influx_duration("5x"), None);
    }
}
