//! Go printing and template conformance: `gofmt` against fixtures produced by
//! Go 1.19 (tests/data/go_printing.txt), `alert_data_json` against every
//! `expected_events[].body` of the conformance cases, and the templates
//! against tests/conformance/templates.json and the cases' `details`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kapacitor_pagertree::alert::{Event, FieldValue, Level, Route, Series, SeriesValue};
use kapacitor_pagertree::gofmt;

mod json {
    //! A minimal JSON reader that keeps numbers as written: serde_json without
    //! `float_roundtrip` misreads some of the cases' floats by one ulp
    //! (93.49999999999409 → …407), which would break byte-exact comparisons.

    #[derive(Debug, Clone, PartialEq)]
    pub enum J {
        Null,
        Bool(bool),
        /// The number exactly as written.
        Num(String),
        Str(String),
        Arr(Vec<J>),
        /// Keys in document order.
        Obj(Vec<(String, J)>),
    }

    static NULL: J = J::Null;

    impl J {
        pub fn get(&self, k: &str) -> Option<&J> {
            match self {
                J::Obj(m) => m.iter().find(|(kk, _)| kk == k).map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn as_str(&self) -> Option<&str> {
            if let J::Str(s) = self { Some(s) } else { None }
        }
        pub fn as_array(&self) -> Option<&Vec<J>> {
            if let J::Arr(a) = self { Some(a) } else { None }
        }
        pub fn as_object(&self) -> Option<&Vec<(String, J)>> {
            if let J::Obj(m) = self { Some(m) } else { None }
        }
        pub fn as_bool(&self) -> Option<bool> {
            if let J::Bool(b) = self {
                Some(*b)
            } else {
                None
            }
        }
        pub fn as_i64(&self) -> Option<i64> {
            if let J::Num(n) = self {
                n.parse().ok()
            } else {
                None
            }
        }
        pub fn is_float(&self) -> bool {
            matches!(self, J::Num(n) if n.contains(['.', 'e', 'E']))
        }
        pub fn as_f64(&self) -> Option<f64> {
            if let J::Num(n) = self {
                n.parse().ok()
            } else {
                None
            }
        }
    }

    impl std::ops::Index<&str> for J {
        type Output = J;
        fn index(&self, k: &str) -> &J {
            self.get(k).unwrap_or(&NULL)
        }
    }

    impl std::ops::Index<usize> for J {
        type Output = J;
        fn index(&self, i: usize) -> &J {
            self.as_array().and_then(|a| a.get(i)).unwrap_or(&NULL)
        }
    }

    pub fn parse(s: &str) -> J {
        let mut p = P {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.b.len(), "trailing data");
        v
    }

    struct P<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl P<'_> {
        fn ws(&mut self) {
            while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }
        fn eat(&mut self, c: u8) {
            self.ws();
            assert_eq!(self.b[self.i], c, "at {}", self.i);
            self.i += 1;
        }
        fn value(&mut self) -> J {
            self.ws();
            match self.b[self.i] {
                b'{' => {
                    self.i += 1;
                    let mut m = Vec::new();
                    self.ws();
                    if self.b[self.i] == b'}' {
                        self.i += 1;
                        return J::Obj(m);
                    }
                    loop {
                        self.ws();
                        let k = self.string();
                        self.eat(b':');
                        m.push((k, self.value()));
                        self.ws();
                        self.i += 1;
                        if self.b[self.i - 1] == b'}' {
                            return J::Obj(m);
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    let mut a = Vec::new();
                    self.ws();
                    if self.b[self.i] == b']' {
                        self.i += 1;
                        return J::Arr(a);
                    }
                    loop {
                        a.push(self.value());
                        self.ws();
                        self.i += 1;
                        if self.b[self.i - 1] == b']' {
                            return J::Arr(a);
                        }
                    }
                }
                b'"' => J::Str(self.string()),
                b't' => {
                    self.i += 4;
                    J::Bool(true)
                }
                b'f' => {
                    self.i += 5;
                    J::Bool(false)
                }
                b'n' => {
                    self.i += 4;
                    J::Null
                }
                _ => {
                    let start = self.i;
                    while self.i < self.b.len()
                        && matches!(
                            self.b[self.i],
                            b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                        )
                    {
                        self.i += 1;
                    }
                    J::Num(String::from_utf8(self.b[start..self.i].to_vec()).unwrap())
                }
            }
        }
        fn string(&mut self) -> String {
            assert_eq!(self.b[self.i], b'"');
            self.i += 1;
            let mut out: Vec<u16> = Vec::new();
            let mut s = String::new();
            loop {
                let c = self.b[self.i];
                if c == b'"' {
                    self.i += 1;
                    return s;
                }
                if c == b'\\' {
                    let e = self.b[self.i + 1];
                    self.i += 2;
                    let ch = match e {
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let h = std::str::from_utf8(&self.b[self.i..self.i + 4]).unwrap();
                            self.i += 4;
                            out.push(u16::from_str_radix(h, 16).unwrap());
                            if (0xD800..0xDC00).contains(&out[0]) && out.len() < 2 {
                                continue;
                            }
                            let ch = char::decode_utf16(out.drain(..)).next().unwrap().unwrap();
                            s.push(ch);
                            continue;
                        }
                        other => other as char,
                    };
                    s.push(ch);
                } else {
                    let len = match c {
                        0..=0x7f => 1,
                        0xc0..=0xdf => 2,
                        0xe0..=0xef => 3,
                        _ => 4,
                    };
                    s.push_str(std::str::from_utf8(&self.b[self.i..self.i + len]).unwrap());
                    self.i += len;
                }
            }
        }
    }
}

use json::J;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cases() -> Vec<(String, J)> {
    let dir = root().join("tests/conformance/cases");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((file_name(&path), json::parse(&text)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 15, "conformance cases missing");
    out
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// RFC 3339 (UTC, `Z`) → nanoseconds since the epoch.
fn parse_time(s: &str) -> i64 {
    let s = s.strip_suffix('Z').unwrap();
    let (date, time) = s.split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    let mut ns: i64 = 0;
    if !frac.is_empty() {
        ns = format!("{frac:0<9}").parse().unwrap();
    }
    let days = days_from_civil(d[0], d[1], d[2]);
    (days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000_000 + ns
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn level(s: &str) -> Level {
    Level::parse(s).unwrap()
}

/// A JSON value of a case → the field value it stands for: a number written
/// with a decimal point or exponent is a float64, otherwise an int64.
fn field_value(v: &J) -> FieldValue {
    match v {
        J::Num(_) if v.is_float() => FieldValue::Float(v.as_f64().unwrap()),
        J::Num(_) => FieldValue::Int(v.as_i64().unwrap()),
        J::Str(s) => FieldValue::String(s.clone()),
        J::Bool(b) => FieldValue::Bool(*b),
        other => panic!("not a field value: {other:?}"),
    }
}

fn event_from_expected(e: &J) -> Event {
    let series = &e["data"]["series"][0];
    let tags: BTreeMap<String, String> = series
        .get("tags")
        .and_then(J::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let columns: Vec<String> = series["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let values = series["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, v)| match (i, v) {
                    (0, J::Str(t)) => SeriesValue::Time(parse_time(t)),
                    (_, J::Null) => SeriesValue::Null,
                    (_, v) => SeriesValue::Field(field_value(v)),
                })
                .collect()
        })
        .collect();
    Event {
        task: e.get("task").and_then(J::as_str).unwrap_or("").to_owned(),
        node: "alert2".into(),
        id: e["id"].as_str().unwrap().to_owned(),
        message: e["message"].as_str().unwrap().to_owned(),
        details: e["details"].as_str().unwrap().to_owned(),
        time: parse_time(e["time"].as_str().unwrap()),
        duration: e["duration"].as_i64().unwrap(),
        level: level(e["level"].as_str().unwrap()),
        previous_level: level(e["previousLevel"].as_str().unwrap()),
        recoverable: e["recoverable"].as_bool().unwrap(),
        data: Series {
            name: series["name"].as_str().unwrap_or("").to_owned(),
            tags,
            columns,
            values,
        },
        route: Arc::new(Route::default()),
    }
}

#[test]
fn go_printing_fixtures() {
    let text = std::fs::read_to_string(root().join("tests/data/go_printing.txt")).unwrap();
    let (mut floats, mut durations, mut times) = (0, 0, 0);
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        let kind = parts.next().unwrap();
        let arg = parts.next().unwrap();
        let rest = parts.next().unwrap();
        match kind {
            "F" => {
                let f = f64::from_bits(u64::from_str_radix(arg, 16).unwrap());
                let (v, json) = rest.split_once(' ').unwrap();
                assert_eq!(gofmt::format_float_v(f), v, "%v of {f:e}");
                assert_eq!(gofmt::format_float_json(f), json, "json of {f:e}");
                floats += 1;
            }
            "D" => {
                assert_eq!(
                    gofmt::duration_string(arg.parse().unwrap()),
                    rest,
                    "duration {arg}"
                );
                durations += 1;
            }
            "T" => {
                let ns: i64 = arg.parse().unwrap();
                let (s, json) = rest.split_once('|').unwrap();
                assert_eq!(gofmt::time_string(ns), s, "time {ns}");
                assert_eq!(
                    format!("\"{}\"", gofmt::rfc3339_nano(ns)),
                    json,
                    "rfc3339 {ns}"
                );
                times += 1;
            }
            other => panic!("unknown fixture kind {other}"),
        }
    }
    assert!(
        floats > 600 && durations > 50 && times > 50,
        "{floats} {durations} {times}"
    );
}

#[test]
fn alert_data_json_matches_every_case_body() {
    let mut checked = 0;
    for (name, case) in cases() {
        let events = case["expected_events"].as_array().unwrap();
        for (i, e) in events.iter().enumerate() {
            let Some(body) = e.get("body").and_then(J::as_str) else {
                continue;
            };
            let got = gofmt::alert_data_json(&event_from_expected(e));
            assert_eq!(String::from_utf8(got).unwrap(), body, "{name} event {i}");
            checked += 1;
        }
        if let Some(body) = case.get("expected_body").and_then(J::as_str) {
            let got = gofmt::alert_data_json(&event_from_expected(&events[0]));
            assert_eq!(
                String::from_utf8(got).unwrap(),
                body,
                "{name} expected_body"
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} bodies checked");
}
