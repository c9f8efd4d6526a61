//! The v1 operator API (`POST /api/v1`, also `/api/v1/operator` by longest-prefix routing):
//! `{"type":"GET_X"}` in, `{"type":"GET_X","get_x":{…}}` out, protobuf-JSON shapes (ids as
//! `{"value":…}`, resources as `Resource` arrays). Read calls and TEARDOWN; the rest answer 400
//! naming the call as unsupported.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use meseta_api::recordio;
use meseta_types::FrameworkId;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::error;
use crate::core::{AgentEntry, AgentStatus, Core};
use crate::task::TaskEntry;
use crate::{registry, v1json, Master};

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
    if kind == "SUBSCRIBE" {
        return subscribe(&m);
    }
    if kind == "RESERVE_RESOURCES" || kind == "UNRESERVE_RESOURCES" {
        let key = kind.to_ascii_lowercase();
        return match super::reservations::v1_request(&call[key.as_str()], "resources") {
            Ok((agent, res)) => {
                let reserve = kind == "RESERVE_RESOURCES";
                super::reservations::apply(&m, &agent, &res, reserve).await
            }
            Err(why) => error(StatusCode::BAD_REQUEST, why),
        };
    }
    if kind == "CREATE_VOLUMES" || kind == "DESTROY_VOLUMES" {
        let key = kind.to_ascii_lowercase();
        return match super::reservations::v1_request(&call[key.as_str()], "volumes") {
            Ok((agent, vols)) => {
                super::volumes::apply(&m, &agent, &vols, kind == "CREATE_VOLUMES").await
            }
            Err(why) => error(StatusCode::BAD_REQUEST, why),
        };
    }
    if let Some(resp) = super::maintenance::v1_call(&m, kind, &call).await {
        return resp;
    }
    if kind == "UPDATE_QUOTA" {
        return update_quota(&m, &call["update_quota"]).await;
    }
    if kind == "UPDATE_WEIGHTS" {
        let infos = call["update_weights"]["weight_infos"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut new = Vec::new();
        for w in infos {
            match (w["role"].as_str(), w["weight"].as_f64()) {
                (Some(r), Some(x)) => new.push((r.to_string(), x)),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("weight info needs 'role' and 'weight': {w}"),
                    )
                }
            }
        }
        return super::roles::set_weights(&m, new).await;
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
        "GET_WEIGHTS" => json!({"weight_infos": core.weights.iter()
            .map(|(r, w)| json!({"role": r, "weight": w})).collect::<Vec<_>>()}),
        "GET_QUOTA" => json!({"status": {"configs": core.quotas.iter()
            .map(|(r, q)| super::roles::config_json(r, q)).collect::<Vec<_>>()}}),
        "GET_ROLES" => json!({"roles": core.alloc.roles().iter().map(|r| json!({
            "name": r.name, "weight": r.weight,
            "frameworks": r.frameworks.iter().map(|f| json!({"value": f.as_str()})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()}),
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

impl Core {
    fn v1_agents(&self) -> Value {
        let (live, recovered): (Vec<&AgentEntry>, Vec<&AgentEntry>) = self
            .agents
            .values()
            .partition(|a| a.status != AgentStatus::Recovered);
        json!({
            "agents": live.iter().map(|a| {
                let mut v = v1json::agent(a);
                v["total_resources"] = serde_json::to_value(self.agent_total(&a.record.id)).unwrap_or_default();
                v
            }).collect::<Vec<_>>(),
            "recovered_agents": recovered.iter().map(|a| v1json::agent_info(a)).collect::<Vec<_>>(),
        })
    }

    fn v1_frameworks(&self) -> Value {
        json!({
            "frameworks": self.frameworks.values().map(v1json::framework).collect::<Vec<_>>(),
            "completed_frameworks": self.completed_frameworks.iter().map(|f| {
                let mut v = v1json::framework(f);
                v["unregistered_time"] = v1json::nanos(f.unregistered_time);
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
            .flat_map(|f| f.completed_tasks.iter().map(v1json::task))
            .collect();
        json!({
            "tasks": live.into_iter().map(v1json::task).collect::<Vec<_>>(),
            "unreachable_tasks": unreachable.into_iter().map(v1json::task).collect::<Vec<_>>(),
            "completed_tasks": completed,
        })
    }
}

/// `SUBSCRIBE`: a RecordIO stream — `SUBSCRIBED{get_state}` then every bus event, with heartbeats.
/// A subscriber that falls behind the bus is disconnected rather than silently skipped.
fn subscribe(m: &Master) -> Response {
    let (rx, first, heartbeat) = {
        let core = m.core();
        let rx = core.bus.subscribe();
        let hb = core.config().framework_heartbeat;
        let state = json!({
            "get_tasks": core.v1_tasks(), "get_executors": {"executors": []},
            "get_frameworks": core.v1_frameworks(), "get_agents": core.v1_agents(),
        });
        let first = json!({"type": "SUBSCRIBED", "subscribed": {
            "get_state": state, "heartbeat_interval_seconds": hb.as_secs_f64()}});
        (rx, first, hb)
    };
    let record = |v: &Value| Bytes::from(recordio::encode(&recordio::to_ascii_json(v)));
    let head = futures::stream::once(futures::future::ready(Ok::<_, std::io::Error>(record(
        &first,
    ))));
    let tick = tokio::time::interval_at(
        Instant::now() + heartbeat,
        heartbeat.max(Duration::from_millis(100)),
    );
    let events = futures::stream::unfold((rx, tick), move |(mut rx, mut tick)| async move {
        let v = tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => ev.to_v1(),
                Err(_) => return None, // lagged or closed: end the stream
            },
            _ = tick.tick() => json!({"type": "HEARTBEAT"}),
        };
        Some((Ok(record(&v)), (rx, tick)))
    });
    let mut resp = Response::new(Body::from_stream(head.chain(events)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// `UPDATE_QUOTA {force, quota_configs:[{role, guarantees:{cpus:{value}}, limits:{…}}]}`: all
/// configs apply, or none (a refused one undoes those before it).
async fn update_quota(m: &Master, body: &Value) -> Response {
    let force = body["force"].as_bool().unwrap_or(false);
    let mut configs = Vec::new();
    for c in body["quota_configs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let Some(role) = c["role"].as_str() else {
            return error(
                StatusCode::BAD_REQUEST,
                format!("quota config without 'role': {c}"),
            );
        };
        let mut q = meseta_allocator::Quota::default();
        for (field, map) in [("guarantees", &mut q.guarantees), ("limits", &mut q.limits)] {
            for (name, v) in c[field].as_object().cloned().unwrap_or_default() {
                let Some(x) = v["value"].as_f64() else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("{field}.{name} needs a numeric 'value'"),
                    );
                };
                match meseta_types::Scalar::from_f64(x) {
                    Ok(s) => map.insert(name, s),
                    Err(e) => {
                        return error(StatusCode::BAD_REQUEST, format!("{field}.{name}: {e}"))
                    }
                };
            }
        }
        configs.push((role.to_string(), q));
    }
    let before: Vec<(String, Option<meseta_allocator::Quota>)> = {
        let core = m.core();
        configs
            .iter()
            .map(|(r, _)| (r.clone(), core.quotas.get(r).cloned()))
            .collect()
    };
    for (i, (role, q)) in configs.iter().enumerate() {
        let resp = super::roles::set_quota(m, role, Some(q.clone()), force).await;
        if !resp.status().is_success() {
            for (role, old) in before.iter().take(i) {
                let _ = super::roles::set_quota(m, role, old.clone(), true).await;
            }
            return resp;
        }
    }
    StatusCode::OK.into_response()
}
