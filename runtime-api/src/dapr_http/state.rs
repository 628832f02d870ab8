//! `/v1.0/state/{store}`: save (a JSON list, each value stored as its JSON text, as daprd
//! stores it), get (the stored bytes with an `ETag` header; 204 for an absent key), delete
//! (`If-Match`), bulk get, transactions and `POST|PUT /v1.0-alpha1/state/{store}/query`
//! (Dapr's query language, [`query::query_store`], the engine of the gRPC `QueryStateAlpha1`),
//! over the [`StateStore`] contract. Keys are stored as daprd stores them, `{app_id}||{key}`.
//! Runs on the serving shard.

use std::collections::HashMap;

use bytes::Bytes;
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, value::RawValue};

use super::{DaprHttpApi, DaprRequest, Reply, request::nullable};
use crate::{
    components::state::{self, Concurrency, StateOperation, StateStore},
    dapr::{keys, query},
    error::{DaprCodes, DaprHttpError},
};

const fn codes(failed: &'static str) -> DaprCodes {
    DaprCodes {
        unknown_component: (400, "ERR_STATE_STORE_NOT_FOUND"),
        failed,
    }
}
const GET: DaprCodes = codes("ERR_STATE_GET");
const BULK_GET: DaprCodes = codes("ERR_STATE_BULK_GET");
const SAVE: DaprCodes = codes("ERR_STATE_SAVE");
const DELETE: DaprCodes = codes("ERR_STATE_DELETE");
const TRANSACTION: DaprCodes = codes("ERR_STATE_TRANSACTION");
const QUERY: DaprCodes = codes("ERR_STATE_QUERY");

/// daprd's `QueryResponse`.
#[derive(Serialize)]
struct QueryAnswer {
    results: Vec<QueryItem>,
    #[serde(skip_serializing_if = "String::is_empty")]
    token: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    metadata: HashMap<String, String>,
}

/// daprd's `QueryItem`.
#[derive(Serialize)]
struct QueryItem {
    key: String,
    data: Box<RawValue>,
    #[serde(skip_serializing_if = "String::is_empty")]
    etag: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

/// One item of a save, or the request of a transaction's operation (components-contrib's
/// `SetRequest`/`DeleteRequest`).
#[derive(Deserialize)]
struct Item {
    key: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    metadata: HashMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    options: Options,
}

#[derive(Deserialize, Default)]
struct Options {
    #[serde(default)]
    concurrency: Option<String>,
}

#[derive(Deserialize)]
struct BulkRequest {
    #[serde(default, deserialize_with = "nullable")]
    keys: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    parallelism: i32,
}

/// daprd's `BulkGetResponse`.
#[derive(Serialize)]
struct BulkItem {
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Deserialize)]
struct TransactionRequest {
    #[serde(default, deserialize_with = "nullable")]
    operations: Vec<Operation>,
    #[serde(default, deserialize_with = "nullable")]
    metadata: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Operation {
    operation: String,
    request: Item,
}

fn store<'a>(
    api: &'a DaprHttpApi,
    name: &str,
    codes: DaprCodes,
) -> Result<&'a dyn StateStore, DaprHttpError> {
    api.runtime()
        .components()
        .state
        .get(name)
        .map_err(|err| err.dapr_http(codes))
}

/// The stored key of `key`: `{app_id}||{key}` (a key holding `||` is refused, as daprd does).
fn stored_key(api: &DaprHttpApi, key: &str) -> Result<String, DaprHttpError> {
    if key.is_empty() {
        return Err(DaprHttpError::new(
            400,
            "ERR_MALFORMED_REQUEST",
            "\"key\" is a required field",
        ));
    }
    if keys::holds_separator(key) {
        return Err(DaprHttpError::new(
            400,
            "ERR_MALFORMED_REQUEST",
            format!(
                "input key/keyPrefix '{key}' can't contain '{}'",
                keys::SEPARATOR
            ),
        ));
    }
    Ok(keys::state_key(api.runtime().app_id(), key))
}

