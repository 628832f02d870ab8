//! The `grpc` network filter's configuration: LayOtto's `server_name`, plus layotto-rs's own
//! HTTP/2 limits. Its `grpc_config` (the components) belongs to the process-level
//! [`Runtime`], built before any filter; the server factory built here on the main thread builds
//! a router per shard over that shared runtime.

use std::sync::Arc;

use layotto_core::{
    config::{FilterConfig, Findings, join, parse_duration},
    shutdown::ShutdownTrigger,
};
use layotto_filters::{
    chain::TerminalFactory, registry::BuildContext, stream::StreamFilterFactory,
};
use serde::Deserialize;

use crate::{
    api::RuntimeApi,
    dapr::DaprApi,
    grpc::{
        codec::HEADER_LEN,
        server::{GrpcServerFactory, GrpcSettings},
    },
    runtime::Runtime,
};

/// The filter's `type` in the config.
pub const KIND: &str = "grpc";
/// LayOtto's per-rpc metrics stream filter.
pub const METRIC_FILTER_KIND: &str = "grpc_metric";

#[derive(Deserialize)]
struct GrpcFilterConfig {
    server_name: Option<String>,
    max_message_size: Option<usize>,
    max_concurrent_streams: Option<u32>,
    handshake_timeout: Option<String>,
    idle_timeout: Option<String>,
    keepalive_interval: Option<String>,
    keepalive_timeout: Option<String>,
    max_control_frame_burst: Option<u32>,
    per_connection_buffer_limit_bytes: Option<usize>,
    listener_buffer_limit_bytes: Option<usize>,
    /// Dapr's API token: every Dapr rpc must carry it in `dapr-api-token`.
    dapr_api_token: Option<String>,
}

/// The `grpc` terminal's builder: runtime API servers (LayOtto's and Dapr's services) over
/// `runtime`, whose Dapr `Shutdown` pulls `stop`.
pub fn builder(
    runtime: Arc<Runtime>,
    stop: Arc<ShutdownTrigger>,
) -> impl Fn(&FilterConfig, &BuildContext<'_>, &mut Findings) -> Option<Arc<dyn TerminalFactory>>
+ Send
+ Sync
+ 'static {
    move |filter, ctx, findings| build(filter, ctx, findings, &runtime, &stop)
}

