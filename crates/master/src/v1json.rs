//! Protobuf-JSON (v1) shapes of agents, frameworks and tasks, shared by the v1 operator API and the
//! event bus (`SUBSCRIBE`).

use serde_json::{json, Value};

use crate::core::{AgentEntry, AgentStatus, FrameworkEntry};
use crate::task::TaskEntry;

pub(crate) fn nanos(secs: f64) -> Value {
    json!({"nanoseconds": (secs * 1e9) as i64})
}

/// Mesos `AgentInfo`.
pub(crate) fn agent_info(a: &AgentEntry) -> Value {
    let port = a
        .record
        .address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    let mut info = json!({
        "id": {"value": a.record.id.as_str()},
        "hostname": a.record.hostname,
        "port": port,
        "resources": a.record.resources,
        "attributes": a.record.attributes,
    });
    if let Some(d) = &a.record.domain {
        info["domain"] = d.to_mesos_json();
    }
    info
}

/// A v1 `Task`.
pub(crate) fn task(t: &TaskEntry) -> Value {
    let statuses: Vec<Value> = t
        .statuses
        .iter()
        .map(|s| {
            let mut v = json!({"task_id": {"value": t.spec.task_id.as_str()}, "state": s.state,
                   "timestamp": s.timestamp, "agent_id": {"value": t.agent_id().as_str()},
                   "message": s.message(), "reason": s.reason()});
            if let Some(h) = s.healthy {
                v["healthy"] = h.into();
            }
            v
        })
        .collect();
    json!({
        "name": t.spec.name,
        "task_id": {"value": t.spec.task_id.as_str()},
        "framework_id": {"value": t.spec.framework_id.as_str()},
        "agent_id": {"value": t.agent_id().as_str()},
        "state": t.state,
        "resources": t.spec.resources,
        "statuses": statuses,
    })
}

/// An agent (`GET_AGENTS` entry, `AGENT_ADDED` payload).
pub(crate) fn agent(a: &AgentEntry) -> Value {
    json!({
        "agent_info": agent_info(a),
        "active": a.status == AgentStatus::Active,
        "deactivated": false,
        "version": crate::MESOS_VERSION,
        "pid": format!("slave(1)@{}", a.record.address),
        "registered_time": nanos(a.record.registered_time),
        "total_resources": a.record.resources,
        "allocated_resources": a.used,
        "offered_resources": a.offered,
        "capabilities": [{"type": "MULTI_ROLE"}, {"type": "HIERARCHICAL_ROLE"}],
    })
}

/// A framework (`GET_FRAMEWORKS` entry, `FRAMEWORK_ADDED` payload).
pub(crate) fn framework(f: &FrameworkEntry) -> Value {
    json!({
        "framework_info": f.info,
        "active": f.conn.is_some() && !f.suppressed,
        "connected": f.conn.is_some(),
        "recovered": f.recovered,
        "registered_time": nanos(f.registered_time),
        "allocated_resources": f.used,
        "offered_resources": f.offered,
    })
}
