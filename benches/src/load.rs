//! The load generator: open loop at a fixed rate (each request's latency counted from the time it
//! was *meant* to be sent, so a stalled server cannot hide its stall — no coordinated omission)
//! or closed loop (a fixed number of requests in flight, as fast as the server answers).
//! Runs on one pinned thread (a tokio current-thread runtime with a `LocalSet`); requests borrow
//! a client from a pool (an L4 connection, or a gRPC channel handle) for their duration. In the
//! open loop a ticker thread releases each request at its intended time with sub-millisecond
//! precision, sleeping (not spinning) in between.

use std::{
    cell::RefCell,
    future::Future,
    rc::Rc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tokio::sync::mpsc;

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// Requests start at `rate` per second, whatever the answers do.
    Open {
        /// Requests per second.
        rate: f64,
    },
    /// `concurrency` requests are always in flight.
    Closed {
        /// Requests in flight.
        concurrency: usize,
    },
}

/// What one run measured (after the warm-up).
pub(crate) struct Measurement {
    /// Latencies in nanoseconds.
    pub latency: Histogram<u64>,
    /// Requests that failed.
    pub errors: u64,
    /// How long the measured part lasted.
    pub elapsed: Duration,
}

impl Measurement {
    /// Completed requests per second.
    pub(crate) fn throughput(&self) -> f64 {
        self.latency.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Timing of a run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Discarded first.
    pub warmup: Duration,
    /// Measured.
    pub duration: Duration,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("valid bounds")
}

/// Shared by the requests of one run.
struct Recorder {
    latency: Histogram<u64>,
    errors: u64,
}

impl Recorder {
    fn record(&mut self, result: Result<(), String>, latency: Duration, measured: bool) {
        if !measured {
            return;
        }
        match result {
            Ok(()) => {
                let _ = self.latency.record(latency.as_nanos() as u64);
            }
            Err(_) => self.errors += 1,
        }
    }
}

/// Runs `call` with `clients` under `mode` for `timing`; must run inside a `LocalSet`.
/// `progress` is called about once a second with the requests completed so far.
pub(crate) async fn run<C, F, Fut>(
    clients: Vec<C>,
    mode: Mode,
    timing: Timing,
    call: F,
    progress: impl Fn(u64),
) -> Measurement
where
    C: 'static,
    F: Fn(C) -> Fut + 'static,
    Fut: Future<Output = (C, Result<(), String>)> + 'static,
{
    let recorder = Rc::new(RefCell::new(Recorder {
        latency: new_histogram(),
        errors: 0,
    }));
    let call = Rc::new(call);
    let start = Instant::now();
    let measure_from = start + timing.warmup;
    let end = measure_from + timing.duration;
    let (idle_tx, idle_rx) = mpsc::unbounded_channel();
    let pool_size = clients.len();
    for client in clients {
        idle_tx.send(client).expect("receiver alive");
    }
    let idle_rx = Rc::new(tokio::sync::Mutex::new(idle_rx));
    let mut last_progress = Instant::now();
    match mode {
        Mode::Open { rate } => {
            // A ticker thread sleeps (nanosleep, ~60 µs slack, unlike tokio's 1 ms timer wheel)
            // until each intended time and hands it over; the runtime wakes on the channel.
            let (ticks_tx, mut ticks) = mpsc::unbounded_channel::<Instant>();
            let interval = Duration::from_secs_f64(1.0 / rate);
            let ticker = std::thread::spawn(move || {
                let mut next = start;
                while next < end {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    let now = Instant::now();
                    while next <= now && next < end {
                        if ticks_tx.send(next).is_err() {
                            return;
                        }
                        next += interval;
                    }
                }
            });
            let mut in_flight = Vec::new();
            while let Some(intended) = ticks.recv().await {
                let (call, request_recorder, idle_rx, idle_tx) = (
                    call.clone(),
                    recorder.clone(),
                    idle_rx.clone(),
                    idle_tx.clone(),
                );
                in_flight.push(tokio::task::spawn_local(async move {
                    let client = idle_rx.lock().await.recv().await.expect("pool alive");
                    let (client, result) = call(client).await;
                    let _ = idle_tx.send(client);
                    request_recorder.borrow_mut().record(
                        result,
                        intended.elapsed(),
                        intended >= measure_from,
                    );
                }));
                if in_flight.len() > 4096 {
                    in_flight.retain(|task| !task.is_finished());
                }
                if last_progress.elapsed() >= Duration::from_secs(1) {
                    progress(recorder.borrow().latency.len());
                    last_progress = Instant::now();
                }
            }
            let _ = ticker.join();
            for task in in_flight {
                let _ = task.await;
            }
        }
        Mode::Closed { concurrency } => {
            let workers: Vec<_> = (0..concurrency.min(pool_size))
                .map(|_| {
                    let (call, recorder, idle_rx, idle_tx) = (
                        call.clone(),
                        recorder.clone(),
                        idle_rx.clone(),
                        idle_tx.clone(),
                    );
                    tokio::task::spawn_local(async move {
                        while Instant::now() < end {
                            let client = idle_rx.lock().await.recv().await.expect("pool alive");
                            let sent = Instant::now();
                            let (client, result) = call(client).await;
                            let _ = idle_tx.send(client);
                            recorder.borrow_mut().record(
                                result,
                                sent.elapsed(),
                                sent >= measure_from,
                            );
                        }
                    })
                })
                .collect();
            while Instant::now() < end {
                tokio::time::sleep(Duration::from_secs(1).min(end - Instant::now())).await;
                progress(recorder.borrow().latency.len());
            }
            for worker in workers {
                let _ = worker.await;
            }
        }
    }
    let recorder = Rc::try_unwrap(recorder)
        .ok()
        .expect("every request finished")
        .into_inner();
    Measurement {
        latency: recorder.latency,
        errors: recorder.errors,
        elapsed: timing.duration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local<T>(future: impl Future<Output = T>) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, future)
    }

    #[test]
    fn open_loop_counts_a_stall_against_every_request_meant_to_go_during_it() {
        let timing = Timing {
            warmup: Duration::ZERO,
            duration: Duration::from_millis(500),
        };
        // One client; each call takes 1 ms except one that stalls 200 ms.
        let calls = Rc::new(RefCell::new(0u32));
        let measurement = local(run(
            vec![()],
            Mode::Open { rate: 200.0 },
            timing,
            move |client| {
                let calls = calls.clone();
                async move {
                    *calls.borrow_mut() += 1;
                    let pause = if *calls.borrow() == 10 { 200 } else { 1 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    (client, Ok(()))
                }
            },
            |_| {},
        ));
        assert_eq!(measurement.latency.len(), 100);
        // The ~40 requests meant for the stall waited for it: far more than one slow request.
        let slow = measurement.latency.count_between(50_000_000, u64::MAX);
        assert!(slow >= 30, "only {slow} requests saw the stall");
    }

    #[test]
    fn closed_loop_keeps_the_concurrency_and_discards_the_warmup() {
        let timing = Timing {
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(300),
        };
        let measurement = local(run(
            vec![(), (), (), ()],
            Mode::Closed { concurrency: 4 },
            timing,
            |client| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                (client, Ok(()))
            },
            |_| {},
        ));
        // 4 in flight, 10 ms each, 300 ms measured: about 120.
        let done = measurement.latency.len();
        assert!((80..=130).contains(&done), "{done}");
        assert_eq!(measurement.errors, 0);
    }
}
