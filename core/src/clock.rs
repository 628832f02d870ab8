//! Time for time-dependent logic (rate-limit windows, state and lock expiry), injected so that
//! tests run on a clock they move by hand. Clocks are `Send + Sync` and read from any thread.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Where time-dependent logic gets the time: a monotonic offset from a fixed start.
pub trait Clock: Send + Sync {
    /// Time since the clock's start.
    fn now(&self) -> Duration;
}

/// The real clock: wall-clock time at creation (since the Unix epoch), advanced monotonically
/// from there. Windows therefore start on wall-clock boundaries (a 1 s window on each second),
/// as Sentinel's do, and never run backwards when the system clock is set.
pub struct MonotonicClock {
    start: Instant,
    start_since_epoch: Duration,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            start_since_epoch: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.start_since_epoch + self.start.elapsed()
    }
}

/// A clock moved by hand, for tests of time-dependent logic.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// Sets the time to `now`.
    pub fn set(&self, now: Duration) {
        self.0.store(
            u64::try_from(now.as_nanos()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// Moves the time on by `by`.
    pub fn advance(&self, by: Duration) {
        self.set(self.now() + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::default();
        assert_eq!(clock.now(), Duration::ZERO);
        clock.advance(Duration::from_millis(1500));
        clock.advance(Duration::from_millis(500));
        assert_eq!(clock.now(), Duration::from_secs(2));
        clock.set(Duration::from_secs(1));
        assert_eq!(clock.now(), Duration::from_secs(1));
        let real = MonotonicClock::default();
        let first = real.now();
        assert!(real.now() >= first);
    }
}
