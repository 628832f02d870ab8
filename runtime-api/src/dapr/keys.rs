//! How daprd names what its APIs store, so a Dapr sidecar of the same app id sharing a store
//! sees the same data: state at `{app_id}||{key}`, locks at `lock||{app_id}||{resource}`. One
//! place for both Dapr APIs (gRPC in [`crate::dapr`], HTTP in [`crate::dapr_http`]), which word
//! a refusal each as daprd does. Sans-IO; any thread.

/// daprd's separator between the key prefix and the key.
pub const SEPARATOR: &str = "||";

/// Whether `key` holds the separator, which daprd refuses in keys and lock resources.
pub fn holds_separator(key: &str) -> bool {
    key.contains(SEPARATOR)
}

/// The prefix of every state key of `app_id`.
pub fn state_prefix(app_id: &str) -> String {
    format!("{app_id}{SEPARATOR}")
}

/// The stored name of state key `key` of `app_id` (check [`holds_separator`] first).
pub fn state_key(app_id: &str, key: &str) -> String {
    format!("{app_id}{SEPARATOR}{key}")
}

/// The stored name of lock resource `resource` of `app_id` (check [`holds_separator`] first).
pub fn lock_key(app_id: &str, resource: &str) -> String {
    format!("lock{SEPARATOR}{app_id}{SEPARATOR}{resource}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_laid_out_as_daprd_lays_them_out() {
        assert_eq!(state_key("app", "k"), "app||k");
        assert!(state_key("app", "k").starts_with(&state_prefix("app")));
        assert_eq!(lock_key("app", "r"), "lock||app||r");
        assert!(holds_separator("a||b"));
        assert!(!holds_separator("a|b"));
    }
}
