//! The scenarios: L4 echo request/response through each proxy (closed loop for the most it can
//! do, then open loop at half of the slowest proxy's most for latency), L4 bulk throughput, gRPC
//! unary calls against layotto-rs and the tonic reference, and memory at rest and with 10k idle
//! connections. Each measurement is repeated and summarised by its median with the spread.

use std::{
    cell::Cell,
    future::Future,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::Result;
use bytes::Bytes;
use layotto_proto::runtime::{
    GetStateRequest, GetStateResponse, SaveStateRequest, SayHelloRequest, SayHelloResponse,
    StateItem,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    grpc_client::UnaryCaller,
    h2load,
    load::{self, Measurement, Mode, Timing},
    report::{BulkRow, Cost, H2loadRow, LatencyRow, MemoryRow, Summary},
    syscalls,
    targets::{self, Process},
};

/// Open loop: requests outstanding at most per client of the pool (the rest of the cap waits
/// for a client, its latency counted from its intended time); one due beyond it is missed.
const OPEN_LOOP_IN_FLIGHT_PER_CLIENT: usize = 4;

/// How long the memory scenario may take to open its idle connections; it reports with those
/// it has by then.
const OPEN_IDLE_DEADLINE: Duration = Duration::from_secs(60);

/// Where things run and for how long.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// layotto-rs's binary.
    pub layotto: std::path::PathBuf,
    /// Core of the server under test (proxy, gRPC server).
    pub server_core: Option<usize>,
    /// Core of the load generator and the upstream echo server.
    pub load_core: Option<usize>,
    /// Warm-up and measured time of each run.
    pub timing: Timing,
    /// Runs of each measurement.
    pub repeats: usize,
}

/// Runs `future` on a fresh current-thread runtime with a `LocalSet` (on the calling thread,
/// which is pinned to the load core).
fn local<T>(future: impl Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    tokio::task::LocalSet::new().block_on(&runtime, future)
}

fn progress(label: String) -> impl Fn(u64) {
    let started = Instant::now();
    move |done| {
        let rate = done as f64 / started.elapsed().as_secs_f64();
        eprint!("\r  {label}: {done} responses ({rate:.0}/s)          ");
    }
}

/// Runs `measure` (which returns the figures and the requests per second of the measured window)
/// and what `target` spent on it: CPU over the whole run, warm-up included, over the requests
/// of that time at the measured rate; syscalls over the measured window only, when perf can.
fn costed<T>(
    plan: &Plan,
    target: &Process,
    measure: impl FnOnce() -> Result<(T, f64)>,
) -> Result<(T, Cost)> {
    let whole_run = (plan.timing.warmup + plan.timing.duration).as_secs_f64();
    let syscalls = syscalls::count_window(target.pid(), plan.timing.warmup, plan.timing.duration);
    let before = target.cpu_seconds()?;
    let (figures, rps) = measure()?;
    let spent = target.cpu_seconds()? - before;
    let measured = (rps * plan.timing.duration.as_secs_f64()).max(1.0);
    let syscalls_per_request = syscalls.join().ok().flatten().map(|n| n as f64 / measured);
    Ok((
        figures,
        Cost {
            cpu_us_per_request: spent * 1e6 / (rps * whole_run).max(1.0),
            syscalls_per_request,
        },
    ))
}

/// `repeats` runs of `measure` against `target`, summarised with what the target spent.
fn repeat(
    plan: &Plan,
    label: &str,
    target: &Process,
    mut measure: impl FnMut() -> Result<Measurement>,
) -> Result<Summary> {
    let mut runs = Vec::with_capacity(plan.repeats);
    let mut cpu_per_request = Vec::with_capacity(plan.repeats);
    let mut syscalls_per_request = Vec::with_capacity(plan.repeats);
    for run in 0..plan.repeats {
        eprint!("\r  {label} (run {}/{})          ", run + 1, plan.repeats);
        let (measurement, cost) = costed(plan, target, || {
            let measurement = measure()?;
            let rps = measurement.throughput();
            Ok((measurement, rps))
        })?;
        cpu_per_request.push(cost.cpu_us_per_request);
        syscalls_per_request.extend(cost.syscalls_per_request);
        runs.push(measurement);
    }
    eprintln!();
    Ok(Summary::of(&runs, &cpu_per_request, &syscalls_per_request))
}

