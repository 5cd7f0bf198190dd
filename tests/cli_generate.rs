//! `generate --out DIR` through the real binary: the man pages and shell
//! completions the packages ship cover every subcommand `--help` lists.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kapacitor-pagertree"))
}

/// The subcommands `--help` lists (its "Commands:" section), less clap's `help`.
fn listed_subcommands() -> Vec<String> {
    let o = bin().arg("--help").output().unwrap();
    assert!(o.status.success());
    let help = String::from_utf8(o.stdout).unwrap();
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 9, "too few subcommands in --help: {help}");
    assert!(!names.iter().any(|n| n == "generate"), "generate is hidden");
    names
}

#[test]
fn man_pages_and_completions_cover_every_subcommand() {
    let subcommands = listed_subcommands();
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["generate", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed = String::from_utf8(o.stdout).unwrap();

    let read = |rel: &str| {
        let path = dir.path().join(rel);
        assert!(
            listed.contains(&path.display().to_string()),
            "{rel} not reported: {listed}"
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    let top = read("man/kapacitor-pagertree.1");
    assert!(top.starts_with(".ie"), "not roff: {top}");
    assert!(top.contains("PagerTree"), "{top}");
    for name in &subcommands {
        // roff escapes '-' as '\-'.
        let reference = format!("kapacitor\\-pagertree\\-{}(1)", name.replace('-', "\\-"));
        assert!(top.contains(&reference), "man page lacks {reference}");
        let page = read(&format!("man/kapacitor-pagertree-{name}.1"));
        assert!(page.contains(".TH"), "{name}: {page}");
    }
    // The outbox actions get pages of their own.
    for action in ["list", "retry", "drop"] {
        read(&format!("man/kapacitor-pagertree-outbox-{action}.1"));
    }
    // Each shell spells the global --config flag its own way.
    for (completion, config_flag) in [
        ("completions/kapacitor-pagertree.bash", "--config"),
        ("completions/_kapacitor-pagertree", "--config="),
        ("completions/kapacitor-pagertree.fish", "-l config"),
    ] {
        let text = read(completion);
        for name in &subcommands {
            assert!(text.contains(name.as_str()), "{completion} lacks {name}");
        }
        assert!(
            text.contains(config_flag),
            "{completion} lacks {config_flag}"
        );
    }
}

#[test]
fn an_unwritable_out_directory_fails_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken");
    std::fs::write(&file, b"x").unwrap();
    let o = bin()
        .args(["generate", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("cannot write") && err.contains("taken"),
        "{err}"
    );
}
