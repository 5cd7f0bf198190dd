//! The reader: splits frames, answers keepalives itself and forwards every
//! other frame, undecoded and in order, to the processor; pauses (sending
//! unsolicited keepalives) when the processor is behind.

use super::*;

pub(super) enum ReadEnd {
    Eof,
    Aborted(String),
    Shutdown,
    /// The processor asked the reader to stop (a protocol violation) or is gone.
    Stopped,
}

/// The reader's channels: frames to the processor, points back from it,
/// keepalive answers to the writer.
pub(super) struct ReaderChannels {
    pub(super) work_tx: mpsc::Sender<Work>,
    pub(super) spent_rx: mpsc::Receiver<Vec<PooledPoint>>,
    pub(super) ka_tx: mpsc::Sender<i64>,
}

pub(super) async fn read_loop<R: AsyncRead + Unpin>(
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
        READ_BUFFER,
    );
    let ReaderChannels {
        work_tx,
        mut spent_rx,
        ka_tx,
    } = channels;
    let stream = settings.edge == EdgeType::Stream;
    let mut pool: Vec<PooledPoint> = Vec::new();
    // Until the first request arrives: a connection that stays silent is closed.
    let mut first = Some(tokio::time::Instant::now() + settings.first_request_timeout);
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => return ReadEnd::Stopped,
            _ = shutdown.cancelled() => return ReadEnd::Shutdown,
            _ = sleep_until_some(first) => {
                return ReadEnd::Aborted(format!(
                    "no request within {:?} of connecting: closed (Kapacitor sends its first request at once)",
                    settings.first_request_timeout
                ));
            }
            f = frames.next() => f,
        };
        first = None;
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

/// The read buffer a connection starts with (it grows, doubling, only to
/// hold a frame larger than this). 4 KiB, not 64: 58 KB less per idle
/// session (BENCHMARKS.md, *Idle sessions*), and a flood is read 4 KiB at a
/// time at no measurable cost — CPU per point and
/// throughput were the same with 4 KiB, 64 KiB and a buffer growing from 4
/// to 64 KiB under load (*UDF throughput*, *Read buffer size*).
pub(super) const READ_BUFFER: usize = 4 * 1024;

/// Decodes a frame that holds exactly one `point` field into a point from
/// `pool` (refilled from what the processor gave back). `None` for any other
/// frame, or one that does not decode: the processor then decodes it fully
/// and answers errors in order.
pub(super) fn decode_point(
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

/// Hands a frame to the processor. When the queue is full the reader is
/// paused: whenever nothing was written for `every`, it sends an unsolicited
/// `KeepaliveResponse`, so Kapacitor — whose own keepalives now wait behind
/// its unread points — does not abort the task. The clock spans pauses: a
/// node that keeps the reader paused in short bursts is covered too.
pub(super) async fn forward(
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

/// Sleeps until `at`, or forever when it is `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
