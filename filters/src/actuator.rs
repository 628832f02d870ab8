//! The actuator: LayOtto hosts it on a listener whose terminal is MOSN's HTTP `proxy` with the
//! `actuator_filter` stream filter; layotto-rs serves that listener with the admin HTTP server,
//! answering as LayOtto's endpoints do: `/actuator/health/liveness` (LayOtto's
//! `runtime_startup` indicator) and `/actuator/health/readiness` (`runtime_startup` and every
//! registered component's check), each 503 naming what is DOWN; `/actuator/info` (the `app`
//! contributor: name, version, `compiled`); `POST /actuator/logger` (a component logger's
//! level, see [`log_levels`]). Also the Prometheus endpoint's routes. Built on the main thread;
//! requests are answered on the shard that accepted them.

use std::sync::{Arc, Weak};

use std::time::SystemTime;

use layotto_core::{
    config::{FilterConfig, Findings, join},
    health::HealthRegistry,
    log_levels,
    metrics::MetricsRegistry,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    admin_http::{AdminHttpFactory, AdminRequest, AdminResponse, AdminRoutes},
    chain::TerminalFactory,
    registry::BuildContext,
    stream::StreamFilterFactory,
};

/// The terminal type LayOtto's actuator listener uses.
pub const PROXY_KIND: &str = "proxy";
/// The stream filter that marks a `proxy` listener as the actuator's.
pub const FILTER_KIND: &str = "actuator_filter";

/// Keys of the `proxy` filter's config, which only route MOSN's HTTP proxy.
const IGNORED_PROXY_KEYS: &[&str] = &[
    "downstream_protocol",
    "upstream_protocol",
    "name",
    "router_config_name",
    "extend_config",
];

/// True when the listener being built is LayOtto's actuator host (a `proxy` terminal with the
/// `actuator_filter` stream filter).
pub fn hosts_actuator(ctx: &BuildContext<'_>) -> bool {
    ctx.listener
        .is_some_and(|l| l.stream_filters.iter().any(|f| f.kind == FILTER_KIND))
}

/// Builds the actuator from the `proxy` filter entry of its listener (see [`hosts_actuator`];
/// other `proxy` listeners are HTTP proxies, [`crate::http_proxy`]).
pub fn build(
    filter: &FilterConfig,
    ctx: &BuildContext<'_>,
    findings: &mut Findings,
) -> Option<Arc<dyn TerminalFactory>> {
    let _: Map<String, Value> = findings.decode(
        &filter.config,
        &join(&filter.path, "config"),
        IGNORED_PROXY_KEYS,
    )?;
    Some(Arc::new(AdminHttpFactory::new(actuator_routes(
        ctx.health.clone(),
    ))))
}

/// `actuator_filter` itself builds no call filter: its listener's `proxy` terminal serves it.
pub fn build_filter(
    filter: &FilterConfig,
    ctx: &BuildContext<'_>,
    findings: &mut Findings,
) -> Option<Arc<dyn StreamFilterFactory>> {
    let on_proxy = ctx
        .listener
        .and_then(|l| l.network_filters.last())
        .is_some_and(|f| f.kind == PROXY_KIND);
    if !on_proxy {
        findings.ignore(
            filter.path.clone(),
            "actuator_filter applies to a listener whose terminal is proxy; ignored here",
        );
    }
    None
}

/// LayOtto's indicator of the runtime itself, in liveness and readiness.
const RUNTIME_STARTUP: &str = "runtime_startup";

/// The actuator's endpoints over `health`.
pub fn actuator_routes(health: Arc<HealthRegistry>) -> AdminRoutes {
    let started = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
    Arc::new(move |request: AdminRequest| {
        let health = health.clone();
        let startup = runtime_startup(request.stopping);
        match request.path.as_str() {
            "/actuator/health/liveness" => Some(Box::pin(async move {
                health_report(vec![(RUNTIME_STARTUP.to_owned(), startup)])
            })),
            "/actuator/health/readiness" => Some(Box::pin(async move {
                let mut indicators = vec![(RUNTIME_STARTUP.to_owned(), startup)];
                for (name, result) in health.check_all().await {
                    let reason = result.err();
                    indicators.push((name, reason));
                }
                health_report(indicators)
            })),
            "/actuator/info" => {
                let info = json!({"app": {
                    "name": "layotto-rs",
                    "version": env!("CARGO_PKG_VERSION"),
                    "compiled": started,
                }});
                Some(Box::pin(async move {
                    AdminResponse::json(200, info.to_string())
                }))
            }
            "/actuator/logger" => {
                let answer = change_log_level(&request);
                Some(Box::pin(async move { answer }))
            }
            _ => None,
        }
    })
}

