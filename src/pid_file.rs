//! The pid file, as MOSN keeps it: `layotto start` writes its process id there and removes it when
//! it exits; `layotto stop` reads it and sends SIGTERM to that process, then waits for it to end.
//! Runs on the main thread of either command.
//!
//! The path is the configuration's top-level `pid` key; without it MOSN's default,
//! `<parent of the config file's directory>/logs/mosn.pid` (so `configs/config.json` gives
//! `logs/mosn.pid`); with no config file (the embedded default) `./logs/mosn.pid`.

use std::{
    fs,
    io::{self, ErrorKind},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rustix::{
    event::{PollFd, PollFlags, Timespec, poll},
    process::{Pid, PidfdFlags, Signal, getpid, kill_process, pidfd_open},
};

/// MOSN's pid file name, under the `logs` directory next to the config's directory.
const FILE_NAME: &str = "mosn.pid";

/// Why `layotto stop` could not stop an instance.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StopError {
    /// No pid file: nothing started with this configuration is running.
    #[error("no running layotto: pid file {} does not exist", .0.display())]
    NoPidFile(PathBuf),
    /// The pid file cannot be read.
    #[error("cannot read pid file {}", .path.display())]
    Read {
        /// The pid file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The pid file does not hold a process id.
    #[error("pid file {} does not hold a process id: {content:?}", .path.display())]
    Malformed {
        /// The pid file.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
    /// The process the pid file names is gone (it was killed without removing its file).
    #[error("no running layotto: process {pid} named by {} is not running (stale pid file)", .path.display())]
    NotRunning {
        /// The pid file.
        path: PathBuf,
        /// The process id it names.
        pid: i32,
    },
    /// The process the pid file names is another program (its id was reused).
    #[error("process {pid} named by {} is `{name}`, not layotto; not stopping it", .path.display())]
    NotLayotto {
        /// The pid file.
        path: PathBuf,
        /// The process id it names.
        pid: i32,
        /// That process's command name.
        name: String,
    },
    /// The signal could not be sent (e.g. another user's process).
    #[error("cannot signal process {pid}")]
    Signal {
        /// The process id.
        pid: i32,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The process was signalled but had not ended when the wait was over.
    #[error("process {pid} was sent SIGTERM but is still running after {waited:?}")]
    StillRunning {
        /// The process id.
        pid: i32,
        /// How long `stop` waited.
        waited: Duration,
    },
}

/// The pid file path for a configuration: its `pid` key (`configured`) if it has one, else MOSN's
/// default for the config file's path (`None`: the embedded default, no file).
pub(crate) fn path_for(config_path: Option<&Path>, configured: Option<&Path>) -> PathBuf {
    configured.map_or_else(|| default_path(config_path), Path::to_path_buf)
}

/// The `pid` key of a configuration file's text, read without validating the rest (what `stop`
/// needs of the file the instance was started with).
pub(crate) fn configured_in(config_text: &str) -> Option<PathBuf> {
    serde_json::from_str::<serde_json::Value>(config_text)
        .ok()?
        .get("pid")?
        .as_str()
        .filter(|pid| !pid.is_empty())
        .map(PathBuf::from)
}

/// MOSN's default: `<parent of the config file's directory>/logs/mosn.pid`, `./logs/mosn.pid`
/// without a file (or when the config's directory has no parent).
fn default_path(config_path: Option<&Path>) -> PathBuf {
    let base = config_path
        .and_then(|path| std::path::absolute(path).ok())
        .and_then(|path| Some(path.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("logs").join(FILE_NAME)
}

/// This process's pid file, removed on drop if it still names this process.
#[derive(Debug)]
pub(crate) struct PidFile {
    path: PathBuf,
    pid: i32,
}

impl PidFile {
    /// Writes this process's id to `path` (creating its directory, as MOSN does).
    pub(crate) fn write(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let pid = getpid().as_raw_nonzero().get();
        fs::write(path, format!("{pid}\n"))?;
        Ok(Self {
            path: path.to_path_buf(),
            pid,
        })
    }

    /// Where it was written.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // A later instance may have written its own id there since: leave that one.
        if read_pid(&self.path).is_ok_and(|pid| pid == self.pid) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Stops the layotto process named by the pid file at `path`: SIGTERM (its graceful drain), then
/// waits up to `wait` for it to end. Returns its process id.
pub(crate) fn stop(path: &Path, wait: Duration) -> Result<i32, StopError> {
    let raw = read_pid(path)?;
    let not_running = || StopError::NotRunning {
        path: path.to_path_buf(),
        pid: raw,
    };
    let pid = Pid::from_raw(raw).ok_or_else(not_running)?;
    // An open pidfd pins the process: the id cannot be reused between the checks and the signal.
    let pidfd = pidfd_open(pid, PidfdFlags::empty()).map_err(|err| match err {
        rustix::io::Errno::SRCH | rustix::io::Errno::INVAL => not_running(),
        _ => StopError::Signal {
            pid: raw,
            source: err.into(),
        },
    })?;
    let name = process_name(raw).ok_or_else(not_running)?;
    if name != own_name() {
        return Err(StopError::NotLayotto {
            path: path.to_path_buf(),
            pid: raw,
            name,
        });
    }
    kill_process(pid, Signal::TERM).map_err(|err| StopError::Signal {
        pid: raw,
        source: err.into(),
    })?;
    let started = Instant::now();
    loop {
        let left = wait.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(StopError::StillRunning {
                pid: raw,
                waited: wait,
            });
        }
        let timeout = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        // The pidfd turns readable when the process has ended.
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => continue,
            Ok(_) => return Ok(raw),
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => {
                return Err(StopError::Signal {
                    pid: raw,
                    source: err.into(),
                });
            }
        }
    }
}

fn read_pid(path: &Path) -> Result<i32, StopError> {
    let content = fs::read_to_string(path).map_err(|source| match source.kind() {
        ErrorKind::NotFound => StopError::NoPidFile(path.to_path_buf()),
        _ => StopError::Read {
            path: path.to_path_buf(),
            source,
        },
    })?;
    content
        .trim()
        .parse()
        .ok()
        .filter(|pid: &i32| *pid > 0)
        .ok_or_else(|| StopError::Malformed {
            path: path.to_path_buf(),
            content,
        })
}

/// The command name (`/proc/<pid>/comm`) of process `pid`, if it runs.
fn process_name(pid: i32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_owned())
}

/// This process's command name: what a layotto instance started from the same binary is called.
fn own_name() -> String {
    fs::read_to_string("/proc/self/comm")
        .map(|comm| comm.trim_end().to_owned())
        .unwrap_or_else(|_| "layotto".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_is_mosn_logs_next_to_the_config_directory() {
        assert_eq!(
            default_path(Some(Path::new("/srv/app/configs/config.json"))),
            PathBuf::from("/srv/app/logs/mosn.pid")
        );
        assert_eq!(default_path(None), PathBuf::from("./logs/mosn.pid"));
    }

    #[test]
    fn the_pid_key_wins_over_the_default() {
        let path = Some(Path::new("/srv/app/configs/config.json"));
        let configured = configured_in(r#"{"pid": "/run/layotto.pid", "servers": []}"#);
        assert_eq!(
            path_for(path, configured.as_deref()),
            PathBuf::from("/run/layotto.pid")
        );
        assert_eq!(configured_in(r#"{"pid": "", "servers": []}"#), None);
        assert_eq!(
            path_for(path, configured_in(r#"{"servers": []}"#).as_deref()),
            PathBuf::from("/srv/app/logs/mosn.pid")
        );
    }
}
