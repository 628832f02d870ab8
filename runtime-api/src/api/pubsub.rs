//! The pub/sub rpcs: `PublishEvent` (as a CloudEvent) and the `SubscribeTopicEvents` stream with
//! SUCCESS / RETRY / DROP answers per event. Runs on the calling shard.

use std::rc::Rc;

use prost::Message;

use crate::components::pubsub::{
    Answer, DeadLetter, Deliveries, Retries, cloud_event, is_raw_payload,
};
use glommio::timer::sleep;
use layotto_proto::runtime::{
    PublishEventRequest, SubscribeTopicEventsRequest, SubscribeTopicEventsResponse,
    SubscribeTopicEventsResponseInitial, TopicEventRequest,
    subscribe_topic_events_request::SubscribeTopicEventsRequestType,
    subscribe_topic_events_response::SubscribeTopicEventsResponseType,
    topic_event_response::TopicEventResponseStatus,
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
        let broker = self.components().pubsubs.get_shared(&initial.pubsub_name)?;
        if initial.topic.is_empty() {
            return Err(ApiError::InvalidArgument("the topic is empty".into()).into());
        }
        let events = broker.subscribe(&initial.topic).await?;
        let initial_response = SubscribeTopicEventsResponseType::InitialResponse(
            SubscribeTopicEventsResponseInitial {},
        );
        responses
            .send(&SubscribeTopicEventsResponse {
                subscribe_topic_events_response_type: Some(initial_response),
            })
            .await?;
        let dead_letter = Some(initial.dead_letter_topic)
            .filter(|topic| !topic.is_empty())
            .map(|topic| DeadLetter::new(broker.clone(), topic));
        let events = Deliveries::new(events, is_raw_payload(&initial.metadata));
        deliver::<LayOttoStream>(events, dead_letter, &mut requests, &mut responses).await
    }
}

/// LayOtto's `SubscribeTopicEvents` messages.
struct LayOttoStream;

impl EventStream for LayOttoStream {
    type Request = SubscribeTopicEventsRequest;
    type Response = SubscribeTopicEventsResponse;

    fn event_message(event: &TopicEventRequest) -> Self::Response {
        SubscribeTopicEventsResponse {
            subscribe_topic_events_response_type: Some(
                SubscribeTopicEventsResponseType::EventMessage(event.clone()),
            ),
        }
    }

    fn processed(request: Self::Request) -> Option<(String, i32)> {
        match request.subscribe_topic_events_request_type? {
            SubscribeTopicEventsRequestType::EventProcessed(processed) => {
                Some((processed.id, processed.status.unwrap_or_default().status))
            }
            SubscribeTopicEventsRequestType::InitialRequest(_) => None,
        }
    }
}

/// How a streaming-subscription API spells its messages after the first: LayOtto's
/// `SubscribeTopicEvents` and Dapr's `SubscribeTopicEventsAlpha1` differ only in names (and in
/// how an event is encoded), so both deliver with [`deliver`].
pub(crate) trait EventStream {
    /// The client's messages.
    type Request: Message + Default;
    /// The server's messages.
    type Response: Message;
    /// The `event_message` response carrying `event`.
    fn event_message(event: &TopicEventRequest) -> Self::Response;
    /// The event id and status of an `event_processed` message; `None` for any other.
    fn processed(request: Self::Request) -> Option<(String, i32)>;
}

/// Sends each event of `events` as `event_message` and waits for the client's
/// `event_processed` of its id: SUCCESS and DROP move on, RETRY (or an unknown status) sends it
/// again, bounded by [`Retries`]; an event not taken goes to `dead_letter` when there is one.
/// Ends when the client does.
pub(crate) async fn deliver<S: EventStream>(
    mut events: Deliveries,
    dead_letter: Option<DeadLetter>,
    requests: &mut Requests,
    responses: &mut Responses,
) -> Result<(), Status> {
    loop {
        let delivery = futures_lite::future::or(async { Ok(events.recv().await) }, async {
            // Nothing is in flight: a message now is out of turn, the end is the end.
            match requests.next::<S::Request>().await? {
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
        let status = loop {
            responses.send(&S::event_message(&delivery.event)).await?;
            let Some(answer) = processed::<S>(requests, &delivery.event.id).await? else {
                return Ok(());
            };
            if let Some(status) = retries.settle(&answer, sleep).await {
                break status;
            }
        };
        if status == TopicEventResponseStatus::Success {
            delivery.finish();
        } else {
            DeadLetter::give_up(dead_letter.as_ref(), delivery).await;
        }
    }
}

/// Reads the client's `event_processed` for event `id` (skipping answers to other ids); `None`
/// when the client has finished.
async fn processed<S: EventStream>(
    requests: &mut Requests,
    id: &str,
) -> Result<Option<Answer>, Status> {
    while let Some(message) = requests.next::<S::Request>().await? {
        if let Some((answered, status)) = S::processed(message)
            && answered == id
        {
            let status = TopicEventResponseStatus::try_from(status).unwrap_or_default();
            return Ok(Some(Ok(status)));
        }
    }
    Ok(None)
}
