//! `POST|PUT /v1.0/publish/{pubsub}/{topic}`: the body, wrapped in a CloudEvent whose
//! `datacontenttype` is the request's `Content-Type` (a body sent as
//! `application/cloudevents+json` is the CloudEvent itself), or published as it is with
//! `?metadata.rawPayload=true`; the other `metadata.*` parameters travel with the event. And
//! the bulk form, `POST|PUT /v1.0[-alpha1]/publish/bulk/{pubsub}/{topic}`, each entry published
//! the same way, the failed ones listed. Runs on the serving shard.

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use bytes::Bytes;
use http::{StatusCode, header};
use layotto_proto::runtime::TopicEventRequest;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{DaprHttpApi, DaprRequest, Reply, request::nullable};
use crate::{
    components::pubsub::cloud_event,
    dapr::pubsub::{check_entry_ids, publish_each},
    error::{DaprCodes, DaprHttpError},
};

const PUBLISH: DaprCodes = DaprCodes {
    unknown_component: (404, "ERR_PUBSUB_NOT_FOUND"),
    failed: "ERR_PUBSUB_PUBLISH_MESSAGE",
};

/// daprd's `errorCode` of a bulk publish body it cannot read.
const EVENTS_SER: &str = "ERR_PUBSUB_EVENTS_SER";

/// The content type of a body that is a CloudEvent already.
const CLOUD_EVENT_JSON: &str = "application/cloudevents+json";

/// The fields of a CloudEvent body this API keeps (the rest is Dapr's to fill).
#[derive(Deserialize)]
struct CloudEventBody {
    id: Option<String>,
    source: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    datacontenttype: Option<String>,
    data: Option<Box<RawValue>>,
}

/// `POST|PUT /v1.0/publish/{pubsub}/{topic}`: 204.
pub(super) async fn publish(
    api: &DaprHttpApi,
    pubsub: &str,
    topic: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let broker = api
        .runtime()
        .components()
        .pubsubs
        .get(pubsub)
        .map_err(|err| err.dapr_http(PUBLISH))?;
    let content_type = request
        .header(header::CONTENT_TYPE)
        .unwrap_or_default()
        .to_owned();
    let event = event_of(
        api,
        pubsub,
        topic,
        content_type,
        request.body.clone(),
        request.metadata(),
    )?;
    broker
        .publish(event)
        .await
        .map_err(|err| err.dapr_http(PUBLISH))?;
    Ok(Reply::no_content())
}

/// One entry of a bulk publish body (daprd's `bulkPublishMessageEntry`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkEntry {
    /// Go's JSON decoding ignores case: the JavaScript SDK sends `entryID`.
    #[serde(default, alias = "entryID")]
    entry_id: String,
    event: Option<Box<RawValue>>,
    #[serde(default)]
    content_type: String,
    #[serde(default, deserialize_with = "nullable")]
    metadata: HashMap<String, String>,
}

