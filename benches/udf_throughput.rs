//! UDF throughput over a real Unix socket (issue #8, *Performance*).
//!
//! 1,000,000 points in 1,000 groups, pre-encoded by the client, with one
//! keepalive in the middle of the flood. The same client, over the same kind
//! of socket, drives three servers in turn:
//!
//! - **ceiling**: a raw echo server (in this process) sends the same bytes
//!   back without decoding them — the cost of the socket and of the client
//!   alone, a bound no agent can reach;
//! - **decode-mirror**: a server in this process that does what Kapacitor's
//!   Go `mirror` example agent does per frame: decode the `Request` with
//!   prost, take its `Point` (or answer the keepalive) and encode it as a
//!   `Response` frame, the responses of one read written together. It is the
//!   floor of any agent that decodes the protocol, with no processing at all
//!   (it runs on this process's system allocator; the agent uses mimalloc);
//! - **mirror-equivalent**: the real agent (the binary, spawned) with Mode 2,
//!   every point non-OK and no `stateChangesOnly`, so every point becomes an
//!   event (discarded: `KAPACITOR_PAGERTREE_BENCH_DISCARD_EVENTS=1`) and is
//!   emitted back — the protocol work of the `mirror` agent plus the alert
//!   node's.
//!
//! Reports points/s for each, the agent's ratio to the ceiling (the issue's
//! target: >= 0.5) and to the decode-mirror, the agent's CPU time per point
//! over the flood, its RSS while the client floods faster
//! than it reads (bounded queues keep it flat), and how long the mid-flood
//! keepalive took to be answered.
//!
//! Run: `cargo bench --bench udf_throughput` (builds the agent in release).
//! `POINTS=300000 cargo bench --bench udf_throughput` for a shorter run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kapacitor_pagertree::proto::{
    InitRequest, KeepaliveRequest, KeepaliveResponse, Option as UdfOption, OptionValue, Point,
    Request, Response, ValueType, option_value, request, response,
};
use kapacitor_pagertree::udf::codec::{AgentCodec, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::Decoder;

const GROUPS: usize = 1_000;
/// The keepalive's time value, to tell its answer from unsolicited ones.
const MARK: i64 = 4242;

/// What one run measured.
struct Run {
    points: usize,
    elapsed: Duration,
    keepalive_delay: Option<Duration>,
}

/// The flood: `n` points, a keepalive after the first half. Returns the bytes
/// and the offset just past the keepalive frame.
fn flood(n: usize) -> (Vec<u8>, usize) {
    let mut buf = BytesMut::with_capacity(n * 120);
    let mut ka_end = 0;
    let t0 = 1_700_000_000_000_000_000i64;
    for i in 0..n {
        let g = i % GROUPS;
        let host = format!("host{g:04}");
        let mut p = Point {
            time: t0 + i as i64,
            name: "cpu".into(),
            database: "telegraf".into(),
            retention_policy: "autogen".into(),
            group: format!("host={host}"),
            dimensions: vec!["host".into()],
            ..Default::default()
        };
        p.tags.insert("host".into(), host.clone());
        p.tags.insert(
            "level".into(),
            if i % 2 == 0 {
                "CRITICAL".into()
            } else {
                "WARNING".into()
            },
        );
        p.fields_double
            .insert("usage_idle".into(), (i % 100) as f64);
        p.fields_string
            .insert("message".into(), format!("{host} is busy"));
        encode_frame(
            &Request {
                message: Some(request::Message::Point(p)),
            },
            &mut buf,
        );
        if i == n / 2 {
            let ka = Request {
                message: Some(request::Message::Keepalive(KeepaliveRequest { time: MARK })),
            };
            encode_frame(&ka, &mut buf);
            ka_end = buf.len();
        }
    }
    (buf.to_vec(), ka_end)
}

fn init_frame() -> Vec<u8> {
    let s = |name: &str, v: &str| UdfOption {
        name: name.into(),
        values: vec![OptionValue {
            r#type: ValueType::String as i32,
            value: Some(option_value::Value::StringValue(v.into())),
        }],
    };
    let init = InitRequest {
        options: vec![
            s("levelFrom", "level"),
            s("idFrom", "host"),
            s("messageFrom", "message"),
            UdfOption {
                name: "dryRun".into(),
                values: vec![],
            },
        ],
        task_id: "bench".into(),
        node_id: "pagertree2".into(),
    };
    let mut b = BytesMut::new();
    encode_frame(
        &Request {
            message: Some(request::Message::Init(init)),
        },
        &mut b,
    );
    b.to_vec()
}

/// Reads varint-prefixed frames without decoding them: counts data frames
/// (field 16..18 tags) and notes when the marked keepalive comes back.
struct FrameCounter {
    buf: Vec<u8>,
    data_frames: usize,
    other_frames: usize,
    keepalive_at: Option<Instant>,
}

impl FrameCounter {
    fn new() -> Self {
        Self {
            buf: Vec::with_capacity(1 << 20),
            data_frames: 0,
            other_frames: 0,
            keepalive_at: None,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            let Some((len, hdr)) = varint(rest) else {
                break;
            };
            if rest.len() < hdr + len {
                break;
            }
            let frame = &rest[hdr..hdr + len];
            match frame.first() {
                // Field 17 (Point) or 16/18 (batches): tag bytes 0x82/0x8a/0x92 0x01.
                Some(0x82 | 0x8a | 0x92) => self.data_frames += 1,
                // Field 3 (keepalive): ours carries MARK.
                Some(0x1a) => {
                    self.other_frames += 1;
                    if self.keepalive_at.is_none() && is_marked_keepalive(&frame[1..]) {
                        self.keepalive_at = Some(Instant::now());
                    }
                }
                _ => self.other_frames += 1,
            }
            pos += hdr + len;
        }
        self.buf.drain(..pos);
    }
}

fn varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, &x) in b.iter().take(10).enumerate() {
        v |= ((x & 0x7f) as usize) << (7 * i);
        if x & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The payload of a keepalive field: a length, then `time` (field 1, varint).
fn is_marked_keepalive(b: &[u8]) -> bool {
    let Some((len, hdr)) = varint(b) else {
        return false;
    };
    let inner = &b[hdr..(hdr + len).min(b.len())];
    inner.first() == Some(&0x08) && varint(&inner[1..]).is_some_and(|(v, _)| v as i64 == MARK)
}

/// Writes `prefix` then `flood` and counts what comes back until `expect`
/// data frames arrived.
async fn drive(
    stream: UnixStream,
    flood: Arc<Vec<u8>>,
    ka_end: usize,
    expect: usize,
    on_progress: impl Fn(usize),
) -> Run {
    let (mut r, mut w) = stream.into_split();
    let start = Instant::now();
    let ka_written = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let kw = ka_written.clone();
    let writer = tokio::spawn(async move {
        let mut off = 0;
        while off < flood.len() {
            let end = (off + 64 * 1024).min(flood.len());
            w.write_all(&flood[off..end]).await.expect("write");
            if off < ka_end && ka_end <= end {
                *kw.lock().unwrap() = Some(Instant::now());
            }
            off = end;
        }
        w
    });
    let mut counter = FrameCounter::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut last_report = 0;
    while counter.data_frames < expect {
        let n = tokio::time::timeout(Duration::from_secs(30), r.read(&mut buf))
            .await
            .expect("no response for 30 s")
            .expect("read");
        if n == 0 {
            break;
        }
        counter.feed(&buf[..n]);
        if counter.data_frames - last_report >= expect / 20 {
            last_report = counter.data_frames;
            on_progress(counter.data_frames);
        }
    }
    let elapsed = start.elapsed();
    let mut w = writer.await.expect("writer");
    let _ = w.shutdown().await;
    let keepalive_delay = match (*ka_written.lock().unwrap(), counter.keepalive_at) {
        (Some(sent), Some(answered)) => Some(answered.saturating_duration_since(sent)),
        _ => None,
    };
    Run {
        points: counter.data_frames,
        elapsed,
        keepalive_delay,
    }
}

async fn ceiling(dir: &Path, flood: Arc<Vec<u8>>, ka_end: usize, n: usize) -> Run {
    let path = dir.join("echo.sock");
    let listener = UnixListener::bind(&path).expect("bind echo");
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        let (mut r, mut w) = s.into_split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let stream = UnixStream::connect(&path).await.expect("connect echo");
    drive(stream, flood, ka_end, n, |_| {}).await
}

/// The decode-mirror server: decodes every `Request` frame, sends each
/// `Point` back as a `Response` and answers keepalives, like Kapacitor's Go
/// `mirror` example agent; what one read yields is written back at once.
async fn decode_mirror(dir: &Path, flood: Arc<Vec<u8>>, ka_end: usize, n: usize) -> Run {
    let path = dir.join("mirror.sock");
    let listener = UnixListener::bind(&path).expect("bind mirror");
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        let (mut r, mut w) = s.into_split();
        let mut codec = AgentCodec::new(1 << 20);
        let mut input = BytesMut::with_capacity(256 * 1024);
        let mut output = BytesMut::with_capacity(256 * 1024);
        loop {
            input.reserve(64 * 1024);
            match r.read_buf(&mut input).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            while let Some(req) = codec.decode(&mut input).expect("decode") {
                let msg = match req.message {
                    Some(request::Message::Point(p)) => response::Message::Point(p),
                    Some(request::Message::Keepalive(k)) => {
                        response::Message::Keepalive(KeepaliveResponse { time: k.time })
                    }
                    _ => continue,
                };
                encode_frame(&Response { message: Some(msg) }, &mut output);
            }
            if w.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
    });
    let stream = UnixStream::connect(&path).await.expect("connect mirror");
    drive(stream, flood, ka_end, n, |_| {}).await
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The process's CPU time so far (user + system), from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the 1st,
    // utime the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(f.iter().sum::<u64>() * 1_000_000 / tck)
}

