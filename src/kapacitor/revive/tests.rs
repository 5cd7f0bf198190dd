use super::*;
use std::collections::HashMap;

/// A task in the fake: executing until the given (paused-clock) time.
#[derive(Debug, Clone)]
struct FakeTask {
    enabled: bool,
    executing_until: Option<Instant>,
}

/// Kapacitor's task API, deterministic: enabling a disabled task starts
/// it, and its Init arrives at once.
#[derive(Default)]
struct FakeApi {
    tasks: Mutex<HashMap<String, FakeTask>>,
    calls: Mutex<Vec<String>>,
    down_until: Mutex<Option<Instant>>,
    refuse: Mutex<bool>,
    failing_enables: Mutex<u32>,
    arrivals: Mutex<Option<Arc<Arrivals>>>,
    /// Each GET takes this long; the most GETs in flight at once.
    get_delay: Mutex<Duration>,
    in_flight: Mutex<(usize, usize)>,
}

impl FakeApi {
    fn with_task(self, id: &str, enabled: bool, executing_for: Option<Duration>) -> Self {
        self.tasks.lock().unwrap().insert(
            id.into(),
            FakeTask {
                enabled,
                executing_until: executing_for.map(|d| Instant::now() + d),
            },
        );
        self
    }
    fn down_for(self, d: Duration) -> Self {
        *self.down_until.lock().unwrap() = Some(Instant::now() + d);
        self
    }
    fn calls(&self, prefix: &str) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .cloned()
            .collect()
    }
    fn down(&self) -> bool {
        self.down_until
            .lock()
            .unwrap()
            .is_some_and(|u| Instant::now() < u)
    }
}

impl TaskApi for FakeApi {
    async fn get_task(&self, id: &str) -> Result<Lookup, ApiFailure> {
        self.calls.lock().unwrap().push(format!("GET {id}"));
        let delay = *self.get_delay.lock().unwrap();
        if !delay.is_zero() {
            {
                let mut f = self.in_flight.lock().unwrap();
                f.0 += 1;
                f.1 = f.1.max(f.0);
            }
            tokio::time::sleep(delay).await;
            self.in_flight.lock().unwrap().0 -= 1;
        }
        if self.down() {
            return Err(ApiFailure::Unreachable("connection refused".into()));
        }
        if *self.refuse.lock().unwrap() {
            return Err(ApiFailure::Refused(
                "HTTP 401: authentication failed".into(),
            ));
        }
        let now = Instant::now();
        Ok(match self.tasks.lock().unwrap().get(id) {
            None => Lookup::NotFound,
            Some(t) => Lookup::Found {
                enabled: t.enabled,
                executing: t.executing_until.is_some_and(|u| now < u),
                error: String::new(),
            },
        })
    }

    async fn set_status(&self, id: &str, enabled: bool) -> Result<Lookup, ApiFailure> {
        let status = if enabled { "enabled" } else { "disabled" };
        self.calls
            .lock()
            .unwrap()
            .push(format!("PATCH {id} {status}"));
        if self.down() {
            return Err(ApiFailure::Unreachable("connection refused".into()));
        }
        {
            let mut failing = self.failing_enables.lock().unwrap();
            if enabled && *failing > 0 {
                *failing -= 1;
                return Err(ApiFailure::Unreachable("HTTP 503".into()));
            }
        }
        let mut tasks = self.tasks.lock().unwrap();
        let Some(t) = tasks.get_mut(id) else {
            return Ok(Lookup::NotFound);
        };
        if t.enabled != enabled {
            t.enabled = enabled;
            if enabled {
                t.executing_until = Some(Instant::now() + Duration::from_secs(1 << 30));
                if let Some(a) = self.arrivals.lock().unwrap().as_ref() {
                    a.initialized(id);
                }
            } else {
                t.executing_until = None;
            }
        }
        Ok(Lookup::Found {
            enabled: t.enabled,
            executing: enabled,
            error: String::new(),
        })
    }
}

#[derive(Default)]
struct FakeMarks {
    dropped: Mutex<Vec<(String, i64)>>,
    states: Mutex<Vec<(String, String, String)>>,
}

impl MarkStore for FakeMarks {
    fn drop_marks(&self, task: &str, before_ns: i64) {
        self.dropped.lock().unwrap().push((task.into(), before_ns));
    }
    fn record(&self, task: &str, state: &Revival, _at_ns: i64) {
        self.states
            .lock()
            .unwrap()
            .push((task.into(), state.name().into(), state.detail().into()));
    }
}

