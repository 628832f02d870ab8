//! When tcpcopy dumps (sans-IO, except [`Usage::read`]): LayOtto's `strategy` — a `switch`,
//! sampling windows of `duration` seconds separated by `interval` seconds, and a fuse that stops
//! dumping while CPU or memory use is above `cpu_max_rate` / `mem_max_rate` percent. Usage comes
//! from `/proc/stat` and `/proc/meminfo`, read by a background sampler thread, never per packet.

use std::time::Duration;

/// The sampling windows: dumping for `duration`, then resting for `interval`, from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// How long each window lasts.
    pub duration: Duration,
    /// The pause between windows.
    pub interval: Duration,
}

impl Schedule {
    /// Whether `elapsed` (since the filter started) falls in a window.
    pub fn in_window(&self, elapsed: Duration) -> bool {
        let cycle = self.duration + self.interval;
        if cycle.is_zero() {
            return false;
        }
        Duration::from_nanos((elapsed.as_nanos() % cycle.as_nanos()) as u64) < self.duration
    }
}

/// CPU and memory use, in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU busy time over the last sampling period, all cores together.
    pub cpu: f64,
    /// Memory in use (total minus available).
    pub mem: f64,
}

/// Cumulative CPU time counters from `/proc/stat`'s first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    busy: u64,
    total: u64,
}

impl CpuTimes {
    /// Parses the aggregate `cpu` line of `/proc/stat`.
    pub fn parse(stat: &str) -> Option<Self> {
        let fields: Vec<u64> = stat
            .lines()
            .find(|line| line.starts_with("cpu "))?
            .split_whitespace()
            .skip(1)
            .map(|field| field.parse().ok())
            .collect::<Option<_>>()?;
        let total: u64 = fields.iter().take(8).sum();
        // idle and iowait
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        Some(Self {
            busy: total - idle,
            total,
        })
    }

    /// Busy percent between `earlier` and `self`.
    pub fn busy_percent_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        100.0 * self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }
}

/// Memory in use, in percent, from `/proc/meminfo`.
pub(crate) fn mem_percent(meminfo: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        meminfo
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable")?;
    (total > 0.0).then(|| 100.0 * (total - available) / total)
}

impl Usage {
    /// Reads memory use now and CPU use since `previous` (updated to now).
    pub fn read(previous: &mut CpuTimes) -> Option<Usage> {
        let now = CpuTimes::parse(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let cpu = now.busy_percent_since(previous);
        *previous = now;
        let mem = mem_percent(&std::fs::read_to_string("/proc/meminfo").ok()?)?;
        Some(Usage { cpu, mem })
    }
}

/// The fuse: blown while usage is above a limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fuse {
    /// Highest CPU percent that still allows dumping.
    pub cpu_max: f64,
    /// Highest memory percent that still allows dumping.
    pub mem_max: f64,
}

impl Fuse {
    /// Whether `usage` allows dumping.
    pub fn allows(&self, usage: Usage) -> bool {
        usage.cpu <= self.cpu_max && usage.mem <= self.mem_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_repeat_every_duration_plus_interval() {
        let schedule = Schedule {
            duration: Duration::from_secs(10),
            interval: Duration::from_secs(30),
        };
        let at = |s: u64| schedule.in_window(Duration::from_secs(s));
        assert!(at(0) && at(9) && !at(10) && !at(39) && at(40) && at(49) && !at(50));
        let never = Schedule {
            duration: Duration::ZERO,
            interval: Duration::ZERO,
        };
        assert!(!never.in_window(Duration::from_secs(3)));
    }

    #[test]
    fn the_fuse_switches_dumping_off_and_on_with_usage() {
        let fuse = Fuse {
            cpu_max: 80.0,
            mem_max: 70.0,
        };
        let readings = [
            (10.0, 10.0, true),
            (95.0, 10.0, false),
            (50.0, 71.0, false),
            (80.0, 70.0, true),
        ];
        for (cpu, mem, allowed) in readings {
            assert_eq!(
                fuse.allows(Usage { cpu, mem }),
                allowed,
                "cpu {cpu} mem {mem}"
            );
        }
    }

    #[test]
    fn parses_proc_stat_and_meminfo() {
        let before = CpuTimes::parse("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let after = CpuTimes::parse("cpu  250 0 150 900 100 0 0 0 0 0\n").unwrap();
        assert_eq!(after.busy_percent_since(&before), 50.0);
        assert_eq!(after.busy_percent_since(&after), 0.0);
        assert_eq!(CpuTimes::parse("intr 1 2"), None);
        let meminfo = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\n";
        assert_eq!(mem_percent(meminfo), Some(75.0));
        assert_eq!(mem_percent("MemTotal: 1 kB\n"), None);
        let mut previous = CpuTimes::default();
        let usage = Usage::read(&mut previous).expect("this machine has /proc");
        assert!((0.0..=100.0).contains(&usage.mem), "{usage:?}");
    }
}
