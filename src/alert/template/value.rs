//! The template data as `gotmpl` values, and the functions the rewritten
//! templates call to print, index and encode them the way Go does.
//!
//! `gotmpl` prints floats with Rust's `Display` and has no structs (only
//! sorted maps), so Go's formatting of `float64`, of Kapacitor's info structs
//! (field order, `{a b c}` printing) and of `time.Time`/`time.Duration` in
//! JSON lives here; [`super::rewrite`] routes every value that gets printed
//! or encoded through these functions.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use gotmpl::{TemplateError as GoError, Value};

use super::{FieldRef, Fields, Scope, Tags, TemplateData};
use crate::alert::FieldValue;
use crate::gofmt;

/// Field names of the info structs, in Go declaration order.
pub(super) const ID_FIELDS: [&str; 5] = ["Name", "TaskName", "Group", "Tags", "ServerInfo"];
pub(super) const MESSAGE_FIELDS: [&str; 5] = ["ID", "Fields", "Level", "Time", "Duration"];
pub(super) const SERVER_INFO_FIELDS: [&str; 3] = ["Hostname", "ClusterID", "ServerID"];

/// Pre-allocated map keys: building the root value per render then costs
/// refcount bumps, not allocations, for the keys.
#[derive(Clone)]
pub(super) struct Keys {
    name: Arc<str>,
    task_name: Arc<str>,
    group: Arc<str>,
    tags: Arc<str>,
    server_info: Arc<str>,
    id: Arc<str>,
    fields: Arc<str>,
    level: Arc<str>,
    time: Arc<str>,
    duration: Arc<str>,
    message: Arc<str>,
    details: Arc<str>,
    hostname: Arc<str>,
    cluster_id: Arc<str>,
    server_id: Arc<str>,
}

impl Keys {
    pub(super) fn new() -> Keys {
        Keys {
            name: "Name".into(),
            task_name: "TaskName".into(),
            group: "Group".into(),
            tags: "Tags".into(),
            server_info: "ServerInfo".into(),
            id: "ID".into(),
            fields: "Fields".into(),
            level: "Level".into(),
            time: "Time".into(),
            duration: "Duration".into(),
            message: "Message".into(),
            details: "Details".into(),
            hostname: "Hostname".into(),
            cluster_id: "ClusterID".into(),
            server_id: "ServerID".into(),
        }
    }
}

fn s(v: &str) -> Value {
    Value::String(Arc::from(v))
}

/// The group as the alert node's templates see it: `nil` for the empty
/// (no `groupBy`) group; handler templates see the raw group.
pub(super) fn group_text(scope: Scope, group: &str) -> &str {
    if group.is_empty() && scope != Scope::Handler {
        "nil"
    } else {
        group
    }
}

pub(super) fn tags_value(tags: Tags<'_>) -> Value {
    let mut m = BTreeMap::new();
    tags.for_each(|k, v| {
        m.insert(Arc::from(k), s(v));
    });
    Value::Map(Arc::new(m))
}

pub(super) fn field_to_value(v: &FieldValue) -> Value {
    match v {
        FieldValue::Float(f) => Value::Float(*f),
        FieldValue::Int(i) => Value::Int(*i),
        FieldValue::String(x) => s(x),
        FieldValue::Bool(b) => Value::Bool(*b),
    }
}

pub(super) fn fields_value(fields: Fields<'_>) -> Value {
    let mut m = BTreeMap::new();
    fields.for_each(|k, v| {
        m.insert(Arc::from(k), v);
    });
    Value::Map(Arc::new(m))
}

/// The whole data of `scope` as one `gotmpl` map (the dot of the template).
pub(super) fn root_value(keys: &Keys, scope: Scope, d: &TemplateData<'_>) -> Value {
    let mut m: BTreeMap<Arc<str>, Value> = BTreeMap::new();
    m.insert(keys.name.clone(), s(d.name));
    m.insert(keys.task_name.clone(), s(d.task_name));
    m.insert(keys.group.clone(), s(group_text(scope, d.group)));
    m.insert(keys.tags.clone(), tags_value(d.tags));
    let mut si = BTreeMap::new();
    si.insert(keys.hostname.clone(), s(&d.server_info.hostname));
    si.insert(keys.cluster_id.clone(), s(&d.server_info.cluster_id));
    si.insert(keys.server_id.clone(), s(&d.server_info.server_id));
    m.insert(keys.server_info.clone(), Value::Map(Arc::new(si)));
    if scope >= Scope::Message {
        m.insert(keys.id.clone(), s(d.id));
        m.insert(keys.fields.clone(), fields_value(d.fields));
        m.insert(keys.level.clone(), s(d.level.as_str()));
        m.insert(keys.time.clone(), s(&gofmt::time_string(d.time)));
        m.insert(
            keys.duration.clone(),
            s(&gofmt::duration_string(d.duration)),
        );
    }
    if scope >= Scope::Details {
        m.insert(keys.message.clone(), s(d.message));
    }
    if scope >= Scope::Handler {
        m.insert(keys.details.clone(), s(d.details));
    }
    Value::Map(Arc::new(m))
}

