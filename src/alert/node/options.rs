//! The node's options: what `Info` declares and how `Init` reads and
//! validates them (docs/tickscript-interface.md fixes every name, type and
//! default). Every refusal names the option and says why, because the text is
//! what the user reads in `kapacitor show`.

use std::sync::Arc;

use crate::alert::state::{DEFAULT_HISTORY, MAX_HISTORY, MIN_HISTORY, StateRules};
use crate::alert::{Destinations, Format, Level, Route};
use crate::proto::option_value::Value;
use crate::proto::{EdgeType, InfoResponse, InitRequest, OptionInfo, OptionValue, ValueType};

/// An option `Init` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {reason}")]
pub struct InitError {
    /// The option's name as written in the TICKscript (or `options` for the whole set).
    pub option: String,
    pub reason: String,
}

impl InitError {
    pub fn new(option: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            option: option.into(),
            reason: reason.into(),
        }
    }
}

/// One declared option: its name, argument types, and whether only the batch
/// function (`@pagertreeBatch()`) has it.
struct Spec {
    name: &'static str,
    types: &'static [ValueType],
    batch_only: bool,
}

/// Argument lists: one string, two strings, none (a flag).
const ONE_STRING: &[ValueType] = &[ValueType::String];
const TWO_STRINGS: &[ValueType] = &[ValueType::String, ValueType::String];
const FLAG: &[ValueType] = &[];

/// The most bytes one string option (a template, an expression, a URL, a
/// name) may have. The largest real template is a few KB; 64 KiB is ten
/// times that, and bounds what one Init makes the agent compile (a 2 MB
/// template took seconds and a GB before this bound; issue 13 item 6).
pub const MAX_OPTION_BYTES: usize = 64 * 1024;
/// The most bytes all the options of one Init may have together (names and
/// string values): sixteen options at the per-option limit.
pub const MAX_INIT_OPTIONS_BYTES: usize = 1024 * 1024;

/// Every option a `@pagertree()` node declares (README, *TICKscript
/// reference*).
const SPECS: &[Spec] = &[
    // Mode 1: level expressions.
    Spec {
        name: "info",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "warn",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "crit",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "infoReset",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "warnReset",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "critReset",
        types: ONE_STRING,
        batch_only: false,
    },
    // State rules.
    Spec {
        name: "stateChangesOnly",
        types: FLAG,
        batch_only: false,
    },
    Spec {
        name: "renotifyEvery",
        types: &[ValueType::Duration],
        batch_only: false,
    },
    Spec {
        name: "flapping",
        types: &[ValueType::Double, ValueType::Double],
        batch_only: false,
    },
    Spec {
        name: "history",
        types: &[ValueType::Int],
        batch_only: false,
    },
    Spec {
        name: "noRecoveries",
        types: FLAG,
        batch_only: false,
    },
    Spec {
        name: "all",
        types: FLAG,
        batch_only: true,
    },
    // Text.
    Spec {
        name: "id",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "message",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "details",
        types: ONE_STRING,
        batch_only: false,
    },
    // Inhibition.
    Spec {
        name: "category",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "inhibit",
        types: TWO_STRINGS,
        batch_only: false,
    },
    // Augmentation of emitted data.
    Spec {
        name: "idTag",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "idField",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "levelTag",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "levelField",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "messageField",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "durationField",
        types: ONE_STRING,
        batch_only: false,
    },
    // Mode 2.
    Spec {
        name: "levelFrom",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "idFrom",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "messageFrom",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "detailsFrom",
        types: ONE_STRING,
        batch_only: false,
    },
    // Delivery.
    Spec {
        name: "url",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "endpoint",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "format",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "urgency",
        types: TWO_STRINGS,
        batch_only: false,
    },
    Spec {
        name: "tags",
        types: ONE_STRING,
        batch_only: false,
    },
    Spec {
        name: "dryRun",
        types: FLAG,
        batch_only: false,
    },
];

/// PagerTree's urgencies, as its webhook integration spells them.
pub const URGENCIES: [&str; 4] = ["low", "medium", "high", "critical"];

