//! Go's printing rules that Kapacitor's output depends on byte for byte:
//! RFC 3339 times with trimmed nanoseconds, `time.Time.String()`,
//! `time.Duration.String()`, `%v` floats, and `encoding/json` (the HTML-safe
//! `Encoder` Kapacitor uses for the POST body and the templates' `json`).
//!
//! No crate prints floats the way Go does (see docs/dependencies.md), so the
//! float rules are built here on Rust's shortest round-trip digits (`{:e}`),
//! which are the same digits Go's `strconv` chooses; only the layout differs.

use std::fmt::Write as _;

/// Formats nanoseconds since the epoch as Go's `time.RFC3339Nano` in UTC:
/// trailing zeros of the fraction trimmed, no fraction when zero.
pub fn rfc3339_nano(ns: i64) -> String {
    let mut s = String::with_capacity(30);
    write_rfc3339_nano(&mut s, ns);
    s
}

/// [`rfc3339_nano`] appending to `out` (no intermediate allocation).
pub fn write_rfc3339_nano(out: &mut String, ns: i64) {
    write_date_time(out, ns, 'T');
    out.push('Z');
}

/// Go's `time.Time.String()` for a UTC time:
/// `2006-01-02 15:04:05.999999999 +0000 UTC` (fraction trimmed as Go trims it).
pub fn time_string(ns: i64) -> String {
    let mut s = String::with_capacity(40);
    write_date_time(&mut s, ns, ' ');
    s.push_str(" +0000 UTC");
    s
}

/// `YYYY-MM-DD{sep}hh:mm:ss[.fraction]`, the part both layouts share.
fn write_date_time(out: &mut String, ns: i64, sep: char) {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    // Every event's details print a time, and a flood's times share their
    // second: the text of the last second is kept per thread.
    thread_local! {
        static LAST: std::cell::Cell<(i64, [u8; 19])> =
            const { std::cell::Cell::new((i64::MIN, [0; 19])) };
    }
    let bytes = LAST.with(|last| {
        let (s, b) = last.get();
        if s == secs {
            return Some(b);
        }
        let b = date_time_digits(secs)?;
        last.set((secs, b));
        Some(b)
    });
    match bytes.as_ref().and_then(|b| std::str::from_utf8(b).ok()) {
        Some(text) => {
            out.push_str(&text[..10]);
            out.push(sep);
            out.push_str(&text[11..]);
        }
        None => {
            let days = secs.div_euclid(86_400);
            let sod = secs.rem_euclid(86_400);
            let (y, m, d) = civil_from_days(days);
            // Writing to a String cannot fail.
            let _ = write!(
                out,
                "{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}",
                sod / 3600,
                (sod % 3600) / 60,
                sod % 60
            );
        }
    }
    write_frac(out, frac as u64, 9);
}

/// `YYYY-MM-DDThh:mm:ss` by hand (`write!` costs more than the rest), for
/// years 0..=9999; `None` otherwise.
fn date_time_digits(secs: i64) -> Option<[u8; 19]> {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let two = |v: u32| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
    let y = y as u32;
    let [y1, y2] = two(y / 100);
    let [y3, y4] = two(y % 100);
    let [m1, m2] = two(m);
    let [d1, d2] = two(d);
    let sod = sod as u32;
    let [h1, h2] = two(sod / 3600);
    let [i1, i2] = two((sod % 3600) / 60);
    let [s1, s2] = two(sod % 60);
    Some([
        y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2, b'T', h1, h2, b':', i1, i2, b':', s1, s2,
    ])
}

