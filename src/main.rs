//! The `kapacitor-pagertree` command line. Every subcommand merges the same
//! configuration (flags > environment > file > defaults, see
//! [`kapacitor_pagertree::ops::config`]) and calls into the library; this file
//! only parses arguments, prints, and chooses exit codes:
//! 0 success, 1 the command failed, 2 the configuration or arguments are wrong.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kapacitor_pagertree::delivery::outbox::Outbox;
use kapacitor_pagertree::delivery::service::Delivery;
use kapacitor_pagertree::ops::config::{
    Config, ConfigErrors, Loaded, LogFormat, Overrides, redact_url,
};
use kapacitor_pagertree::ops::logging;
use kapacitor_pagertree::ops::status::ViewingCommitter;

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
        None | Some(Command::Serve) => serve(&cli.global),
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

/// One GET; any HTTP status means the endpoint answers. Errors never show
/// the URL's path (it is the secret).
async fn probe(url: &str, connect_timeout: Duration, timeout: Duration) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .user_agent(concat!(
            "kapacitor-pagertree/",
            env!("CARGO_PKG_VERSION"),
            " (check)"
        ))
        .build()
        .map_err(|e| e.to_string())?;
    match client.get(url).send().await {
        Ok(resp) => Ok(resp.status().as_u16()),
        Err(e) => {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            // reqwest's message includes the URL; keep only the cause chain.
            let mut cause = String::new();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                cause = s.to_string();
                src = s.source();
            }
            Err(format!(
                "{kind} ({}){}",
                redact_url(url),
                if cause.is_empty() {
                    String::new()
                } else {
                    format!(": {cause}")
                }
            ))
        }
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
    use kapacitor_pagertree::ops::{lineproto, simulate as sim, tick};
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
    let factory = node_factory(&loaded.config);
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

/// The engine the agent runs, with in-memory state: for the offline tools.
fn node_factory(config: &Config) -> kapacitor_pagertree::alert::node::AlertFactory {
    use std::sync::Arc;
    node_factory_with(
        &Arc::new(config.clone()),
        Arc::new(kapacitor_pagertree::alert::store::MemoryStore::new()),
    )
}

/// The node factory over a given alert state store. ServerInfo: the
/// `[kapacitor]` values set in the config, else Kapacitor's defaults.
fn node_factory_with(
    config: &std::sync::Arc<Config>,
    store: std::sync::Arc<dyn kapacitor_pagertree::alert::store::AlertStateStore>,
) -> kapacitor_pagertree::alert::node::AlertFactory {
    use kapacitor_pagertree::alert::node::{AlertFactory, NodeEnv};
    let server_info = kapacitor_pagertree::app::server_info(config);
    AlertFactory::new(NodeEnv::new(config.clone(), store, server_info))
}

