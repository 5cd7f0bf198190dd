//! Task revival through the real binary (docs/architecture.md, *Restarts*):
//! Kapacitor never reconnects a broken UDF session, so after an agent
//! restart the agent brings back, through Kapacitor's HTTP API, exactly
//! the tasks whose sessions it held. Kapacitor here is the emulator
//! (tests/support/kapacitor.rs: the UDF client side and, in `api`, the
//! HTTP API with the tasks behind it); PagerTree is the fake
//! (tests/support/pagertree.rs). No real Kapacitor is needed.

mod support;

#[path = "support/pagertree.rs"]
mod pagertree;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kapacitor_pagertree::proto::{BeginBatch, EndBatch, Point};
use pagertree::{FakePagerTree, Fmt};
use support::Agent;
use support::kapacitor::api::{Auth, Down, KapacitorApi, TaskDef, TaskType, Via};
use support::kapacitor::{Opt, opt, point};

/// The UDF `timeout` of the emulated tasks: keepalives every 2 s, so
/// Kapacitor notices a broken session within 2 s.
const UDF_TIMEOUT: Duration = Duration::from_secs(4);
/// Generous: the machine is shared and noisy.
const WAIT: Duration = Duration::from_secs(90);
const T0: i64 = 1_764_000_000_000_000_000;

fn config(api_url: &str, endpoint: &str, kapacitor: &str) -> String {
    // ServerInfo set here: the only calls to Kapacitor's API are revival's.
    format!(
        "[kapacitor]\nurl = \"{api_url}\"\nhostname = \"kap\"\ncluster_id = \"c\"\nserver_id = \"s\"\n{kapacitor}\n\
         [delivery]\ndefault_endpoint = \"pt\"\nretry_initial = \"100ms\"\nretry_max = \"500ms\"\n\
         [endpoints.pt]\nurl = \"{endpoint}\"\n"
    )
}

/// A fake PagerTree with one integration, a fake Kapacitor API, and the
/// agent's config naming both (`kapacitor`: more `[kapacitor]` lines).
struct Setup {
    fake: FakePagerTree,
    api: KapacitorApi,
    cfg: String,
}

async fn setup(integration: &str, auth: Auth, kapacitor: &str) -> Setup {
    let fake = FakePagerTree::start().await;
    let endpoint = fake.integration(integration, Fmt::Kapacitor, None);
    let api = KapacitorApi::with_auth(auth);
    let cfg = config(&api.url(), &endpoint, kapacitor);
    Setup { fake, api, cfg }
}

async fn start(config: &str, dir: Option<tempfile::TempDir>) -> Agent {
    let config = config.to_string();
    tokio::task::spawn_blocking(move || {
        let b = Agent::builder()
            .config(&config)
            .arg("--http-addr")
            .arg("127.0.0.1:0");
        match dir {
            Some(d) => b.dir(d).start(),
            None => b.start(),
        }
    })
    .await
    .unwrap()
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    Kill9,
    Sigterm,
}

/// Stops the agent (`kill -9` or SIGTERM) and keeps its directory.
async fn stop(agent: Agent, how: Stop) -> tempfile::TempDir {
    tokio::task::spawn_blocking(move || {
        let mut agent = agent;
        if let Stop::Sigterm = how {
            let status = agent.terminate();
            assert!(status.success(), "{}", agent.log());
        }
        agent.kill_keep_dir()
    })
    .await
    .unwrap()
}

