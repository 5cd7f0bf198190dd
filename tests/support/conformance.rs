//! The conformance cases of `tests/conformance/cases/*.json` (transcribed
//! from Kapacitor's own alert tests), read and compared exactly as
//! conformance README §8 states. Shared by the in-process runner
//! (`tests/conformance_inprocess.rs`) and the socket-level runner: this file
//! knows the case schema, the option and input mapping, and the comparison
//! rules — not how events are produced.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kapacitor_pagertree::alert::ServerInfo;
use kapacitor_pagertree::proto::option_value::Value as OptValue;
use kapacitor_pagertree::proto::{
    BeginBatch, EndBatch, Option as Opt, OptionValue, Point, ValueType,
};
use serde_json::Value;

/// The directory of the case files.
pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/cases")
}

/// One task of a case: its id and its alert node's properties.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub task: String,
    pub alert: Value,
}

/// One input item, routed to its task.
#[derive(Debug, Clone)]
pub enum Input {
    Point {
        task: String,
        point: Point,
    },
    Batch {
        task: String,
        begin: BeginBatch,
        points: Vec<Point>,
        end: EndBatch,
    },
    /// Every node is recreated; the stored alert states survive.
    Restart,
}

/// A loaded case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub edge_batch: bool,
    pub tasks: Vec<TaskSpec>,
    pub inputs: Vec<Input>,
    pub server_info: Option<ServerInfo>,
    pub raw: Value,
}

/// Every case file, sorted by file name, with its file stem.
pub fn load_all() -> Vec<(String, Case)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("cases dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let stem = p
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("case file name")
                .to_string();
            (stem, load(p))
        })
        .collect()
}

pub fn load_named(name: &str) -> Case {
    load(&cases_dir().join(format!("{name}.json")))
}

pub fn load(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let raw: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = raw["name"].as_str().unwrap_or_default().to_string();
    let edge_batch = raw["edge"] == "batch";
    let tasks = match raw.get("tasks").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .map(|t| TaskSpec {
                task: t["task"].as_str().unwrap().to_string(),
                alert: t["alert"].clone(),
            })
            .collect(),
        None => vec![TaskSpec {
            task: raw["task"].as_str().unwrap().to_string(),
            alert: raw["alert"].clone(),
        }],
    };
    let default_task = tasks[0].task.clone();
    let inputs = raw["input"]
        .as_array()
        .expect("input")
        .iter()
        .map(|item| {
            if item.get("control").is_some() {
                assert_eq!(item["control"], "restart", "{name}: unknown control");
                return Input::Restart;
            }
            let task = item
                .get("task")
                .and_then(Value::as_str)
                .unwrap_or(&default_task)
                .to_string();
            if edge_batch {
                batch_input(task, item)
            } else {
                Input::Point {
                    task,
                    point: stream_point(item),
                }
            }
        })
        .collect();
    let server_info = raw.get("server_info").map(|s| ServerInfo {
        hostname: s["Hostname"].as_str().unwrap_or_default().to_string(),
        cluster_id: s["ClusterID"].as_str().unwrap_or_default().to_string(),
        server_id: s["ServerID"].as_str().unwrap_or_default().to_string(),
    });
    Case {
        name,
        edge_batch,
        tasks,
        inputs,
        server_info,
        raw,
    }
}

/// The `[kapacitor]` table the agent under test needs for this case.
pub fn kapacitor_toml(info: &ServerInfo) -> String {
    format!(
        "[kapacitor]\nhostname = {:?}\ncluster_id = {:?}\nserver_id = {:?}\n",
        info.hostname, info.cluster_id, info.server_id
    )
}

fn str_map(v: &Value) -> std::collections::HashMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Routes each field by its JSON type (README §8).
fn set_fields(p: &mut Point, fields: &Value) {
    for (k, v) in fields.as_object().into_iter().flatten() {
        match v {
            Value::Number(n) if n.is_f64() => {
                p.fields_double.insert(k.clone(), n.as_f64().unwrap());
            }
            Value::Number(n) => {
                p.fields_int
                    .insert(k.clone(), n.as_i64().expect("int64 field"));
            }
            Value::String(s) => {
                p.fields_string.insert(k.clone(), s.clone());
            }
            Value::Bool(b) => {
                p.fields_bool.insert(k.clone(), *b);
            }
            other => panic!("unsupported field value {other}"),
        }
    }
}

