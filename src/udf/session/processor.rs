//! The processor: decodes frames, keeps the conversation's state, calls the
//! handler, hands events to the sink and answers Snapshot after a barrier.

use super::*;

#[derive(Default)]
pub(super) struct ProcessOutcome {
    pub(super) node: Option<NodeKey>,
    pub(super) init_refused: Option<String>,
    pub(super) violation: Option<String>,
    pub(super) reason: &'static str,
    pub(super) points: u64,
    pub(super) batches: u64,
}

/// The conversation's state, owned by the processor task.
pub(super) struct Processor {
    pub(super) id: u64,
    pub(super) settings: SessionSettings,
    pub(super) ctx: Arc<SessionContext>,
    pub(super) handler: Option<Box<dyn Handler>>,
    pub(super) init_seen: bool,
    pub(super) open_batch: bool,
    pub(super) out: Output,
    /// Encoded responses not yet handed to the writer.
    pub(super) pending: BytesMut,
    /// Events not yet handed to delivery: one `submit_many` per chunk, so
    /// the committer is woken once per chunk, not once per event.
    pub(super) events: Vec<Event>,
    /// An empty vector for the next chunk's events (see `Sink::reclaim`).
    pub(super) spare_events: Vec<Event>,
    pub(super) outcome: ProcessOutcome,
    /// `points_total` for this edge, resolved once (the family's lookup locks).
    pub(super) points_total: prometheus_client::metrics::counter::Counter,
    /// Points the reader decoded and the handler is done with: sent back per
    /// chunk so the reader decodes into them (their memory is allocated and
    /// freed on the reader's thread).
    pub(super) spent: Vec<PooledPoint>,
    pub(super) spent_tx: mpsc::Sender<Vec<PooledPoint>>,
}

pub(super) enum Step {
    Continue,
    Stop,
}

impl Processor {
    pub(super) fn new(
        id: u64,
        settings: SessionSettings,
        ctx: Arc<SessionContext>,
        spent_tx: mpsc::Sender<Vec<PooledPoint>>,
    ) -> Self {
        let edge_label = EdgeLabel {
            edge: edge_name(settings.edge),
        };
        Self {
            id,
            settings,
            ctx,
            handler: None,
            init_seen: false,
            open_batch: false,
            out: Output::default(),
            pending: BytesMut::new(),
            events: Vec::new(),
            spare_events: Vec::new(),
            outcome: ProcessOutcome::default(),
            points_total: metrics().points_total.get_or_create(&edge_label).clone(),
            spent: Vec::new(),
            spent_tx,
        }
    }

