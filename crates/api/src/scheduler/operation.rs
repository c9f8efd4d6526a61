//! `Offer.Operation`: what an ACCEPT does with the offered resources (§1.5 of the Mesos
//! reference). LAUNCH, LAUNCH_GROUP, RESERVE, UNRESERVE, CREATE and DESTROY are typed; any other
//! type, or a known type whose payload does not parse, is kept verbatim in
//! [`Operation::Unsupported`] with the reason, so that the master drops it (and logs why)
//! instead of refusing the whole call — a framework such as pymesos tears itself down on a 4xx.
//!
//! A malformed LAUNCH is the exception: it fails the call, as Mesos does.

use meseta_types::Resources;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::{null_default, TaskInfo};

/// The `launch` payload of a LAUNCH operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// Tasks to launch.
    #[serde(default, deserialize_with = "null_default")]
    pub task_infos: Vec<TaskInfo>,
}

/// The `launch_group` payload: tasks delivered together to one executor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LaunchGroup {
    /// The executor (`ExecutorInfo`, kept opaque; the master reads its `executor_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Value>,
    /// The tasks.
    #[serde(default)]
    pub task_group: TaskGroup,
}

impl LaunchGroup {
    /// `executor.executor_id.value`, when given.
    pub fn executor_id(&self) -> Option<&str> {
        self.executor
            .as_ref()?
            .pointer("/executor_id/value")
            .and_then(Value::as_str)
    }
}

/// `{"tasks":[TaskInfo]}`. Tasks that do not parse are counted, not kept: the group is then
/// invalid and the tasks that did parse fail with it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TaskGroup {
    /// The tasks that parsed.
    pub tasks: Vec<TaskInfo>,
    /// How many tasks did not parse.
    #[serde(skip)]
    pub malformed: usize,
}

impl<'de> Deserialize<'de> for TaskGroup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Repr {
            #[serde(default, deserialize_with = "null_default")]
            tasks: Vec<Value>,
        }
        let declared = Repr::deserialize(d)?.tasks;
        let count = declared.len();
        let tasks: Vec<TaskInfo> = declared
            .into_iter()
            .filter_map(|t| serde_json::from_value(t).ok())
            .collect();
        Ok(TaskGroup {
            malformed: count - tasks.len(),
            tasks,
        })
    }
}

/// The `reserve` / `unreserve` payload: role-labelled resources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    /// The reserved resources.
    pub resources: Resources,
}

/// The `create` / `destroy` payload: persistent volumes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Volumes {
    /// The volumes (disk resources with `disk.persistence` and `disk.volume`).
    pub volumes: Resources,
}

/// An `Offer.Operation`.
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    /// `{"type":"LAUNCH","launch":{"task_infos":[..]}}`.
    Launch {
        /// The payload.
        launch: Launch,
    },
    /// `{"type":"LAUNCH_GROUP","launch_group":{"executor":{..},"task_group":{"tasks":[..]}}}`.
    LaunchGroup {
        /// The payload.
        launch_group: LaunchGroup,
    },
    /// `{"type":"RESERVE","reserve":{"resources":[..]}}`.
    Reserve {
        /// The payload.
        reserve: Reservation,
    },
    /// `{"type":"UNRESERVE","unreserve":{"resources":[..]}}`.
    Unreserve {
        /// The payload.
        unreserve: Reservation,
    },
    /// `{"type":"CREATE","create":{"volumes":[..]}}`.
    Create {
        /// The payload.
        create: Volumes,
    },
    /// `{"type":"DESTROY","destroy":{"volumes":[..]}}`.
    Destroy {
        /// The payload.
        destroy: Volumes,
    },
    /// Any other operation type (GROW_VOLUME, CREATE_DISK, ...) or a known one whose payload
    /// does not parse, as received.
    Unsupported {
        /// The operation's `type` (empty when missing).
        op_type: String,
        /// The whole operation object as received.
        raw: Value,
        /// Why it cannot be applied.
        why: String,
    },
}

