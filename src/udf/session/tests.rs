//! The session driven over an in-memory duplex stream, as Kapacitor would.

use super::*;
use crate::alert::sink::{CommitError, Committer, spawn_sink};
use crate::alert::{Event, Level, Series};
use crate::proto::{
    BeginBatch, EndBatch, InfoRequest, InfoResponse, InitRequest, KeepaliveRequest, Point,
    RestoreRequest, SnapshotRequest,
};
use crate::udf::codec::KapacitorCodec;
use crate::udf::snapshot::UnusableSnapshot;
use reader::decode_point;
use std::sync::Mutex;
use tokio::io::AsyncWriteExt;
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
            let n =
                tokio::time::timeout(Duration::from_secs(5), self.client.read_buf(&mut self.buf))
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
