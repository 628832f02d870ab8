//! The process's connection cap and its reserve of file descriptors: connections of listeners
//! that may not use the reserve (the L4 proxy's) are closed at once while the process holds
//! nearly all the descriptors it may open, so the listeners that serve the runtime API and
//! the admin endpoints still accept when a proxy listener is flooded. Also the rate limit of
//! the accept-failure warning, shared by every accept loop of the process. Computed on the main
//! thread; read by every shard without locks.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Descriptors kept for the reserve when the config does not say: a tenth of the limit, at
/// least 32 and at most 1024.
const DEFAULT_RESERVE_SHARE: usize = 10;
const DEFAULT_RESERVE_MIN: usize = 32;
const DEFAULT_RESERVE_MAX: usize = 1024;

/// How often an accept failure may be logged, for the whole process.
pub const ACCEPT_WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// Where a listener's connections stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescriptorCeiling {
    /// The listener may use every descriptor the process may open (the API and admin ones).
    None,
    /// A connection whose socket got a descriptor number at or above this is closed at once.
    /// Linux hands out the lowest free number, so such a number means at least that many
    /// descriptors are open.
    Below(usize),
}

impl DescriptorCeiling {
    /// The ceiling of a listener that may not use the reserve: the soft `RLIMIT_NOFILE` less
    /// `reserve` descriptors (by default a tenth of the limit, from 32 to 1024). `None` when the
    /// limit cannot be read or is unlimited.
    pub fn for_capped_listener(reserve: Option<usize>) -> Self {
        match open_files_limit() {
            Some(limit) => {
                let reserve = reserve.unwrap_or_else(|| {
                    (limit / DEFAULT_RESERVE_SHARE).clamp(DEFAULT_RESERVE_MIN, DEFAULT_RESERVE_MAX)
                });
                Self::Below(limit.saturating_sub(reserve))
            }
            None => Self::None,
        }
    }

    /// Whether a connection on descriptor `fd` may stay.
    pub fn admits(self, fd: i32) -> bool {
        match self {
            Self::None => true,
            Self::Below(ceiling) => usize::try_from(fd).is_ok_and(|fd| fd < ceiling),
        }
    }
}

/// The soft limit on open files of this process, from `/proc/self/limits`.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&limits)
}

fn parse_open_files(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Rate-limits the accept-failure warning of the whole process to one per
/// [`ACCEPT_WARNING_INTERVAL`]; the failures in between are counted into the next one.
pub struct AcceptWarnings {
    epoch: OnceLock<Instant>,
    /// Milliseconds since `epoch` before which no warning is due.
    next_due: AtomicU64,
    /// Failures since the last warning.
    unreported: AtomicU64,
}

impl AcceptWarnings {
    /// No warning given yet.
    pub const fn new() -> Self {
        Self {
            epoch: OnceLock::new(),
            next_due: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
        }
    }

    /// Counts one failure; `Some(failures since the last warning, this one included)` when a
    /// warning is due now.
    pub fn failed(&self) -> Option<u64> {
        self.unreported.fetch_add(1, Ordering::Relaxed);
        let epoch = *self.epoch.get_or_init(Instant::now);
        let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let interval = u64::try_from(ACCEPT_WARNING_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        self.next_due
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |due| {
                (now >= due).then(|| now.saturating_add(interval))
            })
            .ok()
            .map(|_| self.unreported.swap(0, Ordering::Relaxed))
    }
}

impl Default for AcceptWarnings {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_soft_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 4096                 files\n";
        assert_eq!(parse_open_files(limits), Some(1024));
        assert_eq!(
            parse_open_files("Max open files  unlimited  unlimited  files"),
            None
        );
        assert!(open_files_limit().is_some());
    }

    #[test]
    fn the_ceiling_keeps_the_reserve() {
        let ceiling = DescriptorCeiling::Below(900);
        assert!(ceiling.admits(899));
        assert!(!ceiling.admits(900));
        assert!(DescriptorCeiling::None.admits(i32::MAX));
    }

    #[test]
    fn one_warning_per_interval_counts_the_failures_between() {
        let warnings = AcceptWarnings::new();
        assert_eq!(warnings.failed(), Some(1));
        for _ in 0..99 {
            assert_eq!(warnings.failed(), None);
        }
    }
}
