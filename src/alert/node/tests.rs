//! Node behaviour through the `Handler` seam: mode 2, emission,
//! previousLevel, restore, inhibition.

use std::sync::Arc;

use super::*;
use crate::alert::store::MemoryStore;
use crate::proto::option_value::Value;
use crate::proto::{Option as Opt, OptionValue, ValueType};

pub(crate) fn s(v: &str) -> OptionValue {
    OptionValue {
        r#type: ValueType::String as i32,
        value: Some(Value::StringValue(v.into())),
    }
}

pub(crate) fn opt(name: &str, values: Vec<OptionValue>) -> Opt {
    Opt {
        name: name.into(),
        values,
    }
}

fn flag(name: &str) -> Opt {
    opt(name, vec![])
}

/// The counters every test node counts into (shared, like the daemon's
/// registry: tests run in parallel, so they check increases, not values).
static COUNTERS: std::sync::LazyLock<NodeCounters> =
    std::sync::LazyLock::new(NodeCounters::default);

fn env(store: &MemoryStore) -> NodeEnv {
    let mut env = NodeEnv::new(
        Destinations::default(),
        Arc::new(store.clone()),
        ServerInfo::default(),
    );
    env.counters = COUNTERS.clone();
    env
}

fn init(env: &NodeEnv, edge: EdgeType, task: &str, mut opts: Vec<Opt>) -> AlertNode {
    opts.push(flag("dryRun"));
    let req = InitRequest {
        options: opts,
        task_id: task.into(),
        node_id: "n1".into(),
    };
    AlertFactory::new(env.clone()).build(edge, &req).unwrap()
}

fn point(t: i64, level: &str, id: &str, host: &str) -> Point {
    let mut p = Point {
        time: t,
        name: "cpu".into(),
        group: format!("host={host}"),
        ..Default::default()
    };
    p.dimensions = vec!["host".into()];
    p.tags.insert("host".into(), host.into());
    p.tags.insert("level".into(), level.into());
    p.tags.insert("alertID".into(), id.into());
    p.fields_double.insert("value".into(), 1.5);
    p.fields_string
        .insert("message".into(), format!("{id} went {level}"));
    p
}

fn mode2() -> Vec<Opt> {
    vec![
        opt("levelFrom", vec![s("level")]),
        opt("idFrom", vec![s("alertID")]),
        opt("messageFrom", vec![s("message")]),
    ]
}

/// Feeds points and returns (events, emitted point count) per point.
fn feed(node: &mut AlertNode, points: Vec<Point>) -> Vec<Output> {
    points
        .into_iter()
        .map(|p| {
            let mut out = Output::default();
            node.point(p, &mut out);
            out
        })
        .collect()
}

fn levels(outs: &[Output]) -> Vec<Option<(Level, Level)>> {
    outs.iter()
        .map(|o| o.events.first().map(|e| (e.level, e.previous_level)))
        .collect()
}

#[test]
fn mode2_repeats_without_state_changes_only() {
    let store = MemoryStore::new();
    let env = env(&store);
    let mut node = init(&env, EdgeType::Stream, "t", mode2());
    let crit = || COUNTERS.events[Level::CRITICAL as usize].get();
    let before = crit();
    let outs = feed(
        &mut node,
        vec![
            point(1, "CRITICAL", "a", "A"),
            point(2, "crit", "a", "A"),
            point(3, "OK", "a", "A"),
            point(4, "ok", "a", "A"),
        ],
    );
    assert_eq!(
        levels(&outs),
        vec![
            Some((Level::CRITICAL, Level::OK)),
            Some((Level::CRITICAL, Level::CRITICAL)),
            Some((Level::OK, Level::CRITICAL)),
            None
        ]
    );
    let e = &outs[2].events[0];
    assert_eq!(e.id, "a");
    assert_eq!(e.message, "a went OK");
    assert_eq!(e.duration, 2);
    assert_eq!(e.task, "t");
    assert_eq!(e.node, "n1");
    assert!(e.route.dry_run);
    assert_eq!(e.data.columns, vec!["time", "message", "value"]);
    assert_eq!(outs[3].responses.len(), 0);
    assert_eq!(outs[0].responses.len(), 1);
    assert!(crit() >= before + 2, "events are counted by level");
}

