//! Mesos v0 operator JSON shapes: `/master/state`, `/master/slaves`, `/master/tasks`,
//! `/master/frameworks` (reference: mesos-api.md §3.3–3.4).
//!
//! IDs are bare strings and resources are summary maps (`{"cpus":4.0,"mem":1024.0,…}`), as Mesos
//! prints them. The master builds these; clients (CLI, autoscalers, mesos tooling) read them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A resource summary map (`Resources::v0_summary`).
pub type Summary = Map<String, Value>;

/// `GET /master/state`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MasterState {
    /// Mesos API level, digits only.
    pub version: String,
    /// meseta's own version.
    pub meseta_version: String,
    /// Build time, unix seconds.
    pub build_time: f64,
    /// Master start, unix seconds.
    pub start_time: f64,
    /// When this master was elected, unix seconds.
    pub elected_time: f64,
    /// Master id (a UUID per start).
    pub id: String,
    /// `master@ip:port`.
    pub pid: String,
    /// Host name.
    pub hostname: String,
    /// Master capabilities.
    pub capabilities: Vec<String>,
    /// The master's fault domain, Mesos `DomainInfo` JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Value>,
    /// Active agents (a double, as Mesos prints it).
    pub activated_slaves: f64,
    /// Inactive agents.
    pub deactivated_slaves: f64,
    /// Unreachable agents.
    pub unreachable_slaves: f64,
    /// Leader pid.
    pub leader: String,
    /// Leader details.
    pub leader_info: LeaderInfo,
    /// Flags, all strings.
    pub flags: Map<String, Value>,
    /// Registered agents.
    pub slaves: Vec<Slave>,
    /// Agents known from the store that have not re-registered yet.
    pub recovered_slaves: Vec<RecoveredSlave>,
    /// Frameworks.
    pub frameworks: Vec<Framework>,
    /// Removed frameworks.
    pub completed_frameworks: Vec<Framework>,
    /// Tasks whose framework is unknown.
    pub orphan_tasks: Vec<Task>,
    /// Always empty (Mesos compatibility).
    pub unregistered_frameworks: Vec<String>,
}

/// `leader_info` of the state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// Master id.
    pub id: String,
    /// `master@ip:port`.
    pub pid: String,
    /// Port.
    pub port: u16,
    /// Host name.
    pub hostname: String,
}

/// An agent (`SlaveWriter`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Slave {
    /// Agent id.
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// The agent's HTTP port.
    pub port: u16,
    /// Attributes (text → string, scalar → number, ranges → string).
    pub attributes: Map<String, Value>,
    /// `slave(1)@ip:port`.
    pub pid: String,
    /// First registration, unix seconds.
    pub registered_time: f64,
    /// Last re-registration, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reregistered_time: Option<f64>,
    /// Total resources.
    pub resources: Summary,
    /// Resources used by tasks.
    pub used_resources: Summary,
    /// Resources in outstanding offers.
    pub offered_resources: Summary,
    /// Reserved resources by role.
    pub reserved_resources: Map<String, Value>,
    /// Unreserved resources.
    pub unreserved_resources: Summary,
    /// Connected and not unreachable.
    pub active: bool,
    /// Deactivated (maintenance).
    pub deactivated: bool,
    /// Agent version.
    pub version: String,
    /// Agent capabilities.
    pub capabilities: Vec<String>,
    /// Fault domain, Mesos `DomainInfo` JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Value>,
    /// `/master/slaves` only: total resources, Mesos `Resource` JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreserved_resources_full: Option<Value>,
    /// `/master/slaves` only: used resources, Mesos `Resource` JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_resources_full: Option<Value>,
    /// `/master/slaves` only: offered resources, Mesos `Resource` JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_resources_full: Option<Value>,
    /// `/master/slaves` only: reserved resources by role, Mesos `Resource` JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_resources_full: Option<Value>,
}

/// An agent known from the store but not re-registered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecoveredSlave {
    /// Agent id.
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// Port.
    pub port: u16,
    /// Attributes.
    pub attributes: Map<String, Value>,
}

