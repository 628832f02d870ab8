//! Per-rpc statistics of one gRPC listener: calls started, calls finished by status code, and a
//! latency histogram per method, each with per-shard slots written only by their shard and merged
//! when `/metrics` is read. A method's slots are allocated on its first call. Exposed under our
//! names (`layotto_grpc_*`, labelled by listener and method) and under the names of MOSN's
//! `grpc_metric` filter that LayOtto serves (`grpc_request_total`, `grpc_response_succ_total`,
//! `grpc_response_fail_total`, labelled by `service`, the full method path, summed over
//! listeners, and counted when a call finishes, as MOSN counts them). Also the calls whose
//! handler waited and so ran in a task of their own.

use std::{collections::HashMap, sync::OnceLock, time::Duration};

use layotto_core::{
    metrics::{Exposition, MetricSource},
    stats::{ShardedCounter, ShardedHistogram},
};

use super::status::Code;

/// Where calls to unrouted paths are counted.
pub const UNKNOWN_METHOD: &str = "unknown";

/// One method's counts.
pub struct RpcStats {
    started: ShardedCounter,
    finished: Vec<ShardedCounter>,
    latency_micros: ShardedHistogram,
}

impl RpcStats {
    fn new(shards: usize) -> Self {
        Self {
            started: ShardedCounter::new(shards),
            finished: Code::ALL
                .iter()
                .map(|_| ShardedCounter::new(shards))
                .collect(),
            latency_micros: ShardedHistogram::new(shards),
        }
    }

    /// A call started on `shard`.
    pub fn started(&self, shard: usize) {
        self.started.add(shard, 1);
    }

    /// A call on `shard` finished with `code` after `elapsed`.
    pub fn finished(&self, shard: usize, code: Code, elapsed: Duration) {
        self.finished[code as usize].add(shard, 1);
        self.latency_micros
            .record(shard, elapsed.as_micros().try_into().unwrap_or(u64::MAX));
    }
}

/// The statistics of a listener's methods.
pub struct GrpcStats {
    listener: String,
    shards: usize,
    methods: HashMap<String, OnceLock<RpcStats>>,
    unknown: OnceLock<RpcStats>,
    /// Calls whose handler did not complete when first polled, so ran in a task of their own.
    waited: ShardedCounter,
}

impl GrpcStats {
    /// Statistics for listener `listener` serving `paths` on `shards` shards.
    pub fn new(listener: String, shards: usize, paths: impl IntoIterator<Item = String>) -> Self {
        Self {
            listener,
            shards,
            methods: paths.into_iter().map(|p| (p, OnceLock::new())).collect(),
            unknown: OnceLock::new(),
            waited: ShardedCounter::new(shards),
        }
    }

    /// The counts of the method at `path` (unrouted paths share [`UNKNOWN_METHOD`]'s).
    pub fn method(&self, path: &str) -> &RpcStats {
        self.methods
            .get(path)
            .unwrap_or(&self.unknown)
            .get_or_init(|| RpcStats::new(self.shards))
    }

    /// A call on `shard` waited (its handler did not complete when first polled).
    pub fn waited(&self, shard: usize) {
        self.waited.add(shard, 1);
    }
}

impl MetricSource for GrpcStats {
    fn collect(&self, out: &mut Exposition) {
        out.counter(
            "layotto_grpc_calls_waited_total",
            "gRPC calls whose handler waited (for a backend, request bytes or the client's window) and so ran in a task of its own; the others were answered in their connection's task.",
            &[("listener", self.listener.as_str())],
            self.waited.sum(),
        );
        let used = self
            .methods
            .iter()
            .map(|(path, stats)| (path.as_str(), stats))
            .chain([(UNKNOWN_METHOD, &self.unknown)])
            .filter_map(|(path, stats)| Some((path, stats.get()?)));
        for (method, stats) in used {
            let labels = [("listener", self.listener.as_str()), ("method", method)];
            out.counter(
                "layotto_grpc_requests_total",
                "gRPC calls started.",
                &labels,
                stats.started.sum(),
            );
            for (code, finished) in Code::ALL.iter().zip(&stats.finished) {
                let count = finished.sum();
                if count > 0 {
                    let code = format!("{code:?}");
                    let labels = [labels[0], labels[1], ("code", code.as_str())];
                    out.counter(
                        "layotto_grpc_responses_total",
                        "gRPC calls finished, by status code.",
                        &labels,
                        count,
                    );
                }
            }
            let succeeded = stats.finished[Code::Ok as usize].sum();
            let finished: u64 = stats.finished.iter().map(ShardedCounter::sum).sum();
            let service = [("service", method)];
            if method != UNKNOWN_METHOD {
                out.counter(
                    "grpc_request_total",
                    "gRPC calls finished (MOSN's grpc_metric).",
                    &service,
                    finished,
                );
                out.counter(
                    "grpc_response_succ_total",
                    "gRPC calls finished with OK (MOSN's grpc_metric).",
                    &service,
                    succeeded,
                );
                out.counter(
                    "grpc_response_fail_total",
                    "gRPC calls finished with an error (MOSN's grpc_metric).",
                    &service,
                    finished - succeeded,
                );
            }
            out.summary(
                "layotto_grpc_request_duration_seconds",
                "gRPC call latency, from the request headers to the status.",
                &labels,
                &stats.latency_micros.merged(),
                1e6,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn counts_per_method_and_code_and_reports_used_methods_only() {
        let stats = Arc::new(GrpcStats::new(
            "grpc".into(),
            2,
            ["/s/A".into(), "/s/B".into()],
        ));
        stats.method("/s/A").started(0);
        stats
            .method("/s/A")
            .finished(0, Code::Ok, Duration::from_millis(2));
        stats.method("/s/A").started(1);
        stats
            .method("/s/A")
            .finished(1, Code::ResourceExhausted, Duration::from_millis(4));
        stats.method("/nope").started(1);
        let mut out = Exposition::default();
        stats.collect(&mut out);
        let text = out.render();
        assert!(
            text.contains(r#"layotto_grpc_requests_total{listener="grpc",method="/s/A"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"layotto_grpc_responses_total{listener="grpc",method="/s/A",code="ResourceExhausted"} 1"#));
        assert!(
            text.contains(r#"layotto_grpc_requests_total{listener="grpc",method="unknown"} 1"#)
        );
        assert!(text.contains(
            r#"layotto_grpc_request_duration_seconds_count{listener="grpc",method="/s/A"} 2"#
        ));
        assert!(!text.contains("/s/B"), "unused methods are not reported");
        assert!(
            text.contains(r#"grpc_request_total{service="/s/A"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"grpc_response_succ_total{service="/s/A"} 1"#));
        assert!(text.contains(r#"grpc_response_fail_total{service="/s/A"} 1"#));
        assert!(
            !text.contains(r#"service="unknown""#),
            "MOSN counts routed calls only"
        );
    }
}
