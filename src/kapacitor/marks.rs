//! Session marks for restart safety (docs/architecture.md, *Restarts*): which
//! (task, node) UDF sessions Kapacitor has open, kept in the outbox's
//! `sessions` table so a restarted agent knows which tasks to revive.
//!
//! This module owns the policy, as a [`SessionEvents`] receiver:
//! - a successful Init marks (task, node, edge); a refused Init never does
//!   (Kapacitor stopped that task; reviving it would fail the same way);
//! - Kapacitor ending the session — EOF/half-close, a reset, or our
//!   `ErrorResponse` for its protocol violation (which fails the task) —
//!   clears the mark;
//! - the agent's own shutdown (SIGTERM) keeps it: exactly those tasks lost
//!   their UDF through us, and a restarted agent must revive them.
//!
//! Every ending is logged with how it ended and what happened to the mark.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::delivery::outbox::{Outbox, OutboxError, RevivalRow, SessionMark};
use crate::kapacitor::revive::Arrivals;
use crate::ops::now_ns;
use crate::proto::EdgeType;
use crate::udf::session::{
    LogSessionEvents, NodeKey, SessionEnd, SessionEvents, SessionRecord, edge_name,
};

/// What became of a session's mark when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkOutcome {
    /// Kapacitor ended it: the mark is gone.
    Cleared,
    /// The agent is shutting down: kept, for the restarted agent to revive.
    Kept,
    /// Another session of the same (task, node) is still open: its mark stays.
    StillOpen,
    /// The session never had a mark (Init refused, or never sent).
    Unmarked,
}

/// Whether an ending clears the mark.
pub fn clears_mark(end: &SessionEnd) -> bool {
    match end {
        SessionEnd::Closed | SessionEnd::Aborted(_) | SessionEnd::ProtocolError(_) => true,
        SessionEnd::Shutdown => false,
    }
}

/// Logs sessions (as [`LogSessionEvents`]) and keeps their marks in the outbox.
pub struct OutboxSessionEvents {
    outbox: Outbox,
    log: LogSessionEvents,
    /// Live sessions per (task, node): Kapacitor may open the next session of
    /// a restarted task before the old one's end reaches us.
    live: Mutex<HashMap<(String, String), usize>>,
    /// Told of every successful Init: task revival waits for them.
    arrivals: Option<Arc<Arrivals>>,
}

impl OutboxSessionEvents {
    pub fn new(outbox: Outbox) -> Self {
        Self {
            outbox,
            log: LogSessionEvents,
            live: Mutex::new(HashMap::new()),
            arrivals: None,
        }
    }

    /// Also reports every successful Init to task revival.
    pub fn with_arrivals(mut self, arrivals: Arc<Arrivals>) -> Self {
        self.arrivals = Some(arrivals);
        self
    }

    /// The mark bookkeeping of one ending (logged by [`SessionEvents::ended`]).
    pub fn settle(&self, r: &SessionRecord) -> MarkOutcome {
        let Some(node) = &r.node else {
            return MarkOutcome::Unmarked;
        };
        let key = (node.task.clone(), node.node.clone());
        let still_open = {
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            match live.get_mut(&key) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    true
                }
                _ => {
                    live.remove(&key);
                    false
                }
            }
        };
        if !clears_mark(&r.end) {
            return MarkOutcome::Kept;
        }
        if still_open {
            return MarkOutcome::StillOpen;
        }
        let cleared = crate::ops::run_blocking(|| {
            self.outbox
                .clear_session(&node.task, &node.node, r.end.as_str())
        });
        match cleared {
            Ok(_) => MarkOutcome::Cleared,
            Err(e) => {
                tracing::error!(task = %node.task, node = %node.node, error = %e,
                    "cannot clear the session mark; a restarted agent may revive this task");
                MarkOutcome::Kept
            }
        }
    }
}

impl SessionEvents for OutboxSessionEvents {
    fn initialized(&self, id: u64, edge: EdgeType, node: &NodeKey) {
        self.log.initialized(id, edge, node);
        *self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((node.task.clone(), node.node.clone()))
            .or_default() += 1;
        // One small write per Init (rare); the outbox degrades to memory
        // rather than fail when its disk is full.
        if let Err(e) = crate::ops::run_blocking(|| {
            self.outbox
                .mark_session(&node.task, &node.node, edge_name(edge))
        }) {
            tracing::error!(task = %node.task, node = %node.node, error = %e,
                "cannot mark the session open; this task will not be revived after a restart");
        }
        if let Some(a) = &self.arrivals {
            a.initialized(&node.task);
        }
    }

