//! The log committer: writes each event as one JSON line to the log and keeps
//! the alert state in memory. Used for `dryRun` and until an outbox is
//! configured; it sends nothing.

use crate::alert::Event;
use crate::alert::sink::{CommitError, Committer};
use crate::alert::store::MemoryStore;

/// Logs every event as one JSON line (target `pagertree::event`).
#[derive(Debug, Default)]
pub struct LogCommitter {
    store: MemoryStore,
}

impl LogCommitter {
    pub fn new(store: MemoryStore) -> Self {
        Self { store }
    }
}

impl Committer for LogCommitter {
    fn commit(&mut self, events: &[Event]) -> Result<(), CommitError> {
        for e in events {
            let line = serde_json::json!({
                "task": e.task, "node": e.node, "id": e.id,
                "level": e.level, "previousLevel": e.previous_level,
                "message": e.message, "details": e.details,
                "time": crate::gofmt::rfc3339_nano(e.time), "duration": e.duration,
                "recoverable": e.recoverable, "data": e.data,
            });
            tracing::info!(target: "pagertree::event", event = %line, "alert event");
            self.store.record(e);
        }
        Ok(())
    }
}
