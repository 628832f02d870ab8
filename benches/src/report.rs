//! Results: per-measurement summaries (medians over the repeats, with the spread), the JSON file,
//! and the Markdown tables with ratios against the baselines run side by side.

use std::fmt::Write;

use serde::Serialize;

use crate::{h2load::H2loadRun, load::Measurement};

/// What a target spent on one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cost {
    /// CPU time (user + system) per request, in microseconds.
    pub cpu_us_per_request: f64,
    /// Syscalls per request of the measured window, when perf could count them.
    pub syscalls_per_request: Option<f64>,
}

/// The median over repeats of one measurement, in microseconds and requests per second.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    /// Completed requests per second.
    pub rps: f64,
    /// Latency percentiles.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Failed requests (all runs).
    pub errors: u64,
    /// Requests never answered (all runs): not sent on time for the in-flight cap of the open
    /// loop, or unanswered at a run's hard deadline.
    pub missed: u64,
    /// Lowest and highest p99 over the runs.
    pub p99_spread_us: (f64, f64),
    /// Lowest and highest throughput over the runs.
    pub rps_spread: (f64, f64),
    /// CPU time the target spent per request, in microseconds.
    pub cpu_us_per_request: f64,
    /// Syscalls the target made per request, when perf could count them.
    pub syscalls_per_request: Option<f64>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median, or `None` for no values.
fn median_of_some(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| median(values.to_vec()))
}

/// A per-request figure with two decimals (syscalls per request are often below one), or `–`
/// when there is none.
fn optional(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.2}"))
}

fn spread(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    (min, max)
}

impl Summary {
    /// Medians of `runs`, whose targets spent `cpu_per_request` µs of CPU per request and made
    /// `syscalls_per_request` syscalls per request (empty when not counted).
    pub(crate) fn of(
        runs: &[Measurement],
        cpu_per_request: &[f64],
        syscalls_per_request: &[f64],
    ) -> Self {
        let quantile = |q: f64| -> Vec<f64> {
            runs.iter()
                .map(|run| run.latency.value_at_quantile(q) as f64 / 1000.0)
                .collect()
        };
        let rps: Vec<f64> = runs.iter().map(Measurement::throughput).collect();
        let p99 = quantile(0.99);
        Self {
            rps: median(rps.clone()),
            p50_us: median(quantile(0.5)),
            p90_us: median(quantile(0.9)),
            p99_us: median(p99.clone()),
            p999_us: median(quantile(0.999)),
            max_us: median(
                runs.iter()
                    .map(|r| r.latency.max() as f64 / 1000.0)
                    .collect(),
            ),
            errors: runs.iter().map(|r| r.errors).sum(),
            missed: runs.iter().map(|r| r.missed).sum(),
            p99_spread_us: spread(&p99),
            rps_spread: spread(&rps),
            cpu_us_per_request: median(cpu_per_request.to_vec()),
            syscalls_per_request: median_of_some(syscalls_per_request),
        }
    }
}

/// One target in one latency/throughput scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LatencyRow {
    /// What was measured (shared by the targets compared).
    pub scenario: String,
    /// The target.
    pub target: String,
    /// The core it was pinned to.
    pub core: Option<usize>,
    /// Its figures.
    pub summary: Summary,
}

impl LatencyRow {
    /// A row.
    pub(crate) fn new(
        scenario: String,
        target: String,
        core: Option<usize>,
        summary: Summary,
    ) -> Self {
        Self {
            scenario,
            target,
            core,
            summary,
        }
    }
}

/// One gRPC server under h2load: medians over the repeats.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct H2loadRow {
    /// What was measured (shared by the servers compared).
    pub scenario: String,
    /// The server.
    pub target: String,
    /// The core it was pinned to.
    pub core: Option<usize>,
    /// Completed requests per second.
    pub rps: f64,
    /// Lowest and highest throughput over the runs.
    pub rps_spread: (f64, f64),
    /// Mean time per request, in microseconds.
    pub mean_us: f64,
    /// Longest time of a request, in microseconds.
    pub max_us: f64,
    /// Requests h2load counted as not succeeded (all runs).
    pub failed: u64,
    /// CPU time the server spent per request, in microseconds.
    pub cpu_us_per_request: f64,
    /// Syscalls the server made per request, when perf could count them.
    pub syscalls_per_request: Option<f64>,
}

