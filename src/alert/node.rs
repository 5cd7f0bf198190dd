//! The `@pagertree()` node: Kapacitor's alert node behind the UDF seam.
//!
//! [`AlertFactory`] answers `Info` (every option of docs/tickscript-interface.md
//! with its types) and `Init` (validation in [`options`], then a compiled
//! [`AlertNode`]). An [`AlertNode`] turns points and batches into
//! [`Event`]s and emitted data exactly as `alert.go` does:
//!
//! - Mode 1: level expressions decide each point's level; state per group.
//! - Mode 2 (`levelFrom`): the level is read from the point; state per alert id.
//!
//! The per-group state machine lives in [`crate::alert::state`]; the
//! per-id memory of the last event handed on (what decides `previousLevel`
//! and what a restarted node starts from) lives here, seeded from the
//! [`AlertStateStore`] at Init.
//!
//! Hot path: a point that produces no event costs one map lookup by the
//! point's group string (no allocation), the level expressions, and the
//! state update. Ids, messages and series are built only when an event fires.
//! (Kapacitor renders the id of every point; only events and a new group's
//! restore ever use it, so rendering it then gives the same ids.)
//!
//! Mode 2 choices (docs/tickscript-interface.md leaves them open):
//! - `levelFrom` reads a tag, else a *string* field; any other value is a bad level.
//! - A batch reads each point's level (then the batch's tag); points with a
//!   bad level are skipped (counted, logged); `idFrom`/`messageFrom`/
//!   `detailsFrom` are read from the highest point, then the batch's tags.
//! - An id's inhibitor takes the tag values of the point whose event turns it on.
//!
//! Where this node is stricter than Kapacitor, on purpose: a reset without
//! its level (`critReset` without `crit`), a `…From` without `levelFrom`, an
//! `inhibit` without a category and a `history` above 10,000 are Init errors
//! (Kapacitor ignores or accepts them silently), and so is a template that
//! names a field its data does not have (`{{ .Nope }}`: Kapacitor fails
//! every event at run time). A template that still fails to render on some
//! point drops that one event with a rate-limited error in the log
//! (Kapacitor stops the task).

pub mod data;
pub mod fxhash;
pub mod inhibit;
pub mod options;

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::alert::expr::{Expr, Scope, ValueRef};
use crate::alert::handler::{Handler, HandlerFactory, Output};
use crate::alert::state::{AlertState, Decision, StateRules};
use crate::alert::store::{AlertStateStore, StoredAlert};
use crate::alert::template::{
    DEFAULT_DETAILS, DEFAULT_ID, DEFAULT_MESSAGE, Engine, Fields, Scope as TemplateScope, Tags,
    Template, TemplateData, TemplateError,
};
use crate::alert::{Destinations, Event, FieldValue, Level, ServerInfo};
use crate::proto::{
    BeginBatch, EdgeType, EndBatch, InfoResponse, InitRequest, Point, Response, response,
};
use prometheus_client::metrics::counter::Counter;

use data::FieldRef;
use fxhash::FxBuildHasher;
pub use inhibit::{Inhibitor, Inhibitors};
pub use options::{InitError, NodeOptions};

/// Where the `.ServerInfo` of templates comes from. A plain [`ServerInfo`]
/// is one; the agent may pass a provider that resolves it from Kapacitor's
/// API at the first Init (docs/config.md, `[kapacitor]`).
pub trait ServerInfoProvider: Send + Sync + fmt::Debug {
    fn server_info(&self) -> ServerInfo;
}

impl ServerInfoProvider for ServerInfo {
    fn server_info(&self) -> ServerInfo {
        self.clone()
    }
}

/// The counters a node counts into: handles the daemon takes from its
/// metrics registry (the engine knows no registry). The default counts into
/// counters nobody reads (tests, benches, offline tools).
#[derive(Debug, Clone, Default)]
pub struct NodeCounters {
    /// `events_total` by level, in [`Level::ALL`] order.
    pub events: [Counter; 4],
    /// `events_inhibited_total`.
    pub events_inhibited: Counter,
    /// `bad_levels_total`: a level field that is missing or no level name.
    pub bad_levels: Counter,
    /// `expression_errors_total`.
    pub expression_errors: Counter,
}

/// What every node of the agent shares.
#[derive(Debug, Clone)]
pub struct NodeEnv {
    /// Where events may go: checked at Init against the node's options.
    pub destinations: Arc<Destinations>,
    pub store: Arc<dyn AlertStateStore>,
    pub server_info: Arc<dyn ServerInfoProvider>,
    pub inhibitors: Arc<Inhibitors>,
    pub counters: NodeCounters,
}

impl NodeEnv {
    /// An environment with a fixed `ServerInfo`, a fresh set of inhibitors
    /// and counters nobody reads (the daemon sets [`NodeEnv::counters`]).
    pub fn new(
        destinations: Destinations,
        store: Arc<dyn AlertStateStore>,
        server_info: ServerInfo,
    ) -> Self {
        Self {
            destinations: Arc::new(destinations),
            store,
            server_info: Arc::new(server_info),
            inhibitors: Arc::new(Inhibitors::new()),
            counters: NodeCounters::default(),
        }
    }
}