    fn ended(&self, r: &SessionRecord) {
        self.log.ended(r);
        let outcome = self.settle(r);
        if let Some(node) = &r.node {
            let mark = match outcome {
                MarkOutcome::Cleared => "cleared",
                MarkOutcome::Kept => "kept for revival",
                MarkOutcome::StillOpen => "kept (another session of this node is open)",
                MarkOutcome::Unmarked => "none",
            };
            tracing::info!(
                session = r.id,
                task = %node.task,
                node = %node.node,
                how_ended = r.end.as_str(),
                mark,
                "session mark {mark}"
            );
        }
    }
}

/// The `tasks` listing: every marked session — the tasks a restarted agent
/// revives (docs/architecture.md, *Restarts*) — and where the revival of the
/// tasks marked at the agent's last start stands.
#[derive(Debug)]
pub struct TaskListing {
    pub marks: Vec<SessionMark>,
    pub revivals: Vec<RevivalRow>,
    pub now_ns: i64,
}

impl TaskListing {
    pub fn read(outbox: &Outbox) -> Result<TaskListing, OutboxError> {
        Ok(TaskListing {
            marks: outbox.marked_sessions()?,
            revivals: outbox.revivals()?,
            now_ns: now_ns(),
        })
    }

    fn ago(&self, at_ns: i64) -> String {
        let secs = ((self.now_ns - at_ns).max(0) / 1_000_000_000) as u64;
        humantime::format_duration(Duration::from_secs(secs)).to_string()
    }

    fn fmt_revivals(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        writeln!(
            f,
            "Revival of the {} task(s) marked open at the agent's last start:",
            self.revivals.len()
        )?;
        writeln!(f)?;
        let tw = width(self.revivals.iter().map(|r| r.task.len()), 4);
        let rows: Vec<(&str, &str, String, &str)> = self
            .revivals
            .iter()
            .map(|r| {
                (
                    r.task.as_str(),
                    r.state.as_str(),
                    format!("{} ago", self.ago(r.at_ns)),
                    r.detail.as_str(),
                )
            })
            .collect();
        let ww = width(rows.iter().map(|r| r.2.len()), 5);
        writeln!(
            f,
            "{:<tw$}  {:<11}  {:<ww$}  DETAIL",
            "TASK", "STATE", "SINCE"
        )?;
        for (task, state, when, detail) in rows {
            writeln!(f, "{task:<tw$}  {state:<11}  {when:<ww$}  {detail}")?;
        }
        Ok(())
    }
}

impl fmt::Display for TaskListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} UDF session(s) marked open (Kapacitor has not ended them; after an agent restart, \
             revive_tasks brings their tasks back)",
            self.marks.len()
        )?;
        if !self.marks.is_empty() {
            let tw = width(self.marks.iter().map(|m| m.task.len()), 4);
            let nw = width(self.marks.iter().map(|m| m.node.len()), 4);
            writeln!(f)?;
            writeln!(
                f,
                "{:<tw$}  {:<nw$}  {:<6}  OPEN FOR",
                "TASK", "NODE", "EDGE"
            )?;
            for m in &self.marks {
                writeln!(
                    f,
                    "{:<tw$}  {:<nw$}  {:<6}  {}",
                    m.task,
                    m.node,
                    m.edge,
                    self.ago(m.marked_at_ns)
                )?;
            }
        }
        if !self.revivals.is_empty() {
            self.fmt_revivals(f)?;
        }
        Ok(())
    }
}

