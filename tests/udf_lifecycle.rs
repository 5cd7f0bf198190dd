//! Starting and stopping the agent, through the real binary: the default
//! start with no flags, stale and live socket files, configuration errors,
//! and SIGTERM.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::kapacitor::{Kapacitor, error_text, opt};
use support::{Agent, BIN};

/// The default start: no flags, no config file. Only the HTTP listener is
/// moved off its default 127.0.0.1:9096 (by the environment, port 0), so
/// the test does not depend on that port being free: the README tells
/// people to run the agent, and one may well be running on this machine.
/// What a taken default port does is the next test.
#[test]
fn starts_usefully_with_no_flags_and_no_config_file() {
    let cwd = tempfile::tempdir().unwrap();
    let log = cwd.path().join("out.log");
    let mut child = Command::new(BIN)
        .current_dir(cwd.path())
        .env_remove("KAPACITOR_PAGERTREE_CONFIG")
        .env_remove("KAPACITOR_PAGERTREE_SERVER_DATA_DIR")
        .env("KAPACITOR_PAGERTREE_SERVER_HTTP_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&log).unwrap(),
        ))
        .spawn()
        .unwrap();
    let data = cwd.path().join("kapacitor-pagertree-data");
    let stream = data.join("stream.sock");
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&stream).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not listening; log:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited; log:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(data.join("batch.sock").exists());
    let log_text = std::fs::read_to_string(&log).unwrap();
    // Off a terminal the logs are JSON, and the kapacitor.conf lines are the
    // `kapacitor_conf` field of a log event (every line stays JSON).
    let out = log_text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["kapacitor_conf"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no kapacitor_conf event; log:\n{log_text}"));
    // Where, and the exact kapacitor.conf lines, with absolute paths.
    let abs_stream = std::fs::canonicalize(cwd.path())
        .unwrap()
        .join("kapacitor-pagertree-data/stream.sock");
    assert!(out.contains("[udf.functions.pagertree]"), "{out}");
    assert!(out.contains("[udf.functions.pagertreeBatch]"), "{out}");
    assert!(
        out.contains(&format!("socket = \"{}\"", abs_stream.display())),
        "{out}"
    );
    assert!(out.contains("timeout = \"10s\""), "{out}");
    // The HTTP listener came up on the port the kernel chose, recorded for `alerts`.
    let addr = std::fs::read_to_string(data.join("http.addr")).unwrap();
    assert!(addr.trim().starts_with("127.0.0.1:"), "{addr}");
    assert!(
        !addr.trim().ends_with(":9096") && !addr.trim().ends_with(":0"),
        "{addr}"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!stream.exists(), "SIGINT removes the socket files");
}

/// With nothing set at all, the agent listens for HTTP on 127.0.0.1:9096;
/// when that port is taken (by another agent, as the README's own setup
/// does, or by this test), `serve` refuses to start, names the address and
/// the remedy, exits 1 and leaves no socket behind. Decision: refusing is
/// right — an agent that came up without /readyz and /metrics would look
/// healthy to nobody and hide a configuration mistake. The test holds the
/// port itself when it is free, so the outcome never depends on the machine.
#[test]
fn with_nothing_set_a_taken_default_http_port_is_refused_by_name() {
    // Held (by us, or already by someone else) for the whole run.
    let held = std::net::TcpListener::bind("127.0.0.1:9096");
    if let Err(e) = &held {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::AddrInUse,
            "cannot bind 127.0.0.1:9096 for another reason: {e}"
        );
    }
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(cwd.path())
        .env_remove("KAPACITOR_PAGERTREE_CONFIG")
        .env_remove("KAPACITOR_PAGERTREE_SERVER_DATA_DIR")
        .env_remove("KAPACITOR_PAGERTREE_SERVER_HTTP_ADDR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("cannot listen for HTTP on 127.0.0.1:9096"),
        "{log}"
    );
    assert!(log.contains("--http-addr"), "the remedy is named: {log}");
    let data = cwd.path().join("kapacitor-pagertree-data");
    assert!(!data.join("stream.sock").exists(), "{log}");
    assert!(!data.join("batch.sock").exists(), "{log}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_sessions_removes_sockets_and_exits_zero() {
    let mut agent = Agent::start();
    let mut k = Kapacitor::connect(agent.stream_socket()).await;
    k.init_ok(
        "t",
        "n",
        vec![opt("levelFrom").string("level"), opt("dryRun")],
    )
    .await;
    let status = agent.terminate();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        agent.log()
    );
    assert!(!agent.stream_socket().exists(), "stream socket left behind");
    assert!(!agent.batch_socket().exists(), "batch socket left behind");
    // The open session was ended (EOF), and recorded with its task and node.
    let rest = k.close().await;
    assert_eq!(error_text(&rest), None);
    let log = agent.log();
    assert!(
        log.contains("session ended") && log.contains("shutdown"),
        "{log}"
    );
}

#[test]
fn stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // A crash leaves socket files nobody listens on.
    for name in ["stream.sock", "batch.sock"] {
        drop(std::os::unix::net::UnixListener::bind(data.join(name)).unwrap());
        assert!(data.join(name).exists());
    }
    let agent = Agent::builder().dir(dir).start();
    assert!(
        agent.log().contains("removing a stale socket file"),
        "{}",
        agent.log()
    );
}

#[test]
fn second_agent_on_live_sockets_refuses() {
    let first = Agent::start();
    let (status, log, _) = Agent::builder()
        .arg("--stream-socket")
        .arg(first.stream_socket().to_str().unwrap())
        .arg("--batch-socket")
        .arg(first.batch_socket().to_str().unwrap())
        .run_to_exit();
    assert!(!status.success());
    assert!(
        log.contains("another agent is already listening on"),
        "{log}"
    );
    assert!(log.contains("stream.sock"), "{log}");
    // The first agent still serves.
    assert!(std::os::unix::net::UnixStream::connect(first.stream_socket()).is_ok());
}

#[test]
fn unknown_config_key_is_named() {
    let (status, log, _) = Agent::builder()
        .config("[server]\nsocket_mod = \"0660\"\n")
        .run_to_exit();
    assert!(!status.success());
    assert!(log.contains("socket_mod"), "{log}");
    assert!(log.contains("agent.toml"), "{log}");
    let (status, log, _) = Agent::builder().config("[servr]\n").run_to_exit();
    assert!(!status.success());
    assert!(log.contains("servr"), "{log}");
}

#[test]
fn socket_mode_from_config() {
    use std::os::unix::fs::PermissionsExt;
    let agent = Agent::builder()
        .config("[server]\nsocket_mode = \"0600\"\n")
        .start();
    let mode = std::fs::metadata(agent.stream_socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let (status, log, _) = Agent::builder()
        .config("[server]\nsocket_group = \"no-such-group-kpt\"\n")
        .run_to_exit();
    assert!(!status.success());
    assert!(
        log.contains("no group named \"no-such-group-kpt\""),
        "{log}"
    );
}