fn concurrency(name: Option<&str>) -> Concurrency {
    match name {
        Some("first-write") => Concurrency::FirstWrite,
        Some("last-write") => Concurrency::LastWrite,
        _ => Concurrency::Unspecified,
    }
}

/// An upsert of `item`, its value as JSON text, with `extra` metadata (the query's) over its own.
fn upsert(
    api: &DaprHttpApi,
    mut item: Item,
    extra: &HashMap<String, String>,
    codes: DaprCodes,
) -> Result<StateOperation, DaprHttpError> {
    item.metadata
        .extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    let ttl = state::ttl(&item.metadata).map_err(|err| err.dapr_http(codes))?;
    let value =
        serde_json::to_vec(&item.value.unwrap_or(Value::Null)).map_err(DaprHttpError::malformed)?;
    Ok(StateOperation::Upsert {
        key: stored_key(api, &item.key)?,
        value: Bytes::from(value),
        etag: item.etag.filter(|etag| !etag.is_empty()),
        concurrency: concurrency(item.options.concurrency.as_deref()),
        ttl,
    })
}

fn delete(
    api: &DaprHttpApi,
    key: &str,
    etag: Option<String>,
    concurrency_name: Option<&str>,
) -> Result<StateOperation, DaprHttpError> {
    Ok(StateOperation::Delete {
        key: stored_key(api, key)?,
        etag: etag.filter(|etag| !etag.is_empty()),
        concurrency: concurrency(concurrency_name),
    })
}

/// `POST|PUT /v1.0/state/{store}`: 204.
pub(super) async fn save(
    api: &DaprHttpApi,
    name: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let store = store(api, name, SAVE)?;
    let items: Vec<Item> = request.json()?;
    let metadata = request.metadata();
    let operations = items
        .into_iter()
        .map(|item| upsert(api, item, &metadata, SAVE))
        .collect::<Result<Vec<_>, _>>()?;
    if !operations.is_empty() {
        store
            .apply(operations)
            .await
            .map_err(|err| err.dapr_http(SAVE))?;
    }
    Ok(Reply::no_content())
}

/// `GET /v1.0/state/{store}/{key}`: 200 with the stored bytes and `ETag`; 204 when absent.
pub(super) async fn get(api: &DaprHttpApi, name: &str, key: &str) -> Result<Reply, DaprHttpError> {
    let store = store(api, name, GET)?;
    let entry = store
        .get(&stored_key(api, key)?)
        .await
        .map_err(|err| err.dapr_http(GET))?;
    Ok(match entry {
        None => Reply::no_content(),
        Some(entry) => Reply::bytes(StatusCode::OK, Some("application/json"), entry.value)
            .with_header(header::ETAG, &entry.etag),
    })
}

/// `DELETE /v1.0/state/{store}/{key}` (`If-Match`, `?concurrency=`): 204.
pub(super) async fn delete_key(
    api: &DaprHttpApi,
    name: &str,
    key: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let store = store(api, name, DELETE)?;
    let etag = request.header(header::IF_MATCH).map(str::to_owned);
    let operation = delete(api, key, etag, request.query("concurrency"))?;
    store
        .apply(vec![operation])
        .await
        .map_err(|err| err.dapr_http(DELETE))?;
    Ok(Reply::no_content())
}

