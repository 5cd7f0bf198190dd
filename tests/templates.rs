//! Go printing and template conformance: `gofmt` against fixtures produced by
//! Go 1.19 (tests/data/go_printing.txt), `alert_data_json` against every
//! `expected_events[].body` of the conformance cases, and the templates
//! against tests/conformance/templates.json and the cases' `details`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kapacitor_pagertree::alert::json::alert_data_json;
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
                assert_eq!(
                    gofmt::parse_duration_string(rest),
                    Some(arg.parse().unwrap()),
                    "parse {rest}"
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
            let got = alert_data_json(&event_from_expected(e));
            assert_eq!(String::from_utf8(got).unwrap(), body, "{name} event {i}");
            checked += 1;
        }
        if let Some(body) = case.get("expected_body").and_then(J::as_str) {
            let got = alert_data_json(&event_from_expected(&events[0]));
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

use kapacitor_pagertree::alert::ServerInfo;
use kapacitor_pagertree::alert::template::{
    DEFAULT_DETAILS, DEFAULT_ID, DEFAULT_MESSAGE, Engine, Fields, Scope, Tags, Template,
    TemplateData,
};

/// Owned data behind a [`TemplateData`].
struct Owned {
    name: String,
    task_name: String,
    group: String,
    tags: BTreeMap<String, String>,
    server_info: ServerInfo,
    id: String,
    fields: BTreeMap<String, FieldValue>,
    level: Level,
    time: i64,
    duration: i64,
    message: String,
    details: String,
}

impl Owned {
    fn data(&self) -> TemplateData<'_> {
        TemplateData {
            name: &self.name,
            task_name: &self.task_name,
            group: &self.group,
            tags: Tags::Sorted(&self.tags),
            server_info: &self.server_info,
            id: &self.id,
            fields: Fields::Map(&self.fields),
            level: self.level,
            time: self.time,
            duration: self.duration,
            message: &self.message,
            details: &self.details,
        }
    }
}

fn string_map(v: &J) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn go_dataset(d: &J) -> Owned {
    let fields = d["Fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let (k, t, v) = (
                f["K"].as_str().unwrap(),
                f["T"].as_str().unwrap(),
                f["V"].as_str().unwrap(),
            );
            let v = match t {
                "float" => FieldValue::Float(v.parse().unwrap()),
                "int" => FieldValue::Int(v.parse().unwrap()),
                "string" => FieldValue::String(v.to_owned()),
                "bool" => FieldValue::Bool(v == "true"),
                other => panic!("field type {other}"),
            };
            (k.to_owned(), v)
        })
        .collect();
    let si = &d["ServerInfo"];
    Owned {
        name: d["Name"].as_str().unwrap().into(),
        task_name: d["TaskName"].as_str().unwrap().into(),
        group: d["Group"].as_str().unwrap().into(),
        tags: string_map(&d["Tags"]),
        server_info: ServerInfo {
            hostname: si["Hostname"].as_str().unwrap().into(),
            cluster_id: si["ClusterID"].as_str().unwrap().into(),
            server_id: si["ServerID"].as_str().unwrap().into(),
        },
        id: d["ID"].as_str().unwrap().into(),
        fields,
        level: level(d["Level"].as_str().unwrap()),
        time: d["TimeNs"].as_i64().unwrap(),
        duration: d["DurationNs"].as_i64().unwrap(),
        message: d["Message"].as_str().unwrap().into(),
        details: String::new(),
    }
}

fn scope_of(s: &str) -> Scope {
    match s {
        "id" => Scope::Id,
        "message" => Scope::Message,
        "details" => Scope::Details,
        other => panic!("scope {other}"),
    }
}

fn engine_of(s: &str) -> Engine {
    if s == "html" {
        Engine::Html
    } else {
        Engine::Text
    }
}

