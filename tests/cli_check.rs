//! `check` through the real binary: valid and invalid configurations, the
//! origin of each error, and `--connect` against a local endpoint.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kapacitor-pagertree"));
    // The test process's own environment must not leak settings in.
    for (k, _) in std::env::vars() {
        if k.starts_with("KAPACITOR_PAGERTREE_") {
            c.env_remove(k);
        }
    }
    c
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/kapacitor-pagertree.toml"
    );
    // socket_group = "kapacitor" must name a group: where Kapacitor is not
    // installed (CI), the only error is that one.
    let o = bin().args(["check", "--config", path]).output().unwrap();
    let (out, err) = text(&o);
    if !o.status.success() {
        let problems: Vec<&str> = err.lines().skip(1).collect();
        assert_eq!(
            problems,
            [format!(
                "  {path}: server.socket_group: no group named \"kapacitor\" on this machine (the group Kapacitor runs as, e.g. kapacitor)"
            )],
            "{out}{err}"
        );
    }
    // With a group this machine has, it is valid.
    let o = bin()
        .args(["check", "--config", path])
        .env("KAPACITOR_PAGERTREE_SERVER_SOCKET_GROUP", "0")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("valid"), "{out}");
    assert!(
        out.contains("endpoint oncall (default): https://api.pagertree.com/integration/int_xx… format kapacitor"),
        "{out}"
    );
    assert!(
        !out.contains("int_xxxxxxxx"),
        "the integration id must be redacted: {out}"
    );
    assert!(
        out.contains("/run/kapacitor-pagertree/stream.sock"),
        "{out}"
    );
}

#[test]
fn errors_name_file_key_and_reason_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlog_format = \"xml\"\n[delivery]\ndefault_endpoint = \"nope\"\n",
    )
    .unwrap();
    let o = bin()
        .args(["check", "--config"])
        .arg(&path)
        .env("KAPACITOR_PAGERTREE_SERVER_SOCKET_MODE", "999")
        .args(["--http-addr", "nowhere"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    let file = path.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}: server.log_format: \"xml\" is not one of auto, text, json"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}: delivery.default_endpoint: \"nope\" names no [endpoints.nope] table"
        )),
        "{err}"
    );
    assert!(
        err.contains("environment KAPACITOR_PAGERTREE_SERVER_SOCKET_MODE: server.socket_mode:"),
        "{err}"
    );
    assert!(err.contains("flag --http-addr: server.http_addr:"), "{err}");
}

#[test]
fn unknown_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(&path, "[delivery]\nretry_maxx = \"5m\"\n").unwrap();
    let o = bin()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("retry_maxx"), "{err}");
    let o = bin()
        .args(["check"])
        .env("KAPACITOR_PAGERTREE_DELIVERY_RETRY_MAXX", "5m")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("delivery.retry_maxx: unknown key"), "{err}");
}

#[test]
fn a_missing_file_is_an_error() {
    let o = bin()
        .args(["check", "--config", "/nonexistent/kp.toml"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("cannot read config file /nonexistent/kp.toml"),
        "{err}"
    );
}

#[test]
fn url_shortcut_alone_is_a_valid_config() {
    let o = bin()
        .args(["check"])
        .env(
            "KAPACITOR_PAGERTREE_URL",
            "https://api.pagertree.com/integration/int_secret",
        )
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("endpoint default (default): https://api.pagertree.com/integration/int_se…")
            && !out.contains("int_secret"),
        "{out}"
    );
    assert!(!out.contains("int_secret"), "{out}");
    assert!(!out.contains("warning"), "{out}");
}

/// A one-request-at-a-time HTTP server answering every request with `status`.
fn http_server(status: u16) -> (String, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let mut served = 0;
        listener.set_nonblocking(false).unwrap();
        for stream in listener.incoming() {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(req.starts_with("GET "), "check must only GET: {req}");
            write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
            served += 1;
            if req.contains("/kapacitor/v1/ping") {
                break;
            }
        }
        served
    });
    (addr, handle)
}

