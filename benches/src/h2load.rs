//! h2load (Debian's `nghttp2-client`) as a second, independent gRPC load generator: a C client
//! whose costs and HTTP/2 stack are not ours, run pinned to the load core against each gRPC
//! server with a fixed number of connections and streams in flight. It checks HTTP statuses only
//! (not `grpc-status`), so its figures complement, not replace, those of our own client. Run as
//! a child process of the harness's thread, killed at the run's hard deadline.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::load::Timing;

/// Where h2load is installed, if it is.
pub(crate) fn installed() -> Option<PathBuf> {
    ["/usr/bin/h2load", "/usr/local/bin/h2load"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// What one h2load run reported of its measured window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct H2loadRun {
    /// Completed requests per second.
    pub rps: f64,
    /// Mean time per request, in microseconds.
    pub mean_us: f64,
    /// Longest time of a request, in microseconds.
    pub max_us: f64,
    /// Requests that did not succeed (failed, errored or timed out).
    pub failed: u64,
}

/// A gRPC request body (the 5-byte message prefix and the encoded `message`) for h2load's `-d`.
pub(crate) fn request_body(message: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(5 + message.len());
    body.push(0);
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    body
}

/// One h2load run of unary calls to `path` on `address` with the request in `body`, with
/// `connections × streams` in flight, pinned to `core`; killed if it outlives `timing`'s hard
/// deadline.
pub(crate) fn run(
    program: &Path,
    address: SocketAddr,
    path: &str,
    body: &Path,
    (connections, streams): (usize, usize),
    timing: Timing,
    core: Option<usize>,
) -> Result<H2loadRun> {
    let mut command = match core {
        Some(core) => {
            let mut taskset = Command::new("taskset");
            taskset.args(["-c", &core.to_string()]).arg(program);
            taskset
        }
        None => Command::new(program),
    };
    // h2load takes whole units (`1500ms`, not `1.5s`).
    let millis = |d: Duration| format!("{}ms", d.as_millis());
    command
        .args(["-t", "1", "-c", &connections.to_string()])
        .args(["-m", &streams.to_string()])
        .args(["-D", &millis(timing.duration)])
        .args(["--warm-up-time", &millis(timing.warmup)])
        .arg("-d")
        .arg(body)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg(format!("http://{address}{path}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().context("cannot start h2load")?;
    let deadline = Instant::now() + timing.warmup + timing.duration + timing.grace;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("h2load did not finish by the run's deadline");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output()?;
    parse(&String::from_utf8_lossy(&output.stdout)).with_context(|| {
        format!(
            "h2load said: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })
}

/// A duration as h2load prints it (`812us`, `6.29ms`, `1.02s`), in microseconds.
fn micros(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else {
        (text.strip_suffix('s')?, 1e6)
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// The figures of h2load's summary.
fn parse(output: &str) -> Result<H2loadRun> {
    let line = |prefix: &str| {
        output
            .lines()
            .find_map(|line| line.trim_start().strip_prefix(prefix))
            .with_context(|| format!("no {prefix:?} line in h2load's output:\n{output}"))
    };
    let finished = line("finished in ")?;
    let rps = finished
        .split(", ")
        .find_map(|part| part.strip_suffix(" req/s"))
        .and_then(|n| n.parse().ok())
        .context("no req/s in h2load's summary")?;
    let requests = line("requests: ")?;
    let count = |name: &str| -> Result<u64> {
        requests
            .split(", ")
            .find_map(|part| part.strip_suffix(name))
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("no {name:?} count in h2load's summary"))
    };
    let failed = count(" failed")? + count(" errored")? + count(" timeout")?;
    let times: Vec<f64> = line("time for request:")?
        .split_whitespace()
        .take(3)
        .map(micros)
        .collect::<Option<_>>()
        .context("unreadable request times in h2load's summary")?;
    let [_min, max_us, mean_us] = times[..] else {
        bail!("short request times in h2load's summary");
    };
    Ok(H2loadRun {
        rps,
        mean_us,
        max_us,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// h2load 1.52's summary of a run against layotto-rs.
    const OUTPUT: &str = "\
finished in 4.06s, 12372.00 req/s, 628.27KB/s
requests: 37116 total, 37116 started, 37116 done, 37110 succeeded, 4 failed, 1 errored, 1 timeout
status codes: 37116 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 1.84MB (1930032) total, 94.75KB (97022) headers (space savings 94.74%), 1.02MB (1066978) data
                     min         max         mean         sd        +/- sd
time for request:      812us    1.02s     82.02ms     26.21ms    66.16%
time for connect:        0us         0us         0us         0us     0.00%
";

    #[test]
    fn reads_the_summary() {
        let run = parse(OUTPUT).unwrap();
        assert_eq!(
            run,
            H2loadRun {
                rps: 12372.0,
                mean_us: 82020.0,
                max_us: 1_020_000.0,
                failed: 6,
            }
        );
    }

    #[test]
    fn output_without_a_summary_is_an_error() {
        assert!(parse("starting benchmark...\n").is_err());
    }

    #[test]
    fn request_body_is_one_uncompressed_grpc_message() {
        let request = layotto_proto::runtime::SayHelloRequest {
            service_name: "quick_start_demo".into(),
            name: "bench".into(),
            data: None,
        };
        let body = request_body(&prost::Message::encode_to_vec(&request));
        assert_eq!(body[..5], [0, 0, 0, 0, 25]);
        assert_eq!(&body[5..7], b"\x0a\x10");
    }
}