/// The L4 proxies to compare, each in front of `upstream`.
fn proxies(plan: &Plan, upstream: SocketAddr) -> Result<Vec<Process>> {
    let mut proxies = vec![targets::layotto(
        &plan.layotto,
        plan.server_core,
        Some(upstream),
    )?];
    match targets::haproxy(plan.server_core, upstream)? {
        Some(haproxy) => proxies.push(haproxy),
        None => eprintln!("  haproxy is not installed: skipped"),
    }
    match targets::nginx(plan.server_core, upstream)? {
        Some(nginx) => proxies.push(nginx),
        None => eprintln!("  nginx (with the stream module) is not installed: skipped"),
    }
    Ok(proxies)
}

/// One echo round trip of `size` bytes per call, over `connections` connections.
fn echo_load(
    address: SocketAddr,
    size: usize,
    connections: usize,
    mode: Mode,
    plan: &Plan,
    label: &str,
) -> Result<Measurement> {
    let timing = plan.timing;
    local(async move {
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            clients.push((stream, vec![0u8; size]));
        }
        let payload: Rc<[u8]> = (0..size).map(|i| i as u8).collect();
        let call = move |(mut stream, mut buffer): (TcpStream, Vec<u8>)| {
            let payload = payload.clone();
            async move {
                let result = async {
                    stream.write_all(&payload).await?;
                    stream.read_exact(&mut buffer).await?;
                    std::io::Result::Ok(())
                }
                .await
                .map_err(|err| err.to_string());
                let result = result.and_then(|()| {
                    (buffer[..] == payload[..])
                        .then_some(())
                        .ok_or_else(|| "echo differs".to_owned())
                });
                ((stream, buffer), result)
            }
        };
        Ok(load::run(clients, mode, timing, call, progress(label.to_owned())).await)
    })
}

/// Closed-loop most and open-loop latency of each L4 target, for each message size.
pub(crate) fn l4(plan: &Plan, sizes: &[usize]) -> Result<Vec<LatencyRow>> {
    let echo = targets::echo(plan.load_core)?;
    let proxies = proxies(plan, echo.address)?;
    let mut rows = Vec::new();
    for &size in sizes {
        let mut all: Vec<&Process> = vec![&echo];
        all.extend(proxies.iter());
        let mut max = Vec::new();
        for target in &all {
            let label = format!("L4 echo {size} B, closed loop, {}", name(target));
            let summary = repeat(plan, &label, target, || {
                echo_load(
                    target.address,
                    size,
                    32,
                    Mode::Closed { concurrency: 32 },
                    plan,
                    &label,
                )
            })?;
            max.push(summary.rps);
            rows.push(LatencyRow::new(
                format!("L4 echo {size} B, closed loop (32 connections)"),
                name(target),
                target.core,
                summary,
            ));
        }
        // Half of the slowest proxy's most: every target can carry it.
        let rate = (max[1..].iter().copied().fold(f64::MAX, f64::min) / 2.0)
            .max(100.0)
            .round();
        for target in &all {
            let label = format!("L4 echo {size} B, open loop {rate}/s, {}", name(target));
            let summary = repeat(plan, &label, target, || {
                echo_load(
                    target.address,
                    size,
                    64,
                    Mode::Open {
                        rate,
                        max_in_flight: OPEN_LOOP_IN_FLIGHT_PER_CLIENT * 64,
                    },
                    plan,
                    &label,
                )
            })?;
            rows.push(LatencyRow::new(
                format!("L4 echo {size} B, open loop {rate}/s"),
                name(target),
                target.core,
                summary,
            ));
        }
    }
    Ok(rows)
}

fn name(target: &Process) -> String {
    if target.name == "echo" {
        "direct".into()
    } else {
        target.name.clone()
    }
}

