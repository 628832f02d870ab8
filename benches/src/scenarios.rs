//! The scenarios: L4 echo request/response through each proxy (closed loop for the most it can
//! do, then open loop at half of the slowest proxy's most for latency), L4 bulk throughput, gRPC
//! unary calls against layotto-rs and the tonic reference, Dapr's `GetState` (gRPC and HTTP)
//! beside LayOtto's on the in-memory and a redis store, the latency layotto-rs adds to a redis
//! read at fixed rates, and memory at rest and with 10k idle connections. Each measurement is
//! repeated and summarised by its median with the spread. Every row of a table is a
//! [`Contender`]: a call through a pool of clients against one server, measured the same way.

use std::{
    cell::Cell,
    future::Future,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    calls::{self, Api, Call, Client, Pool, Store},
    h2load,
    load::{self, Measurement, Mode, Timing},
    report::{self, BulkRow, Cost, H2loadRow, LatencyRow, MemoryRow, Summary},
    syscalls,
    targets::{self, Process, Role},
};

/// Open loop: requests outstanding at most per client of the pool (the rest of the cap waits
/// for a client, its latency counted from its intended time); one due beyond it is missed.
const OPEN_LOOP_IN_FLIGHT_PER_CLIENT: usize = 4;

/// How long the memory scenario may take to open its idle connections; it reports with those
/// it has by then.
const OPEN_IDLE_DEADLINE: Duration = Duration::from_secs(60);

/// How long opening a run's clients (or seeding the state) may take before the run fails.
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// The gRPC pool at saturation: 1000 calls in flight on 2 HTTP/2 connections.
const GRPC_SATURATION: Pool = Pool {
    connections: 2,
    streams: 500,
};

/// The HTTP/1.1 (and RESP) pool at saturation: 1000 kept-alive connections, one call each.
const HTTP_SATURATION: Pool = Pool {
    connections: 1000,
    streams: 1,
};

/// The pool of the fixed-rate latency runs: 64 clients (gRPC 2 connections × 32 streams,
/// HTTP/1.1 and RESP 64 connections).
const LIGHT_GRPC: Pool = Pool {
    connections: 2,
    streams: 32,
};

/// See [`LIGHT_GRPC`].
const LIGHT_CONNECTIONS: Pool = Pool {
    connections: 64,
    streams: 1,
};

/// The light-load probe's rate: this share of the slowest target's most, so that no queue
/// hides the latency of the hop itself (HAProxy's DPbench method).
const LIGHT_LOAD: f64 = 0.01;

/// The light-load probe's clients: a few connections (HTTP/2: one stream each).
const PROBE: Pool = Pool {
    connections: 4,
    streams: 1,
};

/// The rates of the latency-added scenario, calls per second.
const REDIS_ADDED_RATES: [f64; 2] = [report::DAPR_PUBLISHED_RATE, 10_000.0];

/// Where things run and for how long.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The layotto-rs under test.
    pub layotto: targets::Layotto,
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

/// One row of a table: `call` through `pool` against `server`, whose CPU and syscalls are
/// counted.
struct Contender<'a> {
    /// The row's name.
    name: String,
    /// The server called (and costed).
    server: &'a Process,
    /// What each call is.
    call: Call,
    /// The clients.
    pool: Pool,
}

impl<'a> Contender<'a> {
    fn new(name: impl Into<String>, server: &'a Process, call: Call, pool: Pool) -> Self {
        Self {
            name: name.into(),
            server,
            call,
            pool,
        }
    }

    /// Where its calls go: the Dapr HTTP listener for Dapr HTTP calls, else the server's address.
    fn address(&self) -> Result<SocketAddr> {
        match self.call {
            Call::GetState(Api::DaprHttp, _) => self
                .server
                .dapr_http
                .with_context(|| format!("{} serves no Dapr HTTP API", self.server.name)),
            _ => Ok(self.server.address),
        }
    }
}

