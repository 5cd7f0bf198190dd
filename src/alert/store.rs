//! The alert state a restarted node starts from: the last event per
//! (task, node, alert id) handed on for delivery, exactly what Kapacitor's
//! alert-topic store keeps (tests/conformance/README.md §4, *Restore*).
//!
//! Written for every committed event (suppressed and inhibited events never
//! reach it), removed when the id goes OK, loaded when a node's Init arrives.
//! The UDF snapshot never carries this state and Restore never changes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::alert::{Event, Level};

/// What is kept of the last event of one alert id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredAlert {
    pub level: Level,
    /// Nanoseconds since the epoch: the time of that event.
    pub time: i64,
}

/// A failure to read the store.
#[derive(Debug, thiserror::Error)]
#[error("alert state store: {0}")]
pub struct StoreError(pub String);

/// Where a node's last events live between sessions and restarts.
pub trait AlertStateStore: Send + Sync + std::fmt::Debug {
    /// The open (non-OK) alerts of one node, by id.
    fn load(&self, task: &str, node: &str) -> Result<HashMap<String, StoredAlert>, StoreError>;
}

/// The in-memory store: survives reconnects of the same (task, node) while
/// the agent runs. The durable store keeps the same rows in the outbox's
/// database, written in the same transaction as the outbox row.
/// The open alerts of every node, by (task, node), then by alert id.
type NodeAlerts = HashMap<(String, String), HashMap<String, StoredAlert>>;

#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<NodeAlerts>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a committed event: an OK removes the id, as Kapacitor does.
    pub fn record(&self, event: &Event) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let node = map
            .entry((event.task.clone(), event.node.clone()))
            .or_default();
        if event.level == Level::OK {
            node.remove(&event.id);
        } else {
            node.insert(
                event.id.clone(),
                StoredAlert {
                    level: event.level,
                    time: event.time,
                },
            );
        }
    }
}

impl AlertStateStore for MemoryStore {
    fn load(&self, task: &str, node: &str) -> Result<HashMap<String, StoredAlert>, StoreError> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map
            .get(&(task.to_string(), node.to_string()))
            .cloned()
            .unwrap_or_default())
    }
}