/// Appends `v` as Go's `fmt` `%v` prints it (`<nil>` for nil, floats the Go
/// way, `map[k:v …]` with sorted keys, `[a b]` for lists).
pub(super) fn write_go(out: &mut String, v: &Value) {
    match v {
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Float(f) => gofmt::write_float_v(out, *f),
        Value::String(x) => out.push_str(x),
        Value::List(_) | Value::Map(_) => write_go_container(out, v, write_go),
        Value::Safe { s, .. } => out.push_str(s),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// A slice (`[a b]`) or map (`map[k:v k:v]`, keys sorted) as Go's `fmt`
/// prints it, each element through `element`.
fn write_go_container(out: &mut String, v: &Value, element: fn(&mut String, &Value)) {
    match v {
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                element(out, item);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                element(out, item);
            }
            out.push(']');
        }
        other => element(out, other),
    }
}

/// Go's `%s` applied through a map or slice: strings print, every other
/// element gets Go's bad-verb form (`%!s(float64=7)`).
fn write_go_s(out: &mut String, v: &Value) {
    match v {
        Value::String(x) | Value::Safe { s: x, .. } => out.push_str(x),
        Value::List(_) | Value::Map(_) => write_go_container(out, v, write_go_s),
        Value::Nil => out.push_str("%!s(<nil>)"),
        other => {
            let ty = match other {
                Value::Bool(_) => "bool",
                Value::Int(_) => "int64",
                Value::Uint(_) => "uint64",
                Value::Float(_) => "float64",
                _ => "func",
            };
            out.push_str("%!s(");
            out.push_str(ty);
            out.push('=');
            write_go(out, other);
            out.push(')');
        }
    }
}

fn go_string(v: &Value) -> String {
    let mut out = String::new();
    write_go(&mut out, v);
    out
}

fn field<'v>(m: &'v Value, k: &str) -> &'v Value {
    static NIL: Value = Value::Nil;
    m.field(k).unwrap_or(&NIL)
}

/// Go's `%v` of Kapacitor's `serverInfo` struct: `{host cluster server}`.
fn write_server_info_struct(out: &mut String, si: &Value) {
    out.push('{');
    for (i, k) in SERVER_INFO_FIELDS.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_go(out, field(si, k));
    }
    out.push('}');
}

/// Go's `%v` of the info struct of `scope`. The structs embed each other
/// (`detailsInfo{messageInfo{idInfo{…} …} Message}`), hence the nested braces.
pub(super) fn write_root_struct(out: &mut String, scope: Scope, root: &Value) {
    let depth = match scope {
        Scope::Id => 1,
        Scope::Message => 2,
        Scope::Details => 3,
        Scope::Handler => 4,
    };
    for _ in 0..depth {
        out.push('{');
    }
    for (i, k) in ID_FIELDS.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if *k == "ServerInfo" {
            write_server_info_struct(out, field(root, k));
        } else {
            write_go(out, field(root, k));
        }
    }
    out.push('}');
    if scope >= Scope::Message {
        for k in MESSAGE_FIELDS.iter() {
            out.push(' ');
            write_go(out, field(root, k));
        }
        out.push('}');
    }
    if scope >= Scope::Details {
        out.push(' ');
        write_go(out, field(root, "Message"));
        out.push('}');
    }
    if scope >= Scope::Handler {
        out.push(' ');
        write_go(out, field(root, "Details"));
        out.push('}');
    }
}

/// A value that cannot be encoded (NaN, ±Inf, a function): Go's
/// `Encoder.Encode` fails and Kapacitor's `json` then yields "".
struct Unencodable;