#[test]
fn connect_reports_answering_and_dead_endpoints() {
    let (addr, server) = http_server(404);
    // A port nobody listens on: bind, note, drop.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "[kapacitor]\nurl = \"http://{addr}\"\n[delivery]\ndefault_endpoint = \"live\"\n\
             [endpoints.live]\nurl = \"http://{addr}/integration/int_live\"\n\
             [endpoints.dead]\nurl = \"http://{dead}/integration/int_dead\"\nconnect_timeout = \"1s\"\n"
        ),
    )
    .unwrap();
    let o = bin()
        .args(["check", "--connect", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("endpoint live: answers (HTTP 404)"), "{out}");
    assert!(
        out.contains("endpoint dead: FAILED: cannot connect"),
        "{out}"
    );
    assert!(!out.contains("int_dead"), "{out}");
    assert!(
        out.contains(&format!("kapacitor http://{addr}: answers (HTTP 404)")),
        "{out}"
    );
    assert_eq!(server.join().unwrap(), 2);

    // Only live endpoints: success.
    let (addr, server) = http_server(200);
    std::fs::write(
        &path,
        format!(
            "[kapacitor]\nurl = \"http://{addr}\"\n[delivery]\ndefault_endpoint = \"live\"\n\
             [endpoints.live]\nurl = \"http://{addr}/integration/int_live\"\n"
        ),
    )
    .unwrap();
    let o = bin()
        .args(["check", "--connect", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert_eq!(server.join().unwrap(), 2);
}

/// The README's configuration reference is a valid file as printed.
#[test]
fn the_readme_config_reference_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```toml block in the README");
    assert!(block.contains("[endpoints.oncall]"), "{block}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readme.toml");
    std::fs::write(&path, block).unwrap();
    let o = bin()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(!out.contains("warning"), "the reference is complete: {out}");
}

#[test]
fn every_unknown_key_and_every_other_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typos.toml");
    std::fs::write(
        &path,
        "[server]\nlog_format = \"xml\"\nmax_frame_bytes = \"big\"\n\
         [delivery]\nretry_maxx = \"5m\"\nconcurency = 4\n\
         [servr]\nhttp_addr = \"off\"\n\
         [endpoints.oncall]\nurl = \"https://example.com/i\"\ntimeoutt = \"1s\"\n",
    )
    .unwrap();
    let o = bin()
        .args(["check", "--config"])
        .arg(&path)
        .env("KAPACITOR_PAGERTREE_DELIVERY_CONCURRENCY", "many")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    let file = path.display().to_string();
    for expected in [
        format!("{file}: delivery.retry_maxx: unknown key"),
        format!("{file}: delivery.concurency: unknown key"),
        format!("{file}: servr: unknown table"),
        format!("{file}: endpoints.oncall.timeoutt: unknown key"),
        format!("{file}: server.max_frame_bytes: "),
        format!("{file}: server.log_format: \"xml\" is not one of auto, text, json"),
        "environment KAPACITOR_PAGERTREE_DELIVERY_CONCURRENCY: delivery.concurrency:".to_string(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn a_socket_group_naming_no_group_is_refused() {
    let o = bin()
        .args(["check"])
        .env(
            "KAPACITOR_PAGERTREE_SERVER_SOCKET_GROUP",
            "no-such-group-kp-test",
        )
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains(
            "environment KAPACITOR_PAGERTREE_SERVER_SOCKET_GROUP: server.socket_group: no group named \"no-such-group-kp-test\""
        ),
        "{err}"
    );
}

#[test]
fn a_socket_path_too_long_through_the_data_dir_blames_the_data_dir() {
    let long = format!("/tmp/{}", "d".repeat(110));
    let o = bin().args(["check", "--data-dir", &long]).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains("flag --data-dir: server.stream_socket: ")
            && err.contains("flag --data-dir: server.batch_socket: "),
        "{err}"
    );
    assert!(!err.contains("defaults:"), "{err}");
}

#[test]
fn http_addr_accepts_a_host_name() {
    let o = bin()
        .args(["check", "--http-addr", "localhost:9096"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    // A name without a port is still refused.
    let o = bin()
        .args(["check", "--http-addr", "localhost"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains(
            "flag --http-addr: server.http_addr: \"localhost\" is not \"off\" or host:port"
        ),
        "{err}"
    );
}
