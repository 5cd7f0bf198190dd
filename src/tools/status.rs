//! What the running agent reports about itself beyond counters: whether it
//! is ready ([`Readiness`], behind `/readyz`) and which alerts are open now
//! ([`AlertsView`], behind `GET /api/v1/alerts` and the `alerts` command).
//!
//! Both are process-wide, like the metrics, so the layers that know the facts
//! (the socket server, the outbox, the dispatcher) set them without plumbing:
//!
//! - the daemon (`app::run_sessions`) calls [`readiness()`]`.set_stream_listening(true)` /
//!   `set_batch_listening(true)` once both sockets listen;
//! - [`watch_outbox`] asks the outbox once a second whether it can store
//!   (`set_outbox_writable`) and what became of the held events;
//! - every event handed on for delivery goes through
//!   [`AlertsView::record_event`] (the `serve` command wraps the committer with
//!   [`ViewingCommitter`], so nodes need not call it);
//! - what PagerTree did with the latest event of an id is set with
//!   [`AlertsView::set_delivery`] / [`AlertsView::sync_delivery`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::alert::sink::{CommitError, Committer};
use crate::alert::store::StoredAlert;
use crate::alert::{Event, Level};
use crate::delivery::outbox::{HeldKind, Outbox};
use tokio_util::sync::CancellationToken;

/// The readiness facts `/readyz` reports.
#[derive(Debug)]
pub struct Readiness {
    stream: AtomicBool,
    batch: AtomicBool,
    outbox: AtomicBool,
    outbox_reason: Mutex<String>,
    /// Connections open now and `server.max_connections` (0: not serving yet).
    connections: AtomicUsize,
    max_connections: AtomicUsize,
}

impl Default for Readiness {
    /// Not listening yet; the outbox is assumed writable until it says otherwise.
    fn default() -> Self {
        Self {
            stream: AtomicBool::new(false),
            batch: AtomicBool::new(false),
            outbox: AtomicBool::new(true),
            outbox_reason: Mutex::new(String::new()),
            connections: AtomicUsize::new(0),
            max_connections: AtomicUsize::new(0),
        }
    }
}

impl Readiness {
    pub fn set_stream_listening(&self, up: bool) {
        self.stream.store(up, Ordering::Release);
    }

    pub fn set_batch_listening(&self, up: bool) {
        self.batch.store(up, Ordering::Release);
    }

    /// `reason` says why it cannot store (disk full, read-only…); ignored when writable.
    pub fn set_outbox_writable(&self, writable: bool, reason: &str) {
        let mut r = self.outbox_reason.lock().unwrap_or_else(|p| p.into_inner());
        *r = if writable {
            String::new()
        } else {
            reason.to_string()
        };
        self.outbox.store(writable, Ordering::Release);
    }

    /// The UDF connections open now and the limit (`server.max_connections`).
    pub fn set_connections(&self, open: usize, max: usize) {
        self.max_connections.store(max, Ordering::Release);
        self.connections.store(open, Ordering::Release);
    }

    /// `Ok` when ready, else every reason it is not.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if !self.stream.load(Ordering::Acquire) {
            why.push("the stream socket is not listening".to_string());
        }
        if !self.batch.load(Ordering::Acquire) {
            why.push("the batch socket is not listening".to_string());
        }
        if !self.outbox.load(Ordering::Acquire) {
            let r = self.outbox_reason.lock().unwrap_or_else(|p| p.into_inner());
            why.push(format!("the outbox cannot store events (degraded): {r}"));
        }
        let max = self.max_connections.load(Ordering::Acquire);
        let open = self.connections.load(Ordering::Acquire);
        if max > 0 && open >= max {
            why.push(format!(
                "at the connection limit: {open} connections open, server.max_connections = {max}; \
                 new connections are refused"
            ));
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

/// The process-wide readiness.
pub fn readiness() -> &'static Readiness {
    static R: OnceLock<Readiness> = OnceLock::new();
    R.get_or_init(Readiness::default)
}

/// What became of the latest event of an open alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Committed, not yet answered by PagerTree.
    Pending,
    /// PagerTree accepted it.
    Delivered,
    /// A transient failure; it will be retried.
    Retrying,
    /// Refused (4xx); kept and retried slowly until a human acts.
    Parked,
    /// Older than `max_age`: moved to the dead-letter table.
    DeadLetter,
    /// The node has `.dryRun()`: never sent.
    DryRun,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Parked => "parked",
            DeliveryState::DeadLetter => "dead_letter",
            DeliveryState::DryRun => "dry_run",
        }
    }
}

