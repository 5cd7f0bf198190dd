//! Go `text/template` (id, message) and `html/template` (details) over
//! Kapacitor's alert data, printing exactly what Kapacitor prints.
//!
//! Parsing, execution and html/template's contextual escaping are `gotmpl`'s;
//! this module owns what Kapacitor and Go add on top (docs/dependencies.md):
//! the data of each template ([`Scope`]), the `nil` group, the `json` and
//! `jsonCompact` functions of details, Go's printing of floats, maps and
//! structs, `index` on the tags map, and errors for fields Go's structs do not
//! have. The `rewrite` pass adapts gotmpl's parse tree once at parse time; rendering
//! never re-parses.
//!
//! The id template renders for every point of every event, so templates made
//! only of text and plain lookups (`{{ .Name }}:{{ .Group }}`,
//! `{{ index .Tags "host" }}` …), and the default details `{{ json . }}`,
//! render directly from [`TemplateData`], without building gotmpl values.
//!
//! `.Time` and `.Duration` are held as their Go texts; their common methods
//! (`.Time.Format "…"`, `.Time.Unix`, `.Time.Month`, `.Duration.Seconds` …)
//! are rewritten into helper calls that read the text back exactly.
//!
//! Known differences from Go: a float of |x| ≥ 1e6 or < 1e-4 printed inside
//! `<script>` in details is quoted (Go prints a bare number); `print`/`html` of several operands where
//! one is a struct may space them differently; inside a `{{define}}`d
//! template called with different kinds of values, an unknown field prints
//! `<no value>` instead of failing.

mod rewrite;
mod value;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use gotmpl::{FuncMap, TemplateError as GoError, Value, ValueFunc};

use crate::alert::{FieldValue, Level, ServerInfo};
use crate::gofmt;
use rewrite::Rewriter;
use value::{JsonKind, Keys, PrintKind};

/// Kapacitor's default id template.
pub const DEFAULT_ID: &str = "{{ .Name }}:{{ .Group }}";
/// Kapacitor's default message template.
pub const DEFAULT_MESSAGE: &str = "{{ .ID }} is {{ .Level }}";
/// Kapacitor's default details template.
pub const DEFAULT_DETAILS: &str = "{{ json . }}";

/// Which Go template package a template follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `text/template`: no escaping (id, message).
    Text,
    /// `html/template`: contextual escaping, plus `json` and `jsonCompact` (details).
    Html,
}

/// Which data a template sees; each scope adds fields to the previous one,
/// as Kapacitor's `idInfo` ⊂ `messageInfo` ⊂ `detailsInfo` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Name, TaskName, Group, Tags, ServerInfo.
    Id,
    /// Adds ID, Fields, Level, Time, Duration.
    Message,
    /// Adds Message.
    Details,
    /// Adds Details, with the raw group (`""`, not `nil`): the templates
    /// of alert handlers, which see the finished event.
    Handler,
}

impl Scope {
    fn template_name(self) -> &'static str {
        match self {
            Scope::Id => "id",
            Scope::Message => "message",
            Scope::Details => "details",
            Scope::Handler => "handler",
        }
    }
}

/// A template that cannot be parsed or rendered, with Go's wording
/// (`template: id:1: function "nope" not defined`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("invalid {template} template: {message}")]
    Parse {
        template: &'static str,
        message: String,
    },
    #[error("cannot render {template} template: {message}")]
    Render {
        template: &'static str,
        message: String,
    },
}

/// Up to this many tags or fields are sorted on the stack when rendering.
const SORT_INLINE: usize = 16;

/// The tags of the point (or batch), in whichever map the caller holds.
#[derive(Debug, Clone, Copy)]
pub enum Tags<'a> {
    Sorted(&'a BTreeMap<String, String>),
    /// As prost decodes a UDF point; sorted when a template needs the order.
    Unsorted(&'a HashMap<String, String>),
}

impl<'a> From<&'a BTreeMap<String, String>> for Tags<'a> {
    fn from(m: &'a BTreeMap<String, String>) -> Self {
        Tags::Sorted(m)
    }
}

