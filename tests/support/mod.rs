//! Helpers every integration test shares: the Kapacitor emulator
//! ([`kapacitor`]) and [`Agent`], the real `kapacitor-pagertree` binary
//! started on its own temporary data directory.

#![allow(dead_code)]

pub mod kapacitor;
pub mod seccomp;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_kapacitor-pagertree");

/// How long an agent may take to start listening.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Configures an agent before starting it.
#[derive(Debug, Default)]
pub struct AgentBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    config: Option<String>,
    dir: Option<tempfile::TempDir>,
    bin: Option<PathBuf>,
    syscall_filter: Option<std::sync::Arc<seccomp::SeccompProgram>>,
    run_as: Option<(u32, u32)>,
    umask: Option<u32>,
}

impl AgentBuilder {
    /// Run the agent as this user and group (the test must be root), as
    /// systemd's User=/Group= do: supplementary groups dropped.
    pub fn run_as(mut self, uid: u32, gid: u32) -> Self {
        self.run_as = Some((uid, gid));
        self
    }

    /// Run the agent under this seccomp filter (installed between fork and
    /// exec, after `run_as` dropped privileges, as systemd does).
    pub fn syscall_filter(mut self, program: seccomp::SeccompProgram) -> Self {
        self.syscall_filter = Some(std::sync::Arc::new(program));
        self
    }

    /// An extra command-line argument (after `serve`).
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// A config file with this TOML text, passed as `--config`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.into());
        self
    }

    /// Run this binary instead of the test build (e.g. a release build for a
    /// benchmark).
    pub fn bin(mut self, path: &Path) -> Self {
        self.bin = Some(path.to_path_buf());
        self
    }

    /// Starts the agent with this umask (e.g. 0o000, the loosest).
    pub fn umask(mut self, mask: u32) -> Self {
        self.umask = Some(mask);
        self
    }

    /// Reuse a data directory (e.g. to start a second agent on the same sockets).
    pub fn dir(mut self, dir: tempfile::TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    fn command(&mut self) -> (Command, tempfile::TempDir, PathBuf) {
        let dir = self
            .dir
            .take()
            .unwrap_or_else(|| tempfile::tempdir().expect("temp dir"));
        let data = dir.path().join("data");
        let mut cmd = Command::new(self.bin.as_deref().unwrap_or(Path::new(BIN)));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .arg("--http-addr")
            .arg("off");
        // Text logs: tests search them for event lines (JSON is the default off a terminal).
        cmd.arg("--log-format").arg("text");
        if let Some(text) = &self.config {
            let path = dir.path().join("agent.toml");
            std::fs::write(&path, text).expect("writing the config file");
            cmd.arg("--config").arg(path);
        }
        cmd.args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // A test's own RUST_LOG must not change what the agent logs.
        cmd.env_remove("RUST_LOG");
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        if let Some(mask) = self.umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask(2) is async-signal-safe and touches no memory; before the
            // syscall filter, which is installed last.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(mask as libc::mode_t);
                    Ok(())
                });
            }
        }
        if let Some(program) = self.syscall_filter.clone() {
            use std::os::unix::process::CommandExt;
            // SAFETY: the hook only calls prctl(2) on a program built before the fork.
            unsafe {
                cmd.pre_exec(move || program.install());
            }
        }
        let log = dir
            .path()
            .join(format!("agent-{}.log", std::process::id() ^ rand_suffix()));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(File::create(&log).expect("log file")))
            .stderr(Stdio::from(
                File::options().append(true).open(&log).expect("log file"),
            ));
        (cmd, dir, log)
    }

    /// Starts the agent and waits until both sockets accept connections.
    pub fn start(mut self) -> Agent {
        let (mut cmd, dir, log) = self.command();
        let child = cmd.spawn().expect("spawning the agent");
        let data = dir.path().join("data");
        let mut agent = Agent {
            child: Some(child),
            stream: data.join("stream.sock"),
            batch: data.join("batch.sock"),
            dir: Some(dir),
            log,
        };
        agent.wait_listening();
        agent
    }

    /// Runs the agent expecting it to exit by itself (a start that must fail):
    /// returns its exit status and everything it wrote.
    pub fn run_to_exit(mut self) -> (ExitStatus, String, tempfile::TempDir) {
        let (mut cmd, dir, log) = self.command();
        let mut child = cmd.spawn().expect("spawning the agent");
        let status = wait_timeout(&mut child, START_DEADLINE).unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "the agent did not exit; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        (
            status,
            std::fs::read_to_string(&log).unwrap_or_default(),
            dir,
        )
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed) << 20
}

fn wait_timeout(child: &mut Child, d: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < d {
        if let Some(s) = child.try_wait().expect("waiting for the agent") {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A running agent; killed when dropped.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    stream: PathBuf,
    batch: PathBuf,
    dir: Option<tempfile::TempDir>,
    log: PathBuf,
}

impl Agent {
    /// `serve --data-dir <temp> --http-addr off`, nothing else.
    pub fn start() -> Agent {
        Agent::builder().start()
    }

    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    pub fn stream_socket(&self) -> &Path {
        &self.stream
    }

    pub fn batch_socket(&self) -> &Path {
        &self.batch
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.as_ref().expect("agent dir").path().join("data")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent process").id()
    }

    /// Everything the agent wrote (stdout and stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; false after `within`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `http://ADDR` of the agent's local HTTP API, from the address it
    /// recorded in `<data_dir>/http.addr` (started with `--http-addr 127.0.0.1:0`).
    pub fn http_base(&self) -> String {
        let addr = std::fs::read_to_string(self.data_dir().join("http.addr")).unwrap();
        format!("http://{}", addr.trim())
    }

    /// The agent's resident memory in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        self.proc_status_kib("VmRSS:")
    }

    /// The agent's peak resident memory so far in KiB (VmHWM, from /proc).
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status_kib("VmHWM:")
    }

    fn proc_status_kib(&self, key: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn wait_listening(&mut self) {
        let start = Instant::now();
        loop {
            let up = |p: &Path| std::os::unix::net::UnixStream::connect(p).is_ok();
            if up(&self.stream) && up(&self.batch) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the agent exited ({status}) before listening; log:\n{}",
                    self.log()
                );
            }
            if start.elapsed() > START_DEADLINE {
                panic!(
                    "the agent is not listening after {START_DEADLINE:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (e.g. `libc::SIGTERM`) to the agent.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(20))
    }

    /// Waits for the agent to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("agent process");
        let status = wait_timeout(child, within).unwrap_or_else(|| {
            panic!(
                "the agent did not exit within {within:?}; log:\n{}",
                self.log()
            )
        });
        self.child = None;
        status
    }

    /// Stops the agent (SIGKILL) and hands back its directory.
    pub fn kill_keep_dir(mut self) -> tempfile::TempDir {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.dir.take().expect("agent dir")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The agent's binary as a command, with none of the test process's own
/// `KAPACITOR_PAGERTREE_*` variables leaking into it.
pub fn bin() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("KAPACITOR_PAGERTREE_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs the binary to completion off the runtime's threads (a fake server
/// of the test may run on them).
pub async fn run(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || bin().args(args).output().unwrap())
        .await
        .unwrap()
}

/// A finished command's stdout then stderr, as text.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
