//! The `hellos` rpc: `SayHello`. Runs on the calling shard.

use layotto_proto::runtime::{SayHelloRequest, SayHelloResponse};
use std::rc::Rc;

use super::{RuntimeApi, path};
use crate::grpc::{
    router::{Router, unary},
    status::Status,
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<RuntimeApi>) {
    router.add(path("SayHello"), unary(api.clone(), RuntimeApi::say_hello));
}

impl RuntimeApi {
    async fn say_hello(
        self: Rc<Self>,
        request: SayHelloRequest,
    ) -> Result<SayHelloResponse, Status> {
        let hello = self.components().hellos.get(&request.service_name)?;
        Ok(SayHelloResponse {
            hello: hello.hello(&request.name),
            data: request.data,
        })
    }
}
