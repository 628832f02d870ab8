//! The secrets rpcs: `GetSecret`, `GetBulkSecret`. Runs on the calling shard.

use layotto_proto::runtime::{
    GetBulkSecretRequest, GetBulkSecretResponse, GetSecretRequest, GetSecretResponse,
    SecretResponse,
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
    router
        .add(
            path("GetSecret"),
            unary(api.clone(), RuntimeApi::get_secret),
        )
        .add(
            path("GetBulkSecret"),
            unary(api.clone(), RuntimeApi::get_bulk_secret),
        );
}

impl RuntimeApi {
    async fn get_secret(
        self: Rc<Self>,
        request: GetSecretRequest,
    ) -> Result<GetSecretResponse, Status> {
        let store = self.components().secrets.get(&request.store_name)?;
        if request.key.is_empty() {
            return Err(ApiError::InvalidArgument("the secret key is empty".into()).into());
        }
        Ok(GetSecretResponse {
            data: store.get(&request.key)?,
        })
    }

    async fn get_bulk_secret(
        self: Rc<Self>,
        request: GetBulkSecretRequest,
    ) -> Result<GetBulkSecretResponse, Status> {
        let store = self.components().secrets.get(&request.store_name)?;
        Ok(GetBulkSecretResponse {
            data: store
                .get_all()
                .into_iter()
                .map(|(key, secrets)| (key, SecretResponse { secrets }))
                .collect(),
        })
    }
}
