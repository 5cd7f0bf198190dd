//! `simulate`: replays recorded points through a `@pagertree()` node in
//! process and collects the events it would send — sending nothing, storing
//! nothing — so a threshold can be tuned on real data without Kapacitor.
//!
//! The node's options and its source's grouping come from the TICKscript
//! ([`crate::tools::tick`]); the points from line protocol
//! ([`crate::tools::lineproto`]). The points are the node's **input**: the
//! nodes between `from()`/`query()` and the UDF (`window`, `mean`, `where`,
//! an upstream `|alert()`) are not executed, and [`Plan::skipped`] names them
//! so the caller can say so. A `|groupBy()` on the way is honoured (it only
//! regroups). Batch data is cut into batches at every `every` of the query
//! (epoch-aligned), each holding the group's points of `[tmax - period, tmax)`.
//!
//! The node is driven through the same [`HandlerFactory`] the sockets use, so
//! what simulate prints is what the agent would do. `dryRun` is added to the
//! options (unless given) so no endpoint is needed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::alert::handler::{HandlerFactory, Output};
use crate::alert::{Event, FieldValue};
use crate::proto::{
    self, BeginBatch, EdgeType, EndBatch, InfoResponse, InitRequest, OptionValue, Point, ValueType,
};
use crate::tools::lineproto::{self, LinePoint};
use crate::tools::tick::{self, Node, NodeKind, Script, Value};

/// Why a simulation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("the script has no @{0}() node")]
    NoUdf(String),
    #[error("line {line}: {reason}")]
    Script { line: usize, reason: String },
    #[error("{0}")]
    Options(String),
    #[error("the node refused its options (Kapacitor would stop the task with this): {0}")]
    Init(String),
    #[error("batch: {0}")]
    Batch(String),
}

/// How the batch schedule is overridden from the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Nanoseconds; else the query's `.every()`.
    pub every: Option<i64>,
    /// Nanoseconds; else the query's `.period()`, else `every`.
    pub period: Option<i64>,
}

/// The grouping the source applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dimensions {
    /// Sorted tag names.
    pub tags: Vec<String>,
    /// `groupBy(*)`: every tag of each point.
    pub star: bool,
    /// `groupByMeasurement()`.
    pub by_name: bool,
}

impl Dimensions {
    /// Kapacitor's group id: `k1=v1,k2=v2` over the sorted dimensions
    /// (missing tags count as ""), prefixed by `name\n` when grouped by
    /// measurement; `""` with no dimensions.
    pub fn group_id(&self, name: &str, tags: &BTreeMap<String, String>) -> (String, Vec<String>) {
        let dims: Vec<String> = if self.star {
            tags.keys().cloned().collect()
        } else {
            self.tags.clone()
        };
        let mut id = String::new();
        if self.by_name {
            id.push_str(name);
            if !dims.is_empty() {
                id.push('\n');
            }
        }
        for (i, d) in dims.iter().enumerate() {
            if i > 0 {
                id.push(',');
            }
            id.push_str(d);
            id.push('=');
            id.push_str(tags.get(d).map(String::as_str).unwrap_or(""));
        }
        (id, dims)
    }
}

/// What the script says about the node and its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub edge: EdgeType,
    /// The UDF's name as the script calls it (`pagertree`).
    pub function: String,
    /// Kapacitor's id of the node (`pagertree4`).
    pub node_id: String,
    /// The property calls of the UDF node, in script order, with their lines.
    pub options: Vec<(String, Vec<Value>, usize)>,
    pub dimensions: Dimensions,
    /// `from().measurement()`: other measurements are not fed.
    pub measurement: Option<String>,
    pub database: String,
    pub retention_policy: String,
    /// The query's `every` and `period` (batch), nanoseconds.
    pub every: Option<i64>,
    pub period: Option<i64>,
    /// Ids of the nodes between the source and the UDF that simulate does not run.
    pub skipped: Vec<String>,
}

