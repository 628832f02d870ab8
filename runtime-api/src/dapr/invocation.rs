//! daprd's rules of service invocation that both Dapr APIs follow (`pkg/messaging/v1/util.go`,
//! `pkg/api/grpc` `InvokeService`): which of a caller's headers the app gets, which of the
//! app's headers the caller gets back over HTTP and over gRPC, and the gRPC status of an HTTP
//! app's answer. Sans-IO; used on the serving shard.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::grpc::status::{Code, Status};

/// The header naming the calling app, as daprd stamps it on every invocation.
pub(crate) const CALLER_ID_HEADER: &str = "dapr-caller-app-id";
/// The header naming the invoked app.
pub(crate) const CALLEE_ID_HEADER: &str = "dapr-callee-app-id";
/// The gRPC response metadata carrying an HTTP app's status (daprd's `daprHTTPStatusHeader`).
pub(crate) const HTTP_STATUS_HEADER: &str = "dapr-http-status";

/// Headers of the caller daprd never passes on: its API token, the target in `dapr-app-id`,
/// and the identity headers it stamps itself (a caller cannot spoof them).
const NOT_PASSED_ON: [&str; 5] = [
    "dapr-api-token",
    "dapr-app-id",
    "dapr-caller-namespace",
    CALLER_ID_HEADER,
    CALLEE_ID_HEADER,
];

/// IANA's permanent header names that daprd prefixes with `dapr-` in gRPC metadata
/// (`isPermanentHTTPHeader`), lower-cased.
const PERMANENT_HEADERS: [&str; 28] = [
    "accept",
    "accept-charset",
    "accept-language",
    "accept-ranges",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "cache-control",
    "content-type",
    "content-length",
    "cookie",
    "date",
    "expect",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-schedule-tag-match",
    "if-unmodified-since",
    "max-forwards",
    "origin",
    "pragma",
    "referer",
    "via",
    "warning",
];

/// The headers app `callee` gets for a call from app `caller` carrying `headers` (an HTTP
/// request's headers or a gRPC call's metadata), as daprd's `InternalMetadataToHTTPHeader`:
/// not the API token, `dapr-app-id`, `Content-Type`/`Content-Length` (the call's own) nor binary
/// (`-bin`) metadata; `grpc-*` names as `dapr-grpc-*`; then `dapr-caller-app-id` and
/// `dapr-callee-app-id`. W3C `traceparent`/`tracestate` pass as they came (daprd sends its own
/// span's, a child of them).
pub(crate) fn to_app(headers: &HeaderMap, caller: &str, callee: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let key = name.as_str();
        if NOT_PASSED_ON.contains(&key)
            || key.ends_with("-bin")
            || *name == header::CONTENT_TYPE
            || *name == header::CONTENT_LENGTH
        {
            continue;
        }
        out.append(dapr_prefixed_grpc_name(name), value.clone());
    }
    for (name, id) in [(CALLER_ID_HEADER, caller), (CALLEE_ID_HEADER, callee)] {
        if let Ok(value) = HeaderValue::from_str(id) {
            out.insert(name, value);
        }
    }
    out
}

/// The app's `headers` on the Dapr HTTP API's answer, as daprd's `InternalMetadataToHTTPHeader`:
/// not `Content-Type`/`Content-Length` (the answer sets its own), `traceparent`/`tracestate`
/// (the API answers the request's) nor `-bin` names; `grpc-*` names as `dapr-grpc-*`.
pub(crate) fn to_http_caller(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let key = name.as_str();
        if matches!(
            key,
            "content-type" | "content-length" | "traceparent" | "tracestate"
        ) || key.ends_with("-bin")
        {
            continue;
        }
        out.append(dapr_prefixed_grpc_name(name), value.clone());
    }
    out
}

/// The app's `headers` and `status` as the gRPC `InvokeService`'s response metadata, as daprd's
/// `InternalMetadataToGrpcMetadata` with HTTP conversion: IANA's permanent names (`date`,
/// `content-type`, …) prefixed `dapr-`, trace headers left out, and `dapr-http-status`. `grpc-*`
/// names, which daprd copies as they are, are left out (they would be taken for the call's own).
pub(crate) fn to_grpc_caller(headers: &HeaderMap, status: StatusCode) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let key = name.as_str();
        if matches!(key, "traceparent" | "tracestate" | "destination-app-id")
            || key.starts_with("grpc-")
        {
            continue;
        }
        let name = if PERMANENT_HEADERS.contains(&key) {
            match HeaderName::try_from(format!("dapr-{key}")) {
                Ok(name) => name,
                Err(_) => continue,
            }
        } else {
            name.clone()
        };
        out.append(name, value.clone());
    }
    out.insert(HTTP_STATUS_HEADER, HeaderValue::from(status.as_u16()));
    out
}

