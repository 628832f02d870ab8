//! `POST|PUT /v1.0/publish/{pubsub}/{topic}`: the body, wrapped in a CloudEvent whose
//! `datacontenttype` is the request's `Content-Type` (a body sent as
//! `application/cloudevents+json` is the CloudEvent itself), or published as it is with
//! `?metadata.rawPayload=true`; the other `metadata.*` parameters travel with the event. Runs on
//! the serving shard.

use std::collections::HashMap;

use bytes::Bytes;
use http::header;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{DaprHttpApi, DaprRequest, Reply};
use crate::{
    components::pubsub::cloud_event,
    error::{DaprCodes, DaprHttpError},
};

const PUBLISH: DaprCodes = DaprCodes {
    unknown_component: (404, "ERR_PUBSUB_NOT_FOUND"),
    failed: "ERR_PUBSUB_PUBLISH_MESSAGE",
};

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
    let metadata: HashMap<String, String> = request.metadata();
    let content_type = request
        .header(header::CONTENT_TYPE)
        .unwrap_or_default()
        .to_owned();
    let app_id = api.runtime().app_id();
    let event = if content_type.starts_with(CLOUD_EVENT_JSON) {
        let body: CloudEventBody = request.json()?;
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
        event
    } else {
        cloud_event(
            app_id,
            pubsub,
            topic,
            request.body.clone(),
            content_type,
            metadata,
        )
    };
    broker
        .publish(event)
        .await
        .map_err(|err| err.dapr_http(PUBLISH))?;
    Ok(Reply::no_content())
}
