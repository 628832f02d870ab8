//! The service invocation rpc: `InvokeService`. The call's metadata (not the gRPC call's own
//! headers) goes to the app as request headers and the app's headers come back as the
//! response's header metadata; a status the backend counts as the app's failure
//! ([`crate::components::invoke::Invoker::failure`]: LayOtto's `mosn`, anything but 200) is
//! the call's error. Runs on the calling shard.

use http::{HeaderMap, header};
use layotto_proto::runtime::{InvokeResponse, InvokeServiceRequest, http_extension::Verb};
use std::rc::Rc;

use super::{RuntimeApi, path};
use crate::{
    components::invoke::InvokeRequest,
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
        metadata: &HeaderMap,
    ) -> Result<(InvokeResponse, HeaderMap), Status> {
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
            .invoke(InvokeRequest {
                id: &request.id,
                method: &message.method,
                verb,
                querystring,
                data: data.into(),
                content_type: &message.content_type,
                headers: &without_grpc_own(metadata),
            })
            .await?;
        if let Some(err) = invoker.failure(&request.id, &answer) {
            return Err(err.into());
        }
        let response = InvokeResponse {
            content_type: answer.content_type().to_owned(),
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: answer.data.to_vec(),
            }),
        };
        Ok((response, without_grpc_own(&answer.headers)))
    }
}

/// `headers` without those of the gRPC call itself (`grpc-*`, `te`, `content-type`,
/// `content-length`): the call's metadata the app gets, and the app's headers the response's
/// metadata gets (LayOtto leaves out `content-length` too).
fn without_grpc_own(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for (name, value) in headers {
        let own = name.as_str().starts_with("grpc-")
            || [header::TE, header::CONTENT_TYPE, header::CONTENT_LENGTH].contains(name);
        if !own {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
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

/// The `HTTPExtension.Verb` number of `method` (LayOtto's and Dapr's enums agree), the inverse
/// of [`http_method`]; `NONE` for no verb or one neither enum has.
pub(crate) fn verb_of(method: Option<&http::Method>) -> i32 {
    let verb = match method {
        Some(&http::Method::GET) => Verb::Get,
        Some(&http::Method::HEAD) => Verb::Head,
        Some(&http::Method::POST) => Verb::Post,
        Some(&http::Method::PUT) => Verb::Put,
        Some(&http::Method::DELETE) => Verb::Delete,
        Some(&http::Method::CONNECT) => Verb::Connect,
        Some(&http::Method::OPTIONS) => Verb::Options,
        Some(&http::Method::TRACE) => Verb::Trace,
        Some(&http::Method::PATCH) => Verb::Patch,
        _ => Verb::None,
    };
    verb as i32
}
