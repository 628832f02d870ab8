//! The `layotto` binary: the command line ([`cli`]), logging, the pid file and signals around
//! the library's runtime ([`layotto::prepare`]), which reads the configuration, wires the
//! listeners and runs the shards. Runs on the main thread; a helper thread waits for signals.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stderr,
    clippy::print_stdout,
    reason = "the binary reports configuration and start-up failures on stderr, whether or not logging is up, and `stop` reports on stdout"
)]

mod cli;
mod pid_file;
mod signals;

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command, MosnLevel, StartArgs, StopArgs};
use layotto::{Options, StartError};
use layotto_core::config::{Config, LogLevel, LogPath};
use tracing::{error, info, warn};

/// The configuration used when `start` finds no other: a gRPC listener on 127.0.0.1:34904
/// (LayOtto's port) and one on 127.0.0.1:50001 (Dapr's gRPC port), serving the same components.
const EMBEDDED_DEFAULT: &str = include_str!("../configs/default.json");

/// Where LayOtto's `start` looks for its configuration without `-c` (relative to the working
/// directory), after `$RUNTIME_CONFIG`.
const WORKING_DIR_CONFIG: &str = "configs/config.json";

/// Exit code for a configuration that cannot be used.
const EXIT_BAD_CONFIG: u8 = 2;

/// File of the components' log under `--logging-path` (LayOtto's debug log's name).
const COMPONENT_LOG_FILE: &str = "layotto.debug.log";
/// Lines a log writer's queue holds before new lines are dropped (never blocking a shard).
/// tracing-appender's default, 128 000, preallocates and touches 4 MB per writer, which was a
/// quarter of the process's memory at rest; 8 192 lines (256 KiB) outlast any burst we log.
const LOG_QUEUE_LINES: usize = 8192;