/// The gRPC status daprd answers `InvokeService` with when the HTTP app answered `status`
/// (`ErrorFromHTTPResponseCode`): `None` for 2xx, else the code of `CodeFromHTTPStatus` with the
/// status's reason phrase as the message (daprd adds an `ErrorInfo` detail, not sent here).
pub(crate) fn grpc_status_of(status: StatusCode) -> Option<Status> {
    if status.is_success() {
        return None;
    }
    let code = match status.as_u16() {
        408 => Code::Cancelled,
        400 => Code::Internal,
        504 => Code::DeadlineExceeded,
        404 => Code::NotFound,
        409 => Code::AlreadyExists,
        403 => Code::PermissionDenied,
        401 => Code::Unauthenticated,
        429 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        503 => Code::Unavailable,
        _ => Code::Unknown,
    };
    Some(Status::new(
        code,
        status.canonical_reason().unwrap_or_default(),
    ))
}

/// `name`, or `dapr-{name}` for a `grpc-*` name (daprd's `ReservedGRPCMetadataToDaprPrefixHeader`).
fn dapr_prefixed_grpc_name(name: &HeaderName) -> HeaderName {
    if name.as_str().starts_with("grpc-") {
        HeaderName::try_from(format!("dapr-{name}")).unwrap_or_else(|_| name.clone())
    } else {
        name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn the_app_gets_the_callers_headers_as_daprd_passes_them() {
        let sent = headers(&[
            ("dapr-api-token", "secret"),
            ("dapr-app-id", "orders"),
            ("dapr-caller-app-id", "spoofed"),
            ("content-type", "application/json"),
            ("grpc-timeout", "5S"),
            ("trace-bin", "xx"),
            ("x-tenant", "t1"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ]);
        let got = to_app(&sent, "checkout", "orders");
        assert_eq!(got["x-tenant"], "t1");
        assert_eq!(got["dapr-grpc-timeout"], "5S");
        assert!(got["traceparent"].to_str().unwrap().starts_with("00-0af7"));
        assert_eq!(got[CALLER_ID_HEADER], "checkout");
        assert_eq!(got[CALLEE_ID_HEADER], "orders");
        for gone in ["dapr-api-token", "dapr-app-id", "content-type", "trace-bin"] {
            assert!(!got.contains_key(gone), "{gone} passed on");
        }
    }

    #[test]
    fn the_apps_headers_come_back_as_daprd_returns_them() {
        let answered = headers(&[
            ("content-type", "text/plain"),
            ("date", "Tue, 01 Dec 2026 17:00:00 GMT"),
            ("x-order", "42"),
            ("grpc-status", "0"),
        ]);
        let http = to_http_caller(&answered);
        assert_eq!(http["x-order"], "42");
        assert_eq!(http["date"], "Tue, 01 Dec 2026 17:00:00 GMT");
        assert_eq!(http["dapr-grpc-status"], "0");
        assert!(!http.contains_key("content-type"));
        let grpc = to_grpc_caller(&answered, StatusCode::CREATED);
        assert_eq!(grpc["x-order"], "42");
        assert_eq!(grpc["dapr-content-type"], "text/plain");
        assert_eq!(grpc["dapr-date"], "Tue, 01 Dec 2026 17:00:00 GMT");
        assert_eq!(grpc[HTTP_STATUS_HEADER], "201");
        assert!(!grpc.contains_key("grpc-status") && !grpc.contains_key("content-type"));
    }

    #[test]
    fn http_statuses_map_to_daprds_grpc_codes() {
        assert_eq!(grpc_status_of(StatusCode::NO_CONTENT), None);
        let not_found = grpc_status_of(StatusCode::NOT_FOUND).unwrap();
        assert_eq!(
            (not_found.code, not_found.message.as_str()),
            (Code::NotFound, "Not Found")
        );
        for (status, code) in [
            (400, Code::Internal),
            (500, Code::Unknown),
            (503, Code::Unavailable),
            (302, Code::Unknown),
            (418, Code::Unknown),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(grpc_status_of(status).unwrap().code, code, "{status}");
        }
    }
}
