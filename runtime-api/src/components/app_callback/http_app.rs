//! Dapr's HTTP channel to the app (`app_protocol` `http`, daprd's default; the JS SDK's
//! `DaprServer`, Python's FastAPI and Flask extensions): `GET /dapr/subscribe` answers a JSON
//! list of `{pubsubname, topic, route | routes: {rules, default}, metadata}` (404: no
//! subscriptions), then each event is POSTed to its route as a CloudEvent
//! (`Content-Type: application/cloudevents+json`, the event's metadata and `pubsubname` as
//! headers), with daprd's rules for the answer: a 2xx with an empty body, a body that is not
//! JSON or `{"status": "SUCCESS"}` (or `""`) is delivered; `{"status": "RETRY"}`, an unknown
//! status, a status that is not 2xx (but 404) and no answer are retried; 404 and
//! `{"status": "DROP"}` drop the event. hyper on the backend pool.

use std::{collections::HashMap, fmt, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use layotto_proto::runtime::{TopicEventRequest, topic_event_response::TopicEventResponseStatus};
use serde::Deserialize;
use tracing::error;

use super::{
    AppChannel, AppSubscription, BULK_EVENT_TYPE, Bulk, Listed, answers_by_entry,
    subscription_routes,
};
use crate::{
    components::{
        http_client::HttpClient,
        pubsub::{Answer, cloud_event_json, is_raw_payload},
    },
    error::chain,
};

/// How long the app may take over one request before the attempt counts as failed (and is
/// retried): the redis broker's default `processingTimeout`, after which another consumer may
/// claim the event anyway.
pub(super) const APP_TIMEOUT: Duration = Duration::from_secs(60);

/// The content type of an event sent to the app.
const CLOUD_EVENT_JSON: &str = "application/cloudevents+json";

/// The app's HTTP server.
pub(super) struct HttpApp {
    /// `http://host:port`.
    base: String,
    app_id: String,
    client: HttpClient,
}

impl HttpApp {
    /// The app `app_id` at `base` (`http://host:port`), reached with `client`.
    pub(super) fn new(app_id: &str, base: String, client: HttpClient) -> Self {
        Self {
            base,
            app_id: app_id.to_owned(),
            client,
        }
    }

    /// The URL of `route` (a path, with or without its leading `/`, as daprd takes it).
    fn url(&self, route: &str) -> String {
        let slash = if route.starts_with('/') { "" } else { "/" };
        format!("{}{slash}{route}", self.base)
    }
}

impl fmt::Display for HttpApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dapr HTTP app at {}", self.base)
    }
}

/// One entry of `/dapr/subscribe` (daprd's `SubscriptionJSON`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionJson {
    #[serde(rename = "pubsubname")]
    pubsub_name: String,
    topic: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    routes: Option<RoutesJson>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    dead_letter_topic: Option<String>,
    #[serde(default)]
    bulk_subscribe: Option<BulkJson>,
}

#[derive(Deserialize)]
struct RoutesJson {
    #[serde(default)]
    rules: Option<Vec<RuleJson>>,
    #[serde(default)]
    default: Option<String>,
}

#[derive(Deserialize)]
struct RuleJson {
    #[serde(default, rename = "match")]
    matches: Option<String>,
    #[serde(default)]
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkJson {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    max_messages_count: i64,
    #[serde(default)]
    max_await_duration_ms: i64,
}

/// The app's answer to a bulk delivery (daprd's `AppBulkResponse`).
#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    statuses: Vec<BulkStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkStatus {
    entry_id: String,
    #[serde(default)]
    status: String,
}

/// The app's answer to an event (daprd's `AppResponse`).
#[derive(Deserialize)]
struct AppResponse {
    #[serde(default)]
    status: Option<String>,
}

