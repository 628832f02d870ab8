//! Collecting every configuration problem in one pass, each located by its JSON path
//! (`servers[0].listeners[1].address`). Sans-IO; main thread.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// The path of the document itself (a top-level `null`, text that is not JSON).
pub const ROOT: &str = "(top level)";

/// One problem in a configuration, located by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where in the JSON document, e.g. `servers[0].listeners[1].address`; [`ROOT`] for the
    /// document itself, never empty.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl ConfigIssue {
    fn new(path: String, message: String) -> Self {
        let path = if path.is_empty() {
            ROOT.to_owned()
        } else {
            path
        };
        Self { path, message }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Everything found while reading a configuration: errors (which stop the start) and keys that are
/// known MOSN internals layotto-rs does not use (logged once as ignored).
#[derive(Debug, Default)]
pub struct Findings {
    /// Problems; any of them means the configuration is rejected.
    pub errors: Vec<ConfigIssue>,
    /// Recognised keys or blocks that are not used, each with why.
    pub ignored: Vec<ConfigIssue>,
}

impl Findings {
    /// Records an error at `path` (the empty path is the document itself, [`ROOT`]).
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors
            .push(ConfigIssue::new(path.into(), message.into()));
    }

    /// Records that what stands at `path` is recognised but not used.
    pub fn ignore(&mut self, path: impl Into<String>, note: impl Into<String>) {
        self.ignored
            .push(ConfigIssue::new(path.into(), note.into()));
    }

    /// Decodes `value` (found at `path`) into `T`. Keys `T` does not know are errors, except those
    /// named in `ignorable` (direct children only), which are recorded as ignored. Returns `None`
    /// after recording the error if `value` does not fit `T`.
    pub fn decode<T: DeserializeOwned>(
        &mut self,
        value: &Value,
        path: &str,
        ignorable: &[&str],
    ) -> Option<T> {
        let mut unknown = Vec::new();
        let mut track = serde_path_to_error::Track::new();
        let result = serde_ignored::deserialize(
            serde_path_to_error::Deserializer::new(value, &mut track),
            |ignored| unknown.push(ignored_path(&ignored)),
        );
        match result {
            Ok(decoded) => {
                for key in unknown {
                    let full = join(path, &key);
                    if ignorable.contains(&key.as_str()) {
                        self.ignore(full, "MOSN-internal setting, not used by layotto-rs");
                    } else {
                        self.error(full, "unknown key");
                    }
                }
                Some(decoded)
            }
            Err(err) => {
                let inner: Vec<String> = track.path().iter().map(segment).collect();
                self.error(join(path, &inner.concat()), err.to_string());
                None
            }
        }
    }
}

/// `parent` followed by a relative path (`key`, `[3]`, `.key[3]` …), without a leading dot.
pub fn join(parent: &str, relative: &str) -> String {
    let relative = relative.strip_prefix('.').unwrap_or(relative);
    match (parent.is_empty(), relative.is_empty()) {
        (_, true) => parent.to_owned(),
        (true, false) => relative.to_owned(),
        (false, false) if relative.starts_with('[') => format!("{parent}{relative}"),
        (false, false) => format!("{parent}.{relative}"),
    }
}

/// The path of element `index` of the array at `parent`.
pub fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

fn segment(segment: &serde_path_to_error::Segment) -> String {
    use serde_path_to_error::Segment;
    match segment {
        Segment::Seq { index } => format!("[{index}]"),
        Segment::Map { key } => format!(".{key}"),
        Segment::Enum { variant } => format!(".{variant}"),
        Segment::Unknown => ".?".to_owned(),
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => join(&ignored_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)] // fields exist to be decoded
    struct Inner {
        port: u16,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        #[serde(default)]
        inner: Vec<Inner>,
    }

    #[test]
    fn type_error_carries_full_path() {
        let mut findings = Findings::default();
        let value = serde_json::json!({"name": "a", "inner": [{"port": 1}, {"port": "x"}]});
        assert!(findings.decode::<Outer>(&value, "root[2]", &[]).is_none());
        assert_eq!(findings.errors.len(), 1);
        assert_eq!(findings.errors[0].path, "root[2].inner[1].port");
        assert!(findings.errors[0].message.contains("invalid type"));
    }

    #[test]
    fn unknown_keys_are_errors_unless_ignorable() {
        let mut findings = Findings::default();
        let value = serde_json::json!({"name": "a", "nmae": 1, "admin": {"x": 1},
                                      "inner": [{"port": 1, "prot": 2}]});
        assert!(
            findings
                .decode::<Outer>(&value, "top", &["admin"])
                .is_some()
        );
        let errors: Vec<String> = findings.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errors,
            vec!["top.nmae: unknown key", "top.inner[0].prot: unknown key"]
        );
        assert_eq!(findings.ignored[0].path, "top.admin");
    }

    #[test]
    fn missing_field_points_at_the_object() {
        let mut findings = Findings::default();
        assert!(
            findings
                .decode::<Outer>(&serde_json::json!({}), "x", &[])
                .is_none()
        );
        assert_eq!(findings.errors[0].to_string(), "x: missing field `name`");
    }

    #[test]
    fn a_document_of_the_wrong_shape_is_located_at_the_top_level() {
        for document in [serde_json::json!(null), serde_json::json!([])] {
            let mut findings = Findings::default();
            assert!(findings.decode::<Outer>(&document, "", &[]).is_none());
            assert_eq!(findings.errors[0].path, ROOT);
            assert!(
                findings.errors[0].to_string().starts_with("(top level): "),
                "{}",
                findings.errors[0]
            );
        }
    }

    #[test]
    fn joins_paths() {
        assert_eq!(join("", "servers"), "servers");
        assert_eq!(join("a", "[1].b"), "a[1].b");
        assert_eq!(join("a", ".b"), "a.b");
        assert_eq!(join("a", ""), "a");
        assert_eq!(index("a.b", 4), "a.b[4]");
    }
}