/// Builds an [`AlertNode`] per connection.
#[derive(Debug, Clone)]
pub struct AlertFactory {
    env: NodeEnv,
}

impl AlertFactory {
    pub fn new(env: NodeEnv) -> Self {
        Self { env }
    }

    pub fn env(&self) -> &NodeEnv {
        &self.env
    }

    /// Validates the options and builds the node (the typed form of
    /// [`HandlerFactory::init`]).
    pub fn build(&self, edge: EdgeType, req: &InitRequest) -> Result<AlertNode, InitError> {
        AlertNode::new(&self.env, edge, req)
    }
}

impl HandlerFactory for AlertFactory {
    fn info(&self, edge: EdgeType) -> InfoResponse {
        options::info(edge)
    }

    fn init(&self, edge: EdgeType, req: &InitRequest) -> Result<Box<dyn Handler>, String> {
        match self.build(edge, req) {
            Ok(node) => Ok(Box::new(node)),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A point as the level expressions see it (Kapacitor's `fillScope`): a
/// field, else a tag; a name that is both is ambiguous (evaluation fails).
///
/// One scope serves all the expressions evaluated for a point, and it
/// remembers its last lookup: three rules on `"value"` hash the point's maps
/// once instead of three times.
struct PointScope<'a> {
    point: &'a Point,
    last: Cell<Option<Memo<'a>>>,
}

/// The last name looked up (short names only, kept inline) and its value.
#[derive(Clone, Copy)]
struct Memo<'a> {
    name: [u8; MEMO_NAME],
    len: u8,
    value: Option<ValueRef<'a>>,
}

const MEMO_NAME: usize = 32;

impl<'a> PointScope<'a> {
    fn new(point: &'a Point) -> Self {
        Self {
            point,
            last: Cell::new(None),
        }
    }

    fn resolve(&self, name: &str) -> Option<ValueRef<'a>> {
        let p = self.point;
        let field = data::field(p, name);
        let tag = p.tags.get(name);
        match (field, tag) {
            (Some(_), Some(_)) => Some(ValueRef::Ambiguous),
            (Some(FieldRef::Float(f)), None) => Some(ValueRef::Float(f)),
            (Some(FieldRef::Int(i)), None) => Some(ValueRef::Int(i)),
            (Some(FieldRef::Str(s)), None) => Some(ValueRef::Str(s)),
            (Some(FieldRef::Bool(b)), None) => Some(ValueRef::Bool(b)),
            (None, Some(t)) => Some(ValueRef::Str(t)),
            (None, None) => None,
        }
    }
}

impl Scope for PointScope<'_> {
    fn lookup(&self, name: &str) -> Option<ValueRef<'_>> {
        let bytes = name.as_bytes();
        if let Some(m) = self.last.get()
            && usize::from(m.len) == bytes.len()
            && &m.name[..bytes.len()] == bytes
        {
            return m.value;
        }
        let value = self.resolve(name);
        if bytes.len() <= MEMO_NAME {
            let mut memo = Memo {
                name: [0; MEMO_NAME],
                len: bytes.len() as u8,
                value,
            };
            memo.name[..bytes.len()].copy_from_slice(bytes);
            self.last.set(Some(memo));
        }
        value
    }

    fn time(&self) -> i64 {
        self.point.time
    }
}

/// One group's (mode 1) or alert id's (mode 2) state and inhibitors.
#[derive(Debug)]
struct Group {
    state: AlertState,
    inhibitors: Option<Box<[Arc<Inhibitor>]>>,
}

/// At most one log line per this interval for a recurring data problem.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A rate limit for one kind of log line.
#[derive(Debug, Default)]
struct LogLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// `Some(lines suppressed since the last one)` when a line may be written now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// A batch being received: its BeginBatch and points, evaluated at EndBatch.
#[derive(Debug)]
struct PendingBatch {
    begin: BeginBatch,
    points: Vec<Point>,
}

/// What an event that fired hands to the emitted point or batch. `id` and
/// `message` are filled only when an option writes them into the data
/// (`idTag`, `idField`, `messageField`).
#[derive(Debug, Clone)]
struct Fired {
    level: Level,
    id: String,
    message: String,
    duration: i64,
}

/// The inputs of one event, borrowed from the point or batch.
struct EventInput<'a> {
    name: &'a str,
    group: &'a str,
    tags: &'a HashMap<String, String>,
    /// The point whose fields the templates see.
    fields_of: &'a Point,
    level: Level,
    time: i64,
    duration: i64,
    /// Mode 2: the `idFrom`/`messageFrom`/`detailsFrom` values found.
    id: Option<Cow<'a, str>>,
    message: Option<String>,
    details: Option<String>,
}