impl<'a> From<&'a HashMap<String, String>> for Tags<'a> {
    fn from(m: &'a HashMap<String, String>) -> Self {
        Tags::Unsorted(m)
    }
}

impl<'a> Tags<'a> {
    pub fn get(&self, k: &str) -> Option<&'a str> {
        match self {
            Tags::Sorted(m) => m.get(k).map(String::as_str),
            Tags::Unsorted(m) => m.get(k).map(String::as_str),
        }
    }

    /// The tags in key order (Go sorts map keys when encoding).
    fn sorted(&self) -> Vec<(&'a str, &'a str)> {
        match self {
            Tags::Sorted(m) => m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            Tags::Unsorted(m) => {
                let mut v: Vec<_> = m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                v.sort_unstable_by(|a, b| a.0.cmp(b.0));
                v
            }
        }
    }

    /// [`Tags::sorted`] without allocating for up to [`SORT_INLINE`] tags.
    fn for_each_sorted(&self, mut f: impl FnMut(&'a str, &'a str)) {
        match self {
            Tags::Sorted(m) => m.iter().for_each(|(k, v)| f(k, v)),
            Tags::Unsorted(m) if m.len() <= SORT_INLINE => {
                let mut buf = [("", ""); SORT_INLINE];
                for (slot, (k, v)) in buf.iter_mut().zip(m.iter()) {
                    *slot = (k.as_str(), v.as_str());
                }
                let buf = &mut buf[..m.len()];
                buf.sort_unstable_by(|a, b| a.0.cmp(b.0));
                buf.iter().for_each(|&(k, v)| f(k, v));
            }
            Tags::Unsorted(_) => self.sorted().into_iter().for_each(|(k, v)| f(k, v)),
        }
    }

    fn for_each(&self, mut f: impl FnMut(&str, &str)) {
        match self {
            Tags::Sorted(m) => m.iter().for_each(|(k, v)| f(k, v)),
            Tags::Unsorted(m) => m.iter().for_each(|(k, v)| f(k, v)),
        }
    }
}

/// The fields of the point the event is about.
#[derive(Debug, Clone, Copy)]
pub enum Fields<'a> {
    None,
    Map(&'a BTreeMap<String, FieldValue>),
    /// The four typed maps of a UDF point.
    Point(&'a crate::proto::Point),
}

impl<'a> From<&'a BTreeMap<String, FieldValue>> for Fields<'a> {
    fn from(m: &'a BTreeMap<String, FieldValue>) -> Self {
        Fields::Map(m)
    }
}

impl<'a> From<&'a crate::proto::Point> for Fields<'a> {
    fn from(p: &'a crate::proto::Point) -> Self {
        Fields::Point(p)
    }
}

/// A borrowed field value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FieldRef<'a> {
    Float(f64),
    Int(i64),
    Str(&'a str),
    Bool(bool),
}