impl H2loadRow {
    /// The row of `runs` of `target` in `scenario`.
    pub(crate) fn of(
        scenario: String,
        target: String,
        core: Option<usize>,
        runs: &[(H2loadRun, Cost)],
    ) -> Self {
        let of =
            |figure: fn(&(H2loadRun, Cost)) -> f64| runs.iter().map(figure).collect::<Vec<_>>();
        let syscalls: Vec<f64> = runs
            .iter()
            .filter_map(|(_, c)| c.syscalls_per_request)
            .collect();
        Self {
            scenario,
            target,
            core,
            rps: median(of(|(r, _)| r.rps)),
            rps_spread: spread(&of(|(r, _)| r.rps)),
            mean_us: median(of(|(r, _)| r.mean_us)),
            max_us: median(of(|(r, _)| r.max_us)),
            failed: runs.iter().map(|(r, _)| r.failed).sum(),
            cpu_us_per_request: median(of(|(_, c)| c.cpu_us_per_request)),
            syscalls_per_request: median_of_some(&syscalls),
        }
    }
}

/// One target's bulk throughput.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BulkRow {
    /// The target.
    pub target: String,
    /// The core it was pinned to.
    pub core: Option<usize>,
    /// Median echoed throughput.
    pub gbit_per_s: f64,
    /// Lowest and highest over the runs.
    pub spread: (f64, f64),
    /// Median CPU time the target spent per GiB echoed, in milliseconds.
    pub cpu_ms_per_gib: f64,
}

/// One server's resident memory.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemoryRow {
    /// The server.
    pub target: String,
    /// At rest.
    pub idle_kib: u64,
    /// The anonymous (private, not file-backed) part of it.
    pub idle_anon_kib: u64,
    /// Connections held for the second reading.
    pub connections: usize,
    /// While holding them.
    pub with_connections_kib: Option<u64>,
}

/// Everything one run of the harness measured.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Report {
    /// How it was run: cores, pinning, timing.
    pub setup: Vec<(String, String)>,
    /// L4 echo scenarios.
    pub l4: Vec<LatencyRow>,
    /// L4 bulk throughput.
    pub bulk: Vec<BulkRow>,
    /// gRPC scenarios.
    pub grpc: Vec<LatencyRow>,
    /// gRPC servers under h2load.
    pub grpc_h2load: Vec<H2loadRow>,
    /// Dapr's `GetState` (gRPC and HTTP) beside LayOtto's, at saturation.
    pub dapr: Vec<LatencyRow>,
    /// The latency layotto-rs adds to a redis read, at fixed rates.
    pub redis_added: Vec<LatencyRow>,
    /// layotto-rs's resident memory at rest in the `redis_added` runs' config, in KiB.
    pub redis_added_rss_kib: Option<u64>,
    /// Memory.
    pub memory: Vec<MemoryRow>,
}

