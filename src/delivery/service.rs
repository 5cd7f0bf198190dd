//! The delivery stack in one piece, as `serve` runs it: the outbox under the
//! data directory, the committer thread behind a [`Sink`], and the
//! dispatcher. The ops layer starts it once and hands out
//! [`Delivery::sink`] and [`Delivery::store`] to the sessions.
//!
//! Shutdown order (`app::run` owns it; README, *Readiness and systemd*): the sessions stop
//! and drop their sinks; [`Delivery::shutdown`] then lets the committer
//! store whatever was queued (or, if its commits still fail near the limit,
//! makes it give its events back), stops the dispatcher from starting
//! requests, gives those on the wire `shutdown_grace`, and returns what it
//! could not commit. Undelivered rows stay in the outbox for the next start;
//! the caller spills what never got there.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::alert::Event;
use crate::alert::sink::{Committer, CommitterHandle, Sink, spawn_sink_with_window};
use crate::alert::store::AlertStateStore;
use crate::delivery::dispatch::{DispatchConfig, DispatchError, Dispatcher};
use crate::delivery::outbox::{Outbox, OutboxError};
use crate::delivery::pagertree::Endpoints;
use crate::ops::config::Config;

/// Why delivery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
}

/// How many events the hand-off queue between the sessions and the
/// committer holds before `Sink::submit` waits.
pub const SINK_CAPACITY: usize = 8192;

/// The running delivery stack.
#[derive(Debug)]
pub struct Delivery {
    outbox: Outbox,
    sink: Sink,
    committer: CommitterHandle,
    dispatcher: Dispatcher,
    stop: CancellationToken,
}

impl Delivery {
    /// Opens `<data_dir>/outbox.db` and starts the committer and the
    /// dispatcher (inside a tokio runtime). `shutdown` firing stops the
    /// dispatcher from starting new requests.
    pub fn start(config: &Config, shutdown: &CancellationToken) -> Result<Delivery, DeliveryError> {
        Self::start_with(config, shutdown, |outbox| outbox)
    }

    /// Like [`Delivery::start`], with the committer built around the outbox
    /// by `wrap` (`serve` adds the alerts view and the event log line).
    pub fn start_with<C: Committer>(
        config: &Config,
        shutdown: &CancellationToken,
        wrap: impl FnOnce(Outbox) -> C,
    ) -> Result<Delivery, DeliveryError> {
        let outbox = Outbox::open(
            &config.server.data_dir,
            Endpoints::from_config(config),
            config.delivery.memory_queue,
        )?;
        let (sink, committer) = spawn_sink_with_window(
            wrap(outbox.clone()),
            SINK_CAPACITY,
            config.delivery.commit_window,
        );
        let stop = shutdown.child_token();
        let dispatcher = Dispatcher::spawn(
            outbox.clone(),
            DispatchConfig::from(&config.delivery),
            stop.clone(),
        )?;
        Ok(Delivery {
            outbox,
            sink,
            committer,
            dispatcher,
            stop,
        })
    }

    /// The sessions' hand-off (clone it per session).
    pub fn sink(&self) -> Sink {
        self.sink.clone()
    }

    /// The durable alert state, for nodes at Init.
    pub fn store(&self) -> Arc<dyn AlertStateStore> {
        Arc::new(self.outbox.clone())
    }

    /// The outbox: session marks, readiness (`is_ready`), `outbox list`.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Stops delivery. Every other `Sink` clone must be dropped first (the
    /// committer finishes when the last one goes); then the dispatcher stops
    /// with its grace period. The committer gets `commit_limit`: one whose
    /// commits are still failing then (the outbox cannot store and its memory
    /// queue is full) is made to give up, and the events it held come back in
    /// [`Unfinished::events`] for the caller to store elsewhere (the spill
    /// file). Only a committer stuck inside one commit, or behind a sink
    /// someone still holds, is left behind; its events are only counted.
    pub async fn shutdown(self, commit_limit: std::time::Duration) -> Unfinished {
        let Delivery {
            outbox: _,
            sink,
            committer,
            dispatcher,
            stop,
        } = self;
        let probe = sink.probe();
        drop(sink);
        // The last part of the limit is for a committer that gives up: one
        // more try, then it hands its events back.
        let give_up_after = commit_limit.saturating_sub(GIVE_UP_WAIT);
        let mut finished = wait_finished(&committer, give_up_after).await;
        if !finished {
            committer.give_up();
            finished = wait_finished(&committer, commit_limit - give_up_after).await;
        }
        let unfinished = if finished {
            match tokio::task::spawn_blocking(move || committer.join()).await {
                Ok(Ok(events)) => Unfinished {
                    events,
                    stranded: 0,
                },
                _ => {
                    tracing::error!("the delivery committer thread ended abnormally");
                    Unfinished {
                        events: Vec::new(),
                        stranded: probe.outstanding(),
                    }
                }
            }
        } else {
            Unfinished {
                events: Vec::new(),
                stranded: probe.outstanding(),
            }
        };
        stop.cancel();
        dispatcher.join().await;
        unfinished
    }
}

/// Of the committer's time at shutdown, what is kept for giving up.
const GIVE_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Polls (every 20 ms) until the committer thread ends or `limit` passes.
async fn wait_finished(committer: &CommitterHandle, limit: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !committer.is_finished() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    true
}

/// What [`Delivery::shutdown`] could not commit.
#[derive(Debug, Default)]
pub struct Unfinished {
    /// Events a committer that gave up handed back, in order: never stored.
    pub events: Vec<Event>,
    /// Events held by a committer that did not end: counted, not stored.
    pub stranded: usize,
}

impl Unfinished {
    /// Nothing was left uncommitted.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.stranded == 0
    }
}