impl FakeMarks {
    fn last(&self, task: &str) -> (String, String) {
        self.states
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(t, _, _)| t == task)
            .map(|(_, s, d)| (s.clone(), d.clone()))
            .unwrap_or_default()
    }
    fn dropped(&self) -> Vec<String> {
        self.dropped
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }
}

const STARTED: i64 = 42;

struct Run {
    api: Arc<FakeApi>,
    marks: Arc<FakeMarks>,
    arrivals: Arc<Arrivals>,
    shutdown: CancellationToken,
}

fn setup(api: FakeApi, marks: &[(&str, &str)]) -> (Run, Vec<Plan>) {
    let plans = plan(marks.iter().copied());
    let arrivals = Arc::new(Arrivals::new(plans.iter().map(|p| p.task.clone())));
    *api.arrivals.lock().unwrap() = Some(arrivals.clone());
    (
        Run {
            api: Arc::new(api),
            marks: Arc::new(FakeMarks::default()),
            arrivals,
            shutdown: CancellationToken::new(),
        },
        plans,
    )
}

impl Run {
    async fn go(&self, plans: Vec<Plan>, settings: Settings) -> Vec<(String, Outcome)> {
        revive_all(
            self.api.clone(),
            self.marks.clone(),
            self.arrivals.clone(),
            plans,
            settings,
            STARTED,
            self.shutdown.clone(),
        )
        .await
    }
}

fn settings() -> Settings {
    Settings::new(Duration::from_secs(600))
}

fn one(task: &str, o: Outcome) -> Vec<(String, Outcome)> {
    vec![(task.to_string(), o)]
}

#[test]
fn plan_groups_marks_by_task() {
    let p = plan([("b", "n1"), ("a", "n2"), ("b", "n3")]);
    assert_eq!(
        p,
        [
            Plan {
                task: "a".into(),
                nodes: vec!["n2".into()]
            },
            Plan {
                task: "b".into(),
                nodes: vec!["n1".into(), "n3".into()]
            },
        ]
    );
}

#[test]
fn arrivals_watch_only_the_marked_tasks() {
    let a = Arrivals::new(["t".to_string()]);
    let mut rx = a.subscribe();
    a.initialized("other");
    assert!(!a.arrived("other"));
    assert!(!rx.has_changed().unwrap());
    a.initialized("t");
    assert!(a.arrived("t"));
    assert!(rx.has_changed().unwrap());
    rx.borrow_and_update();
    a.initialized("t");
    assert!(!rx.has_changed().unwrap(), "a second Init changes nothing");
}

#[tokio::test(start_paused = true)]
async fn a_broken_task_is_disabled_then_enabled_once_when_kapacitor_noticed() {
    // Kapacitor notices the broken session 5s after the start (its next
    // keepalive); the task has two @pagertree nodes: one PATCH pair.
    let api = FakeApi::default().with_task("cpu", true, Some(Duration::from_secs(5)));
    let (run, plans) = setup(api, &[("cpu", "pagertree2"), ("cpu", "pagertree5")]);
    let start = Instant::now();
    assert_eq!(
        run.go(plans, settings()).await,
        one("cpu", Outcome::Revived)
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took <= Duration::from_secs(6),
        "{took:?}"
    );
    assert_eq!(
        run.api.calls("PATCH"),
        ["PATCH cpu disabled", "PATCH cpu enabled"]
    );
    // Polled about once a second meanwhile.
    let gets = run.api.calls("GET").len();
    assert!((5..=7).contains(&gets), "{gets} GETs");
    assert_eq!(run.marks.last("cpu").0, "revived");
    assert!(run.marks.dropped().is_empty());
    let states: Vec<String> = run
        .marks
        .states
        .lock()
        .unwrap()
        .iter()
        .map(|(_, s, _)| s.clone())
        .collect();
    assert_eq!(states, ["waiting", "waiting", "revived"]);
}

