use super::*;
use crate::alert::{Route, Series};
use crate::ops::config::Config;

pub(crate) fn ev(id: &str, level: Level, time: i64) -> Event {
    Event {
        task: "task".into(),
        node: "node".into(),
        id: id.into(),
        message: format!("{id} is {level}"),
        details: String::new(),
        time,
        duration: 0,
        level,
        previous_level: Level::OK,
        recoverable: true,
        data: Series::default(),
        route: Arc::new(Route {
            url: Some("http://127.0.0.1:9/integration/int_test".into()),
            ..Route::default()
        }),
    }
}

fn open(dir: &Path) -> Outbox {
    Outbox::open(dir, Endpoints::from_config(&Config::default()), 1000).unwrap()
}

#[test]
fn commit_stores_rows_and_alert_state_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    ob.commit(&[
        ev("a", Level::CRITICAL, 10),
        ev("b", Level::WARNING, 11),
        ev("a", Level::OK, 12),
    ])
    .unwrap();
    let st = ob.load("task", "node").unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(
        st["b"],
        StoredAlert {
            level: Level::WARNING,
            time: 11
        }
    );
    assert!(ob.load("task", "other").unwrap().is_empty());
    let conn = connect(ob.path(), true).unwrap();
    let rows = load_rows(&conn, 0, 100).unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r.alert_id.as_str(), r.level.as_str()))
            .collect::<Vec<_>>(),
        [("a", "CRITICAL"), ("b", "WARNING"), ("a", "OK")]
    );
    assert_eq!(rows[0].url, "http://127.0.0.1:9/integration/int_test");
    assert_eq!(rows[0].format, Format::Kapacitor);
    assert_eq!(
        rows[0].body,
        Bytes::from(pagertree::kapacitor_body(&ev("a", Level::CRITICAL, 10)))
    );
    assert_eq!(ob.pending().unwrap().0, 3);
}

#[test]
fn dry_run_is_neither_stored_nor_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    let mut e = ev("a", Level::CRITICAL, 1);
    e.route = Arc::new(Route {
        dry_run: true,
        ..Route::default()
    });
    ob.commit(&[e]).unwrap();
    assert_eq!(ob.pending().unwrap().0, 0);
    assert!(ob.load("task", "node").unwrap().is_empty());
}

#[test]
fn committed_rows_survive_dropping_without_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut ob = open(dir.path());
        ob.commit(&[ev("a", Level::CRITICAL, 10)]).unwrap();
        ob.commit(&[ev("b", Level::INFO, 20)]).unwrap();
        std::mem::forget(ob); // no close, no checkpoint: like a crash
    }
    let ob = open(dir.path());
    assert_eq!(ob.pending().unwrap().0, 2);
    assert_eq!(ob.load("task", "node").unwrap().len(), 2);
}

#[test]
fn open_alerts_lists_every_non_ok_alert_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    let mut other = ev("z", Level::INFO, 20);
    other.task = "other".into();
    ob.commit(&[
        ev("a", Level::CRITICAL, 10),
        ev("b", Level::WARNING, 11),
        ev("b", Level::OK, 12),
        other,
    ])
    .unwrap();
    let open_now = open(dir.path()).open_alerts().unwrap();
    assert_eq!(
        open_now
            .iter()
            .map(|(t, n, i, s)| (t.as_str(), n.as_str(), i.as_str(), s.level, s.time))
            .collect::<Vec<_>>(),
        [
            ("other", "node", "z", Level::INFO, 20),
            ("task", "node", "a", Level::CRITICAL, 10)
        ]
    );
}

#[test]
fn sessions_mark_clear_list() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    ob.mark_session("t1", "n1", "stream").unwrap();
    ob.mark_session("t2", "n2", "batch").unwrap();
    ob.mark_session("t1", "n1", "stream").unwrap();
    let m = ob.marked_sessions().unwrap();
    assert_eq!(
        m.iter()
            .map(|s| (s.task.as_str(), s.edge.as_str()))
            .collect::<Vec<_>>(),
        [("t1", "stream"), ("t2", "batch")]
    );
    assert!(ob.clear_session("t1", "n1", "shutdown").unwrap());
    assert!(!ob.clear_session("t1", "n1", "shutdown").unwrap());
    let ob2 = open(dir.path());
    assert_eq!(ob2.marked_sessions().unwrap().len(), 1);
}

#[test]
fn dropping_marks_keeps_this_runs_and_revival_states_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    ob.mark_session("t", "old", "stream").unwrap();
    ob.mark_session("u", "n", "stream").unwrap();
    std::thread::sleep(Duration::from_millis(2));
    let started = now_ns();
    std::thread::sleep(Duration::from_millis(2));
    ob.mark_session("t", "new", "stream").unwrap();
    assert_eq!(ob.drop_session_marks("t", started).unwrap(), 1);
    let left: Vec<_> = ob
        .marked_sessions()
        .unwrap()
        .into_iter()
        .map(|m| format!("{}/{}", m.task, m.node))
        .collect();
    assert_eq!(left, ["t/new", "u/n"]);

    ob.record_revival("t", "waiting", 1, "still executing")
        .unwrap();
    ob.record_revival("t", "revived", 2, "disabled and enabled again")
        .unwrap();
    ob.record_revival("a", "skipped", 3, "404").unwrap();
    let r = open(dir.path()).revivals().unwrap();
    assert_eq!(
        r.iter()
            .map(|r| (r.task.as_str(), r.state.as_str(), r.at_ns))
            .collect::<Vec<_>>(),
        [("a", "skipped", 3), ("t", "revived", 2)]
    );
    ob.clear_revivals().unwrap();
    assert!(ob.revivals().unwrap().is_empty());
}

