//! Framing of the UDF protocol: every message, both ways, is a protobuf
//! message preceded by its length as an unsigned varint (docs/udf-protocol.md,
//! *Framing*). This module turns bytes into messages and back; it does no I/O.
//!
//! [`FrameCodec`] is generic over the direction: the agent decodes
//! [`Request`](crate::proto::Request)s and encodes
//! [`Response`](crate::proto::Response)s ([`AgentCodec`]); the Kapacitor
//! emulator of the tests and the benchmark do the reverse ([`KapacitorCodec`]).
//!
//! Memory: a frame's announced length is checked against `max_frame_bytes`
//! but never reserved up front: the buffer grows as the bytes arrive, so a
//! peer that announces 16 MiB and sends one byte costs one read buffer. The
//! bytes all connections hold in incomplete frames, beyond
//! [`FREE_PARTIAL_BYTES`] each, share one budget ([`PARTIAL_FRAMES_BUDGET`],
//! or twice `max_frame_bytes` when that is larger); a frame that would go over
//! it is refused ([`CodecError::PartialBudget`]) and its connection ends, so
//! slow or lying peers cannot hold more than that between them.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use tokio_util::codec::{Decoder, Encoder};

use crate::proto::{Request, Response};

/// A varint is at most 10 bytes long for a `u64`.
const MAX_VARINT_LEN: usize = 10;

/// The bytes of an incomplete frame a connection may hold outside the
/// shared budget (most frames are points of a few hundred bytes).
pub const FREE_PARTIAL_BYTES: usize = 64 * 1024;

/// What all connections' incomplete frames may hold together beyond
/// [`FREE_PARTIAL_BYTES`] each (at least twice `max_frame_bytes`).
pub const PARTIAL_FRAMES_BUDGET: usize = 256 * 1024 * 1024;

/// The bytes now counted against [`PARTIAL_FRAMES_BUDGET`], process-wide.
static PARTIAL_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The bytes incomplete frames hold against the shared budget now.
pub fn partial_frame_bytes() -> usize {
    PARTIAL_BYTES.load(Ordering::Relaxed)
}

/// What can go wrong between bytes and messages. Every variant says enough for
/// the `ErrorResponse` Kapacitor logs and for our own log.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Refused before allocating anything for it.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes (server.max_frame_bytes)")]
    FrameTooLarge { len: u64, max: usize },
    #[error("invalid frame length prefix: the varint is longer than 10 bytes")]
    BadLengthPrefix,
    #[error("cannot decode a {kind} frame of {len} bytes: {source}")]
    Decode {
        kind: &'static str,
        len: usize,
        source: prost::DecodeError,
    },
    /// Incomplete frames of all connections hold the whole budget.
    #[error(
        "incomplete frames of all connections would hold more than {budget} bytes; refusing this {len}-byte frame"
    )]
    PartialBudget { len: usize, budget: usize },
    /// The peer closed its write half in the middle of a frame.
    #[error("connection closed in the middle of a frame: {received} of {expected} bytes received")]
    Truncated { received: usize, expected: usize },
}

impl CodecError {
    /// A short stable name for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            CodecError::Io(_) => "io",
            CodecError::FrameTooLarge { .. } => "frame_too_large",
            CodecError::BadLengthPrefix => "bad_length_prefix",
            CodecError::Decode { .. } => "decode",
            CodecError::PartialBudget { .. } => "partial_frames_budget",
            CodecError::Truncated { .. } => "truncated",
        }
    }
}

/// Decodes `In` frames and encodes `Out` frames.
#[derive(Debug)]
pub struct FrameCodec<In, Out> {
    max_frame_bytes: usize,
    /// The length of the frame being assembled, once its prefix was read: kept
    /// between calls so a frame split across reads is not re-parsed each time.
    pending: Option<(usize, usize)>,
    /// The bytes of the pending frame counted against the shared budget.
    counted: usize,
    _dir: PhantomData<fn(Out) -> In>,
}

