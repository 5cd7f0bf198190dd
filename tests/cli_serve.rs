//! `serve` and `alerts` through the real binary: a fresh start with no
//! configuration, the HTTP listener (`/metrics` scraped and its series
//! checked, `/healthz`, `/readyz`, `/api/v1/alerts`), the `alerts` command,
//! systemd readiness, and clear failures.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Agent;
use support::kapacitor::{Kapacitor, opt, point};

fn bin() -> Command {
    let mut c = Command::new(support::BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("KAPACITOR_PAGERTREE_") || k == "NOTIFY_SOCKET" {
            c.env_remove(k);
        }
    }
    c
}

fn http_agent() -> (Agent, String) {
    let agent = Agent::builder()
        .arg("--http-addr")
        .arg("127.0.0.1:0")
        .start();
    let text = std::fs::read_to_string(agent.data_dir().join("http.addr"))
        .expect("serve records its HTTP address");
    let addr = text.trim().to_string();
    (agent, format!("http://{addr}"))
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of one series line of the exposition, e.g. `kapacitor_pagertree_points_total{edge="stream"}`.
fn series(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_readiness_and_open_alerts() {
    let (agent, base) = http_agent();
    assert_eq!(
        get(&format!("{base}/healthz")).await,
        (200, "ok\n".to_string())
    );
    assert_eq!(
        get(&format!("{base}/readyz")).await,
        (200, "ready\n".to_string())
    );
    assert_eq!(get(&format!("{base}/nope")).await.0, 404);

    // Starting the agent probed both sockets: count from here.
    let (_, before) = get(&format!("{base}/metrics")).await;
    let base_connections = series(
        &before,
        "kapacitor_pagertree_connections_total{edge=\"stream\"}",
    )
    .unwrap_or(0.0);
    let mut k = Kapacitor::connect(agent.stream_socket()).await;
    let options = vec![
        opt("levelFrom").string("level"),
        opt("idFrom").string("alertID"),
        opt("dryRun"),
    ];
    k.init_ok("cpu_alert", "pagertree2", options).await;
    let t0 = 1_700_000_000_000_000_000i64;
    let p = |id: &str, level: &str, t: i64| {
        point("cpu")
            .time(t)
            .tag("alertID", id)
            .tag("level", level)
            .field("v", 1.0)
    };
    k.point(p("a", "WARNING", t0)).await;
    k.point(p("a", "CRITICAL", t0 + 60_000_000_000)).await;
    k.point(p("b", "CRITICAL", t0 + 60_000_000_000)).await;
    k.point(p("b", "OK", t0 + 120_000_000_000)).await;
    k.keepalive().await;
    // A snapshot answer means every event before it is committed.
    let _ = k.snapshot().await;

    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    let m = |name: &str| {
        series(&metrics, name).unwrap_or_else(|| panic!("no series {name} in:\n{metrics}"))
    };
    assert_eq!(
        m("kapacitor_pagertree_connections_total{edge=\"stream\"}"),
        base_connections + 1.0
    );
    assert_eq!(
        m("kapacitor_pagertree_connections_open{edge=\"stream\"}"),
        1.0
    );
    assert_eq!(m("kapacitor_pagertree_points_total{edge=\"stream\"}"), 4.0);
    assert_eq!(
        m("kapacitor_pagertree_events_total{level=\"WARNING\"}"),
        1.0
    );
    assert_eq!(
        m("kapacitor_pagertree_events_total{level=\"CRITICAL\"}"),
        2.0
    );
    assert_eq!(m("kapacitor_pagertree_events_total{level=\"OK\"}"), 1.0);
    assert_eq!(m("kapacitor_pagertree_keepalives_total"), 1.0);
    assert_eq!(m("kapacitor_pagertree_init_failures_total"), 0.0);
    // Delivery and outbox series exist from the start (OpenMetrics names counters without _total).
    for (family, kind) in [
        ("kapacitor_pagertree_deliveries", "counter"),
        ("kapacitor_pagertree_retries", "counter"),
        ("kapacitor_pagertree_outbox_depth", "gauge"),
        ("kapacitor_pagertree_outbox_oldest_age_seconds", "gauge"),
        ("kapacitor_pagertree_parked", "gauge"),
        ("kapacitor_pagertree_delivery_latency_seconds", "histogram"),
        ("kapacitor_pagertree_keepalives", "counter"),
        ("kapacitor_pagertree_batches", "counter"),
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} {kind} missing:\n{metrics}"
        );
    }
    assert_eq!(m("kapacitor_pagertree_outbox_depth"), 0.0);
    assert_eq!(m("kapacitor_pagertree_delivery_latency_seconds_count"), 0.0);
    assert!(
        metrics.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );

    // The API: only `a` is open (b went OK); since = its first non-OK event.
    let (status, body) = get(&format!("{base}/api/v1/alerts")).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let alerts = v["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{body}");
    assert_eq!(alerts[0]["id"], "a");
    assert_eq!(alerts[0]["task"], "cpu_alert");
    assert_eq!(alerts[0]["node"], "pagertree2");
    assert_eq!(alerts[0]["level"], "CRITICAL");
    assert_eq!(alerts[0]["since"], "2023-11-14T22:13:20Z");
    assert_eq!(alerts[0]["delivery"], "dry_run");

    // The `alerts` command finds the agent through its data directory.
    let data = agent.data_dir();
    let o = bin()
        .arg("alerts")
        .arg("--data-dir")
        .arg(&data)
        .args(["--http-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("TASK")
            && lines[0].contains("SINCE")
            && lines[0].ends_with("DELIVERY"),
        "{out}"
    );
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "cpu_alert",
            "pagertree2",
            "a",
            "CRITICAL",
            "2023-11-14T22:13:20Z",
            "dry_run"
        ]
    );
    // JSON: the API's answer, and --url instead of the config.
    let o = bin()
        .args(["alerts", "--format", "json", "--url", &base])
        .output()
        .unwrap();
    assert!(o.status.success());
    let v2: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v2, v);

    // Once a recovers, nothing is open.
    k.point(p("a", "OK", t0 + 180_000_000_000)).await;
    let _ = k.snapshot().await;
    let o = bin().args(["alerts", "--url", &base]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "no open alerts\n");
    k.close().await;
}

