//! A fake PagerTree: a real HTTP/1.1 server on `127.0.0.1:0` that applies the
//! rules of PagerTree's `kapacitor/v3` and `webhook/v3` adapters
//! (pager_tree-integrations) and records what it accepted, so tests can
//! assert that nothing was lost or reordered per alert id.
//!
//! - Integrations live at `/integration/<name>`, each with a format and an
//!   optional token (webhook: a wrong or missing `pagertree-token` → 403), or
//!   a forced status (402 inactive account, 405 disabled).
//! - Kapacitor format: `level == "OK"` resolves `id`, anything else creates;
//!   no dedup keys, so a repeated create opens a second alert.
//!   Webhook format: top-level keys case-insensitive, `event_type`
//!   create/resolve, `id`, `dedup_keys` fold a repeated create into the open
//!   alert.
//! - Anything a real adapter could not use (missing id, bad types, unknown
//!   urgency…) is a *violation*, answered 422 and listed for the test.
//! - Scripted faults, consumed one per request in order: a status (500…), 429
//!   with or without `Retry-After`, a delay before answering, a connection
//!   reset, a status whose body echoes the request path (secrets included),
//!   a huge body. An *outage* applies one fault to every request until lifted.
//!
//! Written by hand on tokio's TCP (not hyper) so a test can reset a
//! connection mid-request.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Which PagerTree adapter an integration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    Kapacitor,
    Webhook,
}

/// One scripted misbehaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status (e.g. 500, 503, 402, 403, 405) without processing.
    Status(u16),
    /// 429, with this `Retry-After` value if any.
    RateLimit(Option<String>),
    /// Wait this long, then process normally (the client may have given up).
    Delay(Duration),
    /// Wait a different time for each request, spread over `[0, max)`
    /// (deterministic per request), then process normally: requests sent
    /// together complete out of order, as on a real network, so only a
    /// client that keeps per-id order delivers each id in order.
    Jitter(Duration),
    /// Close the connection with a TCP reset instead of answering.
    Reset,
    /// Answer this status with a body that echoes the request line's path
    /// (query included), as a web framework's 404/405 page does.
    EchoPath(u16),
    /// Answer this status with a body of this many bytes (streamed; the
    /// bytes actually written are counted, see [`FakePagerTree::huge_written`]).
    HugeBody(u16, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Resolve,
    Other,
}

/// A request PagerTree accepted (answered 200).
#[derive(Debug, Clone)]
pub struct Accepted {
    pub integration: String,
    pub id: String,
    pub action: Action,
    /// Kapacitor: `level`; webhook: `meta.level` when present.
    pub level: Option<String>,
    pub urgency: Option<String>,
    /// The title (kapacitor `message`, webhook `title`): tests make it unique
    /// per event to follow each one.
    pub marker: String,
    pub body: Value,
    pub raw: Vec<u8>,
    pub token: Option<String>,
    /// When the request's headers arrived.
    pub at: Instant,
}

/// Every request, whatever the answer.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub status: Option<u16>,
    pub at: Instant,
    pub fault: Option<Fault>,
}

#[derive(Debug, Clone, Default)]
pub struct AlertRecord {
    pub open: bool,
    /// Creates that opened a new alert (more than one without a resolve in
    /// between = a duplicate page).
    pub opened: u32,
    pub folded: u32,
    pub resolved: u32,
    /// Resolves for an alert that was not open.
    pub orphan_resolves: u32,
}

#[derive(Debug, Clone)]
struct Integration {
    fmt: Fmt,
    token: Option<String>,
    forced: Option<u16>,
}

#[derive(Debug, Default)]
struct State {
    integrations: HashMap<String, Integration>,
    faults: VecDeque<Fault>,
    outage: Option<Fault>,
    accepted: Vec<Accepted>,
    seen: Vec<Seen>,
    alerts: HashMap<(String, String), AlertRecord>,
    violations: Vec<String>,
    /// Requests whose headers arrived (answered or not).
    arrivals: usize,
    /// Body bytes written for each `HugeBody` fault, in order.
    huge_written: Vec<usize>,
}

