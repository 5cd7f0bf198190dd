//! Reading points the way Kapacitor's alert node sees them (typed fields,
//! tags, group ids) and building the `data.series` row of an event
//! (tests/conformance/README.md §5).

use std::collections::{BTreeMap, HashMap};

use crate::alert::{FieldValue, Series, SeriesValue};
use crate::proto::{BeginBatch, Point};

/// A field or tag value of a point, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldRef<'a> {
    Float(f64),
    Int(i64),
    Str(&'a str),
    Bool(bool),
}

impl FieldRef<'_> {
    pub fn to_owned_value(self) -> FieldValue {
        match self {
            FieldRef::Float(f) => FieldValue::Float(f),
            FieldRef::Int(i) => FieldValue::Int(i),
            FieldRef::Str(s) => FieldValue::String(s.to_string()),
            FieldRef::Bool(b) => FieldValue::Bool(b),
        }
    }

    /// The text of a value read by a `…From` option: strings as they are,
    /// numbers and booleans as Go's `%v` would print them.
    pub fn text(self) -> String {
        match self {
            FieldRef::Str(s) => s.to_string(),
            FieldRef::Int(i) => i.to_string(),
            FieldRef::Float(f) => crate::gofmt::format_float_v(f),
            FieldRef::Bool(b) => b.to_string(),
        }
    }
}

/// A point's field by name, whatever its type.
pub fn field<'a>(p: &'a Point, name: &str) -> Option<FieldRef<'a>> {
    if let Some(v) = p.fields_double.get(name) {
        return Some(FieldRef::Float(*v));
    }
    if let Some(v) = p.fields_int.get(name) {
        return Some(FieldRef::Int(*v));
    }
    if let Some(v) = p.fields_string.get(name) {
        return Some(FieldRef::Str(v));
    }
    p.fields_bool.get(name).map(|v| FieldRef::Bool(*v))
}

/// A tag of the point, else a field of the point: how the `…From` options read.
pub fn tag_or_field<'a>(p: &'a Point, name: &str) -> Option<FieldRef<'a>> {
    match p.tags.get(name) {
        Some(t) => Some(FieldRef::Str(t)),
        None => field(p, name),
    }
}

/// Every field of a point, sorted by name (Go maps print sorted).
pub fn fields_sorted(p: &Point) -> BTreeMap<String, FieldValue> {
    let mut out = BTreeMap::new();
    for (k, v) in &p.fields_double {
        out.insert(k.clone(), FieldValue::Float(*v));
    }
    for (k, v) in &p.fields_int {
        out.insert(k.clone(), FieldValue::Int(*v));
    }
    for (k, v) in &p.fields_string {
        out.insert(k.clone(), FieldValue::String(v.clone()));
    }
    for (k, v) in &p.fields_bool {
        out.insert(k.clone(), FieldValue::Bool(*v));
    }
    out
}

pub fn tags_sorted(tags: &HashMap<String, String>) -> BTreeMap<String, String> {
    // Inserted one by one: `collect` would first gather and sort a vector.
    let mut m = BTreeMap::new();
    for (k, v) in tags {
        m.insert(k.clone(), v.clone());
    }
    m
}

fn field_names(p: &Point) -> impl Iterator<Item = &String> {
    p.fields_double
        .keys()
        .chain(p.fields_int.keys())
        .chain(p.fields_string.keys())
        .chain(p.fields_bool.keys())
}

/// Up to this many fields are sorted on the stack when building a row.
const SORT_INLINE: usize = 16;

/// Kapacitor's `pointMessage.ToRow`: the point's name and tags, `time` then
/// the sorted field names, one row. A name in several typed maps counts
/// once, as the last of double, int, string, bool (as [`fields_sorted`]).
pub fn stream_series(p: &Point) -> Series {
    let n =
        p.fields_double.len() + p.fields_int.len() + p.fields_string.len() + p.fields_bool.len();
    let all = p
        .fields_double
        .iter()
        .map(|(k, x)| (k, FieldRef::Float(*x)))
        .chain(p.fields_int.iter().map(|(k, x)| (k, FieldRef::Int(*x))))
        .chain(p.fields_string.iter().map(|(k, x)| (k, FieldRef::Str(x))))
        .chain(p.fields_bool.iter().map(|(k, x)| (k, FieldRef::Bool(*x))));
    // Built once per event: sorted on the stack, without an intermediate map.
    let empty = String::new();
    let mut inline = [(&empty, FieldRef::Bool(false)); SORT_INLINE];
    let mut heap = Vec::new();
    let fields: &mut [(&String, FieldRef<'_>)] = if n <= SORT_INLINE {
        for (slot, kv) in inline.iter_mut().zip(all) {
            *slot = kv;
        }
        &mut inline[..n]
    } else {
        heap.extend(all);
        &mut heap
    };
    // Stable: of equal names the last type stays last.
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut columns = Vec::with_capacity(n + 1);
    columns.push("time".to_string());
    let mut row = Vec::with_capacity(n + 1);
    row.push(SeriesValue::Time(p.time));
    for (i, (k, v)) in fields.iter().enumerate() {
        if fields.get(i + 1).is_some_and(|next| next.0 == *k) {
            continue;
        }
        columns.push((*k).clone());
        row.push(SeriesValue::Field(v.to_owned_value()));
    }
    Series {
        name: p.name.clone(),
        tags: tags_sorted(&p.tags),
        columns,
        values: vec![row],
    }
}

/// Kapacitor's `bufferedBatchMessage.ToRow`: the batch's name and tags;
/// columns `time`, then the first point's fields and those of its tags that
/// are not batch tags, sorted; one row per point (`null` where a point lacks
/// a column).
pub fn batch_series(begin: &BeginBatch, points: &[Point]) -> Series {
    let mut series = Series {
        name: begin.name.clone(),
        tags: tags_sorted(&begin.tags),
        ..Series::default()
    };
    let Some(first) = points.first() else {
        return series;
    };
    let mut columns: Vec<String> = field_names(first).cloned().collect();
    columns.extend(
        first
            .tags
            .keys()
            .filter(|t| !begin.tags.contains_key(*t))
            .cloned(),
    );
    columns.sort_unstable();
    series.values = points
        .iter()
        .map(|p| {
            let mut row = Vec::with_capacity(columns.len() + 1);
            row.push(SeriesValue::Time(p.time));
            for c in &columns {
                row.push(match field(p, c) {
                    Some(v) => SeriesValue::Field(v.to_owned_value()),
                    None => match p.tags.get(c) {
                        Some(t) => SeriesValue::Field(FieldValue::String(t.clone())),
                        None => SeriesValue::Null,
                    },
                });
            }
            row
        })
        .collect();
    columns.insert(0, "time".to_string());
    series.columns = columns;
    series
}

/// The group id Kapacitor gives a tag set that is all dimensions (a batch's
/// tags): `k1=v1,k2=v2` with sorted keys.
pub fn group_id_of_tags(tags: &HashMap<String, String>) -> String {
    let mut keys: Vec<&String> = tags.keys().collect();
    keys.sort_unstable();
    let mut out = String::new();
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(&tags[k]);
    }
    out
}