fn json_value(out: &mut String, v: &Value) -> Result<(), Unencodable> {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Float(f) if f.is_finite() => gofmt::write_float_json(out, *f),
        Value::String(x) => gofmt::write_json_string(out, x),
        Value::Safe { s, .. } => gofmt::write_json_string(out, s),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_value(out, item)?;
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                gofmt::write_json_string(out, k);
                out.push(':');
                json_value(out, item)?;
            }
            out.push('}');
        }
        _ => return Err(Unencodable),
    }
    Ok(())
}

/// `time.Time` marshals as RFC 3339 with nanoseconds; the template data
/// holds its `String()` form, which maps back exactly.
fn json_time(out: &mut String, v: &Value) -> Result<(), Unencodable> {
    let Some(t) = v.as_str() else {
        return json_value(out, v);
    };
    let Some(core) = t.strip_suffix(" +0000 UTC") else {
        return json_value(out, v);
    };
    out.push('"');
    out.push_str(&core.replacen(' ', "T", 1));
    out.push_str("Z\"");
    Ok(())
}

/// `time.Duration` marshals as integer nanoseconds; the template data holds
/// its `String()` form, which maps back exactly.
fn json_duration(out: &mut String, v: &Value) -> Result<(), Unencodable> {
    match v.as_str().and_then(gofmt::parse_duration_string) {
        Some(ns) => {
            let _ = write!(out, "{ns}");
            Ok(())
        }
        None => json_value(out, v),
    }
}

fn json_server_info(out: &mut String, si: &Value) -> Result<(), Unencodable> {
    if !matches!(si, Value::Map(_)) {
        return json_value(out, si);
    }
    out.push('{');
    for (i, k) in SERVER_INFO_FIELDS.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{k}\":");
        json_value(out, field(si, k))?;
    }
    out.push('}');
    Ok(())
}

/// `encoding/json` of the info struct of `scope`: embedded structs are
/// flattened, fields in declaration order.
fn json_root(out: &mut String, scope: Scope, root: &Value) -> Result<(), Unencodable> {
    if !matches!(root, Value::Map(_)) {
        return json_value(out, root);
    }
    out.push('{');
    let mut names: Vec<&str> = ID_FIELDS.to_vec();
    if scope >= Scope::Message {
        names.extend(MESSAGE_FIELDS.iter());
    }
    if scope >= Scope::Details {
        names.push("Message");
    }
    if scope >= Scope::Handler {
        names.push("Details");
    }
    for (i, k) in names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{k}\":");
        let v = field(root, k);
        match *k {
            "ServerInfo" => json_server_info(out, v)?,
            "Time" => json_time(out, v)?,
            "Duration" => json_duration(out, v)?,
            _ => json_value(out, v)?,
        }
    }
    out.push('}');
    Ok(())
}

/// `{{ json . }}` (or `jsonCompact`) rendered by html/template, straight
/// from the data: Kapacitor's encoding of the info struct, then
/// html/template's escaping of that `html.JS` content in HTML text — both
/// in one pass ([`HtmlJson`]), since this renders once per event.
pub(super) fn details_json_root(scope: Scope, compact: bool, d: &TemplateData<'_>) -> String {
    let mut w = HtmlJson {
        out: String::with_capacity(640),
    };
    if w.root(scope, d).is_err() {
        return String::new();
    }
    if !compact {
        w.out.push('\n');
    }
    w.out
}

/// Writes Go's HTML-safe JSON already escaped for HTML text: what
/// `json.Encoder` writes, then `htmlEscaper` (`"` → `&#34;`, `'` → `&#39;`,
/// `+` → `&#43;`; `&`, `<`, `>` and NUL never reach it raw, since the JSON
/// encoder escapes them as `\u00XX`).
struct HtmlJson {
    out: String,
}

impl HtmlJson {
    /// A JSON string: quotes and content, both escapings at once.
    fn string(&mut self, s: &str) {
        crate::gofmt::write_json_escaped::<true>(&mut self.out, s);
    }

    /// Text that needs only the HTML escaping (numbers: `1e+21`).
    fn escaped(&mut self, from: usize) {
        if self.out[from..].contains('+') {
            let tail = self.out.split_off(from);
            self.out.push_str(&tail.replace('+', "&#43;"));
        }
    }

