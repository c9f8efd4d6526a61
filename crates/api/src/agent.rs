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
use std::sync::Arc;

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
    /// A framework message from an executor, for its scheduler (not checkpointed, as in Mesos).
    ExecutorMessage {
        /// The executor's framework.
        framework_id: FrameworkId,
        /// The executor.
        executor_id: String,
        /// The data, base64.
        data: String,
    },
    /// A custom executor ended (its tasks' updates were emitted before): the master releases
    /// its resources and tells its framework (`FAILURE` with the wait status).
    ExecutorExited {
        /// The executor's framework.
        framework_id: FrameworkId,
        /// The executor.
        executor_id: String,
        /// Its wait status (`exit code << 8`, or the signal number).
        status: i32,
    },
}

/// Messages from the master to the agent.
// `LaunchTask` is boxed: a channel's blocks are sized by the largest variant, and the master keeps
// one channel per agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MasterMessage {
    /// Registration accepted; the agent persists `agent_id`.
    Registered {
        /// The id the agent keeps from now on.
        agent_id: AgentId,
        /// How often the master expects a heartbeat.
        heartbeat_interval_secs: f64,
        /// The bearer key the agent's HTTP endpoints (sandbox logs, state, statistics) require
        /// from now on; the master presents it when it proxies them. `None`: they stay open
        /// (a master without `--acl`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http_key: Option<String>,
    },
    /// Registration refused; the agent logs `message` and exits non-zero.
    Rejected {
        /// Why.
        message: String,
    },
    /// Start a task.
    LaunchTask(Box<TaskSpec>),
    /// Start the tasks of a LAUNCH_GROUP together (all or none), in the agent's default
    /// executor: one shared sandbox, one parent cgroup, one failing kills the others.
    LaunchGroup {
        /// The group's tasks, each with the group's executor and ids.
        tasks: Vec<TaskSpec>,
    },
    /// Kill a task (SIGTERM, then SIGKILL after the grace period).
    KillTask {
        /// Task to kill.
        task_id: TaskId,
        /// Grace period between SIGTERM and SIGKILL; the task's own when absent.
        grace_secs: Option<f64>,
    },
    /// A persistent volume was destroyed: the agent deletes its directory.
    DestroyVolume {
        /// The volume's role.
        role: String,
        /// The volume's `persistence.id`.
        persistence_id: String,
    },
    /// A scheduler's framework message for one of its executors on this agent.
    FrameworkMessage {
        /// The framework.
        framework_id: FrameworkId,
        /// The executor.
        executor_id: String,
        /// The data, base64.
        data: String,
    },
    /// Shut an executor down (SHUTDOWN event, then a kill after its grace period).
    ShutdownExecutor {
        /// The framework.
        framework_id: FrameworkId,
        /// The executor.
        executor_id: String,
    },
    /// The framework was torn down: shut down all of its executors on this agent.
    ShutdownFramework {
        /// The framework.
        framework_id: FrameworkId,
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
    /// The agent's fault domain (`--domain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<crate::domain::Domain>,
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
    /// Health check the agent runs once the task is RUNNING.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// URIs the agent fetches into the sandbox before starting the task.
    #[serde(default)]
    pub fetch: Vec<FetchUri>,
    /// Persistent volumes (of `role`) the agent links into the sandbox before starting the task.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// The task's container: `type: DOCKER` runs it through the Docker engine, never as a
    /// plain process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::container::ContainerInfo>,
    /// The custom executor that runs the task; `command` is then unused and the task's state
    /// comes from the executor's updates. Shared: the master builds it once per executor and
    /// agent, and every task of that executor holds the same copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Arc<ExecutorSpec>>,
    /// The `TaskInfo` as the framework wrote it (with `agent_id`), delivered to the executor in
    /// its LAUNCH event ([`TaskSpec::executor_task_info`]). The master leaves its `executor`
    /// out: it travels once, in [`TaskSpec::executor`]. Typed, so neither side builds a JSON
    /// tree of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_info: Option<Box<crate::scheduler::TaskInfo>>,
    /// The tasks of its LAUNCH_GROUP (this one among them), launched together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group: Vec<TaskId>,
    /// Secrets the task receives, by reference; only the launch message the master sends the
    /// agent carries their values, which the agent keeps out of everything it reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretUse>,
}