/// The running fake. Dropping it stops the server.
pub struct FakePagerTree {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakePagerTree {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePagerTree {
    /// Starts on an ephemeral loopback port (inside a tokio runtime).
    pub async fn start() -> FakePagerTree {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts on a given address (e.g. a port the agent already tries).
    pub async fn start_on(addr: &str) -> FakePagerTree {
        let listener = TcpListener::bind(addr).await.expect("bind fake PagerTree");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let changed = Arc::new(Notify::new());
        let (st, ch) = (state.clone(), changed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let _ = sock.set_nodelay(true);
                tokio::spawn(serve_conn(sock, st.clone(), ch.clone()));
            }
        });
        FakePagerTree {
            addr,
            state,
            changed,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an integration and returns its endpoint URL.
    pub fn integration(&self, name: &str, fmt: Fmt, token: Option<&str>) -> String {
        self.lock().integrations.insert(
            name.to_string(),
            Integration {
                fmt,
                token: token.map(str::to_string),
                forced: None,
            },
        );
        self.url(name)
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/integration/{name}", self.addr)
    }

    /// Makes an integration answer `status` (402, 405…) until cleared.
    pub fn force_status(&self, name: &str, status: Option<u16>) {
        if let Some(i) = self.lock().integrations.get_mut(name) {
            i.forced = status;
        }
    }

    pub fn set_token(&self, name: &str, token: Option<&str>) {
        if let Some(i) = self.lock().integrations.get_mut(name) {
            i.token = token.map(str::to_string);
        }
    }

    /// Queues faults for the next requests, one each.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }

    /// Every request gets `fault` until `None` is set.
    pub fn set_outage(&self, fault: Option<Fault>) {
        self.lock().outage = fault;
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.lock().accepted.clone()
    }

    pub fn accepted_count(&self) -> usize {
        self.lock().accepted.len()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Requests that arrived and have no answer yet (on the wire).
    pub fn in_flight(&self) -> usize {
        let st = self.lock();
        st.arrivals - st.seen.len()
    }

    /// Body bytes the client took of each `HugeBody` answer before it hung up.
    pub fn huge_written(&self) -> Vec<usize> {
        self.lock().huge_written.clone()
    }

    pub fn arrivals(&self) -> usize {
        self.lock().arrivals
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    pub fn alert(&self, integration: &str, id: &str) -> AlertRecord {
        self.lock()
            .alerts
            .get(&(integration.to_string(), id.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until at least `n` requests were accepted; false on timeout.
    pub async fn wait_accepted(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if self.accepted_count() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.accepted_count() >= n;
            }
        }
    }

    /// Waits until at least `n` requests arrived (any answer).
    pub async fn wait_seen(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if self.lock().seen.len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.lock().seen.len() >= n;
            }
        }
    }

    /// The accepted events' markers per id, in arrival order.
    pub fn per_id(&self) -> HashMap<String, Vec<String>> {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for a in self.lock().accepted.iter() {
            m.entry(a.id.clone()).or_default().push(a.marker.clone());
        }
        m
    }
}

struct Request {
    path: String,
    method: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    at: Instant,
}

/// Reads one request; `None` at a clean end of the connection.
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let mut headers = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let start = header_end + 4;
    while buf.len() < start + len {
        let mut chunk = [0u8; 8192];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[start..start + len].to_vec();
    buf.drain(..start + len);
    Some(Request {
        path,
        method,
        headers,
        body,
        at,
    })
}

async fn respond(
    sock: &mut TcpStream,
    status: u16,
    extra: &[(&str, String)],
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    sock.write_all(out.as_bytes()).await?;
    sock.flush().await
}

async fn serve_conn(mut sock: TcpStream, state: Arc<Mutex<State>>, changed: Arc<Notify>) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await {
        let fault = {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            st.arrivals += 1;
            st.outage.clone().or_else(|| st.faults.pop_front())
        };
        let record = |status: Option<u16>, fault: Option<Fault>| {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            st.seen.push(Seen {
                path: req.path.clone(),
                status,
                at: req.at,
                fault,
            });
            drop(st);
            changed.notify_waiters();
        };
        match &fault {
            Some(Fault::Reset) => {
                record(None, fault.clone());
                // SO_LINGER 0: closing sends a reset, not a FIN.
                let std = sock.into_std();
                if let Ok(std) = std {
                    let _ = socket2_linger_zero(&std);
                }
                return;
            }
            Some(Fault::Status(s)) => {
                record(Some(*s), fault.clone());
                if respond(&mut sock, *s, &[], "{\"error\":\"scripted fault\"}")
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Some(Fault::RateLimit(ra)) => {
                record(Some(429), fault.clone());
                let extra: Vec<(&str, String)> =
                    ra.iter().map(|v| ("retry-after", v.clone())).collect();
                if respond(&mut sock, 429, &extra, "{\"error\":\"rate limited\"}")
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Some(Fault::EchoPath(s)) => {
                record(Some(*s), fault.clone());
                let body = format!("{{\"error\":\"Cannot {} {}\"}}", req.method, req.path);
                if respond(&mut sock, *s, &[], &body).await.is_err() {
                    return;
                }
                continue;
            }
            Some(Fault::HugeBody(s, len)) => {
                record(Some(*s), fault.clone());
                let head = format!(
                    "HTTP/1.1 {s} Status\r\ncontent-type: text/plain\r\ncontent-length: {len}\r\n\r\n"
                );
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut written = 0;
                while written < *len {
                    let n = chunk.len().min(len - written);
                    if sock.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                    written += n;
                }
                state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .huge_written
                    .push(written);
                changed.notify_waiters();
                if written < *len {
                    return;
                }
                continue;
            }
            Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
            Some(Fault::Jitter(max)) => tokio::time::sleep(jitter(*max)).await,
            None => {}
        }
        let (status, answer) = {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            process(&mut st, &req)
        };
        record(Some(status), fault);
        if respond(&mut sock, status, &[], &answer).await.is_err() {
            return;
        }
    }
}

/// The n-th request's wait for `Fault::Jitter`: a fixed pseudo-random
/// sequence (SplitMix64 over a request counter), so runs are comparable.
fn jitter(max: Duration) -> Duration {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut z = N
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let nanos = max.as_nanos().max(1) as u64;
    Duration::from_nanos(z % nanos)
}

fn socket2_linger_zero(s: &std::net::TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized linger struct.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// PagerTree's rules for one request → (status, body).
fn process(st: &mut State, req: &Request) -> (u16, String) {
    // A request through a proxy carries the absolute URL.
    let path = match req.path.split_once("://") {
        Some((_, rest)) => rest.find('/').map(|i| &rest[i..]).unwrap_or("/"),
        None => req.path.as_str(),
    };
    let Some(name) = path.strip_prefix("/integration/") else {
        return (404, "{\"error\":\"not found\"}".into());
    };
    let name = name.split('?').next().unwrap_or_default().to_string();
    let Some(integ) = st.integrations.get(&name).cloned() else {
        return (404, "{\"error\":\"no such integration\"}".into());
    };
    if req.method != "POST" {
        return (404, "{\"error\":\"POST only\"}".into());
    }
    if let Some(s) = integ.forced {
        return (s, "{\"error\":\"forced\"}".into());
    }
    let token = req.headers.get("pagertree-token").cloned();
    if integ.fmt == Fmt::Webhook
        && let Some(t) = &integ.token
        && token.as_deref() != Some(t.as_str())
    {
        return (403, "{\"error\":\"blocked\"}".into());
    }
    if !req
        .headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        st.violations
            .push(format!("{name}: content-type is not application/json"));
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            st.violations.push(format!("{name}: body is not JSON: {e}"));
            return (422, "{\"error\":\"bad json\"}".into());
        }
    };
    let checked = match integ.fmt {
        Fmt::Kapacitor => check_kapacitor(&body),
        Fmt::Webhook => check_webhook(&body),
    };
    let (id, action, level, urgency, dedup) = match checked {
        Ok(x) => x,
        Err(v) => {
            st.violations.push(format!("{name}: {v}: {body}"));
            return (422, format!("{{\"error\":{}}}", Value::String(v)));
        }
    };
    let rec = st.alerts.entry((name.clone(), id.clone())).or_default();
    match action {
        Action::Create => {
            if rec.open && dedup.contains(&id) {
                rec.folded += 1;
            } else {
                rec.open = true;
                rec.opened += 1;
            }
        }
        Action::Resolve => {
            if rec.open {
                rec.open = false;
                rec.resolved += 1;
            } else {
                rec.orphan_resolves += 1;
            }
        }
        Action::Other => {}
    }
    let marker = ["message", "title"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_str))
        .unwrap_or_default()
        .to_string();
    st.accepted.push(Accepted {
        marker,
        integration: name,
        id,
        action,
        level,
        urgency,
        body,
        raw: req.body.clone(),
        token,
        at: req.at,
    });
    (200, "{\"status\":\"accepted\"}".into())
}

type Checked = (String, Action, Option<String>, Option<String>, Vec<String>);

/// The JSON keys of Kapacitor's `alert.Data`, in its field order.
const KAPACITOR_KEYS: [&str; 9] = [
    "id",
    "message",
    "details",
    "time",
    "duration",
    "level",
    "data",
    "previousLevel",
    "recoverable",
];

/// kapacitor/v3: reads id, level, message, details; and the whole alert.Data
/// shape must be what Kapacitor sends.
fn check_kapacitor(b: &Value) -> Result<Checked, String> {
    let o = b.as_object().ok_or("body is not an object")?;
    let id = o
        .get("id")
        .and_then(Value::as_str)
        .ok_or("id missing or not a string")?;
    if id.is_empty() {
        return Err("empty id".into());
    }
    let level = o
        .get("level")
        .and_then(Value::as_str)
        .ok_or("level missing")?;
    if !["OK", "INFO", "WARNING", "CRITICAL"].contains(&level) {
        return Err(format!("level {level:?} is not a Kapacitor level"));
    }
    for k in ["message", "details"] {
        o.get(k)
            .and_then(Value::as_str)
            .ok_or(format!("{k} missing or not a string"))?;
    }
    let time = o
        .get("time")
        .and_then(Value::as_str)
        .ok_or("time missing")?;
    if !(time.len() >= 20 && time.ends_with('Z') && time.as_bytes().get(10) == Some(&b'T')) {
        return Err(format!("time {time:?} is not RFC 3339 UTC"));
    }
    o.get("duration")
        .and_then(Value::as_i64)
        .ok_or("duration missing or not an integer")?;
    o.get("previousLevel")
        .and_then(Value::as_str)
        .ok_or("previousLevel missing")?;
    o.get("recoverable")
        .and_then(Value::as_bool)
        .ok_or("recoverable missing")?;
    o.get("data")
        .and_then(|d| d.get("series"))
        .and_then(Value::as_array)
        .ok_or("data.series missing")?;
    // Exactly the keys of Kapacitor's alert.Data (alert/types.go), no more.
    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = KAPACITOR_KEYS.to_vec();
    want.sort_unstable();
    if keys != want {
        return Err(format!(
            "keys {keys:?} are not alert.Data's {KAPACITOR_KEYS:?}"
        ));
    }
    // Kapacitor's level strings (alert.Level.String): OK INFO WARNING CRITICAL.
    let urgency = match level {
        "INFO" => Some("low"),
        "WARNING" => Some("medium"),
        "CRITICAL" => Some("critical"),
        _ => None,
    };
    let action = if level == "OK" {
        Action::Resolve
    } else {
        Action::Create
    };
    Ok((
        id.to_string(),
        action,
        Some(level.to_string()),
        urgency.map(str::to_string),
        Vec::new(),
    ))
}

/// webhook/v3: case-insensitive top-level keys; id required (else the
/// alert can never be resolved); urgency, tags, meta, dedup_keys typed.
fn check_webhook(b: &Value) -> Result<Checked, String> {
    let o = b.as_object().ok_or("body is not an object")?;
    let get = |k: &str| {
        o.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    };
    let id = get("id")
        .and_then(Value::as_str)
        .ok_or("id missing: PagerTree would invent one")?;
    if id.is_empty() {
        return Err("empty id".into());
    }
    let action = match get("event_type")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("create") => Action::Create,
        Some("resolve") => Action::Resolve,
        Some(other) => {
            return Err(format!(
                "event_type {other:?} is neither create nor resolve"
            ));
        }
        None => return Err("event_type missing".into()),
    };
    for k in ["title", "description"] {
        if let Some(v) = get(k) {
            v.as_str().ok_or(format!("{k} is not a string"))?;
        }
    }
    if action == Action::Create {
        get("title")
            .and_then(Value::as_str)
            .ok_or("create without a title")?;
    }
    let urgency = match get("urgency") {
        None => None,
        Some(u) => {
            let u = u
                .as_str()
                .ok_or("urgency is not a string")?
                .to_ascii_lowercase();
            let known = ["low", "medium", "high", "critical"]
                .into_iter()
                .find(|k| u.contains(k));
            Some(
                known
                    .ok_or(format!("urgency {u:?} is not low/medium/high/critical"))?
                    .to_string(),
            )
        }
    };
    if let Some(t) = get("tags") {
        let arr = t.as_array().ok_or("tags is not an array")?;
        if arr.iter().any(|x| !x.is_string()) {
            return Err("tags holds a non-string".into());
        }
    }
    let mut level = None;
    if let Some(m) = get("meta") {
        let m = m.as_object().ok_or("meta is not an object")?;
        level = m.get("level").and_then(Value::as_str).map(str::to_string);
    }
    let dedup: Vec<String> = match get("dedup_keys") {
        None => Vec::new(),
        Some(d) => d
            .as_array()
            .ok_or("dedup_keys is not an array")?
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or("dedup key not a string")
            })
            .collect::<Result<_, _>>()?,
    };
    Ok((id.to_string(), action, level, urgency, dedup))
}

