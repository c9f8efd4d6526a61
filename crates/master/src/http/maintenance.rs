//! Maintenance endpoints (Mesos shapes): `GET|POST /master/maintenance/schedule`,
//! `GET /master/maintenance/status`, `POST /master/machine/down` and `/master/machine/up` (body:
//! a JSON array of `{"hostname","ip"}`), and the v1 calls `GET_MAINTENANCE_SCHEDULE`,
//! `UPDATE_MAINTENANCE_SCHEDULE`, `GET_MAINTENANCE_STATUS`, `START_MAINTENANCE`,
//! `STOP_MAINTENANCE`. Changes answer 200 once persisted, 400 when Mesos refuses them.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::error;
use crate::maintenance::{MachineId, Schedule};
use crate::{registry, Master};

pub(super) async fn get_schedule(State(m): State<Master>) -> Response {
    let s = m.core().ops.maint.schedule.clone();
    Json(s).into_response()
}

pub(super) async fn post_schedule(State(m): State<Master>, body: Bytes) -> Response {
    match serde_json::from_slice::<Schedule>(&body) {
        Ok(s) => change(&m, Change::Schedule(s)).await,
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("Failed to parse the maintenance schedule: {e}"),
        ),
    }
}

pub(super) async fn status(State(m): State<Master>) -> Response {
    Json(m.core().maintenance_status()).into_response()
}

pub(super) async fn down(State(m): State<Master>, body: Bytes) -> Response {
    match machines(&body) {
        Ok(ids) => change(&m, Change::Down(ids)).await,
        Err(r) => error(StatusCode::BAD_REQUEST, r),
    }
}

pub(super) async fn up(State(m): State<Master>, body: Bytes) -> Response {
    match machines(&body) {
        Ok(ids) => change(&m, Change::Up(ids)).await,
        Err(r) => error(StatusCode::BAD_REQUEST, r),
    }
}

fn machines(body: &[u8]) -> Result<Vec<MachineId>, String> {
    serde_json::from_slice(body).map_err(|e| format!("Failed to parse the list of machines: {e}"))
}

/// A maintenance change.
pub(super) enum Change {
    Schedule(Schedule),
    Down(Vec<MachineId>),
    Up(Vec<MachineId>),
}

/// Apply a change on the core, persist, answer (200, 400 refused, 503 not stored).
pub(super) async fn change(m: &Master, c: Change) -> Response {
    let persisted = {
        let mut core = m.core();
        let now = Instant::now();
        let r = match c {
            Change::Schedule(s) => core.update_schedule(s, now),
            Change::Down(ids) => core.machines_down(ids, now),
            Change::Up(ids) => core.machines_up(ids, now),
        };
        if let Err(why) = r {
            return error(StatusCode::BAD_REQUEST, why);
        }
        core.take_dirty_maintenance()
    };
    if let Some(p) = persisted {
        if let Err(e) = registry::save_maintenance(m.store(), &p).await {
            m.core().ops.maint.dirty = true;
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("maintenance change applied but not stored yet: {e}"),
            );
        }
    }
    StatusCode::OK.into_response()
}

/// The v1 maintenance calls; `None` when `kind` is not one of them.
pub(super) async fn v1_call(m: &Master, kind: &str, call: &Value) -> Option<Response> {
    let key = kind.to_ascii_lowercase();
    let payload = &call[key.as_str()];
    let resp = match kind {
        "GET_MAINTENANCE_SCHEDULE" => {
            let s = m.core().ops.maint.schedule.clone();
            Json(json!({"type": kind, key: {"schedule": s}})).into_response()
        }
        "GET_MAINTENANCE_STATUS" => {
            let s = m.core().maintenance_status();
            Json(json!({"type": kind, key: {"status": s}})).into_response()
        }
        "UPDATE_MAINTENANCE_SCHEDULE" => {
            match serde_json::from_value::<Schedule>(payload["schedule"].clone()) {
                Ok(s) => change(m, Change::Schedule(s)).await,
                Err(e) => error(StatusCode::BAD_REQUEST, format!("invalid 'schedule': {e}")),
            }
        }
        "START_MAINTENANCE" | "STOP_MAINTENANCE" => {
            match serde_json::from_value::<Vec<MachineId>>(payload["machines"].clone()) {
                Ok(ids) if kind == "START_MAINTENANCE" => change(m, Change::Down(ids)).await,
                Ok(ids) => change(m, Change::Up(ids)).await,
                Err(e) => error(StatusCode::BAD_REQUEST, format!("invalid 'machines': {e}")),
            }
        }
        _ => return None,
    };
    Some(resp)
}