impl TaskSpec {
    /// The `TaskInfo` a custom executor receives in LAUNCH: `task_info` with the executor's
    /// `ExecutorInfo` (and `framework_id`) put back. `None` for a task without one.
    pub fn executor_task_info(&self) -> Option<crate::scheduler::TaskInfo> {
        let mut t = self.task_info.as_deref()?.clone();
        if let Some(e) = &self.executor {
            t.executor = Some(e.info.clone());
        }
        Some(t)
    }

    /// The spec without secret values (references kept): what is written to `task.json`,
    /// reported on re-registration and shown.
    pub fn without_secret_values(mut self) -> TaskSpec {
        for s in &mut self.secrets {
            s.value = None;
        }
        self
    }
}

/// One secret a task uses: the store path it names and where it goes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecretUse {
    /// The secret's path in the master's store.
    pub reference: String,
    /// Where the value goes.
    pub target: SecretTarget,
    /// The value: set only in the master's launch message to the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<SecretValue>,
}

/// Where a secret is delivered.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SecretTarget {
    /// An environment variable of this name.
    Env(String),
    /// A file at this path relative to the sandbox (mode 0400, owned by the task user).
    File(String),
}

/// A secret's value: its `Debug` never shows it (log lines print specs).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretValue(pub String);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// A custom executor as the master hands it to the agent with each task that names it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExecutorSpec {
    /// The framework's `ExecutorInfo` (with `framework_id`), delivered in SUBSCRIBED.
    pub info: crate::executor::ExecutorInfo,
    /// The framework's `FrameworkInfo` (with `id`), delivered in SUBSCRIBED.
    pub framework_info: crate::scheduler::FrameworkInfo,
    /// What to run (`info.command`, typed).
    pub command: Command,
    /// Extra environment from the executor's command.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Unix user the executor runs as.
    #[serde(default)]
    pub user: Option<String>,
    /// URIs fetched into the executor's sandbox before it starts.
    #[serde(default)]
    pub fetch: Vec<FetchUri>,
    /// Whether the framework checkpoints (`MESOS_CHECKPOINT`).
    #[serde(default)]
    pub checkpoint: bool,
}

impl ExecutorSpec {
    /// The executor id.
    pub fn id(&self) -> &str {
        self.info.executor_id.as_str()
    }
}

/// A persistent volume used by a task: `<agent work dir>/volumes/roles/<role>/<persistence_id>`,
/// linked at `<sandbox>/<container_path>`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VolumeMount {
    /// The volume's `persistence.id`.
    pub persistence_id: String,
    /// Where it appears, relative to the sandbox.
    pub container_path: String,
    /// Mounted read-only (`mode: RO`).
    #[serde(default)]
    pub read_only: bool,
}

impl VolumeMount {
    /// The volumes held by `resources` (their `disk.persistence` entries).
    pub fn of(resources: &Resources) -> Vec<VolumeMount> {
        resources
            .volumes()
            .filter_map(|r| r.disk.as_ref())
            .map(|d| VolumeMount {
                persistence_id: d.persistence_id.clone(),
                container_path: d.container_path.clone(),
                read_only: d.read_only,
            })
            .collect()
    }
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
    /// Health of the task, on updates born of a health check (and on a health-check kill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// The executor that sent it (custom executors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<String>,
    /// Opaque data of the executor's status, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
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
    /// When the figures were read (unix seconds; 0 from agents that do not say).
    #[serde(default)]
    pub timestamp: f64,
    /// CPU time in user mode, seconds.
    #[serde(default)]
    pub cpu_user_secs: f64,
    /// CPU time in kernel mode, seconds.
    #[serde(default)]
    pub cpu_system_secs: f64,
    /// CFS periods in which the task was throttled.
    #[serde(default)]
    pub cpu_nr_throttled: u64,
    /// Time throttled, seconds.
    #[serde(default)]
    pub cpu_throttled_secs: f64,
    /// Anonymous (resident) memory, bytes.
    #[serde(default)]
    pub mem_rss_bytes: u64,
    /// Page cache, bytes.
    #[serde(default)]
    pub mem_cache_bytes: u64,
    /// Processes in the task's cgroup.
    #[serde(default)]
    pub pids: u64,
    /// OOM kills in the task's cgroup.
    #[serde(default)]
    pub oom_events: u64,
    /// Bytes in the task's sandbox.
    #[serde(default)]
    pub disk_bytes: u64,
}

