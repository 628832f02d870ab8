//! Dapr's component files (`layotto start --resources-path DIR`): every `*.yaml`/`*.yml` file of
//! the directory (not its subdirectories; several documents per file, separated by `---`), each
//! `kind: Component` of `apiVersion: dapr.io/v1alpha1` turned into the LayOtto-shaped entry of
//! the building block its `spec.type` names (`state.redis` → a `state` component of type
//! `redis`), with `spec.metadata`'s name/value list as its metadata and each `secretKeyRef` as a
//! LayOtto `secret_ref` on the store `auth.secretStore` names. The runtime builds them as it
//! builds LayOtto's, so every API sees them. Problems are recorded as `FILE: PATH`
//! (`components/state.yaml: spec.metadata[1].value`); other kinds (Subscription,
//! Configuration, Resiliency, ...) are logged as not used. Main thread, start-up.

use std::path::Path;

use layotto_core::config::{Findings, ROOT, join};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The `apiVersion` of Dapr's component files.
const API_VERSION: &str = "dapr.io/v1alpha1";

/// Dapr's `spec.type` prefixes and the LayOtto building block each is.
const BLOCKS: &[(&str, &str)] = &[
    ("state.", "state"),
    ("pubsub.", "pub_subs"),
    ("lock.", "lock"),
    ("secretstores.", "secret_store"),
    ("bindings.", "bindings"),
    ("configuration.", "config_store"),
];

/// One Dapr component, as a LayOtto entry.
#[derive(Debug)]
pub(crate) struct DaprComponent {
    /// The building block's config key (`state`, `pub_subs`, ...).
    pub(crate) block: &'static str,
    /// `metadata.name`: what calls name it by.
    pub(crate) name: String,
    /// The LayOtto-shaped entry: `type`, `metadata`, `secret_ref`.
    pub(crate) entry: Value,
    /// Where problems with it are reported: `FILE: spec`.
    pub(crate) path: String,
}

/// A component document.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    api_version: String,
    #[expect(
        dead_code,
        reason = "checked before decoding: only Components are decoded"
    )]
    kind: String,
    metadata: ResourceMetadata,
    spec: Spec,
    #[serde(default)]
    auth: Option<Auth>,
    #[serde(default)]
    scopes: Vec<String>,
}

/// `metadata`: the component's name (the rest is Kubernetes' and logged as not used).
#[derive(Deserialize)]
struct ResourceMetadata {
    name: String,
}

/// `spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    r#type: String,
    #[serde(default)]
    metadata: Vec<MetadataItem>,
}

/// One `spec.metadata` item: a value, or a secret to read it from.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetadataItem {
    name: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    secret_key_ref: Option<SecretKeyRef>,
}

/// `secretKeyRef`: secret `name` of the component's secret store, entry `key` of it (Dapr's
/// single-valued stores answer the secret under its own name, so `key` may be left out).
#[derive(Deserialize)]
struct SecretKeyRef {
    name: String,
    #[serde(default)]
    key: String,
}

/// `auth`: the secret store `secretKeyRef`s read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Auth {
    secret_store: String,
}

/// Every component of the Dapr component files in `dir`, in file-name order.
pub(crate) fn read_dir(dir: &Path, findings: &mut Findings) -> Vec<DaprComponent> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(err) => {
            findings.error(
                format!("--resources-path {}", dir.display()),
                format!("cannot read the directory: {err}"),
            );
            return Vec::new();
        }
    };
    let mut files: Vec<_> = listing
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    let mut components = Vec::new();
    for file in files {
        let label = file.display().to_string();
        match std::fs::read_to_string(&file) {
            Ok(text) => read_file(&label, &text, findings, &mut components),
            Err(err) => findings.error(label, format!("cannot read: {err}")),
        }
    }
    components
}

