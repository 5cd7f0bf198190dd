//! Kapacitor's side of the agent, other than the UDF wire: its HTTP API and
//! what the agent keeps about Kapacitor's tasks.
//!
//! - [`client`]: the one HTTP client of Kapacitor's API (auth, TLS, timeouts).
//! - [`server_info`]: `.ServerInfo` for templates, read once from
//!   Kapacitor's API (or the config) and kept in `data_dir`.
//! - [`marks`]: the session marks — which (task, node) UDF sessions
//!   Kapacitor has open — kept durable in the outbox, as the receiver of
//!   the wire's session lifecycle ([`crate::udf::session::SessionEvents`]).
//!
//! Task revival (restart safety) will live here too: it needs the API
//! client and the marks, nothing else.

pub mod client;
pub mod marks;
pub mod server_info;
