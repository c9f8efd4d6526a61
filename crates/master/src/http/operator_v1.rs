//! The v1 operator API (`POST /api/v1`, also `/api/v1/operator` by longest-prefix routing):
//! `{"type":"GET_X"}` in, `{"type":"GET_X","get_x":{…}}` out, protobuf-JSON shapes (ids as
//! `{"value":…}`, resources as `Resource` arrays). Read calls and TEARDOWN; the rest answer 400
//! naming the call as unsupported.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use meseta_types::FrameworkId;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::error;
use crate::core::{AgentEntry, AgentStatus, Core, FrameworkEntry, TaskEntry};
use crate::{registry, Master};

pub(super) async fn call(State(m): State<Master>, body: Bytes) -> Response {
    let call: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("Failed to parse body into JSON: {e}"),
            )
        }
    };
    let Some(kind) = call["type"].as_str() else {
        return error(StatusCode::BAD_REQUEST, "expecting 'type' to be present");
    };
    if kind == "TEARDOWN" {
        return teardown(&m, &call).await;
    }
    let core = m.core();
    let payload = match kind {
        "GET_HEALTH" => json!({"healthy": true}),
        "GET_VERSION" => {
            json!({"version_info": {"version": crate::MESOS_VERSION, "meseta_version": env!("CARGO_PKG_VERSION")}})
        }
        "GET_FLAGS" => json!({"flags": core.state_view().flags.iter()
            .map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>()}),
        "GET_METRICS" => json!({"metrics": core.metrics_snapshot().iter()
            .map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>()}),
        "GET_MASTER" => {
            json!({"master_info": core.master_info(), "start_time": core.start_time, "elected_time": core.start_time})
        }
        "GET_AGENTS" => core.v1_agents(),
        "GET_FRAMEWORKS" => core.v1_frameworks(),
        "GET_TASKS" => core.v1_tasks(),
        "GET_EXECUTORS" => json!({"executors": []}),
        "GET_STATE" => json!({
            "get_tasks": core.v1_tasks(), "get_executors": {"executors": []},
            "get_frameworks": core.v1_frameworks(), "get_agents": core.v1_agents(),
        }),
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("call type '{other}' is not supported by this master"),
            );
        }
    };
    let key = kind.to_ascii_lowercase();
    Json(json!({"type": kind, key: payload})).into_response()
}

async fn teardown(m: &Master, call: &Value) -> Response {
    let Some(id) = call["teardown"]["framework_id"]["value"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "expecting 'teardown.framework_id.value' to be present",
        );
    };
    let id = FrameworkId::new(id);
    {
        let mut core = m.core();
        if !core.frameworks.contains_key(&id) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("no framework found with id '{id}'"),
            );
        }
        core.teardown(&id);
        core.allocate(Instant::now());
    }
    registry::forget_framework(m.store(), &id).await;
    StatusCode::OK.into_response()
}

fn nanos(secs: f64) -> Value {
    json!({"nanoseconds": (secs * 1e9) as i64})
}

fn agent_info(a: &AgentEntry) -> Value {
    let port = a
        .record
        .address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    json!({
        "id": {"value": a.record.id.as_str()},
        "hostname": a.record.hostname,
        "port": port,
        "resources": a.record.resources,
        "attributes": a.record.attributes,
    })
}

fn task_v1(t: &TaskEntry) -> Value {
    let statuses: Vec<Value> = t
        .statuses
        .iter()
        .map(|s| {
            json!({"task_id": {"value": t.spec.task_id.as_str()}, "state": s.state,
                   "timestamp": s.timestamp, "agent_id": {"value": t.agent_id.as_str()},
                   "message": s.message, "reason": s.reason})
        })
        .collect();
    json!({
        "name": t.spec.name,
        "task_id": {"value": t.spec.task_id.as_str()},
        "framework_id": {"value": t.spec.framework_id.as_str()},
        "agent_id": {"value": t.agent_id.as_str()},
        "state": t.state,
        "resources": t.spec.resources,
        "statuses": statuses,
    })
}

impl Core {
    fn v1_agents(&self) -> Value {
        let (live, recovered): (Vec<&AgentEntry>, Vec<&AgentEntry>) = self
            .agents
            .values()
            .partition(|a| a.status != AgentStatus::Recovered);
        json!({
            "agents": live.iter().map(|a| json!({
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
            })).collect::<Vec<_>>(),
            "recovered_agents": recovered.iter().map(|a| agent_info(a)).collect::<Vec<_>>(),
        })
    }

    fn v1_framework(&self, f: &FrameworkEntry) -> Value {
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

    fn v1_frameworks(&self) -> Value {
        json!({
            "frameworks": self.frameworks.values().map(|f| self.v1_framework(f)).collect::<Vec<_>>(),
            "completed_frameworks": self.completed_frameworks.iter().map(|f| {
                let mut v = self.v1_framework(f);
                v["unregistered_time"] = nanos(f.unregistered_time);
                v
            }).collect::<Vec<_>>(),
        })
    }

    fn v1_tasks(&self) -> Value {
        let (unreachable, live): (Vec<&TaskEntry>, Vec<&TaskEntry>) = self
            .tasks
            .values()
            .partition(|t| t.state == meseta_types::TaskState::Unreachable);
        let completed: Vec<Value> = self
            .frameworks
            .values()
            .chain(self.completed_frameworks.iter())
            .flat_map(|f| f.completed_tasks.iter().map(task_v1))
            .collect();
        json!({
            "tasks": live.into_iter().map(task_v1).collect::<Vec<_>>(),
            "unreachable_tasks": unreachable.into_iter().map(task_v1).collect::<Vec<_>>(),
            "completed_tasks": completed,
        })
    }
}
