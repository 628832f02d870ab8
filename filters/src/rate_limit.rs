//! Process-wide rate limits without locks (sans-IO: time comes from a [`Clock`] the caller
//! passes in, so tests run on a fake one).
//!
//! A limit of N per window is one [`WindowBudget`] shared by all shards: N tokens per fixed
//! window, handed out in leases through a single atomic word (`window index << 32 | taken`),
//! changed only by compare-and-swap. Each shard owns a [`ShardBucket`] that spends its leased
//! tokens with no shared-memory traffic at all, going back to the budget only when it runs dry.
//! A lease is `max(1, N / (100 · shards))` tokens, so at most 1% of a window's tokens can sit
//! unspent in other shards' buckets when it ends: across all shards a window admits at most N
//! calls, and at least 99% of N when there is demand for them (exactly N when N < 100 · shards,
//! as the lease is then one token).

use std::{
    cell::Cell,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

pub use layotto_core::clock::{Clock, MonotonicClock};
use layotto_core::config::MAX_DURATION;

/// A config's window of `grade` seconds (LayOtto's name): from 1 second to a day.
pub fn window_of(grade: u64) -> Result<Duration, String> {
    if (1..=MAX_DURATION.as_secs()).contains(&grade) {
        Ok(Duration::from_secs(grade))
    } else {
        Err(format!(
            "{grade}: the window must be from 1 to {} seconds",
            MAX_DURATION.as_secs()
        ))
    }
}

/// N tokens per window for the whole process.
#[derive(Debug)]
pub struct WindowBudget {
    limit: u32,
    window: Duration,
    lease: u32,
    /// `window index << 32 | tokens taken in that window`.
    state: AtomicU64,
}

impl WindowBudget {
    /// `limit` tokens per `window`, leased to `shards` shards.
    pub fn new(limit: u32, window: Duration, shards: usize) -> Self {
        assert!(!window.is_zero(), "a window must have a length");
        let shards = u32::try_from(shards.max(1)).unwrap_or(u32::MAX);
        Self {
            limit,
            window,
            lease: (limit / shards.saturating_mul(100)).max(1),
            state: AtomicU64::new(0),
        }
    }

    /// The tokens per window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Tokens a shard takes at once.
    pub fn lease_size(&self) -> u32 {
        self.lease
    }

    /// The window `now` falls in (its index, wrapping every 2^32 windows).
    fn window_at(&self, now: Duration) -> u32 {
        (now.as_nanos() / self.window.as_nanos()) as u32
    }

    /// Takes up to one lease of tokens from the window `now` falls in (or a later one another
    /// shard already moved to); answers that window and how many tokens were granted.
    fn take_lease(&self, now: Duration) -> (u32, u32) {
        let now_window = self.window_at(now);
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let (window, taken) = ((current >> 32) as u32, current as u32);
            let (window, taken) = if now_window > window {
                (now_window, 0)
            } else {
                (window, taken)
            };
            let grant = self.lease.min(self.limit.saturating_sub(taken));
            if grant == 0 {
                return (window, 0);
            }
            let next = (u64::from(window) << 32) | u64::from(taken + grant);
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return (window, grant),
                Err(actual) => current = actual,
            }
        }
    }
}

/// One shard's view of a [`WindowBudget`]: not `Sync`, used only on its shard.
#[derive(Debug)]
pub struct ShardBucket {
    budget: Arc<WindowBudget>,
    window: Cell<u32>,
    tokens: Cell<u32>,
}

impl ShardBucket {
    /// A bucket drawing on `budget`.
    pub fn new(budget: Arc<WindowBudget>) -> Self {
        Self {
            budget,
            window: Cell::new(0),
            tokens: Cell::new(0),
        }
    }

    /// The tokens per window of the whole budget.
    pub fn limit(&self) -> u32 {
        self.budget.limit()
    }