impl Operation {
    /// The operation's `type`.
    pub fn type_name(&self) -> &str {
        match self {
            Operation::Launch { .. } => "LAUNCH",
            Operation::LaunchGroup { .. } => "LAUNCH_GROUP",
            Operation::Reserve { .. } => "RESERVE",
            Operation::Unreserve { .. } => "UNRESERVE",
            Operation::Create { .. } => "CREATE",
            Operation::Destroy { .. } => "DESTROY",
            Operation::Unsupported { op_type, .. } => op_type,
        }
    }

    /// The tasks the operation would launch (LAUNCH and LAUNCH_GROUP), e.g. to drop them.
    pub fn task_infos(&self) -> &[TaskInfo] {
        match self {
            Operation::Launch { launch } => &launch.task_infos,
            Operation::LaunchGroup { launch_group } => &launch_group.task_group.tasks,
            _ => &[],
        }
    }
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
        enum Repr<'a> {
            Launch { launch: &'a Launch },
            LaunchGroup { launch_group: &'a LaunchGroup },
            Reserve { reserve: &'a Reservation },
            Unreserve { unreserve: &'a Reservation },
            Create { create: &'a Volumes },
            Destroy { destroy: &'a Volumes },
        }
        match self {
            Operation::Launch { launch } => Repr::Launch { launch }.serialize(s),
            Operation::LaunchGroup { launch_group } => {
                Repr::LaunchGroup { launch_group }.serialize(s)
            }
            Operation::Reserve { reserve } => Repr::Reserve { reserve }.serialize(s),
            Operation::Unreserve { unreserve } => Repr::Unreserve { unreserve }.serialize(s),
            Operation::Create { create } => Repr::Create { create }.serialize(s),
            Operation::Destroy { destroy } => Repr::Destroy { destroy }.serialize(s),
            Operation::Unsupported { raw, .. } => raw.serialize(s),
        }
    }
}

/// The payload under `key`, required.
fn payload<T: DeserializeOwned>(raw: &Value, key: &str) -> Result<T, String> {
    let v = raw
        .get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| format!("expecting '{key}' to be present"))?;
    T::deserialize(v).map_err(|e| format!("invalid '{key}': {e}"))
}

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        let op_type = raw
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let typed = match op_type.as_str() {
            "LAUNCH" => {
                let payload = raw
                    .get("launch")
                    .filter(|v| !v.is_null())
                    .ok_or_else(|| D::Error::custom("expecting 'launch' to be present"))?;
                let launch = Launch::deserialize(payload)
                    .map_err(|e| D::Error::custom(format!("invalid launch operation: {e}")))?;
                return Ok(Operation::Launch { launch });
            }
            "LAUNCH_GROUP" => payload(&raw, "launch_group")
                .map(|launch_group| Operation::LaunchGroup { launch_group }),
            "RESERVE" => payload(&raw, "reserve").map(|reserve| Operation::Reserve { reserve }),
            "UNRESERVE" => {
                payload(&raw, "unreserve").map(|unreserve| Operation::Unreserve { unreserve })
            }
            "CREATE" => payload(&raw, "create").map(|create| Operation::Create { create }),
            "DESTROY" => payload(&raw, "destroy").map(|destroy| Operation::Destroy { destroy }),
            other => Err(format!("operation '{other}' is not supported")),
        };
        Ok(typed.unwrap_or_else(|why| Operation::Unsupported { op_type, raw, why }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(v: Value) -> Operation {
        let op: Operation = serde_json::from_value(v.clone()).expect("deserialize");
        assert_eq!(serde_json::to_value(&op).expect("serialize"), v);
        op
    }

    fn cpus(role: &str) -> Value {
        json!([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}, "role": role}])
    }

    #[test]
    fn resource_operations_are_typed_and_round_trip() {
        let op = round_trip(json!({"type": "RESERVE", "reserve": {"resources": cpus("db")}}));
        let Operation::Reserve { reserve } = &op else {
            panic!("{op:?}")
        };
        assert_eq!(
            reserve.resources,
            Resources::parse("cpus(db):1").expect("r")
        );
        let op = round_trip(json!({"type": "UNRESERVE", "unreserve": {"resources": cpus("db")}}));
        assert_eq!(op.type_name(), "UNRESERVE");
        let vol = json!([{"name": "disk", "type": "SCALAR", "scalar": {"value": 8.0},
            "role": "db", "disk": {"persistence": {"id": "v1"},
            "volume": {"container_path": "data", "mode": "RW"}}}]);
        let op = round_trip(json!({"type": "CREATE", "create": {"volumes": vol}}));
        let Operation::Create { create } = &op else {
            panic!("{op:?}")
        };
        assert_eq!(create.volumes.volumes().count(), 1);
        round_trip(json!({"type": "DESTROY", "destroy": {"volumes": vol}}));
    }

    #[test]
    fn pymesos_reservations_parse_to_the_reserved_role() {
        // pymesos sends Mesos' refined reservations; the role is the last one's.
        let v = json!({"type": "RESERVE", "reserve": {"resources": [{"name": "cpus",
            "type": "SCALAR", "scalar": {"value": 1}, "allocation_info": {"role": "db"},
            "reservations": [{"type": "DYNAMIC", "role": "db", "principal": "p"}]}]}});
        let op: Operation = serde_json::from_value(v).expect("deserialize");
        let again = serde_json::to_value(&op).expect("serialize");
        assert_eq!(
            again,
            json!({"type": "RESERVE", "reserve": {"resources": cpus("db")}})
        );
        assert_eq!(
            serde_json::from_value::<Operation>(again).expect("back"),
            op
        );
    }

    #[test]
    fn launch_groups_are_typed_and_count_malformed_tasks() {
        let task = json!({"name": "t", "task_id": {"value": "t1"},
            "agent_id": {"value": "a"}, "resources": cpus("*")});
        let v = json!({"type": "LAUNCH_GROUP", "launch_group": {
            "executor": {"executor_id": {"value": "e1"}, "type": "DEFAULT"},
            "task_group": {"tasks": [task]}}});
        let op = round_trip(v);
        let Operation::LaunchGroup { launch_group } = &op else {
            panic!("{op:?}")
        };
        assert_eq!(launch_group.executor_id(), Some("e1"));
        assert_eq!(op.task_infos().len(), 1);
        let bad = json!({"type": "LAUNCH_GROUP", "launch_group": {
            "task_group": {"tasks": [task, {"name": 3}]}}});
        let op: Operation = serde_json::from_value(bad).expect("deserialize");
        let Operation::LaunchGroup { launch_group } = &op else {
            panic!("{op:?}")
        };
        assert_eq!(
            (
                launch_group.task_group.tasks.len(),
                launch_group.task_group.malformed
            ),
            (1, 1)
        );
    }

    #[test]
    fn unknown_or_malformed_operations_are_kept_verbatim() {
        for (raw, why) in [
            (
                json!({"type": "GROW_VOLUME", "grow_volume": {}}),
                "not supported",
            ),
            (
                json!({"type": "RESERVE"}),
                "expecting 'reserve' to be present",
            ),
            (json!({"type": "CREATE", "create": {}}), "invalid 'create'"),
            (json!({"no": "type"}), "operation '' is not supported"),
        ] {
            let op: Operation = serde_json::from_value(raw.clone()).expect("deserialize");
            let Operation::Unsupported {
                raw: kept,
                why: got,
                ..
            } = &op
            else {
                panic!("{op:?}")
            };
            assert_eq!(kept, &raw);
            assert!(got.contains(why), "{got}");
            assert_eq!(serde_json::to_value(&op).expect("serialize"), raw);
        }
    }

    #[test]
    fn launch_without_payload_is_an_error() {
        let err = serde_json::from_value::<Operation>(json!({"type":"LAUNCH"}));
        assert!(err.is_err());
        let err =
            serde_json::from_value::<Operation>(json!({"type":"LAUNCH","launch":{"task_infos":3}}));
        assert!(err.is_err());
    }
}