#[test]
fn mode2_state_changes_only_and_per_id_state() {
    let store = MemoryStore::new();
    let env = env(&store);
    let mut opts = mode2();
    opts.push(flag("stateChangesOnly"));
    let mut node = init(&env, EdgeType::Stream, "t", opts);
    let outs = feed(
        &mut node,
        vec![
            point(1, "WARNING", "a", "A"),
            point(2, "WARNING", "b", "A"),
            point(3, "WARNING", "a", "A"),
            point(4, "CRITICAL", "a", "A"),
            point(5, "OK", "b", "A"),
        ],
    );
    assert_eq!(
        levels(&outs),
        vec![
            Some((Level::WARNING, Level::OK)),
            Some((Level::WARNING, Level::OK)),
            None,
            Some((Level::CRITICAL, Level::WARNING)),
            Some((Level::OK, Level::WARNING)),
        ]
    );
    assert_eq!(node.group_count(), 2);
}

#[test]
fn mode2_bad_level_is_not_an_event() {
    let store = MemoryStore::new();
    let env = env(&store);
    let mut node = init(&env, EdgeType::Stream, "t", mode2());
    let before = COUNTERS.bad_levels.get();
    let mut missing = point(2, "x", "a", "A");
    missing.tags.remove("level");
    let outs = feed(&mut node, vec![point(1, "SEVERE", "a", "A"), missing]);
    assert!(outs.iter().all(Output::is_empty));
    assert!(COUNTERS.bad_levels.get() >= before + 2);
    assert_eq!(node.group_count(), 0);
}

#[test]
fn mode2_default_id_and_message_when_from_absent() {
    let store = MemoryStore::new();
    let env = env(&store);
    let mut node = init(&env, EdgeType::Stream, "t", mode2());
    let mut p = point(1, "WARN", "a", "A");
    p.tags.remove("alertID");
    p.fields_string.clear();
    let outs = feed(&mut node, vec![p]);
    let e = &outs[0].events[0];
    assert_eq!(e.id, "cpu:host=A");
    assert_eq!(e.message, "cpu:host=A is WARNING");
}

#[test]
fn emitted_point_is_augmented() {
    let store = MemoryStore::new();
    let env = env(&store);
    let mut opts = mode2();
    opts.extend([
        opt("idTag", vec![s("id")]),
        opt("levelField", vec![s("lvl")]),
        opt("messageField", vec![s("msg")]),
        opt("durationField", vec![s("dur")]),
        opt("levelTag", vec![s("level")]),
    ]);
    let mut node = init(&env, EdgeType::Stream, "t", opts);
    let outs = feed(
        &mut node,
        vec![point(10, "warn", "a", "A"), point(15, "crit", "a", "A")],
    );
    let Some(response::Message::Point(p)) = &outs[1].responses[0].message else {
        panic!("no point")
    };
    assert_eq!(p.tags["id"], "a");
    assert_eq!(p.tags["level"], "CRITICAL");
    assert_eq!(p.fields_string["lvl"], "CRITICAL");
    assert_eq!(p.fields_string["msg"], "a went crit");
    assert_eq!(p.fields_int["dur"], 5);
    assert_eq!(p.group, "host=A");
    assert_eq!(p.name, "cpu");
    assert_eq!(p.dimensions, vec!["host".to_string()]);
}