fn stream_point(item: &Value) -> Point {
    let mut p = Point {
        time: parse_time(item["time"].as_str().unwrap()).unwrap(),
        name: item["name"].as_str().unwrap_or_default().to_string(),
        database: item["database"].as_str().unwrap_or_default().to_string(),
        retention_policy: item["retentionPolicy"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        group: item["group"].as_str().unwrap_or_default().to_string(),
        dimensions: item["dimensions"]
            .as_array()
            .map(|a| a.iter().map(|d| d.as_str().unwrap().to_string()).collect())
            .unwrap_or_default(),
        tags: str_map(&item["tags"]),
        ..Default::default()
    };
    set_fields(&mut p, &item["fields"]);
    p
}

fn batch_input(task: String, item: &Value) -> Input {
    let name = item["name"].as_str().unwrap_or_default().to_string();
    let group = item["group"].as_str().unwrap_or_default().to_string();
    let tags = str_map(&item["tags"]);
    let points: Vec<Point> = item["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|bp| {
            let mut p = Point {
                time: parse_time(bp["time"].as_str().unwrap()).unwrap(),
                name: name.clone(),
                group: group.clone(),
                tags: str_map(&bp["tags"]),
                ..Default::default()
            };
            set_fields(&mut p, &bp["fields"]);
            p
        })
        .collect();
    let begin = BeginBatch {
        name: name.clone(),
        group: group.clone(),
        tags: tags.clone(),
        size: points.len() as i64,
        by_name: false,
    };
    let end = EndBatch {
        name,
        group,
        tmax: parse_time(item["tmax"].as_str().unwrap()).unwrap(),
        tags,
        by_name: false,
    };
    Input::Batch {
        task,
        begin,
        points,
        end,
    }
}

fn string_opt(name: &str, v: &str) -> Opt {
    Opt {
        name: name.into(),
        values: vec![OptionValue {
            r#type: ValueType::String as i32,
            value: Some(OptValue::StringValue(v.into())),
        }],
    }
}

/// The `InitRequest` options of an `alert` object (README §8), with `url`
/// the local endpoint the events go to.
pub fn init_options(alert: &Value, url: &str) -> Vec<Opt> {
    let mut out = Vec::new();
    let defaults: Vec<&str> = alert["defaults_used"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for name in [
        "info",
        "warn",
        "crit",
        "infoReset",
        "warnReset",
        "critReset",
        "idTag",
        "idField",
        "levelTag",
        "levelField",
        "messageField",
        "durationField",
        "category",
    ] {
        if let Some(v) = alert[name].as_str().filter(|v| !v.is_empty()) {
            out.push(string_opt(name, v));
        }
    }
    for name in ["id", "message", "details"] {
        if let Some(v) = alert[name].as_str()
            && !defaults.contains(&name)
        {
            out.push(string_opt(name, v));
        }
    }
    if let Some(d) = alert["stateChangesOnlyDuration"].as_str() {
        out.push(Opt {
            name: "renotifyEvery".into(),
            values: vec![OptionValue {
                r#type: ValueType::Duration as i32,
                value: Some(OptValue::DurationValue(
                    parse_go_duration(d).expect("duration"),
                )),
            }],
        });
    } else if alert["stateChangesOnly"] == true {
        out.push(Opt {
            name: "stateChangesOnly".into(),
            values: vec![],
        });
    }
    if let Some([low, high]) = alert["flapping"].as_array().map(Vec::as_slice) {
        let d = |x: &Value| OptionValue {
            r#type: ValueType::Double as i32,
            value: Some(OptValue::DoubleValue(x.as_f64().unwrap())),
        };
        out.push(Opt {
            name: "flapping".into(),
            values: vec![d(low), d(high)],
        });
    }
    if let Some(h) = alert["history"].as_i64() {
        out.push(Opt {
            name: "history".into(),
            values: vec![OptionValue {
                r#type: ValueType::Int as i32,
                value: Some(OptValue::IntValue(h)),
            }],
        });
    }
    for flag in ["noRecoveries", "all"] {
        if alert[flag] == true {
            out.push(Opt {
                name: flag.into(),
                values: vec![],
            });
        }
    }
    for inh in alert["inhibit"].as_array().into_iter().flatten() {
        let tags: Vec<&str> = inh["equalTags"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut o = string_opt("inhibit", inh["category"].as_str().unwrap_or_default());
        o.values
            .push(string_opt("x", &tags.join(",")).values.remove(0));
        out.push(o);
    }
    out.push(string_opt("url", url));
    out
}

/// Go's `time.ParseDuration` for the simple forms the cases use (`2s`, `1m30s`).
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += (num * unit) as i64;
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// RFC 3339 UTC (`Z`) with an optional fraction, to nanoseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, b),
        None => (time, ""),
    };
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let mut nanos = 0i64;
    if !frac.is_empty() {
        let digits = format!("{frac:0<9}");
        nanos = digits.get(..9)?.parse().ok()?;
    }
    // Howard Hinnant's days_from_civil.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000_000) + nanos)
}

