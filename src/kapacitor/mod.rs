//! Kapacitor's side of the agent, other than the UDF wire: its HTTP API and
//! what the agent keeps about Kapacitor's tasks and does with them.
//!
//! - [`client`]: the one HTTP client of Kapacitor's API (auth, TLS, timeouts).
//! - [`server_info`]: `.ServerInfo` for templates, read once from
//!   Kapacitor's API (or the config) and kept in `data_dir`.
//! - [`marks`]: the session marks — which (task, node) UDF sessions
//!   Kapacitor has open — kept durable in the outbox, as the receiver of
//!   the wire's session lifecycle ([`crate::udf::session::SessionEvents`]).
//! - [`revive`]: task revival after an agent restart (restart safety) —
//!   the rules, against two small traits (the task API, the marks store).
//! - [`tasks`]: the task API ([`revive::TaskApi`]) over the client.

pub mod client;
pub mod marks;
pub mod revive;
pub mod server_info;
pub mod tasks;
