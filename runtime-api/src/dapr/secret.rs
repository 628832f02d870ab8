//! Dapr's secrets rpcs: `GetSecret`, `GetBulkSecret`. Runs on the calling shard.

use std::rc::Rc;

use layotto_proto::dapr::runtime::{
    GetBulkSecretRequest, GetBulkSecretResponse, GetSecretRequest, GetSecretResponse,
    SecretResponse,
};

use super::{DaprApi, fail, path};
use crate::{
    error::{ApiError, DaprOp},
    grpc::{
        router::{Router, unary},
        status::Status,
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<DaprApi>) {
    router
        .add(path("GetSecret"), unary(api.clone(), DaprApi::get_secret))
        .add(
            path("GetBulkSecret"),
            unary(api.clone(), DaprApi::get_bulk_secret),
        );
}

impl DaprApi {
    async fn get_secret(
        self: Rc<Self>,
        request: GetSecretRequest,
    ) -> Result<GetSecretResponse, Status> {
        let op = DaprOp::Secret {
            store: &request.store_name,
            key: &request.key,
        };
        let store = self
            .components()
            .secrets
            .get(&request.store_name)
            .map_err(fail(op))?;
        if request.key.is_empty() {
            return Err(fail(op)(ApiError::InvalidArgument(
                "the secret key is empty".into(),
            )));
        }
        Ok(GetSecretResponse {
            data: store.get(&request.key).map_err(fail(op))?,
        })
    }

    async fn get_bulk_secret(
        self: Rc<Self>,
        request: GetBulkSecretRequest,
    ) -> Result<GetBulkSecretResponse, Status> {
        let op = DaprOp::Secret {
            store: &request.store_name,
            key: "",
        };
        let store = self
            .components()
            .secrets
            .get(&request.store_name)
            .map_err(fail(op))?;
        Ok(GetBulkSecretResponse {
            data: store
                .get_all()
                .into_iter()
                .map(|(key, secrets)| (key, SecretResponse { secrets }))
                .collect(),
        })
    }
}
