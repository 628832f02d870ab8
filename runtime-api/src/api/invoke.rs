//! The service invocation rpc: `InvokeService`. The call's metadata goes to the invoker (LayOtto's
//! `mosn` invoker sends it on as request headers) and the headers it answers come back as the
//! response's header metadata. Runs on the calling shard.

use layotto_proto::runtime::{InvokeResponse, InvokeServiceRequest, http_extension::Verb};
use std::rc::Rc;

use super::{RuntimeApi, path};
use crate::{
    error::ApiError,
    grpc::{
        router::{Call, Router},
        status::{Code, Status},
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<RuntimeApi>) {
    let api = api.clone();
    router.add(
        path("InvokeService"),
        Rc::new(move |mut call: Call| {
            let api = api.clone();
            Box::pin(async move {
                let request = call
                    .requests
                    .next::<InvokeServiceRequest>()
                    .await?
                    .ok_or_else(|| {
                        Status::new(Code::Internal, "the call carried no request message")
                    })?;
                let (response, metadata) = api.invoke_service(request, &call.headers).await?;
                call.responses.add_metadata(metadata);
                call.responses.send(&response).await
            })
        }),
    );
}

impl RuntimeApi {
    async fn invoke_service(
        &self,
        request: InvokeServiceRequest,
        metadata: &http::HeaderMap,
    ) -> Result<(InvokeResponse, http::HeaderMap), Status> {
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
        let (answer, answer_metadata) = invoker
            .invoke_with_metadata(
                &request.id,
                &message.method,
                verb,
                querystring,
                data.into(),
                &message.content_type,
                metadata,
            )
            .await?;
        let response = InvokeResponse {
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: answer.data.to_vec(),
            }),
            content_type: answer.content_type,
        };
        Ok((response, answer_metadata))
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