/// Everything of a node except its group map, so a group can be updated
/// while the rest is read.
#[derive(Debug)]
struct Core {
    task: String,
    node: String,
    opts: NodeOptions,
    levels: [Option<Expr>; 4],
    resets: [Option<Expr>; 4],
    /// Shared with every node that uses the same default ([`defaults`]).
    id_template: Arc<Template>,
    message_template: Arc<Template>,
    details_template: Arc<Template>,
    server_info: ServerInfo,
    inhibitors: Arc<Inhibitors>,
    /// The last event handed on per alert id, non-OK ones only (an OK removes
    /// the id, as the topic store does): `previousLevel`, and the state a new
    /// group starts from.
    last_events: HashMap<Box<str>, StoredAlert, FxBuildHasher>,
    bad_level_log: LogLimit,
    render_error_log: LogLimit,
    expr_error_log: LogLimit,
    counters: NodeCounters,
}

/// One initialized `@pagertree()` node (one connection).
#[derive(Debug)]
pub struct AlertNode {
    core: Core,
    /// Mode 1: by group id; mode 2: by alert id.
    groups: HashMap<Box<str>, Group, FxBuildHasher>,
    batch: Option<PendingBatch>,
    stopped: bool,
}

impl AlertNode {
    /// Validates `req` and builds the node; loads the open alerts of this
    /// (task, node) from the store.
    pub fn new(env: &NodeEnv, edge: EdgeType, req: &InitRequest) -> Result<AlertNode, InitError> {
        let (opts, warnings) = options::parse(edge, req, &env.destinations)?;
        for w in &warnings.0 {
            tracing::warn!(task = %req.task_id, node = %req.node_id, "{w}");
        }
        let levels = compile_all(&opts.levels, ["", "info", "warn", "crit"])?;
        let resets = compile_all(&opts.resets, ["", "infoReset", "warnReset", "critReset"])?;
        let defaults = defaults();
        let id_template = template_option(
            "id",
            Engine::Text,
            TemplateScope::Id,
            &opts.id,
            (DEFAULT_ID, &defaults.id),
        )?;
        let message_template = template_option(
            "message",
            Engine::Text,
            TemplateScope::Message,
            &opts.message,
            (DEFAULT_MESSAGE, &defaults.message),
        )?;
        let details_template = template_option(
            "details",
            Engine::Html,
            TemplateScope::Details,
            &opts.details,
            (DEFAULT_DETAILS, &defaults.details),
        )?;

        let last_events = match env.store.load(&req.task_id, &req.node_id) {
            Ok(map) => map
                .into_iter()
                .filter(|(_, s)| s.level != Level::OK)
                .map(|(id, s)| (id.into_boxed_str(), s))
                .collect(),
            Err(e) => {
                tracing::error!(task = %req.task_id, node = %req.node_id, error = %e,
                    "cannot load the alert state of this node; its open alerts start from OK");
                HashMap::default()
            }
        };
        Ok(AlertNode {
            core: Core {
                task: req.task_id.clone(),
                node: req.node_id.clone(),
                opts,
                levels,
                resets,
                id_template,
                message_template,
                details_template,
                server_info: env.server_info.server_info(),
                inhibitors: env.inhibitors.clone(),
                last_events,
                bad_level_log: LogLimit::default(),
                render_error_log: LogLimit::default(),
                expr_error_log: LogLimit::default(),
                counters: env.counters.clone(),
            },
            groups: HashMap::default(),
            batch: None,
            stopped: false,
        })
    }

    /// The validated options.
    pub fn options(&self) -> &NodeOptions {
        &self.core.opts
    }

    /// How many groups (mode 1) or alert ids (mode 2) hold state.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Processes a stream point given by reference: the emitted point (if
    /// any) is a copy. What [`Handler::point`] does without the copy.
    pub fn evaluate_point(&mut self, p: &Point, out: &mut Output) {
        if let Some(fired) = self.stream_point(p, out) {
            let mut emitted = p.clone();
            self.core.augment_point(&mut emitted, &fired);
            out.responses.push(Response {
                message: Some(response::Message::Point(emitted)),
            });
        }
    }

    fn stream_point(&mut self, p: &Point, out: &mut Output) -> Option<Fired> {
        if self.core.opts.mode2() {
            return self.stream_point_mode2(p, out);
        }
        let core = &mut self.core;
        match self.groups.get_mut(p.group.as_str()) {
            Some(g) => core.stream_mode1(g, p, out),
            None => {
                let mut g =
                    core.new_group_mode1(&p.name, &p.group, &p.tags, Some(&p.dimensions), p.time);
                let fired = core.stream_mode1(&mut g, p, out);
                self.groups.insert(p.group.as_str().into(), g);
                fired
            }
        }
    }

