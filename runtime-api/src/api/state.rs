//! The state rpcs: get, bulk get, save, delete, bulk delete and transactions, with LayOtto's
//! etag, concurrency and `ttlInSeconds` rules turned into [`StateOperation`]s. Runs on the calling shard.

use crate::components::state;
use crate::components::state::Concurrency;
use crate::components::state::StateOperation;
use layotto_proto::runtime::{
    BulkStateItem, DeleteBulkStateRequest, DeleteStateRequest, ExecuteStateTransactionRequest,
    GetBulkStateRequest, GetBulkStateResponse, GetStateRequest, GetStateResponse, SaveStateRequest,
    StateItem, StateOptions, state_options::StateConcurrency,
};
use std::collections::HashMap;
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
        .add(path("GetState"), unary(api.clone(), RuntimeApi::get_state))
        .add(
            path("GetBulkState"),
            unary(api.clone(), RuntimeApi::get_bulk_state),
        )
        .add(
            path("SaveState"),
            unary(api.clone(), RuntimeApi::save_state),
        )
        .add(
            path("DeleteState"),
            unary(api.clone(), RuntimeApi::delete_state),
        )
        .add(
            path("DeleteBulkState"),
            unary(api.clone(), RuntimeApi::delete_bulk_state),
        )
        .add(
            path("ExecuteStateTransaction"),
            unary(api.clone(), RuntimeApi::execute_state_transaction),
        );
}

impl RuntimeApi {
    async fn get_state(
        self: Rc<Self>,
        request: GetStateRequest,
    ) -> Result<GetStateResponse, Status> {
        let store = self.components().state.get(&request.store_name)?;
        require_key(&request.key)?;
        let entry = store.get(&request.key).await?;
        Ok(entry
            .map(|entry| GetStateResponse {
                data: entry.value,
                etag: entry.etag,
                metadata: HashMap::new(),
            })
            .unwrap_or_default())
    }

    async fn get_bulk_state(
        self: Rc<Self>,
        request: GetBulkStateRequest,
    ) -> Result<GetBulkStateResponse, Status> {
        let store = self.components().state.get(&request.store_name)?;
        for key in &request.keys {
            require_key(key)?;
        }
        let items = state::get_bulk(store, request.keys, request.parallelism)
            .await
            .into_iter()
            .map(|(key, entry)| match entry {
                Ok(entry) => {
                    let entry = entry.unwrap_or_else(|| state::StateEntry {
                        value: Default::default(),
                        etag: String::new(),
                    });
                    BulkStateItem {
                        key,
                        data: entry.value,
                        etag: entry.etag,
                        ..Default::default()
                    }
                }
                Err(err) => BulkStateItem {
                    key,
                    error: err.to_string(),
                    ..Default::default()
                },
            })
            .collect();
        Ok(GetBulkStateResponse { items })
    }

    async fn save_state(self: Rc<Self>, request: SaveStateRequest) -> Result<(), Status> {
        let store = self.components().state.get(&request.store_name)?;
        let operations = request
            .states
            .into_iter()
            .map(upsert)
            .collect::<Result<_, _>>()?;
        Ok(store.apply(operations).await?)
    }

    async fn delete_state(self: Rc<Self>, request: DeleteStateRequest) -> Result<(), Status> {
        let store = self.components().state.get(&request.store_name)?;
        let operation = delete(StateItem {
            key: request.key,
            etag: request.etag,
            options: request.options,
            ..Default::default()
        })?;
        Ok(store.apply(vec![operation]).await?)
    }

    async fn delete_bulk_state(
        self: Rc<Self>,
        request: DeleteBulkStateRequest,
    ) -> Result<(), Status> {
        let store = self.components().state.get(&request.store_name)?;
        let operations = request
            .states
            .into_iter()
            .map(delete)
            .collect::<Result<_, _>>()?;
        Ok(store.apply(operations).await?)
    }

    async fn execute_state_transaction(
        self: Rc<Self>,
        request: ExecuteStateTransactionRequest,
    ) -> Result<(), Status> {
        let store = self.components().state.get(&request.store_name)?;
        let operations = request
            .operations
            .into_iter()
            .map(|operation| {
                let item = operation.request.ok_or_else(|| {
                    ApiError::InvalidArgument("a transaction operation has no request".into())
                })?;
                match operation.operation_type.to_ascii_lowercase().as_str() {
                    "upsert" => upsert(item),
                    "delete" => delete(item),
                    other => Err(ApiError::InvalidArgument(format!(
                        "operation type \"{other}\" is not supported (upsert, delete)"
                    ))),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(store.apply(operations).await?)
    }
}

fn require_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        Err(ApiError::InvalidArgument("the state key is empty".into()))
    } else {
        Ok(())
    }
}

fn upsert(item: StateItem) -> Result<StateOperation, ApiError> {
    require_key(&item.key)?;
    let ttl = state::ttl(&item.metadata)?;
    Ok(StateOperation::Upsert {
        concurrency: concurrency(item.options.as_ref()),
        etag: item.etag.map(|e| e.value).filter(|e| !e.is_empty()),
        key: item.key,
        value: item.value,
        ttl,
    })
}

fn delete(item: StateItem) -> Result<StateOperation, ApiError> {
    require_key(&item.key)?;
    Ok(StateOperation::Delete {
        concurrency: concurrency(item.options.as_ref()),
        etag: item.etag.map(|e| e.value).filter(|e| !e.is_empty()),
        key: item.key,
    })
}

fn concurrency(options: Option<&StateOptions>) -> Concurrency {
    match options.map(StateOptions::concurrency) {
        Some(StateConcurrency::ConcurrencyFirstWrite) => Concurrency::FirstWrite,
        Some(StateConcurrency::ConcurrencyLastWrite) => Concurrency::LastWrite,
        _ => Concurrency::Unspecified,
    }
}