/// The `InfoResponse` for a socket of `edge`: wants and provides that edge,
/// and declares every option with its exact value types.
pub fn info(edge: EdgeType) -> InfoResponse {
    let options = SPECS
        .iter()
        .filter(|s| !s.batch_only || edge == EdgeType::Batch)
        .map(|s| {
            (
                s.name.to_string(),
                OptionInfo {
                    value_types: s.types.iter().map(|t| *t as i32).collect(),
                },
            )
        })
        .collect();
    InfoResponse {
        wants: edge as i32,
        provides: edge as i32,
        options,
    }
}

/// `.inhibit(category, tags)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InhibitSpec {
    pub category: String,
    /// Tag names whose values must be equal; may be empty.
    pub tags: Vec<String>,
}

/// Every option of one node, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeOptions {
    /// Level expressions (TICKscript lambda text) indexed by [`Level`] (index 0 unused).
    pub levels: [Option<String>; 4],
    /// Reset expressions indexed by [`Level`] (index 0 unused).
    pub resets: [Option<String>; 4],
    pub rules: StateRules,
    pub all: bool,
    pub id: Option<String>,
    pub message: Option<String>,
    pub details: Option<String>,
    pub category: Option<String>,
    pub inhibit: Vec<InhibitSpec>,
    pub id_tag: Option<String>,
    pub id_field: Option<String>,
    pub level_tag: Option<String>,
    pub level_field: Option<String>,
    pub message_field: Option<String>,
    pub duration_field: Option<String>,
    pub level_from: Option<String>,
    pub id_from: Option<String>,
    pub message_from: Option<String>,
    pub details_from: Option<String>,
    pub route: Arc<Route>,
}

impl NodeOptions {
    /// Mode 2: the level is read from the points.
    pub fn mode2(&self) -> bool {
        self.level_from.is_some()
    }
}

/// What `parse` noticed that is not an error but should be logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings(pub Vec<String>);

const LEVEL_OPTIONS: [(&str, usize); 3] = [("info", 1), ("warn", 2), ("crit", 3)];
const RESET_OPTIONS: [(&str, usize); 3] = [("infoReset", 1), ("warnReset", 2), ("critReset", 3)];

