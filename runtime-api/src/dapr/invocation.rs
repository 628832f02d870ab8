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

/// The app's `headers` as the gRPC `InvokeService`'s response metadata, as daprd's
/// `InternalMetadataToGrpcMetadata` with HTTP conversion ([`grpc_metadata_name`]), trace headers
/// left out, and an HTTP app's `status` as `dapr-http-status` (a gRPC app has none).
pub(crate) fn to_grpc_caller(headers: &HeaderMap, http_status: Option<StatusCode>) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if matches!(
            name.as_str(),
            "traceparent" | "tracestate" | "destination-app-id"
        ) {
            continue;
        }
        if let Some(name) = grpc_metadata_name(name) {
            out.append(name, value.clone());
        }
    }
    if let Some(status) = http_status {
        out.insert(HTTP_STATUS_HEADER, HeaderValue::from(status.as_u16()));
    }
    out
}

/// The headers a gRPC app's `OnInvoke` gets as metadata for a call carrying `headers` (already
/// [`to_app`]'s selection), as daprd's `InternalMetadataToGrpcMetadata` with HTTP conversion.
pub(crate) fn to_grpc_app(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if let Some(name) = grpc_metadata_name(name) {
            out.append(name, value.clone());
        }
    }
    out
}

/// A header's name in gRPC metadata as daprd converts it: IANA's permanent names (`date`,
/// `content-type`, …) prefixed `dapr-`; `grpc-*` names, which daprd copies as they are, left out
/// (they would be taken for the call's own).
fn grpc_metadata_name(name: &HeaderName) -> Option<HeaderName> {
    let key = name.as_str();
    if key.starts_with("grpc-") {
        None
    } else if PERMANENT_HEADERS.contains(&key) {
        HeaderName::try_from(format!("dapr-{key}")).ok()
    } else {
        Some(name.clone())
    }
}

/// The HTTP status daprd answers for a gRPC app's `code` (`HTTPStatusFromCode`, grpc-gateway's
/// table), not the inverse of [`grpc_status_of`] (daprd maps 400 back to INTERNAL).
pub(crate) fn http_status_of(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The body daprd's HTTP API answers for a gRPC app's failed `status`: the status as JSON
/// (`{"code":5,"message":"…","details":[]}`).
pub(crate) fn error_body(status: &Status) -> Vec<u8> {
    serde_json::json!({"code": status.code as u8, "message": status.message, "details": []})
        .to_string()
        .into_bytes()
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
        let grpc = to_grpc_caller(&answered, Some(StatusCode::CREATED));
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

    #[test]
    fn a_grpc_apps_status_is_daprds_http_status() {
        let table: Vec<u16> = Code::ALL
            .iter()
            .map(|code| http_status_of(*code).as_u16())
            .collect();
        // OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, ... UNAUTHENTICATED, as grpc-gateway's table.
        let expected = [
            200, 408, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401,
        ];
        assert_eq!(table, expected);
        assert_eq!(
            error_body(&Status::new(Code::NotFound, "no such order")),
            br#"{"code":5,"message":"no such order","details":[]}"#
        );
    }

    #[test]
    fn a_grpc_app_gets_permanent_headers_prefixed_and_no_grpc_ones() {
        let got = to_grpc_app(&headers(&[
            ("accept", "*/*"),
            ("x-tenant", "t1"),
            ("grpc-timeout", "5S"),
            ("dapr-caller-app-id", "checkout"),
        ]));
        assert_eq!(got["dapr-accept"], "*/*");
        assert_eq!(got["x-tenant"], "t1");
        assert_eq!(got["dapr-caller-app-id"], "checkout");
        assert!(got.get("accept").is_none() && got.get("grpc-timeout").is_none());
        assert_eq!(got.len(), 3);
    }
}
