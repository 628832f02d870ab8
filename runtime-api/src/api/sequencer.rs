//! The sequencer rpc: `GetNextId`. Runs on the calling shard.

use layotto_proto::runtime::{
    GetNextIdRequest, GetNextIdResponse, sequencer_options::AutoIncrement,
};
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
        path("GetNextId"),
        unary(api.clone(), RuntimeApi::get_next_id),
    );
}

impl RuntimeApi {
    async fn get_next_id(
        self: Rc<Self>,
        request: GetNextIdRequest,
    ) -> Result<GetNextIdResponse, Status> {
        let sequencer = self.components().sequencers.get(&request.store_name)?;
        if request.key.is_empty() {
            return Err(ApiError::InvalidArgument("the sequencer key is empty".into()).into());
        }
        let strong = request
            .options
            .is_some_and(|options| options.increment() == AutoIncrement::Strong);
        let next_id = sequencer.next_id(&request.key, strong).await?;
        Ok(GetNextIdResponse { next_id })
    }
}
