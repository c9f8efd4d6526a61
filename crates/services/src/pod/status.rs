//! Marathon 1.10 `PodStatus` (`GET /v2/pods/{id}::status`, `/v2/pods/::status`) from what is
//! known of a pod's instances.
//!
//! An instance is `PENDING` until a container reports, `STAGING` while a container has not
//! reached `TASK_RUNNING`, `TERMINAL` once a container ended, `DEGRADED` while running with a
//! container unhealthy, and `STABLE` when every container runs and none is unhealthy. The pod
//! is `TERMINAL` while it is being removed, `DEPLOYING` during a deployment, `STABLE` once at
//! least `scaling.instances` instances are stable, `DEGRADED` otherwise.

use std::collections::BTreeMap;

use meseta_api::marathon::pod::PodDefinition;
use meseta_types::TaskState;
use serde_json::{json, Value};

/// What is known of one container of one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerState {
    /// Container name.
    pub name: String,
    /// Its task id.
    pub task_id: String,
    /// Last task state, when one was reported.
    pub state: Option<TaskState>,
    /// Health (`None`: no check or no result yet).
    pub healthy: Option<bool>,
    /// When `state` was entered (ISO 8601).
    pub since: String,
    /// Host port of each endpoint of this container.
    pub ports: BTreeMap<String, u64>,
    /// Last status message.
    pub message: Option<String>,
}

/// What is known of one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceState {
    /// Instance id.
    pub id: String,
    /// Agent id and hostname, once placed.
    pub agent: Option<(String, String)>,
    /// Version of the pod definition it runs.
    pub version: String,
    /// When it was created (ISO 8601).
    pub since: String,
    /// Its containers, in the pod's order.
    pub containers: Vec<ContainerState>,
}

/// `PodInstanceState`.
pub fn instance_status(i: &InstanceState) -> &'static str {
    let states: Vec<Option<TaskState>> = i.containers.iter().map(|c| c.state).collect();
    if states.iter().all(Option::is_none) {
        "PENDING"
    } else if states.iter().flatten().any(|s| s.is_terminal()) {
        "TERMINAL"
    } else if states.iter().any(|s| *s != Some(TaskState::Running)) {
        "STAGING"
    } else if i.containers.iter().any(|c| c.healthy == Some(false)) {
        "DEGRADED"
    } else {
        "STABLE"
    }
}

/// `PodState` of the whole pod.
pub fn pod_status(
    pod: &PodDefinition,
    instances: &[InstanceState],
    deploying: bool,
    terminating: bool,
) -> &'static str {
    let stable = instances
        .iter()
        .filter(|i| instance_status(i) == "STABLE")
        .count();
    if terminating {
        "TERMINAL"
    } else if deploying {
        "DEPLOYING"
    } else if stable >= pod.scaling.instances as usize {
        "STABLE"
    } else {
        "DEGRADED"
    }
}

fn container_json(pod: &PodDefinition, c: &ContainerState, now: &str) -> Value {
    let spec = pod.containers.iter().find(|s| s.name == c.name);
    let resources = spec.map(|s| json!(s.resources)).unwrap_or(Value::Null);
    let endpoints: Vec<Value> = c
        .ports
        .iter()
        .map(|(n, p)| json!({"name": n, "allocatedHostPort": p}))
        .collect();
    let mut v = json!({
        "name": c.name,
        "status": c.state.map(|s| s.as_str()).unwrap_or("TASK_STAGING"),
        "statusSince": c.since,
        "containerId": c.task_id,
        "conditions": c.healthy.map(|h| vec![json!({
            "name": "healthy", "value": h.to_string(), "lastChanged": c.since, "lastUpdated": now
        })]).unwrap_or_default(),
        "endpoints": endpoints,
        "resources": resources,
        "lastUpdated": now,
        "lastChanged": c.since,
    });
    if let (Some(m), Some(o)) = (&c.message, v.as_object_mut()) {
        o.insert("message".into(), json!(m));
    }
    v
}

/// One `PodInstanceStatus`.
pub fn instance_json(pod: &PodDefinition, i: &InstanceState, now: &str) -> Value {
    let (agent_id, host) = i.agent.clone().unwrap_or_default();
    let resources = super::group::instance_resources(pod)
        .map(|r| json!({"cpus": r.cpus(), "mem": r.mem(), "disk": r.disk(), "gpus": r.gpus()}))
        .unwrap_or(Value::Null);
    json!({
        "id": i.id,
        "status": instance_status(i),
        "statusSince": i.since,
        "conditions": [],
        "agentHostname": host,
        "agentId": agent_id,
        "resources": resources,
        "networks": [],
        "containers": i.containers.iter().map(|c| container_json(pod, c, now)).collect::<Vec<_>>(),
        "specReference": format!("/v2/pods{}::versions/{}", pod.id, i.version),
        "localVolumes": [],
        "lastUpdated": now,
        "lastChanged": i.since,
    })
}

