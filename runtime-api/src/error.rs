//! Errors of the runtime API and the one place they become gRPC statuses.

use layotto_core::backend::BackendError;
use layotto_filters::stream::CallRejection;

use crate::grpc::status::{Code, Status};

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
    /// The named thing does not exist (a secret).
    #[error("{0}")]
    NotFound(String),
    /// An etag (or first-write rule) did not match the stored item.
    #[error("etag mismatch for key \"{0}\"")]
    EtagMismatch(String),
    /// The backend is overloaded or unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl From<BackendError> for ApiError {
    fn from(err: BackendError) -> Self {
        ApiError::Unavailable(err.to_string())
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        let code = match &err {
            ApiError::UnknownComponent { .. } | ApiError::InvalidArgument(_) => {
                Code::InvalidArgument
            }
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::EtagMismatch(_) => Code::Aborted,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}

impl From<CallRejection> for Status {
    fn from(rejection: CallRejection) -> Self {
        match rejection {
            CallRejection::RateLimited(message) => Status::new(Code::ResourceExhausted, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_each_error_to_its_status() {
        let cases = [
            (
                ApiError::UnknownComponent {
                    block: "state",
                    name: "x".into(),
                    known: vec![],
                },
                Code::InvalidArgument,
            ),
            (
                ApiError::InvalidArgument("bad".into()),
                Code::InvalidArgument,
            ),
            (ApiError::EtagMismatch("k".into()), Code::Aborted),
            (ApiError::NotFound("s".into()), Code::NotFound),
            (BackendError::Busy(3).into(), Code::Unavailable),
            (BackendError::Stopped.into(), Code::Unavailable),
            (ApiError::Internal("boom".into()), Code::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code, code);
        }
        let limited = Status::from(CallRejection::RateLimited("over".into()));
        assert_eq!(limited.code, Code::ResourceExhausted);
    }
}
