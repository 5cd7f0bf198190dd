//! Operations: configuration, metrics, the local HTTP API, logging, and the
//! offline tools.
//!
//! - [`config`]: the TOML file, the environment and the flags, validated.
//! - [`metrics`]: the Prometheus registry every layer counts into.
//! - [`status`]: readiness and the open alerts, set by the layers that know.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`, `/api/v1/alerts`.
//! - [`logging`]: `tracing` to stderr, text or JSON lines.

pub mod config;
pub mod http;
pub mod lineproto;
pub mod logging;
pub mod metrics;
pub mod simulate;
pub mod status;
pub mod systemd;
pub mod tick;