/// A caller that keeps the bytes (`can_echo`) is asked to write back an
/// unchanged point; a point some option changes is always a response.
#[test]
fn unchanged_points_are_echoed_when_the_caller_can() {
    let store = MemoryStore::new();
    let env = env(&store);
    for (opts, echoed) in [
        (mode2(), true),
        (
            {
                let mut o = mode2();
                o.push(opt("idField", vec![s("id")]));
                o
            },
            false,
        ),
    ] {
        let mut node = init(&env, EdgeType::Stream, "t", opts);
        for (i, level) in ["crit", "warn"].into_iter().enumerate() {
            let mut out = Output {
                can_echo: true,
                ..Default::default()
            };
            node.point(point(i as i64, level, "a", "A"), &mut out);
            assert_eq!(out.events.len(), 1);
            assert_eq!(out.echo_point, echoed);
            assert_eq!(out.responses.len(), usize::from(!echoed));
        }
        // Without `can_echo` the point is always a response.
        let mut out = Output::default();
        node.point(point(9, "crit", "a", "A"), &mut out);
        assert!(!out.echo_point);
        assert_eq!(out.responses.len(), 1);
    }
}

#[test]
fn restart_restores_from_store() {
    let store = MemoryStore::new();
    let env = env(&store);
    let mut opts = mode2();
    opts.push(flag("stateChangesOnly"));
    let mut node = init(&env, EdgeType::Stream, "t", opts.clone());
    let outs = feed(&mut node, vec![point(10, "CRITICAL", "a", "A")]);
    for e in &outs[0].events {
        store.record(e);
    }
    drop(node);
    let mut node = init(&env, EdgeType::Stream, "t", opts);
    let outs = feed(
        &mut node,
        vec![point(20, "CRITICAL", "a", "A"), point(30, "OK", "a", "A")],
    );
    assert!(
        outs[0].is_empty(),
        "unchanged level after restart is not re-sent"
    );
    let e = &outs[1].events[0];
    assert_eq!(
        (e.level, e.previous_level, e.duration),
        (Level::OK, Level::CRITICAL, 20)
    );
}

#[test]
fn inhibition_across_tasks() {
    let store = MemoryStore::new();
    let env = env(&store);
    let mut host = init(
        &env,
        EdgeType::Stream,
        "host",
        vec![
            opt("levelFrom", vec![s("level")]),
            opt("inhibit", vec![s("cpu"), s("host")]),
        ],
    );
    let mut cpu = init(
        &env,
        EdgeType::Stream,
        "cpu",
        vec![
            opt("levelFrom", vec![s("level")]),
            opt("category", vec![s("cpu")]),
        ],
    );
    // host A goes down: its inhibitor is active for host=A.
    let outs = feed(&mut host, vec![point(1, "CRITICAL", "h", "A")]);
    assert_eq!(outs[0].events.len(), 1);
    let outs = feed(
        &mut cpu,
        vec![point(2, "WARNING", "c", "A"), point(3, "WARNING", "c", "B")],
    );
    assert!(outs[0].events.is_empty(), "inhibited");
    assert_eq!(
        outs[0].responses.len(),
        1,
        "an inhibited event's point is still emitted"
    );
    assert_eq!(outs[1].events.len(), 1, "other host not inhibited");
    // Host recovers: no longer inhibited; previousLevel ignores the inhibited event.
    assert_eq!(env.inhibitors.len(), 1);
    feed(&mut host, vec![point(4, "OK", "h", "A")]);
    assert!(env.inhibitors.is_empty());
    let outs = feed(&mut cpu, vec![point(5, "CRITICAL", "c", "A")]);
    let e = &outs[0].events[0];
    assert_eq!(e.id, "cpu:host=A");
    assert_eq!(e.previous_level, Level::OK);
    // Stopping the inhibiting node while it is non-OK releases its inhibitor.
    feed(&mut host, vec![point(6, "CRITICAL", "h", "A")]);
    assert_eq!(env.inhibitors.len(), 1);
    drop(host);
    assert!(env.inhibitors.is_empty());
    let outs = feed(&mut cpu, vec![point(7, "WARNING", "c", "A")]);
    assert_eq!(outs[0].events.len(), 1);
}

