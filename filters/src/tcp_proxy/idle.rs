//! The idle timeout of a proxied connection, kept off the connection's hot path: the pump only
//! counts its reads, and a watchdog task on the same shard looks at the count every quarter of
//! the timeout. The connection's own task thus reads no clock and arms no timer when it wakes.

use std::{
    cell::{Cell, RefCell},
    future::{Future, poll_fn},
    pin::pin,
    rc::Rc,
    task::{Poll, Waker},
    time::{Duration, Instant},
};

use crate::FilterError;

/// What a connection and its watchdog share.
#[derive(Default)]
pub(super) struct Activity {
    reads: Cell<u64>,
    expired: Cell<bool>,
    connection: RefCell<Option<Waker>>,
}

impl Activity {
    /// The read counter the pump bumps.
    pub(super) fn reads(&self) -> &Cell<u64> {
        &self.reads
    }

    fn remember(&self, waker: &Waker) {
        let mut stored = self.connection.borrow_mut();
        if !stored.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *stored = Some(waker.clone());
        }
    }
}

/// Runs `transfer` to its end, or ends it with [`FilterError::Idle`] once no byte has been read
/// for `idle`: between `idle` and `idle` + a quarter after the last byte, never before.
pub(super) async fn until_idle(
    activity: &Rc<Activity>,
    idle: Duration,
    transfer: impl Future<Output = Result<(), FilterError>>,
) -> Result<(), FilterError> {
    // Dropping the task (when the transfer ends) cancels it.
    let _watchdog = glommio::spawn_local(watch(activity.clone(), idle));
    let mut transfer = pin!(transfer);
    poll_fn(|cx| {
        if activity.expired.get() {
            return Poll::Ready(Err(FilterError::Idle(idle)));
        }
        activity.remember(cx.waker());
        transfer.as_mut().poll(cx)
    })
    .await
}

async fn watch(activity: Rc<Activity>, idle: Duration) {
    let mut seen = activity.reads.get();
    let mut quiet_since = Instant::now();
    loop {
        glommio::timer::sleep(idle / 4).await;
        let now = Instant::now();
        if activity.reads.get() != seen {
            seen = activity.reads.get();
            quiet_since = now;
        } else if now.duration_since(quiet_since) >= idle {
            activity.expired.set(true);
            if let Some(connection) = activity.connection.take() {
                connection.wake();
            }
            return;
        }
    }
}
