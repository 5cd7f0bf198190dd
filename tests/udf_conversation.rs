//! The UDF conversation end to end, through the real binary and the
//! Kapacitor emulator: Info, Init, Restore, points and batches, Snapshot as a
//! durability barrier, the half-close; many connections at once; aborts.

mod support;

use std::time::Duration;

use kapacitor_pagertree::proto::{BeginBatch, EdgeType, EndBatch, ValueType, response};
use support::Agent;
use support::kapacitor::{Kapacitor, Opt, error_text, opt, point};

/// The Mode 2 node of the issue: `@pagertree().levelFrom('level').idFrom('alertID').messageFrom('message')`,
/// with `dryRun` so it needs no endpoint.
fn mode2() -> Vec<Opt> {
    vec![
        opt("levelFrom").string("level"),
        opt("idFrom").string("alertID"),
        opt("messageFrom").string("message"),
        opt("dryRun"),
    ]
}

fn alert_point(id: &str, level: &str, t: i64) -> support::kapacitor::PointBuilder {
    point("cpu")
        .time(t)
        .dimension("host", id)
        .tag("alertID", id)
        .tag("level", level)
        .string_field("message", &format!("{id} is {level}"))
        .field("usage", 97.5)
}

/// The log lines of committed events for alert `id`.
fn event_lines(agent: &Agent, id: &str) -> Vec<String> {
    let needle = format!("\"id\":\"{id}\"");
    agent
        .log()
        .lines()
        .filter(|l| l.contains("alert event") && l.contains(&needle))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_declares_options_on_both_sockets() {
    let agent = Agent::start();
    for (path, edge) in [
        (agent.stream_socket(), EdgeType::Stream),
        (agent.batch_socket(), EdgeType::Batch),
    ] {
        let mut k = Kapacitor::connect(path).await;
        let info = k.info().await;
        assert_eq!(info.wants, edge as i32);
        assert_eq!(info.provides, edge as i32);
        assert_eq!(
            info.options["levelFrom"].value_types,
            vec![ValueType::String as i32]
        );
        assert_eq!(info.options["dryRun"].value_types, Vec::<i32>::new());
        // The probe: Kapacitor closes right after Info, and the agent closes at once.
        assert!(k.close().await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_stream_conversation() {
    let agent = Agent::start();
    let mut k = Kapacitor::connect(agent.stream_socket()).await;

    k.init_ok("cpu_alert", "pagertree2", mode2()).await;
    let restore = k
        .restore(kapacitor_pagertree::udf::snapshot::snapshot_bytes())
        .await;
    assert!(restore.success);

    let t0 = 1_700_000_000_000_000_000;
    k.point(alert_point("web01", "CRITICAL", t0)).await;
    k.point(alert_point("web02", "WARNING", t0 + 1)).await;
    k.keepalive().await;
    k.point(alert_point("web01", "OK", t0 + 2)).await;

    let (emitted, snap) = k.snapshot().await;
    assert!(
        !snap.is_empty(),
        "the snapshot is a non-empty version header"
    );
    let emitted_points: Vec<_> = emitted
        .iter()
        .filter_map(|m| match m {
            response::Message::Point(p) => Some(p),
            _ => None,
        })
        .collect();
    // Every point that raised an event is emitted back, with its grouping intact.
    assert!(emitted_points.len() >= 2, "{emitted:?}");
    let first = emitted_points[0];
    assert_eq!(
        (
            first.name.as_str(),
            first.database.as_str(),
            first.retention_policy.as_str()
        ),
        ("cpu", "telegraf", "autogen")
    );
    assert_eq!(first.dimensions, vec!["host".to_string()]);
    assert_eq!(first.group, "host=web01");

    // Snapshot is a barrier: the events are committed (logged) before it is answered.
    let web01 = event_lines(&agent, "web01");
    assert_eq!(web01.len(), 2, "{web01:?}\n{}", agent.log());
    assert!(
        web01[0].contains("CRITICAL")
            && web01[0].contains("cpu_alert")
            && web01[0].contains("pagertree2")
    );
    assert!(web01[1].contains("\"level\":\"OK\""), "{}", web01[1]);
    assert_eq!(event_lines(&agent, "web02").len(), 1);

    // The normal end: half-close, the agent finishes, flushes and closes at once.
    k.point(alert_point("web03", "CRITICAL", t0 + 3)).await;
    let started = std::time::Instant::now();
    let rest = k.close().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the agent lingered {:?}",
        started.elapsed()
    );
    assert!(rest.iter().all(|r| r.message.is_some()));
    assert_eq!(error_text(&rest), None);
    // The last event was committed before the connection closed.
    assert_eq!(event_lines(&agent, "web03").len(), 1, "{}", agent.log());
    assert!(agent.wait_log("session ended", Duration::from_secs(5)));
    assert!(
        agent.log().contains("end=\"closed\"") || agent.log().contains("end=closed"),
        "{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_batch_conversation() {
    let agent = Agent::start();
    let mut k = Kapacitor::connect(agent.batch_socket()).await;
    k.init_ok("batch_alert", "pagertreeBatch2", mode2()).await;

    let t0 = 1_700_000_000_000_000_000;
    for b in 0..3 {
        k.begin_batch(BeginBatch {
            name: "cpu".into(),
            group: "host=db1".into(),
            size: 2,
            ..Default::default()
        })
        .await;
        for i in 0..2 {
            k.point(alert_point("db1", "CRITICAL", t0 + b * 10 + i))
                .await;
        }
        k.end_batch(EndBatch {
            name: "cpu".into(),
            group: "host=db1".into(),
            tmax: t0 + b * 10 + 1,
            ..Default::default()
        })
        .await;
    }
    // An empty batch is legal.
    k.begin_batch(BeginBatch {
        name: "cpu".into(),
        size: 0,
        ..Default::default()
    })
    .await;
    k.end_batch(EndBatch {
        name: "cpu".into(),
        ..Default::default()
    })
    .await;
    let (emitted, _) = k.snapshot().await;
    assert!(
        emitted
            .iter()
            .any(|m| matches!(m, response::Message::End(_))),
        "{emitted:?}"
    );
    assert!(!event_lines(&agent, "db1").is_empty(), "{}", agent.log());
    let rest = k.close().await;
    assert_eq!(error_text(&rest), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_init_names_the_option() {
    let agent = Agent::start();
    let mut k = Kapacitor::connect(agent.stream_socket()).await;
    let init = k
        .init(
            "t",
            "n",
            vec![
                opt("levelFrom").string("level"),
                opt("dryRun"),
                opt("noSuchOption"),
            ],
        )
        .await;
    assert!(!init.success);
    assert!(init.error.contains("noSuchOption"), "{}", init.error);
    let rest = k.close().await;
    assert_eq!(error_text(&rest), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_connections() {
    let agent = Agent::start();
    let mut sessions = Vec::new();
    for c in 0..100 {
        let path = if c % 2 == 0 {
            agent.stream_socket()
        } else {
            agent.batch_socket()
        }
        .to_path_buf();
        sessions.push(tokio::spawn(async move {
            let mut k = Kapacitor::connect(&path).await;
            k.init_ok(&format!("task{c}"), "pagertree2", mode2()).await;
            let id = format!("conn{c}");
            let batch = c % 2 == 1;
            for i in 0..20 {
                if batch {
                    k.begin_batch(BeginBatch {
                        name: "cpu".into(),
                        size: 1,
                        ..Default::default()
                    })
                    .await;
                }
                k.point(alert_point(&id, "CRITICAL", 1_700_000_000_000_000_000 + i))
                    .await;
                if batch {
                    k.end_batch(EndBatch {
                        name: "cpu".into(),
                        tmax: 1_700_000_000_000_000_000 + i,
                        ..Default::default()
                    })
                    .await;
                }
            }
            let (emitted, _) = k.snapshot().await;
            let rest = k.close().await;
            assert_eq!(error_text(&rest), None);
            (c, emitted.len() + rest.len())
        }));
    }
    for s in sessions {
        let (c, n) = s.await.unwrap();
        assert!(n > 0, "connection {c} got nothing back");
    }
    for c in [0, 37, 99] {
        assert!(
            !event_lines(&agent, &format!("conn{c}")).is_empty(),
            "conn{c}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_mid_stream_keeps_the_agent_serving() {
    let agent = Agent::start();
    // A healthy session open throughout.
    let mut healthy = Kapacitor::connect(agent.stream_socket()).await;
    assert!(healthy.init("healthy", "n", mode2()).await.success);

    // A session aborted in the middle of a stream: the socket is dropped
    // with points still flowing (a reset, from the agent's side).
    {
        let k = Kapacitor::connect(agent.stream_socket()).await;
        let mut k = k;
        assert!(k.init("aborted", "n", mode2()).await.success);
        for i in 0..200 {
            k.point(alert_point("ab", "CRITICAL", 1_700_000_000_000_000_000 + i))
                .await;
        }
        k.abort();
    }
    // A raw connection closed in the middle of a frame.
    {
        use tokio::io::AsyncWriteExt;
        let mut raw = tokio::net::UnixStream::connect(agent.stream_socket())
            .await
            .unwrap();
        let frame =
            support::kapacitor::frames(&[support::kapacitor::init_request("raw", "n", mode2())]);
        raw.write_all(&frame[..frame.len() / 2]).await.unwrap();
        drop(raw);
    }

    healthy
        .point(alert_point("still", "CRITICAL", 1_700_000_000_000_000_000))
        .await;
    let (emitted, _) = healthy.snapshot().await;
    assert!(!emitted.is_empty());
    assert_eq!(error_text(&healthy.close().await), None);
    // The agent still accepts new connections.
    let mut again = Kapacitor::connect(agent.stream_socket()).await;
    assert!(again.info().await.options.contains_key("levelFrom"));
    assert!(
        agent.log().contains("task=aborted") || agent.log().contains("task=\"aborted\""),
        "{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_snapshot_is_accepted_and_logged() {
    let agent = Agent::start();
    for (i, bytes) in [
        b"{\"some\":\"other agent\"}".to_vec(),
        b"KPTSNAP\0\x07".to_vec(),
    ]
    .into_iter()
    .enumerate()
    {
        let mut k = Kapacitor::connect(agent.stream_socket()).await;
        let task = format!("restored{i}");
        assert!(k.init(&task, "pagertree7", mode2()).await.success);
        let r = k.restore(bytes).await;
        assert!(r.success, "Restore must never refuse: {}", r.error);
        assert!(r.error.is_empty());
        // The node works normally afterwards.
        k.point(alert_point(
            "after-restore",
            "CRITICAL",
            1_700_000_000_000_000_000,
        ))
        .await;
        let (_, snap) = k.snapshot().await;
        assert!(!snap.is_empty());
        k.close().await;
        let warning = agent
            .log()
            .lines()
            .find(|l| l.contains("unusable snapshot") && l.contains(&task))
            .map(String::from)
            .unwrap_or_else(|| panic!("no warning for {task}:\n{}", agent.log()));
        assert!(warning.contains("WARN"), "{warning}");
        assert!(warning.contains("pagertree7"), "{warning}");
        let reason = if i == 0 {
            "not a kapacitor-pagertree snapshot"
        } else {
            "version 7"
        };
        assert!(warning.contains(reason), "{warning}");
    }
}