    fn stream_point_mode2(&mut self, p: &Point, out: &mut Output) -> Option<Fired> {
        let core = &mut self.core;
        let level = core.read_level(p, None)?;
        let id = match core.read_from(p, None, core.opts.id_from.as_deref()) {
            Some(id) => id,
            None => Cow::Owned(core.render_id(&p.name, &p.group, &p.tags)?),
        };
        let rules = core.opts.rules;
        let mut created = None;
        let g = match self.groups.get_mut(id.as_ref()) {
            Some(g) => g,
            None => created.insert(core.new_group_mode2(&id, &p.tags, p.time)),
        };
        let decision = g.state.update_stream(&rules, p.time, level, |active| {
            core.set_inhibitors(&mut g.inhibitors, active, Some(&p.tags))
        });
        let fired = match decision {
            Decision::Drop => None,
            Decision::Event { level, duration } => {
                let message = core
                    .read_from(p, None, core.opts.message_from.as_deref())
                    .map(Cow::into_owned);
                let details = core
                    .read_from(p, None, core.opts.details_from.as_deref())
                    .map(Cow::into_owned);
                core.fire(
                    EventInput {
                        name: &p.name,
                        group: &p.group,
                        tags: &p.tags,
                        fields_of: p,
                        level,
                        time: p.time,
                        duration,
                        id: Some(id.clone()),
                        message,
                        details,
                    },
                    || data::stream_series(p),
                    out,
                )
            }
        };
        if let Some(g) = created {
            self.groups.insert(id.as_ref().into(), g);
        }
        fired
    }

    fn finish_batch(&mut self, end: EndBatch, out: &mut Output) {
        let Some(PendingBatch { begin, points }) = self.batch.take() else {
            return;
        };
        if points.is_empty() {
            return;
        }
        let fired = if self.core.opts.mode2() {
            self.batch_mode2(&begin, &points, end.tmax, out)
        } else {
            let core = &mut self.core;
            match self.groups.get_mut(begin.group.as_str()) {
                Some(g) => core.batch_mode1(g, &begin, &points, end.tmax, out),
                None => {
                    let mut g = core.new_group_mode1(
                        &begin.name,
                        &begin.group,
                        &begin.tags,
                        None,
                        end.tmax,
                    );
                    let fired = core.batch_mode1(&mut g, &begin, &points, end.tmax, out);
                    self.groups.insert(begin.group.as_str().into(), g);
                    fired
                }
            }
        };
        if let Some(fired) = fired {
            self.core.emit_batch(begin, points, end, &fired, out);
        }
    }

    fn batch_mode2(
        &mut self,
        begin: &BeginBatch,
        points: &[Point],
        tmax: i64,
        out: &mut Output,
    ) -> Option<Fired> {
        let core = &mut self.core;
        let mut lowest = Level::CRITICAL;
        let mut highest: Option<(Level, usize)> = None;
        for (i, p) in points.iter().enumerate() {
            let Some(l) = core.read_level(p, Some(&begin.tags)) else {
                continue;
            };
            lowest = lowest.min(l);
            if highest.is_none_or(|(h, _)| l > h) {
                highest = Some((l, i));
            }
        }
        let (highest, hp) = highest?;
        let hp = &points[hp];
        let level = if core.opts.all { lowest } else { highest };
        let time = if core.opts.all || level == Level::OK {
            tmax
        } else {
            hp.time
        };
        let id = match core.read_from(hp, Some(&begin.tags), core.opts.id_from.as_deref()) {
            Some(id) => id.into_owned(),
            None => core.render_id(&begin.name, &begin.group, &begin.tags)?,
        };
        let rules = core.opts.rules;
        let mut created = None;
        let g = match self.groups.get_mut(id.as_str()) {
            Some(g) => g,
            None => created.insert(core.new_group_mode2(&id, &begin.tags, time)),
        };
        let decision = g.state.update_batch(&rules, time, level, |active| {
            core.set_inhibitors(&mut g.inhibitors, active, Some(&begin.tags))
        });
        let fired = match decision {
            Decision::Drop => None,
            Decision::Event { level, duration } => {
                let message = core
                    .read_from(hp, Some(&begin.tags), core.opts.message_from.as_deref())
                    .map(Cow::into_owned);
                let details = core
                    .read_from(hp, Some(&begin.tags), core.opts.details_from.as_deref())
                    .map(Cow::into_owned);
                core.fire(
                    EventInput {
                        name: &begin.name,
                        group: &begin.group,
                        tags: &begin.tags,
                        fields_of: hp,
                        level,
                        time,
                        duration,
                        id: Some(Cow::Borrowed(id.as_str())),
                        message,
                        details,
                    },
                    || data::batch_series(begin, points),
                    out,
                )
            }
        };
        if let Some(g) = created {
            self.groups.insert(id.as_str().into(), g);
        }
        fired
    }

    fn release(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.core.inhibitors.release(
            self.groups
                .values()
                .flat_map(|g| g.inhibitors.iter().flatten()),
        );
    }
}

impl Drop for AlertNode {
    fn drop(&mut self) {
        self.release();
    }
}

impl Handler for AlertNode {
    fn point(&mut self, point: Point, out: &mut Output) {
        if let Some(batch) = &mut self.batch {
            batch.points.push(point);
            return;
        }
        if let Some(fired) = self.stream_point(&point, out) {
            if out.can_echo && !self.core.augments() {
                // Unchanged: the session writes back the bytes it received.
                out.echo_point = true;
                return;
            }
            let mut point = point;
            self.core.augment_point(&mut point, &fired);
            out.responses.push(Response {
                message: Some(response::Message::Point(point)),
            });
        }
    }

