//! Maintenance endpoints (Mesos shapes): `GET|POST /master/maintenance/schedule`,
//! `GET /master/maintenance/status`, `POST /master/machine/down` and `/master/machine/up` (body:
//! a JSON array of `{"hostname","ip"}`), and the v1 calls `GET_MAINTENANCE_SCHEDULE`,
//! `UPDATE_MAINTENANCE_SCHEDULE`, `GET_MAINTENANCE_STATUS`, `START_MAINTENANCE`,
//! `STOP_MAINTENANCE` (parsed in `operator_v1.rs`). Each change is one
//! `Command::Maintenance`, answered 200 once persisted, 400 when Mesos refuses it, 503 when it
//! is applied but not stored yet (it is stored again on the next tick).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use meseta_api::maintenance::{MachineId, Schedule};

use super::{error, run_command as run};
use crate::command::{Command, MaintenanceChange};
use crate::Master;

pub(super) async fn get_schedule(State(m): State<Master>) -> Response {
    let s = m.maintenance_schedule();
    Json(s).into_response()
}

pub(super) async fn post_schedule(State(m): State<Master>, body: Bytes) -> Response {
    match serde_json::from_slice::<Schedule>(&body) {
        Ok(s) => change(&m, MaintenanceChange::Schedule(s)).await,
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("Failed to parse the maintenance schedule: {e}"),
        ),
    }
}

pub(super) async fn status(State(m): State<Master>) -> Response {
    Json(m.maintenance_status()).into_response()
}

pub(super) async fn down(State(m): State<Master>, body: Bytes) -> Response {
    match machines(&body) {
        Ok(ids) => change(&m, MaintenanceChange::Down(ids)).await,
        Err(r) => error(StatusCode::BAD_REQUEST, r),
    }
}

pub(super) async fn up(State(m): State<Master>, body: Bytes) -> Response {
    match machines(&body) {
        Ok(ids) => change(&m, MaintenanceChange::Up(ids)).await,
        Err(r) => error(StatusCode::BAD_REQUEST, r),
    }
}

fn machines(body: &[u8]) -> Result<Vec<MachineId>, String> {
    serde_json::from_slice(body).map_err(|e| format!("Failed to parse the list of machines: {e}"))
}

/// Apply a change, persist, answer (200, 400 refused, 503 not stored).
pub(super) async fn change(m: &Master, c: MaintenanceChange) -> Response {
    run(m, Command::Maintenance(c), StatusCode::OK).await
}
