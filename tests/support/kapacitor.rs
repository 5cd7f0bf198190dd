//! A Kapacitor emulator: the client side of one UDF connection, behaving as
//! Kapacitor's `udf/server.go` does (udf-protocol.md):
//!
//! - one writer task for every request, so keepalives wait behind the points
//!   written before them (an agent that stops reading sees no keepalives).
//!   Kapacitor's writer picks between its data and request channels at
//!   random; one FIFO here is the same once the socket is full, and
//!   deterministic before;
//! - a `KeepaliveRequest` every `timeout/2`;
//! - a watchdog that aborts the connection when **no response of any kind**
//!   arrived for `timeout` (a timer restarted by every response, as
//!   `watchKeepalive` does);
//! - the ending: half-close (shut the write half) and read until the agent's EOF.
//!
//! Tests read as a conversation: `init`, `point`, `snapshot`, `close`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use futures_util::StreamExt;
use kapacitor_pagertree::proto::{
    self, BeginBatch, EndBatch, InfoRequest, InfoResponse, InitRequest, InitResponse,
    KeepaliveRequest, OptionValue, Point, Request, Response, RestoreRequest, RestoreResponse,
    SnapshotRequest, ValueType, option_value, request, response,
};
use kapacitor_pagertree::udf::codec::{KapacitorCodec, encode_frame};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Kapacitor's example timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a test waits for an answer before failing.
pub const RECV_DEADLINE: Duration = Duration::from_secs(15);

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn req(m: request::Message) -> Request {
    Request { message: Some(m) }
}

#[derive(Debug)]
struct Shared {
    last_response: Mutex<Instant>,
    keepalive_responses: AtomicU64,
    /// Set when the watchdog aborted (Kapacitor: "keepalive timedout").
    aborted: Mutex<Option<String>>,
    /// Set when reading failed (reset) rather than reaching EOF.
    read_error: Mutex<Option<String>>,
    /// Set when a write failed (the agent is gone: broken pipe, reset).
    write_error: Mutex<Option<String>>,
    /// Cancelled when the connection is dead for Kapacitor: a write failed
    /// or the watchdog aborted. (The agent's EOF alone is not noticed:
    /// Kapacitor learns of a broken session only at its next write.)
    dead: CancellationToken,
    /// Fed by every response (Kapacitor's `s.keepalive` channel).
    fed: tokio::sync::Notify,
}

/// One emulated Kapacitor node connection.
pub struct Kapacitor {
    requests: Option<mpsc::Sender<Request>>,
    responses: mpsc::UnboundedReceiver<Response>,
    keepalive_times: mpsc::UnboundedReceiver<Instant>,
    shared: Arc<Shared>,
    abort: CancellationToken,
    /// Stops the keepalives at the half-close (they hold a sender of the writer).
    closing: CancellationToken,
    writer: Option<tokio::task::JoinHandle<()>>,
    timeout: Duration,
}

impl Kapacitor {
    /// Connects with Kapacitor's example timeout (10s).
    pub async fn connect(path: &Path) -> Kapacitor {
        Self::connect_with(path, DEFAULT_TIMEOUT).await
    }

    /// Connects with a given keepalive `timeout` (keepalives every timeout/2).
    pub async fn connect_with(path: &Path, timeout: Duration) -> Kapacitor {
        let stream = UnixStream::connect(path)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        Self::over(stream, timeout)
    }

    /// Runs the emulator over an already connected stream.
    pub fn over(stream: UnixStream, timeout: Duration) -> Kapacitor {
        let (r, w) = stream.into_split();
        Self::over_io(r, w, timeout)
    }

