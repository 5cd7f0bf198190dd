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
    propagate_version = true
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
    /// Print the version.
    Version,
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
        Some(Command::Check { connect }) => check(&cli.global, connect),
        Some(Command::Simulate(args)) => simulate(&cli.global, &args),
        Some(Command::Version) => {
            println!("kapacitor-pagertree {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("kapacitor-pagertree: no command given; see --help");
            ExitCode::from(2)
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

    use kapacitor_pagertree::alert::ServerInfo;
    use kapacitor_pagertree::alert::node::{AlertFactory, NodeEnv};
    use kapacitor_pagertree::alert::store::MemoryStore;
    let k = &config.kapacitor;
    let defaults = ServerInfo::default();
    let server_info = ServerInfo {
        hostname: k.hostname.clone().unwrap_or(defaults.hostname),
        cluster_id: k.cluster_id.clone().unwrap_or(defaults.cluster_id),
        server_id: k.server_id.clone().unwrap_or(defaults.server_id),
    };
    AlertFactory::new(NodeEnv::new(
        Arc::new(config.clone()),
        Arc::new(MemoryStore::new()),
        server_info,
    ))
}
