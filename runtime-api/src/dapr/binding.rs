//! Dapr's `InvokeBinding`: the named output binding runs the operation. Runs on the calling
//! shard.

use std::rc::Rc;

use layotto_proto::dapr::runtime::{InvokeBindingRequest, InvokeBindingResponse};

use super::{DaprApi, fail, path};
use crate::{
    error::DaprOp,
    grpc::{
        router::{Router, unary},
        status::Status,
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<DaprApi>) {
    router.add(
        path("InvokeBinding"),
        unary(api.clone(), DaprApi::invoke_binding),
    );
}

impl DaprApi {
    async fn invoke_binding(
        self: Rc<Self>,
        request: InvokeBindingRequest,
    ) -> Result<InvokeBindingResponse, Status> {
        let op = DaprOp::Binding {
            name: &request.name,
        };
        let binding = self
            .components()
            .bindings
            .get(&request.name)
            .map_err(fail(op))?;
        let answer = binding
            .invoke(&request.operation, request.data, request.metadata)
            .await
            .map_err(fail(op))?;
        Ok(InvokeBindingResponse {
            data: answer.data,
            metadata: answer.metadata,
        })
    }
}
