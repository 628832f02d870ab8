//! Unit tests of configuration loading: LayOtto's example shapes load, and every class of mistake
//! is reported with its path, all at once.

use super::*;

fn parse(text: &str) -> (Config, Findings) {
    let mut findings = Findings::default();
    let config = Config::parse(text, &mut findings);
    (config, findings)
}

fn errors(text: &str) -> Vec<String> {
    parse(text).1.errors.iter().map(|e| e.to_string()).collect()
}

#[test]
fn in_memory_example_loads() {
    let (config, findings) = parse(include_str!("../../../configs/config_in_memory.json"));
    assert!(findings.errors.is_empty(), "{:?}", findings.errors);
    assert_eq!(config.listeners.len(), 2);
    assert_eq!(config.listeners[0].name, "grpc");
    assert_eq!(
        config.listeners[0].address,
        "127.0.0.1:34904".parse().unwrap()
    );
    assert_eq!(config.listeners[0].network_filters[0].kind, "grpc");
    assert_eq!(
        config.listeners[0].network_filters[0].path,
        "servers[0].listeners[0].filter_chains[0].filters[0]"
    );
    assert_eq!(
        config.listeners[1].stream_filters[0].kind,
        "actuator_filter"
    );
    assert_eq!(config.log_level, Some(LogLevel::Info));
    assert_eq!(config.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
    let ignored: Vec<&str> = findings.ignored.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(ignored, vec!["tracing"]);
    // Its route table is read (the HTTP proxy decodes it when a proxy names it).
    assert_eq!(config.routers.len(), 1);
    assert_eq!(config.routers[0].path, "servers[0].routers[0]");
    let prometheus = config.prometheus.unwrap();
    assert_eq!(prometheus.address, "127.0.0.1:34903".parse().unwrap());
    assert_eq!(prometheus.endpoint, "/metrics");
}

#[test]
fn metrics_sinks_are_checked() {
    let errors = errors(
        r#"{"servers": [{"listeners": [{"address": "127.0.0.1:1", "filter_chains": [{"filters": [{"type": "x"}]}]}]}],
            "metrics": {"sinks": [{"type": "prometheus", "config": {"port": 9, "address": "::1:x", "endpoint": "m"}},
                                  {"type": "prometheus", "config": {"prot": 9}}]}}"#,
    );
    assert_eq!(
        errors,
        vec![
            r#"metrics.sinks[0].config.address: invalid IP address "::1:x""#,
            "metrics.sinks[1].config: missing field `port`",
        ]
    );
}

#[test]
fn layotto_runtime_example_loads() {
    let (config, findings) = parse(include_str!("../../../configs/runtime_config.json"));
    assert!(findings.errors.is_empty(), "{:?}", findings.errors);
    assert_eq!(config.log_level, Some(LogLevel::Debug));
    let listener = &config.listeners[0];
    assert_eq!(listener.address, "0.0.0.0:34904".parse().unwrap());
    assert_eq!(listener.stream_filters[0].kind, "flowControlFilter");
    assert_eq!(
        listener.stream_filters[0].config["rules"][0]["threshold"],
        5
    );
}

#[test]
fn tcp_proxy_example_loads() {
    let (config, findings) = parse(include_str!("../../../configs/config_tcp_proxy.json"));
    assert!(findings.errors.is_empty(), "{:?}", findings.errors);
    let cluster = config.cluster("app_backend").unwrap();
    assert_eq!(cluster.hosts.len(), 2);
    assert_eq!(cluster.connect_timeout, Duration::from_secs(3));
    assert_eq!(config.drain_timeout, Duration::from_secs(15));
}

#[test]
fn embedded_default_loads() {
    let (config, findings) = parse(include_str!("../../../configs/default.json"));
    assert!(findings.errors.is_empty(), "{:?}", findings.errors);
    assert_eq!(
        config.listeners[0].address,
        "127.0.0.1:34904".parse().unwrap()
    );
}

#[test]
fn invalid_json_is_reported_with_position() {
    let errors = errors("{\"servers\": [");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("(top level): not valid JSON"),
        "{errors:?}"
    );
    assert!(errors[0].contains("line 1"), "{errors:?}");
}

const TWO_BAD_LISTENERS: &str = r#"{
  "servers": [{
    "default_log_level": "LOUD",
    "graceful_timeout": "soon",
    "listeners": [
      {"name": "a", "address": "127.0.0.1:1", "filter_chains": [{"filters": [{"type": "tcp_proxy"}]}]},
      {"name": "b", "address": "1.2.3:x", "adress": "x", "filter_chains": [{"filters": [{"type": "tcp_proxy"}]}]},
      {"name": "a", "address": "127.0.0.1:1", "filter_chains": []},
      {"name": "c", "address": 5}
    ]
  }],
  "cluster_manager": {"clusters": [
    {"name": "up", "lb_type": "LB_MAGLEV", "connect_timeout": "0s",
     "hosts": [{"address": "localhost:80", "weight": 2}, {"address": "127.0.0.1:80"}]}
  ]},
  "pprof": {"debug": true},
  "typo": 1
}"#;