    fn point_ref(&mut self, point: &Point, out: &mut Output) {
        if self.batch.is_some() {
            return self.point(point.clone(), out);
        }
        if let Some(fired) = self.stream_point(point, out) {
            if out.can_echo && !self.core.augments() {
                out.echo_point = true;
                return;
            }
            let mut point = point.clone();
            self.core.augment_point(&mut point, &fired);
            out.responses.push(Response {
                message: Some(response::Message::Point(point)),
            });
        }
    }

    fn begin_batch(&mut self, begin: BeginBatch, _out: &mut Output) {
        let cap = usize::try_from(begin.size).unwrap_or(0).min(100_000);
        self.batch = Some(PendingBatch {
            begin,
            points: Vec::with_capacity(cap),
        });
    }

    fn end_batch(&mut self, end: EndBatch, out: &mut Output) {
        self.finish_batch(end, out);
    }

    fn stop(&mut self) {
        self.release();
    }
}

/// Compiles each level's expression once for the whole node (its stateful
/// functions are shared by every group, as in Kapacitor).
fn compile_all(
    src: &[Option<String>; 4],
    names: [&str; 4],
) -> Result<[Option<Expr>; 4], InitError> {
    let mut out: [Option<Expr>; 4] = [None, None, None, None];
    for (l, text) in src.iter().enumerate() {
        if let Some(text) = text {
            out[l] =
                Some(Expr::compile(text).map_err(|e| InitError::new(names[l], e.to_string()))?);
        }
    }
    Ok(out)
}

/// Kapacitor's default templates, parsed once per process and shared by
/// every node that does not set its own: most nodes keep the default
/// `details`, many the default `id`, and a parsed template is a few KB that
/// every idle session would otherwise hold (BENCHMARKS.md, *Idle sessions*).
struct Defaults {
    id: Arc<Template>,
    message: Arc<Template>,
    details: Arc<Template>,
}

fn defaults() -> &'static Defaults {
    static DEFAULTS: std::sync::OnceLock<Defaults> = std::sync::OnceLock::new();
    DEFAULTS.get_or_init(|| {
        // Constants, checked by the tests: a failure is a bug, not input.
        let parse = |engine, scope, text| {
            Arc::new(Template::parse(engine, scope, text).expect("a default template parses"))
        };
        Defaults {
            id: parse(Engine::Text, TemplateScope::Id, DEFAULT_ID),
            message: parse(Engine::Text, TemplateScope::Message, DEFAULT_MESSAGE),
            details: parse(Engine::Html, TemplateScope::Details, DEFAULT_DETAILS),
        }
    })
}

/// Parses one of the node's templates. Not given, or given as the default
/// text (`default.0`): the shared default (`default.1`); `''` is a real,
/// empty template.
fn template_option(
    name: &str,
    engine: Engine,
    scope: TemplateScope,
    value: &Option<String>,
    default: (&str, &Arc<Template>),
) -> Result<Arc<Template>, InitError> {
    let text = value.as_deref().unwrap_or(default.0);
    if text == default.0 {
        return Ok(default.1.clone());
    }
    let template =
        Template::parse(engine, scope, text).map_err(|e| InitError::new(name, e.to_string()))?;
    check_fields(name, &template)?;
    Ok(Arc::new(template))
}

/// Renders a template once over sample data at Init, so that a field the
/// template data does not have (`{{ .Nope }}`, `{{ .Time.Nope }}`) is
/// refused with the option's name instead of failing every event later.
/// Only that error is refused: it never depends on the data, while others
/// (comparing a missing field, say) may pass on real points.
fn check_fields(name: &str, template: &Template) -> Result<(), InitError> {
    let tags = std::collections::BTreeMap::new();
    let fields = std::collections::BTreeMap::new();
    let info = ServerInfo::default();
    let data = TemplateData {
        id: "id",
        fields: Fields::Map(&fields),
        level: Level::CRITICAL,
        message: "message",
        ..TemplateData::new("measurement", "task", "", Tags::Sorted(&tags), &info)
    };
    match template.render(&data) {
        Err(e) if e.to_string().contains("can't evaluate field") => {
            Err(InitError::new(name, e.to_string()))
        }
        _ => Ok(()),
    }
}