#[test]
fn retry_and_drop_held_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    ob.commit(&[
        ev("a", Level::CRITICAL, 1),
        ev("b", Level::CRITICAL, 2),
        ev("c", Level::CRITICAL, 3),
    ])
    .unwrap();
    {
        let conn = ob.conn();
        conn.execute(
            "UPDATE outbox SET state = 'parked', last_error = 'HTTP 403' WHERE alert_id = 'a'",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO dead_letter SELECT seq, task, node, alert_id, level, endpoint, url_override, url, format, \
             body, created_ns, attempts, last_error, 'older than max_age', 5 FROM outbox WHERE alert_id = 'b'",
            [],
        )
        .unwrap();
        conn.execute("DELETE FROM outbox WHERE alert_id = 'b'", [])
            .unwrap();
    }
    let held = ob.held().unwrap();
    assert_eq!(
        held.iter()
            .map(|h| (h.kind, h.alert_id.as_str()))
            .collect::<Vec<_>>(),
        [(HeldKind::Parked, "a"), (HeldKind::DeadLetter, "b")]
    );
    assert_eq!(
        held[0].url_redacted,
        "http://127.0.0.1:9/integration/int_te…"
    );
    assert_eq!(held[1].reason, "older than max_age");
    let retried = ob.retry(&Selection::Seqs(vec![held[1].seq])).unwrap();
    assert_eq!(retried.len(), 1);
    let conn = connect(ob.path(), true).unwrap();
    let rows = load_rows(&conn, 0, 10).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.alert_id.as_str()).collect::<Vec<_>>(),
        ["a", "c", "b"]
    );
    assert!(
        rows.iter().all(|r| r.seq != held[1].seq),
        "a retried dead letter gets a new seq"
    );
    let dropped = ob.drop_held(&Selection::All).unwrap();
    assert_eq!(dropped.len(), 1);
    assert_eq!(ob.pending().unwrap().0, 2);
    assert!(ob.held().unwrap().is_empty());
}

#[test]
fn degraded_mode_holds_in_memory_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    ob.commit(&[ev("a", Level::CRITICAL, 1)]).unwrap();
    // Make the database read-only for writes from this connection.
    ob.conn().execute_batch("PRAGMA query_only=1").unwrap();
    ob.commit(&[ev("b", Level::WARNING, 2), ev("a", Level::OK, 3)])
        .unwrap();
    assert!(!ob.is_ready());
    assert_eq!(ob.memory().rows.len(), 2);
    let st = ob.load("task", "node").unwrap();
    assert_eq!(
        st.keys().collect::<Vec<_>>(),
        ["b"],
        "memory state overlays the stored state"
    );
    ob.conn().execute_batch("PRAGMA query_only=0").unwrap();
    ob.commit(&[ev("c", Level::INFO, 4)]).unwrap();
    assert!(ob.is_ready());
    assert!(ob.memory().rows.is_empty());
    let conn = connect(ob.path(), true).unwrap();
    let ids: Vec<String> = load_rows(&conn, 0, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.alert_id)
        .collect();
    assert_eq!(ids, ["a", "b", "a", "c"]);
    assert_eq!(ob.load("task", "node").unwrap().len(), 2);
}

#[test]
fn recovery_does_not_wait_for_the_next_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path());
    ob.conn().execute_batch("PRAGMA query_only=1").unwrap();
    ob.commit(&[ev("a", Level::CRITICAL, 1)]).unwrap();
    ob.mark_session("t", "n", "stream").unwrap();
    assert!(!ob.try_recover());
    assert_eq!(
        ob.marked_sessions().unwrap().len(),
        1,
        "memory marks are visible"
    );
    ob.conn().execute_batch("PRAGMA query_only=0").unwrap();
    assert!(ob.try_recover());
    assert!(ob.is_ready());
    assert_eq!(ob.pending().unwrap().0, 1);
    assert_eq!(ob.marked_sessions().unwrap().len(), 1);
    assert_eq!(
        open(dir.path()).marked_sessions().unwrap().len(),
        1,
        "written to disk"
    );
}

#[test]
fn a_session_change_never_overtakes_an_older_one_held_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    ob.conn().execute_batch("PRAGMA query_only=1").unwrap();
    // Degraded: the mark waits in memory.
    ob.mark_session("t", "n", "stream").unwrap();
    assert!(!ob.is_ready());
    // The disk is back; the session ends before anything else was written.
    ob.conn().execute_batch("PRAGMA query_only=0").unwrap();
    ob.clear_session("t", "n", "eof").unwrap();
    assert!(ob.try_recover());
    // The clear is the newer change: the old mark must not come back.
    assert!(ob.marked_sessions().unwrap().is_empty());
    assert!(open(dir.path()).marked_sessions().unwrap().is_empty());
}

#[test]
fn memory_queue_full_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(dir.path(), Endpoints::default(), 2).unwrap();
    ob.conn().execute_batch("PRAGMA query_only=1").unwrap();
    ob.commit(&[ev("a", Level::CRITICAL, 1), ev("b", Level::CRITICAL, 1)])
        .unwrap();
    let e = ob.commit(&[ev("c", Level::CRITICAL, 1)]).unwrap_err();
    assert!(e.reason.contains("memory queue is full"), "{e}");
}
