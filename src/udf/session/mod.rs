//! One connection's conversation with Kapacitor (udf-protocol.md, *The
//! conversation on one connection*): Info, Init, Restore, data, Keepalive,
//! Snapshot and the two endings, against a [`Handler`] built at Init.
//!
//! Three tasks per connection, because Kapacitor aborts a task that hears
//! nothing for `timeout` and stalls every stream task when a UDF stops reading:
//!
//! - the **reader** (the session's own task) splits frames, answers
//!   `KeepaliveRequest` itself at once — a keepalive never queues behind slow
//!   work — and forwards every other frame undecoded, in order, through a
//!   bounded queue. If
//!   that queue is full it stops reading (the last resort) and sends an
//!   unsolicited `KeepaliveResponse` whenever nothing was written for about a
//!   second, until it can forward again (architecture.md, *Backpressure*);
//! - the **processor** decodes the frames, keeps the conversation's state
//!   (Init seen, open batch), calls the handler, encodes what it emits, hands events to the [`Sink`] and answers Snapshot only
//!   after `Sink::barrier` (every earlier event committed);
//! - the **writer** is the only one that writes: responses never interleave
//!   mid-frame, and keepalives overtake queued data.
//!
//! The session never knows what a level is; the handler never sees a socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::alert::Event;
use crate::alert::sink::Sink;
use crate::ops::metrics::{EdgeLabel, ReasonLabel, metrics};
use crate::proto::{
    EdgeType, ErrorResponse, InitResponse, KeepaliveResponse, Point, Request, Response,
    RestoreResponse, SnapshotResponse, request, response,
};
use crate::udf::codec::{CodecError, RawFrameCodec, decode_frame, encode_frame, put_length_prefix};
use crate::udf::handler::{Handler, HandlerFactory, NodeKey, Output};

/// The first bytes of every snapshot this agent gives Kapacitor.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"KPTSNAP\0";
/// The snapshot format version. The snapshot is only this header: alert state
/// lives in the agent's own store (architecture.md), never in Kapacitor's
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

/// How one socket's sessions behave.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The socket's edge type: STREAM (points) or BATCH (batches).
    pub edge: EdgeType,
    /// `server.max_frame_bytes`: a larger length prefix is refused.
    pub max_frame_bytes: usize,
    /// Frames read but not yet processed. Small: it bounds memory per
    /// connection and how far the reader runs ahead of the handler.
    pub process_queue: usize,
    /// How often a paused reader sends an unsolicited `KeepaliveResponse`.
    pub pause_keepalive_every: Duration,
    /// **For tests only**: a delay before each data frame is processed, to
    /// make the node slow on purpose (`KAPACITOR_PAGERTREE_FAULT_PROCESS_DELAY_MS`).
    pub fault_process_delay: Option<Duration>,
}

impl SessionSettings {
    pub fn new(edge: EdgeType, max_frame_bytes: usize) -> Self {
        Self {
            edge,
            max_frame_bytes,
            process_queue: 256,
            pause_keepalive_every: Duration::from_secs(1),
            fault_process_delay: None,
        }
    }
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
/// (architecture.md, *Restarts*) needs task, node and how it ended.
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

/// Everything the sessions of one agent share.
pub struct SessionContext {
    pub factory: Arc<dyn HandlerFactory>,
    pub sink: Sink,
    pub events: Arc<dyn SessionEvents>,
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

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn resp(message: response::Message) -> Response {
    Response {
        message: Some(message),
    }
}

/// What the reader hands the processor.
enum Work {
    /// An undecoded frame: decoded by the processor, so a point's memory is
    /// allocated and freed on the same task (cross-thread frees contend on
    /// the allocator's locks).
    Frame(Bytes),
    /// A stream point the reader decoded (into memory the processor gave
    /// back: see [`Processor::spent`]), with its frame's bytes.
    Point { point: Box<Point>, raw: Bytes },
    /// A frame that could not be decoded, or a Request with no message: answered
    /// with an ErrorResponse in order, after every earlier frame.
    Violation {
        reason: &'static str,
        message: String,
    },
}

/// What the processor hands the writer, in order: encoded frames.
type Outgoing = Bytes;

/// The ErrorResponse for a Request whose `message` is not set.
const EMPTY_REQUEST: &str = "received a Request with no message set (an empty frame, or a message type this \
                             agent does not know: is this a Kapacitor UDF connection?)";

/// The first byte of a Request frame whose first field is `keepalive`
/// (field 3, length-delimited): the only frames the reader decodes itself.
const KEEPALIVE_TAG: u8 = (3 << 3) | 2;
/// The first bytes of a Request frame whose first field is `point` (field
/// 17, length-delimited: a two-byte varint tag).
const POINT_TAG: [u8; 2] = [((17 << 3) | 2) as u8 | 0x80, 1];
/// A point of the reader's pool: boxed so it travels in [`Work`] without
/// making every message large, and the box is reused with the point.
type PooledPoint = Box<Point>;
/// Vectors of spent points on their way back to the reader.
const SPENT_QUEUE: usize = 4;

const WRITER_QUEUE: usize = 64;
const KEEPALIVE_QUEUE: usize = 16;
/// Frames the processor takes from its queue at once.
const PROCESS_CHUNK: usize = 256;
/// Encoded responses the processor holds before handing them to the writer.
const FLUSH_BYTES: usize = 32 * 1024;
/// The longest a response waits in the processor within a chunk.
const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// Events the processor gathers before handing them to delivery within a
/// chunk (a chunk's batches may each fire one).
const EVENTS_MAX: usize = 1024;

/// Runs one session to its end and returns its record (also given to
/// `ctx.events`). `shutdown` stops reading; what was read is still processed.
pub async fn run<R, W>(
    id: u64,
    reader: R,
    writer: W,
    settings: SessionSettings,
    ctx: Arc<SessionContext>,
    shutdown: CancellationToken,
) -> SessionRecord
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(WRITER_QUEUE);
    let (ka_tx, ka_rx) = mpsc::channel::<i64>(KEEPALIVE_QUEUE);
    let (work_tx, work_rx) = mpsc::channel::<Work>(settings.process_queue.max(1));
    let (spent_tx, spent_rx) = mpsc::channel::<Vec<PooledPoint>>(SPENT_QUEUE);
    let stop_reading = CancellationToken::new();

