//! Delivery: from an [`Event`] to PagerTree.
//!
//! The sessions hand events to a [`Sink`]: a bounded queue drained by one
//! committer thread. The committer takes whatever is queued as one group
//! (group commit), stores it (the outbox, or only the log for the log sink and
//! `dryRun`), and only then acknowledges the barriers queued behind it — so a
//! [`Sink::barrier`] that returns means every event submitted before it is
//! committed. That is what a `SnapshotResponse` and a session's end wait for.
//!
//! - [`log_sink`]: the first committer: each event as one JSON line in the log.
//! - `outbox`, `dispatch`, `pagertree`: the durable path (see their docs).

pub mod cli;
pub mod dispatch;
pub mod log_sink;
pub mod outbox;
pub mod pagertree;
pub mod redact;
pub mod service;
pub mod sessions;

use std::thread;

use tokio::sync::{mpsc, oneshot};

use crate::alert::Event;

/// What the committer thread receives.
#[derive(Debug)]
pub enum SinkMsg {
    Event(Box<Event>),
    /// Acknowledged once every event queued before it is committed.
    Barrier(oneshot::Sender<()>),
}

/// Errors of the hand-off itself.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("the delivery committer has stopped; the agent is shutting down or failed")]
    Closed,
}

/// Returned by [`Sink::try_submit`] when the queue is full: the event comes back.
#[derive(Debug)]
pub struct SinkFull(pub Box<Event>);

/// The sessions' handle on delivery. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::Sender<SinkMsg>,
}

impl Sink {
    /// Queues an event, waiting while the bounded queue is full.
    pub async fn submit(&self, event: Box<Event>) -> Result<(), SinkError> {
        self.tx
            .send(SinkMsg::Event(event))
            .await
            .map_err(|_| SinkError::Closed)
    }

    /// Queues an event without waiting; a full queue hands it back.
    pub fn try_submit(&self, event: Box<Event>) -> Result<(), Result<SinkFull, SinkError>> {
        match self.tx.try_send(SinkMsg::Event(event)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(SinkMsg::Event(e))) => Err(Ok(SinkFull(e))),
            Err(_) => Err(Err(SinkError::Closed)),
        }
    }

    /// Waits until every event submitted before this call is committed.
    pub async fn barrier(&self) -> Result<(), SinkError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(SinkMsg::Barrier(tx))
            .await
            .map_err(|_| SinkError::Closed)?;
        rx.await.map_err(|_| SinkError::Closed)
    }
}

/// Stores a group of events. Runs on the committer's own thread, so it may
/// block (SQLite, fsync); it must never lose an event it returned `Ok` for.
pub trait Committer: Send + 'static {
    /// Commits the events in order. On `Err` the same group is offered again
    /// after a pause (the committer keeps it; nothing is dropped).
    fn commit(&mut self, events: &[Event]) -> Result<(), crate::delivery::CommitError>;
}

/// A committer's failure to store a group.
#[derive(Debug, thiserror::Error)]
#[error("cannot commit {count} event(s): {reason}")]
pub struct CommitError {
    pub count: usize,
    pub reason: String,
}

/// Starts the committer thread behind a new [`Sink`] whose queue holds at
/// most `capacity` messages. The thread ends when every `Sink` is dropped,
/// after committing what was queued.
pub fn spawn_sink<C: Committer>(
    mut committer: C,
    capacity: usize,
) -> (Sink, thread::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<SinkMsg>(capacity.max(1));
    let handle = thread::Builder::new()
        .name("pagertree-commit".into())
        .spawn(move || {
            let mut events: Vec<Event> = Vec::new();
            let mut barriers: Vec<oneshot::Sender<()>> = Vec::new();
            let mut open = true;
            while open {
                // Block for the first message, then take whatever else is queued:
                // that is the group of one commit.
                match rx.blocking_recv() {
                    Some(msg) => take(msg, &mut events, &mut barriers),
                    None => open = false,
                }
                while events.len() < 4096 {
                    match rx.try_recv() {
                        Ok(msg) => take(msg, &mut events, &mut barriers),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
                if !events.is_empty() {
                    let mut delay = std::time::Duration::from_millis(50);
                    while let Err(e) = committer.commit(&events) {
                        tracing::error!(error = %e, "commit failed; retrying, nothing is dropped");
                        thread::sleep(delay);
                        delay = (delay * 2).min(std::time::Duration::from_secs(5));
                    }
                    events.clear();
                }
                for b in barriers.drain(..) {
                    let _ = b.send(());
                }
            }
        })
        .expect("spawning the committer thread");
    (Sink { tx }, handle)
}

fn take(msg: SinkMsg, events: &mut Vec<Event>, barriers: &mut Vec<oneshot::Sender<()>>) {
    match msg {
        SinkMsg::Event(e) => events.push(*e),
        SinkMsg::Barrier(b) => barriers.push(b),
    }
}