/// Appends an integer in decimal (what `%d` and JSON print).
pub fn write_int(out: &mut String, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    // ASCII digits only.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// Writes `.ddd` for `v / 10^prec` with trailing zeros removed; nothing when
/// the fraction is zero (Go's `fmtFrac` and the `.999999999` layouts).
fn write_frac(out: &mut String, v: u64, prec: u32) {
    if v == 0 {
        return;
    }
    let mut digits = [0u8; 9];
    let mut v = v;
    for i in (0..prec as usize).rev() {
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let mut end = prec as usize;
    while end > 0 && digits[end - 1] == b'0' {
        end -= 1;
    }
    out.push('.');
    for &b in &digits[..end] {
        out.push(b as char);
    }
}

/// Reads back what [`time_string`] writes (`2006-01-02 15:04:05.999999999
/// +0000 UTC`) as nanoseconds since the epoch; `None` for anything else.
pub fn parse_time_string(s: &str) -> Option<i64> {
    let core = s.strip_suffix(" +0000 UTC")?;
    let (date, time) = core.split_once(' ')?;
    let (y, rest) = date
        .rsplit_once('-')
        .and_then(|(ym, d)| Some((ym.rsplit_once('-')?, d)))?;
    let (year, month, day): (i64, i64, i64) =
        (y.0.parse().ok()?, y.1.parse().ok()?, rest.parse().ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.split(':');
    let (h, m, sec): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 59 {
        return None;
    }
    if !(-300_000_000..=300_000_000).contains(&year) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// (year, month, day) → days since 1970-01-01 (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The calendar fields of a UTC instant, as Go's `time.Time` methods give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanosecond: u32,
    /// 0 = Sunday
    pub weekday: u32,
    /// 1..=366
    pub yearday: u32,
}

impl Civil {
    pub fn from_unix_nanos(ns: i64) -> Civil {
        let secs = ns.div_euclid(1_000_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: (sod / 3600) as u32,
            minute: ((sod % 3600) / 60) as u32,
            second: (sod % 60) as u32,
            nanosecond: ns.rem_euclid(1_000_000_000) as u32,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
            yearday: (days - days_from_civil(year, 1, 1) + 1) as u32,
        }
    }

    pub fn month_name(&self) -> &'static str {
        MONTHS[(self.month as usize + 11) % 12]
    }

    pub fn weekday_name(&self) -> &'static str {
        WEEKDAYS[self.weekday as usize % 7]
    }
}

/// Go's `time.Time.Format(layout)` for a UTC instant: the reference-time
/// layout (`2006-01-02T15:04:05.000Z07:00`, `Jan _2 15:04`, `Monday`, `PM`,
/// `.999`, `MST` …) exactly as Go's `nextStdChunk` reads it.
pub fn format_go_layout(ns: i64, layout: &str) -> String {
    let t = Civil::from_unix_nanos(ns);
    let l = layout.as_bytes();
    let mut out = String::with_capacity(layout.len() + 10);
    let at = |i: usize, p: &str| l.len() >= i + p.len() && &l[i..i + p.len()] == p.as_bytes();
    let lower_at = |i: usize| l.get(i).is_some_and(|c| c.is_ascii_lowercase());
    let pad = |out: &mut String, v: i64, w: usize| {
        let _ = write!(out, "{v:0w$}");
    };
    let hour12 = if t.hour.is_multiple_of(12) {
        12
    } else {
        t.hour % 12
    } as i64;
    let mut i = 0;
    while i < l.len() {
        let c = l[i];
        let step = match c {
            b'J' if at(i, "January") => {
                out.push_str(t.month_name());
                7
            }
            b'J' if at(i, "Jan") && !lower_at(i + 3) => {
                out.push_str(&t.month_name()[..3]);
                3
            }
            b'M' if at(i, "Monday") => {
                out.push_str(t.weekday_name());
                6
            }
            b'M' if at(i, "Mon") && !lower_at(i + 3) => {
                out.push_str(&t.weekday_name()[..3]);
                3
            }
            b'M' if at(i, "MST") => {
                out.push_str("UTC");
                3
            }
            b'0' if l.get(i + 1).is_some_and(|d| (b'1'..=b'6').contains(d)) => {
                match l[i + 1] {
                    b'1' => pad(&mut out, t.month as i64, 2),
                    b'2' => pad(&mut out, t.day as i64, 2),
                    b'3' => pad(&mut out, hour12, 2),
                    b'4' => pad(&mut out, t.minute as i64, 2),
                    b'5' => pad(&mut out, t.second as i64, 2),
                    _ => pad(&mut out, t.year.rem_euclid(100), 2),
                }
                2
            }
            b'0' if at(i, "002") => {
                pad(&mut out, t.yearday as i64, 3);
                3
            }
            b'1' if at(i, "15") => {
                pad(&mut out, t.hour as i64, 2);
                2
            }
            b'1' => {
                let _ = write!(out, "{}", t.month);
                1
            }
            b'2' if at(i, "2006") => {
                pad(&mut out, t.year, 4);
                4
            }
            b'2' => {
                let _ = write!(out, "{}", t.day);
                1
            }
            b'_' if at(i, "_2006") => {
                out.push('_');
                pad(&mut out, t.year, 4);
                5
            }
            b'_' if at(i, "_2") => {
                let _ = write!(out, "{:>2}", t.day);
                2
            }
            b'_' if at(i, "__2") => {
                let _ = write!(out, "{:>3}", t.yearday);
                3
            }
            b'3' => {
                let _ = write!(out, "{hour12}");
                1
            }
            b'4' => {
                let _ = write!(out, "{}", t.minute);
                1
            }
            b'5' => {
                let _ = write!(out, "{}", t.second);
                1
            }
            b'P' if at(i, "PM") => {
                out.push_str(if t.hour >= 12 { "PM" } else { "AM" });
                2
            }
            b'p' if at(i, "pm") => {
                out.push_str(if t.hour >= 12 { "pm" } else { "am" });
                2
            }
            b'-' | b'Z' => {
                let zones: [(&str, &str); 5] = [
                    ("070000", "+000000"),
                    ("07:00:00", "+00:00:00"),
                    ("0700", "+0000"),
                    ("07:00", "+00:00"),
                    ("07", "+00"),
                ];
                match zones.iter().find(|(p, _)| at(i + 1, p)) {
                    Some((p, utc)) => {
                        out.push_str(if c == b'Z' { "Z" } else { utc });
                        1 + p.len()
                    }
                    None => {
                        out.push(c as char);
                        1
                    }
                }
            }
            b'.' | b',' if l.get(i + 1).is_some_and(|d| *d == b'0' || *d == b'9') => {
                let digit = l[i + 1];
                let mut j = i + 1;
                while l.get(j) == Some(&digit) {
                    j += 1;
                }
                if l.get(j).is_some_and(u8::is_ascii_digit) {
                    out.push(c as char);
                    1
                } else {
                    let n = (j - i - 1).min(9);
                    let digits = format!("{:09}", t.nanosecond);
                    let mut frac = &digits[..n];
                    if digit == b'9' {
                        frac = frac.trim_end_matches('0');
                    }
                    if !frac.is_empty() {
                        out.push(c as char);
                        out.push_str(frac);
                    }
                    j - i
                }
            }
            _ => {
                // Copy one UTF-8 character.
                let ch = layout[i..].chars().next().unwrap_or('?');
                out.push(ch);
                ch.len_utf8()
            }
        };
        i += step;
    }
    out
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Go's `time.Duration.String()`: `0s`, `1ns`, `1.5µs`, `100ms`, `1.5s`,
/// `1m30s`, `2h0m0s`, with a leading `-` for negative durations.
pub fn duration_string(ns: i64) -> String {
    let mut out = String::with_capacity(24);
    write_duration(&mut out, ns);
    out
}

/// [`duration_string`] appending to `out`.
pub fn write_duration(out: &mut String, ns: i64) {
    if ns == 0 {
        out.push_str("0s");
        return;
    }
    if ns < 0 {
        out.push('-');
    }
    let u = ns.unsigned_abs();
    if u < 1_000_000_000 {
        let (prec, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let p = 10u64.pow(prec);
        let _ = write!(out, "{}", u / p);
        write_frac(out, u % p, prec);
        out.push_str(unit);
        return;
    }
    let secs = u / 1_000_000_000;
    let frac = u % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        let _ = write!(out, "{h}h{m}m");
    } else if m > 0 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(out, "{s}");
    write_frac(out, frac, 9);
    out.push('s');
}

/// Reads back what [`duration_string`] writes (`1h2m3.5s`, `1.5µs`, `-1ns`,
/// `0s`); `None` for anything else. Exact: every digit Go prints is kept.
pub fn parse_duration_string(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale: i128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "µs" | "us" => 1_000,
            "ns" => 1,
            _ => return None,
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() || frac.len() > 9 {
            return None;
        }
        if int.len() > 20 {
            return None;
        }
        total = total.checked_add(int.parse::<i128>().ok()?.checked_mul(scale)?)?;
        if !frac.is_empty() {
            let f: i128 = frac.parse().ok()?;
            total = total.checked_add(f * scale / 10i128.pow(frac.len() as u32))?;
        }
        rest = tail;
    }
    let total = if neg { -total } else { total };
    i64::try_from(total).ok()
}

/// The shortest round-trip decimal digits of a finite, non-zero `|f|` and its
/// decimal point position: `f = 0.d1d2d3… × 10^dp`.
///
/// Rust's `{:e}` gives the shortest length, but when two digit strings of that
/// length both round-trip it may not pick the one Go picks (the closest to the
/// exact binary value, ties to even: Go prints 927900514498476.25 as
/// `…476.2`, Rust's `{:e}` as `…476.3`). Re-rounding the exact value to that
/// length (`{:.N e}`, exact and half-even) gives Go's choice; it is kept only
/// when it round-trips (it may not at a power-of-two boundary).
fn shortest_digits(f: f64) -> (String, i32) {
    let abs = f.abs();
    let s = format!("{abs:e}");
    let (digits, dp) = split_exp(&s);
    // Two candidates of the shortest length can only both round-trip when
    // the decimal grid is finer than the float's rounding interval (≈ 2.2e-16
    // relative): 16 or 17 digits.
    if digits.len() >= 16 {
        let r = format!("{abs:.prec$e}", prec = digits.len() - 1);
        if r.parse::<f64>().ok() == Some(abs) {
            return split_exp(&r);
        }
    }
    (digits, dp)
}

/// "d.ddde±x" → (digits, decimal point position).
fn split_exp(s: &str) -> (String, i32) {
    let (mant, exp) = s.split_once('e').unwrap_or((s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    (digits, exp + 1)
}

/// Appends `digits` (decimal point after `dp` digits) in positional form,
/// as Go's `%f` with the shortest precision lays them out.
fn push_positional(out: &mut String, digits: &str, dp: i32) {
    let nd = digits.len() as i32;
    if dp <= 0 {
        out.push_str("0.");
        for _ in 0..-dp {
            out.push('0');
        }
        out.push_str(digits);
    } else if dp >= nd {
        out.push_str(digits);
        for _ in 0..dp - nd {
            out.push('0');
        }
    } else {
        out.push_str(&digits[..dp as usize]);
        out.push('.');
        out.push_str(&digits[dp as usize..]);
    }
}

/// Appends `digits` in Go's `%e` form: `d.ddde+XX`, at least two exponent
/// digits.
fn push_exponent(out: &mut String, digits: &str, dp: i32) {
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    let e = dp - 1;
    let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
}

/// Go's `fmt` `%v` for a `float64` (= `strconv.FormatFloat(f, 'g', -1, 64)`):
/// shortest digits, exponent form when the decimal exponent is < −4 or ≥ 6
/// (`%g` decides with precision 6 when the precision is the shortest).
pub fn format_float_v(f: f64) -> String {
    let mut out = String::with_capacity(24);
    write_float_v(&mut out, f);
    out
}

/// [`format_float_v`] appending to `out`.
pub fn write_float_v(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    if f == 0.0 {
        out.push('0');
        return;
    }
    let (digits, dp) = shortest_digits(f);
    let exp = dp - 1;
    if !(-4..6).contains(&exp) {
        push_exponent(out, &digits, dp);
    } else {
        push_positional(out, &digits, dp);
    }
}

/// `encoding/json`'s float: positional shortest digits for 1e-6 ≤ |f| < 1e21,
/// otherwise the `e` form with a one-digit negative exponent cleaned
/// (`1e-7`, `1e+21`). Non-finite values cannot be encoded by Go (the whole
/// `Encode` fails); they are written as `null` here so a document stays valid.
pub fn format_float_json(f: f64) -> String {
    let mut out = String::with_capacity(24);
    write_float_json(&mut out, f);
    out
}

/// [`format_float_json`] appending to `out`.
pub fn write_float_json(out: &mut String, f: f64) {
    if !f.is_finite() {
        out.push_str("null");
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    if f == 0.0 {
        out.push('0');
        return;
    }
    let abs = f.abs();
    if abs < 1e15 && abs.fract() == 0.0 {
        // A whole number below 2^53 prints as its integer: the common case
        // of metrics, without the shortest-digits search.
        write_int(out, abs as i64);
        return;
    }
    let (digits, dp) = shortest_digits(f);
    if !(1e-6..1e21).contains(&abs) {
        let start = out.len();
        push_exponent(out, &digits, dp);
        // Go: "clean up e-09 to e-9" (only negative exponents).
        let b = out.as_bytes();
        let n = b.len();
        if n - start >= 4 && b[n - 4] == b'e' && b[n - 3] == b'-' && b[n - 2] == b'0' {
            out.remove(n - 2);
        }
    } else {
        push_positional(out, &digits, dp);
    }
}

/// Appends `s` as a JSON string the way Go's HTML-safe encoder writes it:
/// `"` and `\` escaped, `\n` `\r` `\t`, other control characters as
/// `\u00XX`, `<` `>` `&` as `\u003c` `\u003e` `\u0026`, U+2028/U+2029 escaped,
/// everything else raw UTF-8.
pub fn write_json_string(out: &mut String, s: &str) {
    write_json_escaped::<false>(out, s);
}

/// The bytes [`write_json_escaped`] may have to replace: the scan skips the
/// others with one table lookup each.
const JSON_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    let mut i = 0;
    let others = *b"\"\\'+<>&\xe2";
    while i < others.len() {
        t[others[i] as usize] = true;
        i += 1;
    }
    t
};

/// A JSON string as Go's HTML-safe `encoding/json` writes it, quotes
/// included. With `HTML`, the result is also escaped for html/template's
/// text context in the same pass (`"` → `&#34;`, `'` → `&#39;`, `+` →
/// `&#43;`; `&`, `<`, `>` and control bytes never reach it raw, since the
/// JSON encoder already wrote them as `\u00XX`): what `{{ json . }}` becomes
/// inside a details template.
pub(crate) fn write_json_escaped<const HTML: bool>(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let quote = if HTML { "&#34;" } else { "\"" };
    out.reserve(s.len() + 2 * quote.len());
    out.push_str(quote);
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !JSON_SPECIAL[c as usize] {
            i += 1;
            continue;
        }
        let esc: &str = match c {
            b'"' if HTML => "\\&#34;",
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b'\'' if HTML => "&#39;",
            b'+' if HTML => "&#43;",
            0..=0x1f | b'<' | b'>' | b'&' => "",
            // U+2028 / U+2029 are E2 80 A8 / E2 80 A9 in UTF-8.
            0xe2 if b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xa8 | 0xa9)) => {
                out.push_str(&s[start..i]);
                out.push_str(if b[i + 2] == 0xa8 {
                    "\\u2028"
                } else {
                    "\\u2029"
                });
                i += 3;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[(c >> 4) as usize] as char);
            out.push(HEX[(c & 0xf) as usize] as char);
        } else {
            out.push_str(esc);
        }
        i += 1;
        start = i;
    }
    out.push_str(&s[start..]);
    out.push_str(quote);
}

