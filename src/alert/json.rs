//! The engine's values as Kapacitor's `encoding/json` writes them: a field
//! value, a `models.Row`, and `alert.Data` — the body of an event that
//! Kapacitor's `.post()`, `.log()`, `.tcp()` and `.exec()` write and the
//! `kapacitor` PagerTree format sends. The Go printing rules underneath are
//! [`crate::gofmt`]'s.

use crate::alert::{Event, FieldValue, Series, SeriesValue};
use crate::gofmt::{
    write_float_json, write_int, write_json_string, write_json_string_map, write_rfc3339_nano,
};

/// Appends a field value as `encoding/json` encodes the `interface{}` holding it.
pub fn write_json_field(out: &mut String, v: &FieldValue) {
    match v {
        FieldValue::Float(f) => write_float_json(out, *f),
        FieldValue::Int(i) => write_int(out, *i),
        FieldValue::String(s) => write_json_string(out, s),
        FieldValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
    }
}

/// Appends Kapacitor's `models.Row` (`name`, `tags`, `columns`, `values`,
/// each omitted when empty).
fn write_json_row(out: &mut String, row: &Series) {
    out.push('{');
    let mut first = true;
    let mut key = |out: &mut String, k: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push('"');
        out.push_str(k);
        out.push_str("\":");
    };
    if !row.name.is_empty() {
        key(out, "name");
        write_json_string(out, &row.name);
    }
    if !row.tags.is_empty() {
        key(out, "tags");
        write_json_string_map(out, &row.tags);
    }
    if !row.columns.is_empty() {
        key(out, "columns");
        write_json_list(out, &row.columns, |out, c| write_json_string(out, c));
    }
    if !row.values.is_empty() {
        key(out, "values");
        write_json_list(out, &row.values, |out, vals| {
            write_json_list(out, vals, |out, v| match v {
                SeriesValue::Time(ns) => {
                    out.push('"');
                    write_rfc3339_nano(out, *ns);
                    out.push('"');
                }
                SeriesValue::Field(f) => write_json_field(out, f),
                SeriesValue::Null => out.push_str("null"),
            })
        });
    }
    out.push('}');
}

/// Appends `[a,b,…]`, each item written by `item`.
fn write_json_list<T>(out: &mut String, items: &[T], mut item: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(out, x);
    }
    out.push(']');
}

/// `json.NewEncoder(w).Encode(alert.Data)`: the exact body Kapacitor's
/// `.post()`, `.tcp()`, `.log()` and `.exec()` write for an event, trailing
/// newline included (tests/conformance/README.md §5).
pub fn alert_data_json(e: &Event) -> Vec<u8> {
    let mut out = String::with_capacity(
        256 + e.id.len() + e.message.len() + e.details.len() * 2 + e.data.values.len() * 48,
    );
    out.push_str("{\"id\":");
    write_json_string(&mut out, &e.id);
    out.push_str(",\"message\":");
    write_json_string(&mut out, &e.message);
    out.push_str(",\"details\":");
    write_json_string(&mut out, &e.details);
    out.push_str(",\"time\":\"");
    write_rfc3339_nano(&mut out, e.time);
    out.push_str("\",\"duration\":");
    write_int(&mut out, e.duration);
    out.push_str(",\"level\":\"");
    out.push_str(e.level.as_str());
    out.push_str("\",\"data\":{\"series\":[");
    write_json_row(&mut out, &e.data);
    out.push_str("]},\"previousLevel\":\"");
    out.push_str(e.previous_level.as_str());
    out.push_str("\",\"recoverable\":");
    out.push_str(if e.recoverable { "true" } else { "false" });
    out.push_str("}\n");
    out.into_bytes()
}
