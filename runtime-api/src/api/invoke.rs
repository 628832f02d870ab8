//! The service invocation rpc: `InvokeService`. Runs on the calling shard.

use layotto_proto::runtime::{InvokeResponse, InvokeServiceRequest, http_extension::Verb};
use std::rc::Rc;

use super::{RuntimeApi, path};
use crate::{
    error::ApiError,
    grpc::{
        router::{Router, unary},
        status::Status,
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<RuntimeApi>) {
    router.add(
        path("InvokeService"),
        unary(api.clone(), RuntimeApi::invoke_service),
    );
}

impl RuntimeApi {
    async fn invoke_service(
        self: Rc<Self>,
        request: InvokeServiceRequest,
    ) -> Result<InvokeResponse, Status> {
        let invoker = self.components().invoker()?;
        let message = request
            .message
            .ok_or_else(|| ApiError::InvalidArgument("InvokeService carried no message".into()))?;
        if request.id.is_empty() || message.method.is_empty() {
            return Err(
                ApiError::InvalidArgument("the app id and the method are required".into()).into(),
            );
        }
        let (verb, querystring) = match &message.http_extension {
            None => (None, ""),
            Some(extension) => (http_method(extension.verb), extension.querystring.as_str()),
        };
        let data = message.data.map(|any| any.value).unwrap_or_default();
        let answer = invoker
            .invoke(
                &request.id,
                &message.method,
                verb,
                querystring,
                data.into(),
                &message.content_type,
            )
            .await?;
        Ok(InvokeResponse {
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: answer.data.to_vec(),
            }),
            content_type: answer.content_type,
        })
    }
}

/// The HTTP method of an `HTTPExtension.Verb` (LayOtto's and Dapr's enums share the numbers);
/// `None` for `NONE` or an unknown number.
pub(crate) fn http_method(verb: i32) -> Option<http::Method> {
    match Verb::try_from(verb).ok()? {
        Verb::None => None,
        Verb::Get => Some(http::Method::GET),
        Verb::Head => Some(http::Method::HEAD),
        Verb::Post => Some(http::Method::POST),
        Verb::Put => Some(http::Method::PUT),
        Verb::Delete => Some(http::Method::DELETE),
        Verb::Connect => Some(http::Method::CONNECT),
        Verb::Options => Some(http::Method::OPTIONS),
        Verb::Trace => Some(http::Method::TRACE),
        Verb::Patch => Some(http::Method::PATCH),
    }
}