#[test]
fn alerts_without_an_agent_fails_clearly() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let o = bin()
        .args(["alerts", "--url", &dead.to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the agent") && err.contains("serve"),
        "{err}"
    );
    let o = bin()
        .args(["alerts", "--http-addr", "off"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("http_addr is \"off\""), "{err}");
    // Port 0 and no agent has recorded its address there: not running, exit 1.
    let empty = tempfile::tempdir().unwrap();
    let o = bin()
        .arg("alerts")
        .arg("--data-dir")
        .arg(empty.path())
        .args(["--http-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is the agent running"), "{err}");
}

#[test]
fn serve_with_no_config_starts_and_explains_itself() {
    // A fresh checkout: no file, no environment, the default data dir under the cwd.
    let cwd = tempfile::tempdir().unwrap();
    let child = bin()
        .current_dir(cwd.path())
        .args(["--http-addr", "off", "--log-format", "text"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sock = cwd.path().join("kapacitor-pagertree-data/stream.sock");
    let start = Instant::now();
    while !sock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the agent did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        cwd.path()
            .join("kapacitor-pagertree-data/batch.sock")
            .exists()
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("[udf.functions.pagertree]") && err.contains("[udf.functions.pagertreeBatch]"),
        "{err}"
    );
    assert!(err.contains("no endpoint is configured"), "{err}");
    assert!(!sock.exists(), "the socket is removed at exit");
}

#[test]
fn systemd_is_told_ready_after_the_sockets_listen() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let data = dir.path().join("data");
    let child = bin()
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .args(["--http-addr", "off", "--log-format", "json"])
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("a READY=1 datagram");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    // Ready means connectable: both sockets accept now.
    for s in ["stream.sock", "batch.sock"] {
        std::os::unix::net::UnixStream::connect(data.join(s))
            .unwrap_or_else(|e| panic!("{s} not listening at READY: {e}"));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = notify.recv(&mut buf).expect("a STOPPING=1 datagram");
    assert!(
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "STOPPING=1")
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
}

#[test]
fn a_busy_http_port_fails_the_start_with_the_reason() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (status, log, _dir) = Agent::builder().arg("--http-addr").arg(&addr).run_to_exit();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot listen for HTTP on {addr}")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_addr_may_be_a_host_name() {
    let agent = Agent::builder()
        .arg("--http-addr")
        .arg("localhost:0")
        .start();
    let text = std::fs::read_to_string(agent.data_dir().join("http.addr"))
        .expect("serve records its HTTP address");
    let addr: std::net::SocketAddr = text.trim().parse().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_eq!(
        get(&format!("http://{addr}/healthz")).await,
        (200, "ok\n".to_string())
    );
}
