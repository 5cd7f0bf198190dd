//! `version` and `--help` through the real binary.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kapacitor-pagertree"))
}

#[test]
fn version_prints_the_crate_version() {
    let o = bin().arg("version").output().unwrap();
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        format!("kapacitor-pagertree {}\n", env!("CARGO_PKG_VERSION"))
    );
    let o = bin().arg("--version").output().unwrap();
    assert!(
        String::from_utf8(o.stdout)
            .unwrap()
            .contains(env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_reads_like_the_docs() {
    let o = bin().arg("--help").output().unwrap();
    assert!(o.status.success());
    let help = String::from_utf8(o.stdout).unwrap();
    for needle in [
        "@pagertree()",
        "KAPACITOR_PAGERTREE_URL",
        "--config",
        "--data-dir",
        "--http-addr",
        "--log-format",
        "check",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}: {help}");
    }
    let o = bin().args(["check", "--help"]).output().unwrap();
    let help = String::from_utf8(o.stdout).unwrap();
    assert!(
        help.contains("--connect") && help.contains("never an alert"),
        "{help}"
    );
}
