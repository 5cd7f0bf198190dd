//! Hardening, phase B (issue 13): nothing lost at shutdown, through the real
//! binary.
//!
//! Item 12: SIGHUP neither kills the agent nor removes its sockets.
//!
//! Item 1: events acknowledged while the outbox cannot store (a full disk)
//! are held in memory; at SIGTERM they go to the spill file, the agent says
//! how many and where at ERROR and exits non-zero, and the next start imports
//! and delivers them.
//!
//! The full disk is a real 2 MB tmpfs mounted on the data directory when this
//! process may mount (root with CAP_SYS_ADMIN); otherwise SQLite's own page
//! limit (`KAPACITOR_PAGERTREE_FAULT_OUTBOX_FULL=1`), which makes SQLite
//! return the same `SQLITE_FULL` on the same commit path. The test prints
//! which one it used (`TEST_NO_TMPFS=1` forces the page limit).

mod support;

#[path = "support/pagertree.rs"]
mod pagertree;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pagertree::{FakePagerTree, Fault, Fmt};
use support::Agent;
use support::kapacitor::{Kapacitor, level_and_id, opt, point};

/// A tmpfs mounted on a directory, unmounted (lazily) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        // Runs the fault-hook variant where mounting would work.
        if std::env::var_os("TEST_NO_TMPFS").is_some() {
            return None;
        }
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    /// Fills the file system to the last block.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// An agent whose data directory is (or acts as) a full disk, PagerTree
/// answering 500, and one session with a `levelFrom`/`idFrom` node.
struct FullDisk {
    fake: FakePagerTree,
    config: String,
    spill: PathBuf,
    agent: Agent,
    k: Kapacitor,
    tmpfs: Option<Tmpfs>,
}

impl FullDisk {
    async fn start(extra_delivery: &str) -> FullDisk {
        let fake = FakePagerTree::start().await;
        let url = fake.integration("int_full", Fmt::Kapacitor, None);
        fake.set_outage(Some(Fault::Status(500)));
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join("spill").join("spill.jsonl");
        let config = format!(
            "[delivery]\ndefault_endpoint = \"oncall\"\nretry_initial = \"100ms\"\nretry_max = \"500ms\"\n\
             shutdown_grace = \"1s\"\nspill_file = \"{}\"\n{extra_delivery}[endpoints.oncall]\nurl = \"{url}\"\n",
            spill.display()
        );
        let tmpfs = Tmpfs::mount(&dir.path().join("data"), "2m");
        eprintln!(
            "full disk: {}",
            if tmpfs.is_some() {
                "a 2 MB tmpfs"
            } else {
                "SQLite's page limit (no mount privilege)"
            }
        );
        let mut builder = Agent::builder().config(&config).dir(dir);
        if tmpfs.is_none() {
            builder = builder.env("KAPACITOR_PAGERTREE_FAULT_OUTBOX_FULL", "1");
        }
        let agent = builder.start();
        let mut k = Kapacitor::connect(agent.stream_socket()).await;
        k.init_ok("disk", "pagertree2", level_and_id()).await;
        FullDisk {
            fake,
            config,
            spill,
            agent,
            k,
            tmpfs,
        }
    }

    /// Fills the disk (tmpfs variant); the filler file, to free it later.
    fn fill(&self) -> Option<PathBuf> {
        self.tmpfs.as_ref().map(Tmpfs::fill)
    }

    /// Sends a CRITICAL point for each of `ids` (`disk00`, `disk01`, …).
    async fn send(&mut self, ids: std::ops::Range<usize>) {
        for i in ids {
            self.k
                .point(
                    point("cpu")
                        .time(1_700_000_000_000_000_000 + i as i64)
                        .tag("alertID", &format!("disk{i:02}"))
                        .tag("level", "CRITICAL")
                        .field("v", 99.0),
                )
                .await;
        }
    }

