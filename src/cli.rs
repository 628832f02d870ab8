//! The command line, as LayOtto's (`cmd/layotto/cmd.go`, urfave/cli over Go's `flag`): `start`
//! with LayOtto's flags (those layotto-rs uses, the others accepted and reported as not used),
//! `stop`, and `layotto <start flags>` without a subcommand. Go's flags may be written with one
//! dash or two (`-config`, `--config`, `-ll`); [`normalize`] turns the one-dash long forms into
//! clap's. Parsed on the main thread.

use std::{ffi::OsString, path::PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand};
use layotto_core::config::LogLevel;
use layotto_runtime_api::components::app_callback::{AppFlags, AppProtocol};

/// The command line.
#[derive(Parser)]
#[command(
    name = "layotto",
    version,
    about = "layotto-rs: a thread-per-core sidecar runtime, drop-in for LayOtto",
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    /// What to do; without one, the start flags start the runtime (as LayOtto's `layotto -c FILE`).
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// `start`'s flags given without the subcommand.
    #[command(flatten)]
    pub(crate) start: StartArgs,
}

/// The subcommands.
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Start the runtime.
    Start(StartArgs),
    /// Stop the running instance named by the pid file (SIGTERM, then wait for it to end).
    Stop(StopArgs),
}

/// `layotto start`'s flags.
#[derive(Args)]
pub(crate) struct StartArgs {
    /// LayOtto JSON configuration file. Without it: $RUNTIME_CONFIG, else ./configs/config.json
    /// if it exists, else the embedded default.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Log level of layotto-rs (MOSN's `-l`), overriding the config's default_log_level:
    /// trace, debug, info, warning, error, critical or off (any case; WARN and FATAL too).
    #[arg(short = 'l', long, value_name = "LEVEL", env = "LOG_LEVEL", value_parser = MosnLevel::parse)]
    pub(crate) log_level: Option<MosnLevel>,
    /// Log level of the components' loggers (LayOtto's component loggers): trace, debug, info,
    /// warn, error, fatal.
    #[arg(long, alias = "ll", value_name = "LEVEL", env = "LOGGING_LEVEL", value_parser = LogLevel::parse)]
    pub(crate) logging_level: Option<LogLevel>,
    /// Directory for the components' log, written to DIR/layotto.debug.log instead of the main log.
    #[arg(long, alias = "lp", value_name = "DIR", env = "LOGGING_PATH")]
    pub(crate) logging_path: Option<PathBuf>,
    /// Seconds open connections may finish after SIGTERM (overrides graceful_timeout).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) drain_time_s: Option<u64>,
    /// Number of shards (one pinned thread each); default: one per allowed CPU.
    #[arg(long, value_name = "N")]
    pub(crate) shards: Option<usize>,
    /// A directory of Dapr component files (YAML, `kind: Component`) served beside the config's
    /// components (Dapr's `--resources-path`).
    #[arg(long, value_name = "DIR")]
    pub(crate) resources_path: Option<PathBuf>,
    /// The app's id, over the config's `app.app_id` (daprd's `--app-id`).
    #[arg(long, value_name = "ID")]
    pub(crate) app_id: Option<String>,
    /// The port of the app's Dapr channel, where subscribed events are delivered (daprd's
    /// `--app-port`).
    #[arg(long, value_name = "PORT")]
    pub(crate) app_port: Option<u16>,
    /// How the app's Dapr channel is spoken: http (the default) or grpc (daprd's
    /// `--app-protocol`).
    #[arg(long, value_name = "PROTOCOL", value_parser = AppProtocol::parse)]
    pub(crate) app_protocol: Option<AppProtocol>,
    /// The host the app listens on, default 127.0.0.1 (daprd's `--app-channel-address`).
    #[arg(long, value_name = "HOST")]
    pub(crate) app_channel_address: Option<String>,
    /// LayOtto's flags that layotto-rs accepts and does not use.
    #[command(flatten)]
    pub(crate) unused: UnusedFlags,
}

impl StartArgs {
    /// The app settings given (daprd's `--app-*` flags).
    pub(crate) fn app_flags(&self) -> AppFlags {
        AppFlags {
            app_id: self.app_id.clone(),
            app_port: self.app_port,
            app_protocol: self.app_protocol,
            app_channel_address: self.app_channel_address.clone(),
        }
    }
}