#[async_trait]
impl AppChannel for HttpApp {
    async fn subscriptions(&self) -> Listed {
        let headers = [
            ("content-type", "application/json"),
            ("dapr-app-id", self.app_id.as_str()),
        ];
        let url = self.url("dapr/subscribe");
        let (parts, body) = match self
            .client
            .fetch(Method::GET, &url, headers, Bytes::new())
            .await
        {
            Ok(answer) => answer,
            Err(err) => return Listed::NoAnswer(chain(&err).to_string()),
        };
        match parts.status {
            StatusCode::OK => Listed::Subscriptions(listed(&body).unwrap_or_else(|err| {
                error!(app = %self, "cannot read the app's subscriptions: {err}");
                Vec::new()
            })),
            StatusCode::NOT_FOUND => Listed::Subscriptions(Vec::new()),
            status => {
                error!(app = %self, %status, "the app answered GET /dapr/subscribe with an error");
                Listed::Subscriptions(Vec::new())
            }
        }
    }

    async fn deliver(&self, event: &TopicEventRequest, route: &str) -> Answer {
        let mut headers = vec![
            ("content-type", CLOUD_EVENT_JSON),
            ("pubsubname", event.pubsub_name.as_str()),
        ];
        headers.extend(
            event
                .metadata
                .iter()
                .filter(|(key, value)| is_header(key, value))
                .map(|(key, value)| (key.as_str(), value.as_str())),
        );
        let body = Bytes::from(cloud_event_json(event));
        let url = self.url(route);
        let (parts, body) = self
            .client
            .fetch(Method::POST, &url, headers, body)
            .await
            .map_err(|err| chain(&err).to_string())?;
        answer(parts.status, &body)
    }

    /// daprd's bulk delivery over HTTP: one POST to the route of a JSON envelope (`id`, `type`,
    /// `topic`, `pubsubname`, `metadata`, and `entries` of `entryId`, `event` — the CloudEvent
    /// —, `metadata`, `contentType`), answered by `{"statuses": [{"entryId", "status"}]}`.
    async fn deliver_bulk(
        &self,
        events: &[&TopicEventRequest],
        route: &str,
    ) -> Result<Vec<Answer>, String> {
        let Some(first) = events.first() else {
            return Ok(Vec::new());
        };
        let entries: Vec<serde_json::Value> = events
            .iter()
            .map(|event| {
                let cloud_event: serde_json::Value =
                    serde_json::from_slice(&cloud_event_json(event)).unwrap_or_default();
                serde_json::json!({
                    "entryId": event.id, "event": cloud_event,
                    "metadata": event.metadata, "contentType": CLOUD_EVENT_JSON,
                })
            })
            .collect();
        let envelope = serde_json::json!({
            "id": format!("bulk-{}", first.id), "type": BULK_EVENT_TYPE,
            "topic": first.topic, "pubsubname": first.pubsub_name,
            "metadata": {}, "entries": entries,
        });
        let headers = [
            ("content-type", "application/json"),
            ("pubsubname", first.pubsub_name.as_str()),
        ];
        let (parts, body) = self
            .client
            .fetch(
                Method::POST,
                &self.url(route),
                headers,
                Bytes::from(envelope.to_string()),
            )
            .await
            .map_err(|err| chain(&err).to_string())?;
        bulk_answers(events, parts.status, &body)
    }
}

/// Whether `name: value` can travel as a header of its own (the event's metadata; the content
/// headers are the request's).
fn is_header(name: &str, value: &str) -> bool {
    !name.eq_ignore_ascii_case("content-type")
        && !name.eq_ignore_ascii_case("content-length")
        && HeaderName::try_from(name).is_ok()
        && HeaderValue::try_from(value).is_ok()
}