    /// Runs the emulator over any pair of byte streams, e.g. a `stdio`
    /// child's stdout and stdin (Kapacitor's `prog =` mode).
    pub fn over_io<R, W>(r: R, mut w: W, timeout: Duration) -> Kapacitor
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared {
            last_response: Mutex::new(Instant::now()),
            keepalive_responses: AtomicU64::new(0),
            aborted: Mutex::new(None),
            read_error: Mutex::new(None),
            write_error: Mutex::new(None),
            dead: CancellationToken::new(),
            fed: tokio::sync::Notify::new(),
        });
        let abort = CancellationToken::new();
        // Kapacitor's request channel is small; the writer drains it in order.
        let (req_tx, mut req_rx) = mpsc::channel::<Request>(100);
        let (resp_tx, resp_rx) = mpsc::unbounded_channel();
        let (ka_tx, ka_rx) = mpsc::unbounded_channel();

        // The single writer.
        let wabort = abort.clone();
        let wshared = shared.clone();
        let writer = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            loop {
                let r = tokio::select! {
                    biased;
                    _ = wabort.cancelled() => break,
                    r = req_rx.recv() => r,
                };
                let Some(r) = r else { break };
                encode_frame(&r, &mut buf);
                while let Ok(r) = req_rx.try_recv() {
                    encode_frame(&r, &mut buf);
                    if buf.len() > 64 * 1024 {
                        break;
                    }
                }
                let write = async { w.write_all_buf(&mut buf).await };
                let res = tokio::select! {
                    _ = wabort.cancelled() => break,
                    res = write => res,
                };
                if let Err(e) = res {
                    *wshared.write_error.lock().unwrap() = Some(e.to_string());
                    wshared.dead.cancel();
                    break;
                }
            }
            // Both endings close the write half (a pipe: by dropping it), then
            // wait for the agent's EOF.
            let _ = w.shutdown().await;
            drop(w);
        });

        // The reader: every response resets the watchdog.
        let rshared = shared.clone();
        tokio::spawn(async move {
            let mut frames = FramedRead::new(r, KapacitorCodec::new(64 << 20));
            while let Some(f) = frames.next().await {
                match f {
                    Ok(resp) => {
                        *rshared.last_response.lock().unwrap() = Instant::now();
                        rshared.fed.notify_one();
                        if let Some(response::Message::Keepalive(_)) = resp.message {
                            rshared.keepalive_responses.fetch_add(1, Ordering::SeqCst);
                            let _ = ka_tx.send(Instant::now());
                        } else if resp_tx.send(resp).is_err() {
                            // The test dropped the connection.
                        }
                    }
                    Err(e) => {
                        *rshared.read_error.lock().unwrap() = Some(e.to_string());
                        break;
                    }
                }
            }
        });

        // Keepalives every timeout/2, through the same writer as the data.
        let kreq = req_tx.clone();
        let kabort = abort.clone();
        let closing = CancellationToken::new();
        let kclosing = closing.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(timeout / 2);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = kabort.cancelled() => break,
                    _ = kclosing.cancelled() => break,
                    _ = tick.tick() => {
                        let k = req(request::Message::Keepalive(KeepaliveRequest { time: now_ns() }));
                        if kreq.send(k).await.is_err() { break; }
                    }
                }
            }
        });

        // The watchdog, as `watchKeepalive` does it: a timer of `timeout`
        // restarted by every response; when it fires, abort.
        let wshared = shared.clone();
        let wdabort = abort.clone();
        let wclosing = closing.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = wdabort.cancelled() => break,
                    // Kapacitor stops watching once it is stopping.
                    _ = wclosing.cancelled() => break,
                    fed = tokio::time::timeout(timeout, wshared.fed.notified()) => {
                        if fed.is_err() {
                            let since = wshared.last_response.lock().unwrap().elapsed();
                            *wshared.aborted.lock().unwrap() =
                                Some(format!("keepalive timedout, last response {since:?} ago"));
                            wdabort.cancel();
                            wshared.dead.cancel();
                            break;
                        }
                    }
                }
            }
        });

        Kapacitor {
            requests: Some(req_tx),
            responses: resp_rx,
            keepalive_times: ka_rx,
            shared,
            abort,
            closing,
            writer: Some(writer),
            timeout,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Queues a request behind everything written before it.
    pub async fn send(&self, r: Request) {
        let tx = self.requests.as_ref().expect("the connection was closed");
        tx.send(r).await.expect("the writer is gone");
    }

    /// Queues a request; false when the connection's writer is gone (the
    /// connection is dead or closed) instead of panicking.
    pub async fn try_send(&self, r: Request) -> bool {
        match &self.requests {
            Some(tx) => tx.send(r).await.is_ok(),
            None => false,
        }
    }

    pub async fn point(&self, p: impl Into<Point>) {
        self.send(req(request::Message::Point(p.into()))).await;
    }

    pub async fn begin_batch(&self, b: BeginBatch) {
        self.send(req(request::Message::Begin(b))).await;
    }

    pub async fn end_batch(&self, e: EndBatch) {
        self.send(req(request::Message::End(e))).await;
    }

    /// Sends a keepalive now (behind queued data, as Kapacitor does).
    pub async fn keepalive(&self) {
        self.send(req(request::Message::Keepalive(KeepaliveRequest {
            time: now_ns(),
        })))
        .await;
    }

    /// The next response that is not a keepalive; `None` at the agent's EOF.
    pub async fn recv(&mut self) -> Option<Response> {
        self.recv_within(RECV_DEADLINE)
            .await
            .unwrap_or_else(|| panic!("no response within {RECV_DEADLINE:?}"))
    }

    /// Like `recv`, but `None` (outer) when nothing arrives within `d`.
    pub async fn recv_within(&mut self, d: Duration) -> Option<Option<Response>> {
        tokio::time::timeout(d, self.responses.recv()).await.ok()
    }

    /// The next response's message, which must exist (never an empty Response).
    pub async fn recv_message(&mut self) -> response::Message {
        let r = self.recv().await.expect("the agent closed the connection");
        r.message
            .expect("the agent wrote a Response with no message")
    }

    /// Waits for the next keepalive response; returns when it arrived.
    pub async fn next_keepalive_response(&mut self, within: Duration) -> Option<Instant> {
        tokio::time::timeout(within, self.keepalive_times.recv())
            .await
            .ok()
            .flatten()
    }

    pub async fn info(&mut self) -> InfoResponse {
        self.send(req(request::Message::Info(InfoRequest {}))).await;
        match self.recv_message().await {
            response::Message::Info(i) => i,
            other => panic!("expected InfoResponse, got {other:?}"),
        }
    }

    pub async fn init(&mut self, task: &str, node: &str, options: Vec<Opt>) -> InitResponse {
        let options = options.into_iter().map(|o| o.0).collect();
        self.send(req(request::Message::Init(InitRequest {
            options,
            task_id: task.into(),
            node_id: node.into(),
        })))
        .await;
        match self.recv_message().await {
            response::Message::Init(i) => i,
            other => panic!("expected InitResponse, got {other:?}"),
        }
    }

    /// An Init that must succeed: the test fails with the agent's error.
    pub async fn init_ok(&mut self, task: &str, node: &str, options: Vec<Opt>) {
        let init = self.init(task, node, options).await;
        assert!(init.success, "{}", init.error);
    }

    pub async fn restore(&mut self, snapshot: Vec<u8>) -> RestoreResponse {
        self.send(req(request::Message::Restore(RestoreRequest { snapshot })))
            .await;
        match self.recv_message().await {
            response::Message::Restore(r) => r,
            other => panic!("expected RestoreResponse, got {other:?}"),
        }
    }

    /// Requests a snapshot; returns the data responses that came before it
    /// and the snapshot bytes.
    pub async fn snapshot(&mut self) -> (Vec<response::Message>, Vec<u8>) {
        self.send(req(request::Message::Snapshot(SnapshotRequest {})))
            .await;
        let mut before = Vec::new();
        loop {
            match self.recv_message().await {
                response::Message::Snapshot(s) => return (before, s.snapshot),
                other => before.push(other),
            }
        }
    }

    /// Keepalive responses received so far (asked or not).
    pub fn keepalive_responses(&self) -> u64 {
        self.shared.keepalive_responses.load(Ordering::SeqCst)
    }

    /// Why the watchdog aborted, if it did.
    pub fn aborted(&self) -> Option<String> {
        self.shared.aborted.lock().unwrap().clone()
    }

    /// The read error that ended the connection, if it did not end at EOF.
    pub fn read_error(&self) -> Option<String> {
        self.shared.read_error.lock().unwrap().clone()
    }

    /// The write error that ended the connection, if a write failed.
    pub fn write_error(&self) -> Option<String> {
        self.shared.write_error.lock().unwrap().clone()
    }

    /// Returns once the connection is dead for Kapacitor: a write to the
    /// agent failed, or the watchdog aborted (see `write_error`, `aborted`).
    pub async fn dead(&self) {
        self.shared.dead.cancelled().await
    }

    /// Cancelled when the connection is dead for Kapacitor (see `dead`).
    pub fn dead_token(&self) -> CancellationToken {
        self.shared.dead.clone()
    }

    /// The next response of any kind but keepalive, without a deadline:
    /// `None` at the agent's EOF.
    pub async fn next_response(&mut self) -> Option<Response> {
        self.responses.recv().await
    }

    /// The normal end: close the write half, then collect every remaining
    /// response until the agent's EOF (Kapacitor waits with no timeout; a test
    /// fails after `RECV_DEADLINE`).
    pub async fn close(mut self) -> Vec<Response> {
        self.requests = None;
        self.closing.cancel();
        let mut rest = Vec::new();
        let deadline = tokio::time::Instant::now() + RECV_DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.responses.recv()).await {
                Ok(Some(r)) => rest.push(r),
                Ok(None) => break,
                Err(_) => {
                    panic!("the agent did not close within {RECV_DEADLINE:?} after the half-close")
                }
            }
        }
        if let Some(w) = self.writer.take() {
            let _ = w.await;
        }
        self.abort.cancel();
        rest
    }

    /// Kapacitor's abort: queued requests are dropped, the write half closed.
    pub fn abort(&self) {
        self.abort.cancel();
    }
}

