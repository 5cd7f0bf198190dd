//! Kapacitor's side of the agent, other than the UDF wire: its HTTP API and
//! what the agent does with Kapacitor's tasks.
//!
//! - [`revive`]: task revival after an agent restart — the rules, against
//!   two small traits (the task API, the marks).
//! - [`task_api`]: the task API over HTTP with the `[kapacitor]` settings.

pub mod revive;
pub mod task_api;
