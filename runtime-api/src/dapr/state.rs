//! Dapr's state rpcs: get, bulk get, save, delete, bulk delete, transactions and
//! `QueryStateAlpha1`, over the state stores with Dapr's key prefix: a Dapr call's key `k` is
//! stored as `{app_id}||k`, as daprd stores it by default (`keyPrefix: appid`), so daprd and
//! layotto-rs sharing a redis see the same keys — and LayOtto's API, which stores `k` as given,
//! sees them under their prefixed names. Runs on the calling shard.

use std::{collections::HashMap, rc::Rc};

use layotto_proto::dapr::{
    common::{StateItem, StateOptions, state_options::StateConcurrency},
    runtime::{
        BulkStateItem, DeleteBulkStateRequest, DeleteStateRequest, ExecuteStateTransactionRequest,
        GetBulkStateRequest, GetBulkStateResponse, GetStateRequest, GetStateResponse,
        QueryStateRequest, QueryStateResponse, SaveStateRequest,
    },
};

use super::{DaprApi, fail, keys, path, query};
use crate::{
    components::state::{self, Concurrency, StateOperation, ttl},
    error::{ApiError, DaprOp},
    grpc::{
        router::{Router, unary},
        status::Status,
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<DaprApi>) {
    router
        .add(path("GetState"), unary(api.clone(), DaprApi::get_state))
        .add(
            path("GetBulkState"),
            unary(api.clone(), DaprApi::get_bulk_state),
        )
        .add(path("SaveState"), unary(api.clone(), DaprApi::save_state))
        .add(
            path("DeleteState"),
            unary(api.clone(), DaprApi::delete_state),
        )
        .add(
            path("DeleteBulkState"),
            unary(api.clone(), DaprApi::delete_bulk_state),
        )
        .add(
            path("ExecuteStateTransaction"),
            unary(api.clone(), DaprApi::execute_state_transaction),
        )
        .add(
            path("QueryStateAlpha1"),
            unary(api.clone(), DaprApi::query_state),
        );
}

impl DaprApi {
    /// The stored name of a Dapr key: `{app_id}||{key}` (Dapr refuses keys containing `||`).
    fn stored_key(&self, key: &str) -> Result<String, ApiError> {
        if key.is_empty() {
            return Err(ApiError::InvalidArgument(
                "state key cannot be empty".into(),
            ));
        }
        if keys::holds_separator(key) {
            return Err(ApiError::InvalidArgument(format!(
                "input key/keyPrefix '{key}' can't contain '{}'",
                keys::SEPARATOR
            )));
        }
        Ok(keys::state_key(self.app_id(), key))
    }

    async fn get_state(
        self: Rc<Self>,
        request: GetStateRequest,
    ) -> Result<GetStateResponse, Status> {
        let op = DaprOp::StateGet {
            store: &request.store_name,
            key: &request.key,
        };
        let store = self
            .components()
            .state
            .get(&request.store_name)
            .map_err(fail(op))?;
        let key = self.stored_key(&request.key).map_err(fail(op))?;
        let entry = store.get(&key).await.map_err(fail(op))?;
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
        let op = DaprOp::StateGet {
            store: &request.store_name,
            key: "",
        };
        let store = self
            .components()
            .state
            .get(&request.store_name)
            .map_err(fail(op))?;
        let stored = request
            .keys
            .iter()
            .map(|key| self.stored_key(key))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail(op))?;
        let read = state::get_bulk(store, stored, request.parallelism).await;
        let items = request
            .keys
            .into_iter()
            .zip(read)
            .map(|(key, (_, entry))| match entry {
                Ok(Some(entry)) => BulkStateItem {
                    key,
                    data: entry.value,
                    etag: entry.etag,
                    ..Default::default()
                },
                Ok(None) => BulkStateItem {
                    key,
                    ..Default::default()
                },
                Err(err) => BulkStateItem {
                    key,
                    error: crate::error::chain(&err).to_string(),
                    ..Default::default()
                },
            })
            .collect();
        Ok(GetBulkStateResponse { items })
    }

    async fn save_state(self: Rc<Self>, request: SaveStateRequest) -> Result<(), Status> {
        let op = DaprOp::StateSave {
            store: &request.store_name,
        };
        let store = self
            .components()
            .state
            .get(&request.store_name)
            .map_err(fail(op))?;
        let operations = request
            .states
            .into_iter()
            .map(|item| self.upsert(item))
            .collect::<Result<_, _>>()
            .map_err(fail(op))?;
        store.apply(operations).await.map_err(fail(op))
    }

    async fn delete_state(self: Rc<Self>, request: DeleteStateRequest) -> Result<(), Status> {
        let op = DaprOp::StateDelete { key: &request.key };
        let store = self
            .components()
            .state
            .get(&request.store_name)
            .map_err(fail(op))?;
        let operation = self
            .delete(StateItem {
                key: request.key.clone(),
                etag: request.etag,
                options: request.options,
                ..Default::default()
            })
            .map_err(fail(op))?;
        store.apply(vec![operation]).await.map_err(fail(op))
    }

    async fn delete_bulk_state(
        self: Rc<Self>,
        request: DeleteBulkStateRequest,
    ) -> Result<(), Status> {
        let op = DaprOp::StateDeleteBulk {
            store: &request.store_name,
        };
        let store = self
            .components()
            .state
            .get(&request.store_name)
            .map_err(fail(op))?;
        let operations = request
            .states
            .into_iter()
            .map(|item| self.delete(item))
            .collect::<Result<_, _>>()
            .map_err(fail(op))?;
        store.apply(operations).await.map_err(fail(op))
    }

    /// Dapr's operation types are `upsert` and `delete`, spelled so (an other one is
    /// UNIMPLEMENTED, as daprd answers it).
    async fn execute_state_transaction(
        self: Rc<Self>,
        request: ExecuteStateTransactionRequest,
    ) -> Result<(), Status> {
        let op = DaprOp::StateTransaction;
        let store = self
            .components()
            .state
            .get(&request.store_name)
            .map_err(fail(op))?;
        let operations = request
            .operations
            .into_iter()
            .map(|operation| {
                let item = operation.request.ok_or_else(|| {
                    ApiError::InvalidArgument("a transaction operation has no request".into())
                })?;
                match operation.operation_type.as_str() {
                    "upsert" => self.upsert(item),
                    "delete" => self.delete(item),
                    other => Err(ApiError::Unimplemented(format!(
                        "operation type {other} not supported"
                    ))),
                }
            })
            .collect::<Result<_, _>>()
            .map_err(fail(op))?;
        store.apply(operations).await.map_err(fail(op))
    }

    /// Runs Dapr's query language ([`query`]) over the store's entries of this app.
    async fn query_state(
        self: Rc<Self>,
        request: QueryStateRequest,
    ) -> Result<QueryStateResponse, Status> {
        let op = DaprOp::StateQuery {
            store: &request.store_name,
        };
        let store = self
            .components()
            .state
            .get(&request.store_name)
            .map_err(fail(op))?;
        query::query_store(store, self.app_id(), &request.query)
            .await
            .map_err(fail(op))?
            .ok_or_else(|| {
                Status::new(
                    crate::grpc::status::Code::Internal,
                    format!("state store {} doesn't support query", request.store_name),
                )
            })
    }

    fn upsert(&self, item: StateItem) -> Result<StateOperation, ApiError> {
        Ok(StateOperation::Upsert {
            concurrency: concurrency(item.options.as_ref()),
            ttl: ttl(&item.metadata)?,
            etag: item.etag.map(|e| e.value).filter(|e| !e.is_empty()),
            key: self.stored_key(&item.key)?,
            value: item.value,
        })
    }

    fn delete(&self, item: StateItem) -> Result<StateOperation, ApiError> {
        Ok(StateOperation::Delete {
            concurrency: concurrency(item.options.as_ref()),
            etag: item.etag.map(|e| e.value).filter(|e| !e.is_empty()),
            key: self.stored_key(&item.key)?,
        })
    }
}

/// Dapr's concurrency option (its consistency option needs nothing: every store here reads
/// its own writes).
fn concurrency(options: Option<&StateOptions>) -> Concurrency {
    match options.map(StateOptions::concurrency) {
        Some(StateConcurrency::ConcurrencyFirstWrite) => Concurrency::FirstWrite,
        Some(StateConcurrency::ConcurrencyLastWrite) => Concurrency::LastWrite,
        _ => Concurrency::Unspecified,
    }
}
