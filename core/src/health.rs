//! Component health for the actuator's readiness endpoint: components register a check on the
//! main thread while building; a readiness request runs every check on the shard serving it
//! (remote checks hop to the backend pool, so the shard does not block).

use std::sync::Arc;

use futures_lite::future::BoxedLocal;

/// One component's health.
pub trait HealthCheck: Send + Sync {
    /// `Ok` when the component can serve; otherwise why not.
    fn check(&self) -> BoxedLocal<Result<(), String>>;
}

/// The checks of every component, by name.
#[derive(Default)]
#[expect(
    clippy::disallowed_types,
    reason = "written on the main thread before the shards start; a readiness request then takes it uncontended, to clone the list"
)]
pub struct HealthRegistry {
    checks: std::sync::Mutex<Vec<(String, Arc<dyn HealthCheck>)>>,
}

impl HealthRegistry {
    /// Adds `check` for the component called `name` (e.g. `config_store.config_demo`).
    pub fn register(&self, name: impl Into<String>, check: Arc<dyn HealthCheck>) {
        self.checks
            .lock()
            .expect("health lock poisoned")
            .push((name.into(), check));
    }

    /// Runs every check; answers each component's name and result, in registration order.
    pub async fn check_all(&self) -> Vec<(String, Result<(), String>)> {
        let checks = self.checks.lock().expect("health lock poisoned").clone();
        let mut results = Vec::with_capacity(checks.len());
        for (name, check) in checks {
            results.push((name, check.check().await));
        }
        results
    }
}
