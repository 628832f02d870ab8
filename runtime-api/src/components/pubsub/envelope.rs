//! Events as JSON CloudEvents, the form Dapr and LayOtto keep them in a broker
//! (components-contrib `pubsub/envelope.go`: `NewCloudEventsEnvelope`, `FromCloudEvent`,
//! `FromRawPayload`), so their sidecars and ours read each other's events. Pure functions; used
//! on the backend pool by the redis broker.
//!
//! Writing: `id`, `specversion`, `datacontenttype`, `source`, `type`, `topic`, `pubsubname`,
//! `time`, and the data as Dapr puts it — JSON data (`application/json`) as a JSON value,
//! `application/octet-stream` and protobuf as `data_base64`, text as a JSON string. Where Dapr
//! would lose bytes (data that is not valid JSON under a JSON type, or not UTF-8 under a text
//! type) it goes in `data_base64`, which every Dapr reader accepts.
//!
//! Reading: a JSON object with a string `id` is a CloudEvent (missing `source`, `type`,
//! `specversion` take Dapr's defaults); anything else is a raw payload (Dapr's `rawPayload`),
//! delivered as `application/octet-stream` under the stream entry's id, as Dapr's
//! `FromRawPayload` does (which draws a random id; the entry id stays the same on redelivery).

use std::{collections::HashMap, time::SystemTime};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use bytes::Bytes;
use layotto_proto::runtime::TopicEventRequest;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Dapr's `source` for events it cannot attribute (raw payloads).
const DEFAULT_SOURCE: &str = "Dapr";
/// Dapr's event `type`.
const DEFAULT_TYPE: &str = "com.dapr.event.sent";
/// The CloudEvents version.
const SPEC_VERSION: &str = "1.0";
/// The content type of raw payloads.
const OCTET_STREAM: &str = "application/octet-stream";

/// A CloudEvent as written.
#[derive(Serialize)]
struct Outgoing<'a> {
    id: &'a str,
    specversion: &'a str,
    datacontenttype: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    topic: &'a str,
    pubsubname: &'a str,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

/// The `data` attribute as written.
#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

/// A CloudEvent as read; only `id` is required.
#[derive(Deserialize)]
struct Incoming<'a> {
    id: String,
    source: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    specversion: Option<String>,
    datacontenttype: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    data_base64: Option<String>,
}

/// The media type of a content type, lower case, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_json(content_type: &str) -> bool {
    media_type(content_type) == "application/json"
}

fn is_binary(content_type: &str) -> bool {
    matches!(
        media_type(content_type).as_str(),
        OCTET_STREAM | "application/x-protobuf" | "application/cloudevents+protobuf"
    )
}

/// The metadata that sends the data as it is, without a CloudEvent, on publish, and that asks
/// a subscription for raw payloads (Dapr's).
const RAW_PAYLOAD: &str = "rawPayload";

/// Whether `metadata` sets `rawPayload` true: Go's `strconv.ParseBool` spellings, as
/// components-contrib's `IsRawPayload` reads it (a JSON string's quotes aside).
pub(crate) fn is_raw_payload(metadata: &HashMap<String, String>) -> bool {
    metadata.get(RAW_PAYLOAD).is_some_and(|raw| {
        matches!(
            raw.trim_matches('"'),
            "1" | "t" | "T" | "true" | "TRUE" | "True"
        )
    })
}

/// Sets `rawPayload` in `metadata`: published with it, an event's data go to the broker as they
/// are.
pub(super) fn mark_raw_payload(metadata: &mut HashMap<String, String>) {
    metadata.insert(RAW_PAYLOAD.into(), "true".into());
}

/// The CloudEvent JSON of `event`, as Dapr writes it; with metadata `rawPayload` true, the
/// data alone, as Dapr publishes it then.
pub(super) fn to_json(event: &TopicEventRequest) -> Vec<u8> {
    if is_raw_payload(&event.metadata) {
        return event.data.to_vec();
    }
    cloud_event_json(event)
}

/// The CloudEvent JSON of `event`, as Dapr writes it, whatever its metadata says (what an HTTP
/// app is sent).
pub(crate) fn cloud_event_json(event: &TopicEventRequest) -> Vec<u8> {
    let content_type = event.data_content_type.as_str();
    let (data, data_base64) = if is_binary(content_type) {
        (None, Some(BASE64.encode(&event.data)))
    } else if is_json(content_type) {
        match serde_json::from_slice::<&RawValue>(&event.data) {
            Ok(value) => (Some(Data::Json(value)), None),
            Err(_) => (None, Some(BASE64.encode(&event.data))),
        }
    } else {
        match std::str::from_utf8(&event.data) {
            Ok(text) => (Some(Data::Text(text)), None),
            Err(_) => (None, Some(BASE64.encode(&event.data))),
        }
    };
    let outgoing = Outgoing {
        id: &event.id,
        specversion: &event.spec_version,
        datacontenttype: content_type,
        source: &event.source,
        kind: &event.r#type,
        topic: &event.topic,
        pubsubname: &event.pubsub_name,
        time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        data,
        data_base64,
    };
    serde_json::to_vec(&outgoing).expect("a CloudEvent always serializes")
}

