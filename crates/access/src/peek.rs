//! What the edge needs from a framework's call (`/api/v1/scheduler`), read without building
//! the whole call: its type, the SUBSCRIBE's principal, roles and user, the roles a RESERVE
//! names, and each launched task's user and secret references.
//!
//! [`CallFacts::read`] deserialises the body into small borrowed "peek" structs whose unnamed
//! fields serde skips (`IgnoredAny`), so an ACCEPT of thousands of tasks costs one scan and a
//! few short vectors instead of a `serde_json::Value` tree. Where the peek cannot read the
//! body (a field of an unexpected JSON type, a duplicated key), the same facts are taken from a
//! `Value` instead, leniently, as before: every body yields at least what the lenient reading
//! finds, so no check is skipped because the fast path was taken.
//!
//! Tasks are read from both `launch.task_infos` and `launch_group.task_group.tasks` of every
//! operation, whatever its `type` says: the edge checks every task a body carries.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

/// The facts of one scheduler call that the access check looks at.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CallFacts<'a> {
    /// The call's `type`.
    pub(crate) kind: Option<Cow<'a, str>>,
    /// SUBSCRIBE: the `framework_info.principal`.
    pub(crate) principal: Option<Cow<'a, str>>,
    /// SUBSCRIBE's `framework_info.roles` and `role`, then the roles of every RESERVE's
    /// resources and their reservations, in body order (unfiltered).
    pub(crate) roles: Vec<Cow<'a, str>>,
    /// SUBSCRIBE's `framework_info.user`.
    pub(crate) user: Option<Cow<'a, str>>,
    /// Every launched task, in body order.
    pub(crate) tasks: Vec<TaskFacts<'a>>,
}

/// One launched task: its `command.user` and its secret references (environment variables,
/// then volumes).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TaskFacts<'a> {
    pub(crate) user: Option<Cow<'a, str>>,
    pub(crate) secrets: Vec<Cow<'a, str>>,
}

impl<'a> CallFacts<'a> {
    /// The facts of `body`; `None` when it is not JSON (the master refuses it then).
    pub(crate) fn read(body: &'a [u8]) -> Option<CallFacts<'a>> {
        match serde_json::from_slice::<CallPeek<'a>>(body) {
            Ok(p) => Some(p.into_facts()),
            Err(_) => serde_json::from_slice::<Value>(body)
                .ok()
                .map(|v| CallFacts::from_value(&v)),
        }
    }

    /// The lenient reading: whatever has the expected JSON type where it is looked for.
    fn from_value(call: &Value) -> CallFacts<'static> {
        let owned = |v: &Value| v.as_str().map(|s| Cow::Owned(s.to_string()));
        let mut f = CallFacts {
            kind: call.get("type").and_then(owned),
            ..CallFacts::default()
        };
        if let Some(fi) = call.pointer("/subscribe/framework_info") {
            if let Some(Value::Array(rs)) = fi.get("roles") {
                f.roles.extend(rs.iter().filter_map(owned));
            }
            f.roles.extend(fi.get("role").and_then(owned));
            f.user = fi.get("user").and_then(owned);
            f.principal = fi.get("principal").and_then(owned);
        }
        let ops = call.pointer("/accept/operations").and_then(Value::as_array);
        for op in ops.into_iter().flatten() {
            let launched = ["/launch/task_infos", "/launch_group/task_group/tasks"]
                .iter()
                .filter_map(|p| op.pointer(p)?.as_array())
                .flatten();
            for t in launched {
                let vars = t
                    .pointer("/command/environment/variables")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| owned(v.pointer("/secret/reference/name")?));
                let vols = t
                    .pointer("/container/volumes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| owned(v.pointer("/source/secret/reference/name")?));
                f.tasks.push(TaskFacts {
                    user: t.pointer("/command/user").and_then(owned),
                    secrets: vars.chain(vols).collect(),
                });
            }
            let reserved = op.pointer("/reserve/resources").and_then(Value::as_array);
            for r in reserved.into_iter().flatten() {
                f.roles.extend(r.get("role").and_then(owned));
                let rs = r.get("reservations").and_then(Value::as_array);
                f.roles.extend(
                    rs.into_iter()
                        .flatten()
                        .filter_map(|x| owned(x.get("role")?)),
                );
            }
        }
        f
    }
}

// The peek structs: only the fields the check reads; serde's derive skips every other field.
// Strings borrow from the body unless they hold escapes.