    let clock = Arc::new(WriteClock::new());
    let writer_task = tokio::spawn(write_loop(writer, out_rx, ka_rx, clock.clone()));
    let processor = Processor::new(id, settings.clone(), ctx.clone(), spent_tx);
    let process_task = tokio::spawn(processor.run(work_rx, out_tx, stop_reading.clone()));

    let read_end = read_loop(
        reader,
        ReaderChannels {
            work_tx,
            spent_rx,
            ka_tx,
        },
        &clock,
        &settings,
        &stop_reading,
        &shutdown,
    )
    .await;

    let outcome = match process_task.await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(session = id, error = %e, "session processor failed");
            ProcessOutcome {
                violation: Some(format!("internal error: {e}")),
                ..Default::default()
            }
        }
    };
    let write_err = match writer_task.await {
        Ok(r) => r.err(),
        Err(e) => Some(std::io::Error::other(e.to_string())),
    };

    let end = if let Some(v) = outcome.violation {
        SessionEnd::ProtocolError(v)
    } else {
        match read_end {
            ReadEnd::Eof => match write_err {
                Some(e) => SessionEnd::Aborted(format!("writing: {e}")),
                None => SessionEnd::Closed,
            },
            ReadEnd::Aborted(e) => SessionEnd::Aborted(e),
            ReadEnd::Shutdown => SessionEnd::Shutdown,
            // The processor stopped without a violation: the sink closed under us.
            ReadEnd::Stopped => SessionEnd::Shutdown,
        }
    };
    if let SessionEnd::ProtocolError(_) = &end {
        // Counted here, once per session, by the reason the reader or processor gave.
        metrics()
            .protocol_errors_total
            .get_or_create(&ReasonLabel {
                reason: outcome.reason,
            })
            .inc();
    }
    let record = SessionRecord {
        id,
        edge: settings.edge,
        node: outcome.node,
        init_refused: outcome.init_refused,
        end,
        points: outcome.points,
        batches: outcome.batches,
    };
    ctx.events.ended(&record);
    record
}

enum ReadEnd {
    Eof,
    Aborted(String),
    Shutdown,
    /// The processor asked the reader to stop (a protocol violation) or is gone.
    Stopped,
}

/// The reader's channels: frames to the processor, points back from it,
/// keepalive answers to the writer.
struct ReaderChannels {
    work_tx: mpsc::Sender<Work>,
    spent_rx: mpsc::Receiver<Vec<PooledPoint>>,
    ka_tx: mpsc::Sender<i64>,
}