/// Bulk echo throughput over `connections` connections writing 256 KiB at a time, with the CPU
/// time each target spent per GiB it echoed.
pub(crate) fn bulk(plan: &Plan, connections: usize) -> Result<Vec<BulkRow>> {
    let whole_run = (plan.timing.warmup + plan.timing.duration).as_secs_f64();
    let echo = targets::echo(plan.load_core)?;
    let proxies = proxies(plan, echo.address)?;
    let mut rows = Vec::new();
    let mut all: Vec<&Process> = vec![&echo];
    all.extend(proxies.iter());
    for target in all {
        let mut runs = Vec::new();
        let mut cpu_per_gib = Vec::new();
        for run in 0..plan.repeats {
            eprint!(
                "\r  bulk echo, {} (run {}/{})          ",
                name(target),
                run + 1,
                plan.repeats
            );
            let before = target.cpu_seconds()?;
            let gbit_per_s = local(bulk_once(target.address, connections, plan.timing))?;
            let spent = target.cpu_seconds()? - before;
            let gib = gbit_per_s * 1e9 / 8.0 * whole_run / (1u64 << 30) as f64;
            cpu_per_gib.push(spent * 1e3 / gib.max(f64::MIN_POSITIVE));
            runs.push(gbit_per_s);
        }
        eprintln!();
        runs.sort_by(f64::total_cmp);
        cpu_per_gib.sort_by(f64::total_cmp);
        rows.push(BulkRow {
            target: name(target),
            core: target.core,
            gbit_per_s: runs[runs.len() / 2],
            spread: (runs[0], runs[runs.len() - 1]),
            cpu_ms_per_gib: cpu_per_gib[cpu_per_gib.len() / 2],
        });
    }
    Ok(rows)
}

/// Ends by `timing`'s hard deadline: a stalled target's writers and readers are abandoned then.
async fn bulk_once(address: SocketAddr, connections: usize, timing: Timing) -> Result<f64> {
    let end = Instant::now() + timing.warmup + timing.duration;
    let deadline = end + timing.grace;
    let measure_from = Instant::now() + timing.warmup;
    let counted = Rc::new(Cell::new(0u64));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let stream = TcpStream::connect(address).await?;
        let (mut reader, mut writer) = stream.into_split();
        tasks.push(tokio::task::spawn_local(async move {
            let chunk = vec![7u8; 256 * 1024];
            let write = async {
                while Instant::now() < end {
                    if writer.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout_at(deadline.into(), write).await;
        }));
        let counted = counted.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut buffer = vec![0u8; 256 * 1024];
            while Instant::now() < end {
                match tokio::time::timeout_at(end.into(), reader.read(&mut buffer)).await {
                    Ok(Ok(n)) if n > 0 => {
                        if Instant::now() >= measure_from {
                            counted.set(counted.get() + n as u64);
                        }
                    }
                    _ => break,
                }
            }
        }));
    }
    let finish = async {
        for task in tasks {
            let _ = task.await;
        }
    };
    let _ = tokio::time::timeout_at(deadline.into(), finish).await;
    Ok(counted.get() as f64 * 8.0 / timing.duration.as_secs_f64() / 1e9)
}

/// The gRPC rpcs measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    /// `SayHello` on the `helloworld` component.
    SayHello,
    /// `GetState` of a saved key on the in-memory store.
    GetState,
}

fn hello_request() -> SayHelloRequest {
    SayHelloRequest {
        service_name: "quick_start_demo".into(),
        name: "bench".into(),
        data: None,
    }
}

fn get_state_request() -> GetStateRequest {
    GetStateRequest {
        store_name: "state_demo".into(),
        key: "bench".into(),
        ..Default::default()
    }
}

/// The gRPC path of each rpc, as LayOtto's API names it.
fn rpc_path(method: &str) -> String {
    format!("/spec.proto.runtime.v1.Runtime/{method}")
}

/// `connections × streams` callers of `rpc` (clones share their connection), after saving the
/// state `GetState` reads.
async fn grpc_callers(
    address: SocketAddr,
    rpc: Rpc,
    connections: usize,
    streams: usize,
) -> Result<Vec<UnaryCaller>> {
    let save = SaveStateRequest {
        store_name: "state_demo".into(),
        states: vec![StateItem {
            key: "bench".into(),
            value: Bytes::from_static(b"value"),
            ..Default::default()
        }],
    };
    UnaryCaller::connect(address, &rpc_path("SaveState"), &save)
        .await?
        .call::<()>()
        .await
        .map_err(anyhow::Error::msg)?;
    let mut callers = Vec::with_capacity(connections);
    for _ in 0..connections {
        callers.push(match rpc {
            Rpc::SayHello => {
                UnaryCaller::connect(address, &rpc_path("SayHello"), &hello_request()).await?
            }
            Rpc::GetState => {
                UnaryCaller::connect(address, &rpc_path("GetState"), &get_state_request()).await?
            }
        });
    }
    Ok((0..connections * streams)
        .map(|i| callers[i % connections].clone())
        .collect())
}

