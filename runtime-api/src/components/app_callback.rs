//! Delivery to the application's own gRPC server (`AppCallback`, at `app.grpc_callback_host`
//! (default loopback) and `app.grpc_callback_port`), as LayOtto does: after start-up it asks `ListTopicSubscriptions` (retrying until
//! the app answers), subscribes to each topic on its broker, and calls `OnTopicEvent` for every
//! event, honouring SUCCESS / RETRY / DROP with bounded retries. Runs on the backend pool (the
//! client is tonic).

use std::time::Duration;

use layotto_core::{backend::BackendHandle, config::Findings};
use layotto_proto::runtime::{
    app_callback_client::AppCallbackClient, topic_event_response::TopicEventResponseStatus,
};
use serde::Deserialize;
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use super::{
    Block,
    pubsub::{PubSub, Retries},
};
use crate::error::{ApiError, chain};

/// Pause between attempts to reach an app that is not up yet.
const APP_RETRY: Duration = Duration::from_secs(1);

/// The application this sidecar serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSettings {
    /// `app.app_id`: the `source` of the events it publishes.
    pub app_id: String,
    /// `app.grpc_callback_port`: where its `AppCallback` server listens, if it has one.
    pub grpc_callback_port: Option<u16>,
    /// `app.grpc_callback_host`: the host of that server (LayOtto's default: `127.0.0.1`; a pod
    /// address on Kubernetes).
    pub grpc_callback_host: String,
}

/// LayOtto's `app` block.
#[derive(Deserialize)]
struct AppConfig {
    app_id: String,
    grpc_callback_port: Option<u16>,
    grpc_callback_host: Option<String>,
}

impl AppSettings {
    /// The app block at `path`, recording problems in `findings`.
    pub fn decode(value: &Value, path: &str, findings: &mut Findings) -> Option<Self> {
        let app: AppConfig = findings.decode(value, path, &[])?;
        Some(Self {
            app_id: app.app_id,
            grpc_callback_port: app.grpc_callback_port,
            grpc_callback_host: app
                .grpc_callback_host
                .filter(|host| !host.trim().is_empty())
                .unwrap_or_else(|| "127.0.0.1".into()),
        })
    }
}

/// Starts delivering to the app's callback server, if it has one.
pub fn start(
    app: &AppSettings,
    brokers: &Block<dyn PubSub>,
    backend: &BackendHandle,
) -> Result<(), ApiError> {
    let Some(port) = app.grpc_callback_port else {
        return Ok(());
    };
    let endpoint = Endpoint::from_shared(format!("http://{}:{port}", app.grpc_callback_host))
        .map_err(|err| ApiError::InvalidArgument(err.to_string()))?
        .tcp_nodelay(true);
    let brokers: Vec<_> = brokers
        .iter()
        .map(|(name, broker)| (name.to_owned(), broker.clone()))
        .collect();
    let spawner = backend.clone();
    backend
        .spawn(async move {
            let channel = endpoint.connect_lazy();
            let mut warned = false;
            let subscriptions = loop {
                let mut client = AppCallbackClient::new(channel.clone());
                match client.list_topic_subscriptions(()).await {
                    Ok(reply) => break reply.into_inner().subscriptions,
                    Err(status) if !warned => {
                        warn!(port, %status, "the app's AppCallback does not answer yet; retrying every {APP_RETRY:?}");
                        warned = true;
                        tokio::time::sleep(APP_RETRY).await;
                    }
                    Err(_) => tokio::time::sleep(APP_RETRY).await,
                }
            };
            for subscription in subscriptions {
                let broker = brokers
                    .iter()
                    .find(|(name, _)| *name == subscription.pubsub_name)
                    .map(|(_, broker)| broker);
                let Some(broker) = broker else {
                    warn!(pubsub = %subscription.pubsub_name, "the app subscribes to a pub/sub that is not configured");
                    continue;
                };
                match broker.subscribe(&subscription.topic).await {
                    Ok(events) => {
                        info!(pubsub = %subscription.pubsub_name, topic = %subscription.topic, "delivering to the app");
                        let _ = spawner.spawn(forward(events, channel.clone()));
                    }
                    Err(err) => warn!(topic = %subscription.topic, "cannot subscribe: {}", chain(&err)),
                }
            }
        })
        .map_err(ApiError::from)
}

/// Hands each event of one subscription to the app, in order.
async fn forward(mut events: super::pubsub::Subscription, channel: Channel) {
    let mut client = AppCallbackClient::new(channel);
    while let Some(delivery) = events.recv().await {
        let mut retries = Retries::default();
        let status = loop {
            let answer = client
                .on_topic_event(delivery.event.clone())
                .await
                .map(|reply| reply.into_inner().status())
                .map_err(|status| status.to_string());
            if let Some(status) = retries.settle(&answer, tokio::time::sleep).await {
                break status;
            }
        };
        if status != TopicEventResponseStatus::Success {
            warn!(id = %delivery.event.id, topic = %delivery.event.topic, ?status, "event dropped");
        }
        delivery.finish();
    }
}
