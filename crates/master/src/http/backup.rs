//! `GET /master/backup`: a snapshot of the master's store (every key not attached to a lease,
//! read at one revision) in the backup file format of [`meseta_store::backup`]. This is how a
//! running cluster is backed up: the embedded store is locked by the master that uses it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error;
use crate::Master;

pub(super) async fn backup(State(m): State<Master>) -> Response {
    match meseta_store::backup::backup(m.store()).await {
        Ok(snapshot) => Json(snapshot).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot take a backup: {e}"),
        ),
    }
}
