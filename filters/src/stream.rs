//! Stream filters: per-call hooks of a listener that speaks a request protocol (gRPC). They see
//! each call's path before it is routed and may refuse it (flow control). Built on the main
//! thread from the listener's `stream_filters`; per-shard instances run on their shard.

use std::rc::Rc;

/// Why a stream filter refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallRejection {
    /// Over a flow-control limit, answered with the filter's `action`: `status` is a gRPC code
    /// (1-16) or an HTTP status (mapped to a gRPC code as the gRPC spec maps HTTP statuses, so
    /// MOSN's default 509 is `UNKNOWN`, as LayOtto answers), `body` the status message.
    Limited {
        /// The configured status.
        status: u16,
        /// The configured body.
        body: String,
    },
}

/// A stream filter instance on one shard.
pub trait StreamFilter {
    /// Decides about a call to `path` as it starts.
    fn on_call(&self, path: &str) -> Result<(), CallRejection>;
}

/// Builds a [`StreamFilter`] for each shard.
pub trait StreamFilterFactory: Send + Sync {
    /// The instance for `shard`, called on that shard.
    fn for_shard(&self, shard: usize) -> Rc<dyn StreamFilter>;
}

/// One shard's stream filters of a listener, in config order.
#[derive(Default, Clone)]
pub struct StreamFilters(Vec<Rc<dyn StreamFilter>>);

impl StreamFilters {
    /// Instantiates `factories` on `shard`.
    pub fn for_shard(factories: &[std::sync::Arc<dyn StreamFilterFactory>], shard: usize) -> Self {
        Self(factories.iter().map(|f| f.for_shard(shard)).collect())
    }

    /// Runs every filter on a call to `path`; the first refusal wins.
    pub fn on_call(&self, path: &str) -> Result<(), CallRejection> {
        self.0.iter().try_for_each(|filter| filter.on_call(path))
    }
}