/// Sets a field of any type, replacing a field of the same name of another
/// type (Kapacitor's fields are one map).
pub fn set_field(p: &mut Point, name: &str, value: FieldValue) {
    p.fields_double.remove(name);
    p.fields_int.remove(name);
    p.fields_string.remove(name);
    p.fields_bool.remove(name);
    match value {
        FieldValue::Float(f) => {
            p.fields_double.insert(name.to_string(), f);
        }
        FieldValue::Int(i) => {
            p.fields_int.insert(name.to_string(), i);
        }
        FieldValue::String(s) => {
            p.fields_string.insert(name.to_string(), s);
        }
        FieldValue::Bool(b) => {
            p.fields_bool.insert(name.to_string(), b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point() -> Point {
        let mut p = Point {
            time: 5,
            name: "cpu".into(),
            ..Default::default()
        };
        p.tags.insert("host".into(), "A".into());
        p.tags.insert("cpu".into(), "cpu0".into());
        p.fields_double.insert("value".into(), 7.0);
        p.fields_int.insert("count".into(), 3);
        p
    }

    #[test]
    fn stream_row_sorted_columns() {
        let s = stream_series(&point());
        assert_eq!(s.columns, vec!["time", "count", "value"]);
        assert_eq!(
            s.values,
            vec![vec![
                SeriesValue::Time(5),
                SeriesValue::Field(FieldValue::Int(3)),
                SeriesValue::Field(FieldValue::Float(7.0))
            ]]
        );
        assert_eq!(s.tags.keys().collect::<Vec<_>>(), vec!["cpu", "host"]);
    }

    /// The row agrees with the field map Kapacitor's fields are, including
    /// a name present in several typed maps and more fields than fit inline.
    #[test]
    fn stream_row_matches_the_sorted_field_map() {
        for extra in [0, 3, 20] {
            let mut p = point();
            p.fields_bool.insert("value".into(), true);
            p.fields_string.insert("count".into(), "c".into());
            for i in 0..extra {
                p.fields_double.insert(format!("f{i:02}"), i as f64);
                p.fields_string.insert(format!("s{i}"), format!("v{i}"));
            }
            let s = stream_series(&p);
            let want = fields_sorted(&p);
            let mut cols = vec!["time".to_string()];
            cols.extend(want.keys().cloned());
            assert_eq!(s.columns, cols);
            let mut row = vec![SeriesValue::Time(5)];
            row.extend(want.into_values().map(SeriesValue::Field));
            assert_eq!(s.values, vec![row]);
        }
    }

    #[test]
    fn batch_row_adds_non_batch_tags_and_nulls() {
        let mut begin = BeginBatch {
            name: "cpu".into(),
            ..Default::default()
        };
        begin.tags.insert("host".into(), "A".into());
        let a = point();
        let mut b = point();
        b.fields_int.clear();
        b.time = 6;
        let s = batch_series(&begin, &[a, b]);
        assert_eq!(s.columns, vec!["time", "count", "cpu", "value"]);
        assert_eq!(s.values[1][1], SeriesValue::Null);
        assert_eq!(
            s.values[1][2],
            SeriesValue::Field(FieldValue::String("cpu0".into()))
        );
    }

    #[test]
    fn group_ids_sorted() {
        let p = point();
        assert_eq!(group_id_of_tags(&p.tags), "cpu=cpu0,host=A");
        assert_eq!(group_id_of_tags(&HashMap::new()), "");
    }

    #[test]
    fn set_field_replaces_other_types() {
        let mut p = point();
        set_field(&mut p, "value", FieldValue::String("x".into()));
        assert!(p.fields_double.is_empty());
        assert_eq!(field(&p, "value"), Some(FieldRef::Str("x")));
        assert_eq!(tag_or_field(&p, "host"), Some(FieldRef::Str("A")));
    }
}