/// The components of one file's text (`file` names it in messages).
fn read_file(file: &str, text: &str, findings: &mut Findings, out: &mut Vec<DaprComponent>) {
    // Documents are numbered in messages when the file has several (a `---` line after the
    // first).
    let several = text.lines().skip(1).any(|line| line.starts_with("---"));
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let origin = if several {
            format!("{file} (document {})", i + 1)
        } else {
            file.to_owned()
        };
        let value = match Value::deserialize(document) {
            Ok(Value::Null) => continue,
            Ok(value) => value,
            Err(err) => {
                // The parser cannot go on past a syntax error (it would repeat it).
                findings.error(origin, format!("invalid YAML: {err}"));
                break;
            }
        };
        if let Some(component) = convert(&origin, &value, findings) {
            out.push(component);
        }
    }
}

/// One document as a component, `None` after recording why not (or noting it is not one).
fn convert(origin: &str, value: &Value, findings: &mut Findings) -> Option<DaprComponent> {
    let Some(kind) = value.get("kind").and_then(Value::as_str) else {
        findings.error(
            at(origin, "kind"),
            "missing: Dapr's resource kind (Component)",
        );
        return None;
    };
    if kind != "Component" {
        findings.ignore(
            at(origin, "kind"),
            format!("Dapr {kind} resources are not used by layotto-rs"),
        );
        return None;
    }
    // Decoded with paths relative to the document, then reported as `FILE: PATH`.
    let mut local = Findings::default();
    let resource: Option<Resource> = local.decode(
        value,
        "",
        &[
            "metadata.namespace",
            "metadata.labels",
            "metadata.annotations",
            "spec.version",
            "spec.initTimeout",
            "spec.ignoreErrors",
        ],
    );
    let resource = resource.filter(|_| local.errors.is_empty());
    let component = resource.and_then(|resource| entry(&resource, &mut local));
    for issue in local.errors {
        findings.error(at(origin, &issue.path), issue.message);
    }
    for issue in local.ignored {
        // The decoder's note speaks of MOSN; these are Kubernetes' and Dapr's own keys.
        let note = if issue.message.starts_with("MOSN") {
            "not used by layotto-rs".to_owned()
        } else {
            issue.message
        };
        findings.ignore(at(origin, &issue.path), note);
    }
    let mut component = component?;
    component.path = at(origin, "spec");
    Some(component)
}

/// The LayOtto entry of a decoded component (problems at document paths in `findings`).
fn entry(resource: &Resource, findings: &mut Findings) -> Option<DaprComponent> {
    if resource.api_version != API_VERSION {
        findings.error(
            "apiVersion",
            format!(
                "\"{}\" is not Dapr's component version ({API_VERSION})",
                resource.api_version
            ),
        );
    }
    if resource.metadata.name.is_empty() {
        findings.error("metadata.name", "must name the component");
    }
    let spec_type = &resource.spec.r#type;
    let block = BLOCKS
        .iter()
        .find_map(|(prefix, block)| Some((*block, spec_type.strip_prefix(prefix)?)));
    let Some((block, kind)) = block else {
        let prefixes: Vec<String> = BLOCKS.iter().map(|(p, _)| format!("{p}*")).collect();
        findings.error(
            "spec.type",
            format!(
                "component type \"{spec_type}\" is not supported (supported: {})",
                prefixes.join(", ")
            ),
        );
        return None;
    };
    if !resource.scopes.is_empty() {
        findings.ignore(
            "scopes",
            "not applied: every app served by this sidecar may use the component",
        );
    }
    let mut metadata = Map::new();
    let mut secret_refs = Vec::new();
    for (i, item) in resource.spec.metadata.iter().enumerate() {
        let path = format!("spec.metadata[{i}]");
        match (&item.value, &item.secret_key_ref) {
            (Some(value), None) => {
                metadata.insert(item.name.clone(), value.clone());
            }
            (None, Some(secret)) => match &resource.auth {
                Some(auth) => secret_refs.push(json!({
                    "store_name": auth.secret_store,
                    "key": secret.name,
                    "sub_key": secret.key,
                    "inject_as": item.name,
                })),
                None => findings.error(
                    join(&path, "secretKeyRef"),
                    "needs auth.secretStore, the secret store to read it from",
                ),
            },
            _ => findings.error(path, "needs either a value or a secretKeyRef"),
        }
    }
    let mut entry = json!({"type": kind, "metadata": metadata});
    if !secret_refs.is_empty() {
        entry["secret_ref"] = Value::Array(secret_refs);
    }
    findings.errors.is_empty().then(|| DaprComponent {
        block,
        name: resource.metadata.name.clone(),
        entry,
        path: String::new(),
    })
}

