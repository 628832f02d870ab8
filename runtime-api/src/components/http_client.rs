//! The HTTP/1.1 client of the components that call out over HTTP (bindings, service
//! invocation): hyper on the backend pool, each exchange bounded by the component's timeout,
//! the whole answer read into memory.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use layotto_core::backend::BackendHandle;

use crate::error::ApiError;

/// An HTTP client for one component.
pub struct HttpClient {
    component: String,
    timeout: Duration,
    backend: BackendHandle,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    /// A client for `component` (for messages).
    pub fn new(component: String, timeout: Duration, backend: BackendHandle) -> Self {
        Self {
            component,
            timeout,
            backend,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The component, for messages.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// Sends `method url` with `headers` and `body`; answers the response head and body of a
    /// status below 400, else the error [`status_error`] makes of it.
    pub async fn exchange<'h>(
        &self,
        method: http::Method,
        url: &str,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
        body: Bytes,
    ) -> Result<(http::response::Parts, Bytes), ApiError> {
        let mut request = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|err| ApiError::InvalidArgument(format!("{}: {err}", self.component)))?;
        let (parts, body) = self.send(request).await?;
        if parts.status.as_u16() >= 400 {
            return Err(status_error(&self.component, url, parts.status, &body));
        }
        Ok((parts, body))
    }

    /// Sends `request`; answers the response head and body, or UNAVAILABLE naming the URL when
    /// there is no answer within the timeout.
    async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(http::response::Parts, Bytes), ApiError> {
        let url = request.uri().to_string();
        let (client, timeout) = (self.client.clone(), self.timeout);
        let answer = self
            .backend
            .submit(async move {
                tokio::time::timeout(timeout, async move {
                    let response = client
                        .request(request)
                        .await
                        .map_err(|err| err.to_string())?;
                    let (parts, body) = response.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map_err(|err| err.to_string())?
                        .to_bytes();
                    Ok::<_, String>((parts, body))
                })
                .await
            })
            .await?;
        match answer {
            Err(_) => Err(ApiError::unavailable(format!(
                "{}: {url} did not answer within {}s",
                self.component,
                timeout.as_secs_f64()
            ))),
            Ok(Err(err)) => Err(ApiError::unreachable(
                format!("{}: {url}", self.component),
                err,
            )),
            Ok(Ok(answer)) => Ok(answer),
        }
    }
}

/// The error for an HTTP answer of 400 or more: NOT_FOUND for 404, INTERNAL otherwise, with the
/// status and the start of the body.
fn status_error(component: &str, url: &str, status: http::StatusCode, body: &[u8]) -> ApiError {
    let message = format!(
        "{component}: {url} answered {status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(512)])
    );
    if status == http::StatusCode::NOT_FOUND {
        ApiError::NotFound(message)
    } else {
        ApiError::backend(message, "the target answered an error status")
    }
}
