//! `.ServerInfo` through the real binary (config.md, `[kapacitor]`): read
//! from Kapacitor's API (tests/support/kapacitor.rs, `api`) at the first
//! Init, with basic auth or a signed bearer token, kept in data_dir so a
//! later start without the API keeps the same ids; with the API down and
//! nothing kept, `localhost` and empty ids for that run, with a warning.

mod support;

#[path = "support/pagertree.rs"]
mod pagertree;

use std::time::{Duration, Instant};

use pagertree::{FakePagerTree, Fmt};
use support::Agent;
use support::kapacitor::api::{Auth, KapacitorApi, down_url};
use support::kapacitor::{Kapacitor, opt, point};

const ID_TEMPLATE: &str =
    "{{ .ServerInfo.Hostname }}|{{ .ServerInfo.ClusterID }}|{{ .ServerInfo.ServerID }}";

fn config(kapacitor: &str, endpoint: &str) -> String {
    format!(
        "[kapacitor]\n{kapacitor}\n[delivery]\ndefault_endpoint = \"oncall\"\nretry_initial = \"100ms\"\n\
         [endpoints.oncall]\nurl = \"{endpoint}\"\n"
    )
}

/// One node with the ServerInfo id template and its task as the message;
/// one critical point; returns the id and body PagerTree received for it
/// (found by its message: a previous agent may deliver again what it had
/// not recorded as delivered).
async fn page_once(agent: &Agent, fake: &FakePagerTree, task: &str) -> (String, String) {
    let mut k = Kapacitor::connect(agent.stream_socket()).await;
    let init = k
        .init(
            task,
            "pagertree2",
            vec![
                opt("levelFrom").string("level"),
                opt("id").string(ID_TEMPLATE),
                opt("message").string("{{ .TaskName }}"),
            ],
        )
        .await;
    assert!(init.success, "{}\n{}", init.error, agent.log());
    k.point(
        point("cpu")
            .time(1_700_000_000_000_000_000)
            .tag("level", "CRITICAL")
            .field("v", 99.0),
    )
    .await;
    let _ = k.snapshot().await;
    let start = Instant::now();
    let a = loop {
        if let Some(a) = fake.accepted().into_iter().find(|a| a.marker == task) {
            break a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no page for {task}; log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    k.close().await;
    (a.id, String::from_utf8_lossy(&a.raw).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_kapacitor_with_basic_auth_then_kept_for_good() {
    let fake = FakePagerTree::start().await;
    let endpoint = fake.integration("int_siBasic1", Fmt::Kapacitor, None);
    let api = KapacitorApi::start(
        "kap01.example",
        "cluster-1",
        "server-1",
        Auth::Basic {
            user: "kuser".into(),
            password: "kpass-secret".into(),
        },
    );
    let cfg = config(
        &format!(
            "url = \"{}\"\nusername = \"kuser\"\npassword = \"kpass-secret\"",
            api.url()
        ),
        &endpoint,
    );
    let mut agent = Agent::builder().config(&cfg).start();
    let (id, body) = page_once(&agent, &fake, "t1").await;
    assert_eq!(id, "kap01.example|cluster-1|server-1", "{}", agent.log());
    // The default details ({{ json . }}) carry the same ServerInfo.
    assert!(
        body.contains("kap01.example") && body.contains("cluster-1"),
        "{body}"
    );
    let reqs = api.requests();
    assert_eq!(reqs.len(), 1, "read once: {reqs:?}");
    assert_eq!(reqs[0].0, "/kapacitor/v1/debug/vars");
    assert!(
        reqs[0]
            .1
            .as_deref()
            .is_some_and(|h| h.starts_with("Basic "))
    );
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(agent.data_dir().join("server_info.json")).unwrap())
            .unwrap();
    assert_eq!(kept["hostname"], "kap01.example");
    let log = agent.log();
    assert!(!log.contains("kpass-secret"), "{log}");

    // A second start, Kapacitor's API gone: the kept values, no warning.
    assert!(agent.terminate().success());
    let dir = agent.kill_keep_dir();
    drop(api);
    let cfg = config(&format!("url = \"{}\"", down_url()), &endpoint);
    let agent = Agent::builder().config(&cfg).dir(dir).start();
    let (id, _) = page_once(&agent, &fake, "t2").await;
    assert_eq!(id, "kap01.example|cluster-1|server-1", "{}", agent.log());
    assert!(
        !agent.log().contains("cannot read ServerInfo"),
        "{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_secret_signs_a_bearer_token_and_config_values_win() {
    let fake = FakePagerTree::start().await;
    let endpoint = fake.integration("int_siBearer1", Fmt::Kapacitor, None);
    let api = KapacitorApi::start(
        "kap02",
        "cluster-2",
        "server-2",
        Auth::Bearer {
            user: "kuser".into(),
            secret: "shh-its-a-secret".into(),
        },
    );
    // hostname set in the config wins; the ids come from the API.
    let cfg = config(
        &format!(
            "url = \"{}\"\nusername = \"kuser\"\nshared_secret = \"shh-its-a-secret\"\nhostname = \"configured\"",
            api.url()
        ),
        &endpoint,
    );
    let agent = Agent::builder().config(&cfg).start();
    let (id, _) = page_once(&agent, &fake, "t1").await;
    assert_eq!(id, "configured|cluster-2|server-2", "{}", agent.log());
    assert!(
        api.requests()[0]
            .1
            .as_deref()
            .is_some_and(|h| h.starts_with("Bearer ")),
        "{:?}",
        api.requests()
    );
    assert!(!agent.log().contains("shh-its-a-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_down_and_nothing_kept_gives_localhost_for_this_run_with_a_warning() {
    let fake = FakePagerTree::start().await;
    let endpoint = fake.integration("int_siDown1", Fmt::Kapacitor, None);
    let cfg = config(&format!("url = \"{}\"", down_url()), &endpoint);
    let mut agent = Agent::builder().config(&cfg).start();
    let (id, _) = page_once(&agent, &fake, "t1").await;
    assert_eq!(id, "localhost||", "{}", agent.log());
    let log = agent.log();
    assert!(
        log.contains("cannot read ServerInfo from Kapacitor") && log.contains("[kapacitor]"),
        "{log}"
    );
    assert!(!agent.data_dir().join("server_info.json").exists());

    // Kapacitor's API is back at the next start: read then.
    assert!(agent.terminate().success());
    let dir = agent.kill_keep_dir();
    let api = KapacitorApi::start("kap03", "c3", "s3", Auth::None);
    let cfg = config(&format!("url = \"{}\"", api.url()), &endpoint);
    let agent = Agent::builder().config(&cfg).dir(dir).start();
    let (id, _) = page_once(&agent, &fake, "t2").await;
    assert_eq!(id, "kap03|c3|s3", "{}", agent.log());
}
