//! Handling of configuration: every class of mistake is rejected naming its JSON path (checked
//! in-process on the problems `layotto::start` returns), and the binary exits with code 2
//! printing all problems together, and logs MOSN-internal blocks once.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// `config` is rejected in-process with (at least) the `expected` problems, each on its own.
fn assert_rejected(config: &Value, expected: &[&str]) {
    let problems = config_problems(config);
    for line in expected {
        assert!(
            problems.iter().any(|problem| problem.starts_with(line)),
            "{line:?} missing from:\n{problems:#?}"
        );
    }
}

fn proxy() -> Value {
    proxy_config(&[("proxy", &[dead_address()], json!({}))], json!({}))
}

#[test]
fn invalid_json_exits_2_with_position() {
    let (code, stderr) = run_to_exit("{\"servers\": [}");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("not valid JSON") && stderr.contains("line 1"),
        "{stderr}"
    );
}

#[test]
fn missing_file_exits_2() {
    let output = Command::new(binary())
        .args(["start", "-c", "/nonexistent/layotto.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read config file /nonexistent/layotto.json"),
        "{stderr}"
    );
}

#[test]
fn bad_address_names_its_path() {
    let mut config = proxy();
    config["servers"][0]["listeners"][0]["address"] = json!("1.2.3:x");
    assert_rejected(
        &config,
        &[r#"servers[0].listeners[0].address: invalid socket address "1.2.3:x""#],
    );
}

#[test]
fn unknown_key_names_its_path() {
    let mut config = proxy();
    config["servers"][0]["listeners"][0]["adress"] = json!("x");
    config["cluster_manager"]["clusters"][0]["hosts"][0]["port"] = json!(1);
    assert_rejected(
        &config,
        &[
            "servers[0].listeners[0].adress: unknown key",
            "cluster_manager.clusters[0].hosts[0].port: unknown key",
        ],
    );
}

#[test]
fn wrong_type_names_its_path() {
    let mut config = proxy();
    config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]["cluster"] =
        json!(7);
    assert_rejected(
        &config,
        &[
            "servers[0].listeners[0].filter_chains[0].filters[0].config.cluster: invalid type: integer `7`, expected a string",
        ],
    );
}

#[test]
fn unknown_cluster_and_filter_type_name_their_paths() {
    let mut config = proxy();
    let filters = &mut config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"];
    filters[0]["config"]["cluster"] = json!("nowhere");
    filters
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"type": "teleport"}));
    assert_rejected(
        &config,
        &[
            r#"servers[0].listeners[0].filter_chains[0].filters[0].type: unknown filter type "teleport""#,
            r#"servers[0].listeners[0].filter_chains[0].filters[1].config.cluster: no cluster named "nowhere""#,
        ],
    );
}

#[test]
fn the_binary_exits_2_printing_every_problem_with_its_path() {
    let mut config = proxy();
    config["servers"][0]["default_log_level"] = json!("LOUD");
    config["servers"][0]["graceful_timeout"] = json!("soon");
    config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]["idle_timeout"] =
        json!("forever");
    config["cluster_manager"]["clusters"][0]["lb_type"] = json!("LB_MAGLEV");
    let (code, stderr) = run_to_exit(&config.to_string());
    assert_eq!(code, Some(2), "stderr: {stderr}");
    for line in [
        "layotto: invalid configuration (",
        "4 problem(s):",
        r#"  servers[0].default_log_level: unknown log level "LOUD""#,
        r#"  servers[0].graceful_timeout: invalid duration "soon""#,
        r#"  servers[0].listeners[0].filter_chains[0].filters[0].config.idle_timeout: invalid duration "forever""#,
        r#"  cluster_manager.clusters[0].lb_type: load balancer "LB_MAGLEV" is not supported"#,
    ] {
        assert!(stderr.contains(line), "{line:?} missing from:\n{stderr}");
    }
}

#[test]
fn mosn_internal_blocks_are_logged_once_as_ignored() {
    let mut config = proxy_config(&[("proxy", &[echo_server()], json!({}))], json!({}));
    config["admin"] = json!({"address": {"socket_address": {"port_value": 34901}}});
    config["pprof"] = json!({"debug": true});
    let mut layotto = LayottoBinary::start(&config, &[], 1);
    layotto.terminate();
    assert!(layotto.wait_exit().success());
    let output = layotto.output();
    for key in ["admin", "pprof"] {
        let mentions = output
            .lines()
            .filter(|l| l.contains("WARN") && l.contains(&format!(" {key}: MOSN-internal")))
            .count();
        assert_eq!(mentions, 1, "{key} should be logged once:\n{output}");
    }
}

#[test]
fn version_and_help() {
    let version = Command::new(binary()).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("layotto {}", env!("CARGO_PKG_VERSION"))
    );
    let help = Command::new(binary())
        .args(["start", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--config", "--log-level", "--shards"] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
    }
}
