//! Shard-per-core executors. Each shard is one OS thread pinned to one core (core_affinity) running
//! one glommio executor; it owns its SO_REUSEPORT sockets and its listeners' handlers, accepts and
//! serves connections without locks or cross-thread hops, closes at once the connections of a
//! listener past its descriptor ceiling (see [`crate::caps`]), backs off when accepting fails
//! (out of descriptors) with one warning a second for the process, and on shutdown stops
//! accepting at once and drains open connections up to the drain timeout.

use std::{
    cell::Cell,
    os::fd::{AsRawFd, FromRawFd, IntoRawFd},
    rc::Rc,
    sync::{Arc, mpsc},
    thread::JoinHandle,
    time::Duration,
};

use core_affinity::CoreId;
use glommio::{LocalExecutorBuilder, Placement, net::TcpListener, sync::Gate};
use tracing::{debug, info, warn};

use crate::{
    CoreError,
    caps::{AcceptWarnings, DescriptorCeiling},
    handler::{ConnectionHandler, ConnectionInfo, HandlerFactory},
    listener::{AddressGuard, BoundListener, UNIX_STAND_IN},
    shutdown::ShutdownSignal,
    stats::ShardedCounter,
};

/// Memory each executor registers with io_uring for its DMA file buffers: glommio's floor,
/// 64 KiB. No shard reads files through glommio, and sockets are read with `recv` into the
/// caller's buffer (only `peek` borrows one of these), so the pool sits unused; glommio's default
/// (10 MiB) exceeds an unprivileged 8 MiB memlock limit, and registering pins (makes resident)
/// all of it: the 1 MiB held before was a fifth of the process at rest with two shards.
const IO_MEMORY: usize = 64 << 10;

/// Back-off after a failed accept (e.g. out of file descriptors) before trying again; doubled
/// after each failure in a row up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_RETRY: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The accept-failure warnings of the process: one a second at most.
static ACCEPT_WARNINGS: AcceptWarnings = AcceptWarnings::new();

/// A listener ready to be served: its bound sockets and the factory of its handlers.
pub struct ServedListener {
    /// The sockets, one per shard.
    pub bound: BoundListener,
    /// Builds each shard's handler.
    pub handler: Arc<dyn HandlerFactory>,
    /// Where its shards count connections (readable while serving, e.g. by metrics).
    pub stats: Arc<ListenerStats>,
    /// Where its connections stop: the proxy's keep the process's descriptor reserve free.
    pub ceiling: DescriptorCeiling,
}

/// A listener's connection counts, per shard.
#[derive(Debug)]
pub struct ListenerStats {
    /// Connections accepted.
    pub accepted: ShardedCounter,
    /// Connections that have ended.
    pub closed: ShardedCounter,
    /// Connections closed at once because the process held nearly all its descriptors.
    pub refused_over_fd_reserve: ShardedCounter,
}

impl ListenerStats {
    /// Zero counts for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self {
            accepted: ShardedCounter::new(shards),
            closed: ShardedCounter::new(shards),
            refused_over_fd_reserve: ShardedCounter::new(shards),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        // Read `closed` first: a connection closing between the reads is then still counted.
        let closed = self.closed.sum();
        self.accepted.sum().saturating_sub(closed)
    }
}

/// Which core each shard is pinned to.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    cores: Vec<Option<CoreId>>,
}

impl ShardPlan {
    /// One shard per allowed core, or `requested` shards spread over the allowed cores in turn.
    /// The allowed cores honour the process's CPU mask (taskset, cgroups).
    pub fn new(requested: Option<usize>) -> Result<Self, CoreError> {
        let allowed = core_affinity::get_core_ids().unwrap_or_default();
        let count = match requested {
            Some(0) => return Err(CoreError::NoCores("--shards must be at least 1".into())),
            Some(n) => n,
            None if allowed.is_empty() => {
                return Err(CoreError::NoCores(
                    "the allowed CPUs could not be read; pass --shards".into(),
                ));
            }
            None => allowed.len(),
        };
        let cores = (0..count)
            .map(|i| (!allowed.is_empty()).then(|| allowed[i % allowed.len()]))
            .collect();
        Ok(Self { cores })
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.cores.len()
    }

    /// Always false: a plan has at least one shard.
    pub fn is_empty(&self) -> bool {
        self.cores.is_empty()
    }