/// One open alert as `GET /api/v1/alerts` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAlert {
    pub task: String,
    pub node: String,
    pub id: String,
    pub level: Level,
    /// When the alert left OK (RFC 3339): the event time minus its duration.
    /// Empty when unknown: an alert open before the agent restarted, until
    /// its next event.
    pub since: String,
    /// The time of its latest event (RFC 3339).
    pub last_event: String,
    pub message: String,
    pub delivery: DeliveryState,
    /// The last delivery error or refusal, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_detail: Option<String>,
}

/// The alerts currently non-OK, per (task, node, id).
#[derive(Debug, Default)]
pub struct AlertsView {
    open: Mutex<BTreeMap<(String, String, String), OpenAlert>>,
}

impl AlertsView {
    /// Notes an event handed on for delivery: an OK closes the alert, any
    /// other level opens or updates it with delivery `pending` (`dry_run` for
    /// a dry-run node).
    pub fn record_event(&self, e: &Event) {
        let key = (e.task.clone(), e.node.clone(), e.id.clone());
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if e.level == Level::OK {
            open.remove(&key);
            return;
        }
        let delivery = if e.route.dry_run {
            DeliveryState::DryRun
        } else {
            DeliveryState::Pending
        };
        open.insert(
            key,
            OpenAlert {
                task: e.task.clone(),
                node: e.node.clone(),
                id: e.id.clone(),
                level: e.level,
                since: crate::gofmt::rfc3339_nano(e.time.saturating_sub(e.duration)),
                last_event: crate::gofmt::rfc3339_nano(e.time),
                message: e.message.clone(),
                delivery,
                delivery_detail: None,
            },
        );
    }

    /// Records what happened to the latest event of an open alert; an alert
    /// that is not open (it went OK meanwhile) is left alone.
    pub fn set_delivery(
        &self,
        task: &str,
        node: &str,
        id: &str,
        state: DeliveryState,
        detail: Option<String>,
    ) {
        let key = (task.to_string(), node.to_string(), id.to_string());
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = open.get_mut(&key) {
            a.delivery = state;
            a.delivery_detail = detail;
        }
    }

    /// Brings the delivery states up to date from the outbox: `held` are the
    /// (task, node, id, state, reason) of its parked, dead-lettered and
    /// retrying (failed transiently, waiting for the next try) events, in
    /// outbox order; `outbox_empty` says nothing else waits. An open alert
    /// whose latest event is held shows that; one no longer held (retried,
    /// or sent after its failures) is pending again; and when nothing waits,
    /// every pending alert was delivered.
    pub fn sync_delivery(
        &self,
        held: &[(String, String, String, DeliveryState, String)],
        outbox_empty: bool,
    ) {
        // Indexed before the lock (the committer records events under it);
        // in outbox order, so the newest held entry of an id wins.
        let newest: HashMap<(&str, &str, &str), (&DeliveryState, &String)> = held
            .iter()
            .map(|(t, n, i, state, reason)| ((t.as_str(), n.as_str(), i.as_str()), (state, reason)))
            .collect();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for ((task, node, id), a) in open.iter_mut() {
            if a.delivery == DeliveryState::DryRun {
                continue;
            }
            match newest.get(&(task.as_str(), node.as_str(), id.as_str())) {
                Some((state, reason)) => {
                    a.delivery = **state;
                    a.delivery_detail = Some((*reason).clone());
                }
                None if matches!(
                    a.delivery,
                    DeliveryState::Parked | DeliveryState::DeadLetter | DeliveryState::Retrying
                ) =>
                {
                    a.delivery = if outbox_empty {
                        DeliveryState::Delivered
                    } else {
                        DeliveryState::Pending
                    };
                    a.delivery_detail = None;
                }
                None if outbox_empty && a.delivery != DeliveryState::Delivered => {
                    a.delivery = DeliveryState::Delivered;
                    a.delivery_detail = None;
                }
                None => {}
            }
        }
    }

    /// Starts the view from the alert state kept in the outbox (after a
    /// restart): each open alert with its level and the time of its last
    /// committed event. Its start and message were not kept: `since` and
    /// `message` stay empty until its next event. Delivery starts `pending`;
    /// the outbox watcher brings it up to date. An alert already present (an
    /// event arrived first) is left alone.
    pub fn seed(&self, alerts: impl IntoIterator<Item = (String, String, String, StoredAlert)>) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for (task, node, id, st) in alerts {
            if st.level == Level::OK {
                continue;
            }
            open.entry((task.clone(), node.clone(), id.clone()))
                .or_insert_with(|| OpenAlert {
                    task,
                    node,
                    id,
                    level: st.level,
                    since: String::new(),
                    last_event: crate::gofmt::rfc3339_nano(st.time),
                    message: String::new(),
                    delivery: DeliveryState::Pending,
                    delivery_detail: None,
                });
        }
    }

    /// Forgets the alerts of one node (its task was deleted).
    pub fn forget_node(&self, task: &str, node: &str) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|(t, n, _), _| !(t == task && n == node));
    }

    /// Every open alert, ordered by task, node, id.
    pub fn list(&self) -> Vec<OpenAlert> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.values().cloned().collect()
    }
}

