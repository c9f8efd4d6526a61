//! The Mesos v1 executor HTTP API (`POST /api/v1/executor` on the agent), in JSON.
//!
//! A custom executor SUBSCRIBEs and reads a RecordIO stream of [`Event`]s (the framing of
//! [`crate::recordio`]); its other calls (UPDATE, MESSAGE, HEARTBEAT) go on separate requests and
//! are answered `202 Accepted`. Also here: [`ExecutorInfo`], the executor a framework names in a
//! `TaskInfo` or a LAUNCH_GROUP, as the master and the agent read it.
//!
//! ```text
//!   executor ──SUBSCRIBE{unacknowledged_tasks, unacknowledged_updates}──▶ agent
//!            ◀── SUBSCRIBED, LAUNCH, LAUNCH_GROUP, KILL, ACKNOWLEDGED, MESSAGE, SHUTDOWN, ERROR
//!   executor ──UPDATE{status(uuid)} ─▶ agent (checkpointed, forwarded) ─▶ ACKNOWLEDGED back
//!   executor ──MESSAGE{data} ────────▶ agent ─▶ master ─▶ scheduler MESSAGE event
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scheduler::{CommandInfo, DurationInfo, IdValue, TaskStatus};
use meseta_types::Resources;

/// Mesos `ExecutorInfo`: the executor tasks name (`CUSTOM`) or the default executor of task
/// groups (`DEFAULT`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    /// Unique per framework and agent.
    pub executor_id: IdValue,
    /// The framework (the master fills it when missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<IdValue>,
    /// `CUSTOM` (runs `command`) or `DEFAULT` (the agent's own executor for task groups).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What a `CUSTOM` executor runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    /// Container settings (kept opaque; only the MESOS containerizer runs executors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Value>,
    /// Resources of the executor itself, counted once however many tasks it runs.
    #[serde(default)]
    pub resources: Resources,
    /// How long the executor has to exit after SHUTDOWN before it is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_period: Option<DurationInfo>,
    /// Free-form labels (kept opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Value>,
    /// Opaque data for the executor, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The executor's source (a v0 field, kept for the executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl ExecutorInfo {
    /// Whether this is the default executor of task groups (`type: DEFAULT`).
    pub fn is_default(&self) -> bool {
        self.kind.as_deref() == Some("DEFAULT")
    }

    /// The grace period after SHUTDOWN, in seconds (Mesos' default: 5 s).
    pub fn shutdown_grace_secs(&self) -> f64 {
        self.shutdown_grace_period
            .as_ref()
            .map(|d| d.nanoseconds as f64 / 1e9)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS)
    }

    /// Check what the master must refuse (the tasks naming it get `TASK_ERROR`).
    pub fn validate(&self) -> Result<(), String> {
        let id = self.executor_id.as_str();
        if id.trim().is_empty() {
            return Err("executor_id must not be empty".to_string());
        }
        match self.kind.as_deref() {
            None | Some("CUSTOM") => {
                let cmd = self
                    .command
                    .as_ref()
                    .ok_or("a CUSTOM executor needs a command")?;
                if cmd.value.as_deref().unwrap_or("").trim().is_empty() {
                    return Err("the executor's command has no value".to_string());
                }
            }
            Some("DEFAULT") => {}
            Some(other) => return Err(format!("unknown executor type '{other}'")),
        }
        if let Some(c) = &self.container {
            let ty = c.get("type").and_then(Value::as_str).unwrap_or("MESOS");
            if ty != "MESOS" {
                return Err(format!(
                    "executor container type '{ty}' is not supported (only MESOS)"
                ));
            }
        }
        Ok(())
    }

    /// Whether `other` describes the same executor (Mesos refuses a reused id with another
    /// `ExecutorInfo`); `framework_id` is ignored as the master fills it.
    pub fn same_as(&self, other: &ExecutorInfo) -> bool {
        // Every field but `framework_id`, compared in place (the master asks this for every
        // task that names an executor). Destructured so a new field cannot be forgotten here.
        let ExecutorInfo {
            executor_id,
            framework_id: _,
            kind,
            name,
            command,
            container,
            resources,
            shutdown_grace_period,
            labels,
            data,
            source,
        } = self;
        *executor_id == other.executor_id
            && *kind == other.kind
            && *name == other.name
            && *command == other.command
            && *container == other.container
            && *resources == other.resources
            && *shutdown_grace_period == other.shutdown_grace_period
            && *labels == other.labels
            && *data == other.data
            && *source == other.source
    }
}