/// The event a `rawPayload` subscription gets for `event`, as daprd's `FromRawPayload` of the
/// message: the bytes the broker holds for it (as [`to_json`] writes them) as
/// `application/octet-stream` data under Dapr's default source and type, its id, topic and
/// pub/sub and metadata kept.
pub(super) fn as_raw_payload(event: TopicEventRequest) -> TopicEventRequest {
    let data = Bytes::from(to_json(&event));
    TopicEventRequest {
        id: event.id,
        source: DEFAULT_SOURCE.into(),
        r#type: DEFAULT_TYPE.into(),
        spec_version: SPEC_VERSION.into(),
        data_content_type: OCTET_STREAM.into(),
        data,
        topic: event.topic,
        pubsub_name: event.pubsub_name,
        metadata: event.metadata,
    }
}

/// The event in `payload` (a CloudEvent, or a raw payload known by `entry_id`), delivered on
/// `topic` of the pub/sub component `pubsub_name` with `metadata`.
pub(super) fn from_payload(
    payload: &[u8],
    entry_id: &str,
    topic: &str,
    pubsub_name: &str,
    metadata: HashMap<String, String>,
) -> TopicEventRequest {
    let raw = || TopicEventRequest {
        id: entry_id.to_owned(),
        source: DEFAULT_SOURCE.into(),
        r#type: DEFAULT_TYPE.into(),
        spec_version: SPEC_VERSION.into(),
        data_content_type: OCTET_STREAM.into(),
        data: Bytes::copy_from_slice(payload),
        topic: topic.to_owned(),
        pubsub_name: pubsub_name.to_owned(),
        metadata: metadata.clone(),
    };
    let Ok(incoming) = serde_json::from_slice::<Incoming>(payload) else {
        return raw();
    };
    let is_text = |value: &RawValue| value.get().starts_with('"');
    let data_content_type = incoming
        .datacontenttype
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            match (&incoming.data_base64, incoming.data) {
                (Some(_), _) => OCTET_STREAM,
                (None, Some(value)) if !is_text(value) => "application/json",
                _ => "text/plain",
            }
            .into()
        });
    let data = match (&incoming.data_base64, incoming.data) {
        (Some(encoded), _) => match BASE64.decode(encoded) {
            Ok(bytes) => Bytes::from(bytes),
            Err(_) => return raw(),
        },
        // A JSON string is the text, except under a JSON type, where it is JSON text itself.
        (None, Some(value)) if is_text(value) && !is_json(&data_content_type) => {
            Bytes::from(serde_json::from_str::<String>(value.get()).unwrap_or_default())
        }
        (None, Some(value)) => Bytes::copy_from_slice(value.get().as_bytes()),
        (None, None) => Bytes::new(),
    };
    TopicEventRequest {
        id: incoming.id,
        source: incoming.source.unwrap_or_else(|| DEFAULT_SOURCE.into()),
        r#type: incoming.kind.unwrap_or_else(|| DEFAULT_TYPE.into()),
        spec_version: incoming.specversion.unwrap_or_else(|| SPEC_VERSION.into()),
        data_content_type,
        data,
        topic: topic.to_owned(),
        pubsub_name: pubsub_name.to_owned(),
        metadata,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn event(content_type: &str, data: &[u8]) -> TopicEventRequest {
        TopicEventRequest {
            id: "id-1".into(),
            source: "app1".into(),
            r#type: DEFAULT_TYPE.into(),
            spec_version: SPEC_VERSION.into(),
            data_content_type: content_type.into(),
            data: Bytes::copy_from_slice(data),
            topic: "orders".into(),
            pubsub_name: "ps".into(),
            metadata: HashMap::new(),
        }
    }

    fn written(content_type: &str, data: &[u8]) -> Value {
        serde_json::from_slice(&to_json(&event(content_type, data))).unwrap()
    }

    fn read_back(content_type: &str, data: &[u8]) -> TopicEventRequest {
        from_payload(
            &to_json(&event(content_type, data)),
            "1-0",
            "orders",
            "ps",
            HashMap::new(),
        )
    }

    #[test]
    fn data_is_written_as_dapr_writes_it() {
        let exact = br#"{"n": 12345678901234567890.5}"#;
        let bytes = to_json(&event("application/json", exact));
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(r#""data":{"n": 12345678901234567890.5}"#),
            "JSON data is embedded as it is: {text}"
        );
        let json: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (&json["id"], &json["source"], &json["type"]),
            (&json!("id-1"), &json!("app1"), &json!(DEFAULT_TYPE))
        );
        assert_eq!(
            (&json["specversion"], &json["topic"], &json["pubsubname"]),
            (&json!("1.0"), &json!("orders"), &json!("ps"))
        );
        assert!(json["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(written("text/plain", b"hi")["data"], json!("hi"));
        let binary = written("application/octet-stream", &[0, 255]);
        assert_eq!(binary["data_base64"], json!("AP8="));
        assert!(binary.get("data").is_none());
        // Where Dapr would lose bytes, base64 keeps them.
        assert_eq!(written("text/plain", &[0xff])["data_base64"], json!("/w=="));
        assert_eq!(
            written("application/json", b"not json")["data_base64"],
            json!("bm90IGpzb24=")
        );
    }

    #[test]
    fn a_raw_payload_is_written_as_it_is() {
        let mut raw = event("application/json", br#"{"orderId":1}"#);
        raw.metadata.insert("rawPayload".into(), "true".into());
        assert_eq!(to_json(&raw), br#"{"orderId":1}"#);
        raw.metadata.insert("rawPayload".into(), "false".into());
        assert_ne!(to_json(&raw), br#"{"orderId":1}"#);
    }

    #[test]
    fn a_raw_payload_subscription_gets_the_brokers_bytes_and_dead_letters_them_unchanged() {
        let published = event("application/json", br#"{"orderId":1}"#);
        let raw = as_raw_payload(published.clone());
        let held: serde_json::Value = serde_json::from_slice(&raw.data).unwrap();
        assert_eq!(
            (&held["id"], &held["source"], &held["data"]),
            (&json!("id-1"), &json!("app1"), &json!({"orderId": 1}))
        );
        assert_eq!(
            (raw.id.as_str(), raw.source.as_str(), raw.r#type.as_str()),
            ("id-1", DEFAULT_SOURCE, DEFAULT_TYPE)
        );
        assert_eq!(raw.data_content_type, OCTET_STREAM);
        assert_eq!(
            (&raw.topic, &raw.pubsub_name),
            (&published.topic, &published.pubsub_name)
        );
        // The wrapping adds no metadata of its own (daprd's adds none).
        assert_eq!(raw.metadata, published.metadata);
        // Published again marked raw (to a dead-letter topic), the broker holds the same bytes.
        let mut moved = raw.clone();
        mark_raw_payload(&mut moved.metadata);
        assert_eq!(to_json(&moved), &raw.data[..]);
        // What was published raw stays the data alone.
        let mut sent_raw = event("text/plain", b"plain bytes");
        sent_raw.metadata.insert("rawPayload".into(), "true".into());
        assert_eq!(&as_raw_payload(sent_raw).data[..], b"plain bytes");
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        for (content_type, data) in [
            ("application/json", &br#"{"a":[1,2.50,"x"]}"#[..]),
            ("application/json; charset=utf-8", br#""quoted""#),
            ("text/plain", "héllo".as_bytes()),
            ("text/plain", &[0xff, 0]),
            ("application/octet-stream", &[1, 2, 3]),
            ("application/x-protobuf", &[8, 1]),
            ("application/xml", b"<a/>"),
        ] {
            let event = read_back(content_type, data);
            assert_eq!(&event.data[..], data, "{content_type}");
            assert_eq!(event.data_content_type, content_type);
            assert_eq!((event.id.as_str(), event.source.as_str()), ("id-1", "app1"));
        }
    }

    #[test]
    fn daprs_events_and_raw_payloads_are_read() {
        let dapr = br#"{"id":"5","source":"checkout","type":"com.dapr.event.sent","specversion":"1.0","datacontenttype":"application/json","data":{"orderId":1},"topic":"t","pubsubname":"other","traceid":""}"#;
        let event = from_payload(dapr, "9-0", "orders", "ps", HashMap::new());
        assert_eq!(&event.data[..], br#"{"orderId":1}"#);
        assert_eq!(
            (event.id.as_str(), event.source.as_str()),
            ("5", "checkout")
        );
        assert_eq!(
            (event.topic.as_str(), event.pubsub_name.as_str()),
            ("orders", "ps")
        );
        let minimal = from_payload(
            br#"{"id":"7","data":"x"}"#,
            "9-0",
            "t",
            "ps",
            HashMap::new(),
        );
        assert_eq!(
            (&minimal.data[..], minimal.data_content_type.as_str()),
            (&b"x"[..], "text/plain")
        );
        assert_eq!(
            (minimal.source.as_str(), minimal.spec_version.as_str()),
            (DEFAULT_SOURCE, "1.0")
        );
        for raw in [&b"plain bytes \xff"[..], br#"{"orderId":1}"#, b"[1]"] {
            let event = from_payload(raw, "9-0", "t", "ps", HashMap::new());
            assert_eq!(&event.data[..], raw);
            assert_eq!(
                (event.id.as_str(), event.data_content_type.as_str()),
                ("9-0", OCTET_STREAM)
            );
        }
    }
}
