//! The load generator: open loop at a fixed rate (each request's latency counted from the time it
//! was *meant* to be sent, so a stalled server cannot hide its stall — no coordinated omission)
//! or closed loop (a fixed number of requests in flight, as fast as the server answers).
//! Runs on one pinned thread (a tokio current-thread runtime with a `LocalSet`); requests borrow
//! a client from a pool (an L4 connection, or a gRPC channel handle) for their duration. In the
//! open loop a ticker thread releases each request at its intended time with sub-millisecond
//! precision, sleeping (not spinning) in between, as the sans-IO [`Pacer`] schedules them.
//!
//! Never hangs: the open loop holds at most `max_in_flight` requests (a request due while that
//! many are outstanding is not sent and is counted as missed), and every run ends by its hard
//! deadline (`Timing::grace` after the measured window), reporting what it has; requests still
//! unanswered then are abandoned and counted as missed too.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// Requests start at `rate` per second, whatever the answers do, with at most
    /// `max_in_flight` outstanding (waiting for a client of the pool or for their answer).
    Open {
        /// Requests per second.
        rate: f64,
        /// Requests outstanding at most; one due beyond it is missed.
        max_in_flight: usize,
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
    /// Requests of the measured window never answered: due while the in-flight cap was reached
    /// (open loop), or still unanswered at the hard deadline.
    pub missed: u64,
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
    /// How long after the measured window answers are still waited for; then the run ends.
    pub grace: Duration,
}

impl Timing {
    /// When a run started at `start` stops sending, and when it ends whatever is outstanding.
    fn end_and_deadline(&self, start: Instant) -> (Instant, Instant) {
        let end = start + self.warmup + self.duration;
        (end, end + self.grace)
    }
}

/// The open loop's schedule, sans-IO (the caller passes the time): a request is due every
/// `1 / rate` from `start` until `end`; each due one is offered to an admission function, and
/// those it refuses (the in-flight cap is reached) are counted as missed when they fall in the
/// measured window.
#[derive(Debug)]
pub(crate) struct Pacer {
    next: Instant,
    interval: Duration,
    measure_from: Instant,
    end: Instant,
    missed: u64,
}

impl Pacer {
    /// `rate` requests a second from `start` until `end`, measured from `measure_from`.
    pub(crate) fn new(start: Instant, rate: f64, measure_from: Instant, end: Instant) -> Self {
        Self {
            next: start,
            interval: Duration::from_secs_f64(1.0 / rate),
            measure_from,
            end,
            missed: 0,
        }
    }

    /// When the next request is due, or `None` once the schedule is over.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        (self.next < self.end).then_some(self.next)
    }

    /// Offers every request due by `now`, oldest first, to `admit` (given its intended time,
    /// it sends the request and returns `true`, or returns `false` when the cap is reached).
    pub(crate) fn release(&mut self, now: Instant, mut admit: impl FnMut(Instant) -> bool) {
        while self.next <= now && self.next < self.end {
            if !admit(self.next) && self.next >= self.measure_from {
                self.missed += 1;
            }
            self.next += self.interval;
        }
    }

    /// Requests of the measured window refused so far.
    pub(crate) fn missed(&self) -> u64 {
        self.missed
    }
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