    fn root(&mut self, scope: Scope, d: &TemplateData<'_>) -> Result<(), Unencodable> {
        self.out.push_str("{&#34;Name&#34;:");
        self.string(d.name);
        self.out.push_str(",&#34;TaskName&#34;:");
        self.string(d.task_name);
        self.out.push_str(",&#34;Group&#34;:");
        self.string(group_text(scope, d.group));
        self.out.push_str(",&#34;Tags&#34;:{");
        let mut first = true;
        d.tags.for_each_sorted(|k, v| {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.string(k);
            self.out.push(':');
            self.string(v);
        });
        self.out
            .push_str("},&#34;ServerInfo&#34;:{&#34;Hostname&#34;:");
        self.string(&d.server_info.hostname);
        self.out.push_str(",&#34;ClusterID&#34;:");
        self.string(&d.server_info.cluster_id);
        self.out.push_str(",&#34;ServerID&#34;:");
        self.string(&d.server_info.server_id);
        self.out.push('}');
        if scope >= Scope::Message {
            self.out.push_str(",&#34;ID&#34;:");
            self.string(d.id);
            self.out.push_str(",&#34;Fields&#34;:{");
            let mut first = true;
            let mut bad = false;
            d.fields.for_each_sorted(|k, v| {
                if !first {
                    self.out.push(',');
                }
                first = false;
                self.string(k);
                self.out.push(':');
                match v {
                    FieldRef::Float(f) if !f.is_finite() => bad = true,
                    FieldRef::Float(f) => {
                        let from = self.out.len();
                        gofmt::write_float_json(&mut self.out, f);
                        self.escaped(from);
                    }
                    FieldRef::Int(i) => gofmt::write_int(&mut self.out, i),
                    FieldRef::Str(x) => self.string(x),
                    FieldRef::Bool(b) => self.out.push_str(if b { "true" } else { "false" }),
                }
            });
            if bad {
                return Err(Unencodable);
            }
            self.out.push_str("},&#34;Level&#34;:&#34;");
            self.out.push_str(d.level.as_str());
            self.out.push_str("&#34;,&#34;Time&#34;:&#34;");
            gofmt::write_rfc3339_nano(&mut self.out, d.time);
            self.out.push_str("&#34;,&#34;Duration&#34;:");
            gofmt::write_int(&mut self.out, d.duration);
        }
        if scope >= Scope::Details {
            self.out.push_str(",&#34;Message&#34;:");
            self.string(d.message);
        }
        if scope >= Scope::Handler {
            self.out.push_str(",&#34;Details&#34;:");
            self.string(d.details);
        }
        self.out.push('}');
        Ok(())
    }
}

/// html/template's `htmlEscaper` for non-HTML content in HTML text (the
/// two-pass reference [`HtmlJson`] is tested against).
#[cfg(test)]
fn html_text_escape(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, c) in s.bytes().enumerate() {
        let rep = match c {
            b'"' => "&#34;",
            b'\'' => "&#39;",
            b'&' => "&amp;",
            b'+' => "&#43;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            0 => "\u{FFFD}",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(rep);
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// The reference for [`HtmlJson`]: the info struct as Kapacitor's JSON.
#[cfg(test)]
fn write_root_json_direct(
    out: &mut String,
    scope: Scope,
    d: &TemplateData<'_>,
) -> Result<(), Unencodable> {
    out.push_str("{\"Name\":");
    gofmt::write_json_string(out, d.name);
    out.push_str(",\"TaskName\":");
    gofmt::write_json_string(out, d.task_name);
    out.push_str(",\"Group\":");
    gofmt::write_json_string(out, group_text(scope, d.group));
    out.push_str(",\"Tags\":{");
    for (i, (k, v)) in d.tags.sorted().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        gofmt::write_json_string(out, k);
        out.push(':');
        gofmt::write_json_string(out, v);
    }
    out.push_str("},\"ServerInfo\":{\"Hostname\":");
    gofmt::write_json_string(out, &d.server_info.hostname);
    out.push_str(",\"ClusterID\":");
    gofmt::write_json_string(out, &d.server_info.cluster_id);
    out.push_str(",\"ServerID\":");
    gofmt::write_json_string(out, &d.server_info.server_id);
    out.push('}');
    if scope >= Scope::Message {
        out.push_str(",\"ID\":");
        gofmt::write_json_string(out, d.id);
        out.push_str(",\"Fields\":{");
        for (i, (k, v)) in d.fields.sorted().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            gofmt::write_json_string(out, k);
            out.push(':');
            match *v {
                FieldRef::Float(f) if !f.is_finite() => return Err(Unencodable),
                FieldRef::Float(f) => gofmt::write_float_json(out, f),
                FieldRef::Int(i) => {
                    let _ = write!(out, "{i}");
                }
                FieldRef::Str(x) => gofmt::write_json_string(out, x),
                FieldRef::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            }
        }
        out.push_str("},\"Level\":\"");
        out.push_str(d.level.as_str());
        out.push_str("\",\"Time\":\"");
        gofmt::write_rfc3339_nano(out, d.time);
        let _ = write!(out, "\",\"Duration\":{}", d.duration);
    }
    if scope >= Scope::Details {
        out.push_str(",\"Message\":");
        gofmt::write_json_string(out, d.message);
    }
    if scope >= Scope::Handler {
        out.push_str(",\"Details\":");
        gofmt::write_json_string(out, d.details);
    }
    out.push('}');
    Ok(())
}

