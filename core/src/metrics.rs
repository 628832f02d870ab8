//! Metrics for Prometheus: a registry of sources (listeners, rpcs, components) registered on the
//! main thread while building, and the text exposition format they are rendered in (sans-IO).
//! Rendering happens when `/metrics` is scraped, on whichever shard serves the scrape; sources
//! read per-shard counters and histograms and merge them then, so recording never waits.

use std::{
    collections::BTreeMap,
    fmt::{self, Write},
    sync::Arc,
};

use hdrhistogram::Histogram;

use crate::{backend::BackendHandle, handler::HandlerFactory, shard::ListenerStats};

/// Quantiles every summary reports.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// Something that reports metrics when scraped.
pub trait MetricSource: Send + Sync {
    /// Adds this source's current values to `out`.
    fn collect(&self, out: &mut Exposition);
}

/// Every source of the process.
#[derive(Default)]
#[expect(
    clippy::disallowed_types,
    reason = "written on the main thread before the shards start; a scrape then takes it uncontended, to clone the list"
)]
pub struct MetricsRegistry {
    sources: std::sync::Mutex<Vec<Arc<dyn MetricSource>>>,
}

impl MetricsRegistry {
    /// Adds a source.
    pub fn register(&self, source: Arc<dyn MetricSource>) {
        self.sources
            .lock()
            .expect("metrics lock poisoned")
            .push(source);
    }

    /// All sources' metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let sources = self.sources.lock().expect("metrics lock poisoned").clone();
        let mut out = Exposition::default();
        for source in sources {
            source.collect(&mut out);
        }
        out.render()
    }
}

/// A listener's connection counts and its handler's counters.
pub struct ListenerMetrics {
    /// The listener's name (the `listener` label).
    pub name: String,
    /// Its connection counts.
    pub stats: Arc<ListenerStats>,
    /// Its handler, whose counters become `layotto_listener_<counter>_total`.
    pub handler: Arc<dyn HandlerFactory>,
}

impl MetricSource for ListenerMetrics {
    fn collect(&self, out: &mut Exposition) {
        let labels = [("listener", self.name.as_str())];
        out.counter(
            "layotto_listener_connections_total",
            "Connections accepted.",
            &labels,
            self.stats.accepted.sum(),
        );
        out.gauge(
            "layotto_listener_open_connections",
            "Connections open now.",
            &labels,
            self.stats.open() as f64,
        );
        out.counter(
            "layotto_listener_refused_over_fd_reserve_total",
            "Connections closed at once because the process held nearly all its descriptors.",
            &labels,
            self.stats.refused_over_fd_reserve.sum(),
        );
        for (counter, value) in self.handler.counters() {
            // The handler's own `connections` (e.g. tcp_proxy's, those it served) would be the
            // same series as the accepted ones above.
            let name = match counter {
                "connections" => "layotto_listener_handled_connections_total".to_owned(),
                counter => format!("layotto_listener_{counter}_total"),
            };
            out.counter(
                &name,
                &format!("The listener's {counter} count."),
                &labels,
                value,
            );
        }
    }
}

impl MetricSource for BackendHandle {
    fn collect(&self, out: &mut Exposition) {
        out.gauge(
            "layotto_backend_calls_in_flight",
            "Component calls running on the backend pool.",
            &[],
            self.in_flight() as f64,
        );
    }
}

/// Metric families being collected, rendered in the text exposition format (version 0.0.4).
/// Counter samples of the same series (name and labels) are summed, so sources (e.g. two gRPC
/// listeners) may report their shares of one series.
#[derive(Default)]
pub struct Exposition {
    families: BTreeMap<String, Family>,
}

struct Family {
    help: String,
    kind: &'static str,
    samples: Vec<(String, Sample)>,
}

/// A sample's value.
enum Sample {
    Count(u64),
    Real(f64),
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sample::Count(count) => write!(f, "{count}"),
            Sample::Real(value) => write!(f, "{value}"),
        }
    }
}