/// One event the node under test produced, as Kapacitor's handlers see it:
/// the exact body bytes, tagged with the task that sent it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub task: String,
    pub body: Vec<u8>,
}

/// One item the node emitted, as an `httpOut` row: name, tags, and
/// `time` + sorted field columns with one row per point.
#[derive(Debug, Clone, PartialEq)]
pub struct EmittedRow {
    pub name: String,
    pub tags: BTreeMap<String, String>,
    pub columns: Vec<String>,
    pub values: Vec<Vec<Value>>,
}

/// What a run of a case produced.
#[derive(Debug, Default, Clone)]
pub struct RunResult {
    pub events: Vec<Observed>,
    /// Emitted points (batch points included).
    pub emitted_points: usize,
    /// Each emitted stream point or batch, in order.
    pub emitted: Vec<EmittedRow>,
}

/// A point's fields as JSON values, sorted by name.
pub fn point_fields(p: &Point) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for (k, v) in &p.fields_double {
        m.insert(k.clone(), serde_json::json!(v));
    }
    for (k, v) in &p.fields_int {
        m.insert(k.clone(), serde_json::json!(v));
    }
    for (k, v) in &p.fields_string {
        m.insert(k.clone(), serde_json::json!(v));
    }
    for (k, v) in &p.fields_bool {
        m.insert(k.clone(), serde_json::json!(v));
    }
    m
}

fn time_value(ns: i64) -> Value {
    Value::String(kapacitor_pagertree::gofmt::rfc3339_nano(ns))
}

/// An emitted stream point as an `httpOut` row.
pub fn point_row(p: &Point) -> EmittedRow {
    let fields = point_fields(p);
    let mut columns = vec!["time".to_string()];
    let mut row = vec![time_value(p.time)];
    for (k, v) in fields {
        columns.push(k);
        row.push(v);
    }
    EmittedRow {
        name: p.name.clone(),
        tags: p.tags.clone().into_iter().collect(),
        columns,
        values: vec![row],
    }
}

/// An emitted batch as an `httpOut` row (tags from EndBatch, as Kapacitor takes them).
pub fn batch_row(end: &EndBatch, points: &[Point]) -> EmittedRow {
    let mut names: Vec<String> = points
        .iter()
        .flat_map(|p| point_fields(p).into_keys())
        .collect();
    names.sort();
    names.dedup();
    let values = points
        .iter()
        .map(|p| {
            let f = point_fields(p);
            let mut row = vec![time_value(p.time)];
            row.extend(
                names
                    .iter()
                    .map(|n| f.get(n).cloned().unwrap_or(Value::Null)),
            );
            row
        })
        .collect();
    let mut columns = vec!["time".to_string()];
    columns.extend(names);
    EmittedRow {
        name: end.name.clone(),
        tags: end.tags.clone().into_iter().collect(),
        columns,
        values,
    }
}