    /// Starts every shard serving `listeners`; returns once all executors run.
    pub fn start(
        &self,
        listeners: Vec<ServedListener>,
        drain_timeout: Duration,
        shutdown: ShutdownSignal,
    ) -> Result<RunningShards, CoreError> {
        let mut per_shard: Vec<Vec<ShardListener>> = (0..self.len()).map(|_| Vec::new()).collect();
        let mut totals = Vec::with_capacity(listeners.len());
        for listener in listeners {
            let name: Arc<str> = listener.bound.name.as_str().into();
            let unix = listener.bound.unix_path.is_some();
            for (shard, socket) in listener.bound.sockets.into_iter().enumerate() {
                per_shard[shard].push(ShardListener {
                    name: name.clone(),
                    unix,
                    socket,
                    factory: listener.handler.clone(),
                    stats: listener.stats.clone(),
                    ceiling: listener.ceiling,
                });
            }
            totals.push(ListenerTotals {
                name: listener.bound.name,
                handler: listener.handler,
                stats: listener.stats,
                _guard: listener.bound.guard,
            });
        }

        let (ready_tx, ready_rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(self.len());
        for (shard, (core, listeners)) in self.cores.iter().copied().zip(per_shard).enumerate() {
            let ready = ready_tx.clone();
            let shutdown = shutdown.clone();
            let thread = std::thread::Builder::new()
                .name(format!("shard-{shard}"))
                .spawn(move || run_shard(shard, core, listeners, drain_timeout, shutdown, ready))
                .map_err(|e| CoreError::ShardStart {
                    shard,
                    reason: e.to_string(),
                })?;
            threads.push(thread);
        }
        drop(ready_tx);
        for _ in 0..threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(CoreError::ShardPanicked(usize::MAX)),
            }
        }
        Ok(RunningShards { threads, totals })
    }
}

/// Shards that are serving; [`RunningShards::join`] waits for them to drain and stop.
pub struct RunningShards {
    threads: Vec<JoinHandle<usize>>,
    totals: Vec<ListenerTotals>,
}

/// Where a listener's totals are read from at the end.
struct ListenerTotals {
    name: String,
    handler: Arc<dyn HandlerFactory>,
    stats: Arc<ListenerStats>,
    /// Holds the address until the shards have stopped.
    _guard: AddressGuard,
}

/// What the shards did, for the exit summary.
#[derive(Debug)]
pub struct ServeReport {
    /// Per listener: name, connections accepted by each shard, and the handler's counters.
    pub listeners: Vec<ListenerReport>,
    /// Connections still open when the drain timeout ran out (closed then).
    pub connections_cut: usize,
}

impl ServeReport {
    /// The totals of listener `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerReport> {
        self.listeners.iter().find(|listener| listener.name == name)
    }
}

/// One listener's totals.
#[derive(Debug, Clone)]
pub struct ListenerReport {
    /// Listener name.
    pub name: String,
    /// Connections accepted, by shard index.
    pub accepted_per_shard: Vec<u64>,
    /// The handler's own counters.
    pub counters: Vec<(&'static str, u64)>,
}

impl ListenerReport {
    /// The handler's counter `name`, if it has one.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find_map(|(counter, value)| (*counter == name).then_some(*value))
    }
}

impl RunningShards {
    /// Waits for every shard to finish draining.
    pub fn join(self) -> Result<ServeReport, CoreError> {
        let mut connections_cut = 0;
        for (shard, thread) in self.threads.into_iter().enumerate() {
            connections_cut += thread.join().map_err(|_| CoreError::ShardPanicked(shard))?;
        }
        let listeners = self
            .totals
            .into_iter()
            .map(|totals| ListenerReport {
                accepted_per_shard: totals.stats.accepted.per_shard(),
                counters: totals.handler.counters(),
                name: totals.name,
            })
            .collect();
        Ok(ServeReport {
            listeners,
            connections_cut,
        })
    }
}

/// One listener's part that a shard owns.
struct ShardListener {
    name: Arc<str>,
    /// A Unix domain socket (its connections have no IP addresses).
    unix: bool,
    socket: socket2::Socket,
    factory: Arc<dyn HandlerFactory>,
    stats: Arc<ListenerStats>,
    ceiling: DescriptorCeiling,
}

/// The body of a shard thread: pin, build the executor, serve until shutdown, drain. Returns the
/// number of connections cut by the drain timeout.
fn run_shard(
    shard: usize,
    core: Option<CoreId>,
    listeners: Vec<ShardListener>,
    drain_timeout: Duration,
    shutdown: ShutdownSignal,
    ready: mpsc::Sender<Result<(), CoreError>>,
) -> usize {
    if let Some(core) = core
        && !core_affinity::set_for_current(core)
    {
        warn!(shard, core = core.id, "could not pin shard to its core");
    }
    let executor = match LocalExecutorBuilder::new(Placement::Unbound)
        .name(&format!("shard-{shard}"))
        .io_memory(IO_MEMORY)
        .make()
    {
        Ok(executor) => executor,
        Err(err) => {
            let _ = ready.send(Err(CoreError::ShardStart {
                shard,
                reason: err.to_string(),
            }));
            return 0;
        }
    };
    executor.run(async move {
        let gate = Rc::new(Gate::new());
        let open = Rc::new(Cell::new(0usize));
        let accept_loops: Vec<_> = listeners
            .into_iter()
            .map(|listener| {
                let closer = listener.socket.try_clone().ok();
                let socket = adopt_listening_socket(listener.socket);
                glommio::spawn_local(accept_loop(
                    AcceptContext {
                        shard,
                        name: listener.name.as_ref().into(),
                        unix: listener.unix,
                        handler: listener.factory.for_shard(shard),
                        stats: listener.stats,
                        ceiling: listener.ceiling,
                        gate: gate.clone(),
                        open: open.clone(),
                        closer,
                    },
                    socket,
                    shutdown.clone(),
                ))
            })
            .collect();
        let _ = ready.send(Ok(()));
        for accept_loop in accept_loops {
            accept_loop.await;
        }
        debug!(shard, open = open.get(), "stopped accepting; draining");
        let drained = glommio::timer::timeout(drain_timeout, gate.close()).await;
        if drained.is_err() && open.get() > 0 {
            warn!(
                shard,
                open = open.get(),
                "drain timeout reached; closing remaining connections"
            );
        }
        open.get()
    })
}