async fn read_loop<R: AsyncRead + Unpin>(
    reader: R,
    channels: ReaderChannels,

    clock: &WriteClock,
    settings: &SessionSettings,
    stop: &CancellationToken,
    shutdown: &CancellationToken,
) -> ReadEnd {
    let mut frames = FramedRead::with_capacity(
        reader,
        RawFrameCodec::new(settings.max_frame_bytes),
        64 * 1024,
    );
    let ReaderChannels {
        work_tx,
        mut spent_rx,
        ka_tx,
    } = channels;
    let stream = settings.edge == EdgeType::Stream;
    let mut pool: Vec<PooledPoint> = Vec::new();
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => return ReadEnd::Stopped,
            _ = shutdown.cancelled() => return ReadEnd::Shutdown,
            f = frames.next() => f,
        };
        let work = match next {
            None => return ReadEnd::Eof,
            Some(Ok(frame)) => {
                if frame.first() == Some(&KEEPALIVE_TAG)
                    && let Ok(Request {
                        message: Some(request::Message::Keepalive(k)),
                    }) = decode_frame::<Request>(frame.clone())
                {
                    metrics().keepalives_total.inc();
                    // A full queue means the writer is stuck: one more would not help.
                    let _ = ka_tx.try_send(k.time);
                    clock.touch();
                    continue;
                }
                // Stream points are decoded here, on the reader's thread, in
                // memory the processor returns once it is done with them: the
                // decoding runs beside the node, and allocations and frees of
                // points stay on one thread.
                match stream
                    .then(|| decode_point(&frame, &mut pool, &mut spent_rx))
                    .flatten()
                {
                    Some(point) => Work::Point { point, raw: frame },
                    None => Work::Frame(frame),
                }
            }
            Some(Err(CodecError::Io(e))) => return ReadEnd::Aborted(e.to_string()),
            Some(Err(e)) => Work::Violation {
                reason: e.reason(),
                message: format!("protocol error: {e}"),
            },
        };
        let last = matches!(work, Work::Violation { .. });
        if !forward(
            &work_tx,
            work,
            &ka_tx,
            clock,
            settings.pause_keepalive_every,
            stop,
        )
        .await
        {
            return ReadEnd::Stopped;
        }
        if last {
            // Nothing after an undecodable frame can be trusted; the processor
            // answers the violation and the session closes.
            stop.cancelled().await;
            return ReadEnd::Stopped;
        }
    }
}

/// Decodes a frame that holds exactly one `point` field into a point from
/// `pool` (refilled from what the processor gave back). `None` for any other
/// frame, or one that does not decode: the processor then decodes it fully
/// and answers errors in order.
fn decode_point(
    frame: &Bytes,
    pool: &mut Vec<PooledPoint>,
    spent: &mut mpsc::Receiver<Vec<PooledPoint>>,
) -> Option<Box<Point>> {
    use prost::Message as _;
    let body = frame.strip_prefix(POINT_TAG.as_slice())?;
    let mut rest = body;
    let len = prost::encoding::decode_varint(&mut rest).ok()?;
    if len != rest.len() as u64 {
        return None;
    }
    if pool.is_empty()
        && let Ok(returned) = spent.try_recv()
    {
        *pool = returned;
    }
    let mut point = pool.pop().unwrap_or_default();
    point.clear();
    point.merge(rest).ok()?;
    Some(point)
}

/// When the writer last wrote (or a keepalive was queued for it): Kapacitor's
/// watchdog is fed by any response, so a paused reader only needs to speak
/// when nothing else did for a while.
struct WriteClock {
    start: tokio::time::Instant,
    /// Milliseconds since `start`.
    last_ms: AtomicU64,
}

impl WriteClock {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> tokio::time::Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Hands a frame to the processor. When the queue is full the reader is
/// paused: whenever nothing was written for `every`, it sends an unsolicited
/// `KeepaliveResponse`, so Kapacitor — whose own keepalives now wait behind
/// its unread points — does not abort the task. The clock spans pauses: a
/// node that keeps the reader paused in short bursts is covered too.
async fn forward(
    work_tx: &mpsc::Sender<Work>,
    work: Work,
    ka_tx: &mpsc::Sender<i64>,
    clock: &WriteClock,
    every: Duration,
    stop: &CancellationToken,
) -> bool {
    let work = match work_tx.try_send(work) {
        Ok(()) => return true,
        Err(mpsc::error::TrySendError::Closed(_)) => return false,
        Err(mpsc::error::TrySendError::Full(w)) => w,
    };
    tracing::trace!("session paused reading: the node is behind");
    loop {
        let due = clock.last() + every;
        tokio::select! {
            biased;
            permit = work_tx.reserve() => {
                return match permit {
                    Ok(p) => { p.send(work); true }
                    Err(_) => false,
                };
            }
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep_until(due) => {
                if clock.last() + every <= tokio::time::Instant::now() {
                    metrics().keepalives_unsolicited_total.inc();
                    let _ = ka_tx.try_send(now_ns());
                    clock.touch();
                }
            }
        }
    }
}

/// What the writer takes into one write at most.
const WRITE_BATCH: usize = 256 * 1024;
/// Pieces per `writev` call.
const WRITE_SLICES: usize = 64;

/// The single writer. Keepalives go first; after a write error (the peer is
/// gone) it keeps draining so the processor never blocks, writing nothing.
///
/// Whatever is ready when it wakes (up to [`WRITE_BATCH`]) goes out in one
/// vectored write of the processor's buffers as they are, without copying
/// them; it writes again as soon as the queue is empty.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut out: mpsc::Receiver<Outgoing>,
    mut ka: mpsc::Receiver<i64>,
    clock: Arc<WriteClock>,
) -> std::io::Result<()> {
    let mut pieces: std::collections::VecDeque<Bytes> = std::collections::VecDeque::new();
    let mut ka_buf = BytesMut::new();
    let mut failed: Option<std::io::Error> = None;
    let (mut out_open, mut ka_open) = (true, true);
    let mut keepalive = |t: i64| {
        let r = resp(response::Message::Keepalive(KeepaliveResponse { time: t }));
        encode_frame(&r, &mut ka_buf);
        ka_buf.split().freeze()
    };
    while out_open || ka_open {
        tokio::select! {
            biased;
            k = ka.recv(), if ka_open => match k {
                Some(t) => pieces.push_back(keepalive(t)),
                None => ka_open = false,
            },
            o = out.recv(), if out_open => match o {
                Some(bytes) => pieces.push_back(bytes),
                None => out_open = false,
            },
        }
        // Take whatever else is ready into the same write.
        let mut len: usize = pieces.iter().map(Bytes::len).sum();
        while len < WRITE_BATCH {
            let next = if let Ok(t) = ka.try_recv() {
                keepalive(t)
            } else if let Ok(bytes) = out.try_recv() {
                bytes
            } else {
                break;
            };
            len += next.len();
            pieces.push_back(next);
        }
        if failed.is_some() {
            pieces.clear();
            continue;
        }
        if pieces.is_empty() {
            continue;
        }
        if let Err(e) = write_pieces(&mut w, &mut pieces).await {
            failed = Some(e);
            pieces.clear();
        }
        clock.touch();
    }
    match failed {
        Some(e) => Err(e),
        None => {
            w.flush().await?;
            // Close our write half: Kapacitor waits for this EOF with no timeout.
            w.shutdown().await
        }
    }
}

