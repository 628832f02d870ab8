//! The `layotto` binary: the command line, logging and signals around the library's runtime
//! ([`layotto::prepare`]), which reads the configuration, wires the listeners and runs the shards.
//! Runs on the main thread; a helper thread waits for signals.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stderr,
    reason = "the binary reports configuration and start-up failures on stderr, whether or not logging is up"
)]

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use layotto::{Options, StartError, StopHandle};
use layotto_core::config::{Config, LogLevel, LogPath};
use tracing::{error, info, warn};

/// The configuration used when `start` is given no `-c`: a gRPC listener on 127.0.0.1:34904
/// (LayOtto's port) and one on 127.0.0.1:50001 (Dapr's gRPC port), serving the same components.
const EMBEDDED_DEFAULT: &str = include_str!("../configs/default.json");

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
    let options = Options {
        shards: args.shards,
    };
    let prepared = match layotto::prepare(&text, options) {
        Ok(prepared) => prepared,
        Err(StartError::InvalidConfig(problems)) => {
            eprintln!(
                "layotto: invalid configuration ({source}), {} problem(s):",
                problems.len()
            );
            for problem in &problems {
                eprintln!("  {problem}");
            }
            return Ok(ExitCode::from(EXIT_BAD_CONFIG));
        }
        Err(err) => return Err(err).context("cannot start"),
    };

    let _log_guard = init_logging(prepared.config(), args.log_level)?;
    info!(version = env!("CARGO_PKG_VERSION"), config = %source, shards = prepared.shards(), "starting layotto-rs");
    watch_signals(prepared.stop_handle(), prepared.config().drain_timeout)?;
    let running = match prepared.start() {
        Ok(running) => running,
        Err(StartError::NothingToServe) => {
            error!("no listener in {source} can be served");
            return Ok(ExitCode::from(EXIT_BAD_CONFIG));
        }
        Err(err) => return Err(err).context("cannot start"),
    };
    running.join()?;
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
fn watch_signals(stop: StopHandle, drain: std::time::Duration) -> Result<()> {
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
                stop.stop();
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
