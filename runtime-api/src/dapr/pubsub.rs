//! Dapr's pub/sub rpcs: `PublishEvent` (as a CloudEvent with the app's id as source),
//! `BulkPublishEvent` (and its deprecated `BulkPublishEventAlpha1` name: each entry published,
//! the failed ones listed) and the `SubscribeTopicEventsAlpha1` stream, which answers the first
//! message with `initial_response` (the Python SDK waits for it) and then sends each event,
//! waiting for the app's `event_processed` — SUCCESS and DROP move on, RETRY sends it again —
//! with the delivery loop of LayOtto's stream ([`deliver`]). Runs on the calling shard.

use std::{collections::HashSet, rc::Rc};

use layotto_proto::{
    dapr::runtime::{
        BulkPublishRequest, BulkPublishResponse, BulkPublishResponseFailedEntry,
        PublishEventRequest, SubscribeTopicEventsRequestAlpha1, SubscribeTopicEventsResponseAlpha1,
        SubscribeTopicEventsResponseInitialAlpha1, TopicEventRequest,
        subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType,
        subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType,
    },
    runtime as layotto,
};
use prost_types::{Struct, Value, value::Kind};

use super::{DaprApi, fail, path, shared::TopicSubscription};
use crate::{
    api::pubsub::{EventStream, deliver},
    components::pubsub::{DeadLetter, Deliveries, PubSub, cloud_event, is_raw_payload},
    error::{ApiError, DaprOp, chain},
    grpc::{
        call::{Requests, Responses},
        router::{Router, bidirectional, unary},
        status::Status,
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<DaprApi>) {
    router
        .add(
            path("PublishEvent"),
            unary(api.clone(), DaprApi::publish_event),
        )
        .add(
            path("BulkPublishEvent"),
            unary(api.clone(), DaprApi::bulk_publish_event),
        )
        .add(
            path("BulkPublishEventAlpha1"),
            unary(api.clone(), DaprApi::bulk_publish_event),
        )
        .add(
            path("SubscribeTopicEventsAlpha1"),
            bidirectional(api.clone(), DaprApi::subscribe_topic_events),
        );
}

/// Dapr's check of a pub/sub name and topic.
fn require_names(pubsub: &str, topic: &str) -> Result<(), ApiError> {
    if pubsub.is_empty() {
        return Err(ApiError::InvalidArgument("pubsub name is empty".into()));
    }
    if topic.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "topic is empty in pubsub {pubsub}"
        )));
    }
    Ok(())
}

/// daprd's check of bulk entry ids: each present and unique.
pub(crate) fn check_entry_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for id in ids {
        if id.is_empty() {
            return Err(ApiError::InvalidArgument(
                "entryId is empty in the bulk publish request".into(),
            ));
        }
        if !seen.insert(id) {
            return Err(ApiError::InvalidArgument(format!(
                "entryId {id} is duplicated in the bulk publish request"
            )));
        }
    }
    Ok(())
}

/// Publishes each `(entry id, event)` on `broker`; the entries that failed, with why (both
/// Dapr APIs' bulk publish).
pub(crate) async fn publish_each(
    broker: &dyn PubSub,
    events: impl IntoIterator<Item = (String, layotto::TopicEventRequest)>,
) -> Vec<BulkPublishResponseFailedEntry> {
    let mut failed = Vec::new();
    for (entry_id, event) in events {
        if let Err(err) = broker.publish(event).await {
            failed.push(BulkPublishResponseFailedEntry {
                entry_id,
                error: chain(&err).to_string(),
            });
        }
    }
    failed
}

impl DaprApi {
    async fn publish_event(self: Rc<Self>, request: PublishEventRequest) -> Result<(), Status> {
        let op = DaprOp::Publish {
            pubsub: &request.pubsub_name,
            topic: &request.topic,
        };
        require_names(&request.pubsub_name, &request.topic).map_err(fail(op))?;
        let broker = self
            .components()
            .pubsubs
            .get(&request.pubsub_name)
            .map_err(fail(op))?;
        let event = cloud_event(
            self.app_id(),
            &request.pubsub_name,
            &request.topic,
            request.data,
            request.data_content_type,
            request.metadata,
        );
        broker.publish(event).await.map_err(fail(op))
    }

    /// Publishes every entry (ids must be present and unique, as daprd requires) and lists
    /// the ones that failed, with why.
    async fn bulk_publish_event(
        self: Rc<Self>,
        request: BulkPublishRequest,
    ) -> Result<BulkPublishResponse, Status> {
        let op = DaprOp::Publish {
            pubsub: &request.pubsub_name,
            topic: &request.topic,
        };
        require_names(&request.pubsub_name, &request.topic).map_err(fail(op))?;
        let broker = self
            .components()
            .pubsubs
            .get(&request.pubsub_name)
            .map_err(fail(op))?;
        check_entry_ids(request.entries.iter().map(|e| e.entry_id.as_str())).map_err(fail(op))?;
        let events = request.entries.into_iter().map(|entry| {
            let mut metadata = request.metadata.clone();
            metadata.extend(entry.metadata);
            let event = cloud_event(
                self.app_id(),
                &request.pubsub_name,
                &request.topic,
                entry.event,
                entry.content_type,
                metadata,
            );
            (entry.entry_id, event)
        });
        let failed_entries = publish_each(broker, events).await;
        Ok(BulkPublishResponse { failed_entries })
    }