/// Mesos' default `shutdown_grace_period` of an executor.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: f64 = 5.0;

/// An executor call: `{"type":"UPDATE","executor_id":{..},"framework_id":{..},"update":{..}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The calling executor.
    pub executor_id: IdValue,
    /// Its framework.
    pub framework_id: IdValue,
    /// The call type and its payload.
    #[serde(flatten)]
    pub kind: CallKind,
}

/// The executor call types, each with its lower-case payload field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallKind {
    /// Open (or reopen) the event stream.
    Subscribe {
        /// What the executor still holds unacknowledged.
        #[serde(default)]
        subscribe: Subscribe,
    },
    /// A task status update (must carry a uuid).
    Update {
        /// The update.
        update: UpdatePayload,
    },
    /// A framework message for the scheduler.
    Message {
        /// The message.
        message: MessagePayload,
    },
    /// Liveness; no effect.
    Heartbeat,
}

/// The `subscribe` payload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    /// Tasks the executor was given and has not seen an acknowledgement for (opaque TaskInfos).
    #[serde(default, deserialize_with = "crate::scheduler::null_default")]
    pub unacknowledged_tasks: Vec<Value>,
    /// Updates the executor sent that were not acknowledged.
    #[serde(default, deserialize_with = "crate::scheduler::null_default")]
    pub unacknowledged_updates: Vec<UpdatePayload>,
}

/// The `update` payload: `{"status": TaskStatus}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdatePayload {
    /// The status; `uuid` is required.
    pub status: TaskStatus,
}

/// The `message` payload: `{"data": base64}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagePayload {
    /// The data, base64.
    #[serde(default)]
    pub data: String,
}

/// An event on the executor's stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Event {
    /// The subscription is accepted.
    Subscribed {
        /// Who the executor is and where it runs (boxed: sent once per subscription).
        subscribed: Box<Subscribed>,
    },
    /// Run a task.
    Launch {
        /// The task.
        launch: Launch,
    },
    /// Run a group of tasks together.
    LaunchGroup {
        /// The group.
        launch_group: LaunchGroupEvent,
    },
    /// Kill a task.
    Kill {
        /// Which one, and how.
        kill: KillEvent,
    },
    /// The agent checkpointed an update: the executor may forget it.
    Acknowledged {
        /// Which update.
        acknowledged: Acknowledged,
    },
    /// A framework message from the scheduler.
    Message {
        /// The data.
        message: MessagePayload,
    },
    /// Exit within the shutdown grace period.
    Shutdown,
    /// Something the executor did was refused.
    Error {
        /// What.
        error: ErrorEvent,
    },
    /// Liveness.
    Heartbeat,
}

/// The `subscribed` payload. pymesos asserts on `executor_info.executor_id` and
/// `framework_info.id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The executor's `ExecutorInfo`.
    pub executor_info: ExecutorInfo,
    /// The framework's `FrameworkInfo` (with `id`).
    pub framework_info: Value,
    /// The agent's `AgentInfo`.
    pub agent_info: Value,
    /// The executor's container.
    pub container_id: IdValue,
}

/// The `launch` payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// The `TaskInfo`.
    pub task: Value,
}

/// The `launch_group` payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchGroupEvent {
    /// `{"tasks":[TaskInfo,..]}`.
    pub task_group: Value,
}

/// The `kill` payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KillEvent {
    /// The task.
    pub task_id: IdValue,
    /// The kill policy, when the scheduler gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<Value>,
}

/// The `acknowledged` payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Acknowledged {
    /// The task of the update.
    pub task_id: IdValue,
    /// The update's uuid, base64 as the executor sent it.
    pub uuid: String,
}

