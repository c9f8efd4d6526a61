//! More Mesos operator endpoints: `/master/frameworks`, `/master/state-summary`,
//! `/master/teardown` and `/metrics/snapshot` (the metric names mesos_exporter and dashboards read).

use std::collections::BTreeMap;

use super::{error, run_command as run};
use crate::command::Command;
use crate::core::{AgentStatus, Core};
use crate::Master;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use meseta_types::{FrameworkId, TaskState};
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize)]
pub(super) struct FrameworkQuery {
    framework_id: Option<String>,
}

pub(super) async fn frameworks(
    State(m): State<Master>,
    Query(q): Query<FrameworkQuery>,
) -> Response {
    let state = m.state_view();
    let keep =
        |f: &meseta_api::state::Framework| q.framework_id.as_ref().is_none_or(|id| &f.id == id);
    Json(json!({
        "frameworks": state.frameworks.iter().filter(|f| keep(f)).collect::<Vec<_>>(),
        "completed_frameworks": state.completed_frameworks.iter().filter(|f| keep(f)).collect::<Vec<_>>(),
        "unregistered_frameworks": [],
    }))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct TeardownForm {
    #[serde(rename = "frameworkId")]
    framework_id: String,
}

/// `POST /master/teardown` with `frameworkId=<id>`: kill its tasks and remove it.
pub(super) async fn teardown(
    State(m): State<Master>,
    form: Result<Form<TeardownForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return error(
            StatusCode::BAD_REQUEST,
            "expecting a form body with 'frameworkId'",
        );
    };
    let id = FrameworkId::new(form.framework_id);
    run(&m, Command::Teardown(id), StatusCode::OK).await
}

pub(super) async fn state_summary(State(m): State<Master>) -> Response {
    let core = m.core();
    let state = core.state_view();
    let counts =
        core.task_counts_by(|t| (t.agent_id().to_string(), t.spec.framework_id.to_string()));
    let slaves: Vec<Value> = state
        .slaves
        .iter()
        .map(|s| {
            let mut v = json!({
                "id": s.id, "pid": s.pid, "hostname": s.hostname, "registered_time": s.registered_time,
                "resources": s.resources, "used_resources": s.used_resources,
                "offered_resources": s.offered_resources, "reserved_resources": s.reserved_resources,
                "unreserved_resources": s.unreserved_resources, "attributes": s.attributes,
                "active": s.active, "version": s.version,
            });
            let (states, others) = counts.summary(|(agent, _)| agent == &s.id, |(_, fw)| fw.clone());
            merge(&mut v, states);
            v["framework_ids"] = json!(others);
            v
        })
        .collect();
    let frameworks: Vec<Value> = state
        .frameworks
        .iter()
        .map(|f| {
            let mut v = json!({
                "id": f.id, "name": f.name, "used_resources": f.used_resources,
                "offered_resources": f.offered_resources, "capabilities": f.capabilities,
                "hostname": f.hostname, "webui_url": f.webui_url, "active": f.active,
            });
            let (states, others) =
                counts.summary(|(_, fw)| fw == &f.id, |(agent, _)| agent.clone());
            merge(&mut v, states);
            v["slave_ids"] = json!(others);
            v
        })
        .collect();
    Json(json!({"hostname": state.hostname, "slaves": slaves, "frameworks": frameworks}))
        .into_response()
}

fn merge(v: &mut Value, extra: Map<String, Value>) {
    if let Value::Object(o) = v {
        o.extend(extra);
    }
}

/// Live tasks keyed by something (agent, framework), for summaries.
pub(crate) struct TaskCounts<K> {
    rows: Vec<(K, TaskState)>,
}

impl<K> TaskCounts<K> {
    /// Per-state counts (every `TASK_*` key present) and the distinct `other` keys of matching rows.
    fn summary(
        &self,
        matches: impl Fn(&K) -> bool,
        other: impl Fn(&K) -> String,
    ) -> (Map<String, Value>, Vec<String>) {
        let mut states = Map::new();
        for s in TaskState::ALL {
            let n = self
                .rows
                .iter()
                .filter(|(k, st)| *st == s && matches(k))
                .count();
            states.insert(s.as_str().to_string(), json!(n));
        }
        let mut others: Vec<String> = self
            .rows
            .iter()
            .filter(|(k, _)| matches(k))
            .map(|(k, _)| other(k))
            .collect();
        others.sort();
        others.dedup();
        (states, others)
    }
}

impl Core {
    pub(crate) fn task_counts_by<K>(
        &self,
        key: impl Fn(&crate::task::TaskEntry) -> K,
    ) -> TaskCounts<K> {
        TaskCounts {
            rows: self.tasks.values().map(|t| (key(t), t.state)).collect(),
        }
    }

    /// The flat Mesos `/metrics/snapshot` map.
    pub(crate) fn metrics_snapshot(&self) -> BTreeMap<String, f64> {
        let mut m: BTreeMap<String, f64> = meseta_phases::metrics().into_iter().collect();
        let (total, used) = self.totals();
        for r in ["cpus", "mem", "disk", "gpus"] {
            let t = total.scalar(r).as_f64();
            let u = used.scalar(r).as_f64();
            m.insert(format!("master/{r}_total"), t);
            m.insert(format!("master/{r}_used"), u);
            m.insert(
                format!("master/{r}_percent"),
                if t > 0.0 { u / t } else { 0.0 },
            );
            for k in ["total", "used", "percent"] {
                m.insert(format!("master/{r}_revocable_{k}"), 0.0);
            }
        }
        m.insert("master/elected".into(), 1.0);
        m.insert(
            "master/uptime_secs".into(),
            (crate::unix_now() - self.start_time()).max(0.0),
        );
        let agents = |s: AgentStatus| self.agents.values().filter(|a| a.status == s).count() as f64;
        let active = agents(AgentStatus::Active);
        let disconnected = agents(AgentStatus::Disconnected);
        m.insert("master/slaves_active".into(), active);
        m.insert("master/slaves_inactive".into(), 0.0);
        m.insert("master/slaves_connected".into(), active);
        m.insert("master/slaves_disconnected".into(), disconnected);
        m.insert(
            "master/slaves_unreachable".into(),
            agents(AgentStatus::Unreachable),
        );
        m.insert(
            "master/slave_registrations".into(),
            self.counters.agent_registrations as f64,
        );
        m.insert(
            "master/slave_reregistrations".into(),
            self.counters.agent_reregistrations as f64,
        );
        for k in [
            "slave_removals",
            "slave_shutdowns_scheduled",
            "slave_shutdowns_completed",
            "slave_shutdowns_canceled",
        ] {
            m.insert(format!("master/{k}"), 0.0);
        }
        let connected = self
            .frameworks
            .values()
            .filter(|f| f.conn.is_some())
            .count() as f64;
        let total_fw = self.frameworks.len() as f64;
        m.insert("master/frameworks_active".into(), connected);
        m.insert("master/frameworks_inactive".into(), total_fw - connected);
        m.insert("master/frameworks_connected".into(), connected);
        m.insert(
            "master/frameworks_disconnected".into(),
            total_fw - connected,
        );
        m.insert("master/outstanding_offers".into(), self.offers.len() as f64);
        for (state, n) in self.task_counts() {
            let name = state
                .as_str()
                .trim_start_matches("TASK_")
                .to_ascii_lowercase();
            m.insert(format!("master/tasks_{name}"), n as f64);
        }
        m
    }
}

pub(super) async fn metrics_snapshot(State(m): State<Master>) -> Response {
    let snapshot = m.metrics_snapshot();
    Json(snapshot).into_response()
}
