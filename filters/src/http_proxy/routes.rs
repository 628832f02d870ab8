//! MOSN's route table for the HTTP `proxy` (`servers[0].routers[]`, named by the proxy's
//! `router_config_name`): virtual hosts picked by the request's `Host` against their `domains`
//! (exact `host[:port]`, `host:*`, a `*.suffix` wildcard, `*` the default — MOSN's priorities), then
//! the first route whose `match` holds: a path criterion (`prefix`, case-sensitive; `path`, exact
//! but case-insensitive; `regex`, unanchored) and every `headers` matcher (`name`/`value`, `regex`
//! when set; the name `method` matches the request method when a path criterion is given, as
//! MOSN's HTTP rules do). Decoded and validated on the main thread (every problem with its JSON
//! path); matched on the shard serving the request, sans-IO.

use std::time::Duration;

use http::{HeaderMap, Method};
use layotto_core::config::{Findings, index, join, parse_duration};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

/// Keys of a route table MOSN knows that layotto-rs does not serve: a config using one is
/// refused rather than routed differently.
const UNSUPPORTED_TABLE: &[&str] = &[
    "router_configs",
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
];
const UNSUPPORTED_HOST: &[&str] = UNSUPPORTED_TABLE;
const IGNORED_HOST: &[&str] = &["require_tls", "per_filter_config"];
const UNSUPPORTED_ROUTE: &[&str] = &["redirect", "direct_response", "request_mirror_policies"];
const IGNORED_ROUTE: &[&str] = &["metadata", "per_filter_config"];
const UNSUPPORTED_MATCH: &[&str] = &["variables", "dsl_expressions"];
const UNSUPPORTED_ACTION: &[&str] = &[
    "cluster_variable",
    "cluster_header",
    "weighted_clusters",
    "hash_policy",
    "metadata_match",
    "retry_policy",
    "prefix_rewrite",
    "regex_rewrite",
    "host_rewrite",
    "auto_host_rewrite",
    "auto_host_rewrite_header",
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
];
const IGNORED_ACTION: &[&str] = &["upstream_protocol"];

#[derive(Deserialize)]
struct RawTable {
    #[serde(rename = "router_config_name")]
    _name: String,
    #[serde(default)]
    virtual_hosts: Vec<Value>,
}

#[derive(Deserialize)]
struct RawHost {
    #[serde(rename = "name")]
    _name: Option<String>,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    routers: Vec<Value>,
}

#[derive(Deserialize)]
struct RawRoute {
    #[serde(rename = "match", default)]
    matcher: Value,
    #[serde(default)]
    route: Value,
}

#[derive(Deserialize, Default)]
struct RawMatch {
    prefix: Option<String>,
    path: Option<String>,
    regex: Option<String>,
    #[serde(default)]
    headers: Vec<RawHeader>,
}

#[derive(Deserialize)]
struct RawHeader {
    name: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    regex: bool,
}

#[derive(Deserialize)]
struct RawAction {
    cluster_name: Option<String>,
    timeout: Option<String>,
}

/// A route's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAction {
    /// The cluster the request goes to (`route.cluster_name`).
    pub cluster: String,
    /// The whole exchange's limit (`route.timeout`), if any: past it the answer is 504.
    pub timeout: Option<Duration>,
}

/// How a route matches the path.
#[derive(Debug)]
enum PathMatch {
    /// No path criterion (MOSN's header-only "RPC" rule).
    Any,
    Prefix(String),
    /// Compared case-insensitively, as MOSN.
    Exact(String),
    Regex(Regex),
}

#[derive(Debug)]
enum ValueMatch {
    Exact(String),
    Regex(Regex),
}

impl ValueMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(expected) => value == expected,
            Self::Regex(pattern) => pattern.is_match(value),
        }
    }
}

#[derive(Debug)]
struct HeaderMatch {
    /// Lower-cased.
    name: String,
    value: ValueMatch,
    /// Matches the request method instead of a header (`name` `method` in an HTTP rule).
    method: bool,
}