/// How load is offered to every contender of a table.
#[derive(Debug, Clone, Copy)]
enum Offer {
    /// Every client of the pool always has a call in flight.
    Closed,
    /// Calls at this rate per second, at most [`OPEN_LOOP_IN_FLIGHT_PER_CLIENT`] per client
    /// outstanding.
    Open(f64),
}

impl Offer {
    fn mode(self, clients: usize) -> Mode {
        match self {
            Self::Closed => Mode::Closed {
                concurrency: clients,
            },
            Self::Open(rate) => Mode::Open {
                rate,
                max_in_flight: OPEN_LOOP_IN_FLIGHT_PER_CLIENT * clients,
            },
        }
    }
}

/// The rows of the table `scenario`: each contender measured `repeats` times under `offer`,
/// taking turns ([`in_turns`]); medians shown.
fn table(
    plan: &Plan,
    scenario: &str,
    contenders: &[Contender<'_>],
    offer: Offer,
) -> Result<Vec<LatencyRow>> {
    let runs = in_turns(plan, contenders, |contender, run| {
        let label = format!("{scenario}, {}", contender.name);
        eprint!("\r  {label} (run {}/{})          ", run + 1, plan.repeats);
        let address = contender.address()?;
        let mode = offer.mode(contender.pool.clients(contender.call));
        costed(plan, contender.server, || {
            let measurement =
                call_load(address, contender.call, contender.pool, mode, plan, &label)?;
            let rps = measurement.throughput();
            Ok((measurement, rps))
        })
    })?;
    Ok(contenders
        .iter()
        .zip(runs)
        .map(|(contender, runs)| {
            let (measurements, costs): (Vec<_>, Vec<_>) = runs.into_iter().unzip();
            let cpu_per_request: Vec<f64> = costs.iter().map(|c| c.cpu_us_per_request).collect();
            let syscalls_per_request: Vec<f64> = costs
                .iter()
                .filter_map(|c| c.syscalls_per_request)
                .collect();
            LatencyRow::new(
                scenario.to_owned(),
                contender.name.clone(),
                contender.server.core,
                Summary::of(&measurements, &cpu_per_request, &syscalls_per_request),
            )
        })
        .collect())
}

/// `plan.repeats` runs of `measure` on each of `targets`, the targets taking turns (the first
/// run of each, then the second of each, ...) so that a drift of the machine's speed falls on
/// every target alike; each target's runs, in order. `measure` gets the run's index.
fn in_turns<Target, Run>(
    plan: &Plan,
    targets: &[Target],
    mut measure: impl FnMut(&Target, usize) -> Result<Run>,
) -> Result<Vec<Vec<Run>>> {
    let mut runs: Vec<Vec<Run>> = targets
        .iter()
        .map(|_| Vec::with_capacity(plan.repeats))
        .collect();
    for run in 0..plan.repeats {
        for (target, runs) in targets.iter().zip(&mut runs) {
            runs.push(measure(target, run)?);
            eprintln!();
        }
    }
    Ok(runs)
}

/// One run of `call` to `address` through `pool` under `mode`.
fn call_load(
    address: SocketAddr,
    call: Call,
    pool: Pool,
    mode: Mode,
    plan: &Plan,
    label: &str,
) -> Result<Measurement> {
    let timing = plan.timing;
    local(async move {
        let clients = tokio::time::timeout(CONNECT_DEADLINE, calls::connect(address, call, pool))
            .await
            .with_context(|| format!("connecting to {address} took over {CONNECT_DEADLINE:?}"))??;
        Ok(load::run(
            clients,
            mode,
            timing,
            Client::call,
            progress(label.to_owned()),
        )
        .await)
    })
}

/// `share` of the slowest of `rows`' most (at least 100/s): a half every target can carry, or
/// the light-load probe's [`LIGHT_LOAD`].
fn share_of_slowest<'a>(rows: impl IntoIterator<Item = &'a LatencyRow>, share: f64) -> f64 {
    (rows
        .into_iter()
        .map(|row| row.summary.rps)
        .fold(f64::MAX, f64::min)
        * share)
        .max(100.0)
        .round()
}