impl Drop for Kapacitor {
    fn drop(&mut self) {
        self.abort.cancel();
    }
}

/// One option call of a node, e.g. `opt("levelFrom").string("level")`.
#[derive(Debug, Clone)]
pub struct Opt(pub proto::Option);

/// A node that takes each point's level from its `level` tag and its alert
/// id from its `alertID` tag (mode 2): what most delivery tests run.
pub fn level_and_id() -> Vec<Opt> {
    vec![
        opt("levelFrom").string("level"),
        opt("idFrom").string("alertID"),
    ]
}

pub fn opt(name: &str) -> Opt {
    Opt(proto::Option {
        name: name.into(),
        values: vec![],
    })
}

impl Opt {
    fn value(mut self, t: ValueType, v: option_value::Value) -> Self {
        self.0.values.push(OptionValue {
            r#type: t as i32,
            value: Some(v),
        });
        self
    }
    pub fn string(self, s: &str) -> Self {
        self.value(
            ValueType::String,
            option_value::Value::StringValue(s.into()),
        )
    }
    pub fn int(self, i: i64) -> Self {
        self.value(ValueType::Int, option_value::Value::IntValue(i))
    }
    pub fn double(self, f: f64) -> Self {
        self.value(ValueType::Double, option_value::Value::DoubleValue(f))
    }
    pub fn bool(self, b: bool) -> Self {
        self.value(ValueType::Bool, option_value::Value::BoolValue(b))
    }
    pub fn duration(self, d: Duration) -> Self {
        self.value(
            ValueType::Duration,
            option_value::Value::DurationValue(d.as_nanos() as i64),
        )
    }
}

/// A point as Kapacitor sends it, e.g.
/// `point("cpu").tag("host", "a").field("usage", 91.0).string_field("level", "CRITICAL")`.
#[derive(Debug, Clone)]
pub struct PointBuilder(pub Point);

pub fn point(name: &str) -> PointBuilder {
    PointBuilder(Point {
        name: name.into(),
        database: "telegraf".into(),
        retention_policy: "autogen".into(),
        time: 1_700_000_000_000_000_000,
        ..Default::default()
    })
}

impl PointBuilder {
    pub fn time(mut self, ns: i64) -> Self {
        self.0.time = ns;
        self
    }
    pub fn tag(mut self, k: &str, v: &str) -> Self {
        self.0.tags.insert(k.into(), v.into());
        self
    }
    /// A group-by dimension: the tag and its group id, as Kapacitor fills them.
    pub fn dimension(mut self, k: &str, v: &str) -> Self {
        self.0.tags.insert(k.into(), v.into());
        self.0.dimensions.push(k.into());
        let mut dims: Vec<_> = self.0.dimensions.clone();
        dims.sort();
        self.0.group = dims
            .iter()
            .map(|d| format!("{d}={}", self.0.tags[d]))
            .collect::<Vec<_>>()
            .join(",");
        self
    }
    pub fn field(mut self, k: &str, v: f64) -> Self {
        self.0.fields_double.insert(k.into(), v);
        self
    }
    pub fn int_field(mut self, k: &str, v: i64) -> Self {
        self.0.fields_int.insert(k.into(), v);
        self
    }
    pub fn string_field(mut self, k: &str, v: &str) -> Self {
        self.0.fields_string.insert(k.into(), v.into());
        self
    }
    pub fn bool_field(mut self, k: &str, v: bool) -> Self {
        self.0.fields_bool.insert(k.into(), v);
        self
    }
}

impl From<PointBuilder> for Point {
    fn from(b: PointBuilder) -> Point {
        b.0
    }
}

/// Encodes requests as frames (for raw tests and pre-encoded floods).
pub fn frames(reqs: &[Request]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for r in reqs {
        encode_frame(r, &mut b);
    }
    b.to_vec()
}

pub fn point_request(p: impl Into<Point>) -> Request {
    req(request::Message::Point(p.into()))
}

pub fn init_request(task: &str, node: &str, options: Vec<Opt>) -> Request {
    req(request::Message::Init(InitRequest {
        options: options.into_iter().map(|o| o.0).collect(),
        task_id: task.into(),
        node_id: node.into(),
    }))
}

pub fn info_request() -> Request {
    req(request::Message::Info(InfoRequest {}))
}

/// Reads every response from a raw connection until EOF or an error, within
/// `RECV_DEADLINE`. Returns the responses and how it ended (`None`: EOF).
pub async fn read_all(stream: UnixStream) -> (Vec<Response>, Option<String>) {
    let mut frames = FramedRead::new(stream, KapacitorCodec::new(64 << 20));
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + RECV_DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, frames.next()).await {
            Err(_) => panic!("the agent did not close the connection within {RECV_DEADLINE:?}"),
            Ok(None) => return (out, None),
            Ok(Some(Ok(r))) => out.push(r),
            Ok(Some(Err(e))) => return (out, Some(e.to_string())),
        }
    }
}

/// The text of the ErrorResponse among `rs`, if any.
pub fn error_text(rs: &[Response]) -> Option<String> {
    rs.iter().find_map(|r| match &r.message {
        Some(response::Message::Error(e)) => Some(e.error.clone()),
        _ => None,
    })
}