fn cli(data: &std::path::Path, args: &[&str]) -> String {
    let o = Command::new(support::BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Runs `kapacitor-pagertree ARGS` until its output satisfies `check`.
async fn wait_cli(
    data: &std::path::Path,
    args: &'static [&'static str],
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let start = Instant::now();
    loop {
        let d = data.to_path_buf();
        let out = tokio::task::spawn_blocking(move || cli(&d, args))
            .await
            .unwrap();
        if check(&out) {
            return out;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for {what}:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every event committed so far is delivered (so a later
/// `kill -9` leaves nothing on the wire to repeat).
async fn wait_delivered(data: &std::path::Path) {
    wait_cli(data, &["outbox", "list"], "an empty outbox", |o| {
        o.starts_with("0 event(s) waiting")
    })
    .await;
}

async fn wait_log(agent: &Agent, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let log = agent.log();
        if log.contains(needle) {
            return log;
        }
        assert!(start.elapsed() < WAIT, "no {needle:?} in the log:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The agent's `/metrics` text.
async fn metrics(agent: &Agent) -> String {
    let addr = std::fs::read_to_string(agent.data_dir().join("http.addr")).unwrap();
    let url = format!("http://{}/metrics", addr.trim());
    reqwest::get(&url).await.unwrap().text().await.unwrap()
}

/// `kapacitor_pagertree_revivals_total{outcome, reason}` (0 when absent).
async fn revivals(agent: &Agent, outcome: &str, reason: &str) -> u64 {
    let want =
        format!("kapacitor_pagertree_revivals_total{{outcome=\"{outcome}\",reason=\"{reason}\"}} ");
    metrics(agent)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&want))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

/// Mode 2 with stateChangesOnly: the level, alert id and message come
/// from the point.
fn opts() -> Vec<Opt> {
    vec![
        opt("levelFrom").string("level"),
        opt("idFrom").string("alertID"),
        opt("messageFrom").string("message"),
        opt("stateChangesOnly"),
    ]
}

fn alert(id: &str, level: &str, message: &str, n: i64) -> Point {
    point("cpu")
        .time(T0 + n * 1_000_000_000)
        .tag("alertID", id)
        .tag("level", level)
        .string_field("message", message)
        .field("v", n as f64)
        .into()
}

fn stream_task(id: &str, via: &Via, nodes: &[&str]) -> TaskDef {
    let mut t = TaskDef::new(id, TaskType::Stream, via.clone()).timeout(UDF_TIMEOUT);
    for n in nodes {
        t = t.node(n, opts());
    }
    t
}

fn batch_task(id: &str, via: &Via) -> TaskDef {
    TaskDef::new(id, TaskType::Batch, via.clone())
        .timeout(UDF_TIMEOUT)
        .node("pagertreeBatch3", opts())
}

/// One batch of one point.
fn feed_batch(api: &KapacitorApi, task: &str, p: Point) -> bool {
    let (name, tmax) = (p.name.clone(), p.time);
    api.batch(
        task,
        BeginBatch {
            name: name.clone(),
            size: 1,
            ..Default::default()
        },
        vec![p],
        EndBatch {
            name,
            tmax,
            ..Default::default()
        },
    )
}

/// Waits until the task runs a session started `starts` times in all.
async fn wait_running(api: &KapacitorApi, task: &str, starts: u32) {
    api.wait_task(task, &format!("run #{starts}"), WAIT, |v| {
        v.starts >= starts && v.running
    })
    .await;
}

fn via_socket(agent: &Agent) -> (Via, Via) {
    (
        Via::Socket(agent.stream_socket().to_path_buf()),
        Via::Socket(agent.batch_socket().to_path_buf()),
    )
}

/// The common opening: a first agent serves one stream task `task` (nodes
/// `pagertree2`), its session is marked, and the agent is killed (-9).
/// The fake PagerTree and Kapacitor's API live on in the returned scene.
struct Marked {
    _fake: FakePagerTree,
    api: KapacitorApi,
    cfg: String,
    dir: tempfile::TempDir,
}

async fn marked_then_killed(
    task: &str,
    integration: &str,
    auth: Auth,
    kapacitor: &str,
    udf_timeout: Option<Duration>,
) -> Marked {
    let Setup { fake, api, cfg } = setup(integration, auth, kapacitor).await;
    let agent = start(&cfg, None).await;
    let (stream, _) = via_socket(&agent);
    let def = stream_task(task, &stream, &["pagertree2"]);
    api.define(
        match udf_timeout {
            Some(t) => def.timeout(t),
            None => def,
        },
        true,
    );
    wait_running(&api, task, 1).await;
    wait_cli(&agent.data_dir(), &["tasks"], "the mark", |o| {
        o.starts_with("1 ")
    })
    .await;
    let dir = stop(agent, Stop::Kill9).await;
    Marked {
        _fake: fake,
        api,
        cfg,
        dir,
    }
}

async fn restart_revives_exactly_the_broken_tasks(how: Stop) {
    let Setup { fake, api, cfg } = setup("int_revive1", Auth::None, "").await;
    let agent = start(&cfg, None).await;
    let data = agent.data_dir();
    let (stream, batch) = via_socket(&agent);

    // Broken by the restart: a stream task with two @pagertree nodes, a
    // batch task, another stream task.
    api.define(
        stream_task("cpu", &stream, &["pagertree2", "pagertree5"]),
        true,
    );
    api.define(batch_task("disk", &batch), true);
    api.define(stream_task("mem", &stream, &["pagertree2"]), true);
    // Never to be touched: ended normally before the restart, Init refused,
    // disabled by a human while the agent was down, deleted meanwhile.
    api.define(stream_task("ended", &stream, &["pagertree2"]), true);
    api.define(
        TaskDef::new("refused", TaskType::Stream, stream.clone())
            .node("pagertree2", vec![opt("noSuchOption").string("x")]),
        true,
    );
    api.define(stream_task("human", &stream, &["pagertree2"]), true);
    api.define(stream_task("deleted", &stream, &["pagertree2"]), true);
    for t in ["cpu", "disk", "mem", "ended", "human", "deleted"] {
        wait_running(&api, t, 1).await;
    }
    let refused = api
        .wait_task("refused", "the refused Init", WAIT, |v| !v.executing)
        .await;
    assert!(
        refused.error.contains("failed to initialize processes"),
        "{refused:?}"
    );
    api.disable("ended").await;
    // cpu ×2, disk, mem, human, deleted.
    wait_cli(&data, &["tasks"], "six marks", |o| {
        o.starts_with("6 UDF session(s)")
    })
    .await;

    let dir = stop(agent, how).await;
    api.disable("human").await;
    api.delete("deleted").await;
    let restarted = Instant::now();
    let agent = start(&cfg, Some(dir)).await;
    for t in ["cpu", "disk", "mem"] {
        wait_running(&api, t, 2).await;
    }
    let took = restarted.elapsed();
    let log = wait_log(&agent, "revival: done").await;
    eprintln!("{how:?}: the three broken tasks ran again {took:?} after the restart");
    for l in log.lines().filter(|l| l.contains("revival")) {
        eprintln!("{l}");
    }

    for t in ["cpu", "disk", "mem"] {
        assert_eq!(api.patches(t), ["disabled", "enabled"], "{t}\n{log}");
        let v = api.task(t).unwrap();
        assert!(v.enabled && v.executing && v.error.is_empty(), "{t}: {v:?}");
    }
    for t in ["ended", "refused", "human", "deleted"] {
        assert_eq!(api.patches(t), Vec::<String>::new(), "{t}\n{log}");
    }
    // Never marked, so never even looked at.
    for t in ["ended", "refused"] {
        assert!(api.task_calls(t).is_empty(), "{t}: {:?}", api.task_calls(t));
    }
    assert_eq!(api.task("human").map(|v| v.enabled), Some(false));
    assert!(log.contains("revival: the task is disabled in Kapacitor (a human disabled it)"));
    assert!(log.contains("revival: the task no longer exists in Kapacitor (404)"));
    for t in ["cpu", "disk", "mem"] {
        assert!(
            log.lines()
                .any(|l| l.contains("revival: task revived") && l.contains(&format!("task={t}"))),
            "{t}\n{log}"
        );
    }

    // `tasks`: this run's sessions are marked (the revived ones), the
    // skipped tasks' marks are gone, and the revival states are shown.
    let out = wait_cli(&data, &["tasks"], "four marks", |o| {
        o.starts_with("4 UDF session(s)")
    })
    .await;
    assert!(
        !out.lines()
            .any(|l| l.starts_with("human ") && l.contains("stream")),
        "{out}"
    );
    assert!(
        out.contains("Revival of the 5 task(s) marked open at the agent's last start"),
        "{out}"
    );
    for (t, state) in [
        ("cpu", "revived"),
        ("disk", "revived"),
        ("mem", "revived"),
        ("human", "skipped"),
        ("deleted", "skipped"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{t} ")) && l.contains(state)),
            "{t} {state}:\n{out}"
        );
    }

    assert_eq!(revivals(&agent, "revived", "").await, 3);
    assert_eq!(revivals(&agent, "skipped", "disabled").await, 1);
    assert_eq!(revivals(&agent, "skipped", "deleted").await, 1);
    assert_eq!(revivals(&agent, "failed", "deadline").await, 0);

    // The revived tasks page again.
    assert!(api.point("cpu", alert("after", "CRITICAL", "cpu after revival", 1)));
    assert!(feed_batch(
        &api,
        "disk",
        alert("after-disk", "CRITICAL", "disk after revival", 1)
    ));
    assert!(api.snapshot("cpu").await && api.snapshot("disk").await);
    assert!(fake.wait_accepted(3, WAIT).await, "{}", agent.log());
    let markers: Vec<String> = fake.accepted().into_iter().map(|a| a.marker).collect();
    // Two nodes in cpu: each pages for itself.
    assert_eq!(
        markers.iter().filter(|m| *m == "cpu after revival").count(),
        2
    );
    assert_eq!(
        markers
            .iter()
            .filter(|m| *m == "disk after revival")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_revives_exactly_the_broken_tasks_once() {
    restart_revives_exactly_the_broken_tasks(Stop::Kill9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_revives_exactly_the_broken_tasks_once() {
    restart_revives_exactly_the_broken_tasks(Stop::Sigterm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_reconnects_by_itself_is_not_touched() {
    // A long UDF timeout: Kapacitor notices the broken session only at
    // its next keepalive, a minute later; before that it restarts the task
    // by itself (as when Kapacitor itself restarts).
    let long = Some(Duration::from_secs(120));
    let Marked {
        _fake,
        api,
        cfg,
        dir,
    } = marked_then_killed("selfish", "int_revive2", Auth::None, "", long).await;
    let agent = start(&cfg, Some(dir)).await;
    // The agent looks, and sees the task still executing.
    let start_wait = Instant::now();
    while !api.task_calls("selfish").iter().any(|c| c.method == "GET") {
        assert!(start_wait.elapsed() < WAIT, "{}", agent.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Kapacitor restarts: its API is down meanwhile, and it starts the task
    // again (a new session: Init, Restore).
    api.set_down(Some(Down::Refuse));
    api.disable("selfish").await;
    api.enable("selfish").await;
    wait_running(&api, "selfish", 2).await;
    api.set_down(None);
    let log = wait_log(&agent, "revival: done").await;
    assert!(
        log.contains("revival: the task reconnected by itself (its Init arrived): not touched"),
        "{log}"
    );
    assert_eq!(api.patches("selfish"), Vec::<String>::new());
    assert_eq!(revivals(&agent, "skipped", "reconnected").await, 1);
    assert_eq!(revivals(&agent, "revived", "").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kapacitor_api_down_for_a_while_then_up_still_revives() {
    let Marked {
        _fake,
        api,
        cfg,
        dir,
    } = marked_then_killed("patient", "int_revive3", Auth::None, "", None).await;
    // Kapacitor's API refuses connections, then answers 503, then is back.
    api.set_down(Some(Down::Refuse));
    let agent = start(&cfg, Some(dir)).await;
    wait_log(&agent, "revival: waiting: Kapacitor's API did not answer").await;
    api.wait_task(
        "patient",
        "Kapacitor noticing the broken session",
        WAIT,
        |v| !v.executing,
    )
    .await;
    api.set_down(Some(Down::Unavailable));
    let start_wait = Instant::now();
    while !api.calls().iter().any(|c| c.task() == Some("patient")) {
        assert!(start_wait.elapsed() < WAIT, "{}", agent.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_log(&agent, "HTTP 503").await;
    api.set_down(None);
    wait_running(&api, "patient", 2).await;
    assert_eq!(api.patches("patient"), ["disabled", "enabled"]);
    let log = wait_log(&agent, "revival: done").await;
    assert!(!log.contains("gave up"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kapacitor_api_down_past_revive_for_gives_up_loudly_and_keeps_the_mark() {
    let Marked {
        _fake,
        api,
        cfg,
        dir,
    } = marked_then_killed(
        "stranded",
        "int_revive4",
        Auth::None,
        "revive_for = \"3s\"",
        None,
    )
    .await;
    api.set_down(Some(Down::Refuse));
    let agent = start(&cfg, Some(dir)).await;
    let log = wait_log(&agent, "revival: gave up on task stranded").await;
    let line = log
        .lines()
        .find(|l| l.contains("revival: gave up on task stranded"))
        .unwrap();
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("revive_for = 3s"), "{line}");
    assert!(
        line.contains("kapacitor disable stranded && kapacitor enable stranded"),
        "{line}"
    );
    assert_eq!(revivals(&agent, "failed", "deadline").await, 1);
    let out = cli(&agent.data_dir(), &["tasks"]);
    assert!(
        out.starts_with("1 UDF session(s)"),
        "the mark is kept:\n{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("stranded ")
            && l.contains("gave up")
            && l.contains("kapacitor disable stranded")),
        "{out}"
    );
    api.set_down(None);
    assert!(api.patches("stranded").is_empty());
    // The task stays stopped (as the ERROR says) once Kapacitor noticed.
    let v = api
        .wait_task("stranded", "the broken session noticed", WAIT, |v| {
            !v.executing
        })
        .await;
    assert!(v.enabled && v.error.contains("broken pipe"), "{v:?}");
}

async fn revives_with_credentials(auth: Auth, kapacitor: &str, prefix: &str) {
    let Marked {
        _fake,
        api,
        cfg,
        dir,
    } = marked_then_killed("secured", "int_revive5", auth, kapacitor, None).await;
    let agent = start(&cfg, Some(dir)).await;
    wait_running(&api, "secured", 2).await;
    assert_eq!(
        api.patches("secured"),
        ["disabled", "enabled"],
        "{}",
        agent.log()
    );
    let calls = api.calls();
    assert!(!calls.is_empty());
    for c in calls {
        let auth = c.auth.clone().unwrap_or_default();
        assert!(auth.starts_with(prefix), "{c:?}");
    }
    let log = agent.log();
    for secret in ["kpass", "ksecret"] {
        assert!(!log.contains(secret), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revival_sends_basic_auth() {
    revives_with_credentials(
        Auth::Basic {
            user: "kuser".into(),
            password: "kpass".into(),
        },
        "username = \"kuser\"\npassword = \"kpass\"",
        "Basic ",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revival_sends_a_signed_bearer_token() {
    revives_with_credentials(
        Auth::Bearer {
            user: "kuser".into(),
            secret: "ksecret".into(),
        },
        "username = \"kuser\"\nshared_secret = \"ksecret\"",
        "Bearer ",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_give_up_at_once_and_say_why() {
    let right = Auth::Basic {
        user: "kuser".into(),
        password: "right".into(),
    };
    let wrong = "username = \"kuser\"\npassword = \"wrong\"";
    let Marked {
        _fake,
        api,
        cfg,
        dir,
    } = marked_then_killed("locked", "int_revive6", right, wrong, None).await;
    let agent = start(&cfg, Some(dir)).await;
    let log = wait_log(&agent, "revival: gave up on task locked").await;
    let line = log
        .lines()
        .find(|l| l.contains("revival: gave up on task locked"))
        .unwrap();
    assert!(
        line.contains("HTTP 401") && line.contains("password"),
        "{line}"
    );
    assert!(!line.contains("wrong"), "the password is not shown: {line}");
    assert_eq!(api.task_calls("locked").len(), 1, "one look, then it stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revive_tasks_false_touches_nothing_and_keeps_the_marks() {
    let Marked {
        _fake,
        api,
        cfg,
        dir,
    } = marked_then_killed(
        "manual",
        "int_revive7",
        Auth::None,
        "revive_tasks = false",
        None,
    )
    .await;
    let agent = start(&cfg, Some(dir)).await;
    let log = wait_log(&agent, "revive_tasks = false").await;
    assert!(
        log.contains("kapacitor disable ID && kapacitor enable ID"),
        "{log}"
    );
    api.wait_task("manual", "the broken session noticed", WAIT, |v| {
        !v.executing
    })
    .await;
    assert!(api.calls().is_empty(), "{:?}", api.calls());
    let out = cli(&agent.data_dir(), &["tasks"]);
    assert!(out.starts_with("1 UDF session(s)"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("manual ") && l.contains("off")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_mode_tasks_through_the_stdio_relay_are_revived() {
    let Setup { fake, api, cfg } = setup("int_revive8", Auth::None, "").await;
    let agent = start(&cfg, None).await;
    let data = agent.data_dir();
    let relay = |batch: bool| {
        let mut args = vec![
            "stdio".to_string(),
            "--data-dir".into(),
            data.to_str().unwrap().into(),
        ];
        if batch {
            args.push("--batch".into());
        }
        Via::Process {
            prog: support::BIN.into(),
            args,
        }
    };
    api.define(stream_task("relayed", &relay(false), &["pagertree2"]), true);
    api.define(batch_task("relayed_batch", &relay(true)), true);
    for t in ["relayed", "relayed_batch"] {
        wait_running(&api, t, 1).await;
    }
    wait_cli(&data, &["tasks"], "two marks", |o| o.starts_with("2 ")).await;
    let dir = stop(agent, Stop::Kill9).await;
    // The relays exit with the agent; Kapacitor's next write fails.
    for t in ["relayed", "relayed_batch"] {
        let v = api
            .wait_task(t, "the relay's death noticed", WAIT, |v| !v.executing)
            .await;
        assert!(v.error.contains("broken pipe"), "{t}: {v:?}");
    }
    let agent = start(&cfg, Some(dir)).await;
    for t in ["relayed", "relayed_batch"] {
        wait_running(&api, t, 2).await;
        assert_eq!(api.patches(t), ["disabled", "enabled"], "{}", agent.log());
    }
    assert!(api.point(
        "relayed",
        alert("relay-1", "CRITICAL", "through the new relay", 1)
    ));
    assert!(api.snapshot("relayed").await);
    assert!(fake.wait_accepted(1, WAIT).await, "{}", agent.log());
    assert_eq!(fake.accepted()[0].marker, "through the new relay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_re_page_and_no_lost_recovery_across_a_revival() {
    let Setup { fake, api, cfg } = setup("int_revive9", Auth::None, "").await;
    let agent = start(&cfg, None).await;
    let data = agent.data_dir();
    let (stream, _) = via_socket(&agent);
    api.define(stream_task("cpu", &stream, &["pagertree2"]), true);
    wait_running(&api, "cpu", 1).await;

    assert!(api.point("cpu", alert("web1", "CRITICAL", "web1 CRITICAL", 1)));
    // The snapshot Kapacitor keeps (and restores after the revival) is
    // taken here: stale by the time of the restart.
    assert!(api.snapshot("cpu").await);
    assert!(fake.wait_accepted(1, WAIT).await, "{}", agent.log());
    assert!(api.point("cpu", alert("web1", "CRITICAL", "web1 still CRITICAL", 2)));
    assert!(api.point("cpu", alert("web1", "CRITICAL", "web1 still CRITICAL", 3)));
    let (_, _) = (api.snapshot("cpu").await, ());
    wait_delivered(&data).await;

    let dir = stop(agent, Stop::Kill9).await;
    let agent = start(&cfg, Some(dir)).await;
    wait_running(&api, "cpu", 2).await;
    assert_eq!(
        api.task("cpu").unwrap().restores,
        1,
        "the revived task restored the stale snapshot"
    );

    assert!(api.point(
        "cpu",
        alert("web1", "CRITICAL", "web1 CRITICAL after the revival", 4)
    ));
    assert!(api.point("cpu", alert("web1", "OK", "web1 OK", 5)));
    assert!(api.snapshot("cpu").await);
    assert!(fake.wait_accepted(2, WAIT).await, "{}", agent.log());
    wait_delivered(&agent.data_dir()).await;
    let accepted = fake.accepted();
    let markers: Vec<&str> = accepted.iter().map(|a| a.marker.as_str()).collect();
    assert_eq!(
        markers,
        ["web1 CRITICAL", "web1 OK"],
        "no re-page, the recovery sent"
    );
    let ok = &accepted[1].body;
    assert_eq!(ok["level"], "OK");
    assert_eq!(ok["previousLevel"], "CRITICAL", "{ok}");
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_restarts_with_traffic_flowing_leave_every_task_alive_and_the_ledger_exact() {
    const ROUNDS: usize = 10;
    let Setup { fake, api, cfg } = setup("int_revive10", Auth::None, "").await;
    let api = Arc::new(api);
    let mut agent = start(&cfg, None).await;
    let (stream, batch) = via_socket(&agent);
    api.define(stream_task("s", &stream, &["pagertree2"]), true);
    api.define(batch_task("b", &batch), true);
    for t in ["s", "b"] {
        wait_running(&api, t, 1).await;
    }

    // The traffic: every 20 ms each task gets its current level for the
    // alert that flips once per round, and CRITICAL for one that never
    // changes. With stateChangesOnly only a change pages.
    let level = |round: usize| {
        if round.is_multiple_of(2) {
            "CRITICAL"
        } else {
            "OK"
        }
    };
    let round_now = Arc::new(Mutex::new(0usize));
    let stop_feed = tokio_util::sync::CancellationToken::new();
    let feeder = {
        let (api, round_now, stop_feed) = (api.clone(), round_now.clone(), stop_feed.clone());
        tokio::spawn(async move {
            let mut n = 0i64;
            while !stop_feed.is_cancelled() {
                let r = *round_now.lock().unwrap();
                n += 1;
                for t in ["s", "b"] {
                    let flip = alert(
                        &format!("flip-{t}"),
                        level(r),
                        &format!("flip-{t} r{r} {}", level(r)),
                        n,
                    );
                    let steady = alert(
                        &format!("steady-{t}"),
                        "CRITICAL",
                        &format!("steady-{t}"),
                        n,
                    );
                    if t == "s" {
                        api.point(t, flip);
                        api.point(t, steady);
                    } else {
                        feed_batch(&api, t, flip);
                        feed_batch(&api, t, steady);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let mut took = Vec::new();
    for round in 0..ROUNDS {
        *round_now.lock().unwrap() = round;
        // The round's change is paged (and delivered, so a kill -9
        // leaves nothing on the wire to send twice).
        for t in ["s", "b"] {
            let want = format!("flip-{t} r{round} {}", level(round));
            let start_wait = Instant::now();
            while !fake.accepted().iter().any(|a| a.marker == want) {
                assert!(
                    start_wait.elapsed() < WAIT,
                    "round {round}: no {want:?}\n{}",
                    agent.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        wait_delivered(&agent.data_dir()).await;
        let how = if round.is_multiple_of(2) {
            Stop::Kill9
        } else {
            Stop::Sigterm
        };
        let dir = stop(agent, how).await;
        let restarted = Instant::now();
        agent = start(&cfg, Some(dir)).await;
        for t in ["s", "b"] {
            wait_running(&api, t, round as u32 + 2).await;
        }
        took.push(restarted.elapsed());
    }
    stop_feed.cancel();
    feeder.await.unwrap();
    eprintln!("restart → both tasks running again: {took:?}");

    for t in ["s", "b"] {
        let v = api.task(t).unwrap();
        assert!(v.enabled && v.executing && v.running, "{t}: {v:?}");
        assert_eq!(v.starts, ROUNDS as u32 + 1, "{t}: revived once per restart");
        assert_eq!(
            api.patches(t).len(),
            2 * ROUNDS,
            "{t}: one PATCH pair per restart"
        );
    }
    let per_id = fake.per_id();
    for t in ["s", "b"] {
        let want: Vec<String> = (0..ROUNDS)
            .map(|r| format!("flip-{t} r{r} {}", level(r)))
            .collect();
        assert_eq!(
            per_id[&format!("flip-{t}")],
            want,
            "{t}: every change paged once"
        );
        assert_eq!(
            per_id[&format!("steady-{t}")],
            [format!("steady-{t}")],
            "{t}: never re-paged"
        );
    }
    assert_eq!(fake.accepted_count(), 2 * (ROUNDS + 1));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

/// The fake Kapacitor API itself: the answers revival relies on have
/// Kapacitor's shapes, and a broken session is noticed only at a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_fake_answers_as_kapacitor_does() {
    // Revival off: only this test talks to the API.
    let Setup {
        fake: _fake,
        api,
        cfg,
    } = setup("int_revive11", Auth::None, "revive_tasks = false").await;
    let agent = start(&cfg, None).await;
    let (stream, _) = via_socket(&agent);
    let http = reqwest::Client::new();
    let url = |id: &str| format!("{}/kapacitor/v1/tasks/{id}", api.url());
    let get = |id: &str| {
        let req = http.get(url(id));
        async move {
            let r = req.send().await.unwrap();
            (
                r.status().as_u16(),
                serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).unwrap(),
            )
        }
    };
    let patch = |id: &str, body: &str| {
        let req = http.patch(url(id)).body(body.to_string());
        async move {
            let r = req.send().await.unwrap();
            (
                r.status().as_u16(),
                serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).unwrap(),
            )
        }
    };

    let (status, body) = get("nope").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        serde_json::json!({"error": "no task exists", "message": "no task exists"})
    );
    let (status, body) = patch("nope", r#"{"status":"enabled"}"#).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("task does not exist, cannot update"))
    );

    // A long UDF timeout: no keepalive write for a minute.
    api.define(
        stream_task("cpu", &stream, &["pagertree2"]).timeout(Duration::from_secs(120)),
        true,
    );
    wait_running(&api, "cpu", 1).await;
    let (status, t) = get("cpu").await;
    assert_eq!(status, 200);
    for (k, v) in [
        ("id", "cpu"),
        ("type", "stream"),
        ("status", "enabled"),
        ("error", ""),
        ("template-id", ""),
    ] {
        assert_eq!(t[k], v, "{k}: {t}");
    }
    assert_eq!(t["executing"], true);
    assert_eq!(t["dbrps"][0]["db"], "telegraf");
    assert!(
        t["script"].as_str().unwrap().contains("@pagertree()"),
        "{t}"
    );
    assert!(
        t["created"].is_string() && t["last-enabled"].is_string(),
        "{t}"
    );

    let (status, _) = patch("cpu", "not json").await;
    assert_eq!(status, 400);
    // Enabling an enabled task changes nothing.
    let (status, t) = patch("cpu", r#"{"status":"enabled"}"#).await;
    assert_eq!((status, t["executing"].as_bool()), (200, Some(true)));
    assert_eq!(api.task("cpu").unwrap().starts, 1);
    // Disabling ends the session the way Kapacitor does (the agent sees a
    // close and clears the mark); enabling starts a new one.
    let (_, t) = patch("cpu", r#"{"status":"disabled"}"#).await;
    assert_eq!(
        (t["status"].as_str(), t["executing"].as_bool()),
        (Some("disabled"), Some(false))
    );
    wait_log(&agent, "session mark cleared").await;
    let (_, t) = patch("cpu", r#"{"status":"enabled"}"#).await;
    assert_eq!(t["executing"], true);
    wait_running(&api, "cpu", 2).await;

    // The agent dies: Kapacitor still shows the task executing until its
    // next write fails.
    let dir = stop(agent, Stop::Kill9).await;
    let (_, t) = get("cpu").await;
    assert_eq!(t["executing"], true, "{t}");
    assert!(api.point("cpu", alert("x", "OK", "x", 1)));
    let v = api
        .wait_task("cpu", "the failed write", WAIT, |v| !v.executing)
        .await;
    let (_, t) = get("cpu").await;
    assert_eq!(
        (t["status"].as_str(), t["executing"].as_bool()),
        (Some("enabled"), Some(false))
    );
    let error = t["error"].as_str().unwrap();
    assert_eq!(error, v.error);
    assert!(
        error.starts_with("pagertree2: write error: write unix @->")
            && error.ends_with("stream.sock: write: broken pipe"),
        "{error}"
    );

    let r = http.delete(url("cpu")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(get("cpu").await.0, 404);
    drop(dir);
}