impl<'a> Fields<'a> {
    fn get(&self, k: &str) -> Option<FieldRef<'a>> {
        match self {
            Fields::None => None,
            Fields::Map(m) => m.get(k).map(|v| match v {
                FieldValue::Float(f) => FieldRef::Float(*f),
                FieldValue::Int(i) => FieldRef::Int(*i),
                FieldValue::String(s) => FieldRef::Str(s),
                FieldValue::Bool(b) => FieldRef::Bool(*b),
            }),
            Fields::Point(p) => p
                .fields_double
                .get(k)
                .map(|f| FieldRef::Float(*f))
                .or_else(|| p.fields_int.get(k).map(|i| FieldRef::Int(*i)))
                .or_else(|| p.fields_string.get(k).map(|s| FieldRef::Str(s)))
                .or_else(|| p.fields_bool.get(k).map(|b| FieldRef::Bool(*b))),
        }
    }

    /// The fields in key order (Go sorts map keys when encoding).
    fn sorted(&self) -> Vec<(&'a str, FieldRef<'a>)> {
        let mut v: Vec<(&'a str, FieldRef<'a>)> = match self {
            Fields::None => Vec::new(),
            Fields::Map(m) => {
                return m
                    .keys()
                    .filter_map(|k| Some((k.as_str(), self.get(k)?)))
                    .collect();
            }
            Fields::Point(p) => {
                let mut v = Vec::with_capacity(
                    p.fields_double.len()
                        + p.fields_int.len()
                        + p.fields_string.len()
                        + p.fields_bool.len(),
                );
                v.extend(
                    p.fields_double
                        .iter()
                        .map(|(k, x)| (k.as_str(), FieldRef::Float(*x))),
                );
                v.extend(
                    p.fields_int
                        .iter()
                        .map(|(k, x)| (k.as_str(), FieldRef::Int(*x))),
                );
                v.extend(
                    p.fields_string
                        .iter()
                        .map(|(k, x)| (k.as_str(), FieldRef::Str(x))),
                );
                v.extend(
                    p.fields_bool
                        .iter()
                        .map(|(k, x)| (k.as_str(), FieldRef::Bool(*x))),
                );
                v
            }
        };
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// [`Fields::sorted`] without allocating for a point of up to
    /// [`SORT_INLINE`] fields.
    fn for_each_sorted(&self, mut f: impl FnMut(&'a str, FieldRef<'a>)) {
        let Fields::Point(p) = self else {
            return self.sorted().into_iter().for_each(|(k, v)| f(k, v));
        };
        let n = p.fields_double.len()
            + p.fields_int.len()
            + p.fields_string.len()
            + p.fields_bool.len();
        if n > SORT_INLINE {
            return self.sorted().into_iter().for_each(|(k, v)| f(k, v));
        }
        let mut buf = [("", FieldRef::Bool(false)); SORT_INLINE];
        let all = p
            .fields_double
            .iter()
            .map(|(k, x)| (k.as_str(), FieldRef::Float(*x)))
            .chain(
                p.fields_int
                    .iter()
                    .map(|(k, x)| (k.as_str(), FieldRef::Int(*x))),
            )
            .chain(
                p.fields_string
                    .iter()
                    .map(|(k, x)| (k.as_str(), FieldRef::Str(x))),
            )
            .chain(
                p.fields_bool
                    .iter()
                    .map(|(k, x)| (k.as_str(), FieldRef::Bool(*x))),
            );
        for (slot, kv) in buf.iter_mut().zip(all) {
            *slot = kv;
        }
        let buf = &mut buf[..n];
        buf.sort_unstable_by(|a, b| a.0.cmp(b.0));
        buf.iter().for_each(|&(k, v)| f(k, v));
    }

    fn for_each(&self, mut f: impl FnMut(&str, Value)) {
        match self {
            Fields::None => {}
            Fields::Map(m) => m.iter().for_each(|(k, v)| f(k, value::field_to_value(v))),
            Fields::Point(p) => {
                p.fields_double
                    .iter()
                    .for_each(|(k, v)| f(k, Value::Float(*v)));
                p.fields_int.iter().for_each(|(k, v)| f(k, Value::Int(*v)));
                p.fields_string
                    .iter()
                    .for_each(|(k, v)| f(k, Value::String(Arc::from(v.as_str()))));
                p.fields_bool
                    .iter()
                    .for_each(|(k, v)| f(k, Value::Bool(*v)));
            }
        }
    }
}

/// What a template can see. Fields a scope does not include are ignored
/// (an id template gets empty `id`, `fields`, … from the caller).
#[derive(Debug, Clone, Copy)]
pub struct TemplateData<'a> {
    /// Measurement name.
    pub name: &'a str,
    /// Task id.
    pub task_name: &'a str,
    /// The raw group id; `""` (no groupBy) renders as `nil` for the alert
    /// node's own templates.
    pub group: &'a str,
    pub tags: Tags<'a>,
    pub server_info: &'a ServerInfo,
    pub id: &'a str,
    pub fields: Fields<'a>,
    pub level: Level,
    /// Nanoseconds since the epoch.
    pub time: i64,
    /// Nanoseconds.
    pub duration: i64,
    pub message: &'a str,
    /// Only for [`Scope::Handler`].
    pub details: &'a str,
}

