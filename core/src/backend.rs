//! The backend pool: threads of their own, each running a single-threaded tokio runtime, for
//! component calls that need tokio-based or blocking clients (etcd, redis). Shards submit futures
//! straight into a thread's runtime (`Handle::spawn`: its queue and one wake-up of that thread)
//! and await the answer through a oneshot, so a shard's executor never blocks. A client whose
//! connection task lives on one thread submits through a [`BackendHandle::pinned`] handle, so its
//! calls and its connection wake each other without crossing threads. Admission is bounded by an
//! atomic in-flight count: past it, submissions fail at once with [`BackendError::Busy`].
//!
//! One single-threaded runtime per thread rather than tokio's multi-thread scheduler: at light
//! load a call through the latter took a dispatcher task, a second worker woken to steal and a
//! futex/epoll round trip per hop (see benches/README.md, "The backend pool").

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc as std_mpsc,
    },
    time::{Duration, Instant},
};

use tokio::{runtime::Handle, sync::oneshot};

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why a submission got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// As many calls as the pool admits are already in flight.
    #[error("backend pool is busy ({0} calls in flight)")]
    Busy(usize),
    /// The pool has shut down (or the call panicked).
    #[error("backend pool has stopped")]
    Stopped,
}

/// Owns the pool's threads; [`BackendPool::handle`] gives shards a way to submit.
pub struct BackendPool {
    /// One per thread: tells it to stop, with the grace its running calls get.
    stops: Vec<oneshot::Sender<Duration>>,
    /// Each thread sends once when its runtime has shut down.
    stopped: std_mpsc::Receiver<()>,
    handle: BackendHandle,
}

/// A cheap, cloneable submitter, usable from any thread.
#[derive(Clone)]
pub struct BackendHandle {
    shared: Arc<Shared>,
    /// The thread every submission goes to, or `None` for each thread in turn.
    pinned: Option<usize>,
}

/// What every handle of a pool shares.
struct Shared {
    /// The runtime of each of the pool's threads.
    lanes: Vec<Handle>,
    /// The next lane an unpinned submission (or a new pinned handle) goes to.
    next_lane: AtomicUsize,
    in_flight: AtomicUsize,
    capacity: usize,
    /// Set once any thread has been told to stop: submissions fail from then on.
    closed: AtomicBool,
}

impl BackendPool {
    /// Starts `threads` threads, each with its own single-threaded runtime, admitting at most
    /// `capacity` calls in flight across them.
    pub fn start(threads: usize, capacity: usize) -> std::io::Result<Self> {
        let (stopped_tx, stopped) = std_mpsc::channel();
        let mut lanes = Vec::with_capacity(threads.max(1));
        let mut stops = Vec::with_capacity(threads.max(1));
        let mut runtimes = Vec::with_capacity(threads.max(1));
        for _ in 0..threads.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            lanes.push(runtime.handle().clone());
            runtimes.push(runtime);
        }
        let shared = Arc::new(Shared {
            lanes,
            next_lane: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            capacity,
            closed: AtomicBool::new(false),
        });
        for runtime in runtimes {
            let (stop, stop_rx) = oneshot::channel::<Duration>();
            let shared = shared.clone();
            let stopped_tx = stopped_tx.clone();
            runtime.spawn(keep_a_timer_sooner_than_calls());
            std::thread::Builder::new()
                .name("backend".into())
                .spawn(move || {
                    // Dropped senders (the pool dropped without `shutdown`): stop at once.
                    let grace = runtime.block_on(stop_rx).unwrap_or(Duration::ZERO);
                    shared.closed.store(true, Ordering::Release);
                    runtime.shutdown_timeout(grace);
                    let _ = stopped_tx.send(());
                })?;
            stops.push(stop);
        }
        Ok(Self {
            stops,
            stopped,
            handle: BackendHandle {
                shared,
                pinned: None,
            },
        })
    }

    /// A submitter for shards and components.
    pub fn handle(&self) -> BackendHandle {
        self.handle.clone()
    }

    /// Stops the pool, giving running calls up to `grace` to finish, and waits at most that long
    /// for its threads (not at all with a zero grace, so it never blocks an async caller for
    /// long). Later submissions fail with [`BackendError::Stopped`].
    pub fn shutdown(self, grace: Duration) {
        self.handle.shared.closed.store(true, Ordering::Release);
        let deadline = Instant::now() + grace;
        let threads = self.stops.len();
        for stop in self.stops {
            let _ = stop.send(grace);
        }
        for _ in 0..threads {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.stopped.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

impl BackendHandle {
    /// A handle whose calls and tasks all run on one of the pool's threads (each new pinned
    /// handle takes the next thread in turn): for a client whose connection task runs on the
    /// thread that connected it, so its calls reach that task without a cross-thread wake-up.
    pub fn pinned(&self) -> BackendHandle {
        BackendHandle {
            pinned: Some(self.shared.take_lane()),
            shared: self.shared.clone(),
        }
    }

    /// Runs `call` on the pool; the returned future resolves with its output. Fails at once with
    /// [`BackendError::Busy`] when the pool is full.
    pub fn submit<F, T>(&self, call: F) -> impl Future<Output = Result<T, BackendError>> + use<F, T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let admitted = self.admit().and_then(|slot| {
            let (reply, answer) = oneshot::channel();
            self.run(Box::pin(async move {
                let output = call.await;
                drop(slot); // free the place before the caller can see the answer
                let _ = reply.send(output);
            }))
            .map(|()| answer)
        });
        async move { admitted?.await.map_err(|_| BackendError::Stopped) }
    }

    /// Runs a long-lived background task on the pool (a watch, a keep-alive) outside the
    /// admission count; it ends when it returns or the pool stops.
    pub fn spawn<F>(&self, task: F) -> Result<(), BackendError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.run(Box::pin(task))
    }

    /// Calls currently in flight.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Hands `job` to its thread's runtime (which drops it if it has shut down).
    fn run(&self, job: Job) -> Result<(), BackendError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(BackendError::Stopped);
        }
        let lane = self.pinned.unwrap_or_else(|| self.shared.take_lane());
        drop(self.shared.lanes[lane].spawn(job));
        Ok(())
    }

    fn admit(&self) -> Result<Slot, BackendError> {
        let before = self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.shared.clone());
        if before >= self.shared.capacity {
            return Err(BackendError::Busy(before));
        }
        Ok(slot)
    }
}