/// What the argument of `json`/`jsonCompact` is statically known to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JsonKind {
    Root(Scope),
    ServerInfo,
    Time,
    Duration,
    Any,
}

/// Kapacitor's `json` (`Encoder.Encode`: trailing newline) and `jsonCompact`
/// (`json.Compact` of that: no newline), returned as `html.JS` content.
pub(super) fn json_func(kind: JsonKind, compact: bool, args: &[Value]) -> Result<Value, GoError> {
    let [v] = args else {
        return Err(GoError::Exec(format!(
            "wrong number of args for json: want 1 got {}",
            args.len()
        )));
    };
    let mut out = String::new();
    let ok = match kind {
        JsonKind::Root(scope) => json_root(&mut out, scope, v),
        JsonKind::ServerInfo => json_server_info(&mut out, v),
        JsonKind::Time => json_time(&mut out, v),
        JsonKind::Duration => json_duration(&mut out, v),
        JsonKind::Any => json_value(&mut out, v),
    };
    if ok.is_err() {
        out.clear();
    } else if !compact {
        out.push('\n');
    }
    Ok(Value::Safe {
        kind: gotmpl::SafeKind::Js,
        s: Arc::from(out),
    })
}

/// What a printed value is statically known to be (for struct printing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PrintKind {
    Root(Scope),
    ServerInfo,
    Any,
}

/// The final step of every printing action: Go's formatting of the value,
/// as a string; nil stays nil so the engine prints `<no value>` (text) or
/// nothing (html) as Go does.
pub(super) fn print_func(kind: PrintKind, args: &[Value]) -> Result<Value, GoError> {
    let v = args.last().unwrap_or(&Value::Nil);
    Ok(match (kind, v) {
        (
            _,
            Value::Nil | Value::String(_) | Value::Safe { .. } | Value::Int(_) | Value::Bool(_),
        ) => v.clone(),
        (PrintKind::Root(scope), Value::Map(_)) => {
            let mut out = String::new();
            write_root_struct(&mut out, scope, v);
            s(&out)
        }
        (PrintKind::ServerInfo, Value::Map(_)) => {
            let mut out = String::new();
            write_server_info_struct(&mut out, v);
            s(&out)
        }
        _ => s(&go_string(v)),
    })
}

/// [`print_func`] for html/template. html/template's escapers stringify a
/// float with gotmpl's `Display` in HTML contexts but encode it as a JSON
/// number in JavaScript contexts. A float whose `Display` already is Go's
/// `%v` stays a float, so both contexts print what Go prints; any other
/// (|x| ≥ 1e6 or < 1e-4) becomes its Go text, right for HTML and quoted in
/// JavaScript, where Go would print a number.
pub(super) fn print_html_func(args: &[Value]) -> Result<Value, GoError> {
    if let Some(Value::Float(f)) = args.last()
        && f.to_string() == gofmt::format_float_v(*f)
    {
        return Ok(Value::Float(*f));
    }
    print_func(PrintKind::Any, args)
}

/// `index` on a `map[string]string` (the tags): a missing key gives the zero
/// value `""`, where an interface map gives nil (`<no value>`).
pub(super) fn index_str_func(args: &[Value]) -> Result<Value, GoError> {
    match args {
        [Value::Map(m), Value::String(k)] => {
            Ok(m.get(k.as_ref()).cloned().unwrap_or_else(|| s("")))
        }
        [m, rest @ ..] if !rest.is_empty() => {
            let mut cur = m.clone();
            for k in rest {
                cur = cur.index(k)?;
            }
            Ok(cur)
        }
        _ => Err(GoError::Exec("index: wrong number of args".into())),
    }
}

