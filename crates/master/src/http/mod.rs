//! The master's HTTP edge. One file per API resource; handlers parse into one call on the core.
//!
//! - `agent.rs`: the agents' WebSocket (`/api/meseta/v1/agent`), written through `coalesce.rs`
//! - `scheduler.rs`: Mesos v1 scheduler API (`/api/v1/scheduler`)
//! - `operator.rs`: `/master/state`, `/master/slaves`, `/master/tasks`, `/version`, `/health`, task kill and logs
//! - `metrics.rs`: Prometheus `/metrics`
//!
//! In-process frameworks bring their own routes ([`router_with`]); they share the JSON 404
//! fallback and the 1 MiB body limit.

mod agent;
mod backup;
mod coalesce;
mod maintenance;
mod mesos;
mod metrics;
mod operator;
mod operator_v1;
mod reservations;
mod roles;
mod scheduler;
mod volumes;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use meseta_api::operator::ErrorBody;

use crate::Master;

/// Largest scheduler call accepted (other endpoints take 1 MiB).
const SCHEDULER_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The master's routes.
pub fn router(master: Master) -> Router {
    router_with(master, Router::new())
}

/// The master's routes merged with `extra` (routes of in-process frameworks), under one JSON 404
/// fallback and one body limit.
pub(crate) fn router_with(master: Master, extra: Router) -> Router {
    routes()
        .with_state(master)
        .merge(extra)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(1024 * 1024))
}

fn routes() -> Router<Master> {
    Router::new()
        .route("/health", get(operator::health))
        .route("/master/health", get(operator::health))
        .route("/version", get(operator::version))
        .route("/master/state", get(operator::state))
        .route("/master/state.json", get(operator::state))
        .route("/state", get(operator::state))
        .route("/state.json", get(operator::state))
        .route("/master/slaves", get(operator::slaves))
        .route("/master/tasks", get(operator::tasks))
        .route("/master/tasks.json", get(operator::tasks))
        .route("/master/redirect", get(operator::redirect))
        .route("/metrics", get(metrics::metrics))
        .route("/metrics/snapshot", get(mesos::metrics_snapshot))
        .route("/master/frameworks", get(mesos::frameworks))
        .route("/master/state-summary", get(mesos::state_summary))
        .route("/master/teardown", post(mesos::teardown))
        .route("/master/reserve", post(reservations::reserve))
        .route("/master/unreserve", post(reservations::unreserve))
        .route("/master/create-volumes", post(volumes::create))
        .route("/master/destroy-volumes", post(volumes::destroy))
        .route(
            "/master/maintenance/schedule",
            get(maintenance::get_schedule).post(maintenance::post_schedule),
        )
        .route(
            "/maintenance/schedule",
            get(maintenance::get_schedule).post(maintenance::post_schedule),
        )
        .route("/master/maintenance/status", get(maintenance::status))
        .route("/maintenance/status", get(maintenance::status))
        .route("/master/machine/down", post(maintenance::down))
        .route("/machine/down", post(maintenance::down))
        .route("/master/machine/up", post(maintenance::up))
        .route("/machine/up", post(maintenance::up))
        .route("/master/backup", get(backup::backup))
        .route("/master/roles", get(roles::roles))
        .route("/master/roles.json", get(roles::roles))
        .route(
            "/master/weights",
            get(roles::weights).put(roles::update_weights),
        )
        .route("/master/quota", get(roles::quota).post(roles::set_quota_v0))
        .route("/quota", get(roles::quota).post(roles::set_quota_v0))
        .route(
            "/master/quota/{role}",
            axum::routing::delete(roles::remove_quota),
        )
        .route("/quota/{role}", axum::routing::delete(roles::remove_quota))
        .route("/api/v1", post(operator_v1::call))
        .route("/api/v1/operator", post(operator_v1::call))
        // Mesos sets no size limit on scheduler calls; an ACCEPT of thousands of tasks is
        // several MiB.
        .route(
            "/api/v1/scheduler",
            any(scheduler::scheduler).layer(DefaultBodyLimit::max(SCHEDULER_BODY_LIMIT)),
        )
        .route(
            "/master/api/v1/scheduler",
            any(scheduler::scheduler).layer(DefaultBodyLimit::max(SCHEDULER_BODY_LIMIT)),
        )
        .route(meseta_api::agent::AGENT_WS_PATH, get(agent::upgrade))
        .route("/api/meseta/v1/tasks/{id}/kill", post(operator::kill_task))
        .route("/api/meseta/v1/tasks/{id}/logs", get(operator::task_logs))
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", uri.path()),
    )
}

/// A JSON error response: `{"message", "details": []}` (the master's error shape).
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            message: message.into(),
            details: vec![],
        }),
    )
        .into_response()
}

/// Run an operator [`Command`](crate::command::Command): the master applies and persists it
/// (`Master::execute`); the answer is `ok` when done, else 400, 409 or 503 with the reason.
pub(crate) async fn run_command(
    m: &Master,
    cmd: crate::command::Command,
    ok: StatusCode,
) -> Response {
    use crate::command::CommandError;
    match m.execute(cmd).await {
        Ok(()) => ok.into_response(),
        Err(e) => {
            let status = match e {
                CommandError::Invalid(_) => StatusCode::BAD_REQUEST,
                CommandError::Conflict(_) => StatusCode::CONFLICT,
                CommandError::NotStored(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, e.to_string())
        }
    }
}
