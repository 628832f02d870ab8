//! Routing `:path` to handlers, and adapters that turn typed async functions into handlers for
//! the four call shapes (unary, server-streaming, client-streaming, bidirectional). Routers are
//! built per shard, so handlers are `Rc`s and their futures need not be `Send`.

use std::{collections::HashMap, future::Future, rc::Rc};

use futures_lite::future::BoxedLocal;
use prost::Message;

use super::{
    call::{Requests, Responses},
    status::{Code, Status},
};

/// What a handler receives: the request messages and the response sink.
pub struct Call {
    /// The request's headers (gRPC metadata such as `dapr-api-token`).
    pub headers: http::HeaderMap,
    /// Incoming messages.
    pub requests: Requests,
    /// Outgoing messages.
    pub responses: Responses,
}

/// Serves one call; its error becomes the call's status.
pub type Handler = Rc<dyn Fn(Call) -> BoxedLocal<Result<(), Status>>>;

/// Handlers by request path (`/package.Service/Method`).
#[derive(Default)]
pub struct Router {
    routes: HashMap<String, Handler>,
}

impl Router {
    /// Adds (or replaces) the handler for `path`.
    pub fn add(&mut self, path: impl Into<String>, handler: Handler) -> &mut Self {
        self.routes.insert(path.into(), handler);
        self
    }

    /// The handler for `path`.
    pub fn get(&self, path: &str) -> Option<&Handler> {
        self.routes.get(path)
    }

    /// Every routed path.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }
}

async fn single<Req: Message + Default>(requests: &mut Requests) -> Result<Req, Status> {
    requests
        .next()
        .await?
        .ok_or_else(|| Status::new(Code::Internal, "the call carried no request message"))
}

/// One request, one response.
pub fn unary<S, Req, Resp, F, Fut>(state: Rc<S>, f: F) -> Handler
where
    S: 'static,
    Req: Message + Default + 'static,
    Resp: Message + 'static,
    F: Fn(Rc<S>, Req) -> Fut + 'static,
    Fut: Future<Output = Result<Resp, Status>> + 'static,
{
    let f = Rc::new(f);
    Rc::new(move |mut call: Call| {
        let (state, f) = (state.clone(), f.clone());
        Box::pin(async move {
            let request = single(&mut call.requests).await?;
            let response = f(state, request).await?;
            call.responses.send(&response).await
        })
    })
}

/// One request, a stream of responses sent through [`Responses`].
pub fn server_streaming<S, Req, F, Fut>(state: Rc<S>, f: F) -> Handler
where
    S: 'static,
    Req: Message + Default + 'static,
    F: Fn(Rc<S>, Req, Responses) -> Fut + 'static,
    Fut: Future<Output = Result<(), Status>> + 'static,
{
    let f = Rc::new(f);
    Rc::new(move |mut call: Call| {
        let (state, f) = (state.clone(), f.clone());
        Box::pin(async move {
            let request = single(&mut call.requests).await?;
            f(state, request, call.responses).await
        })
    })
}

/// A stream of requests read from [`Requests`], one response.
pub fn client_streaming<S, Resp, F, Fut>(state: Rc<S>, f: F) -> Handler
where
    S: 'static,
    Resp: Message + 'static,
    F: Fn(Rc<S>, Requests) -> Fut + 'static,
    Fut: Future<Output = Result<Resp, Status>> + 'static,
{
    let f = Rc::new(f);
    Rc::new(move |call: Call| {
        let (state, f) = (state.clone(), f.clone());
        let mut responses = call.responses;
        Box::pin(async move {
            let response = f(state, call.requests).await?;
            responses.send(&response).await
        })
    })
}

/// Streams both ways.
pub fn bidirectional<S, F, Fut>(state: Rc<S>, f: F) -> Handler
where
    S: 'static,
    F: Fn(Rc<S>, Requests, Responses) -> Fut + 'static,
    Fut: Future<Output = Result<(), Status>> + 'static,
{
    let f = Rc::new(f);
    Rc::new(move |call: Call| {
        let (state, f) = (state.clone(), f.clone());
        Box::pin(async move { f(state, call.requests, call.responses).await })
    })
}
