//! The `kapacitor-pagertree` command line. Every subcommand merges the same
//! configuration (flags > environment > file > defaults, see
//! [`kapacitor_pagertree::ops::config`]) and calls into the library; this file
//! only parses arguments, awaits the daemon's signals, prints, and chooses
//! exit codes:
//! 0 success, 1 the command failed, 2 the configuration or arguments are wrong.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use kapacitor_pagertree::ops::config::{Config, ConfigErrors, Loaded, Overrides};
use kapacitor_pagertree::ops::logging;

/// mimalloc: the hot path's remaining allocations (decoded points, events)
/// are many small short-lived blocks, which it serves faster than glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ABOUT: &str = "A Kapacitor UDF agent that pages on-call people through PagerTree, durably.";

const LONG_ABOUT: &str = "\
A Kapacitor UDF agent that pages on-call people through PagerTree, durably.

One daemon serves every @pagertree() (stream) and @pagertreeBatch() (batch) node of every
Kapacitor task over two Unix sockets. It evaluates alert levels exactly as Kapacitor's alert
node does, commits each event to a local outbox before it counts as sent, and delivers it to
PagerTree with retries, in order per alert.

Configuration: one TOML file (--config), every key also settable as an environment variable
KAPACITOR_PAGERTREE_<TABLE>_<KEY>; flags beat the environment, the environment beats the file.
KAPACITOR_PAGERTREE_URL=<PagerTree integration URL> alone is enough to start.";

const AFTER_HELP: &str = "\
Quick start:
  KAPACITOR_PAGERTREE_URL=https://api.pagertree.com/integration/int_xxx kapacitor-pagertree serve
  kapacitor-pagertree check --connect
  kapacitor-pagertree simulate --tick tickscripts/high_cpu.tick --data tickscripts/high_cpu.lp

Run `kapacitor-pagertree <command> --help` for each command; the README has the full reference.";

#[derive(Debug, Parser)]
#[command(
    name = "kapacitor-pagertree",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true,
    args_override_self = true
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Flags every command accepts. Each overrides its config key; the matching
/// environment variable (shown) overrides the file.
#[derive(Debug, Args)]
struct Global {
    /// The configuration file (TOML). Without it: defaults and the environment.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "KAPACITOR_PAGERTREE_CONFIG"
    )]
    config: Option<PathBuf>,
    /// Directory of the outbox, the alert state and (by default) the sockets
    /// [config: server.data_dir; env: KAPACITOR_PAGERTREE_SERVER_DATA_DIR].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The stream socket, for @pagertree() [default: <data_dir>/stream.sock;
    /// config: server.stream_socket].
    #[arg(long, global = true, value_name = "PATH")]
    stream_socket: Option<PathBuf>,
    /// The batch socket, for @pagertreeBatch() [default: <data_dir>/batch.sock;
    /// config: server.batch_socket].
    #[arg(long, global = true, value_name = "PATH")]
    batch_socket: Option<PathBuf>,
    /// host:port of /metrics, /healthz, /readyz and the alerts API (a host name
    /// is resolved at start), or "off" [default: 127.0.0.1:9096; config: server.http_addr].
    #[arg(long, global = true, value_name = "ADDR")]
    http_addr: Option<String>,
    /// auto (text on a terminal, JSON lines otherwise), text or json
    /// [config: server.log_format].
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
    /// error, warn, info, debug, trace, or a filter such as
    /// "info,kapacitor_pagertree::delivery=debug" [config: server.log_level].
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
}

impl Global {
    fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.data_dir.clone(),
            stream_socket: self.stream_socket.clone(),
            batch_socket: self.batch_socket.clone(),
            http_addr: self.http_addr.clone(),
            log_format: self.log_format.clone(),
            log_level: self.log_level.clone(),
        }
    }

    /// The effective configuration, or the exit code after printing why not.
    fn load(&self) -> Result<Loaded, ExitCode> {
        Config::load_effective(self.config.as_deref(), std::env::vars(), &self.overrides()).map_err(
            |e| {
                print_config_errors(&e);
                ExitCode::from(2)
            },
        )
    }
}