fn batch(node: &mut AlertNode, tmax: i64, points: Vec<Point>) -> Output {
    let mut out = Output::default();
    let mut begin = BeginBatch {
        name: "cpu".into(),
        group: "host=A".into(),
        size: points.len() as i64,
        ..Default::default()
    };
    begin.tags.insert("host".into(), "A".into());
    let end = EndBatch {
        name: "cpu".into(),
        group: "host=A".into(),
        tmax,
        tags: begin.tags.clone(),
        ..Default::default()
    };
    node.begin_batch(begin, &mut out);
    for p in points {
        node.point(p, &mut out);
    }
    node.end_batch(end, &mut out);
    out
}

#[test]
fn mode2_batch_highest_and_all() {
    let store = MemoryStore::new();
    let env = env(&store);
    let mut opts = mode2();
    opts.push(opt("levelTag", vec![s("lvl")]));
    let mut node = init(&env, EdgeType::Batch, "t", opts.clone());
    let out = batch(
        &mut node,
        9,
        vec![
            point(1, "OK", "a", "A"),
            point(2, "WARN", "a", "A"),
            point(3, "CRIT", "a", "A"),
            point(4, "CRIT", "a", "A"),
        ],
    );
    let e = &out.events[0];
    assert_eq!((e.level, e.time), (Level::CRITICAL, 3));
    assert_eq!(e.data.values.len(), 4);
    assert_eq!(out.responses.len(), 6);
    let Some(response::Message::End(end)) = &out.responses[5].message else {
        panic!()
    };
    assert_eq!(end.tags["lvl"], "CRITICAL");
    assert_eq!(end.group, "host=A,lvl=CRITICAL");
    let Some(response::Message::Begin(begin)) = &out.responses[0].message else {
        panic!()
    };
    assert_eq!(begin.tags["lvl"], "CRITICAL");
    assert_eq!(begin.size, 4);

    opts.push(flag("all"));
    let mut node = init(&env, EdgeType::Batch, "t2", opts);
    let out = batch(
        &mut node,
        9,
        vec![point(1, "WARN", "a", "A"), point(2, "CRIT", "a", "A")],
    );
    let e = &out.events[0];
    assert_eq!((e.level, e.time), (Level::WARNING, 9));
    // An empty batch is ignored.
    assert!(batch(&mut node, 10, vec![]).is_empty());
}

#[test]
fn bad_template_and_expression_name_the_option() {
    let store = MemoryStore::new();
    let env = env(&store);
    let try_init = |o: Opt| {
        let req = InitRequest {
            options: vec![flag("dryRun"), o],
            task_id: "t".into(),
            node_id: "n".into(),
        };
        AlertFactory::new(env.clone())
            .init(EdgeType::Stream, &req)
            .err()
            .unwrap()
    };
    let e = try_init(opt("id", vec![s("{{ .Name ")]));
    assert!(e.starts_with("id: "), "{e}");
    let e = try_init(opt("crit", vec![s("\"value\" >> 90")]));
    assert!(e.starts_with("crit: cannot parse"), "{e}");
    assert!(e.contains("column"), "{e}");
    // A field the template data does not have fails every event: refused at Init.
    let e = try_init(opt("message", vec![s("{{ .ID }} on {{ .Hostname }}")]));
    assert!(e.starts_with("message: "), "{e}");
    assert!(e.contains("can't evaluate field Hostname"), "{e}");
    let e = try_init(opt("details", vec![s("<b>{{ .Time.Nope }}</b>")]));
    assert!(e.starts_with("details: "), "{e}");
    let e = try_init(opt("id", vec![s("{{ .Level }}")]));
    assert!(e.starts_with("id: "), "{e}");
}

