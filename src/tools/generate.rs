//! The files the .deb and .rpm ship beside the binary, made from the clap
//! definitions so they cannot drift from `--help`: man pages (section 1, one
//! per command: `kapacitor-pagertree(1)`, `kapacitor-pagertree-check(1)`,
//! `kapacitor-pagertree-outbox-list(1)`…) and completions for bash, zsh and
//! fish.
//!
//! The hidden `kapacitor-pagertree generate --out DIR` hands its clap
//! [`Command`] to [`write_all`]; `contrib/packaging/check.sh` runs it before
//! `cargo deb` and `cargo generate-rpm`, whose asset lists (Cargo.toml) name
//! the files it writes:
//!
//! - `DIR/man/kapacitor-pagertree*.1`
//! - `DIR/completions/kapacitor-pagertree.bash`, `_kapacitor-pagertree` (zsh),
//!   `kapacitor-pagertree.fish`

use std::io;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::{Generator, Shell};

/// A file or directory that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct GenerateError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// The shells completions are written for, with the packages' install paths
/// in mind (bash-completion, zsh vendor functions, fish vendor completions).
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Writes every man page and completion script under `out` (created if
/// missing) and returns the files written, man pages first.
pub fn write_all(cmd: Command, out: &Path) -> Result<Vec<PathBuf>, GenerateError> {
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    for dir in [&man_dir, &comp_dir] {
        std::fs::create_dir_all(dir).map_err(|source| GenerateError {
            path: dir.clone(),
            source,
        })?;
    }
    // `help` is clap's, not ours: no page for it. build() gives every
    // subcommand its full name (kapacitor-pagertree-outbox-list).
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    man_pages(&cmd, &man_dir, &mut written)?;
    let bin = cmd.get_name().to_string();
    for shell in SHELLS {
        let path =
            clap_complete::generate_to(shell, &mut cmd, &bin, &comp_dir).map_err(|source| {
                GenerateError {
                    path: comp_dir.join(shell.file_name(&bin)),
                    source,
                }
            })?;
        written.push(path);
    }
    Ok(written)
}

/// One page per visible command, parents before their subcommands.
fn man_pages(cmd: &Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<(), GenerateError> {
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    man.generate_to(dir).map_err(|source| GenerateError {
        path: path.clone(),
        source,
    })?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn cli() -> Command {
        Command::new("demo")
            .version("1.2.3")
            .about("A demo")
            .arg(Arg::new("config").long("config").global(true))
            .subcommand(
                Command::new("check").about("Checks").arg(
                    Arg::new("connect")
                        .long("connect")
                        .action(ArgAction::SetTrue),
                ),
            )
            .subcommand(
                Command::new("outbox")
                    .about("Outbox things")
                    .subcommand(Command::new("list").about("Lists")),
            )
            .subcommand(Command::new("secret").hide(true))
    }

    #[test]
    fn writes_a_page_per_visible_command_and_three_completions() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_all(cli(), dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "demo.1",
                "demo-check.1",
                "demo-outbox.1",
                "demo-outbox-list.1",
                "demo.bash",
                "_demo",
                "demo.fish"
            ]
        );
        for f in &files {
            assert!(f.starts_with(dir.path()), "{}", f.display());
        }
        let top = std::fs::read_to_string(dir.path().join("man/demo.1")).unwrap();
        assert!(top.contains("demo\\-check(1)"), "{top}");
        assert!(
            !top.contains("secret"),
            "hidden commands get no page: {top}"
        );
        let page = std::fs::read_to_string(dir.path().join("man/demo-check.1")).unwrap();
        assert!(page.contains("\\-\\-connect"), "{page}");
        let bash = std::fs::read_to_string(dir.path().join("completions/demo.bash")).unwrap();
        assert!(bash.contains("--connect"), "{bash}");
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let e = write_all(cli(), &file).unwrap_err();
        assert!(e.path.starts_with(&file), "{e}");
        assert!(e.to_string().contains("not-a-dir"), "{e}");
    }
}