/// Builds the runtime API server from a `grpc` filter entry, recording problems in `findings`.
fn build(
    filter: &FilterConfig,
    ctx: &BuildContext<'_>,
    findings: &mut Findings,
    runtime: &Arc<Runtime>,
    stop: &Arc<ShutdownTrigger>,
) -> Option<Arc<dyn TerminalFactory>> {
    let path = join(&filter.path, "config");
    // `grpc_config` is the runtime's (see [`Runtime::from_config`]); the rest is this filter's.
    let mut own = filter.config.clone();
    if let Some(map) = own.as_object_mut() {
        map.remove("grpc_config");
    }
    let config: GrpcFilterConfig = findings.decode(&own, &path, &[])?;
    let mut settings = GrpcSettings::default();
    if let Some(size) = config.max_message_size {
        if size == 0 || u32::try_from(size).is_err() {
            findings.error(
                join(&path, "max_message_size"),
                format!(
                    "must be from 1 to {} (a message length is 32 bits)",
                    u32::MAX
                ),
            );
        }
        settings.max_message_size = size;
    }
    if let Some(streams) = config.max_concurrent_streams {
        if streams == 0 {
            findings.error(
                join(&path, "max_concurrent_streams"),
                "must be greater than zero",
            );
        }
        settings.max_concurrent_streams = streams;
    }
    for (key, value, slot) in [
        (
            "handshake_timeout",
            &config.handshake_timeout,
            &mut settings.timeouts.handshake,
        ),
        (
            "idle_timeout",
            &config.idle_timeout,
            &mut settings.timeouts.idle,
        ),
        (
            "keepalive_timeout",
            &config.keepalive_timeout,
            &mut settings.timeouts.keepalive_timeout,
        ),
    ] {
        if let Some(text) = value {
            match parse_duration(text) {
                Ok(duration) if !duration.is_zero() => *slot = duration,
                Ok(_) => findings.error(join(&path, key), "must be greater than zero"),
                Err(err) => findings.error(join(&path, key), err),
            }
        }
    }
    if let Some(text) = &config.keepalive_interval {
        // "0s" (the default) sends no keep-alive PINGs.
        match parse_duration(text) {
            Ok(interval) => {
                settings.timeouts.keepalive_interval = Some(interval).filter(|i| !i.is_zero())
            }
            Err(err) => findings.error(join(&path, "keepalive_interval"), err),
        }
    }
    if let Some(burst) = config.max_control_frame_burst {
        if burst == 0 {
            findings.error(
                join(&path, "max_control_frame_burst"),
                "must be greater than zero",
            );
        }
        settings.control_frames.burst = burst;
    }
    buffer_limits(&config, &path, &mut settings, findings);
    // A Unix socket is reachable only through its file (its address is a stand-in).
    if let Some(listener) = ctx
        .listener
        .filter(|l| l.unix_path.is_none() && !l.address.ip().is_loopback())
    {
        // Noted with the settings layotto-rs does not use, which are logged as warnings.
        findings.ignore(
            listener.path.clone(),
            format!(
                "the runtime API on {} answers anyone who can reach it, without an API token; \
                 bind 127.0.0.1 unless that is intended",
                listener.address
            ),
        );
    }
    if let Some(name) = config.server_name.filter(|name| name != "runtime") {
        findings.ignore(
            join(&path, "server_name"),
            format!("\"{name}\": layotto-rs serves the runtime API whatever the server name"),
        );
    }
    let token: Option<Arc<str>> = crate::dapr::api_token(config.dapr_api_token).map(Arc::from);
    let server = GrpcServerFactory::new(
        settings,
        {
            let (runtime, stop) = (runtime.clone(), stop.clone());
            Arc::new(move |_shard| {
                let mut router = RuntimeApi::router(runtime.clone());
                DaprApi::add_routes(&mut router, runtime.clone(), stop.clone(), token.clone());
                router
            })
        },
        ctx.stream_filters.clone(),
        ctx.listener.map_or("grpc", |l| l.name.as_str()),
        ctx.shards,
    );
    ctx.metrics.register(server.stats());
    ctx.metrics.register(server.buffers());
    Some(Arc::new(server))
}

/// The buffer limits: by default twice the largest message (at least 8 MiB) per connection and
/// 1 GiB per listener; set ones must hold a largest message and the listener's a connection's.
fn buffer_limits(
    config: &GrpcFilterConfig,
    path: &str,
    settings: &mut GrpcSettings,
    findings: &mut Findings,
) {
    let largest = settings.max_message_size.saturating_add(HEADER_LEN);
    let limits = &mut settings.buffers;
    match config.per_connection_buffer_limit_bytes {
        Some(limit) if limit < largest => findings.error(
            join(path, "per_connection_buffer_limit_bytes"),
            format!("must hold a message of max_message_size: at least {largest} bytes"),
        ),
        Some(limit) => limits.per_connection = limit,
        None => limits.per_connection = limits.per_connection.max(largest.saturating_mul(2)),
    }
    match config.listener_buffer_limit_bytes {
        Some(limit) if limit < limits.per_connection => findings.error(
            join(path, "listener_buffer_limit_bytes"),
            format!(
                "must hold what one connection may: at least {} bytes",
                limits.per_connection
            ),
        ),
        Some(limit) => limits.per_listener = limit,
        None => limits.per_listener = limits.per_listener.max(limits.per_connection),
    }
}

/// `grpc_metric`: layotto-rs always records per-rpc metrics, so the filter only notes that.
pub fn build_metric_filter(
    filter: &FilterConfig,
    _ctx: &BuildContext<'_>,
    findings: &mut Findings,
) -> Option<Arc<dyn StreamFilterFactory>> {
    findings.ignore(
        filter.path.clone(),
        "per-rpc metrics are always recorded (see /metrics); nothing to add",
    );
    None
}
