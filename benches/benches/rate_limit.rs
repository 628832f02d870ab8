//! Micro-benchmark of the process-wide rate limiter: nanoseconds per admission decision on one
//! shard, and on two shards (threads) drawing on one budget at once, for a budget big enough that
//! calls are admitted (leases of many tokens) and for one that is spent (every call refused).
//! Run with `cargo bench -p layotto-bench --bench rate_limit`.
#![allow(clippy::print_stdout, reason = "the benchmark's report is its output")]

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use layotto_filters::rate_limit::{Clock, MonotonicClock, ShardBucket, WindowBudget};

/// Decisions per measurement under `cargo bench`; `cargo test` (no `--bench`) only smoke-runs.
fn calls() -> u32 {
    if std::env::args().any(|arg| arg == "--bench") {
        5_000_000
    } else {
        1_000
    }
}

/// Nanoseconds per call of `decide` on each of `shards` threads running at once.
fn per_call<S: Send>(
    shards: usize,
    state: impl Fn() -> S,
    decide: impl Fn(&S) -> bool + Sync,
) -> f64 {
    let calls = calls();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..shards {
            let state = state();
            let decide = &decide;
            scope.spawn(move || {
                let admitted = (0..calls).filter(|_| decide(&state)).count();
                black_box(admitted)
            });
        }
    });
    started.elapsed().as_nanos() as f64 / f64::from(calls)
}

fn bucket(shards: usize, limit: u32) -> impl Fn() -> ShardBucket {
    let budget = Arc::new(WindowBudget::new(limit, Duration::from_secs(3600), shards));
    move || ShardBucket::new(budget.clone())
}

fn main() {
    let clock = MonotonicClock::default();
    let fixed = clock.now();
    let shared = AtomicU64::new(0);
    println!("| shards | what | ns per decision (per shard) |");
    println!("|---|---|---|");
    for shards in [1, 2] {
        for (label, limit) in [("ample budget", u32::MAX), ("spent budget", 0)] {
            let bucket_only = per_call(shards, bucket(shards, limit), |b| {
                b.try_acquire(black_box(fixed))
            });
            let with_clock = per_call(shards, bucket(shards, limit), |b| {
                b.try_acquire(clock.now())
            });
            println!("| {shards} | bucket, {label} | {bucket_only:.1} |");
            println!("| {shards} | bucket + clock read, {label} | {with_clock:.1} |");
        }
        let naive = per_call(
            shards,
            || (),
            |()| shared.fetch_add(1, Ordering::AcqRel) < u64::MAX,
        );
        println!("| {shards} | baseline: one shared atomic add per call | {naive:.1} |");
    }
}
