//! The `hellos` building block's `helloworld` component: answers with its configured greeting,
//! followed by `, <name>` when a name is given (as LayOtto's). Immutable; shared by all shards.

/// A greeting component.
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

    /// The greeting for `name`.
    pub fn hello(&self, name: &str) -> String {
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