#[derive(Debug)]
struct Route {
    /// JSON path of the route entry.
    at: String,
    path: PathMatch,
    headers: Vec<HeaderMatch>,
    action: RouteAction,
}

impl Route {
    fn matches(&self, request: &RequestHead<'_>) -> bool {
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Prefix(prefix) => request.path.starts_with(prefix.as_str()),
            PathMatch::Exact(path) => request.path.eq_ignore_ascii_case(path),
            PathMatch::Regex(pattern) => pattern.is_match(request.path),
        };
        path_ok
            && self.headers.iter().all(|header| {
                if header.method {
                    return header.value.matches(request.method.as_str());
                }
                request
                    .headers
                    .get(&header.name)
                    .and_then(|value| value.to_str().ok())
                    .is_some_and(|value| header.value.matches(value))
            })
    }
}

#[derive(Debug)]
struct VirtualHost {
    routes: Vec<Route>,
}

/// What routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The `Host` (or the URI's authority), if any.
    pub host: Option<&'a str>,
    /// The path, without the query.
    pub path: &'a str,
    /// The method.
    pub method: &'a Method,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// A validated route table.
#[derive(Debug)]
pub struct RouteTable {
    hosts: Vec<VirtualHost>,
    /// Index of the `*` virtual host.
    default: Option<usize>,
    /// `(host, port or "*" or "", index)` for domains without a wildcard.
    exact: Vec<(String, String, usize)>,
    /// `(suffix after "*", port or "*" or "", index)`, longest suffix first.
    wildcard: Vec<(String, String, usize)>,
}

impl RouteTable {
    /// Decodes the route table `config` (found at `path`), recording every problem.
    pub fn decode(config: &Value, path: &str, findings: &mut Findings) -> Option<Self> {
        let config = without(config, path, UNSUPPORTED_TABLE, findings);
        let raw: RawTable = findings.decode(&config, path, &[])?;
        let before = findings.errors.len();
        let hosts_path = join(path, "virtual_hosts");
        if raw.virtual_hosts.is_empty() {
            findings.error(&hosts_path, "at least one virtual host is required");
        }
        let mut table = RouteTable {
            hosts: Vec::new(),
            default: None,
            exact: Vec::new(),
            wildcard: Vec::new(),
        };
        for (i, host) in raw.virtual_hosts.iter().enumerate() {
            let host_path = index(&hosts_path, i);
            let host = without(host, &host_path, UNSUPPORTED_HOST, findings);
            let Some(raw_host) = findings.decode::<RawHost>(&host, &host_path, IGNORED_HOST) else {
                continue;
            };
            let at = table.hosts.len();
            table.add_domains(
                &raw_host.domains,
                at,
                &join(&host_path, "domains"),
                findings,
            );
            let routes_path = join(&host_path, "routers");
            let routes = raw_host
                .routers
                .iter()
                .enumerate()
                .filter_map(|(j, route)| decode_route(route, &index(&routes_path, j), findings))
                .collect();
            table.hosts.push(VirtualHost { routes });
        }
        table
            .wildcard
            .sort_by_key(|(suffix, _, _)| std::cmp::Reverse(suffix.len()));
        (findings.errors.len() == before).then_some(table)
    }

