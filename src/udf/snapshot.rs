//! The snapshot header: the only state this agent gives Kapacitor to keep.
//!
//! Alert state lives in the agent's own store, never in Kapacitor's
//! minutes-old snapshot; the header only proves a restored snapshot is ours.

/// The first bytes of every snapshot this agent gives Kapacitor.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"KPTSNAP\0";
/// The snapshot format version. The snapshot is only this header: alert state
/// lives in the agent's own store (docs/architecture.md), never in Kapacitor's
/// minutes-old snapshot. It is non-empty so Kapacitor keeps saving it.
pub const SNAPSHOT_VERSION: u8 = 1;

/// The bytes of a `SnapshotResponse`.
pub fn snapshot_bytes() -> Vec<u8> {
    let mut v = SNAPSHOT_MAGIC.to_vec();
    v.push(SNAPSHOT_VERSION);
    v
}

/// Why restored bytes cannot be used (they are accepted all the same).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnusableSnapshot {
    #[error("the snapshot is empty")]
    Empty,
    #[error("not a kapacitor-pagertree snapshot ({len} bytes without our header)")]
    Foreign { len: usize },
    #[error(
        "snapshot format version {found} is not the version this agent writes ({SNAPSHOT_VERSION})"
    )]
    OtherVersion { found: u8 },
}

/// Checks bytes from a `RestoreRequest`. `Ok` means they are a snapshot of ours.
pub fn check_snapshot(bytes: &[u8]) -> Result<(), UnusableSnapshot> {
    if bytes.is_empty() {
        return Err(UnusableSnapshot::Empty);
    }
    let Some(rest) = bytes.strip_prefix(SNAPSHOT_MAGIC.as_slice()) else {
        return Err(UnusableSnapshot::Foreign { len: bytes.len() });
    };
    match rest.first() {
        Some(&SNAPSHOT_VERSION) => Ok(()),
        Some(&found) => Err(UnusableSnapshot::OtherVersion { found }),
        None => Err(UnusableSnapshot::Foreign { len: bytes.len() }),
    }
}
