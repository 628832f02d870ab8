//! Which of the app's paths a subscription's event goes to, as daprd routes it: rules tried in
//! order, each with a CEL `match` evaluated on the event as the CloudEvent an HTTP app is sent
//! (`event.type`, `event.source`, `event.data.…`), or with none (it always matches); the first
//! rule that matches gives the path, and an event no rule matches is not delivered. Sans-IO;
//! runs where the delivery loop runs (the backend pool).

use cel_interpreter::{Context, Program, Value};
use layotto_proto::runtime::TopicEventRequest;

use crate::components::pubsub::cloud_event_json;

/// A subscription's routing rules.
#[derive(Debug)]
pub(super) struct Routes {
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    /// The CEL expression as the app gave it (empty: always matches).
    source: String,
    matches: Option<Program>,
    path: String,
}

impl Routes {
    /// Every event to `path`.
    pub(super) fn to(path: impl Into<String>) -> Self {
        Self {
            rules: vec![Rule {
                source: String::new(),
                matches: None,
                path: path.into(),
            }],
        }
    }

    /// `rules` (`match`, path) in order, then `default` as a last rule without a match when
    /// there is one; `Err` says which `match` is not CEL.
    pub(super) fn compile<'a>(
        rules: impl IntoIterator<Item = (&'a str, &'a str)>,
        default: Option<&str>,
    ) -> Result<Self, String> {
        let mut compiled = Vec::new();
        for (source, path) in rules {
            let source = source.trim();
            let matches = if source.is_empty() {
                None
            } else {
                Some(
                    Program::compile(source)
                        .map_err(|err| format!("match {source:?} is not CEL: {err}"))?,
                )
            };
            compiled.push(Rule {
                source: source.to_owned(),
                matches,
                path: path.to_owned(),
            });
        }
        compiled.extend(default.map(|path| Rule {
            source: String::new(),
            matches: None,
            path: path.to_owned(),
        }));
        Ok(Self { rules: compiled })
    }

    /// Whether no event can be delivered (no rule at all).
    pub(super) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The path `event` goes to: the first rule that matches it, `None` when none does; `Err`
    /// when a `match` cannot be evaluated on it (daprd fails the event too).
    pub(super) fn route_of(&self, event: &TopicEventRequest) -> Result<Option<&str>, String> {
        let mut context = None;
        for rule in &self.rules {
            let Some(program) = &rule.matches else {
                return Ok(Some(&rule.path));
            };
            let context = match &mut context {
                Some(context) => context,
                None => context.insert(event_context(event)?),
            };
            match program.execute(context) {
                Ok(Value::Bool(true)) => return Ok(Some(&rule.path)),
                Ok(Value::Bool(false)) => {}
                Ok(other) => {
                    return Err(format!(
                        "match {:?} is not a boolean: {other:?}",
                        rule.source
                    ));
                }
                Err(err) => return Err(format!("match {:?} failed: {err}", rule.source)),
            }
        }
        Ok(None)
    }

    /// The rules as Dapr's metadata lists them: (`match`, path), the default last.
    pub(super) fn listed(&self) -> Vec<(String, String)> {
        self.rules
            .iter()
            .map(|rule| (rule.source.clone(), rule.path.clone()))
            .collect()
    }

    /// A short description for logs: the paths in order.
    pub(super) fn describe(&self) -> String {
        let paths: Vec<&str> = self.rules.iter().map(|rule| rule.path.as_str()).collect();
        paths.join(" | ")
    }
}

/// A CEL context where `event` is `event` as the CloudEvent JSON an HTTP app gets.
fn event_context(event: &TopicEventRequest) -> Result<Context<'static>, String> {
    let cloud_event: serde_json::Value = serde_json::from_slice(&cloud_event_json(event))
        .map_err(|err| format!("the event is not a CloudEvent: {err}"))?;
    let mut context = Context::default();
    context
        .add_variable("event", cloud_event)
        .map_err(|err| format!("the event cannot be matched: {err}"))?;
    Ok(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, data: &str) -> TopicEventRequest {
        TopicEventRequest {
            id: "1".into(),
            source: "checkout".into(),
            r#type: kind.into(),
            spec_version: "1.0".into(),
            data_content_type: "application/json".into(),
            data: data.as_bytes().to_vec().into(),
            topic: "orders".into(),
            pubsub_name: "ps".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_first_matching_rule_routes_and_the_default_catches_the_rest() {
        let routes = Routes::compile(
            [
                (r#"event.type == "widget""#, "/widgets"),
                (
                    "event.data.amount > 100 && event.source == 'checkout'",
                    "/big",
                ),
            ],
            Some("/orders"),
        )
        .unwrap();
        let route = |kind, data| routes.route_of(&event(kind, data)).unwrap();
        assert_eq!(route("widget", r#"{"amount": 500}"#), Some("/widgets"));
        assert_eq!(route("order", r#"{"amount": 500}"#), Some("/big"));
        assert_eq!(route("order", r#"{"amount": 5}"#), Some("/orders"));
        assert_eq!(
            routes.listed()[2],
            (String::new(), "/orders".to_owned()),
            "the default is listed last, without a match"
        );
    }

    #[test]
    fn without_a_default_an_unmatched_event_has_no_route() {
        let routes = Routes::compile([(r#"event.type == "widget""#, "/widgets")], None).unwrap();
        assert_eq!(routes.route_of(&event("order", "{}")).unwrap(), None);
        assert!(Routes::compile([], None).unwrap().is_empty());
        // A rule without a match always matches.
        let routes = Routes::compile([("", "/all")], None).unwrap();
        assert_eq!(routes.route_of(&event("x", "1")).unwrap(), Some("/all"));
    }

    #[test]
    fn a_match_that_is_not_cel_or_not_boolean_is_an_error() {
        let err = Routes::compile([("event.type ==", "/x")], None).unwrap_err();
        assert!(err.contains("not CEL"), "{err}");
        let routes = Routes::compile([("event.type", "/x")], None).unwrap();
        let err = routes.route_of(&event("order", "{}")).unwrap_err();
        assert!(err.contains("not a boolean"), "{err}");
        let routes = Routes::compile([("event.data.missing.deeper == 1", "/x")], None).unwrap();
        assert!(routes.route_of(&event("order", "{}")).is_err());
    }
}
