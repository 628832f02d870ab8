//! The service invocation building block (`rpcs`): the [`Invoker`] contract (`InvokeService`:
//! call a method of another app) and the registry of its backend types (`http`, and LayOtto's
//! `mosn`, the default type: its entry is keyed `mosn` and gives none). One `rpcs` component
//! serves `InvokeService`. Shared by all shards; `http` calls hop to the backend pool, `mosn`
//! calls run on the calling shard.

mod http;
mod mosn;

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

    /// [`Invoker::invoke`] with the call's gRPC `metadata` (request headers), answering the
    /// headers the invoked app sent back too (LayOtto's `mosn` invoker passes both on); by
    /// default the metadata is not used and no headers come back.
    #[expect(
        clippy::too_many_arguments,
        reason = "invoke's arguments and the metadata"
    )]
    async fn invoke_with_metadata(
        &self,
        id: &str,
        method: &str,
        verb: Option<::http::Method>,
        querystring: &str,
        data: Bytes,
        content_type: &str,
        metadata: &::http::HeaderMap,
    ) -> Result<(Invoked, ::http::HeaderMap), ApiError> {
        let _ = metadata;
        let invoked = self
            .invoke(id, method, verb, querystring, data, content_type)
            .await?;
        Ok((invoked, ::http::HeaderMap::new()))
    }
}

/// The backend types of `rpcs`.
pub(crate) const BACKENDS: Registry<dyn Invoker> = Registry {
    label: "rpcs",
    kind: "rpcs",
    default_type: Some("mosn"),
    fields: &["config"],
    backends: &[("http", http::build), ("mosn", mosn::build)],
};