/// `GET /master/slaves`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Slaves {
    /// Registered agents, with the `*_full` fields.
    pub slaves: Vec<Slave>,
    /// Agents known from the store but not re-registered.
    pub recovered_slaves: Vec<RecoveredSlave>,
}

/// A framework (`FullFramework`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Framework {
    /// Framework id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Resources of its tasks.
    pub used_resources: Summary,
    /// Resources of its outstanding offers.
    pub offered_resources: Summary,
    /// used + offered.
    pub resources: Summary,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Host name it subscribed from.
    pub hostname: String,
    /// Web UI URL.
    pub webui_url: String,
    /// Receives offers.
    pub active: bool,
    /// Subscribed right now.
    pub connected: bool,
    /// Known from the store, not yet re-subscribed.
    pub recovered: bool,
    /// Unix user.
    pub user: String,
    /// Seconds a disconnected framework keeps its tasks.
    pub failover_timeout: f64,
    /// Always true here.
    pub checkpoint: bool,
    /// Unix seconds.
    pub registered_time: f64,
    /// Unix seconds, 0 while registered.
    pub unregistered_time: f64,
    /// Its role.
    pub role: String,
    /// Non-terminal tasks.
    pub tasks: Vec<Task>,
    /// Tasks on unreachable agents.
    pub unreachable_tasks: Vec<Task>,
    /// Terminal tasks (bounded).
    pub completed_tasks: Vec<Task>,
    /// Outstanding offers.
    pub offers: Vec<OfferSummary>,
    /// Executors running on agents (CUSTOM ones and the DEFAULT executors of task groups; command
    /// tasks have none): `ExecutorInfo` plus `slave_id`, `role`, `type`, v0 `resources`.
    pub executors: Vec<Value>,
}

/// An outstanding offer in v0 shape.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OfferSummary {
    /// Offer id.
    pub id: String,
    /// Framework id.
    pub framework_id: String,
    /// Agent id.
    pub slave_id: String,
    /// Offered resources.
    pub resources: Summary,
}

/// A task (v0 `json(Task)`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Task {
    /// Task id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Framework id.
    pub framework_id: String,
    /// Empty for command tasks.
    pub executor_id: String,
    /// Agent id.
    pub slave_id: String,
    /// Latest state.
    pub state: String,
    /// Resources.
    pub resources: Summary,
    /// Role.
    pub role: String,
    /// Every state it went through.
    pub statuses: Vec<TaskStatusV0>,
    /// User it runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Its latest usage, while it runs on an agent that reports usage (meseta's addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TaskUsageView>,
}

/// The latest usage of a running task as the master shows it (`/master/tasks`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TaskUsageView {
    /// When the agent read the figures (unix seconds).
    pub timestamp: f64,
    /// CPUs in use: cpu time consumed per second between the last two reports.
    pub cpus_used: f64,
    /// CPU time consumed since start, seconds.
    pub cpus_time_secs: f64,
    /// CFS periods throttled.
    pub cpus_nr_throttled: u64,
    /// Time throttled, seconds.
    pub cpus_throttled_time_secs: f64,
    /// Memory charged to the cgroup, bytes.
    pub mem_total_bytes: u64,
    /// Anonymous (resident) memory, bytes.
    pub mem_rss_bytes: u64,
    /// Page cache, bytes.
    pub mem_cache_bytes: u64,
    /// Processes.
    pub processes: u64,
    /// Bytes in the sandbox.
    pub disk_used_bytes: u64,
    /// OOM kills in the task's cgroup.
    pub mem_oom_events: u64,
}

/// One entry of `Task.statuses`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskStatusV0 {
    /// State.
    pub state: String,
    /// Unix seconds.
    pub timestamp: f64,
    /// Human message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Mesos reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Health as this status reported it (tasks with health checks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

/// `GET /master/tasks`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tasks {
    /// Active, unreachable and completed tasks.
    pub tasks: Vec<Task>,
}
