//! The health keys of a cluster: MOSN's active `health_check` block and Envoy's passive
//! `outlier_detection` block, read into typed settings with every bad value reported at its JSON
//! path. Sans-IO; runs on the main thread with the rest of the config.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{Findings, join, parse_duration};

/// Active-check timeout unless `health_check.timeout` says.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Time between active checks unless `health_check.interval` says.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// Consecutive failed connects that eject a host unless `consecutive_5xx` says (Envoy's).
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// First ejection time unless `base_ejection_time` says (Envoy's).
pub const DEFAULT_BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
/// Longest ejection unless `max_ejection_time` says (Envoy's).
pub const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
/// Share of a cluster's hosts that may be ejected at once unless `max_ejection_percent` says
/// (Envoy's; one host may always be ejected).
pub const DEFAULT_MAX_EJECTION_PERCENT: u8 = 10;

/// Keys of MOSN's `health_check` layotto-rs does not use.
const IGNORED_HEALTH_CHECK: &[&str] = &[
    "interval_jitter",
    "service_name",
    "check_config",
    "event_log_path",
    "common_callbacks",
];
/// Keys of Envoy's `outlier_detection` layotto-rs does not use (ejection expiry is checked when
/// a host is picked, not on a timer; success-rate detection needs requests, not connections).
const IGNORED_OUTLIER_DETECTION: &[&str] = &[
    "interval",
    "enforcing_consecutive_5xx",
    "enforcing_consecutive_gateway_failure",
    "enforcing_success_rate",
    "success_rate_minimum_hosts",
    "success_rate_request_volume",
    "success_rate_stdev_factor",
    "split_external_local_origin_errors",
];

/// Active TCP checks of a cluster's hosts (`health_check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// How long a check's connect may take.
    pub timeout: Duration,
    /// Time between rounds of checks.
    pub interval: Duration,
    /// Passed checks in a row that mark a down host up.
    pub healthy_threshold: u32,
    /// Failed checks in a row that mark an up host down.
    pub unhealthy_threshold: u32,
}

/// Passive outlier detection of a cluster's hosts (`outlier_detection`): failed connects eject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetectionConfig {
    /// Failed connects in a row that eject a host.
    pub consecutive_failures: u32,
    /// Ejection time of a first ejection; the n-th in a row lasts n times as long.
    pub base_ejection_time: Duration,
    /// Cap on one ejection's time.
    pub max_ejection_time: Duration,
    /// Share (percent) of the hosts that may be ejected at once; one may always be.
    pub max_ejection_percent: u8,
}

impl Default for OutlierDetectionConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            base_ejection_time: DEFAULT_BASE_EJECTION_TIME,
            max_ejection_time: DEFAULT_MAX_EJECTION_TIME,
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
        }
    }
}

#[derive(Deserialize)]
struct RawHealthCheck {
    protocol: Option<String>,
    timeout: Option<String>,
    interval: Option<String>,
    healthy_threshold: Option<u32>,
    unhealthy_threshold: Option<u32>,
}

#[derive(Deserialize)]
struct RawOutlierDetection {
    consecutive_5xx: Option<u32>,
    consecutive_gateway_failure: Option<u32>,
    base_ejection_time: Option<String>,
    max_ejection_time: Option<String>,
    max_ejection_percent: Option<u32>,
}

/// A duration at `path` that must be above zero, or `default` when absent (or bad, recorded).
fn positive_duration(
    text: Option<&str>,
    path: &str,
    default: Duration,
    findings: &mut Findings,
) -> Duration {
    match text.map(parse_duration) {
        None => default,
        Some(Ok(duration)) if !duration.is_zero() => duration,
        Some(Ok(_)) => {
            findings.error(path, "must be greater than zero");
            default
        }
        Some(Err(err)) => {
            findings.error(path, err);
            default
        }
    }
}

