//! Operator endpoints: Mesos v0 views, `/version`, `/health`, and meseta's task kill and logs.

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use meseta_api::operator::LogQuery;
use meseta_types::TaskId;

use super::error;
use crate::Master;

pub(super) async fn health() -> StatusCode {
    StatusCode::OK
}

pub(super) async fn version() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "version": crate::MESOS_VERSION,
        "meseta_version": env!("CARGO_PKG_VERSION"),
        "build_date": "",
        "build_time": 0.0,
        "build_user": "",
    }))
}

pub(super) async fn state(State(m): State<Master>) -> Response {
    let view = m.state_view();
    Json(view).into_response()
}

pub(super) async fn slaves(State(m): State<Master>) -> Response {
    let view = m.slaves_view();
    Json(view).into_response()
}

pub(super) async fn tasks(State(m): State<Master>) -> Response {
    let view = m.tasks_view();
    Json(view).into_response()
}

pub(super) async fn redirect(State(m): State<Master>) -> Response {
    let addr = m.address();
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, format!("//{addr}"))],
    )
        .into_response()
}

pub(super) async fn kill_task(State(m): State<Master>, Path(id): Path<String>) -> Response {
    let task_id = TaskId::new(id.clone());
    let mut core = m.core();
    let Some(task) = core.tasks.get(&task_id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("task '{id}' is not running (unknown or already ended)"),
        );
    };
    let agent_id = task.agent_id().clone();
    if core.send_kill(&task_id, None) {
        (StatusCode::ACCEPTED, Json(serde_json::json!({}))).into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("agent '{agent_id}' of task '{id}' is not connected; retry when it is back"),
        )
    }
}

/// Proxy to the agent that runs (or ran) the task.
pub(super) async fn task_logs(
    State(m): State<Master>,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(e) = query {
        return error(StatusCode::BAD_REQUEST, format!("bad query: {e}"));
    }
    let Some(address) = m.task_agent_address(&TaskId::new(id.clone())) else {
        return error(StatusCode::NOT_FOUND, format!("task '{id}' is unknown"));
    };
    let url = format!(
        "http://{address}/api/meseta/v1/tasks/{id}/logs?{}",
        raw.unwrap_or_default()
    );
    let mut req = m.http_client().get(&url);
    if let Some(key) = m.agent_http_key() {
        req = req.bearer_auth(key);
    }
    match req.send().await {
        Ok(resp) => {
            let status =
                StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            match resp.bytes().await {
                Ok(body) => {
                    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
                }
                Err(e) => error(
                    StatusCode::BAD_GATEWAY,
                    format!("reading from agent at {address}: {e}"),
                ),
            }
        }
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!("agent at {address} unreachable: {e}"),
        ),
    }
}

impl crate::core::Core {
    /// The address of the agent that runs or ran a task.
    pub(crate) fn task_agent_address(&self, id: &TaskId) -> Option<String> {
        let agent = match self.tasks.get(id) {
            Some(t) => t.agent_id().clone(),
            None => self
                .frameworks
                .values()
                .chain(self.completed_frameworks.iter())
                .flat_map(|f| f.completed_tasks.iter())
                .find(|t| &t.spec.task_id == id)?
                .agent_id()
                .clone(),
        };
        self.agents.get(&agent).map(|a| a.record.address.clone())
    }
}
