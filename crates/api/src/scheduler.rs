//! The Mesos v1 scheduler HTTP API (`POST /api/v1/scheduler`): calls sent by frameworks and events
//! streamed back by the master, in Mesos' JSON mapping.
//!
//! The master deserializes [`Call`]s and serializes [`Event`]s; the typed client
//! ([`crate::client`]) and the CLI do the opposite. Shapes follow
//! `shared/reference/mesos-api.md` §1: every call and event is `{"type":"X","x":{..}}` with the
//! payload under the lower-cased type name, ids are `{"value":".."}` objects, unknown fields are
//! ignored and `null` means unset.

use meseta_types::{AgentId, FrameworkId, OfferId, Resources, TaskId};
use serde::{Deserialize, Deserializer, Serialize};

/// Deserializes `null` (or a missing field, with `#[serde(default)]`) as `T::default()`.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A protobuf id message: `{"value":"..."}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdValue {
    /// The id itself.
    pub value: String,
}

impl IdValue {
    /// Wraps `value` as an id object.
    pub fn new(value: impl Into<String>) -> IdValue {
        IdValue {
            value: value.into(),
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

impl std::fmt::Display for IdValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.value)
    }
}

impl From<String> for IdValue {
    fn from(value: String) -> Self {
        IdValue { value }
    }
}

impl From<&str> for IdValue {
    fn from(value: &str) -> Self {
        IdValue::new(value)
    }
}

macro_rules! id_conversions {
    ($($id:ty),*) => {$(
        impl From<$id> for IdValue {
            fn from(id: $id) -> Self {
                IdValue { value: id.as_str().to_owned() }
            }
        }
        impl From<&$id> for IdValue {
            fn from(id: &$id) -> Self {
                IdValue { value: id.as_str().to_owned() }
            }
        }
        impl From<IdValue> for $id {
            fn from(id: IdValue) -> Self {
                <$id>::from(id.value)
            }
        }
        impl From<&IdValue> for $id {
            fn from(id: &IdValue) -> Self {
                <$id>::from(id.value.clone())
            }
        }
    )*};
}

id_conversions!(AgentId, FrameworkId, TaskId, OfferId);

/// One `{"key","value"}` label.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// The label key.
    pub key: String,
    /// The label value, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The `Labels` message: `{"labels":[..]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    /// The labels, in order.
    #[serde(default, deserialize_with = "null_default")]
    pub labels: Vec<Label>,
}

/// A framework capability: `{"type":"GPU_RESOURCES"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    /// The capability name, e.g. `PARTITION_AWARE`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `FrameworkInfo` as sent in SUBSCRIBE.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    /// The Unix user tasks run as by default.
    pub user: String,
    /// The framework's display name.
    pub name: String,
    /// Set when re-subscribing with an existing framework id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<IdValue>,
    /// Seconds the master keeps the framework's tasks after it disconnects (Mesos default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_timeout: Option<f64>,
    /// Whether agents checkpoint the framework's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<bool>,
    /// The single role (pre-MULTI_ROLE frameworks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The roles of a MULTI_ROLE framework.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// The scheduler's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The authentication principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The framework's web UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webui_url: Option<String>,
    /// Declared capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<Capability>>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

/// The `subscribe` payload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    /// The framework subscribing.
    pub framework_info: FrameworkInfo,
    /// Roles to start suppressed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_roles: Option<Vec<String>>,
}

/// Offer filters: `{"refuse_seconds":5.0}` (5 s when absent).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    /// How long declined resources are not re-offered to this framework.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_seconds: Option<f64>,
}

/// A protobuf `DurationInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationInfo {
    /// The duration in nanoseconds.
    pub nanoseconds: i64,
}

/// A task's kill policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KillPolicy {
    /// Time between SIGTERM and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<DurationInfo>,
}

/// One environment variable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVariable {
    /// Variable name.
    pub name: String,
    /// Variable value.
    #[serde(default, deserialize_with = "null_default")]
    pub value: String,
}

/// The `Environment` message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// The variables, in order.
    #[serde(default, deserialize_with = "null_default")]
    pub variables: Vec<EnvVariable>,
}

/// A URI to fetch into the sandbox before launch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandUri {
    /// The URI.
    pub value: String,
    /// Mark the fetched file executable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<bool>,
    /// Extract archives (Mesos default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<bool>,
    /// Use the fetcher cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// Name to save the file as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
}

