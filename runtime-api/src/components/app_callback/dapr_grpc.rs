//! Dapr's gRPC channel to the app (`app_protocol` `grpc`): its `dapr.proto.runtime.v1.AppCallback`
//! server, asked `ListTopicSubscriptions` (UNIMPLEMENTED: no subscriptions) and called
//! `OnTopicEvent` with Dapr's `TopicEventRequest` (`path` = the subscription's route) and the
//! event's metadata as gRPC metadata (with `pubsubname`), as daprd's gRPC postman does: SUCCESS,
//! RETRY and DROP as answered, an unknown status or a failed call retried, UNIMPLEMENTED
//! dropped; and service invocation of the app ([`GrpcAppInvoker`]): `OnInvoke` with Dapr's
//! `InvokeRequest` and the caller's headers as metadata, as daprd's gRPC app channel. Runs on
//! the backend pool.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use http::{HeaderValue, header};
use layotto_core::backend::BackendHandle;
use layotto_proto::{
    dapr::{
        common::{HttpExtension, InvokeRequest as DaprInvokeRequest},
        runtime::{
            TopicEventBulkRequest, TopicEventBulkRequestEntry, TopicEventCeRequest,
            TopicSubscription, app_callback_alpha_client::AppCallbackAlphaClient,
            app_callback_client::AppCallbackClient, topic_event_bulk_request_entry::Event,
            topic_event_response::TopicEventResponseStatus as DaprStatus,
        },
    },
    runtime::{TopicEventRequest, topic_event_response::TopicEventResponseStatus},
};
use tonic::{
    Code,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
};
use tracing::info;

use super::{
    AppChannel, AppSubscription, BULK_EVENT_TYPE, Bulk, LazyChannel, Listed, answers_by_entry,
    routing::Routes, subscription_routes,
};
use crate::{
    api::invoke::verb_of,
    components::{
        component::Component,
        http_client::status_error,
        invoke::{InvokeRequest, Invoked, Invoker, forwardable},
        pubsub::{Answer, is_raw_payload},
    },
    dapr::{invocation, pubsub::dapr_event},
    error::ApiError,
    grpc::status::{Code as StatusCode, Status},
};

/// The app's Dapr `AppCallback` server.
pub(super) struct DaprCallback {
    server: Arc<LazyChannel>,
}

impl DaprCallback {
    pub(super) fn new(server: Arc<LazyChannel>) -> Self {
        Self { server }
    }
}

impl fmt::Display for DaprCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dapr gRPC app at {}", self.server)
    }
}

#[async_trait]
impl AppChannel for DaprCallback {
    async fn subscriptions(&self) -> Listed {
        let mut client = AppCallbackClient::new(self.server.get());
        match client.list_topic_subscriptions(()).await {
            Ok(reply) => Listed::Subscriptions(
                reply
                    .into_inner()
                    .subscriptions
                    .into_iter()
                    .filter_map(subscription)
                    .collect(),
            ),
            Err(status) if status.code() == Code::Unimplemented => {
                info!(app = %self, "the app does not implement ListTopicSubscriptions");
                Listed::Subscriptions(Vec::new())
            }
            Err(status) => Listed::NoAnswer(status.to_string()),
        }
    }

    async fn deliver(&self, event: &TopicEventRequest, route: &str) -> Answer {
        let mut request = tonic::Request::new(dapr_event(event, route));
        let headers = request.metadata_mut();
        let pubsub = [("pubsubname", event.pubsub_name.as_str())];
        let metadata = event.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (key, value) in metadata.chain(pubsub) {
            let key = MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes());
            if let (Ok(key), Ok(value)) = (key, MetadataValue::try_from(value))
                && !key.as_str().starts_with("grpc-")
            {
                headers.insert(key, value);
            }
        }
        match AppCallbackClient::new(self.server.get())
            .on_topic_event(request)
            .await
        {
            Ok(reply) => answer(reply.into_inner().status),
            Err(status) if status.code() == Code::Unimplemented => {
                Ok(TopicEventResponseStatus::Drop)
            }
            Err(status) => Err(status.to_string()),
        }
    }

    /// `AppCallbackAlpha.OnBulkTopicEventAlpha1`, as daprd's bulk delivery: each event a
    /// CloudEvent entry (its id the entry id), the batch's topic, pub/sub and `path`; an entry
    /// the app gives no status is retried.
    async fn deliver_bulk(
        &self,
        events: &[&TopicEventRequest],
        route: &str,
    ) -> Result<Vec<Answer>, String> {
        let Some(first) = events.first() else {
            return Ok(Vec::new());
        };
        let entries = events
            .iter()
            .map(|event| {
                let dapr = dapr_event(event, route);
                TopicEventBulkRequestEntry {
                    entry_id: event.id.clone(),
                    event: Some(Event::CloudEvent(TopicEventCeRequest {
                        id: dapr.id,
                        source: dapr.source,
                        r#type: dapr.r#type,
                        spec_version: dapr.spec_version,
                        data_content_type: dapr.data_content_type,
                        data: dapr.data,
                        extensions: dapr.extensions,
                    })),
                    content_type: "application/cloudevents+json".into(),
                    metadata: event.metadata.clone(),
                }
            })
            .collect();
        let request = TopicEventBulkRequest {
            id: format!("bulk-{}", first.id),
            entries,
            metadata: Default::default(),
            topic: first.topic.clone(),
            pubsub_name: first.pubsub_name.clone(),
            r#type: BULK_EVENT_TYPE.into(),
            path: route.to_owned(),
        };
        #[expect(deprecated, reason = "Dapr's only bulk delivery rpc")]
        let reply = AppCallbackAlphaClient::new(self.server.get())
            .on_bulk_topic_event_alpha1(request)
            .await
            .map_err(|status| status.to_string())?;
        let statuses = reply.into_inner().statuses.into_iter();
        let statuses = statuses.map(|entry| (entry.entry_id, entry.status));
        Ok(answers_by_entry(events, statuses, |status| answer(*status)))
    }
}

