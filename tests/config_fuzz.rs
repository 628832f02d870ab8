//! Config fuzzing: every example config under `configs/` (the embedded default among them),
//! mutated at random — a node replaced by `null`, `[]`, `{}`, a huge, negative or fractional
//! number, a long string or another wrong type; a key deleted; an entry duplicated — goes
//! in-process through the validation the binary runs before binding: [`Config::parse`], the
//! process's [`Runtime`] of components, and every listener's filter chain with the `grpc`
//! terminal. No input may panic, and every problem names a JSON path that exists in the mutated
//! document (or whose parent does: a key that is missing). The binary exits 2 naming the path
//! for the shapes fuzzing found first: a document that is not an object, an unopenable log file.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

use std::{
    cell::Cell,
    io::Read,
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, mpsc},
    time::Duration,
};

use layotto_core::{
    backend::{BackendHandle, BackendPool},
    config::{Config, ConfigIssue, Findings, ROOT},
    health::HealthRegistry,
    metrics::MetricsRegistry,
};
use layotto_filters::registry::{BuildContext, FilterRegistry};
use layotto_runtime_api::Runtime;
use proptest::{
    prelude::*,
    test_runner::{Config as ProptestConfig, TestCaseError, TestRunner},
};
use serde_json::{Value, json};

/// Mutated configs checked per run (a few seconds in all).
const CASES: u32 = 400;

/// The example configs: every file under `configs/` that is a layotto config (has `servers`).
fn example_configs() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut configs: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .filter_map(|path| {
            // LayOtto's own files name their secrets files from its `cmd/layotto`; here the
            // package root is the working directory.
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("../../configs/", "configs/");
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            value.get("servers").is_some().then_some((name, value))
        })
        .collect();
    configs.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        configs.iter().any(|(name, _)| name == "default.json"),
        "the embedded default is configs/default.json"
    );
    configs
}

/// Runs the binary's validation on `text`, as its start-up does before binding anything.
fn validate(text: &str, backend: &BackendHandle) -> Findings {
    let mut findings = Findings::default();
    let config = Config::parse(text, &mut findings);
    let health = Arc::new(HealthRegistry::default());
    let runtime = Runtime::from_config(
        &config,
        backend,
        &health,
        &Default::default(),
        &mut findings,
    );
    let stop = Arc::new(layotto_core::shutdown::channel().0);
    let registry = FilterRegistry::default()
        .with_terminal(
            layotto_runtime_api::KIND,
            layotto_runtime_api::builder(runtime.clone(), stop.clone()),
        )
        .with_terminal(
            layotto_runtime_api::dapr_http::KIND,
            layotto_runtime_api::dapr_http::builder(runtime.clone(), stop),
        )
        .with_stream_filter(
            layotto_runtime_api::filter::METRIC_FILTER_KIND,
            layotto_runtime_api::filter::build_metric_filter,
        );
    let metrics = Arc::new(MetricsRegistry::default());
    let ctx = BuildContext::new(&config, 1, backend.clone(), metrics, health);
    for listener in &config.listeners {
        let _chain = registry.build(listener, &ctx, &mut findings);
    }
    findings
}

/// One step of a path: an object key or an array index.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The path of every node of `value` (the root first).
fn node_paths(value: &Value) -> Vec<Vec<Step>> {
    fn walk(value: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        out.push(at.clone());
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    at.push(Step::Key(key.clone()));
                    walk(child, at, out);
                    at.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    at.push(Step::Index(i));
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn node_mut<'a>(value: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(value, |node, step| match step {
        Step::Key(key) => &mut node[key.as_str()],
        Step::Index(i) => &mut node[*i],
    })
}

/// What to do to one node, picked by `node % number of nodes` when applied.
#[derive(Debug, Clone)]
enum Mutation {
    Replace { node: usize, with: Value },
    Delete { node: usize },
    Duplicate { node: usize },
}