#[test]
fn reports_every_problem_at_once_with_paths() {
    let errors = errors(TWO_BAD_LISTENERS);
    let expected = [
        "typo: unknown key",
        "servers[0].default_log_level: unknown log level \"LOUD\"",
        "servers[0].graceful_timeout: invalid duration \"soon\"",
        "servers[0].listeners[1].adress: unknown key",
        "servers[0].listeners[1].address: invalid socket address \"1.2.3:x\"",
        "servers[0].listeners[2].filter_chains: a filter chain with at least one filter is required",
        "servers[0].listeners[3].address: invalid type: integer `5`, expected a string",
        "cluster_manager.clusters[0].lb_type: load balancer \"LB_MAGLEV\" is not supported",
        "cluster_manager.clusters[0].connect_timeout: must be greater than zero",
        "cluster_manager.clusters[0].hosts[0].address: invalid socket address \"localhost:80\"",
        "servers[0].listeners[2].name: listener name \"a\" is already used by servers[0].listeners[0]",
        "servers[0].listeners[2].address: address 127.0.0.1:1 is already used by servers[0].listeners[0]",
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (error, expected) in errors.iter().zip(expected) {
        assert!(
            error.starts_with(expected),
            "{error:?} should start with {expected:?}"
        );
    }
}

#[test]
fn mosn_internal_blocks_are_ignored_not_rejected() {
    let (_, findings) = parse(TWO_BAD_LISTENERS);
    assert_eq!(findings.ignored.len(), 1);
    assert_eq!(findings.ignored[0].path, "pprof");
}

#[test]
fn missing_servers_and_listeners_are_errors() {
    assert_eq!(errors("{}"), vec!["(top level): missing field `servers`"]);
    assert_eq!(
        errors(r#"{"servers": []}"#),
        vec!["servers: at least one server is required"]
    );
    assert_eq!(
        errors(r#"{"servers": [{}]}"#),
        vec!["servers[0].listeners: at least one listener is required"]
    );
    assert_eq!(
        errors(
            r#"{"servers": [{"listeners": [{"address": "127.0.0.1:1", "filter_chains": [{"filters": []}]}]}, {}]}"#
        ),
        vec![
            "servers[1]: layotto-rs runs one server; move its listeners into servers[0]",
            "servers[0].listeners[0].filter_chains[0].filters: at least one filter is required"
        ]
    );
}

#[test]
fn log_path_and_levels() {
    let text = r#"{"servers": [{"default_log_path": "/tmp/l.log", "default_log_level": "fatal",
        "listeners": [{"address": "[::1]:0", "filter_chains": [{"filters": [{"type": "x"}]}]}]}]}"#;
    let (config, findings) = parse(text);
    assert!(findings.errors.is_empty(), "{:?}", findings.errors);
    assert_eq!(config.log_path, LogPath::File("/tmp/l.log".into()));
    assert_eq!(config.log_level, Some(LogLevel::Error));
    assert_eq!(config.listeners[0].name, "[::1]:0");
}

#[test]
fn a_document_that_is_not_an_object_is_located_at_the_top_level() {
    for text in ["null", "[]", "7", "\"servers\""] {
        let errors = errors(text);
        assert_eq!(errors.len(), 1, "{text}: {errors:?}");
        assert!(
            errors[0].starts_with("(top level): invalid "),
            "{text}: {errors:?}"
        );
    }
}

fn with_log_path(log_path: &str) -> String {
    serde_json::json!({"servers": [{"default_log_path": log_path,
        "listeners": [{"address": "127.0.0.1:0", "filter_chains": [{"filters": [{"type": "x"}]}]}]}]})
    .to_string()
}

