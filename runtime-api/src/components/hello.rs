//! The `hellos` building block: the [`Hello`] contract and its one backend type, `helloworld`,
//! which answers with its configured greeting followed by `, <name>` when a name is given (as
//! LayOtto's). Shared by all shards; the greeting changes at run time through LayOtto's
//! `Lifecycle.ApplyConfiguration` (metadata `hello`), swapped atomically for every shard.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use serde_json::Value;
use tracing::info;

use super::{
    component::Component,
    registry::{Entry, Registry},
};
use crate::error::ApiError;

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

/// LayOtto's `helloworld`: a greeting, replaceable at run time.
#[derive(Debug)]
pub struct HelloWorld {
    greeting: ArcSwap<String>,
}

impl HelloWorld {
    /// A component answering with `greeting`.
    pub fn new(greeting: impl Into<String>) -> Self {
        Self {
            greeting: ArcSwap::from_pointee(greeting.into()),
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

#[async_trait(?Send)]
impl Component for HelloWorld {
    /// As LayOtto's: metadata `hello` becomes the greeting; without it nothing changes.
    async fn apply_configuration(
        &self,
        metadata: &HashMap<String, String>,
    ) -> Result<(), ApiError> {
        if let Some(greeting) = metadata.get("hello") {
            self.greeting.store(Arc::new(greeting.clone()));
            info!(greeting = %greeting, "helloworld: greeting changed by ApplyConfiguration");
        }
        Ok(())
    }
}

impl Hello for HelloWorld {
    fn hello(&self, name: &str) -> String {
        let greeting = self.greeting.load();
        if name.is_empty() {
            greeting.as_ref().clone()
        } else {
            format!("{greeting}, {name}")
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

    #[test]
    fn apply_configuration_changes_the_greeting_only_when_hello_is_given() {
        let hello = HelloWorld::new("greeting");
        let other = HashMap::from([("other".to_owned(), "x".to_owned())]);
        futures_lite::future::block_on(hello.apply_configuration(&other)).unwrap();
        assert_eq!(hello.hello("eva"), "greeting, eva");
        let goodbye = HashMap::from([("hello".to_owned(), "goodbye".to_owned())]);
        futures_lite::future::block_on(hello.apply_configuration(&goodbye)).unwrap();
        assert_eq!(hello.hello("eva"), "goodbye, eva");
    }
}
