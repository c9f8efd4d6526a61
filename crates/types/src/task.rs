//! Mesos task states and their classification.
//!
//! Used by the master (task lifecycle), the agent (status updates), the api crate (wire
//! names such as `TASK_RUNNING`) and the CLI.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The state of a task, serialized with its Mesos name (`"TASK_RUNNING"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum TaskState {
    /// Accepted by the master, not yet on the agent.
    #[serde(rename = "TASK_STAGING")]
    Staging,
    /// The agent is starting the task.
    #[serde(rename = "TASK_STARTING")]
    Starting,
    /// The task is running.
    #[serde(rename = "TASK_RUNNING")]
    Running,
    /// A kill is in progress.
    #[serde(rename = "TASK_KILLING")]
    Killing,
    /// Exited successfully (terminal).
    #[serde(rename = "TASK_FINISHED")]
    Finished,
    /// Exited with failure (terminal).
    #[serde(rename = "TASK_FAILED")]
    Failed,
    /// Killed on request (terminal).
    #[serde(rename = "TASK_KILLED")]
    Killed,
    /// Could not be launched due to an invalid request (terminal).
    #[serde(rename = "TASK_ERROR")]
    Error,
    /// Lost (terminal, legacy).
    #[serde(rename = "TASK_LOST")]
    Lost,
    /// Dropped before launch (terminal).
    #[serde(rename = "TASK_DROPPED")]
    Dropped,
    /// The agent is unreachable; the task may come back.
    #[serde(rename = "TASK_UNREACHABLE")]
    Unreachable,
    /// Known to be gone (terminal).
    #[serde(rename = "TASK_GONE")]
    Gone,
    /// Marked gone by an operator (terminal).
    #[serde(rename = "TASK_GONE_BY_OPERATOR")]
    GoneByOperator,
    /// The master has no record of the task.
    #[serde(rename = "TASK_UNKNOWN")]
    Unknown,
}

impl TaskState {
    /// Every state, in declaration order.
    pub const ALL: [TaskState; 14] = [
        TaskState::Staging,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Killing,
        TaskState::Finished,
        TaskState::Failed,
        TaskState::Killed,
        TaskState::Error,
        TaskState::Lost,
        TaskState::Dropped,
        TaskState::Unreachable,
        TaskState::Gone,
        TaskState::GoneByOperator,
        TaskState::Unknown,
    ];

    /// The Mesos name, e.g. `"TASK_RUNNING"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Killing => "TASK_KILLING",
            TaskState::Finished => "TASK_FINISHED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Error => "TASK_ERROR",
            TaskState::Lost => "TASK_LOST",
            TaskState::Dropped => "TASK_DROPPED",
            TaskState::Unreachable => "TASK_UNREACHABLE",
            TaskState::Gone => "TASK_GONE",
            TaskState::GoneByOperator => "TASK_GONE_BY_OPERATOR",
            TaskState::Unknown => "TASK_UNKNOWN",
        }
    }

    /// Whether the task will never run again: finished, failed, killed, error, lost,
    /// dropped, gone, gone by operator.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Error
                | TaskState::Lost
                | TaskState::Dropped
                | TaskState::Gone
                | TaskState::GoneByOperator
        )
    }

    /// Parses a Mesos name such as `"TASK_RUNNING"` (exact match).
    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde_and_parse() {
        for t in TaskState::ALL {
            let json = serde_json::to_string(&t).expect("serialize");
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(TaskState::parse(t.as_str()), Some(t));
            assert_eq!(t.to_string(), t.as_str());
            let back: TaskState = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, t);
        }
        assert_eq!(TaskState::parse("RUNNING"), None);
        assert_eq!(TaskState::parse("task_running"), None);
    }

    #[test]
    fn terminal_states() {
        let terminal: Vec<TaskState> = TaskState::ALL
            .into_iter()
            .filter(|t| t.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            vec![
                TaskState::Finished,
                TaskState::Failed,
                TaskState::Killed,
                TaskState::Error,
                TaskState::Lost,
                TaskState::Dropped,
                TaskState::Gone,
                TaskState::GoneByOperator,
            ]
        );
        assert!(!TaskState::Unreachable.is_terminal());
        assert!(!TaskState::Running.is_terminal());
    }
}