/// A string of the body: serde borrows a `Cow<str>` only when it is a field of its own (not
/// inside an `Option` or a `Vec`), hence the newtype.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

type Str<'a> = Option<Text<'a>>;
type List<T> = Option<Vec<T>>;

#[derive(Deserialize)]
struct CallPeek<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Str<'a>,
    #[serde(borrow, default)]
    subscribe: Option<SubscribePeek<'a>>,
    #[serde(borrow, default)]
    accept: Option<AcceptPeek<'a>>,
}

#[derive(Deserialize)]
struct SubscribePeek<'a> {
    #[serde(borrow, default)]
    framework_info: Option<FrameworkInfoPeek<'a>>,
}

#[derive(Deserialize)]
struct FrameworkInfoPeek<'a> {
    #[serde(borrow, default)]
    roles: List<Text<'a>>,
    #[serde(borrow, default)]
    role: Str<'a>,
    #[serde(borrow, default)]
    user: Str<'a>,
    #[serde(borrow, default)]
    principal: Str<'a>,
}

#[derive(Deserialize)]
struct AcceptPeek<'a> {
    #[serde(borrow, default)]
    operations: List<OperationPeek<'a>>,
}

#[derive(Deserialize)]
struct OperationPeek<'a> {
    #[serde(borrow, default)]
    launch: Option<LaunchPeek<'a>>,
    #[serde(borrow, default)]
    launch_group: Option<LaunchGroupPeek<'a>>,
    #[serde(borrow, default)]
    reserve: Option<ReservePeek<'a>>,
}

#[derive(Deserialize)]
struct LaunchPeek<'a> {
    #[serde(borrow, default)]
    task_infos: List<TaskPeek<'a>>,
}

#[derive(Deserialize)]
struct LaunchGroupPeek<'a> {
    #[serde(borrow, default)]
    task_group: Option<LaunchPeekGroup<'a>>,
}

#[derive(Deserialize)]
struct LaunchPeekGroup<'a> {
    #[serde(borrow, default)]
    tasks: List<TaskPeek<'a>>,
}

#[derive(Deserialize)]
struct TaskPeek<'a> {
    #[serde(borrow, default)]
    command: Option<CommandPeek<'a>>,
    #[serde(borrow, default)]
    container: Option<ContainerPeek<'a>>,
}

#[derive(Deserialize)]
struct CommandPeek<'a> {
    #[serde(borrow, default)]
    user: Str<'a>,
    #[serde(borrow, default)]
    environment: Option<EnvironmentPeek<'a>>,
}

#[derive(Deserialize)]
struct EnvironmentPeek<'a> {
    #[serde(borrow, default)]
    variables: List<VariablePeek<'a>>,
}

#[derive(Deserialize)]
struct VariablePeek<'a> {
    #[serde(borrow, default)]
    secret: Option<SecretPeek<'a>>,
}

#[derive(Deserialize)]
struct ContainerPeek<'a> {
    #[serde(borrow, default)]
    volumes: List<VolumePeek<'a>>,
}

#[derive(Deserialize)]
struct VolumePeek<'a> {
    #[serde(borrow, default)]
    source: Option<VolumeSourcePeek<'a>>,
}

#[derive(Deserialize)]
struct VolumeSourcePeek<'a> {
    #[serde(borrow, default)]
    secret: Option<SecretPeek<'a>>,
}

#[derive(Deserialize)]
struct SecretPeek<'a> {
    #[serde(borrow, default)]
    reference: Option<ReferencePeek<'a>>,
}

#[derive(Deserialize)]
struct ReferencePeek<'a> {
    #[serde(borrow, default)]
    name: Str<'a>,
}

#[derive(Deserialize)]
struct ReservePeek<'a> {
    #[serde(borrow, default)]
    resources: List<ResourcePeek<'a>>,
}

#[derive(Deserialize)]
struct ResourcePeek<'a> {
    #[serde(borrow, default)]
    role: Str<'a>,
    #[serde(borrow, default)]
    reservations: List<ReservationPeek<'a>>,
}

#[derive(Deserialize)]
struct ReservationPeek<'a> {
    #[serde(borrow, default)]
    role: Str<'a>,
}