/// `FILE: PATH`, or the file alone for the document itself.
fn at(origin: &str, path: &str) -> String {
    if path.is_empty() || path == ROOT {
        origin.to_owned()
    } else {
        format!("{origin}: {path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<DaprComponent>, Findings) {
        let mut findings = Findings::default();
        let mut out = Vec::new();
        read_file("c.yaml", text, &mut findings, &mut out);
        (out, findings)
    }

    fn errors(findings: &Findings) -> Vec<String> {
        findings.errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn components_become_layotto_entries() {
        let (components, findings) = read(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\n  namespace: default\n\
             spec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: localhost:6379\n\
             \x20 - name: redisPassword\n    secretKeyRef:\n      name: redis-pass\n      key: redis-pass\n\
             \x20 - name: timeout\n    value: 5\nauth:\n  secretStore: files\n\
             ---\napiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: s\n",
        );
        assert!(findings.errors.is_empty(), "{:?}", errors(&findings));
        assert_eq!(components.len(), 1);
        let state = &components[0];
        assert_eq!((state.block, state.name.as_str()), ("state", "statestore"));
        assert_eq!(state.path, "c.yaml (document 1): spec");
        assert_eq!(
            state.entry,
            json!({"type": "redis", "metadata": {"redisHost": "localhost:6379", "timeout": 5},
                   "secret_ref": [{"store_name": "files", "key": "redis-pass",
                                   "sub_key": "redis-pass", "inject_as": "redisPassword"}]})
        );
        let ignored: Vec<String> = findings.ignored.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            ignored,
            [
                "c.yaml (document 1): metadata.namespace: not used by layotto-rs",
                "c.yaml (document 1): spec.version: not used by layotto-rs",
                "c.yaml (document 2): kind: Dapr Subscription resources are not used by layotto-rs",
            ]
        );
    }

    #[test]
    fn problems_name_the_file_and_the_path() {
        let (_, findings) = read("kind: Component\nspec: [\n");
        assert_eq!(findings.errors.len(), 1);
        let error = errors(&findings).remove(0);
        assert!(error.starts_with("c.yaml: invalid YAML: "), "{error}");
        assert!(error.contains("at line 3 column 1"), "{error}");

        let (_, findings) = read(
            "apiVersion: dapr.io/v2\nkind: Component\nmetadata:\n  name: x\n\
             spec:\n  type: middleware.http.oauth2\n  metadata:\n  - name: a\n",
        );
        assert_eq!(
            errors(&findings),
            [
                "c.yaml: apiVersion: \"dapr.io/v2\" is not Dapr's component version (dapr.io/v1alpha1)",
                "c.yaml: spec.type: component type \"middleware.http.oauth2\" is not supported (supported: state.*, pubsub.*, lock.*, secretstores.*, bindings.*, configuration.*)",
            ]
        );

        let (_, findings) = read(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\n\
             spec:\n  type: state.redis\n  metadata:\n  - name: a\n  - name: b\n    secretKeyRef: {name: s}\n  - nme: c\n",
        );
        assert_eq!(
            errors(&findings),
            ["c.yaml: spec.metadata[2]: missing field `name`"]
        );

        let (_, findings) = read(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\n\
             spec:\n  type: state.redis\n  metadata:\n  - name: a\n  - name: b\n    secretKeyRef: {name: s}\n",
        );
        assert_eq!(
            errors(&findings),
            [
                "c.yaml: spec.metadata[0]: needs either a value or a secretKeyRef",
                "c.yaml: spec.metadata[1].secretKeyRef: needs auth.secretStore, the secret store to read it from",
            ]
        );
    }
}
