//! What the DNS records are built from: the tasks, agents and frameworks of the master, read from
//! its v1 JSON (the `GET_STATE` snapshot, then the event bus's payloads). Pure: agent addresses
//! are resolved by the feed ([`crate::feed`]) and stored here.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use meseta_master::bus::ClusterEvent;
use serde_json::Value;

/// A task as DNS sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// `TaskInfo.name` (Marathon: the app id with `/` → `_`).
    pub name: String,
    /// Its framework.
    pub framework_id: String,
    /// The agent it runs on.
    pub agent_id: String,
    /// `TASK_RUNNING`, `TASK_STAGING`, …
    pub state: String,
    /// The latest health report, `None` when the task has none (no health checks, or none yet).
    pub healthy: Option<bool>,
    /// Host ports of the task (its `ports` resources), ascending.
    pub ports: Vec<u16>,
}

impl Task {
    /// Whether the task is served: running, and healthy if it reports health.
    pub fn is_served(&self) -> bool {
        self.state == "TASK_RUNNING" && self.healthy != Some(false)
    }
}

/// An agent as DNS sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Agent {
    /// The host name it registered with.
    pub hostname: String,
    /// The IP literal of the address it registered (`pid`), if it is a usable one.
    pub address_ip: Option<Ipv4Addr>,
    /// Its IPv4 address, once known (the registered address, or the host name resolved).
    pub ip: Option<Ipv4Addr>,
}