fn default_true() -> bool {
    true
}

/// An environment variable whose value is a secret of the master's store, by reference: on the
/// wire a Mesos `Environment.Variable` of `type: SECRET` with
/// `secret: {type: REFERENCE, reference: {name}}`. The master resolves it only into the launch
/// message it sends the agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretEnv {
    /// Variable name.
    pub name: String,
    /// The secret's path (`/team-a/db/password`); empty when the variable named no reference
    /// (a `VALUE` secret, which meseta refuses).
    pub reference: String,
}

/// The `CommandInfo` of a command task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "wire::CommandInfoWire", into = "wire::CommandInfoWire")]
pub struct CommandInfo {
    /// Run `value` through `/bin/sh -c` (default true); otherwise exec `value` with `arguments`.
    #[serde(default = "default_true")]
    pub shell: bool,
    /// The shell command, or the program to exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// argv when `shell` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Vec<String>>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// The user to run as (overrides the framework's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// URIs to fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<CommandUri>>,
    /// Variables whose values are secrets (in `environment.variables` on the wire).
    #[serde(skip)]
    pub secret_env: Vec<SecretEnv>,
}

impl Default for CommandInfo {
    fn default() -> Self {
        CommandInfo {
            shell: true,
            value: None,
            arguments: None,
            environment: None,
            user: None,
            uris: None,
            secret_env: Vec::new(),
        }
    }
}

/// `CommandInfo` as Mesos spells it: secret variables among the plain ones.
mod wire {
    use super::{null_default, CommandInfo, CommandUri, EnvVariable, Environment, SecretEnv};
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub(super) struct CommandInfoWire {
        #[serde(default = "super::default_true")]
        shell: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arguments: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        environment: Option<EnvironmentWire>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uris: Option<Vec<CommandUri>>,
    }

    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct EnvironmentWire {
        #[serde(default, deserialize_with = "null_default")]
        variables: Vec<VariableWire>,
    }

    #[derive(Clone, Debug, Default, Serialize, Deserialize)]
    struct VariableWire {
        name: String,
        #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        #[serde(default, deserialize_with = "null_default")]
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<serde_json::Value>,
    }

    impl From<CommandInfoWire> for CommandInfo {
        fn from(w: CommandInfoWire) -> CommandInfo {
            let mut plain = Vec::new();
            let mut secret_env = Vec::new();
            let had_env = w.environment.is_some();
            for v in w.environment.map(|e| e.variables).unwrap_or_default() {
                if v.kind.as_deref() == Some("SECRET") || v.secret.is_some() {
                    let reference = v
                        .secret
                        .as_ref()
                        .filter(|s| s.get("type").and_then(|t| t.as_str()) != Some("VALUE"))
                        .and_then(|s| s.pointer("/reference/name"))
                        .and_then(|n| n.as_str())
                        .unwrap_or_default()
                        .to_string();
                    secret_env.push(SecretEnv {
                        name: v.name,
                        reference,
                    });
                } else {
                    plain.push(EnvVariable {
                        name: v.name,
                        value: v.value,
                    });
                }
            }
            CommandInfo {
                shell: w.shell,
                value: w.value,
                arguments: w.arguments,
                environment: had_env.then_some(Environment { variables: plain }),
                user: w.user,
                uris: w.uris,
                secret_env,
            }
        }
    }

    impl From<CommandInfo> for CommandInfoWire {
        fn from(c: CommandInfo) -> CommandInfoWire {
            let had_env = c.environment.is_some();
            let mut vars: Vec<VariableWire> = c
                .environment
                .map(|e| e.variables)
                .unwrap_or_default()
                .into_iter()
                .map(|v| VariableWire {
                    name: v.name,
                    value: v.value,
                    ..VariableWire::default()
                })
                .collect();
            let has_secrets = !c.secret_env.is_empty();
            vars.extend(c.secret_env.into_iter().map(|s| VariableWire {
                name: s.name,
                kind: Some("SECRET".into()),
                value: String::new(),
                secret: Some(serde_json::json!({
                    "type": "REFERENCE",
                    "reference": {"name": s.reference}
                })),
            }));
            CommandInfoWire {
                shell: c.shell,
                value: c.value,
                arguments: c.arguments,
                environment: (had_env || has_secrets)
                    .then_some(EnvironmentWire { variables: vars }),
                user: c.user,
                uris: c.uris,
            }
        }
    }
}

