//! Errors of the runtime API and the one place they become gRPC statuses (and Dapr HTTP
//! answers, [`DaprHttpError`]). Every error says where
//! it started ([`Origin`]), whether a retry can help ([`ApiError::retryable`]) and keeps the error
//! it came from as its `source`, so log lines and status messages carry the whole cause chain
//! ([`chain`]). Sans-IO; used on every thread.

use std::{error::Error as StdError, fmt};

use layotto_core::backend::BackendError;
use layotto_filters::stream::CallRejection;

use crate::grpc::status::{Code, Status};

/// An error from a client library, kept as the source of an [`ApiError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Where a failure started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The request: fix it before sending it again.
    Client,
    /// A component of this process (a broken invariant, a local I/O error).
    Component,
    /// The backend a component talks to (redis, etcd, an HTTP target, the backend pool).
    Backend,
    /// The HTTP/2 stream or connection the call runs on.
    Transport,
}

/// What a building block or component call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request names a component that is not configured.
    #[error("no {block} component named \"{name}\" is configured (configured: {known:?})")]
    UnknownComponent {
        /// The building block (`state`, `hellos`, ...).
        block: &'static str,
        /// The name asked for.
        name: String,
        /// The configured names.
        known: Vec<String>,
    },
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named thing does not exist (a secret, a file, an invocation target).
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this (a secret outside the store's scope).
    #[error("{0}")]
    PermissionDenied(String),
    /// The call lacks the API token the sidecar requires (Dapr's `dapr-api-token`).
    #[error("{0}")]
    Unauthenticated(String),
    /// The rpc is part of the API but layotto-rs does not serve it.
    #[error("{0}")]
    Unimplemented(String),
    /// An etag (or first-write rule) did not match the stored item.
    #[error("etag mismatch for key \"{0}\"")]
    EtagMismatch(String),
    /// The backend is unreachable, overloaded or did not answer in time: a retry may help.
    #[error("{context}")]
    Unavailable {
        /// What was called, naming the component and its address.
        context: String,
        /// Why, when a client library said so.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend answered with an error: the same call would fail again.
    #[error("{context}")]
    Backend {
        /// What was called, naming the component and its address.
        context: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// A component of this process failed.
    #[error("{context}")]
    Internal {
        /// What failed.
        context: String,
        /// Why, when there is an underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The call's HTTP/2 stream failed (the client reset it, the connection went away).
    #[error("the call's stream failed")]
    Transport(#[source] h2::Error),
}

impl ApiError {
    /// The backend could not be used, for the reason `context` gives.
    pub fn unavailable(context: impl Into<String>) -> Self {
        Self::Unavailable {
            context: context.into(),
            source: None,
        }
    }

    /// The backend could not be used because of `source`.
    pub fn unreachable(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// The backend answered `source`, an error a retry would not change.
    pub fn backend(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            context: context.into(),
            source: source.into(),
        }
    }

    /// This process failed, as `context` says.
    pub fn internal(context: impl Into<String>) -> Self {
        Self::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// This process failed because of `source` (a local I/O error, say).
    pub fn internal_because(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// Where the failure started.
    pub fn origin(&self) -> Origin {
        match self {
            Self::UnknownComponent { .. }
            | Self::InvalidArgument(_)
            | Self::NotFound(_)
            | Self::PermissionDenied(_)
            | Self::Unauthenticated(_)
            | Self::EtagMismatch(_) => Origin::Client,
            Self::Unimplemented(_) => Origin::Component,
            Self::Unavailable { .. } | Self::Backend { .. } => Origin::Backend,
            Self::Internal { .. } => Origin::Component,
            Self::Transport(_) => Origin::Transport,
        }
    }

    /// Whether sending the same call again may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. } => true,
            Self::Transport(err) => {
                err.is_remote() && err.reason() == Some(h2::Reason::REFUSED_STREAM)
            }
            _ => false,
        }
    }

    /// The gRPC status code this error is answered with.
    pub fn code(&self) -> Code {
        match self {
            Self::UnknownComponent { .. } | Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::Unimplemented(_) => Code::Unimplemented,
            Self::EtagMismatch(_) => Code::Aborted,
            Self::Unavailable { .. } => Code::Unavailable,
            Self::Backend { .. } | Self::Internal { .. } => Code::Internal,
            Self::Transport(err) => code_from_h2(err),
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(err: BackendError) -> Self {
        Self::unreachable("the backend pool cannot take the call", err)
    }
}

impl From<h2::Error> for ApiError {
    fn from(err: h2::Error) -> Self {
        Self::Transport(err)
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        Status::new(err.code(), chain(&err).to_string())
    }
}

impl From<h2::Error> for Status {
    fn from(err: h2::Error) -> Self {
        ApiError::Transport(err).into()
    }
}

impl From<CallRejection> for Status {
    fn from(rejection: CallRejection) -> Self {
        match rejection {
            CallRejection::Limited { status, body } => {
                Status::new(Code::for_refusal_status(status), body)
            }
        }
    }
}

/// What a Dapr rpc was doing when it failed: Dapr words its errors per operation (dapr/dapr
/// v1.18.3 `pkg/messages/predefined.go`, `pkg/api/errors/*.go`, `pkg/api/grpc/grpc.go`), and
/// [`dapr_status`] answers as daprd does.
#[derive(Debug, Clone, Copy)]
pub enum DaprOp<'a> {
    /// `GetState`, `GetBulkState` of `key` in `store`.
    StateGet {
        /// The store.
        store: &'a str,
        /// The key.
        key: &'a str,
    },
    /// `SaveState` in `store`.
    StateSave {
        /// The store.
        store: &'a str,
    },
    /// `DeleteState` of `key`.
    StateDelete {
        /// The key.
        key: &'a str,
    },
    /// `DeleteBulkState` in `store`.
    StateDeleteBulk {
        /// The store.
        store: &'a str,
    },
    /// `ExecuteStateTransaction`.
    StateTransaction,
    /// `QueryStateAlpha1` on `store`.
    StateQuery {
        /// The store.
        store: &'a str,
    },
    /// `PublishEvent` and the bulk publishes on `topic` of `pubsub`.
    Publish {
        /// The pub/sub component.
        pubsub: &'a str,
        /// The topic.
        topic: &'a str,
    },
    /// `SubscribeTopicEventsAlpha1`.
    Subscribe,
    /// `InvokeBinding` of `name`.
    Binding {
        /// The binding.
        name: &'a str,
    },
    /// `GetSecret`/`GetBulkSecret` of `key` in `store`.
    Secret {
        /// The store.
        store: &'a str,
        /// The key (empty for a bulk read).
        key: &'a str,
    },
    /// `GetConfiguration` in `store`.
    ConfigurationGet {
        /// The store.
        store: &'a str,
    },
    /// `SubscribeConfiguration` in `store`.
    ConfigurationSubscribe {
        /// The store.
        store: &'a str,
    },
    /// `TryLockAlpha1`.
    TryLock,
    /// `UnlockAlpha1`.
    Unlock,
    /// `InvokeService` of app `app_id`.
    Invoke {
        /// The target app.
        app_id: &'a str,
    },
    /// Anything else: the error's own message.
    Other,
}

/// `err` as daprd answers it for `op`: an unknown component is `INVALID_ARGUMENT` "… is not
/// found" (`FAILED_PRECONDITION` "… is not configured" when its block has none); an etag
/// mismatch is `ABORTED` for saves and deletes but `INTERNAL` inside a transaction (daprd's
/// codes); other errors keep their code, with Dapr's message around the cause chain.
pub fn dapr_status(err: ApiError, op: DaprOp<'_>) -> Status {
    if let ApiError::UnknownComponent { block, name, known } = &err {
        let noun = match *block {
            "state" => "state store",
            "pub_subs" => "pubsub",
            "config_store" => "configuration store",
            "lock" => "lock store",
            "secret_store" => "secret store",
            "bindings" => "output binding",
            other => other,
        };
        return if known.is_empty() {
            Status::new(
                Code::FailedPrecondition,
                format!("{noun} {name} is not configured"),
            )
        } else if *block == "bindings" {
            Status::new(
                Code::Internal,
                format!(
                    "error invoking output binding {name}: couldn't find output binding {name}"
                ),
            )
        } else {
            Status::new(Code::InvalidArgument, format!("{noun} {name} is not found"))
        };
    }
    let cause = chain(&err).to_string();
    let code = match (&err, op) {
        (ApiError::EtagMismatch(_), DaprOp::StateTransaction)
        | (ApiError::NotFound(_), DaprOp::Secret { .. } | DaprOp::Binding { .. }) => Code::Internal,
        _ => err.code(),
    };
    if matches!(
        err,
        ApiError::InvalidArgument(_) | ApiError::Unauthenticated(_) | ApiError::Unimplemented(_)
    ) {
        return Status::new(code, cause);
    }
    let cause = match err {
        ApiError::EtagMismatch(_) => {
            format!("possible etag mismatch. error from state store: {cause}")
        }
        _ => cause,
    };
    let message = match op {
        DaprOp::StateGet { store, key } => {
            format!("fail to get {key} from state store {store}: {cause}")
        }
        DaprOp::StateSave { store } => {
            format!("failed saving state in state store {store}: {cause}")
        }
        DaprOp::StateDelete { key } => format!("failed deleting state with key {key}: {cause}"),
        DaprOp::StateDeleteBulk { store } => {
            format!("failed deleting state in state store {store}: {cause}")
        }
        DaprOp::StateTransaction => format!("error while executing state transaction: {cause}"),
        DaprOp::StateQuery { store } => {
            format!("failed query in state store {store}: {cause}")
        }
        DaprOp::Publish { pubsub, topic } => {
            format!("error when publishing to topic {topic} in pubsub {pubsub}: {cause}")
        }
        DaprOp::Binding { name } => format!("error invoking output binding {name}: {cause}"),
        DaprOp::Secret { store, key } => {
            format!("failed getting secret with key {key} from secret store {store}: {cause}")
        }
        DaprOp::ConfigurationGet { store } => {
            format!("failed to get configuration from Configuration store {store}: {cause}")
        }
        DaprOp::ConfigurationSubscribe { store } => {
            format!("failed to subscribe configuration from Configuration store {store}: {cause}")
        }
        DaprOp::TryLock => format!("failed to try acquiring lock: {cause}"),
        DaprOp::Unlock => format!("failed to release lock: {cause}"),
        DaprOp::Invoke { app_id } => format!("failed to invoke, id: {app_id}, err: {cause}"),
        DaprOp::Subscribe | DaprOp::Other => cause,
    };
    Status::new(code, message)
}

/// The Dapr error codes of one Dapr HTTP operation (daprd's `pkg/messages/errorcodes`): what an
/// unknown component and a failure of the operation are answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaprCodes {
    /// Status and `errorCode` for a component name that is not configured (daprd: 400
    /// `ERR_STATE_STORE_NOT_FOUND`, 404 `ERR_PUBSUB_NOT_FOUND`, 401 `ERR_SECRET_STORE_NOT_FOUND`).
    pub unknown_component: (u16, &'static str),
    /// `errorCode` of a failed operation (`ERR_STATE_SAVE`, `ERR_TRY_LOCK`, ...).
    pub failed: &'static str,
}

/// A Dapr HTTP API call's failure as daprd answers it: a status and the JSON body
/// `{"errorCode": ..., "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DaprHttpError {
    /// The HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// Dapr's error code.
    #[serde(rename = "errorCode")]
    pub error_code: &'static str,
    /// What went wrong, with the cause chain.
    pub message: String,
}

impl DaprHttpError {
    /// An error answered with `status`, `error_code` and `message`.
    pub fn new(status: u16, error_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_code,
            message: message.into(),
        }
    }

    /// A body that does not parse (daprd's `ERR_MALFORMED_REQUEST`, 400).
    pub fn malformed(message: impl fmt::Display) -> Self {
        Self::new(
            400,
            "ERR_MALFORMED_REQUEST",
            format!("failed deserializing HTTP body: {message}"),
        )
    }

    /// A body over the cap: 413 (daprd answers a body past its `--max-body-size` with
    /// `ERR_BODY_READ`; the code is daprd's, the status says what happened).
    pub fn body_too_large(max: usize) -> Self {
        Self::new(
            413,
            "ERR_BODY_READ",
            format!("failed to read request body: larger than {max} bytes"),
        )
    }

    /// A body that could not be read (daprd's `ERR_BODY_READ`, 400).
    pub fn body_read(err: &(dyn StdError + 'static)) -> Self {
        Self::new(
            400,
            "ERR_BODY_READ",
            format!("failed to read request body: {}", chain(err)),
        )
    }

    /// A missing or wrong `dapr-api-token` (daprd answers 401 with this text).
    pub fn invalid_token() -> Self {
        Self::new(401, Self::INVALID_TOKEN, "invalid api token")
    }

    /// The code of [`DaprHttpError::invalid_token`] (daprd answers it as plain text, no code).
    pub const INVALID_TOKEN: &'static str = "ERR_UNAUTHORIZED";

    /// No route for this method and path (404; daprd's router answers the same status).
    pub fn no_route(method: &http::Method, path: &str) -> Self {
        Self::new(
            404,
            "ERR_NOT_FOUND",
            format!("method \"{method} {path}\" is not found"),
        )
    }
}

impl ApiError {
    /// The Dapr HTTP answer for this error in an operation with `codes`: unknown components as
    /// the block's codes say, a malformed request 400, an etag mismatch 409 (daprd's
    /// `ERR_STATE_SAVE`/`ERR_STATE_DELETE` statuses), a refused secret 403 `ERR_PERMISSION_DENIED`,
    /// everything else 500 with the operation's code (daprd answers a missing secret and an
    /// unreachable store so too).
    pub fn dapr_http(&self, codes: DaprCodes) -> DaprHttpError {
        let message = chain(self).to_string();
        let (status, code) = match self {
            Self::UnknownComponent { .. } => codes.unknown_component,
            Self::InvalidArgument(_) => (400, codes.failed),
            Self::EtagMismatch(_) => (409, codes.failed),
            Self::PermissionDenied(_) => (403, "ERR_PERMISSION_DENIED"),
            Self::Unauthenticated(_) => (401, DaprHttpError::INVALID_TOKEN),
            Self::Unimplemented(_) => (501, "ERR_API_UNIMPLEMENTED"),
            Self::NotFound(_)
            | Self::Unavailable { .. }
            | Self::Backend { .. }
            | Self::Internal { .. }
            | Self::Transport(_) => (500, codes.failed),
        };
        DaprHttpError::new(status, code, message)
    }
}

/// The gRPC code for a failed HTTP/2 stream, as tonic's `code_from_h2`: a client's CANCEL is
/// CANCELLED, REFUSED_STREAM is UNAVAILABLE, ENHANCE_YOUR_CALM is RESOURCE_EXHAUSTED,
/// INADEQUATE_SECURITY is PERMISSION_DENIED, the protocol errors are INTERNAL; an I/O error (the
/// connection is gone) is UNAVAILABLE.
pub fn code_from_h2(err: &h2::Error) -> Code {
    if err.is_io() {
        return Code::Unavailable;
    }
    match err.reason() {
        Some(
            h2::Reason::NO_ERROR
            | h2::Reason::PROTOCOL_ERROR
            | h2::Reason::INTERNAL_ERROR
            | h2::Reason::FLOW_CONTROL_ERROR
            | h2::Reason::SETTINGS_TIMEOUT
            | h2::Reason::COMPRESSION_ERROR
            | h2::Reason::CONNECT_ERROR,
        ) => Code::Internal,
        Some(h2::Reason::REFUSED_STREAM) => Code::Unavailable,
        Some(h2::Reason::CANCEL) => Code::Cancelled,
        Some(h2::Reason::ENHANCE_YOUR_CALM) => Code::ResourceExhausted,
        Some(h2::Reason::INADEQUATE_SECURITY) => Code::PermissionDenied,
        _ => Code::Unknown,
    }
}

/// Shows an error followed by each of its sources, `outer: inner: innermost`, for log lines and
/// status messages.
pub fn chain<'a>(err: &'a (dyn StdError + 'static)) -> Chain<'a> {
    Chain(err)
}

/// An error and its causes; see [`chain`].
pub struct Chain<'a>(&'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut last = self.0.to_string();
        let mut source = self.0.source();
        while let Some(err) = source {
            let text = err.to_string();
            // Some libraries repeat their source in their own message; say each part once.
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            source = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_each_error_to_its_status_origin_and_retryability() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let cases = [
            (
                ApiError::UnknownComponent {
                    block: "state",
                    name: "x".into(),
                    known: vec![],
                },
                Code::InvalidArgument,
                Origin::Client,
                false,
            ),
            (
                ApiError::InvalidArgument("bad".into()),
                Code::InvalidArgument,
                Origin::Client,
                false,
            ),
            (
                ApiError::EtagMismatch("k".into()),
                Code::Aborted,
                Origin::Client,
                false,
            ),
            (
                ApiError::NotFound("s".into()),
                Code::NotFound,
                Origin::Client,
                false,
            ),
            (
                BackendError::Busy(3).into(),
                Code::Unavailable,
                Origin::Backend,
                true,
            ),
            (
                ApiError::unreachable("lock \"l\" (redis at h:1)", io()),
                Code::Unavailable,
                Origin::Backend,
                true,
            ),
            (
                ApiError::backend("state \"s\"", io()),
                Code::Internal,
                Origin::Backend,
                false,
            ),
            (
                ApiError::internal("boom"),
                Code::Internal,
                Origin::Component,
                false,
            ),
            (
                h2::Error::from(h2::Reason::CANCEL).into(),
                Code::Cancelled,
                Origin::Transport,
                false,
            ),
        ];
        for (err, code, origin, retryable) in cases {
            assert_eq!(
                (err.code(), err.origin(), err.retryable()),
                (code, origin, retryable),
                "{err}"
            );
            assert_eq!(Status::from(err).code, code);
        }
        let limited = Status::from(CallRejection::Limited {
            status: 509,
            body: "over".into(),
        });
        assert_eq!(
            (limited.code, limited.message.as_str()),
            (Code::Unknown, "over")
        );
    }

    #[test]
    fn dapr_statuses_follow_daprd() {
        let unknown = |known: Vec<String>| ApiError::UnknownComponent {
            block: "state",
            name: "s".into(),
            known,
        };
        let save = DaprOp::StateSave { store: "s" };
        let cases = [
            (
                dapr_status(unknown(vec!["a".into()]), save),
                Code::InvalidArgument,
                "state store s is not found",
            ),
            (
                dapr_status(unknown(vec![]), save),
                Code::FailedPrecondition,
                "state store s is not configured",
            ),
            (
                dapr_status(ApiError::EtagMismatch("k".into()), save),
                Code::Aborted,
                "failed saving state in state store s: possible etag mismatch. error from state store: etag mismatch for key \"k\"",
            ),
            (
                dapr_status(ApiError::EtagMismatch("k".into()), DaprOp::StateTransaction),
                Code::Internal,
                "error while executing state transaction: possible etag mismatch",
            ),
            (
                dapr_status(ApiError::unavailable("redis down"), DaprOp::TryLock),
                Code::Unavailable,
                "failed to try acquiring lock: redis down",
            ),
            (
                dapr_status(ApiError::InvalidArgument("bad".into()), save),
                Code::InvalidArgument,
                "bad",
            ),
        ];
        for (status, code, message) in cases {
            assert_eq!(status.code, code, "{}", status.message);
            assert!(status.message.starts_with(message), "{}", status.message);
        }
    }

    #[test]
    fn maps_each_error_to_its_dapr_http_answer() {
        let codes = DaprCodes {
            unknown_component: (400, "ERR_STATE_STORE_NOT_FOUND"),
            failed: "ERR_STATE_SAVE",
        };
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let cases = [
            (
                ApiError::UnknownComponent {
                    block: "state",
                    name: "x".into(),
                    known: vec![],
                },
                400,
                "ERR_STATE_STORE_NOT_FOUND",
            ),
            (
                ApiError::InvalidArgument("bad".into()),
                400,
                "ERR_STATE_SAVE",
            ),
            (ApiError::EtagMismatch("k".into()), 409, "ERR_STATE_SAVE"),
            (
                ApiError::PermissionDenied("no".into()),
                403,
                "ERR_PERMISSION_DENIED",
            ),
            (ApiError::NotFound("s".into()), 500, "ERR_STATE_SAVE"),
            (ApiError::unreachable("redis", io()), 500, "ERR_STATE_SAVE"),
            (ApiError::internal("boom"), 500, "ERR_STATE_SAVE"),
        ];
        for (err, status, code) in cases {
            let answer = err.dapr_http(codes);
            assert_eq!((answer.status, answer.error_code), (status, code), "{err}");
            assert_eq!(answer.message, chain(&err).to_string());
        }
        let body = serde_json::to_value(DaprHttpError::malformed("eof")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"errorCode": "ERR_MALFORMED_REQUEST",
                               "message": "failed deserializing HTTP body: eof"})
        );
    }

    #[test]
    fn h2_reasons_map_as_tonic_maps_them() {
        use h2::Reason;
        let cases = [
            (Reason::CANCEL, Code::Cancelled),
            (Reason::REFUSED_STREAM, Code::Unavailable),
            (Reason::FLOW_CONTROL_ERROR, Code::Internal),
            (Reason::PROTOCOL_ERROR, Code::Internal),
            (Reason::ENHANCE_YOUR_CALM, Code::ResourceExhausted),
            (Reason::INADEQUATE_SECURITY, Code::PermissionDenied),
            (Reason::HTTP_1_1_REQUIRED, Code::Unknown),
        ];
        for (reason, code) in cases {
            assert_eq!(code_from_h2(&h2::Error::from(reason)), code, "{reason:?}");
        }
    }

    #[test]
    fn status_messages_keep_the_cause_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let err = ApiError::unreachable("lock \"l\" (redis at 127.0.0.1:1)", io);
        let status = Status::from(err);
        assert_eq!(
            status.message,
            "lock \"l\" (redis at 127.0.0.1:1): connection refused"
        );
        let plain = Status::from(ApiError::unavailable("lock \"l\": no answer within 1s"));
        assert_eq!(plain.message, "lock \"l\": no answer within 1s");
    }
}
