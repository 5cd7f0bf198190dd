//! `simulate` through the real binary, on every example of `tickscripts/`:
//! each script with its recorded data must produce the events its comments
//! promise. Also the table output, the notice about skipped nodes, and errors.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kapacitor-pagertree"));
    for (k, _) in std::env::vars() {
        if k.starts_with("KAPACITOR_PAGERTREE_") {
            c.env_remove(k);
        }
    }
    c
}

fn run(args: &[&str]) -> Output {
    bin()
        .current_dir(ROOT)
        .arg("simulate")
        .args(args)
        .output()
        .unwrap()
}

/// The events of one example, as (id, level, previousLevel) plus the parsed objects.
fn events(example: &str, extra: &[&str]) -> (Vec<(String, String, String)>, Vec<Value>, String) {
    let tick = format!("tickscripts/{example}.tick");
    let data = format!("tickscripts/{example}.lp");
    let mut args = vec!["--tick", &tick, "--data", &data, "--format", "json"];
    args.extend_from_slice(extra);
    let o = run(&args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{example}: {stderr}");
    let objects: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{example}: not JSON ({e}): {l}"))
        })
        .collect();
    let triples = objects
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_string(),
                v["level"].as_str().unwrap().to_string(),
                v["previousLevel"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (triples, objects, stderr)
}

fn t(id: &str, level: &str, previous: &str) -> (String, String, String) {
    (id.to_string(), level.to_string(), previous.to_string())
}

/// The examples this file checks; every `.tick` in `tickscripts/` must be here.
const TESTED: &[&str] = &[
    "high_cpu",
    "high_cpu_mode2",
    "batch_cpu",
    "deadman",
    "disk_webhook",
];

#[test]
fn every_example_has_data_and_a_test() {
    for entry in std::fs::read_dir(Path::new(ROOT).join("tickscripts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "tick") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            assert!(
                TESTED.contains(&stem.as_str()),
                "tickscripts/{stem}.tick has no test in cli_simulate.rs"
            );
            assert!(
                path.with_extension("lp").exists(),
                "tickscripts/{stem}.tick has no .lp data"
            );
        }
    }
}

#[test]
fn mode2_pages_once_per_change_of_each_id() {
    let (events, objects, stderr) = events("high_cpu_mode2", &[]);
    // The upstream alert repeats CRITICAL for web01 at :03; stateChangesOnly drops it.
    assert_eq!(
        events,
        [
            t("high_cpu:web01", "WARNING", "OK"),
            t("high_cpu:web02", "CRITICAL", "OK"),
            t("high_cpu:web01", "CRITICAL", "WARNING"),
            t("high_cpu:web02", "OK", "CRITICAL"),
            t("high_cpu:web01", "OK", "CRITICAL"),
        ]
    );
    // The message comes from the point (messageFrom), the time from the point.
    assert_eq!(
        objects[2]["message"],
        "high_cpu:web01 is CRITICAL: 93.4% user CPU"
    );
    assert_eq!(objects[2]["time"], "2023-11-14T22:15:20Z");
    assert_eq!(objects[0]["task"], "high_cpu_mode2");
    assert!(
        stderr.contains("not executing from1.where(), window2, mean3, alert4"),
        "{stderr}"
    );
    assert!(
        stderr.contains("6 points → 5 events; nothing was sent"),
        "{stderr}"
    );
}

#[test]
fn deadman_pages_when_a_host_goes_quiet_and_again_after_it_came_back() {
    let (events, objects, stderr) = events("deadman", &[]);
    // noRecoveries: the OK of db01 is not sent, so db01's next CRITICAL follows a
    // CRITICAL as far as PagerTree is concerned, and it is a change: it pages.
    assert_eq!(
        events,
        [
            t("deadman:db01", "CRITICAL", "OK"),
            t("deadman:db02", "CRITICAL", "OK"),
            t("deadman:db01", "CRITICAL", "CRITICAL"),
        ]
    );
    assert!(
        objects.iter().all(|o| o["recoverable"] == false),
        "noRecoveries makes events unrecoverable"
    );
    assert_eq!(objects[2]["time"], "2023-11-14T22:38:20Z");
    assert!(stderr.contains("not executing deadman2"), "{stderr}");
}

#[test]
fn table_output_has_one_row_per_event() {
    let o = run(&[
        "--tick",
        "tickscripts/deadman.tick",
        "--data",
        "tickscripts/deadman.lp",
    ]);
    assert!(o.status.success());
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("TIME")
            && lines[0].contains("PREVIOUS")
            && lines[0].ends_with("MESSAGE")
    );
    assert!(
        lines[1].contains("CRITICAL  OK") && lines[1].contains("deadman:db01 is dead"),
        "{out}"
    );
}