impl<In, Out> Drop for FrameCodec<In, Out> {
    fn drop(&mut self) {
        self.release();
    }
}

/// The agent's side: reads `Request`s, writes `Response`s.
pub type AgentCodec = FrameCodec<Request, Response>;
/// Kapacitor's side (tests, benchmark): reads `Response`s, writes `Request`s.
pub type KapacitorCodec = FrameCodec<Response, Request>;

impl<In, Out> FrameCodec<In, Out> {
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            max_frame_bytes,
            pending: None,
            counted: 0,
            _dir: PhantomData,
        }
    }

    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }
}

/// Reads a varint at the start of `buf` without consuming it: `Ok(None)` when
/// more bytes are needed, else the value and the prefix length.
fn peek_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, CodecError> {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().take(MAX_VARINT_LEN).enumerate() {
        if i == MAX_VARINT_LEN - 1 && b > 1 {
            return Err(CodecError::BadLengthPrefix);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        Err(CodecError::BadLengthPrefix)
    } else {
        Ok(None)
    }
}

fn kind_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

impl<In, Out> FrameCodec<In, Out> {
    /// Splits the next complete frame off `src` (its payload, without the
    /// prefix), checking the length before allocating anything for it.
    fn next_frame(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        let (prefix, len) = match self.pending {
            Some(p) => p,
            None => {
                let Some((len, prefix)) = peek_varint(src)? else {
                    return Ok(None);
                };
                if len > self.max_frame_bytes as u64 {
                    return Err(CodecError::FrameTooLarge {
                        len,
                        max: self.max_frame_bytes,
                    });
                }
                // Bounded by max_frame_bytes (a usize) just above.
                let len = len as usize;
                self.pending = Some((prefix, len));
                (prefix, len)
            }
        };
        let total = prefix + len;
        if src.len() < total {
            // Not reserved: the buffer grows as the bytes arrive.
            self.account(src.len(), len)?;
            return Ok(None);
        }
        self.release();
        self.pending = None;
        src.advance(prefix);
        Ok(Some(src.split_to(len).freeze()))
    }

    /// Counts `held` bytes of an incomplete frame of `len` bytes against the
    /// shared budget (beyond [`FREE_PARTIAL_BYTES`]).
    fn account(&mut self, held: usize, len: usize) -> Result<(), CodecError> {
        let want = held.saturating_sub(FREE_PARTIAL_BYTES);
        if want <= self.counted {
            return Ok(());
        }
        let add = want - self.counted;
        let budget = PARTIAL_FRAMES_BUDGET.max(self.max_frame_bytes.saturating_mul(2));
        let before = PARTIAL_BYTES.fetch_add(add, Ordering::Relaxed);
        self.counted = want;
        if before.saturating_add(add) > budget {
            self.release();
            return Err(CodecError::PartialBudget { len, budget });
        }
        Ok(())
    }

    /// Gives the pending frame's counted bytes back to the shared budget.
    fn release(&mut self) {
        if self.counted > 0 {
            PARTIAL_BYTES.fetch_sub(self.counted, Ordering::Relaxed);
            self.counted = 0;
        }
    }

    /// At EOF: nothing left is fine, a partial frame is `Truncated`.
    fn next_frame_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        match self.next_frame(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => {
                let expected = match self.pending {
                    Some((prefix, len)) => prefix + len,
                    // Not even the length prefix is complete.
                    None => src.len() + 1,
                };
                Err(CodecError::Truncated {
                    received: src.len(),
                    expected,
                })
            }
        }
    }
}

/// Decodes one frame's payload as `M`.
pub fn decode_frame<M: Message + Default>(frame: Bytes) -> Result<M, CodecError> {
    let len = frame.len();
    M::decode(frame).map_err(|source| CodecError::Decode {
        kind: kind_name::<M>(),
        len,
        source,
    })
}

impl<In: Message + Default, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        self.next_frame(src)?.map(decode_frame).transpose()
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        self.next_frame_eof(src)?.map(decode_frame).transpose()
    }
}