/// The subscriptions in the body of `/dapr/subscribe` (empty: none), each with its route
/// (daprd's: `routes.default`, else `route`; rules first).
fn listed(body: &[u8]) -> Result<Vec<AppSubscription>, serde_json::Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let entries: Vec<SubscriptionJson> = serde_json::from_slice(body)?;
    Ok(entries
        .into_iter()
        .filter_map(|entry| {
            let bulk = entry
                .bulk_subscribe
                .filter(|bulk| bulk.enabled)
                .map(|bulk| Bulk::new(bulk.max_messages_count, bulk.max_await_duration_ms));
            let raw_payload = entry.metadata.as_ref().is_some_and(is_raw_payload);
            let (rules, default) = match &entry.routes {
                Some(routes) => (
                    routes.rules.as_deref().unwrap_or_default(),
                    routes.default.as_deref().unwrap_or_default(),
                ),
                None => (&[][..], ""),
            };
            // daprd's HTTP rules: the app's, then `routes.default`, else v1alpha1's `route`.
            let fallback = [default, entry.route.as_deref().unwrap_or_default()]
                .into_iter()
                .find(|path| !path.is_empty());
            let rules = rules.iter().map(|rule| {
                (
                    rule.matches.as_deref().unwrap_or_default(),
                    rule.path.as_deref().unwrap_or_default(),
                )
            });
            let routes = subscription_routes(&entry.topic, rules, fallback)?;
            Some(AppSubscription {
                pubsub: entry.pubsub_name,
                topic: entry.topic,
                routes,
                dead_letter_topic: entry.dead_letter_topic.filter(|topic| !topic.is_empty()),
                bulk,
                raw_payload,
            })
        })
        .collect())
}

/// What the app's answer `status` with `body` means (daprd's HTTP postman).
fn answer(status: StatusCode, body: &[u8]) -> Answer {
    if let Some(outcome) = status_outcome(status, body) {
        return outcome;
    }
    let Ok(response) = serde_json::from_slice::<AppResponse>(body) else {
        // Empty or not JSON: delivered.
        return Ok(TopicEventResponseStatus::Success);
    };
    status_named(response.status.as_deref().unwrap_or_default())
}

/// What the app's `status` alone decides, as daprd reads it before the body: 404 drops, any
/// other status outside 2xx fails the attempt (quoting the start of `body`); `None` for 2xx.
fn status_outcome(status: StatusCode, body: &[u8]) -> Option<Answer> {
    if status == StatusCode::NOT_FOUND {
        return Some(Ok(TopicEventResponseStatus::Drop));
    }
    (!status.is_success()).then(|| {
        Err(format!(
            "the app answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(256)])
        ))
    })
}

/// A status as the app names it (none: SUCCESS).
fn status_named(status: &str) -> Answer {
    match status {
        "" | "SUCCESS" => Ok(TopicEventResponseStatus::Success),
        "RETRY" => Ok(TopicEventResponseStatus::Retry),
        "DROP" => Ok(TopicEventResponseStatus::Drop),
        other => Err(format!("the app answered an unknown status \"{other}\"")),
    }
}

