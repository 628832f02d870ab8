//! Subscription fan-out for one configuration store: one shared watch per app, however many
//! subscribers (on whatever shards) follow it. A watch's feed is written by the store (in-memory:
//! the saving shard; etcd: a task on the backend pool) and read by each subscriber through a
//! broadcast channel. The last subscriber to go away drops the watch, which stops its feed.
//! The hub's lock is taken only to subscribe and (in-memory) to publish.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::Duration,
};

use layotto_proto::runtime::ConfigurationItem;
use tokio::sync::{broadcast, oneshot, watch};

use crate::error::ApiError;

/// What a subscriber learns from its watch.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// These items changed (deleted ones carry [`super::DELETED_MARK`]).
    Changed(Arc<[ConfigurationItem]>),
    /// Changes were missed (the subscriber fell behind, or the backend's history was compacted):
    /// read the current items again.
    Resync,
}

/// The writing side of one shared watch, handed to the store when the watch starts.
pub struct WatchFeed {
    /// Where changes go.
    pub events: broadcast::Sender<WatchEvent>,
    /// Set once the watch is in place on the backend.
    pub ready: watch::Sender<bool>,
    /// Resolves (with an error) when the last subscriber has gone.
    pub stopped: oneshot::Receiver<()>,
}

/// One app's watch while anyone follows it.
struct SharedWatch {
    events: broadcast::Sender<WatchEvent>,
    ready: watch::Receiver<bool>,
    /// Dropped with the watch: tells the feed to stop.
    _stop: oneshot::Sender<()>,
}

/// A subscriber's end of a shared watch.
pub struct Subscription {
    receiver: broadcast::Receiver<WatchEvent>,
    watch: Arc<SharedWatch>,
}

impl Subscription {
    /// Waits until the watch is in place on the backend, at most `timeout`.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let mut ready = self.watch.ready.clone();
        let wait = async { ready.wait_for(|ready| *ready).await.is_ok() };
        futures_lite::future::or(wait, async {
            glommio::timer::sleep(timeout).await;
            false
        })
        .await
    }

    /// The next change; [`WatchEvent::Resync`] if this subscriber fell behind.
    pub async fn next(&mut self) -> WatchEvent {
        match self.receiver.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(_)) => WatchEvent::Resync,
            // The sender lives in `self.watch`, so the channel cannot close under us.
            Err(broadcast::error::RecvError::Closed) => unreachable!("sender held by subscription"),
        }
    }

    /// Whether two subscriptions share one watch.
    pub fn shares_watch_with(&self, other: &Subscription) -> bool {
        Arc::ptr_eq(&self.watch, &other.watch)
    }
}

/// The watches of one store, by app.
#[expect(
    clippy::disallowed_types,
    reason = "subscribers on every shard join one watch per app; held to subscribe or publish, never across an await"
)]
pub struct WatchHub {
    watches: std::sync::Mutex<HashMap<String, Weak<SharedWatch>>>,
    capacity: usize,
}

impl WatchHub {
    /// A hub whose subscribers may fall `capacity` changes behind before they resync.
    pub fn new(capacity: usize) -> Self {
        Self {
            watches: Default::default(),
            capacity,
        }
    }

    /// Follows `app_id`, joining its watch or starting one with `start`.
    pub fn subscribe(
        &self,
        app_id: &str,
        start: impl FnOnce(WatchFeed) -> Result<(), ApiError>,
    ) -> Result<Subscription, ApiError> {
        let mut watches = self.watches.lock().expect("hub lock poisoned");
        watches.retain(|_, watch| watch.strong_count() > 0);
        if let Some(watch) = watches.get(app_id).and_then(Weak::upgrade) {
            return Ok(Subscription {
                receiver: watch.events.subscribe(),
                watch,
            });
        }
        let (events, receiver) = broadcast::channel(self.capacity);
        let (ready_tx, ready) = watch::channel(false);
        let (stop, stopped) = oneshot::channel();
        start(WatchFeed {
            events: events.clone(),
            ready: ready_tx,
            stopped,
        })?;
        let watch = Arc::new(SharedWatch {
            events,
            ready,
            _stop: stop,
        });
        watches.insert(app_id.to_owned(), Arc::downgrade(&watch));
        Ok(Subscription { receiver, watch })
    }

    /// Sends `items` to `app_id`'s subscribers, if any.
    pub fn publish(&self, app_id: &str, items: Vec<ConfigurationItem>) {
        let watches = self.watches.lock().expect("hub lock poisoned");
        if let Some(watch) = watches.get(app_id).and_then(Weak::upgrade) {
            let _ = watch.events.send(WatchEvent::Changed(items.into()));
        }
    }

    /// Watches that still have subscribers.
    pub fn active_watches(&self) -> usize {
        let watches = self.watches.lock().expect("hub lock poisoned");
        watches.values().filter(|w| w.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str) -> ConfigurationItem {
        ConfigurationItem {
            key: key.into(),
            ..Default::default()
        }
    }

    fn ready_feed(feed: WatchFeed, started: &mut Vec<WatchFeed>) -> Result<(), ApiError> {
        feed.ready.send_replace(true);
        started.push(feed);
        Ok(())
    }

    #[test]
    fn subscribers_of_one_app_share_a_watch_and_the_last_one_stops_it() {
        let hub = WatchHub::new(8);
        let mut started = Vec::new();
        let first = hub.subscribe("a", |f| ready_feed(f, &mut started)).unwrap();
        let second = hub.subscribe("a", |f| ready_feed(f, &mut started)).unwrap();
        let other = hub.subscribe("b", |f| ready_feed(f, &mut started)).unwrap();
        assert_eq!(started.len(), 2, "one watch per app");
        assert!(first.shares_watch_with(&second));
        assert!(!first.shares_watch_with(&other));
        assert_eq!(hub.active_watches(), 2);
        let mut feed_a = started.remove(0);
        drop(first);
        assert_eq!(
            feed_a.stopped.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
        drop(second);
        assert_eq!(hub.active_watches(), 1);
        assert_eq!(
            feed_a.stopped.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        );
    }

    #[test]
    fn every_subscriber_gets_each_change_and_a_laggard_resyncs() {
        let hub = WatchHub::new(2);
        let mut started = Vec::new();
        let mut fast = hub.subscribe("a", |f| ready_feed(f, &mut started)).unwrap();
        let mut slow = hub.subscribe("a", |f| ready_feed(f, &mut started)).unwrap();
        glommio::LocalExecutor::default().run(async {
            assert!(fast.ready(Duration::from_secs(1)).await);
            hub.publish("a", vec![item("x")]);
            hub.publish("b", vec![item("nobody")]);
            let WatchEvent::Changed(items) = fast.next().await else {
                panic!("expected a change")
            };
            assert_eq!(items[0].key, "x");
            hub.publish("a", vec![item("y")]);
            hub.publish("a", vec![item("z")]);
            assert!(matches!(slow.next().await, WatchEvent::Resync));
            let WatchEvent::Changed(items) = slow.next().await else {
                panic!("expected a change after the resync")
            };
            assert_eq!(items[0].key, "y");
        });
    }

    #[test]
    fn a_watch_that_never_gets_ready_times_out() {
        let hub = WatchHub::new(2);
        let mut feeds = Vec::new();
        let subscription = hub
            .subscribe("a", |feed| {
                feeds.push(feed);
                Ok(())
            })
            .unwrap();
        let ready = glommio::LocalExecutor::default()
            .run(async { subscription.ready(Duration::from_millis(50)).await });
        assert!(!ready);
    }
}