fn grpc_load(
    address: SocketAddr,
    rpc: Rpc,
    mode: Mode,
    plan: &Plan,
    label: &str,
) -> Result<Measurement> {
    let timing = plan.timing;
    local(async move {
        let callers = grpc_callers(address, rpc, 2, 500).await?;
        let call = move |mut caller: UnaryCaller| async move {
            let result = match rpc {
                Rpc::SayHello => caller.call::<SayHelloResponse>().await.and_then(|reply| {
                    (reply.hello == "greeting, bench")
                        .then_some(())
                        .ok_or_else(|| "wrong greeting".to_owned())
                }),
                Rpc::GetState => caller.call::<GetStateResponse>().await.and_then(|reply| {
                    (reply.data == "value")
                        .then_some(())
                        .ok_or_else(|| "wrong value".to_owned())
                }),
            };
            (caller, result)
        };
        Ok(load::run(callers, mode, timing, call, progress(label.to_owned())).await)
    })
}

/// Each rpc against layotto-rs and the tonic reference, pinned to the same core: the most with
/// 1000 calls in flight (2 connections × 500 streams) from our client and from h2load (when
/// installed), then latency at half the slower's most.
pub(crate) fn grpc(plan: &Plan) -> Result<(Vec<LatencyRow>, Vec<H2loadRow>)> {
    let servers = [
        targets::layotto(&plan.layotto, plan.server_core, None)?,
        targets::tonic_reference(plan.server_core)?,
    ];
    let h2load = h2load::installed();
    if h2load.is_none() {
        eprintln!("  h2load (Debian's nghttp2-client) is not installed: its rows are skipped");
    }
    let mut rows = Vec::new();
    let mut h2load_rows = Vec::new();
    for rpc in [Rpc::SayHello, Rpc::GetState] {
        let mut max = Vec::new();
        for server in &servers {
            let label = format!("gRPC {rpc:?}, closed loop 1000 in flight, {}", server.name);
            let summary = repeat(plan, &label, server, || {
                grpc_load(
                    server.address,
                    rpc,
                    Mode::Closed { concurrency: 1000 },
                    plan,
                    &label,
                )
            })?;
            max.push(summary.rps);
            rows.push(LatencyRow::new(
                format!("gRPC {rpc:?}, closed loop (1000 in flight)"),
                server.name.clone(),
                server.core,
                summary,
            ));
        }
        if let Some(program) = &h2load {
            for server in &servers {
                h2load_rows.push(h2load_repeat(plan, program, server, rpc)?);
            }
        }
        let rate = (max.iter().copied().fold(f64::MAX, f64::min) / 2.0)
            .max(100.0)
            .round();
        for server in &servers {
            let label = format!("gRPC {rpc:?}, open loop {rate}/s, {}", server.name);
            let summary = repeat(plan, &label, server, || {
                grpc_load(
                    server.address,
                    rpc,
                    Mode::Open {
                        rate,
                        max_in_flight: OPEN_LOOP_IN_FLIGHT_PER_CLIENT * 1000,
                    },
                    plan,
                    &label,
                )
            })?;
            rows.push(LatencyRow::new(
                format!("gRPC {rpc:?}, open loop {rate}/s"),
                server.name.clone(),
                server.core,
                summary,
            ));
        }
    }
    Ok((rows, h2load_rows))
}