/// A Dapr status number as an answer (an unknown one fails the attempt).
fn answer(status: i32) -> Answer {
    match DaprStatus::try_from(status) {
        Ok(DaprStatus::Success) => Ok(TopicEventResponseStatus::Success),
        Ok(DaprStatus::Retry) => Ok(TopicEventResponseStatus::Retry),
        Ok(DaprStatus::Drop) => Ok(TopicEventResponseStatus::Drop),
        Err(unknown) => Err(format!("unknown status {}", unknown.0)),
    }
}

/// The subscription the app listed, with its route; `None` (logged) when no route is usable.
fn subscription(listed: TopicSubscription) -> Option<AppSubscription> {
    let bulk = listed
        .bulk_subscribe
        .filter(|bulk| bulk.enabled)
        .map(|bulk| {
            Bulk::new(
                bulk.max_messages_count.into(),
                bulk.max_await_duration_ms.into(),
            )
        });
    let raw_payload = is_raw_payload(&listed.metadata);
    // daprd's gRPC rules: the app's, then the default (an empty path when none is given).
    let routes = match &listed.routes {
        Some(routes) => {
            let rules = routes
                .rules
                .iter()
                .map(|rule| (rule.r#match.as_str(), rule.path.as_str()));
            subscription_routes(&listed.topic, rules, Some(&routes.default))?
        }
        None => Routes::to(""),
    };
    Some(AppSubscription {
        pubsub: listed.pubsub_name,
        topic: listed.topic,
        routes,
        dead_letter_topic: Some(listed.dead_letter_topic).filter(|topic| !topic.is_empty()),
        bulk,
        raw_payload,
    })
}

/// The invoker of the app this sidecar serves over its Dapr gRPC channel (daprd's
/// `--app-protocol grpc`): `AppCallback.OnInvoke` on the backend pool. Whatever status the app
/// answers is its answer ([`Invoked::grpc_status`]): the HTTP API gives daprd's HTTP status for
/// it and, for a failure, the status as JSON; the gRPC API answers the status itself.
pub(super) struct GrpcAppInvoker {
    app_id: String,
    server: Arc<LazyChannel>,
    backend: BackendHandle,
}

impl GrpcAppInvoker {
    /// The invoker of `app_id`'s gRPC channel `server`, calling on `backend`.
    pub(super) fn new(app_id: &str, server: Arc<LazyChannel>, backend: &BackendHandle) -> Self {
        Self {
            app_id: app_id.to_owned(),
            server,
            backend: backend.clone(),
        }
    }
}

impl Component for GrpcAppInvoker {}

#[async_trait(?Send)]
impl Invoker for GrpcAppInvoker {
    async fn invoke(&self, request: InvokeRequest<'_>) -> Result<Invoked, ApiError> {
        let message = DaprInvokeRequest {
            method: request.method.to_owned(),
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: request.data.to_vec(),
            }),
            content_type: request.content_type.to_owned(),
            http_extension: Some(HttpExtension {
                verb: verb_of(request.verb.as_ref()),
                querystring: request.querystring.to_owned(),
            }),
        };
        let metadata = invocation::to_grpc_app(&forwardable(request.headers));
        let server = self.server.clone();
        let answer = self
            .backend
            .submit(async move {
                let mut call = tonic::Request::new(message);
                *call.metadata_mut() = MetadataMap::from_headers(metadata);
                AppCallbackClient::new(server.get()).on_invoke(call).await
            })
            .await?;
        Ok(match answer {
            Ok(response) => {
                let (metadata, response, _) = response.into_parts();
                let mut headers = metadata.into_headers();
                headers.remove(header::CONTENT_TYPE);
                if let Ok(content_type) = HeaderValue::from_str(&response.content_type)
                    && !response.content_type.is_empty()
                {
                    headers.insert(header::CONTENT_TYPE, content_type);
                }
                Invoked {
                    status: http::StatusCode::OK,
                    headers,
                    data: response
                        .data
                        .map(|any| any.value)
                        .unwrap_or_default()
                        .into(),
                    grpc_status: Some(Status::ok()),
                }
            }
            Err(failed) => {
                let status = Status::new(
                    StatusCode::ALL
                        .get(failed.code() as usize)
                        .copied()
                        .unwrap_or(StatusCode::Unknown),
                    failed.message(),
                );
                let mut headers = failed.metadata().clone().into_headers();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Invoked {
                    status: invocation::http_status_of(status.code),
                    headers,
                    data: invocation::error_body(&status).into(),
                    grpc_status: Some(status),
                }
            }
        })
    }

    /// As the HTTP invokers: the mapped status 404 is NOT_FOUND, others of 400 or more INTERNAL.
    fn failure(&self, id: &str, answer: &Invoked) -> Option<ApiError> {
        status_error(
            &format!("gRPC app {}", self.app_id),
            &format!("app \"{id}\""),
            answer.status,
            &answer.data,
        )
    }
}
