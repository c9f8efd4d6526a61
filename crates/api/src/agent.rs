//! The agent ⇄ master protocol.
//!
//! Each agent holds **one WebSocket** to the master at [`AGENT_WS_PATH`]; every frame is one JSON text
//! message. The agent speaks first with [`AgentMessage::Register`] (carrying its id when it has one
//! and every task it still knows about), and the master answers [`MasterMessage::Registered`] or
//! [`MasterMessage::Rejected`]. After that:
//!
//! ```text
//!   agent                                   master
//!     │── Register{agent_id?, tasks} ──────────▶│  (re-registration rebuilds the master's view)
//!     │◀──────────── Registered{agent_id} ──────│
//!     │◀──────────── LaunchTask / KillTask ─────│
//!     │── StatusUpdate{uuid,…} (checkpointed) ─▶│──▶ framework
//!     │◀──────────── Acknowledge{uuid} ─────────│◀── framework ack
//!     │── Heartbeat / Usage ───────────────────▶│
//! ```
//!
//! Status updates are checkpointed on the agent before they are sent and resent until acknowledged;
//! the master applies each `uuid` at most once per state.

use meseta_types::{AgentId, Attributes, FrameworkId, Resources, TaskId, TaskState};
use serde::{Deserialize, Serialize};

/// The HTTP path the agent upgrades to a WebSocket.
pub const AGENT_WS_PATH: &str = "/api/meseta/v1/agent";

/// Messages from the agent to the master.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentMessage {
    /// First message on every connection.
    Register(Register),
    /// A task changed state.
    StatusUpdate(StatusUpdate),
    /// Liveness.
    Heartbeat,
    /// Resource usage of running tasks.
    Usage(UsageReport),
}

/// Messages from the master to the agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MasterMessage {
    /// Registration accepted; the agent persists `agent_id`.
    Registered {
        /// The id the agent keeps from now on.
        agent_id: AgentId,
        /// How often the master expects a heartbeat.
        heartbeat_interval_secs: f64,
    },
    /// Registration refused; the agent logs `message` and exits non-zero.
    Rejected {
        /// Why.
        message: String,
    },
    /// Start a task.
    LaunchTask(TaskSpec),
    /// Kill a task (SIGTERM, then SIGKILL after the grace period).
    KillTask {
        /// Task to kill.
        task_id: TaskId,
        /// Grace period between SIGTERM and SIGKILL; the task's own when absent.
        grace_secs: Option<f64>,
    },
    /// The framework acknowledged this update: the agent drops its checkpoint.
    Acknowledge {
        /// Task the update was about.
        task_id: TaskId,
        /// The update's uuid.
        uuid: String,
    },
}

/// Registration (and re-registration) of an agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Register {
    /// The persisted id; `None` the first time.
    pub agent_id: Option<AgentId>,
    /// Host name tasks see as `HOST`.
    pub hostname: String,
    /// `ip:port` of the agent's own HTTP server (sandbox files).
    pub address: String,
    /// Total resources of the agent.
    pub resources: Resources,
    /// Attributes (`rack:r1;zone:z1`).
    pub attributes: Attributes,
    /// Every task the agent knows about (running, or ended with an unacknowledged update).
    pub tasks: Vec<TaskReport>,
    /// meseta version of the agent.
    pub version: String,
}

/// One task as the agent reports it when (re-)registering.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskReport {
    /// What was launched.
    pub spec: TaskSpec,
    /// Its latest state on the agent.
    pub state: TaskState,
}

/// A task to run, as the master sends it to the agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskSpec {
    /// Unique task id.
    pub task_id: TaskId,
    /// Owning framework.
    pub framework_id: FrameworkId,
    /// Human name.
    pub name: String,
    /// Resources the task holds (ports among them).
    pub resources: Resources,
    /// What to run.
    pub command: Command,
    /// Extra environment (the agent adds `MESOS_TASK_ID`, `MESOS_SANDBOX`, `HOST`, `PORT*`).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Unix user to run as; the agent's own user when absent.
    #[serde(default)]
    pub user: Option<String>,
    /// Seconds between SIGTERM and SIGKILL.
    #[serde(default)]
    pub kill_grace_secs: Option<f64>,
    /// The role the resources were allocated in (the offer's `allocation_info.role`); kept
    /// with the task so a restarted master can account for it again.
    #[serde(default = "default_role")]
    pub role: String,
}

fn default_role() -> String {
    "*".to_string()
}

/// A command line, Mesos `CommandInfo` style.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Command {
    /// `true`: `/bin/sh -c value`; `false`: exec `value` with `arguments`.
    pub shell: bool,
    /// Shell command or program.
    pub value: String,
    /// argv when `shell` is false.
    #[serde(default)]
    pub arguments: Vec<String>,
}

/// A task's change of state, born on the agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatusUpdate {
    /// Unique id of this update (a UUID, hyphenated text).
    pub uuid: String,
    /// The task.
    pub task_id: TaskId,
    /// Its framework.
    pub framework_id: FrameworkId,
    /// New state.
    pub state: TaskState,
    /// Mesos reason (`REASON_CONTAINER_LIMITATION_MEMORY`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human message (`Command exited with status 3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Unix seconds.
    pub timestamp: f64,
    /// Exit code of the command, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// Usage of running tasks.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct UsageReport {
    /// One entry per running task.
    pub tasks: Vec<TaskUsage>,
}

/// Usage of one task.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskUsage {
    /// The task.
    pub task_id: TaskId,
    /// Resident memory of its cgroup, bytes.
    pub mem_bytes: u64,
    /// CPU time consumed, seconds.
    pub cpu_secs: f64,
}
