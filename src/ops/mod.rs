//! Leaf settings every layer may use; they import no other layer.
//!
//! - [`config`]: the TOML file, the environment and the flags, validated.
//! - [`metrics`]: the Prometheus registry the daemon counts into.
//! - [`logging`]: `tracing` to stderr, text or JSON lines.
//! - [`systemd`]: readiness and stopping notifications (`Type=notify`).
//! - [`run_blocking`]: short blocking work from async code.

pub mod config;
pub mod logging;
pub mod metrics;
pub mod redact;
pub mod systemd;

/// Nanoseconds since the epoch, now (0 before 1970).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

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
/// tokens (credentials that page the rota). Called first thing by `app::run`.
pub fn restrict_umask() {
    // SAFETY: umask(2) only swaps the process's mask; it cannot fail.
    unsafe {
        let old = libc::umask(0o027);
        libc::umask(old | 0o027);
    }
}

/// A group name (or a numeric gid) to a gid; `None`: no such group. Here
/// (a leaf) because the config check and the socket binding both need it.
pub fn lookup_group(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Some(gid);
    }
    let name = std::ffi::CString::new(group).ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: getgrnam_r writes only into `grp` and `buf` (whose length we
        // pass) and stores in `result` either null or a pointer to `grp`.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        return Some(grp.gr_gid);
    }
}