/// `layotto stop`'s flags.
#[derive(Args)]
pub(crate) struct StopArgs {
    /// The configuration the instance was started with: its `pid` key, else MOSN's default
    /// next to it, names the pid file. Without it: $MOSN_CONFIG, else $RUNTIME_CONFIG, else
    /// ./configs/config.json (pid file ./logs/mosn.pid).
    #[arg(short, long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Seconds to wait for the instance to end after SIGTERM.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub(crate) wait: u64,
}

/// MOSN's log level names for `-l`, which has `off` beyond layotto-rs's levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MosnLevel {
    /// A level.
    Level(LogLevel),
    /// No logging.
    Off,
}

impl MosnLevel {
    /// Parses MOSN's names (LayOtto's `-l` help: trace|debug|info|warning|error|critical|off),
    /// case-insensitively.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        LogLevel::parse(text).map(Self::Level).map_err(|_| {
            format!(
                "unknown log level \"{text}\" (trace, debug, info, warning, error, critical or off)"
            )
        })
    }
}

/// How an unused flag takes its value.
#[derive(Clone, Copy)]
enum Takes {
    /// One value.
    Value,
    /// A value, repeatable (urfave's slice flags).
    Values,
    /// Go's boolean flag: alone, or `=true`/`=false`.
    Bool,
}

/// LayOtto's `start` flags that layotto-rs accepts and does not use: long name, short name or
/// alias (as LayOtto spells it), and how it takes its value. From `cmd/layotto/cmd.go`.
const UNUSED: &[(&str, Option<&str>, Takes)] = &[
    ("service-cluster", Some("s"), Takes::Value),
    ("service-node", Some("n"), Takes::Value),
    ("service-type", Some("p"), Takes::Value),
    ("service-meta", Some("sm"), Takes::Values),
    ("service-lables", Some("sl"), Takes::Values),
    ("cluster-domain", Some("domain"), Takes::Values),
    ("feature-gates", Some("f"), Takes::Value),
    ("pod-namespace", Some("pns"), Takes::Value),
    ("pod-name", Some("pn"), Takes::Value),
    ("pod-ip", Some("pi"), Takes::Value),
    ("log-format", Some("lf"), Takes::Value),
    ("component-log-level", Some("lc"), Takes::Values),
    ("local-address-ip-version", None, Takes::Value),
    ("restart-epoch", None, Takes::Value),
    ("parent-shutdown-time-s", None, Takes::Value),
    ("max-obj-name-len", None, Takes::Value),
    ("concurrency", None, Takes::Value),
    ("log-format-prefix-with-location", None, Takes::Value),
    ("bootstrap-version", None, Takes::Value),
    ("drain-strategy", None, Takes::Value),
    ("disable-hot-restart", None, Takes::Bool),
];

/// Long names and multi-letter aliases of `start`'s used flags (for [`normalize`]).
const USED_LONG: &[&str] = &[
    "config",
    "log-level",
    "logging-level",
    "ll",
    "logging-path",
    "lp",
    "drain-time-s",
    "shards",
    "resources-path",
    "app-id",
    "app-port",
    "app-protocol",
    "app-channel-address",
    "wait",
];

