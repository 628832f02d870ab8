//! The bindings building block: the [`OutputBinding`] contract (`InvokeBinding`: an operation
//! with data and metadata, answered with data and metadata) and the registry of its backend
//! types (`http`). Shared by all shards; calls hop to the backend pool.

mod http;

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    components::{component::Component, registry::Registry},
    error::ApiError,
};

/// A binding's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingResponse {
    /// The body.
    pub data: Bytes,
    /// What the backend says about it (for `http`: `statusCode` and the response headers).
    pub metadata: HashMap<String, String>,
}

/// An output binding.
#[async_trait(?Send)]
pub trait OutputBinding: Component {
    /// Runs `operation` with `data` and `metadata`.
    async fn invoke(
        &self,
        operation: &str,
        data: Bytes,
        metadata: HashMap<String, String>,
    ) -> Result<BindingResponse, ApiError>;
}

/// The backend types of `bindings`.
pub(crate) const BACKENDS: Registry<dyn OutputBinding> = Registry {
    label: "binding",
    kind: "binding",
    default_type: None,
    fields: &[],
    backends: &[("http", http::build)],
};