impl<'a> TemplateData<'a> {
    /// The data of an id template; the message-level fields start empty
    /// (`Fields::None`, level OK, time and duration 0) for the caller to fill
    /// with struct update syntax when rendering message and details.
    pub fn new(
        name: &'a str,
        task_name: &'a str,
        group: &'a str,
        tags: Tags<'a>,
        server_info: &'a ServerInfo,
    ) -> Self {
        TemplateData {
            name,
            task_name,
            group,
            tags,
            server_info,
            id: "",
            fields: Fields::None,
            level: Level::OK,
            time: 0,
            duration: 0,
            message: "",
            details: "",
        }
    }
}

/// One piece of a template that renders without gotmpl.
#[derive(Debug, Clone)]
enum Fast {
    Text(Arc<str>),
    Name,
    TaskName,
    Group,
    Id,
    Level,
    Message,
    Details,
    Time,
    Duration,
    Hostname,
    ClusterId,
    ServerId,
    /// `.Tags.k` (missing → `<no value>`) or `index .Tags "k"` (missing → ``).
    Tag {
        key: Box<str>,
        missing: &'static str,
    },
    /// `.Fields.k` / `index .Fields "k"`: Go's `%v`, missing → `<no value>`.
    Field(Box<str>),
}

/// A template that renders straight from [`TemplateData`].
#[derive(Debug, Clone)]
enum FastForm {
    /// Text and plain lookups (text/template).
    Parts(Vec<Fast>),
    /// Exactly `{{ json . }}` / `{{ jsonCompact . }}` in html/template: the
    /// default details of every event.
    JsonRoot { compact: bool },
}

#[derive(Clone)]
enum Compiled {
    Text(gotmpl::Template),
    Html(gotmpl::html::Template),
}

/// A parsed template; cheap to render, shareable across threads. A clone
/// of an html/template escapes again on its first render (gotmpl's rule).
#[derive(Clone)]
pub struct Template {
    scope: Scope,
    source: String,
    fast: Option<FastForm>,
    compiled: Compiled,
    keys: Keys,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("scope", &self.scope)
            .field("source", &self.source)
            .field("fast", &self.fast.is_some())
            .finish()
    }
}

/// The name of the rewritten main tree inside the compiled template.
const MAIN: &str = "__kp_main";

fn func(f: impl Fn(&[Value]) -> Result<Value, GoError> + Send + Sync + 'static) -> ValueFunc {
    Arc::new(f)
}

fn funcs(scope: Scope) -> FuncMap {
    let mut m = FuncMap::new();
    for kind in [
        PrintKind::Any,
        PrintKind::Root(scope),
        PrintKind::ServerInfo,
    ] {
        m.insert(
            rewrite::print_name(kind).into(),
            func(move |a| value::print_func(kind, a)),
        );
    }
    m.insert(rewrite::PRINT_HTML.into(), func(value::print_html_func));
    m.insert(
        rewrite::GO_V.into(),
        func(|a| value::go_v_func(PrintKind::Any, "<no value>", a)),
    );
    m.insert(
        rewrite::GO_V_NIL.into(),
        func(|a| value::go_v_func(PrintKind::Any, "<nil>", a)),
    );
    m.insert(
        rewrite::PRINTF_ARG.into(),
        func(|a| value::printf_arg_func(PrintKind::Any, a)),
    );
    m.insert(rewrite::INDEX_STR.into(), func(value::index_str_func));
    m.insert(
        rewrite::FAIL.into(),
        func(|a| {
            let msg = a
                .first()
                .and_then(Value::as_str)
                .unwrap_or("template error")
                .to_owned();
            Err(GoError::Exec(msg))
        }),
    );
    m.insert(rewrite::TIME_METHOD.into(), func(value::time_method_func));
    m.insert(
        rewrite::DURATION_METHOD.into(),
        func(value::duration_method_func),
    );
    m.insert(
        "print".into(),
        func(|a| Ok(Value::String(Arc::from(value::sprint(a, false))))),
    );
    m.insert(
        "println".into(),
        func(|a| Ok(Value::String(Arc::from(value::sprint(a, true))))),
    );
    m
}