/// The markers of `accepted`'s events for alert `id`, in arrival order.
pub fn markers_of(accepted: &[Accepted], id: &str) -> Vec<String> {
    accepted
        .iter()
        .filter(|a| a.id == id)
        .map(|a| a.marker.clone())
        .collect()
}

/// Keeps the first occurrence of each value: with at-least-once delivery
/// and timeouts, a late original may arrive after its retry.
pub fn first_occurrences<T: PartialEq + Clone>(v: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

/// Collapses consecutive repeats: what at-least-once delivery may add.
/// Per-id order across a kill and restart, at least once: the markers
/// PagerTree accepted for one id before the restart (`before`, in-flight
/// requests of the killed process included) are, repeats collapsed, a
/// prefix of `want`; those accepted after it are, repeats collapsed, one
/// contiguous run of `want` that starts no later than where `before`
/// stopped (a re-send of what was not yet recorded as delivered, nothing
/// skipped). Any two events of one id that travelled out of order fail.
pub fn assert_order_across_restart(id: &str, before: &[String], after: &[String], want: &[String]) {
    let pre = collapse(before);
    assert!(
        pre.len() <= want.len() && pre[..] == want[..pre.len()],
        "{id}: before the restart {before:?} is not in order"
    );
    let post = collapse(after);
    if post.is_empty() {
        return;
    }
    let start = want
        .iter()
        .position(|m| *m == post[0])
        .unwrap_or_else(|| panic!("{id}: {} was never submitted", post[0]));
    assert!(
        start <= pre.len(),
        "{id}: after the restart it resumed at {} and skipped {:?}",
        post[0],
        &want[pre.len()..start]
    );
    assert!(
        start + post.len() <= want.len() && post[..] == want[start..start + post.len()],
        "{id}: after the restart {after:?} is not in order"
    );
}

pub fn collapse<T: PartialEq + Clone>(v: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v {
        if out.last() != Some(x) {
            out.push(x.clone());
        }
    }
    out
}