impl CommandInfo {
    /// A shell command (`/bin/sh -c value`).
    pub fn shell(value: impl Into<String>) -> CommandInfo {
        CommandInfo {
            value: Some(value.into()),
            ..CommandInfo::default()
        }
    }
}

/// A task to launch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Display name.
    pub name: String,
    /// Framework-chosen task id.
    pub task_id: IdValue,
    /// The agent of the offer (required by Mesos; meseta fills it from the offer when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<IdValue>,
    /// Resources the task consumes.
    #[serde(default)]
    pub resources: Resources,
    /// The command to run with the built-in command executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    /// Container settings (`type: DOCKER` runs through the Docker engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::container::ContainerInfo>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Health check (kept opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<serde_json::Value>,
    /// Kill policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
    /// The custom executor that runs the task (instead of `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<crate::executor::ExecutorInfo>,
    /// Opaque data for the executor, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// The `accept` payload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Accept {
    /// Offers being used (all on one agent).
    #[serde(default, deserialize_with = "null_default")]
    pub offer_ids: Vec<IdValue>,
    /// Operations applied in order.
    #[serde(default, deserialize_with = "null_default")]
    pub operations: Vec<Operation>,
    /// Filter for the unused remainder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

impl Accept {
    /// One LAUNCH of `tasks` on `offer_id`; the unused rest of the offer stays away for
    /// `refuse_seconds` (0: it comes back at once).
    pub fn launch(offer_id: IdValue, tasks: Vec<TaskInfo>, refuse_seconds: f64) -> Accept {
        Accept {
            offer_ids: vec![offer_id],
            operations: vec![Operation::Launch {
                launch: Launch { task_infos: tasks },
            }],
            filters: Some(Filters {
                refuse_seconds: Some(refuse_seconds),
            }),
        }
    }
}

/// The `decline` payload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Decline {
    /// Offers declined.
    #[serde(default, deserialize_with = "null_default")]
    pub offer_ids: Vec<IdValue>,
    /// How long not to re-offer them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// The `kill` payload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Kill {
    /// The task to kill.
    pub task_id: IdValue,
    /// Its agent, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<IdValue>,
}

/// The `acknowledge` payload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Acknowledge {
    /// The agent that sent the update.
    pub agent_id: IdValue,
    /// The task the update is about.
    pub task_id: IdValue,
    /// The update's uuid, base64 as received.
    pub uuid: String,
}

impl Acknowledge {
    /// The acknowledgement of `status`, or `None` when it carries no uuid or agent id (such
    /// updates must not be acknowledged).
    pub fn for_status(status: &TaskStatus) -> Option<Acknowledge> {
        Some(Acknowledge {
            agent_id: status.agent_id.clone()?,
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone()?,
        })
    }
}

/// One task of a RECONCILE call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcileTask {
    /// The task.
    pub task_id: IdValue,
    /// Its agent, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<IdValue>,
}

/// The `reconcile` payload (no tasks = implicit reconciliation of all).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reconcile {
    /// Tasks to reconcile.
    #[serde(default, deserialize_with = "null_default")]
    pub tasks: Vec<ReconcileTask>,
}

/// The `revive` and `suppress` payloads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Roles {
    /// Roles affected (absent or empty = all of the framework's roles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// The `revive` payload.
pub type Revive = Roles;
/// The `suppress` payload.
pub type Suppress = Roles;

/// The `message` payload of a MESSAGE call or event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The agent of the executor.
    pub agent_id: IdValue,
    /// The executor.
    pub executor_id: IdValue,
    /// The data, base64.
    #[serde(default)]
    pub data: String,
}

/// The `request` payload (ignored by the allocator, as in Mesos).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Resource requests, kept opaque.
    #[serde(default, deserialize_with = "null_default")]
    pub requests: Vec<serde_json::Value>,
}

/// The `shutdown` payload: stop an executor (its tasks are killed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Shutdown {
    /// The executor.
    pub executor_id: IdValue,
    /// Its agent.
    pub agent_id: IdValue,
}

/// The `update_framework` payload: new roles, name, capabilities of a subscribed framework.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateFramework {
    /// The framework's new info (its `id` must be the caller's).
    pub framework_info: FrameworkInfo,
    /// Roles to be suppressed from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_roles: Option<Vec<String>>,
}

