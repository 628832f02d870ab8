//! The configuration rpcs: get, save, delete, and the `SubscribeConfiguration` stream. Runs on the calling shard.

use crate::components::configuration::Selector;
use crate::components::configuration::check_segment;
use crate::components::configuration::hub::WatchEvent;
use futures_util::stream;
use futures_util::stream::LocalBoxStream;
use futures_util::{StreamExt, stream::SelectAll};
use layotto_proto::runtime::{
    ConfigurationItem, DeleteConfigurationRequest, GetConfigurationRequest,
    GetConfigurationResponse, SaveConfigurationRequest, SubscribeConfigurationRequest,
    SubscribeConfigurationResponse,
};
use std::rc::Rc;

use super::{RuntimeApi, path};
use crate::grpc::{
    call::{Requests, Responses},
    router::{Router, bidirectional, unary},
    status::Status,
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<RuntimeApi>) {
    router
        .add(
            path("GetConfiguration"),
            unary(api.clone(), RuntimeApi::get_configuration),
        )
        .add(
            path("SaveConfiguration"),
            unary(api.clone(), RuntimeApi::save_configuration),
        )
        .add(
            path("DeleteConfiguration"),
            unary(api.clone(), RuntimeApi::delete_configuration),
        )
        .add(
            path("SubscribeConfiguration"),
            bidirectional(api.clone(), RuntimeApi::subscribe_configuration),
        );
}

impl RuntimeApi {
    async fn get_configuration(
        self: Rc<Self>,
        request: GetConfigurationRequest,
    ) -> Result<GetConfigurationResponse, Status> {
        let store = self.components().config_stores.get(&request.store_name)?;
        let selector = Selector::new(request.app_id, request.group, request.label, request.keys)?;
        Ok(GetConfigurationResponse {
            items: store.get(&selector).await?,
        })
    }

    async fn save_configuration(
        self: Rc<Self>,
        request: SaveConfigurationRequest,
    ) -> Result<(), Status> {
        let store = self.components().config_stores.get(&request.store_name)?;
        check_segment("app_id", &request.app_id, false)?;
        Ok(store.save(&request.app_id, request.items).await?)
    }

    async fn delete_configuration(
        self: Rc<Self>,
        request: DeleteConfigurationRequest,
    ) -> Result<(), Status> {
        let store = self.components().config_stores.get(&request.store_name)?;
        let selector = Selector::new(request.app_id, request.group, request.label, request.keys)?;
        Ok(store.delete(&selector).await?)
    }

    /// Each request on the stream adds a subscription; every change it selects is then streamed
    /// as it happens, one response per change with the changed items (LayOtto sends nothing
    /// else, so there is no acknowledgement). The response headers go out once the first
    /// request's watch is in place, and each request is read only after the previous one's
    /// watch is: a client that has the headers knows what changes from then on reaches its
    /// first subscription. The stream ends when the client cancels it (or half-closes without
    /// any subscription).
    async fn subscribe_configuration(
        self: Rc<Self>,
        mut requests: Requests,
        mut responses: Responses,
    ) -> Result<(), Status> {
        let mut followed: Vec<(String, Selector)> = Vec::new();
        let mut changes: SelectAll<LocalBoxStream<'static, (usize, WatchEvent)>> = SelectAll::new();
        let mut reading = true;
        loop {
            let next = match (reading, changes.is_empty()) {
                (false, true) => return Ok(()),
                (true, true) => Next::Request(requests.next().await?),
                (false, false) => Next::Change(changes.next().await),
                (true, false) => {
                    futures_lite::future::or(
                        async { requests.next().await.map(Next::Request) },
                        async { Ok(Next::Change(changes.next().await)) },
                    )
                    .await?
                }
            };
            match next {
                Next::Request(None) => reading = false,
                Next::Request(Some(request)) => {
                    let SubscribeConfigurationRequest {
                        store_name,
                        app_id,
                        group,
                        label,
                        keys,
                        metadata: _,
                    } = request;
                    let store = self.components().config_stores.get(&store_name)?;
                    let selector = Selector::new(app_id, group, label, keys)?;
                    let subscription = store.subscribe(&selector.app_id).await?;
                    let index = followed.len();
                    changes.push(
                        stream::unfold(subscription, |mut subscription| async move {
                            let event = subscription.next().await;
                            Some((event, subscription))
                        })
                        .map(move |event| (index, event))
                        .boxed_local(),
                    );
                    followed.push((store_name, selector));
                    responses.send_headers()?;
                }
                Next::Change(None) => unreachable!("polled only while subscriptions exist"),
                Next::Change(Some((index, event))) => {
                    let (store_name, selector) = &followed[index];
                    let items = match event {
                        WatchEvent::Changed(items) => selector.select(items.iter()),
                        WatchEvent::Resync => {
                            let store = self.components().config_stores.get(store_name)?;
                            store.get(selector).await?
                        }
                    };
                    if !items.is_empty() {
                        responses
                            .send(&subscribed(store_name, &selector.app_id, items))
                            .await?;
                    }
                }
            }
        }
    }
}

/// What a configuration subscription waits for next.
enum Next {
    Request(Option<SubscribeConfigurationRequest>),
    Change(Option<(usize, WatchEvent)>),
}

fn subscribed(
    store_name: &str,
    app_id: &str,
    items: Vec<ConfigurationItem>,
) -> SubscribeConfigurationResponse {
    SubscribeConfigurationResponse {
        store_name: store_name.to_owned(),
        app_id: app_id.to_owned(),
        items,
    }
}
