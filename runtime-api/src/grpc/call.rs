//! The two halves of one gRPC call as handlers see them: [`Requests`] yields decoded request
//! messages (releasing HTTP/2 flow control only as they are consumed, so a slow handler slows its
//! client), [`Responses`] sends messages, waiting for flow-control capacity (so a slow client slows
//! its handler). Both count the bytes they hold against the connection's and listener's budgets
//! ([`super::budget`]). The call driver keeps the response state to write the final status.
//! Shard-local.

use std::{
    cell::RefCell,
    future::poll_fn,
    rc::Rc,
    sync::LazyLock,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use h2::{RecvStream, SendStream, server::SendResponse};
use http::{HeaderMap, HeaderValue, Response, header::CONTENT_TYPE};
use prost::Message;

use super::{
    budget::{Buffered, ConnectionBuffers, Held},
    codec::{self, Decoder},
    status::{Code, Status},
};

/// The request messages of one call.
pub struct Requests {
    body: RecvStream,
    decoder: Decoder,
    /// What the decoder holds, counted.
    held: Held,
    ended: bool,
}

impl Requests {
    pub(crate) fn new(
        body: RecvStream,
        max_message_size: usize,
        buffers: &Rc<ConnectionBuffers>,
    ) -> Self {
        Self {
            body,
            decoder: Decoder::new(max_message_size),
            held: buffers.hold(Buffered::Requests),
            ended: false,
        }
    }

    /// The next request message's bytes, or `None` once the client has finished sending.
    pub async fn next_raw(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                self.held.set(self.decoder.buffered())?;
                return Ok(Some(message));
            }
            if self.ended {
                self.decoder.finish()?;
                return Ok(None);
            }
            match self.body.data().await {
                Some(Ok(chunk)) => {
                    let _ = self.body.flow_control().release_capacity(chunk.len());
                    self.decoder.push(chunk);
                    self.held.set(self.decoder.buffered())?;
                }
                Some(Err(err)) => {
                    return Err(Status::new(
                        Code::Cancelled,
                        format!("request stream failed: {err}"),
                    ));
                }
                None => self.ended = true,
            }
        }
    }

    /// The next request message, decoded; `None` once the client has finished sending.
    pub async fn next<M: Message + Default>(&mut self) -> Result<Option<M>, Status> {
        match self.next_raw().await? {
            None => Ok(None),
            Some(bytes) => M::decode(bytes).map(Some).map_err(|err| {
                Status::new(
                    Code::Internal,
                    format!("cannot decode request message: {err}"),
                )
            }),
        }
    }
}

/// Where the response of a call stands.
pub(crate) enum ResponseState {
    /// Nothing sent yet.
    Waiting(SendResponse<Bytes>),
    /// Headers sent; messages may follow.
    Open(SendStream<Bytes>),
    /// Finished (or the client went away).
    Closed,
}

/// Shared between the handler (sending messages) and the call driver (writing the status).
pub(crate) type SharedResponse = Rc<RefCell<ResponseState>>;

/// Sends the response messages of one call.
pub struct Responses {
    state: SharedResponse,
    max_message_size: usize,
    buffers: Rc<ConnectionBuffers>,
    /// Header metadata to send with the response headers.
    metadata: HeaderMap,
}

impl Responses {
    pub(crate) fn new(
        state: SharedResponse,
        max_message_size: usize,
        buffers: Rc<ConnectionBuffers>,
    ) -> Self {
        Self {
            state,
            max_message_size,
            buffers,
            metadata: HeaderMap::new(),
        }
    }

    /// Sends one message, waiting until the client's flow-control window has room for it. The
    /// encoded bytes not yet handed to HTTP/2 count against the connection's buffer budget; a
    /// message that would pass it fails the call with RESOURCE_EXHAUSTED.
    pub async fn send<M: Message>(&mut self, message: &M) -> Result<(), Status> {
        let mut data = codec::encode(message, self.max_message_size)?;
        let mut held = self.buffers.hold(Buffered::Responses);
        held.set(data.len())?;
        self.open()?;
        while !data.is_empty() {
            let wanted = data.len();
            let capacity = poll_fn(|cx| self.poll_capacity(cx, wanted)).await?;
            let chunk = data.split_to(capacity.min(data.len()));
            match &mut *self.state.borrow_mut() {
                ResponseState::Open(stream) => stream.send_data(chunk, false).map_err(gone)?,
                _ => return Err(closed()),
            }
            held.set(data.len())?;
        }
        Ok(())
    }

    /// Adds header metadata to the response headers (before they are sent: with the first
    /// message or [`Responses::send_headers`]; a trailers-only error answer carries none).
    pub fn add_metadata(&mut self, metadata: HeaderMap) {
        self.metadata.extend(metadata);
    }