/// Reads and validates an `InitRequest`'s options for a node on `edge`.
/// `destinations` decides whether the node has somewhere to send to.
pub fn parse(
    edge: EdgeType,
    req: &InitRequest,
    destinations: &Destinations,
) -> Result<(NodeOptions, Warnings), InitError> {
    let mut o = NodeOptions::default();
    let mut route = Route::default();
    let mut warnings = Warnings::default();
    let mut history: Option<i64> = None;
    let mut flapping: Option<(f64, f64)> = None;
    let mut renotify: Option<i64> = None;
    let mut state_changes_only = false;
    let mut no_recoveries = false;

    check_sizes(req)?;
    for opt in &req.options {
        let name = opt.name.as_str();
        let Some(spec) = SPECS.iter().find(|s| s.name == name) else {
            return Err(unknown_option(edge, name));
        };
        if spec.batch_only && edge != EdgeType::Batch {
            return Err(InitError::new(
                name,
                "only a batch node has it (@pagertreeBatch()): a stream point is one point, there is no \"all points\"",
            ));
        }
        check_types(spec, &opt.values)?;
        let v = &opt.values;
        let string = |i: usize| -> String {
            match v.get(i).and_then(|x| x.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                _ => String::new(),
            }
        };
        match name {
            "info" | "warn" | "crit" => {
                let l = LEVEL_OPTIONS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, l)| *l);
                o.levels[l] = Some(non_empty(
                    name,
                    string(0),
                    "a lambda expression such as '\"value\" > 90'",
                )?);
            }
            "infoReset" | "warnReset" | "critReset" => {
                let l = RESET_OPTIONS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, l)| *l);
                o.resets[l] = Some(non_empty(
                    name,
                    string(0),
                    "a lambda expression such as '\"value\" < 50'",
                )?);
            }
            "stateChangesOnly" => state_changes_only = true,
            "renotifyEvery" => {
                let d = match v[0].value {
                    Some(Value::DurationValue(d)) => d,
                    _ => 0,
                };
                if d <= 0 {
                    return Err(InitError::new(
                        name,
                        format!("{d}ns is not a positive duration; write e.g. .renotifyEvery(10m)"),
                    ));
                }
                renotify = Some(d);
            }
            "flapping" => {
                let (low, high) = match (&v[0].value, &v[1].value) {
                    (Some(Value::DoubleValue(a)), Some(Value::DoubleValue(b))) => (*a, *b),
                    _ => (f64::NAN, f64::NAN),
                };
                for (which, x) in [("low", low), ("high", high)] {
                    if !(0.0..=1.0).contains(&x) {
                        return Err(InitError::new(
                            name,
                            format!(
                                "the {which} threshold {x} is not between 0 and 1: thresholds are fractions of state changes, e.g. .flapping(0.25, 0.5)"
                            ),
                        ));
                    }
                }
                if low > high {
                    return Err(InitError::new(
                        name,
                        format!(
                            "the low threshold {low} is above the high threshold {high}; write .flapping(low, high)"
                        ),
                    ));
                }
                flapping = Some((low, high));
            }
            "history" => {
                history = Some(match v[0].value {
                    Some(Value::IntValue(n)) => n,
                    _ => 0,
                })
            }
            "noRecoveries" => no_recoveries = true,
            "all" => o.all = true,
            "id" => o.id = Some(string(0)),
            "message" => o.message = Some(string(0)),
            "details" => o.details = Some(string(0)),
            "category" => o.category = Some(string(0)),
            "inhibit" => {
                let category = non_empty(name, string(0), "a category name as its first argument")?;
                o.inhibit.push(InhibitSpec {
                    category,
                    tags: split_names(&string(1)),
                });
            }
            "idTag" => o.id_tag = Some(non_empty(name, string(0), "a tag name")?),
            "idField" => o.id_field = Some(non_empty(name, string(0), "a field name")?),
            "levelTag" => o.level_tag = Some(non_empty(name, string(0), "a tag name")?),
            "levelField" => o.level_field = Some(non_empty(name, string(0), "a field name")?),
            "messageField" => o.message_field = Some(non_empty(name, string(0), "a field name")?),
            "durationField" => o.duration_field = Some(non_empty(name, string(0), "a field name")?),
            "levelFrom" => o.level_from = Some(non_empty(name, string(0), "a tag or field name")?),
            "idFrom" => o.id_from = Some(non_empty(name, string(0), "a tag or field name")?),
            "messageFrom" => {
                o.message_from = Some(non_empty(name, string(0), "a tag or field name")?)
            }
            "detailsFrom" => {
                o.details_from = Some(non_empty(name, string(0), "a tag or field name")?)
            }
            "url" => {
                let url = string(0);
                check_url(&url)?;
                route.url = Some(url);
            }
            "endpoint" => {
                route.endpoint = Some(non_empty(
                    name,
                    string(0),
                    "the name of an [endpoints.NAME] table",
                )?)
            }
            "format" => {
                let f = string(0);
                route.format = Some(Format::parse(&f).ok_or_else(|| {
                    InitError::new(
                        name,
                        format!("{f:?} is not a format; use 'kapacitor' or 'webhook'"),
                    )
                })?);
            }
            "urgency" => {
                let (level, urgency) = (string(0), string(1));
                let l = Level::parse(&level)
                    .filter(|l| *l != Level::OK)
                    .ok_or_else(|| {
                        InitError::new(
                            name,
                            format!(
                                "{level:?} is not a level that pages; use INFO, WARNING or CRITICAL"
                            ),
                        )
                    })?;
                if !URGENCIES.contains(&urgency.as_str()) {
                    return Err(InitError::new(
                        name,
                        format!(
                            "{urgency:?} is not a PagerTree urgency; use one of {}",
                            URGENCIES.join(", ")
                        ),
                    ));
                }
                route.urgency.push((l, urgency));
            }
            "tags" => route.tags = split_names(&string(0)),
            "dryRun" => route.dry_run = true,
            _ => return Err(unknown_option(edge, name)),
        }
    }

    // Combinations.
    if let Some(from) = &o.level_from {
        let _ = from;
        let mode1 = LEVEL_OPTIONS
            .iter()
            .chain(RESET_OPTIONS.iter())
            .find(|(n, l)| {
                if n.ends_with("Reset") {
                    o.resets[*l].is_some()
                } else {
                    o.levels[*l].is_some()
                }
            });
        if let Some((other, _)) = mode1 {
            return Err(InitError::new(
                "levelFrom",
                format!(
                    "cannot be combined with {other}: levelFrom reads each point's level (mode 2), {other} computes it (mode 1); keep one of them"
                ),
            ));
        }
    } else {
        for from in [
            ("idFrom", &o.id_from),
            ("messageFrom", &o.message_from),
            ("detailsFrom", &o.details_from),
        ] {
            if from.1.is_some() {
                return Err(InitError::new(
                    from.0,
                    "only works with levelFrom (mode 2, following an upstream |alert()); without it use the id/message/details templates",
                ));
            }
        }
    }
    for (reset, l) in RESET_OPTIONS {
        if o.resets[l].is_some() && o.levels[l].is_none() {
            let level = LEVEL_OPTIONS[l - 1].0;
            return Err(InitError::new(
                reset,
                format!(
                    "given without {level}: a reset only decides when to leave the {level} level, so it needs {level}"
                ),
            ));
        }
    }

    let history = match history {
        None => DEFAULT_HISTORY,
        Some(n) if n < MIN_HISTORY as i64 => {
            warnings.0.push(format!(
                "history: {n} is below {MIN_HISTORY}; using {MIN_HISTORY}, as Kapacitor does"
            ));
            MIN_HISTORY
        }
        Some(n) if n > MAX_HISTORY as i64 => {
            return Err(InitError::new(
                "history",
                format!(
                    "{n} is above {MAX_HISTORY}: each group keeps that many levels; Kapacitor's default is 21"
                ),
            ));
        }
        Some(n) => n as usize,
    };
    o.rules = StateRules {
        history,
        flapping,
        state_changes_only: state_changes_only || renotify.is_some(),
        renotify_every: renotify.unwrap_or(0),
        no_recoveries,
    };

    check_destination(&route, destinations)?;
    if route.format.is_none()
        && let Some(format) = route
            .endpoint
            .as_ref()
            .and_then(|n| destinations.endpoints.get(n))
    {
        route.format = Some(*format);
    }
    if !route.urgency.is_empty()
        && route.format != Some(Format::Webhook)
        && !default_is_webhook(&route, destinations)
    {
        warnings.0.push(
            "urgency: only the webhook format uses it; this node sends the kapacitor format".into(),
        );
    }
    o.route = Arc::new(route);
    Ok((o, warnings))
}