/// Splits frames without decoding them: the session's reader uses it so the
/// points are decoded (allocated) on the task that consumes them, and only
/// keepalives are decoded where they are answered.
pub type RawFrameCodec = FrameCodec<RawFrame, Response>;

/// The `In` of [`RawFrameCodec`]: frames come out as their undecoded payload.
#[derive(Debug)]
pub enum RawFrame {}

impl Decoder for RawFrameCodec {
    type Item = Bytes;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        self.next_frame(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        self.next_frame_eof(src)
    }
}

impl<In, Out: Message> Encoder<Out> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_frame(&item, dst);
        Ok(())
    }
}

impl<In, Out: Message> Encoder<&Out> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, item: &Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_frame(item, dst);
        Ok(())
    }
}

/// Appends one length-prefixed frame to `dst` (used by the encoders, and by
/// clients that pre-encode their frames).
pub fn encode_frame<M: Message>(msg: &M, dst: &mut BytesMut) {
    let len = msg.encoded_len();
    dst.reserve(len + MAX_VARINT_LEN);
    prost::encoding::encode_varint(len as u64, dst);
    // Cannot fail: the capacity was reserved just above.
    let _ = msg.encode(dst);
}

/// Appends a raw length prefix (for tests that forge frames).
pub fn put_length_prefix(len: u64, dst: &mut impl BufMut) {
    prost::encoding::encode_varint(len, dst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{KeepaliveRequest, Point, request};

    fn keepalive(t: i64) -> Request {
        Request {
            message: Some(request::Message::Keepalive(KeepaliveRequest { time: t })),
        }
    }

    fn point(i: i64) -> Request {
        let mut p = Point {
            time: i,
            name: "cpu".into(),
            database: "db".into(),
            ..Default::default()
        };
        p.tags.insert("host".into(), format!("h{i}"));
        p.fields_double.insert("v".into(), i as f64);
        Request {
            message: Some(request::Message::Point(p)),
        }
    }

    fn encode_all(reqs: &[Request]) -> BytesMut {
        let mut b = BytesMut::new();
        for r in reqs {
            encode_frame(r, &mut b);
        }
        b
    }

    #[test]
    fn many_frames_in_one_read() {
        let reqs: Vec<Request> = (0..50)
            .map(|i| if i % 3 == 0 { keepalive(i) } else { point(i) })
            .collect();
        let mut buf = encode_all(&reqs);
        let mut c = AgentCodec::new(1 << 20);
        let mut got = Vec::new();
        while let Some(r) = c.decode(&mut buf).unwrap() {
            got.push(r);
        }
        assert_eq!(got, reqs);
        assert!(buf.is_empty());
    }

    #[test]
    fn frames_split_at_every_byte() {
        let reqs: Vec<Request> = (0..20).map(point).collect();
        let all = encode_all(&reqs);
        let mut c = AgentCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in all.iter() {
            buf.put_u8(*b);
            while let Some(r) = c.decode(&mut buf).unwrap() {
                got.push(r);
            }
        }
        assert_eq!(got, reqs);
        assert_eq!(c.decode_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn an_announced_length_is_not_reserved_before_its_bytes_arrive() {
        let mut buf = BytesMut::with_capacity(64);
        put_length_prefix(16 * 1024 * 1024, &mut buf);
        buf.put_u8(0x0a);
        let mut c = AgentCodec::new(16 * 1024 * 1024);
        assert!(c.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() < 64 * 1024, "reserved {}", buf.capacity());
    }

    #[test]
    fn incomplete_frames_share_one_budget() {
        let mut c = RawFrameCodec::new(1 << 20);
        let over = FREE_PARTIAL_BYTES + PARTIAL_FRAMES_BUDGET + 1;
        let before = partial_frame_bytes();
        let err = c.account(over, over).unwrap_err();
        assert!(matches!(err, CodecError::PartialBudget { .. }), "{err}");
        assert!(err.to_string().contains("incomplete frames"), "{err}");
        // A refused frame gives its bytes back; a held one until done or dropped.
        assert_eq!(c.counted, 0);
        c.account(FREE_PARTIAL_BYTES + 10, 1 << 20).unwrap();
        assert!(partial_frame_bytes() >= before + 10);
        drop(c);
        assert!(partial_frame_bytes() <= before);
    }

    #[test]
    fn oversized_length_refused_before_allocating() {
        let mut buf = BytesMut::new();
        put_length_prefix(2 * 1024 * 1024 * 1024, &mut buf);
        let mut c = AgentCodec::new(16 * 1024 * 1024);
        let err = c.decode(&mut buf).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::FrameTooLarge {
                    len: 2147483648,
                    max: 16777216
                }
            ),
            "{err}"
        );
        assert!(
            buf.capacity() < 1024,
            "allocated {} bytes for a refused frame",
            buf.capacity()
        );
        assert!(err.to_string().contains("2147483648"));
    }

    #[test]
    fn frame_at_the_limit_is_accepted() {
        let r = point(7);
        let len = r.encoded_len();
        let mut buf = encode_all(std::slice::from_ref(&r));
        assert_eq!(
            AgentCodec::new(len).decode(&mut buf).unwrap(),
            Some(r.clone())
        );
        let mut buf = encode_all(std::slice::from_ref(&r));
        assert!(matches!(
            AgentCodec::new(len - 1).decode(&mut buf),
            Err(CodecError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn overlong_varint_is_refused() {
        let mut buf = BytesMut::from(&[0xffu8; 11][..]);
        assert!(matches!(
            AgentCodec::new(100).decode(&mut buf),
            Err(CodecError::BadLengthPrefix)
        ));
        // Ten bytes whose last one would overflow u64.
        let mut buf =
            BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f][..]);
        assert!(matches!(
            AgentCodec::new(100).decode(&mut buf),
            Err(CodecError::BadLengthPrefix)
        ));
    }

    #[test]
    fn truncated_frame_at_eof() {
        let all = encode_all(&[point(1)]);
        let mut buf = BytesMut::from(&all[..all.len() - 3]);
        let mut c = AgentCodec::new(1 << 20);
        let err = c.decode_eof(&mut buf).unwrap_err();
        match err {
            CodecError::Truncated { received, expected } => {
                assert_eq!(received, all.len() - 3);
                assert_eq!(expected, all.len());
            }
            other => panic!("{other}"),
        }
        // A lone continuation byte: not even the prefix.
        let mut buf = BytesMut::from(&[0x80u8][..]);
        assert!(matches!(
            AgentCodec::new(100).decode_eof(&mut buf),
            Err(CodecError::Truncated { .. })
        ));
    }

    #[test]
    fn garbage_is_a_decode_error_and_empty_frame_is_an_empty_request() {
        // Length 3, then bytes that are not a valid protobuf (field 0 is illegal).
        let mut buf = BytesMut::from(&[3u8, 0x00, 0x00, 0x00][..]);
        let err = AgentCodec::new(100).decode(&mut buf).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::Decode {
                    kind: "Request",
                    len: 3,
                    ..
                }
            ),
            "{err}"
        );
        let mut buf = BytesMut::from(&[0u8][..]);
        assert_eq!(
            AgentCodec::new(100).decode(&mut buf).unwrap(),
            Some(Request { message: None })
        );
    }

    #[test]
    fn encoder_round_trips_through_the_other_direction() {
        use crate::proto::{KeepaliveResponse, response};
        let resp = Response {
            message: Some(response::Message::Keepalive(KeepaliveResponse { time: 42 })),
        };
        let mut buf = BytesMut::new();
        Encoder::encode(&mut AgentCodec::new(100), resp.clone(), &mut buf).unwrap();
        assert_eq!(
            KapacitorCodec::new(100).decode(&mut buf).unwrap(),
            Some(resp)
        );
    }
}
