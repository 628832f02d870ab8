//! LayOtto's `flowControlFilter` stream filter (MOSN's): per-path call limits (`rules[].resource`
//! is the gRPC path, `threshold` calls per `grade` seconds), each a process-wide [`WindowBudget`]
//! spent through per-shard buckets, so a rule holds for all shards together with no lock. A
//! refused call is answered with the filter's `action` (MOSN's default: status 509, body
//! `current request is limited`). Built on the main thread; instances run on their shard.

use std::{collections::HashMap, rc::Rc, sync::Arc};

use layotto_core::config::{FilterConfig, Findings, join};
use serde::Deserialize;
use tracing::debug;

use crate::{
    rate_limit::{Clock, MonotonicClock, ShardBucket, WindowBudget, window_of},
    registry::BuildContext,
    stream::{CallRejection, StreamFilter, StreamFilterFactory},
};

/// The filter's `type` in the config.
pub const KIND: &str = "flowControlFilter";
/// MOSN's status for a limited request (`api.LimitExceededCode`).
pub const LIMIT_EXCEEDED_STATUS: u16 = 509;
/// MOSN's body for a limited request, which LayOtto's gRPC clients see as the status message.
pub const LIMITED_BODY: &str = "current request is limited";

#[derive(Deserialize)]
struct FlowControlConfig {
    #[serde(default = "enabled")]
    global_switch: bool,
    #[serde(default = "path_key")]
    limit_key_type: String,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    action: Action,
}

/// MOSN's `action`: the direct response to a limited call.
#[derive(Deserialize)]
#[serde(default)]
struct Action {
    status: u16,
    body: String,
}

impl Default for Action {
    /// MOSN's defaults (`api.LimitExceededCode` and `defaultResponse`).
    fn default() -> Self {
        Self {
            status: LIMIT_EXCEEDED_STATUS,
            body: LIMITED_BODY.to_owned(),
        }
    }
}

fn enabled() -> bool {
    true
}

fn path_key() -> String {
    "PATH".into()
}

#[derive(Deserialize)]
struct Rule {
    resource: String,
    #[serde(default = "one")]
    grade: u64,
    threshold: u32,
}

fn one() -> u64 {
    1
}

/// The configured rules, shared by all shards.
pub struct FlowControlFactory {
    budgets: HashMap<String, Arc<WindowBudget>>,
    clock: Arc<dyn Clock>,
    refusal: CallRejection,
}

impl FlowControlFactory {
    /// Limits over `budgets` by path, timed by `clock`, refusing with `refusal`.
    pub fn new(
        budgets: HashMap<String, Arc<WindowBudget>>,
        clock: Arc<dyn Clock>,
        refusal: CallRejection,
    ) -> Self {
        Self {
            budgets,
            clock,
            refusal,
        }
    }
}

/// Builds the filter from its config entry, recording problems in `findings`. `None` without an
/// error when `global_switch` is off.
pub fn build(
    filter: &FilterConfig,
    ctx: &BuildContext<'_>,
    findings: &mut Findings,
) -> Option<Arc<dyn StreamFilterFactory>> {
    let path = join(&filter.path, "config");
    let config: FlowControlConfig = findings.decode(&filter.config, &path, &[])?;
    if config.limit_key_type != "PATH" {
        findings.error(
            join(&path, "limit_key_type"),
            format!(
                "\"{}\" is not supported (supported: PATH)",
                config.limit_key_type
            ),
        );
    }
    let mut budgets = HashMap::new();
    for (i, rule) in config.rules.iter().enumerate() {
        let rule_path = format!("{path}.rules[{i}]");
        if !rule.resource.starts_with('/') {
            findings.error(
                join(&rule_path, "resource"),
                format!(
                    "\"{}\" is not a gRPC path like /package.Service/Method",
                    rule.resource
                ),
            );
        }
        let window = match window_of(rule.grade) {
            Ok(window) => window,
            Err(err) => {
                findings.error(join(&rule_path, "grade"), err);
                continue;
            }
        };
        let budget = WindowBudget::new(rule.threshold, window, ctx.shards);
        if budgets
            .insert(rule.resource.clone(), Arc::new(budget))
            .is_some()
        {
            findings.error(
                join(&rule_path, "resource"),
                format!("a second rule for \"{}\"", rule.resource),
            );
        }
    }
    let Action { status, body } = config.action;
    if !matches!(status, 1..=16 | 100..=599) {
        findings.error(
            join(&path, "action.status"),
            format!("{status} is neither a gRPC code (1-16) nor an HTTP status (100-599)"),
        );
    }
    if !config.global_switch {
        findings.ignore(path, "global_switch is off: no flow control");
        return None;
    }
    Some(Arc::new(FlowControlFactory::new(
        budgets,
        Arc::new(MonotonicClock::default()),
        CallRejection::Limited { status, body },
    )))
}

impl StreamFilterFactory for FlowControlFactory {
    fn for_shard(&self, _shard: usize) -> Rc<dyn StreamFilter> {
        Rc::new(FlowControl {
            buckets: self
                .budgets
                .iter()
                .map(|(path, budget)| (path.clone(), ShardBucket::new(budget.clone())))
                .collect(),
            clock: self.clock.clone(),
            refusal: self.refusal.clone(),
        })
    }
}

/// One shard's buckets, by path.
struct FlowControl {
    buckets: HashMap<String, ShardBucket>,
    clock: Arc<dyn Clock>,
    refusal: CallRejection,
}

impl StreamFilter for FlowControl {
    fn on_call(&self, path: &str) -> Result<(), CallRejection> {
        match self.buckets.get(path) {
            Some(bucket) if !bucket.try_acquire(self.clock.now()) => {
                debug!(
                    path,
                    limit = bucket.limit(),
                    "flow control: call over its rule's limit per window"
                );
                Err(self.refusal.clone())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rate_limit::tests::FakeClock;

    #[test]
    fn limits_only_the_configured_paths_and_refills_per_window() {
        let clock = Arc::new(FakeClock::default());
        let budgets = HashMap::from([(
            "/svc/Limited".to_owned(),
            Arc::new(WindowBudget::new(2, Duration::from_secs(1), 2)),
        )]);
        let refusal = CallRejection::Limited {
            status: LIMIT_EXCEEDED_STATUS,
            body: LIMITED_BODY.into(),
        };
        let factory = FlowControlFactory::new(budgets, clock.clone(), refusal.clone());
        let (a, b) = (factory.for_shard(0), factory.for_shard(1));
        assert_eq!(a.on_call("/svc/Limited"), Ok(()));
        assert_eq!(b.on_call("/svc/Limited"), Ok(()));
        assert_eq!(a.on_call("/svc/Limited"), Err(refusal));
        assert!(b.on_call("/svc/Limited").is_err());
        assert!((0..100).all(|_| a.on_call("/svc/Free").is_ok()));
        clock.set(Duration::from_secs(1));
        assert_eq!(b.on_call("/svc/Limited"), Ok(()));
    }
}