impl Mutation {
    fn apply(&self, document: &mut Value) {
        let paths = node_paths(document);
        let (Self::Replace { node, .. } | Self::Delete { node } | Self::Duplicate { node }) = self;
        let path = &paths[node % paths.len()];
        if let Self::Replace { with, .. } = self {
            *node_mut(document, path) = with.clone();
            return;
        }
        let Some((last, parent)) = path.split_last() else {
            return; // the root has no parent to delete it from or duplicate it in
        };
        let parent = node_mut(document, parent);
        match (self, last, parent) {
            (Self::Delete { .. }, Step::Key(key), Value::Object(map)) => {
                map.shift_remove(key);
            }
            (Self::Delete { .. }, Step::Index(i), Value::Array(items)) => {
                items.remove(*i);
            }
            (Self::Duplicate { .. }, Step::Key(key), Value::Object(map)) => {
                let copy = map[key].clone();
                map.insert(format!("{key}_2"), copy);
            }
            (Self::Duplicate { .. }, Step::Index(i), Value::Array(items)) => {
                let copy = items[*i].clone();
                items.insert(*i + 1, copy);
            }
            _ => unreachable!("a path step always matches its parent's shape"),
        }
    }
}

/// Values a node may be replaced by: wrong shapes, numbers and numeric strings that overflow
/// durations and integers, long and odd strings.
fn replacement() -> impl Strategy<Value = Value> {
    let fixed = prop::sample::select(vec![
        json!(null),
        json!([]),
        json!({}),
        json!(true),
        json!(1e20),
        json!(-1e20),
        json!(1e308),
        json!(-1),
        json!(0),
        json!(0.5),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(4_294_967_296u64),
        json!("1e20"),
        json!("-1"),
        json!("0"),
        json!("0.5"),
        json!("NaN"),
        json!("inf"),
        json!("18446744073709551616"),
        json!("1000000000y"),
        json!("25h"),
        json!(""),
        json!("x".repeat(10_000)),
        json!("/nonexistent-dir/file"),
        json!("127.0.0.1:0"),
        json!({"a": 1}),
        json!([1, "x", null]),
    ]);
    prop_oneof![
        4 => fixed,
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        1 => "\\PC{0,16}".prop_map(Value::from),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<usize>(), replacement()).prop_map(|(node, with)| Mutation::Replace { node, with }),
        2 => any::<usize>().prop_map(|node| Mutation::Delete { node }),
        1 => any::<usize>().prop_map(|node| Mutation::Duplicate { node }),
    ]
}

/// Whether `path` (`a.b[2].c`, keys tried longest first so that dotted keys work) names a node
/// of `node`.
fn exists(node: &Value, path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    if let Some(after) = path.strip_prefix('[') {
        let Some((index, rest)) = after.split_once(']') else {
            return false;
        };
        return index
            .parse::<usize>()
            .ok()
            .and_then(|i| node.get(i))
            .is_some_and(|child| exists(child, rest));
    }
    let path = path.strip_prefix('.').unwrap_or(path);
    let Value::Object(map) = node else {
        return false;
    };
    map.iter().any(|(key, child)| {
        path.strip_prefix(key.as_str()).is_some_and(|rest| {
            (rest.is_empty() || rest.starts_with(['.', '['])) && exists(child, rest)
        })
    })
}

/// `path` without its last segment (`a.b[2]` -> `a.b`; `a` -> ``).
fn parent(path: &str) -> &str {
    &path[..path.rfind(['.', '[']).unwrap_or(0)]
}

/// Why `issue` is not located in `document`, if it is not: a path must be the top level, a node
/// of the document, or a missing key below a node that is not the top level (a missing top-level
/// key is the top level's problem) — one level deep, or two for a required key of a missing
/// object (`metadata.secretsFile` without `metadata`).
fn mislocated(issue: &ConfigIssue, document: &Value) -> Option<String> {
    let path = issue.path.as_str();
    if path.is_empty() {
        return Some(format!("\"{issue}\" has no path"));
    }
    let below_node = |ancestor: &str| !ancestor.is_empty() && exists(document, ancestor);
    let located = path == ROOT
        || exists(document, path)
        || below_node(parent(path))
        || below_node(parent(parent(path)));
    (!located).then(|| format!("\"{issue}\" names no node of the document"))
}

