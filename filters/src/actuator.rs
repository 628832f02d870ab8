//! The actuator: LayOtto hosts it on a listener whose terminal is MOSN's HTTP `proxy` with the
//! `actuator_filter` stream filter; layotto-rs serves that listener with the admin HTTP server:
//! `/actuator/health/liveness`, `/actuator/health/readiness` (every registered component's
//! check; 503 naming the failing ones) and `/actuator/info`. Also the Prometheus endpoint's
//! routes. Built on the main thread; requests are answered on the shard that accepted them.

use std::sync::{Arc, Weak};

use layotto_core::{
    config::{FilterConfig, Findings, join},
    health::HealthRegistry,
    metrics::MetricsRegistry,
};
use serde_json::{Map, Value, json};

use crate::{
    admin_http::{AdminHttpFactory, AdminResponse, AdminRoutes},
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

/// Builds the actuator from a `proxy` filter entry on a listener with `actuator_filter`; other
/// `proxy` listeners are not served (noted, not an error).
pub fn build(
    filter: &FilterConfig,
    ctx: &BuildContext<'_>,
    findings: &mut Findings,
) -> Option<Arc<dyn TerminalFactory>> {
    let is_actuator = ctx
        .listener
        .is_some_and(|l| l.stream_filters.iter().any(|f| f.kind == FILTER_KIND));
    if !is_actuator {
        findings.ignore(
            filter.path.clone(),
            "an HTTP proxy is served only as the actuator's host (with actuator_filter); listener not started",
        );
        return None;
    }
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

/// The actuator's endpoints over `health`.
pub fn actuator_routes(health: Arc<HealthRegistry>) -> AdminRoutes {
    Arc::new(move |path| {
        let health = health.clone();
        match path {
            "/actuator/health/liveness" => Some(Box::pin(async move {
                AdminResponse::json(200, json!({"status": "UP"}).to_string())
            })),
            "/actuator/health/readiness" => Some(Box::pin(async move {
                let results = health.check_all().await;
                readiness(&results)
            })),
            "/actuator/info" => Some(Box::pin(async move {
                let info =
                    json!({"app": {"name": "layotto-rs", "version": env!("CARGO_PKG_VERSION")}});
                AdminResponse::json(200, info.to_string())
            })),
            _ => None,
        }
    })
}

/// LayOtto's readiness shape: 200 with every component UP, else 503 with the reasons.
fn readiness(results: &[(String, Result<(), String>)]) -> AdminResponse {
    let components: Map<String, Value> = results
        .iter()
        .map(|(name, result)| {
            let value = match result {
                Ok(()) => json!({"status": "UP"}),
                Err(reason) => json!({"status": "DOWN", "details": {"reason": reason}}),
            };
            (name.clone(), value)
        })
        .collect();
    let up = results.iter().all(|(_, result)| result.is_ok());
    let status = if up { "UP" } else { "DOWN" };
    AdminResponse::json(
        if up { 200 } else { 503 },
        json!({"status": status, "components": components}).to_string(),
    )
}

/// The Prometheus endpoint at `endpoint` over `metrics`, held weakly: the registry holds the
/// listener serving these routes, so a strong handle would keep both alive for ever.
pub fn metrics_routes(metrics: Weak<MetricsRegistry>, endpoint: String) -> AdminRoutes {
    Arc::new(move |path| {
        (path == endpoint).then(|| {
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
    fn readiness_names_the_failing_components() {
        let up = readiness(&[("config_store.a".into(), Ok(()))]);
        assert_eq!(up.status, 200);
        assert_eq!(
            up.body,
            r#"{"status":"UP","components":{"config_store.a":{"status":"UP"}}}"#
        );
        let down = readiness(&[
            ("config_store.a".into(), Ok(())),
            ("config_store.b".into(), Err("etcd at x: refused".into())),
        ]);
        assert_eq!(down.status, 503);
        let body: Value = serde_json::from_str(&down.body).unwrap();
        assert_eq!(body["status"], "DOWN");
        assert_eq!(
            body["components"]["config_store.b"]["details"]["reason"],
            "etcd at x: refused"
        );
        assert_eq!(readiness(&[]).status, 200);
    }
}