/// The L4 proxies to compare, each in front of `upstream`.
fn proxies(plan: &Plan, upstream: SocketAddr) -> Result<Vec<Process>> {
    let mut proxies = vec![targets::layotto(
        &plan.layotto,
        plan.server_core,
        Role::TcpProxy(upstream),
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

/// Closed-loop most and open-loop latency of each L4 target, for each message size.
pub(crate) fn l4(plan: &Plan, sizes: &[usize]) -> Result<Vec<LatencyRow>> {
    let echo = targets::echo(plan.load_core)?;
    let proxies = proxies(plan, echo.address)?;
    let mut all: Vec<&Process> = vec![&echo];
    all.extend(proxies.iter());
    let mut rows = Vec::new();
    for &size in sizes {
        let contenders = |connections| -> Vec<Contender<'_>> {
            all.iter()
                .map(|target| {
                    Contender::new(
                        name(target),
                        target,
                        Call::Echo(size),
                        Pool {
                            connections,
                            streams: 1,
                        },
                    )
                })
                .collect()
        };
        let closed = table(
            plan,
            &format!("L4 echo {size} B, closed loop (32 connections)"),
            &contenders(32),
            Offer::Closed,
        )?;
        // Shares of the slowest proxy's most (not the direct one's).
        let rate = share_of_slowest(&closed[1..], 0.5);
        let probe = share_of_slowest(&closed[1..], LIGHT_LOAD);
        rows.extend(closed);
        rows.extend(table(
            plan,
            &format!("L4 echo {size} B, open loop {rate}/s"),
            &contenders(64),
            Offer::Open(rate),
        )?);
        rows.extend(table(
            plan,
            &format!("L4 echo {size} B, open loop {probe}/s (light load: the latency of the hop)"),
            &contenders(PROBE.connections),
            Offer::Open(probe),
        )?);
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

/// Each rpc against layotto-rs and the tonic reference, pinned to the same core: the most with
/// 1000 calls in flight (2 connections × 500 streams) from our client and from h2load (when
/// installed), then latency at half the slower's most.
pub(crate) fn grpc(plan: &Plan) -> Result<(Vec<LatencyRow>, Vec<H2loadRow>)> {
    let servers = [
        targets::layotto(
            &plan.layotto,
            plan.server_core,
            Role::Api {
                redis: None,
                dapr_http: false,
            },
        )?,
        targets::tonic_reference(plan.server_core)?,
    ];
    for server in &servers {
        seed_state(server.address, Store::InMemory)?;
    }
    let h2load = h2load::installed();
    if h2load.is_none() {
        eprintln!("  h2load (Debian's nghttp2-client) is not installed: its rows are skipped");
    }
    let mut rows = Vec::new();
    let mut h2load_rows = Vec::new();
    for (rpc, call) in [
        ("SayHello", Call::SayHello),
        ("GetState", Call::GetState(Api::Layotto, Store::InMemory)),
    ] {
        let contenders: Vec<Contender<'_>> = servers
            .iter()
            .map(|server| Contender::new(server.name.clone(), server, call, GRPC_SATURATION))
            .collect();
        let closed = table(
            plan,
            &format!("gRPC {rpc}, closed loop (1000 in flight)"),
            &contenders,
            Offer::Closed,
        )?;
        let rate = share_of_slowest(&closed, 0.5);
        let probe = share_of_slowest(&closed, LIGHT_LOAD);
        rows.extend(closed);
        if let Some(program) = &h2load {
            h2load_rows.extend(h2load_table(plan, program, &servers, rpc, call)?);
        }
        rows.extend(table(
            plan,
            &format!("gRPC {rpc}, open loop {rate}/s"),
            &contenders,
            Offer::Open(rate),
        )?);
        let probes: Vec<Contender<'_>> = servers
            .iter()
            .map(|server| Contender::new(server.name.clone(), server, call, PROBE))
            .collect();
        rows.extend(table(
            plan,
            &format!("gRPC {rpc}, open loop {probe}/s (light load: the latency of the hop)"),
            &probes,
            Offer::Open(probe),
        )?);
    }
    Ok((rows, h2load_rows))
}

/// Seeds `store` of the gRPC server at `address` (see [`calls::seed_state`]).
fn seed_state(address: SocketAddr, store: Store) -> Result<()> {
    local(async move {
        tokio::time::timeout(CONNECT_DEADLINE, calls::seed_state(address, store))
            .await
            .context("seeding the state took too long")?
    })
}

/// A redis server for the redis scenarios, seeded (see [`calls::seed_redis`]); `None`, with a
/// note, when redis-server is not installed.
fn seeded_redis(plan: &Plan) -> Result<Option<Process>> {
    let Some(redis) = targets::redis(plan.load_core)? else {
        eprintln!("  redis-server (Debian's redis-server) is not installed: redis rows skipped");
        return Ok(None);
    };
    let address = redis.address;
    local(async move {
        tokio::time::timeout(CONNECT_DEADLINE, calls::seed_redis(address))
            .await
            .context("seeding redis took too long")?
    })?;
    Ok(Some(redis))
}

/// The name of a layotto-rs row of `api`.
fn layotto_row(api: Api) -> String {
    format!("layotto-rs, {}", api.label())
}

/// Dapr's `GetState` over gRPC and HTTP beside LayOtto's, at saturation (closed loop, 1000 in
/// flight: gRPC 2 connections × 500 streams, HTTP/1.1 1000 connections): on the in-memory store
/// with the tonic reference's LayOtto and Dapr `GetState` beside them, and on a redis store with
/// redis's own most (its `HMGET`, direct) when redis-server is installed.
pub(crate) fn dapr(plan: &Plan) -> Result<Vec<LatencyRow>> {
    let redis = seeded_redis(plan)?;
    let layotto = targets::layotto(
        &plan.layotto,
        plan.server_core,
        Role::Api {
            redis: redis.as_ref().map(|redis| redis.address),
            dapr_http: true,
        },
    )?;
    let tonic = targets::tonic_reference(plan.server_core)?;
    seed_state(layotto.address, Store::InMemory)?;
    seed_state(tonic.address, Store::InMemory)?;
    let through = |store, api| {
        let pool = match api {
            Api::DaprHttp => HTTP_SATURATION,
            Api::Layotto | Api::DaprGrpc => GRPC_SATURATION,
        };
        Contender::new(layotto_row(api), &layotto, Call::GetState(api, store), pool)
    };
    let tonic_row = |api: Api| {
        Contender::new(
            format!("tonic, {}", api.label()),
            &tonic,
            Call::GetState(api, Store::InMemory),
            GRPC_SATURATION,
        )
    };
    let in_memory = [
        through(Store::InMemory, Api::Layotto),
        tonic_row(Api::Layotto),
        through(Store::InMemory, Api::DaprGrpc),
        tonic_row(Api::DaprGrpc),
        through(Store::InMemory, Api::DaprHttp),
    ];
    let mut rows = table(
        plan,
        "GetState, in-memory store, closed loop (1000 in flight)",
        &in_memory,
        Offer::Closed,
    )?;
    if let Some(redis) = &redis {
        let on_redis = [
            Contender::new("redis direct", redis, Call::RedisRead, HTTP_SATURATION),
            through(Store::Redis, Api::Layotto),
            through(Store::Redis, Api::DaprGrpc),
            through(Store::Redis, Api::DaprHttp),
        ];
        rows.extend(table(
            plan,
            "GetState, redis store, closed loop (1000 in flight)",
            &on_redis,
            Offer::Closed,
        )?);
    }
    Ok(rows)
}

/// The latency layotto-rs adds to a redis read: the same load generator calling redis directly
/// (the `HMGET` a redis store's `GetState` makes) and calling `GetState` on a redis store
/// through LayOtto's gRPC API, Dapr's gRPC API and Dapr's HTTP API — each beside the same
/// API's `GetState` on the in-memory store, the API's hop without the backend's — open loop at
/// each of [`REDIS_ADDED_RATES`] with 64 clients; and layotto-rs's resident memory at rest with
/// that config (before any call). Empty, with a note, when redis-server is not installed.
pub(crate) fn redis_added(plan: &Plan) -> Result<(Vec<LatencyRow>, Option<MemoryRow>)> {
    let Some(redis) = seeded_redis(plan)? else {
        return Ok((Vec::new(), None));
    };
    let layotto = targets::layotto(
        &plan.layotto,
        plan.server_core,
        Role::Api {
            redis: Some(redis.address),
            dapr_http: true,
        },
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let at_rest = MemoryRow {
        target: "layotto-rs (LayOtto and Dapr gRPC, Dapr HTTP; in-memory and redis state stores)"
            .into(),
        idle_kib: layotto.rss_kib()?,
        idle_anon_kib: layotto.anon_kib()?,
        connections: 0,
        with_connections_kib: None,
    };
    seed_state(layotto.address, Store::InMemory)?;
    let mut contenders = vec![Contender::new(
        "redis direct",
        &redis,
        Call::RedisRead,
        LIGHT_CONNECTIONS,
    )];
    for api in [Api::Layotto, Api::DaprGrpc, Api::DaprHttp] {
        let pool = match api {
            Api::DaprHttp => LIGHT_CONNECTIONS,
            Api::Layotto | Api::DaprGrpc => LIGHT_GRPC,
        };
        contenders.push(Contender::new(
            layotto_row(api),
            &layotto,
            Call::GetState(api, Store::Redis),
            pool,
        ));
        contenders.push(Contender::new(
            format!("{}{}", layotto_row(api), report::IN_MEMORY_STORE),
            &layotto,
            Call::GetState(api, Store::InMemory),
            pool,
        ));
    }
    let mut rows = Vec::new();
    for rate in REDIS_ADDED_RATES {
        rows.extend(table(
            plan,
            &format!("GetState on redis, open loop {rate}/s"),
            &contenders,
            Offer::Open(rate),
        )?);
    }
    Ok((rows, Some(at_rest)))
}

/// `repeats` h2load runs of `call` (the gRPC rpc `rpc`) against each of `servers` (2
/// connections × 500 streams), the servers taking turns ([`in_turns`]), the medians shown,
/// with what each server spent.
fn h2load_table(
    plan: &Plan,
    program: &std::path::Path,
    servers: &[Process],
    rpc: &str,
    call: Call,
) -> Result<Vec<H2loadRow>> {
    let (path, message) = call.grpc().context("h2load makes gRPC calls")?;
    let body = tempfile::NamedTempFile::new()?;
    std::fs::write(body.path(), h2load::request_body(&message))?;
    let runs = in_turns(plan, servers, |server, run| {
        eprint!(
            "\r  gRPC {rpc}, h2load, {} (run {}/{})          ",
            server.name,
            run + 1,
            plan.repeats
        );
        costed(plan, server, || {
            let figures = h2load::run(
                program,
                server.address,
                path,
                body.path(),
                (2, 500),
                plan.timing,
                plan.load_core,
            )?;
            let rps = figures.rps;
            Ok((figures, rps))
        })
    })?;
    Ok(servers
        .iter()
        .zip(runs)
        .map(|(server, runs)| {
            H2loadRow::of(
                format!("gRPC {rpc}, h2load (2 connections × 500 streams)"),
                server.name.clone(),
                server.core,
                &runs,
            )
        })
        .collect())
}

/// Resident memory of each server at rest and holding idle connections: `idle` HTTP/2
/// connections to the gRPC servers, and as many proxied connections as a proxy's file limit
/// allows (two descriptors each) up to `idle`.
pub(crate) fn memory(plan: &Plan, idle: usize, nofile: u64) -> Result<Vec<MemoryRow>> {
    let mut rows = Vec::new();
    let grpc = [
        targets::layotto(
            &plan.layotto,
            plan.server_core,
            Role::Api {
                redis: None,
                dapr_http: false,
            },
        )?,
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
    let idle_anon_kib = server.anon_kib()?;
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
        idle_anon_kib,
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