#[tokio::test(start_paused = true)]
async fn a_task_a_human_disabled_is_not_touched_and_its_mark_dropped() {
    let api = FakeApi::default().with_task("t", false, None);
    let (run, plans) = setup(api, &[("t", "n")]);
    assert_eq!(
        run.go(plans, settings()).await,
        one("t", Outcome::SkippedDisabled)
    );
    assert!(run.api.calls("PATCH").is_empty());
    assert_eq!(
        *run.marks.dropped.lock().unwrap(),
        [("t".to_string(), STARTED)]
    );
    let (state, why) = run.marks.last("t");
    assert_eq!(state, "skipped");
    assert!(why.contains("disabled"), "{why}");
}

#[tokio::test(start_paused = true)]
async fn a_task_disabled_while_waiting_is_not_touched_either() {
    let api = FakeApi::default().with_task("t", true, Some(Duration::from_secs(3600)));
    let (run, plans) = setup(api, &[("t", "n")]);
    let fake = run.api.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        fake.tasks.lock().unwrap().get_mut("t").unwrap().enabled = false;
    });
    assert_eq!(
        run.go(plans, settings()).await,
        one("t", Outcome::SkippedDisabled)
    );
    assert!(run.api.calls("PATCH").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_deleted_task_is_not_touched_and_its_mark_dropped() {
    let (run, plans) = setup(FakeApi::default(), &[("gone", "n")]);
    assert_eq!(
        run.go(plans, settings()).await,
        one("gone", Outcome::SkippedDeleted)
    );
    assert!(run.api.calls("PATCH").is_empty());
    assert_eq!(run.marks.dropped(), ["gone"]);
    assert!(run.marks.last("gone").1.contains("404"));
}

#[tokio::test(start_paused = true)]
async fn a_task_that_reconnects_by_itself_is_not_touched() {
    let api = FakeApi::default().with_task("t", true, Some(Duration::from_secs(3600)));
    let (run, plans) = setup(api, &[("t", "n")]);
    let arrivals = run.arrivals.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        arrivals.initialized("t");
    });
    let start = Instant::now();
    assert_eq!(
        run.go(plans, settings()).await,
        one("t", Outcome::Reconnected)
    );
    // Woken by the Init, not by the next poll.
    assert_eq!(start.elapsed(), Duration::from_millis(2500));
    assert!(run.api.calls("PATCH").is_empty());
    assert!(run.marks.dropped().is_empty());
    assert_eq!(run.marks.last("t").0, "reconnected");
}

#[tokio::test(start_paused = true)]
async fn an_init_before_the_revival_starts_means_no_call_at_all() {
    let api = FakeApi::default().with_task("t", true, None);
    let (run, plans) = setup(api, &[("t", "n")]);
    run.arrivals.initialized("t");
    assert_eq!(
        run.go(plans, settings()).await,
        one("t", Outcome::Reconnected)
    );
    assert!(run.api.calls("").is_empty());
}

#[tokio::test(start_paused = true)]
async fn kapacitor_down_for_a_while_then_up_still_revives() {
    let api = FakeApi::default()
        .with_task("t", true, None)
        .down_for(Duration::from_secs(40));
    let (run, plans) = setup(api, &[("t", "n")]);
    let start = Instant::now();
    assert_eq!(run.go(plans, settings()).await, one("t", Outcome::Revived));
    // Backoff 1, 2, 4, 8, 15, 15 s: tried at 0, 1, 3, 7, 15, 30, 45.
    assert_eq!(start.elapsed(), Duration::from_secs(45));
    assert_eq!(run.api.calls("GET").len(), 7);
    assert_eq!(
        run.api.calls("PATCH"),
        ["PATCH t disabled", "PATCH t enabled"]
    );
}