/// A scheduler call: `{"type":"ACCEPT","framework_id":{"value":".."},"accept":{..}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The caller (absent only on a first SUBSCRIBE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<IdValue>,
    /// The call type and its payload.
    #[serde(flatten)]
    pub kind: CallKind,
}

/// The call types meseta understands, each holding its lower-case payload field.
// A call is decoded once per request and then consumed; boxing SUBSCRIBE would only make the
// wire type awkward to build and match on.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CallKind {
    /// Subscribe (or re-subscribe) a framework.
    #[serde(rename = "SUBSCRIBE")]
    Subscribe {
        /// The payload.
        subscribe: Subscribe,
    },
    /// Remove the framework and kill its tasks.
    #[serde(rename = "TEARDOWN")]
    Teardown,
    /// Use offers.
    #[serde(rename = "ACCEPT")]
    Accept {
        /// The payload.
        accept: Accept,
    },
    /// Decline offers.
    #[serde(rename = "DECLINE")]
    Decline {
        /// The payload.
        decline: Decline,
    },
    /// Clear filters and resume offers.
    #[serde(rename = "REVIVE")]
    Revive {
        /// The payload, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revive: Option<Revive>,
    },
    /// Stop receiving offers.
    #[serde(rename = "SUPPRESS")]
    Suppress {
        /// The payload, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suppress: Option<Suppress>,
    },
    /// Kill a task.
    #[serde(rename = "KILL")]
    Kill {
        /// The payload.
        kill: Kill,
    },
    /// Acknowledge a status update.
    #[serde(rename = "ACKNOWLEDGE")]
    Acknowledge {
        /// The payload.
        acknowledge: Acknowledge,
    },
    /// Ask for the latest state of tasks.
    #[serde(rename = "RECONCILE")]
    Reconcile {
        /// The payload.
        reconcile: Reconcile,
    },
    /// Shut down an executor and kill its tasks.
    #[serde(rename = "SHUTDOWN")]
    Shutdown {
        /// The payload.
        shutdown: Shutdown,
    },
    /// Change the framework's info (roles, name, capabilities) without re-subscribing.
    #[serde(rename = "UPDATE_FRAMEWORK")]
    UpdateFramework {
        /// The payload.
        update_framework: UpdateFramework,
    },
    /// Send data to an executor.
    #[serde(rename = "MESSAGE")]
    Message {
        /// The payload.
        message: Message,
    },
    /// Request resources (ignored).
    #[serde(rename = "REQUEST")]
    Request {
        /// The payload, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<Request>,
    },
    /// Accept inverse offers (maintenance; kept opaque: `inverse_offer_ids`, `filters`).
    #[serde(rename = "ACCEPT_INVERSE_OFFERS")]
    AcceptInverseOffers {
        /// The payload: `inverse_offer_ids`, `filters`.
        accept_inverse_offers: serde_json::Value,
    },
    /// Decline inverse offers (kept opaque, as for ACCEPT_INVERSE_OFFERS).
    #[serde(rename = "DECLINE_INVERSE_OFFERS")]
    DeclineInverseOffers {
        /// The payload: `inverse_offer_ids`, `filters`.
        decline_inverse_offers: serde_json::Value,
    },
    /// Reconcile offer operations (meseta runs no operations but LAUNCH; kept opaque).
    #[serde(rename = "RECONCILE_OPERATIONS")]
    ReconcileOperations {
        /// The payload: `operations[]` of `{operation_id, agent_id?, resource_provider_id?}`.
        reconcile_operations: serde_json::Value,
    },
    /// Acknowledge an operation status update (no effect; kept opaque).
    #[serde(rename = "ACKNOWLEDGE_OPERATION_STATUS")]
    AcknowledgeOperationStatus {
        /// The payload: `agent_id`, `resource_provider_id`, `uuid`, `operation_id`.
        acknowledge_operation_status: serde_json::Value,
    },
}

