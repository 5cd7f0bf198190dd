//! The spill file: where events held only in memory go at shutdown when the
//! outbox still cannot store them (issue 13, item 1).
//!
//! Degraded mode ([`crate::delivery::outbox`]) keeps events in memory while
//! the database cannot store. At shutdown the agent first tries to write
//! them to the outbox, then (the dispatcher's `shutdown_grace`) to deliver
//! them; whatever is left is appended here — `[delivery] spill_file`, a path
//! outside the data directory (that disk is the one that failed) — as JSON
//! lines, fsynced, mode 0600 (the lines hold endpoint URLs: credentials).
//! The agent logs how many and where at ERROR and exits 1.
//!
//! The next start imports the file into the outbox (rows and alert state in
//! one transaction) and removes it; `outbox import FILE` does the same by
//! hand (e.g. for a file moved from another host). Nothing else reads it.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One spilled event: an outbox row plus the alert state it sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpillLine {
    pub task: String,
    pub node: String,
    pub alert_id: String,
    /// The level's name (`CRITICAL`), as the outbox row keeps it.
    pub level: String,
    pub endpoint: String,
    pub url_override: Option<String>,
    pub url: String,
    pub format: String,
    /// The request body (JSON text).
    pub body: String,
    pub created_ns: i64,
    /// The event's time (ns): the alert state's time.
    pub time_ns: i64,
}

/// A spill file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("cannot write the spill file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the spill file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spill file {path}, line {line}: {reason}; nothing was imported")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Appends `lines` to `path` (created 0600, never through a symlink) and
/// fsyncs it and, when it was created, its directory.
pub fn write(path: &Path, lines: &[SpillLine]) -> Result<(), SpillError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| SpillError::Write {
        path: path.to_path_buf(),
        source,
    };
    let created = !path.exists();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(err)?;
    let mut buf = Vec::with_capacity(lines.len() * 512);
    for l in lines {
        serde_json::to_writer(&mut buf, l).map_err(|e| err(std::io::Error::other(e)))?;
        buf.push(b'\n');
    }
    file.write_all(&buf).map_err(err)?;
    file.sync_all().map_err(err)?;
    if created
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads every line of a spill file; any bad line refuses the whole file
/// (with its number), so an import is all or nothing.
pub fn read(path: &Path) -> Result<Vec<SpillLine>, SpillError> {
    let file = std::fs::File::open(path).map_err(|source| SpillError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| SpillError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: SpillLine = serde_json::from_str(&line).map_err(|e| SpillError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        out.push(parsed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: i64) -> SpillLine {
        SpillLine {
            task: "t".into(),
            node: "n".into(),
            alert_id: format!("id{i}"),
            level: "CRITICAL".into(),
            endpoint: "oncall".into(),
            url_override: None,
            url: "https://example.invalid/integration/int_x".into(),
            format: "kapacitor".into(),
            body: "{\"id\":\"x\"}".into(),
            created_ns: i,
            time_ns: i,
        }
    }

    #[test]
    fn lines_append_and_read_back_in_order_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/spill.jsonl");
        write(&path, &[line(1), line(2)]).unwrap();
        write(&path, &[line(3)]).unwrap();
        assert_eq!(read(&path).unwrap(), vec![line(1), line(2), line(3)]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_bad_line_refuses_the_file_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spill.jsonl");
        write(&path, &[line(1)]).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{not json\n")
            .unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn a_symlink_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let path = dir.path().join("spill.jsonl");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(write(&path, &[line(1)]).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
    }
}