/// A count at `path` that must be at least one, or `default` when absent (or bad, recorded).
fn positive_count(value: Option<u32>, path: &str, default: u32, findings: &mut Findings) -> u32 {
    match value {
        None => default,
        Some(0) => {
            findings.error(path, "must be at least 1");
            default
        }
        Some(count) => count,
    }
}

/// Reads a cluster's `health_check` block found at `path`.
pub(super) fn read_health_check(
    value: &Value,
    path: &str,
    findings: &mut Findings,
) -> Option<HealthCheckConfig> {
    let raw = findings.decode::<RawHealthCheck>(value, path, IGNORED_HEALTH_CHECK)?;
    if let Some(protocol) = raw.protocol.as_deref()
        && !protocol.eq_ignore_ascii_case("tcp")
    {
        findings.error(
            join(path, "protocol"),
            format!("health check protocol \"{protocol}\" is not supported (expected \"tcp\")"),
        );
    }
    Some(HealthCheckConfig {
        timeout: positive_duration(
            raw.timeout.as_deref(),
            &join(path, "timeout"),
            DEFAULT_CHECK_TIMEOUT,
            findings,
        ),
        interval: positive_duration(
            raw.interval.as_deref(),
            &join(path, "interval"),
            DEFAULT_CHECK_INTERVAL,
            findings,
        ),
        healthy_threshold: positive_count(
            raw.healthy_threshold,
            &join(path, "healthy_threshold"),
            1,
            findings,
        ),
        unhealthy_threshold: positive_count(
            raw.unhealthy_threshold,
            &join(path, "unhealthy_threshold"),
            1,
            findings,
        ),
    })
}

/// Reads a cluster's `outlier_detection` block found at `path`. A failed connect counts as a
/// gateway failure and a 5xx (Envoy's mapping of local-origin errors when they are not split),
/// so the smaller of `consecutive_5xx` and `consecutive_gateway_failure` ejects.
pub(super) fn read_outlier_detection(
    value: &Value,
    path: &str,
    findings: &mut Findings,
) -> Option<OutlierDetectionConfig> {
    let raw = findings.decode::<RawOutlierDetection>(value, path, IGNORED_OUTLIER_DETECTION)?;
    let defaults = OutlierDetectionConfig::default();
    let five_xx = raw
        .consecutive_5xx
        .map(|n| positive_count(Some(n), &join(path, "consecutive_5xx"), 1, findings));
    let gateway = raw.consecutive_gateway_failure.map(|n| {
        positive_count(
            Some(n),
            &join(path, "consecutive_gateway_failure"),
            1,
            findings,
        )
    });
    let consecutive_failures = match (five_xx, gateway) {
        (None, None) => defaults.consecutive_failures,
        (Some(n), None) | (None, Some(n)) => n,
        (Some(a), Some(b)) => a.min(b),
    };
    let base_ejection_time = positive_duration(
        raw.base_ejection_time.as_deref(),
        &join(path, "base_ejection_time"),
        defaults.base_ejection_time,
        findings,
    );
    let max_ejection_time = positive_duration(
        raw.max_ejection_time.as_deref(),
        &join(path, "max_ejection_time"),
        defaults.max_ejection_time.max(base_ejection_time),
        findings,
    );
    if max_ejection_time < base_ejection_time {
        findings.error(
            join(path, "max_ejection_time"),
            "must not be shorter than base_ejection_time",
        );
    }
    let max_ejection_percent = match raw.max_ejection_percent {
        None => defaults.max_ejection_percent,
        Some(percent) => u8::try_from(percent)
            .ok()
            .filter(|p| *p <= 100)
            .unwrap_or_else(|| {
                findings.error(
                    join(path, "max_ejection_percent"),
                    format!("{percent} is not a percentage (0 to 100)"),
                );
                defaults.max_ejection_percent
            }),
    };
    Some(OutlierDetectionConfig {
        consecutive_failures,
        base_ejection_time,
        max_ejection_time,
        max_ejection_percent,
    })
}