/// Go's `fmt.Sprint` (`spaces between operands when neither is a string`)
/// and `fmt.Sprintln` (always spaces, trailing newline).
pub(super) fn sprint(args: &[Value], ln: bool) -> String {
    let mut out = String::new();
    let is_str = |v: &Value| matches!(v, Value::String(_) | Value::Safe { .. });
    for (i, a) in args.iter().enumerate() {
        if i > 0 && (ln || (!is_str(a) && !is_str(&args[i - 1]))) {
            out.push(' ');
        }
        write_go(&mut out, a);
    }
    if ln {
        out.push('\n');
    }
    out
}

/// The argument of `html`, `js`, `urlquery`: non-strings formatted as Go
/// formats them before the escaper stringifies them; a missing value is
/// `<no value>`, as Go's `evalArgs` prints it.
///
/// html/template is not consistent here: it turns `{{ html .X }}` into
/// `{{ _eval_args_ .X | html }}`, which prints a missing value as `<nil>`
/// (`nil_text`), while `{{ .X | html }}` keeps `<no value>`.
pub(super) fn go_v_func(kind: PrintKind, nil_text: &str, args: &[Value]) -> Result<Value, GoError> {
    let v = args.last().unwrap_or(&Value::Nil);
    match v {
        Value::Nil => Ok(s(nil_text)),
        Value::String(_) | Value::Safe { .. } => Ok(v.clone()),
        _ => print_func(kind, args),
    }
}

/// One argument of `printf`, adjusted so gotmpl's `printf` prints it as Go
/// would: a float printed with `%v` becomes its Go `%v` string (gotmpl would
/// use Rust's `Display`), maps and lists printed with `%v`/`%s` become Go's
/// `map[…]`/`[…]`. Other verbs (`%f`, `%d`, `%.2f` …) get the value as is.
/// Called as `__kp_pfarg FORMAT N VALUE` for the N-th (1-based) argument.
pub(super) fn printf_arg_func(kind: PrintKind, args: &[Value]) -> Result<Value, GoError> {
    let [Value::String(format), Value::Int(n), v] = args else {
        return Ok(args.last().cloned().unwrap_or(Value::Nil));
    };
    let verb = printf_verbs(format)
        .into_iter()
        .find(|(i, _, _)| *i as i64 == *n - 1);
    let Some((_, verb, _)) = verb else {
        return Ok(v.clone());
    };
    match (verb, v) {
        // `%+v` is Go's "field names" flag: a float prints without a sign.
        ('v', Value::Float(f)) => Ok(s(&gofmt::format_float_v(*f))),
        ('v', Value::Map(_) | Value::List(_)) => print_func(kind, std::slice::from_ref(v)),
        ('s', Value::Map(_) | Value::List(_)) => {
            let mut out = String::new();
            write_go_s(&mut out, v);
            Ok(s(&out))
        }
        _ => Ok(v.clone()),
    }
}

/// The verbs of a Go format string: (argument index, verb, `+` flag), in
/// the order Go's `Printf` consumes arguments (`*` widths take one, `[n]`
/// sets the index, `%%` takes none).
fn printf_verbs(format: &str) -> Vec<(usize, char, bool)> {
    let mut out = Vec::new();
    let chars: Vec<char> = format.chars().collect();
    let mut arg = 0usize;
    let mut i = 0;
    let explicit = |i: &mut usize, arg: &mut usize| {
        if chars.get(*i) == Some(&'[') {
            let end = chars[*i..].iter().position(|c| *c == ']').map(|p| *i + p);
            if let Some(end) = end {
                let n: String = chars[*i + 1..end].iter().collect();
                if let Ok(n) = n.parse::<usize>() {
                    *arg = n.saturating_sub(1);
                }
                *i = end + 1;
            }
        }
    };
    while i < chars.len() {
        if chars[i] != '%' {
            i += 1;
            continue;
        }
        i += 1;
        let mut plus = false;
        while let Some(c) = chars.get(i) {
            match c {
                '+' => plus = true,
                '-' | '#' | ' ' | '0' => {}
                _ => break,
            }
            i += 1;
        }
        explicit(&mut i, &mut arg);
        if chars.get(i) == Some(&'*') {
            arg += 1;
            i += 1;
        } else {
            while chars.get(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
        }
        if chars.get(i) == Some(&'.') {
            i += 1;
            explicit(&mut i, &mut arg);
            if chars.get(i) == Some(&'*') {
                arg += 1;
                i += 1;
            } else {
                while chars.get(i).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                }
            }
        }
        explicit(&mut i, &mut arg);
        let Some(&verb) = chars.get(i) else { break };
        i += 1;
        if verb == '%' {
            continue;
        }
        out.push((arg, verb, plus));
        arg += 1;
    }
    out
}