fn main() -> ExitCode {
    let args = cli::normalize(std::env::args_os());
    let no_arguments = args.len() <= 1;
    let parsed = Cli::command()
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let result = match cli.command {
        Some(Command::Start(args)) => start(&args),
        Some(Command::Stop(args)) => Ok(stop(&args)),
        // LayOtto shows its help when given nothing, and starts when given start's flags.
        None if no_arguments => {
            let _ = Cli::command().print_help();
            Ok(ExitCode::SUCCESS)
        }
        None => start(&cli.start),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            error!("{err:#}");
            eprintln!("layotto: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the configuration comes from.
enum ConfigSource {
    /// `-c FILE`.
    Flag(PathBuf),
    /// `$RUNTIME_CONFIG`.
    Env(PathBuf),
    /// `./configs/config.json`, found in the working directory.
    WorkingDir(PathBuf),
    /// The embedded default.
    Embedded,
}

impl ConfigSource {
    /// LayOtto's order: `-c`, `$RUNTIME_CONFIG`, `./configs/config.json` if it exists; then
    /// (layotto-rs's own) the embedded default.
    fn find(flag: Option<&Path>) -> Self {
        if let Some(path) = flag {
            return Self::Flag(path.to_path_buf());
        }
        if let Some(path) = std::env::var_os("RUNTIME_CONFIG").filter(|v| !v.is_empty()) {
            return Self::Env(path.into());
        }
        let local = PathBuf::from(WORKING_DIR_CONFIG);
        if local.is_file() {
            return Self::WorkingDir(local);
        }
        Self::Embedded
    }

    fn path(&self) -> Option<&Path> {
        match self {
            Self::Flag(path) | Self::Env(path) | Self::WorkingDir(path) => Some(path),
            Self::Embedded => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Flag(path) => path.display().to_string(),
            Self::Env(path) => format!("{} (from $RUNTIME_CONFIG)", path.display()),
            Self::WorkingDir(path) => {
                format!("{} (found in the working directory)", path.display())
            }
            Self::Embedded => "embedded default config".to_owned(),
        }
    }

    fn read(&self) -> std::io::Result<String> {
        match self.path() {
            Some(path) => std::fs::read_to_string(path),
            None => Ok(EMBEDDED_DEFAULT.to_owned()),
        }
    }
}

fn start(args: &StartArgs) -> Result<ExitCode> {
    // First: a signal at any point of start-up ends it cleanly.
    let signals = signals::Signals::install()?;
    let code = start_and_serve(args, &signals);
    // Start-up failed (or serving ended): the pid file and log guards go now, in this order.
    drop(signals.release());
    code
}

fn start_and_serve(args: &StartArgs, signals: &signals::Signals) -> Result<ExitCode> {
    let source = ConfigSource::find(args.config.as_deref());
    let described = source.describe();
    let text = match source.read() {
        Ok(text) => text,
        Err(err) => {
            eprintln!("layotto: cannot read config file {described}: {err}");
            return Ok(ExitCode::from(EXIT_BAD_CONFIG));
        }
    };
    let options = Options {
        shards: args.shards,
        resources_path: args.resources_path.clone(),
        app: args.app_flags(),
    };
    let mut prepared = match layotto::prepare(&text, options) {
        Ok(prepared) => prepared,
        Err(StartError::InvalidConfig(problems)) => {
            eprintln!(
                "layotto: invalid configuration ({described}), {} problem(s):",
                problems.len()
            );
            for problem in &problems {
                eprintln!("  {problem}");
            }
            return Ok(ExitCode::from(EXIT_BAD_CONFIG));
        }
        Err(err) => return Err(err).context("cannot start"),
    };
    if let Some(seconds) = args.drain_time_s {
        prepared.set_drain_timeout(Duration::from_secs(seconds));
    }

    let log_guards = init_logging(prepared.config(), args)?;
    signals.hold(|held| held.log_guards = log_guards);
    info!(version = env!("CARGO_PKG_VERSION"), config = %described, shards = prepared.shards(), "starting layotto-rs");
    for (flag, value) in &args.unused.given {
        warn!("flag --{flag} ({value:?}) is LayOtto's and not used by layotto-rs");
    }
    let pid_path = pid_file::path_for(source.path(), prepared.config().pid_file.as_deref());
    match pid_file::PidFile::write(&pid_path) {
        Ok(pid_file) => {
            info!(path = %pid_file.path().display(), "pid file written");
            signals.hold(|held| held.pid_file = Some(pid_file));
        }
        Err(err) => {
            warn!(path = %pid_path.display(), "cannot write the pid file ({err}); `layotto stop` will not find this process");
        }
    }
    let stop = prepared.stop_handle();
    let drain = prepared.config().drain_timeout;
    let running = match prepared.start() {
        Ok(running) => running,
        Err(err) => return Err(err).context("cannot start"),
    };
    let _held = signals.serving(stop, drain);
    running.join()?;
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// `layotto stop`: SIGTERM to the instance the pid file names, then wait for it to end.
fn stop(args: &StopArgs) -> ExitCode {
    let config = args
        .config
        .clone()
        .or_else(|| {
            std::env::var_os("MOSN_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| {
            std::env::var_os("RUNTIME_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(WORKING_DIR_CONFIG));
    let configured = std::fs::read_to_string(&config)
        .ok()
        .and_then(|text| pid_file::configured_in(&text));
    let path = pid_file::path_for(Some(&config), configured.as_deref());
    match pid_file::stop(&path, Duration::from_secs(args.wait)) {
        Ok(pid) => {
            println!(
                "layotto: stopped process {pid} (pid file {})",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("layotto: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// `err` and its sources, `: `-separated.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Sets up `tracing` to the config's log path, at `-l`'s level, else the config's, else INFO;
/// the components' loggers at `--logging-level` and, with `--logging-path DIR`, into
/// `DIR/layotto.debug.log` instead. Writing happens on background threads so shards never wait
/// on the log.
fn init_logging(
    config: &Config,
    args: &StartArgs,
) -> Result<Vec<tracing_appender::non_blocking::WorkerGuard>> {
    use tracing_subscriber::{
        Layer, filter::filter_fn, layer::SubscriberExt, util::SubscriberInitExt,
    };
    let (level, off) = match args.log_level {
        Some(MosnLevel::Level(level)) => (level, false),
        Some(MosnLevel::Off) => (LogLevel::Error, true),
        None => (config.log_level.unwrap_or(LogLevel::Info), false),
    };
    let (writer, guard, ansi) = match &config.log_path {
        LogPath::Stdout => {
            let (w, g) = log_queue(std::io::stdout());
            (w, g, std::io::stdout().is_terminal())
        }
        LogPath::Stderr => {
            let (w, g) = log_queue(std::io::stderr());
            (w, g, std::io::stderr().is_terminal())
        }
        LogPath::File(path) => {
            let (w, g) = log_queue(append(path)?);
            (w, g, false)
        }
    };
    let mut guards = vec![guard];
    let components_apart = args.logging_path.is_some();
    let is_component =
        |target: &str| target.starts_with(layotto_core::log_levels::COMPONENTS_TARGET);
    let main_layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_thread_names(true)
        .with_filter(filter_fn(move |meta| {
            !(off || (components_apart && is_component(meta.target())))
        }));
    let component_layer = match &args.logging_path {
        Some(dir) => {
            let path = dir.join(COMPONENT_LOG_FILE);
            let (w, g) = log_queue(append(&path)?);
            guards.push(g);
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(w)
                    .with_ansi(false)
                    .with_thread_names(true)
                    .with_filter(filter_fn(move |meta| is_component(meta.target()))),
            )
        }
        None => None,
    };
    // The level filter is reloadable: the actuator's POST /actuator/logger changes it.
    tracing_subscriber::registry()
        .with(layotto_core::log_levels::reloadable_filter(level))
        .with(main_layer)
        .with(component_layer)
        .init();
    if let Some(level) = args.logging_level {
        layotto_core::log_levels::set_component_level(
            layotto_core::log_levels::COMPONENTS_TARGET,
            level.as_str(),
        )
        .context("cannot set the components' log level")?;
    }
    Ok(guards)
}

/// A writer that hands lines to a thread of its own through a [`LOG_QUEUE_LINES`]-line queue.
fn log_queue<W: std::io::Write + Send + 'static>(
    sink: W,
) -> (
    tracing_appender::non_blocking::NonBlocking,
    tracing_appender::non_blocking::WorkerGuard,
) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .finish(sink)
}

/// Opens a log file for appending, creating it.
fn append(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))
}
