//! The writer: the only task that writes to the connection. Keepalives
//! overtake queued data; responses never interleave mid-frame.

use super::*;
use tokio::io::AsyncWriteExt;

/// When the writer last wrote (or a keepalive was queued for it): Kapacitor's
/// watchdog is fed by any response, so a paused reader only needs to speak
/// when nothing else did for a while.
pub(super) struct WriteClock {
    pub(super) start: tokio::time::Instant,
    /// Milliseconds since `start`.
    pub(super) last_ms: AtomicU64,
}

impl WriteClock {
    pub(super) fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(super) fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    pub(super) fn last(&self) -> tokio::time::Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// What the writer takes into one write at most.
pub(super) const WRITE_BATCH: usize = 256 * 1024;
/// Pieces per `writev` call.
pub(super) const WRITE_SLICES: usize = 64;

/// The single writer. Keepalives go first; after a write error (the peer is
/// gone) it keeps draining so the processor never blocks, writing nothing.
///
/// Whatever is ready when it wakes (up to [`WRITE_BATCH`]) goes out in one
/// vectored write of the processor's buffers as they are, without copying
/// them; it writes again as soon as the queue is empty.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
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
pub(super) async fn write_pieces<W: AsyncWrite + Unpin>(
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
