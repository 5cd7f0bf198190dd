//! Delivery: from an [`Event`](crate::alert::Event) to PagerTree.
//!
//! Delivery implements the engine's [`Committer`](crate::alert::sink::Committer):
//! the sessions hand events to [`crate::alert::sink::Sink`], whose committer
//! thread stores them here.
//!
//! - [`log_sink`]: the first committer: each event as one JSON line in the log.
//! - `outbox`, `dispatch`, `pagertree`: the durable path (see their docs);
//!   [`backoff`] the dispatcher's retry waits.

pub mod backoff;
pub mod cli;
pub mod dispatch;
pub mod log_sink;
pub mod outbox;
pub mod pagertree;
pub mod service;
pub mod spill;
