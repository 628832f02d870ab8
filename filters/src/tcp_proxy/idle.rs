//! The idle timeout of proxied connections, kept off the connections' hot path: the pump only
//! counts its reads, and one sweeper task per shard and listener looks at every connection's
//! count each quarter of the timeout. A connection's own task thus reads no clock and arms no
//! timer when it wakes, and holds no timer of its own. The time logic is given the time
//! ([`Activity::look`], [`IdleSweeper::sweep_once`]), so the tests drive it with a fake clock;
//! only [`IdleSweeper::sweep`] reads the real one. Runs on the connections' shard.

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
    /// Activity of a connection starting at `now`.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            reads: Cell::new(0),
            reads_seen: Cell::new(0),
            quiet_since: Cell::new(now),
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
            if !self.sweep_once(Instant::now()) {
                self.sweeping.set(false);
                return;
            }
        }
    }

    /// One look at every watched connection at `now`: expires (and wakes) those quiet for the
    /// timeout and forgets them and the ended ones. Answers whether any is still watched.
    fn sweep_once(&self, now: Instant) -> bool {
        let mut watched = self.watched.borrow_mut();
        watched.retain(|watched| match watched.upgrade() {
            Some(activity) => {
                activity.look(now, self.idle);
                !activity.expired.get()
            }
            None => false,
        });
        !watched.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(4);

    #[test]
    fn expires_a_full_timeout_after_the_look_that_saw_the_last_read() {
        let start = Instant::now();
        let activity = Activity::new(start);
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
        let start = Instant::now();
        let activity = Activity::new(start);
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

    /// Counts the wake-ups of the connection task it stands for.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_sweep_wakes_and_forgets_the_expired_and_forgets_the_ended() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let sweeper = IdleSweeper::new(IDLE);
        let (quiet, busy, ended) = (
            Rc::new(Activity::new(start)),
            Rc::new(Activity::new(start)),
            Rc::new(Activity::new(start)),
        );
        for activity in [&quiet, &busy, &ended] {
            sweeper.watched.borrow_mut().push(Rc::downgrade(activity));
        }
        let woken = std::sync::Arc::new(CountingWaker(Default::default()));
        *quiet.connection.borrow_mut() = Some(Waker::from(woken.clone()));
        drop(ended);

        busy.reads.set(1);
        assert!(sweeper.sweep_once(at(3)));
        assert_eq!(
            sweeper.watched.borrow().len(),
            2,
            "the ended one is forgotten"
        );
        busy.reads.set(2);
        assert!(sweeper.sweep_once(at(4)), "the busy one is still watched");
        assert!(quiet.expired.get() && !busy.expired.get());
        assert_eq!(woken.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(
            sweeper.watched.borrow().len(),
            1,
            "the expired one is forgotten"
        );
        assert!(
            !sweeper.sweep_once(at(8)),
            "the busy one expires too: none left"
        );
        assert!(busy.expired.get());
    }
}
