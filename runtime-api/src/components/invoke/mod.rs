//! The service invocation building block (`rpcs`): the [`Invoker`] contract (`InvokeService`:
//! call a method of another app) and the registry of its backend types (`http`). One `rpcs`
//! component serves `InvokeService`. Shared by all shards; calls hop to the backend pool.

mod http;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    components::{component::Component, registry::Registry},
    error::ApiError,
};

/// The answer of an invoked service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoked {
    /// The body.
    pub data: Bytes,
    /// Its `Content-Type`.
    pub content_type: String,
}

/// Calls other apps.
#[async_trait(?Send)]
pub trait Invoker: Component {
    /// Calls `method` of app `id` with `verb` (`None`: the backend's default) and `querystring`,
    /// sending `data` of `content_type`.
    async fn invoke(
        &self,
        id: &str,
        method: &str,
        verb: Option<::http::Method>,
        querystring: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<Invoked, ApiError>;
}

/// The backend types of `rpcs`.
pub(crate) const BACKENDS: Registry<dyn Invoker> = Registry {
    label: "rpcs",
    kind: "rpcs",
    default_type: None,
    fields: &[],
    backends: &[("http", http::build)],
};
