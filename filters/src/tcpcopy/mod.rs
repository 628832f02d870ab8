//! The `tcpcopy` network filter (LayOtto's): while a sampling window is open and the fuse allows,
//! the bytes of every connection of the listener, both ways, are copied to pcap dump files with
//! the connection's real addresses and ports. The shard only copies the bytes it read into an
//! event and hands it to the writer thread without waiting ([`writer`]); when the writer falls
//! behind, the copy is dropped and counted, and the traffic never slows. Whether to dump is one
//! flag, set by a sampler thread from the schedule and CPU/memory use ([`strategy`]).
//!
//! ```json
//! {"type": "tcpcopy", "config": {"strategy": {"switch": "ON", "interval": 30, "duration": 10,
//!   "cpu_max_rate": 80, "mem_max_rate": 80}, "dump_dir": "/var/log/layotto"}}
//! ```

mod pcap;
mod strategy;
mod writer;

use std::{
    cell::Cell,
    net::SocketAddr,
    path::PathBuf,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crossbeam_channel::{RecvTimeoutError, Sender};
use layotto_core::{
    config::{FilterConfig, Findings, join, loose_number},
    handler::ConnectionInfo,
    stats::ShardedCounter,
};
use serde::Deserialize;
use serde_json::Value;

pub use pcap::{CopyEvent, CopyEventKind, Packet, Packetizer};
pub use strategy::{CpuTimes, Fuse, Schedule, Usage};
pub use writer::{DumpFiles, DumpWriter};

use crate::{
    chain::{Admission, ConnectionObserver, Direction, NetworkFilter, NetworkFilterFactory},
    registry::BuildContext,
};

/// The filter's `type` in the config.
pub const KIND: &str = "tcpcopy";

/// Dump file size before rotating, unless `max_file_size` says.
const DEFAULT_MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;
/// Dump files kept, unless `max_files` says.
const DEFAULT_MAX_FILES: usize = 10;
/// Copy events queued for the writer before shards start dropping.
const QUEUE: usize = 4096;
/// How often the sampler re-checks the schedule, and how often it reads CPU and memory use.
const TICK: Duration = Duration::from_millis(100);
const USAGE_EVERY: u32 = 10;

#[derive(Deserialize)]
struct TcpCopyConfig {
    strategy: StrategyConfig,
    dump_dir: Option<PathBuf>,
    max_file_size: Option<u64>,
    max_files: Option<usize>,
}

#[derive(Deserialize)]
struct StrategyConfig {
    switch: String,
    interval: Value,
    duration: Value,
    cpu_max_rate: Value,
    mem_max_rate: Value,
}

/// Builds the filter from its config entry, recording problems in `findings`; starts its
/// sampler and writer threads.
pub fn build(
    filter: &FilterConfig,
    ctx: &BuildContext<'_>,
    findings: &mut Findings,
) -> Option<Arc<dyn NetworkFilterFactory>> {
    let path = join(&filter.path, "config");
    let config: TcpCopyConfig = findings.decode(&filter.config, &path, &[])?;
    let strategy_path = join(&path, "strategy");
    let strategy = &config.strategy;
    let enabled = match strategy.switch.as_str() {
        "ON" | "on" => Some(true),
        "OFF" | "off" => Some(false),
        other => {
            findings.error(
                join(&strategy_path, "switch"),
                format!("\"{other}\": expected ON or OFF"),
            );
            None
        }
    };
    let mut number = |key: &str, value: &Value, max: f64| {
        let parsed = loose_number(value).filter(|n| (0.0..=max).contains(n));
        if parsed.is_none() {
            findings.error(
                join(&strategy_path, key),
                format!("invalid {value}: expected a number from 0 to {max}"),
            );
        }
        parsed
    };
    let day = 86_400.0;
    let (interval, duration, cpu_max, mem_max) = (
        number("interval", &strategy.interval, day),
        number("duration", &strategy.duration, day),
        number("cpu_max_rate", &strategy.cpu_max_rate, 100.0),
        number("mem_max_rate", &strategy.mem_max_rate, 100.0),
    );
    let files = DumpFiles {
        dir: config.dump_dir.unwrap_or_else(default_dump_dir),
        max_file_size: positive(
            config.max_file_size,
            DEFAULT_MAX_FILE_SIZE,
            &join(&path, "max_file_size"),
            findings,
        ),
        max_files: positive(
            config.max_files,
            DEFAULT_MAX_FILES,
            &join(&path, "max_files"),
            findings,
        ),
    };
    let plan = DumpPlan {
        enabled: enabled?,
        schedule: Schedule {
            interval: Duration::from_secs_f64(interval?),
            duration: Duration::from_secs_f64(duration?),
        },
        fuse: Fuse {
            cpu_max: cpu_max?,
            mem_max: mem_max?,
        },
    };
    match TcpCopyFactory::start(plan, files, ctx.shards) {
        Ok(factory) => Some(Arc::new(factory)),
        Err(err) => {
            findings.error(path, format!("cannot start the dump threads: {err}"));
            None
        }
    }
}

/// A size setting (at `path`): `default` when absent; zero is an error.
fn positive<T: Default + PartialEq>(
    value: Option<T>,
    default: T,
    path: &str,
    findings: &mut Findings,
) -> T {
    match value {
        Some(value) if value == T::default() => {
            findings.error(path, "must be greater than zero");
            default
        }
        Some(value) => value,
        None => default,
    }
}

/// LayOtto's dump place: `logs/mosn` under the home directory.
fn default_dump_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("logs/mosn")
}

