//! The `http` invoker (LayOtto's HTTP path of `InvokeService`): it maps app ids to `host:port`
//! (`metadata.targets`, `app2=127.0.0.1:8080;app3=https://10.0.0.3:8443`; a target is called
//! over HTTPS when it says `https://`); a call becomes `VERB <target>/<method>?<querystring>`
//! with the request data as the body and its content type, and the answer's body and content
//! type come back. Bounded by the component's timeout; runs on the backend pool.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Invoked, Invoker};
use crate::{
    components::{
        component::Component,
        http_client::HttpClient,
        registry::{Entry, is_endpoint},
    },
    error::ApiError,
};

/// A call's timeout unless the metadata's `timeout` says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds one from its entry: `targets` (`app_id=host:port;...`, each address optionally behind
/// `http://` or `https://`), `timeout` (seconds) and the client's TLS metadata
/// ([`HttpClient::from_entry`]).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn Invoker>> {
    if entry.field("config").is_some() {
        entry.error(
            "config",
            "unknown key (the mosn invoker's; this one reads metadata)",
        );
    }
    let timeout = entry.seconds("timeout", DEFAULT_TIMEOUT);
    let mut targets = HashMap::new();
    for pair in entry
        .take("targets")
        .unwrap_or_default()
        .split(';')
        .filter(|p| !p.trim().is_empty())
    {
        match pair.split_once('=') {
            Some((id, address)) if is_endpoint(address.trim()) && !id.trim().is_empty() => {
                let address = address.trim();
                let base = if address.starts_with("http://") || address.starts_with("https://") {
                    address.to_owned()
                } else {
                    format!("http://{address}")
                };
                targets.insert(id.trim().to_owned(), base);
            }
            _ => entry.metadata_error("targets", format!("\"{pair}\" is not app_id=host:port")),
        }
    }
    let http = HttpClient::from_entry(entry, timeout?)?;
    Some(Arc::new(ServiceInvoker { targets, http }))
}

/// Where app ids are and how to call them.
struct ServiceInvoker {
    /// App id → the base URL of its target (`http://host:port` or `https://host:port`).
    targets: HashMap<String, String>,
    http: HttpClient,
}

impl Component for ServiceInvoker {}

#[async_trait(?Send)]
impl Invoker for ServiceInvoker {
    async fn invoke(
        &self,
        id: &str,
        method: &str,
        verb: Option<http::Method>,
        querystring: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<Invoked, ApiError> {
        let Some(target) = self.targets.get(id) else {
            let mut known: Vec<&String> = self.targets.keys().collect();
            known.sort();
            return Err(ApiError::InvalidArgument(format!(
                "{}: no app \"{id}\" (known: {known:?})",
                self.http.component()
            )));
        };
        let mut url = format!("{target}/{}", method.trim_start_matches('/'));
        if !querystring.is_empty() {
            url.push('?');
            url.push_str(querystring.trim_start_matches('?'));
        }
        let headers = (!content_type.is_empty()).then_some(("content-type", content_type));
        let method = verb.unwrap_or(http::Method::POST);
        let (parts, body) = self.http.exchange(method, &url, headers, data).await?;
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Invoked {
            data: body,
            content_type,
        })
    }
}
