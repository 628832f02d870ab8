//! Process-wide shutdown signalling: the signal thread triggers once, every shard's accept loops
//! wake on it. Wakes cross threads through the waker, so shard executors never block on it.

use tokio::sync::watch;

/// The sending side, held by whoever decides the process should stop.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A cloneable handle that resolves once shutdown has been triggered.
#[derive(Debug, Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

/// A new trigger and the signal it fires.
pub fn channel() -> (ShutdownTrigger, ShutdownSignal) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), ShutdownSignal(rx))
}

impl ShutdownTrigger {
    /// Starts the shutdown; later calls do nothing more.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl ShutdownSignal {
    /// Waits until shutdown is triggered (at once if it already was, or if the trigger is gone).
    pub async fn wait(&mut self) {
        // An error means the trigger was dropped: treat that as shutdown too.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }

    /// Whether shutdown has been triggered.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "a test thread, not a shard: gives the waiter time to start waiting"
    )]
    fn wakes_a_waiter_on_another_thread() {
        let (trigger, signal) = channel();
        let waiter = std::thread::spawn(move || {
            let mut signal = signal;
            futures_lite::future::block_on(signal.wait());
            signal.is_triggered()
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        trigger.trigger();
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn dropped_trigger_counts_as_shutdown() {
        let (trigger, mut signal) = channel();
        drop(trigger);
        futures_lite::future::block_on(signal.wait());
        assert!(!signal.is_triggered());
    }
}