/// The node factory of `serve`: ServerInfo from the config, else read once
/// from Kapacitor's API at the first Init and kept in data_dir.
fn serve_factory(
    config: &std::sync::Arc<Config>,
    store: std::sync::Arc<dyn kapacitor_pagertree::alert::store::AlertStateStore>,
) -> kapacitor_pagertree::alert::node::AlertFactory {
    use kapacitor_pagertree::alert::node::{AlertFactory, NodeEnv};
    use kapacitor_pagertree::ops::server_info::KapacitorServerInfo;
    let mut env = NodeEnv::new(config.clone(), store, Default::default());
    env.server_info = std::sync::Arc::new(KapacitorServerInfo::new(
        &config.kapacitor,
        &config.server.data_dir,
    ));
    AlertFactory::new(env)
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

fn serve(global: &Global) -> ExitCode {
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
    match rt.block_on(run_agent(loaded.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("kapacitor-pagertree: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The agent: HTTP listener, delivery sink, node factory, the sockets.
async fn run_agent(config: Config) -> anyhow::Result<()> {
    use std::sync::Arc;

    use anyhow::Context;
    use kapacitor_pagertree::app;
    use kapacitor_pagertree::ops::config::HttpAddr;
    use kapacitor_pagertree::ops::http;
    use tokio_util::sync::CancellationToken;

    let hooks = app::Hooks::from_env()?;
    kapacitor_pagertree::ops::restrict_umask();
    std::fs::create_dir_all(&config.server.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.server.data_dir.display()
        )
    })?;
    let http_stop = CancellationToken::new();
    let addr_file = http::addr_file(&config.server.data_dir);
    let mut http_task = None;
    match config.server.http_listen() {
        Ok(HttpAddr::Listen(addr)) => {
            let listener = http::bind(addr).await?;
            let bound = listener
                .local_addr()
                .context("reading the HTTP listener's address")?;
            // `alerts` finds the agent here when http_addr has port 0.
            if let Err(e) = std::fs::write(&addr_file, format!("{bound}\n")) {
                tracing::warn!(error = %e, path = %addr_file.display(), "cannot record the HTTP address");
            }
            tracing::info!(addr = %bound, "HTTP listening: /metrics /healthz /readyz /api/v1/alerts");
            http_task = Some(tokio::spawn(http::serve(listener, http_stop.clone())));
        }
        Ok(HttpAddr::Off) => {
            let _ = std::fs::remove_file(&addr_file);
        }
        // Validated at load; unreachable in practice, refused all the same.
        Err(e) => anyhow::bail!("server.http_addr: {e}"),
    }
    let config = Arc::new(config);
    if hooks.discard_events {
        // Benchmarks only: no outbox, no delivery.
        let (sink, committer, store) = app::build_sink(&hooks);
        let factory = serve_factory(&config, Arc::new(store));
        let result = app::serve_with(
            &config,
            Arc::new(factory),
            sink,
            &hooks,
            CancellationToken::new(),
        )
        .await;
        let _ = tokio::task::spawn_blocking(move || committer.join()).await;
        http_stop.cancel();
        return result.map_err(Into::into);
    }

    // The durable path: sessions → committer (group commit into the outbox,
    // alert state in the same transaction) → dispatcher → PagerTree.
    let delivery = Delivery::start_with(&config, &CancellationToken::new(), |outbox| {
        ViewingCommitter::new(outbox).logging()
    })?;
    let outbox = delivery.outbox().clone();
    tracing::info!(path = %outbox.path().display(), "outbox open");
    // The alerts view starts from the kept alert state, not empty: an alert
    // open before a restart is listed before its next event.
    match outbox.open_alerts() {
        Ok(open) => {
            tracing::info!(open = open.len(), "open alerts restored from the outbox");
            kapacitor_pagertree::ops::status::alerts_view().seed(open);
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the kept alert state; `alerts` shows only alerts with a new event")
        }
    }
    let watcher = tokio::spawn(watch_outbox(outbox.clone(), http_stop.clone()));

    let factory = serve_factory(&config, delivery.store());
    let events =
        Arc::new(kapacitor_pagertree::delivery::sessions::OutboxSessionEvents::new(outbox.clone()));
    let result = app::serve_with_events(
        &config,
        Arc::new(factory),
        delivery.sink(),
        events,
        &hooks,
        CancellationToken::new(),
    )
    .await;
    // Every Sink clone is gone with the sessions: the committer commits what
    // is queued and ends; then the dispatcher gets shutdown_grace for
    // requests on the wire. What is not delivered stays in the outbox.
    delivery.shutdown().await;
    http_stop.cancel();
    if let Some(t) = http_task {
        let _ = t.await;
    }
    let _ = watcher.await;
    let _ = std::fs::remove_file(&addr_file);
    result.map_err(Into::into)
}

/// Once a second: readiness (can the outbox store?) and the delivery state
/// of the open alerts, from the outbox, for `/readyz` and `alerts`.
async fn watch_outbox(outbox: Outbox, stop: tokio_util::sync::CancellationToken) {
    use kapacitor_pagertree::delivery::outbox::HeldKind;
    use kapacitor_pagertree::ops::status::{DeliveryState, alerts_view, readiness};
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        readiness().set_outbox_writable(
            outbox.is_ready(),
            "it cannot store (disk full, read-only or I/O errors); events wait in memory — see the log",
        );
        let ob = outbox.clone();
        let read = tokio::task::spawn_blocking(move || {
            Ok::<_, String>((
                ob.held().map_err(|e| e.to_string())?,
                ob.pending().map_err(|e| e.to_string())?,
            ))
        })
        .await;
        match read {
            Ok(Ok((held, (pending, _)))) => {
                let held: Vec<_> = held
                    .into_iter()
                    .map(|h| {
                        let state = match h.kind {
                            HeldKind::Parked => DeliveryState::Parked,
                            _ => DeliveryState::DeadLetter,
                        };
                        (h.task, h.node, h.alert_id, state, h.reason)
                    })
                    .collect();
                alerts_view().sync_delivery(&held, pending == 0 && outbox.is_ready());
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot read the outbox for the alerts view"),
            Err(_) => {}
        }
    }
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

/// The base URL of the running agent's HTTP API.
fn agent_url(config: &Config, explicit: Option<String>) -> Result<String, String> {
    use kapacitor_pagertree::ops::config::HttpAddr;
    if let Some(u) = explicit {
        let u = u.trim_end_matches('/').to_string();
        return Ok(if u.contains("://") {
            u
        } else {
            format!("http://{u}")
        });
    }
    let addr = match config.server.http_listen()? {
        HttpAddr::Off => {
            return Err(
                "http_addr is \"off\": the agent has no local API (set it, or give --url)".into(),
            );
        }
        HttpAddr::Listen(a) if a.port() == 0 => {
            let file = kapacitor_pagertree::ops::http::addr_file(&config.server.data_dir);
            let text = std::fs::read_to_string(&file).map_err(|e| {
                format!(
                    "http_addr has port 0 and {} cannot be read ({e}): is the agent running with --data-dir {}?",
                    file.display(),
                    config.server.data_dir.display()
                )
            })?;
            text.trim()
                .parse()
                .map_err(|_| format!("{} does not hold an address", file.display()))?
        }
        HttpAddr::Listen(a) => a,
    };
    // A wildcard listen address is reached on loopback.
    let addr = if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    Ok(format!("http://{addr}"))
}

fn alerts(global: &Global, format: OutputFormat, url: Option<String>) -> ExitCode {
    use kapacitor_pagertree::ops::http::{ALERTS_PATH, AlertsResponse};
    let loaded = match global.load() {
        Ok(l) => l,
        Err(code) => return code,
    };
    init_tool_logging(&loaded, global);
    let base = match agent_url(&loaded.config, url) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("kapacitor-pagertree alerts: {e}");
            return ExitCode::from(2);
        }
    };
    let url = format!("{base}{ALERTS_PATH}");
    let fetched = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string()).and_then(
        |rt| {
            rt.block_on(async {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| e.to_string())?;
                let resp = client.get(&url).send().await.map_err(|e| {
                    format!("cannot reach the agent at {base}: {e} (is `kapacitor-pagertree serve` running with this http_addr?)")
                })?;
                let status = resp.status();
                let body = resp.text().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("{url} answered {status}: {}", body.trim()));
                }
                Ok(body)
            })
        },
    );
    let body = match fetched {
        // The CLI's output boundary (the agent redacts too; an older one may not).
        Ok(b) => kapacitor_pagertree::delivery::redact::text(&b, &[]),
        Err(e) => {
            eprintln!("kapacitor-pagertree alerts: {e}");
            return ExitCode::FAILURE;
        }
    };
    if format == OutputFormat::Json {
        println!("{}", body.trim_end());
        return ExitCode::SUCCESS;
    }
    let parsed: AlertsResponse = match serde_json::from_str(&body) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kapacitor-pagertree alerts: {url} did not answer with the alerts JSON: {e}");
            return ExitCode::FAILURE;
        }
    };
    if parsed.alerts.is_empty() {
        println!("no open alerts");
        return ExitCode::SUCCESS;
    }
    let header = ["TASK", "NODE", "ID", "LEVEL", "SINCE", "DELIVERY"].map(String::from);
    let rows: Vec<[String; 6]> = parsed
        .alerts
        .iter()
        .map(|a| {
            let delivery = match &a.delivery_detail {
                Some(d) => format!("{} ({d})", a.delivery.as_str()),
                None => a.delivery.as_str().to_string(),
            };
            [
                a.task.clone(),
                a.node.clone(),
                a.id.clone(),
                a.level.to_string(),
                if a.since.is_empty() {
                    "(before restart)".to_string()
                } else {
                    a.since.clone()
                },
                delivery,
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    ExitCode::SUCCESS
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
    use kapacitor_pagertree::delivery::sessions::TaskListing;
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
