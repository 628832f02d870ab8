//! The `hellos` building block: the [`Hello`] contract and its one backend type, `helloworld`,
//! which answers with its configured greeting followed by `, <name>` when a name is given (as
//! LayOtto's). Immutable; shared by all shards.

use std::sync::Arc;

use serde_json::Value;

use super::{
    component::Component,
    registry::{Entry, Registry},
};

/// A greeting component.
pub trait Hello: Component {
    /// The greeting for `name`.
    fn hello(&self, name: &str) -> String;
}

/// The backend types of `hellos`.
pub(crate) const BACKENDS: Registry<dyn Hello> = Registry {
    label: "hellos",
    kind: "hello component",
    default_type: Some("helloworld"),
    fields: &["hello"],
    backends: &[("helloworld", HelloWorld::build)],
};

/// LayOtto's `helloworld`: a fixed greeting.
#[derive(Debug, Clone)]
pub struct HelloWorld {
    greeting: String,
}

impl HelloWorld {
    /// A component answering with `greeting`.
    pub fn new(greeting: impl Into<String>) -> Self {
        Self {
            greeting: greeting.into(),
        }
    }

    /// From its entry: the `hello` key is the greeting.
    fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn Hello>> {
        match entry.field("hello") {
            Some(Value::String(greeting)) => Some(Arc::new(Self::new(greeting))),
            _ => {
                entry.error(
                    "hello",
                    "a helloworld component needs its greeting (a string)",
                );
                None
            }
        }
    }
}

impl Component for HelloWorld {}

impl Hello for HelloWorld {
    fn hello(&self, name: &str) -> String {
        if name.is_empty() {
            self.greeting.clone()
        } else {
            format!("{}, {name}", self.greeting)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_with_and_without_a_name() {
        let hello = HelloWorld::new("greeting");
        assert_eq!(hello.hello(""), "greeting");
        assert_eq!(hello.hello("layotto"), "greeting, layotto");
    }
}