fn number_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y || ((x - y).abs() <= 1e-9 * x.abs().max(y.abs())),
        _ => false,
    }
}

/// Equality of a series value: numbers to 1e-9 relative, RFC 3339 times as instants.
fn value_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => number_eq(a, b),
        (Value::String(x), Value::String(y)) => {
            x == y || matches!((parse_time(x), parse_time(y)), (Some(p), Some(q)) if p == q)
        }
        _ => a == b,
    }
}

fn rows_eq(a: &[Vec<Value>], b: &[Vec<Value>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| value_eq(p, q)))
}

fn series_diff(path: &str, got: &Value, want: &Value, errs: &mut Vec<String>) {
    let gs = got["series"].as_array().cloned().unwrap_or_default();
    let ws = want["series"].as_array().cloned().unwrap_or_default();
    if gs.len() != ws.len() {
        errs.push(format!("{path}: {} series, want {}", gs.len(), ws.len()));
        return;
    }
    for (g, w) in gs.iter().zip(&ws) {
        let obj = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        let empty_obj = |v: Value| {
            if v.is_null() {
                serde_json::json!({})
            } else {
                v
            }
        };
        if obj(g, "name") != obj(w, "name") {
            errs.push(format!(
                "{path}.name: {} want {}",
                obj(g, "name"),
                obj(w, "name")
            ));
        }
        if empty_obj(obj(g, "tags")) != empty_obj(obj(w, "tags")) {
            errs.push(format!(
                "{path}.tags: {} want {}",
                obj(g, "tags"),
                obj(w, "tags")
            ));
        }
        if obj(g, "columns") != obj(w, "columns") {
            errs.push(format!(
                "{path}.columns: {} want {}",
                obj(g, "columns"),
                obj(w, "columns")
            ));
        }
        let rows = |v: &Value| -> Vec<Vec<Value>> {
            v["values"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .map(|x| x.as_array().cloned().unwrap_or_default())
                        .collect()
                })
                .unwrap_or_default()
        };
        if !rows_eq(&rows(g), &rows(w)) {
            errs.push(format!(
                "{path}.values: {} want {}",
                obj(g, "values"),
                obj(w, "values")
            ));
        }
    }
}

