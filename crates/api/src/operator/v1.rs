//! The Mesos v1 operator calls (`POST /api/v1`, `include/mesos/v1/master/master.proto`):
//! `{"type":"GET_X"}` or `{"type":"X","x":{..}}` in. [`Call::parse`] turns the JSON into one typed
//! [`Call`]; what it refuses is answered 400 with the [`CallError`]'s message, naming the field.

use std::collections::BTreeMap;

use meseta_types::{AgentId, FrameworkId, Resources, Scalar};
use serde_json::Value;

use crate::maintenance::{MachineId, Schedule};

/// Why a call was refused (400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The call has no `type`.
    #[error("expecting 'type' to be present")]
    NoType,
    /// A type this master does not serve.
    #[error("call type '{0}' is not supported by this master")]
    Unsupported(String),
    /// A payload field is missing or malformed; the message names it.
    #[error("{0}")]
    Invalid(String),
}

/// A role's quota: guarantees and limits by resource name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaConfig {
    /// The role.
    pub role: String,
    /// Guaranteed amounts.
    pub guarantees: BTreeMap<String, Scalar>,
    /// Upper limits.
    pub limits: BTreeMap<String, Scalar>,
}

/// One v1 operator call.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// `GET_HEALTH`.
    GetHealth,
    /// `GET_VERSION`.
    GetVersion,
    /// `GET_FLAGS`.
    GetFlags,
    /// `GET_METRICS`.
    GetMetrics,
    /// `GET_MASTER`.
    GetMaster,
    /// `GET_AGENTS`.
    GetAgents,
    /// `GET_FRAMEWORKS`.
    GetFrameworks,
    /// `GET_TASKS`.
    GetTasks,
    /// `GET_EXECUTORS`.
    GetExecutors,
    /// `GET_WEIGHTS`.
    GetWeights,
    /// `GET_QUOTA`.
    GetQuota,
    /// `GET_ROLES`.
    GetRoles,
    /// `GET_STATE`.
    GetState,
    /// `GET_MAINTENANCE_SCHEDULE`.
    GetMaintenanceSchedule,
    /// `GET_MAINTENANCE_STATUS`.
    GetMaintenanceStatus,
    /// `SUBSCRIBE`: the event stream.
    Subscribe,
    /// `TEARDOWN {framework_id}`.
    Teardown {
        /// The framework to remove.
        framework_id: FrameworkId,
    },
    /// `RESERVE_RESOURCES {agent_id, resources}`.
    ReserveResources {
        /// The agent.
        agent_id: AgentId,
        /// Role-labelled resources.
        resources: Resources,
    },
    /// `UNRESERVE_RESOURCES {agent_id, resources}`.
    UnreserveResources {
        /// The agent.
        agent_id: AgentId,
        /// Role-labelled resources.
        resources: Resources,
    },
    /// `CREATE_VOLUMES {agent_id, volumes}`.
    CreateVolumes {
        /// The agent.
        agent_id: AgentId,
        /// Persistent volumes.
        volumes: Resources,
    },
    /// `DESTROY_VOLUMES {agent_id, volumes}`.
    DestroyVolumes {
        /// The agent.
        agent_id: AgentId,
        /// Persistent volumes.
        volumes: Resources,
    },
    /// `UPDATE_MAINTENANCE_SCHEDULE {schedule}`.
    UpdateMaintenanceSchedule {
        /// The new schedule.
        schedule: Schedule,
    },
    /// `START_MAINTENANCE {machines}`: the machines go down.
    StartMaintenance {
        /// The machines.
        machines: Vec<MachineId>,
    },
    /// `STOP_MAINTENANCE {machines}`: the machines come up.
    StopMaintenance {
        /// The machines.
        machines: Vec<MachineId>,
    },
    /// `UPDATE_QUOTA {force, quota_configs}`: all configs apply, or none.
    UpdateQuota {
        /// Skip the capacity check.
        force: bool,
        /// The new quotas.
        configs: Vec<QuotaConfig>,
    },
    /// `UPDATE_WEIGHTS {weight_infos}`.
    UpdateWeights {
        /// `(role, weight)` pairs.
        weights: Vec<(String, f64)>,
    },
}

