//! The `layotto` binary: command line, logging, configuration loading and the wiring of listeners
//! to filter chains and shards. Runs on the main thread; a helper thread waits for signals.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stderr,
    reason = "the binary reports configuration and start-up failures on stderr, whether or not logging is up"
)]

use std::{io::IsTerminal, net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use layotto_core::{
    backend::BackendPool,
    config::{Config, Findings, LogLevel, LogPath},
    handler::HandlerFactory,
    health::HealthRegistry,
    listener,
    metrics::{ListenerMetrics, MetricsRegistry},
    shard::{ListenerStats, ServeReport, ServedListener, ShardPlan},
    shutdown::{self, ShutdownTrigger},
};
use layotto_filters::{
    actuator,
    admin_http::AdminHttpFactory,
    chain::FilterChainFactory,
    registry::{BuildContext, FilterRegistry},
};
use layotto_runtime_api::Runtime;
use tracing::{error, info, warn};

/// The configuration used when `start` is given no `-c`: a gRPC listener on 127.0.0.1:34904.
const EMBEDDED_DEFAULT: &str = include_str!("../configs/default.json");

/// Threads of the backend pool that runs tokio-based component clients (etcd, redis).
const BACKEND_THREADS: usize = 2;
/// Component calls admitted in flight on the backend pool before calls get UNAVAILABLE.
const BACKEND_CAPACITY: usize = 16_384;

/// Exit code for a configuration that cannot be used.
const EXIT_BAD_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "layotto",
    version,
    about = "layotto-rs: a thread-per-core sidecar runtime, drop-in for LayOtto"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the runtime.
    Start(StartArgs),
}

#[derive(Args)]
struct StartArgs {
    /// LayOtto JSON configuration file (without it, an embedded default is used).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log level, overriding the config's default_log_level: TRACE, DEBUG, INFO, WARN, ERROR.
    #[arg(long, value_name = "LEVEL", value_parser = LogLevel::parse)]
    log_level: Option<LogLevel>,
    /// Number of shards (one pinned thread each); default: one per allowed CPU.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
}

