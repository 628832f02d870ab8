//! Dapr's `InvokeService` (deprecated by Dapr in favour of proxy mode, still what the SDKs'
//! gRPC invocation calls): the request's app id and method go to the app's own channel (HTTP,
//! or `OnInvoke` of a gRPC app, whose status is then the call's) when the id is this sidecar's
//! app (`--app-port`, as daprd), else to the process's one `rpcs`
//! component, as LayOtto's `InvokeService` does — layotto-rs has no name resolution of Dapr
//! app ids to other sidecars ([`Runtime::dapr_invoker`](crate::runtime::Runtime::dapr_invoker)). As daprd with an HTTP app: the call's metadata goes to the app
//! ([`invocation::to_app`]), the app's headers and `dapr-http-status` come back as header
//! metadata, and a status outside 2xx is the call's error ([`invocation::grpc_status_of`]).
//! Runs on the calling shard.

use std::rc::Rc;

use http::HeaderMap;
use layotto_proto::dapr::{common::InvokeResponse, runtime::InvokeServiceRequest};

use super::{DaprApi, fail, invocation, path};
use crate::{
    api::invoke::http_method,
    components::invoke::InvokeRequest,
    error::{ApiError, DaprOp},
    grpc::{
        router::{Call, Router},
        status::{Code, Status},
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<DaprApi>) {
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
                let (answer, metadata) = api.invoke_service(request, &call.headers).await?;
                call.responses.add_metadata(metadata);
                match answer {
                    Ok(response) => call.responses.send(&response).await,
                    Err(status) => {
                        // daprd sends the app's headers before the error status.
                        call.responses.send_headers()?;
                        Err(status)
                    }
                }
            })
        }),
    );
}

impl DaprApi {
    /// The response (or the app's error status) and the response metadata; `Err` for a call
    /// that got no answer from the app.
    async fn invoke_service(
        &self,
        request: InvokeServiceRequest,
        metadata: &HeaderMap,
    ) -> Result<(Result<InvokeResponse, Status>, HeaderMap), Status> {
        let op = DaprOp::Invoke {
            app_id: &request.id,
        };
        let invoker = self.runtime.dapr_invoker(&request.id).map_err(fail(op))?;
        let message = request.message.as_ref().ok_or_else(|| {
            fail(op)(ApiError::InvalidArgument(
                "InvokeService carried no message".into(),
            ))
        })?;
        if request.id.is_empty() || message.method.is_empty() {
            return Err(fail(op)(ApiError::InvalidArgument(
                "the app id and the method are required".into(),
            )));
        }
        let (verb, querystring) = match &message.http_extension {
            None => (None, ""),
            Some(extension) => (http_method(extension.verb), extension.querystring.as_str()),
        };
        let data = message
            .data
            .as_ref()
            .map(|any| any.value.clone())
            .unwrap_or_default();
        let answer = invoker
            .invoke(InvokeRequest {
                id: &request.id,
                method: &message.method,
                verb,
                querystring,
                data: data.into(),
                content_type: &message.content_type,
                headers: &invocation::to_app(metadata, self.app_id(), &request.id),
            })
            .await
            .map_err(fail(op))?;
        // A gRPC app's status is the call's; an HTTP app's is mapped, and sent as metadata.
        let (metadata, failed) = match answer.grpc_status.clone() {
            Some(status) => (
                invocation::to_grpc_caller(&answer.headers, None),
                (status.code != Code::Ok).then_some(status),
            ),
            None => (
                invocation::to_grpc_caller(&answer.headers, Some(answer.status)),
                invocation::grpc_status_of(answer.status),
            ),
        };
        let response = match failed {
            Some(status) => Err(status),
            None => Ok(InvokeResponse {
                content_type: answer.content_type().to_owned(),
                data: Some(prost_types::Any {
                    type_url: String::new(),
                    value: answer.data.to_vec(),
                }),
            }),
        };
        Ok((response, metadata))
    }
}
