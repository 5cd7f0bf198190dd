//! The `kapacitor-pagertree` command line: `serve` (the default) runs the
//! daemon; `stdio` is the relay Kapacitor's `prog =` mode starts. Flags and
//! environment are merged into one [`Config`] here; the library's entry points
//! (`app::serve`, `udf::stdio::run`) take only that.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kapacitor_pagertree::ops::config::Config;
use kapacitor_pagertree::proto::EdgeType;

#[derive(Debug, Parser)]
#[command(
    name = "kapacitor-pagertree",
    version,
    about = "A Kapacitor UDF agent that pages through PagerTree, durably"
)]
struct Cli {
    /// Configuration file (TOML; every key optional).
    #[arg(long, global = true, env = "KAPACITOR_PAGERTREE_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the agent's data (and, by default, its sockets).
    #[arg(long, global = true, env = "KAPACITOR_PAGERTREE_SERVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The stream socket (default <data_dir>/stream.sock).
    #[arg(long, global = true, env = "KAPACITOR_PAGERTREE_SERVER_STREAM_SOCKET")]
    stream_socket: Option<PathBuf>,
    /// The batch socket (default <data_dir>/batch.sock).
    #[arg(long, global = true, env = "KAPACITOR_PAGERTREE_SERVER_BATCH_SOCKET")]
    batch_socket: Option<PathBuf>,
    /// Address of the metrics/health endpoint, or "off".
    #[arg(long, global = true, env = "KAPACITOR_PAGERTREE_SERVER_HTTP_ADDR")]
    http_addr: Option<String>,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "KAPACITOR_PAGERTREE_SERVER_LOG_LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: listen on the stream and batch sockets (the default).
    Serve,
    /// Relay stdin/stdout to the running agent (Kapacitor's `prog =` mode).
    Stdio {
        /// Relay to the batch socket instead of the stream socket.
        #[arg(long)]
        batch: bool,
        /// Relay to this socket instead of the configured one.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
}

impl Cli {
    /// Flags (and their environment variables) over the file over defaults.
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let s = &mut config.server;
        if let Some(d) = &self.data_dir {
            s.data_dir = d.clone();
        }
        if let Some(p) = &self.stream_socket {
            s.stream_socket = Some(p.clone());
        }
        if let Some(p) = &self.batch_socket {
            s.batch_socket = Some(p.clone());
        }
        if let Some(a) = &self.http_addr {
            s.http_addr = a.clone();
        }
        if let Some(l) = &self.log_level {
            s.log_level = l.clone();
        }
        Ok(config)
    }
}

/// Logs go to stderr in every mode: in `stdio` mode stdout is the protocol.
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            init_logging(&config.server.log_level);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            rt.block_on(kapacitor_pagertree::app::serve(config))?;
            Ok(())
        }
        Command::Stdio { batch, socket } => {
            init_logging("warn");
            let edge = if batch {
                EdgeType::Batch
            } else {
                EdgeType::Stream
            };
            kapacitor_pagertree::udf::stdio::run(&config, edge, socket.as_deref())?;
            Ok(())
        }
    }
}

/// The error and its causes, skipping causes its own text already quotes.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !text.contains(&c) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&c);
        }
    }
    text
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kapacitor-pagertree: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}