    fn add_domains(&mut self, domains: &[String], at: usize, path: &str, findings: &mut Findings) {
        if domains.is_empty() {
            findings.error(path, "at least one domain is required (\"*\" matches any)");
        }
        for (k, domain) in domains.iter().enumerate() {
            let domain_path = index(path, k);
            let domain = domain.to_ascii_lowercase();
            let (host, port) = split_host_port(&domain);
            let taken = |list: &[(String, String, usize)]| {
                list.iter().any(|(h, p, _)| *h == host && *p == port)
            };
            if host == "*" && (port.is_empty() || port == "*") {
                if self.default.is_some() {
                    findings.error(domain_path, "a second default virtual host (\"*\")");
                }
                self.default = Some(at);
            } else if host.is_empty() {
                findings.error(domain_path, format!("invalid domain \"{domain}\""));
            } else if let Some(suffix) = host.strip_prefix('*') {
                if suffix.contains('*') || taken(&self.wildcard) {
                    findings.error(
                        domain_path,
                        format!("invalid or repeated domain \"{domain}\""),
                    );
                }
                self.wildcard.push((suffix.to_owned(), port.to_owned(), at));
            } else if host.contains('*') {
                findings.error(
                    domain_path,
                    format!("invalid domain \"{domain}\": a wildcard only at the start"),
                );
            } else {
                if taken(&self.exact) {
                    findings.error(domain_path, format!("domain \"{domain}\" is repeated"));
                }
                self.exact.push((host.to_owned(), port.to_owned(), at));
            }
        }
    }

    /// The route of `request`: its virtual host's first matching route.
    pub fn route(&self, request: &RequestHead<'_>) -> Option<&RouteAction> {
        let host = self.virtual_host(request.host)?;
        self.hosts[host]
            .routes
            .iter()
            .find(|route| route.matches(request))
            .map(|route| &route.action)
    }

    /// MOSN's priorities: exact host and port, exact host any port, wildcard with the port,
    /// wildcard any port (longest suffix first), then the default. With only a default, the
    /// `Host` is not looked at.
    fn virtual_host(&self, host: Option<&str>) -> Option<usize> {
        if self.exact.is_empty() && self.wildcard.is_empty() {
            return self.default;
        }
        let Some(host) = host else {
            return self.default;
        };
        let host = host.to_ascii_lowercase();
        let (name, port) = split_host_port(&host);
        let exact = |wanted: &str| {
            self.exact
                .iter()
                .find(|(h, p, _)| h == name && p == wanted)
                .map(|(_, _, i)| *i)
        };
        let wildcard = |wanted: &str| {
            self.wildcard
                .iter()
                .find(|(suffix, p, _)| {
                    p == wanted && name.len() > suffix.len() && name.ends_with(suffix.as_str())
                })
                .map(|(_, _, i)| *i)
        };
        exact(port)
            .or_else(|| exact("*"))
            .or_else(|| wildcard(port))
            .or_else(|| wildcard("*"))
            .or(self.default)
    }

    /// The cluster each route names, with the route's JSON path.
    pub fn clusters(&self) -> impl Iterator<Item = (&str, &str)> {
        self.hosts.iter().flat_map(|host| {
            host.routes
                .iter()
                .map(|route| (route.action.cluster.as_str(), route.at.as_str()))
        })
    }
}

/// `host` and `port` of `host[:port]` (`[v6]:port` too); the port is empty when absent.
fn split_host_port(text: &str) -> (&str, &str) {
    if let Some(rest) = text.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        return (host, after.strip_prefix(':').unwrap_or(""));
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port),
        _ => (text, ""),
    }
}