fn strings(args: &[Value], line: usize, what: &str) -> Result<Vec<String>, SimulateError> {
    let mut out = Vec::new();
    for a in args {
        match a {
            Value::String(s) => out.push(s.clone()),
            Value::List(items) => out.extend(strings(items, line, what)?),
            Value::Call(name, _) if name == "time" => {}
            other => {
                return Err(SimulateError::Script {
                    line,
                    reason: format!("{what}: expected tag names, got {other}"),
                });
            }
        }
    }
    Ok(out)
}

fn duration_arg(node: &Node, prop: &str) -> Result<Option<i64>, SimulateError> {
    match node.last(prop) {
        None => Ok(None),
        Some([Value::Duration(d)]) if *d > 0 => Ok(Some(*d)),
        Some(other) => Err(SimulateError::Script {
            line: node.line,
            reason: format!(
                "{}().{prop}: expected one positive duration, got {}",
                node.name,
                other
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Reads the plan of the first UDF node called `function` (or, if `function`
/// is `None`, of the first `@pagertree()` or `@pagertreeBatch()`).
pub fn plan(script: &Script, function: Option<&str>) -> Result<Plan, SimulateError> {
    let udf = script
        .nodes
        .iter()
        .find(|n| {
            n.kind == NodeKind::Udf
                && match function {
                    Some(f) => n.name == f,
                    None => n.name == "pagertree" || n.name == "pagertreeBatch",
                }
        })
        .ok_or_else(|| SimulateError::NoUdf(function.unwrap_or("pagertree").to_string()))?;
    let lineage = script.lineage(udf.index);
    let source = lineage
        .first()
        .filter(|n| n.kind == NodeKind::Source)
        .ok_or_else(|| SimulateError::Script {
            line: udf.line,
            reason: format!("@{}() is not under stream or batch", udf.name),
        })?;
    let edge = if source.name == "batch" {
        EdgeType::Batch
    } else {
        EdgeType::Stream
    };
    let mut plan = Plan {
        edge,
        function: udf.name.clone(),
        node_id: udf.id(),
        options: udf
            .properties
            .iter()
            .map(|p| (p.name.clone(), p.args.clone(), p.line))
            .collect(),
        dimensions: Dimensions::default(),
        measurement: None,
        database: String::new(),
        retention_policy: String::new(),
        every: None,
        period: None,
        skipped: Vec::new(),
    };
    if let Some((db, rp)) = script.dbrp.first() {
        plan.database = db.clone();
        plan.retention_policy = rp.clone();
    }
    for node in &lineage[1..lineage.len() - 1] {
        match node.name.as_str() {
            "from" | "query" | "groupBy" => {
                let group_args = if node.name == "groupBy" {
                    Some(node.args.as_slice())
                } else {
                    node.last("groupBy")
                };
                if let Some(args) = group_args {
                    plan.dimensions.star = args.contains(&Value::Star);
                    let mut tags = strings(
                        args.iter()
                            .filter(|a| **a != Value::Star)
                            .cloned()
                            .collect::<Vec<_>>()
                            .as_slice(),
                        node.line,
                        "groupBy",
                    )?;
                    tags.sort();
                    tags.dedup();
                    plan.dimensions.tags = tags;
                }
                if node.last("groupByMeasurement").is_some()
                    || node.properties.iter().any(|p| p.name == "byMeasurement")
                {
                    plan.dimensions.by_name = true;
                }
                if node.last("where").is_some() {
                    // A filter of the source: not applied either.
                    plan.skipped.push(format!("{}.where()", node.id()));
                }
                if node.name == "from" {
                    if let Some([Value::String(m)]) = node.last("measurement") {
                        plan.measurement = Some(m.clone());
                    }
                    if let Some([Value::String(db)]) = node.last("database") {
                        plan.database = db.clone();
                    }
                    if let Some([Value::String(rp)]) = node.last("retentionPolicy") {
                        plan.retention_policy = rp.clone();
                    }
                }
                if node.name == "query" {
                    plan.every = duration_arg(node, "every")?;
                    plan.period = duration_arg(node, "period")?;
                }
            }
            _ => plan.skipped.push(node.id()),
        }
    }
    Ok(plan)
}

fn value_type_name(t: i32) -> &'static str {
    ValueType::try_from(t)
        .map(|v| v.as_str_name())
        .unwrap_or("UNKNOWN")
}

/// Builds the `InitRequest` Kapacitor would send, checking each option
/// against what the agent declares as `kapacitor define` does (same
/// messages), and adding `dryRun` when the agent offers it.
pub fn init_request(
    plan: &Plan,
    info: &InfoResponse,
    task: &str,
) -> Result<InitRequest, SimulateError> {
    let mut options = Vec::new();
    let mut has_dry_run = false;
    for (name, args, line) in &plan.options {
        let Some(decl) = info.options.get(name) else {
            let mut known: Vec<&str> = info.options.keys().map(String::as_str).collect();
            known.sort();
            return Err(SimulateError::Script {
                line: *line,
                reason: format!(
                    "@{}() has no option {name:?} (options: {})",
                    plan.function,
                    known.join(", ")
                ),
            });
        };
        if decl.value_types.len() != args.len() {
            return Err(SimulateError::Script {
                line: *line,
                reason: format!(
                    "unexpected number of args to {name}, got {} expected {}",
                    args.len(),
                    decl.value_types.len()
                ),
            });
        }
        let mut values = Vec::new();
        for (arg, want) in args.iter().zip(&decl.value_types) {
            use proto::option_value::Value as V;
            let v = match (arg, ValueType::try_from(*want)) {
                (Value::String(s), Ok(ValueType::String)) => V::StringValue(s.clone()),
                (Value::Int(i), Ok(ValueType::Int)) => V::IntValue(*i),
                (Value::Float(f), Ok(ValueType::Double)) => V::DoubleValue(*f),
                (Value::Bool(b), Ok(ValueType::Bool)) => V::BoolValue(*b),
                (Value::Duration(d), Ok(ValueType::Duration)) => V::DurationValue(*d),
                _ => {
                    let hint = if matches!(arg, Value::Lambda(_)) {
                        " (for @pagertree() a lambda is quoted: .crit('\"value\" > 90'))"
                    } else {
                        ""
                    };
                    return Err(SimulateError::Script {
                        line: *line,
                        reason: format!(
                            "unexpected arg to {name}, got {} expected {}{hint}",
                            arg.type_name(),
                            value_type_name(*want)
                        ),
                    });
                }
            };
            values.push(OptionValue {
                r#type: *want,
                value: Some(v),
            });
        }
        has_dry_run |= name == "dryRun";
        options.push(proto::Option {
            name: name.clone(),
            values,
        });
    }
    if !has_dry_run
        && info
            .options
            .get("dryRun")
            .is_some_and(|d| d.value_types.is_empty())
    {
        options.push(proto::Option {
            name: "dryRun".into(),
            values: Vec::new(),
        });
    }
    Ok(InitRequest {
        options,
        task_id: task.to_string(),
        node_id: plan.node_id.clone(),
    })
}

/// What a simulation produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub events: Vec<Event>,
    /// Points read from the data (after the measurement filter).
    pub points: usize,
    /// Points of other measurements, not fed.
    pub filtered: usize,
    pub batches: usize,
    /// Points (stream) or batches (batch) the node emitted downstream.
    pub emitted: usize,
}

fn to_point(p: &LinePoint, plan: &Plan, group: &str, dims: &[String]) -> Point {
    let mut point = Point {
        time: p.time,
        name: p.measurement.clone(),
        database: plan.database.clone(),
        retention_policy: plan.retention_policy.clone(),
        group: group.to_string(),
        dimensions: dims.to_vec(),
        tags: p.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        by_name: plan.dimensions.by_name,
        ..Point::default()
    };
    for (k, v) in &p.fields {
        match v {
            FieldValue::Float(f) => {
                point.fields_double.insert(k.clone(), *f);
            }
            FieldValue::Int(i) => {
                point.fields_int.insert(k.clone(), *i);
            }
            FieldValue::String(s) => {
                point.fields_string.insert(k.clone(), s.clone());
            }
            FieldValue::Bool(b) => {
                point.fields_bool.insert(k.clone(), *b);
            }
        }
    }
    point
}

/// One group's measurement, group tags and points (sorted by time).
type GroupPoints<'a> = (String, HashMap<String, String>, Vec<&'a LinePoint>);

/// The most batch cuts one run will make (a guard against `every(1ns)` over a year).
const MAX_CUTS: i64 = 5_000_000;

/// Runs the points through a node built by `factory`.
pub fn run(
    plan: &Plan,
    factory: &dyn HandlerFactory,
    task: &str,
    points: &[LinePoint],
    schedule: Schedule,
) -> Result<Outcome, SimulateError> {
    let info = factory.info(plan.edge);
    let init = init_request(plan, &info, task)?;
    let mut handler = factory
        .init(plan.edge, &init)
        .map_err(SimulateError::Init)?;
    let mut outcome = Outcome::default();
    let mut out = Output::default();
    let drain = |out: &mut Output, outcome: &mut Outcome| {
        outcome.emitted += out
            .responses
            .iter()
            .filter(|r| {
                matches!(
                    r.message,
                    Some(proto::response::Message::Point(_))
                        | Some(proto::response::Message::End(_))
                )
            })
            .count();
        outcome.events.append(&mut out.events);
        out.responses.clear();
    };
    let wanted: Vec<&LinePoint> = points
        .iter()
        .filter(|p| {
            plan.measurement
                .as_ref()
                .is_none_or(|m| *m == p.measurement)
        })
        .collect();
    outcome.filtered = points.len() - wanted.len();
    outcome.points = wanted.len();
    match plan.edge {
        EdgeType::Stream => {
            for p in wanted {
                let (group, dims) = plan.dimensions.group_id(&p.measurement, &p.tags);
                handler.point(to_point(p, plan, &group, &dims), &mut out);
                drain(&mut out, &mut outcome);
            }
        }
        EdgeType::Batch => {
            let every = schedule.every.or(plan.every).ok_or_else(|| {
                SimulateError::Batch("the query has no .every(); give --every".into())
            })?;
            let period = schedule.period.or(plan.period).unwrap_or(every);
            if every <= 0 || period <= 0 {
                return Err(SimulateError::Batch(
                    "every and period must be positive".into(),
                ));
            }
            // Group → (name, group tags, points sorted by time).
            let mut groups: BTreeMap<String, GroupPoints> = BTreeMap::new();
            for p in &wanted {
                let (group, dims) = plan.dimensions.group_id(&p.measurement, &p.tags);
                let entry = groups.entry(group).or_insert_with(|| {
                    let tags = dims
                        .iter()
                        .map(|d| (d.clone(), p.tags.get(d).cloned().unwrap_or_default()))
                        .collect();
                    (p.measurement.clone(), tags, Vec::new())
                });
                entry.2.push(p);
            }
            for g in groups.values_mut() {
                g.2.sort_by_key(|p| p.time);
            }
            let (Some(min), Some(max)) = (
                wanted.iter().map(|p| p.time).min(),
                wanted.iter().map(|p| p.time).max(),
            ) else {
                handler.stop();
                return Ok(outcome);
            };
            let first = min.div_euclid(every) * every + every;
            let last = max.div_euclid(every) * every + every;
            if (last - first) / every > MAX_CUTS {
                return Err(SimulateError::Batch(format!(
                    "every {every}ns over this data makes more than {MAX_CUTS} batches; use a larger --every"
                )));
            }
            let mut cut = first;
            while cut <= last {
                for (group, (name, tags, pts)) in &groups {
                    let lo = pts.partition_point(|p| p.time < cut - period);
                    let hi = pts.partition_point(|p| p.time < cut);
                    if lo >= hi {
                        continue;
                    }
                    outcome.batches += 1;
                    let dims: Vec<String> = {
                        let mut d: Vec<String> = tags.keys().cloned().collect();
                        d.sort();
                        d
                    };
                    handler.begin_batch(
                        BeginBatch {
                            name: name.clone(),
                            group: group.clone(),
                            tags: tags.clone(),
                            size: (hi - lo) as i64,
                            by_name: plan.dimensions.by_name,
                        },
                        &mut out,
                    );
                    for p in &pts[lo..hi] {
                        handler.point(to_point(p, plan, group, &dims), &mut out);
                    }
                    handler.end_batch(
                        EndBatch {
                            name: name.clone(),
                            group: group.clone(),
                            tmax: cut,
                            tags: tags.clone(),
                            by_name: plan.dimensions.by_name,
                        },
                        &mut out,
                    );
                    drain(&mut out, &mut outcome);
                }
                cut += every;
            }
        }
    }
    handler.stop();
    Ok(outcome)
}

/// One event as `--format json` prints it, on one line: the exact JSON
/// Kapacitor's alert node posts for it (`id`, `message`, `details`, `time`,
/// `duration`, `level`, `data`, `previousLevel`, `recoverable`), preceded by
/// the `task` and `node` it came from.
pub fn event_json(e: &Event) -> String {
    let body = crate::alert::json::alert_data_json(e);
    let body = String::from_utf8_lossy(&body);
    let body = body.trim_end();
    let mut out = String::with_capacity(body.len() + e.task.len() + e.node.len() + 24);
    out.push_str("{\"task\":");
    crate::gofmt::write_json_string(&mut out, &e.task);
    out.push_str(",\"node\":");
    crate::gofmt::write_json_string(&mut out, &e.node);
    out.push(',');
    out.push_str(body.strip_prefix('{').unwrap_or(body));
    out
}

/// The events as an aligned table (time, level, previous level, id, message).
pub fn events_table(events: &[Event]) -> String {
    let rows: Vec<[String; 5]> = events
        .iter()
        .map(|e| {
            [
                crate::gofmt::rfc3339_nano(e.time),
                e.level.to_string(),
                e.previous_level.to_string(),
                e.id.clone(),
                e.message.replace('\n', "⏎"),
            ]
        })
        .collect();
    let header = ["TIME", "LEVEL", "PREVIOUS", "ID", "MESSAGE"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i == 4 {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The events as `simulate` prints them: the table, or one JSON object per
/// event and line.
pub fn events_output(events: &[Event], json: bool) -> String {
    if !json {
        return events_table(events);
    }
    let mut out = String::new();
    for e in events {
        out.push_str(&event_json(e));
        out.push('\n');
    }
    out
}

/// `simulate`'s inputs as the command line gives them: files, and the
/// schedule and names as text.
#[derive(Debug, Clone, Default)]
pub struct FileRun {
    pub tick: PathBuf,
    pub data: PathBuf,
    /// `ns`, `us`, `ms` or `s`.
    pub precision: String,
    pub every: Option<String>,
    pub period: Option<String>,
    pub function: Option<String>,
    /// Default: the script's file name without `.tick`.
    pub task: Option<String>,
}

/// What [`run_files`] did.
#[derive(Debug)]
pub struct FileOutcome {
    pub plan: Plan,
    pub outcome: Outcome,
}

impl FileOutcome {
    /// The closing line: points in, events out, nothing sent.
    pub fn summary(&self) -> String {
        let (plan, outcome) = (&self.plan, &self.outcome);
        let batches = if plan.edge == EdgeType::Batch {
            format!(" in {} batches", outcome.batches)
        } else {
            String::new()
        };
        let filtered = match (&plan.measurement, outcome.filtered) {
            (Some(m), n) if n > 0 => {
                format!(" ({n} points of other measurements than {m:?} ignored)")
            }
            _ => String::new(),
        };
        format!(
            "simulate: {} points{batches}{filtered} → {} events; nothing was sent",
            outcome.points,
            outcome.events.len()
        )
    }
}

fn duration_flag(flag: &str, v: &Option<String>) -> Result<Option<i64>, String> {
    match v {
        None => Ok(None),
        Some(s) => {
            let d = crate::ops::config::parse_duration(s).map_err(|e| format!("{flag}: {e}"))?;
            i64::try_from(d.as_nanos())
                .map(Some)
                .map_err(|_| format!("{flag}: {s:?} is too long"))
        }
    }
}

/// Reads the script and the data, plans and runs the simulation. `note`
/// receives what the caller should tell the user before the events (the
/// nodes not executed). The error is the message for the user.
pub fn run_files(
    args: &FileRun,
    factory: &dyn HandlerFactory,
    mut note: impl FnMut(String),
) -> Result<FileOutcome, String> {
    let Some(precision) = lineproto::Precision::parse(&args.precision) else {
        return Err(format!(
            "--precision {:?}: use ns, us, ms or s",
            args.precision
        ));
    };
    let schedule = Schedule {
        every: duration_flag("--every", &args.every)?,
        period: duration_flag("--period", &args.period)?,
    };
    let script_text = std::fs::read_to_string(&args.tick)
        .map_err(|e| format!("cannot read {}: {e}", args.tick.display()))?;
    let script = tick::parse(&script_text).map_err(|e| format!("{}: {e}", args.tick.display()))?;
    let data_text = std::fs::read_to_string(&args.data)
        .map_err(|e| format!("cannot read {}: {e}", args.data.display()))?;
    let points = lineproto::parse(&data_text, precision)
        .map_err(|e| format!("{}: {e}", args.data.display()))?;
    let plan = plan(&script, args.function.as_deref())
        .map_err(|e| format!("{}: {e}", args.tick.display()))?;
    let task = args.task.clone().unwrap_or_else(|| {
        args.tick
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "simulate".into())
    });
    if !plan.skipped.is_empty() {
        note(format!(
            "simulate: not executing {} (between the source and @{}()): the data is fed to @{}() as its input",
            plan.skipped.join(", "),
            plan.function,
            plan.function
        ));
    }
    let outcome = run(&plan, factory, &task, &points, schedule)
        .map_err(|e| format!("{}: {e}", args.tick.display()))?;
    Ok(FileOutcome { plan, outcome })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::alert::handler::Handler;
    use crate::alert::{Level, Route, Series};
    use crate::proto::OptionInfo;
    use crate::tools::lineproto::{Precision, parse as parse_lp};
    use crate::tools::tick::parse as parse_tick;

    /// A recorder node: one event per point (stream) or batch, whose level is
    /// the point's `level` tag, so the tests see exactly what was fed.
    struct Recorder {
        init: InitRequest,
        batch: Vec<Point>,
        open: Option<BeginBatch>,
    }

    impl Recorder {
        fn event(&self, id: String, level: Level, time: i64) -> Event {
            Event {
                task: self.init.task_id.clone(),
                node: self.init.node_id.clone(),
                id,
                message: String::new(),
                details: String::new(),
                time,
                duration: 0,
                level,
                previous_level: Level::OK,
                recoverable: true,
                data: Series::default(),
                route: Arc::new(Route::default()),
            }
        }
    }

    impl Handler for Recorder {
        fn point(&mut self, p: Point, out: &mut Output) {
            if self.open.is_some() {
                self.batch.push(p);
                return;
            }
            let level = p
                .tags
                .get("level")
                .and_then(|l| Level::parse(l))
                .unwrap_or(Level::OK);
            out.events.push(self.event(
                format!("{}|{}|{}", p.name, p.group, p.dimensions.join("+")),
                level,
                p.time,
            ));
        }
        fn begin_batch(&mut self, b: BeginBatch, _: &mut Output) {
            self.open = Some(b);
        }
        fn end_batch(&mut self, e: EndBatch, out: &mut Output) {
            let b = self.open.take().unwrap();
            assert_eq!(b.size as usize, self.batch.len());
            let times: Vec<String> = self
                .batch
                .iter()
                .map(|p| (p.time / 1_000_000_000).to_string())
                .collect();
            let mut tags: Vec<_> = e.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            tags.sort();
            out.events.push(self.event(
                format!(
                    "{}|{}|{}|{}",
                    e.group,
                    times.join(","),
                    tags.join(","),
                    b.name
                ),
                Level::INFO,
                e.tmax,
            ));
            self.batch.clear();
        }
    }

    struct Factory;

    impl HandlerFactory for Factory {
        fn info(&self, edge: EdgeType) -> InfoResponse {
            let mut options = HashMap::new();
            let o = |t: &[ValueType]| OptionInfo {
                value_types: t.iter().map(|t| *t as i32).collect(),
            };
            options.insert("crit".to_string(), o(&[ValueType::String]));
            options.insert(
                "flapping".to_string(),
                o(&[ValueType::Double, ValueType::Double]),
            );
            options.insert("history".to_string(), o(&[ValueType::Int]));
            options.insert("renotifyEvery".to_string(), o(&[ValueType::Duration]));
            options.insert("dryRun".to_string(), o(&[]));
            InfoResponse {
                wants: edge as i32,
                provides: edge as i32,
                options,
            }
        }
        fn init(&self, _: EdgeType, req: &InitRequest) -> Result<Box<dyn Handler>, String> {
            if req.options.iter().any(|o| {
                o.name == "crit"
                    && o.values.iter().any(|v| {
                        v.value == Some(proto::option_value::Value::StringValue("bad".into()))
                    })
            }) {
                return Err("crit: cannot parse 'bad'".into());
            }
            Ok(Box::new(Recorder {
                init: req.clone(),
                batch: Vec::new(),
                open: None,
            }))
        }
    }

    #[test]
    fn stream_points_are_grouped_and_filtered() {
        let script = parse_tick(
            "dbrp \"telegraf\".\"autogen\"\nstream|from().measurement('cpu').groupBy('host')|window().period(1m)|mean('v')\n@pagertree().crit('\"v\" > 1').history(3).flapping(0.25, 0.5).renotifyEvery(5m)",
        )
        .unwrap();
        let plan = plan(&script, None).unwrap();
        assert_eq!(plan.skipped, ["window2", "mean3"]);
        assert_eq!(plan.node_id, "pagertree4");
        let init = init_request(&plan, &Factory.info(EdgeType::Stream), "t").unwrap();
        let names: Vec<&str> = init.options.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            ["crit", "history", "flapping", "renotifyEvery", "dryRun"]
        );
        assert_eq!(
            init.options[3].values[0].value,
            Some(proto::option_value::Value::DurationValue(300_000_000_000))
        );
        let data = parse_lp(
            "cpu,host=a,level=crit v=1 1\nmem,host=a v=1 2\ncpu,host=b v=1 3\ncpu,dc=x v=2 4",
            Precision::Seconds,
        )
        .unwrap();
        let out = run(&plan, &Factory, "t", &data, Schedule::default()).unwrap();
        assert_eq!((out.points, out.filtered), (3, 1));
        let ids: Vec<&str> = out.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            ["cpu|host=a|host", "cpu|host=b|host", "cpu|host=|host"]
        );
        assert_eq!(out.events[0].level, Level::CRITICAL);
        assert_eq!(out.events[0].node, "pagertree4");
    }

    #[test]
    fn batches_are_cut_at_every_with_period() {
        let script = parse_tick(
            "batch|query('SELECT v FROM cpu').period(20s).every(10s).groupBy(time(5s), 'host')\n@pagertreeBatch()",
        )
        .unwrap();
        let plan = plan(&script, None).unwrap();
        assert_eq!(plan.edge, EdgeType::Batch);
        assert!(plan.skipped.is_empty());
        let data = parse_lp(
            "cpu,host=a v=1 1\ncpu,host=b v=1 5\ncpu,host=a v=1 12\ncpu,host=a v=1 25",
            Precision::Seconds,
        )
        .unwrap();
        let out = run(&plan, &Factory, "t", &data, Schedule::default()).unwrap();
        let ids: Vec<String> = out
            .events
            .iter()
            .map(|e| format!("{}@{}", e.id, e.time / 1_000_000_000))
            .collect();
        assert_eq!(
            ids,
            [
                "host=a|1|host=a|cpu@10",
                "host=b|5|host=b|cpu@10",
                "host=a|1,12|host=a|cpu@20",
                "host=b|5|host=b|cpu@20",
                "host=a|12,25|host=a|cpu@30",
            ]
        );
        assert_eq!(out.batches, 5);
        let out = run(
            &plan,
            &Factory,
            "t",
            &data,
            Schedule {
                every: Some(30_000_000_000),
                period: Some(30_000_000_000),
            },
        )
        .unwrap();
        let ids: Vec<String> = out.events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, ["host=a|1,12,25|host=a|cpu", "host=b|5|host=b|cpu"]);
    }

    #[test]
    fn kapacitor_define_errors_are_reproduced() {
        let info = Factory.info(EdgeType::Stream);
        let check = |body: &str| {
            let s = parse_tick(&format!("stream|from()\n@pagertree(){body}")).unwrap();
            init_request(&plan(&s, None).unwrap(), &info, "t")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            check(".flapping(1, 0.5)"),
            "line 2: unexpected arg to flapping, got INT expected DOUBLE"
        );
        assert_eq!(
            check(".crit('a', 'b')"),
            "line 2: unexpected number of args to crit, got 2 expected 1"
        );
        assert!(check(".crit(lambda: \"v\" > 1)").contains("a lambda is quoted"));
        assert!(check(".nope()").contains("has no option \"nope\""));
        let s = parse_tick("stream|from()@pagertree().crit('bad')").unwrap();
        let e = run(
            &plan(&s, None).unwrap(),
            &Factory,
            "t",
            &[],
            Schedule::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot parse 'bad'"));
        let s = parse_tick("stream|from()|alert()").unwrap();
        assert!(matches!(plan(&s, None), Err(SimulateError::NoUdf(_))));
    }

    #[test]
    fn group_ids_follow_kapacitor() {
        let tags: BTreeMap<String, String> = [("host", "a"), ("dc", "x")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let star = Dimensions {
            star: true,
            ..Default::default()
        };
        assert_eq!(
            star.group_id("cpu", &tags),
            (
                "dc=x,host=a".to_string(),
                vec!["dc".to_string(), "host".to_string()]
            )
        );
        let by_name = Dimensions {
            tags: vec!["host".into()],
            by_name: true,
            ..Default::default()
        };
        assert_eq!(by_name.group_id("cpu", &tags).0, "cpu\nhost=a");
        assert_eq!(Dimensions::default().group_id("cpu", &tags).0, "");
    }

    #[test]
    fn json_is_kapacitors_body_with_task_and_node() {
        let r = Recorder {
            init: InitRequest {
                task_id: "t\"1".into(),
                node_id: "n".into(),
                options: vec![],
            },
            batch: vec![],
            open: None,
        };
        let e = r.event("a<b".into(), Level::WARNING, 1_500_000_000);
        let line = event_json(&e);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["task"], "t\"1");
        assert_eq!(v["node"], "n");
        assert_eq!(v["id"], "a<b");
        assert_eq!(v["level"], "WARNING");
        assert_eq!(v["previousLevel"], "OK");
        assert_eq!(v["time"], "1970-01-01T00:00:01.5Z");
        assert!(
            line.starts_with("{\"task\":\"t\\\"1\",\"node\":\"n\",\"id\":\"a\\u003cb\""),
            "{line}"
        );
    }

    #[test]
    fn table_is_aligned() {
        let r = Recorder {
            init: InitRequest {
                task_id: "t".into(),
                node_id: "n".into(),
                options: vec![],
            },
            batch: vec![],
            open: None,
        };
        let mut e = r.event("cpu:host=a".into(), Level::CRITICAL, 1_000_000_000);
        e.message = "cpu is CRITICAL".into();
        let t = events_table(&[e]);
        assert_eq!(
            t,
            "TIME                  LEVEL     PREVIOUS  ID          MESSAGE\n\
             1970-01-01T00:00:01Z  CRITICAL  OK        cpu:host=a  cpu is CRITICAL\n"
        );
    }
}