fn default_is_webhook(route: &Route, destinations: &Destinations) -> bool {
    route.endpoint.is_none()
        && destinations
            .endpoints
            .get(&destinations.default_endpoint)
            .is_some_and(|f| *f == Format::Webhook)
}

/// Refuses an Init whose options are too large, before anything is parsed
/// or compiled: names the option, its size and the limit.
fn check_sizes(req: &InitRequest) -> Result<(), InitError> {
    let mut total = 0usize;
    for opt in &req.options {
        total = total.saturating_add(opt.name.len());
        for v in &opt.values {
            if let Some(Value::StringValue(s)) = &v.value {
                if s.len() > MAX_OPTION_BYTES {
                    // The name is the peer's text: cut it so the refusal stays short.
                    let name: String = opt.name.chars().take(64).collect();
                    return Err(InitError::new(
                        name,
                        format!(
                            "is {} bytes; an option takes at most {MAX_OPTION_BYTES} bytes (64 KiB)",
                            s.len()
                        ),
                    ));
                }
                total = total.saturating_add(s.len());
            }
        }
    }
    if total > MAX_INIT_OPTIONS_BYTES {
        return Err(InitError::new(
            "options",
            format!(
                "are {total} bytes together; one Init takes at most {MAX_INIT_OPTIONS_BYTES} bytes (1 MiB) of options"
            ),
        ));
    }
    Ok(())
}

