//! The outbox's session marks and revival states (string-keyed rows of the
//! `sessions` and `revivals` tables), kept for `kapacitor::marks` and
//! `kapacitor::revive`; the outbox knows nothing of what they mean.

use super::*;

impl Outbox {
    /// Records that Kapacitor opened a session for (task, node) (at a
    /// successful Init).
    pub fn mark_session(&self, task: &str, node: &str, edge: &str) -> Result<(), OutboxError> {
        let at = now_ns();
        let mark = || SessionMark {
            task: task.into(),
            node: node.into(),
            edge: edge.into(),
            marked_at_ns: at,
        };
        let Some(conn) = self.conn_after_memory() else {
            // Still degraded: the change waits behind the older ones.
            self.hold_session(task, node, Some(mark()), None);
            return Ok(());
        };
        let r = conn.execute(UPSERT_SESSION, params![task, node, edge, at]);
        drop(conn);
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_storage_error(&e) => {
                self.hold_session(task, node, Some(mark()), Some(&e.to_string()));
                Ok(())
            }
            Err(e) => Err(sql("marking a session")(e)),
        }
    }

    /// Clears the mark of (task, node): Kapacitor ended the session
    /// (`how_ended` says how, for the log). True when there was a mark
    /// (while degraded that is not known: true).
    pub fn clear_session(
        &self,
        task: &str,
        node: &str,
        how_ended: &str,
    ) -> Result<bool, OutboxError> {
        let Some(conn) = self.conn_after_memory() else {
            self.hold_session(task, node, None, None);
            return Ok(true);
        };
        let r = conn.execute(DELETE_SESSION, params![task, node]);
        drop(conn);
        match r {
            Ok(n) => {
                tracing::debug!(
                    task,
                    node,
                    how_ended,
                    had_mark = n > 0,
                    "session mark cleared"
                );
                Ok(n > 0)
            }
            Err(e) if is_storage_error(&e) => {
                self.hold_session(task, node, None, Some(&e.to_string()));
                Ok(true)
            }
            Err(e) => Err(sql("clearing a session mark")(e)),
        }
    }

    /// The committer's connection once no older change waits in memory
    /// (degraded mode: they are written first, so a session change never
    /// overtakes an older one for the same task and node); `None` while
    /// they still cannot be written.
    fn conn_after_memory(&self) -> Option<std::sync::MutexGuard<'_, Connection>> {
        let mut conn = self.conn();
        self.flush_memory(&mut conn).then_some(conn)
    }

    /// Degraded mode: keeps a session change in memory (written with the
    /// rest on recovery). `why`: as for `set_degraded`.
    fn hold_session(&self, task: &str, node: &str, mark: Option<SessionMark>, why: Option<&str>) {
        self.memory()
            .sessions
            .insert((task.into(), node.into()), mark);
        self.set_degraded(true, why);
    }

    /// Every session still marked open (after a restart: the tasks to revive).
    pub fn marked_sessions(&self) -> Result<Vec<SessionMark>, OutboxError> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT task, node, edge, marked_at_ns FROM sessions ORDER BY task, node",
            )
            .map_err(sql("reading session marks"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SessionMark {
                    task: r.get(0)?,
                    node: r.get(1)?,
                    edge: r.get(2)?,
                    marked_at_ns: r.get(3)?,
                })
            })
            .map_err(sql("reading session marks"))?;
        let mut out: Vec<SessionMark> = rows
            .collect::<Result<_, _>>()
            .map_err(sql("reading session marks"))?;
        drop(stmt);
        drop(conn);
        let mem = self.memory();
        for ((task, node), m) in &mem.sessions {
            out.retain(|s| !(&s.task == task && &s.node == node));
            if let Some(m) = m {
                out.push(m.clone());
            }
        }
        Ok(out)
    }

    /// Drops `task`'s session marks made before `before_ns` (those of an
    /// earlier agent process); returns how many.
    pub fn drop_session_marks(&self, task: &str, before_ns: i64) -> Result<usize, OutboxError> {
        self.conn()
            .execute(
                "DELETE FROM sessions WHERE task = ?1 AND marked_at_ns < ?2",
                params![task, before_ns],
            )
            .map_err(sql("dropping session marks"))
    }

    /// Forgets every revival state (at a start, before the new revival).
    pub fn clear_revivals(&self) -> Result<(), OutboxError> {
        self.conn()
            .execute("DELETE FROM revivals", [])
            .map(|_| ())
            .map_err(sql("clearing revival states"))
    }

    /// Records where `task`'s revival stands.
    pub fn record_revival(
        &self,
        task: &str,
        state: &str,
        at_ns: i64,
        detail: &str,
    ) -> Result<(), OutboxError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO revivals (task, state, at_ns, detail) VALUES (?1, ?2, ?3, ?4)",
                params![task, state, at_ns, detail],
            )
            .map(|_| ())
            .map_err(sql("recording a revival state"))
    }

    /// Every recorded revival state, by task.
    pub fn revivals(&self) -> Result<Vec<RevivalRow>, OutboxError> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached("SELECT task, state, at_ns, detail FROM revivals ORDER BY task")
            .map_err(sql("reading revival states"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RevivalRow {
                    task: r.get(0)?,
                    state: r.get(1)?,
                    at_ns: r.get(2)?,
                    detail: r.get(3)?,
                })
            })
            .map_err(sql("reading revival states"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("reading revival states"))
    }
}
