//! Dapr's JavaScript SDK (`@dapr/dapr` from npm, run with Debian's `nodejs`) in HTTP mode, its
//! default, against layotto-rs with real redis: `tests/dapr_js/http_mode.js` is unchanged SDK
//! code (metadata, state with etags, publish, bindings, invoke, secrets, lock); and its
//! `DaprServer` as the app (`tests/dapr_js/server_mode.js`, HTTP, at layotto-rs's `--app-port`)
//! receiving the events it subscribes to. The SDK is installed once into `target/dapr-js`
//! (`scripts/test.sh` installs `nodejs` and `npm`).
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::Command,
};

use common::{redis::RedisServer, *};
use serde_json::json;

/// The SDK release the script is written against.
const SDK: &str = "@dapr/dapr@3.18.0";

/// `target/dapr-js`, with the SDK in its `node_modules` (installed on first use).
fn sdk_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dapr-js");
    let installed = dir.join("node_modules/@dapr/dapr/package.json");
    let wanted = SDK.rsplit('@').next().unwrap();
    let current = std::fs::read_to_string(&installed).unwrap_or_default();
    if !current.contains(&format!("\"version\": \"{wanted}\"")) {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("package.json"),
            r#"{"name": "dapr-js-tests", "private": true}"#,
        )
        .unwrap();
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", SDK])
            .current_dir(&dir)
            .status()
            .expect("npm is installed (scripts/test.sh installs it)");
        assert!(status.success(), "npm install {SDK} failed");
    }
    dir
}

/// An HTTP/1.1 app answering `201 created <body>` to POST and `200 <method> <target>` otherwise.
fn app_server() -> std::net::SocketAddr {
    server(|stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let (status, reply) = if method == "POST" {
            (
                "201 Created",
                format!("created {}", String::from_utf8_lossy(&body)),
            )
        } else {
            ("200 OK", format!("{method} {target}"))
        };
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
            reply.len()
        );
    })
}

/// Runs `tests/dapr_js/{script}` with the SDK and `env`; fails unless it ends well ("all ok").
fn run_node(sdk: &Path, script: &str, env: &[(&str, &str)]) {
    let output = Command::new("node")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/dapr_js")
                .join(script),
        )
        .env("NODE_PATH", sdk.join("node_modules"))
        .envs(env.iter().copied())
        .output()
        .expect("node is installed (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("all ok"),
        "{script}: stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[test]
fn the_javascript_sdk_in_http_mode_runs_against_layotto_rs_and_redis() {
    let sdk = sdk_dir();
    let redis = RedisServer::start();
    let app = app_server();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"db": {"user": "admin"}, "token": "s3cr3t"}"#).unwrap();
    let metadata = json!({"redisHost": redis.endpoint()});
    let config = with_dapr_http(
        json!({
            "state": {"store": {"type": "redis", "metadata": metadata}},
            "lock": {"locks": {"type": "redis", "metadata": metadata}},
            "pub_subs": {"events": {"type": "redis", "metadata": metadata}},
            "bindings": {"http": {"type": "http", "metadata": {"url": format!("http://{app}/api")}}},
            "rpcs": {"http": {"type": "http", "metadata": {"targets": format!("app2={app}")}}},
            "secret_store": {"files": {"type": "local.file",
                "metadata": {"secretsFile": secrets, "nestedSeparator": ":"}}},
            "app": {"app_id": "app1"}
        }),
        "dapr",
    );
    let layotto = Layotto::start(&config);
    let dapr_port = layotto.address("dapr").port().to_string();
    run_node(&sdk, "http_mode.js", &[("DAPR_HTTP_PORT", &dapr_port)]);
    // What the SDK published is in the stream, in Dapr's layout.
    let entries: Vec<(String, Vec<(String, String)>)> = ::redis::cmd("XRANGE")
        .arg("orders")
        .arg("-")
        .arg("+")
        .query(&mut redis.client())
        .unwrap();
    assert_eq!(entries.len(), 2);
    let event: serde_json::Value = serde_json::from_str(&entries[0].1[0].1).unwrap();
    assert_eq!(event["data"], json!({"orderId": 7}));
}

#[test]
fn the_javascript_sdks_dapr_server_receives_the_events_it_subscribes_to() {
    let sdk = sdk_dir();
    let redis = RedisServer::start();
    let config = with_dapr_http(
        json!({
            "pub_subs": {"events": {"type": "redis",
                "metadata": {"redisHost": redis.endpoint(), "consumerID": "js"}}}
        }),
        "dapr",
    );
    // The app's port, given to layotto-rs as daprd's flags are (the SDK server opens it later).
    let app_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let layotto = LayottoBinary::start(
        &config,
        &[
            "--app-id",
            "orders-app",
            "-app-port",
            &app_port,
            "--app-protocol=http",
        ],
        2,
    );
    let dapr_port = layotto.address("dapr").port().to_string();
    run_node(
        &sdk,
        "server_mode.js",
        &[
            ("DAPR_HTTP_PORT", &dapr_port),
            ("APP_PORT", &app_port),
            ("APP_ID", "orders-app"),
        ],
    );
    // Every entry is acknowledged once the app has finished with it.
    wait_until("every entry acknowledged", || {
        let pending: ::redis::streams::StreamPendingReply = ::redis::cmd("XPENDING")
            .arg("orders")
            .arg("js")
            .query(&mut redis.client())
            .unwrap();
        pending.count() == 0
    });
}