fn main() -> ExitCode {
    let Command::Start(args) = Cli::parse().command;
    match start(&args) {
        Ok(code) => code,
        Err(err) => {
            error!("{err:#}");
            eprintln!("layotto: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(args: &StartArgs) -> Result<ExitCode> {
    let (text, source) = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => (text, path.display().to_string()),
            Err(err) => {
                eprintln!("layotto: cannot read config file {}: {err}", path.display());
                return Ok(ExitCode::from(EXIT_BAD_CONFIG));
            }
        },
        None => (
            EMBEDDED_DEFAULT.to_owned(),
            "embedded default config".to_owned(),
        ),
    };
    let plan = ShardPlan::new(args.shards)?;

    let mut findings = Findings::default();
    let config = Config::parse(&text, &mut findings);
    let pool = BackendPool::start(BACKEND_THREADS, BACKEND_CAPACITY)?;
    let health = Arc::new(HealthRegistry::default());
    // The components are the process's, built once before any listener: every API serves them.
    let runtime = Runtime::from_config(&config, &pool.handle(), &health, &mut findings);
    let registry = FilterRegistry::default()
        .with_terminal(
            layotto_runtime_api::KIND,
            layotto_runtime_api::builder(runtime.clone()),
        )
        .with_stream_filter(
            layotto_runtime_api::filter::METRIC_FILTER_KIND,
            layotto_runtime_api::filter::build_metric_filter,
        );
    let metrics = Arc::new(MetricsRegistry::default());
    metrics.register(Arc::new(pool.handle()));
    let ctx = BuildContext::new(&config, plan.len(), pool.handle(), metrics.clone(), health);
    let chains: Vec<_> = config
        .listeners
        .iter()
        .filter_map(|l| {
            registry
                .build(l, &ctx, &mut findings)
                .map(|chain| (l, chain))
        })
        .collect();
    if !findings.errors.is_empty() {
        eprintln!(
            "layotto: invalid configuration ({source}), {} problem(s):",
            findings.errors.len()
        );
        for problem in &findings.errors {
            eprintln!("  {problem}");
        }
        return Ok(ExitCode::from(EXIT_BAD_CONFIG));
    }

    let _log_guard = init_logging(&config, args.log_level)?;
    info!(version = env!("CARGO_PKG_VERSION"), config = %source, shards = plan.len(), "starting layotto-rs");
    for ignored in &findings.ignored {
        warn!("{ignored}");
    }
    if chains.is_empty() {
        error!("no listener in {source} can be served");
        return Ok(ExitCode::from(EXIT_BAD_CONFIG));
    }

    let started = runtime
        .start()
        .and_then(|()| chains.iter().try_for_each(|(_, chain)| chain.start()));
    if let Err(err) = started {
        error!("{err}");
        eprintln!("layotto: cannot start: {err}");
        return Ok(ExitCode::FAILURE);
    }

    let mut listeners: Vec<(&str, SocketAddr, Arc<dyn HandlerFactory>)> = chains
        .into_iter()
        .map(|(l, chain)| (l.name.as_str(), l.address, Arc::new(chain) as _))
        .collect();
    if let Some(sink) = &config.prometheus {
        let routes = actuator::metrics_routes(metrics.clone(), sink.endpoint.clone());
        let server = Arc::new(AdminHttpFactory::new(routes));
        listeners.push((
            "prometheus",
            sink.address,
            Arc::new(FilterChainFactory::new(Vec::new(), server)),
        ));
    }
    let mut served = Vec::with_capacity(listeners.len());
    for (name, address, handler) in listeners {
        let stats = Arc::new(ListenerStats::new(plan.len()));
        metrics.register(Arc::new(ListenerMetrics {
            name: name.to_owned(),
            stats: stats.clone(),
            handler: handler.clone(),
        }));
        served.push(ServedListener {
            bound: listener::bind(name, address, plan.len())?,
            handler,
            stats,
        });
    }
    let addresses: Vec<_> = served
        .iter()
        .map(|s| (s.bound.name.clone(), s.bound.address))
        .collect();

    let (trigger, signal) = shutdown::channel();
    watch_signals(trigger, config.drain_timeout)?;
    let running = plan.start(served, config.drain_timeout, signal)?;
    for (name, address) in addresses {
        info!("listener \"{name}\" listening on {address}");
    }
    let report = running.join()?;
    runtime.close();
    pool.shutdown(config.drain_timeout);
    log_summary(&report);
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Sets up `tracing` to the config's log path, at the CLI's level, else the config's, else INFO.
/// Writing happens on a background thread so shards never wait on the log.
fn init_logging(
    config: &Config,
    cli_level: Option<LogLevel>,
) -> Result<tracing_appender::non_blocking::WorkerGuard> {
    let level = cli_level.or(config.log_level).unwrap_or(LogLevel::Info);
    let (writer, guard, ansi) = match &config.log_path {
        LogPath::Stdout => {
            let (w, g) = tracing_appender::non_blocking(std::io::stdout());
            (w, g, std::io::stdout().is_terminal())
        }
        LogPath::Stderr => {
            let (w, g) = tracing_appender::non_blocking(std::io::stderr());
            (w, g, std::io::stderr().is_terminal())
        }
        LogPath::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            let (w, g) = tracing_appender::non_blocking(file);
            (w, g, false)
        }
    };
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};
    // The level filter is reloadable: the actuator's POST /actuator/logger changes it.
    tracing_subscriber::registry()
        .with(layotto_core::log_levels::reloadable_filter(level))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(ansi)
                .with_thread_names(true),
        )
        .init();
    Ok(guard)
}

/// Starts a thread that turns the first SIGTERM/SIGINT into a graceful drain and a second one
/// into an immediate exit.
fn watch_signals(trigger: ShutdownTrigger, drain: std::time::Duration) -> Result<()> {
    use signal_hook::{consts::*, iterator::Signals};
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut received = signals.forever();
            if let Some(signal) = received.next() {
                info!(
                    signal,
                    "stop requested: no longer accepting; draining for up to {drain:?}"
                );
                trigger.trigger();
            }
            if let Some(signal) = received.next() {
                warn!(signal, "second stop request: exiting without draining");
                #[expect(clippy::exit, reason = "a second signal stops the process at once")]
                std::process::exit(130);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

fn log_summary(report: &ServeReport) {
    for listener in &report.listeners {
        let counters: Vec<String> = listener
            .counters
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        info!(
            "listener \"{}\" summary: accepted per shard {:?}; {}",
            listener.name,
            listener.accepted_per_shard,
            counters.join(" ")
        );
    }
    if report.connections_cut > 0 {
        warn!(
            connections = report.connections_cut,
            "connections closed by the drain timeout"
        );
    }
}