/// Appends a `map[string]string` as `encoding/json` does: keys sorted.
/// `tags` must iterate in key order (a `BTreeMap` does).
pub fn write_json_string_map<'a>(
    out: &mut String,
    tags: impl IntoIterator<Item = (&'a String, &'a String)>,
) {
    out.push('{');
    for (i, (k, v)) in tags.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, k);
        out.push(':');
        write_json_string(out, v);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_nano(31_536_010_000_000_000), "1971-01-01T00:00:10Z");
        assert_eq!(
            rfc3339_nano(1_580_702_706_003_000_000),
            "2020-02-03T04:05:06.003Z"
        );
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_nano(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn time_strings() {
        assert_eq!(
            time_string(31_536_010_000_000_000),
            "1971-01-01 00:00:10 +0000 UTC"
        );
        assert_eq!(
            time_string(31_536_010_000_005_000),
            "1971-01-01 00:00:10.000005 +0000 UTC"
        );
        assert_eq!(
            time_string(1_580_702_706_008_000_000),
            "2020-02-03 04:05:06.008 +0000 UTC"
        );
    }

    #[test]
    fn durations() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_000, "1µs"),
            (1_500, "1.5µs"),
            (1_000_000, "1ms"),
            (100_000_000, "100ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (7_200_000_000_000, "2h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-90_000_000_000, "-1m30s"),
            (-1, "-1ns"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ];
        for (ns, want) in cases {
            assert_eq!(duration_string(*ns), *want, "{ns}");
            assert_eq!(parse_duration_string(want), Some(*ns), "{want}");
        }
        assert_eq!(parse_duration_string("1x"), None);
        assert_eq!(
            parse_duration_string("99999999999999999999999999999h"),
            None
        );
        assert_eq!(parse_time_string("1971-13-01 00:00:00 +0000 UTC"), None);
        assert_eq!(
            parse_time_string("99999999999999-01-01 00:00:00 +0000 UTC"),
            None
        );
        assert_eq!(parse_duration_string(""), None);
    }

    #[test]
    fn floats_v() {
        let cases: &[(f64, &str)] = &[
            (50.0, "50"),
            (7.0, "7"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1e6, "1e+06"),
            (123456.7, "123456.7"),
            (1234567.0, "1.234567e+06"),
            (0.00001, "1e-05"),
            (0.0001, "0.0001"),
            (1e21, "1e+21"),
            (1e-7, "1e-07"),
            (1e100, "1e+100"),
            (2.469916402324427, "2.469916402324427"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (-1.5, "-1.5"),
            (
                f64::from_bits(0x430a_5f5d_646d_bd62),
                "9.279005144984762e+14",
            ),
        ];
        for (f, want) in cases {
            assert_eq!(format_float_v(*f), *want, "{f:?}");
        }
    }

    #[test]
    fn floats_json() {
        let cases: &[(f64, &str)] = &[
            (7.0, "7"),
            (96.49999999996908, "96.49999999996908"),
            (1e-7, "1e-7"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (0.000001, "0.000001"),
            (0.00001, "0.00001"),
            (1234567.0, "1234567"),
            (-0.0, "-0"),
            (1.5e-10, "1.5e-10"),
            (5e-324, "5e-324"),
            (f64::NAN, "null"),
        ];
        for (f, want) in cases {
            assert_eq!(format_float_json(*f), *want, "{f:?}");
        }
    }

    /// The whole-number shortcut prints what the shortest-digits path prints.
    #[test]
    fn whole_floats_json_shortcut() {
        let mut x: f64 = 1.0;
        let mut values = vec![
            1.0,
            42.0,
            1e14,
            999_999_999_999_999.0,
            123_456_789_012_345.0,
        ];
        while x < 1e15 {
            values.push(x);
            values.push(x + 1.0);
            x *= 7.3;
            x = x.floor();
        }
        for v in values {
            for f in [v, -v] {
                let mut fast = String::new();
                write_float_json(&mut fast, f);
                let (digits, dp) = shortest_digits(f);
                let mut slow = String::from(if f < 0.0 { "-" } else { "" });
                push_positional(&mut slow, &digits, dp);
                assert_eq!(fast, slow, "{f}");
            }
        }
        let mut ints = String::new();
        for i in [0, 7, -7, i64::MAX, i64::MIN] {
            ints.clear();
            write_int(&mut ints, i);
            assert_eq!(ints, i.to_string());
        }
    }

    /// The per-thread text of the last second never leaks into another
    /// second or separator.
    #[test]
    fn date_time_cache_is_per_second() {
        let t = 1_700_000_000_000_000_000;
        assert_eq!(rfc3339_nano(t + 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(
            time_string(t + 7),
            "2023-11-14 22:13:20.000000007 +0000 UTC"
        );
        assert_eq!(rfc3339_nano(t + 1_000_000_000), "2023-11-14T22:13:21Z");
        assert_eq!(rfc3339_nano(t - 1), "2023-11-14T22:13:19.999999999Z");
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20Z");
    }

    /// The extremes of the nanosecond clock print as Go prints them.
    #[test]
    fn date_time_extremes() {
        assert_eq!(rfc3339_nano(i64::MAX), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(rfc3339_nano(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(
            time_string(1_700_000_000_123_456_789),
            "2023-11-14 22:13:20.123456789 +0000 UTC"
        );
    }

    #[test]
    fn json_strings() {
        let mut s = String::new();
        write_json_string(&mut s, "a\"b\\c\n\r\t\u{1}<>&\u{2028}\u{2029}é\u{7f}");
        assert_eq!(
            s,
            r#""a\"b\\c\n\r\t\u0001\u003c\u003e\u0026\u2028\u2029é"#.to_owned() + "\u{7f}\""
        );
    }
}
