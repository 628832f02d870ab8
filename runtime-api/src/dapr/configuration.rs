//! Dapr's configuration rpcs — `GetConfiguration`, `SubscribeConfiguration`,
//! `UnsubscribeConfiguration`, each also under its `…Alpha1` name — over LayOtto's
//! configuration stores: Dapr addresses items by key alone, so a Dapr call reads the items of
//! the sidecar's app id in the default group and label (where LayOtto's `SaveConfiguration`
//! with that app id and no group or label writes them). Dapr's item `version` is left empty
//! (the stores keep none per item). A subscription's first message carries only its id, then
//! each change of a selected item follows; `UnsubscribeConfiguration` with that id (from any
//! connection) ends the stream. Runs on the calling shard.

use std::{collections::HashMap, rc::Rc};

use layotto_proto::{
    dapr::{
        common::ConfigurationItem,
        runtime::{
            GetConfigurationRequest, GetConfigurationResponse, SubscribeConfigurationRequest,
            SubscribeConfigurationResponse, UnsubscribeConfigurationRequest,
            UnsubscribeConfigurationResponse,
        },
    },
    runtime as layotto,
};

use super::{DaprApi, fail, path};
use crate::{
    components::configuration::{DEFAULT_GROUP, DEFAULT_LABEL, Selector, hub::WatchEvent},
    error::{ApiError, DaprOp},
    grpc::{
        call::Responses,
        router::{Router, server_streaming, unary},
        status::Status,
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<DaprApi>) {
    for suffix in ["", "Alpha1"] {
        router
            .add(
                path(&format!("GetConfiguration{suffix}")),
                unary(api.clone(), DaprApi::get_configuration),
            )
            .add(
                path(&format!("SubscribeConfiguration{suffix}")),
                server_streaming(api.clone(), DaprApi::subscribe_configuration),
            )
            .add(
                path(&format!("UnsubscribeConfiguration{suffix}")),
                unary(api.clone(), DaprApi::unsubscribe_configuration),
            );
    }
}

impl DaprApi {
    /// The selector of a Dapr request's `keys` (none: every key).
    fn selector(&self, keys: Vec<String>) -> Result<Selector, ApiError> {
        Selector::new(
            self.app_id().to_owned(),
            DEFAULT_GROUP.to_owned(),
            DEFAULT_LABEL.to_owned(),
            keys,
        )
    }

    async fn get_configuration(
        self: Rc<Self>,
        request: GetConfigurationRequest,
    ) -> Result<GetConfigurationResponse, Status> {
        let op = DaprOp::ConfigurationGet {
            store: &request.store_name,
        };
        let store = self
            .components()
            .config_stores
            .get(&request.store_name)
            .map_err(fail(op))?;
        let selector = self.selector(request.keys.clone()).map_err(fail(op))?;
        let items = store.get(&selector).await.map_err(fail(op))?;
        Ok(GetConfigurationResponse {
            items: dapr_items(items),
        })
    }

    async fn subscribe_configuration(
        self: Rc<Self>,
        request: SubscribeConfigurationRequest,
        mut responses: Responses,
    ) -> Result<(), Status> {
        let op = DaprOp::ConfigurationSubscribe {
            store: &request.store_name,
        };
        let store = self
            .components()
            .config_stores
            .get(&request.store_name)
            .map_err(fail(op))?;
        let selector = self.selector(request.keys.clone()).map_err(fail(op))?;
        let mut subscription = store.subscribe(&selector.app_id).await.map_err(fail(op))?;
        let (id, mut stopped) = self.shared().add_configuration_subscription();
        let _registered = Registered {
            api: &self,
            id: &id,
        };
        responses
            .send(&SubscribeConfigurationResponse {
                id: id.clone(),
                items: HashMap::new(),
            })
            .await?;
        loop {
            let event =
                futures_lite::future::or(async { Some(subscription.next().await) }, async {
                    let _ = (&mut stopped).await;
                    None
                })
                .await;
            let items = match event {
                None => return Ok(()),
                Some(WatchEvent::Changed(items)) => selector.select(items.iter()),
                Some(WatchEvent::Resync) => store.get(&selector).await.map_err(fail(op))?,
            };
            if !items.is_empty() {
                responses
                    .send(&SubscribeConfigurationResponse {
                        id: id.clone(),
                        items: dapr_items(items),
                    })
                    .await?;
            }
        }
    }

    /// Ends subscription `id`; an unknown id is `ok: false` with Dapr's message (not an error).
    async fn unsubscribe_configuration(
        self: Rc<Self>,
        request: UnsubscribeConfigurationRequest,
    ) -> Result<UnsubscribeConfigurationResponse, Status> {
        if self.shared().stop_configuration_subscription(&request.id) {
            return Ok(UnsubscribeConfigurationResponse {
                ok: true,
                message: String::new(),
            });
        }
        Ok(UnsubscribeConfigurationResponse {
            ok: false,
            message: format!(
                "failed to unsubscribe to configuration request {}: subscription does not exist",
                request.id
            ),
        })
    }
}

/// Forgets its subscription when the stream ends, however it ends (the client may cancel it).
struct Registered<'a> {
    api: &'a DaprApi,
    id: &'a str,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.api.shared().remove_configuration_subscription(self.id);
    }
}

/// LayOtto's items as Dapr's map from key to item (value = content; metadata kept).
fn dapr_items(items: Vec<layotto::ConfigurationItem>) -> HashMap<String, ConfigurationItem> {
    items
        .into_iter()
        .map(|item| {
            let dapr = ConfigurationItem {
                value: item.content,
                version: String::new(),
                metadata: item.metadata,
            };
            (item.key, dapr)
        })
        .collect()
}