/// One entry of the agent's `GET /monitor/statistics` (Mesos' shape: one per executor; a meseta
/// task is its own executor).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MonitorEntry {
    /// The task's id (its executor id).
    pub executor_id: TaskId,
    /// The task's name.
    pub executor_name: String,
    /// Its framework.
    pub framework_id: FrameworkId,
    /// Mesos' `source` (the task's name).
    pub source: String,
    /// The figures.
    pub statistics: ResourceStatistics,
}

/// Mesos `ResourceStatistics`: the fields the agent can fill from the task's cgroup and sandbox.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ResourceStatistics {
    /// When the figures were read (unix seconds).
    pub timestamp: f64,
    /// Processes in the task's cgroup.
    pub processes: u64,
    /// CPU time in user mode, seconds.
    pub cpus_user_time_secs: f64,
    /// CPU time in kernel mode, seconds.
    pub cpus_system_time_secs: f64,
    /// CPUs allocated to the task.
    pub cpus_limit: f64,
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
    /// Memory allocated to the task, bytes.
    pub mem_limit_bytes: u64,
    /// Disk allocated to the task, bytes.
    pub disk_limit_bytes: u64,
    /// Bytes in the task's sandbox.
    pub disk_used_bytes: u64,
    /// OOM kills in the task's cgroup (not in Mesos; meseta's addition).
    pub mem_oom_events: u64,
}

/// Mesos' reason on updates born of a health check, and on the kill of an unhealthy task.
pub const REASON_HEALTH_CHECK: &str = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED";

/// The kind of a [`HealthCheck`] (Mesos `HealthCheck.Type`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthCheckKind {
    /// `GET scheme://127.0.0.1:port/path`.
    Http,
    /// A TCP connect to `127.0.0.1:port`.
    Tcp,
    /// A command run in the task's sandbox with the task's environment.
    Command,
}

/// Mesos `HealthCheck.HTTPCheckInfo`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HttpCheck {
    /// `http` or `https` (certificates are not verified).
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Port on the loopback address.
    pub port: u32,
    /// Request path (`/` when absent).
    #[serde(default = "default_path")]
    pub path: String,
    /// Statuses counted as healthy; empty means 200..=399.
    #[serde(default)]
    pub statuses: Vec<u32>,
}

/// Mesos `HealthCheck.TCPCheckInfo`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TcpCheck {
    /// Port on the loopback address.
    pub port: u32,
}

/// The command of a `COMMAND` check (the fields of Mesos `CommandInfo` that matter here).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HealthCommand {
    /// Shell command (or program when `shell` is false).
    #[serde(default)]
    pub value: String,
    /// `true` (default): `/bin/sh -c value`.
    #[serde(default = "default_true")]
    pub shell: bool,
    /// argv when `shell` is false.
    #[serde(default)]
    pub arguments: Vec<String>,
}

/// A typed mirror of Mesos v1 `HealthCheck`; defaults are Mesos'.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HealthCheck {
    /// What kind of check.
    #[serde(rename = "type")]
    pub kind: HealthCheckKind,
    /// For `HTTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// For `TCP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    /// For `COMMAND`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<HealthCommand>,
    /// Seconds after the task started before the first check.
    #[serde(default = "default_delay")]
    pub delay_seconds: f64,
    /// Seconds between checks.
    #[serde(default = "default_interval")]
    pub interval_seconds: f64,
    /// Seconds a check may take before it counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Failed checks in a row that get the task killed; 0 never kills.
    #[serde(default = "default_failures")]
    pub consecutive_failures: u32,
    /// Seconds after the start during which failures are ignored (until the first success).
    #[serde(default = "default_grace")]
    pub grace_period_seconds: f64,
}

fn default_scheme() -> String {
    "http".to_string()
}
fn default_path() -> String {
    "/".to_string()
}
fn default_true() -> bool {
    true
}
fn default_delay() -> f64 {
    15.0
}
fn default_interval() -> f64 {
    10.0
}
fn default_timeout() -> f64 {
    20.0
}
fn default_failures() -> u32 {
    3
}
fn default_grace() -> f64 {
    10.0
}

