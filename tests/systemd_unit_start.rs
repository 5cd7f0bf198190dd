//! The shipped unit (`contrib/systemd/kapacitor-pagertree.service`) and the
//! shipped config (`contrib/kapacitor-pagertree.toml`) start together.
//!
//! CI has no booted systemd, so the proof runs the real binary under the
//! unit's own syscall filter (`tests/support/seccomp.rs`: the unit's
//! `SystemCallFilter=` lines, groups expanded from systemd 252's lists, with
//! SIGSYS-kill for a filtered call), with the shipped config changed only in
//! its paths (data directory and sockets in a temp dir) and `socket_group`
//! set to the group the agent runs as — as under the unit's `Group=kapacitor`,
//! the sockets are created in that group already (see `unit_identity`).

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod support;

#[path = "support/pagertree.rs"]
mod pagertree;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use pagertree::{FakePagerTree, Fmt};
use support::Agent;
use support::kapacitor::{Kapacitor, opt, point};
use support::seccomp::UnitFilter;

const UNIT: &str = include_str!("../contrib/systemd/kapacitor-pagertree.service");
const CONFIG: &str = include_str!("../contrib/kapacitor-pagertree.toml");

/// The unit's filter, checked to be the one this test models.
fn unit_filter() -> UnitFilter {
    let filter = UnitFilter::from_unit(UNIT).unwrap_or_else(|e| panic!("the unit's filter: {e}"));
    assert_eq!(
        filter.lines,
        ["@system-service", "~@privileged @resources"],
        "the unit's SystemCallFilter= lines changed: check the model in tests/support/seccomp.rs"
    );
    assert!(
        UNIT.lines()
            .any(|l| l.trim() == "SystemCallArchitectures=native")
    );
    // The model has teeth: what the old agent did is filtered, the basics are not.
    for nr in [libc::SYS_chown, libc::SYS_fchown, libc::SYS_fchownat] {
        assert!(!filter.allows(nr), "chown ({nr}) must be filtered");
    }
    for nr in [libc::SYS_setrlimit, libc::SYS_sched_setaffinity] {
        assert!(!filter.allows(nr), "@resources ({nr}) must be filtered");
    }
    for nr in [
        libc::SYS_read,
        libc::SYS_execve,
        libc::SYS_bind,
        libc::SYS_fsync,
    ] {
        assert!(filter.allows(nr), "{nr} must be allowed");
    }
    filter
}

/// The user and group the agent runs as, like the unit's User= and Group=:
/// this process's own when it is not root; when it is root (containers, CI),
/// nobody:nogroup — the unit never runs the agent as root, and as root SQLite
/// itself fchowns its journal files (a filtered call the unit never sees).
/// Returns (uid and gid to switch to, if any; the group's name; its gid).
fn unit_identity() -> (Option<(u32, u32)>, String, u32) {
    // SAFETY: geteuid/getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let (switch, gid) = if uid == 0 {
        (Some((65534, 65534)), 65534)
    } else {
        (None, gid)
    };
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let name = groups
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == gid).then(|| name.to_string())
        })
        .unwrap_or_else(|| gid.to_string());
    (switch, name, gid)
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the shipped config should hold {from:?} once"
    );
    text.replace(from, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_unit_and_config_start_under_the_units_syscall_filter() {
    let filter = unit_filter();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (switch, group, gid) = unit_identity();
    if let Some((uid, gid)) = switch {
        // The unit's StateDirectory=/RuntimeDirectory= belong to its user.
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    }
    // The shipped config, with its paths moved into the temp dir and the group ours.
    let config = replace_once(
        CONFIG,
        "data_dir = \"/var/lib/kapacitor-pagertree\"",
        &format!("data_dir = {:?}", data.display().to_string()),
    );
    let config = config.replace(
        "\"/run/kapacitor-pagertree/",
        &format!("\"{}/", data.display()),
    );
    let config = replace_once(
        &config,
        "socket_group = \"kapacitor\"",
        &format!("socket_group = {group:?}"),
    );
    // The endpoint as an operator sets it in the unit (Environment=), not in the file.
    let pagertree = FakePagerTree::start().await;
    let url = pagertree.integration("oncall", Fmt::Kapacitor, None);
    let mut builder = Agent::builder();
    if let Some((uid, gid)) = switch {
        builder = builder.run_as(uid, gid);
    }
    let mut agent = builder
        .dir(dir)
        .config(&config)
        // Another agent may hold the default 127.0.0.1:9096 on this machine.
        .arg("--http-addr")
        .arg("127.0.0.1:0")
        .env("KAPACITOR_PAGERTREE_ENDPOINTS_ONCALL_URL", &url)
        .syscall_filter(filter.program())
        .start();
    for socket in [agent.stream_socket(), agent.batch_socket()] {
        let m = std::fs::metadata(socket).unwrap();
        assert_eq!(m.gid(), gid, "{} is in the group", socket.display());
        assert_eq!(m.mode() & 0o777, 0o660, "{}", socket.display());
    }
    let http = std::fs::read_to_string(agent.data_dir().join("http.addr")).unwrap();
    let ready = reqwest::get(format!("http://{}/readyz", http.trim()))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200, "{}", agent.log());

    // An event goes all the way (outbox commit, HTTP delivery) under the filter.
    let mut k = Kapacitor::connect(agent.stream_socket()).await;
    k.init_ok("cpu", "pagertree2", vec![opt("levelFrom").string("level")])
        .await;
    k.point(
        point("cpu")
            .time(1_700_000_000_000_000_000)
            .tag("level", "CRITICAL")
            .field("v", 1.0),
    )
    .await;
    assert!(
        pagertree.wait_accepted(1, Duration::from_secs(30)).await,
        "the event was not delivered; log:\n{}",
        agent.log()
    );
    drop(k.close().await);

    // And it stops as systemd stops it, removing its sockets (the unit does
    // not preserve the runtime directory either: Kapacitor retries a missing
    // socket file as it retries a refused connect).
    let (stream, batch) = (
        agent.stream_socket().to_path_buf(),
        agent.batch_socket().to_path_buf(),
    );
    let status = agent.terminate();
    assert!(status.success(), "{status}; log:\n{}", agent.log());
    assert!(!stream.exists() && !batch.exists(), "sockets left behind");
    assert!(
        !UNIT.contains("RuntimeDirectoryPreserve=yes"),
        "the unit keeps what the agent removes"
    );
}
