//! The delivery stack in one piece, as `serve` runs it: the outbox under the
//! data directory, the committer thread behind a [`Sink`], and the
//! dispatcher. The ops layer starts it once and hands out
//! [`Delivery::sink`] and [`Delivery::store`] to the sessions.
//!
//! Shutdown order (docs/architecture.md, *graceful shutdown*): the sessions stop
//! and drop their sinks; [`Delivery::shutdown`] then lets the committer
//! store whatever was queued, stops the dispatcher from starting requests,
//! gives those on the wire `shutdown_grace`, and returns. Undelivered rows
//! stay in the outbox for the next start.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::alert::sink::{Committer, Sink, spawn_sink_with_window};
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
    committer: std::thread::JoinHandle<()>,
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
    /// with its grace period. The committer gets `commit_limit`: one that is
    /// still running then (a session that never let go of its sink, commits
    /// failing with a full memory queue) is left behind, and the events it
    /// holds are returned as a count — they are not stored anywhere.
    pub async fn shutdown(self, commit_limit: std::time::Duration) -> usize {
        let Delivery {
            outbox: _,
            sink,
            committer,
            dispatcher,
            stop,
        } = self;
        let probe = sink.probe();
        drop(sink);
        let joined = tokio::time::timeout(
            commit_limit,
            tokio::task::spawn_blocking(move || committer.join()),
        )
        .await;
        let uncommitted = match joined {
            Ok(Ok(Ok(()))) => 0,
            Ok(_) => {
                tracing::error!("the delivery committer thread ended abnormally");
                probe.outstanding()
            }
            Err(_) => probe.outstanding(),
        };
        stop.cancel();
        dispatcher.join().await;
        uncommitted
    }
}