impl Shared {
    /// The next lane in turn.
    fn take_lane(&self) -> usize {
        self.next_lane.fetch_add(1, Ordering::Relaxed) % self.lanes.len()
    }
}

/// The period of [`keep_a_timer_sooner_than_calls`]: shorter than any call's timeout that
/// should not cost a wake-up (components default to 5 s).
const TIMER_FLOOR: Duration = Duration::from_secs(1);

/// Keeps a timer pending that expires within [`TIMER_FLOOR`]. tokio wakes the runtime's thread
/// (an eventfd write and one more epoll round) whenever a new timer is the earliest; with this
/// one pending, a call's timeout (`tokio::time::timeout` around each call) is not, so it costs no
/// wake-up. One tick per thread and period otherwise.
async fn keep_a_timer_sooner_than_calls() {
    loop {
        tokio::time::sleep(TIMER_FLOOR).await;
    }
}

/// One admitted call; frees its place when dropped (also if the call is cancelled).
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, collections::HashSet, rc::Rc, time::Instant};

    use glommio::LocalExecutor;

    use super::*;

    #[test]
    fn shard_awaits_a_tokio_call_without_blocking() {
        let pool = BackendPool::start(1, 8).unwrap();
        let handle = pool.handle();
        let ticks = LocalExecutor::default().run(async move {
            let ticks = Rc::new(Cell::new(0));
            let ticker = {
                let ticks = ticks.clone();
                glommio::spawn_local(async move {
                    loop {
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                        ticks.set(ticks.get() + 1);
                    }
                })
            };
            // tokio::time needs a tokio runtime: this only works on the pool.
            let answer = handle
                .submit(async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    42
                })
                .await;
            assert_eq!(answer, Ok(42));
            drop(ticker);
            ticks.get()
        });
        assert!(ticks >= 5, "the shard was blocked: only {ticks} ticks");
        pool.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn full_pool_answers_busy_at_once_then_admits_again() {
        let pool = BackendPool::start(1, 2).unwrap();
        let handle = pool.handle();
        let (release, released) = tokio::sync::watch::channel(false);
        let blocked: Vec<_> = (0..2)
            .map(|_| {
                let mut released = released.clone();
                handle.submit(async move {
                    let _ = released.wait_for(|r| *r).await;
                })
            })
            .collect();
        let started = Instant::now();
        let refused = futures_lite::future::block_on(handle.submit(async {}));
        assert_eq!(refused, Err(BackendError::Busy(2)));
        assert!(started.elapsed() < Duration::from_millis(100));
        release.send_replace(true);
        for call in blocked {
            assert_eq!(futures_lite::future::block_on(call), Ok(()));
        }
        assert_eq!(
            futures_lite::future::block_on(handle.submit(async { 7 })),
            Ok(7)
        );
        assert_eq!(handle.in_flight(), 0);
        pool.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn spawned_tasks_run_outside_admission() {
        let pool = BackendPool::start(1, 1).unwrap();
        let handle = pool.handle();
        let (done, finished) = std::sync::mpsc::channel();
        handle
            .spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                done.send(()).unwrap();
            })
            .unwrap();
        assert_eq!(handle.in_flight(), 0);
        let answer = futures_lite::future::block_on(handle.submit(async { 5 }));
        assert_eq!(
            answer,
            Ok(5),
            "a running background task takes no call slot"
        );
        finished.recv_timeout(Duration::from_secs(2)).unwrap();
        pool.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn pinned_handle_keeps_to_one_thread_and_plain_submissions_take_turns() {
        let pool = BackendPool::start(2, 16).unwrap();
        let handle = pool.handle();
        let thread_of = |handle: &BackendHandle| {
            futures_lite::future::block_on(handle.submit(async { std::thread::current().id() }))
                .unwrap()
        };
        let pinned = handle.pinned();
        let pinned_threads: HashSet<_> = (0..6).map(|_| thread_of(&pinned)).collect();
        assert_eq!(
            pinned_threads.len(),
            1,
            "a pinned handle's calls ran on several threads"
        );
        let threads: HashSet<_> = (0..6).map(|_| thread_of(&handle)).collect();
        assert_eq!(
            threads.len(),
            2,
            "plain submissions should use every thread"
        );
        pool.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn submissions_after_shutdown_fail_cleanly() {
        let pool = BackendPool::start(1, 2).unwrap();
        let handle = pool.handle();
        pool.shutdown(Duration::from_secs(1));
        let answer = futures_lite::future::block_on(handle.submit(async { 1 }));
        assert_eq!(answer, Err(BackendError::Stopped));
        assert_eq!(handle.in_flight(), 0);
    }
}