/// `repeats` h2load runs of `rpc` against `server` (2 connections × 500 streams), the median
/// shown, with what the server spent.
fn h2load_repeat(
    plan: &Plan,
    program: &std::path::Path,
    server: &Process,
    rpc: Rpc,
) -> Result<H2loadRow> {
    let body = tempfile::NamedTempFile::new()?;
    let request = match rpc {
        Rpc::SayHello => h2load::request_body(&hello_request()),
        Rpc::GetState => h2load::request_body(&get_state_request()),
    };
    std::fs::write(body.path(), request)?;
    let path = rpc_path(&format!("{rpc:?}"));
    let mut runs = Vec::with_capacity(plan.repeats);
    for run in 0..plan.repeats {
        eprint!(
            "\r  gRPC {rpc:?}, h2load, {} (run {}/{})          ",
            server.name,
            run + 1,
            plan.repeats
        );
        runs.push(costed(plan, server, || {
            let figures = h2load::run(
                program,
                server.address,
                &path,
                body.path(),
                (2, 500),
                plan.timing,
                plan.load_core,
            )?;
            let rps = figures.rps;
            Ok((figures, rps))
        })?);
    }
    eprintln!();
    Ok(H2loadRow::of(
        format!("gRPC {rpc:?}, h2load (2 connections × 500 streams)"),
        server.name.clone(),
        server.core,
        &runs,
    ))
}

/// Resident memory of each server at rest and holding idle connections: `idle` HTTP/2
/// connections to the gRPC servers, and as many proxied connections as a proxy's file limit
/// allows (two descriptors each) up to `idle`.
pub(crate) fn memory(plan: &Plan, idle: usize, nofile: u64) -> Result<Vec<MemoryRow>> {
    let mut rows = Vec::new();
    let grpc = [
        targets::layotto(&plan.layotto, plan.server_core, None)?,
        targets::tonic_reference(plan.server_core)?,
    ];
    for server in &grpc {
        rows.push(hold(server, idle, "gRPC API, HTTP/2", true)?);
    }
    let echo = targets::echo(plan.load_core)?;
    let proxied = idle.min((nofile as usize).saturating_sub(200) / 2);
    for proxy in proxies(plan, echo.address)? {
        rows.push(hold(&proxy, proxied, "L4 proxy", false)?);
    }
    Ok(rows)
}

fn hold(server: &Process, count: usize, kind: &str, http2: bool) -> Result<MemoryRow> {
    std::thread::sleep(Duration::from_millis(500));
    let idle_kib = server.rss_kib()?;
    eprint!(
        "\r  memory, {}: opening {count} connections          ",
        server.name
    );
    let held = local(open_idle(server.address, count, http2));
    std::thread::sleep(Duration::from_millis(500));
    let with = server.rss_kib()?;
    let connections = held.len();
    drop(held);
    eprintln!();
    Ok(MemoryRow {
        target: format!("{} ({kind})", server.name),
        idle_kib,
        connections,
        with_connections_kib: Some(with),
    })
}

/// The HTTP/2 client preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// Opens `count` connections to `address`, each proven end to end: by the server's SETTINGS
/// frame (`http2`), or by one echoed byte (through a proxy); stops at `OPEN_IDLE_DEADLINE` (or
/// at the first that fails) with those it has.
async fn open_idle(address: SocketAddr, count: usize, http2: bool) -> Vec<std::net::TcpStream> {
    let deadline = tokio::time::Instant::now() + OPEN_IDLE_DEADLINE;
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        match tokio::time::timeout_at(deadline, open_one(address, http2)).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(err)) => {
                eprintln!("\n  opening connection {}: {err}", held.len() + 1);
                break;
            }
            Err(_) => {
                eprintln!(
                    "\n  {OPEN_IDLE_DEADLINE:?} passed with {} connections open",
                    held.len()
                );
                break;
            }
        }
    }
    held
}

async fn open_one(address: SocketAddr, http2: bool) -> Result<std::net::TcpStream> {
    let mut stream = TcpStream::connect(address).await?;
    if http2 {
        stream.write_all(H2_PREFACE).await?;
        let mut frame_header = [0u8; 9];
        stream.read_exact(&mut frame_header).await?;
        anyhow::ensure!(frame_header[3] == 4, "expected the server's SETTINGS");
    } else {
        stream.write_all(b"x").await?;
        let mut byte = [0u8];
        stream.read_exact(&mut byte).await?;
    }
    Ok(stream.into_std()?)
}
