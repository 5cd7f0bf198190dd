//! `stdio`, the relay for Kapacitor's `prog =` mode, through the real binary:
//! frames written to its stdin reach the running agent and the answers come
//! back on stdout; without an agent it fails with a message saying so.

mod support;

use std::io::{Read, Write};
use std::process::Stdio;

use bytes::BytesMut;
use kapacitor_pagertree::proto::{InfoRequest, Request, Response, request, response};
use prost::Message;
use support::Agent;
use support::bin;

fn info_request() -> Vec<u8> {
    let req = Request {
        message: Some(request::Message::Info(InfoRequest {})),
    };
    let mut buf = BytesMut::new();
    req.encode_length_delimited(&mut buf).unwrap();
    buf.to_vec()
}

fn info_over_relay(args: &[&str], data_dir: &std::path::Path) -> Response {
    let mut child = bin()
        .arg("stdio")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&info_request()).unwrap();
    // Kapacitor closes stdin after the probe; the relay must then exit.
    drop(stdin);
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    Response::decode_length_delimited(out.as_slice()).unwrap()
}

#[test]
fn relays_the_info_probe_on_both_edges() {
    let agent = Agent::start();
    let data = agent.data_dir();
    let stream = info_over_relay(&[], &data);
    let Some(response::Message::Info(info)) = stream.message else {
        panic!("{stream:?}")
    };
    assert_eq!(info.wants, 0, "stream socket");
    assert!(info.options.contains_key("levelFrom"));
    assert!(!info.options.contains_key("all"), "all() is batch only");
    let batch = info_over_relay(&["--batch"], &data);
    let Some(response::Message::Info(info)) = batch.message else {
        panic!("{batch:?}")
    };
    assert_eq!(info.wants, 1, "batch socket");
    assert!(info.options.contains_key("all"));
}

#[test]
fn without_an_agent_it_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .arg("stdio")
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no kapacitor-pagertree agent is listening"),
        "{err}"
    );
    assert!(err.contains("kapacitor-pagertree serve"), "{err}");
    assert!(
        o.stdout.is_empty(),
        "stdout is the protocol: nothing else may be written there"
    );
}
