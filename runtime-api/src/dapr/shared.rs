//! What Dapr's gRPC API keeps for the whole process, whichever shard or listener a call arrives
//! on: the live configuration subscriptions (so `UnsubscribeConfiguration` on any connection
//! ends a stream on another) and the streaming topic subscriptions `GetMetadata` lists (the
//! extended metadata is the runtime's, shared with the HTTP API). Shared by every shard behind
//! short-held mutexes.

use std::{
    collections::{BTreeMap, HashMap},
    sync::atomic::{AtomicU64, Ordering},
};

use tokio::sync::oneshot;

/// A streaming topic subscription, as `GetMetadata` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSubscription {
    /// The pub/sub component.
    pub pubsub: String,
    /// The topic.
    pub topic: String,
    /// The dead-letter topic asked for.
    pub dead_letter_topic: String,
}

/// Process-wide state of Dapr's API.
#[expect(
    clippy::disallowed_types,
    reason = "shared by every shard; each lock is held for one map operation, never across an await"
)]
#[derive(Default)]
pub struct DaprShared {
    configuration_subscriptions: std::sync::Mutex<HashMap<String, oneshot::Sender<()>>>,
    topic_subscriptions: std::sync::Mutex<BTreeMap<u64, TopicSubscription>>,
    next_id: AtomicU64,
}

/// Locks `mutex`, taking the data of a poisoned one (every update is a single map operation).
#[expect(clippy::disallowed_types, reason = "see DaprShared")]
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl DaprShared {
    /// A new, process-unique subscription id.
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a configuration subscription: its id, and what tells the stream to end.
    pub fn add_configuration_subscription(&self) -> (String, oneshot::Receiver<()>) {
        let id = format!("{:016x}", self.next_id());
        let (stop, stopped) = oneshot::channel();
        lock(&self.configuration_subscriptions).insert(id.clone(), stop);
        (id, stopped)
    }

    /// Ends configuration subscription `id`; false if there is none.
    pub fn stop_configuration_subscription(&self, id: &str) -> bool {
        match lock(&self.configuration_subscriptions).remove(id) {
            Some(stop) => {
                let _ = stop.send(());
                true
            }
            None => false,
        }
    }

    /// Forgets configuration subscription `id` (its stream ended).
    pub fn remove_configuration_subscription(&self, id: &str) {
        lock(&self.configuration_subscriptions).remove(id);
    }

    /// Records a streaming topic subscription until the guard is dropped.
    pub fn add_topic_subscription(&self, subscription: TopicSubscription) -> TopicGuard<'_> {
        let id = self.next_id();
        lock(&self.topic_subscriptions).insert(id, subscription);
        TopicGuard { shared: self, id }
    }

    /// The live streaming topic subscriptions, oldest first.
    pub fn topic_subscriptions(&self) -> Vec<TopicSubscription> {
        lock(&self.topic_subscriptions).values().cloned().collect()
    }
}

/// Removes its topic subscription from the list when dropped.
pub struct TopicGuard<'a> {
    shared: &'a DaprShared,
    id: u64,
}

impl Drop for TopicGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.topic_subscriptions).remove(&self.id);
    }
}