impl<'a> CallPeek<'a> {
    fn into_facts(self) -> CallFacts<'a> {
        let mut f = CallFacts {
            kind: self.kind.map(|t| t.0),
            ..CallFacts::default()
        };
        if let Some(fi) = self.subscribe.and_then(|s| s.framework_info) {
            f.roles.extend(fi.roles.into_iter().flatten().map(|t| t.0));
            f.roles.extend(fi.role.map(|t| t.0));
            f.user = fi.user.map(|t| t.0);
            f.principal = fi.principal.map(|t| t.0);
        }
        let ops = self.accept.and_then(|a| a.operations);
        for op in ops.into_iter().flatten() {
            let launched = op.launch.and_then(|l| l.task_infos);
            let grouped = op
                .launch_group
                .and_then(|g| g.task_group)
                .and_then(|g| g.tasks);
            for t in launched.into_iter().chain(grouped).flatten() {
                f.tasks.push(t.into_facts());
            }
            let reserved = op.reserve.and_then(|r| r.resources);
            for r in reserved.into_iter().flatten() {
                f.roles.extend(r.role.map(|t| t.0));
                let rs = r.reservations.into_iter().flatten();
                f.roles.extend(rs.filter_map(|x| x.role.map(|t| t.0)));
            }
        }
        f
    }
}

impl<'a> TaskPeek<'a> {
    fn into_facts(self) -> TaskFacts<'a> {
        let (user, env) = match self.command {
            Some(c) => (c.user, c.environment),
            None => (None, None),
        };
        let vars = env
            .and_then(|e| e.variables)
            .into_iter()
            .flatten()
            .filter_map(|v| Some(v.secret?.reference?.name?.0));
        let vols = self
            .container
            .and_then(|c| c.volumes)
            .into_iter()
            .flatten()
            .filter_map(|v| Some(v.source?.secret?.reference?.name?.0));
        TaskFacts {
            user: user.map(|t| t.0),
            secrets: vars.chain(vols).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn peeked(body: &[u8]) -> CallFacts<'_> {
        serde_json::from_slice::<CallPeek>(body)
            .expect("the peek reads it")
            .into_facts()
    }