fn json_funcs(scope: Scope, m: &mut FuncMap) {
    let kinds = [
        JsonKind::Any,
        JsonKind::Root(scope),
        JsonKind::ServerInfo,
        JsonKind::Time,
        JsonKind::Duration,
    ];
    for kind in kinds {
        for compact in [false, true] {
            m.insert(
                rewrite::json_name(kind, compact).into(),
                func(move |a| value::json_func(kind, compact, a)),
            );
        }
    }
}

fn go_message(e: &GoError) -> String {
    match e {
        GoError::Exec(m) => m.clone(),
        other => other.to_string(),
    }
}

impl Template {
    /// Parses `src` as Kapacitor parses the template of `scope` with `engine`.
    pub fn parse(engine: Engine, scope: Scope, src: &str) -> Result<Template, TemplateError> {
        let name = scope.template_name();
        let parse_err = |message: String| TemplateError::Parse {
            template: name,
            message,
        };
        check_blocks(name, src).map_err(parse_err)?;
        let parsed = gotmpl::Template::new(name)
            .parse(src)
            .map_err(|e| parse_err(go_message(&e)))?;

        let html = engine == Engine::Html;
        let mut rw = Rewriter::new(scope, html, name, src);
        let empty = gotmpl::parse::ListNode {
            pos: gotmpl::parse::Pos::new(0, 1),
            nodes: Vec::new(),
        };
        let main_tree = parsed.lookup(name).cloned().unwrap_or(empty);
        let main = rw.main(&main_tree);
        // Defines learn their dot from the calls; calls made inside defines
        // are seen in one round and used in the next (nesting deeper than
        // three levels falls back to an unknown dot).
        let mut defines = Vec::new();
        let main_calls = rw.calls.clone();
        for _round in 0..3 {
            rw.known = std::mem::replace(&mut rw.calls, main_calls.clone());
            defines.clear();
            for t in parsed.templates() {
                if t != name
                    && let Some(tree) = parsed.lookup(t)
                {
                    defines.push((t.to_owned(), rw.define(t, tree)));
                }
            }
        }
        if let Some(e) = rw.error.take() {
            return Err(parse_err(e));
        }

        let mut fm = funcs(scope);
        let entry = format!("{{{{template \"{MAIN}\" .}}}}");
        let compiled = if html {
            json_funcs(scope, &mut fm);
            let mut t = gotmpl::html::Template::new(name)
                .funcs(fm)
                .parse(&entry)
                .and_then(|t| t.add_parse_tree(MAIN, main.clone()))
                .map_err(|e| parse_err(go_message(&e)))?;
            for (n, tree) in defines.iter().cloned() {
                t = t
                    .add_parse_tree(&n, tree)
                    .map_err(|e| parse_err(go_message(&e)))?;
            }
            Compiled::Html(t)
        } else {
            let mut t = gotmpl::Template::new(name)
                .funcs(fm)
                .parse(&entry)
                .map_err(|e| parse_err(go_message(&e)))?
                .add_parse_tree(MAIN, main.clone());
            for (n, tree) in defines.iter().cloned() {
                t = t.add_parse_tree(&n, tree);
            }
            Compiled::Text(t)
        };
        let fast = if !defines.is_empty() {
            None
        } else if html {
            fast_json_root(&main_tree)
        } else {
            fast_parts(scope, &main_tree).map(FastForm::Parts)
        };
        let template = Template {
            scope,
            source: src.to_owned(),
            fast,
            compiled,
            keys: Keys::new(),
        };
        if let Compiled::Html(t) = &template.compiled {
            // html/template escapes on first execution: do it now, so an
            // unescapable template fails at Init as Kapacitor fails to start it.
            let sample = value::root_value(&template.keys, scope, &sample_data());
            if let Err(e @ GoError::Escape { .. }) = t.execute_to_string(&sample) {
                return Err(parse_err(e.to_string()));
            }
        }
        Ok(template)
    }