impl Core {
    /// A new mode-1 group, restored from the last event of the id its first
    /// point renders (Kapacitor's `NewGroup`/`restoreEventState`).
    fn new_group_mode1(
        &mut self,
        name: &str,
        group: &str,
        tags: &HashMap<String, String>,
        dimensions: Option<&[String]>,
        t: i64,
    ) -> Group {
        let rules = self.opts.rules;
        // The inhibitor's tag values are the group's: a batch's tags are all
        // dimensions (`None`); a stream point's group holds only its dimension tags.
        let mut g = Group {
            state: AlertState::new(&rules),
            inhibitors: self.make_inhibitors(|k| {
                let is_dim = dimensions.is_none_or(|d| d.iter().any(|d| d == k));
                if is_dim {
                    tags.get(k).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            }),
        };
        if !self.last_events.is_empty()
            && let Some(id) = self.render_id(name, group, tags)
            && let Some(stored) = self.last_events.get(id.as_str()).copied()
        {
            let active = g.state.restore(&rules, t, stored.level, stored.time);
            self.set_inhibitors(&mut g.inhibitors, active, None);
        }
        g
    }

    /// A new mode-2 alert id: restored from its last event, inhibitors with
    /// the point's tags.
    fn new_group_mode2(&mut self, id: &str, tags: &HashMap<String, String>, t: i64) -> Group {
        let rules = self.opts.rules;
        let mut g = Group {
            state: AlertState::new(&rules),
            inhibitors: self.make_inhibitors(|k| tags.get(k).cloned().unwrap_or_default()),
        };
        if let Some(stored) = self.last_events.get(id).copied() {
            let active = g.state.restore(&rules, t, stored.level, stored.time);
            self.set_inhibitors(&mut g.inhibitors, active, None);
        }
        g
    }

    fn make_inhibitors(&self, value: impl Fn(&str) -> String) -> Option<Box<[Arc<Inhibitor>]>> {
        if self.opts.inhibit.is_empty() {
            return None;
        }
        let list: Vec<Arc<Inhibitor>> = self
            .opts
            .inhibit
            .iter()
            .map(|spec| {
                let tags = spec.tags.iter().map(|t| (t.clone(), value(t))).collect();
                Arc::new(Inhibitor::new(spec.category.clone(), tags))
            })
            .collect();
        Some(list.into_boxed_slice())
    }

    /// `triggered()`'s inhibitor update. In mode 2 (`retag` given), an id's
    /// inhibitor takes the tag values of the point that sets it.
    fn set_inhibitors(
        &self,
        list: &mut Option<Box<[Arc<Inhibitor>]>>,
        active: bool,
        retag: Option<&HashMap<String, String>>,
    ) {
        let Some(list) = list else {
            return;
        };
        for slot in list.iter_mut() {
            if let Some(tags) = retag.filter(|_| active)
                && slot
                    .tags()
                    .iter()
                    .any(|(k, v)| tags.get(k).map_or("", String::as_str) != v)
            {
                let values = slot
                    .tags()
                    .iter()
                    .map(|(k, _)| (k.clone(), tags.get(k).cloned().unwrap_or_default()));
                let fresh = Arc::new(Inhibitor::new(
                    slot.category().to_string(),
                    values.collect(),
                ));
                self.inhibitors.set(slot, false);
                *slot = fresh;
            }
            self.inhibitors.set(slot, active);
        }
    }

    /// Kapacitor's `determineLevel` (semantics doc, *Determining a point's level*).
    fn determine_level(&mut self, p: &Point, current: Level) -> Level {
        let p = &PointScope::new(p);
        if let Some(l) = self.first_match(Level::CRITICAL, current, p) {
            return l;
        }
        let reset = self.resets[current as usize]
            .as_mut()
            .map(|r| r.eval_bool(p));
        if let Some(reset) = reset {
            match reset {
                Ok(false) => return current,
                Ok(true) => {}
                Err(e) => self.expression_error("reset", current, e.message()),
            }
        }
        self.first_match(current, Level::INFO, p)
            .unwrap_or(Level::OK)
    }

    /// The first level from `start` down to `max(stop, INFO)` whose
    /// expression is true.
    fn first_match(&mut self, start: Level, stop: Level, p: &PointScope<'_>) -> Option<Level> {
        let stop = stop.max(Level::INFO) as usize;
        for l in (stop..=start as usize).rev() {
            let Some(result) = self.levels[l].as_mut().map(|e| e.eval_bool(p)) else {
                continue;
            };
            match result {
                Ok(true) => return Level::from_u8(l as u8),
                Ok(false) => {}
                Err(e) => {
                    let level = Level::from_u8(l as u8).unwrap_or(Level::OK);
                    self.expression_error("level", level, e.message());
                }
            }
        }
        None
    }

    fn expression_error(&mut self, kind: &str, level: Level, error: &str) {
        self.counters.expression_errors.inc();
        if let Some(suppressed) = self.expr_error_log.allow() {
            tracing::warn!(task = %self.task, node = %self.node, alert_level = %level, suppressed,
                "error evaluating the {kind} expression; it counts as {}: {error}",
                if kind == "reset" { "passed" } else { "false" });
        }
    }

    fn stream_mode1(&mut self, g: &mut Group, p: &Point, out: &mut Output) -> Option<Fired> {
        let rules = self.opts.rules;
        let level = self.determine_level(p, g.state.current_level());
        let decision = g.state.update_stream(&rules, p.time, level, |active| {
            self.set_inhibitors(&mut g.inhibitors, active, None)
        });
        match decision {
            Decision::Drop => None,
            Decision::Event { level, duration } => self.fire(
                EventInput {
                    name: &p.name,
                    group: &p.group,
                    tags: &p.tags,
                    fields_of: p,
                    level,
                    time: p.time,
                    duration,
                    id: None,
                    message: None,
                    details: None,
                },
                || data::stream_series(p),
                out,
            ),
        }
    }

    fn batch_mode1(
        &mut self,
        g: &mut Group,
        begin: &BeginBatch,
        points: &[Point],
        tmax: i64,
        out: &mut Output,
    ) -> Option<Fired> {
        let rules = self.opts.rules;
        let current = g.state.current_level();
        let mut lowest = Level::CRITICAL;
        let mut highest = Level::OK;
        let mut hp: Option<usize> = None;
        for (i, p) in points.iter().enumerate() {
            let l = self.determine_level(p, current);
            lowest = lowest.min(l);
            if l > highest || hp.is_none() {
                highest = l;
                hp = Some(i);
            }
        }
        let hp = &points[hp?];
        let level = if self.opts.all { lowest } else { highest };
        let time = if self.opts.all || level == Level::OK {
            tmax
        } else {
            hp.time
        };
        let decision = g.state.update_batch(&rules, time, level, |active| {
            self.set_inhibitors(&mut g.inhibitors, active, None)
        });
        match decision {
            Decision::Drop => None,
            Decision::Event { level, duration } => self.fire(
                EventInput {
                    name: &begin.name,
                    group: &begin.group,
                    tags: &begin.tags,
                    fields_of: hp,
                    level,
                    time,
                    duration,
                    id: None,
                    message: None,
                    details: None,
                },
                || data::batch_series(begin, points),
                out,
            ),
        }
    }

    /// Mode 2: the level named by the point's `levelFrom` tag or field (then
    /// the batch's tag). Missing or unknown: counted, logged, not an event.
    fn read_level(
        &mut self,
        p: &Point,
        batch_tags: Option<&HashMap<String, String>>,
    ) -> Option<Level> {
        let name = self.opts.level_from.as_deref()?;
        let found = data::tag_or_field(p, name).or_else(|| {
            batch_tags
                .and_then(|t| t.get(name))
                .map(|s| FieldRef::Str(s.as_str()))
        });
        let level = match found {
            Some(FieldRef::Str(s)) => Level::parse(s),
            _ => None,
        };
        if level.is_none() {
            self.counters.bad_levels.inc();
            if let Some(suppressed) = self.bad_level_log.allow() {
                let value = match found {
                    None => "missing".to_string(),
                    Some(v) => format!("{:?}", v.text()),
                };
                tracing::warn!(task = %self.task, node = %self.node, level_from = name, value = %value, suppressed,
                    "point skipped: its level is not OK, INFO, WARNING/WARN or CRITICAL/CRIT");
            }
        }
        level
    }

    /// Mode 2: the value of a `…From` option on the point (tag, else field),
    /// else on the batch's tags.
    fn read_from<'a>(
        &self,
        p: &'a Point,
        batch_tags: Option<&'a HashMap<String, String>>,
        name: Option<&str>,
    ) -> Option<Cow<'a, str>> {
        let name = name?;
        match data::tag_or_field(p, name) {
            Some(FieldRef::Str(s)) => Some(Cow::Borrowed(s)),
            Some(other) => Some(Cow::Owned(other.text())),
            None => batch_tags
                .and_then(|t| t.get(name))
                .map(|s| Cow::Borrowed(s.as_str())),
        }
    }

    /// The template data every text of this node shares; the caller fills
    /// in what its scope adds.
    fn template_data<'a>(
        &'a self,
        name: &'a str,
        group: &'a str,
        tags: &'a HashMap<String, String>,
    ) -> TemplateData<'a> {
        TemplateData {
            name,
            task_name: &self.task,
            group,
            tags: Tags::Unsorted(tags),
            server_info: &self.server_info,
            id: "",
            fields: Fields::None,
            level: Level::OK,
            time: 0,
            duration: 0,
            message: "",
            details: "",
        }
    }

    fn render_id(
        &mut self,
        name: &str,
        group: &str,
        tags: &HashMap<String, String>,
    ) -> Option<String> {
        let result = self
            .id_template
            .render(&self.template_data(name, group, tags));
        self.rendered("id", result)
    }

    /// A render error drops the event (Kapacitor stops the whole task on
    /// one); it is logged, rate-limited, with the task and node.
    fn rendered(&mut self, what: &str, result: Result<String, TemplateError>) -> Option<String> {
        match result {
            Ok(text) => Some(text),
            Err(e) => {
                if let Some(suppressed) = self.render_error_log.allow() {
                    tracing::error!(task = %self.task, node = %self.node, suppressed, error = %e,
                        "cannot render the {what} template; the event is not sent");
                }
                None
            }
        }
    }

    /// Renders the texts of an event, applies inhibition, records the event
    /// per id and hands it on. Returns what the emitted data is augmented with
    /// (also when the event is inhibited: the node's output is unaffected).
    fn fire(
        &mut self,
        input: EventInput<'_>,
        series: impl FnOnce() -> crate::alert::Series,
        out: &mut Output,
    ) -> Option<Fired> {
        let id = match input.id {
            Some(id) => id.into_owned(),
            None => self.render_id(input.name, input.group, input.tags)?,
        };
        let texts = {
            let data = TemplateData {
                id: &id,
                fields: Fields::Point(input.fields_of),
                level: input.level,
                time: input.time,
                duration: input.duration,
                ..self.template_data(input.name, input.group, input.tags)
            };
            match input
                .message
                .map_or_else(|| self.message_template.render(&data), Ok)
            {
                Err(e) => Err(("message", e)),
                Ok(message) => match input.details.map_or_else(
                    || {
                        self.details_template.render(&TemplateData {
                            message: &message,
                            ..data
                        })
                    },
                    Ok,
                ) {
                    Ok(details) => Ok((message, details)),
                    Err(e) => Err(("details", e)),
                },
            }
        };
        let (message, details) = match texts {
            Ok(t) => t,
            Err((what, e)) => {
                self.rendered(what, Err(e));
                return None;
            }
        };
        let inhibited = self.opts.category.as_deref().is_some_and(|cat| {
            self.inhibitors
                .is_inhibited(cat, |k| input.tags.get(k).map(String::as_str))
        });
        // The emitted data needs the id and message only when an option
        // writes them into it; otherwise they move into the event uncopied.
        let fired_id = if self.opts.id_tag.is_some() || self.opts.id_field.is_some() {
            id.clone()
        } else {
            String::new()
        };
        let fired_message = if self.opts.message_field.is_some() {
            message.clone()
        } else {
            String::new()
        };
        if inhibited {
            self.counters.events_inhibited.inc();
        } else {
            let stored = StoredAlert {
                level: input.level,
                time: input.time,
            };
            // One lookup for the common case (the id's alert is open and stays so).
            let previous_level = match self.last_events.get_mut(id.as_str()) {
                Some(slot) => {
                    let previous = slot.level;
                    if input.level == Level::OK {
                        self.last_events.remove(id.as_str());
                    } else {
                        *slot = stored;
                    }
                    previous
                }
                None => {
                    if input.level != Level::OK {
                        self.last_events.insert(id.as_str().into(), stored);
                    }
                    Level::OK
                }
            };
            self.counters.events[input.level as usize].inc();
            out.events.push(Event {
                task: self.task.clone(),
                node: self.node.clone(),
                id,
                message,
                details,
                time: input.time,
                duration: input.duration,
                level: input.level,
                previous_level,
                recoverable: !self.opts.rules.no_recoveries,
                data: series(),
                route: self.opts.route.clone(),
            });
        }
        Some(Fired {
            level: input.level,
            id: fired_id,
            message: fired_message,
            duration: input.duration,
        })
    }

    /// Whether an emitted point differs from the one received.
    fn augments(&self) -> bool {
        let o = &self.opts;
        o.level_tag.is_some()
            || o.id_tag.is_some()
            || o.level_field.is_some()
            || o.message_field.is_some()
            || o.id_field.is_some()
            || o.duration_field.is_some()
    }

    fn wants_tags(&self) -> bool {
        self.opts.level_tag.is_some() || self.opts.id_tag.is_some()
    }

    fn augment_tags(&self, tags: &mut HashMap<String, String>, fired: &Fired) {
        if let Some(t) = &self.opts.level_tag {
            tags.insert(t.clone(), fired.level.as_str().to_string());
        }
        if let Some(t) = &self.opts.id_tag {
            tags.insert(t.clone(), fired.id.clone());
        }
    }

    /// Kapacitor's `augmentTagsWithEventState` and `augmentFieldsWithEventState`.
    fn augment_point(&self, p: &mut Point, fired: &Fired) {
        self.augment_tags(&mut p.tags, fired);
        if let Some(f) = &self.opts.level_field {
            data::set_field(p, f, FieldValue::String(fired.level.as_str().to_string()));
        }
        if let Some(f) = &self.opts.message_field {
            data::set_field(p, f, FieldValue::String(fired.message.clone()));
        }
        if let Some(f) = &self.opts.id_field {
            data::set_field(p, f, FieldValue::String(fired.id.clone()));
        }
        if let Some(f) = &self.opts.duration_field {
            data::set_field(p, f, FieldValue::Int(fired.duration));
        }
    }

    /// Emits the batch that produced an event: every point augmented, and
    /// with `levelTag`/`idTag` the batch's tags too — in both BeginBatch and
    /// EndBatch, since Kapacitor takes a returned batch's tags from EndBatch.
    fn emit_batch(
        &self,
        mut begin: BeginBatch,
        mut points: Vec<Point>,
        mut end: EndBatch,
        fired: &Fired,
        out: &mut Output,
    ) {
        if self.wants_tags() {
            self.augment_tags(&mut begin.tags, fired);
            begin.group = data::group_id_of_tags(&begin.tags);
            end.tags = begin.tags.clone();
            end.group = begin.group.clone();
        }
        for p in &mut points {
            self.augment_point(p, fired);
        }
        begin.size = points.len() as i64;
        out.responses.reserve(points.len() + 2);
        out.responses.push(Response {
            message: Some(response::Message::Begin(begin)),
        });
        out.responses.extend(points.into_iter().map(|p| Response {
            message: Some(response::Message::Point(p)),
        }));
        out.responses.push(Response {
            message: Some(response::Message::End(end)),
        });
    }
}

/// The rules a node's groups follow (for tests and benchmarks).
impl AlertNode {
    pub fn rules(&self) -> StateRules {
        self.core.opts.rules
    }
}

#[cfg(test)]
mod tests;