/// A column's width: its widest cell, at least `min` (the heading's).
fn width(cells: impl Iterator<Item = usize>, min: usize) -> usize {
    cells.max().unwrap_or(0).max(min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::pagertree::Endpoints;

    fn outbox(dir: &std::path::Path) -> Outbox {
        Outbox::open(dir, Endpoints::default(), 100).unwrap()
    }

    fn record(task: &str, end: SessionEnd, marked: bool) -> SessionRecord {
        SessionRecord {
            id: 1,
            edge: EdgeType::Stream,
            node: marked.then(|| NodeKey {
                task: task.into(),
                node: "n".into(),
            }),
            init_refused: (!marked).then(|| "bad option".to_string()),
            end,
            points: 0,
            batches: 0,
        }
    }

    fn key(task: &str) -> NodeKey {
        NodeKey {
            task: task.into(),
            node: "n".into(),
        }
    }

    fn marked(ob: &Outbox) -> Vec<String> {
        ob.marked_sessions()
            .unwrap()
            .into_iter()
            .map(|m| format!("{}/{}/{}", m.task, m.node, m.edge))
            .collect()
    }

    #[test]
    fn kapacitor_ending_clears_shutdown_keeps_refused_never_marks() {
        let dir = tempfile::tempdir().unwrap();
        let ob = outbox(dir.path());
        let ev = OutboxSessionEvents::new(ob.clone());
        for t in ["closed", "aborted", "proto", "shutdown"] {
            ev.initialized(1, EdgeType::Stream, &key(t));
        }
        ev.initialized(2, EdgeType::Batch, &key("batch"));
        assert_eq!(marked(&ob).len(), 5);
        assert_eq!(
            ev.settle(&record("closed", SessionEnd::Closed, true)),
            MarkOutcome::Cleared
        );
        assert_eq!(
            ev.settle(&record(
                "aborted",
                SessionEnd::Aborted("reset".into()),
                true
            )),
            MarkOutcome::Cleared
        );
        assert_eq!(
            ev.settle(&record(
                "proto",
                SessionEnd::ProtocolError("x".into()),
                true
            )),
            MarkOutcome::Cleared
        );
        assert_eq!(
            ev.settle(&record("shutdown", SessionEnd::Shutdown, true)),
            MarkOutcome::Kept
        );
        assert_eq!(
            ev.settle(&record("refused", SessionEnd::Closed, false)),
            MarkOutcome::Unmarked
        );
        assert_eq!(marked(&ob), vec!["batch/n/batch", "shutdown/n/stream"]);
    }

    #[test]
    fn overlapping_sessions_of_one_node_keep_the_mark_until_the_last_ends() {
        let dir = tempfile::tempdir().unwrap();
        let ob = outbox(dir.path());
        let ev = OutboxSessionEvents::new(ob.clone());
        ev.initialized(1, EdgeType::Stream, &key("t"));
        ev.initialized(2, EdgeType::Stream, &key("t"));
        assert_eq!(
            ev.settle(&record("t", SessionEnd::Closed, true)),
            MarkOutcome::StillOpen
        );
        assert_eq!(marked(&ob), vec!["t/n/stream"]);
        assert_eq!(
            ev.settle(&record("t", SessionEnd::Closed, true)),
            MarkOutcome::Cleared
        );
        assert!(marked(&ob).is_empty());
    }

    #[test]
    fn listing_shows_each_mark() {
        let l = TaskListing {
            marks: vec![SessionMark {
                task: "cpu_alert".into(),
                node: "pagertree2".into(),
                edge: "stream".into(),
                marked_at_ns: 0,
            }],
            revivals: vec![],
            now_ns: 90_000_000_000,
        };
        let text = l.to_string();
        assert!(text.starts_with("1 UDF session(s) marked open"), "{text}");
        assert!(
            text.contains("cpu_alert  pagertree2  stream  1m 30s"),
            "{text}"
        );
        let empty = TaskListing {
            marks: vec![],
            revivals: vec![],
            now_ns: 0,
        };
        assert_eq!(empty.to_string().lines().count(), 1);
        let revived = TaskListing {
            marks: vec![],
            revivals: vec![
                RevivalRow {
                    task: "cpu_alert".into(),
                    state: "revived".into(),
                    at_ns: 30_000_000_000,
                    detail: "disabled and enabled again".into(),
                },
                RevivalRow {
                    task: "mem".into(),
                    state: "gave up".into(),
                    at_ns: 0,
                    detail: "not revived within revive_for = 10m: …".into(),
                },
            ],
            now_ns: 90_000_000_000,
        };
        let text = revived.to_string();
        assert!(
            text.contains("Revival of the 2 task(s) marked open at the agent's last start:"),
            "{text}"
        );
        assert!(
            text.contains("cpu_alert  revived      1m ago      disabled and enabled again"),
            "{text}"
        );
        assert!(
            text.contains("mem        gave up      1m 30s ago  not revived within"),
            "{text}"
        );
    }
}
