//! Dapr's real Python SDK (`dapr` ≥ 1.19 from PyPI, in a virtual environment this test creates
//! under the target dir unless `LAYOTTO_DAPR_VENV` names one) runs `tests/dapr_sdk/grpc_client.py`
//! unchanged against layotto-rs on a real redis: `DaprClient()` waits for the HTTP API's
//! `/v1.0/healthz/outbound`, then state with etags and the mismatch error, bulk, transaction,
//! publish with a streaming subscription that receives every event, secrets, configuration get
//! and subscribe, lock, metadata — all over gRPC. No API token here: the SDK's token interceptor
//! covers unary and bidirectional calls but not server-streaming ones, so its
//! `subscribe_configuration` never sends `dapr-api-token` (daprd would refuse it as well);
//! tests/dapr_grpc.rs checks tokens.
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
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use common::{redis::RedisServer, *};
use layotto_proto::runtime::{ConfigurationItem, SaveConfigurationRequest};
use serde_json::json;

/// A Python with `dapr` ≥ 1.19 importable: `$LAYOTTO_DAPR_VENV`, or a venv made here once.
fn python() -> PathBuf {
    let venv = std::env::var_os("LAYOTTO_DAPR_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dapr-sdk-venv"),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    let has_sdk = || {
        Command::new(&python)
            .args(["-c", "import dapr.clients"])
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
        let installed = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "dapr>=1.19"])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install dapr>=1.19 failed");
        assert!(has_sdk(), "dapr is not importable after installing it");
    }
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daprs_python_sdk_runs_unchanged_against_layotto() {
    let python = python();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"db-password": "pw"}"#).unwrap();
    let redis_meta = json!({"redisHost": redis.endpoint()});
    let mut config = grpc_config(
        json!({
            "app": {"app_id": "app1"},
            "state": {"store": {"type": "redis", "metadata": redis_meta}},
            "pub_subs": {"events": {"type": "redis",
                "metadata": {"redisHost": redis.endpoint(), "consumerID": "sdk"}}},
            "lock": {"locks": {"type": "redis", "metadata": redis_meta}},
            "config_store": {"config": {"type": "in-memory"}},
            "secret_store": {"secrets": {"type": "local.file", "metadata": {"secretsFile": secrets}}}
        }),
        json!({}),
    );
    config["servers"][0]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": "dapr_http",
            "address": "127.0.0.1:0",
            "bind_port": true,
            "filter_chains": [{"filters": [{"type": "dapr_http"}]}]
        }));
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

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dapr_sdk/grpc_client.py");
    let mut child = Command::new(python)
        .arg(script)
        .env("DAPR_RUNTIME_HOST", "127.0.0.1")
        .env("DAPR_GRPC_PORT", grpc.port().to_string())
        .env(
            "DAPR_HTTP_PORT",
            layotto.address("dapr_http").port().to_string(),
        )
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
                if line.starts_with("subscribed ") {
                    client.save_configuration(save("blue")).await.unwrap();
                }
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