    /// Takes one token for a call at time `now`; false when the window's budget is spent.
    pub fn try_acquire(&self, now: Duration) -> bool {
        let now_window = self.budget.window_at(now);
        if now_window <= self.window.get() && self.tokens.get() > 0 {
            self.tokens.set(self.tokens.get() - 1);
            return true;
        }
        let (window, granted) = self.budget.take_lease(now);
        self.window.set(window);
        self.tokens.set(granted.saturating_sub(1));
        granted > 0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// A clock the test moves by hand.
    pub(crate) type FakeClock = layotto_core::clock::ManualClock;

    fn buckets(limit: u32, window: Duration, shards: usize) -> Vec<ShardBucket> {
        let budget = Arc::new(WindowBudget::new(limit, window, shards));
        (0..shards)
            .map(|_| ShardBucket::new(budget.clone()))
            .collect()
    }

    #[test]
    fn config_windows_run_from_a_second_to_a_day() {
        assert_eq!(window_of(1), Ok(Duration::from_secs(1)));
        assert_eq!(window_of(86_400), Ok(Duration::from_secs(86_400)));
        for grade in [0, 86_401, u64::MAX] {
            assert!(window_of(grade).is_err(), "{grade}");
        }
    }

    #[test]
    fn small_limits_are_exact_across_shards() {
        let shards = buckets(5, Duration::from_secs(1), 4);
        for second in 0..3u64 {
            let now = Duration::from_secs(second) + Duration::from_millis(10);
            // 10 calls spread over the shards: exactly 5 pass.
            let admitted = (0..10).filter(|i| shards[i % 4].try_acquire(now)).count();
            assert_eq!(admitted, 5, "second {second}");
            // More calls later in the same window: none.
            let late = now + Duration::from_millis(900);
            assert!(!shards.iter().any(|bucket| bucket.try_acquire(late)));
        }
    }

    #[test]
    fn large_limits_hold_within_one_percent_per_window() {
        let limit = 100_000;
        let shards = buckets(limit, Duration::from_millis(100), 2);
        assert_eq!(shards[0].budget.lease_size(), 500);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for window in 0..20u64 {
            let start = Duration::from_millis(100 * window);
            let mut admitted = 0u32;
            // 150% demand, arriving at both shards in an uneven, pseudo-random order.
            for i in 0..150_000u64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let shard = usize::from(seed.is_multiple_of(3));
                let now = start + Duration::from_nanos(i * 600);
                admitted += u32::from(shards[shard].try_acquire(now));
            }
            assert!(admitted <= limit, "window {window}: {admitted}");
            assert!(
                admitted >= limit - limit / 100,
                "window {window}: {admitted}"
            );
        }
    }

    #[test]
    fn shards_on_threads_never_exceed_the_budget() {
        let limit = 20_000;
        let budget = Arc::new(WindowBudget::new(limit, Duration::from_secs(1), 2));
        let clock = Arc::new(FakeClock::default());
        let admitted = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                let bucket = ShardBucket::new(budget.clone());
                let (clock, admitted) = (&clock, &admitted);
                scope.spawn(move || {
                    let passed = (0..50_000)
                        .filter(|_| bucket.try_acquire(clock.now()))
                        .count();
                    admitted.fetch_add(passed as u64, Ordering::SeqCst);
                });
            }
        });
        let admitted = admitted.load(Ordering::SeqCst);
        assert!(admitted <= u64::from(limit), "{admitted}");
        assert!(admitted >= u64::from(limit - limit / 100), "{admitted}");
    }

    #[test]
    fn a_new_window_refills_and_leftover_leases_expire() {
        let shards = buckets(1_000, Duration::from_secs(1), 1);
        assert_eq!(shards[0].budget.lease_size(), 10);
        let clock = FakeClock::default();
        assert!(shards[0].try_acquire(clock.now()));
        clock.set(Duration::from_millis(999));
        let first = 1
            + (0..2_000)
                .filter(|_| shards[0].try_acquire(clock.now()))
                .count();
        assert_eq!(first, 1_000);
        clock.set(Duration::from_millis(1_000));
        let second = (0..2_000)
            .filter(|_| shards[0].try_acquire(clock.now()))
            .count();
        assert_eq!(second, 1_000);
        // A zero limit admits nothing.
        let closed = buckets(0, Duration::from_secs(1), 1);
        assert!(!closed[0].try_acquire(Duration::ZERO));
    }
}
