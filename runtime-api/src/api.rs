//! The `spec.proto.runtime.v1.Runtime` service: each rpc checks its request, looks up the named
//! component and calls it. Rpcs whose building block is not served yet are not routed, so they
//! answer UNIMPLEMENTED. One instance per shard, over components shared by all shards.

use std::{collections::HashMap, rc::Rc, sync::Arc, time::Duration};

use futures_util::{
    StreamExt,
    stream::{self, LocalBoxStream, SelectAll},
};
use layotto_proto::runtime::{
    BulkStateItem, ConfigurationItem, DelFileRequest, DeleteBulkStateRequest,
    DeleteConfigurationRequest, DeleteStateRequest, ExecuteStateTransactionRequest, FileInfo,
    FileMeta, GetBulkSecretRequest, GetBulkSecretResponse, GetBulkStateRequest,
    GetBulkStateResponse, GetConfigurationRequest, GetConfigurationResponse, GetFileMetaRequest,
    GetFileMetaResponse, GetFileRequest, GetFileResponse, GetNextIdRequest, GetNextIdResponse,
    GetSecretRequest, GetSecretResponse, GetStateRequest, GetStateResponse, InvokeBindingRequest,
    InvokeBindingResponse, InvokeResponse, InvokeServiceRequest, ListFileRequest, ListFileResp,
    LockKeepAliveRequest, LockKeepAliveResponse, PublishEventRequest, PutFileRequest,
    SaveConfigurationRequest, SaveStateRequest, SayHelloRequest, SayHelloResponse, SecretResponse,
    StateItem, StateOptions, SubscribeConfigurationRequest, SubscribeConfigurationResponse,
    SubscribeTopicEventsRequest, SubscribeTopicEventsResponse, SubscribeTopicEventsResponseInitial,
    TryLockRequest, TryLockResponse, UnlockRequest, UnlockResponse, http_extension::Verb,
    lock_keep_alive_response, sequencer_options::AutoIncrement, state_options::StateConcurrency,
    subscribe_topic_events_request::SubscribeTopicEventsRequestType,
    subscribe_topic_events_response::SubscribeTopicEventsResponseType, unlock_response,
};

use crate::{
    components::{
        Components,
        configuration::{Selector, check_segment, hub::WatchEvent},
        lock::LockStatus,
        pubsub::{Answer, Step, cloud_event, next_step},
        state::{self, Concurrency, StateOperation},
    },
    error::ApiError,
    grpc::{
        call::{Requests, Responses},
        router::{Router, bidirectional, client_streaming, server_streaming, unary},
        status::Status,
    },
};

/// Path prefix of the service's rpcs.
pub const SERVICE: &str = "/spec.proto.runtime.v1.Runtime/";

/// The runtime API on one shard.
pub struct RuntimeApi {
    components: Arc<Components>,
}

impl RuntimeApi {
    /// A router serving every implemented rpc over `components`.
    pub fn router(components: Arc<Components>) -> Router {
        let api = Rc::new(Self { components });
        let path = |rpc: &str| format!("{SERVICE}{rpc}");
        let mut router = Router::default();
        router
            .add(path("SayHello"), unary(api.clone(), Self::say_hello))
            .add(path("GetState"), unary(api.clone(), Self::get_state))
            .add(
                path("GetBulkState"),
                unary(api.clone(), Self::get_bulk_state),
            )
            .add(path("SaveState"), unary(api.clone(), Self::save_state))
            .add(path("DeleteState"), unary(api.clone(), Self::delete_state))
            .add(
                path("DeleteBulkState"),
                unary(api.clone(), Self::delete_bulk_state),
            )
            .add(
                path("ExecuteStateTransaction"),
                unary(api.clone(), Self::execute_state_transaction),
            )
            .add(
                path("GetConfiguration"),
                unary(api.clone(), Self::get_configuration),
            )
            .add(
                path("SaveConfiguration"),
                unary(api.clone(), Self::save_configuration),
            )
            .add(
                path("DeleteConfiguration"),
                unary(api.clone(), Self::delete_configuration),
            )
            .add(
                path("SubscribeConfiguration"),
                bidirectional(api.clone(), Self::subscribe_configuration),
            )
            .add(path("TryLock"), unary(api.clone(), Self::try_lock))
            .add(path("Unlock"), unary(api.clone(), Self::unlock))
            .add(
                path("LockKeepAlive"),
                unary(api.clone(), Self::lock_keep_alive),
            )
            .add(path("GetNextId"), unary(api.clone(), Self::get_next_id))
            .add(path("GetSecret"), unary(api.clone(), Self::get_secret))
            .add(
                path("GetBulkSecret"),
                unary(api.clone(), Self::get_bulk_secret),
            )
            .add(
                path("PutFile"),
                client_streaming(api.clone(), Self::put_file),
            )
            .add(
                path("GetFile"),
                server_streaming(api.clone(), Self::get_file),
            )
            .add(path("ListFile"), unary(api.clone(), Self::list_file))
            .add(path("DelFile"), unary(api.clone(), Self::del_file))
            .add(path("GetFileMeta"), unary(api.clone(), Self::get_file_meta))
            .add(
                path("InvokeBinding"),
                unary(api.clone(), Self::invoke_binding),
            )
            .add(
                path("PublishEvent"),
                unary(api.clone(), Self::publish_event),
            )
            .add(
                path("InvokeService"),
                unary(api.clone(), Self::invoke_service),
            )
            .add(
                path("SubscribeTopicEvents"),
                bidirectional(api, Self::subscribe_topic_events),
            );
        router
    }