/// What the agent spent on the flood: CPU time, user and system.
struct Cost {
    cpu: Duration,
}

fn start_agent(dir: &Path) -> (Child, std::path::PathBuf) {
    let data = dir.join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_kapacitor-pagertree"))
        .args([
            "serve",
            "--http-addr",
            "off",
            "--log-level",
            "warn",
            "--data-dir",
        ])
        .arg(&data)
        .env("KAPACITOR_PAGERTREE_BENCH_DISCARD_EVENTS", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning the agent");
    let sock = data.join("stream.sock");
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the agent did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, sock)
}

async fn mirror(
    dir: &Path,
    flood: Arc<Vec<u8>>,
    ka_end: usize,
    n: usize,
) -> (Run, Vec<(usize, u64)>, u64, Cost) {
    let (mut child, sock) = start_agent(dir);
    let pid = child.id();
    let idle_rss = rss_kib(pid);
    let mut stream = UnixStream::connect(&sock).await.expect("connect agent");
    stream.write_all(&init_frame()).await.expect("init");
    // The InitResponse: field 2, success.
    let mut b = [0u8; 64];
    let got = stream.read(&mut b).await.expect("init response");
    assert!(
        got >= 2 && b[1] == 0x12,
        "unexpected InitResponse bytes {:?}",
        &b[..got]
    );
    let cpu0 = cpu_time(pid);
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let progress = Arc::new(AtomicUsize::new(0));
    let s2 = samples.clone();
    let p2 = progress.clone();
    let run = drive(stream, flood, ka_end, n, move |done| {
        p2.store(done, Ordering::Relaxed);
        s2.lock().unwrap().push((done, rss_kib(pid)));
    })
    .await;
    let cost = Cost {
        cpu: cpu_time(pid).saturating_sub(cpu0),
    };
    let _ = child.kill();
    let _ = child.wait();
    let samples = samples.lock().unwrap().clone();
    (run, samples, idle_rss, cost)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then
    // only build, never run the flood.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (bytes, ka_end) = flood(n);
    println!(
        "udf_throughput: {n} points, {GROUPS} groups, {:.1} MB pre-encoded",
        bytes.len() as f64 / 1e6
    );
    let flood = Arc::new(bytes);
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let echo = rt.block_on(ceiling(dir.path(), flood.clone(), ka_end, n));
    let reference = rt.block_on(decode_mirror(dir.path(), flood.clone(), ka_end, n));
    let (agent, samples, idle_rss, cost) = rt.block_on(mirror(dir.path(), flood, ka_end, n));

    let rate = |r: &Run| r.points as f64 / r.elapsed.as_secs_f64();
    println!(
        "ceiling (raw echo):          {:>9.0} points/s  ({} points in {:.2?}; keepalive echoed after {:?})",
        rate(&echo),
        echo.points,
        echo.elapsed,
        echo.keepalive_delay
    );
    println!(
        "decode-mirror (prost):       {:>9.0} points/s  ({} points in {:.2?}; keepalive answered after {:?})",
        rate(&reference),
        reference.points,
        reference.elapsed,
        reference.keepalive_delay
    );
    println!(
        "mirror-equivalent (agent):   {:>9.0} points/s  ({} points in {:.2?}; keepalive answered after {:?})",
        rate(&agent),
        agent.points,
        agent.elapsed,
        agent.keepalive_delay
    );
    println!(
        "ratio agent/ceiling:         {:.2} (target >= 0.5)",
        rate(&agent) / rate(&echo)
    );
    println!(
        "ratio agent/decode-mirror:   {:.2} (decode-mirror/ceiling {:.2})",
        rate(&agent) / rate(&reference),
        rate(&reference) / rate(&echo)
    );
    println!(
        "agent cost:                  {:.2} µs CPU per point (user+system, {:.2?} in all)",
        cost.cpu.as_secs_f64() * 1e6 / agent.points as f64,
        cost.cpu
    );
    let rss: Vec<u64> = samples.iter().map(|s| s.1).collect();
    println!(
        "agent RSS: idle {} KiB; during the flood min {} / max {} KiB over {} samples: {:?}",
        idle_rss,
        rss.iter().min().unwrap_or(&0),
        rss.iter().max().unwrap_or(&0),
        rss.len(),
        rss
    );
}
