//! systemd's notification protocol (`Type=notify`): `READY=1` once both
//! sockets listen — so `Before=kapacitor.service` really means Kapacitor's
//! start-up probe finds them — and `STOPPING=1` when shutdown begins. Outside
//! systemd (`NOTIFY_SOCKET` unset) every call does nothing.

use sd_notify::NotifyState;

/// Both sockets listen: tell systemd the service is up.
pub fn notify_ready(stream: &std::path::Path, batch: &std::path::Path) {
    let status = format!("listening on {} and {}", stream.display(), batch.display());
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Shutdown has begun.
pub fn notify_stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn send(states: &[NotifyState]) {
    // `false`: keep NOTIFY_SOCKET, STOPPING=1 comes later from the same process.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}