/// LayOtto's `runtime_startup` indicator: `None` (UP) while serving, the reason it is DOWN once
/// the process is stopping. (Its INIT, "starting", is never seen: the actuator listener starts
/// with the others, after the components.)
fn runtime_startup(stopping: bool) -> Option<String> {
    stopping.then(|| "shutdown".to_owned())
}

/// LayOtto's health shape over `indicators` (each `None` when UP, else why it is DOWN): 200 when
/// every one is UP, else 503. `runtime_startup` carries `details.reason` always, as LayOtto's;
/// components only when DOWN.
fn health_report(indicators: Vec<(String, Option<String>)>) -> AdminResponse {
    let up = indicators.iter().all(|(_, reason)| reason.is_none());
    let components: Map<String, Value> = indicators
        .into_iter()
        .map(|(name, reason)| {
            let value = match reason {
                None if name == RUNTIME_STARTUP => {
                    json!({"status": "UP", "details": {"reason": ""}})
                }
                None => json!({"status": "UP"}),
                Some(reason) => json!({"status": "DOWN", "details": {"reason": reason}}),
            };
            (name, value)
        })
        .collect();
    let status = if up { "UP" } else { "DOWN" };
    AdminResponse::json(
        if up { 200 } else { 503 },
        json!({"status": status, "components": components}).to_string(),
    )
}

/// The body of `POST /actuator/logger`, as LayOtto's.
#[derive(Deserialize)]
struct LoggerLevelChange {
    component: String,
    level: String,
}

/// `POST /actuator/logger`: 200 `{}` once the level is changed, 400 with the reason otherwise.
fn change_log_level(request: &AdminRequest) -> AdminResponse {
    if request.method != "POST" {
        return AdminResponse::json(
            405,
            json!({"error": "POST a {\"component\", \"level\"} body"}).to_string(),
        );
    }
    let change = serde_json::from_slice::<LoggerLevelChange>(&request.body)
        .map_err(|err| format!("invalid request body: {err}"))
        .and_then(|change| {
            log_levels::set_component_level(&change.component, &change.level)
                .map_err(|err| err.to_string())
        });
    match change {
        Ok(()) => AdminResponse::json(200, "{}".to_owned()),
        Err(reason) => AdminResponse::json(400, json!({"error": reason}).to_string()),
    }
}

/// The Prometheus endpoint at `endpoint` over `metrics`, held weakly: the registry holds the
/// listener serving these routes, so a strong handle would keep both alive for ever.
pub fn metrics_routes(metrics: Weak<MetricsRegistry>, endpoint: String) -> AdminRoutes {
    Arc::new(move |request: AdminRequest| {
        (request.path == endpoint).then(|| {
            let body = metrics
                .upgrade()
                .map(|metrics| metrics.render())
                .unwrap_or_default();
            Box::pin(async move {
                AdminResponse {
                    status: 200,
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    body,
                }
            }) as _
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_names_what_is_down_and_runtime_startup_always() {
        let up = health_report(vec![
            (RUNTIME_STARTUP.into(), None),
            ("config_store.a".into(), None),
        ]);
        assert_eq!(up.status, 200);
        assert_eq!(
            up.body,
            r#"{"status":"UP","components":{"runtime_startup":{"status":"UP","details":{"reason":""}},"config_store.a":{"status":"UP"}}}"#
        );
        let down = health_report(vec![
            (RUNTIME_STARTUP.into(), runtime_startup(true)),
            ("config_store.b".into(), Some("etcd at x: refused".into())),
        ]);
        assert_eq!(down.status, 503);
        let body: Value = serde_json::from_str(&down.body).unwrap();
        assert_eq!(body["status"], "DOWN");
        assert_eq!(
            body["components"]["runtime_startup"]["details"]["reason"],
            "shutdown"
        );
        assert_eq!(
            body["components"]["config_store.b"]["details"]["reason"],
            "etcd at x: refused"
        );
    }
}