fn decode_route(value: &Value, path: &str, findings: &mut Findings) -> Option<Route> {
    let value = without(value, path, UNSUPPORTED_ROUTE, findings);
    let raw: RawRoute = findings.decode(&value, path, IGNORED_ROUTE)?;
    let match_path = join(path, "match");
    let matcher = without(&raw.matcher, &match_path, UNSUPPORTED_MATCH, findings);
    let matcher: RawMatch = match matcher {
        Value::Null => RawMatch::default(),
        other => findings.decode(&other, &match_path, &[])?,
    };
    let action_path = join(path, "route");
    let action = without(&raw.route, &action_path, UNSUPPORTED_ACTION, findings);
    let action: RawAction = findings.decode(&action, &action_path, IGNORED_ACTION)?;
    let Some(cluster) = action.cluster_name.filter(|c| !c.is_empty()) else {
        findings.error(
            join(&action_path, "cluster_name"),
            "missing: the cluster requests of this route go to",
        );
        return None;
    };
    let timeout = match action.timeout.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(timeout)) => (!timeout.is_zero()).then_some(timeout),
        Some(Err(err)) => {
            findings.error(join(&action_path, "timeout"), err);
            None
        }
    };
    let regex = |pattern: &str, at: String, findings: &mut Findings| match Regex::new(pattern) {
        Ok(regex) => Some(regex),
        Err(err) => {
            findings.error(at, format!("invalid regex \"{pattern}\": {err}"));
            None
        }
    };
    let path_match = match (
        matcher.prefix.filter(|p| !p.is_empty()),
        matcher.path.filter(|p| !p.is_empty()),
        matcher.regex.filter(|p| !p.is_empty()),
    ) {
        (Some(prefix), _, _) => PathMatch::Prefix(prefix),
        (None, Some(exact), _) => PathMatch::Exact(exact),
        (None, None, Some(pattern)) => {
            PathMatch::Regex(regex(&pattern, join(&match_path, "regex"), findings)?)
        }
        (None, None, None) => PathMatch::Any,
    };
    let http_rule = !matches!(path_match, PathMatch::Any);
    let headers_path = join(&match_path, "headers");
    let mut headers = Vec::with_capacity(matcher.headers.len());
    for (i, header) in matcher.headers.into_iter().enumerate() {
        let value = if header.regex {
            ValueMatch::Regex(regex(
                &header.value,
                join(&index(&headers_path, i), "value"),
                findings,
            )?)
        } else {
            ValueMatch::Exact(header.value)
        };
        let name = header.name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            findings.error(
                join(&index(&headers_path, i), "name"),
                format!("invalid header name \"{name}\""),
            );
        }
        headers.push(HeaderMatch {
            method: http_rule && name == "method",
            name,
            value,
        });
    }
    Some(Route {
        at: path.to_owned(),
        path: path_match,
        headers,
        action: RouteAction { cluster, timeout },
    })
}

