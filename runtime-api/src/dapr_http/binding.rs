//! `POST|PUT /v1.0/bindings/{name}`: `{"operation", "data", "metadata"}` runs the operation on
//! the output binding, `data` sent as its JSON text (a string keeps its quotes, as daprd sends
//! it) and the request's W3C `traceparent`/`tracestate` added to the metadata (which the `http`
//! binding sends as headers); the answer is the binding's bytes with its metadata as
//! `metadata.*` headers. Runs on the serving shard.

use std::collections::HashMap;

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::{DaprHttpApi, DaprRequest, Reply, request::nullable};
use crate::error::{DaprCodes, DaprHttpError};

const INVOKE: DaprCodes = DaprCodes {
    unknown_component: (500, "ERR_INVOKE_OUTPUT_BINDING"),
    failed: "ERR_INVOKE_OUTPUT_BINDING",
};

/// daprd's `OutputBindingRequest`.
#[derive(Deserialize)]
struct BindingRequest {
    #[serde(default, deserialize_with = "nullable")]
    operation: String,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default, deserialize_with = "nullable")]
    metadata: HashMap<String, String>,
}

/// The bytes daprd sends for `data`: its JSON text (`null` when absent).
fn data_bytes(data: Option<Value>) -> Bytes {
    Bytes::from(data.unwrap_or(Value::Null).to_string())
}

/// `POST|PUT /v1.0/bindings/{name}`: 200 with the answer (daprd's `Content-Type`,
/// `application/json`, whatever the bytes).
pub(super) async fn invoke(
    api: &DaprHttpApi,
    name: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let binding = api
        .runtime()
        .components()
        .bindings
        .get(name)
        .map_err(|err| err.dapr_http(INVOKE))?;
    let mut call: BindingRequest = request.json()?;
    call.metadata.extend(request.metadata());
    for trace in ["traceparent", "tracestate"] {
        if let Some(value) = request.header(trace) {
            call.metadata.insert(trace.to_owned(), value.to_owned());
        }
    }
    let answer = binding
        .invoke(&call.operation, data_bytes(call.data), call.metadata)
        .await
        .map_err(|err| err.dapr_http(INVOKE))?;
    Ok(
        Reply::bytes(StatusCode::OK, Some("application/json"), answer.data)
            .with_metadata(&answer.metadata),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn data_is_sent_as_daprd_sends_it() {
        assert_eq!(data_bytes(Some(json!("text"))), r#""text""#);
        assert_eq!(data_bytes(Some(json!({"a": 1}))), r#"{"a":1}"#);
        assert_eq!(data_bytes(None), "null");
    }
}
