//! The v1 operator API (`POST /api/v1`, also `/api/v1/operator` by longest-prefix routing):
//! `{"type":"GET_X"}` in, `{"type":"GET_X","get_x":{…}}` out, protobuf-JSON shapes (ids as
//! `{"value":…}`, resources as `Resource` arrays). The body parses into one typed [`Call`]
//! (`meseta_api::operator::v1`; a malformed call answers 400 naming the field, an unknown type
//! 400 naming the call); read calls answer from the core, changes run as one [`Command`].

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use meseta_allocator::{Quota, ResourceOp};
use meseta_api::operator::v1::Call;
use meseta_api::recordio;
use meseta_types::AgentId;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{error, run_command as run};
use crate::command::{Command, MaintenanceChange};
use crate::core::{AgentEntry, AgentStatus, Core};
use crate::task::TaskEntry;
use crate::{v1json, Master};

pub(super) async fn call(State(m): State<Master>, body: Bytes) -> Response {
    let call = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => Call::parse(&v),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("Failed to parse body into JSON: {e}"),
            )
        }
    };
    match call {
        Ok(call) => dispatch(&m, call).await,
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Run a parsed call: changes as one [`Command`], reads from the core.
async fn dispatch(m: &Master, call: Call) -> Response {
    let cmd = match call {
        Call::Subscribe => return subscribe(m),
        Call::Teardown { framework_id } => Command::Teardown(framework_id),
        Call::ReserveResources {
            agent_id,
            resources,
        } => resources_cmd(agent_id, ResourceOp::Reserve(resources)),
        Call::UnreserveResources {
            agent_id,
            resources,
        } => resources_cmd(agent_id, ResourceOp::Unreserve(resources)),
        Call::CreateVolumes { agent_id, volumes } => {
            resources_cmd(agent_id, ResourceOp::Create(volumes))
        }
        Call::DestroyVolumes { agent_id, volumes } => {
            resources_cmd(agent_id, ResourceOp::Destroy(volumes))
        }
        Call::UpdateMaintenanceSchedule { schedule } => {
            Command::Maintenance(MaintenanceChange::Schedule(schedule))
        }
        Call::StartMaintenance { machines } => {
            Command::Maintenance(MaintenanceChange::Down(machines))
        }
        Call::StopMaintenance { machines } => Command::Maintenance(MaintenanceChange::Up(machines)),
        Call::UpdateQuota { force, configs } => Command::Quotas {
            configs: configs
                .into_iter()
                .map(|c| {
                    let q = Quota {
                        guarantees: c.guarantees,
                        limits: c.limits,
                    };
                    (c.role, q)
                })
                .collect(),
            force,
        },
        Call::UpdateWeights { weights } => Command::Weights(weights),
        read => return Json(read_call(m, &read)).into_response(),
    };
    let ok = match cmd {
        Command::Resources { .. } => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    run(m, cmd, ok).await
}

fn resources_cmd(agent: AgentId, op: ResourceOp) -> Command {
    Command::Resources { agent, op }
}

/// The answer to a read call: `{"type": T, "t": payload}`.
fn read_call(m: &Master, call: &Call) -> Value {
    let core = m.core();
    let payload = match call {
        Call::GetHealth => json!({"healthy": true}),
        Call::GetVersion => {
            json!({"version_info": {"version": crate::MESOS_VERSION, "meseta_version": env!("CARGO_PKG_VERSION")}})
        }
        Call::GetFlags => json!({"flags": core.state_view().flags.iter()
            .map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>()}),
        Call::GetMetrics => json!({"metrics": core.metrics_snapshot().iter()
            .map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>()}),
        Call::GetMaster => {
            json!({"master_info": core.master_info(), "start_time": core.start_time(), "elected_time": core.start_time()})
        }
        Call::GetAgents => core.v1_agents(),
        Call::GetFrameworks => core.v1_frameworks(),
        Call::GetTasks => core.v1_tasks(),
        Call::GetWeights => json!({"weight_infos": core.weights.iter()
            .map(|(r, w)| json!({"role": r, "weight": w})).collect::<Vec<_>>()}),
        Call::GetQuota => json!({"status": {"configs": core.quotas.iter()
            .map(|(r, q)| super::roles::config_json(r, q)).collect::<Vec<_>>()}}),
        Call::GetRoles => json!({"roles": core.alloc.roles().iter().map(|r| json!({
            "name": r.name, "weight": r.weight,
            "frameworks": r.frameworks.iter().map(|f| json!({"value": f.as_str()})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()}),
        Call::GetState => core.v1_state(),
        Call::GetMaintenanceSchedule => json!({"schedule": core.ops.maint.schedule}),
        Call::GetMaintenanceStatus => json!({"status": core.maintenance_status()}),
        // GET_EXECUTORS (changes never get here).
        _ => json!({"executors": []}),
    };
    let kind = call.type_name();
    json!({"type": kind, kind.to_ascii_lowercase(): payload})
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

    /// `GET_STATE`'s payload (also the first record of `SUBSCRIBE`).
    pub(crate) fn v1_state(&self) -> Value {
        json!({
            "get_tasks": self.v1_tasks(), "get_executors": {"executors": []},
            "get_frameworks": self.v1_frameworks(), "get_agents": self.v1_agents(),
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
        let state = core.v1_state();
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