fn method_error(recv: &str, args: &[Value]) -> GoError {
    GoError::Exec(format!("wrong arguments for {recv} method: {args:?}"))
}

/// `.Time.M args…` → `__kp_time "M" .Time args…`: Go's `time.Time` methods
/// on the time the data holds as its `String()` text (always UTC).
pub(super) fn time_method_func(args: &[Value]) -> Result<Value, GoError> {
    let (Some(Value::String(m)), Some(t)) = (args.first(), args.get(1)) else {
        return Err(method_error("time.Time", args));
    };
    let ns = t
        .as_str()
        .and_then(gofmt::parse_time_string)
        .ok_or_else(|| method_error("time.Time", args))?;
    let c = gofmt::Civil::from_unix_nanos(ns);
    let rest = &args[2..];
    let int = |v: i64| Ok(Value::Int(v));
    match (m.as_ref(), rest) {
        ("Format", [Value::String(layout)]) => Ok(s(&gofmt::format_go_layout(ns, layout))),
        ("String" | "UTC", []) => Ok(t.clone()),
        ("Month", []) => Ok(s(c.month_name())),
        ("Weekday", []) => Ok(s(c.weekday_name())),
        ("Unix", []) => int(ns.div_euclid(1_000_000_000)),
        ("UnixMilli", []) => int(ns.div_euclid(1_000_000)),
        ("UnixMicro", []) => int(ns.div_euclid(1_000)),
        ("UnixNano", []) => int(ns),
        ("Year", []) => int(c.year),
        ("Day", []) => int(c.day.into()),
        ("Hour", []) => int(c.hour.into()),
        ("Minute", []) => int(c.minute.into()),
        ("Second", []) => int(c.second.into()),
        ("Nanosecond", []) => int(c.nanosecond.into()),
        ("YearDay", []) => int(c.yearday.into()),
        _ => Err(method_error("time.Time", args)),
    }
}