#[tokio::test(start_paused = true)]
async fn kapacitor_down_past_revive_for_gives_up_and_keeps_the_mark() {
    let api = FakeApi::default()
        .with_task("t", true, None)
        .down_for(Duration::from_secs(3600));
    let (run, plans) = setup(api, &[("t", "n")]);
    let start = Instant::now();
    let s = Settings::new(Duration::from_secs(60));
    assert_eq!(run.go(plans, s).await, one("t", Outcome::GaveUp));
    assert_eq!(start.elapsed(), Duration::from_secs(60));
    assert!(run.api.calls("PATCH").is_empty());
    assert!(run.marks.dropped().is_empty(), "the mark is kept");
    let (state, why) = run.marks.last("t");
    assert_eq!(state, "gave up");
    assert!(why.contains("revive_for = 1m"), "{why}");
    assert!(why.contains("connection refused"), "{why}");
    assert!(
        why.contains("kapacitor disable t && kapacitor enable t"),
        "{why}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_kapacitor_shows_executing_past_revive_for_gives_up() {
    let api = FakeApi::default().with_task("t", true, Some(Duration::from_secs(3600)));
    let (run, plans) = setup(api, &[("t", "n")]);
    let s = Settings::new(Duration::from_secs(30));
    assert_eq!(run.go(plans, s).await, one("t", Outcome::GaveUp));
    assert!(run.api.calls("PATCH").is_empty());
    assert!(run.marks.last("t").1.contains("executing"));
}

#[tokio::test(start_paused = true)]
async fn refused_credentials_give_up_at_once() {
    let api = FakeApi::default().with_task("t", true, None);
    *api.refuse.lock().unwrap() = true;
    let (run, plans) = setup(api, &[("t", "n")]);
    let start = Instant::now();
    assert_eq!(run.go(plans, settings()).await, one("t", Outcome::GaveUp));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(run.api.calls("").len(), 1);
    let (_, why) = run.marks.last("t");
    assert!(why.contains("401") && why.contains("username"), "{why}");
}

#[tokio::test(start_paused = true)]
async fn an_enable_that_fails_after_the_disable_is_retried_alone() {
    let api = FakeApi::default().with_task("t", true, None);
    *api.failing_enables.lock().unwrap() = 2;
    let (run, plans) = setup(api, &[("t", "n")]);
    assert_eq!(run.go(plans, settings()).await, one("t", Outcome::Revived));
    assert_eq!(
        run.api.calls("PATCH"),
        [
            "PATCH t disabled",
            "PATCH t enabled",
            "PATCH t enabled",
            "PATCH t enabled"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn many_tasks_each_get_their_own_outcome() {
    let api = FakeApi::default()
        .with_task("broken", true, Some(Duration::from_secs(2)))
        .with_task("human", false, None)
        .with_task("batch", true, Some(Duration::from_secs(4)));
    let (run, plans) = setup(
        api,
        &[
            ("broken", "a"),
            ("broken", "b"),
            ("human", "a"),
            ("gone", "a"),
            ("batch", "a"),
        ],
    );
    let mut got = run.go(plans, settings()).await;
    got.sort();
    assert_eq!(
        got,
        [
            ("batch".to_string(), Outcome::Revived),
            ("broken".to_string(), Outcome::Revived),
            ("gone".to_string(), Outcome::SkippedDeleted),
            ("human".to_string(), Outcome::SkippedDisabled),
        ]
    );
    let mut patched = run.api.calls("PATCH");
    patched.sort();
    assert_eq!(
        patched,
        [
            "PATCH batch disabled",
            "PATCH batch enabled",
            "PATCH broken disabled",
            "PATCH broken enabled"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn many_tasks_never_flood_kapacitor() {
    let mut api = FakeApi::default();
    let names: Vec<String> = (0..30).map(|i| format!("t{i:02}")).collect();
    for n in &names {
        api = api.with_task(n, true, None);
    }
    *api.get_delay.lock().unwrap() = Duration::from_millis(100);
    let marks: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "n")).collect();
    let (run, plans) = setup(api, &marks);
    let got = run.go(plans, settings()).await;
    assert_eq!(got.len(), 30);
    assert!(got.iter().all(|(_, o)| *o == Outcome::Revived), "{got:?}");
    assert_eq!(run.api.in_flight.lock().unwrap().1, MAX_IN_FLIGHT);
}

#[tokio::test(start_paused = true)]
async fn shutdown_interrupts_and_keeps_the_mark() {
    let api = FakeApi::default().with_task("t", true, Some(Duration::from_secs(3600)));
    let (run, plans) = setup(api, &[("t", "n")]);
    let stop = run.shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.cancel();
    });
    assert_eq!(
        run.go(plans, settings()).await,
        one("t", Outcome::Interrupted)
    );
    assert!(run.marks.dropped().is_empty());
    assert!(run.api.calls("PATCH").is_empty());
}

#[test]
fn off_records_every_task_and_keeps_the_marks() {
    let marks = FakeMarks::default();
    off(&plan([("a", "n"), ("b", "n")]), &marks);
    assert_eq!(marks.last("a").0, "off");
    assert_eq!(marks.last("b").0, "off");
    assert!(marks.dropped().is_empty());
}
