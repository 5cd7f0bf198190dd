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
pub mod server_info;
pub mod simulate;
pub mod status;
pub mod systemd;
pub mod tick;

/// Runs short blocking work (a small SQLite write, a bounded HTTP read) from
/// async code without stalling the runtime: on the multi-thread runtime the
/// worker hands its other tasks over first (`block_in_place`); elsewhere
/// (tests on a current-thread runtime, plain threads) it just runs.
pub fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Makes every file and directory this process creates private to its user
/// and group (umask |= 027: directories 0750, files 0640 at most), whatever
/// umask it was started with: the data directory holds endpoint URLs and
/// tokens (credentials that page the rota). Called first thing by `serve`.
pub fn restrict_umask() {
    // SAFETY: umask(2) only swaps the process's mask; it cannot fail.
    unsafe {
        let old = libc::umask(0o027);
        libc::umask(old | 0o027);
    }
}