impl Report {
    /// The report as Markdown.
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| setting | value |\n|---|---|");
        for (key, value) in &self.setup {
            let _ = writeln!(out, "| {key} | {value} |");
        }
        if !self.l4.is_empty() {
            let _ = writeln!(
                out,
                "\n### L4 echo (ratios against `direct`, HAProxy and nginx)\n"
            );
            latency_tables(&mut out, &self.l4, "direct", &["haproxy", "nginx"]);
        }
        if !self.bulk.is_empty() {
            let _ = writeln!(out, "\n### L4 bulk echo throughput\n");
            let _ = writeln!(
                out,
                "| target | core | Gbit/s (min–max) | CPU ms per GiB | vs direct | vs haproxy | vs nginx |\n|---|---|---|---|---|---|---|"
            );
            let of = |name: &str| {
                self.bulk
                    .iter()
                    .find(|r| r.target == name)
                    .map(|r| r.gbit_per_s)
            };
            for row in &self.bulk {
                let ratio = |name| {
                    of(name).map_or("–".into(), |base| {
                        format!("{:.2}×", row.gbit_per_s / base)
                    })
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.2} ({:.2}–{:.2}) | {:.0} | {} | {} | {} |",
                    row.target,
                    core(row.core),
                    row.gbit_per_s,
                    row.spread.0,
                    row.spread.1,
                    row.cpu_ms_per_gib,
                    ratio("direct"),
                    ratio("haproxy"),
                    ratio("nginx")
                );
            }
        }
        if !self.grpc.is_empty() {
            let _ = writeln!(
                out,
                "\n### gRPC unary (ratios against the tonic reference)\n"
            );
            latency_tables(&mut out, &self.grpc, "tonic", &[]);
        }
        if !self.grpc_h2load.is_empty() {
            h2load_tables(&mut out, &self.grpc_h2load, "tonic");
        }
        if !self.dapr.is_empty() {
            let _ = writeln!(
                out,
                "\n### Dapr's GetState beside LayOtto's (ratios against layotto-rs's LayOtto gRPC GetState)\n"
            );
            latency_tables(
                &mut out,
                &self.dapr,
                "layotto-rs, LayOtto gRPC",
                &["tonic, LayOtto gRPC", "tonic, Dapr gRPC", "redis direct"],
            );
        }
        if !self.redis_added.is_empty() {
            let _ = writeln!(
                out,
                "\n### Latency layotto-rs adds to a redis read (against `redis direct`)\n"
            );
            latency_tables(&mut out, &self.redis_added, "redis direct", &[]);
            against_dapr(&mut out, &self.redis_added, self.redis_added_rss_kib);
        }
        if !self.memory.is_empty() {
            let _ = writeln!(out, "\n### Resident memory\n");
            let _ = writeln!(
                out,
                "| server | at rest | of it anonymous | with idle connections |\n|---|---|---|---|"
            );
            for row in &self.memory {
                let with = row
                    .with_connections_kib
                    .filter(|_| row.connections > 0)
                    .map_or("–".into(), |kib| {
                        format!(
                            "{:.1} MiB with {} ({:.2} KiB each)",
                            kib as f64 / 1024.0,
                            row.connections,
                            (kib.saturating_sub(row.idle_kib)) as f64 / row.connections as f64
                        )
                    });
                let _ = writeln!(
                    out,
                    "| {} | {:.1} MiB | {:.1} MiB | {with} |",
                    row.target,
                    row.idle_kib as f64 / 1024.0,
                    row.idle_anon_kib as f64 / 1024.0
                );
            }
        }
        out
    }
}

fn core(core: Option<usize>) -> String {
    core.map_or("any".into(), |c| c.to_string())
}

