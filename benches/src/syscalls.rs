//! Syscalls a target makes over a measured window: `perf stat -e raw_syscalls:sys_enter` attached
//! to its process (every thread it has then) for exactly the window, from a thread of the
//! harness's own. Skipped, with the reason, when perf is missing or not permitted here.

use std::{
    process::{Command, Stdio},
    sync::OnceLock,
    thread::JoinHandle,
    time::Duration,
};

/// The event counted: every entry into a syscall.
const EVENT: &str = "raw_syscalls:sys_enter";

/// `Ok` when perf can count syscalls here, else why not (checked once).
pub(crate) fn availability() -> &'static Result<(), String> {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    AVAILABLE.get_or_init(|| {
        let output = Command::new("perf")
            .args(["stat", "-x,", "-e", EVENT, "--", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .map_err(|err| format!("perf is not installed ({err})"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        match count(&stderr) {
            Some(_) if output.status.success() => Ok(()),
            _ => Err(format!(
                "perf cannot count {EVENT} here: {}",
                stderr.lines().next().unwrap_or("no output")
            )),
        }
    })
}

/// Starts counting `pid`'s syscalls `after` from now, for `window`; the handle yields the count,
/// or `None` when perf is unavailable or failed.
pub(crate) fn count_window(pid: u32, after: Duration, window: Duration) -> JoinHandle<Option<u64>> {
    std::thread::spawn(move || {
        availability().as_ref().ok()?;
        std::thread::sleep(after);
        let output = Command::new("perf")
            .args(["stat", "-x,", "-e", EVENT, "-p", &pid.to_string(), "--"])
            .args(["sleep", &format!("{:.3}", window.as_secs_f64())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .ok()?;
        count(&String::from_utf8_lossy(&output.stderr))
    })
}

/// The count in perf's CSV output (`12345,,raw_syscalls:sys_enter,...`).
fn count(csv: &str) -> Option<u64> {
    csv.lines()
        .map(|line| line.split(',').collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&EVENT))
        .and_then(|fields| fields[0].parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_perfs_csv() {
        assert_eq!(
            count("144,,raw_syscalls:sys_enter,919674,100.00,,\n"),
            Some(144)
        );
        assert_eq!(
            count("<not supported>,,raw_syscalls:sys_enter,0,100.00,,\n"),
            None
        );
        assert_eq!(count(""), None);
    }
}