impl CallKind {
    /// The wire name of the call type, e.g. `"ACCEPT"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            CallKind::Subscribe { .. } => "SUBSCRIBE",
            CallKind::Teardown => "TEARDOWN",
            CallKind::Accept { .. } => "ACCEPT",
            CallKind::Decline { .. } => "DECLINE",
            CallKind::Revive { .. } => "REVIVE",
            CallKind::Suppress { .. } => "SUPPRESS",
            CallKind::Kill { .. } => "KILL",
            CallKind::Acknowledge { .. } => "ACKNOWLEDGE",
            CallKind::Reconcile { .. } => "RECONCILE",
            CallKind::Shutdown { .. } => "SHUTDOWN",
            CallKind::UpdateFramework { .. } => "UPDATE_FRAMEWORK",
            CallKind::Message { .. } => "MESSAGE",
            CallKind::Request { .. } => "REQUEST",
            CallKind::AcceptInverseOffers { .. } => "ACCEPT_INVERSE_OFFERS",
            CallKind::DeclineInverseOffers { .. } => "DECLINE_INVERSE_OFFERS",
            CallKind::ReconcileOperations { .. } => "RECONCILE_OPERATIONS",
            CallKind::AcknowledgeOperationStatus { .. } => "ACKNOWLEDGE_OPERATION_STATUS",
        }
    }
}

mod events;
mod fast;
mod operation;
pub use events::*;
pub use fast::{decode_hot, decode_hot_event};
pub use operation::*;

#[cfg(test)]
mod tests {
    #[test]
    fn secret_env_vars_round_trip_in_mesos_form() {
        let j = serde_json::json!({"shell": true, "value": "env", "environment": {"variables": [
            {"name": "A", "value": "1"},
            {"name": "DB", "type": "SECRET",
             "secret": {"type": "REFERENCE", "reference": {"name": "/team-a/db"}}}]}});
        let c: CommandInfo = serde_json::from_value(j.clone()).expect("parse");
        assert_eq!(c.environment.as_ref().map(|e| e.variables.len()), Some(1));
        assert_eq!(
            c.secret_env,
            vec![SecretEnv {
                name: "DB".into(),
                reference: "/team-a/db".into()
            }]
        );
        let back = serde_json::to_value(&c).expect("json");
        assert_eq!(back["environment"]["variables"][1]["type"], "SECRET");
        assert_eq!(
            back["environment"]["variables"][1]["secret"]["reference"]["name"],
            "/team-a/db"
        );
        let again: CommandInfo = serde_json::from_value(back).expect("parse again");
        assert_eq!(again, c);
        let value_secret = serde_json::json!({"value": "x", "environment": {"variables": [
            {"name": "S", "type": "SECRET", "secret": {"type": "VALUE", "value": {"data": "eA=="}}}]}});
        let c: CommandInfo = serde_json::from_value(value_secret).expect("parse");
        assert_eq!(c.secret_env[0].reference, "");
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn teardown_and_heartbeat_have_no_payload() {
        let call = Call {
            framework_id: Some(IdValue::new("f1")),
            kind: CallKind::Teardown,
        };
        let v = serde_json::to_value(&call).expect("serialize");
        assert_eq!(v, json!({"type":"TEARDOWN","framework_id":{"value":"f1"}}));
        let back: Call = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back, call);
        let hb = serde_json::to_value(Event::Heartbeat).expect("serialize");
        assert_eq!(hb, json!({"type":"HEARTBEAT"}));
    }

    #[test]
    fn pymesos_operation_and_inverse_offer_calls_parse() {
        for (ty, key) in [
            ("ACCEPT_INVERSE_OFFERS", "accept_inverse_offers"),
            ("DECLINE_INVERSE_OFFERS", "decline_inverse_offers"),
            ("RECONCILE_OPERATIONS", "reconcile_operations"),
            (
                "ACKNOWLEDGE_OPERATION_STATUS",
                "acknowledge_operation_status",
            ),
        ] {
            let v = json!({"type": ty, "framework_id": {"value": "f"}, key: {"x": [1]}});
            let call: Call = serde_json::from_value(v.clone()).expect(ty);
            assert_eq!(call.kind.type_name(), ty);
            assert_eq!(serde_json::to_value(&call).expect("serialize"), v);
            // As in Mesos, the payload matching the type is required.
            let bare = json!({"type": ty, "framework_id": {"value": "f"}});
            assert!(
                serde_json::from_value::<Call>(bare).is_err(),
                "{ty} without {key}"
            );
        }
    }

    #[test]
    fn ids_convert_both_ways() {
        let t = TaskId::new("t1");
        let v: IdValue = t.clone().into();
        assert_eq!(v.as_str(), "t1");
        assert_eq!(TaskId::from(v), t);
    }
}