#[test]
fn script_and_data_errors_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let tick = dir.path().join("bad.tick");
    std::fs::write(
        &tick,
        "stream\n  |from()\n  @pagertree()\n    .levelFrom('level')\n    .history(2.5)\n",
    )
    .unwrap();
    let data = dir.path().join("d.lp");
    std::fs::write(&data, "cpu,level=CRITICAL v=1 1\n").unwrap();
    let o = bin()
        .arg("simulate")
        .arg("--tick")
        .arg(&tick)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 5: unexpected arg to history, got DOUBLE expected INT"),
        "{err}"
    );

    std::fs::write(
        &tick,
        "stream\n  |from()\n  @pagertree()\n    .levelFrom('level')\n    .crit('\"v\" > 1')\n",
    )
    .unwrap();
    let o = bin()
        .arg("simulate")
        .arg("--tick")
        .arg(&tick)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("refused its options") && err.contains("levelFrom"),
        "{err}"
    );

    std::fs::write(&tick, "stream|from()@pagertree().levelFrom('level')").unwrap();
    std::fs::write(&data, "cpu,level=CRITICAL v=1 1\ncpu v=oops 2\n").unwrap();
    let o = bin()
        .arg("simulate")
        .arg("--tick")
        .arg(&tick)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("line 2, column 7"), "{err}");
}

#[test]
fn precision_flag_scales_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let tick = dir.path().join("p.tick");
    std::fs::write(&tick, "stream|from()@pagertree().levelFrom('level')").unwrap();
    let data = dir.path().join("p.lp");
    std::fs::write(&data, "cpu,level=WARNING v=1 90\n").unwrap();
    let o = bin()
        .arg("simulate")
        .arg("--tick")
        .arg(&tick)
        .arg("--data")
        .arg(&data)
        .args(["--precision", "s", "--format", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_str(String::from_utf8(o.stdout).unwrap().trim()).unwrap();
    assert_eq!(v["time"], "1970-01-01T00:01:30Z");
    assert_eq!(v["task"], "p");
}

#[test]
fn mode1_high_cpu_pages_on_each_change_and_recovery() {
    let (events, objects, stderr) = events("high_cpu", &[]);
    // web01: 45 → 86 (WARNING) → 93 (CRITICAL) → 95 (still CRITICAL: no page) → 70 (OK).
    // web02: 50 → 52 (OK, nothing) → 91 (CRITICAL) → 60 (OK).
    assert_eq!(
        events,
        [
            t("high_cpu:web01", "WARNING", "OK"),
            t("high_cpu:web01", "CRITICAL", "WARNING"),
            t("high_cpu:web02", "CRITICAL", "OK"),
            t("high_cpu:web02", "OK", "CRITICAL"),
            t("high_cpu:web01", "OK", "CRITICAL"),
        ]
    );
    assert_eq!(
        objects[0]["message"],
        "high_cpu:web01 is WARNING: 85.7% user CPU"
    );
    // Go prints 91.0 as 91.
    assert_eq!(
        objects[2]["message"],
        "high_cpu:web02 is CRITICAL: 91% user CPU"
    );
    // The OK of web01 comes two minutes after its first non-OK event.
    assert_eq!(objects[4]["duration"], 180_000_000_000i64);
    assert_eq!(objects[4]["data"]["series"][0]["tags"]["host"], "web01");
    assert!(
        stderr.contains("not executing from1.where(), window2, mean3"),
        "{stderr}"
    );
}

#[test]
fn batch_all_needs_every_sample_at_the_level() {
    let (seq, objects, stderr) = events("batch_cpu", &[]);
    // db01's batches (3m of samples, cut every minute): [95 96] CRITICAL;
    // [95 96 85 97] WARNING (85 is not > 90); [.. 85 .. 99] WARNING again (no page);
    // [85 97 98 99 99 50] OK. db02 never has every sample above 80.
    assert_eq!(
        seq,
        [
            t("cpu_sustained:db01", "CRITICAL", "OK"),
            t("cpu_sustained:db01", "WARNING", "CRITICAL"),
            t("cpu_sustained:db01", "OK", "WARNING"),
        ]
    );
    assert_eq!(objects[2]["message"], "cpu_sustained:db01: back to normal");
    assert!(stderr.contains("in 8 batches"), "{stderr}");
    // A larger schedule: one batch of everything per host, so db01 is never all above 80.
    let (events, _, _) = events("batch_cpu", &["--every", "10m"]);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn webhook_example_pages_per_disk() {
    let (events, objects, _) = events("disk_webhook", &[]);
    assert_eq!(
        events,
        [
            t("disk:db01:/var", "WARNING", "OK"),
            t("disk:db01:/var", "CRITICAL", "WARNING"),
            t("disk:db01:/var", "OK", "CRITICAL"),
        ]
    );
    assert_eq!(objects[0]["message"], "db01 /var is 90% full");
    assert_eq!(objects[1]["message"], "db01 /var is 97.5% full");
}

/// Every ```tickscript block of the README is a script the node accepts:
/// it goes through `simulate` (Init included) without an error.
#[test]
fn readme_tickscripts_are_accepted() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```tickscript\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 2, "the README shows Mode 1 and Mode 2");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("empty.lp");
    std::fs::write(&data, "").unwrap();
    for (i, block) in blocks.iter().enumerate() {
        let tick = dir.path().join(format!("readme{i}.tick"));
        std::fs::write(&tick, block).unwrap();
        let o = bin()
            .arg("simulate")
            .arg("--tick")
            .arg(&tick)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "README block {i} is refused: {}\n{block}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
