//! Turning a listener's filter entries into a [`FilterChainFactory`]: each `type` is looked up
//! among the registered builders, which validate their own `config` block and record problems
//! with JSON paths. Main thread, before shards start.

use std::sync::Arc;

use layotto_core::{
    backend::BackendHandle,
    config::{Config, FilterConfig, Findings, ListenerConfig, join},
    health::HealthRegistry,
    metrics::MetricsRegistry,
};

use crate::{
    chain::{FilterChainFactory, NetworkFilterFactory, TerminalFactory},
    http_proxy::HttpProxyDirectory,
    stream::StreamFilterFactory,
};

/// What builders may consult.
pub struct BuildContext<'a> {
    /// The whole configuration (clusters, other listeners).
    pub config: &'a Config,
    /// Number of shards (for per-shard counters).
    pub shards: usize,
    /// The backend pool, for components with tokio-based clients.
    pub backend: BackendHandle,
    /// Where filters and components register what `/metrics` reports.
    pub metrics: Arc<MetricsRegistry>,
    /// Where components register their readiness checks.
    pub health: Arc<HealthRegistry>,
    /// The listener being built (set by [`FilterRegistry::build`]).
    pub listener: Option<&'a ListenerConfig>,
    /// The stream filters of the listener being built (set by [`FilterRegistry::build`] for its
    /// terminal; empty otherwise).
    pub stream_filters: Vec<Arc<dyn StreamFilterFactory>>,
    /// Where HTTP proxies are found by listener name (for in-process callers).
    pub http_proxies: Arc<HttpProxyDirectory>,
}

impl<'a> BuildContext<'a> {
    /// A context for the process: no listener yet.
    pub fn new(
        config: &'a Config,
        shards: usize,
        backend: BackendHandle,
        metrics: Arc<MetricsRegistry>,
        health: Arc<HealthRegistry>,
    ) -> Self {
        Self {
            config,
            shards,
            backend,
            metrics,
            health,
            listener: None,
            stream_filters: Vec::new(),
            http_proxies: Arc::default(),
        }
    }

    /// The same context for one listener's filters, and its terminal's `stream_filters`.
    fn for_listener(
        &self,
        listener: &'a ListenerConfig,
        stream_filters: Vec<Arc<dyn StreamFilterFactory>>,
    ) -> Self {
        BuildContext {
            config: self.config,
            shards: self.shards,
            backend: self.backend.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            listener: Some(listener),
            stream_filters,
            http_proxies: self.http_proxies.clone(),
        }
    }
}

/// Builds a terminal filter from its config entry (a closure: the `grpc` terminal holds the
/// process's runtime).
pub type TerminalBuilder = Arc<
    dyn Fn(&FilterConfig, &BuildContext<'_>, &mut Findings) -> Option<Arc<dyn TerminalFactory>>
        + Send
        + Sync,
>;
/// Builds a non-terminal network filter from its config entry.
pub type FilterBuilder =
    fn(&FilterConfig, &BuildContext<'_>, &mut Findings) -> Option<Arc<dyn NetworkFilterFactory>>;
/// Builds a stream filter from its config entry (`None` without an error: nothing to do).
pub type StreamFilterBuilder =
    fn(&FilterConfig, &BuildContext<'_>, &mut Findings) -> Option<Arc<dyn StreamFilterFactory>>;

/// The known filter types and how to build them.
pub struct FilterRegistry {
    terminals: Vec<(&'static str, TerminalBuilder)>,
    filters: Vec<(&'static str, FilterBuilder)>,
    stream_filters: Vec<(&'static str, StreamFilterBuilder)>,
}

impl Default for FilterRegistry {
    /// The filters of this crate.
    fn default() -> Self {
        Self {
            terminals: vec![
                (crate::tcp_proxy::KIND, Arc::new(crate::tcp_proxy::build)),
                (crate::http_proxy::KIND, Arc::new(crate::http_proxy::build)),
            ],
            filters: vec![
                (
                    crate::connection_limit::KIND,
                    crate::connection_limit::build,
                ),
                (crate::tcpcopy::KIND, crate::tcpcopy::build),
            ],
            stream_filters: vec![
                (crate::flow_control::KIND, crate::flow_control::build),
                (crate::actuator::FILTER_KIND, crate::actuator::build_filter),
            ],
        }
    }
}

impl FilterRegistry {
    /// Adds a terminal filter type (e.g. `grpc` from the runtime API crate).
    pub fn with_terminal(
        mut self,
        kind: &'static str,
        builder: impl Fn(
            &FilterConfig,
            &BuildContext<'_>,
            &mut Findings,
        ) -> Option<Arc<dyn TerminalFactory>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.terminals.push((kind, Arc::new(builder)));
        self
    }

    /// Adds a non-terminal network filter type.
    pub fn with_filter(mut self, kind: &'static str, builder: FilterBuilder) -> Self {
        self.filters.push((kind, builder));
        self
    }

    /// Adds a stream filter type.
    pub fn with_stream_filter(mut self, kind: &'static str, builder: StreamFilterBuilder) -> Self {
        self.stream_filters.push((kind, builder));
        self
    }

    /// Builds `listener`'s chain, or records why it cannot be built.
    pub fn build<'a>(
        &self,
        listener: &'a ListenerConfig,
        ctx: &BuildContext<'a>,
        findings: &mut Findings,
    ) -> Option<FilterChainFactory> {
        let ctx = &ctx.for_listener(listener, Vec::new());
        let stream_filters: Vec<_> = listener
            .stream_filters
            .iter()
            .filter_map(|filter| {
                match self.stream_filters.iter().find(|(k, _)| *k == filter.kind) {
                    Some((_, build)) => build(filter, ctx, findings),
                    None => {
                        self.unknown_filter(filter, findings);
                        None
                    }
                }
            })
            .collect();
        let (terminal, filters) = listener.network_filters.split_last()?;
        let built: Vec<_> = filters
            .iter()
            .filter_map(|filter| {
                if let Some((_, build)) = self.filters.iter().find(|(k, _)| *k == filter.kind) {
                    build(filter, ctx, findings)
                } else if self.terminals.iter().any(|(k, _)| *k == filter.kind) {
                    findings.error(
                        join(&filter.path, "type"),
                        format!("\"{}\" must be the last filter of its chain", filter.kind),
                    );
                    None
                } else {
                    self.unknown_filter(filter, findings);
                    None
                }
            })
            .collect();
        let terminal = match self.terminals.iter().find(|(k, _)| *k == terminal.kind) {
            Some((_, build)) => build(
                terminal,
                &ctx.for_listener(listener, stream_filters),
                findings,
            )?,
            None => {
                self.unknown_filter(terminal, findings);
                return None;
            }
        };
        (built.len() == filters.len()).then(|| FilterChainFactory::new(built, terminal))
    }

    /// Records a filter type that is not known (an error listing what is).
    fn unknown_filter(&self, filter: &FilterConfig, findings: &mut Findings) {
        let mut known: Vec<&str> = self.terminals.iter().map(|(k, _)| *k).collect();
        known.extend(self.filters.iter().map(|(k, _)| *k));
        known.extend(self.stream_filters.iter().map(|(k, _)| *k));
        findings.error(
            join(&filter.path, "type"),
            format!("unknown filter type \"{}\" (known: {known:?})", filter.kind),
        );
    }
}