#[test]
fn templates_that_depend_on_the_data_are_accepted() {
    let store = MemoryStore::new();
    let env = env(&store);
    for (name, text) in [
        (
            "message",
            "{{ if gt (index .Fields \"value\") 90.0 }}hot{{ end }}",
        ),
        (
            "message",
            "{{ index .Fields \"nope\" }} {{ index .Tags \"nope\" }}",
        ),
        (
            "details",
            "{{ .Fields.value }} {{ .ServerInfo.Hostname }} {{ .Time.Unix }}",
        ),
        (
            "id",
            "{{ .Name }}/{{ .TaskName }}/{{ .Group }}/{{ index .Tags \"host\" }}",
        ),
    ] {
        let req = InitRequest {
            options: vec![flag("dryRun"), opt(name, vec![s(text)])],
            task_id: "t".into(),
            node_id: "n".into(),
        };
        let r = AlertFactory::new(env.clone()).init(EdgeType::Stream, &req);
        assert!(r.is_ok(), "{name} {text:?}: {:?}", r.err());
    }
}

fn vpoint(t: i64, host: &str, value: f64) -> Point {
    let mut p = Point {
        time: t,
        name: "cpu".into(),
        group: format!("host={host}"),
        ..Default::default()
    };
    p.dimensions = vec!["host".into()];
    p.tags.insert("host".into(), host.into());
    p.fields_double.insert("value".into(), value);
    p
}

fn mode1_levels(opts: Vec<Opt>, points: Vec<Point>) -> Vec<Option<Level>> {
    let store = MemoryStore::new();
    let env = env(&store);
    let mut node = init(&env, EdgeType::Stream, "t", opts);
    feed(&mut node, points)
        .iter()
        .map(|o| o.events.first().map(|e| e.level))
        .collect()
}

#[test]
fn resets_hold_a_level_and_lower_resets_are_not_consulted() {
    let opts = vec![
        opt("info", vec![s("\"value\" > 60")]),
        opt("warn", vec![s("\"value\" > 70")]),
        opt("crit", vec![s("\"value\" > 80")]),
        opt("infoReset", vec![s("\"value\" < 50")]),
        opt("warnReset", vec![s("\"value\" < 60")]),
        opt("critReset", vec![s("\"value\" < 70")]),
    ];
    let values = [61.0, 73.0, 64.0, 85.0, 62.0, 56.0, 47.0];
    let points = values
        .iter()
        .enumerate()
        .map(|(i, v)| vpoint(i as i64, "A", *v))
        .collect();
    use Level::*;
    assert_eq!(
        mode1_levels(opts, points),
        vec![
            Some(INFO),
            Some(WARNING),
            Some(WARNING),
            Some(CRITICAL),
            Some(INFO),
            Some(INFO),
            Some(OK)
        ]
    );
}

#[test]
fn erroring_level_is_false_and_erroring_reset_passes() {
    let before = COUNTERS.expression_errors.get();
    let opts = vec![
        opt("crit", vec![s("\"missing\" > 1")]),
        opt("warn", vec![s("\"value\" > 5")]),
        opt("warnReset", vec![s("\"missing\" < 1")]),
    ];
    use Level::*;
    // 10: crit errors (false), warn true. 3: warn false, its reset errors
    // (passed), so the level falls to OK instead of holding WARNING.
    assert_eq!(
        mode1_levels(opts, vec![vpoint(1, "A", 10.0), vpoint(2, "A", 3.0)]),
        vec![Some(WARNING), Some(OK)]
    );
    assert!(COUNTERS.expression_errors.get() >= before + 3);
}

#[test]
fn ambiguous_field_and_tag_fails_the_expression() {
    let opts = vec![opt("crit", vec![s("\"host\" == 'A'")])];
    let mut p = vpoint(1, "A", 1.0);
    p.fields_string.insert("host".into(), "A".into());
    assert_eq!(mode1_levels(opts.clone(), vec![p]), vec![None]);
    assert_eq!(
        mode1_levels(opts, vec![vpoint(1, "A", 1.0)]),
        vec![Some(Level::CRITICAL)]
    );
}