/// What an accept loop needs besides its socket.
struct AcceptContext {
    shard: usize,
    name: Rc<str>,
    unix: bool,
    handler: Rc<dyn ConnectionHandler>,
    stats: Arc<ListenerStats>,
    ceiling: DescriptorCeiling,
    gate: Rc<Gate>,
    open: Rc<Cell<usize>>,
    /// A second handle to the listening socket, to stop it at once (see [`accept_loop`]).
    closer: Option<socket2::Socket>,
}

/// Hands a bound, listening socket to glommio, which accepts on it with io_uring. glommio takes
/// a listener only as a raw fd, hence one of the workspace's two `unsafe` uses. A Unix domain socket is
/// adopted the same way: glommio's `TcpListener` and `TcpStream` only accept, read and write
/// the fd (io_uring accept/recv/send, the same for any stream socket); its TCP-only calls
/// (`peer_addr`, `set_nodelay`) fail on one and are not relied on.
#[expect(
    unsafe_code,
    reason = "glommio's TcpListener can only be built from a raw fd"
)]
fn adopt_listening_socket(socket: socket2::Socket) -> TcpListener {
    // SAFETY: `into_raw_fd` hands over sole ownership of a bound, listening stream socket;
    // the glommio listener takes that ownership and closes it on drop.
    unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) }
}

/// Accepts until shutdown, serving each connection inside the shard's drain gate. On shutdown
/// the socket is shut down before it is dropped: an io_uring request still in flight on it
/// would keep a merely closed socket listening for a while, but a shut-down one refuses new
/// connections at once.
async fn accept_loop(ctx: AcceptContext, listener: TcpListener, mut shutdown: ShutdownSignal) {
    let mut backoff = ACCEPT_RETRY;
    loop {
        let next = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        let stream = match next {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(err)) => {
                if let Some(failures) = ACCEPT_WARNINGS.failed() {
                    warn!(
                        listener = %ctx.name,
                        shard = ctx.shard,
                        error = %err,
                        failures,
                        "accept failed; backing off (failures of every listener since the last warning, one warning a second)"
                    );
                }
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        backoff = ACCEPT_RETRY;
        if !ctx.ceiling.admits(stream.as_raw_fd()) {
            // Nearly out of descriptors: the rest are kept for the API and admin listeners.
            ctx.stats.refused_over_fd_reserve.add(ctx.shard, 1);
            debug!(listener = %ctx.name, shard = ctx.shard, "descriptor reserve reached; connection closed");
            continue;
        }
        let (peer, local) = if ctx.unix {
            (UNIX_STAND_IN, UNIX_STAND_IN)
        } else {
            let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
                continue; // reset before we looked at it
            };
            (peer, local)
        };
        ctx.stats.accepted.add(ctx.shard, 1);
        let conn = ConnectionInfo {
            listener: ctx.name.clone(),
            shard: ctx.shard,
            peer,
            local,
            shutdown: shutdown.clone(),
        };
        let open = OpenGuard::new(ctx.open.clone());
        let serve = ctx.handler.clone().serve(stream, conn);
        let (stats, shard) = (ctx.stats.clone(), ctx.shard);
        match ctx.gate.spawn(async move {
            let _open = open;
            serve.await;
            stats.closed.add(shard, 1);
        }) {
            Ok(task) => task.detach(),
            Err(_) => break, // the gate closed: we are draining
        };
        if let DescriptorCeiling::Below(_) = ctx.ceiling {
            // Let the connection open what it needs (the proxy's upstream socket) before the
            // next accept, so the next descriptor number counts it.
            futures_lite::future::yield_now().await;
        }
    }
    if let Some(closer) = ctx.closer {
        // Leaves the listening state (and the port's SO_REUSEPORT group) now.
        let _ = closer.shutdown(std::net::Shutdown::Read);
    }
    drop(listener);
    info!(listener = %ctx.name, shard = ctx.shard, "stopped accepting");
}

/// Counts a connection as open for as long as it lives (also when cut by the drain timeout).
struct OpenGuard(Rc<Cell<usize>>);

impl OpenGuard {
    fn new(open: Rc<Cell<usize>>) -> Self {
        open.set(open.get() + 1);
        Self(open)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}