/// The master's state, as far as DNS cares.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Tasks by id.
    pub tasks: HashMap<String, Task>,
    /// Agents by id (unreachable ones are removed).
    pub agents: HashMap<String, Agent>,
    /// Framework names by id.
    pub frameworks: HashMap<String, String>,
    /// The leading master's IP and HTTP port.
    pub master: Option<(Ipv4Addr, u16)>,
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// Host ports of a v1 `resources` array (`ports` ranges).
pub fn ports(resources: &Value) -> Vec<u16> {
    let mut out = Vec::new();
    for r in resources.as_array().into_iter().flatten() {
        if r.get("name").and_then(Value::as_str) != Some("ports") {
            continue;
        }
        let ranges = r.pointer("/ranges/range").and_then(Value::as_array);
        for range in ranges.into_iter().flatten() {
            let b = range.get("begin").and_then(Value::as_u64).unwrap_or(1);
            let e = range.get("end").and_then(Value::as_u64).unwrap_or(0);
            // A task holds a handful of ports; a huge range is not a task's.
            for p in (b..=e.min(b.saturating_add(1024))).filter_map(|p| u16::try_from(p).ok()) {
                out.push(p);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// A task from its v1 `Task` JSON.
pub fn task(v: &Value) -> Option<(String, Task)> {
    let id = s(v, &["task_id", "value"])?.to_string();
    let healthy = v
        .get("statuses")
        .and_then(Value::as_array)
        .and_then(|st| st.last())
        .and_then(|st| st.get("healthy"))
        .and_then(Value::as_bool);
    Some((
        id,
        Task {
            name: s(v, &["name"]).unwrap_or_default().to_string(),
            framework_id: s(v, &["framework_id", "value"])?.to_string(),
            agent_id: s(v, &["agent_id", "value"])?.to_string(),
            state: s(v, &["state"]).unwrap_or("TASK_STAGING").to_string(),
            healthy,
            ports: ports(v.get("resources").unwrap_or(&Value::Null)),
        },
    ))
}

/// An agent from its v1 agent JSON (`GET_AGENTS` entry, `AGENT_ADDED` payload); `ip` is left
/// for the feed to fill in.
pub fn agent(v: &Value) -> Option<(String, Agent)> {
    let id = s(v, &["agent_info", "id", "value"])?.to_string();
    let hostname = s(v, &["agent_info", "hostname"])
        .unwrap_or_default()
        .to_string();
    // `pid` is `slave(1)@<ip>:<port>`, the address of the agent's HTTP server.
    let address_ip = s(v, &["pid"])
        .and_then(|p| p.rsplit_once('@'))
        .and_then(|(_, addr)| addr.parse::<std::net::SocketAddr>().ok())
        .and_then(|a| match a.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
            _ => None,
        });
    Some((
        id,
        Agent {
            hostname,
            address_ip,
            ip: address_ip,
        },
    ))
}

fn framework(v: &Value) -> Option<(String, String)> {
    Some((
        s(v, &["framework_info", "id", "value"])?.to_string(),
        s(v, &["framework_info", "name"])
            .unwrap_or_default()
            .to_string(),
    ))
}

impl Model {
    /// The model of a v1 `GET_STATE` payload.
    pub fn from_v1_state(state: &Value) -> Model {
        let mut m = Model::default();
        let list = |path: &str| {
            state
                .pointer(path)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        for t in list("/get_tasks/tasks") {
            if let Some((id, t)) = task(&t) {
                m.tasks.insert(id, t);
            }
        }
        for a in list("/get_agents/agents") {
            if let Some((id, a)) = agent(&a) {
                m.agents.insert(id, a);
            }
        }
        for f in list("/get_frameworks/frameworks") {
            if let Some((id, name)) = framework(&f) {
                m.frameworks.insert(id, name);
            }
        }
        m
    }

    /// Apply one bus event; returns whether anything DNS shows may have changed.
    pub fn apply(&mut self, ev: &ClusterEvent) -> bool {
        match ev {
            ClusterEvent::TaskAdded(v) => match task(v) {
                Some((id, t)) => self.tasks.insert(id, t.clone()) != Some(t),
                None => false,
            },
            ClusterEvent::TaskUpdated { status, .. } => {
                let Some(id) = s(status, &["task_id", "value"]) else {
                    return false;
                };
                let state = s(status, &["state"]).map(str::to_string);
                let healthy = status.get("healthy").and_then(Value::as_bool);
                let terminal = state.as_deref().is_some_and(is_terminal);
                if terminal {
                    return self.tasks.remove(id).is_some();
                }
                let Some(t) = self.tasks.get_mut(id) else {
                    return false;
                };
                let before = t.is_served();
                if let Some(state) = state {
                    t.state = state;
                }
                if healthy.is_some() {
                    t.healthy = healthy;
                }
                before != t.is_served()
            }
            ClusterEvent::AgentAdded(v) => match agent(v) {
                Some((id, mut a)) => {
                    // Keep a resolved address across re-registrations of the same host.
                    if let Some(old) = self.agents.get(&id) {
                        if a.ip.is_none() && old.hostname == a.hostname {
                            a.ip = old.ip;
                        }
                    }
                    self.agents.insert(id, a);
                    true
                }
                None => false,
            },
            ClusterEvent::AgentRemoved(id) => self.agents.remove(id.as_str()).is_some(),
            ClusterEvent::FrameworkAdded(v) | ClusterEvent::FrameworkUpdated(v) => {
                match framework(v) {
                    Some((id, name)) => self.frameworks.insert(id, name.clone()) != Some(name),
                    None => false,
                }
            }
            ClusterEvent::FrameworkRemoved(info) => match s(info, &["id", "value"]) {
                Some(id) => self.frameworks.remove(id).is_some(),
                None => false,
            },
        }
    }
}

fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_LOST"
            | "TASK_ERROR"
            | "TASK_DROPPED"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_types::{AgentId, FrameworkId, TaskState};
    use serde_json::json;

    fn task_json(id: &str, state: &str) -> Value {
        json!({"name": "prod_web", "task_id": {"value": id}, "framework_id": {"value": "fw"},
               "agent_id": {"value": "a1"}, "state": state,
               "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                             {"name": "ports", "type": "RANGES",
                              "ranges": {"range": [{"begin": 31001, "end": 31002}]}}],
               "statuses": [{"state": state}]})
    }

    #[test]
    fn tasks_agents_and_frameworks_come_from_v1_json() {
        let state = json!({
            "get_tasks": {"tasks": [task_json("t1", "TASK_RUNNING")]},
            "get_agents": {"agents": [{"agent_info": {"id": {"value": "a1"}, "hostname": "h1"},
                                       "pid": "slave(1)@10.0.0.7:5051"}]},
            "get_frameworks": {"frameworks": [{"framework_info": {"id": {"value": "fw"}, "name": "marathon"}}]},
        });
        let m = Model::from_v1_state(&state);
        let t = &m.tasks["t1"];
        assert_eq!(t.ports, vec![31001, 31002]);
        assert!(t.is_served());
        assert_eq!(m.agents["a1"].ip, Some(Ipv4Addr::new(10, 0, 0, 7)));
        assert_eq!(m.frameworks["fw"], "marathon");
    }

    #[test]
    fn an_unspecified_agent_address_leaves_the_ip_to_resolve() {
        let (_, a) = agent(
            &json!({"agent_info": {"id": {"value": "a"}, "hostname": "h"},
                                   "pid": "slave(1)@0.0.0.0:5051"}),
        )
        .expect("agent");
        assert_eq!(a.ip, None);
    }

    #[test]
    fn events_move_tasks_in_and_out_of_service() {
        let mut m = Model::default();
        assert!(m.apply(&ClusterEvent::TaskAdded(task_json("t1", "TASK_STAGING"))));
        assert!(!m.tasks["t1"].is_served());
        let update = |state: TaskState, st: &str, healthy: Option<bool>| {
            let mut status = json!({"task_id": {"value": "t1"}, "state": st});
            if let Some(h) = healthy {
                status["healthy"] = h.into();
            }
            ClusterEvent::TaskUpdated {
                framework_id: FrameworkId::new("fw"),
                status,
                state,
            }
        };
        assert!(m.apply(&update(TaskState::Running, "TASK_RUNNING", None)));
        assert!(m.tasks["t1"].is_served());
        assert!(m.apply(&update(TaskState::Running, "TASK_RUNNING", Some(false))));
        assert!(!m.tasks["t1"].is_served(), "unhealthy tasks are not served");
        assert!(m.apply(&update(TaskState::Running, "TASK_RUNNING", Some(true))));
        assert!(m.apply(&update(TaskState::Killed, "TASK_KILLED", None)));
        assert!(m.tasks.is_empty());
        assert!(!m.apply(&ClusterEvent::AgentRemoved(AgentId::new("nope"))));
    }
}
