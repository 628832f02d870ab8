//! The `http` invoker (LayOtto's HTTP path of `InvokeService`): it maps app ids to `host:port`
//! (`metadata.targets`, `app2=127.0.0.1:8080;app3=https://10.0.0.3:8443`; a target is called
//! over HTTPS when it says `https://`); a call becomes `VERB <target>/<method>?<querystring>`
//! with the request's headers, its data as the body and its content type, and the answer's
//! status, headers and body come back. Bounded by the component's timeout; runs on the backend
//! pool.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use http::header;
use layotto_filters::http_proxy::strip_hop_by_hop;

use super::{InvokeRequest, Invoked, Invoker, forwardable};
use crate::{
    components::{
        component::Component,
        http_client::{HttpClient, status_error},
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

/// The invoker of the app this sidecar serves over its Dapr HTTP channel (daprd's
/// `--app-port`): calls of `app_id` go to `base` (`http://host:port`) over `http` (the app
/// channel's connections), each bounded by this invoker's default timeout.
pub(crate) fn app_channel(app_id: &str, base: &str, http: &HttpClient) -> Arc<dyn Invoker> {
    let targets = HashMap::from([(app_id.to_owned(), base.to_owned())]);
    Arc::new(ServiceInvoker {
        targets,
        http: http.with_timeout(DEFAULT_TIMEOUT),
    })
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
    async fn invoke(&self, request: InvokeRequest<'_>) -> Result<Invoked, ApiError> {
        let id = request.id;
        let Some(target) = self.targets.get(id) else {
            let mut known: Vec<&String> = self.targets.keys().collect();
            known.sort();
            return Err(ApiError::InvalidArgument(format!(
                "{}: no app \"{id}\" (known: {known:?})",
                self.http.component()
            )));
        };
        let mut url = format!("{target}/{}", request.method.trim_start_matches('/'));
        let query = request.querystring.trim_start_matches('?');
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let headers = forwardable(request.headers);
        let content_type = (!request.content_type.is_empty())
            .then_some((header::CONTENT_TYPE.as_str(), request.content_type));
        let sent = headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .chain(content_type);
        let verb = request.verb.unwrap_or(http::Method::POST);
        let (mut parts, data) = self.http.fetch(verb, &url, sent, request.data).await?;
        strip_hop_by_hop(&mut parts.headers);
        Ok(Invoked {
            status: parts.status,
            headers: parts.headers,
            data,
            grpc_status: None,
        })
    }

    /// As bindings: 404 is NOT_FOUND, other statuses of 400 or more INTERNAL.
    fn failure(&self, id: &str, answer: &Invoked) -> Option<ApiError> {
        status_error(
            self.http.component(),
            &format!("app \"{id}\""),
            answer.status,
            &answer.data,
        )
    }
}
