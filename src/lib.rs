//! # kapacitor-pagertree
//!
//! A Kapacitor UDF agent that pages on-call people through PagerTree, durably.
//! One daemon serves every `@pagertree()` / `@pagertreeBatch()` node of every task.
//!
//! ## Module map
//!
//! Dependencies point one way, each layer knowing only those below it
//! (docs/architecture.md, *Layout and layers*; `tests/layers.rs` checks it):
//! `main` → [`app`] → [`tools`] → [`kapacitor`] → [`udf`], [`delivery`] →
//! [`alert`] → [`gofmt`], [`proto`]; [`ops`] holds leaf settings any layer
//! may use.
//!
//! - [`proto`]: the generated protobuf types of Kapacitor's UDF protocol.
//! - [`gofmt`]: Go's printing rules (floats, times, durations, `encoding/json`
//!   strings) that Kapacitor's output depends on byte for byte.
//! - [`alert`]: the engine. [`alert::node`] compiles a node's options at Init
//!   and turns points and batches into [`alert::Event`]s and emitted data
//!   exactly as Kapacitor's alert node would; [`alert::expr`] is the
//!   TICKscript lambda language; [`alert::template`] Go's text/html templates;
//!   [`alert::state`] the per-group level history; [`alert::store`] the last
//!   event per alert id that a restarted node starts from; [`alert::json`]
//!   the `alert.Data` body. The engine takes its settings as values
//!   ([`alert::Destinations`], [`alert::node::NodeCounters`]) and imports no
//!   configuration, wire or delivery.
//! - **The handler seam lives in the engine** ([`alert::handler`]): a handler
//!   speaks in protocol types and events, both below the wire, so `udf` drives
//!   it and `alert` never imports `udf`.
//! - **The event hand-off too** ([`alert::sink`]): the bounded queue the
//!   sessions submit to and the committer thread behind it; delivery
//!   implements [`alert::sink::Committer`].
//! - [`udf`]: the Kapacitor wire. [`udf::codec`] turns bytes into `Request`
//!   frames and `Response` frames into bytes (no I/O); [`udf::session`] runs
//!   one connection's conversation (reader, processor, writer) and defines the
//!   session lifecycle ([`udf::session::SessionEvents`]); [`udf::server`]
//!   accepts connections; [`udf::stdio`] is the relay of Kapacitor's `prog =`
//!   mode; [`udf::snapshot`] the snapshot header.
//! - [`delivery`]: from an event to PagerTree: the outbox (durable queue,
//!   alert state and session marks in one SQLite file), the dispatcher
//!   (retries, per-alert order), the two payload formats.
//! - [`kapacitor`]: Kapacitor's HTTP API (one client), `.ServerInfo`, the
//!   session marks, and task revival after an agent restart
//!   ([`kapacitor::revive`]).
//! - [`tools`]: the operator surfaces: local HTTP API and status, `alerts`,
//!   `check`, `simulate`.
//! - [`app`]: the daemon assembled: [`app::run`] owns start and stop order.
//! - [`ops`]: leaf settings: configuration, metrics, logging, systemd.
//! - [`fuzzing`]: the properties of the fuzz targets (`fuzz/`), run as
//!   proptests too.

pub mod alert;
pub mod app;
pub mod delivery;
pub mod fuzzing;
pub mod gofmt;
pub mod kapacitor;
pub mod ops;
pub mod proto;
pub mod tools;
pub mod udf;