impl Call {
    /// Parse a call; `v` is the whole JSON body.
    pub fn parse(v: &Value) -> Result<Call, CallError> {
        let kind = v["type"].as_str().ok_or(CallError::NoType)?;
        let payload = &v[kind.to_ascii_lowercase().as_str()];
        let call = match kind {
            "GET_HEALTH" => Call::GetHealth,
            "GET_VERSION" => Call::GetVersion,
            "GET_FLAGS" => Call::GetFlags,
            "GET_METRICS" => Call::GetMetrics,
            "GET_MASTER" => Call::GetMaster,
            "GET_AGENTS" => Call::GetAgents,
            "GET_FRAMEWORKS" => Call::GetFrameworks,
            "GET_TASKS" => Call::GetTasks,
            "GET_EXECUTORS" => Call::GetExecutors,
            "GET_WEIGHTS" => Call::GetWeights,
            "GET_QUOTA" => Call::GetQuota,
            "GET_ROLES" => Call::GetRoles,
            "GET_STATE" => Call::GetState,
            "GET_MAINTENANCE_SCHEDULE" => Call::GetMaintenanceSchedule,
            "GET_MAINTENANCE_STATUS" => Call::GetMaintenanceStatus,
            "SUBSCRIBE" => Call::Subscribe,
            "TEARDOWN" => {
                let id = payload["framework_id"]["value"].as_str().ok_or_else(|| {
                    invalid("expecting 'teardown.framework_id.value' to be present")
                })?;
                Call::Teardown {
                    framework_id: FrameworkId::new(id),
                }
            }
            "RESERVE_RESOURCES" | "UNRESERVE_RESOURCES" => {
                let (agent_id, resources) = agent_resources(payload, "resources")?;
                if kind == "RESERVE_RESOURCES" {
                    Call::ReserveResources {
                        agent_id,
                        resources,
                    }
                } else {
                    Call::UnreserveResources {
                        agent_id,
                        resources,
                    }
                }
            }
            "CREATE_VOLUMES" | "DESTROY_VOLUMES" => {
                let (agent_id, volumes) = agent_resources(payload, "volumes")?;
                if kind == "CREATE_VOLUMES" {
                    Call::CreateVolumes { agent_id, volumes }
                } else {
                    Call::DestroyVolumes { agent_id, volumes }
                }
            }
            "UPDATE_MAINTENANCE_SCHEDULE" => Call::UpdateMaintenanceSchedule {
                schedule: field(payload, "schedule")?,
            },
            "START_MAINTENANCE" => Call::StartMaintenance {
                machines: field(payload, "machines")?,
            },
            "STOP_MAINTENANCE" => Call::StopMaintenance {
                machines: field(payload, "machines")?,
            },
            "UPDATE_QUOTA" => Call::UpdateQuota {
                force: payload["force"].as_bool().unwrap_or(false),
                configs: quota_configs(payload)?,
            },
            "UPDATE_WEIGHTS" => Call::UpdateWeights {
                weights: weight_infos(payload)?,
            },
            other => return Err(CallError::Unsupported(other.to_string())),
        };
        Ok(call)
    }

    /// The call's `type` (the answer of a read call carries it, and its payload under the
    /// lower-cased name).
    pub fn type_name(&self) -> &'static str {
        match self {
            Call::GetHealth => "GET_HEALTH",
            Call::GetVersion => "GET_VERSION",
            Call::GetFlags => "GET_FLAGS",
            Call::GetMetrics => "GET_METRICS",
            Call::GetMaster => "GET_MASTER",
            Call::GetAgents => "GET_AGENTS",
            Call::GetFrameworks => "GET_FRAMEWORKS",
            Call::GetTasks => "GET_TASKS",
            Call::GetExecutors => "GET_EXECUTORS",
            Call::GetWeights => "GET_WEIGHTS",
            Call::GetQuota => "GET_QUOTA",
            Call::GetRoles => "GET_ROLES",
            Call::GetState => "GET_STATE",
            Call::GetMaintenanceSchedule => "GET_MAINTENANCE_SCHEDULE",
            Call::GetMaintenanceStatus => "GET_MAINTENANCE_STATUS",
            Call::Subscribe => "SUBSCRIBE",
            Call::Teardown { .. } => "TEARDOWN",
            Call::ReserveResources { .. } => "RESERVE_RESOURCES",
            Call::UnreserveResources { .. } => "UNRESERVE_RESOURCES",
            Call::CreateVolumes { .. } => "CREATE_VOLUMES",
            Call::DestroyVolumes { .. } => "DESTROY_VOLUMES",
            Call::UpdateMaintenanceSchedule { .. } => "UPDATE_MAINTENANCE_SCHEDULE",
            Call::StartMaintenance { .. } => "START_MAINTENANCE",
            Call::StopMaintenance { .. } => "STOP_MAINTENANCE",
            Call::UpdateQuota { .. } => "UPDATE_QUOTA",
            Call::UpdateWeights { .. } => "UPDATE_WEIGHTS",
        }
    }
}

fn invalid(why: impl Into<String>) -> CallError {
    CallError::Invalid(why.into())
}

