//! The HTTP/1.1 client of the components that call out over HTTP (bindings, service
//! invocation, the Dapr app channel's event delivery): hyper on the backend pool, `http://` and `https://` URLs alike, each exchange
//! bounded by the component's timeout, the whole answer read into memory. HTTPS is rustls (on
//! ring) verifying servers against the operating system's roots (read once per process) plus
//! the component's own CA, Dapr's `MTLSRootCA` metadata (PEM text or a file path). Built on the
//! main thread at start-up; exchanges run on the backend pool.

use std::{
    error::Error as StdError,
    sync::{Arc, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use layotto_core::backend::BackendHandle;
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};

use crate::{
    components::registry::Entry,
    error::{ApiError, BoxError, chain},
};

/// The metadata key of an extra CA to trust, as Dapr's `bindings.http` names it (Dapr's metadata
/// decoding ignores case, so `mtlsRootCA` is read too).
const ROOT_CA_KEYS: [&str; 2] = ["MTLSRootCA", "mtlsRootCA"];

/// An HTTP client for one component; clones share its connections.
#[derive(Clone)]
pub struct HttpClient {
    component: String,
    timeout: Duration,
    backend: BackendHandle,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// The client of `entry`'s component, trusting its `MTLSRootCA` besides the system's roots
    /// (`None` after recording why a CA cannot be used).
    pub fn from_entry(entry: &mut Entry<'_>, timeout: Duration) -> Option<Self> {
        let mut roots = system_roots().clone();
        let root_ca = ROOT_CA_KEYS
            .iter()
            .find_map(|key| entry.take(key).map(|ca| (*key, ca)));
        if let Some((key, ca)) = root_ca
            && let Err(problem) = add_root_ca(&mut roots, &ca)
        {
            entry.metadata_error(key, problem);
            return None;
        }
        let backend = entry.backend().clone();
        Self::with_roots(entry.component(), timeout, &backend, roots)
            .map_err(|err| entry.error("type", format!("TLS set-up failed: {err}")))
            .ok()
    }

    /// A client named `component` (in messages) trusting the system's roots, each exchange
    /// bounded by `timeout`, run on `backend`.
    pub fn new(
        component: &str,
        timeout: Duration,
        backend: &BackendHandle,
    ) -> Result<Self, rustls::Error> {
        Self::with_roots(component, timeout, backend, system_roots().clone())
    }

    /// This client (its connections shared) with each exchange bounded by `timeout` instead.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    fn with_roots(
        component: &str,
        timeout: Duration,
        backend: &BackendHandle,
        roots: RootCertStore,
    ) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut plain = HttpConnector::new();
        // The URL's scheme says which; hyper's connector refuses https:// unless told not to.
        plain.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(plain);
        Ok(Self {
            component: component.to_owned(),
            timeout,
            backend: backend.clone(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
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
        let (parts, body) = self.fetch(method, url, headers, body).await?;
        if let Some(err) = status_error(&self.component, url, parts.status, &body) {
            return Err(err);
        }
        Ok((parts, body))
    }

    /// Sends `method url` with `headers` and `body`; answers the response head and body
    /// whatever the status (for callers with rules of their own about statuses).
    pub async fn fetch<'h>(
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
        self.send(request).await
    }

    /// Sends `request`; answers the response head and body, UNAVAILABLE naming the URL when
    /// there is no answer within the timeout or no connection, and a backend error naming it
    /// when the server's certificate is refused (a retry would not change that).
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
                    let response = client.request(request).await.map_err(BoxError::from)?;
                    let (parts, body) = response.into_parts();
                    let body = body.collect().await.map_err(BoxError::from)?.to_bytes();
                    Ok::<_, BoxError>((parts, body))
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
            Ok(Err(err)) if is_tls_failure(err.as_ref()) => Err(ApiError::backend(
                format!("{}: TLS with {url} failed", self.component),
                err,
            )),
            Ok(Err(err)) => Err(ApiError::unreachable(
                format!("{}: {url}", self.component),
                err,
            )),
            Ok(Ok(answer)) => Ok(answer),
        }
    }
}

/// Whether `err` or one of its causes is a TLS failure (a refused certificate, a failed
/// handshake). hyper-rustls hands rustls's errors on inside `io::Error`s (two deep), whose
/// `source` skips the error they wrap, so those are unwrapped by hand.
fn is_tls_failure(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<rustls::Error>() {
            return true;
        }
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(wrapped) => Some(wrapped as &(dyn StdError + 'static)),
            None => err.source(),
        };
    }
    false
}

/// The operating system's trusted roots, read once per process (an empty store, logged, when
/// it has none: then only a component's own CA is trusted).
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for err in &found.errors {
            tracing::warn!("reading the system's CA certificates: {}", chain(err));
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(
                "no CA certificates found in the system's store: https:// calls trust only a component's MTLSRootCA"
            );
        } else {
            tracing::debug!("{added} system CA certificates trusted ({ignored} unparsable)");
        }
        roots
    })
}

/// Adds the certificates of `ca` — PEM text, or else the path of a PEM file, as Dapr reads
/// `MTLSRootCA` — to `roots`; the problem otherwise.
fn add_root_ca(roots: &mut RootCertStore, ca: &str) -> Result<(), String> {
    let certificates: Vec<CertificateDer<'static>> = if ca.contains("-----BEGIN") {
        CertificateDer::pem_slice_iter(ca.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|err| format!("invalid PEM: {err}"))?
    } else {
        CertificateDer::pem_file_iter(ca)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|err| format!("cannot read {ca} (neither PEM text nor a PEM file): {err}"))?
    };
    if certificates.is_empty() {
        return Err(format!("no certificate in {ca}"));
    }
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|err| format!("unusable certificate in {ca}: {err}"))?;
    }
    Ok(())
}

/// The error for an HTTP answer of 400 or more from `target` (a URL, an app): NOT_FOUND for 404,
/// INTERNAL otherwise, with the status and the start of the body; `None` below 400.
pub(crate) fn status_error(
    component: &str,
    target: &str,
    status: http::StatusCode,
    body: &[u8],
) -> Option<ApiError> {
    if status.as_u16() < 400 {
        return None;
    }
    let message = format!(
        "{component}: {target} answered {status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(512)])
    );
    Some(if status == http::StatusCode::NOT_FOUND {
        ApiError::NotFound(message)
    } else {
        ApiError::backend(message, "the target answered an error status")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_ca_must_be_pem_text_or_a_pem_file() {
        let mut roots = RootCertStore::empty();
        let missing = add_root_ca(&mut roots, "/no/such/ca.pem").unwrap_err();
        assert!(missing.contains("cannot read /no/such/ca.pem"), "{missing}");
        let garbage = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
        assert!(add_root_ca(&mut roots, garbage).is_err());
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no PEM here").unwrap();
        let none = add_root_ca(&mut roots, empty.to_str().unwrap()).unwrap_err();
        assert!(none.contains("no certificate"), "{none}");
        assert!(roots.is_empty());
    }
}