/// The unused flags that were given, with their values (comma-joined), in table order.
#[derive(Debug, Default)]
pub(crate) struct UnusedFlags {
    /// `(long name, value)` of each given flag.
    pub(crate) given: Vec<(&'static str, String)>,
}

impl Args for UnusedFlags {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for &(long, short, takes) in UNUSED {
            let mut arg = Arg::new(long)
                .long(long)
                .value_name("VALUE")
                .help("LayOtto's flag, accepted and not used");
            arg = match short {
                Some(short) if short.len() == 1 => {
                    arg.short(short.chars().next().unwrap_or_default())
                }
                Some(alias) => arg.visible_alias(alias),
                None => arg,
            };
            arg = match takes {
                Takes::Value => arg.action(ArgAction::Set),
                Takes::Values => arg.action(ArgAction::Append),
                Takes::Bool => arg
                    .action(ArgAction::Set)
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true"),
            };
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for UnusedFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let given = UNUSED
            .iter()
            .filter_map(|&(long, _, _)| {
                let values: Vec<&String> = matches.get_many::<String>(long)?.collect();
                let joined: Vec<&str> = values.iter().map(|v| v.as_str()).collect();
                Some((long, joined.join(",")))
            })
            .collect();
        Ok(Self { given })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// Rewrites Go's one-dash long flags (`-config x`, `-ll=debug`, `-pod-name p`) as two-dash ones,
/// leaving single-letter flags (`-c`), values and everything after `--` alone.
pub(crate) fn normalize(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest_are_values = false;
    for arg in args {
        let rewritten = match arg.to_str() {
            Some("--") => {
                rest_are_values = true;
                None
            }
            Some(text) if !rest_are_values => one_dash_long(text).map(OsString::from),
            _ => None,
        };
        out.push(rewritten.unwrap_or(arg));
    }
    out
}

fn one_dash_long(text: &str) -> Option<String> {
    let body = text.strip_prefix('-').filter(|b| !b.starts_with('-'))?;
    let name = body.split_once('=').map_or(body, |(name, _)| name);
    let known = USED_LONG.contains(&name)
        || UNUSED
            .iter()
            .any(|&(long, short, _)| long == name || (short == Some(name) && name.len() > 1));
    known.then(|| format!("-{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let args = normalize(args.iter().map(OsString::from));
        Cli::try_parse_from(args).unwrap_or_else(|err| panic!("{err}"))
    }

    fn start_args(cli: Cli) -> StartArgs {
        match cli.command {
            Some(Command::Start(args)) => args,
            _ => panic!("not start"),
        }
    }

    #[test]
    fn go_style_one_dash_long_flags_are_read() {
        let args = start_args(parse(&[
            "layotto",
            "start",
            "-config",
            "a.json",
            "-ll=debug",
            "-drain-time-s",
            "3",
            "-pod-name",
            "p1",
            "-sm",
            "a=1",
            "--sm",
            "b=2",
            "-s",
            "cluster",
            "--disable-hot-restart",
        ]));
        assert_eq!(args.config, Some(PathBuf::from("a.json")));
        assert_eq!(args.logging_level, Some(LogLevel::Debug));
        assert_eq!(args.drain_time_s, Some(3));
        assert_eq!(
            args.unused.given,
            vec![
                ("service-cluster", "cluster".to_owned()),
                ("service-meta", "a=1,b=2".to_owned()),
                ("pod-name", "p1".to_owned()),
                ("disable-hot-restart", "true".to_owned()),
            ]
        );
    }

    #[test]
    fn daprs_app_flags_are_read_go_style() {
        let args = start_args(parse(&[
            "layotto",
            "start",
            "-app-id",
            "orders",
            "--app-port=3000",
            "-app-protocol",
            "GRPC",
            "--app-channel-address",
            "10.0.0.5",
        ]));
        assert_eq!(
            args.app_flags(),
            AppFlags {
                app_id: Some("orders".into()),
                app_port: Some(3000),
                app_protocol: Some(AppProtocol::Grpc),
                app_channel_address: Some("10.0.0.5".into()),
            }
        );
        let args = normalize(["layotto", "start", "--app-protocol", "https"].map(OsString::from));
        let err = Cli::try_parse_from(args).err().unwrap().to_string();
        assert!(err.contains("not supported"), "{err}");
        assert!(
            start_args(parse(&["layotto", "start"]))
                .app_flags()
                .is_empty()
        );
    }

    #[test]
    fn mosn_level_names_are_read_in_any_case() {
        for (text, level) in [
            ("trace", MosnLevel::Level(LogLevel::Trace)),
            ("WARNING", MosnLevel::Level(LogLevel::Warn)),
            ("critical", MosnLevel::Level(LogLevel::Error)),
            ("Off", MosnLevel::Off),
        ] {
            assert_eq!(MosnLevel::parse(text), Ok(level), "{text}");
        }
        assert!(MosnLevel::parse("verbose").is_err());
    }

    #[test]
    fn start_flags_without_a_subcommand_start() {
        let cli = parse(&["layotto", "-c", "a.json", "--shards", "2"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.start.config, Some(PathBuf::from("a.json")));
        assert_eq!(cli.start.shards, Some(2));
    }

    #[test]
    fn short_flags_and_arguments_after_double_dash_are_left_alone() {
        let args = normalize(["layotto", "start", "-c", "-pn", "--", "-pn"].map(OsString::from));
        assert_eq!(args[2], OsString::from("-c"));
        assert_eq!(args[3], OsString::from("--pn"));
        assert_eq!(args[5], OsString::from("-pn"));
    }
}
