//! Dapr's `InvokeService` (deprecated by Dapr in favour of proxy mode, still what the SDKs'
//! gRPC invocation calls): the request's app id and method go to the process's one `rpcs`
//! component, as LayOtto's `InvokeService` does — layotto-rs has no name resolution of Dapr
//! app ids to other sidecars. Runs on the calling shard.

use std::rc::Rc;

use layotto_proto::dapr::{common::InvokeResponse, runtime::InvokeServiceRequest};

use super::{DaprApi, fail, path};
use crate::{
    api::invoke::http_method,
    error::{ApiError, DaprOp},
    grpc::{
        router::{Router, unary},
        status::Status,
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<DaprApi>) {
    router.add(
        path("InvokeService"),
        unary(api.clone(), DaprApi::invoke_service),
    );
}

impl DaprApi {
    async fn invoke_service(
        self: Rc<Self>,
        request: InvokeServiceRequest,
    ) -> Result<InvokeResponse, Status> {
        let op = DaprOp::Invoke {
            app_id: &request.id,
        };
        let invoker = self.components().invoker().map_err(fail(op))?;
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
            .invoke(
                &request.id,
                &message.method,
                verb,
                querystring,
                data.into(),
                &message.content_type,
            )
            .await
            .map_err(fail(op))?;
        Ok(InvokeResponse {
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: answer.data.to_vec(),
            }),
            content_type: answer.content_type,
        })
    }
}
