//! Every conformance case run through `AlertFactory`/`Handler` in process:
//! the options and input mapped exactly as conformance README §8 says, the
//! events turned into the exact body bytes Kapacitor posts
//! (`gofmt::alert_data_json`) and compared by the shared rules of
//! `support/conformance.rs`.
//!
//! The restart control is a session restart here: every handler is dropped
//! (its inhibitors released) and initialized again, while the alert state
//! store — a `MemoryStore` into which every event handed on is recorded, as
//! the committer does — survives. The socket-level runner restarts the
//! agent process itself.

#[path = "support/conformance.rs"]
#[macro_use]
mod conformance;

use std::collections::HashMap;
use std::sync::Arc;

use conformance::{Case, EmittedRow, Input, Observed, RunResult};
use kapacitor_pagertree::alert::Destinations;
use kapacitor_pagertree::alert::ServerInfo;
use kapacitor_pagertree::alert::handler::{Handler, HandlerFactory, Output};
use kapacitor_pagertree::alert::json::alert_data_json;
use kapacitor_pagertree::alert::node::{AlertFactory, NodeEnv};
use kapacitor_pagertree::alert::store::MemoryStore;
use kapacitor_pagertree::proto::{EdgeType, InitRequest, Point};

const URL: &str = "http://127.0.0.1:9/integration/int_conformance";
const NODE: &str = "pagertree2";

fn init_all(
    factory: &AlertFactory,
    case: &Case,
    edge: EdgeType,
) -> HashMap<String, Box<dyn Handler>> {
    case.tasks
        .iter()
        .map(|t| {
            let req = InitRequest {
                options: conformance::init_options(&t.alert, URL),
                task_id: t.task.clone(),
                node_id: NODE.into(),
            };
            let h = factory
                .init(edge, &req)
                .unwrap_or_else(|e| panic!("{}: Init refused: {e}", case.name));
            (t.task.clone(), h)
        })
        .collect()
}

/// Runs a case; Err when Init refuses it.
fn run(case: &Case) -> RunResult {
    let store = MemoryStore::new();
    let env = NodeEnv::new(
        Destinations::default(),
        Arc::new(store.clone()),
        case.server_info.clone().unwrap_or_default(),
    );
    let factory = AlertFactory::new(env);
    let edge = if case.edge_batch {
        EdgeType::Batch
    } else {
        EdgeType::Stream
    };
    let mut handlers = init_all(&factory, case, edge);
    let mut result = RunResult::default();
    for input in &case.inputs {
        let mut out = Output::default();
        let task = match input {
            Input::Restart => {
                for h in handlers.values_mut() {
                    h.stop();
                }
                handlers = init_all(&factory, case, edge);
                continue;
            }
            Input::Point { task, point } => {
                handlers
                    .get_mut(task)
                    .expect("task")
                    .point(point.clone(), &mut out);
                task
            }
            Input::Batch {
                task,
                begin,
                points,
                end,
            } => {
                let h = handlers.get_mut(task).expect("task");
                h.begin_batch(begin.clone(), &mut out);
                for p in points {
                    h.point(p.clone(), &mut out);
                }
                h.end_batch(end.clone(), &mut out);
                task
            }
        };
        for e in &out.events {
            store.record(e);
            result.events.push(Observed {
                task: task.clone(),
                body: alert_data_json(e),
            });
        }
        let msgs = out.responses.iter().filter_map(|r| r.message.clone());
        conformance::EmittedCollector::default().take(msgs, &mut result);
    }
    result
}

conformance_tests!(run);

/// The emitted-row conversion the comparison relies on.
#[test]
fn emitted_rows_sort_fields() {
    let mut p = Point {
        time: 0,
        name: "cpu".into(),
        ..Default::default()
    };
    p.fields_double.insert("b".into(), 1.5);
    p.fields_int.insert("a".into(), 2);
    let row: EmittedRow = conformance::point_row(&p);
    assert_eq!(row.columns, vec!["time", "a", "b"]);
    let _ = ServerInfo::default();
}
