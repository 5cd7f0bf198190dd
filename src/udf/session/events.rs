//! A session's life as the rest of the agent sees it: which (task, node)
//! it serves, how it ended, and the [`SessionEvents`] trait that receives
//! both (the log by default; the daemon's restart-safety marks, which
//! the `kapacitor` module keeps).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::proto::EdgeType;

/// Identifies one session for logs, metrics and restart bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeKey {
    pub task: String,
    pub node: String,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// Kapacitor closed its write half: a normal end, or its abort (the two
    /// look the same from here, and need not be told apart).
    Closed,
    /// A reset or broken pipe: ended quietly, keeping what was accepted.
    Aborted(String),
    /// A protocol violation, answered with this `ErrorResponse` text.
    ProtocolError(String),
    /// The agent is shutting down (SIGTERM/SIGINT).
    Shutdown,
}

impl SessionEnd {
    pub fn as_str(&self) -> &'static str {
        match self {
            SessionEnd::Closed => "closed",
            SessionEnd::Aborted(_) => "aborted",
            SessionEnd::ProtocolError(_) => "protocol_error",
            SessionEnd::Shutdown => "shutdown",
        }
    }
}

/// What is recorded of one connection: the restart-safety bookkeeping
/// (docs/architecture.md, *Restarts*) needs task, node and how it ended.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: u64,
    pub edge: EdgeType,
    /// Set by a successful Init.
    pub node: Option<NodeKey>,
    /// The Init error, when Init was refused (such tasks are never revived).
    pub init_refused: Option<String>,
    pub end: SessionEnd,
    pub points: u64,
    pub batches: u64,
}

/// Receives the life of every session. The default logs it; the
/// restart-safety layer persists it.
pub trait SessionEvents: Send + Sync + 'static {
    /// A successful Init: the (task, node) session is open.
    fn initialized(&self, id: u64, edge: EdgeType, node: &NodeKey);
    /// The session is over (after its last event was committed).
    fn ended(&self, record: &SessionRecord);
}

/// Logs session starts and ends.
#[derive(Debug, Default)]
pub struct LogSessionEvents;

impl SessionEvents for LogSessionEvents {
    fn initialized(&self, id: u64, edge: EdgeType, node: &NodeKey) {
        tracing::info!(session = id, edge = edge_name(edge), task = %node.task, node = %node.node, "node initialized");
    }

    fn ended(&self, r: &SessionRecord) {
        let (task, node) = r
            .node
            .as_ref()
            .map(|n| (n.task.as_str(), n.node.as_str()))
            .unwrap_or(("", ""));
        let detail = match &r.end {
            SessionEnd::Aborted(e) | SessionEnd::ProtocolError(e) => e.as_str(),
            _ => "",
        };
        tracing::info!(
            session = r.id,
            edge = edge_name(r.edge),
            task,
            node,
            end = r.end.as_str(),
            detail,
            init_refused = r.init_refused.as_deref().unwrap_or(""),
            points = r.points,
            batches = r.batches,
            "session ended"
        );
    }
}

/// The label value of an edge type.
pub fn edge_name(edge: EdgeType) -> &'static str {
    match edge {
        EdgeType::Stream => "stream",
        EdgeType::Batch => "batch",
    }
}

/// Session ids for logs: unique within the process.
pub fn next_session_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