/// `POST|PUT /v1.0/state/{store}/bulk`: 200 with a JSON list of `{key, data, etag}` (or
/// `error`) in the order asked; an absent key has neither data nor etag.
pub(super) async fn get_bulk(
    api: &DaprHttpApi,
    name: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let store = store(api, name, BULK_GET)?;
    let bulk: BulkRequest = request.json()?;
    let stored = bulk
        .keys
        .iter()
        .map(|key| stored_key(api, key))
        .collect::<Result<Vec<_>, _>>()?;
    let read = state::get_bulk(store, stored, bulk.parallelism).await;
    let items: Vec<BulkItem> = bulk
        .keys
        .into_iter()
        .zip(read)
        .map(|(key, (_, entry))| match entry {
            Ok(Some(entry)) => BulkItem {
                key,
                data: Some(json_data(&entry.value)),
                etag: Some(entry.etag),
                error: None,
            },
            Ok(None) => BulkItem {
                key,
                data: None,
                etag: None,
                error: None,
            },
            Err(err) => BulkItem {
                key,
                data: None,
                etag: None,
                error: Some(crate::error::chain(&err).to_string()),
            },
        })
        .collect();
    Ok(Reply::json(&items))
}

/// Stored bytes as a JSON value for a bulk answer: as they are when they are JSON (what this
/// API stores), else as a JSON string (bytes a gRPC client stored raw).
/// `POST|PUT /v1.0-alpha1/state/{store}/query`: the body is the query; 200 `{results: [{key,
/// data, etag}], token}`, 204 when nothing matches; a store that cannot be queried is daprd's
/// 500 `ERR_STATE_STORE_NOT_SUPPORTED`.
pub(super) async fn query(
    api: &DaprHttpApi,
    store_name: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let store = api
        .runtime()
        .components()
        .state
        .get(store_name)
        .map_err(|err| err.dapr_http(QUERY))?;
    let text = std::str::from_utf8(&request.body).map_err(DaprHttpError::malformed)?;
    let answer = query::query_store(store, api.runtime().app_id(), text)
        .await
        .map_err(|err| {
            let mut answer = err.dapr_http(QUERY);
            answer.message = format!("state store {store_name} query failed: {}", answer.message);
            answer
        })?
        .ok_or_else(|| {
            DaprHttpError::new(
                500,
                "ERR_STATE_STORE_NOT_SUPPORTED",
                "state store does not support querying",
            )
        })?;
    if answer.results.is_empty() {
        return Ok(Reply::no_content());
    }
    Ok(Reply::json(&QueryAnswer {
        results: answer
            .results
            .into_iter()
            .map(|item| QueryItem {
                key: item.key,
                data: json_data(&item.data),
                etag: item.etag,
                error: item.error,
            })
            .collect(),
        token: answer.token,
        metadata: answer.metadata,
    }))
}

fn json_data(value: &[u8]) -> Box<RawValue> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| RawValue::from_string(text.to_owned()).ok())
        .unwrap_or_else(|| {
            let text = Value::String(String::from_utf8_lossy(value).into_owned());
            RawValue::from_string(text.to_string()).unwrap_or_else(|_| RawValue::NULL.to_owned())
        })
}

/// `POST|PUT /v1.0/state/{store}/transaction`: every `upsert` and `delete` or none; 204.
pub(super) async fn transaction(
    api: &DaprHttpApi,
    name: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let store = store(api, name, TRANSACTION)?;
    let mut transaction: TransactionRequest = request.json()?;
    transaction.metadata.extend(request.metadata());
    let operations = transaction
        .operations
        .into_iter()
        .map(|operation| match operation.operation.as_str() {
            "upsert" => upsert(api, operation.request, &transaction.metadata, TRANSACTION),
            "delete" => {
                let item = operation.request;
                delete(
                    api,
                    &item.key,
                    item.etag,
                    item.options.concurrency.as_deref(),
                )
            }
            other => Err(DaprHttpError::new(
                400,
                "ERR_NOT_SUPPORTED_STATE_OPERATION",
                format!("operation type {other} not supported"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !operations.is_empty() {
        store
            .apply(operations)
            .await
            .map_err(|err| err.dapr_http(TRANSACTION))?;
    }
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_data_is_json_as_stored_or_a_string() {
        assert_eq!(json_data(br#"{"a":1}"#).get(), r#"{"a":1}"#);
        assert_eq!(json_data(b"plain text").get(), r#""plain text""#);
        assert_eq!(json_data(b"\xff").get(), "\"\u{fffd}\"");
    }
}