    /// The source text the template was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the source is Kapacitor's default for this template's scope
    /// (`{{ .Name }}:{{ .Group }}`, `{{ .ID }} is {{ .Level }}`, `{{ json . }}`).
    pub fn is_default(&self) -> bool {
        match self.scope {
            Scope::Id => self.source == DEFAULT_ID,
            Scope::Message => self.source == DEFAULT_MESSAGE,
            Scope::Details => self.source == DEFAULT_DETAILS,
            Scope::Handler => false,
        }
    }

    /// Whether this template's output depends on nothing but the data (always
    /// true) and renders without gotmpl (plain text and lookups).
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// Renders the template over `data`.
    pub fn render(&self, data: &TemplateData<'_>) -> Result<String, TemplateError> {
        match &self.fast {
            Some(FastForm::Parts(parts)) => return Ok(self.render_fast(parts, data)),
            Some(FastForm::JsonRoot { compact }) => {
                return Ok(value::details_json_root(self.scope, *compact, data));
            }
            None => {}
        }
        let root = value::root_value(&self.keys, self.scope, data);
        let out = match &self.compiled {
            Compiled::Text(t) => t.execute_to_string(&root),
            Compiled::Html(t) => t.execute_to_string(&root),
        };
        out.map_err(|e| TemplateError::Render {
            template: self.scope.template_name(),
            message: go_message(&e),
        })
    }

    /// Renders through gotmpl even when a fast path exists (tests compare both).
    #[doc(hidden)]
    pub fn render_slow(&self, data: &TemplateData<'_>) -> Result<String, TemplateError> {
        let root = value::root_value(&self.keys, self.scope, data);
        let out = match &self.compiled {
            Compiled::Text(t) => t.execute_to_string(&root),
            Compiled::Html(t) => t.execute_to_string(&root),
        };
        out.map_err(|e| TemplateError::Render {
            template: self.scope.template_name(),
            message: go_message(&e),
        })
    }

    fn render_fast(&self, parts: &[Fast], d: &TemplateData<'_>) -> String {
        let mut out = String::with_capacity(64);
        for p in parts {
            match p {
                Fast::Text(t) => out.push_str(t),
                Fast::Name => out.push_str(d.name),
                Fast::TaskName => out.push_str(d.task_name),
                Fast::Group => out.push_str(value::group_text(self.scope, d.group)),
                Fast::Id => out.push_str(d.id),
                Fast::Level => out.push_str(d.level.as_str()),
                Fast::Message => out.push_str(d.message),
                Fast::Details => out.push_str(d.details),
                Fast::Time => out.push_str(&gofmt::time_string(d.time)),
                Fast::Duration => gofmt::write_duration(&mut out, d.duration),
                Fast::Hostname => out.push_str(&d.server_info.hostname),
                Fast::ClusterId => out.push_str(&d.server_info.cluster_id),
                Fast::ServerId => out.push_str(&d.server_info.server_id),
                Fast::Tag { key, missing } => out.push_str(d.tags.get(key).unwrap_or(missing)),
                Fast::Field(key) => match d.fields.get(key) {
                    None => out.push_str("<no value>"),
                    Some(FieldRef::Float(f)) => gofmt::write_float_v(&mut out, f),
                    Some(FieldRef::Int(i)) => {
                        use std::fmt::Write as _;
                        let _ = write!(out, "{i}");
                    }
                    Some(FieldRef::Str(s)) => out.push_str(s),
                    Some(FieldRef::Bool(b)) => out.push_str(if b { "true" } else { "false" }),
                },
            }
        }
        out
    }
}

