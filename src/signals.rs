//! SIGTERM and SIGINT for the whole life of `layotto start`, installed before anything else:
//! during start-up (reading the config, connecting components, binding) a signal ends the
//! process at once with exit 0, after removing the pid file and flushing the log; once serving,
//! the first signal starts the graceful drain and a second one exits at once. The handling runs
//! on a `signals` thread; the main thread tells it how far start-up got.

use std::time::Duration;

use anyhow::{Context, Result};
use layotto::StopHandle;
use tracing::{info, warn};

use crate::pid_file::PidFile;

/// What start-up holds that an exit during start-up must release first.
#[derive(Default)]
pub(crate) struct Held {
    /// The log writers' guards (dropping one flushes its writer).
    pub(crate) log_guards: Vec<tracing_appender::non_blocking::WorkerGuard>,
    /// The pid file (dropping it removes the file).
    pub(crate) pid_file: Option<PidFile>,
}

/// How far the process got, which decides what a signal does.
enum Phase {
    /// Starting: a signal exits at once, after releasing what is held.
    StartingUp(Held),
    /// Serving: a signal starts the drain (`stopping` once it has).
    Serving {
        stop: StopHandle,
        drain: Duration,
        stopping: bool,
    },
}

/// The signal thread's view of the process, shared with the main thread.
pub(crate) struct Signals {
    #[expect(
        clippy::disallowed_types,
        reason = "shared by the main and signal threads only, never a shard; held for moments"
    )]
    phase: std::sync::Mutex<Phase>,
}

impl Signals {
    /// Installs the handlers and starts the signal thread, in the start-up phase.
    #[expect(
        clippy::disallowed_types,
        reason = "builds the phase's mutex, see `Signals`"
    )]
    pub(crate) fn install() -> Result<std::sync::Arc<Self>> {
        use signal_hook::{consts::*, iterator::Signals as Iter};
        let mut received =
            Iter::new([SIGTERM, SIGINT]).context("cannot install signal handlers")?;
        let signals = std::sync::Arc::new(Self {
            phase: std::sync::Mutex::new(Phase::StartingUp(Held::default())),
        });
        let shared = signals.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in received.forever() {
                    shared.on_signal(signal);
                }
            })
            .context("cannot start the signal thread")?;
        Ok(signals)
    }

    /// Runs `change` on what start-up holds (while it still starts; afterwards it does nothing).
    pub(crate) fn hold(&self, change: impl FnOnce(&mut Held)) {
        if let Phase::StartingUp(held) = &mut *self.lock() {
            change(held);
        }
    }

    /// Start-up is over: signals drain through `stop` from now on. Returns what start-up held,
    /// for the main thread to release when it is done.
    pub(crate) fn serving(&self, stop: StopHandle, drain: Duration) -> Held {
        let serving = Phase::Serving {
            stop,
            drain,
            stopping: false,
        };
        match std::mem::replace(&mut *self.lock(), serving) {
            Phase::StartingUp(held) => held,
            Phase::Serving { .. } => Held::default(),
        }
    }

    /// Takes back what start-up holds (start-up failed; the main thread exits).
    pub(crate) fn release(&self) -> Held {
        match &mut *self.lock() {
            Phase::StartingUp(held) => std::mem::take(held),
            Phase::Serving { .. } => Held::default(),
        }
    }

    fn on_signal(&self, signal: i32) {
        let mut phase = self.lock();
        match &mut *phase {
            Phase::StartingUp(held) => {
                info!(signal, "stop requested during start-up: exiting");
                drop(std::mem::take(held));
                // Nothing is served yet: start-up is abandoned where it is.
                std::process::exit(0);
            }
            Phase::Serving {
                stop,
                drain,
                stopping: false,
            } => {
                info!(
                    signal,
                    "stop requested: no longer accepting; draining for up to {drain:?}"
                );
                stop.stop();
                if let Phase::Serving { stopping, .. } = &mut *phase {
                    *stopping = true;
                }
            }
            Phase::Serving { stopping: true, .. } => {
                warn!(signal, "second stop request: exiting without draining");
                std::process::exit(130);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
