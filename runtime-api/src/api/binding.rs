//! The bindings rpc: `InvokeBinding`. Runs on the calling shard.

use layotto_proto::runtime::{InvokeBindingRequest, InvokeBindingResponse};
use std::rc::Rc;

use super::{RuntimeApi, path};
use crate::grpc::{
    router::{Router, unary},
    status::Status,
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<RuntimeApi>) {
    router.add(
        path("InvokeBinding"),
        unary(api.clone(), RuntimeApi::invoke_binding),
    );
}

impl RuntimeApi {
    async fn invoke_binding(
        self: Rc<Self>,
        request: InvokeBindingRequest,
    ) -> Result<InvokeBindingResponse, Status> {
        let binding = self.components().bindings.get(&request.name)?;
        let answer = binding
            .invoke(&request.operation, request.data, request.metadata)
            .await?;
        Ok(InvokeBindingResponse {
            data: answer.data,
            metadata: answer.metadata,
        })
    }
}
