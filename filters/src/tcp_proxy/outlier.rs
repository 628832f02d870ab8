//! Passive outlier detection of a cluster's hosts, Envoy-style: a host whose connects fail
//! `consecutive_failures` times in a row is ejected for `base_ejection_time` times the number of
//! its ejections in a row (capped by `max_ejection_time`), and takes connections again once that
//! time has passed (seen when a host is picked: no timer). At most `max_ejection_percent` of the
//! hosts are ejected at once, and always at least one may be. Sans-IO: callers pass the time of
//! the injected clock.
//!
//! The state is shared by all shards of a listener, in atomics (no lock): a host that fails on
//! one shard is ejected for every shard, as Envoy ejects per cluster, not per worker. Two
//! shards ejecting at the same instant may exceed the percentage by one host.

use std::{
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

use layotto_core::config::OutlierDetectionConfig;

/// One host's failure record.
#[derive(Debug, Default)]
struct HostRecord {
    /// Connects failed in a row.
    failures: AtomicU32,
    /// Ejections in a row (reset by a successful connect).
    ejections: AtomicU32,
    /// Clock time (nanoseconds) until which the host is ejected; 0 when it is not.
    ejected_until: AtomicU64,
}

/// Outlier state of a cluster's hosts (indexed as the cluster lists them).
#[derive(Debug)]
pub(super) struct Outliers {
    policy: OutlierDetectionConfig,
    hosts: Box<[HostRecord]>,
}

fn nanos(time: Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
}

impl Outliers {
    /// No host ejected, for `hosts` hosts under `policy`.
    pub(super) fn new(policy: OutlierDetectionConfig, hosts: usize) -> Self {
        Self {
            policy,
            hosts: (0..hosts).map(|_| HostRecord::default()).collect(),
        }
    }

    /// Whether host `index` takes connections at `now`.
    pub(super) fn available(&self, index: usize, now: Duration) -> bool {
        self.hosts[index].ejected_until.load(Ordering::Relaxed) <= nanos(now)
    }

    /// Records a successful connect to host `index`.
    pub(super) fn connected(&self, index: usize) {
        let host = &self.hosts[index];
        // Loads first: the common case writes nothing, so shards do not bounce the cache line.
        if host.failures.load(Ordering::Relaxed) != 0 {
            host.failures.store(0, Ordering::Relaxed);
        }
        if host.ejections.load(Ordering::Relaxed) != 0 {
            host.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failed connect to host `index` at `now`; the ejection time if it ejects it.
    pub(super) fn failed(&self, index: usize, now: Duration) -> Option<Duration> {
        let host = &self.hosts[index];
        let failures = host.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < self.policy.consecutive_failures || !self.available(index, now) {
            return None;
        }
        let ejected = (0..self.hosts.len())
            .filter(|&i| !self.available(i, now))
            .count();
        let allowed = self.hosts.len() * usize::from(self.policy.max_ejection_percent) / 100;
        if ejected > 0 && ejected >= allowed {
            return None;
        }
        host.failures.store(0, Ordering::Relaxed);
        let times = host.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let ejection = self
            .policy
            .base_ejection_time
            .saturating_mul(times)
            .min(self.policy.max_ejection_time);
        host.ejected_until
            .store(nanos(now + ejection), Ordering::Relaxed);
        Some(ejection)
    }
}

#[cfg(test)]
mod tests {
    use layotto_core::clock::{Clock, ManualClock};

    use super::*;

    fn policy(consecutive_failures: u32, max_ejection_percent: u8) -> OutlierDetectionConfig {
        OutlierDetectionConfig {
            consecutive_failures,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            max_ejection_percent,
        }
    }

    #[test]
    fn consecutive_failures_eject_for_a_growing_time() {
        let clock = ManualClock::default();
        let outliers = Outliers::new(policy(3, 10), 2);
        assert_eq!(outliers.failed(0, clock.now()), None);
        outliers.connected(0); // a success breaks the streak
        assert_eq!(outliers.failed(0, clock.now()), None);
        assert_eq!(outliers.failed(0, clock.now()), None);
        assert_eq!(
            outliers.failed(0, clock.now()),
            Some(Duration::from_secs(10))
        );
        assert!(!outliers.available(0, clock.now()));
        assert!(outliers.available(1, clock.now()));
        clock.advance(Duration::from_secs(10));
        assert!(
            outliers.available(0, clock.now()),
            "back after the ejection time"
        );
        for _ in 0..2 {
            assert_eq!(outliers.failed(0, clock.now()), None);
        }
        assert_eq!(
            outliers.failed(0, clock.now()),
            Some(Duration::from_secs(20))
        );
        clock.advance(Duration::from_secs(20));
        for _ in 0..2 {
            outliers.failed(0, clock.now());
        }
        assert_eq!(
            outliers.failed(0, clock.now()),
            Some(Duration::from_secs(25)),
            "capped"
        );
    }

    #[test]
    fn at_most_the_allowed_share_is_ejected_but_always_one_may_be() {
        let now = ManualClock::default().now();
        let outliers = Outliers::new(policy(1, 10), 4);
        assert!(
            outliers.failed(0, now).is_some(),
            "10 % of 4 hosts still allows one"
        );
        assert_eq!(outliers.failed(1, now), None);
        assert!(outliers.available(1, now));
        let half = Outliers::new(policy(1, 50), 4);
        assert!(half.failed(0, now).is_some());
        assert!(half.failed(1, now).is_some());
        assert_eq!(half.failed(2, now), None);
    }
}
