//! A real `kapacitord` (and, for batch queries and subscriptions, a real
//! `influxd`) for the `#[ignore]`d suite `tests/real_kapacitor.rs`.
//!
//! Nothing here fakes Kapacitor: the binaries come from the environment
//! (`KAPACITORD`, and `INFLUXD` or `/usr/bin/influxd`), as a user with
//! InfluxData's packages installed would run them. Each instance gets a free
//! loopback port and a temporary directory, and is killed when dropped.
//!
//! [`Rig`] bundles what a test needs: the PagerTree test server
//! ([`FakePagerTree`], on its own tokio runtime so tests can
//! stay synchronous), the real agent ([`Agent`]) and a kapacitord whose
//! `[udf.functions]` point at the agent's sockets.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::pagertree::{Accepted, FakePagerTree};
use crate::support::{Agent, BIN};

/// How long kapacitord or influxd may take to answer its ping.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The kapacitord under test: `$KAPACITORD`, or a loud failure.
pub fn kapacitord_path() -> PathBuf {
    match std::env::var_os("KAPACITORD") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "KAPACITORD={} is not a file: point it at an installed kapacitord",
                p.display()
            );
            p
        }
        _ => panic!(
            "KAPACITORD is not set: these tests run against a real Kapacitor. \
             Run them as `KAPACITORD=/usr/bin/kapacitord cargo test --test real_kapacitor -- --ignored`"
        ),
    }
}

/// The influxd for batch tests: `$INFLUXD`, else `/usr/bin/influxd`.
pub fn influxd_path() -> PathBuf {
    let p = std::env::var_os("INFLUXD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/influxd"));
    assert!(
        p.is_file(),
        "no influxd at {} (set INFLUXD): the batch tests query a real InfluxDB 1.x",
        p.display()
    );
    p
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

/// One HTTP/1.0 exchange (the server closes, so no chunked bodies):
/// `(status, body)`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Polls `f` until it is true; false after `within`.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// utime + stime of a process, in clock ticks (from /proc/PID/stat).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces: count after ')'.
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5), utime 14, stime 15.
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// One `[udf.functions.NAME]` table.
#[derive(Debug, Clone)]
pub enum Udf {
    Socket(PathBuf),
    /// `prog` and `args`.
    Prog(PathBuf, Vec<String>),
}

/// Configures a kapacitord before it starts.
#[derive(Debug, Clone)]
pub struct KapacitordConfig {
    pub udfs: Vec<(String, Udf)>,
    pub udf_timeout: String,
    pub snapshot_interval: String,
    /// `[[influxdb]]` at this URL (else disabled), with subscriptions or not.
    pub influxdb: Option<(String, bool)>,
    pub port: u16,
}

impl Default for KapacitordConfig {
    fn default() -> Self {
        KapacitordConfig {
            udfs: Vec::new(),
            udf_timeout: "10s".into(),
            snapshot_interval: "1m0s".into(),
            influxdb: None,
            port: free_port(),
        }
    }
}

impl KapacitordConfig {
    /// `pagertree` and `pagertreeBatch` on the agent's two sockets.
    pub fn agent_sockets(mut self, agent: &Agent) -> Self {
        self.udfs.push((
            "pagertree".into(),
            Udf::Socket(agent.stream_socket().to_path_buf()),
        ));
        self.udfs.push((
            "pagertreeBatch".into(),
            Udf::Socket(agent.batch_socket().to_path_buf()),
        ));
        self
    }

    pub fn udf(mut self, name: &str, udf: Udf) -> Self {
        self.udfs.push((name.into(), udf));
        self
    }

