//! One connection's conversation with Kapacitor (docs/udf-protocol.md, *The
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
//!   second, until it can forward again (docs/architecture.md, *Backpressure*);
//! - the **processor** decodes the frames, keeps the conversation's state
//!   (Init seen, open batch), calls the handler, encodes what it emits, hands events to the [`Sink`] and answers Snapshot only
//!   after `Sink::barrier` (every earlier event committed);
//! - the **writer** is the only one that writes: responses never interleave
//!   mid-frame, and keepalives overtake queued data.
//!
//! The session never knows what a level is; the handler never sees a socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::alert::Event;
use crate::alert::handler::{Handler, HandlerFactory, Output};
use crate::alert::sink::Sink;
use crate::ops::metrics::{EdgeLabel, ReasonLabel, metrics};
use crate::ops::now_ns;
use crate::proto::{
    EdgeType, ErrorResponse, InitResponse, KeepaliveResponse, Point, Request, Response,
    RestoreResponse, SnapshotResponse, request, response,
};
use crate::udf::codec::{CodecError, RawFrameCodec, decode_frame, encode_frame, put_length_prefix};
use crate::udf::snapshot::{check_snapshot, snapshot_bytes};

mod events;
mod processor;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use events::{
    LogSessionEvents, NodeKey, SessionEnd, SessionEvents, SessionRecord, edge_name, next_session_id,
};
use processor::{ProcessOutcome, Processor};
use reader::{ReadEnd, ReaderChannels, read_loop};
use writer::{WriteClock, write_loop};

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
    /// Cancelled when shutdown gives up waiting for the sessions: each
    /// session's writer stops (a client that stopped reading cannot hold
    /// the session), so the processor hands on and commits what it read.
    pub cut: CancellationToken,
    /// A connection that sends no request at all this long after connecting
    /// is closed (Kapacitor sends Info or Init at once): idle connections
    /// must not hold connection slots.
    pub first_request_timeout: Duration,
}

impl SessionSettings {
    pub fn new(edge: EdgeType, max_frame_bytes: usize) -> Self {
        Self {
            edge,
            max_frame_bytes,
            process_queue: 256,
            pause_keepalive_every: Duration::from_secs(1),
            fault_process_delay: None,
            cut: CancellationToken::new(),
            first_request_timeout: FIRST_REQUEST_TIMEOUT,
        }
    }
}

/// Everything the sessions of one agent share.
pub struct SessionContext {
    pub factory: Arc<dyn HandlerFactory>,
    pub sink: Sink,
    pub events: Arc<dyn SessionEvents>,
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
/// See [`SessionSettings::first_request_timeout`].
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
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
    let cut = settings.cut.clone();
    let write = write_loop(writer, out_rx, ka_rx, clock.clone());
    let writer_task = tokio::spawn(async move {
        tokio::select! {
            r = write => r,
            _ = cut.cancelled() => Err(std::io::Error::other(
                "cut at shutdown: the client stopped reading",
            )),
        }
    });
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