/// `payload[name]` as a `T`.
fn field<T: serde::de::DeserializeOwned>(payload: &Value, name: &str) -> Result<T, CallError> {
    serde_json::from_value(payload[name].clone())
        .map_err(|e| invalid(format!("invalid '{name}': {e}")))
}

/// `{agent_id:{value}, <name>:[Resource]}`.
fn agent_resources(payload: &Value, name: &str) -> Result<(AgentId, Resources), CallError> {
    let agent = payload
        .pointer("/agent_id/value")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("expecting 'agent_id' to be present"))?;
    Ok((AgentId::new(agent), field(payload, name)?))
}

/// `quota_configs: [{role, guarantees:{cpus:{value}}, limits:{..}}]`.
fn quota_configs(payload: &Value) -> Result<Vec<QuotaConfig>, CallError> {
    let mut configs = Vec::new();
    for c in payload["quota_configs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let Some(role) = c["role"].as_str() else {
            return Err(invalid(format!("quota config without 'role': {c}")));
        };
        let mut q = QuotaConfig {
            role: role.to_string(),
            ..QuotaConfig::default()
        };
        for (name, map) in [("guarantees", &mut q.guarantees), ("limits", &mut q.limits)] {
            for (res, v) in c[name].as_object().cloned().unwrap_or_default() {
                let Some(x) = v["value"].as_f64() else {
                    return Err(invalid(format!("{name}.{res} needs a numeric 'value'")));
                };
                let s = Scalar::from_f64(x).map_err(|e| invalid(format!("{name}.{res}: {e}")))?;
                map.insert(res, s);
            }
        }
        configs.push(q);
    }
    Ok(configs)
}

/// `weight_infos: [{role, weight}]`.
fn weight_infos(payload: &Value) -> Result<Vec<(String, f64)>, CallError> {
    let mut weights = Vec::new();
    for w in payload["weight_infos"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        match (w["role"].as_str(), w["weight"].as_f64()) {
            (Some(r), Some(x)) => weights.push((r.to_string(), x)),
            _ => {
                return Err(invalid(format!(
                    "weight info needs 'role' and 'weight': {w}"
                )))
            }
        }
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        Call::parse(&v).expect_err("refused").to_string()
    }

    #[test]
    fn calls_parse_into_typed_variants() {
        assert_eq!(
            Call::parse(&json!({"type": "GET_STATE"})),
            Ok(Call::GetState)
        );
        let c = Call::parse(&json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
            "agent_id": {"value": "a1"}, "resources": [{"name": "cpus", "type": "SCALAR",
            "scalar": {"value": 1.0}, "role": "db"}]}}))
        .expect("call");
        assert_eq!(
            c,
            Call::ReserveResources {
                agent_id: AgentId::new("a1"),
                resources: Resources::parse("cpus(db):1").expect("r"),
            }
        );
        assert_eq!(c.type_name(), "RESERVE_RESOURCES");
        let c = Call::parse(
            &json!({"type": "UPDATE_QUOTA", "update_quota": {"force": true,
            "quota_configs": [{"role": "db", "limits": {"cpus": {"value": 2.0}}}]}}),
        )
        .expect("call");
        let Call::UpdateQuota { force, configs } = c else {
            panic!("{c:?}")
        };
        assert!(force);
        assert_eq!(configs[0].limits["cpus"].as_f64(), 2.0);
        let c =
            Call::parse(&json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": "f"}}}));
        assert_eq!(
            c,
            Ok(Call::Teardown {
                framework_id: FrameworkId::new("f")
            })
        );
    }

    #[test]
    fn malformed_calls_name_what_is_wrong() {
        assert_eq!(err(json!({})), "expecting 'type' to be present");
        assert_eq!(
            err(json!({"type": "GET_NOTHING"})),
            "call type 'GET_NOTHING' is not supported by this master"
        );
        assert_eq!(
            err(json!({"type": "TEARDOWN"})),
            "expecting 'teardown.framework_id.value' to be present"
        );
        assert_eq!(
            err(json!({"type": "CREATE_VOLUMES", "create_volumes": {}})),
            "expecting 'agent_id' to be present"
        );
        assert!(err(
            json!({"type": "CREATE_VOLUMES", "create_volumes": {"agent_id": {"value": "a"}}})
        )
        .starts_with("invalid 'volumes'"));
        assert!(err(json!({"type": "START_MAINTENANCE"})).starts_with("invalid 'machines'"));
        assert!(
            err(json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{}]}}))
                .starts_with("quota config without 'role'")
        );
        assert_eq!(
            err(
                json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
                {"role": "r", "guarantees": {"cpus": {}}}]}})
            ),
            "guarantees.cpus needs a numeric 'value'"
        );
        assert!(err(
            json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "r"}]}})
        )
        .starts_with("weight info needs 'role' and 'weight'"));
    }
}