/// Kapacitor's HTTP API, as far as the agent uses it, with the tasks behind
/// it — a fake that behaves as Kapacitor does (1.7/1.8: `services/httpd`,
/// `services/task_store/service.go`, `task.go`, `udf.go`, `udf/server.go`):
///
/// - `GET /kapacitor/v1/debug/vars`: the top-level `host`, `cluster_id` and
///   `server_id` string vars (and a few others, as Kapacitor's expvar answer
///   has); `GET /kapacitor/v1/ping`: 204.
/// - `GET /kapacitor/v1/tasks/ID`: the task as `client/v1` `Task` JSON (`id`,
///   `type`, `dbrps`, `script`, `status`, `executing`, `error`, …); an unknown
///   id is 404 with Kapacitor's error JSON (`{"error":"no task exists",
///   "message":…}`).
/// - `PATCH /kapacitor/v1/tasks/ID` `{"status":"disabled"|"enabled"}`: only a
///   change of status acts (a PATCH to `enabled` on an enabled task changes
///   nothing, even when it is not executing). Disabling aborts the task's UDF
///   sessions (half-close, then wait for the agent's EOF); enabling starts
///   the task again: a new session per UDF node — connect (socket, retried
///   with backoff for up to 5 minutes as `udf.go` does, or a `prog =` child
///   over its stdin/stdout), Init with the node's options, then Restore of
///   the snapshot the task last saved (stale: Kapacitor saves one only when
///   asked here, as its timer would).
/// - `DELETE /kapacitor/v1/tasks/ID`: stops and forgets the task (204).
/// - A running task writes what the test feeds it and a keepalive every
///   `timeout/2` through the `Kapacitor` emulator. A broken session is
///   noticed only when a write to the dead socket fails (or the watchdog
///   fires): until then the task shows `executing: true`; then `enabled`,
///   `executing: false` and Kapacitor's error text (`<node>: write error:
///   write unix @-><socket>: write: broken pipe`).
/// - Credentials are checked (basic, or an HS256 bearer token with claims
///   `username` and a future `exp`) and every call is recorded (method, path,
///   `Authorization`, body). The API can be taken down: connections refused
///   (the listener closed) or `503`, until brought back.
///
/// Runs on a runtime of its own, so it serves whatever runtime (or none)
/// the test uses; stops (and kills its `prog =` children) when dropped.
/// What a human does with the `kapacitor` CLI is done through methods
/// (`enable`, `disable`, `delete`), which are not recorded as calls.
pub mod api {
    use std::collections::{BTreeMap, HashMap};
    use std::net::SocketAddr;
    use std::os::fd::OwnedFd;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant, SystemTime};

    use kapacitor_pagertree::proto::{
        BeginBatch, EndBatch, Point, Request, RestoreRequest, SnapshotRequest, request, response,
    };
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{mpsc, oneshot, watch};
    use tokio_util::sync::CancellationToken;

    use super::{Kapacitor, Opt, init_request};

    /// What the fake requires of a request.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Auth {
        None,
        /// `Authorization: Basic base64(user:password)`.
        Basic {
            user: String,
            password: String,
        },
        /// `Authorization: Bearer <HS256 JWT>` signed with this secret, with
        /// claims `username` (this user) and a future `exp`.
        Bearer {
            user: String,
            secret: String,
        },
    }

    /// One HTTP request the fake received.
    #[derive(Debug, Clone)]
    pub struct Call {
        pub method: String,
        /// The request target (path and query).
        pub path: String,
        /// The `Authorization` header, as sent.
        pub auth: Option<String>,
        pub body: String,
        pub at: Instant,
    }

    impl Call {
        /// The task id of a `/kapacitor/v1/tasks/ID` call.
        pub fn task(&self) -> Option<&str> {
            task_id(&self.path)
        }
        /// The `status` a PATCH asked for.
        pub fn status(&self) -> Option<String> {
            serde_json::from_str::<Value>(&self.body)
                .ok()?
                .get("status")?
                .as_str()
                .map(str::to_string)
        }
    }

    /// How the API is down.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Down {
        /// Nothing listens: connections are refused.
        Refuse,
        /// Every request is answered `503 Service Unavailable`.
        Unavailable,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum TaskType {
        Stream,
        Batch,
    }

    impl TaskType {
        fn as_str(self) -> &'static str {
            match self {
                TaskType::Stream => "stream",
                TaskType::Batch => "batch",
            }
        }
    }

    /// How a task's UDF nodes reach the agent (kapacitor.conf
    /// `[udf.functions.NAME]`).
    #[derive(Debug, Clone)]
    pub enum Via {
        /// `socket = PATH`.
        Socket(PathBuf),
        /// `prog = PROG`, `args = ARGS`: one child per node, spoken to over
        /// its stdin and stdout.
        Process { prog: PathBuf, args: Vec<String> },
    }

    /// A task: its `@pagertree()` nodes and how they reach the agent.
    #[derive(Debug, Clone)]
    pub struct TaskDef {
        pub id: String,
        pub kind: TaskType,
        /// (node id, options) of each UDF node.
        pub nodes: Vec<(String, Vec<Opt>)>,
        pub via: Via,
        /// The UDF's `timeout` (keepalives every timeout/2).
        pub timeout: Duration,
    }

    impl TaskDef {
        pub fn new(id: &str, kind: TaskType, via: Via) -> TaskDef {
            TaskDef {
                id: id.into(),
                kind,
                nodes: vec![],
                via,
                timeout: super::DEFAULT_TIMEOUT,
            }
        }
        pub fn node(mut self, node: &str, options: Vec<Opt>) -> TaskDef {
            self.nodes.push((node.into(), options));
            self
        }
        pub fn timeout(mut self, t: Duration) -> TaskDef {
            self.timeout = t;
            self
        }
    }

    /// A task as `GET` shows it, and what only the fake knows.
    #[derive(Debug, Clone)]
    pub struct TaskView {
        pub enabled: bool,
        pub executing: bool,
        pub error: String,
        /// Runs started (each: a new session per node).
        pub starts: u32,
        /// Runs that began with a Restore of a saved snapshot.
        pub restores: u32,
        /// Runs whose every node is past Init (and Restore): data flows.
        pub running: bool,
    }

    enum Cmd {
        Point(Point),
        Batch(BeginBatch, Vec<Point>, EndBatch),
        Snapshot(oneshot::Sender<bool>),
        Stop(oneshot::Sender<()>),
    }

    struct TaskEntry {
        def: TaskDef,
        enabled: bool,
        executing: bool,
        running: bool,
        error: String,
        created: SystemTime,
        modified: SystemTime,
        last_enabled: Option<SystemTime>,
        /// The last snapshot saved, per node.
        snapshots: HashMap<String, Vec<u8>>,
        generation: u64,
        cmds: Option<mpsc::UnboundedSender<Cmd>>,
        starts: u32,
        restores: u32,
        /// The `prog =` children's stderr lines (bounded).
        stderr: Vec<String>,
    }

    #[derive(Default)]
    struct State {
        calls: Vec<Call>,
        tasks: BTreeMap<String, TaskEntry>,
        next_generation: u64,
    }

    struct Inner {
        state: Mutex<State>,
        auth: Auth,
        vars: String,
        rt: tokio::runtime::Handle,
        down: watch::Sender<Option<Down>>,
    }

    pub struct KapacitorApi {
        addr: SocketAddr,
        inner: Arc<Inner>,
        rt: Option<tokio::runtime::Runtime>,
    }

    impl KapacitorApi {
        /// Serves these ServerInfo values on 127.0.0.1, any port.
        pub fn start(host: &str, cluster_id: &str, server_id: &str, auth: Auth) -> KapacitorApi {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("fake-kapacitor")
                .enable_all()
                .build()
                .expect("the fake Kapacitor's runtime");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let vars = json!({
                "cluster_id": cluster_id,
                "server_id": server_id,
                "host": host,
                "product": "kapacitor",
                "version": "1.7.0",
                "num_tasks": 1,
                "num_enabled_tasks": 1,
                "kapacitor": {},
            })
            .to_string();
            let inner = Arc::new(Inner {
                state: Mutex::new(State::default()),
                auth,
                vars,
                rt: rt.handle().clone(),
                down: watch::channel(None).0,
            });
            rt.spawn(accept_loop(inner.clone(), listener, addr));
            KapacitorApi {
                addr,
                inner,
                rt: Some(rt),
            }
        }

        /// A Kapacitor with these credentials and default ServerInfo values.
        pub fn with_auth(auth: Auth) -> KapacitorApi {
            KapacitorApi::start("localhost", "", "", auth)
        }

        /// The `[kapacitor] url` to give the agent.
        pub fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        /// (path, Authorization header) of every request so far.
        pub fn requests(&self) -> Vec<(String, Option<String>)> {
            self.calls().into_iter().map(|c| (c.path, c.auth)).collect()
        }

        /// Every request so far.
        pub fn calls(&self) -> Vec<Call> {
            self.inner.state.lock().unwrap().calls.clone()
        }

        /// The calls about one task.
        pub fn task_calls(&self, id: &str) -> Vec<Call> {
            self.calls()
                .into_iter()
                .filter(|c| c.task() == Some(id))
                .collect()
        }

        /// The statuses PATCHed for a task, in order.
        pub fn patches(&self, id: &str) -> Vec<String> {
            self.task_calls(id)
                .into_iter()
                .filter(|c| c.method == "PATCH")
                .map(|c| c.status().unwrap_or_default())
                .collect()
        }

        /// Takes the API down (`Some`) or brings it back (`None`).
        pub fn set_down(&self, down: Option<Down>) {
            self.inner.down.send_replace(down);
        }

        /// Defines a task (`kapacitor define`), enabled or not.
        pub fn define(&self, def: TaskDef, enabled: bool) {
            let id = def.id.clone();
            {
                let now = SystemTime::now();
                let mut st = self.inner.state.lock().unwrap();
                assert!(!st.tasks.contains_key(&id), "task {id} exists");
                st.tasks.insert(
                    id.clone(),
                    TaskEntry {
                        def,
                        enabled: false,
                        executing: false,
                        running: false,
                        error: String::new(),
                        created: now,
                        modified: now,
                        last_enabled: None,
                        snapshots: HashMap::new(),
                        generation: 0,
                        cmds: None,
                        starts: 0,
                        restores: 0,
                        stderr: vec![],
                    },
                );
            }
            if enabled {
                set_status(&self.inner, &id, true);
            }
        }

        /// `kapacitor enable ID` (not recorded as a call).
        pub async fn enable(&self, id: &str) {
            let _ = set_status(&self.inner, id, true);
        }

        /// `kapacitor disable ID` (not recorded as a call): returns once
        /// the task's sessions ended.
        pub async fn disable(&self, id: &str) {
            if let Some(stop) = set_status(&self.inner, id, false) {
                let _ = tokio::time::timeout(Duration::from_secs(30), stop).await;
            }
        }

        /// `kapacitor delete ID` (not recorded as a call).
        pub async fn delete(&self, id: &str) {
            if let Some(stop) = delete_task(&self.inner, id) {
                let _ = tokio::time::timeout(Duration::from_secs(30), stop).await;
            }
        }

        pub fn task(&self, id: &str) -> Option<TaskView> {
            let st = self.inner.state.lock().unwrap();
            st.tasks.get(id).map(|e| TaskView {
                enabled: e.enabled,
                executing: e.executing,
                error: e.error.clone(),
                starts: e.starts,
                restores: e.restores,
                running: e.running,
            })
        }

        /// What `GET /kapacitor/v1/tasks/ID` answers now.
        pub fn task_json(&self, id: &str) -> Option<Value> {
            let st = self.inner.state.lock().unwrap();
            st.tasks.get(id).map(|e| task_json(id, e))
        }

        /// The stderr lines of the task's `prog =` children.
        pub fn stderr(&self, id: &str) -> Vec<String> {
            let st = self.inner.state.lock().unwrap();
            st.tasks
                .get(id)
                .map(|e| e.stderr.clone())
                .unwrap_or_default()
        }

        /// Polls until `check` holds for the task; panics (showing `what`
        /// and the task) after `within`.
        pub async fn wait_task(
            &self,
            id: &str,
            what: &str,
            within: Duration,
            check: impl Fn(&TaskView) -> bool,
        ) -> TaskView {
            let start = Instant::now();
            loop {
                let v = self.task(id);
                if let Some(v) = &v
                    && check(v)
                {
                    return v.clone();
                }
                assert!(
                    start.elapsed() < within,
                    "task {id}: timed out after {within:?} waiting for {what}: {v:?}\nstderr: {:?}",
                    self.stderr(id)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        /// Feeds a point to every UDF node of the running task; false when
        /// the task is not executing (the point goes nowhere, as in
        /// Kapacitor). A broken session takes it and fails at the write.
        pub fn point(&self, id: &str, p: impl Into<Point>) -> bool {
            self.command(id, Cmd::Point(p.into()))
        }

        /// Feeds one batch (begin, points, end) to every UDF node.
        pub fn batch(
            &self,
            id: &str,
            begin: BeginBatch,
            points: Vec<Point>,
            end: EndBatch,
        ) -> bool {
            self.command(id, Cmd::Batch(begin, points, end))
        }

        /// Asks every node for a snapshot and keeps the non-empty ones (the
        /// next start restores them). Written behind the data fed before,
        /// so a `true` answer is the agent's durability barrier for it.
        pub async fn snapshot(&self, id: &str) -> bool {
            let (tx, rx) = oneshot::channel();
            if !self.command(id, Cmd::Snapshot(tx)) {
                return false;
            }
            rx.await.unwrap_or(false)
        }

        fn command(&self, id: &str, cmd: Cmd) -> bool {
            let st = self.inner.state.lock().unwrap();
            match st.tasks.get(id).and_then(|e| e.cmds.as_ref()) {
                Some(tx) => tx.send(cmd).is_ok(),
                None => false,
            }
        }
    }

    impl Drop for KapacitorApi {
        fn drop(&mut self) {
            if let Some(rt) = self.rt.take() {
                rt.shutdown_background();
            }
        }
    }

    /// A URL where nothing listens (a port just bound and released).
    pub fn down_url() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    fn task_id(path: &str) -> Option<&str> {
        let path = path.split('?').next().unwrap_or("");
        path.strip_prefix("/kapacitor/v1/tasks/")
            .filter(|id| !id.is_empty() && !id.contains('/'))
    }

    fn rfc3339(t: SystemTime) -> String {
        humantime::format_rfc3339_nanos(t).to_string()
    }

    /// Kapacitor's `client/v1` `Task` JSON.
    fn task_json(id: &str, e: &TaskEntry) -> Value {
        let udf = e
            .def
            .nodes
            .iter()
            .map(|(n, _)| format!("    @pagertree() // {n}"))
            .collect::<Vec<_>>()
            .join("\n");
        let script = match e.def.kind {
            TaskType::Stream => {
                format!("stream\n    |from()\n        .measurement('cpu')\n{udf}\n")
            }
            TaskType::Batch => format!(
                "batch\n    |query('SELECT mean(usage) FROM cpu')\n        .every(1m)\n{udf}\n"
            ),
        };
        json!({
            "link": {"rel": "self", "href": format!("/kapacitor/v1/tasks/{id}")},
            "id": id,
            "template-id": "",
            "type": e.def.kind.as_str(),
            "dbrps": [{"db": "telegraf", "rp": "autogen"}],
            "script": script,
            "vars": {},
            "dot": format!("digraph {id} {{\n}}"),
            "status": if e.enabled { "enabled" } else { "disabled" },
            "executing": e.executing,
            "error": e.error,
            "stats": {},
            "created": rfc3339(e.created),
            "modified": rfc3339(e.modified),
            "last-enabled": e.last_enabled.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        })
    }

    /// Kapacitor's `httpd.HttpError` body.
    fn http_error(text: &str) -> String {
        json!({"error": text, "message": text}).to_string()
    }

    /// Changes a task's status as `handleUpdateTask` does: only a change
    /// acts. Returns, for a disable, what resolves once the sessions ended.
    /// `None` when the task does not exist.
    fn set_status(inner: &Arc<Inner>, id: &str, enable: bool) -> Option<oneshot::Receiver<()>> {
        let mut st = inner.state.lock().unwrap();
        st.next_generation += 1;
        let generation = st.next_generation;
        let e = st.tasks.get_mut(id)?;
        let (none_tx, none_rx) = oneshot::channel();
        let _ = none_tx.send(());
        if e.enabled == enable {
            return Some(none_rx);
        }
        let now = SystemTime::now();
        e.enabled = enable;
        e.modified = now;
        if enable {
            e.last_enabled = Some(now);
            // startTask: the last error goes, the task runs.
            e.error.clear();
            e.executing = true;
            e.running = false;
            e.generation = generation;
            e.starts += 1;
            let (tx, rx) = mpsc::unbounded_channel();
            e.cmds = Some(tx);
            let snapshots = e.snapshots.clone();
            if !snapshots.is_empty() {
                e.restores += 1;
            }
            let def = e.def.clone();
            inner
                .rt
                .spawn(run_task(inner.clone(), def, generation, snapshots, rx));
            Some(none_rx)
        } else {
            Some(stop(e))
        }
    }

    fn stop(e: &mut TaskEntry) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        match e.cmds.take() {
            Some(cmds) => {
                if let Err(mpsc::error::SendError(Cmd::Stop(tx))) = cmds.send(Cmd::Stop(tx)) {
                    let _ = tx.send(());
                }
            }
            None => {
                let _ = tx.send(());
            }
        }
        rx
    }

    fn delete_task(inner: &Arc<Inner>, id: &str) -> Option<oneshot::Receiver<()>> {
        let mut st = inner.state.lock().unwrap();
        let mut e = st.tasks.remove(id)?;
        Some(stop(&mut e))
    }

    /// One run of a task ended: not executing any more, with `error` when
    /// it failed (a stop keeps the last error, as Kapacitor does).
    fn finish(inner: &Inner, id: &str, generation: u64, error: Option<String>) {
        let mut st = inner.state.lock().unwrap();
        if let Some(e) = st.tasks.get_mut(id)
            && e.generation == generation
        {
            e.executing = false;
            e.running = false;
            e.cmds = None;
            if let Some(err) = error {
                e.error = err;
            }
        }
    }

    /// Kills a `prog =` child if it outlives its session.
    struct ChildGuard(Option<Child>);

    impl ChildGuard {
        /// Waits (bounded) for the child to exit after its stdin closed.
        async fn reap(mut self) {
            let start = Instant::now();
            if let Some(c) = self.0.as_mut() {
                while start.elapsed() < Duration::from_secs(10) {
                    if c.try_wait().ok().flatten().is_some() {
                        self.0 = None;
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    impl Drop for ChildGuard {
        fn drop(&mut self) {
            if let Some(mut c) = self.0.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    struct Conn {
        node: String,
        k: Kapacitor,
        child: Option<ChildGuard>,
    }

    impl Conn {
        /// Kapacitor's wording for why this session died.
        fn death(&self, via: &Via) -> String {
            if let Some(a) = self.k.aborted() {
                return format!("{}: {a}", self.node);
            }
            match via {
                Via::Socket(p) => format!(
                    "{}: write error: write unix @->{}: write: broken pipe",
                    self.node,
                    p.display()
                ),
                Via::Process { .. } => format!("{}: write error: write |1: broken pipe", self.node),
            }
        }
    }

    /// Connects as `udf.go` does: a socket dial retried with exponential
    /// backoff for up to 5 minutes, or a `prog =` child.
    async fn connect(
        inner: &Arc<Inner>,
        id: &str,
        via: &Via,
        timeout: Duration,
    ) -> Result<(Kapacitor, Option<ChildGuard>), String> {
        match via {
            Via::Socket(path) => {
                let start = Instant::now();
                let mut wait = Duration::from_millis(500);
                loop {
                    match tokio::net::UnixStream::connect(path).await {
                        Ok(s) => return Ok((Kapacitor::over(s, timeout), None)),
                        Err(e) if start.elapsed() > Duration::from_secs(300) => {
                            return Err(format!("dial unix {}: {e}", path.display()));
                        }
                        Err(_) => {
                            tokio::time::sleep(wait).await;
                            wait = (wait * 3 / 2).min(Duration::from_secs(60));
                        }
                    }
                }
            }
            Via::Process { prog, args } => {
                let mut child = Command::new(prog)
                    .args(args)
                    .env_remove("RUST_LOG")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("fork/exec {}: {e}", prog.display()))?;
                let stdin = tokio::net::unix::pipe::Sender::from_owned_fd(OwnedFd::from(
                    child.stdin.take().unwrap(),
                ))
                .map_err(|e| e.to_string())?;
                let stdout = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(
                    child.stdout.take().unwrap(),
                ))
                .map_err(|e| e.to_string())?;
                let stderr = child.stderr.take().unwrap();
                let (inner, id) = (inner.clone(), id.to_string());
                std::thread::spawn(move || {
                    use std::io::BufRead;
                    for line in std::io::BufReader::new(stderr)
                        .lines()
                        .map_while(Result::ok)
                    {
                        let mut st = inner.state.lock().unwrap();
                        if let Some(e) = st.tasks.get_mut(&id)
                            && e.stderr.len() < 500
                        {
                            e.stderr.push(line);
                        }
                    }
                });
                Ok((
                    Kapacitor::over_io(stdout, stdin, timeout),
                    Some(ChildGuard(Some(child))),
                ))
            }
        }
    }

    /// The first response that is not data; `None` at EOF or after `within`.
    async fn next_management(k: &mut Kapacitor, within: Duration) -> Option<response::Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let r = tokio::time::timeout_at(deadline, k.next_response())
                .await
                .ok()??;
            match r.message {
                Some(response::Message::Point(_))
                | Some(response::Message::Begin(_))
                | Some(response::Message::End(_)) => continue,
                Some(m) => return Some(m),
                None => return None,
            }
        }
    }

    fn req(m: request::Message) -> Request {
        Request { message: Some(m) }
    }

    /// One run of a task: a session per UDF node, until Kapacitor stops
    /// the task or a session breaks.
    async fn run_task(
        inner: Arc<Inner>,
        def: TaskDef,
        generation: u64,
        snapshots: HashMap<String, Vec<u8>>,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ) {
        let id = def.id.clone();
        let answer_within = def.timeout.max(Duration::from_secs(15));
        let mut conns: Vec<Conn> = Vec::new();
        // Open, Init, Restore — node by node, as each UDF node starts.
        for (node, options) in &def.nodes {
            let (mut k, child) = match connect(&inner, &id, &def.via, def.timeout).await {
                Ok(c) => c,
                Err(e) => {
                    return end_run(&inner, &id, generation, conns, Some(format!("{node}: {e}")))
                        .await;
                }
            };
            let failed = |why: String| Some(format!("{node}: {why}"));
            let init = init_request(&id, node, options.clone());
            let error = if !k.try_send(init).await {
                failed("write error: broken pipe".into())
            } else {
                match next_management(&mut k, answer_within).await {
                    Some(response::Message::Init(i)) if i.success => None,
                    Some(response::Message::Init(i)) => {
                        failed(format!("failed to initialize processes {}", i.error))
                    }
                    Some(response::Message::Error(e)) => failed(e.error),
                    other => failed(format!(
                        "failed to initialize processes: no InitResponse ({other:?})"
                    )),
                }
            };
            let error = match (error, snapshots.get(node)) {
                (None, Some(snap)) => {
                    let r = req(request::Message::Restore(RestoreRequest {
                        snapshot: snap.clone(),
                    }));
                    if !k.try_send(r).await {
                        failed("write error: broken pipe".into())
                    } else {
                        match next_management(&mut k, answer_within).await {
                            Some(response::Message::Restore(r)) if r.success => None,
                            Some(response::Message::Restore(r)) => {
                                failed(format!("error restoring snapshot: {}", r.error))
                            }
                            other => failed(format!(
                                "error restoring snapshot: no RestoreResponse ({other:?})"
                            )),
                        }
                    }
                }
                (e, _) => e,
            };
            conns.push(Conn {
                node: node.clone(),
                k,
                child,
            });
            if error.is_some() {
                return end_run(&inner, &id, generation, conns, error).await;
            }
        }
        {
            let mut st = inner.state.lock().unwrap();
            if let Some(e) = st.tasks.get_mut(&id)
                && e.generation == generation
            {
                e.running = true;
            }
        }
        let dead = CancellationToken::new();
        for c in &conns {
            let (t, dead) = (c.k.dead_token(), dead.clone());
            tokio::spawn(async move {
                t.cancelled().await;
                dead.cancel();
            });
        }
        loop {
            let cmd = tokio::select! {
                _ = dead.cancelled() => {
                    let why = conns
                        .iter()
                        .find(|c| c.k.dead_token().is_cancelled())
                        .map(|c| c.death(&def.via));
                    return end_run(&inner, &id, generation, conns, why).await;
                }
                cmd = cmds.recv() => cmd,
            };
            match cmd {
                Some(Cmd::Point(p)) => {
                    for c in &conns {
                        c.k.try_send(req(request::Message::Point(p.clone()))).await;
                    }
                }
                Some(Cmd::Batch(b, ps, e)) => {
                    for c in &conns {
                        c.k.try_send(req(request::Message::Begin(b.clone()))).await;
                        for p in &ps {
                            c.k.try_send(req(request::Message::Point(p.clone()))).await;
                        }
                        c.k.try_send(req(request::Message::End(e.clone()))).await;
                    }
                }
                Some(Cmd::Snapshot(reply)) => {
                    let mut all = true;
                    let mut saved = HashMap::new();
                    for c in conns.iter_mut() {
                        let asked =
                            c.k.try_send(req(request::Message::Snapshot(SnapshotRequest {})))
                                .await;
                        match asked {
                            true => match next_management(&mut c.k, answer_within).await {
                                Some(response::Message::Snapshot(s)) => {
                                    saved.insert(c.node.clone(), s.snapshot);
                                }
                                _ => all = false,
                            },
                            false => all = false,
                        }
                    }
                    // Kapacitor keeps a snapshot only when not all are empty.
                    if all && saved.values().any(|s| !s.is_empty()) {
                        let mut st = inner.state.lock().unwrap();
                        if let Some(e) = st.tasks.get_mut(&id) {
                            e.snapshots = saved;
                        }
                    }
                    let _ = reply.send(all);
                }
                Some(Cmd::Stop(reply)) => {
                    end_run(&inner, &id, generation, conns, None).await;
                    let _ = reply.send(());
                    return;
                }
                None => return end_run(&inner, &id, generation, conns, None).await,
            }
        }
    }

    /// Ends every session of a run as Kapacitor does (abort: half-close,
    /// then read until the agent's EOF, bounded here), then records it.
    async fn end_run(
        inner: &Inner,
        id: &str,
        generation: u64,
        conns: Vec<Conn>,
        error: Option<String>,
    ) {
        for c in &conns {
            c.k.abort();
        }
        for mut c in conns {
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while c.k.next_response().await.is_some() {}
            })
            .await;
            drop(c.k);
            if let Some(child) = c.child.take() {
                child.reap().await;
            }
        }
        finish(inner, id, generation, error);
    }

    async fn accept_loop(inner: Arc<Inner>, listener: std::net::TcpListener, addr: SocketAddr) {
        let mut listener = Some(TcpListener::from_std(listener).unwrap());
        let mut down = inner.down.subscribe();
        loop {
            let refuse = *down.borrow_and_update() == Some(Down::Refuse);
            if refuse {
                listener = None;
            } else if listener.is_none() {
                match TcpListener::bind(addr).await {
                    Ok(l) => listener = Some(l),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
            let Some(l) = listener.as_ref() else {
                let _ = down.changed().await;
                continue;
            };
            tokio::select! {
                _ = down.changed() => continue,
                conn = l.accept() => {
                    if let Ok((c, _)) = conn {
                        tokio::spawn(serve_conn(inner.clone(), c));
                    }
                }
            }
        }
    }

    async fn serve_conn(inner: Arc<Inner>, conn: TcpStream) {
        let (r, mut w) = conn.into_split();
        let mut r = BufReader::new(r);
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut auth = None;
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await.unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("authorization") {
                    auth = Some(v.trim().to_string());
                } else if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0).min(1 << 20);
                }
            }
        }
        let mut body = vec![0; length];
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        inner.state.lock().unwrap().calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            auth: auth.clone(),
            body: body.clone(),
            at: Instant::now(),
        });
        let (status, text) = answer(&inner, &method, &path, auth.as_deref(), &body).await;
        let reason = match status {
            200 => "OK",
            204 => "No Content",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            text.len()
        );
        let _ = w.write_all(head.as_bytes()).await;
        let _ = w.write_all(text.as_bytes()).await;
        let _ = w.shutdown().await;
    }

    async fn answer(
        inner: &Arc<Inner>,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        if *inner.down.borrow() == Some(Down::Unavailable) {
            return (503, http_error("Service Unavailable"));
        }
        let plain = path.split('?').next().unwrap_or("");
        let known = plain == "/kapacitor/v1/debug/vars"
            || plain == "/kapacitor/v1/ping"
            || task_id(path).is_some();
        if !known {
            return (404, http_error("not found"));
        }
        if !authorized(&inner.auth, auth) {
            return (401, http_error("authentication failed"));
        }
        if plain == "/kapacitor/v1/debug/vars" {
            return (200, inner.vars.clone());
        }
        if plain == "/kapacitor/v1/ping" {
            return (204, String::new());
        }
        let id = task_id(path).unwrap_or_default();
        let show = |inner: &Inner| {
            let st = inner.state.lock().unwrap();
            st.tasks.get(id).map(|e| task_json(id, e).to_string())
        };
        match method {
            "GET" => match show(inner) {
                Some(t) => (200, t),
                None => (404, http_error("no task exists")),
            },
            "PATCH" => {
                let Ok(Value::Object(update)) = serde_json::from_str::<Value>(body) else {
                    return (400, http_error("invalid JSON"));
                };
                if !inner.state.lock().unwrap().tasks.contains_key(id) {
                    return (404, http_error("task does not exist, cannot update"));
                }
                let enable = match update.get("status") {
                    None => None,
                    Some(Value::String(s)) if s == "enabled" => Some(true),
                    Some(Value::String(s)) if s == "disabled" => Some(false),
                    Some(_) => return (400, http_error("invalid JSON")),
                };
                if let Some(enable) = enable
                    && let Some(done) = set_status(inner, id, enable)
                {
                    let _ = tokio::time::timeout(Duration::from_secs(30), done).await;
                }
                match show(inner) {
                    Some(t) => (200, t),
                    None => (404, http_error("task does not exist, cannot update")),
                }
            }
            "DELETE" => {
                if let Some(done) = delete_task(inner, id) {
                    let _ = tokio::time::timeout(Duration::from_secs(30), done).await;
                }
                (204, String::new())
            }
            _ => (405, http_error("method not allowed")),
        }
    }

    fn authorized(auth: &Auth, header: Option<&str>) -> bool {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        match auth {
            Auth::None => true,
            Auth::Basic { user, password } => {
                header
                    == Some(&format!(
                        "Basic {}",
                        STANDARD.encode(format!("{user}:{password}"))
                    ))
            }
            Auth::Bearer { user, secret } => {
                use hmac::Mac;
                let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
                    return false;
                };
                let parts: Vec<&str> = token.split('.').collect();
                if parts.len() != 3 {
                    return false;
                }
                let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
                else {
                    return false;
                };
                mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
                let Ok(sig) = URL_SAFE_NO_PAD.decode(parts[2]) else {
                    return false;
                };
                if mac.verify_slice(&sig).is_err() {
                    return false;
                }
                let Ok(claims) = URL_SAFE_NO_PAD.decode(parts[1]) else {
                    return false;
                };
                let Ok(claims) = serde_json::from_slice::<Value>(&claims) else {
                    return false;
                };
                let now = SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                claims["username"] == user.as_str()
                    && claims["exp"].as_u64().is_some_and(|exp| exp > now)
            }
        }
    }
}