/// `.Duration.M` → `__kp_dur "M" .Duration`: Go's `time.Duration` methods.
pub(super) fn duration_method_func(args: &[Value]) -> Result<Value, GoError> {
    let (Some(Value::String(m)), Some(d), []) =
        (args.first(), args.get(1), args.get(2..).unwrap_or(&[]))
    else {
        return Err(method_error("time.Duration", args));
    };
    let ns = d
        .as_str()
        .and_then(gofmt::parse_duration_string)
        .ok_or_else(|| method_error("time.Duration", args))?;
    // Go splits whole and fractional parts to keep float precision.
    let split = |unit: i64| {
        let (whole, frac) = (ns / unit, ns % unit);
        Value::Float(whole as f64 + frac as f64 / unit as f64)
    };
    match m.as_ref() {
        "String" => Ok(d.clone()),
        "Seconds" => Ok(split(1_000_000_000)),
        "Minutes" => Ok(split(60_000_000_000)),
        "Hours" => Ok(split(3_600_000_000_000)),
        "Nanoseconds" => Ok(Value::Int(ns)),
        "Microseconds" => Ok(Value::Int(ns / 1_000)),
        "Milliseconds" => Ok(Value::Int(ns / 1_000_000)),
        _ => Err(method_error("time.Duration", args)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_verb_scan() {
        assert_eq!(
            printf_verbs("%v %.2f"),
            vec![(0, 'v', false), (1, 'f', false)]
        );
        assert_eq!(
            printf_verbs("%% %+v %*d"),
            vec![(0, 'v', true), (2, 'd', false)]
        );
        assert_eq!(
            printf_verbs("%[2]v %[1]s"),
            vec![(1, 'v', false), (0, 's', false)]
        );
        assert_eq!(printf_verbs("%-10.3v|"), vec![(0, 'v', false)]);
    }

    #[test]
    fn go_printing_of_values() {
        let mut m = BTreeMap::new();
        m.insert(Arc::from("b"), Value::Float(1e6));
        m.insert(
            Arc::from("a"),
            Value::List(vec![Value::Int(1), Value::Nil].into()),
        );
        assert_eq!(
            go_string(&Value::Map(Arc::new(m))),
            "map[a:[1 <nil>] b:1e+06]"
        );
        assert_eq!(
            sprint(
                &[Value::Float(1.5), Value::Float(2.0), s("x"), Value::Int(3)],
                false
            ),
            "1.5 2x3"
        );
        assert_eq!(sprint(&[s("a"), s("b")], true), "a b\n");
    }

    /// The one-pass writer of the default details agrees with the JSON
    /// encoding followed by html/template's escaping, on awkward text.
    #[test]
    fn one_pass_details_match_the_two_pass_reference() {
        use crate::alert::{Level, ServerInfo};
        use std::collections::HashMap;
        let texts = [
            "",
            "plain",
            "q\"uote's + <b>&amp;</b>",
            "ctl\u{0}\u{1}\n\r\t\\ end",
            "sep\u{2028}x\u{2029}é😀",
            "\u{e2}\u{80}",
        ];
        let floats = [
            0.0, -0.0, 42.0, -7.0, 1.5, 1e21, 1e-7, 123456.789, 1e15, 3e20, 0.1,
        ];
        for (i, t) in texts.iter().enumerate() {
            for f in floats {
                let mut p = crate::proto::Point::default();
                p.fields_double.insert(format!("f{t}"), f);
                p.fields_int.insert("i".into(), -(i as i64) * 1_000_000_007);
                p.fields_string.insert("s".into(), t.to_string());
                p.fields_bool.insert("b+".into(), i % 2 == 0);
                let mut tags = HashMap::new();
                tags.insert("host".to_string(), t.to_string());
                tags.insert(format!("k{t}"), "v'".to_string());
                let info = ServerInfo {
                    hostname: t.to_string(),
                    cluster_id: "c+1".into(),
                    server_id: String::new(),
                };
                for scope in [Scope::Id, Scope::Message, Scope::Details, Scope::Handler] {
                    let d = TemplateData {
                        name: t,
                        task_name: "task\"",
                        group: if i == 0 { "" } else { t },
                        tags: Tags::Unsorted(&tags),
                        server_info: &info,
                        id: t,
                        fields: Fields::Point(&p),
                        level: Level::ALL[i % 4],
                        time: 1_700_000_000_123_456_789 - (i as i64) * 86_400_000_000_007,
                        duration: -(i as i64) * 999,
                        message: t,
                        details: "<d+>",
                    };
                    let mut json = String::new();
                    assert!(write_root_json_direct(&mut json, scope, &d).is_ok());
                    json.push('\n');
                    let mut want = String::new();
                    html_text_escape(&mut want, &json);
                    assert_eq!(details_json_root(scope, false, &d), want, "{t:?} {f}");
                    assert_eq!(
                        details_json_root(scope, true, &d),
                        want.trim_end_matches('\n'),
                    );
                }
            }
        }
        // A non-finite field cannot be encoded: the details are empty.
        let mut p = crate::proto::Point::default();
        p.fields_double.insert("x".into(), f64::NAN);
        let tags = HashMap::new();
        let info = ServerInfo::default();
        let d = TemplateData {
            name: "n",
            task_name: "t",
            group: "",
            tags: Tags::Unsorted(&tags),
            server_info: &info,
            id: "",
            fields: Fields::Point(&p),
            level: Level::OK,
            time: 0,
            duration: 0,
            message: "",
            details: "",
        };
        assert_eq!(details_json_root(Scope::Details, false, &d), "");
    }

    #[test]
    fn json_of_values() {
        let v =
            Value::List(vec![Value::Float(1e-7), s("<&>"), Value::Nil, Value::Bool(true)].into());
        let out = json_func(JsonKind::Any, false, &[v]).unwrap();
        let Value::Safe { s, .. } = out else {
            panic!("not safe")
        };
        assert_eq!(&*s, "[1e-7,\"\\u003c\\u0026\\u003e\",null,true]\n");
        let Value::Safe { s, .. } =
            json_func(JsonKind::Any, true, &[Value::Float(f64::NAN)]).unwrap()
        else {
            panic!("not safe")
        };
        assert_eq!(&*s, "");
        let Value::Safe { s, .. } = json_func(
            JsonKind::Time,
            true,
            &[super::s("1971-01-01 00:00:10.5 +0000 UTC")],
        )
        .unwrap() else {
            panic!("not safe")
        };
        assert_eq!(&*s, "\"1971-01-01T00:00:10.5Z\"");
        let Value::Safe { s, .. } =
            json_func(JsonKind::Duration, true, &[super::s("1h2m3.5s")]).unwrap()
        else {
            panic!("not safe")
        };
        assert_eq!(&*s, "3723500000000");
    }
}