fn unknown_option(edge: EdgeType, name: &str) -> InitError {
    let mut known: Vec<&str> = SPECS
        .iter()
        .filter(|s| !s.batch_only || edge == EdgeType::Batch)
        .map(|s| s.name)
        .collect();
    known.sort_unstable();
    InitError::new(
        name,
        format!("unknown option; the options are {}", known.join(", ")),
    )
}

fn type_name(t: i32) -> &'static str {
    match ValueType::try_from(t) {
        Ok(ValueType::Bool) => "BOOL",
        Ok(ValueType::Int) => "INT",
        Ok(ValueType::Double) => "DOUBLE",
        Ok(ValueType::String) => "STRING",
        Ok(ValueType::Duration) => "DURATION",
        Err(_) => "an unknown type",
    }
}

fn value_type(v: &OptionValue) -> Option<ValueType> {
    Some(match v.value.as_ref()? {
        Value::BoolValue(_) => ValueType::Bool,
        Value::IntValue(_) => ValueType::Int,
        Value::DoubleValue(_) => ValueType::Double,
        Value::StringValue(_) => ValueType::String,
        Value::DurationValue(_) => ValueType::Duration,
    })
}

fn signature(types: &[ValueType]) -> String {
    if types.is_empty() {
        "no arguments".into()
    } else {
        let names: Vec<&str> = types.iter().map(|t| type_name(*t as i32)).collect();
        format!("({})", names.join(", "))
    }
}

fn check_types(spec: &Spec, values: &[OptionValue]) -> Result<(), InitError> {
    if values.len() != spec.types.len() {
        return Err(InitError::new(
            spec.name,
            format!(
                "takes {} but was given {} argument(s)",
                signature(spec.types),
                values.len()
            ),
        ));
    }
    for (i, (want, v)) in spec.types.iter().zip(values).enumerate() {
        let got = value_type(v);
        if got != Some(*want) || v.r#type != *want as i32 {
            let got = got.map_or("no value", |g| type_name(g as i32));
            return Err(InitError::new(
                spec.name,
                format!(
                    "argument {} must be {} but is {got}; it takes {}",
                    i + 1,
                    type_name(*want as i32),
                    signature(spec.types)
                ),
            ));
        }
    }
    Ok(())
}

fn non_empty(option: &str, s: String, what: &str) -> Result<String, InitError> {
    if s.trim().is_empty() {
        Err(InitError::new(option, format!("is empty; it takes {what}")))
    } else {
        Ok(s)
    }
}