    fn lenient(body: &[u8]) -> CallFacts<'static> {
        CallFacts::from_value(&serde_json::from_slice(body).expect("JSON"))
    }

    fn strs(v: &[Cow<str>]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn secret_env(name: &str) -> Value {
        json!({"name": "X", "type": "SECRET",
               "secret": {"type": "REFERENCE", "reference": {"name": name}}})
    }

    /// A call with everything the check reads, among fields it does not.
    fn full_call() -> Value {
        json!({
            "type": "ACCEPT",
            "framework_id": {"value": "fw-1"},
            "subscribe": {"framework_info": {
                "user": "alice", "name": "x", "principal": "p1",
                "roles": ["a", "b"], "role": "c", "capabilities": [{"type": "MULTI_ROLE"}]}},
            "accept": {"offer_ids": [{"value": "o1"}], "operations": [
                {"type": "LAUNCH", "launch": {"task_infos": [
                    {"name": "t1", "task_id": {"value": "t1"},
                     "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}],
                     "command": {"value": "sleep 1", "user": "bob",
                                 "environment": {"variables": [
                                     {"name": "PLAIN", "value": "1"},
                                     secret_env("/team-a/db")]}},
                     "container": {"type": "MESOS", "volumes": [
                         {"container_path": "s", "mode": "RO",
                          "source": {"type": "SECRET", "secret": {"type": "REFERENCE",
                                     "reference": {"name": "/team-a/file"}}}}]}},
                    {"name": "t2", "task_id": {"value": "t2"}, "command": {"shell": true}}]}},
                {"type": "LAUNCH_GROUP", "launch_group": {
                    "executor": {"executor_id": {"value": "e"}},
                    "task_group": {"tasks": [{"name": "g1", "command": {"user": "carol",
                        "environment": {"variables": [secret_env("/team-b/key")]}}}]}}},
                {"type": "RESERVE", "reserve": {"resources": [
                    {"name": "cpus", "role": "r1", "reservations": [
                        {"type": "DYNAMIC", "role": "r2"}, {"role": "r3"}]},
                    {"name": "mem"}]}}]}
        })
    }

    #[test]
    fn the_peek_finds_every_fact_the_check_reads() {
        let body = serde_json::to_vec(&full_call()).expect("serialises");
        let f = peeked(&body);
        assert_eq!(f.kind.as_deref(), Some("ACCEPT"));
        assert_eq!(f.principal.as_deref(), Some("p1"));
        assert_eq!(f.user.as_deref(), Some("alice"));
        assert_eq!(strs(&f.roles), ["a", "b", "c", "r1", "r2", "r3"]);
        assert_eq!(f.tasks.len(), 3);
        assert_eq!(f.tasks[0].user.as_deref(), Some("bob"));
        assert_eq!(strs(&f.tasks[0].secrets), ["/team-a/db", "/team-a/file"]);
        assert_eq!(f.tasks[1], TaskFacts::default());
        assert_eq!(f.tasks[2].user.as_deref(), Some("carol"));
        assert_eq!(strs(&f.tasks[2].secrets), ["/team-b/key"]);
    }

    #[test]
    fn the_peek_and_the_lenient_reading_agree() {
        let bodies = [
            full_call(),
            json!({"type": "ACKNOWLEDGE", "framework_id": {"value": "f"},
                   "acknowledge": {"agent_id": {"value": "a"}, "task_id": {"value": "t"},
                                   "uuid": "AAAAAAAAAAAAAAAAAAAAAA=="}}),
            json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u",
                   "name": "n", "roles": null, "principal": null}}}),
            json!({"type": "ACCEPT", "accept": {"operations": [{"type": "LAUNCH",
                   "launch": {"task_infos": [{"command": null, "container": {"volumes": [
                       {"source": {"type": "SANDBOX_PATH"}}]}}]}}]}}),
            json!({"subscribe": null, "accept": {"operations": null}}),
            json!({}),
        ];
        for b in bodies {
            let bytes = serde_json::to_vec(&b).expect("serialises");
            assert_eq!(peeked(&bytes), lenient(&bytes), "{b}");
        }
    }

    #[test]
    fn strings_borrow_from_the_body_unless_escaped() {
        let body = br#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"a\u006c","principal":"p"}}}"#;
        let f = CallFacts::read(body).expect("JSON");
        assert!(matches!(f.principal, Some(Cow::Borrowed("p"))));
        assert!(matches!(f.user.as_ref(), Some(Cow::Owned(u)) if u == "al"));
    }

    #[test]
    fn oddly_typed_fields_are_read_leniently() {
        // Numbers among roles, a string where an object was expected, a duplicated key: the
        // peek gives up and the lenient reading still finds every string it can.
        let body = br#"{"type":"ACCEPT","subscribe":{"framework_info":{"roles":["a",1],"role":"b","user":"u"}},
            "accept":{"operations":[{"launch":{"task_infos":[{"command":"x"},
              {"command":{"user":"v","environment":{"variables":[{"secret":{"reference":{"name":"/s"}}}]}}}]}},
              {"reserve":{"resources":[{"role":"r","reservations":[{"role":5},{"role":"q"}]}]}}]}}"#;
        assert!(serde_json::from_slice::<CallPeek>(body).is_err());
        let f = CallFacts::read(body).expect("JSON");
        assert_eq!(strs(&f.roles), ["a", "b", "r", "q"]);
        assert_eq!(f.user.as_deref(), Some("u"));
        assert_eq!(f.tasks.len(), 2);
        assert_eq!(f.tasks[1].user.as_deref(), Some("v"));
        assert_eq!(strs(&f.tasks[1].secrets), ["/s"]);

        let dup = br#"{"type":"SUBSCRIBE","type":"ACCEPT"}"#;
        assert_eq!(
            CallFacts::read(dup).and_then(|f| f.kind).as_deref(),
            Some("ACCEPT")
        );
        assert_eq!(CallFacts::read(b"{not json"), None);
    }

    #[test]
    fn a_launch_group_cannot_hide_behind_a_launch() {
        // A LAUNCH_GROUP operation that also carries an empty `launch`: its group's tasks are
        // still read.
        let body = serde_json::to_vec(&json!({"type": "ACCEPT", "accept": {"operations": [
            {"type": "LAUNCH_GROUP", "launch": {"task_infos": []},
             "launch_group": {"task_group": {"tasks": [{"command": {"environment": {
                 "variables": [secret_env("/hidden")]}}}]}}}]}}))
        .expect("serialises");
        for f in [peeked(&body), lenient(&body)] {
            assert_eq!(f.tasks.len(), 1);
            assert_eq!(strs(&f.tasks[0].secrets), ["/hidden"]);
        }
    }
}