/// The process-wide view of open alerts.
pub fn alerts_view() -> &'static AlertsView {
    static V: OnceLock<AlertsView> = OnceLock::new();
    V.get_or_init(AlertsView::default)
}

/// A committer that records every committed event in [`alerts_view()`]
/// after the inner committer stored it, so the view never shows an alert the
/// agent has not taken responsibility for; optionally it also logs each
/// committed event as one line (see [`ViewingCommitter::logging`]).
#[derive(Debug)]
pub struct ViewingCommitter<C> {
    inner: C,
    log: bool,
}

impl<C: Committer> ViewingCommitter<C> {
    pub fn new(inner: C) -> Self {
        Self { inner, log: false }
    }

    /// Also log each committed event: target `pagertree::event`, message
    /// `alert event`, field `event` = one JSON object (task, node, id, level,
    /// previousLevel, message, time, duration, endpoint, dryRun) — the target
    /// and message of the log committer's line too (whose object has details,
    /// recoverable and data instead of endpoint and dryRun), so an operator
    /// finds every event the same way whatever stores it. URLs are not in it
    /// (the route is named, not shown).
    pub fn logging(mut self) -> Self {
        self.log = true;
        self
    }
}

impl<C: Committer> Committer for ViewingCommitter<C> {
    fn commit(&mut self, events: &[Event]) -> Result<(), CommitError> {
        self.inner.commit(events)?;
        let view = alerts_view();
        for e in events {
            view.record_event(e);
            if self.log {
                let line = serde_json::json!({
                    "task": e.task, "node": e.node, "id": e.id,
                    "level": e.level, "previousLevel": e.previous_level,
                    "message": e.message,
                    "time": crate::gofmt::rfc3339_nano(e.time), "duration": e.duration,
                    "endpoint": e.route.endpoint, "dryRun": e.route.dry_run,
                });
                tracing::info!(target: "pagertree::event", event = %line, "alert event");
            }
        }
        Ok(())
    }
}