    /// Sends the response headers now, if not sent yet (otherwise they go with the first
    /// message), so the client learns the call was accepted.
    pub fn send_headers(&mut self) -> Result<(), Status> {
        self.open()
    }

    /// Waits until the client's flow-control window has room for at least one byte of the next
    /// message, so a streaming handler produces each message (reads a file chunk, say) only when
    /// it can be sent instead of holding it while the client is stalled.
    pub async fn window_open(&mut self, expected: usize) -> Result<(), Status> {
        self.open()?;
        poll_fn(|cx| self.poll_capacity(cx, expected))
            .await
            .map(|_| ())
    }

    fn open(&mut self) -> Result<(), Status> {
        let mut state = self.state.borrow_mut();
        if let ResponseState::Waiting(_) = &*state {
            let ResponseState::Waiting(mut respond) =
                std::mem::replace(&mut *state, ResponseState::Closed)
            else {
                unreachable!("checked above")
            };
            let stream = respond
                .send_response(grpc_response(std::mem::take(&mut self.metadata)), false)
                .map_err(gone)?;
            *state = ResponseState::Open(stream);
        }
        Ok(())
    }

    fn poll_capacity(&self, cx: &mut Context<'_>, wanted: usize) -> Poll<Result<usize, Status>> {
        let mut state = self.state.borrow_mut();
        let ResponseState::Open(stream) = &mut *state else {
            return Poll::Ready(Err(closed()));
        };
        stream.reserve_capacity(wanted);
        loop {
            let capacity = stream.capacity();
            if capacity > 0 {
                return Poll::Ready(Ok(capacity));
            }
            match ready!(stream.poll_capacity(cx)) {
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Poll::Ready(Err(gone(err))),
                None => return Poll::Ready(Err(closed())),
            }
        }
    }
}

/// Writes the call's final status: as trailers after the messages, or as a trailers-only response.
pub(crate) fn finish(state: &SharedResponse, status: &Status) {
    let trailers = if status.code == Code::Ok && status.message.is_empty() {
        OK_TRAILERS.clone()
    } else {
        let mut trailers = HeaderMap::new();
        status.write_to(&mut trailers);
        trailers
    };
    match std::mem::replace(&mut *state.borrow_mut(), ResponseState::Closed) {
        ResponseState::Waiting(mut respond) => {
            let _ = respond.send_response(grpc_response(trailers), true);
        }
        ResponseState::Open(mut stream) => {
            let _ = stream.send_trailers(trailers);
        }
        ResponseState::Closed => {}
    }
}

/// Resolves if the client resets the stream (cancels the call).
pub(crate) fn poll_reset(state: &SharedResponse, cx: &mut Context<'_>) -> Poll<()> {
    let reset = match &mut *state.borrow_mut() {
        ResponseState::Waiting(respond) => respond.poll_reset(cx),
        ResponseState::Open(stream) => stream.poll_reset(cx),
        ResponseState::Closed => return Poll::Pending,
    };
    reset.map(|_| ())
}

/// Answers a request that is not gRPC with a plain HTTP status and a one-line explanation.
pub(crate) fn reject_http(mut respond: SendResponse<Bytes>, status: http::StatusCode) {
    const BODY: &str = "layotto-rs serves gRPC only (content-type application/grpc)\n";
    let mut response = Response::new(());
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(mut stream) = respond.send_response(response, false) {
        let _ = stream.send_data(Bytes::from_static(BODY.as_bytes()), true);
    }
}

/// The headers of every gRPC response (`:status` 200 is h2's default), built once:
/// a call's copy is a clone, without parsing names or hashing them.
static RESPONSE_HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
    let mut headers = HeaderMap::with_capacity(1);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers
});

/// The trailers of a call that succeeded, built once.
static OK_TRAILERS: LazyLock<HeaderMap> = LazyLock::new(|| {
    let mut trailers = HeaderMap::with_capacity(1);
    Status::ok().write_to(&mut trailers);
    trailers
});

fn grpc_response(extra: HeaderMap) -> Response<()> {
    let mut response = Response::new(());
    let headers = response.headers_mut();
    *headers = RESPONSE_HEADERS.clone();
    if !extra.is_empty() {
        headers.extend(extra);
    }
    response
}

/// The status of a call whose stream failed: the h2 reason mapped as tonic maps it (see
/// [`crate::error::code_from_h2`]).
fn gone(err: h2::Error) -> Status {
    Status::from(err)
}

fn closed() -> Status {
    Status::new(Code::Cancelled, "response stream already closed")
}