    fn render(&self, dir: &Path) -> String {
        let d = dir.display();
        let mut s = format!(
            r#"hostname = "localhost"
data_dir = "{d}/data"
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[replay]
  dir = "{d}/replay"
[storage]
  boltdb = "{d}/kapacitor.db"
[task]
  dir = "{d}/tasks"
  snapshot-interval = "{snap}"
[load]
  enabled = false
  dir = "{d}/load"
[reporting]
  enabled = false
[stats]
  enabled = false
[logging]
  file = "{d}/kapacitord.log"
  level = "INFO"
"#,
            port = self.port,
            snap = self.snapshot_interval,
        );
        match &self.influxdb {
            None => s.push_str(
                "[[influxdb]]\n  enabled = false\n  name = \"default\"\n  urls = [\"http://127.0.0.1:1\"]\n",
            ),
            Some((url, subscribe)) => s.push_str(&format!(
                "[[influxdb]]\n  enabled = true\n  default = true\n  name = \"default\"\n  urls = [\"{url}\"]\n  \
                 disable-subscriptions = {}\n  subscription-protocol = \"http\"\n  subscriptions-sync-interval = \"1s\"\n  \
                 startup-timeout = \"30s\"\n",
                !subscribe
            )),
        }
        s.push_str("[udf]\n[udf.functions]\n");
        for (name, udf) in &self.udfs {
            s.push_str(&format!("  [udf.functions.{name}]\n"));
            match udf {
                Udf::Socket(p) => s.push_str(&format!("    socket = \"{}\"\n", p.display())),
                Udf::Prog(p, args) => s.push_str(&format!(
                    "    prog = \"{}\"\n    args = {}\n",
                    p.display(),
                    serde_json::to_string(args).unwrap()
                )),
            }
            s.push_str(&format!("    timeout = \"{}\"\n", self.udf_timeout));
        }
        s
    }
}

/// A running kapacitord; killed when dropped.
pub struct Kapacitord {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub config: KapacitordConfig,
}

impl Kapacitord {
    pub fn start(config: KapacitordConfig) -> Kapacitord {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut k = Kapacitord {
            child: None,
            dir,
            config,
        };
        k.spawn();
        k
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("kapacitor.conf");
        std::fs::write(&conf, self.config.render(self.dir.path())).expect("writing kapacitor.conf");
        let out = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stdout.log"))
            .expect("log file");
        let child = Command::new(kapacitord_path())
            .arg("-config")
            .arg(&conf)
            .env_remove("KAPACITOR_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawning kapacitord");
        self.child = Some(child);
        let addr = self.addr();
        let up = wait_until(START_DEADLINE, || {
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "kapacitord exited ({status}) at start; log:\n{}",
                    self.log()
                );
            }
            matches!(http(addr, "GET", "/kapacitor/v1/ping", None), Ok((204, _)))
        });
        assert!(
            up,
            "kapacitord does not answer its ping; log:\n{}",
            self.log()
        );
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.config.port))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("kapacitord running").id()
    }

    /// kapacitord's log file and its stdout/stderr.
    pub fn log(&self) -> String {
        let r = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", r("stdout.log"), r("kapacitord.log"))
    }

    /// SIGTERM and wait (a clean stop: tasks are stopped, snapshots kept).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while c.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(30) {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Stops and starts again on the same directory and port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        let (status, text) = http(self.addr(), method, path, bytes.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path} to kapacitord: {e}"));
        let v = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    /// Defines and enables a task the documented way (`POST /kapacitor/v1/tasks`
    /// with the script; its `dbrp` statement names the database). `Err` holds
    /// Kapacitor's error text.
    pub fn define(&self, id: &str, script: &str, vars: Option<Value>) -> Result<Value, String> {
        let mut body = json!({"id": id, "script": script, "status": "enabled"});
        if script.trim_start().contains("batch") && !script.contains("\nstream") {
            body["type"] = json!("batch");
        } else {
            body["type"] = json!("stream");
        }
        if let Some(v) = vars {
            body["vars"] = v;
        }
        let (status, v) = self.request("POST", "/kapacitor/v1/tasks", Some(&body));
        if status == 200
            && v.get("error")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        {
            Ok(v)
        } else {
            Err(v
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("status {status}: {v}")))
        }
    }

    /// Like [`define`](Self::define), panicking with Kapacitor's error and log.
    pub fn define_ok(&self, id: &str, script: &str) -> Value {
        self.define(id, script, None).unwrap_or_else(|e| {
            panic!(
                "kapacitord refused task {id}: {e}\nscript:\n{script}\nlog tail:\n{}",
                tail(&self.log(), 40)
            )
        })
    }

    pub fn task(&self, id: &str) -> Value {
        self.request(
            "GET",
            &format!("/kapacitor/v1/tasks/{id}?dot-view=labels"),
            None,
        )
        .1
    }

    pub fn delete_task(&self, id: &str) {
        self.request("DELETE", &format!("/kapacitor/v1/tasks/{id}"), None);
    }

    pub fn set_status(&self, id: &str, status: &str) -> (u16, Value) {
        self.request(
            "PATCH",
            &format!("/kapacitor/v1/tasks/{id}"),
            Some(&json!({ "status": status })),
        )
    }

    /// Writes line protocol through `/kapacitor/v1/write`.
    pub fn write(&self, db: &str, rp: &str, precision: &str, lines: &str) {
        let path = format!("/kapacitor/v1/write?db={db}&rp={rp}&precision={precision}");
        let (status, body) = http(self.addr(), "POST", &path, Some(lines.as_bytes()))
            .unwrap_or_else(|e| panic!("write to kapacitord: {e}"));
        assert_eq!(status, 204, "kapacitord refused the write: {body}");
    }
}