/// Once a second: readiness (can the outbox store?) and the delivery state
/// of the open alerts, from the outbox, for `/readyz` and `alerts`.
pub async fn watch_outbox(outbox: Outbox, stop: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        readiness().set_outbox_writable(
            outbox.is_ready(),
            "it cannot store (disk full, read-only or I/O errors); events wait in memory — see the log",
        );
        let ob = outbox.clone();
        let read = tokio::task::spawn_blocking(move || {
            Ok::<_, String>((
                ob.held().map_err(|e| e.to_string())?,
                ob.retrying().map_err(|e| e.to_string())?,
                ob.pending().map_err(|e| e.to_string())?,
            ))
        })
        .await;
        match read {
            Ok(Ok((held, retrying, (pending, _)))) => {
                let mut held: Vec<_> = held
                    .into_iter()
                    .map(|h| {
                        let state = match h.kind {
                            HeldKind::Parked => DeliveryState::Parked,
                            _ => DeliveryState::DeadLetter,
                        };
                        (h.seq, (h.task, h.node, h.alert_id, state, h.reason))
                    })
                    .chain(retrying.into_iter().map(|r| {
                        let state = DeliveryState::Retrying;
                        (r.seq, (r.task, r.node, r.alert_id, state, r.last_error))
                    }))
                    .collect();
                // In outbox order: an alert's newest held or retrying event wins.
                held.sort_by_key(|(seq, _)| *seq);
                let held: Vec<_> = held.into_iter().map(|(_, h)| h).collect();
                alerts_view().sync_delivery(&held, pending == 0 && outbox.is_ready());
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot read the outbox for the alerts view"),
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::alert::{Route, Series};

    fn event(id: &str, level: Level, time: i64, duration: i64) -> Event {
        Event {
            task: "t".into(),
            node: "n".into(),
            id: id.into(),
            message: format!("{id} is {level}"),
            details: String::new(),
            time,
            duration,
            level,
            previous_level: Level::OK,
            recoverable: true,
            data: Series::default(),
            route: Arc::new(Route::default()),
        }
    }

    #[test]
    fn readiness_lists_every_reason() {
        let r = Readiness::default();
        assert_eq!(r.check().unwrap_err().len(), 2);
        r.set_stream_listening(true);
        r.set_batch_listening(true);
        assert!(r.check().is_ok());
        r.set_outbox_writable(false, "disk full");
        let why = r.check().unwrap_err();
        assert_eq!(why.len(), 1);
        assert!(why[0].contains("disk full"));
        r.set_outbox_writable(true, "");
        assert!(r.check().is_ok());
        r.set_connections(3, 3);
        let why = r.check().unwrap_err();
        assert!(why[0].contains("server.max_connections = 3"), "{why:?}");
        r.set_connections(2, 3);
        assert!(r.check().is_ok());
    }

    #[test]
    fn view_opens_updates_and_closes_alerts() {
        let v = AlertsView::default();
        v.record_event(&event("a", Level::WARNING, 10_000_000_000, 0));
        v.record_event(&event("b", Level::CRITICAL, 20_000_000_000, 0));
        v.record_event(&event("a", Level::CRITICAL, 30_000_000_000, 20_000_000_000));
        v.set_delivery(
            "t",
            "n",
            "a",
            DeliveryState::Parked,
            Some("403 Forbidden".into()),
        );
        v.set_delivery("t", "n", "zzz", DeliveryState::Delivered, None);
        let l = v.list();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].id, "a");
        assert_eq!(l[0].level, Level::CRITICAL);
        assert_eq!(l[0].since, "1970-01-01T00:00:10Z");
        assert_eq!(l[0].last_event, "1970-01-01T00:00:30Z");
        assert_eq!(l[0].delivery, DeliveryState::Parked);
        assert_eq!(l[0].delivery_detail.as_deref(), Some("403 Forbidden"));
        assert_eq!(l[1].delivery, DeliveryState::Pending);
        v.record_event(&event("a", Level::OK, 40_000_000_000, 0));
        assert_eq!(v.list().len(), 1);
        v.forget_node("t", "n");
        assert!(v.list().is_empty());
    }

    #[test]
    fn delivery_states_follow_the_outbox() {
        let v = AlertsView::default();
        v.record_event(&event("a", Level::CRITICAL, 1, 0));
        v.record_event(&event("b", Level::WARNING, 1, 0));
        let held = vec![(
            "t".to_string(),
            "n".to_string(),
            "a".to_string(),
            DeliveryState::Parked,
            "403 Forbidden".to_string(),
        )];
        v.sync_delivery(&held, false);
        let l = v.list();
        assert_eq!(
            (l[0].delivery, l[0].delivery_detail.as_deref()),
            (DeliveryState::Parked, Some("403 Forbidden"))
        );
        assert_eq!(l[1].delivery, DeliveryState::Pending);
        // a was retried and everything went out.
        v.sync_delivery(&[], true);
        let l = v.list();
        assert_eq!(
            (l[0].delivery, l[0].delivery_detail.as_deref()),
            (DeliveryState::Delivered, None)
        );
        assert_eq!(l[1].delivery, DeliveryState::Delivered);
        // A new event of b is pending again until the outbox empties.
        v.record_event(&event("b", Level::CRITICAL, 2, 1));
        v.sync_delivery(&[], false);
        assert_eq!(v.list()[1].delivery, DeliveryState::Pending);
    }

    #[test]
    fn seed_restores_open_alerts_without_overwriting_newer_ones() {
        let v = AlertsView::default();
        v.record_event(&event("b", Level::WARNING, 5_000_000_000, 0));
        let st = |level, time| StoredAlert { level, time };
        v.seed([
            (
                "t".into(),
                "n".into(),
                "a".into(),
                st(Level::CRITICAL, 1_000_000_000),
            ),
            ("t".into(), "n".into(), "b".into(), st(Level::CRITICAL, 1)),
            ("t".into(), "n".into(), "c".into(), st(Level::OK, 1)),
        ]);
        let l = v.list();
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].id.as_str(), l[0].level), ("a", Level::CRITICAL));
        assert_eq!(l[0].since, "");
        assert_eq!(l[0].last_event, "1970-01-01T00:00:01Z");
        assert_eq!(l[0].delivery, DeliveryState::Pending);
        // b had a newer event: kept as recorded.
        assert_eq!(l[1].level, Level::WARNING);
        v.sync_delivery(&[], true);
        assert_eq!(v.list()[0].delivery, DeliveryState::Delivered);
    }

    #[test]
    fn dry_run_events_are_marked() {
        let v = AlertsView::default();
        let mut e = event("a", Level::INFO, 1, 0);
        e.route = Arc::new(Route {
            dry_run: true,
            ..Route::default()
        });
        v.record_event(&e);
        assert_eq!(v.list()[0].delivery, DeliveryState::DryRun);
    }
}
