//! Which secrets of a store callers may read: Dapr's secret scoping (`defaultAccess`,
//! `allowedSecrets`, `deniedSecrets`), given here as the store's metadata. Every secret store is
//! built behind a [`Scoped`] wrapper, so no backend can forget it. Sans-IO.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;

use super::SecretStore;
use crate::{
    components::{component::Component, registry::Entry},
    error::ApiError,
};

/// A store's access rule, as Dapr's `SecretsScope.IsSecretAllowed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Scope {
    /// `defaultAccess: deny`: only the allowed secrets (none when no list is given).
    deny_by_default: bool,
    /// `allowedSecrets`: when given, exactly these and nothing else.
    allowed: Vec<String>,
    /// `deniedSecrets`: never these.
    denied: Vec<String>,
}

impl Scope {
    /// Whether `key` may be read.
    pub(super) fn allows(&self, key: &str) -> bool {
        if !self.allowed.is_empty() {
            return self.allowed.iter().any(|k| k == key);
        }
        if self.denied.iter().any(|k| k == key) {
            return false;
        }
        !self.deny_by_default
    }
}

/// A secret store behind its scope.
pub(super) struct Scoped {
    component: String,
    scope: Scope,
    inner: Arc<dyn SecretStore>,
}

impl Scoped {
    /// `inner` behind the scope its entry's metadata gives; each backend's `build` ends here.
    pub(super) fn over(
        entry: &mut Entry<'_>,
        inner: Arc<dyn SecretStore>,
    ) -> Option<Arc<dyn SecretStore>> {
        let list = |text: Option<String>| -> Vec<String> {
            text.unwrap_or_default()
                .split(',')
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect()
        };
        let deny_by_default = match entry.take("defaultAccess").as_deref() {
            None => false,
            Some(access) if access.eq_ignore_ascii_case("allow") => false,
            Some(access) if access.eq_ignore_ascii_case("deny") => true,
            Some(other) => {
                entry.metadata_error(
                    "defaultAccess",
                    format!("\"{other}\": expected allow or deny"),
                );
                return None;
            }
        };
        let scope = Scope {
            deny_by_default,
            allowed: list(entry.take("allowedSecrets")),
            denied: list(entry.take("deniedSecrets")),
        };
        Some(Arc::new(Self {
            component: entry.component().to_owned(),
            scope,
            inner,
        }))
    }
}

#[async_trait(?Send)]
impl Component for Scoped {
    async fn start(&self) -> Result<(), ApiError> {
        self.inner.start().await
    }

    async fn health(&self) -> Result<(), ApiError> {
        self.inner.health().await
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

impl SecretStore for Scoped {
    fn get(&self, key: &str) -> Result<HashMap<String, String>, ApiError> {
        if !self.scope.allows(key) {
            return Err(ApiError::PermissionDenied(format!(
                "access denied by policy to get \"{key}\" from {}",
                self.component
            )));
        }
        self.inner.get(key)
    }

    fn get_all(&self) -> HashMap<String, HashMap<String, String>> {
        let mut all = self.inner.get_all();
        all.retain(|key, _| self.scope.allows(key));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(deny_by_default: bool, allowed: &[&str], denied: &[&str]) -> Scope {
        let owned = |keys: &[&str]| keys.iter().map(|k| (*k).to_owned()).collect();
        Scope {
            deny_by_default,
            allowed: owned(allowed),
            denied: owned(denied),
        }
    }

    #[test]
    fn scopes_follow_dapr_rules() {
        assert!(Scope::default().allows("any"));
        assert!(!scope(true, &[], &[]).allows("any"));
        // An allow list wins over everything else.
        let listed = scope(false, &["a"], &["a"]);
        assert!(listed.allows("a") && !listed.allows("b"));
        assert!(scope(true, &["a"], &[]).allows("a"));
        let denied = scope(false, &[], &["secret"]);
        assert!(!denied.allows("secret") && denied.allows("other"));
    }
}
