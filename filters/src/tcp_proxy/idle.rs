//! The idle timeout of proxied connections, kept off the connections' hot path: the pump only
//! counts its reads, and one sweeper task per shard and listener looks at every connection's
//! count each quarter of the timeout. A connection's own task thus reads no clock and arms no
//! timer when it wakes, and holds no timer of its own. Runs on the connections' shard.

use std::{
    cell::{Cell, RefCell},
    future::{Future, poll_fn},
    pin::pin,
    rc::{Rc, Weak},
    task::{Poll, Waker},
    time::{Duration, Instant},
};

use crate::FilterError;

/// What a connection and the sweeper share.
pub(super) struct Activity {
    reads: Cell<u64>,
    reads_seen: Cell<u64>,
    quiet_since: Cell<Instant>,
    expired: Cell<bool>,
    connection: RefCell<Option<Waker>>,
}

impl Activity {
    /// Activity of a connection starting now.
    pub(super) fn new() -> Self {
        Self {
            reads: Cell::new(0),
            reads_seen: Cell::new(0),
            quiet_since: Cell::new(Instant::now()),
            expired: Cell::new(false),
            connection: RefCell::new(None),
        }
    }

    /// The read counter the pump bumps.
    pub(super) fn reads(&self) -> &Cell<u64> {
        &self.reads
    }

    /// Notes reads since the last look at `now`; expires the connection (and wakes it) once it
    /// has been quiet for `idle`.
    fn look(&self, now: Instant, idle: Duration) {
        if self.reads.get() != self.reads_seen.get() {
            self.reads_seen.set(self.reads.get());
            self.quiet_since.set(now);
        } else if now.duration_since(self.quiet_since.get()) >= idle {
            self.expired.set(true);
            if let Some(connection) = self.connection.take() {
                connection.wake();
            }
        }
    }
}

/// The connections of one listener on one shard that have an idle timeout.
pub(super) struct IdleSweeper {
    idle: Duration,
    watched: RefCell<Vec<Weak<Activity>>>,
    sweeping: Cell<bool>,
}

impl IdleSweeper {
    /// A sweeper closing connections idle for `idle`.
    pub(super) fn new(idle: Duration) -> Rc<Self> {
        Rc::new(Self {
            idle,
            watched: RefCell::new(Vec::new()),
            sweeping: Cell::new(false),
        })
    }

    /// Runs `transfer` to its end, or ends it with [`FilterError::Idle`] once `activity` shows
    /// no read for the idle timeout: between the timeout and a quarter more after the last
    /// byte, never before.
    pub(super) async fn until_idle(
        self: &Rc<Self>,
        activity: &Rc<Activity>,
        transfer: impl Future<Output = Result<(), FilterError>>,
    ) -> Result<(), FilterError> {
        self.watched.borrow_mut().push(Rc::downgrade(activity));
        if !self.sweeping.replace(true) {
            glommio::spawn_local(self.clone().sweep()).detach();
        }
        let mut transfer = pin!(transfer);
        poll_fn(|cx| {
            if activity.expired.get() {
                return Poll::Ready(Err(FilterError::Idle(self.idle)));
            }
            let mut stored = activity.connection.borrow_mut();
            if !stored.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *stored = Some(cx.waker().clone());
            }
            drop(stored);
            transfer.as_mut().poll(cx)
        })
        .await
    }

    /// Looks at every watched connection each quarter of the timeout; stops when none is left
    /// (the next connection starts it again).
    async fn sweep(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(self.idle / 4).await;
            let now = Instant::now();
            self.watched
                .borrow_mut()
                .retain(|watched| match watched.upgrade() {
                    Some(activity) => {
                        activity.look(now, self.idle);
                        !activity.expired.get()
                    }
                    None => false,
                });
            if self.watched.borrow().is_empty() {
                self.sweeping.set(false);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(4);

    #[test]
    fn expires_a_full_timeout_after_the_look_that_saw_the_last_read() {
        let activity = Activity::new();
        let start = activity.quiet_since.get();
        let at = |secs| start + Duration::from_secs(secs);
        activity.reads.set(1);
        activity.look(at(1), IDLE); // the read is seen here
        activity.look(at(4), IDLE);
        assert!(!activity.expired.get(), "only 3 s quiet");
        activity.look(at(5), IDLE);
        assert!(activity.expired.get());
    }

    #[test]
    fn each_new_read_restarts_the_quiet_time() {
        let activity = Activity::new();
        let start = activity.quiet_since.get();
        for secs in 1..20 {
            activity.reads.set(secs);
            activity.look(start + Duration::from_secs(secs), IDLE);
            assert!(!activity.expired.get(), "read at {secs} s");
        }
        activity.look(start + Duration::from_secs(22), IDLE);
        assert!(!activity.expired.get());
        activity.look(start + Duration::from_secs(23), IDLE);
        assert!(activity.expired.get());
    }
}