/// `value` without the keys in `unsupported`, each present one recorded as an error at its path.
fn without(value: &Value, path: &str, unsupported: &[&str], findings: &mut Findings) -> Value {
    let mut value = value.clone();
    if let Value::Object(map) = &mut value {
        for key in unsupported {
            if map.remove(*key).is_some() {
                findings.error(join(path, key), "not supported by layotto-rs");
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn table(config: Value) -> RouteTable {
        let mut findings = Findings::default();
        let table = RouteTable::decode(&config, "r", &mut findings);
        assert!(findings.errors.is_empty(), "{:?}", findings.errors);
        table.unwrap()
    }

    fn route<'a>(
        table: &'a RouteTable,
        host: Option<&str>,
        method: &Method,
        path: &str,
        headers: &[(&'static str, &'static str)],
    ) -> Option<&'a str> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, http::HeaderValue::from_static(value));
        }
        let head = RequestHead {
            host,
            path,
            method,
            headers: &map,
        };
        table.route(&head).map(|action| action.cluster.as_str())
    }

    #[test]
    fn layotto_demo_routes_by_the_id_header() {
        let table = table(
            json!({"router_config_name": "http_router", "virtual_hosts": [{
            "name": "h", "domains": ["*"],
            "routers": [{"match": {"headers": [{"name": "id", "value": "HelloService:1.0"}]},
                         "route": {"cluster_name": "http_server"}}]}]}),
        );
        let get = Method::GET;
        assert_eq!(
            route(
                &table,
                Some("localhost"),
                &get,
                "/hello",
                &[("id", "HelloService:1.0")]
            ),
            Some("http_server")
        );
        assert_eq!(route(&table, None, &get, "/", &[("id", "Other")]), None);
        assert_eq!(route(&table, None, &get, "/", &[]), None);
    }

    #[test]
    fn paths_headers_regexes_and_methods() {
        let table = table(json!({"router_config_name": "r", "virtual_hosts": [{
        "domains": ["*"],
        "routers": [
            {"match": {"path": "/Exact"}, "route": {"cluster_name": "exact"}},
            {"match": {"prefix": "/api/", "headers": [{"name": "method", "value": "POST"}]},
             "route": {"cluster_name": "api_post"}},
            {"match": {"prefix": "/api/"}, "route": {"cluster_name": "api"}},
            {"match": {"regex": "^/v[0-9]+/"}, "route": {"cluster_name": "versioned"}},
            {"match": {"headers": [{"name": "X-Tier", "value": "gold|silver", "regex": true}]},
             "route": {"cluster_name": "tier"}}
        ]}]}));
        let (get, post) = (Method::GET, Method::POST);
        assert_eq!(route(&table, None, &get, "/exact", &[]), Some("exact"));
        assert_eq!(route(&table, None, &get, "/exact/x", &[]), None);
        assert_eq!(route(&table, None, &post, "/api/x", &[]), Some("api_post"));
        assert_eq!(route(&table, None, &get, "/api/x", &[]), Some("api"));
        assert_eq!(route(&table, None, &get, "/v2/x", &[]), Some("versioned"));
        assert_eq!(
            route(&table, None, &get, "/x", &[("x-tier", "silver")]),
            Some("tier")
        );
        assert_eq!(
            route(&table, None, &get, "/x", &[("x-tier", "bronze")]),
            None
        );
    }

    #[test]
    fn virtual_hosts_by_domain_with_mosn_priorities() {
        let host = |domains: Value, cluster: &str| json!({"domains": domains, "routers": [{"route": {"cluster_name": cluster}}]});
        let table = table(json!({"router_config_name": "r", "virtual_hosts": [
            host(json!(["*"]), "default"),
            host(json!(["a.example.com"]), "exact"),
            host(json!(["a.example.com:8080"]), "exact_port"),
            host(json!(["*.example.com"]), "wild"),
            host(json!(["*.b.example.com"]), "wild_longer"),
        ]}));
        let get = Method::GET;
        let at = |host| route(&table, Some(host), &get, "/", &[]);
        assert_eq!(at("A.example.com"), Some("exact"));
        assert_eq!(at("a.example.com:8080"), Some("exact_port"));
        assert_eq!(at("c.example.com"), Some("wild"));
        assert_eq!(at("x.b.example.com"), Some("wild_longer"));
        assert_eq!(at("example.com"), Some("default"));
        assert_eq!(route(&table, None, &get, "/", &[]), Some("default"));
    }

    #[test]
    fn problems_are_reported_with_paths() {
        let mut findings = Findings::default();
        let config = json!({"router_config_name": "r", "virtual_hosts": [{
        "domains": ["*", "*"],
        "routers": [
            {"match": {"regex": "("}, "route": {"cluster_name": "c"}},
            {"match": {"headers": [{"name": "a", "value": "[", "regex": true}]}, "route": {"cluster_name": "c"}},
            {"route": {}},
            {"route": {"cluster_name": "c", "prefix_rewrite": "/x", "timeout": "soon"}},
            {"direct_response": {"status": 200}, "route": {"cluster_name": "c"}}
        ]}]});
        assert!(RouteTable::decode(&config, "r", &mut findings).is_none());
        let errors: Vec<String> = findings.errors.iter().map(ToString::to_string).collect();
        let expected = [
            "r.virtual_hosts[0].domains[1]: a second default virtual host",
            "r.virtual_hosts[0].routers[0].match.regex: invalid regex \"(\"",
            "r.virtual_hosts[0].routers[1].match.headers[0].value: invalid regex \"[\"",
            "r.virtual_hosts[0].routers[2].route.cluster_name: missing",
            "r.virtual_hosts[0].routers[3].route.prefix_rewrite: not supported",
            "r.virtual_hosts[0].routers[3].route.timeout: invalid duration",
            "r.virtual_hosts[0].routers[4].direct_response: not supported",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (error, expected) in errors.iter().zip(expected) {
            assert!(error.starts_with(expected), "{error} vs {expected}");
        }
    }
}
