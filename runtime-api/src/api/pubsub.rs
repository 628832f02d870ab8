//! The pub/sub rpcs: `PublishEvent` (as a CloudEvent) and the `SubscribeTopicEvents` stream with
//! SUCCESS / RETRY / DROP answers per event. Runs on the calling shard.

use std::rc::Rc;

use crate::components::pubsub::Answer;
use crate::components::pubsub::Retries;
use crate::components::pubsub::cloud_event;
use glommio::timer::sleep;
use layotto_proto::runtime::{
    PublishEventRequest, SubscribeTopicEventsRequest, SubscribeTopicEventsResponse,
    SubscribeTopicEventsResponseInitial,
    subscribe_topic_events_request::SubscribeTopicEventsRequestType,
    subscribe_topic_events_response::SubscribeTopicEventsResponseType,
};

use super::{RuntimeApi, path};
use crate::{
    error::ApiError,
    grpc::{
        call::{Requests, Responses},
        router::{Router, bidirectional, unary},
        status::Status,
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<RuntimeApi>) {
    router
        .add(
            path("PublishEvent"),
            unary(api.clone(), RuntimeApi::publish_event),
        )
        .add(
            path("SubscribeTopicEvents"),
            bidirectional(api.clone(), RuntimeApi::subscribe_topic_events),
        );
}

impl RuntimeApi {
    async fn publish_event(self: Rc<Self>, request: PublishEventRequest) -> Result<(), Status> {
        let broker = self.components().pubsubs.get(&request.pubsub_name)?;
        if request.topic.is_empty() {
            return Err(ApiError::InvalidArgument("the topic is empty".into()).into());
        }
        let event = cloud_event(
            self.runtime.app_id(),
            &request.pubsub_name,
            &request.topic,
            request.data,
            request.data_content_type,
            request.metadata,
        );
        Ok(broker.publish(event).await?)
    }

    /// The first message subscribes (answered by `initial_response`); then each event is sent
    /// as `event_message` and waits for the client's `event_processed` of its id: SUCCESS and
    /// DROP move on, RETRY sends it again (bounded, see [`next_step`]). Ends when the client does.
    async fn subscribe_topic_events(
        self: Rc<Self>,
        mut requests: Requests,
        mut responses: Responses,
    ) -> Result<(), Status> {
        let first = requests
            .next::<SubscribeTopicEventsRequest>()
            .await?
            .and_then(|first| first.subscribe_topic_events_request_type);
        let Some(SubscribeTopicEventsRequestType::InitialRequest(initial)) = first else {
            return Err(ApiError::InvalidArgument(
                "the first message must be an initial_request".into(),
            )
            .into());
        };
        let broker = self.components().pubsubs.get(&initial.pubsub_name)?;
        if initial.topic.is_empty() {
            return Err(ApiError::InvalidArgument("the topic is empty".into()).into());
        }
        let mut events = broker.subscribe(&initial.topic).await?;
        let initial_response = SubscribeTopicEventsResponseType::InitialResponse(
            SubscribeTopicEventsResponseInitial {},
        );
        responses
            .send(&SubscribeTopicEventsResponse {
                subscribe_topic_events_response_type: Some(initial_response),
            })
            .await?;
        loop {
            let delivery = futures_lite::future::or(async { Ok(events.recv().await) }, async {
                // Nothing is in flight: a message now is out of turn, the end is the end.
                match requests.next::<SubscribeTopicEventsRequest>().await? {
                    None => Ok(None),
                    Some(_) => Err(Status::from(ApiError::InvalidArgument(
                        "event_processed for no event in flight".into(),
                    ))),
                }
            })
            .await?;
            let Some(delivery) = delivery else {
                return Ok(());
            };
            let mut retries = Retries::default();
            loop {
                let message =
                    SubscribeTopicEventsResponseType::EventMessage(delivery.event.clone());
                responses
                    .send(&SubscribeTopicEventsResponse {
                        subscribe_topic_events_response_type: Some(message),
                    })
                    .await?;
                let Some(answer) = processed(&mut requests, &delivery.event.id).await? else {
                    return Ok(());
                };
                if retries.settle(&answer, sleep).await.is_some() {
                    break;
                }
            }
            delivery.finish();
        }
    }
}

/// Reads the client's `event_processed` for event `id` (skipping answers to other ids); `None`
/// when the client has finished.
async fn processed(requests: &mut Requests, id: &str) -> Result<Option<Answer>, Status> {
    while let Some(message) = requests.next::<SubscribeTopicEventsRequest>().await? {
        if let Some(SubscribeTopicEventsRequestType::EventProcessed(processed)) =
            message.subscribe_topic_events_request_type
            && processed.id == id
        {
            let status = processed.status.unwrap_or_default().status();
            return Ok(Some(Ok(status)));
        }
    }
    Ok(None)
}