/// When to dump.
#[derive(Debug, Clone, Copy)]
pub struct DumpPlan {
    /// The `switch`.
    pub enabled: bool,
    /// The sampling windows.
    pub schedule: Schedule,
    /// The CPU and memory limits.
    pub fuse: Fuse,
}

/// Shared by the factory and every connection's observer.
struct Shared {
    dumping: AtomicBool,
    events: Sender<CopyEvent>,
    copied_bytes: ShardedCounter,
    dropped_bytes: ShardedCounter,
}

/// The filter: its threads and counters, shared by all shards.
pub struct TcpCopyFactory {
    shared: Arc<Shared>,
    sampler: Option<(JoinHandle<()>, Sender<()>)>,
    writer: Option<DumpWriter>,
}

impl TcpCopyFactory {
    /// Starts the writer (dumping to `files`) and the sampler (following `plan`).
    pub fn start(plan: DumpPlan, files: DumpFiles, shards: usize) -> std::io::Result<Self> {
        let (writer, events) = DumpWriter::start(files, QUEUE)?;
        let shared = Arc::new(Shared {
            dumping: AtomicBool::new(false),
            events,
            copied_bytes: ShardedCounter::new(shards),
            dropped_bytes: ShardedCounter::new(shards),
        });
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let sampler = std::thread::Builder::new()
            .name("tcpcopy-sampler".into())
            .spawn({
                let shared = shared.clone();
                move || {
                    let started = Instant::now();
                    let mut cpu = CpuTimes::default();
                    let mut allowed = true;
                    let mut tick = 0u32;
                    loop {
                        if plan.enabled && tick.is_multiple_of(USAGE_EVERY) {
                            // The first reading's CPU covers all time since boot; fine for a start.
                            allowed = match Usage::read(&mut cpu) {
                                Some(usage) => plan.fuse.allows(usage),
                                None => true,
                            };
                        }
                        tick = tick.wrapping_add(1);
                        let dump =
                            plan.enabled && allowed && plan.schedule.in_window(started.elapsed());
                        shared.dumping.store(dump, Ordering::Relaxed);
                        if let Err(RecvTimeoutError::Disconnected) = stopped.recv_timeout(TICK) {
                            return;
                        }
                    }
                }
            })?;
        Ok(Self {
            shared,
            sampler: Some((sampler, stop)),
            writer: Some(writer),
        })
    }
}

impl Drop for TcpCopyFactory {
    fn drop(&mut self) {
        if let Some((thread, stop)) = self.sampler.take() {
            drop(stop);
            let _ = thread.join();
        }
        // Writes what is queued and flushes.
        drop(self.writer.take());
    }
}

impl NetworkFilterFactory for TcpCopyFactory {
    fn for_shard(&self, shard: usize) -> Rc<dyn NetworkFilter> {
        Rc::new(TcpCopy {
            shard,
            next_connection: Cell::new(0),
            shared: self.shared.clone(),
        })
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let writer = self.writer.as_ref().map(|w| w.stats.clone());
        vec![
            ("tcpcopy_copied_bytes", self.shared.copied_bytes.sum()),
            ("tcpcopy_dropped_bytes", self.shared.dropped_bytes.sum()),
            (
                "tcpcopy_packets_written",
                writer.map_or(0, |w| w.packets.load(Ordering::Relaxed)),
            ),
        ]
    }
}

/// One shard's instance.
struct TcpCopy {
    shard: usize,
    next_connection: Cell<u64>,
    shared: Arc<Shared>,
}

impl NetworkFilter for TcpCopy {
    fn on_accept(&self, conn: &ConnectionInfo) -> Admission {
        let n = self.next_connection.get();
        self.next_connection.set(n + 1);
        Admission::Observe(Box::new(CopyObserver {
            connection: ((self.shard as u64) << 48) | n,
            shard: self.shard,
            client: conn.peer,
            server: conn.local,
            from_client: 0,
            to_client: 0,
            dumped: false,
            shared: self.shared.clone(),
        }))
    }
}

/// Copies one connection's bytes while dumping is on.
struct CopyObserver {
    connection: u64,
    shard: usize,
    client: SocketAddr,
    server: SocketAddr,
    from_client: u64,
    to_client: u64,
    dumped: bool,
    shared: Arc<Shared>,
}

impl CopyObserver {
    fn event(&self, kind: CopyEventKind) -> CopyEvent {
        CopyEvent {
            connection: self.connection,
            client: self.client,
            server: self.server,
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            kind,
        }
    }
}

impl ConnectionObserver for CopyObserver {
    fn on_data(&mut self, direction: Direction, data: &[u8]) {
        let position = match direction {
            Direction::FromDownstream => &mut self.from_client,
            Direction::FromUpstream => &mut self.to_client,
        };
        let offset = *position;
        *position += data.len() as u64;
        if !self.shared.dumping.load(Ordering::Relaxed) {
            return;
        }
        let event = self.event(CopyEventKind::Data {
            direction,
            offset,
            bytes: data.to_vec(),
        });
        let bytes = data.len() as u64;
        if self.shared.events.try_send(event).is_ok() {
            self.dumped = true;
            self.shared.copied_bytes.add(self.shard, bytes);
        } else {
            self.shared.dropped_bytes.add(self.shard, bytes);
        }
    }

    fn on_close(&mut self) {
        if self.dumped {
            let event = self.event(CopyEventKind::Closed {
                from_client: self.from_client,
                to_client: self.to_client,
            });
            let _ = self.shared.events.try_send(event);
        }
    }
}