    async fn invoke_service(
        self: Rc<Self>,
        request: InvokeServiceRequest,
    ) -> Result<InvokeResponse, Status> {
        let invoker = self.components.invoker()?;
        let message = request
            .message
            .ok_or_else(|| ApiError::InvalidArgument("InvokeService carried no message".into()))?;
        if request.id.is_empty() || message.method.is_empty() {
            return Err(
                ApiError::InvalidArgument("the app id and the method are required".into()).into(),
            );
        }
        let (verb, querystring) = match &message.http_extension {
            None => (None, ""),
            Some(extension) => {
                let verb = match extension.verb() {
                    Verb::None => None,
                    Verb::Get => Some(http::Method::GET),
                    Verb::Head => Some(http::Method::HEAD),
                    Verb::Post => Some(http::Method::POST),
                    Verb::Put => Some(http::Method::PUT),
                    Verb::Delete => Some(http::Method::DELETE),
                    Verb::Connect => Some(http::Method::CONNECT),
                    Verb::Options => Some(http::Method::OPTIONS),
                    Verb::Trace => Some(http::Method::TRACE),
                    Verb::Patch => Some(http::Method::PATCH),
                };
                (verb, extension.querystring.as_str())
            }
        };
        let data = message.data.map(|any| any.value).unwrap_or_default();
        let answer = invoker
            .invoke(
                &request.id,
                &message.method,
                verb,
                querystring,
                data.into(),
                &message.content_type,
            )
            .await?;
        Ok(InvokeResponse {
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: answer.data.to_vec(),
            }),
            content_type: answer.content_type,
        })
    }

    async fn publish_event(self: Rc<Self>, request: PublishEventRequest) -> Result<(), Status> {
        let broker = self.components.pubsub(&request.pubsub_name)?;
        if request.topic.is_empty() {
            return Err(ApiError::InvalidArgument("the topic is empty".into()).into());
        }
        let event = cloud_event(
            self.components.app_id(),
            &request.pubsub_name,
            &request.topic,
            request.data,
            request.data_content_type,
            request.metadata,
        );
        Ok(broker.publish(event).await?)
    }

    /// The first message subscribes (answered by `initial_response`); then each event is sent
    /// as `event_message` and waits for the client's `event_processed` of its id: SUCCESS and
    /// DROP move on, RETRY sends it again (bounded, see [`next_step`]). Ends when the client does.
    async fn subscribe_topic_events(
        self: Rc<Self>,
        mut requests: Requests,
        mut responses: Responses,
    ) -> Result<(), Status> {
        let first = requests
            .next::<SubscribeTopicEventsRequest>()
            .await?
            .and_then(|first| first.subscribe_topic_events_request_type);
        let Some(SubscribeTopicEventsRequestType::InitialRequest(initial)) = first else {
            return Err(ApiError::InvalidArgument(
                "the first message must be an initial_request".into(),
            )
            .into());
        };
        let broker = self.components.pubsub(&initial.pubsub_name)?;
        if initial.topic.is_empty() {
            return Err(ApiError::InvalidArgument("the topic is empty".into()).into());
        }
        let mut events = broker.subscribe(&initial.topic).await?;
        let initial_response = SubscribeTopicEventsResponseType::InitialResponse(
            SubscribeTopicEventsResponseInitial {},
        );
        responses
            .send(&SubscribeTopicEventsResponse {
                subscribe_topic_events_response_type: Some(initial_response),
            })
            .await?;
        loop {
            let delivery = futures_lite::future::or(async { Ok(events.recv().await) }, async {
                // Nothing is in flight: a message now is out of turn, the end is the end.
                match requests.next::<SubscribeTopicEventsRequest>().await? {
                    None => Ok(None),
                    Some(_) => Err(Status::from(ApiError::InvalidArgument(
                        "event_processed for no event in flight".into(),
                    ))),
                }
            })
            .await?;
            let Some(delivery) = delivery else {
                return Ok(());
            };
            let mut attempt = 1;
            loop {
                let message =
                    SubscribeTopicEventsResponseType::EventMessage(delivery.event.clone());
                responses
                    .send(&SubscribeTopicEventsResponse {
                        subscribe_topic_events_response_type: Some(message),
                    })
                    .await?;
                let Some(answer) = processed(&mut requests, &delivery.event.id).await? else {
                    return Ok(());
                };
                match next_step(&answer, attempt) {
                    Step::Finish(_) => break,
                    Step::RetryAfter(pause) => {
                        glommio::timer::sleep(pause).await;
                        attempt += 1;
                    }
                }
            }
            drop(delivery.done);
        }
    }

    async fn invoke_binding(
        self: Rc<Self>,
        request: InvokeBindingRequest,
    ) -> Result<InvokeBindingResponse, Status> {
        let binding = self.components.binding(&request.name)?;
        let answer = binding
            .invoke(&request.operation, request.data, request.metadata)
            .await?;
        Ok(InvokeBindingResponse {
            data: answer.data,
            metadata: answer.metadata,
        })
    }

    /// The first message names the store and the file; every message's `data` is appended.
    async fn put_file(self: Rc<Self>, mut requests: Requests) -> Result<(), Status> {
        let Some(first) = requests.next::<PutFileRequest>().await? else {
            return Err(ApiError::InvalidArgument("PutFile carried no message".into()).into());
        };
        let store = self.components.file_store(&first.store_name)?;
        let (target, temporary) = store.start_put(&first.name).await?;
        let written = async {
            store.append(&temporary, first.data).await?;
            while let Some(next) = requests.next::<PutFileRequest>().await? {
                store.append(&temporary, next.data).await?;
            }
            Ok::<(), Status>(())
        }
        .await;
        store.finish_put(target, temporary, written.is_ok()).await?;
        written
    }

    async fn get_file(
        self: Rc<Self>,
        request: GetFileRequest,
        mut responses: Responses,
    ) -> Result<(), Status> {
        let store = self.components.file_store(&request.store_name)?;
        let mut offset = 0u64;
        loop {
            let data = store.read_chunk(&request.name, offset).await?;
            if data.is_empty() {
                return Ok(());
            }
            offset += data.len() as u64;
            responses
                .send(&GetFileResponse { data: data.into() })
                .await?;
        }
    }

    async fn list_file(self: Rc<Self>, request: ListFileRequest) -> Result<ListFileResp, Status> {
        let file = request.request.unwrap_or_default();
        let store = self.components.file_store(&file.store_name)?;
        let page_size = usize::try_from(request.page_size)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(100);
        let page = store.list(&file.name, page_size, request.marker).await?;
        Ok(ListFileResp {
            is_truncated: page.next_marker.is_some(),
            marker: page.next_marker.unwrap_or_default(),
            files: page
                .entries
                .into_iter()
                .map(|entry| FileInfo {
                    file_name: entry.name,
                    size: entry.size as i64,
                    last_modified: entry.last_modified,
                    metadata: HashMap::new(),
                })
                .collect(),
        })
    }

    async fn del_file(self: Rc<Self>, request: DelFileRequest) -> Result<(), Status> {
        let file = request.request.unwrap_or_default();
        let store = self.components.file_store(&file.store_name)?;
        Ok(store.delete(&file.name).await?)
    }

    async fn get_file_meta(
        self: Rc<Self>,
        request: GetFileMetaRequest,
    ) -> Result<GetFileMetaResponse, Status> {
        let file = request.request.unwrap_or_default();
        let store = self.components.file_store(&file.store_name)?;
        let (size, last_modified) = store.meta(&file.name).await?;
        Ok(GetFileMetaResponse {
            size: size as i64,
            last_modified,
            response: Some(FileMeta::default()),
        })
    }

    async fn get_secret(
        self: Rc<Self>,
        request: GetSecretRequest,
    ) -> Result<GetSecretResponse, Status> {
        let store = self.components.secret_store(&request.store_name)?;
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
        let store = self.components.secret_store(&request.store_name)?;
        Ok(GetBulkSecretResponse {
            data: store
                .get_all()
                .into_iter()
                .map(|(key, secrets)| (key, SecretResponse { secrets }))
                .collect(),
        })
    }

    async fn try_lock(self: Rc<Self>, request: TryLockRequest) -> Result<TryLockResponse, Status> {
        let store = self.components.lock(&request.store_name)?;
        let expire = lock_request(
            &request.resource_id,
            &request.lock_owner,
            Some(request.expire),
        )?;
        let success = store
            .try_lock(&request.resource_id, &request.lock_owner, expire)
            .await?;
        Ok(TryLockResponse { success })
    }

    async fn unlock(self: Rc<Self>, request: UnlockRequest) -> Result<UnlockResponse, Status> {
        let store = self.components.lock(&request.store_name)?;
        lock_request(&request.resource_id, &request.lock_owner, None)?;
        let status = match store
            .unlock(&request.resource_id, &request.lock_owner)
            .await?
        {
            LockStatus::Success => unlock_response::Status::Success,
            LockStatus::Unexist => unlock_response::Status::LockUnexist,
            LockStatus::BelongsToOthers => unlock_response::Status::LockBelongToOthers,
        };
        Ok(UnlockResponse {
            status: status as i32,
        })
    }

    async fn lock_keep_alive(
        self: Rc<Self>,
        request: LockKeepAliveRequest,
    ) -> Result<LockKeepAliveResponse, Status> {
        let store = self.components.lock(&request.store_name)?;
        let expire = lock_request(
            &request.resource_id,
            &request.lock_owner,
            Some(request.expire),
        )?;
        let status = match store
            .keep_alive(&request.resource_id, &request.lock_owner, expire)
            .await?
        {
            LockStatus::Success => lock_keep_alive_response::Status::Success,
            LockStatus::Unexist => lock_keep_alive_response::Status::LockUnexist,
            LockStatus::BelongsToOthers => lock_keep_alive_response::Status::LockBelongToOthers,
        };
        Ok(LockKeepAliveResponse {
            status: status as i32,
        })
    }

    async fn get_next_id(
        self: Rc<Self>,
        request: GetNextIdRequest,
    ) -> Result<GetNextIdResponse, Status> {
        let sequencer = self.components.sequencer(&request.store_name)?;
        if request.key.is_empty() {
            return Err(ApiError::InvalidArgument("the sequencer key is empty".into()).into());
        }
        let strong = request
            .options
            .is_some_and(|options| options.increment() == AutoIncrement::Strong);
        let next_id = sequencer.next_id(&request.key, strong).await?;
        Ok(GetNextIdResponse { next_id })
    }

    async fn get_configuration(
        self: Rc<Self>,
        request: GetConfigurationRequest,
    ) -> Result<GetConfigurationResponse, Status> {
        let store = self.components.config_store(&request.store_name)?;
        let selector = Selector::new(request.app_id, request.group, request.label, request.keys)?;
        Ok(GetConfigurationResponse {
            items: store.get(&selector).await?,
        })
    }

    async fn save_configuration(
        self: Rc<Self>,
        request: SaveConfigurationRequest,
    ) -> Result<(), Status> {
        let store = self.components.config_store(&request.store_name)?;
        check_segment("app_id", &request.app_id, false)?;
        Ok(store.save(&request.app_id, request.items).await?)
    }

    async fn delete_configuration(
        self: Rc<Self>,
        request: DeleteConfigurationRequest,
    ) -> Result<(), Status> {
        let store = self.components.config_store(&request.store_name)?;
        let selector = Selector::new(request.app_id, request.group, request.label, request.keys)?;
        Ok(store.delete(&selector).await?)
    }

    /// Each request on the stream adds a subscription, acknowledged by a response without items
    /// once its watch is in place; then every change it selects is streamed as it happens. The
    /// stream ends when the client cancels it (or half-closes without any subscription).
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
                    let store = self.components.config_store(&store_name)?;
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
                    responses
                        .send(&subscribed(&store_name, &selector.app_id, Vec::new()))
                        .await?;
                    followed.push((store_name, selector));
                }
                Next::Change(None) => unreachable!("polled only while subscriptions exist"),
                Next::Change(Some((index, event))) => {
                    let (store_name, selector) = &followed[index];
                    let items = match event {
                        WatchEvent::Changed(items) => selector.filter(&items),
                        WatchEvent::Resync => {
                            let store = self.components.config_store(store_name)?;
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

    async fn say_hello(
        self: Rc<Self>,
        request: SayHelloRequest,
    ) -> Result<SayHelloResponse, Status> {
        let hello = self.components.hello(&request.service_name)?;
        Ok(SayHelloResponse {
            hello: hello.hello(&request.name),
            data: request.data,
        })
    }

    async fn get_state(
        self: Rc<Self>,
        request: GetStateRequest,
    ) -> Result<GetStateResponse, Status> {
        let store = self.components.state(&request.store_name)?;
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
        let store = self.components.state(&request.store_name)?;
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
        let store = self.components.state(&request.store_name)?;
        let operations = request
            .states
            .into_iter()
            .map(upsert)
            .collect::<Result<_, _>>()?;
        Ok(store.apply(operations).await?)
    }

    async fn delete_state(self: Rc<Self>, request: DeleteStateRequest) -> Result<(), Status> {
        let store = self.components.state(&request.store_name)?;
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
        let store = self.components.state(&request.store_name)?;
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
        let store = self.components.state(&request.store_name)?;
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

/// Reads the client's `event_processed` for event `id` (skipping answers to other ids); `None`
/// when the client has finished.
async fn processed(requests: &mut Requests, id: &str) -> Result<Option<Answer>, Status> {
    while let Some(message) = requests.next::<SubscribeTopicEventsRequest>().await? {
        if let Some(SubscribeTopicEventsRequestType::EventProcessed(processed)) =
            message.subscribe_topic_events_request_type
            && processed.id == id
        {
            let status = processed.status.unwrap_or_default().status();
            return Ok(Some(Ok(status)));
        }
    }
    Ok(None)
}

/// Checks a lock request's resource and owner, and its `expire` (seconds) when it has one.
fn lock_request(resource: &str, owner: &str, expire: Option<i32>) -> Result<Duration, ApiError> {
    if resource.is_empty() {
        return Err(ApiError::InvalidArgument(
            "the lock's resource_id is empty".into(),
        ));
    }
    if owner.is_empty() {
        return Err(ApiError::InvalidArgument("the lock_owner is empty".into()));
    }
    match expire {
        None => Ok(Duration::ZERO),
        Some(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds as u64)),
        Some(seconds) => Err(ApiError::InvalidArgument(format!(
            "expire must be a positive number of seconds, not {seconds}"
        ))),
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

fn require_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        Err(ApiError::InvalidArgument("the state key is empty".into()))
    } else {
        Ok(())
    }
}

fn upsert(item: StateItem) -> Result<StateOperation, ApiError> {
    require_key(&item.key)?;
    let ttl = ttl(&item.metadata)?;
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

/// The `ttlInSeconds` metadata (Dapr's): a positive number of seconds, or -1 for none.
fn ttl(metadata: &HashMap<String, String>) -> Result<Option<Duration>, ApiError> {
    let Some(value) = metadata.get("ttlInSeconds") else {
        return Ok(None);
    };
    match value.parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(seconds) if seconds > 0 => Ok(Some(Duration::from_secs(seconds as u64))),
        _ => Err(ApiError::InvalidArgument(format!(
            "ttlInSeconds must be a positive number of seconds or -1, not \"{value}\""
        ))),
    }
}
