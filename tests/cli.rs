//! The command line as LayOtto's, through the real binary: where `start` finds its configuration
//! (`-c`, `$RUNTIME_CONFIG`, `./configs/config.json`), LayOtto's logging and drain flags, its
//! other flags accepted and reported as not used, and `stop` through the pid file.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use layotto_proto::runtime::SayHelloRequest;
use serde_json::{Value, json};

/// A config answering SayHello on `quick_start_demo` with `greeting`.
fn greeting_config(greeting: &str) -> Value {
    grpc_config(
        json!({"hellos": {"quick_start_demo": {"type": "helloworld", "hello": greeting}}}),
        json!({}),
    )
}

fn write_config(dir: &Path, relative: &str, config: &Value) {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
}

/// `layotto <args>` in `dir`, without `$RUNTIME_CONFIG` unless the caller sets it.
fn command_in(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .current_dir(dir)
        .env_remove("RUNTIME_CONFIG")
        .env_remove("MOSN_CONFIG");
    command
}

fn say_hello(address: std::net::SocketAddr) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        runtime_client(address)
            .await
            .say_hello(SayHelloRequest {
                service_name: "quick_start_demo".into(),
                name: String::new(),
                data: None,
            })
            .await
            .unwrap()
            .into_inner()
            .hello
    })
}

#[test]
fn without_c_runtime_config_wins_over_the_working_directory_file() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "configs/config.json",
        &greeting_config("from-workdir"),
    );
    write_config(
        dir.path(),
        "elsewhere/env.json",
        &greeting_config("from-env"),
    );
    let mut command = command_in(dir.path(), &["start"]);
    command.env("RUNTIME_CONFIG", dir.path().join("elsewhere/env.json"));
    let layotto = LayottoBinary::launch(command, 1);
    assert_eq!(say_hello(layotto.address("grpc")), "from-env");
    layotto.wait_for_line("(from $RUNTIME_CONFIG)");
}

#[test]
fn without_c_or_runtime_config_configs_config_json_of_the_working_directory_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "configs/config.json",
        &greeting_config("from-workdir"),
    );
    let layotto = LayottoBinary::launch(command_in(dir.path(), &["start"]), 1);
    assert_eq!(say_hello(layotto.address("grpc")), "from-workdir");
    layotto.wait_for_line("configs/config.json (found in the working directory)");
}

#[test]
fn c_wins_over_runtime_config_and_start_flags_work_without_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "flag.json", &greeting_config("from-flag"));
    write_config(dir.path(), "env.json", &greeting_config("from-env"));
    // LayOtto's `layotto -c FILE`, Go style: one dash before a long name.
    let mut command = command_in(dir.path(), &["-config", "flag.json"]);
    command.env("RUNTIME_CONFIG", dir.path().join("env.json"));
    let layotto = LayottoBinary::launch(command, 1);
    assert_eq!(say_hello(layotto.address("grpc")), "from-flag");
}

#[test]
fn log_level_flag_overrides_the_config_level() {
    let mut config = greeting_config("hi");
    config["servers"][0]["default_log_level"] = json!("ERROR");
    // At ERROR the listeners' INFO lines, which `start` waits for, would not be printed.
    let layotto = LayottoBinary::start(&config, &["-l", "info"], 1);
    assert_eq!(say_hello(layotto.address("grpc")), "hi");

    let rejected = Command::new(binary())
        .args(["start", "--log-level", "verbose"])
        .output()
        .unwrap();
    assert_eq!(rejected.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&rejected.stderr).contains("critical or off"),
        "{}",
        String::from_utf8_lossy(&rejected.stderr)
    );
}

/// A local file store whose root holds a part file of a process that cannot exist: at start-up
/// the store removes it and logs that (an INFO line of a component).
fn config_logging_a_component_line(root: &Path) -> Value {
    std::fs::write(root.join(".x.part-2147483647"), b"half").unwrap();
    grpc_config(
        json!({"file": {"files": {"type": "local", "metadata": {"rootPath": root}}}}),
        json!({}),
    )
}

const COMPONENT_LINE: &str = "unfinished put(s) of stopped processes";

/// layotto on [`config_logging_a_component_line`] with `--logging-path` and `args`: the
/// process, the file store's root and the components' log directory.
fn start_logging_apart(args: &[&str]) -> (LayottoBinary, tempfile::TempDir, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let config = config_logging_a_component_line(root.path());
    let mut all = vec!["--logging-path", logs.path().to_str().unwrap()];
    all.extend_from_slice(args);
    (LayottoBinary::start(&config, &all, 1), root, logs)
}

#[test]
fn logging_path_puts_the_component_log_in_its_own_file() {
    let (mut layotto, _root, logs) = start_logging_apart(&[]);
    layotto.terminate();
    assert_eq!(layotto.wait_exit().code(), Some(0));
    let file = std::fs::read_to_string(logs.path().join("layotto.debug.log")).unwrap();
    assert!(file.contains(COMPONENT_LINE), "{file}");
    assert!(!layotto.output().contains(COMPONENT_LINE));
    // The main log keeps everything else.
    assert!(!file.contains("listening on"), "{file}");
}

/// Anonymous memory (heap, stacks, rings) of process `pid`, in KiB.
fn anonymous_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .unwrap();
    line.trim().trim_end_matches("kB").trim().parse().unwrap()
}