/// Writes every piece, in order, as few `writev` calls as the socket takes.
async fn write_pieces<W: AsyncWrite + Unpin>(
    w: &mut W,
    pieces: &mut std::collections::VecDeque<Bytes>,
) -> std::io::Result<()> {
    use bytes::Buf;
    while !pieces.is_empty() {
        let n = {
            let slices: Vec<std::io::IoSlice<'_>> = pieces
                .iter()
                .take(WRITE_SLICES)
                .map(|b| std::io::IoSlice::new(b))
                .collect();
            w.write_vectored(&slices).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut left = n;
        while left > 0 {
            let Some(front) = pieces.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                pieces.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
    Ok(())
}

#[derive(Default)]
struct ProcessOutcome {
    node: Option<NodeKey>,
    init_refused: Option<String>,
    violation: Option<String>,
    reason: &'static str,
    points: u64,
    batches: u64,
}

/// The conversation's state, owned by the processor task.
struct Processor {
    id: u64,
    settings: SessionSettings,
    ctx: Arc<SessionContext>,
    handler: Option<Box<dyn Handler>>,
    init_seen: bool,
    open_batch: bool,
    out: Output,
    /// Encoded responses not yet handed to the writer.
    pending: BytesMut,
    /// Events not yet handed to delivery: one `submit_many` per chunk, so
    /// the committer is woken once per chunk, not once per event.
    events: Vec<Event>,
    /// An empty vector for the next chunk's events (see `Sink::reclaim`).
    spare_events: Vec<Event>,
    outcome: ProcessOutcome,
    /// `points_total` for this edge, resolved once (the family's lookup locks).
    points_total: prometheus_client::metrics::counter::Counter,
    /// Points the reader decoded and the handler is done with: sent back per
    /// chunk so the reader decodes into them (their memory is allocated and
    /// freed on the reader's thread).
    spent: Vec<PooledPoint>,
    spent_tx: mpsc::Sender<Vec<PooledPoint>>,
}

enum Step {
    Continue,
    Stop,
}

impl Processor {
    fn new(
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

    async fn run(
        mut self,
        mut work_rx: mpsc::Receiver<Work>,
        out_tx: mpsc::Sender<Outgoing>,
        stop_reading: CancellationToken,
    ) -> ProcessOutcome {
        let mut chunk = Vec::with_capacity(PROCESS_CHUNK);
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

    fn push(&mut self, r: Response) {
        encode_frame(&r, &mut self.pending);
    }

    async fn flush(&mut self, out_tx: &mpsc::Sender<Outgoing>) {
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
    async fn submit_events(&mut self) -> Result<(), crate::alert::sink::SinkError> {
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

    /// Responses to the writer, then events to delivery. A closed sink ends
    /// the conversation (the agent is stopping or delivery failed).
    async fn hand_on(&mut self, out_tx: &mpsc::Sender<Outgoing>) -> Step {
        self.flush(out_tx).await;
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
        Step::Continue
    }

    fn node_desc(&self) -> String {
        match &self.outcome.node {
            Some(n) => format!("task {:?} node {:?}", n.task, n.node),
            None => "this connection".into(),
        }
    }

    /// Answers a violation with an `ErrorResponse` and ends the conversation.
    fn violation(&mut self, reason: &'static str, message: String) -> Step {
        tracing::warn!(session = self.id, edge = edge_name(self.settings.edge), reason, error = %message, "protocol violation; closing the session");
        self.push(resp(response::Message::Error(ErrorResponse {
            error: message.clone(),
        })));
        self.outcome.violation = Some(message);
        self.outcome.reason = reason;
        Step::Stop
    }

    async fn handle(&mut self, work: Work, out_tx: &mpsc::Sender<Outgoing>) -> Step {
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
                match self.ctx.factory.init(self.settings.edge, &req) {
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
                // In order: responses before it are written first, and every
                // event before it is committed before the answer.
                self.flush(out_tx).await;
                let committed = match self.submit_events().await {
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
    async fn data(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Event, Level, Series};
    use crate::alert::sink::{CommitError, Committer, spawn_sink};
    use crate::proto::{
        BeginBatch, EndBatch, InfoRequest, InfoResponse, InitRequest, KeepaliveRequest, Point,
        RestoreRequest, SnapshotRequest,
    };
    use crate::udf::codec::KapacitorCodec;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, DuplexStream};
    use tokio_util::codec::Decoder;

    /// Test-only node: emits every point back; a string field `level` that is
    /// not OK makes an event.
    struct Echo {
        key: NodeKey,
    }

    impl Handler for Echo {
        fn point(&mut self, p: Point, out: &mut Output) {
            if let Some(level) = p.fields_string.get("level").and_then(|l| Level::parse(l))
                && level != Level::OK
            {
                out.events.push(Event {
                    task: self.key.task.clone(),
                    node: self.key.node.clone(),
                    id: p.name.clone(),
                    message: String::new(),
                    details: String::new(),
                    time: p.time,
                    duration: 0,
                    level,
                    previous_level: Level::OK,
                    recoverable: true,
                    data: Series::default(),
                    route: Default::default(),
                });
            }
            if out.can_echo && p.name == "echo" {
                out.echo_point = true;
            } else {
                out.responses.push(resp(response::Message::Point(p)));
            }
        }
        fn begin_batch(&mut self, b: BeginBatch, out: &mut Output) {
            out.responses.push(resp(response::Message::Begin(b)));
        }
        fn end_batch(&mut self, e: EndBatch, out: &mut Output) {
            out.responses.push(resp(response::Message::End(e)));
        }
    }

    struct EchoFactory;
    impl HandlerFactory for EchoFactory {
        fn info(&self, edge: EdgeType) -> InfoResponse {
            InfoResponse {
                wants: edge as i32,
                provides: edge as i32,
                options: Default::default(),
            }
        }
        fn init(&self, _edge: EdgeType, req: &InitRequest) -> Result<Box<dyn Handler>, String> {
            if req.options.iter().any(|o| o.name == "bad") {
                return Err("option bad: refused".into());
            }
            Ok(Box::new(Echo {
                key: NodeKey {
                    task: req.task_id.clone(),
                    node: req.node_id.clone(),
                },
            }))
        }
    }

    /// Collects committed events; optionally slow.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<Event>>>, Duration);
    impl Committer for Collect {
        fn commit(&mut self, events: &[Event]) -> Result<(), CommitError> {
            std::thread::sleep(self.1);
            self.0.lock().unwrap().extend_from_slice(events);
            Ok(())
        }
    }

    #[derive(Default)]
    struct Records(Mutex<Vec<SessionRecord>>);
    impl SessionEvents for Records {
        fn initialized(&self, _: u64, _: EdgeType, _: &NodeKey) {}
        fn ended(&self, r: &SessionRecord) {
            self.0.lock().unwrap().push(r.clone());
        }
    }

    struct Harness {
        client: DuplexStream,
        buf: BytesMut,
        codec: KapacitorCodec,
        done: tokio::task::JoinHandle<SessionRecord>,
        committed: Arc<Mutex<Vec<Event>>>,
    }

    fn start(settings: SessionSettings, commit_delay: Duration) -> Harness {
        let (client, server) = tokio::io::duplex(1 << 16);
        let committed = Collect(Default::default(), commit_delay);
        let (sink, _) = spawn_sink(committed.clone(), 16);
        let ctx = Arc::new(SessionContext {
            factory: Arc::new(EchoFactory),
            sink,
            events: Arc::new(Records::default()),
        });
        let (r, w) = tokio::io::split(server);
        let done = tokio::spawn(run(
            next_session_id(),
            r,
            w,
            settings,
            ctx,
            CancellationToken::new(),
        ));
        Harness {
            client,
            buf: BytesMut::new(),
            codec: KapacitorCodec::new(1 << 20),
            done,
            committed: committed.0,
        }
    }

    impl Harness {
        async fn send(&mut self, m: request::Message) {
            let mut b = BytesMut::new();
            encode_frame(&Request { message: Some(m) }, &mut b);
            self.client.write_all(&b).await.unwrap();
        }
        async fn raw(&mut self, bytes: &[u8]) {
            self.client.write_all(bytes).await.unwrap();
        }
        /// The next response, or None at EOF.
        async fn recv(&mut self) -> Option<response::Message> {
            loop {
                if let Some(r) = self.codec.decode(&mut self.buf).unwrap() {
                    return Some(r.message.expect("a Response with no message"));
                }
                let n = tokio::time::timeout(
                    Duration::from_secs(5),
                    self.client.read_buf(&mut self.buf),
                )
                .await
                .expect("no response within 5s")
                .unwrap();
                if n == 0 {
                    return None;
                }
            }
        }
        async fn init(&mut self) {
            self.send(request::Message::Init(InitRequest {
                task_id: "t".into(),
                node_id: "n".into(),
                options: vec![],
            }))
            .await;
            assert_eq!(
                self.recv().await,
                Some(response::Message::Init(InitResponse {
                    success: true,
                    error: "".into()
                }))
            );
        }
        async fn close(mut self) -> (Vec<response::Message>, SessionRecord) {
            self.client.shutdown().await.unwrap();
            let mut rest = Vec::new();
            while let Some(m) = self.recv().await {
                rest.push(m);
            }
            (rest, self.done.await.unwrap())
        }
    }

    fn point(name: &str, level: &str, t: i64) -> request::Message {
        let mut p = Point {
            time: t,
            name: name.into(),
            ..Default::default()
        };
        p.fields_string.insert("level".into(), level.into());
        request::Message::Point(p)
    }

    fn settings(edge: EdgeType) -> SessionSettings {
        SessionSettings::new(edge, 1 << 20)
    }

    #[tokio::test]
    async fn full_conversation_in_order() {
        let mut h = start(settings(EdgeType::Stream), Duration::from_millis(20));
        h.send(request::Message::Info(InfoRequest {})).await;
        assert!(matches!(h.recv().await, Some(response::Message::Info(i)) if i.wants == 0));
        h.init().await;
        h.send(request::Message::Restore(RestoreRequest {
            snapshot: snapshot_bytes(),
        }))
        .await;
        assert_eq!(
            h.recv().await,
            Some(response::Message::Restore(RestoreResponse {
                success: true,
                error: "".into()
            }))
        );
        for i in 0..10 {
            h.send(point("cpu", if i % 2 == 0 { "CRITICAL" } else { "OK" }, i))
                .await;
        }
        h.send(request::Message::Snapshot(SnapshotRequest {})).await;
        for i in 0..10 {
            assert!(matches!(h.recv().await, Some(response::Message::Point(p)) if p.time == i));
        }
        // The snapshot comes after the points, and only once their events are committed.
        assert_eq!(
            h.recv().await,
            Some(response::Message::Snapshot(SnapshotResponse {
                snapshot: snapshot_bytes()
            }))
        );
        assert_eq!(h.committed.lock().unwrap().len(), 5);
        h.send(point("cpu", "WARNING", 11)).await;
        let committed = h.committed.clone();
        let (rest, rec) = h.close().await;
        assert_eq!(rest.len(), 1);
        assert_eq!(rec.end, SessionEnd::Closed);
        assert_eq!(rec.points, 11);
        assert_eq!(
            rec.node,
            Some(NodeKey {
                task: "t".into(),
                node: "n".into()
            })
        );
        // The last event was committed before the connection closed.
        assert_eq!(committed.lock().unwrap().len(), 6);
    }

    /// A point the handler passes on unchanged comes back as the bytes sent,
    /// in order with encoded ones.
    #[tokio::test]
    async fn echoed_points_are_the_bytes_received() {
        let mut h = start(settings(EdgeType::Stream), Duration::ZERO);
        h.init().await;
        let mut sent = Vec::new();
        for i in 0..6 {
            let m = point(if i % 2 == 0 { "echo" } else { "cpu" }, "CRITICAL", i);
            if let request::Message::Point(p) = &m {
                sent.push(p.clone());
            }
            h.send(m).await;
        }
        for p in &sent {
            assert_eq!(h.recv().await, Some(response::Message::Point(p.clone())));
        }
        let (rest, rec) = h.close().await;
        assert!(rest.is_empty());
        assert_eq!(rec.points, 6);
    }

    /// The reader's point decoding agrees with the full decoding, reuses
    /// returned points without leftovers, and leaves other frames alone.
    #[tokio::test]
    async fn reader_decodes_points_into_returned_memory() {
        let frame_of = |m: request::Message| {
            let mut b = BytesMut::new();
            encode_frame(&Request { message: Some(m) }, &mut b);
            // The payload, without the length prefix.
            let mut rest = &b[..];
            let _ = prost::encoding::decode_varint(&mut rest).unwrap();
            Bytes::copy_from_slice(rest)
        };
        let (tx, mut rx) = mpsc::channel::<Vec<PooledPoint>>(SPENT_QUEUE);
        let mut pool = Vec::new();
        // A returned point full of other data.
        let mut old = Point {
            name: "old".into(),
            ..Default::default()
        };
        old.tags.insert("stale".into(), "x".into());
        old.fields_int.insert("n".into(), 1);
        tx.try_send(vec![Box::new(old)]).unwrap();
        let request::Message::Point(want) = point("cpu", "CRITICAL", 7) else {
            unreachable!()
        };
        let frame = frame_of(request::Message::Point(want.clone()));
        assert_eq!(
            decode_point(&frame, &mut pool, &mut rx),
            Some(Box::new(want.clone()))
        );
        assert!(pool.is_empty(), "the returned point was used");
        // Not a point, a point followed by another field, garbage.
        let ka = frame_of(request::Message::Keepalive(KeepaliveRequest { time: 1 }));
        assert_eq!(decode_point(&ka, &mut pool, &mut rx), None);
        let mut two = frame.to_vec();
        two.extend_from_slice(&ka);
        assert_eq!(decode_point(&Bytes::from(two), &mut pool, &mut rx), None);
        let mut bad = frame.to_vec();
        let n = bad.len();
        bad[n - 1] = 0xff;
        bad[n - 2] = 0xff;
        let bad = Bytes::from(bad);
        assert_eq!(decode_point(&bad, &mut pool, &mut rx), None);
    }

    async fn expect_error(h: Harness, contains: &str) -> SessionRecord {
        let (rest, rec) = h.close().await;
        match rest.last() {
            Some(response::Message::Error(e)) => assert!(e.error.contains(contains), "{}", e.error),
            other => panic!("expected an ErrorResponse, got {other:?}"),
        }
        assert!(
            matches!(rec.end, SessionEnd::ProtocolError(_)),
            "{:?}",
            rec.end
        );
        rec
    }

    #[tokio::test]
    async fn data_before_init_is_an_error() {
        let mut h = start(settings(EdgeType::Stream), Duration::ZERO);
        h.send(point("cpu", "OK", 1)).await;
        expect_error(h, "Point before a successful InitRequest").await;
    }

    #[tokio::test]
    async fn data_after_refused_init_is_an_error() {
        let mut h = start(settings(EdgeType::Stream), Duration::ZERO);
        let opt = crate::proto::Option {
            name: "bad".into(),
            values: vec![],
        };
        h.send(request::Message::Init(InitRequest {
            task_id: "t".into(),
            node_id: "n".into(),
            options: vec![opt],
        }))
        .await;
        assert!(
            matches!(h.recv().await, Some(response::Message::Init(r)) if !r.success && r.error == "option bad: refused")
        );
        h.send(point("cpu", "OK", 1)).await;
        let rec = expect_error(h, "InitRequest was refused").await;
        assert_eq!(rec.init_refused.as_deref(), Some("option bad: refused"));
    }

    #[tokio::test]
    async fn second_init_is_an_error() {
        let mut h = start(settings(EdgeType::Stream), Duration::ZERO);
        h.init().await;
        h.send(request::Message::Init(InitRequest {
            task_id: "t2".into(),
            node_id: "n".into(),
            options: vec![],
        }))
        .await;
        let counter = || {
            metrics()
                .protocol_errors_total
                .get_or_create(&ReasonLabel {
                    reason: "second_init",
                })
                .get()
        };
        let before = counter();
        let rec = expect_error(h, "a second InitRequest").await;
        assert_eq!(
            rec.node,
            Some(NodeKey {
                task: "t".into(),
                node: "n".into()
            })
        );
        assert_eq!(counter(), before + 1);
    }

    #[tokio::test]
    async fn empty_request_is_an_error() {
        let mut h = start(settings(EdgeType::Stream), Duration::ZERO);
        h.raw(&[0]).await;
        expect_error(h, "no message set").await;
    }

    #[tokio::test]
    async fn garbage_and_oversized_frames_are_errors() {
        let mut h = start(settings(EdgeType::Stream), Duration::ZERO);
        h.raw(&[3, 0, 0, 0]).await;
        expect_error(h, "cannot decode").await;
        let mut h = start(settings(EdgeType::Stream), Duration::ZERO);
        h.raw(&[0x80, 0x80, 0x80, 0x80, 0x08]).await; // 2 GiB
        expect_error(h, "exceeds the maximum").await;
        let mut h = start(settings(EdgeType::Stream), Duration::ZERO);
        h.raw(&[10, 1, 2]).await;
        expect_error(h, "in the middle of a frame").await;
    }

    #[tokio::test]
    async fn batch_nesting_is_checked() {
        let mut h = start(settings(EdgeType::Batch), Duration::ZERO);
        h.init().await;
        h.send(point("cpu", "OK", 1)).await;
        expect_error(h, "Point outside a batch").await;

        let mut h = start(settings(EdgeType::Batch), Duration::ZERO);
        h.init().await;
        h.send(request::Message::Begin(BeginBatch::default())).await;
        h.send(request::Message::Begin(BeginBatch::default())).await;
        expect_error(h, "BeginBatch inside an open batch").await;

        let mut h = start(settings(EdgeType::Batch), Duration::ZERO);
        h.init().await;
        h.send(request::Message::Begin(BeginBatch::default())).await;
        h.send(point("cpu", "CRITICAL", 1)).await;
        h.send(request::Message::End(EndBatch::default())).await;
        h.send(request::Message::Begin(BeginBatch::default())).await;
        h.send(request::Message::End(EndBatch::default())).await;
        let (rest, rec) = h.close().await;
        assert_eq!(rest.len(), 5);
        assert_eq!(
            (rec.end, rec.batches, rec.points),
            (SessionEnd::Closed, 2, 1)
        );
    }

    #[tokio::test]
    async fn unusable_restore_is_accepted() {
        for bytes in [b"garbage".to_vec(), vec![], b"KPTSNAP\0\x09".to_vec()] {
            let mut h = start(settings(EdgeType::Stream), Duration::ZERO);
            h.init().await;
            let before = metrics().restore_unusable_total.get();
            h.send(request::Message::Restore(RestoreRequest {
                snapshot: bytes,
            }))
            .await;
            assert_eq!(
                h.recv().await,
                Some(response::Message::Restore(RestoreResponse {
                    success: true,
                    error: "".into()
                }))
            );
            assert!(metrics().restore_unusable_total.get() > before);
            assert_eq!(h.close().await.1.end, SessionEnd::Closed);
        }
        assert_eq!(
            check_snapshot(b"KPTSNAP\0\x09"),
            Err(UnusableSnapshot::OtherVersion { found: 9 })
        );
        assert_eq!(check_snapshot(&snapshot_bytes()), Ok(()));
    }

    #[tokio::test]
    async fn keepalive_overtakes_slow_processing() {
        let mut s = settings(EdgeType::Stream);
        s.fault_process_delay = Some(Duration::from_millis(300));
        let mut h = start(s, Duration::ZERO);
        h.init().await;
        for i in 0..3 {
            h.send(point("cpu", "OK", i)).await;
        }
        h.send(request::Message::Keepalive(KeepaliveRequest { time: 77 }))
            .await;
        let t0 = std::time::Instant::now();
        assert_eq!(
            h.recv().await,
            Some(response::Message::Keepalive(KeepaliveResponse { time: 77 }))
        );
        assert!(
            t0.elapsed() < Duration::from_millis(200),
            "{:?}",
            t0.elapsed()
        );
        let (rest, _) = h.close().await;
        assert_eq!(rest.len(), 3);
    }

    #[tokio::test]
    async fn a_slow_chunk_does_not_hold_responses_back() {
        let mut s = settings(EdgeType::Stream);
        s.fault_process_delay = Some(Duration::from_millis(300));
        let mut h = start(s, Duration::ZERO);
        // Init and four points arrive together, in one chunk.
        h.send(request::Message::Init(InitRequest {
            task_id: "t".into(),
            node_id: "n".into(),
            options: vec![],
        }))
        .await;
        for i in 0..4 {
            h.send(point("cpu", "OK", i)).await;
        }
        let t0 = std::time::Instant::now();
        assert!(matches!(h.recv().await, Some(response::Message::Init(r)) if r.success));
        assert!(
            t0.elapsed() < Duration::from_millis(600),
            "{:?}",
            t0.elapsed()
        );
        let (rest, _) = h.close().await;
        assert_eq!(rest.len(), 4);
    }

    #[tokio::test]
    async fn paused_reader_sends_unsolicited_keepalives() {
        let mut s = settings(EdgeType::Stream);
        s.fault_process_delay = Some(Duration::from_millis(400));
        s.process_queue = 1;
        s.pause_keepalive_every = Duration::from_millis(100);
        let mut h = start(s, Duration::ZERO);
        h.init().await;
        let before = metrics().keepalives_unsolicited_total.get();
        for i in 0..4 {
            h.send(point("cpu", "OK", i)).await;
        }
        // The reader is paused behind the slow node: unasked keepalives arrive.
        let mut keepalives = 0;
        let mut points = 0;
        while points < 4 {
            match h.recv().await {
                Some(response::Message::Keepalive(_)) => keepalives += 1,
                Some(response::Message::Point(_)) => points += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(keepalives >= 2, "{keepalives}");
        assert!(metrics().keepalives_unsolicited_total.get() >= before + 2);
        h.close().await;
    }

    #[tokio::test]
    async fn abort_keeps_what_was_accepted() {
        let mut h = start(settings(EdgeType::Stream), Duration::from_millis(50));
        h.init().await;
        h.send(point("cpu", "CRITICAL", 1)).await;
        let committed = h.committed.clone();
        drop(h.client);
        let rec = h.done.await.unwrap();
        assert!(
            matches!(rec.end, SessionEnd::Closed | SessionEnd::Aborted(_)),
            "{:?}",
            rec.end
        );
        assert_eq!(committed.lock().unwrap().len(), 1);
    }
}