/// The `error` payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// What went wrong.
    pub message: String,
}

/// Mesos' stout duration text (`5secs`, `15mins`, `250ms`) of `secs`, as executors parse it.
pub fn stout_duration(secs: f64) -> String {
    if secs >= 60.0 && (secs / 60.0).fract() == 0.0 {
        format!("{}mins", secs / 60.0)
    } else if secs.fract() == 0.0 {
        format!("{secs}secs")
    } else {
        format!("{}ms", (secs * 1000.0).round())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pymesos_calls_parse() {
        let c: Call = serde_json::from_value(json!({"type": "SUBSCRIBE",
            "framework_id": {"value": "f"}, "executor_id": {"value": "e"},
            "subscribe": {"unacknowledged_tasks": [], "unacknowledged_updates": []}}))
        .expect("subscribe");
        assert!(matches!(c.kind, CallKind::Subscribe { .. }));
        let c: Call = serde_json::from_value(json!({"type": "UPDATE",
            "framework_id": {"value": "f"}, "executor_id": {"value": "e"},
            "update": {"status": {"task_id": {"value": "t"}, "state": "TASK_RUNNING",
                "timestamp": 1, "uuid": "AAAAAAAAAAAAAAAAAAAAAA==", "source": "SOURCE_EXECUTOR"}}}))
        .expect("update");
        let CallKind::Update { update } = c.kind else {
            panic!("not an update")
        };
        assert_eq!(
            update.status.uuid.as_deref(),
            Some("AAAAAAAAAAAAAAAAAAAAAA==")
        );
        let c: Call = serde_json::from_value(json!({"type": "MESSAGE",
            "framework_id": {"value": "f"}, "executor_id": {"value": "e"},
            "message": {"data": "aGk="}}))
        .expect("message");
        assert!(matches!(c.kind, CallKind::Message { message } if message.data == "aGk="));
        assert!(serde_json::from_value::<Call>(json!({"type": "UPDATE"})).is_err());
        assert!(serde_json::from_value::<Call>(json!({"type": "NOPE",
            "framework_id": {"value": "f"}, "executor_id": {"value": "e"}}))
        .is_err());
    }

    #[test]
    fn events_have_mesos_shapes() {
        let v = serde_json::to_value(Event::Acknowledged {
            acknowledged: Acknowledged {
                task_id: IdValue::new("t"),
                uuid: "u".into(),
            },
        })
        .expect("json");
        assert_eq!(
            v,
            json!({"type": "ACKNOWLEDGED", "acknowledged": {"task_id": {"value": "t"}, "uuid": "u"}})
        );
        let v = serde_json::to_value(Event::Shutdown).expect("json");
        assert_eq!(v, json!({"type": "SHUTDOWN"}));
    }

    #[test]
    fn executor_info_validation_and_identity() {
        let e: ExecutorInfo = serde_json::from_value(json!({"executor_id": {"value": "e1"},
            "command": {"value": "python3 exec.py"}, "resources": []}))
        .expect("info");
        e.validate().expect("valid");
        assert_eq!(e.shutdown_grace_secs(), 5.0);
        let mut other = e.clone();
        other.framework_id = Some(IdValue::new("f"));
        assert!(e.same_as(&other));
        other.name = Some("x".into());
        assert!(!e.same_as(&other));
        let bad: ExecutorInfo =
            serde_json::from_value(json!({"executor_id": {"value": "e1"}})).expect("info");
        assert!(bad.validate().is_err());
        let dflt: ExecutorInfo =
            serde_json::from_value(json!({"executor_id": {"value": "e"}, "type": "DEFAULT"}))
                .expect("info");
        assert!(dflt.validate().is_ok() && dflt.is_default());
    }

    #[test]
    fn stout_durations() {
        assert_eq!(stout_duration(5.0), "5secs");
        assert_eq!(stout_duration(900.0), "15mins");
        assert_eq!(stout_duration(0.25), "250ms");
    }
}
