//! # kapacitor-pagertree
//!
//! A Kapacitor UDF agent that pages on-call people through PagerTree, durably.
//! One daemon serves every `@pagertree()` / `@pagertreeBatch()` node of every task.
//!
//! ## Module map
//!
//! - [`proto`]: the generated protobuf types of Kapacitor's UDF protocol.
//! - [`udf`]: the Kapacitor side. [`udf::codec`] turns bytes into `Request`
//!   frames and `Response` frames into bytes (no I/O); [`udf::session`] runs one
//!   connection's conversation (Info, Init, Restore, data, Keepalive, Snapshot,
//!   the two endings) against a [`udf::handler::Handler`]; [`udf::server`]
//!   accepts connections on the stream and batch sockets; [`udf::stdio`] is the
//!   relay Kapacitor's `prog =` mode starts.
//! - [`alert`]: the meaning. [`alert::node`] compiles a node's options at Init
//!   and turns points and batches into [`alert::Event`]s and emitted data exactly
//!   as Kapacitor's alert node would; [`alert::expr`] is the TICKscript lambda
//!   language; [`alert::template`] Go's text/html templates; [`alert::state`]
//!   the per-group level history; [`alert::store`] the last event per alert id
//!   that a restarted node starts from.
//! - [`gofmt`]: Go's printing rules (floats, times, durations, `encoding/json`)
//!   that Kapacitor's output depends on byte for byte.
//! - [`delivery`]: from an event to PagerTree. [`delivery::Sink`] is the
//!   bounded hand-off the sessions use; behind it the outbox (durable queue,
//!   alert state and session marks in one SQLite file), the dispatcher
//!   (retries, per-alert order) and the two payload formats.
//! - [`ops`]: configuration, metrics, the local HTTP API, logging, shutdown.
//! - [`app`]: `serve`, the wiring of all of the above into the running daemon.
//! - [`fuzzing`]: the properties of the fuzz targets (`fuzz/`), run as
//!   proptests too.

pub mod alert;
pub mod app;
pub mod delivery;
pub mod fuzzing;
pub mod gofmt;
pub mod ops;
pub mod proto;
pub mod udf;
