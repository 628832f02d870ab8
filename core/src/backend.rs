//! The backend pool: one tokio runtime on its own threads for component calls that need tokio-based
//! or blocking clients (etcd, redis). Shards submit futures over a lock-free channel and await the
//! answer through a oneshot, so a shard's executor never blocks. Admission is bounded by an atomic
//! in-flight count: past it, submissions fail at once with [`BackendError::Busy`].

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

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

/// Owns the pool's runtime; [`BackendPool::handle`] gives shards a way to submit.
pub struct BackendPool {
    runtime: tokio::runtime::Runtime,
    handle: BackendHandle,
}

/// A cheap, cloneable submitter, usable from any thread.
#[derive(Clone)]
pub struct BackendHandle {
    jobs: mpsc::UnboundedSender<Job>,
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
}

impl BackendPool {
    /// Starts `threads` worker threads admitting at most `capacity` calls in flight.
    pub fn start(threads: usize, capacity: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("backend")
            .enable_all()
            .build()?;
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        runtime.spawn(async move {
            while let Some(job) = queue.recv().await {
                tokio::spawn(job);
            }
        });
        Ok(Self {
            runtime,
            handle: BackendHandle {
                jobs,
                in_flight: Arc::new(AtomicUsize::new(0)),
                capacity,
            },
        })
    }

    /// A submitter for shards and components.
    pub fn handle(&self) -> BackendHandle {
        self.handle.clone()
    }

    /// Stops the pool, giving running calls up to `grace` to finish. Later submissions fail with
    /// [`BackendError::Stopped`].
    pub fn shutdown(self, grace: Duration) {
        drop(self.handle);
        self.runtime.shutdown_timeout(grace);
    }
}

impl BackendHandle {
    /// Runs `call` on the pool; the returned future resolves with its output. Fails at once with
    /// [`BackendError::Busy`] when the pool is full.
    pub fn submit<F, T>(&self, call: F) -> impl Future<Output = Result<T, BackendError>> + use<F, T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let admitted = self.admit().and_then(|slot| {
            let (reply, answer) = oneshot::channel();
            let job = Box::pin(async move {
                let output = call.await;
                drop(slot); // free the place before the caller can see the answer
                let _ = reply.send(output);
            });
            self.jobs
                .send(job)
                .map(|()| answer)
                .map_err(|_| BackendError::Stopped)
        });
        async move { admitted?.await.map_err(|_| BackendError::Stopped) }
    }

    /// Runs a long-lived background task on the pool (a watch, a keep-alive) outside the
    /// admission count; it ends when it returns or the pool stops.
    pub fn spawn<F>(&self, task: F) -> Result<(), BackendError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.jobs
            .send(Box::pin(task))
            .map_err(|_| BackendError::Stopped)
    }

    /// Calls currently in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn admit(&self) -> Result<Slot, BackendError> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.in_flight.clone());
        if before >= self.capacity {
            return Err(BackendError::Busy(before));
        }
        Ok(slot)
    }
}

/// One admitted call; frees its place when dropped (also if the call is cancelled).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, rc::Rc, time::Instant};

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
    fn submissions_after_shutdown_fail_cleanly() {
        let pool = BackendPool::start(1, 2).unwrap();
        let handle = pool.handle();
        pool.shutdown(Duration::from_secs(1));
        let answer = futures_lite::future::block_on(handle.submit(async { 1 }));
        assert_eq!(answer, Err(BackendError::Stopped));
        assert_eq!(handle.in_flight(), 0);
    }
}
