//! Bad peers and slow nodes, through the real binary: every malformed input
//! gets a clear ErrorResponse and a close while other sessions go on; a slow
//! node never delays a keepalive; a paused session keeps Kapacitor's watchdog fed.

mod support;

use std::time::{Duration, Instant};

use kapacitor_pagertree::proto::{ErrorResponse, Response, response};
use kapacitor_pagertree::udf::codec::{encode_frame, put_length_prefix};
use support::Agent;
use support::kapacitor::{Kapacitor, Opt, error_text, frames, init_request, opt, point, read_all};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

fn mode2() -> Vec<Opt> {
    vec![
        opt("levelFrom").string("level"),
        opt("idFrom").string("alertID"),
        opt("dryRun"),
    ]
}

fn ok_point(i: i64) -> support::kapacitor::PointBuilder {
    point("cpu")
        .time(1_700_000_000_000_000_000 + i)
        .tag("alertID", "web01")
        .tag("level", "OK")
        .field("usage", 1.0)
}

/// Sends `bytes` on a fresh connection (half-closing afterwards if `close`),
/// returns the ErrorResponse text; asserts the agent then closed.
async fn bad_input(agent: &Agent, bytes: &[u8], close: bool) -> String {
    let mut raw = UnixStream::connect(agent.stream_socket()).await.unwrap();
    raw.write_all(bytes).await.unwrap();
    if close {
        raw.shutdown().await.unwrap();
    }
    let (responses, _ending) = read_all(raw).await;
    assert!(
        responses.iter().all(|r| r.message.is_some()),
        "an empty Response was written: {responses:?}"
    );
    error_text(&responses)
        .unwrap_or_else(|| panic!("no ErrorResponse for {bytes:?}: {responses:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_a_clear_error_and_others_keep_going() {
    let agent = Agent::start();
    let mut healthy = Kapacitor::connect(agent.stream_socket()).await;
    assert!(healthy.init("healthy", "n", mode2()).await.success);

    // Garbage: a length, then bytes that are no protobuf.
    let e = bad_input(&agent, &[5, 0xff, 0xff, 0xff, 0xff, 0xff], false).await;
    assert!(
        e.contains("cannot decode a Request frame of 5 bytes"),
        "{e}"
    );
    // Someone speaking HTTP to the socket: 'G' reads as a length of 71.
    let e = bad_input(&agent, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", true).await;
    assert!(e.contains("closed in the middle of a frame"), "{e}");
    // A truncated frame: half of an InitRequest, then the half-close.
    let init = frames(&[init_request("t", "n", mode2())]);
    let e = bad_input(&agent, &init[..init.len() / 2], true).await;
    assert!(
        e.contains(&format!(
            "{} of {} bytes received",
            init.len() / 2,
            init.len()
        )),
        "{e}"
    );
    // A 2 GiB length prefix: refused before allocating, at once.
    let mut huge = Vec::new();
    put_length_prefix(2 << 30, &mut huge);
    let started = Instant::now();
    let e = bad_input(&agent, &huge, false).await;
    assert!(
        e.contains("frame of 2147483648 bytes exceeds the maximum of 16777216 bytes"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // An empty frame (an empty Request, or an empty Response).
    let e = bad_input(&agent, &[0], false).await;
    assert!(e.contains("no message set"), "{e}");
    // A Response sent the wrong way: its ErrorResponse field (6) is no Request message.
    let mut wrong_way = bytes::BytesMut::new();
    let r = Response {
        message: Some(response::Message::Error(ErrorResponse {
            error: "x".into(),
        })),
    };
    encode_frame(&r, &mut wrong_way);
    let e = bad_input(&agent, &wrong_way, false).await;
    assert!(e.contains("no message set"), "{e}");
    // A Request with a field this protocol does not have (field 99, varint 1).
    let e = bad_input(&agent, &[3, 0x98, 0x06, 0x01], false).await;
    assert!(e.contains("no message set"), "{e}");
    // Data before Init, and a second Init.
    let e = bad_input(
        &agent,
        &frames(&[support::kapacitor::point_request(ok_point(0))]),
        false,
    )
    .await;
    assert!(e.contains("Point before a successful InitRequest"), "{e}");
    let e = bad_input(
        &agent,
        &frames(&[
            init_request("t", "n", mode2()),
            init_request("t", "n", mode2()),
        ]),
        false,
    )
    .await;
    assert!(e.contains("a second InitRequest"), "{e}");

    // The healthy session never noticed.
    healthy.point(ok_point(1)).await;
    let (_, snap) = healthy.snapshot().await;
    assert!(!snap.is_empty());
    assert_eq!(error_text(&healthy.close().await), None);
    assert!(healthy_agent_still_accepts(&agent).await);
}

async fn healthy_agent_still_accepts(agent: &Agent) -> bool {
    let mut k = Kapacitor::connect(agent.batch_socket()).await;
    k.info().await.options.contains_key("levelFrom")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_nesting_violations_are_errors() {
    use kapacitor_pagertree::proto::{BeginBatch, request};
    let agent = Agent::start();
    let begin = kapacitor_pagertree::proto::Request {
        message: Some(request::Message::Begin(BeginBatch::default())),
    };
    for (reqs, expect) in [
        (
            vec![
                init_request("t", "n", mode2()),
                support::kapacitor::point_request(ok_point(0)),
            ],
            "Point outside a batch",
        ),
        (
            vec![
                init_request("t", "n", mode2()),
                begin.clone(),
                begin.clone(),
            ],
            "BeginBatch inside an open batch",
        ),
    ] {
        let mut raw = UnixStream::connect(agent.batch_socket()).await.unwrap();
        raw.write_all(&frames(&reqs)).await.unwrap();
        let (responses, _) = read_all(raw).await;
        let e = error_text(&responses).unwrap_or_else(|| panic!("{responses:?}"));
        assert!(e.contains(expect), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_answered_while_the_node_is_blocked() {
    // Every data frame takes 300 ms: a node stuck in slow work.
    let agent = Agent::builder()
        .env(kapacitor_pagertree::app::ENV_FAULT_PROCESS_DELAY_MS, "300")
        .start();
    let mut k = Kapacitor::connect_with(agent.stream_socket(), Duration::from_secs(60)).await;
    assert!(k.init("slow", "n", mode2()).await.success);
    for i in 0..20 {
        k.point(ok_point(i)).await;
    }
    // Six seconds of work queued ahead; the keepalive is answered anyway,
    // long before that work is done. (A keepalive answered in turn would
    // take 6 s; the bound is half that, generous for a busy machine. How
    // fast it is answered is for a benchmark.)
    let sent = Instant::now();
    k.keepalive().await;
    let answered = k
        .next_keepalive_response(Duration::from_secs(5))
        .await
        .expect("no keepalive response");
    let delay = answered - sent;
    assert!(
        delay < Duration::from_secs(3),
        "keepalive answered after {delay:?}, behind the queued work"
    );
    k.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_session_keeps_the_watchdog_fed() {
    // 5 ms per point and 1500 points: the agent's queue fills and it stops
    // reading for several seconds. Kapacitor's own keepalives (every 1 s with
    // a 2 s timeout) sit behind the unread points, so only the agent's
    // unsolicited keepalives can keep the task alive.
    let agent = Agent::builder()
        .env(kapacitor_pagertree::app::ENV_FAULT_PROCESS_DELAY_MS, "5")
        .start();
    let timeout = Duration::from_secs(2);
    let mut k = Kapacitor::connect_with(agent.stream_socket(), timeout).await;
    assert!(k.init("paused", "n", mode2()).await.success);
    let started = Instant::now();
    // Points that raise nothing (a level that is no level name): the node
    // emits nothing, so no data response feeds the watchdog either.
    for i in 0..1500 {
        k.point(ok_point(i).tag("level", "not-a-level")).await;
    }
    // Poll (generous deadline) for three unsolicited keepalive answers; the
    // emulator's own 2 s watchdog is the judge of their timing.
    let deadline = started + Duration::from_secs(60);
    while k.keepalive_responses() < 3 && k.aborted().is_none() {
        assert!(
            Instant::now() < deadline,
            "only {} keepalive responses in a paused session",
            k.keepalive_responses()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        k.aborted(),
        None,
        "Kapacitor's watchdog would have aborted the task"
    );
    let rest = k.close().await;
    assert_eq!(error_text(&rest), None);
}

/// The emulator's own watchdog must fire as Kapacitor's does, or the
/// keepalive tests above would prove nothing.
#[tokio::test]
async fn emulator_watchdog_aborts_a_silent_peer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let silent = tokio::spawn(async move {
        // Accepts, reads everything, never answers.
        let (mut s, _) = listener.accept().await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut sink).await;
    });
    let timeout = Duration::from_millis(400);
    let connected = Instant::now();
    let k = Kapacitor::connect_with(&path, timeout).await;
    // Poll for the abort (generous deadline); it must not come before the timeout.
    let deadline = connected + Duration::from_secs(30);
    let why = loop {
        if let Some(why) = k.aborted() {
            break why;
        }
        assert!(
            Instant::now() < deadline,
            "the watchdog did not abort a silent peer"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        connected.elapsed() >= timeout,
        "aborted after {:?}, before the {timeout:?} timeout",
        connected.elapsed()
    );
    assert!(why.contains("keepalive timedout"), "{why}");
    // The abort closed the write half: the silent peer saw EOF.
    tokio::time::timeout(Duration::from_secs(2), silent)
        .await
        .unwrap()
        .unwrap();
}
