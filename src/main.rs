//! The `kapacitor-pagertree` command line. Every subcommand merges the same
//! configuration (flags > environment > file > defaults, see
//! [`kapacitor_pagertree::ops::config`]) and calls into the library; this file
//! only parses arguments, prints, and chooses exit codes:
//! 0 success, 1 the command failed, 2 the configuration or arguments are wrong.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kapacitor_pagertree::ops::config::{
    Config, ConfigErrors, Loaded, LogFormat, Overrides, redact_url,
};
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
    /// Address of /metrics, /healthz, /readyz and the alerts API, or "off"
    /// [default: 127.0.0.1:9096; config: server.http_addr].
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
    /// finish and exits 0. Prints the kapacitor.conf lines that point Kapacitor at it. With
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
    /// delivered, retrying, parked (refused by PagerTree; a human must act), dead_letter or
    /// dry_run. Exit code 1 when the agent cannot be reached.
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
    /// List the UDF sessions marked open in the outbox of --data-dir: the tasks Kapacitor
    /// has running through this agent, which a restarted agent revives. A session is
    /// marked at its Init, cleared when Kapacitor ends it, and kept when the agent stops.
    Tasks,
    /// Print the version.
    Version,
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
    match cli.command {
        None | Some(Command::Serve) => run_daemon(&cli.global),
        Some(Command::Stdio { batch, socket }) => stdio(&cli.global, batch, socket),
        Some(Command::Check { connect }) => check(&cli.global, connect),
        Some(Command::Simulate(args)) => simulate(&cli.global, &args),
        Some(Command::Alerts { format, url }) => alerts(&cli.global, format, url),
        Some(Command::SendTest {
            endpoint,
            url,
            format,
        }) => send_test(&cli.global, endpoint, url, format),
        Some(Command::Outbox { action }) => outbox(&cli.global, action),
        Some(Command::Tasks) => tasks(&cli.global),
        Some(Command::Version) => {
            println!("kapacitor-pagertree {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

/// Logging for the short-lived tools: warnings and errors as text unless
/// the user asked otherwise on the command line.
fn init_tool_logging(loaded: &Loaded, global: &Global) {
    let level = global.log_level.as_deref().unwrap_or("warn");
    let format = match global.log_format {
        Some(_) => loaded
            .config
            .server
            .log_format_kind()
            .unwrap_or(LogFormat::Text),
        None => LogFormat::Text,
    };
    if let Err(e) = logging::init(format, level) {
        eprintln!("kapacitor-pagertree: {e}");
    }
}

fn check(global: &Global, connect: bool) -> ExitCode {
    use kapacitor_pagertree::tools::probe::probe;
    let loaded = match global.load() {
        Ok(l) => l,
        Err(code) => return code,
    };
    init_tool_logging(&loaded, global);
    let c = &loaded.config;
    let source = match &global.config {
        Some(p) => p.display().to_string(),
        None => "no file (defaults and environment)".to_string(),
    };
    println!("configuration: {source}: valid");
    println!("  data dir:      {}", c.server.data_dir.display());
    println!(
        "  stream socket: {}",
        c.server.stream_socket_path().display()
    );
    println!(
        "  batch socket:  {}",
        c.server.batch_socket_path().display()
    );
    println!("  http:          {}", c.server.http_addr);
    println!("  kapacitor:     {}", c.kapacitor.url);
    if c.endpoints.is_empty() {
        println!("  endpoints:     none");
    }
    for (name, e) in &c.endpoints {
        let default = if c.delivery.default_endpoint == *name {
            " (default)"
        } else {
            ""
        };
        println!(
            "  endpoint {name}{default}: {} format {}",
            redact_url(&e.url),
            e.format.as_str()
        );
    }
    for w in &loaded.warnings {
        println!("warning: {w}");
    }
    if !connect {
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kapacitor-pagertree: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let failed = rt.block_on(async {
        let mut failed = 0;
        for (name, e) in &c.endpoints {
            match probe(&e.url, e.connect_timeout, e.timeout).await {
                Ok(status) => println!("endpoint {name}: answers (HTTP {status})"),
                Err(why) => {
                    failed += 1;
                    println!("endpoint {name}: FAILED: {why}");
                }
            }
        }
        let ping = format!("{}/kapacitor/v1/ping", c.kapacitor.url.trim_end_matches('/'));
        match probe(&ping, Duration::from_secs(5), Duration::from_secs(10)).await {
            Ok(status) => println!("kapacitor {}: answers (HTTP {status})", c.kapacitor.url),
            Err(why) => println!(
                "warning: kapacitor {}: {why} (needed for ServerInfo and to revive tasks after a restart)",
                c.kapacitor.url
            ),
        }
        failed
    });
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn duration_flag(flag: &str, v: &Option<String>) -> Result<Option<i64>, String> {
    match v {
        None => Ok(None),
        Some(s) => {
            let d = kapacitor_pagertree::ops::config::parse_duration(s)
                .map_err(|e| format!("{flag}: {e}"))?;
            i64::try_from(d.as_nanos())
                .map(Some)
                .map_err(|_| format!("{flag}: {s:?} is too long"))
        }
    }
}

fn simulate(global: &Global, args: &SimulateArgs) -> ExitCode {
    use kapacitor_pagertree::tools::{lineproto, simulate as sim, tick};
    let loaded = match global.load() {
        Ok(l) => l,
        Err(code) => return code,
    };
    init_tool_logging(&loaded, global);
    let fail = |msg: String| {
        eprintln!("kapacitor-pagertree simulate: {msg}");
        ExitCode::from(2)
    };
    let Some(precision) = lineproto::Precision::parse(&args.precision) else {
        return fail(format!(
            "--precision {:?}: use ns, us, ms or s",
            args.precision
        ));
    };
    let schedule = match (
        duration_flag("--every", &args.every),
        duration_flag("--period", &args.period),
    ) {
        (Ok(every), Ok(period)) => sim::Schedule { every, period },
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let script_text = match std::fs::read_to_string(&args.tick) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", args.tick.display())),
    };
    let script = match tick::parse(&script_text) {
        Ok(s) => s,
        Err(e) => return fail(format!("{}: {e}", args.tick.display())),
    };
    let data_text = match std::fs::read_to_string(&args.data) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", args.data.display())),
    };
    let points = match lineproto::parse(&data_text, precision) {
        Ok(p) => p,
        Err(e) => return fail(format!("{}: {e}", args.data.display())),
    };
    let plan = match sim::plan(&script, args.function.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(format!("{}: {e}", args.tick.display())),
    };
    let task = args.task.clone().unwrap_or_else(|| {
        args.tick
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "simulate".into())
    });
    if !plan.skipped.is_empty() {
        eprintln!(
            "simulate: not executing {} (between the source and @{}()): the data is fed to @{}() as its input",
            plan.skipped.join(", "),
            plan.function,
            plan.function
        );
    }
    let factory = kapacitor_pagertree::app::offline_factory(&loaded.config);
    let outcome = match sim::run(&plan, &factory, &task, &points, schedule) {
        Ok(o) => o,
        Err(e) => return fail(format!("{}: {e}", args.tick.display())),
    };
    match args.format {
        OutputFormat::Table => print!("{}", sim::events_table(&outcome.events)),
        OutputFormat::Json => {
            for e in &outcome.events {
                println!("{}", sim::event_json(e));
            }
        }
    }
    let batches = if plan.edge == kapacitor_pagertree::proto::EdgeType::Batch {
        format!(" in {} batches", outcome.batches)
    } else {
        String::new()
    };
    let filtered = match (&plan.measurement, outcome.filtered) {
        (Some(m), n) if n > 0 => format!(" ({n} points of other measurements than {m:?} ignored)"),
        _ => String::new(),
    };
    eprintln!(
        "simulate: {} points{batches}{filtered} → {} events; nothing was sent",
        outcome.points,
        outcome.events.len()
    );
    ExitCode::SUCCESS
}

/// The daemon's logger, from the configuration; its warnings are logged.
fn init_daemon_logging(loaded: &Loaded) -> Result<(), ExitCode> {
    let format = loaded
        .config
        .server
        .log_format_kind()
        .unwrap_or(LogFormat::Auto);
    if let Err(e) = logging::init(format, &loaded.config.server.log_level) {
        eprintln!("kapacitor-pagertree: {e}");
        return Err(ExitCode::from(2));
    }
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok(())
}

fn run_daemon(global: &Global) -> ExitCode {
    let loaded = match global.load() {
        Ok(l) => l,
        Err(code) => return code,
    };
    if let Err(code) = init_daemon_logging(&loaded) {
        return code;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_until_signal(loaded.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("kapacitor-pagertree: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The daemon until SIGTERM or SIGINT. The handlers are installed before the
/// agent starts: a SIGTERM right after systemd's READY is a graceful stop.
async fn run_until_signal(config: Config) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{SignalKind, signal};
    use tokio_util::sync::CancellationToken;
    let mut term = signal(SignalKind::terminate()).context("cannot install the signal handlers")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the signal handlers")?;
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

fn stdio(global: &Global, batch: bool, socket: Option<PathBuf>) -> ExitCode {
    use kapacitor_pagertree::proto::EdgeType;
    let loaded = match global.load() {
        Ok(l) => l,
        Err(code) => return code,
    };
    // stdout is the protocol: logs go to stderr, which Kapacitor copies to its log.
    let level = global.log_level.as_deref().unwrap_or("warn");
    if let Err(e) = logging::init(LogFormat::Text, level) {
        eprintln!("kapacitor-pagertree: {e}");
    }
    let edge = if batch {
        EdgeType::Batch
    } else {
        EdgeType::Stream
    };
    match kapacitor_pagertree::udf::stdio::run(&loaded.config, edge, socket.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kapacitor-pagertree stdio: {e}");
            ExitCode::FAILURE
        }
    }
}

fn alerts(global: &Global, format: OutputFormat, url: Option<String>) -> ExitCode {
    use kapacitor_pagertree::tools::alerts::{self, AlertsError};
    let loaded = match global.load() {
        Ok(l) => l,
        Err(code) => return code,
    };
    init_tool_logging(&loaded, global);
    let body = match alerts::fetch(&loaded.config, url) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("kapacitor-pagertree alerts: {e}");
            return match e {
                AlertsError::Address(_) => ExitCode::from(2),
                AlertsError::Fetch(_) => ExitCode::FAILURE,
            };
        }
    };
    if format == OutputFormat::Json {
        println!("{}", body.trim_end());
        return ExitCode::SUCCESS;
    }
    match alerts::table(&body) {
        Ok(t) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kapacitor-pagertree alerts: {e}");
            ExitCode::FAILURE
        }
    }
}

fn send_test(
    global: &Global,
    endpoint: Option<String>,
    url: Option<String>,
    format: Option<String>,
) -> ExitCode {
    use kapacitor_pagertree::alert::Format;
    use kapacitor_pagertree::delivery::cli::{self, CliError};
    let loaded = match global.load() {
        Ok(l) => l,
        Err(code) => return code,
    };
    init_tool_logging(&loaded, global);
    let format = match format.as_deref().map(|f| (f, Format::parse(f))) {
        None => None,
        Some((_, Some(f))) => Some(f),
        Some((f, None)) => {
            eprintln!("kapacitor-pagertree send-test: --format {f:?}: use kapacitor or webhook");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kapacitor-pagertree send-test: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::send_test(
        &loaded.config,
        endpoint.as_deref(),
        url.as_deref(),
        format,
    )) {
        Ok(report) => {
            print!("{report}");
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e @ (CliError::NoEndpoint | CliError::Endpoint(_))) => {
            eprintln!("kapacitor-pagertree send-test: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("kapacitor-pagertree send-test: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tasks(global: &Global) -> ExitCode {
    use kapacitor_pagertree::delivery::cli::{self, CliError};
    use kapacitor_pagertree::kapacitor::marks::TaskListing;
    let loaded = match global.load() {
        Ok(l) => l,
        Err(code) => return code,
    };
    init_tool_logging(&loaded, global);
    let config = &loaded.config;
    let listing = cli::open_existing(&config.server.data_dir, config)
        .and_then(|ob| TaskListing::read(&ob).map_err(CliError::from));
    match listing {
        Ok(l) => {
            print!("{l}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kapacitor-pagertree tasks: {e}");
            match e {
                CliError::NoOutbox(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn outbox(global: &Global, action: OutboxAction) -> ExitCode {
    use kapacitor_pagertree::delivery::cli::{self, CliError};
    let loaded = match global.load() {
        Ok(l) => l,
        Err(code) => return code,
    };
    init_tool_logging(&loaded, global);
    let config = &loaded.config;
    let fail = |e: CliError| {
        eprintln!("kapacitor-pagertree outbox: {e}");
        match e {
            CliError::BadSelection(_) | CliError::EmptySelection | CliError::NoOutbox(_) => {
                ExitCode::from(2)
            }
            _ => ExitCode::FAILURE,
        }
    };
    let ob = match cli::open_existing(&config.server.data_dir, config) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let result = match action {
        OutboxAction::List => cli::list(&ob).map(|l| l.to_string()),
        OutboxAction::Retry { events } => cli::parse_selection(&events)
            .and_then(|sel| cli::retry(&ob, &sel))
            .map(|a| a.to_string()),
        OutboxAction::Drop { events } => cli::parse_selection(&events)
            .and_then(|sel| cli::drop_events(&ob, &sel))
            .map(|a| a.to_string()),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