/// The `PodStatus` of `pod` (`status_since`: when the pod's state last changed).
pub fn pod_status_json(
    pod: &PodDefinition,
    instances: &[InstanceState],
    deploying: bool,
    terminating: bool,
    status_since: &str,
    now: &str,
) -> Value {
    json!({
        "id": pod.id,
        "spec": pod,
        "status": pod_status(pod, instances, deploying, terminating),
        "statusSince": status_since,
        "instances": instances.iter().map(|i| instance_json(pod, i, now)).collect::<Vec<_>>(),
        "terminationHistory": [],
        "lastUpdated": now,
        "lastChanged": status_since,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::pod_from_body;

    fn pod(n: u32) -> PodDefinition {
        pod_from_body(&json!({"id": "/p", "scaling": {"instances": n}, "containers": [
            {"name": "a", "resources": {"cpus": 0.1, "mem": 16}, "exec": {"command": {"shell": "x"}},
             "endpoints": [{"name": "web", "hostPort": 0}]},
            {"name": "b", "resources": {"cpus": 0.1, "mem": 16}, "exec": {"command": {"shell": "y"}}}
        ]}))
        .expect("pod")
    }

    fn inst(
        id: &str,
        a: Option<TaskState>,
        b: Option<TaskState>,
        b_healthy: Option<bool>,
    ) -> InstanceState {
        let c = |name: &str, state, healthy| ContainerState {
            name: name.into(),
            task_id: format!("{id}.{name}"),
            state,
            healthy,
            since: "2026-01-01T00:00:00.000Z".into(),
            ports: if name == "a" {
                BTreeMap::from([("web".to_owned(), 31000)])
            } else {
                BTreeMap::new()
            },
            message: None,
        };
        InstanceState {
            id: id.into(),
            agent: Some(("a1".into(), "host1".into())),
            version: "v1".into(),
            since: "2026-01-01T00:00:00.000Z".into(),
            containers: vec![c("a", a, None), c("b", b, b_healthy)],
        }
    }

    #[test]
    fn instance_states_follow_their_containers() {
        use TaskState::*;
        assert_eq!(instance_status(&inst("i", None, None, None)), "PENDING");
        assert_eq!(
            instance_status(&inst("i", Some(Running), Some(Staging), None)),
            "STAGING"
        );
        assert_eq!(
            instance_status(&inst("i", Some(Running), Some(Failed), None)),
            "TERMINAL"
        );
        assert_eq!(
            instance_status(&inst("i", Some(Running), Some(Running), Some(false))),
            "DEGRADED"
        );
        assert_eq!(
            instance_status(&inst("i", Some(Running), Some(Running), Some(true))),
            "STABLE"
        );
    }

    #[test]
    fn pod_is_stable_only_with_enough_stable_instances() {
        use TaskState::*;
        let good = inst("i1", Some(Running), Some(Running), None);
        let bad = inst("i2", Some(Running), Some(Running), Some(false));
        let p = pod(2);
        assert_eq!(
            pod_status(&p, &[good.clone(), bad.clone()], false, false),
            "DEGRADED"
        );
        assert_eq!(
            pod_status(&p, &[good.clone(), good.clone()], false, false),
            "STABLE"
        );
        assert_eq!(
            pod_status(&p, std::slice::from_ref(&good), true, false),
            "DEPLOYING"
        );
        assert_eq!(pod_status(&p, &[good], false, true), "TERMINAL");
    }

    #[test]
    fn status_json_has_marathon_keys() {
        use TaskState::*;
        let p = pod(1);
        let v = pod_status_json(
            &p,
            &[inst("i1", Some(Running), Some(Running), Some(true))],
            false,
            false,
            "t0",
            "t1",
        );
        assert_eq!(v["status"], "STABLE");
        assert_eq!(v["spec"]["id"], "/p");
        let i = &v["instances"][0];
        assert_eq!(i["agentHostname"], "host1");
        assert_eq!(i["status"], "STABLE");
        assert_eq!(i["containers"][0]["status"], "TASK_RUNNING");
        assert_eq!(
            i["containers"][0]["endpoints"][0]["allocatedHostPort"],
            31000
        );
        assert_eq!(i["containers"][1]["conditions"][0]["value"], "true");
        assert_eq!(i["specReference"], "/v2/pods/p::versions/v1");
    }
}