fn print_config_errors(e: &ConfigErrors) {
    eprintln!("kapacitor-pagertree: the configuration is not valid:");
    for line in e.to_string().lines() {
        eprintln!("  {line}");
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent (the default): listen on the stream and batch sockets for Kapacitor.
    ///
    /// Serves every @pagertree() node on the stream socket and every @pagertreeBatch() node
    /// on the batch socket until SIGTERM or SIGINT, then stops accepting, lets open sessions
    /// finish and exits 0 (1 when events the outbox could not store had to go to the spill
    /// file or the log: README, *Stopping while degraded*). Prints the kapacitor.conf lines that point Kapacitor at it. With
    /// http_addr (default 127.0.0.1:9096) it also serves /metrics, /healthz, /readyz and
    /// GET /api/v1/alerts. Under systemd (Type=notify) it reports ready once both sockets
    /// listen. A stale socket file left by a crash is replaced; one a live agent holds is not.
    Serve,
    /// Relay stdin/stdout to the running agent's socket (Kapacitor's `prog =` mode).
    ///
    /// For kapacitor.conf `[udf.functions.NAME] prog = ".../kapacitor-pagertree"`,
    /// `args = ["stdio"]` (or `["stdio", "--batch"]`): Kapacitor starts one relay per node;
    /// each copies frames to the agent's stream (or batch) socket and back, so all state and
    /// delivery stay in the one daemon. Fails with a clear message when no agent listens.
    Stdio {
        /// Relay to the batch socket (for @pagertreeBatch()) instead of the stream socket.
        #[arg(long)]
        batch: bool,
        /// Relay to this socket instead of the configured one.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Validate the configuration; with --connect, also check that every endpoint answers.
    ///
    /// Reads the file (if any), the environment and the flags exactly as `serve` would, and
    /// reports every problem with where it came from, the key and the reason. Exit code 0
    /// when valid (warnings are printed), 2 when not, 1 when --connect finds an endpoint
    /// that does not answer. --connect sends a GET (never an alert) to each endpoint and
    /// to Kapacitor's /kapacitor/v1/ping; any HTTP answer counts as reachable.
    Check {
        /// Also contact every endpoint and Kapacitor.
        #[arg(long)]
        connect: bool,
    },
    /// Replay recorded points through a TICKscript's @pagertree() node; print the events.
    ///
    /// Reads the options of the script's @pagertree() (or @pagertreeBatch()) node, resolving
    /// `var`s, and the groupBy of its from() (or, for batch, the query's groupBy, period and
    /// every). Feeds the points of the line-protocol file to the node as its input, through
    /// the same engine the agent runs, and prints the events it would send. Nothing is sent
    /// and nothing is stored. Nodes between from() and the UDF (window, mean, where, an
    /// upstream alert) are NOT executed: record the data that reaches the node, or use Mode 2
    /// data with the level already in it; simulate says which nodes it skipped.
    Simulate(SimulateArgs),
    /// List the alerts the running agent holds open (non-OK), per task and node.
    ///
    /// Asks the running agent over its local HTTP API (GET /api/v1/alerts on http_addr; an
    /// agent started with port 0 is found through <data_dir>/http.addr). Shows each alert's
    /// level, since when it is non-OK, and what became of its latest event: pending,
    /// delivered, retrying (failed with a 5xx, timeout, connection error or 429; retried with
    /// backoff), parked (refused by PagerTree; a human must act), dead_letter or dry_run.
    /// Exit code 1 when the agent cannot be reached (also: no <data_dir>/http.addr for port 0),
    /// 2 when http_addr is "off" and no --url is given.
    Alerts {
        /// table, or json (the API's answer as is).
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// The agent's HTTP address or base URL, instead of http_addr.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Send a test page (a CRITICAL, then its OK) to an endpoint, once each; report the answers.
    ///
    /// Builds a test alert `kapacitor-pagertree-send-test-<time>` and posts it exactly as the
    /// agent would (format, token, timeouts of the endpoint), then resolves it — also when
    /// the create failed, so no test alert is left open. No retries: each answer is shown
    /// with what the agent would do with it (accepted, retry, park). Exit 0 when PagerTree
    /// accepted both, 1 otherwise, 2 when no endpoint is given or configured.
    SendTest {
        /// The endpoint (an [endpoints.NAME] table) to test; default: delivery.default_endpoint.
        #[arg(long, value_name = "NAME")]
        endpoint: Option<String>,
        /// Post to this URL instead (with the named or default endpoint's token and timeouts).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// kapacitor or webhook; default: the endpoint's format.
        #[arg(long, value_name = "FORMAT")]
        format: Option<String>,
    },
    /// Inspect and act on undelivered events: the parked ones and the dead letters.
    ///
    /// Works on the outbox of --data-dir (also while the agent runs). An event is parked when
    /// PagerTree refused it (4xx): it is retried every delivery.parked_retry and holds back
    /// the later events of its alert. A dead letter is an event older than delivery.max_age
    /// that never got through.
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// List the UDF sessions marked open in the outbox of --data-dir, and task revival.
    ///
    /// A session is marked at its Init, cleared when Kapacitor ends it, and kept when the
    /// agent stops: the marked tasks are those Kapacitor runs through this agent, which a
    /// restarted agent revives ([kapacitor] revive_tasks). Also shows, for each task marked
    /// at the agent's last start, where its revival stands: waiting (for what), revived,
    /// reconnected (by itself), skipped (why), gave up (why, and what to run), off.
    Tasks,
    /// Print the version.
    Version,
    /// Write the man pages and shell completions into DIR (for packaging; see tools::generate).
    #[command(hide = true)]
    Generate {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum OutboxAction {
    /// How many events wait, and every parked and dead-lettered event with its number,
    /// alert id, endpoint (redacted) and the reason.
    List,
    /// Try parked events again now, and put dead letters back in the queue.
    Retry {
        /// `all`, or event numbers from `outbox list`.
        #[arg(required = true, value_name = "all|NUMBER")]
        events: Vec<String>,
    },
    /// Delete parked or dead-lettered events for good (their alerts' later events go on).
    Drop {
        /// `all`, or event numbers from `outbox list`.
        #[arg(required = true, value_name = "all|NUMBER")]
        events: Vec<String>,
    },
    /// Import a spill file (events a degraded agent could not store at shutdown) into the
    /// outbox; a running agent sends them within a second. All lines or none. The agent
    /// imports `[delivery] spill_file` by itself at start; this is for other files.
    Import {
        /// The spill file (JSON lines); it is left in place: remove it afterwards.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
struct SimulateArgs {
    /// The TICKscript.
    #[arg(long, value_name = "FILE.tick")]
    tick: PathBuf,
    /// The points, InfluxDB line protocol, one per line, with timestamps.
    #[arg(long, value_name = "FILE.lp")]
    data: PathBuf,
    /// table: aligned columns; json: one JSON object per event and line
    /// (id, level, previousLevel, time, duration, message, details, recoverable, task, node, data).
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Unit of the timestamps in the data file.
    #[arg(long, value_name = "ns|us|ms|s", default_value = "ns")]
    precision: String,
    /// Batch only: cut a batch at every multiple of this (default: the query's .every()).
    #[arg(long, value_name = "DURATION")]
    every: Option<String>,
    /// Batch only: each batch holds the points of this long before its cut
    /// (default: the query's .period(), else --every).
    #[arg(long, value_name = "DURATION")]
    period: Option<String>,
    /// The UDF's name in the script, if not pagertree / pagertreeBatch.
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// The task name events carry (default: the script's file name without .tick).
    #[arg(long, value_name = "NAME")]
    task: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = &cli.global;
    let result = match cli.command {
        None | Some(Command::Serve) => run_daemon(g),
        Some(Command::Stdio { batch, socket }) => stdio(g, batch, socket),
        Some(Command::Check { connect }) => check(g, connect),
        Some(Command::Simulate(args)) => simulate(g, &args),
        Some(Command::Alerts { format, url }) => alerts(g, format, url),
        Some(Command::SendTest {
            endpoint,
            url,
            format,
        }) => send_test(g, endpoint, url, format),
        Some(Command::Outbox { action }) => outbox(g, action),
        Some(Command::Tasks) => tasks(g),
        Some(Command::Version) => {
            println!("kapacitor-pagertree {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Generate { out }) => {
            match kapacitor_pagertree::tools::generate::write_all(Cli::command(), &out) {
                Ok(files) => {
                    files.iter().for_each(|f| println!("{}", f.display()));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(fail("generate", e, 1)),
            }
        }
    };
    result.unwrap_or_else(|code| code)
}

/// A command's outcome: `Err` carries the exit code, after saying why.
type Exit = Result<ExitCode, ExitCode>;

/// Prints `kapacitor-pagertree <cmd>: <e>` and gives exit code `code`.
fn fail(cmd: &str, e: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("kapacitor-pagertree {cmd}: {e}");
    ExitCode::from(code)
}

/// The configuration and the tool's logging, or the exit code.
fn load_for_tool(global: &Global) -> Result<Loaded, ExitCode> {
    let loaded = global.load()?;
    let (level, format_given) = (global.log_level.as_deref(), global.log_format.is_some());
    if let Err(e) = logging::init_for_tool(&loaded.config, level, format_given) {
        eprintln!("kapacitor-pagertree: {e}");
    }
    Ok(loaded)
}

/// A runtime for a tool's few requests.
fn current_thread(cmd: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(cmd, format!("cannot start the runtime: {e}"), 1))
}

fn check(global: &Global, connect: bool) -> Exit {
    use kapacitor_pagertree::tools::check;
    let loaded = load_for_tool(global)?;
    print!("{}", check::summary(&loaded, global.config.as_deref()));
    if !connect {
        return Ok(ExitCode::SUCCESS);
    }
    let rt = current_thread("check")?;
    let failed = rt.block_on(check::connect(&loaded.config, |line| println!("{line}")));
    Ok(success_if(failed == 0))
}

/// Exit 0 when `ok`, else 1.
fn success_if(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn simulate(global: &Global, args: &SimulateArgs) -> Exit {
    use kapacitor_pagertree::tools::simulate::{self as sim, FileRun};
    let loaded = load_for_tool(global)?;
    let run = FileRun {
        tick: args.tick.clone(),
        data: args.data.clone(),
        precision: args.precision.clone(),
        every: args.every.clone(),
        period: args.period.clone(),
        function: args.function.clone(),
        task: args.task.clone(),
    };
    let factory = kapacitor_pagertree::app::offline_factory(&loaded.config);
    let done = sim::run_files(&run, &factory, |note| eprintln!("{note}"))
        .map_err(|msg| fail("simulate", msg, 2))?;
    let json = args.format == OutputFormat::Json;
    print!("{}", sim::events_output(&done.outcome.events, json));
    eprintln!("{}", done.summary());
    Ok(ExitCode::SUCCESS)
}

/// The daemon runtime's bound on blocking threads (tokio's default is 512).
const MAX_BLOCKING_THREADS: usize = 64;

fn run_daemon(global: &Global) -> Exit {
    let loaded = global.load()?;
    logging::init_for_daemon(&loaded).map_err(|e| {
        eprintln!("kapacitor-pagertree: {e}");
        ExitCode::from(2)
    })?;
    // Blocking work (SQLite reads, spill files, the committer's join) runs
    // on at most this many threads: a flood of sessions cannot make hundreds.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .map_err(|e| {
            tracing::error!(error = %e, "cannot start the runtime");
            ExitCode::FAILURE
        })?;
    rt.block_on(run_until_signal(loaded.config)).map_err(|e| {
        tracing::error!("{e:#}");
        eprintln!("kapacitor-pagertree: {e:#}");
        ExitCode::FAILURE
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The daemon until SIGTERM or SIGINT; SIGHUP is logged and ignored. The
/// handlers are installed before the agent starts: a SIGTERM right after
/// systemd's READY is a graceful stop.
async fn run_until_signal(config: Config) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{SignalKind, signal};
    use tokio_util::sync::CancellationToken;
    let mut term = signal(SignalKind::terminate()).context("cannot install the signal handlers")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the signal handlers")?;
    // SIGHUP (a closed terminal, `systemctl kill -s HUP`, a log rotator's
    // habit) must not kill the agent: its default action would, leaving the
    // socket files behind. Logs go to stderr (no file to re-open) and the
    // config is read at start only, so it is logged and otherwise ignored.
    let mut hup = signal(SignalKind::hangup()).context("cannot install the signal handlers")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::warn!(
                "SIGHUP ignored: logs go to stderr (nothing to re-open) and the configuration is read at start only; restart the agent to apply a new one"
            );
        }
    });
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        stop.cancel();
    });
    kapacitor_pagertree::app::run(config, shutdown).await?;
    Ok(())
}

fn stdio(global: &Global, batch: bool, socket: Option<PathBuf>) -> Exit {
    use kapacitor_pagertree::proto::EdgeType;
    let loaded = global.load()?;
    // stdout is the protocol: logs go to stderr, which Kapacitor copies to its log.
    if let Err(e) = logging::init_for_relay(global.log_level.as_deref()) {
        eprintln!("kapacitor-pagertree: {e}");
    }
    let edge = if batch {
        EdgeType::Batch
    } else {
        EdgeType::Stream
    };
    kapacitor_pagertree::udf::stdio::run(&loaded.config, edge, socket.as_deref())
        .map_err(|e| fail("stdio", e, 1))?;
    Ok(ExitCode::SUCCESS)
}

fn alerts(global: &Global, format: OutputFormat, url: Option<String>) -> Exit {
    use kapacitor_pagertree::tools::alerts::{self, AlertsError};
    let loaded = load_for_tool(global)?;
    let body = alerts::fetch(&loaded.config, url).map_err(|e| {
        let code = match e {
            AlertsError::Address(_) => 2,
            AlertsError::Fetch(_) => 1,
        };
        fail("alerts", e, code)
    })?;
    if format == OutputFormat::Json {
        println!("{}", body.trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    print!(
        "{}",
        alerts::table(&body).map_err(|e| fail("alerts", e, 1))?
    );
    Ok(ExitCode::SUCCESS)
}

fn send_test(
    global: &Global,
    endpoint: Option<String>,
    url: Option<String>,
    format: Option<String>,
) -> Exit {
    use kapacitor_pagertree::alert::Format;
    use kapacitor_pagertree::delivery::cli::{self, CliError};
    let loaded = load_for_tool(global)?;
    let format = match format.as_deref().map(|f| (f, Format::parse(f))) {
        None => None,
        Some((_, Some(f))) => Some(f),
        Some((f, None)) => {
            let why = format!("--format {f:?}: use kapacitor or webhook");
            return Err(fail("send-test", why, 2));
        }
    };
    let rt = current_thread("send-test")?;
    let sent = rt.block_on(cli::send_test(
        &loaded.config,
        endpoint.as_deref(),
        url.as_deref(),
        format,
    ));
    let report = sent.map_err(|e| match e {
        CliError::NoEndpoint | CliError::Endpoint(_) => fail("send-test", e, 2),
        e => fail("send-test", e, 1),
    })?;
    print!("{report}");
    Ok(success_if(report.ok()))
}

/// The exit code of an outbox command's error: 2 for what the user typed or
/// a data dir without an outbox, else 1.
fn outbox_exit(cmd: &str, e: kapacitor_pagertree::delivery::cli::CliError) -> ExitCode {
    use kapacitor_pagertree::delivery::cli::CliError;
    let code = match e {
        CliError::BadSelection(_) | CliError::EmptySelection | CliError::NoOutbox(_) => 2,
        _ => 1,
    };
    fail(cmd, e, code)
}

fn tasks(global: &Global) -> Exit {
    use kapacitor_pagertree::delivery::cli::{self, CliError};
    use kapacitor_pagertree::kapacitor::marks::TaskListing;
    let loaded = load_for_tool(global)?;
    let config = &loaded.config;
    let listing = cli::open_existing(&config.server.data_dir, config)
        .and_then(|ob| TaskListing::read(&ob).map_err(CliError::from))
        .map_err(|e| outbox_exit("tasks", e))?;
    print!("{listing}");
    Ok(ExitCode::SUCCESS)
}

fn outbox(global: &Global, action: OutboxAction) -> Exit {
    use kapacitor_pagertree::delivery::cli;
    let loaded = load_for_tool(global)?;
    let config = &loaded.config;
    let ob = cli::open_existing(&config.server.data_dir, config)
        .map_err(|e| outbox_exit("outbox", e))?;
    let result = match action {
        OutboxAction::List => cli::list(&ob).map(|l| l.to_string()),
        OutboxAction::Retry { events } => cli::parse_selection(&events)
            .and_then(|sel| cli::retry(&ob, &sel))
            .map(|a| a.to_string()),
        OutboxAction::Drop { events } => cli::parse_selection(&events)
            .and_then(|sel| cli::drop_events(&ob, &sel))
            .map(|a| a.to_string()),
        OutboxAction::Import { file } => cli::import(&ob, &file),
    };
    print!("{}", result.map_err(|e| outbox_exit("outbox", e))?);
    Ok(ExitCode::SUCCESS)
}