/// Go's parser refuses a block left open at the end (`unexpected EOF`) and an
/// `{{end}}`/`{{else}}` outside any block; gotmpl 0.6 accepts both, so the
/// actions are scanned here (skipping comments and string, raw-string and
/// character literals, which may contain `}}`).
fn check_blocks(name: &str, src: &str) -> Result<(), String> {
    let b = src.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    let line_at = |i: usize| 1 + b[..i.min(b.len())].iter().filter(|c| **c == b'\n').count();
    while let Some(open) = src[i..].find("{{") {
        let start = i + open;
        let mut j = start + 2;
        if b.get(j) == Some(&b'-') && b.get(j + 1).is_some_and(|c| c.is_ascii_whitespace()) {
            j += 1;
        }
        while b.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
            j += 1;
        }
        if src[j..].starts_with("/*") {
            // A comment: up to `*/`, then the closing delimiter.
            let Some(end) = src[j..].find("*/") else {
                return Ok(());
            };
            let Some(close) = src[j + end..].find("}}") else {
                return Ok(());
            };
            i = j + end + close + 2;
            continue;
        }
        let word_end = src[j..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(src.len(), |k| j + k);
        match &src[j..word_end] {
            "if" | "range" | "with" | "define" | "block" => depth += 1,
            "end" if depth == 0 => {
                return Err(format!(
                    "template: {name}:{}: unexpected {{{{end}}}}",
                    line_at(start)
                ));
            }
            "end" => depth -= 1,
            "else" if depth == 0 => {
                return Err(format!(
                    "template: {name}:{}: unexpected {{{{else}}}}",
                    line_at(start)
                ));
            }
            _ => {}
        }
        // Find the end of the action, skipping literals.
        let mut k = word_end;
        loop {
            match b.get(k) {
                None => return Ok(()), // unclosed action: gotmpl reports it
                Some(b'"') | Some(b'\'') => {
                    let q = b[k];
                    k += 1;
                    while let Some(&c) = b.get(k) {
                        k += if c == b'\\' { 2 } else { 1 };
                        if c == q {
                            break;
                        }
                    }
                }
                Some(b'`') => {
                    k += 1 + src[k + 1..].find('`').map_or(src.len(), |p| p + 1);
                }
                Some(b'}') if b.get(k + 1) == Some(&b'}') => break,
                Some(_) => k += 1,
            }
        }
        i = k + 2;
    }
    if depth > 0 {
        return Err(format!(
            "template: {name}:{}: unexpected EOF",
            line_at(src.len())
        ));
    }
    Ok(())
}

/// The three templates of an alert node, parsed once at Init.
#[derive(Debug, Clone)]
pub struct AlertTemplates {
    /// `text/template` over [`Scope::Id`].
    pub id: Template,
    /// `text/template` over [`Scope::Message`].
    pub message: Template,
    /// `html/template` over [`Scope::Details`].
    pub details: Template,
}

impl AlertTemplates {
    /// Parses the node's `.id()`, `.message()`, `.details()` options; `None`
    /// takes Kapacitor's default (`Some("")` is a real, empty template).
    pub fn parse(
        id: Option<&str>,
        message: Option<&str>,
        details: Option<&str>,
    ) -> Result<AlertTemplates, TemplateError> {
        Ok(AlertTemplates {
            id: Template::parse(Engine::Text, Scope::Id, id.unwrap_or(DEFAULT_ID))?,
            message: Template::parse(
                Engine::Text,
                Scope::Message,
                message.unwrap_or(DEFAULT_MESSAGE),
            )?,
            details: Template::parse(
                Engine::Html,
                Scope::Details,
                details.unwrap_or(DEFAULT_DETAILS),
            )?,
        })
    }

    /// Renders the message, then the details (which see the message), as
    /// Kapacitor's `renderMessageAndDetails` does. `data.id` must already
    /// hold the rendered id; `data.message` is ignored.
    pub fn render_message_and_details(
        &self,
        data: &TemplateData<'_>,
    ) -> Result<(String, String), TemplateError> {
        let message = self.message.render(data)?;
        let details = self.details.render(&TemplateData {
            message: &message,
            ..*data
        })?;
        Ok((message, details))
    }
}

