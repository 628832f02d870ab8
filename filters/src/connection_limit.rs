//! The `connection_limit` network filter (layotto-rs's own; MOSN has none on this path): caps
//! the connections a listener holds open at once and the new connections it accepts per window,
//! both for the whole process. The open count is one atomic shared by the shards (touched once
//! per connection, never per byte); the rate is a [`WindowBudget`] spent through per-shard
//! buckets. A refused connection is closed at once and counted.
//!
//! ```json
//! {"type": "connection_limit", "config": {"max_connections": 1000, "rate": {"threshold": 200, "grade": 1}}}
//! ```

use std::{
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use layotto_core::{
    config::{FilterConfig, Findings, join},
    handler::ConnectionInfo,
    stats::ShardedCounter,
};
use serde::Deserialize;
use tracing::debug;

use crate::{
    chain::{Admission, NetworkFilter, NetworkFilterFactory},
    rate_limit::{Clock, MonotonicClock, ShardBucket, WindowBudget, window_of},
    registry::BuildContext,
};

/// The filter's `type` in the config.
pub const KIND: &str = "connection_limit";

#[derive(Deserialize)]
struct ConnectionLimitConfig {
    max_connections: Option<usize>,
    rate: Option<RateConfig>,
}

#[derive(Deserialize)]
struct RateConfig {
    threshold: u32,
    #[serde(default = "one")]
    grade: u64,
}

fn one() -> u64 {
    1
}

/// The listener's limits and refusal counts, shared by all shards.
pub struct ConnectionLimitFactory(Arc<Shared>);

struct Shared {
    max_connections: Option<usize>,
    open: AtomicUsize,
    rate: Option<Arc<WindowBudget>>,
    clock: Arc<dyn Clock>,
    refused_over_max: ShardedCounter,
    refused_over_rate: ShardedCounter,
}

/// Builds the filter from its config entry, recording problems in `findings`.
pub fn build(
    filter: &FilterConfig,
    ctx: &BuildContext<'_>,
    findings: &mut Findings,
) -> Option<Arc<dyn NetworkFilterFactory>> {
    let path = join(&filter.path, "config");
    let config: ConnectionLimitConfig = findings.decode(&filter.config, &path, &[])?;
    if config.max_connections.is_none() && config.rate.is_none() {
        findings.error(&path, "give max_connections, rate or both");
        return None;
    }
    let rate = match &config.rate {
        None => None,
        Some(rate) => match window_of(rate.grade) {
            Ok(window) => Some(WindowBudget::new(rate.threshold, window, ctx.shards)),
            Err(err) => {
                findings.error(join(&path, "rate.grade"), err);
                return None;
            }
        },
    };
    Some(Arc::new(ConnectionLimitFactory::new(
        config.max_connections,
        rate,
        Arc::new(MonotonicClock::default()),
        ctx.shards,
    )))
}

impl ConnectionLimitFactory {
    /// At most `max_connections` open and `rate` new connections per window, timed by `clock`.
    pub fn new(
        max_connections: Option<usize>,
        rate: Option<WindowBudget>,
        clock: Arc<dyn Clock>,
        shards: usize,
    ) -> Self {
        Self(Arc::new(Shared {
            max_connections,
            open: AtomicUsize::new(0),
            rate: rate.map(Arc::new),
            clock,
            refused_over_max: ShardedCounter::new(shards),
            refused_over_rate: ShardedCounter::new(shards),
        }))
    }
}

impl NetworkFilterFactory for ConnectionLimitFactory {
    fn for_shard(&self, shard: usize) -> Rc<dyn NetworkFilter> {
        Rc::new(ConnectionLimit {
            shard,
            bucket: self.0.rate.clone().map(ShardBucket::new),
            shared: self.0.clone(),
        })
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            (
                "refused_over_max_connections",
                self.0.refused_over_max.sum(),
            ),
            (
                "refused_over_connection_rate",
                self.0.refused_over_rate.sum(),
            ),
        ]
    }
}

/// One shard's instance.
struct ConnectionLimit {
    shard: usize,
    bucket: Option<ShardBucket>,
    shared: Arc<Shared>,
}

/// One admitted connection's place in the open count; given back when the connection ends.
struct OpenConnection(Arc<Shared>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl NetworkFilter for ConnectionLimit {
    fn on_accept(&self, conn: &ConnectionInfo) -> Admission {
        let shared = &self.shared;
        if let Some(bucket) = &self.bucket
            && !bucket.try_acquire(shared.clock.now())
        {
            shared.refused_over_rate.add(self.shard, 1);
            debug!(peer = %conn.peer, listener = %conn.listener, "connection refused: over the connection rate");
            return Admission::Reject;
        }
        let Some(max) = shared.max_connections else {
            return Admission::Continue;
        };
        let before = shared.open.fetch_add(1, Ordering::AcqRel);
        let place = OpenConnection(shared.clone());
        if before >= max {
            shared.refused_over_max.add(self.shard, 1);
            debug!(peer = %conn.peer, listener = %conn.listener, "connection refused: {max} already open");
            return Admission::Reject;
        }
        Admission::Hold(Box::new(place))
    }
}