/// Comma-separated names, trimmed, empty ones dropped.
fn split_names(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

/// `.url()` must parse as an absolute http(s) URL with a host (what the
/// HTTP client will need at delivery), else Init refuses it. The refusal
/// shows the URL redacted: it is a credential.
fn check_url(url: &str) -> Result<(), InitError> {
    let why = match reqwest::Url::parse(url) {
        _ if url.chars().any(char::is_whitespace) => "it contains white space".to_string(),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            format!("the scheme is {:?}", u.scheme())
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => "it has no host".to_string(),
        Ok(_) => return Ok(()),
        Err(e) => format!("it does not parse ({e})"),
    };
    Err(InitError::new(
        "url",
        format!(
            "the value is not an http(s) URL such as 'https://api.pagertree.com/integration/int_xxx': {why} \
             (not shown: a URL may hold a secret)"
        ),
    ))
}

fn check_destination(route: &Route, destinations: &Destinations) -> Result<(), InitError> {
    if let Some(name) = &route.endpoint
        && !destinations.endpoints.contains_key(name)
    {
        let mut known: Vec<&str> = destinations.endpoints.keys().map(String::as_str).collect();
        known.sort_unstable();
        let known = if known.is_empty() {
            "the config defines none".to_string()
        } else {
            format!("known: {}", known.join(", "))
        };
        return Err(InitError::new(
            "endpoint",
            format!("no endpoint named {name:?} in the agent's config ({known})"),
        ));
    }
    if route.url.is_none() && route.endpoint.is_none() && !route.dry_run {
        let default = &destinations.default_endpoint;
        if default.is_empty() {
            return Err(InitError::new(
                "url",
                "this node has nowhere to send: give .url('https://…') or .endpoint('name'), or set [delivery] default_endpoint in the agent's config (or use .dryRun())",
            ));
        }
        if !destinations.endpoints.contains_key(default) {
            return Err(InitError::new(
                "endpoint",
                format!(
                    "the config's default_endpoint {default:?} names no [endpoints.{default}] table"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Option as Opt;

    fn s(v: &str) -> OptionValue {
        OptionValue {
            r#type: ValueType::String as i32,
            value: Some(Value::StringValue(v.into())),
        }
    }
    fn d(v: f64) -> OptionValue {
        OptionValue {
            r#type: ValueType::Double as i32,
            value: Some(Value::DoubleValue(v)),
        }
    }
    fn i(v: i64) -> OptionValue {
        OptionValue {
            r#type: ValueType::Int as i32,
            value: Some(Value::IntValue(v)),
        }
    }
    fn dur(v: i64) -> OptionValue {
        OptionValue {
            r#type: ValueType::Duration as i32,
            value: Some(Value::DurationValue(v)),
        }
    }
    fn opt(name: &str, values: Vec<OptionValue>) -> Opt {
        Opt {
            name: name.into(),
            values,
        }
    }
    fn req(mut opts: Vec<Opt>) -> InitRequest {
        opts.insert(0, opt("dryRun", vec![]));
        InitRequest {
            options: opts,
            task_id: "t".into(),
            node_id: "n".into(),
        }
    }
    fn parse_stream(opts: Vec<Opt>) -> Result<NodeOptions, String> {
        parse(EdgeType::Stream, &req(opts), &Destinations::default())
            .map(|x| x.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn oversized_options_are_refused_with_size_and_limit() {
        let big = "x".repeat(MAX_OPTION_BYTES + 1);
        let e = parse_stream(vec![opt("message", vec![s(&big)])]).unwrap_err();
        assert!(e.starts_with("message: is 65537 bytes"), "{e}");
        assert!(e.contains("at most 65536 bytes"), "{e}");
        // At the limit: accepted by the size check (parsed as usual).
        let at = "x".repeat(MAX_OPTION_BYTES);
        assert!(parse_stream(vec![opt("message", vec![s(&at)])]).is_ok());
        // Many options each under the limit, over the total.
        let opts = (0..20)
            .map(|_| opt("message", vec![s(&at)]))
            .collect::<Vec<_>>();
        let e = parse_stream(opts).unwrap_err();
        assert!(e.starts_with("options: are "), "{e}");
        assert!(e.contains("at most 1048576 bytes"), "{e}");
    }

    #[test]
    fn info_declares_every_option_with_types() {
        let stream = info(EdgeType::Stream);
        let batch = info(EdgeType::Batch);
        assert_eq!(stream.wants, EdgeType::Stream as i32);
        assert_eq!(batch.provides, EdgeType::Batch as i32);
        assert!(!stream.options.contains_key("all"));
        assert_eq!(batch.options["all"].value_types, Vec::<i32>::new());
        assert_eq!(batch.options.len(), stream.options.len() + 1);
        assert_eq!(
            stream.options["flapping"].value_types,
            vec![ValueType::Double as i32; 2]
        );
        assert_eq!(
            stream.options["renotifyEvery"].value_types,
            vec![ValueType::Duration as i32]
        );
        assert_eq!(
            stream.options["history"].value_types,
            vec![ValueType::Int as i32]
        );
        assert_eq!(
            stream.options["inhibit"].value_types,
            vec![ValueType::String as i32; 2]
        );
        assert_eq!(
            stream.options["urgency"].value_types,
            vec![ValueType::String as i32; 2]
        );
        for name in [
            "crit",
            "levelFrom",
            "idFrom",
            "url",
            "endpoint",
            "format",
            "tags",
            "durationField",
        ] {
            assert_eq!(
                stream.options[name].value_types,
                vec![ValueType::String as i32],
                "{name}"
            );
        }
        assert_eq!(stream.options["dryRun"].value_types, Vec::<i32>::new());
    }

    #[test]
    fn unknown_option_is_named() {
        let e = parse_stream(vec![opt("crti", vec![s("x")])]).unwrap_err();
        assert!(e.starts_with("crti: unknown option"), "{e}");
        assert!(e.contains("crit"), "{e}");
    }

    #[test]
    fn wrong_types_and_arity() {
        let e = parse_stream(vec![opt("history", vec![s("21")])]).unwrap_err();
        assert_eq!(
            e,
            "history: argument 1 must be INT but is STRING; it takes (INT)"
        );
        let e = parse_stream(vec![opt("flapping", vec![d(0.2)])]).unwrap_err();
        assert_eq!(
            e,
            "flapping: takes (DOUBLE, DOUBLE) but was given 1 argument(s)"
        );
        let e = parse_stream(vec![opt("stateChangesOnly", vec![i(1)])]).unwrap_err();
        assert!(e.starts_with("stateChangesOnly: takes no arguments"), "{e}");
    }

    #[test]
    fn level_from_with_crit_names_both() {
        let e = parse_stream(vec![
            opt("crit", vec![s("\"v\" > 1")]),
            opt("levelFrom", vec![s("level")]),
        ])
        .unwrap_err();
        assert!(
            e.starts_with("levelFrom: cannot be combined with crit"),
            "{e}"
        );
        let e = parse_stream(vec![
            opt("levelFrom", vec![s("level")]),
            opt("warnReset", vec![s("x")]),
        ])
        .unwrap_err();
        assert!(e.contains("warnReset"), "{e}");
    }

    #[test]
    fn all_refused_on_stream() {
        let e = parse_stream(vec![opt("all", vec![])]).unwrap_err();
        assert!(e.starts_with("all: only a batch node"), "{e}");
        let ok = parse(
            EdgeType::Batch,
            &req(vec![opt("all", vec![])]),
            &Destinations::default(),
        )
        .unwrap();
        assert!(ok.0.all);
    }

    #[test]
    fn url_must_parse_and_is_never_shown() {
        let e = parse_stream(vec![opt(
            "url",
            vec![s("http://bob:pw@[::1/integration/int_SECRET99?token=tok")],
        )])
        .unwrap_err();
        assert!(e.starts_with("url: the value is not an http(s) URL"), "{e}");
        assert!(e.contains("does not parse"), "{e}");
        for secret in ["bob", "pw@", "SECRET99", "tok"] {
            assert!(!e.contains(secret), "{secret} in {e}");
        }
    }

    #[test]
    fn url_must_be_http() {
        let e = parse_stream(vec![opt("url", vec![s("ftp://x")])]).unwrap_err();
        assert!(
            e.starts_with("url: the value is not an http(s) URL") && !e.contains("ftp://x"),
            "{e}"
        );
        assert!(
            parse_stream(vec![opt(
                "url",
                vec![s("https://api.pagertree.com/integration/int_1")]
            )])
            .is_ok()
        );
    }

    #[test]
    fn flapping_bounds() {
        let e = parse_stream(vec![opt("flapping", vec![d(0.2), d(1.5)])]).unwrap_err();
        assert!(
            e.contains("high threshold 1.5 is not between 0 and 1"),
            "{e}"
        );
        let e = parse_stream(vec![opt("flapping", vec![d(0.6), d(0.5)])]).unwrap_err();
        assert!(
            e.contains("low threshold 0.6 is above the high threshold 0.5"),
            "{e}"
        );
        let o = parse_stream(vec![opt("flapping", vec![d(0.25), d(0.5)])]).unwrap();
        assert_eq!(o.rules.flapping, Some((0.25, 0.5)));
    }

    #[test]
    fn history_raised_to_two_with_warning() {
        let (o, w) = parse(
            EdgeType::Stream,
            &req(vec![opt("history", vec![i(1)])]),
            &Destinations::default(),
        )
        .unwrap();
        assert_eq!(o.rules.history, 2);
        assert!(w.0[0].contains("history: 1 is below 2"), "{w:?}");
        let o = parse_stream(vec![]).unwrap();
        assert_eq!(o.rules.history, 21);
    }

    #[test]
    fn renotify_turns_on_state_changes_only() {
        let o = parse_stream(vec![opt("renotifyEvery", vec![dur(10_000_000_000)])]).unwrap();
        assert!(o.rules.state_changes_only);
        assert_eq!(o.rules.renotify_every, 10_000_000_000);
        let e = parse_stream(vec![opt("renotifyEvery", vec![dur(0)])]).unwrap_err();
        assert!(
            e.starts_with("renotifyEvery: 0ns is not a positive duration"),
            "{e}"
        );
    }

    #[test]
    fn format_and_urgency_names() {
        let e = parse_stream(vec![opt("format", vec![s("json")])]).unwrap_err();
        assert_eq!(
            e,
            "format: \"json\" is not a format; use 'kapacitor' or 'webhook'"
        );
        let e = parse_stream(vec![opt("urgency", vec![s("BAD"), s("high")])]).unwrap_err();
        assert!(e.starts_with("urgency: \"BAD\" is not a level"), "{e}");
        let e = parse_stream(vec![opt("urgency", vec![s("WARN"), s("urgent")])]).unwrap_err();
        assert!(
            e.starts_with("urgency: \"urgent\" is not a PagerTree urgency"),
            "{e}"
        );
        let o = parse_stream(vec![
            opt("format", vec![s("webhook")]),
            opt("urgency", vec![s("warn"), s("high")]),
            opt("urgency", vec![s("CRITICAL"), s("critical")]),
        ])
        .unwrap();
        assert_eq!(
            o.route.urgency,
            vec![
                (Level::WARNING, "high".into()),
                (Level::CRITICAL, "critical".into())
            ]
        );
    }

    #[test]
    fn destination_required_unless_dry_run() {
        let plain = InitRequest {
            options: vec![],
            task_id: "t".into(),
            node_id: "n".into(),
        };
        let e = parse(EdgeType::Stream, &plain, &Destinations::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("url: this node has nowhere to send"), "{e}");
        let mut cfg = Destinations {
            default_endpoint: "ops".into(),
            ..Destinations::default()
        };
        let e = parse(EdgeType::Stream, &plain, &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("default_endpoint \"ops\""), "{e}");
        cfg.endpoints.insert("ops".into(), Format::Kapacitor);
        assert!(parse(EdgeType::Stream, &plain, &cfg).is_ok());
        let with_ep = InitRequest {
            options: vec![opt("endpoint", vec![s("nope")])],
            ..plain.clone()
        };
        let e = parse(EdgeType::Stream, &with_ep, &cfg)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "endpoint: no endpoint named \"nope\" in the agent's config (known: ops)"
        );
    }

    #[test]
    fn last_wins_and_accumulates() {
        let o = parse_stream(vec![
            opt("crit", vec![s("\"a\" > 1")]),
            opt("crit", vec![s("\"b\" > 1")]),
            opt("inhibit", vec![s("cpu"), s("host, dc")]),
            opt("inhibit", vec![s("disk"), s("")]),
        ])
        .unwrap();
        assert_eq!(o.levels[3].as_deref(), Some("\"b\" > 1"));
        assert_eq!(
            o.inhibit,
            vec![
                InhibitSpec {
                    category: "cpu".into(),
                    tags: vec!["host".into(), "dc".into()]
                },
                InhibitSpec {
                    category: "disk".into(),
                    tags: vec![]
                }
            ]
        );
    }

    #[test]
    fn from_options_need_level_from_and_resets_need_level() {
        let e = parse_stream(vec![opt("idFrom", vec![s("alertID")])]).unwrap_err();
        assert!(e.starts_with("idFrom: only works with levelFrom"), "{e}");
        let e = parse_stream(vec![opt("critReset", vec![s("\"v\" < 1")])]).unwrap_err();
        assert!(e.starts_with("critReset: given without crit"), "{e}");
    }
}
