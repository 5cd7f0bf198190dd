//! Operations: configuration, metrics, the local HTTP API, logging, shutdown.
//!
//! - [`config`]: the TOML file (../docs in README), environment and flags.
//! - [`metrics`]: the Prometheus registry every layer counts into.

pub mod config;
pub mod metrics;