/// One table per scenario: figures, throughput ratios (closed loop) or added latency (open
/// loop) against `baseline`, and throughput ratios against `others`.
fn latency_tables(out: &mut String, rows: &[LatencyRow], baseline: &str, others: &[&str]) {
    let mut scenarios: Vec<&str> = rows.iter().map(|r| r.scenario.as_str()).collect();
    scenarios.dedup();
    for scenario in scenarios {
        let group: Vec<&LatencyRow> = rows.iter().filter(|r| r.scenario == scenario).collect();
        let base = group
            .iter()
            .find(|r| r.target == baseline)
            .map(|r| &r.summary);
        let open = scenario.contains("open loop");
        // Only the peers this table has get a column.
        let others: Vec<&str> = others
            .iter()
            .copied()
            .filter(|other| group.iter().any(|r| r.target == *other))
            .collect();
        let _ = writeln!(out, "**{scenario}**\n");
        let mut header = "| target | core | req/s (min–max) | p50 µs | p90 µs | p99 µs (min–max) | p99.9 µs | max µs | errors | missed | CPU µs/req | syscalls/req |".to_owned();
        header.push_str(if open {
            " added p50 / p99 / p99.9 vs "
        } else {
            " req/s vs "
        });
        header.push_str(baseline);
        header.push_str(" |");
        for other in &others {
            let _ = write!(header, " req/s vs {other} |");
        }
        let columns = header.matches('|').count() - 1;
        let _ = writeln!(out, "{header}\n{}", "|---".repeat(columns) + "|");
        for row in &group {
            let s = &row.summary;
            let versus = match base {
                None => "–".into(),
                Some(b) if open => format!(
                    "{:+.1} / {:+.1} / {:+.1} µs",
                    s.p50_us - b.p50_us,
                    s.p99_us - b.p99_us,
                    s.p999_us - b.p999_us
                ),
                Some(b) => format!("{:.2}×", s.rps / b.rps),
            };
            let mut line = format!(
                "| {} | {} | {:.0} ({:.0}–{:.0}) | {:.1} | {:.1} | {:.1} ({:.1}–{:.1}) | {:.1} | {:.1} | {} | {} | {:.1} | {} | {versus} |",
                row.target,
                core(row.core),
                s.rps,
                s.rps_spread.0,
                s.rps_spread.1,
                s.p50_us,
                s.p90_us,
                s.p99_us,
                s.p99_spread_us.0,
                s.p99_spread_us.1,
                s.p999_us,
                s.max_us,
                s.errors,
                s.missed,
                s.cpu_us_per_request,
                optional(s.syscalls_per_request)
            );
            for other in &others {
                let ratio = group
                    .iter()
                    .find(|r| r.target == *other)
                    .map_or("–".into(), |o| format!("{:.2}×", s.rps / o.summary.rps));
                let _ = write!(line, " {ratio} |");
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
    }
}

/// Dapr's own published figures for a state get over gRPC, for comparison: the latency its
/// sidecar adds at this rate, and its memory.
pub(crate) const DAPR_PUBLISHED_RATE: f64 = 1_000.0;
/// Added p50 at [`DAPR_PUBLISHED_RATE`], µs.
const DAPR_ADDED_P50_US: f64 = 510.0;
/// Added p99 at [`DAPR_PUBLISHED_RATE`], µs.
const DAPR_ADDED_P99_US: f64 = 910.0;
/// Resident memory per sidecar, bytes (~50 MB).
const DAPR_RSS_BYTES: f64 = 50e6;

/// Ends the name of a `GetState` row on layotto-rs's in-memory store, beside the row of the same
/// API on the redis store (`{that row's name}{IN_MEMORY_STORE}`): the API's own hop, without a
/// backend.
pub(crate) const IN_MEMORY_STORE: &str = ", in-memory store";

/// The latency each layotto-rs row on redis of the `DAPR_PUBLISHED_RATE` table adds over `redis
/// direct` and its memory at rest, as fractions of what Dapr publishes for its sidecar; and how
/// much of the added p50 the redis store's hop is (the row less its API's in-memory row).
fn against_dapr(out: &mut String, rows: &[LatencyRow], rss_kib: Option<u64>) {
    let scenario = format!("open loop {DAPR_PUBLISHED_RATE}/s");
    let group: Vec<&LatencyRow> = rows
        .iter()
        .filter(|r| r.scenario.ends_with(&scenario))
        .collect();
    let Some(direct) = group.iter().find(|r| r.target == "redis direct") else {
        return;
    };
    let _ = writeln!(
        out,
        "**Against Dapr's published figures** (state get over gRPC at {DAPR_PUBLISHED_RATE} QPS: +{DAPR_ADDED_P50_US} µs p50, +{DAPR_ADDED_P99_US} µs p99, ~50 MB per sidecar)\n\n| through layotto-rs | added p50 µs | vs Dapr's | added p99 µs | vs Dapr's | p50 µs of the redis store's hop (over the in-memory store) |\n|---|---|---|---|---|---|"
    );
    let on_redis = group
        .iter()
        .filter(|r| r.target != "redis direct" && !r.target.ends_with(IN_MEMORY_STORE));
    for row in on_redis {
        let (p50, p99) = (
            row.summary.p50_us - direct.summary.p50_us,
            row.summary.p99_us - direct.summary.p99_us,
        );
        let in_memory = format!("{}{IN_MEMORY_STORE}", row.target);
        let store_hop = group
            .iter()
            .find(|r| r.target == in_memory)
            .map_or("–".into(), |r| {
                format!("{:+.1}", row.summary.p50_us - r.summary.p50_us)
            });
        let _ = writeln!(
            out,
            "| {} | {p50:+.1} | {:.2}× | {p99:+.1} | {:.2}× | {store_hop} |",
            row.target,
            p50 / DAPR_ADDED_P50_US,
            p99 / DAPR_ADDED_P99_US
        );
    }
    if let Some(kib) = rss_kib {
        let bytes = kib as f64 * 1024.0;
        let _ = writeln!(
            out,
            "\nResident memory at rest: {:.1} MiB, {:.2}× Dapr's ~50 MB.",
            kib as f64 / 1024.0,
            bytes / DAPR_RSS_BYTES
        );
    }
    let _ = writeln!(out);
}

/// One table per h2load scenario, with throughput, CPU and syscall ratios against `baseline`.
fn h2load_tables(out: &mut String, rows: &[H2loadRow], baseline: &str) {
    let mut scenarios: Vec<&str> = rows.iter().map(|r| r.scenario.as_str()).collect();
    scenarios.dedup();
    for scenario in scenarios {
        let group: Vec<&H2loadRow> = rows.iter().filter(|r| r.scenario == scenario).collect();
        let base = group.iter().find(|r| r.target == baseline);
        let _ = writeln!(
            out,
            "**{scenario}**\n\n| target | core | req/s (min–max) | mean µs | max µs | failed | CPU µs/req | syscalls/req | req/s vs {baseline} | CPU/req vs {baseline} |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for row in &group {
            let ratio = |of: fn(&H2loadRow) -> f64| {
                base.map_or("–".into(), |b| format!("{:.2}×", of(row) / of(b)))
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} ({:.0}–{:.0}) | {:.1} | {:.1} | {} | {:.1} | {} | {} | {} |",
                row.target,
                core(row.core),
                row.rps,
                row.rps_spread.0,
                row.rps_spread.1,
                row.mean_us,
                row.max_us,
                row.failed,
                row.cpu_us_per_request,
                optional(row.syscalls_per_request),
                ratio(|r| r.rps),
                ratio(|r| r.cpu_us_per_request),
            );
        }
        let _ = writeln!(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &str, target: &str, p50_us: f64, p99_us: f64) -> LatencyRow {
        LatencyRow::new(
            scenario.into(),
            target.into(),
            Some(1),
            Summary {
                rps: 1000.0,
                p50_us,
                p90_us: p50_us,
                p99_us,
                p999_us: p99_us,
                max_us: p99_us,
                errors: 0,
                missed: 0,
                p99_spread_us: (p99_us, p99_us),
                rps_spread: (1000.0, 1000.0),
                cpu_us_per_request: 10.0,
                syscalls_per_request: Some(0.024),
            },
        )
    }

    #[test]
    fn latency_added_over_direct_is_set_against_daprs_published_figures() {
        let rows = [
            row(
                "GetState on redis, open loop 1000/s",
                "redis direct",
                100.0,
                200.0,
            ),
            row(
                "GetState on redis, open loop 1000/s",
                "layotto-rs, Dapr gRPC",
                151.0,
                291.0,
            ),
            row(
                "GetState on redis, open loop 1000/s",
                "layotto-rs, Dapr gRPC, in-memory store",
                130.0,
                250.0,
            ),
            row(
                "GetState on redis, open loop 1000/s",
                "layotto-rs, Dapr HTTP",
                160.0,
                300.0,
            ),
            row(
                "GetState on redis, open loop 10000/s",
                "redis direct",
                1.0,
                2.0,
            ),
            row(
                "GetState on redis, open loop 10000/s",
                "layotto-rs, Dapr gRPC",
                9.0,
                9.0,
            ),
        ];
        let report = Report {
            redis_added: rows.to_vec(),
            redis_added_rss_kib: Some(10 * 1024),
            ..Report::default()
        };
        let markdown = report.markdown();
        // The 1000/s rows on redis only, as fractions of +510 µs and +910 µs, with the redis
        // store's share of the p50 where the API's in-memory row is there to subtract.
        assert!(
            markdown.contains("| layotto-rs, Dapr gRPC | +51.0 | 0.10× | +91.0 | 0.10× | +21.0 |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| layotto-rs, Dapr HTTP | +60.0 | 0.12× | +100.0 | 0.11× | – |"),
            "{markdown}"
        );
        assert!(
            !markdown.contains("| layotto-rs, Dapr gRPC, in-memory store | +30.0 |"),
            "{markdown}"
        );
        assert!(!markdown.contains("| +8.0 |"), "{markdown}");
        assert!(
            markdown.contains("+51.0 / +91.0 / +91.0 µs"),
            "added over direct: {markdown}"
        );
        assert!(markdown.contains("10.0 MiB, 0.21× Dapr's"), "{markdown}");
        // Syscalls per request keep two decimals.
        assert!(markdown.contains("| 0.02 |"), "{markdown}");
    }
}