impl Drop for Kapacitord {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- kapacitord log tail ---\n{}", tail(&self.log(), 60));
        }
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running influxd (1.x) on loopback; killed when dropped.
pub struct Influxd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Influxd {
    pub fn start() -> Influxd {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, rpc) = (free_port(), free_port());
        let d = dir.path().display();
        let conf = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[subscriber]
  enabled = true
[continuous_queries]
  enabled = false
"#
        );
        let path = dir.path().join("influxdb.conf");
        std::fs::write(&path, conf).unwrap();
        let out = File::create(dir.path().join("influxd.log")).unwrap();
        let child = Command::new(influxd_path())
            .arg("-config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawning influxd");
        let i = Influxd { child, dir, port };
        let addr = i.addr();
        assert!(
            wait_until(START_DEADLINE, || matches!(
                http(addr, "GET", "/ping", None),
                Ok((204, _))
            )),
            "influxd does not answer its ping; log:\n{}",
            i.log()
        );
        i
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("influxd.log")).unwrap_or_default()
    }

    /// An InfluxQL statement through `/query` (POST); panics on an error.
    pub fn query(&self, q: &str) -> Value {
        let path = format!("/query?q={}", urlencode(q));
        let (status, body) = http(self.addr(), "POST", &path, None).expect("influxd query");
        assert_eq!(status, 200, "influxd: {q}: {body}");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    pub fn write(&self, db: &str, rp: &str, precision: &str, lines: &str) {
        let path = format!("/write?db={db}&rp={rp}&precision={precision}");
        let (status, body) =
            http(self.addr(), "POST", &path, Some(lines.as_bytes())).expect("influxd write");
        assert_eq!(status, 204, "influxd refused the write: {body}");
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The PagerTree test server, the real agent and a real kapacitord wired to
/// each other. Dropped in field order: kapacitord first, then the agent.
pub struct Rig {
    pub kapacitord: Kapacitord,
    pub agent: Agent,
    pub pagertree: FakePagerTree,
    pub rt: tokio::runtime::Runtime,
}

/// Options of a [`Rig`].
#[derive(Default)]
pub struct RigOptions {
    /// Extra agent config (TOML appended after `[kapacitor] url`); the text
    /// `{pagertree}` stands for the test server's `http://host:port`.
    pub agent_toml: String,
    pub agent_env: Vec<(String, String)>,
    /// Serve the functions through `kapacitor-pagertree stdio` (`prog =`)
    /// instead of the sockets.
    pub stdio: bool,
    pub udf_timeout: Option<String>,
    pub snapshot_interval: Option<String>,
    pub influxdb: Option<(String, bool)>,
    pub extra_udfs: Vec<(String, Udf)>,
    /// The agent binary, when not the test build (`REALK_AGENT` in the bench).
    pub agent_bin: Option<PathBuf>,
}

impl Rig {
    pub fn start() -> Rig {
        Rig::start_with(RigOptions::default())
    }

    pub fn start_with(o: RigOptions) -> Rig {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let pagertree = rt.block_on(FakePagerTree::start());
        let mut kc = KapacitordConfig::default();
        let toml = format!(
            "[kapacitor]\nurl = \"http://127.0.0.1:{}\"\n{}",
            kc.port,
            o.agent_toml
                .replace("{pagertree}", &format!("http://{}", pagertree.addr()))
        );
        let mut b = Agent::builder().config(&toml);
        for (k, v) in &o.agent_env {
            b = b.env(k, v);
        }
        if let Some(bin) = &o.agent_bin {
            b = b.bin(bin);
        }
        let agent = b.start();
        if o.stdio {
            let cfg = agent.data_dir();
            let args = |batch: bool| {
                let mut a = vec![
                    "--data-dir".to_string(),
                    cfg.display().to_string(),
                    "stdio".to_string(),
                ];
                if batch {
                    a.push("--batch".into());
                }
                a
            };
            kc = kc
                .udf("pagertree", Udf::Prog(PathBuf::from(BIN), args(false)))
                .udf("pagertreeBatch", Udf::Prog(PathBuf::from(BIN), args(true)));
        } else {
            kc = kc.agent_sockets(&agent);
        }
        for (n, u) in o.extra_udfs {
            kc = kc.udf(&n, u);
        }
        if let Some(t) = o.udf_timeout {
            kc.udf_timeout = t;
        }
        if let Some(s) = o.snapshot_interval {
            kc.snapshot_interval = s;
        }
        kc.influxdb = o.influxdb;
        let kapacitord = Kapacitord::start(kc);
        Rig {
            kapacitord,
            agent,
            pagertree,
            rt,
        }
    }

    /// Everything PagerTree accepted on one integration, in arrival order.
    pub fn accepted_on(&self, integration: &str) -> Vec<Accepted> {
        self.pagertree
            .accepted()
            .into_iter()
            .filter(|a| a.integration == integration)
            .collect()
    }

    /// Waits until `n` requests were accepted on `integration`.
    pub fn wait_on(&self, integration: &str, n: usize, within: Duration) -> bool {
        wait_until(within, || self.accepted_on(integration).len() >= n)
    }

    /// Waits until the number of accepted requests has not changed for
    /// `quiet` (nothing more is on its way), at most `within`.
    pub fn wait_quiet(&self, quiet: Duration, within: Duration) {
        let start = Instant::now();
        let mut last = (self.pagertree.accepted_count(), Instant::now());
        while start.elapsed() < within {
            let n = self.pagertree.accepted_count();
            if n != last.0 {
                last = (n, Instant::now());
            } else if last.1.elapsed() >= quiet && self.pagertree.in_flight() == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails with both logs when a task is not executing or carries an error.
    pub fn assert_task_ok(&self, id: &str) {
        let t = self.kapacitord.task(id);
        let err = t.get("error").and_then(Value::as_str).unwrap_or("");
        assert!(
            err.is_empty() && t["executing"] == json!(true),
            "task {id} is not running: error {err:?}\nkapacitord:\n{}\nagent:\n{}",
            tail(&self.kapacitord.log(), 40),
            tail(&self.agent.log(), 40)
        );
    }
}
