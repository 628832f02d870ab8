//! Dapr's real Python SDK (`dapr[grpc]` ≥ 1.19 from PyPI, in a virtual environment this test
//! creates under the target dir unless `LAYOTTO_DAPR_VENV` names one) runs
//! `tests/dapr_sdk/grpc_client.py` unchanged against layotto-rs on a real redis: `DaprClient()`
//! waits for the HTTP API's `/v1.0/healthz/outbound`, then state with etags and the mismatch
//! error, bulk, transaction, publish with a streaming subscription that receives every event,
//! secrets, configuration get and subscribe, lock, metadata — all over gRPC; and
//! `tests/dapr_sdk/grpc_app.py`, an app written with the SDK's `dapr.ext.grpc.App`
//! (`@app.subscribe` with a CEL `rule` and a `dead_letter_topic`, `@app.method`), receives
//! through layotto-rs's app channel (`app_protocol` grpc) the events it publishes, routed and
//! dead-lettered, and the invocations of its own app id it makes. No API token here: the SDK's token interceptor covers unary and bidirectional
//! calls but not server-streaming ones, so its `subscribe_configuration` never sends
//! `dapr-api-token` (daprd would refuse it as well); tests/dapr_grpc.rs checks tokens.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{OnceLock, mpsc},
    thread,
    time::{Duration, Instant},
};

use common::{redis::RedisServer, *};
use layotto_proto::runtime::{ConfigurationItem, SaveConfigurationRequest};
use serde_json::json;

/// A Python with `dapr` ≥ 1.19 importable: `$LAYOTTO_DAPR_VENV`, or a venv made here once;
/// the tests of this binary run at once, so the first to ask makes it and the others wait.
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(python_with_sdk).clone()
}

/// Makes (unless it is there) the venv [`python`] answers.
fn python_with_sdk() -> PathBuf {
    let venv = std::env::var_os("LAYOTTO_DAPR_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dapr-sdk-venv"),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    let has_sdk = || {
        Command::new(&python)
            .args(["-c", "import dapr.clients, dapr.ext.grpc"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_sdk() {
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .expect("python3 (with venv; Debian: python3-venv) is needed");
        assert!(made.success(), "python3 -m venv {venv:?} failed");
        // The SDK with its gRPC app extension (`dapr.ext.grpc`, in `dapr` itself since 1.19).
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "dapr[grpc]>=1.19"])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install dapr[grpc]>=1.19 failed");
        assert!(has_sdk(), "dapr is not importable after installing it");
    }
    python
}

/// Runs `tests/dapr_sdk/{script}` with the SDK's Python and Dapr's environment variables
/// `env` (the sidecar on 127.0.0.1, no API token), handing each line it prints (stdout and
/// stderr) to `on_line`; answers the output once it has exited successfully, within two
/// minutes.
async fn run_program(
    script: &str,
    env: &[(&str, &str)],
    mut on_line: impl AsyncFnMut(&str),
) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/dapr_sdk")
        .join(script);
    let mut child = Command::new(python())
        .arg(script)
        .env("DAPR_RUNTIME_HOST", "127.0.0.1")
        .envs(env.iter().copied())
        .env_remove("DAPR_API_TOKEN")
        .env("DAPR_HEALTH_TIMEOUT", "20")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, received) = mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let lines = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
    }
    drop(lines);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut output = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                on_line(&line).await;
                output.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("the SDK program did not finish:\n{}", output.join("\n"));
            }
        }
    }
    let status = child.wait().unwrap();
    let output = output.join("\n");
    assert!(status.success(), "the SDK program failed:\n{output}");
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daprs_python_sdk_runs_unchanged_against_layotto() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"db-password": "pw"}"#).unwrap();
    let redis_meta = json!({"redisHost": redis.endpoint()});
    let config = with_dapr_http(
        json!({
            "app": {"app_id": "app1"},
            "state": {"store": {"type": "redis", "metadata": redis_meta}},
            "pub_subs": {"events": {"type": "redis",
                "metadata": {"redisHost": redis.endpoint(), "consumerID": "sdk"}}},
            "lock": {"locks": {"type": "redis", "metadata": redis_meta}},
            "config_store": {"config": {"type": "in-memory"}},
            "secret_store": {"secrets": {"type": "local.file", "metadata": {"secretsFile": secrets}}}
        }),
        "dapr_http",
    );
    let layotto = Layotto::start(&config);
    let grpc = layotto.address("grpc");
    let mut client = runtime_client(grpc).await;
    let save = |content: &str| SaveConfigurationRequest {
        store_name: "config".into(),
        app_id: "app1".into(),
        items: vec![ConfigurationItem {
            key: "color".into(),
            content: content.into(),
            ..Default::default()
        }],
        metadata: HashMap::new(),
    };
    client.save_configuration(save("red")).await.unwrap();

    let grpc_port = grpc.port().to_string();
    let http_port = layotto.address("dapr_http").port().to_string();
    let env = [
        ("DAPR_GRPC_PORT", &*grpc_port),
        ("DAPR_HTTP_PORT", &*http_port),
    ];
    let output = run_program("grpc_client.py", &env, async |line: &str| {
        if line.starts_with("subscribed ") {
            client.save_configuration(save("blue")).await.unwrap();
        }
    })
    .await;
    for step in [
        "ok state save/get/etag",
        "ok state bulk/transaction/delete",
        "ok publish and streaming subscribe",
        "ok secrets",
        "ok configuration get/subscribe/unsubscribe",
        "ok lock/unlock",
        "ok metadata",
        "all done",
    ] {
        assert!(output.contains(step), "{step} missing:\n{output}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daprs_python_grpc_app_receives_its_events_and_the_invocations_of_its_id() {
    let redis = RedisServer::start();
    let app_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = with_dapr_http(
        json!({
            "app": {"app_id": "app1", "app_port": app_port, "app_protocol": "grpc"},
            "pub_subs": {"events": {"type": "redis",
                "metadata": {"redisHost": redis.endpoint(), "consumerID": "py"}}}
        }),
        "dapr_http",
    );
    let layotto = Layotto::start(&config);
    let grpc_port = layotto.address("grpc").port().to_string();
    let http_port = layotto.address("dapr_http").port().to_string();
    let app_port = app_port.to_string();
    let env = [
        ("DAPR_GRPC_PORT", &*grpc_port),
        ("DAPR_HTTP_PORT", &*http_port),
        ("APP_PORT", &*app_port),
    ];
    let output = run_program("grpc_app.py", &env, async |_: &str| {}).await;
    for step in [
        "ok subscribed",
        "ok events",
        "ok routes and dead letters",
        "ok invoke",
        "all done",
    ] {
        assert!(output.contains(step), "{step} missing:\n{output}");
    }
}
