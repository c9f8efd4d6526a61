//! Plain facts about one instance that the engine's state and the instance table share: what
//! the scheduler wants of it ([`Goal`]), what its health checks said ([`HealthRecord`]), and the
//! Marathon name of its task's state ([`condition_name`]). A leaf: it imports nothing of the
//! engine, so `model` and `instance` both build on it without importing each other.

use meseta_types::TaskState;
use serde::{Deserialize, Serialize};

/// What the scheduler wants of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Goal {
    /// Keep it running (relaunch when its task ends).
    Running,
    /// Kill it and forget it once its task is terminal.
    Decommissioned,
}

/// Health-check history of an instance (`healthCheckResults`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthRecord {
    /// First healthy report of the current task.
    pub first_success: Option<f64>,
    /// Latest healthy report.
    pub last_success: Option<f64>,
    /// Latest unhealthy report.
    pub last_failure: Option<f64>,
    /// Unhealthy reports since the last healthy one.
    pub consecutive_failures: u32,
    /// Why the last check failed.
    pub last_failure_cause: Option<String>,
}

/// Marathon condition of a task state.
pub fn condition_name(s: TaskState) -> &'static str {
    match s {
        TaskState::Staging => "Staging",
        TaskState::Starting => "Starting",
        TaskState::Running => "Running",
        TaskState::Killing => "Killing",
        TaskState::Killed => "Killed",
        TaskState::Failed => "Failed",
        TaskState::Finished => "Finished",
        TaskState::Error => "Error",
        TaskState::Unreachable => "Unreachable",
        TaskState::Gone | TaskState::GoneByOperator => "Gone",
        TaskState::Dropped => "Dropped",
        _ => "Unknown",
    }
}
