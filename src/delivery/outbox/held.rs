//! What an operator and the alerts view read of the queue: pending counts,
//! retrying events, held (parked and dead-lettered) events, and the
//! `outbox retry` / `outbox drop` actions on them.

use super::*;

impl Outbox {
    /// Undelivered rows (pending and parked) and the oldest one's commit time.
    pub fn pending(&self) -> Result<(u64, Option<i64>), OutboxError> {
        let conn = self.read();
        conn.query_row("SELECT count(*), min(created_ns) FROM outbox", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })
        .map_err(sql("counting pending rows"))
    }

    /// Events waiting for another try after a transient failure (5xx,
    /// timeout, connection error, 429): pending with at least one attempt,
    /// oldest first, each with its last error.
    pub fn retrying(&self) -> Result<Vec<RetryingEvent>, OutboxError> {
        let conn = self.read();
        let mut stmt = conn
            .prepare(
                "SELECT seq, task, node, alert_id, coalesce(last_error, '') FROM outbox \
                 WHERE state = 'pending' AND attempts > 0 ORDER BY seq",
            )
            .map_err(sql("listing retrying events"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RetryingEvent {
                    seq: r.get(0)?,
                    task: r.get(1)?,
                    node: r.get(2)?,
                    alert_id: r.get(3)?,
                    last_error: r.get(4)?,
                })
            })
            .map_err(sql("listing retrying events"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("listing retrying events"))
    }

    /// Parked and dead-lettered events, oldest first.
    pub fn held(&self) -> Result<Vec<HeldEvent>, OutboxError> {
        let conn = self.read();
        let mut out = Vec::new();
        let mut stmt = conn
            .prepare(
                "SELECT seq, task, node, alert_id, level, endpoint, url, format, created_ns, attempts, \
                 coalesce(last_error, '') FROM outbox WHERE state = 'parked' ORDER BY seq",
            )
            .map_err(sql("listing parked events"))?;
        let rows = stmt
            .query_map([], |r| held_row(r, HeldKind::Parked))
            .map_err(sql("listing parked events"))?;
        for r in rows {
            out.push(r.map_err(sql("listing parked events"))?);
        }
        let mut stmt = conn
            .prepare(
                "SELECT seq, task, node, alert_id, level, endpoint, url, format, created_ns, attempts, reason, \
                 dead_at_ns FROM dead_letter ORDER BY seq",
            )
            .map_err(sql("listing dead letters"))?;
        let rows = stmt
            .query_map([], |r| held_row(r, HeldKind::DeadLetter))
            .map_err(sql("listing dead letters"))?;
        for r in rows {
            out.push(r.map_err(sql("listing dead letters"))?);
        }
        Ok(out)
    }

    /// `outbox retry`: parked events become pending and due now (a running
    /// dispatcher notices within a second); dead-lettered events go back to
    /// the end of the outbox with a new sequence number (their attempts
    /// start over). Returns what was retried.
    pub fn retry(&self, sel: &Selection) -> Result<Vec<HeldEvent>, OutboxError> {
        let chosen = self.act_on_held(sel, "retrying", |tx, h| match h.kind {
            HeldKind::Parked => tx
                .execute(
                    "UPDATE outbox SET state = 'pending', next_attempt_ns = 0, attempts = 0 WHERE seq = ?1",
                    params![h.seq],
                )
                .map(drop),
            HeldKind::DeadLetter => {
                tx.execute(
                    "INSERT INTO outbox (task, node, alert_id, level, endpoint, url_override, url, format, body, \
                     created_ns, last_error) SELECT task, node, alert_id, level, endpoint, url_override, url, \
                     format, body, ?2, 'retried from the dead-letter table' FROM dead_letter WHERE seq = ?1",
                    params![h.seq, now_ns()],
                )?;
                tx.execute("DELETE FROM dead_letter WHERE seq = ?1", params![h.seq])
                    .map(drop)
            }
        })?;
        self.inner.notify.notify_one();
        for h in &chosen {
            tracing::warn!(seq = h.seq, id = %h.alert_id, kind = h.kind.as_str(), "outbox retry requested by the operator");
        }
        Ok(chosen)
    }

    /// `outbox drop`: deletes parked or dead-lettered events for good (a
    /// running dispatcher notices within a second and releases the id).
    /// Returns what was deleted, for the operator's record.
    pub fn drop_held(&self, sel: &Selection) -> Result<Vec<HeldEvent>, OutboxError> {
        let chosen = self.act_on_held(sel, "dropping", |tx, h| {
            let delete = match h.kind {
                HeldKind::Parked => "DELETE FROM outbox WHERE seq = ?1 AND state = 'parked'",
                HeldKind::DeadLetter => "DELETE FROM dead_letter WHERE seq = ?1",
            };
            tx.execute(delete, params![h.seq]).map(drop)
        })?;
        for h in &chosen {
            tracing::warn!(
                seq = h.seq, id = %h.alert_id, alert_level = %h.level, kind = h.kind.as_str(), url = %h.url_redacted,
                "event dropped by the operator (outbox drop)"
            );
        }
        Ok(chosen)
    }

    /// The operator's actions on held events: `act` runs on each selected
    /// parked or dead-lettered event, all in one immediate transaction
    /// (`what` names the action in errors). Returns the events acted on.
    fn act_on_held(
        &self,
        sel: &Selection,
        what: &'static str,
        mut act: impl FnMut(&rusqlite::Transaction<'_>, &HeldEvent) -> rusqlite::Result<()>,
    ) -> Result<Vec<HeldEvent>, OutboxError> {
        let chosen: Vec<HeldEvent> = self
            .held()?
            .into_iter()
            .filter(|h| sel.matches(h.seq))
            .collect();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(what))?;
        for h in &chosen {
            act(&tx, h).map_err(sql(what))?;
        }
        tx.commit().map_err(sql(what))?;
        Ok(chosen)
    }
}

/// One held row: columns seq, task, node, alert_id, level, endpoint, url,
/// format, created_ns, attempts, reason, and for a dead letter dead_at_ns.
fn held_row(r: &rusqlite::Row<'_>, kind: HeldKind) -> rusqlite::Result<HeldEvent> {
    Ok(HeldEvent {
        kind,
        seq: r.get(0)?,
        task: r.get(1)?,
        node: r.get(2)?,
        alert_id: r.get(3)?,
        level: r.get(4)?,
        endpoint: r.get(5)?,
        url_redacted: redact::url(&r.get::<_, String>(6)?),
        format: r.get(7)?,
        created_ns: r.get(8)?,
        attempts: r.get(9)?,
        reason: r.get(10)?,
        dead_at_ns: match kind {
            HeldKind::DeadLetter => Some(r.get(11)?),
            HeldKind::Parked => None,
        },
    })
}