#[test]
fn mutated_example_configs_never_panic_and_every_problem_names_its_path() {
    let configs = example_configs();
    let pool = BackendPool::start(1, 16).unwrap();
    let backend = pool.handle();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (0..configs.len(), prop::collection::vec(mutation(), 1..4));
    let rejected = Cell::new(0);
    let result = runner.run(&strategy, |(which, mutations)| {
        let mut document = configs[which].1.clone();
        for mutation in &mutations {
            mutation.apply(&mut document);
        }
        let text = document.to_string();
        let findings = catch_unwind(AssertUnwindSafe(|| validate(&text, &backend)))
            .map_err(|_| TestCaseError::fail(format!("panicked on {}", configs[which].0)))?;
        if !findings.errors.is_empty() {
            rejected.set(rejected.get() + 1);
        }
        for issue in findings.errors.iter().chain(&findings.ignored) {
            if let Some(why) = mislocated(issue, &document) {
                return Err(TestCaseError::fail(format!("{}: {why}", configs[which].0)));
            }
        }
        Ok(())
    });
    pool.shutdown(Duration::from_secs(1));
    result.unwrap();
    // Most mutations break something: the mutations reach what validation checks.
    let rejected = rejected.get();
    assert!(rejected > CASES / 2, "only {rejected} of {CASES} rejected");
}

#[test]
fn the_unmutated_example_configs_are_valid() {
    let pool = BackendPool::start(1, 16).unwrap();
    for (name, config) in example_configs() {
        let findings = validate(&config.to_string(), &pool.handle());
        assert!(findings.errors.is_empty(), "{name}: {:?}", findings.errors);
    }
    pool.shutdown(Duration::from_secs(1));
}

#[test]
fn paths_resolve_in_documents() {
    let document = json!({"a": {"b.c": [{"d": 1}], "e": null}});
    for path in ["a", "a.b.c", "a.b.c[0]", "a.b.c[0].d", "a.e"] {
        assert!(exists(&document, path), "{path}");
    }
    for path in ["b", "a.b", "a.b.c[1]", "a.b.c[0].x", "a.e.f", "a[0]"] {
        assert!(!exists(&document, path), "{path}");
    }
    let missing = |path: &str| ConfigIssue {
        path: path.to_owned(),
        message: String::new(),
    };
    assert_eq!(mislocated(&missing("a.b.c[0].x"), &document), None);
    assert_eq!(mislocated(&missing(ROOT), &document), None);
    assert!(mislocated(&missing("x.y"), &document).is_some());
    assert!(mislocated(&missing(""), &document).is_some());
    assert!(mislocated(&missing("rpcs"), &document).is_some());
}

/// Runs the binary on `config` (written to a file) until it exits (killed after 20 s: a config
/// it accepts would serve forever); its exit code and stderr.
fn run_binary(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    std::fs::write(&file, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_layotto"))
        .args(["start", "-c"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let (sender, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stderr = String::new();
        let _ = pipe.read_to_string(&mut stderr);
        let _ = sender.send(stderr);
    });
    // The pipe ends when the process does.
    let stderr = ended.recv_timeout(Duration::from_secs(20));
    if stderr.is_err() {
        child.kill().unwrap();
    }
    let code = child.wait().unwrap().code();
    (
        code,
        stderr.unwrap_or_else(|_| "(still running after 20 s)".into()),
    )
}

#[test]
fn the_binary_exits_2_naming_the_path_for_fuzzing_finds() {
    for document in ["null", "[]", "{}"] {
        let (code, stderr) = run_binary(document);
        assert_eq!(code, Some(2), "{document}: {stderr}");
        assert!(
            stderr.contains(&format!("{ROOT}: ")),
            "{document}: {stderr}"
        );
    }
    let mut config: Value = serde_json::from_str(include_str!("../configs/default.json")).unwrap();
    config["servers"][0]["default_log_path"] = json!("/nonexistent-dir/layotto.log");
    config["servers"][0]["listeners"][0]["address"] = json!("127.0.0.1:0");
    let (code, stderr) = run_binary(&config.to_string());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "servers[0].default_log_path: cannot create log file /nonexistent-dir/layotto.log"
        ),
        "{stderr}"
    );
    let mut config: Value =
        serde_json::from_str(include_str!("../configs/config_etcd.json")).unwrap();
    config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]["grpc_config"]
        ["config_store"]["config_demo"]["timeout"] = json!(1e20);
    let (code, stderr) = run_binary(&config.to_string());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(".grpc_config.config_store.config_demo.timeout: invalid timeout"),
        "{stderr}"
    );
}
