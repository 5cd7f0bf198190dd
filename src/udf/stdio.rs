//! `kapacitor-pagertree stdio`: the child Kapacitor's `prog =` mode starts
//! (one per node, plus a probe at Kapacitor's start). It is only a relay to
//! the running agent's socket, so every session's state and delivery stay in
//! the one daemon (docs/architecture.md, *Restarts*): bytes are copied both ways,
//! undecoded.
//!
//! stdout carries the protocol, so this mode logs to stderr only (Kapacitor
//! puts those lines in its log). It ends when either side ends: on stdin's EOF
//! it half-closes the socket and relays the agent's last responses until the
//! agent closes; when the agent closes first it exits at once.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::ops::config::Config;
use crate::proto::EdgeType;

/// Why the relay could not run.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error(
        "no kapacitor-pagertree agent is listening on {path} ({source}): start it with \
         `kapacitor-pagertree serve` (systemd: before kapacitor.service), or point --socket / \
         --data-dir at the socket it listens on"
    )]
    NoAgent { path: PathBuf, source: io::Error },
    #[error("relaying to {path}: {source}")]
    Relay { path: PathBuf, source: io::Error },
}

/// The socket a relay connects to: `socket` if given, else the configured
/// stream or batch socket.
pub fn socket_path(config: &Config, edge: EdgeType, socket: Option<&Path>) -> PathBuf {
    match (socket, edge) {
        (Some(p), _) => p.to_path_buf(),
        (None, EdgeType::Stream) => config.server.stream_socket_path(),
        (None, EdgeType::Batch) => config.server.batch_socket_path(),
    }
}

/// Runs the relay between this process's stdin/stdout and the agent's socket
/// until either side ends. Blocking (plain threads): no runtime is needed.
pub fn run(config: &Config, edge: EdgeType, socket: Option<&Path>) -> Result<(), StdioError> {
    let path = socket_path(config, edge, socket);
    let stream = UnixStream::connect(&path).map_err(|source| StdioError::NoAgent {
        path: path.clone(),
        source,
    })?;
    relay(stream, io::stdin(), io::stdout(), &path)
}

/// Copies `input` → `stream` on a thread (half-closing the socket at `input`'s
/// EOF) and `stream` → `output` here; returns when the agent closes.
pub fn relay<I, O>(
    stream: UnixStream,
    input: I,
    mut output: O,
    path: &Path,
) -> Result<(), StdioError>
where
    I: Read + Send + 'static,
    O: Write,
{
    let relay_err = |source| StdioError::Relay {
        path: path.to_path_buf(),
        source,
    };
    let mut to_agent = stream.try_clone().map_err(relay_err)?;
    // Detached: when the agent side ends first, the process exits without
    // waiting for stdin (Kapacitor may keep it open).
    std::thread::Builder::new()
        .name("stdio-to-agent".into())
        .spawn(move || {
            let mut input = input;
            let r = copy_flushing(&mut input, &mut to_agent);
            if let Err(e) = &r {
                eprintln!("kapacitor-pagertree stdio: reading stdin: {e}");
            }
            // Kapacitor closed stdin: the agent finishes, answers and closes.
            let _ = to_agent.shutdown(Shutdown::Write);
        })
        .map_err(relay_err)?;
    let mut from_agent = stream;
    match copy_flushing(&mut from_agent, &mut output) {
        Ok(()) => Ok(()),
        // The agent reset the connection: the session is over either way.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
        Err(e) => Err(relay_err(e)),
    }
}

/// Copies until EOF, flushing after every read: a response must not wait in a
/// buffer while Kapacitor's watchdog counts.
fn copy_flushing(r: &mut impl Read, w: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return w.flush(),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        w.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_both_ways_and_half_closes() {
        let (ours, agent) = UnixStream::pair().unwrap();
        // A tiny agent: echoes until EOF, then writes "bye" and closes.
        let agent_thread = std::thread::spawn(move || {
            let mut agent = agent;
            let mut got = Vec::new();
            agent.read_to_end(&mut got).unwrap();
            agent.write_all(&got).unwrap();
            agent.write_all(b"bye").unwrap();
            got
        });
        let mut out = Vec::new();
        relay(
            ours,
            io::Cursor::new(b"hello".to_vec()),
            &mut out,
            Path::new("test"),
        )
        .unwrap();
        assert_eq!(agent_thread.join().unwrap(), b"hello");
        assert_eq!(out, b"hellobye");
    }

    #[test]
    fn no_agent_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.server.data_dir = dir.path().to_path_buf();
        let err = run(&c, EdgeType::Batch, None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("no kapacitor-pagertree agent is listening"),
            "{text}"
        );
        assert!(text.contains("batch.sock"), "{text}");
    }
}