impl HealthCheck {
    /// Parse and validate a Mesos v1 `HealthCheck` JSON object. A missing `type` is inferred from the
    /// one of `http`/`tcp`/`command` that is present (as pre-1.2 Mesos did for `command`).
    pub fn from_mesos_json(v: &serde_json::Value) -> Result<HealthCheck, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "health_check must be a JSON object".to_string())?;
        let mut obj = obj.clone();
        if !obj.contains_key("type") {
            let kind = ["http", "tcp", "command"]
                .into_iter()
                .find(|k| obj.get(*k).is_some_and(|x| !x.is_null()))
                .ok_or_else(|| "health_check has no type".to_string())?;
            obj.insert(
                "type".to_string(),
                serde_json::Value::String(kind.to_ascii_uppercase()),
            );
        }
        let hc: HealthCheck = serde_json::from_value(serde_json::Value::Object(obj))
            .map_err(|e| format!("invalid health_check: {e}"))?;
        hc.validate()?;
        Ok(hc)
    }

    /// Check the kind-specific part and the timings.
    pub fn validate(&self) -> Result<(), String> {
        let port_ok = |p: u32| (1..=65535).contains(&p);
        match self.kind {
            HealthCheckKind::Http => {
                let http = self
                    .http
                    .as_ref()
                    .ok_or("HTTP health check without 'http'")?;
                if !port_ok(http.port) {
                    return Err(format!(
                        "HTTP health check port {} is not in 1..=65535",
                        http.port
                    ));
                }
                if http.scheme != "http" && http.scheme != "https" {
                    return Err(format!(
                        "HTTP health check scheme {:?} is not http or https",
                        http.scheme
                    ));
                }
                if http
                    .path
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(format!("HTTP health check path {:?} is invalid", http.path));
                }
            }
            HealthCheckKind::Tcp => {
                let tcp = self.tcp.as_ref().ok_or("TCP health check without 'tcp'")?;
                if !port_ok(tcp.port) {
                    return Err(format!(
                        "TCP health check port {} is not in 1..=65535",
                        tcp.port
                    ));
                }
            }
            HealthCheckKind::Command => {
                let cmd = self
                    .command
                    .as_ref()
                    .ok_or("COMMAND health check without 'command'")?;
                if cmd.value.trim().is_empty() {
                    return Err("COMMAND health check has an empty command".to_string());
                }
            }
        }
        for (name, v) in [
            ("delay_seconds", self.delay_seconds),
            ("grace_period_seconds", self.grace_period_seconds),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("health_check {name} must be a number >= 0"));
            }
        }
        for (name, v) in [
            ("interval_seconds", self.interval_seconds),
            ("timeout_seconds", self.timeout_seconds),
        ] {
            if !v.is_finite() || v <= 0.0 || v > 86_400.0 {
                return Err(format!("health_check {name} must be in (0, 86400]"));
            }
        }
        Ok(())
    }
}

/// A URI fetched into the sandbox before launch (Mesos `CommandInfo.URI`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FetchUri {
    /// `http(s)://…`, `file://…` or an absolute path.
    pub value: String,
    /// Extract archives (`.tar`, `.tar.gz`, `.tgz`, `.gz`) into the sandbox.
    #[serde(default = "default_true")]
    pub extract: bool,
    /// Make the file executable (it is then not extracted).
    #[serde(default)]
    pub executable: bool,
    /// Keep a copy in the agent's fetch cache and reuse it.
    #[serde(default)]
    pub cache: bool,
    /// Save under this sandbox-relative name instead of the URI's basename.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
}

impl From<crate::scheduler::CommandUri> for FetchUri {
    fn from(u: crate::scheduler::CommandUri) -> FetchUri {
        FetchUri {
            value: u.value,
            extract: u.extract.unwrap_or(true),
            executable: u.executable.unwrap_or(false),
            cache: u.cache.unwrap_or(false),
            output_file: u.output_file.filter(|f| !f.is_empty()),
        }
    }
}

