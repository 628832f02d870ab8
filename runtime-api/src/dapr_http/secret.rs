//! `GET /v1.0/secrets/{store}/{key}` (`{"<key>": "<value>"}`) and `/v1.0/secrets/{store}/bulk`
//! (`{"<secret>": {"<key>": "<value>"}}`), with daprd's statuses: an unknown store 401
//! `ERR_SECRET_STORE_NOT_FOUND`, a secret outside the store's scope 403, a missing one 500
//! `ERR_SECRET_GET`. Runs on the serving shard.

use super::{DaprHttpApi, Reply};
use crate::{
    components::secret::SecretStore,
    error::{DaprCodes, DaprHttpError},
};

const GET: DaprCodes = DaprCodes {
    unknown_component: (401, "ERR_SECRET_STORE_NOT_FOUND"),
    failed: "ERR_SECRET_GET",
};

fn store<'a>(api: &'a DaprHttpApi, name: &str) -> Result<&'a dyn SecretStore, DaprHttpError> {
    api.runtime()
        .components()
        .secrets
        .get(name)
        .map_err(|err| err.dapr_http(GET))
}

/// `GET /v1.0/secrets/{store}/{key}`: 200.
pub(super) fn get(api: &DaprHttpApi, name: &str, key: &str) -> Result<Reply, DaprHttpError> {
    let secret = store(api, name)?
        .get(key)
        .map_err(|err| err.dapr_http(GET))?;
    Ok(Reply::json(&secret))
}

/// `GET /v1.0/secrets/{store}/bulk`: 200 with every secret the store's scope allows.
pub(super) fn get_bulk(api: &DaprHttpApi, name: &str) -> Result<Reply, DaprHttpError> {
    Ok(Reply::json(&store(api, name)?.get_all()))
}
