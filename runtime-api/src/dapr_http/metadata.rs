//! `GET /v1.0/metadata` (the app id, runtime version, components and extended metadata, in
//! daprd's JSON shape) and `PUT /v1.0/metadata/{key}` (the raw body becomes the value). Runs on
//! the serving shard.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{DaprHttpApi, DaprRequest, Reply};
use crate::{
    components::{Block, Components},
    error::DaprHttpError,
};

/// daprd's `metadataResponse` (every field `omitempty`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetadataResponse {
    id: String,
    runtime_version: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    components: Vec<RegisteredComponent>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extended: BTreeMap<String, String>,
}

/// daprd's `RegisteredComponents`.
#[derive(Serialize)]
struct RegisteredComponent {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    version: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    capabilities: Vec<&'static str>,
}

/// Every component, typed as daprd types them: the Dapr category of its block and its backend
/// (`state.redis`, `secretstores.local.file`); LayOtto's own blocks keep their config key.
fn registered(components: &Components) -> Vec<RegisteredComponent> {
    let mut all = Vec::new();
    listed(&mut all, "state", &components.state, state_capabilities);
    listed(&mut all, "pubsub", &components.pubsubs, no_capabilities);
    listed(&mut all, "bindings", &components.bindings, no_capabilities);
    listed(
        &mut all,
        "secretstores",
        &components.secrets,
        no_capabilities,
    );
    listed(
        &mut all,
        "configuration",
        &components.config_stores,
        no_capabilities,
    );
    listed(&mut all, "lock", &components.locks, no_capabilities);
    listed(
        &mut all,
        "sequencer",
        &components.sequencers,
        no_capabilities,
    );
    listed(&mut all, "file", &components.files, no_capabilities);
    listed(&mut all, "hellos", &components.hellos, no_capabilities);
    listed(&mut all, "rpcs", &components.rpcs, no_capabilities);
    all
}

fn listed<T: ?Sized>(
    all: &mut Vec<RegisteredComponent>,
    category: &str,
    block: &Block<T>,
    capabilities: fn(&str) -> Vec<&'static str>,
) {
    for (name, _) in block.iter() {
        let backend = block.backend_type(name).unwrap_or_default();
        all.push(RegisteredComponent {
            name: name.to_owned(),
            kind: format!("{category}.{backend}"),
            version: "v1",
            capabilities: capabilities(backend),
        });
    }
}

/// What daprd reports for stores with etags, transactions and (but zookeeper) TTLs.
fn state_capabilities(backend: &str) -> Vec<&'static str> {
    let mut capabilities = vec!["ETAG", "TRANSACTIONAL"];
    if backend != "zookeeper" {
        capabilities.push("TTL");
    }
    capabilities
}

fn no_capabilities(_: &str) -> Vec<&'static str> {
    Vec::new()
}

/// `GET /v1.0/metadata`.
pub(super) fn get(api: &DaprHttpApi) -> Reply {
    let runtime = api.runtime();
    Reply::json(&MetadataResponse {
        id: runtime.app_id().to_owned(),
        runtime_version: env!("CARGO_PKG_VERSION"),
        components: registered(runtime.components()),
        extended: runtime.extended_metadata(),
    })
}

/// `PUT /v1.0/metadata/{key}`: 204.
pub(super) fn put(
    api: &DaprHttpApi,
    key: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let value = String::from_utf8(request.body.to_vec())
        .map_err(|_| DaprHttpError::malformed("the metadata value is not UTF-8"))?;
    api.runtime().set_extended_metadata(key.to_owned(), value);
    Ok(Reply::no_content())
}