    /// The first message subscribes (answered by `initial_response`); then each event is sent
    /// as `event_message` and waits for the client's `event_processed` of its id. Ends when
    /// the client does.
    async fn subscribe_topic_events(
        self: Rc<Self>,
        mut requests: Requests,
        mut responses: Responses,
    ) -> Result<(), Status> {
        let op = DaprOp::Subscribe;
        let first = requests
            .next::<SubscribeTopicEventsRequestAlpha1>()
            .await?
            .and_then(|first| first.subscribe_topic_events_request_type);
        let Some(SubscribeTopicEventsRequestType::InitialRequest(initial)) = first else {
            return Err(fail(op)(ApiError::InvalidArgument(
                "initial request is required".into(),
            )));
        };
        require_names(&initial.pubsub_name, &initial.topic).map_err(fail(op))?;
        let broker = self
            .components()
            .pubsubs
            .get_shared(&initial.pubsub_name)
            .map_err(fail(op))?;
        let events = broker.subscribe(&initial.topic).await.map_err(fail(op))?;
        let _listed = self.shared().add_topic_subscription(TopicSubscription {
            pubsub: initial.pubsub_name.clone(),
            topic: initial.topic.clone(),
            dead_letter_topic: initial.dead_letter_topic.clone().unwrap_or_default(),
        });
        let initial_response = SubscribeTopicEventsResponseType::InitialResponse(
            SubscribeTopicEventsResponseInitialAlpha1 {},
        );
        responses
            .send(&SubscribeTopicEventsResponseAlpha1 {
                subscribe_topic_events_response_type: Some(initial_response),
            })
            .await?;
        let dead_letter = initial
            .dead_letter_topic
            .filter(|topic| !topic.is_empty())
            .map(|topic| DeadLetter::new(broker.clone(), topic));
        let events = Deliveries::new(events, is_raw_payload(&initial.metadata));
        deliver::<DaprStream>(events, dead_letter, &mut requests, &mut responses).await
    }
}

/// Dapr's `SubscribeTopicEventsAlpha1` messages.
struct DaprStream;

impl EventStream for DaprStream {
    type Request = SubscribeTopicEventsRequestAlpha1;
    type Response = SubscribeTopicEventsResponseAlpha1;

    fn event_message(event: &layotto::TopicEventRequest) -> Self::Response {
        SubscribeTopicEventsResponseAlpha1 {
            subscribe_topic_events_response_type: Some(
                SubscribeTopicEventsResponseType::EventMessage(dapr_event(event, "")),
            ),
        }
    }

    /// Dapr's statuses have LayOtto's numbers (SUCCESS, RETRY, DROP).
    fn processed(request: Self::Request) -> Option<(String, i32)> {
        match request.subscribe_topic_events_request_type? {
            SubscribeTopicEventsRequestType::EventProcessed(processed) => {
                Some((processed.id, processed.status.unwrap_or_default().status))
            }
            SubscribeTopicEventsRequestType::InitialRequest(_) => None,
        }
    }
}

/// A stored event in Dapr's shape (daprd's `GRPCEnvelopeFromSubscriptionMessage`), for the
/// stream and for the app's `AppCallback.OnTopicEvent`: the CloudEvent fields, `path` the
/// subscription's route, and as `extensions` the publish metadata (as strings; Dapr's field 10
/// is a `Struct`, where LayOtto's is a string map) under the attributes daprd puts there:
/// `topic`, `pubsubname`, `time` (of delivery: the stored events keep none), and `traceid`,
/// `traceparent`, `tracestate` (the publish metadata's `traceparent`/`tracestate`, else empty,
/// as daprd fills them when tracing is off).
pub(crate) fn dapr_event(event: &layotto::TopicEventRequest, path: &str) -> TopicEventRequest {
    let string = |value: &str| Value {
        kind: Some(Kind::StringValue(value.to_owned())),
    };
    let metadata = |key: &str| event.metadata.get(key).map_or("", String::as_str);
    let traceparent = metadata("traceparent");
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut fields: std::collections::BTreeMap<String, Value> = event
        .metadata
        .iter()
        .map(|(key, value)| (key.clone(), string(value)))
        .collect();
    for (key, value) in [
        ("topic", event.topic.as_str()),
        ("pubsubname", event.pubsub_name.as_str()),
        ("time", time.as_str()),
        ("traceid", traceparent),
        ("traceparent", traceparent),
        ("tracestate", metadata("tracestate")),
    ] {
        fields.insert(key.to_owned(), string(value));
    }
    TopicEventRequest {
        id: event.id.clone(),
        source: event.source.clone(),
        r#type: event.r#type.clone(),
        spec_version: event.spec_version.clone(),
        data_content_type: event.data_content_type.clone(),
        data: event.data.clone(),
        topic: event.topic.clone(),
        pubsub_name: event.pubsub_name.clone(),
        path: path.to_owned(),
        extensions: Some(Struct { fields }),
    }
}
