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
            fed: tokio::sync::Notify::new(),
        });
        let abort = CancellationToken::new();
        // Kapacitor's request channel is small; the writer drains it in order.
        let (req_tx, mut req_rx) = mpsc::channel::<Request>(100);
        let (resp_tx, resp_rx) = mpsc::unbounded_channel();
        let (ka_tx, ka_rx) = mpsc::unbounded_channel();

        // The single writer.
        let wabort = abort.clone();
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
                if res.is_err() {
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

/// A small stand-in for Kapacitor's HTTP API: `GET /kapacitor/v1/debug/vars`
/// answers the top-level `host`, `cluster_id` and `server_id` string vars
/// (and a few others, as Kapacitor's expvar answer has), checking the
/// credentials the agent sends. Runs on a thread of its own so it serves
/// whatever runtime (or none) the test uses; stops when dropped.
pub mod api {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

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

    #[derive(Debug, Default)]
    struct State {
        /// (path, Authorization header) of every request.
        requests: Vec<(String, Option<String>)>,
    }

    pub struct KapacitorApi {
        addr: SocketAddr,
        state: Arc<Mutex<State>>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl KapacitorApi {
        /// Serves these ServerInfo values on 127.0.0.1, any port.
        pub fn start(host: &str, cluster_id: &str, server_id: &str, auth: Auth) -> KapacitorApi {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let state = Arc::new(Mutex::new(State::default()));
            let stop = Arc::new(AtomicBool::new(false));
            let body = serde_json::json!({
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
            let thread = {
                let (state, stop) = (state.clone(), stop.clone());
                std::thread::spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        if let Ok(c) = conn {
                            serve_one(c, &body, &auth, &state);
                        }
                    }
                })
            };
            KapacitorApi {
                addr,
                state,
                stop,
                thread: Some(thread),
            }
        }

        /// The `[kapacitor] url` to give the agent.
        pub fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        /// (path, Authorization header) of every request so far.
        pub fn requests(&self) -> Vec<(String, Option<String>)> {
            self.state.lock().unwrap().requests.clone()
        }
    }

    impl Drop for KapacitorApi {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// A URL where nothing listens (a port just bound and released).
    pub fn down_url() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    fn serve_one(conn: TcpStream, body: &str, auth: &Auth, state: &Mutex<State>) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut authorization = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("authorization")
            {
                authorization = Some(v.trim().to_string());
            }
        }
        state
            .lock()
            .unwrap()
            .requests
            .push((path.clone(), authorization.clone()));
        let (status, text) = if path != "/kapacitor/v1/debug/vars" {
            ("404 Not Found", "{}".to_string())
        } else if !authorized(auth, authorization.as_deref()) {
            (
                "401 Unauthorized",
                r#"{"error":"authentication failed"}"#.to_string(),
            )
        } else {
            ("200 OK", body.to_string())
        };
        let mut w = conn;
        let _ = write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = w.flush();
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
                let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&claims) else {
                    return false;
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                claims["username"] == user.as_str()
                    && claims["exp"].as_u64().is_some_and(|exp| exp > now)
            }
        }
    }
}