/// Data with every field present, for the escaping dry run.
fn sample_data() -> TemplateData<'static> {
    static TAGS: std::sync::LazyLock<BTreeMap<String, String>> =
        std::sync::LazyLock::new(BTreeMap::new);
    static SERVER_INFO: std::sync::LazyLock<ServerInfo> =
        std::sync::LazyLock::new(ServerInfo::default);
    TemplateData::new("", "", "", Tags::Sorted(&TAGS), &SERVER_INFO)
}

/// `{{ json . }}` or `{{ jsonCompact . }}` alone (spaces and trim markers
/// aside, which the parser already removed).
fn fast_json_root(tree: &gotmpl::parse::ListNode) -> Option<FastForm> {
    use gotmpl::parse::{Expr, Node};
    match tree.nodes.as_slice() {
        [Node::Action(a)] if a.pipe.decl.is_empty() && a.pipe.commands.len() == 1 => {
            match a.pipe.commands[0].args.as_slice() {
                [Expr::Identifier(_, f), Expr::Dot(_)] if f.as_str() == "json" => {
                    Some(FastForm::JsonRoot { compact: false })
                }
                [Expr::Identifier(_, f), Expr::Dot(_)] if f.as_str() == "jsonCompact" => {
                    Some(FastForm::JsonRoot { compact: true })
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The fast form of a text template made only of text and plain lookups
/// (`.Name`, `.ServerInfo.Hostname`, `.Tags.k`, `index .Tags "k"`,
/// `.Fields.k`, `index .Fields "k"` …); `None` for anything else.
fn fast_parts(scope: Scope, tree: &gotmpl::parse::ListNode) -> Option<Vec<Fast>> {
    use gotmpl::parse::{Expr, Node};
    let mut parts = Vec::new();
    for node in &tree.nodes {
        match node {
            Node::Text(t) => parts.push(Fast::Text(t.text.clone())),
            Node::Action(a) if a.pipe.decl.is_empty() && a.pipe.commands.len() == 1 => {
                let args = &a.pipe.commands[0].args;
                let part = match args.as_slice() {
                    [Expr::Field(_, names)] => {
                        let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
                        match names.as_slice() {
                            ["Name"] => Fast::Name,
                            ["TaskName"] => Fast::TaskName,
                            ["Group"] => Fast::Group,
                            ["ServerInfo", "Hostname"] => Fast::Hostname,
                            ["ServerInfo", "ClusterID"] => Fast::ClusterId,
                            ["ServerInfo", "ServerID"] => Fast::ServerId,
                            ["Tags", k] => Fast::Tag {
                                key: (*k).into(),
                                missing: "<no value>",
                            },
                            ["ID"] if scope >= Scope::Message => Fast::Id,
                            ["Level"] if scope >= Scope::Message => Fast::Level,
                            ["Time"] if scope >= Scope::Message => Fast::Time,
                            ["Duration"] if scope >= Scope::Message => Fast::Duration,
                            ["Fields", k] if scope >= Scope::Message => Fast::Field((*k).into()),
                            ["Message"] if scope >= Scope::Details => Fast::Message,
                            ["Details"] if scope >= Scope::Handler => Fast::Details,
                            _ => return None,
                        }
                    }
                    [
                        Expr::Identifier(_, f),
                        Expr::Field(_, map),
                        Expr::String(_, k),
                    ] if f.as_str() == "index" => {
                        match map
                            .iter()
                            .map(|n| n.as_str())
                            .collect::<Vec<_>>()
                            .as_slice()
                        {
                            ["Tags"] => Fast::Tag {
                                key: k.as_ref().into(),
                                missing: "",
                            },
                            ["Fields"] if scope >= Scope::Message => Fast::Field(k.as_ref().into()),
                            _ => return None,
                        }
                    }
                    _ => return None,
                };
                parts.push(part);
            }
            _ => return None,
        }
    }
    Some(parts)
}

#[cfg(test)]
mod tests;