#[test]
fn at_rest_with_both_logs_the_process_holds_little_anonymous_memory() {
    // Each log writer's queue is bounded at a few thousand lines: tracing-appender's default
    // (128 000 lines) touched 4 MB per writer, 8 MB for these two, at start.
    let (mut layotto, _root, _logs) = start_logging_apart(&["--shards", "1"]);
    let kib = anonymous_kib(layotto.pid());
    layotto.terminate();
    assert_eq!(layotto.wait_exit().code(), Some(0));
    assert!(kib < 8 * 1024, "{kib} KiB of anonymous memory at rest");
}

#[test]
fn logging_level_sets_the_components_level_only() {
    let root = tempfile::tempdir().unwrap();
    let config = config_logging_a_component_line(root.path());
    let mut layotto = LayottoBinary::start(&config, &["--logging-level", "error"], 1);
    layotto.terminate();
    assert_eq!(layotto.wait_exit().code(), Some(0));
    assert!(!root.path().join(".x.part-2147483647").exists());
    let output = layotto.output();
    assert!(!output.contains(COMPONENT_LINE), "{output}");
    assert!(output.contains("listening on"), "{output}");

    let root = tempfile::tempdir().unwrap();
    let config = config_logging_a_component_line(root.path());
    let mut layotto = LayottoBinary::start(&config, &["-ll=info"], 1);
    layotto.terminate();
    assert_eq!(layotto.wait_exit().code(), Some(0));
    assert!(layotto.output().contains(COMPONENT_LINE));
}

#[test]
fn drain_time_s_overrides_graceful_timeout() {
    let echo = echo_server();
    let config = proxy_config(
        &[("proxy", &[echo], json!({}))],
        json!({"graceful_timeout": "600s"}),
    );
    let mut layotto = LayottoBinary::start(&config, &["--drain-time-s", "1"], 1);
    let mut open = TcpStream::connect(layotto.address("proxy")).unwrap();
    open.set_read_timeout(Some(WAIT)).unwrap();
    open.write_all(b"x").unwrap();
    open.read_exact(&mut [0]).unwrap();

    let started = Instant::now();
    layotto.terminate();
    let _ = open.read_to_end(&mut Vec::new());
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(10),
        "closed after {closed_after:?}"
    );
    assert_eq!(layotto.wait_exit().code(), Some(0));
}

#[test]
fn layottos_other_flags_are_accepted_and_reported_as_not_used() {
    let layotto = LayottoBinary::start(
        &greeting_config("hi"),
        &[
            "-s",
            "cluster1",
            "-pod-name",
            "pod1",
            "--service-meta",
            "a=1",
            "-sm",
            "b=2",
            "--feature-gates",
            "X=true",
            "--disable-hot-restart",
            "--restart-epoch",
            "0",
        ],
        1,
    );
    for flag in [
        "--service-cluster (\"cluster1\")",
        "--pod-name (\"pod1\")",
        "--service-meta (\"a=1,b=2\")",
        "--feature-gates (\"X=true\")",
        "--disable-hot-restart (\"true\")",
        "--restart-epoch (\"0\")",
    ] {
        layotto.wait_for_line(&format!("flag {flag} is LayOtto's and not used"));
    }
    assert_eq!(say_hello(layotto.address("grpc")), "hi");
}

#[test]
fn stop_in_the_working_directory_stops_the_instance_started_there() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "configs/config.json", &greeting_config("hi"));
    let mut layotto = LayottoBinary::launch(command_in(dir.path(), &["start"]), 1);
    let pid_file = dir.path().join("logs/mosn.pid");
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written.trim(), layotto.pid().to_string());

    let stop = command_in(dir.path(), &["stop"]).output().unwrap();
    assert_eq!(
        stop.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    assert!(
        String::from_utf8_lossy(&stop.stdout)
            .contains(&format!("stopped process {}", layotto.pid()))
    );
    // `stop` returned once the process had ended, after its clean stop.
    assert_eq!(layotto.wait_exit().code(), Some(0));
    layotto.wait_for_line("stop requested");
    assert!(!pid_file.exists(), "the pid file is removed at exit");
}

#[test]
fn stop_c_uses_the_pid_key_of_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let pid_path = dir.path().join("run/layotto.pid");
    let mut config = greeting_config("hi");
    config["pid"] = json!(pid_path);
    let mut layotto = LayottoBinary::start(&config, &[], 1);
    assert_eq!(
        std::fs::read_to_string(&pid_path).unwrap().trim(),
        layotto.pid().to_string()
    );
    let stop = Command::new(binary())
        .arg("stop")
        .arg("-c")
        .arg(layotto.config_path())
        .output()
        .unwrap();
    assert_eq!(
        stop.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    assert_eq!(layotto.wait_exit().code(), Some(0));
    assert!(!pid_path.exists());
}

#[test]
fn stop_without_a_running_instance_says_why_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let stop = |dir: &Path| {
        let output = command_in(dir, &["stop"]).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = stop(dir.path());
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("no running layotto: pid file") && stderr.contains("logs/mosn.pid"),
        "{stderr}"
    );

    std::fs::create_dir(dir.path().join("logs")).unwrap();
    std::fs::write(dir.path().join("logs/mosn.pid"), "2147483647\n").unwrap();
    let (code, stderr) = stop(dir.path());
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("process 2147483647") && stderr.contains("stale pid file"),
        "{stderr}"
    );

    // A reused id naming another program (this test) is not signalled.
    std::fs::write(
        dir.path().join("logs/mosn.pid"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    let (code, stderr) = stop(dir.path());
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not layotto; not stopping it"), "{stderr}");

    std::fs::write(dir.path().join("logs/mosn.pid"), "garbage").unwrap();
    let (code, stderr) = stop(dir.path());
    assert_eq!(code, Some(1));
    assert!(stderr.contains("does not hold a process id"), "{stderr}");
}