#[test]
fn a_log_file_that_cannot_be_opened_is_rejected_at_its_path() {
    let dir = std::env::temp_dir().join(format!("layotto-log-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let long = "x".repeat(10_000);
    let cases = [
        (dir.join("no-such-dir/layotto.log"), "no-such-dir"),
        (dir.clone(), "is a directory"),
        (file.join("under-a-file.log"), "a-file"),
        (long.clone().into(), "cannot open log file"),
    ];
    for (path, says) in cases {
        let errors = errors(&with_log_path(path.to_str().unwrap()));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("servers[0].default_log_path: ") && errors[0].contains(says),
            "{errors:?}"
        );
    }
    // A file that exists, and one that does not yet in an existing directory (not created).
    for path in [file.clone(), dir.join("new.log")] {
        let (config, findings) = parse(&with_log_path(path.to_str().unwrap()));
        assert!(findings.errors.is_empty(), "{:?}", findings.errors);
        assert_eq!(config.log_path, LogPath::File(path));
    }
    assert!(!dir.join("new.log").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn durations_are_bounded_to_a_day() {
    assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
    for text in ["25h", "1000000000000y", "18446744073709551615s"] {
        let err = parse_duration(text).unwrap_err();
        assert!(
            err.contains("too long") || err.contains("too large"),
            "{text}: {err}"
        );
    }
    let text = r#"{"servers": [{"graceful_timeout": "100000000y",
        "listeners": [{"address": "127.0.0.1:0", "filter_chains": [{"filters": [{"type": "x"}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "c", "connect_timeout": "2d", "hosts": [{"address": "127.0.0.1:1"}]}]}}"#;
    let errors = errors(text);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("servers[0].graceful_timeout: duration"));
    assert!(errors[1].starts_with("cluster_manager.clusters[0].connect_timeout: duration"));
}

/// A config with one tcp_proxy listener and one cluster carrying `health` keys.
fn cluster_with(health: &str) -> String {
    format!(
        r#"{{
  "servers": [{{"listeners": [{{"address": "127.0.0.1:1",
      "filter_chains": [{{"filters": [{{"type": "tcp_proxy"}}]}}]}}]}}],
  "cluster_manager": {{"clusters": [{{"name": "up", "hosts": [{{"address": "127.0.0.1:80"}}]
      {health}}}]}}
}}"#
    )
}

#[test]
fn cluster_health_keys_are_read_with_defaults() {
    let (config, findings) = parse(&cluster_with(""));
    assert!(findings.errors.is_empty(), "{:?}", findings.errors);
    let cluster = &config.clusters[0];
    assert_eq!(cluster.health_check, None);
    assert_eq!(cluster.outlier_detection, OutlierDetectionConfig::default());
    assert_eq!(cluster.outlier_detection.consecutive_failures, 5);

    let (config, findings) = parse(&cluster_with(
        r#", "health_check": {"protocol": "TCP", "timeout": "200ms", "interval": "2s",
              "healthy_threshold": 2, "unhealthy_threshold": 3, "interval_jitter": "1s"},
           "outlier_detection": {"consecutive_5xx": 4, "consecutive_gateway_failure": 2,
              "base_ejection_time": "10s", "max_ejection_percent": 50, "interval": "1s"}"#,
    ));
    assert!(findings.errors.is_empty(), "{:?}", findings.errors);
    let cluster = &config.clusters[0];
    assert_eq!(
        cluster.health_check,
        Some(HealthCheckConfig {
            timeout: Duration::from_millis(200),
            interval: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        })
    );
    assert_eq!(
        cluster.outlier_detection,
        OutlierDetectionConfig {
            consecutive_failures: 2,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: DEFAULT_MAX_EJECTION_TIME,
            max_ejection_percent: 50,
        }
    );
}

#[test]
fn bad_cluster_health_values_are_reported_at_their_paths() {
    let found = errors(&cluster_with(
        r#", "health_check": {"protocol": "http", "timeout": "0s", "interval": "often",
              "healthy_threshold": 0, "unhealthy_threshold": -1},
           "outlier_detection": {"consecutive_5xx": 0, "base_ejection_time": "1m",
              "max_ejection_time": "10s", "max_ejection_percent": 101}"#,
    ));
    let at = "cluster_manager.clusters[0]";
    let expected = [
        format!("{at}.health_check.unhealthy_threshold: invalid value: integer `-1`"),
        format!("{at}.outlier_detection.consecutive_5xx: must be at least 1"),
        format!("{at}.outlier_detection.max_ejection_time: must not be shorter than"),
        format!("{at}.outlier_detection.max_ejection_percent: 101 is not a percentage"),
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (error, expected) in found.iter().zip(&expected) {
        assert!(
            error.starts_with(expected.as_str()),
            "{error:?} should start with {expected:?}"
        );
    }
    // With a decodable block every bad value is named.
    let found = errors(&cluster_with(
        r#", "health_check": {"protocol": "http", "timeout": "0s", "interval": "often",
              "healthy_threshold": 0}"#,
    ));
    let expected = [
        format!("{at}.health_check.protocol: health check protocol \"http\" is not supported"),
        format!("{at}.health_check.timeout: must be greater than zero"),
        format!("{at}.health_check.interval: invalid duration \"often\""),
        format!("{at}.health_check.healthy_threshold: must be at least 1"),
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (error, expected) in found.iter().zip(&expected) {
        assert!(
            error.starts_with(expected.as_str()),
            "{error:?} should start with {expected:?}"
        );
    }
}