impl Exposition {
    /// A counter sample, added to the series' earlier samples if any.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        let series = format!("{name}{}", render_labels(labels, None));
        let samples = self.family(name, help, "counter");
        match samples.iter_mut().find(|(existing, _)| *existing == series) {
            Some((_, Sample::Count(total))) => *total += value,
            _ => samples.push((series, Sample::Count(value))),
        }
    }

    /// A gauge sample.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let series = format!("{name}{}", render_labels(labels, None));
        self.family(name, help, "gauge")
            .push((series, Sample::Real(value)));
    }

    /// A summary of `histogram` with [`QUANTILES`], `_sum` and `_count`; recorded values are
    /// divided by `divisor` (e.g. 1e6 for µs recorded, seconds exposed).
    pub fn summary(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        histogram: &Histogram<u64>,
        divisor: f64,
    ) {
        let mut samples = Vec::with_capacity(QUANTILES.len() + 2);
        for quantile in QUANTILES {
            let value = histogram.value_at_quantile(quantile) as f64 / divisor;
            let labels = render_labels(labels, Some(("quantile", &quantile.to_string())));
            samples.push((format!("{name}{labels}"), Sample::Real(value)));
        }
        let count = histogram.len();
        let sum = histogram.mean() * count as f64 / divisor;
        let plain = render_labels(labels, None);
        samples.push((format!("{name}_sum{plain}"), Sample::Real(sum)));
        samples.push((format!("{name}_count{plain}"), Sample::Count(count)));
        self.family(name, help, "summary").extend(samples);
    }

    fn family(&mut self, name: &str, help: &str, kind: &'static str) -> &mut Vec<(String, Sample)> {
        &mut self
            .families
            .entry(name.to_owned())
            .or_insert_with(|| Family {
                help: help.to_owned(),
                kind,
                samples: Vec::new(),
            })
            .samples
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for (name, family) in &self.families {
            let _ = writeln!(text, "# HELP {name} {}", family.help);
            let _ = writeln!(text, "# TYPE {name} {}", family.kind);
            for (series, value) in &family.samples {
                let _ = writeln!(text, "{series} {value}");
            }
        }
        text
    }
}

fn render_labels(labels: &[(&str, &str)], extra: Option<(&str, &str)>) -> String {
    let all: Vec<String> = labels
        .iter()
        .copied()
        .chain(extra)
        .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
        .collect();
    if all.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", all.join(","))
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl MetricSource for Fixed {
        fn collect(&self, out: &mut Exposition) {
            out.counter("layotto_calls_total", "Calls.", &[("method", "/a\"b")], 3);
            out.counter("layotto_calls_total", "Calls.", &[("method", "/c")], 4);
            out.counter("layotto_calls_total", "Calls.", &[("method", "/c")], 1);
            out.gauge("layotto_open", "Open.", &[], 2.0);
            let mut histogram = Histogram::<u64>::new(3).unwrap();
            for micros in [100, 200, 300, 400] {
                histogram.record(micros).unwrap();
            }
            out.summary(
                "layotto_seconds",
                "Latency.",
                &[("l", "x")],
                &histogram,
                1e6,
            );
        }
    }

    #[test]
    fn renders_families_once_with_escaped_labels_summed_counters_and_quantiles() {
        let registry = MetricsRegistry::default();
        registry.register(Arc::new(Fixed));
        let text = registry.render();
        let expected = r#"# HELP layotto_calls_total Calls.
# TYPE layotto_calls_total counter
layotto_calls_total{method="/a\"b"} 3
layotto_calls_total{method="/c"} 5
# HELP layotto_open Open.
# TYPE layotto_open gauge
layotto_open 2
# HELP layotto_seconds Latency.
# TYPE layotto_seconds summary
layotto_seconds{l="x",quantile="0.5"} 0.0002
layotto_seconds{l="x",quantile="0.9"} 0.0004
layotto_seconds{l="x",quantile="0.99"} 0.0004
layotto_seconds{l="x",quantile="0.999"} 0.0004
layotto_seconds_sum{l="x"} 0.001
layotto_seconds_count{l="x"} 4
"#;
        assert_eq!(text, expected);
    }
}
