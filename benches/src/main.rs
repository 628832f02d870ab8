//! `layotto-bench`: the benchmark harness of layotto-rs. Starts layotto-rs and its peers (an echo
//! server, HAProxy, nginx and redis when installed, a tonic reference server) pinned to cores, offers
//! them load from this process (pinned to its own core), and reports percentiles, throughput,
//! memory and ratios against the baselines as a Markdown table and a JSON file. See
//! `benches/README.md` for the method and the latest figures.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "a command-line tool, not layotto-rs: it reports on the terminal and paces load from threads of its own"
)]

mod calls;
mod grpc_client;
mod h2load;
mod http_client;
mod load;
mod report;
mod scenarios;
mod servers;
mod syscalls;
mod targets;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::{load::Timing, report::Report, scenarios::Plan};

#[derive(Parser)]
#[command(
    name = "layotto-bench",
    version,
    about = "Benchmarks layotto-rs side by side with direct connections, HAProxy, nginx, tonic and redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the scenarios and writes `<out>.md` and `<out>.json`.
    Run {
        /// The layotto binary under test.
        #[arg(long, default_value = "target/release/layotto")]
        layotto: PathBuf,
        /// An argument added to every `layotto start` (repeatable), e.g.
        /// `--layotto-arg=--log-level=debug`.
        #[arg(long = "layotto-arg", allow_hyphen_values = true)]
        layotto_args: Vec<String>,
        /// Scenarios: l4, bulk, grpc, dapr, redis-added, memory (comma-separated).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "l4,bulk,grpc,dapr,redis-added,memory"
        )]
        only: Vec<String>,
        /// Measured time of each run.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Time discarded before measuring.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        /// How long after each measured window answers are still waited for; then the run
        /// ends with what it has (unanswered requests count as missed).
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        grace: Duration,
        /// Runs of each measurement (the median is reported, with the spread).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Core of the server under test.
        #[arg(long, default_value_t = 1)]
        server_core: usize,
        /// Core of this load generator and of the upstream echo server.
        #[arg(long, default_value_t = 0)]
        load_core: usize,
        /// Idle connections held for the memory scenario.
        #[arg(long, default_value_t = 10_000)]
        idle_connections: usize,
        /// Where to write the report (without extension).
        #[arg(long, default_value = "benches/results/latest")]
        out: PathBuf,
    },
    /// (internal) The echo server the L4 scenarios proxy to.
    EchoServer {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// (internal) The tonic reference server of the gRPC scenarios.
    TonicServer {
        #[arg(long)]
        listen: SocketAddr,
    },
}

fn pinned_to(pinned: bool, core: usize) -> String {
    if pinned {
        format!("core {core}")
    } else {
        "not pinned".into()
    }
}

/// The CPU's model name (`/proc/cpuinfo`).
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The running kernel's release.
fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn single_thread(future: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

fn main() -> Result<()> {
    // Children inherit it: as many descriptors as the hard limit allows.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    match Cli::parse().command {
        Command::EchoServer { listen } => single_thread(servers::echo(listen)),
        Command::TonicServer { listen } => single_thread(servers::tonic_reference(listen)),
        Command::Run {
            layotto,
            layotto_args,
            only,
            duration,
            warmup,
            grace,
            repeats,
            server_core,
            load_core,
            idle_connections,
            out,
        } => {
            anyhow::ensure!(
                layotto.exists(),
                "no layotto binary at {} (cargo build --release)",
                layotto.display()
            );
            let cores = core_affinity::get_core_ids().unwrap_or_default();
            let pinned = cores.iter().any(|c| c.id == load_core)
                && cores.iter().any(|c| c.id == server_core);
            if pinned {
                core_affinity::set_for_current(core_affinity::CoreId { id: load_core });
            } else {
                eprintln!(
                    "cores {load_core} and {server_core} are not both available: nothing is pinned"
                );
            }
            let layotto_flags = std::iter::once("--shards 1".to_owned())
                .chain(layotto_args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            let plan = Plan {
                layotto: targets::Layotto {
                    binary: layotto,
                    extra_args: layotto_args,
                },
                server_core: pinned.then_some(server_core),
                load_core: pinned.then_some(load_core),
                timing: Timing {
                    warmup,
                    duration,
                    grace,
                },
                repeats: repeats.max(1),
            };
            let mut report = Report {
                setup: vec![
                    (
                        "date (UTC)".into(),
                        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                    ),
                    ("CPU".into(), cpu_model()),
                    ("kernel".into(), kernel()),
                    ("cores online".into(), cores.len().to_string()),
                    ("server under test".into(), pinned_to(pinned, server_core)),
                    (
                        "load generator and upstream echo".into(),
                        pinned_to(pinned, load_core),
                    ),
                    ("layotto-rs".into(), layotto_flags),
                    ("file descriptors per process".into(), nofile.to_string()),
                    (
                        "runs".into(),
                        format!(
                            "{repeats} × ({} warm-up + {} measured), targets taking turns, median shown",
                            humantime::format_duration(warmup),
                            humantime::format_duration(duration)
                        ),
                    ),
                    (
                        "syscalls per request".into(),
                        match syscalls::availability() {
                            Ok(()) => "perf stat -e raw_syscalls:sys_enter, measured window".into(),
                            Err(why) => format!("not counted: {why}"),
                        },
                    ),
                    (
                        "h2load".into(),
                        h2load::installed()
                            .map_or("not installed: skipped".into(), |p| p.display().to_string()),
                    ),
                    (
                        "redis-server".into(),
                        targets::installed("redis-server")
                            .map_or("not installed: redis rows skipped".into(), |p| {
                                format!("{}, no persistence, on the load core", p.display())
                            }),
                    ),
                ],
                ..Report::default()
            };
            for scenario in &only {
                eprintln!("{scenario}:");
                match scenario.as_str() {
                    "l4" => report.l4 = scenarios::l4(&plan, &[64, 16 * 1024])?,
                    "bulk" => report.bulk = scenarios::bulk(&plan, 4)?,
                    "grpc" => (report.grpc, report.grpc_h2load) = scenarios::grpc(&plan)?,
                    "dapr" => report.dapr = scenarios::dapr(&plan)?,
                    "redis-added" => {
                        let (rows, at_rest) = scenarios::redis_added(&plan)?;
                        report.redis_added = rows;
                        report.redis_added_rss_kib = at_rest.as_ref().map(|row| row.idle_kib);
                        report.memory.extend(at_rest);
                    }
                    "memory" => {
                        report
                            .memory
                            .extend(scenarios::memory(&plan, idle_connections, nofile)?)
                    }
                    other => anyhow::bail!(
                        "unknown scenario {other} (l4, bulk, grpc, dapr, redis-added, memory)"
                    ),
                }
            }
            let markdown = report.markdown();
            println!("{markdown}");
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(out.with_extension("md"), &markdown)
                .context("writing the Markdown report")?;
            std::fs::write(
                out.with_extension("json"),
                serde_json::to_string_pretty(&report)?,
            )
            .context("writing the JSON report")?;
            eprintln!("wrote {0}.md and {0}.json", out.display());
            Ok(())
        }
    }
}