    pub(super) async fn run(
        mut self,
        mut work_rx: mpsc::Receiver<Work>,
        out_tx: mpsc::Sender<Outgoing>,
        stop_reading: CancellationToken,
    ) -> ProcessOutcome {
        // Grows to PROCESS_CHUNK only under load: an idle session holds a few slots.
        let mut chunk = Vec::new();
        'outer: while work_rx.recv_many(&mut chunk, PROCESS_CHUNK).await > 0 {
            let mut since_flush = tokio::time::Instant::now();
            for work in chunk.drain(..) {
                if let Step::Stop = self.handle(work, &out_tx).await {
                    stop_reading.cancel();
                    break 'outer;
                }
                // Responses and events go out per chunk, or sooner when they
                // pile up or a slow node would hold them back.
                if self.pending.len() >= FLUSH_BYTES
                    || self.events.len() >= EVENTS_MAX
                    || since_flush.elapsed() >= FLUSH_AFTER
                {
                    if let Step::Stop = self.hand_on(&out_tx).await {
                        stop_reading.cancel();
                        break 'outer;
                    }
                    since_flush = tokio::time::Instant::now();
                }
            }
            if let Step::Stop = self.hand_on(&out_tx).await {
                stop_reading.cancel();
                break;
            }
        }
        // The end, whatever it was: what was accepted is handed on and committed
        // before the connection closes.
        drop(work_rx);
        let handed = match self.submit_events().await {
            Ok(()) => self.ctx.sink.barrier().await,
            Err(e) => Err(e),
        };
        if let Err(e) = handed {
            tracing::error!(session = self.id, error = %e, "events of this session may not be committed");
        }
        if let Some(h) = self.handler.as_mut() {
            h.stop();
        }
        self.flush(&out_tx).await;
        self.outcome
    }

    pub(super) fn push(&mut self, r: Response) {
        encode_frame(&r, &mut self.pending);
    }

    pub(super) async fn flush(&mut self, out_tx: &mpsc::Sender<Outgoing>) {
        if !self.pending.is_empty() {
            // The writer drains until every sender is gone, so this cannot be lost.
            let out = self.pending.split().freeze();
            if out.len() >= FLUSH_BYTES / 2 {
                // Under a flood: one allocation for the next responses, not
                // one per doubling (an idle session holds nothing).
                self.pending.reserve(FLUSH_BYTES + FLUSH_BYTES / 4);
            }
            let _ = out_tx.send(out).await;
        }
    }

    /// Hands the gathered events to delivery as one message (waiting only
    /// while the sink's queue is full).
    pub(super) async fn submit_events(&mut self) -> Result<(), crate::alert::sink::SinkError> {
        // Committed events are freed here, where they were allocated; their
        // vector comes back for reuse.
        let spare = self.ctx.sink.reclaim();
        if spare.capacity() > self.spare_events.capacity() {
            self.spare_events = spare;
        }
        if self.events.is_empty() {
            return Ok(());
        }
        let next = match std::mem::take(&mut self.spare_events) {
            v if v.capacity() > 0 => v,
            _ => Vec::with_capacity(PROCESS_CHUNK),
        };
        let events = std::mem::replace(&mut self.events, next);
        self.ctx.sink.submit_many(events).await
    }

    /// Events to delivery, then responses to the writer: a client that stops
    /// reading blocks the flush, never the events already produced. A closed
    /// sink ends the conversation (the agent is stopping or delivery failed).
    pub(super) async fn hand_on(&mut self, out_tx: &mpsc::Sender<Outgoing>) -> Step {
        if !self.spent.is_empty() {
            let spent = std::mem::replace(&mut self.spent, Vec::with_capacity(PROCESS_CHUNK));
            // A full queue (the reader is not decoding): freed here instead.
            let _ = self.spent_tx.try_send(spent);
        }
        if let Err(e) = self.submit_events().await {
            let step = self.violation(
                "sink_closed",
                format!("cannot hand events to delivery: {e}"),
            );
            self.flush(out_tx).await;
            return step;
        }
        self.flush(out_tx).await;
        Step::Continue
    }

    pub(super) fn node_desc(&self) -> String {
        match &self.outcome.node {
            Some(n) => format!("task {:?} node {:?}", n.task, n.node),
            None => "this connection".into(),
        }
    }

    /// Answers a violation with an `ErrorResponse` and ends the conversation.
    pub(super) fn violation(&mut self, reason: &'static str, message: String) -> Step {
        tracing::warn!(session = self.id, edge = edge_name(self.settings.edge), reason, error = %message, "protocol violation; closing the session");
        self.push(resp(response::Message::Error(ErrorResponse {
            error: message.clone(),
        })));
        self.outcome.violation = Some(message);
        self.outcome.reason = reason;
        Step::Stop
    }

    pub(super) async fn handle(&mut self, work: Work, out_tx: &mpsc::Sender<Outgoing>) -> Step {
        let (msg, raw) = match work {
            // The bytes are kept (a reference count) so an unchanged point
            // can be written back without encoding it again.
            Work::Frame(frame) => match decode_frame::<Request>(frame.clone()) {
                Ok(Request { message: Some(m) }) => (m, frame),
                Ok(Request { message: None }) => {
                    return self.violation("empty_request", EMPTY_REQUEST.into());
                }
                Err(e) => return self.violation(e.reason(), format!("protocol error: {e}")),
            },
            Work::Violation { reason, message } => return self.violation(reason, message),
            Work::Point { point, raw } => {
                let step = self
                    .data(|h, out| h.point_ref(&point, out), "Point", Some(&raw))
                    .await;
                self.spent.push(point);
                return step;
            }
        };
        use request::Message as M;
        match msg {
            M::Info(_) => {
                self.push(resp(response::Message::Info(
                    self.ctx.factory.info(self.settings.edge),
                )));
                Step::Continue
            }
            M::Init(req) => {
                if self.init_seen {
                    let msg = format!(
                        "a second InitRequest (task {:?} node {:?}) on a connection already initialized as {}",
                        req.task_id,
                        req.node_id,
                        self.node_desc()
                    );
                    return self.violation("second_init", msg);
                }
                self.init_seen = true;
                // Parsing and compiling the options (and loading the node's
                // open alerts) run on the blocking pool, never on a runtime
                // worker: a slow Init must not stall other sessions.
                let factory = Arc::clone(&self.ctx.factory);
                let edge = self.settings.edge;
                let (built, req) = match tokio::task::spawn_blocking(move || {
                    let built = factory.init(edge, &req);
                    (built, req)
                })
                .await
                {
                    Ok(done) => done,
                    Err(e) => {
                        let msg = format!("the Init could not be completed: {e}");
                        return self.violation("init_failed", msg);
                    }
                };
                match built {
                    Ok(h) => {
                        let key = NodeKey {
                            task: req.task_id,
                            node: req.node_id,
                        };
                        self.ctx
                            .events
                            .initialized(self.id, self.settings.edge, &key);
                        self.outcome.node = Some(key);
                        self.handler = Some(h);
                        self.push(resp(response::Message::Init(InitResponse {
                            success: true,
                            error: String::new(),
                        })));
                    }
                    Err(error) => {
                        metrics().init_failures_total.inc();
                        tracing::warn!(session = self.id, task = %req.task_id, node = %req.node_id, %error, "Init refused");
                        self.outcome.init_refused = Some(error.clone());
                        self.push(resp(response::Message::Init(InitResponse {
                            success: false,
                            error,
                        })));
                    }
                }
                Step::Continue
            }
            M::Restore(req) => {
                let (task, node) = match &self.outcome.node {
                    Some(n) => (n.task.as_str(), n.node.as_str()),
                    None => ("(before Init)", "(before Init)"),
                };
                match check_snapshot(&req.snapshot) {
                    Ok(()) => tracing::debug!(
                        session = self.id,
                        task,
                        node,
                        "snapshot restored (version header only)"
                    ),
                    Err(reason) => {
                        metrics().restore_unusable_total.inc();
                        tracing::warn!(
                            session = self.id, task, node, %reason,
                            "unusable snapshot accepted: the node starts from the agent's own alert state"
                        );
                    }
                }
                // Never refused: a refusal stops the task at every start until it is deleted.
                self.push(resp(response::Message::Restore(RestoreResponse {
                    success: true,
                    error: String::new(),
                })));
                Step::Continue
            }
            M::Snapshot(_) => {
                // In order: every event before it is committed before the
                // answer, and responses before it are written first (events
                // are handed on before the flush, which a client that stops
                // reading may block).
                let submitted = self.submit_events().await;
                self.flush(out_tx).await;
                let committed = match submitted {
                    Ok(()) => self.ctx.sink.barrier().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = committed {
                    return self.violation("sink_closed", format!("cannot take a snapshot: {e}"));
                }
                self.push(resp(response::Message::Snapshot(SnapshotResponse {
                    snapshot: snapshot_bytes(),
                })));
                Step::Continue
            }
            M::Keepalive(k) => {
                // The reader answers keepalives; kept correct should one arrive here.
                self.push(resp(response::Message::Keepalive(KeepaliveResponse {
                    time: k.time,
                })));
                Step::Continue
            }
            M::Point(p) => {
                if self.settings.edge == EdgeType::Batch && !self.open_batch {
                    return self.violation(
                        "point_outside_batch",
                        format!("Point outside a batch on {}: a batch connection sends BeginBatch, Point…, EndBatch", self.node_desc()),
                    );
                }
                self.data(|h, out| h.point(p, out), "Point", Some(&raw))
                    .await
            }
            M::Begin(b) => {
                if self.settings.edge == EdgeType::Stream {
                    return self.violation("batch_on_stream", "BeginBatch on the stream socket: use the batch socket (and @pagertreeBatch) for batch tasks".into());
                }
                if self.open_batch {
                    return self.violation(
                        "nested_batch",
                        format!("BeginBatch inside an open batch on {}: the previous batch has no EndBatch", self.node_desc()),
                    );
                }
                self.open_batch = true;
                self.data(|h, out| h.begin_batch(b, out), "BeginBatch", None)
                    .await
            }
            M::End(e) => {
                if self.settings.edge == EdgeType::Stream {
                    return self.violation("batch_on_stream", "EndBatch on the stream socket: use the batch socket (and @pagertreeBatch) for batch tasks".into());
                }
                if !self.open_batch {
                    return self.violation(
                        "end_without_begin",
                        format!("EndBatch without a BeginBatch on {}", self.node_desc()),
                    );
                }
                self.open_batch = false;
                self.outcome.batches += 1;
                metrics().batches_total.inc();
                self.data(|h, out| h.end_batch(e, out), "EndBatch", None)
                    .await
            }
        }
    }

    /// Runs one data message through the handler, then encodes what it
    /// emitted and keeps its events for the chunk's hand-off to delivery.
    pub(super) async fn data(
        &mut self,
        f: impl FnOnce(&mut dyn Handler, &mut Output),
        what: &'static str,
        raw: Option<&Bytes>,
    ) -> Step {
        let Some(handler) = self.handler.as_deref_mut() else {
            let why = if self.init_seen {
                "the InitRequest was refused"
            } else {
                "a task's connection starts with InitRequest"
            };
            return self.violation(
                "data_before_init",
                format!("{what} before a successful InitRequest: {why}"),
            );
        };
        if let Some(d) = self.settings.fault_process_delay {
            tokio::time::sleep(d).await;
        }
        if what == "Point" {
            self.outcome.points += 1;
            self.points_total.inc();
        }
        self.out.can_echo = raw.is_some();
        f(handler, &mut self.out);
        for r in self.out.responses.drain(..) {
            encode_frame(&r, &mut self.pending);
        }
        if std::mem::take(&mut self.out.echo_point)
            && let Some(raw) = raw
        {
            put_length_prefix(raw.len() as u64, &mut self.pending);
            self.pending.extend_from_slice(raw);
        }
        self.events.append(&mut self.out.events);
        Step::Continue
    }
}