#[test]
fn stateful_functions_share_state_across_groups() {
    // One compiled expression for the node: count() counts the points of
    // every group, as in Kapacitor.
    let opts = vec![opt("crit", vec![s("count() > 3")])];
    let points = vec![
        vpoint(1, "A", 1.0),
        vpoint(1, "B", 1.0),
        vpoint(2, "A", 1.0),
        vpoint(2, "B", 1.0),
    ];
    assert_eq!(
        mode1_levels(opts, points),
        vec![None, None, None, Some(Level::CRITICAL)]
    );
}

#[test]
fn mode1_inhibitor_takes_the_groups_tag_values() {
    let store = MemoryStore::new();
    let env = env(&store);
    let mut host = init(
        &env,
        EdgeType::Stream,
        "host",
        vec![
            opt("crit", vec![s("\"value\" > 1")]),
            opt("inhibit", vec![s("cpu"), s("host,dc")]),
        ],
    );
    let mut cpu = init(
        &env,
        EdgeType::Stream,
        "cpu",
        vec![
            opt("crit", vec![s("\"value\" > 1")]),
            opt("category", vec![s("cpu")]),
        ],
    );
    // `dc` is a tag of the point but not a dimension of the group: the
    // inhibitor holds dc = "" (the group's value), as Kapacitor does.
    let mut down = vpoint(1, "A", 5.0);
    down.tags.insert("dc".into(), "east".into());
    feed(&mut host, vec![down]);
    assert_eq!(env.inhibitors.len(), 1);
    let mut east = vpoint(2, "A", 5.0);
    east.tags.insert("dc".into(), "east".into());
    let outs = feed(&mut cpu, vec![east, vpoint(3, "A", 5.0)]);
    assert_eq!(
        outs[0].events.len(),
        1,
        "dc=east differs from the group's dc=\"\""
    );
    assert!(
        outs[1].events.is_empty(),
        "no dc tag: equal to \"\", inhibited"
    );
    assert_eq!(outs[1].responses.len(), 1);
}

#[test]
fn previous_level_is_per_id_not_per_group() {
    // The id uses a non-group tag: two ids share one group's state.
    let store = MemoryStore::new();
    let env = env(&store);
    let mut node = init(
        &env,
        EdgeType::Stream,
        "t",
        vec![
            opt("crit", vec![s("\"value\" > 5")]),
            opt("warn", vec![s("\"value\" > 1")]),
            opt("id", vec![s("{{ index .Tags \"cpu\" }}")]),
        ],
    );
    let with_cpu = |t, cpu: &str, v| {
        let mut p = vpoint(t, "A", v);
        p.tags.insert("cpu".into(), cpu.into());
        p
    };
    let outs = feed(
        &mut node,
        vec![
            with_cpu(1, "c0", 9.0),
            with_cpu(2, "c1", 3.0),
            with_cpu(3, "c0", 3.0),
        ],
    );
    let ev: Vec<(String, Level, Level, i64)> = outs
        .iter()
        .map(|o| &o.events[0])
        .map(|e| (e.id.clone(), e.level, e.previous_level, e.duration))
        .collect();
    assert_eq!(
        ev,
        vec![
            ("c0".into(), Level::CRITICAL, Level::OK, 0),
            ("c1".into(), Level::WARNING, Level::OK, 1),
            ("c0".into(), Level::WARNING, Level::CRITICAL, 2),
        ]
    );
}

#[test]
fn mode2_float_level_from_field_is_bad_but_string_field_reads() {
    let store = MemoryStore::new();
    let env = env(&store);
    let mut node = init(
        &env,
        EdgeType::Stream,
        "t",
        vec![opt("levelFrom", vec![s("lvl")])],
    );
    let mut a = vpoint(1, "A", 1.0);
    a.fields_string.insert("lvl".into(), "Warning".into());
    let mut b = vpoint(2, "A", 1.0);
    b.fields_double.insert("lvl".into(), 2.0);
    let outs = feed(&mut node, vec![a, b]);
    assert_eq!(outs[0].events[0].level, Level::WARNING);
    assert!(outs[1].is_empty());
}