/// The answers of a bulk delivery of `events` answered `status` with `body`, as daprd reads
/// them: 404 drops every event, another error fails the attempt, and each entry of the JSON
/// body's `statuses` is its event's (an event without one fails).
fn bulk_answers(
    events: &[&TopicEventRequest],
    status: StatusCode,
    body: &[u8],
) -> Result<Vec<Answer>, String> {
    match status_outcome(status, body) {
        Some(Ok(dropped)) => return Ok(vec![Ok(dropped); events.len()]),
        Some(Err(why)) => return Err(why),
        None => {}
    }
    let response: BulkResponse = serde_json::from_slice(body)
        .map_err(|err| format!("the app's bulk answer is not daprd's JSON: {err}"))?;
    let statuses = response.statuses.into_iter();
    let statuses = statuses.map(|entry| (entry.entry_id, entry.status));
    Ok(answers_by_entry(events, statuses, |status| {
        status_named(status)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_daprs_http_rules() {
        use TopicEventResponseStatus::*;
        let ok = StatusCode::OK;
        assert_eq!(answer(ok, b""), Ok(Success));
        assert_eq!(answer(StatusCode::NO_CONTENT, b""), Ok(Success));
        assert_eq!(answer(ok, b"not json"), Ok(Success));
        assert_eq!(answer(ok, br#"{"status":"SUCCESS"}"#), Ok(Success));
        assert_eq!(answer(ok, br#"{"status":""}"#), Ok(Success));
        assert_eq!(answer(ok, br#"{"status":"RETRY"}"#), Ok(Retry));
        assert_eq!(answer(ok, br#"{"status":"DROP"}"#), Ok(Drop));
        assert!(answer(ok, br#"{"status":"MAYBE"}"#).is_err());
        assert_eq!(answer(StatusCode::NOT_FOUND, b""), Ok(Drop));
        assert!(answer(StatusCode::INTERNAL_SERVER_ERROR, b"boom").is_err());
        assert!(answer(StatusCode::FOUND, b"").is_err());
    }

    #[test]
    fn bulk_answers_follow_daprs_http_rules() {
        use TopicEventResponseStatus::*;
        let (a, b) = (
            TopicEventRequest {
                id: "a".into(),
                ..Default::default()
            },
            TopicEventRequest {
                id: "b".into(),
                ..Default::default()
            },
        );
        let events = [&a, &b];
        let body = br#"{"statuses": [{"entryId": "b", "status": "DROP"}, {"entryId": "a", "status": "SUCCESS"}]}"#;
        assert_eq!(
            bulk_answers(&events, StatusCode::OK, body),
            Ok(vec![Ok(Success), Ok(Drop)])
        );
        let partial = br#"{"statuses": [{"entryId": "a", "status": "RETRY"}]}"#;
        let answers = bulk_answers(&events, StatusCode::OK, partial).unwrap();
        assert_eq!(answers[0], Ok(Retry));
        assert!(answers[1].is_err(), "an entry without a status fails");
        assert_eq!(
            bulk_answers(&events, StatusCode::NOT_FOUND, b""),
            Ok(vec![Ok(Drop), Ok(Drop)])
        );
        assert!(bulk_answers(&events, StatusCode::INTERNAL_SERVER_ERROR, b"boom").is_err());
        assert!(bulk_answers(&events, StatusCode::OK, b"not json").is_err());
    }

    #[test]
    fn subscriptions_take_daprs_route_or_routes_rules_first() {
        let body = br#"[
            {"pubsubname": "ps", "topic": "a", "route": "/a"},
            {"pubsubname": "ps", "topic": "b", "route": "/ignored",
             "routes": {"rules": [{"match": "event.type == 'x'", "path": "/x"}], "default": "/b"}},
            {"pubsubname": "ps", "topic": "c", "routes": {"rules": [{"match": "", "path": "/c"}]}},
            {"pubsubname": "ps", "topic": "none"},
            {"pubsubname": "ps", "topic": "d", "route": "d", "metadata": {"k": "v"},
             "deadLetterTopic": "dlq", "bulkSubscribe": {"enabled": false}, "extra": 1},
            {"pubsubname": "ps", "topic": "e", "route": "/e",
             "bulkSubscribe": {"enabled": true, "maxMessagesCount": 7}}
        ]"#;
        let subscriptions = listed(body).unwrap();
        let bulk: Vec<Option<Bulk>> = subscriptions.iter().map(|s| s.bulk).collect();
        assert_eq!(bulk[..4], [None; 4]);
        assert_eq!(bulk[4], Some(Bulk::new(7, 0)), "daprd's default wait");
        let routes: Vec<(String, String)> = subscriptions
            .into_iter()
            .map(|s| (s.topic, s.routes.describe()))
            .collect();
        let expected = [
            ("a", "/a"),
            ("b", "/x | /b"),
            ("c", "/c"),
            ("d", "d"),
            ("e", "/e"),
        ]
        .map(|(t, r)| (t.to_owned(), r.to_owned()));
        assert_eq!(routes, expected);
        assert!(listed(b"").unwrap().is_empty());
        assert!(listed(b"{").is_err());
    }
}
