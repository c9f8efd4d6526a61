//! Ids that become file, directory and cgroup names on the agent.
//!
//! Task and agent ids arrive from the master (and, through it, from any framework) and name
//! `tasks/<task_id>/`, `updates/<task_id>/` and `<cgroup root>/<agent_id>/<task_id>`. A [`PathId`]
//! is the only thing [`crate::checkpoint`] and the cgroup paths accept: it can only be built by
//! validating the id, so a path is never built from an id that could leave its directory.

use std::fmt;
use std::path::Path;

use meseta_types::{AgentId, FrameworkId, TaskId};

/// Longest id accepted (a file name on Linux).
const MAX_LEN: usize = 255;

/// An id that is one safe path component: not empty, not `.` or `..`, at most 255 bytes, no `/`,
/// no NUL and no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PathId(String);

/// Why an id cannot be used as a path component.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {value:?}: {reason}")]
pub struct InvalidId {
    /// `task`, `agent` or `framework`.
    pub kind: &'static str,
    /// The refused id.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl PathId {
    /// Validate `value`, an id of `kind` (named in the error).
    pub fn parse(kind: &'static str, value: &str) -> Result<PathId, InvalidId> {
        let bad = |reason| InvalidId {
            kind,
            value: value.to_string(),
            reason,
        };
        if value.is_empty() {
            return Err(bad("must not be empty"));
        }
        if value == "." || value == ".." {
            return Err(bad("must not be '.' or '..'"));
        }
        if value.len() > MAX_LEN {
            return Err(bad("must be at most 255 bytes"));
        }
        if value.contains('/') {
            return Err(bad("must not contain '/'"));
        }
        if value.chars().any(char::is_control) {
            return Err(bad("must not contain control characters"));
        }
        Ok(PathId(value.to_string()))
    }

    /// A task id as a path component.
    pub fn task(id: &TaskId) -> Result<PathId, InvalidId> {
        PathId::parse("task", id.as_str())
    }

    /// An agent id as a path component.
    pub fn agent(id: &AgentId) -> Result<PathId, InvalidId> {
        PathId::parse("agent", id.as_str())
    }

    /// A framework id as a path component.
    pub fn framework(id: &FrameworkId) -> Result<PathId, InvalidId> {
        PathId::parse("framework", id.as_str())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<Path> for PathId {
    fn as_ref(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl fmt::Display for PathId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_escape_dirs_are_refused() {
        assert_eq!(
            PathId::parse("task", "web.1234-abcd").map(|p| p.to_string()),
            Ok("web.1234-abcd".to_string())
        );
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../../../../tmp/x/a/b",
            "/abs",
            "a\nb",
            "a\0b",
            &"x".repeat(256),
        ] {
            let err = PathId::parse("task", bad).expect_err(bad);
            assert_eq!(err.kind, "task");
            assert!(err.to_string().starts_with("invalid task id"), "{err}");
        }
        assert!(PathId::task(&TaskId::new("..")).is_err());
        assert!(PathId::agent(&AgentId::new("a/..")).is_err());
        assert!(PathId::framework(&FrameworkId::new("fw-1")).is_ok());
    }
}