    /// SIGTERM: exit 1 and one ERROR line naming the spill file and how many
    /// it holds; returns its ids, in file order.
    fn terminate_expecting_spill(&mut self) -> Vec<String> {
        let status = self.agent.terminate();
        let log = self.agent.log();
        assert!(
            !status.success(),
            "exit 0 with events only in memory; log:\n{log}"
        );
        let line = log
            .lines()
            .find(|l| l.contains("ERROR") && l.contains("spill file"))
            .unwrap_or_else(|| panic!("no ERROR line naming the spill file; log:\n{log}"));
        assert!(line.contains(&self.spill.display().to_string()), "{line}");
        let spilled = std::fs::read_to_string(&self.spill).expect("the spill file");
        let ids: Vec<String> = spilled
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["alert_id"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(!ids.is_empty(), "nothing spilled; log:\n{log}");
        assert!(line.contains(&format!("events={}", ids.len())), "{line}");
        assert_eq!(self.fake.accepted_count(), 0);
        ids
    }

    /// Frees the disk, lets PagerTree answer, restarts: all `n` arrive and
    /// the spill file is imported and removed.
    async fn restart_delivers(self, filler: Option<PathBuf>, n: usize) {
        let FullDisk {
            fake,
            config,
            spill,
            agent,
            tmpfs,
            ..
        } = self;
        let dir = agent.kill_keep_dir();
        if let Some(f) = filler {
            std::fs::remove_file(f).unwrap();
        }
        fake.set_outage(None);
        let agent = Agent::builder().config(&config).dir(dir).start();
        assert!(
            fake.wait_accepted(n, Duration::from_secs(60)).await,
            "{} of {n} delivered after the restart; log:\n{}",
            fake.accepted_count(),
            agent.log()
        );
        let mut ids: Vec<String> = fake.per_id().into_keys().collect();
        ids.sort();
        assert_eq!(ids.len(), n, "{ids:?}");
        assert!(
            agent.wait_log(
                "spilled at the last shutdown imported",
                Duration::from_secs(10)
            ),
            "{}",
            agent.log()
        );
        assert!(!spill.exists(), "the imported spill file was kept");
        drop(agent);
        drop(tmpfs);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_held_in_memory_at_sigterm_are_spilled_then_delivered() {
    let mut disk = FullDisk::start("").await;
    let filler = disk.fill();
    disk.send(0..50).await;
    // Kapacitor's snapshot is answered: the 50 count as stored.
    let _ = disk.k.snapshot().await;
    assert!(
        disk.agent.wait_log("DEGRADED", Duration::from_secs(60)),
        "never degraded; log:\n{}",
        disk.agent.log()
    );
    disk.terminate_expecting_spill();
    disk.restart_delivers(filler, 50).await;
}

/// Item 2's last case: the outbox cannot store *and* the memory queue is
/// full, so the committer can neither commit nor hold its group and retries
/// it until shutdown (5 events held in memory, then a group of 45). At SIGTERM it gives up and hands its events back: they
/// go to the spill file after the memory-only ones, in order (before: they
/// were only counted, "never committed", and lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_committer_could_not_hold_are_spilled_in_order() {
    let mut disk = FullDisk::start("memory_queue = 10\n").await;
    let filler = disk.fill();
    // Five fit in memory (degraded mode); the group of 45 after them does not.
    disk.send(0..5).await;
    assert!(
        disk.agent.wait_log("DEGRADED", Duration::from_secs(60)),
        "never degraded; log:\n{}",
        disk.agent.log()
    );
    disk.send(5..50).await;
    assert!(
        disk.agent
            .wait_log("the memory queue is full", Duration::from_secs(60)),
        "the committer never hit the full memory queue; log:\n{}",
        disk.agent.log()
    );
    let started = std::time::Instant::now();
    let ids = disk.terminate_expecting_spill();
    eprintln!("stopped in {:?}", started.elapsed());
    let expected: Vec<String> = (0..50).map(|i| format!("disk{i:02}")).collect();
    assert_eq!(ids, expected, "log:\n{}", disk.agent.log());
    assert!(
        !disk.agent.log().contains("never committed"),
        "{}",
        disk.agent.log()
    );
    disk.restart_delivers(filler, 50).await;
}

/// Item 12: SIGHUP is logged and ignored; the agent keeps serving on the
/// same sockets and still stops cleanly at SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_ignored_and_logged() {
    let mut agent = Agent::start();
    agent.signal(libc::SIGHUP);
    assert!(
        agent.wait_log("SIGHUP ignored", Duration::from_secs(30)),
        "no SIGHUP line; log:\n{}",
        agent.log()
    );
    agent.signal(libc::SIGHUP);
    assert!(agent.stream_socket().exists() && agent.batch_socket().exists());
    let mut k = Kapacitor::connect(agent.stream_socket()).await;
    let info = k.info().await;
    assert!(!info.options.is_empty(), "{info:?}");
    drop(k);
    let status = agent.terminate();
    assert!(status.success(), "{status:?}; log:\n{}", agent.log());
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Item 3: the database file corrupted under the running agent. Commits
/// fail; `/readyz` must fail and `degraded` be 1, the log must say what to do,
/// the events must still be delivered from memory, and at SIGTERM what is
/// left goes to the spill file (item 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_database_shows_in_readiness_and_loses_nothing() {
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_corrupt", Fmt::Kapacitor, None);
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill.jsonl");
    let config = format!(
        "[delivery]\ndefault_endpoint = \"oncall\"\nretry_initial = \"100ms\"\nretry_max = \"500ms\"\n\
         shutdown_grace = \"1s\"\nspill_file = \"{}\"\n[endpoints.oncall]\nurl = \"{url}\"\n",
        spill.display()
    );
    let mut agent = Agent::builder()
        .config(&config)
        .dir(dir)
        .arg("--http-addr")
        .arg("127.0.0.1:0")
        .start();
    let base = agent.http_base();
    let mut k = Kapacitor::connect(agent.stream_socket()).await;
    k.init_ok("corrupt", "pagertree2", level_and_id()).await;
    // Every page of the file, its WAL and its WAL index overwritten, sizes kept.
    let db = agent.data_dir().join("outbox.db");
    for f in [
        db.clone(),
        agent.data_dir().join("outbox.db-wal"),
        agent.data_dir().join("outbox.db-shm"),
    ] {
        if let Ok(m) = std::fs::metadata(&f) {
            std::fs::write(&f, vec![0x5a; m.len() as usize]).unwrap();
        }
    }
    fake.set_outage(Some(Fault::Status(500)));
    for i in 0..20 {
        k.point(
            point("cpu")
                .time(1_700_000_000_000_000_000 + i)
                .tag("alertID", &format!("c{i:02}"))
                .tag("level", "CRITICAL")
                .field("v", 99.0),
        )
        .await;
    }
    let _ = k.snapshot().await;
    let start = std::time::Instant::now();
    loop {
        let (ready, _) = get(&format!("{base}/readyz")).await;
        let (_, metrics) = get(&format!("{base}/metrics")).await;
        let degraded = metrics
            .lines()
            .any(|l| l.trim() == "kapacitor_pagertree_degraded 1");
        if ready == 503 && degraded {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "readyz {ready}, degraded gauge not 1; log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = agent.log();
    assert!(
        log.contains("DEGRADED") && log.contains("move ") && log.contains("aside"),
        "the log does not say what to do; log:\n{log}"
    );
    let status = agent.terminate();
    let log = agent.log();
    assert!(!status.success(), "{status:?}; log:\n{log}");
    let spilled = std::fs::read_to_string(&spill).unwrap_or_default();
    assert_eq!(
        spilled.lines().count() + fake.accepted_count(),
        20,
        "log:\n{log}"
    );
}

/// Item 2: a client that stops reading cannot hold the shutdown. Its session
/// produced an event, then asked for far more answers than the socket holds
/// and never read them. SIGTERM ends the agent in bounded time (sessions get
/// 10 s, then their writers are cut and get 3 s more), and the event is in the
/// outbox: the next start delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_hold_the_shutdown() {
    use kapacitor_pagertree::proto::{InfoRequest, InitRequest, Request, request};
    let fake = FakePagerTree::start().await;
    let url = fake.integration("int_stuck", Fmt::Kapacitor, None);
    // The event waits in the outbox over the shutdown: PagerTree is down.
    fake.set_outage(Some(Fault::Status(500)));
    let config = format!(
        "[delivery]\ndefault_endpoint = \"oncall\"\nretry_initial = \"100ms\"\nretry_max = \"500ms\"\n\
         shutdown_grace = \"1s\"\n[endpoints.oncall]\nurl = \"{url}\"\n"
    );
    let mut agent = Agent::builder().config(&config).start();
    let stream = tokio::net::UnixStream::connect(agent.stream_socket())
        .await
        .unwrap();
    let (unread, w) = stream.into_split();
    // The emulator reads from a pipe nobody writes: the socket is never read.
    let (never, _keep) = tokio::io::duplex(64);
    let k = Kapacitor::over_io(never, w, Duration::from_secs(3600));
    let req = |m| Request { message: Some(m) };
    k.send(req(request::Message::Init(InitRequest {
        options: vec![
            opt("levelFrom").string("level").0,
            opt("idFrom").string("alertID").0,
        ],
        task_id: "stuck".into(),
        node_id: "pagertree2".into(),
    })))
    .await;
    k.point(
        point("cpu")
            .time(1_700_000_000_000_000_000)
            .tag("alertID", "stuck1")
            .tag("level", "CRITICAL")
            .field("v", 99.0),
    )
    .await;
    // Answers (InfoResponses) far beyond the socket buffers and queues.
    let flood = tokio::spawn(async move {
        for _ in 0..200_000 {
            k.send(req(request::Message::Info(InfoRequest {}))).await;
        }
        k
    });
    assert!(
        agent.wait_log("alert event", Duration::from_secs(60)),
        "no event; log:\n{}",
        agent.log()
    );
    // The session is stuck once the flood stops draining into the agent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(60));
    let log = agent.log();
    assert!(status.success(), "{status:?}; log:\n{log}");
    assert!(log.contains("cutting their writers"), "{log}");
    flood.abort();
    drop(unread);

    fake.set_outage(None);
    let dir = agent.kill_keep_dir();
    let agent = Agent::builder().config(&config).dir(dir).start();
    assert!(
        fake.wait_accepted(1, Duration::from_secs(60)).await,
        "the stuck session's event was not delivered after the restart; log:\n{}",
        agent.log()
    );
}