/// Runs `call` with `clients` under `mode` for `timing`; must run inside a `LocalSet`, whose
/// tasks of abandoned requests end when it is dropped. `progress` is called about once a second
/// with the requests completed so far. Returns by the hard deadline.
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
    let (end, deadline) = timing.end_and_deadline(start);
    let (idle_tx, idle_rx) = mpsc::unbounded_channel();
    let pool_size = clients.len();
    for client in clients {
        idle_tx.send(client).expect("receiver alive");
    }
    let idle_rx = Rc::new(tokio::sync::Mutex::new(idle_rx));
    let missed = match mode {
        Mode::Open {
            rate,
            max_in_flight,
        } => {
            // A ticker thread sleeps (nanosleep, ~60 µs slack, unlike tokio's 1 ms timer wheel)
            // until each intended time and hands it over with one of the `max_in_flight`
            // permits; the runtime wakes on the channel, which therefore holds no more than that.
            let permits = Arc::new(Semaphore::new(max_in_flight));
            let (ticks_tx, mut ticks) =
                mpsc::unbounded_channel::<(Instant, OwnedSemaphorePermit)>();
            let ticker_permits = permits.clone();
            let ticker = std::thread::spawn(move || {
                let mut pacer = Pacer::new(start, rate, measure_from, end);
                while let Some(due) = pacer.next_due() {
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let mut open = true;
                    pacer.release(Instant::now(), |intended| {
                        match ticker_permits.clone().try_acquire_owned() {
                            Ok(permit) => {
                                open &= ticks_tx.send((intended, permit)).is_ok();
                                true
                            }
                            Err(_) => false,
                        }
                    });
                    if !open {
                        break;
                    }
                }
                pacer.missed()
            });
            let mut last_progress = Instant::now();
            let release = async {
                while let Some((intended, permit)) = ticks.recv().await {
                    let (call, request_recorder, idle_rx, idle_tx) = (
                        call.clone(),
                        recorder.clone(),
                        idle_rx.clone(),
                        idle_tx.clone(),
                    );
                    drop(tokio::task::spawn_local(async move {
                        let client = idle_rx.lock().await.recv().await.expect("pool alive");
                        let (client, result) = call(client).await;
                        let _ = idle_tx.send(client);
                        request_recorder.borrow_mut().record(
                            result,
                            intended.elapsed(),
                            intended >= measure_from,
                        );
                        drop(permit);
                    }));
                    if last_progress.elapsed() >= Duration::from_secs(1) {
                        progress(recorder.borrow().latency.len());
                        last_progress = Instant::now();
                    }
                }
                // The ticker is done: wait for the answers of what it released.
                let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
                let _ = permits.acquire_many(all).await;
            };
            let _ = tokio::time::timeout_at(deadline.into(), release).await;
            // Ends at `end` (it only sleeps until due times before it).
            let refused = ticker.join().unwrap_or(0);
            refused + (max_in_flight - permits.available_permits()) as u64
        }
        Mode::Closed { concurrency } => {
            let in_flight = Rc::new(Cell::new(0u64));
            let workers: Vec<_> = (0..concurrency.min(pool_size))
                .map(|_| {
                    let (call, recorder, idle_rx, idle_tx, in_flight) = (
                        call.clone(),
                        recorder.clone(),
                        idle_rx.clone(),
                        idle_tx.clone(),
                        in_flight.clone(),
                    );
                    tokio::task::spawn_local(async move {
                        while Instant::now() < end {
                            let client = idle_rx.lock().await.recv().await.expect("pool alive");
                            let sent = Instant::now();
                            in_flight.set(in_flight.get() + 1);
                            let (client, result) = call(client).await;
                            in_flight.set(in_flight.get() - 1);
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
            let finish = async {
                for worker in workers {
                    let _ = worker.await;
                }
            };
            let _ = tokio::time::timeout_at(deadline.into(), finish).await;
            in_flight.get()
        }
    };
    // Abandoned requests may still hold the recorder: take its figures out.
    let mut recorder = recorder.borrow_mut();
    Measurement {
        latency: std::mem::replace(&mut recorder.latency, new_histogram()),
        errors: recorder.errors,
        missed,
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A pacer of 1000/s over one second from `t0`, all of it measured.
    fn pacer(t0: Instant) -> Pacer {
        Pacer::new(t0, 1000.0, t0, t0 + Duration::from_secs(1))
    }

    #[test]
    fn pacer_releases_what_is_due_at_the_intended_times() {
        let t0 = Instant::now();
        let mut pacer = pacer(t0);
        let mut sent = Vec::new();
        pacer.release(t0 + Duration::from_micros(2500), |at| {
            sent.push(at);
            true
        });
        assert_eq!(sent, [t0, t0 + ms(1), t0 + ms(2)]);
        assert_eq!(pacer.next_due(), Some(t0 + ms(3)));
        assert_eq!(pacer.missed(), 0);
    }

    #[test]
    fn pacer_counts_requests_due_beyond_the_cap_as_missed_and_stays_bounded() {
        // The target answers nothing: 10 go out, and the other 990 due in the second are
        // missed, however late the ticker wakes up.
        let t0 = Instant::now();
        let mut pacer = pacer(t0);
        let mut in_flight = 0;
        let mut admit = |_| {
            if in_flight < 10 {
                in_flight += 1;
                true
            } else {
                false
            }
        };
        pacer.release(t0 + ms(500), &mut admit);
        pacer.release(t0 + Duration::from_secs(5), &mut admit);
        assert_eq!(in_flight, 10);
        assert_eq!(pacer.missed(), 990);
        assert_eq!(pacer.next_due(), None, "nothing is due after the end");
    }

    #[test]
    fn pacer_resumes_sending_once_answers_free_the_cap() {
        let t0 = Instant::now();
        let mut pacer = pacer(t0);
        let mut in_flight = 0;
        pacer.release(t0 + ms(4), |_| {
            in_flight += 1;
            in_flight <= 2
        });
        assert_eq!(pacer.missed(), 3);
        // Both answered: the next two due go out again.
        let mut sent = 0;
        pacer.release(t0 + ms(6), |_| {
            sent += 1;
            true
        });
        assert_eq!((sent, pacer.missed()), (2, 3));
    }

    #[test]
    fn pacer_does_not_count_warmup_requests_as_missed() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, 1000.0, t0 + ms(10), t0 + ms(20));
        pacer.release(t0 + ms(30), |_| false);
        assert_eq!(pacer.missed(), 10);
    }

    #[test]
    fn open_loop_counts_a_stall_against_every_request_meant_to_go_during_it() {
        let timing = Timing {
            warmup: Duration::ZERO,
            duration: ms(500),
            grace: Duration::from_secs(2),
        };
        // One client; each call takes 1 ms except one that stalls 200 ms.
        let calls = Rc::new(RefCell::new(0u32));
        let measurement = local(run(
            vec![()],
            Mode::Open {
                rate: 200.0,
                max_in_flight: 1000,
            },
            timing,
            move |client| {
                let calls = calls.clone();
                async move {
                    *calls.borrow_mut() += 1;
                    let pause = if *calls.borrow() == 10 { 200 } else { 1 };
                    tokio::time::sleep(ms(pause)).await;
                    (client, Ok(()))
                }
            },
            |_| {},
        ));
        assert_eq!(measurement.latency.len(), 100);
        assert_eq!(measurement.missed, 0);
        // The ~40 requests meant for the stall waited for it: far more than one slow request.
        let slow = measurement.latency.count_between(50_000_000, u64::MAX);
        assert!(slow >= 30, "only {slow} requests saw the stall");
    }

    #[test]
    fn open_loop_against_a_target_that_never_answers_ends_by_its_deadline() {
        let timing = Timing {
            warmup: Duration::ZERO,
            duration: ms(300),
            grace: ms(200),
        };
        let started = Instant::now();
        let measurement = local(run(
            vec![(); 4],
            Mode::Open {
                rate: 10_000.0,
                max_in_flight: 16,
            },
            timing,
            |client| async move {
                std::future::pending::<()>().await;
                (client, Ok(()))
            },
            |_| {},
        ));
        let took = started.elapsed();
        assert!(took < ms(1500), "took {took:?}");
        assert_eq!(measurement.latency.len(), 0);
        // All 3000 due were missed: 16 sent and abandoned, the rest never sent.
        assert!(
            (2950..=3000).contains(&measurement.missed),
            "{}",
            measurement.missed
        );
    }

    #[test]
    fn closed_loop_keeps_the_concurrency_and_discards_the_warmup() {
        let timing = Timing {
            warmup: ms(100),
            duration: ms(300),
            grace: Duration::from_secs(2),
        };
        let (calls, in_flight, most) = (
            Rc::new(Cell::new(0u64)),
            Rc::new(Cell::new(0usize)),
            Rc::new(Cell::new(0usize)),
        );
        let (counted, concurrency) = (calls.clone(), most.clone());
        let measurement = local(run(
            vec![(); 6],
            Mode::Closed { concurrency: 4 },
            timing,
            move |client| {
                let (calls, in_flight, most) = (calls.clone(), in_flight.clone(), most.clone());
                async move {
                    calls.set(calls.get() + 1);
                    in_flight.set(in_flight.get() + 1);
                    most.set(most.get().max(in_flight.get()));
                    tokio::time::sleep(ms(10)).await;
                    in_flight.set(in_flight.get() - 1);
                    (client, Ok(()))
                }
            },
            |_| {},
        ));
        assert_eq!(concurrency.get(), 4);
        // A quarter of the time was warm-up: its calls are not in the figures.
        let (done, all) = (measurement.latency.len(), counted.get());
        assert!(done > 0 && done < all - 4, "{done} of {all} recorded");
        assert_eq!((measurement.errors, measurement.missed), (0, 0));
    }

    #[test]
    fn closed_loop_with_a_hung_call_ends_by_its_deadline() {
        let timing = Timing {
            warmup: Duration::ZERO,
            duration: ms(200),
            grace: ms(200),
        };
        let calls = Rc::new(Cell::new(0u32));
        let started = Instant::now();
        let measurement = local(run(
            vec![(), ()],
            Mode::Closed { concurrency: 2 },
            timing,
            move |client| {
                let calls = calls.clone();
                async move {
                    calls.set(calls.get() + 1);
                    if calls.get() == 5 {
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(ms(1)).await;
                    (client, Ok(()))
                }
            },
            |_| {},
        ));
        assert!(started.elapsed() < ms(1500), "{:?}", started.elapsed());
        assert_eq!(measurement.missed, 1, "the hung call");
        let done = measurement.latency.len();
        assert!(done >= 20, "the other worker went on: {done}");
    }
}
