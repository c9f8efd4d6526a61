//! Identifier newtypes for agents, frameworks, tasks and offers.
//!
//! Used everywhere ids cross an API or a store key; they serialize as plain JSON strings.
//! An id is an immutable shared string: the master holds the same agent, framework and task
//! ids in many tables (tasks, offers, the allocator, views), and a clone only counts a reference.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps a string as this id.
            pub fn new(s: impl AsRef<str>) -> Self {
                Self(Arc::from(s.as_ref()))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Arc::from(s))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(Arc::from(s))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// The id of an agent (Mesos `SlaveID`/`AgentID` value).
    AgentId
);
id_type!(
    /// The id of a registered framework.
    FrameworkId
);
id_type!(
    /// The id of a task, unique within its framework.
    TaskId
);
id_type!(
    /// The id of a resource offer.
    OfferId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_transparent_json_string() {
        let id = AgentId::new("a-1");
        assert_eq!(serde_json::to_string(&id).expect("serialize"), "\"a-1\"");
        let back: AgentId = serde_json::from_str("\"a-1\"").expect("deserialize");
        assert_eq!(back, id);
    }

    #[test]
    fn id_conversions_and_display() {
        let t: TaskId = "web.1".into();
        assert_eq!(t.as_str(), "web.1");
        assert_eq!(t.to_string(), "web.1");
        assert_eq!(TaskId::from(String::from("web.1")), t);
        assert!(FrameworkId::new("a") < FrameworkId::new("b"));
        assert_eq!(OfferId::new("o").as_ref(), "o");
    }
}
