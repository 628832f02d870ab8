//! Dapr's JavaScript SDK (`@dapr/dapr` from npm, run with Debian's `nodejs`) against layotto-rs
//! with real redis, unchanged SDK code run by one harness ([`run_program`]): as a client in both
//! its modes, `tests/dapr_js/http_mode.js` (HTTP, its default) and `tests/dapr_js/grpc_mode.js`
//! (gRPC) — metadata, state with etags, publish and bulk publish, state query, bindings, invoke,
//! secrets, lock; configuration in gRPC mode —; and its `DaprServer` as the app
//! (`tests/dapr_js/server_mode.js`, HTTP, at layotto-rs's `--app-port`) receiving the events it
//! subscribes to. The SDK is installed once into `target/dapr-js` (`scripts/test.sh` installs
//! `nodejs` and `npm`).
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
    process::{Command, Stdio},
    sync::{OnceLock, mpsc},
    time::{Duration, Instant},
};

use common::{redis::RedisServer, *};
use serde_json::json;

/// The SDK release the script is written against.
const SDK: &str = "@dapr/dapr@3.18.0";

/// `target/dapr-js`, with the SDK in its `node_modules` (installed on first use); the tests
/// of this binary run at once, so the first to ask installs it and the others wait.
fn sdk_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(install_sdk).clone()
}

/// Installs (unless it is there) the SDK [`sdk_dir`] answers.
fn install_sdk() -> PathBuf {
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

/// An HTTP/1.1 app: under `/api/` (the binding's URL) `201 created <body>` to POST and
/// `200 <method> <target>` otherwise, as text; other paths (invocations) `200
/// {"method", "target"}` as JSON (the SDK's gRPC invoker parses the answer as JSON).
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
        let (status, content_type, reply) = if !target.starts_with("/api/") {
            let reply = json!({"method": method, "target": target}).to_string();
            ("200 OK", "application/json", reply)
        } else if method == "POST" {
            let reply = format!("created {}", String::from_utf8_lossy(&body));
            ("201 Created", "text/plain", reply)
        } else {
            ("200 OK", "text/plain", format!("{method} {target}"))
        };
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
            reply.len()
        );
    })
}

/// layotto-rs over `redis` and the test's app at `app` (with a secrets file in `dir`): Dapr's
/// gRPC API on listener `grpc`, its HTTP API on `dapr`, app id `app1`.
fn sidecar(redis: &RedisServer, app: std::net::SocketAddr, dir: &Path) -> Layotto {
    let secrets = dir.join("secrets.json");
    std::fs::write(&secrets, r#"{"db": {"user": "admin"}, "token": "s3cr3t"}"#).unwrap();
    let metadata = json!({"redisHost": redis.endpoint()});
    let config = with_dapr_http(
        json!({
            "state": {
                "store": {"type": "redis", "metadata": metadata},
                "memory": {"type": "in-memory"}
            },
            "lock": {"locks": {"type": "redis", "metadata": metadata}},
            "pub_subs": {"events": {"type": "redis", "metadata": metadata}},
            "config_store": {"config": {"type": "in-memory"}},
            "bindings": {"http": {"type": "http", "metadata": {"url": format!("http://{app}/api")}}},
            "rpcs": {"http": {"type": "http", "metadata": {"targets": format!("app2={app}")}}},
            "secret_store": {"files": {"type": "local.file",
                "metadata": {"secretsFile": secrets, "nestedSeparator": ":"}}},
            "app": {"app_id": "app1"}
        }),
        "dapr",
    );
    Layotto::start(&config)
}

/// How long a program may run.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `tests/dapr_js/{script}` with node and the SDK, with `env`, handing each line it prints
/// to `on_line` (and `None` after each 100 ms it prints nothing); asserts it ends well, having
/// printed "all ok".
fn run_program(script: &str, env: &[(&str, String)], mut on_line: impl FnMut(Option<&str>)) {
    let sdk = sdk_dir();
    let mut child = Command::new("node")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/dapr_js")
                .join(script),
        )
        .env("NODE_PATH", sdk.join("node_modules"))
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is installed (scripts/test.sh installs it)");
    let (lines, printed) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let mut stdout = String::new();
    loop {
        match printed.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                on_line(Some(&line));
                stdout.push_str(&line);
                stdout.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Timeout) => on_line(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if started.elapsed() > PROGRAM_TIMEOUT {
            let _ = child.kill();
            break;
        }
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let stderr = errors.join().unwrap();
    assert!(
        status.success() && stdout.contains("all ok"),
        "{script} ({status}):\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// Asserts the events the programs publish are in the streams, in Dapr's layout: two on
/// `orders`, two in bulk on `bulk-orders`.
fn assert_published(redis: &RedisServer) {
    let first_data = |topic: &str, count: usize| {
        let entries: Vec<(String, Vec<(String, String)>)> = ::redis::cmd("XRANGE")
            .arg(topic)
            .arg("-")
            .arg("+")
            .query(&mut redis.client())
            .unwrap();
        assert_eq!(entries.len(), count, "{topic}");
        let event: serde_json::Value = serde_json::from_str(&entries[0].1[0].1).unwrap();
        event["data"].clone()
    };
    assert_eq!(first_data("orders", 2), json!({"orderId": 7}));
    assert_eq!(first_data("bulk-orders", 2), json!({"orderId": 8}));
}

#[test]
fn the_javascript_sdk_in_http_mode_runs_against_layotto_rs_and_redis() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let layotto = sidecar(&redis, app_server(), dir.path());
    let port = layotto.address("dapr").port().to_string();
    run_program("http_mode.js", &[("DAPR_HTTP_PORT", port)], |_| {});
    assert_published(&redis);
}

#[test]
fn the_javascript_sdk_in_grpc_mode_runs_against_layotto_rs_and_redis() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let layotto = sidecar(&redis, app_server(), dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut layotto_client = runtime.block_on(runtime_client(layotto.address("grpc")));
    let mut save_color = |color: &str| {
        let request = layotto_proto::runtime::SaveConfigurationRequest {
            store_name: "config".into(),
            app_id: "app1".into(),
            items: vec![layotto_proto::runtime::ConfigurationItem {
                key: "color".into(),
                content: color.into(),
                ..Default::default()
            }],
            metadata: Default::default(),
        };
        runtime
            .block_on(layotto_client.save_configuration(request))
            .unwrap();
    };
    save_color("red");
    // The SDK opens its subscription stream in the background, unseen: once the program says it
    // subscribed, change the item every 100 ms until it has seen a change.
    let mut changing = false;
    let port = layotto.address("grpc").port().to_string();
    run_program("grpc_mode.js", &[("DAPR_GRPC_PORT", port)], |line| {
        match line {
            Some("configuration subscribed") => changing = true,
            Some("configuration ok") => changing = false,
            _ => {}
        }
        if changing {
            save_color("blue");
        }
    });
    assert_published(&redis);
}

#[test]
fn the_javascript_sdks_dapr_server_receives_the_events_it_subscribes_to() {
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
    run_program(
        "server_mode.js",
        &[
            ("DAPR_HTTP_PORT", dapr_port),
            ("APP_PORT", app_port),
            ("APP_ID", "orders-app".to_owned()),
        ],
        |_| {},
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