/// Compares what a run produced with the case's expectations (README §8).
/// Returns every difference found; empty means the case passes.
pub fn compare(case: &Case, run: &RunResult) -> Vec<String> {
    let mut errs = Vec::new();
    let default_task = case.tasks[0].task.clone();
    let key = |task: &str, id: &str| format!("{task} / {id}");

    let mut got: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (i, o) in run.events.iter().enumerate() {
        match serde_json::from_slice::<Value>(&o.body) {
            Ok(v) => got
                .entry(key(&o.task, v["id"].as_str().unwrap_or_default()))
                .or_default()
                .push(v),
            Err(e) => errs.push(format!(
                "event {i}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&o.body)
            )),
        }
    }
    let mut want: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let expected = case.raw["expected_events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for e in &expected {
        let task = e
            .get("task")
            .and_then(Value::as_str)
            .unwrap_or(&default_task);
        want.entry(key(task, e["id"].as_str().unwrap_or_default()))
            .or_default()
            .push(e.clone());
    }
    for k in got.keys() {
        if !want.contains_key(k) {
            errs.push(format!("unexpected events for {k}: {}", got[k].len()));
        }
    }
    for (k, ws) in &want {
        let gs = got.get(k).cloned().unwrap_or_default();
        if gs.len() != ws.len() {
            errs.push(format!("{k}: {} events, want {}", gs.len(), ws.len()));
        }
        for (i, (g, w)) in gs.iter().zip(ws).enumerate() {
            let path = format!("{k} #{i}");
            for f in [
                "id",
                "message",
                "details",
                "level",
                "previousLevel",
                "recoverable",
                "duration",
            ] {
                if g[f] != w[f] {
                    errs.push(format!("{path}.{f}: {} want {}", g[f], w[f]));
                }
            }
            let (gt, wt) = (
                g["time"].as_str().and_then(parse_time),
                w["time"].as_str().and_then(parse_time),
            );
            if gt.is_none() || gt != wt {
                errs.push(format!("{path}.time: {} want {}", g["time"], w["time"]));
            }
            series_diff(&format!("{path}.data"), &g["data"], &w["data"], &mut errs);
        }
    }
    if let Some(n) = case.raw.get("expected_event_count").and_then(Value::as_u64)
        && run.events.len() as u64 != n
    {
        errs.push(format!(
            "{} events, want expected_event_count {n}",
            run.events.len()
        ));
    }
    if let Some(n) = case
        .raw
        .get("expected_emitted_count")
        .and_then(Value::as_u64)
        && run.emitted_points as u64 != n
    {
        errs.push(format!("{} points emitted, want {n}", run.emitted_points));
    }
    if let Some(body) = case.raw.get("expected_body").and_then(Value::as_str) {
        match run.events.first() {
            Some(o) if o.body == body.as_bytes() => {}
            Some(o) => errs.push(format!(
                "body differs:\n got: {}\nwant: {body}",
                String::from_utf8_lossy(&o.body)
            )),
            None => errs.push("no event for expected_body".into()),
        }
    }
    if let Some(out) = case.raw.get("expected_output") {
        for (i, w) in out["series"].as_array().into_iter().flatten().enumerate() {
            let tags: BTreeMap<String, String> = w["tags"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let Some(row) = run.emitted.iter().rev().find(|r| r.tags == tags) else {
                errs.push(format!(
                    "expected_output #{i}: nothing emitted with tags {tags:?}"
                ));
                continue;
            };
            let got = serde_json::json!({
                "series": [{"name": row.name, "tags": row.tags, "columns": row.columns, "values": row.values}]
            });
            series_diff(
                &format!("expected_output #{i}"),
                &got,
                &serde_json::json!({"series": [w]}),
                &mut errs,
            );
        }
    }
    errs
}

/// Stricter than README §8 (which compares bytes only for `expected_body`):
/// every expected event's derived `body` against the observed bytes, per
/// (task, id) in order. For runners that see the exact bytes.
pub fn compare_bodies(case: &Case, run: &RunResult) -> Vec<String> {
    let default_task = case.tasks[0].task.clone();
    let mut got: BTreeMap<(String, String), Vec<&[u8]>> = BTreeMap::new();
    for o in &run.events {
        let id = serde_json::from_slice::<Value>(&o.body)
            .ok()
            .and_then(|v| v["id"].as_str().map(String::from))
            .unwrap_or_default();
        got.entry((o.task.clone(), id)).or_default().push(&o.body);
    }
    let mut errs = Vec::new();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in case.raw["expected_events"].as_array().into_iter().flatten() {
        let Some(body) = e.get("body").and_then(Value::as_str) else {
            continue;
        };
        let task = e
            .get("task")
            .and_then(Value::as_str)
            .unwrap_or(&default_task)
            .to_string();
        let key = (task, e["id"].as_str().unwrap_or_default().to_string());
        let n = seen.entry(key.clone()).or_default();
        match got.get(&key).and_then(|v| v.get(*n)) {
            Some(b) if *b == body.as_bytes() => {}
            Some(b) => errs.push(format!(
                "{key:?} #{n} body:\n got: {}\nwant: {body}",
                String::from_utf8_lossy(b)
            )),
            None => errs.push(format!("{key:?} #{n}: no event")),
        }
        *n += 1;
    }
    errs
}

#[cfg(test)]
mod self_tests {
    use super::*;

    #[test]
    fn times_and_durations_parse() {
        assert_eq!(
            parse_time("1971-01-01T00:00:10Z"),
            Some(31_536_010_000_000_000)
        );
        assert_eq!(
            parse_time("2020-02-03T04:05:06.003Z"),
            Some(1_580_702_706_003_000_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_go_duration("2s"), Some(2_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
    }
}

#[cfg(test)]
mod float_parsing {
    /// Case values must parse to the exact float64 Kapacitor had: the
    /// default serde_json parser is 1 ulp off here (dev-dependency feature
    /// `float_roundtrip` fixes it), which shows in the details JSON.
    #[test]
    fn case_floats_parse_exactly() {
        let v: serde_json::Value = serde_json::from_str("[93.49999999999409]").unwrap();
        assert_eq!(
            v[0].as_f64().unwrap(),
            "93.49999999999409".parse::<f64>().unwrap()
        );
    }
}

/// Turns emitted responses into `httpOut`-like rows, across calls (a batch
/// may span several reads on a socket).
#[derive(Debug, Default)]
pub struct EmittedCollector {
    batch: Option<Vec<Point>>,
}

impl EmittedCollector {
    /// Takes emitted messages in order; keepalive responses are skipped,
    /// anything else that is not data is a failure.
    pub fn take(
        &mut self,
        msgs: impl IntoIterator<Item = kapacitor_pagertree::proto::response::Message>,
        result: &mut RunResult,
    ) {
        use kapacitor_pagertree::proto::response::Message;
        for m in msgs {
            match m {
                Message::Begin(_) => self.batch = Some(Vec::new()),
                Message::Point(p) => {
                    result.emitted_points += 1;
                    match &mut self.batch {
                        Some(points) => points.push(p),
                        None => result.emitted.push(point_row(&p)),
                    }
                }
                Message::End(end) => {
                    let points = self.batch.take().unwrap_or_default();
                    result.emitted.push(batch_row(&end, &points));
                }
                Message::Keepalive(_) => {}
                other => panic!("unexpected response {other:?}"),
            }
        }
    }
}

/// Runs one case and fails with every difference from Kapacitor's results:
/// README §8's comparison, plus every event's body byte for byte.
pub fn check(name: &str, run: &dyn Fn(&Case) -> RunResult) {
    let case = load_named(name);
    let errs = differences(&case, &run(&case));
    assert!(
        errs.is_empty(),
        "{name}: {} difference(s):\n  {}",
        errs.len(),
        errs.join("\n  ")
    );
}

fn differences(case: &Case, result: &RunResult) -> Vec<String> {
    let mut errs = compare(case, result);
    errs.extend(compare_bodies(case, result));
    errs
}

/// Runs every case file of the directory that has no named test: cases
/// added later are run, never skipped silently. A case is matched to its
/// named test by its file name (the `name` inside is only checked to agree),
/// so a new file that reuses an existing `name` still runs.
pub fn check_unlisted(listed: &[&str], run: &dyn Fn(&Case) -> RunResult) {
    let mut failures = Vec::new();
    for (file, case) in load_all() {
        if case.name != file {
            failures.push(format!(
                "{file}.json: its name is {:?}; README §1 says name = file name",
                case.name
            ));
        }
        if listed.contains(&file.as_str()) {
            continue;
        }
        let errs = differences(&case, &run(&case));
        if !errs.is_empty() {
            failures.push(format!("{file}:\n  {}", errs.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One `#[test]` per shipped case, plus one that runs any other case file,
/// all through `$run: fn(&Case) -> RunResult`.
macro_rules! conformance_tests {
    ($run:expr) => {
        conformance_tests!(@names $run;
            batch_all_level_field,
            batch_event_time_point_vs_tmax,
            batch_level_and_id_tags,
            batch_state_changes_only,
            batch_state_changes_only_expired,
            restart_restores_level_and_duration,
            stream_details_html_template,
            stream_flapping_history,
            stream_inhibit_multi_task,
            stream_level_resets_0,
            stream_message_time_template,
            stream_no_level_expressions_many_groups,
            stream_no_recoveries,
            stream_recovery_once,
            stream_state_changes_only,
            stream_state_changes_only_duration_field,
            stream_state_changes_only_expired,
            stream_window_count_exact_body,
            stream_window_count_levels_augmented
        );
    };
    (@names $run:expr; $($name:ident),*) => {
        $(#[test] fn $name() { conformance::check(stringify!($name), &$run); })*
        #[test]
        fn case_files_without_a_named_test() {
            conformance::check_unlisted(&[$(stringify!($name)),*], &$run);
        }
    };
}