/// daprd's answer to a bulk publish that failed (in part).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkFailure {
    failed_entries: Vec<FailedEntry>,
    error_code: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailedEntry {
    entry_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

/// `POST|PUT /v1.0-alpha1/publish/bulk/{pubsub}/{topic}` (also under `v1.0`): a JSON list of
/// `{entryId, event, contentType, metadata}`, each published as [`publish`] publishes a body
/// (`event` a JSON value for a JSON content type, a string for text, base64 for
/// `application/octet-stream`; the request's `metadata.*` under each entry's own). 204 when
/// all were published, else 500 `{failedEntries: [{entryId, error}], errorCode}`.
pub(super) async fn publish_bulk(
    api: &DaprHttpApi,
    pubsub: &str,
    topic: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let broker = api
        .runtime()
        .components()
        .pubsubs
        .get(pubsub)
        .map_err(|err| err.dapr_http(PUBLISH))?;
    let events_error = |message: String| DaprHttpError::new(400, EVENTS_SER, message);
    let entries: Vec<BulkEntry> = serde_json::from_slice(&request.body).map_err(|err| {
        events_error(format!(
            "error when unmarshaling the request for topic {topic} pubsub {pubsub}: {err}"
        ))
    })?;
    check_entry_ids(entries.iter().map(|e| e.entry_id.as_str())).map_err(|err| {
        events_error(format!(
            "error marshaling events to bytes for topic {topic} pubsub {pubsub}. error: {err}"
        ))
    })?;
    let request_metadata = request.metadata();
    let mut events = Vec::with_capacity(entries.len());
    for entry in entries {
        let data = event_bytes(entry.event.as_deref(), &entry.content_type).map_err(|err| {
            events_error(format!(
                "error when marshalling cloud event envelope for topic {topic} pubsub {pubsub}: {err}"
            ))
        })?;
        let mut metadata = request_metadata.clone();
        metadata.extend(entry.metadata);
        let event = event_of(api, pubsub, topic, entry.content_type, data, metadata)?;
        events.push((entry.entry_id, event));
    }
    let failed = publish_each(broker, events).await;
    let Some(first) = failed.first() else {
        return Ok(Reply::no_content());
    };
    let error = format!(
        "error when publishing to topic {topic} in pubsub {pubsub}: {}",
        first.error
    );
    let answer = BulkFailure {
        failed_entries: failed
            .into_iter()
            .map(|entry| FailedEntry {
                entry_id: entry.entry_id,
                error: entry.error,
            })
            .collect(),
        error_code: PUBLISH.failed,
    };
    let body = serde_json::to_string(&answer).unwrap_or_default();
    let metadata = [
        ("responseData".to_owned(), body.clone()),
        ("error".to_owned(), error),
    ];
    Ok(Reply::bytes(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some("application/json"),
        body.into(),
    )
    .with_metadata(metadata.iter().map(|(k, v)| (k, v))))
}

/// The bytes of a bulk entry's `event` for `content_type`, as daprd's `ConvertEventToBytes`.
fn event_bytes(event: Option<&RawValue>, content_type: &str) -> Result<Bytes, String> {
    let text = event.map_or("null", RawValue::get);
    let content_type = content_type.to_ascii_lowercase();
    let as_string = || {
        serde_json::from_str::<String>(text)
            .map_err(|_| "content type does not match event data".to_owned())
    };
    if content_type.starts_with("application/octet-stream") {
        let encoded = as_string()?;
        BASE64.decode(encoded).map(Bytes::from).map_err(|err| {
            format!("error: unable to decode base64 application/octect-stream data: {err}")
        })
    } else if content_type.starts_with("text/") || content_type.starts_with("application/xml") {
        as_string().map(Bytes::from)
    } else if content_type.starts_with("application/json") || content_type.contains("+json") {
        Ok(Bytes::from(text.to_owned()))
    } else {
        Err("content type does not match event data".to_owned())
    }
}

/// The event for `data` of `content_type` published by this app: a CloudEvent around it, or,
/// for `application/cloudevents+json`, the CloudEvent it is (its `id`, `source`, `type`,
/// `datacontenttype` and `data` kept). `metadata.rawPayload` is the envelope's to honour.
fn event_of(
    api: &DaprHttpApi,
    pubsub: &str,
    topic: &str,
    content_type: String,
    data: Bytes,
    metadata: HashMap<String, String>,
) -> Result<TopicEventRequest, DaprHttpError> {
    let app_id = api.runtime().app_id();
    if !content_type.starts_with(CLOUD_EVENT_JSON) {
        return Ok(cloud_event(
            app_id,
            pubsub,
            topic,
            data,
            content_type,
            metadata,
        ));
    }
    let body: CloudEventBody = serde_json::from_slice(&data).map_err(DaprHttpError::malformed)?;
    let data_type = body
        .datacontenttype
        .unwrap_or_else(|| "application/json".into());
    // A JSON string is text data; anything else is JSON data, kept as written.
    let data = match body.data {
        None => Bytes::new(),
        Some(raw) if !data_type.contains("json") => serde_json::from_str::<String>(raw.get())
            .map_or_else(|_| Bytes::from(raw.get().to_owned()), Bytes::from),
        Some(raw) => Bytes::from(raw.get().to_owned()),
    };
    let mut event = cloud_event(app_id, pubsub, topic, data, data_type, metadata);
    if let Some(id) = body.id {
        event.id = id;
    }
    if let Some(source) = body.source {
        event.source = source;
    }
    if let Some(kind) = body.kind {
        event.r#type = kind;
    }
    Ok(event)
}