/// Every probe of tests/data/go_templates.json: the output Go produced, or
/// an error where Go failed (for unknown fields, with Go's message).
#[test]
fn templates_match_go() {
    let doc =
        json::parse(&std::fs::read_to_string(root().join("tests/data/go_templates.json")).unwrap());
    let datasets: Vec<Owned> = doc["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(go_dataset)
        .collect();
    let cases = doc["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for c in cases {
        let (engine, scope, src) = (
            c["engine"].as_str().unwrap(),
            c["scope"].as_str().unwrap(),
            c["template"].as_str().unwrap(),
        );
        let data = datasets[c["data"].as_i64().unwrap() as usize].data();
        let got = Template::parse(engine_of(engine), scope_of(scope), src)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                let out = t.render(&data).map_err(|e| e.to_string());
                if t.is_fast() {
                    assert_eq!(
                        out,
                        t.render_slow(&data).map_err(|e| e.to_string()),
                        "fast vs slow: {src}"
                    );
                }
                out
            });
        let ok = match (&got, c["out"].as_str(), c["err"].as_str()) {
            (Ok(out), Some(want), _) => out == want,
            (Err(e), None, Some(want)) => {
                // Go names the info structs main.*, Kapacitor kapacitor.*.
                let want = want.replace("main.", "kapacitor.");
                match want.split_once("can't evaluate field") {
                    Some((_, tail)) => {
                        e.contains(&format!("can't evaluate field{tail}"))
                            && e.contains(want.split(": can't").next().unwrap())
                    }
                    None => true,
                }
            }
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{engine}/{scope} {src:?} data {}: got {got:?}, Go: out {:?} err {:?}",
                c["data"].as_i64().unwrap(),
                c["out"].as_str(),
                c["err"].as_str()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ from Go:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn typed_fields(v: &J) -> BTreeMap<String, FieldValue> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), field_value(v))).collect())
        .unwrap_or_default()
}

/// Undoes html/template's escaping of the default details (for reading back
/// which fields the event's details show).
fn html_unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#43;", "+")
        .replace("&amp;", "&")
}

fn server_info_of(case: &J) -> ServerInfo {
    match case.get("server_info") {
        Some(si) => ServerInfo {
            hostname: si["Hostname"].as_str().unwrap().into(),
            cluster_id: si["ClusterID"].as_str().unwrap().into(),
            server_id: si["ServerID"].as_str().unwrap().into(),
        },
        None => ServerInfo::default(),
    }
}

/// Every expected event of every case: its `id`, `message` and `details`
/// are what the case's templates render from the input the event comes from
/// (the default `{{ json . }}` details byte for byte, with the case's
/// `server_info`).
#[test]
fn case_events_render_from_their_templates() {
    let mut checked = 0;
    for (name, case) in cases() {
        let edge = case["edge"].as_str().unwrap();
        let input = case["input"].as_array().unwrap();
        let server_info = server_info_of(&case);
        for (i, e) in case["expected_events"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let task = e
                .get("task")
                .or(case.get("task"))
                .and_then(J::as_str)
                .unwrap()
                .to_owned();
            let alert = match case.get("tasks") {
                Some(tasks) => &tasks
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|t| t["task"].as_str() == Some(&task))
                    .unwrap()["alert"],
                None => &case["alert"],
            };
            let series = &e["data"]["series"][0];
            let sname = series["name"].as_str().unwrap();
            let first_time = series["values"][0][0].as_str().unwrap();
            let same_task = |item: &J| {
                item.get("task")
                    .and_then(J::as_str)
                    .is_none_or(|t| t == task)
            };
            let details_shown = html_unescape(e["details"].as_str().unwrap());
            let (group, tags, fields) = if edge == "stream" {
                let p = input
                    .iter()
                    .find(|p| {
                        same_task(p)
                            && p["name"].as_str() == Some(sname)
                            && p["time"].as_str() == Some(first_time)
                            && string_map(&p["tags"]) == string_map(&series["tags"])
                    })
                    .unwrap_or_else(|| panic!("{name} event {i}: no input point"));
                (
                    p["group"].as_str().unwrap().to_owned(),
                    string_map(&p["tags"]),
                    typed_fields(&p["fields"]),
                )
            } else {
                let b = input
                    .iter()
                    .find(|b| {
                        same_task(b)
                            && b["name"].as_str() == Some(sname)
                            && b["points"][0]["time"].as_str() == Some(first_time)
                            && string_map(&b["tags"]) == string_map(&series["tags"])
                    })
                    .unwrap_or_else(|| panic!("{name} event {i}: no input batch"));
                // The event's fields are those of the batch's highest-level
                // point; the default details show which one it is.
                let points = b["points"].as_array().unwrap();
                let shown = details_shown
                    .starts_with('{')
                    .then(|| json::parse(&details_shown));
                let hp = points
                    .iter()
                    .find(|p| match &shown {
                        Some(d) => p["fields"]
                            .as_object()
                            .unwrap()
                            .iter()
                            .all(|(k, v)| d["Fields"][k.as_str()].as_f64() == v.as_f64()),
                        None => true,
                    })
                    .unwrap_or_else(|| {
                        panic!("{name} event {i}: no point with the fields of {details_shown}")
                    });
                (
                    b["group"].as_str().unwrap().to_owned(),
                    string_map(&b["tags"]),
                    typed_fields(&hp["fields"]),
                )
            };
            let mut owned = Owned {
                name: sname.to_owned(),
                task_name: task.clone(),
                group,
                tags,
                server_info: server_info.clone(),
                id: String::new(),
                fields,
                level: level(e["level"].as_str().unwrap()),
                time: parse_time(e["time"].as_str().unwrap()),
                duration: e["duration"].as_i64().unwrap(),
                message: String::new(),
                details: String::new(),
            };
            let src = |k: &str, default: &'static str| {
                alert[k].as_str().map_or(default.to_owned(), str::to_owned)
            };
            let id = Template::parse(Engine::Text, Scope::Id, &src("id", DEFAULT_ID)).unwrap();
            let message = Template::parse(
                Engine::Text,
                Scope::Message,
                &src("message", DEFAULT_MESSAGE),
            )
            .unwrap();
            let details = Template::parse(
                Engine::Html,
                Scope::Details,
                &src("details", DEFAULT_DETAILS),
            )
            .unwrap();
            owned.id = id.render(&owned.data()).unwrap();
            assert_eq!(owned.id, e["id"].as_str().unwrap(), "{name} event {i} id");
            owned.message = message.render(&owned.data()).unwrap();
            assert_eq!(
                owned.message,
                e["message"].as_str().unwrap(),
                "{name} event {i} message"
            );
            let got = details.render(&owned.data()).unwrap();
            assert_eq!(
                got,
                e["details"].as_str().unwrap(),
                "{name} event {i} details"
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} events checked");
}