#[test]
fn point_scope_memo_never_mixes_names() {
    let mut p = vpoint(7, "A", 2.5);
    p.fields_int.insert("n".into(), 3);
    p.fields_string.insert("host".into(), "dup".into());
    let scope = PointScope::new(&p);
    assert_eq!(scope.lookup("value"), Some(ValueRef::Float(2.5)));
    assert_eq!(scope.lookup("value"), Some(ValueRef::Float(2.5)));
    assert_eq!(scope.lookup("n"), Some(ValueRef::Int(3)));
    assert_eq!(scope.lookup("valu"), None);
    assert_eq!(scope.lookup("host"), Some(ValueRef::Ambiguous));
    let long = "x".repeat(40);
    assert_eq!(scope.lookup(&long), None);
    assert_eq!(scope.lookup("n"), Some(ValueRef::Int(3)));
    assert_eq!(scope.time(), 7);
}

#[test]
fn mode1_restore_seeds_new_groups_from_the_store() {
    let store = MemoryStore::new();
    let env = env(&store);
    let opts = vec![
        opt("crit", vec![s("\"value\" > 5")]),
        flag("stateChangesOnly"),
    ];
    let mut node = init(&env, EdgeType::Stream, "t", opts.clone());
    for o in feed(
        &mut node,
        vec![
            vpoint(10, "A", 9.0),
            vpoint(11, "B", 9.0),
            vpoint(12, "B", 1.0),
        ],
    ) {
        for e in &o.events {
            store.record(e);
        }
    }
    node.stop();
    drop(node);
    let mut node = init(&env, EdgeType::Stream, "t", opts);
    let outs = feed(
        &mut node,
        vec![
            vpoint(20, "A", 9.0),
            vpoint(21, "B", 9.0),
            vpoint(30, "A", 1.0),
        ],
    );
    assert!(
        outs[0].is_empty(),
        "A is still CRITICAL: no repeat with stateChangesOnly"
    );
    let b = &outs[1].events[0];
    assert_eq!(
        (b.level, b.previous_level, b.duration),
        (Level::CRITICAL, Level::OK, 0),
        "B had recovered"
    );
    let a = &outs[2].events[0];
    assert_eq!(
        (a.id.as_str(), a.level, a.previous_level, a.duration),
        ("cpu:host=A", Level::OK, Level::CRITICAL, 20)
    );
}

#[test]
fn default_templates_are_parsed_once_and_shared() {
    let store = MemoryStore::default();
    let env = env(&store);
    let a = init(&env, EdgeType::Stream, "shared_a", mode2());
    let b = init(&env, EdgeType::Stream, "shared_b", vec![]);
    // The defaults pass the Init-time field check like any given template.
    let d = defaults();
    for (name, t) in [
        ("id", &d.id),
        ("message", &d.message),
        ("details", &d.details),
    ] {
        check_fields(name, t).unwrap();
    }
    assert!(Arc::ptr_eq(&a.core.details_template, &d.details));
    assert!(Arc::ptr_eq(&b.core.details_template, &d.details));
    assert!(Arc::ptr_eq(&b.core.id_template, &d.id));
    assert!(Arc::ptr_eq(&b.core.message_template, &d.message));
    // The default text given explicitly is the default too.
    let c = init(
        &env,
        EdgeType::Stream,
        "shared_c",
        vec![opt("message", vec![s(DEFAULT_MESSAGE)])],
    );
    assert!(Arc::ptr_eq(&c.core.message_template, &d.message));
    // A node's own template is its own.
    let own = init(
        &env,
        EdgeType::Stream,
        "own",
        vec![opt("message", vec![s("{{ .ID }} needs a look")])],
    );
    assert!(!Arc::ptr_eq(&own.core.message_template, &d.message));
    assert!(Arc::ptr_eq(&own.core.details_template, &d.details));
}
