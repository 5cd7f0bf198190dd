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

fn env(store: &MemoryStore) -> NodeEnv {
    NodeEnv::new(
        Arc::new(Config::default()),
        Arc::new(store.clone()),
        ServerInfo::default(),
    )
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
    let before = metrics().bad_levels_total.get();
    let mut missing = point(2, "x", "a", "A");
    missing.tags.remove("level");
    let outs = feed(&mut node, vec![point(1, "SEVERE", "a", "A"), missing]);
    assert!(outs.iter().all(Output::is_empty));
    assert!(metrics().bad_levels_total.get() >= before + 2);
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
    feed(&mut host, vec![point(4, "OK", "h", "A")]);
    let outs = feed(&mut cpu, vec![point(5, "CRITICAL", "c", "A")]);
    let e = &outs[0].events[0];
    assert_eq!(e.id, "cpu:host=A");
    assert_eq!(e.previous_level, Level::OK);
    // Stopping the inhibiting node removes its inhibitors.
    assert!(!env.inhibitors.is_empty());
    drop(host);
    assert!(env.inhibitors.is_empty());
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
fn templates_refused_until_supported() {
    let store = MemoryStore::new();
    let env = env(&store);
    let req = InitRequest {
        options: vec![flag("dryRun"), opt("id", vec![s("{{ .Name }}")])],
        task_id: "t".into(),
        node_id: "n".into(),
    };
    let e = AlertFactory::new(env)
        .init(EdgeType::Stream, &req)
        .err()
        .unwrap();
    assert!(e.starts_with("id: templates are not supported yet"), "{e}");
}