/// tests/conformance/templates.json, every case.
#[test]
fn conformance_templates_json() {
    let doc = json::parse(
        &std::fs::read_to_string(root().join("tests/conformance/templates.json")).unwrap(),
    );
    let cases = doc["cases"].as_array().unwrap();
    for c in cases {
        let used_as = c["used_as"].as_str().unwrap();
        let engine = engine_of(if c["engine"].as_str() == Some("html/template") {
            "html"
        } else {
            "text"
        });
        let scope = if used_as.starts_with("alert id") {
            Scope::Id
        } else if used_as.starts_with("alert message") {
            Scope::Message
        } else if used_as.starts_with("alert details") {
            Scope::Details
        } else {
            Scope::Handler
        };
        let d = &c["data"];
        let text = |k: &str| d[k].as_str().unwrap_or("").to_owned();
        let group = text("Group");
        let owned = Owned {
            name: text("Name"),
            task_name: text("TaskName"),
            // The cases give the rendered group; the node passes the raw one.
            group: if group == "nil" && scope != Scope::Handler {
                String::new()
            } else {
                group
            },
            tags: string_map(&d["Tags"]),
            server_info: ServerInfo::default(),
            id: text("ID"),
            fields: typed_fields(&d["Fields"]),
            level: d["Level"].as_str().map_or(Level::OK, level),
            time: d["Time"].as_str().map_or(0, parse_time),
            duration: d["Duration"].as_i64().unwrap_or(0),
            message: text("Message"),
            details: text("Details"),
        };
        let src = c["template"].as_str().unwrap();
        let t = Template::parse(engine, scope, src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
        assert_eq!(
            t.render(&owned.data()).unwrap(),
            c["expected"].as_str().unwrap(),
            "{} ({used_as})",
            c["source"].as_str().unwrap()
        );
    }
    assert_eq!(cases.len(), 15);
}

/// Rough render costs (debug build; run with
/// `cargo test --test templates render_cost -- --ignored --nocapture`).
#[test]
#[ignore = "timing, not a check"]
fn render_cost() {
    let mut tags = BTreeMap::new();
    tags.insert("host".to_owned(), "serverA".to_owned());
    tags.insert("region".to_owned(), "eu".to_owned());
    let mut fields = BTreeMap::new();
    fields.insert("value".to_owned(), FieldValue::Float(92.6));
    fields.insert("count".to_owned(), FieldValue::Int(10));
    let owned = Owned {
        name: "cpu".into(),
        task_name: "task".into(),
        group: "host=serverA".into(),
        tags,
        server_info: ServerInfo::default(),
        id: "cpu:host=serverA".into(),
        fields,
        level: Level::CRITICAL,
        time: 31_536_010_000_000_000,
        duration: 90_000_000_000,
        message: "cpu:host=serverA is CRITICAL".into(),
        details: String::new(),
    };
    let d = owned.data();
    for (engine, scope, src) in [
        (Engine::Text, Scope::Id, DEFAULT_ID),
        (
            Engine::Text,
            Scope::Id,
            "kapacitor/{{ .Name }}/{{ index .Tags \"host\" }}",
        ),
        (
            Engine::Text,
            Scope::Id,
            "{{ if .Tags.host }}{{ .Tags.host }}{{ else }}none{{ end }}",
        ),
        (Engine::Text, Scope::Message, DEFAULT_MESSAGE),
        (
            Engine::Text,
            Scope::Message,
            "{{ .ID }}: {{ index .Fields \"value\" | printf \"%.1f\" }}",
        ),
        (Engine::Html, Scope::Details, DEFAULT_DETAILS),
        (
            Engine::Html,
            Scope::Details,
            "<b>{{ .Message }}</b> {{ .Fields.value }}",
        ),
    ] {
        let t = Template::parse(engine, scope, src).unwrap();
        let n = 20_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(t.render(&d).unwrap());
        }
        let per = start.elapsed() / n;
        eprintln!("{per:>10.2?}  fast={:<5} {src}", t.is_fast());
    }
}