/// The header of the WebSocket upgrade in which an agent presents its join token
/// (`--join-token-file`).
pub const JOIN_TOKEN_HEADER: &str = "x-meseta-join-token";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn http_check_with_mesos_defaults() {
        let hc = HealthCheck::from_mesos_json(&json!({
            "type": "HTTP", "http": {"port": 8080, "path": "/health"}
        }))
        .expect("valid");
        assert_eq!(hc.kind, HealthCheckKind::Http);
        let http = hc.http.expect("http");
        assert_eq!(
            (http.scheme.as_str(), http.port, http.path.as_str()),
            ("http", 8080, "/health")
        );
        assert!(http.statuses.is_empty());
        assert_eq!(hc.delay_seconds, 15.0);
        assert_eq!(hc.interval_seconds, 10.0);
        assert_eq!(hc.timeout_seconds, 20.0);
        assert_eq!(hc.consecutive_failures, 3);
        assert_eq!(hc.grace_period_seconds, 10.0);
    }

    #[test]
    fn tcp_and_command_checks_and_inferred_type() {
        let hc = HealthCheck::from_mesos_json(&json!({
            "type": "TCP", "tcp": {"port": 31001}, "interval_seconds": 1, "consecutive_failures": 0
        }))
        .expect("tcp");
        assert_eq!(hc.tcp.expect("tcp").port, 31001);
        assert_eq!(hc.interval_seconds, 1.0);
        assert_eq!(hc.consecutive_failures, 0);
        let hc =
            HealthCheck::from_mesos_json(&json!({"command": {"value": "true"}})).expect("command");
        assert_eq!(hc.kind, HealthCheckKind::Command);
        assert!(hc.command.expect("cmd").shell);
    }

    #[test]
    fn invalid_checks_are_rejected_with_a_reason() {
        let bad = [
            (json!({"type": "HTTP", "http": {"port": 0}}), "port 0"),
            (
                json!({"type": "HTTP", "http": {"port": 70000}}),
                "port 70000",
            ),
            (json!({"type": "HTTP"}), "without 'http'"),
            (
                json!({"type": "HTTP", "http": {"port": 80, "scheme": "ftp"}}),
                "scheme",
            ),
            (json!({"type": "TCP", "tcp": {}}), "invalid health_check"),
            (
                json!({"type": "COMMAND", "command": {"value": "  "}}),
                "empty command",
            ),
            (json!({"type": "UDP"}), "invalid health_check"),
            (
                json!({"type": "TCP", "tcp": {"port": 1}, "interval_seconds": 0}),
                "interval_seconds",
            ),
            (
                json!({"type": "TCP", "tcp": {"port": 1}, "delay_seconds": -1}),
                "delay_seconds",
            ),
            (json!({}), "no type"),
            (json!("HTTP"), "object"),
        ];
        for (v, why) in bad {
            let err = HealthCheck::from_mesos_json(&v).expect_err("invalid");
            assert!(err.contains(why), "{v}: {err}");
        }
    }

    #[test]
    fn old_specs_and_updates_still_parse() {
        let spec = TaskSpec {
            task_id: TaskId::new("t"),
            framework_id: FrameworkId::new("f"),
            name: "n".into(),
            resources: Resources::parse("cpus:1").expect("res"),
            command: Command {
                shell: true,
                value: "true".into(),
                arguments: vec![],
            },
            env: vec![],
            user: None,
            kill_grace_secs: None,
            role: "*".into(),
            health_check: None,
            fetch: vec![],
            volumes: vec![],
            container: None,
            executor: None,
            task_info: None,
            group: vec![],
            secrets: vec![],
        };
        let mut old = serde_json::to_value(&spec).expect("json");
        let obj = old.as_object_mut().expect("object");
        obj.remove("health_check");
        obj.remove("fetch");
        obj.remove("volumes");
        let spec: TaskSpec = serde_json::from_value(old).expect("old spec");
        assert_eq!(spec.health_check, None);
        assert!(spec.fetch.is_empty());
        assert!(spec.volumes.is_empty());
        let up = json!({"uuid": "u", "task_id": "t", "framework_id": "f",
            "state": "TASK_RUNNING", "timestamp": 1.0});
        let up: StatusUpdate = serde_json::from_value(up).expect("old update");
        assert_eq!(up.healthy, None);
        assert!(!serde_json::to_string(&up)
            .expect("json")
            .contains("healthy"));
    }

    #[test]
    fn executor_launch_round_trips_and_keeps_the_json_the_executor_sees() {
        let info: crate::executor::ExecutorInfo = serde_json::from_value(json!({
            "executor_id": {"value": "e1"}, "framework_id": {"value": "fw-1"},
            "command": {"value": "run-executor"}, "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}]}))
        .expect("info");
        let framework_info: crate::scheduler::FrameworkInfo = serde_json::from_value(json!({
            "user": "u", "name": "fw", "id": {"value": "fw-1"},
            "capabilities": [{"type": "PARTITION_AWARE"}]}))
        .expect("framework");
        let task_info: crate::scheduler::TaskInfo = serde_json::from_value(json!({
            "name": "t", "task_id": {"value": "t"}, "agent_id": {"value": "a1"},
            "data": "aGk="}))
        .expect("task");
        let spec = TaskSpec {
            task_id: TaskId::new("t"),
            framework_id: FrameworkId::new("fw-1"),
            name: "t".into(),
            resources: Resources::parse("cpus:0.5").expect("res"),
            command: Command {
                shell: true,
                value: String::new(),
                arguments: vec![],
            },
            env: vec![],
            user: None,
            kill_grace_secs: None,
            role: "*".into(),
            health_check: None,
            fetch: vec![],
            volumes: vec![],
            container: None,
            executor: Some(Arc::new(ExecutorSpec {
                info: info.clone(),
                framework_info: framework_info.clone(),
                command: Command {
                    shell: true,
                    value: "run-executor".into(),
                    arguments: vec![],
                },
                env: vec![],
                user: Some("u".into()),
                fetch: vec![],
                checkpoint: false,
            })),
            task_info: Some(Box::new(task_info.clone())),
            group: vec![],
            secrets: vec![],
        };
        // Through the agent socket's framing (an internally tagged message, as text).
        let text = serde_json::to_string(&MasterMessage::LaunchTask(Box::new(spec.clone())))
            .expect("json");
        let back: MasterMessage = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, MasterMessage::LaunchTask(Box::new(spec.clone())));
        // The executor's TaskInfo and FrameworkInfo are the JSON the framework's types give.
        let v: serde_json::Value = serde_json::from_str(&text).expect("value");
        assert_eq!(
            v["task_info"],
            serde_json::to_value(&task_info).expect("json")
        );
        assert!(
            v["task_info"].get("executor").is_none(),
            "sent once, in `executor`"
        );
        // The executor's LAUNCH gets the task with its ExecutorInfo back.
        let launched = spec.executor_task_info().expect("task info");
        assert_eq!(launched.executor, Some(info));
        assert_eq!(launched.data.as_deref(), Some("aGk="));
        assert_eq!(
            v["executor"]["framework_info"],
            serde_json::to_value(&framework_info).expect("json")
        );
        // A spec checkpointed with the former untyped fields (a JSON tree each) still loads.
        let mut old = serde_json::to_value(&spec).expect("json");
        old["task_info"] = json!({"name": "t", "task_id": {"value": "t"}, "data": "aGk="});
        old["executor"]["framework_info"] =
            json!({"user": "", "name": "", "id": {"value": "fw-1"}});
        let old: TaskSpec = serde_json::from_value(old).expect("old spec");
        assert_eq!(
            old.task_info.as_ref().and_then(|t| t.data.as_deref()),
            Some("aGk=")
        );
        let exec = old.executor.as_ref().expect("executor");
        assert_eq!(
            exec.framework_info.id,
            Some(crate::scheduler::IdValue::new("fw-1"))
        );
    }

    #[test]
    fn command_uri_becomes_fetch_uri_with_mesos_defaults() {
        let u: crate::scheduler::CommandUri =
            serde_json::from_value(json!({"value": "https://x/app.tgz"})).expect("uri");
        let f = FetchUri::from(u);
        assert!(f.extract && !f.executable && !f.cache);
        assert_eq!(f.output_file, None);
        let f: FetchUri =
            serde_json::from_value(json!({"value": "/a", "executable": true})).expect("fetch");
        assert!(f.extract && f.executable);
    }
}