/// Go's `time.Time.Format`, `time.Time` and `time.Duration` methods, probed
/// with Go 1.19 (tests/data/go_time_layouts.txt), through the templates.
#[test]
fn time_layouts_and_methods_match_go() {
    let text = std::fs::read_to_string(root().join("tests/data/go_time_layouts.txt")).unwrap();
    let times = Template::parse(
        Engine::Text,
        Scope::Message,
        "{{ .Time.Unix }} {{ .Time.UnixNano }} {{ .Time.UnixMilli }} {{ .Time.UnixMicro }} {{ .Time.Year }} \
         {{ .Time.Day }} {{ .Time.Hour }} {{ .Time.Minute }} {{ .Time.Second }} {{ .Time.Nanosecond }} \
         {{ .Time.YearDay }} {{ .Time.Month }} {{ .Time.Weekday }}",
    )
    .unwrap();
    let durations = Template::parse(
        Engine::Text,
        Scope::Message,
        "{{ .Duration.Seconds }} {{ .Duration.Minutes }} {{ .Duration.Hours }} {{ .Duration.Nanoseconds }} \
         {{ .Duration.Microseconds }} {{ .Duration.Milliseconds }}",
    )
    .unwrap();
    let mut owned = go_dataset(&json::parse(
        r#"{"Name":"n","TaskName":"t","Group":"","Tags":{},"ServerInfo":{"Hostname":"h","ClusterID":"","ServerID":""},
            "ID":"i","Fields":[],"Level":"OK","TimeNs":0,"DurationNs":0,"Message":""}"#,
    ));
    let (mut layouts, mut methods) = (0, 0);
    for line in text.lines() {
        let parts: Vec<&str> = line.split('\t').collect();
        match parts.as_slice() {
            ["M", ns, want] => {
                owned.time = ns.parse().unwrap();
                assert_eq!(times.render(&owned.data()).unwrap(), *want, "time {ns}");
                methods += 1;
            }
            ["D", ns, want] => {
                owned.duration = ns.parse().unwrap();
                assert_eq!(
                    durations.render(&owned.data()).unwrap(),
                    *want,
                    "duration {ns}"
                );
                methods += 1;
            }
            [ns, layout, want] => {
                let ns: i64 = ns.parse().unwrap();
                assert_eq!(
                    gofmt::format_go_layout(ns, layout),
                    *want,
                    "{ns} {layout:?}"
                );
                if layouts % 7 == 0 {
                    owned.time = ns;
                    let src = format!("{{{{ .Time.Format {layout:?} }}}}");
                    let t = Template::parse(Engine::Text, Scope::Message, &src).unwrap();
                    assert_eq!(t.render(&owned.data()).unwrap(), *want, "{src}");
                }
                layouts += 1;
            }
            other => panic!("bad fixture line {other:?}"),
        }
    }
    assert!(layouts > 1000 && methods > 30, "{layouts} {methods}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn any_finite() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            (-1e7f64..1e7),
            (-30i32..30, -999_999i64..999_999).prop_map(|(e, m)| m as f64 * 10f64.powi(e)),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop::string::string_regex("[a-z<>&\"'+ é\u{2028}\\x00-\\x1f]{0,12}").unwrap()
    }

    proptest! {
        #[test]
        fn floats_round_trip(f in any_finite()) {
            prop_assert_eq!(gofmt::format_float_v(f).parse::<f64>().unwrap(), f);
            prop_assert_eq!(gofmt::format_float_json(f).parse::<f64>().unwrap(), f);
        }

        #[test]
        fn durations_and_times_read_back(ns in any::<i64>(), t in -4_000_000_000_000_000_000i64..4_000_000_000_000_000_000) {
            prop_assert_eq!(gofmt::parse_duration_string(&gofmt::duration_string(ns)), Some(ns));
            prop_assert_eq!(gofmt::parse_time_string(&gofmt::time_string(t)), Some(t));
        }

        #[test]
        fn json_strings_are_valid_json(s in text()) {
            let mut out = String::new();
            gofmt::write_json_string(&mut out, &s);
            prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
            let raw = out.contains(['<', '>', '&', '\u{2028}']);
            prop_assert!(!raw, "raw HTML-unsafe character in {}", out);
        }

        /// The direct renderings (plain lookups, default details) print what
        /// the general gotmpl path prints, whatever the data.
        #[test]
        fn fast_paths_match_gotmpl(
            name in text(),
            group in text(),
            tags in prop::collection::hash_map("[a-z]{1,3}", text(), 0..4),
            floats in prop::collection::btree_map("[a-z]{1,3}", any::<f64>(), 0..3),
            ints in prop::collection::btree_map("[A-Z]{1,3}", any::<i64>(), 0..3),
            level in 0u8..4,
            time in -4_000_000_000_000_000_000i64..4_000_000_000_000_000_000,
            duration in any::<i64>(),
        ) {
            let mut fields: BTreeMap<String, FieldValue> =
                floats.into_iter().map(|(k, v)| (k, FieldValue::Float(v))).collect();
            fields.extend(ints.into_iter().map(|(k, v)| (k, FieldValue::Int(v))));
            let si = ServerInfo { hostname: "h<".into(), cluster_id: "c".into(), server_id: "s".into() };
            let d = TemplateData {
                id: "the id",
                fields: Fields::Map(&fields),
                level: Level::from_u8(level).unwrap(),
                time,
                duration,
                message: "a <message>",
                ..TemplateData::new(&name, "task", &group, Tags::Unsorted(&tags), &si)
            };
            let keys: Vec<&String> = tags.keys().chain(fields.keys()).collect();
            let mut sources = vec![
                (Engine::Html, Scope::Details, DEFAULT_DETAILS.to_owned()),
                (Engine::Html, Scope::Details, "{{ jsonCompact . }}".to_owned()),
                (Engine::Text, Scope::Id, DEFAULT_ID.to_owned()),
                (Engine::Text, Scope::Message, "{{ .Time }}|{{ .Duration }}|{{ .ServerInfo.Hostname }}|{{ .Tags.zz }}".to_owned()),
            ];
            for k in keys {
                sources.push((Engine::Text, Scope::Message, format!("{{{{ index .Tags {k:?} }}}}:{{{{ .Tags.{k} }}}}:{{{{ index .Fields {k:?} }}}}:{{{{ .Fields.{k} }}}}")));
            }
            for (engine, scope, src) in sources {
                let t = Template::parse(engine, scope, &src).unwrap();
                prop_assert!(t.is_fast(), "{}", src);
                prop_assert_eq!(t.render(&d), t.render_slow(&d), "{}", src);
            }
        }
    }
}
