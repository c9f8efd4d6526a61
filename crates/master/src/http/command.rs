//! Running an operator [`Command`] from a handler: the master applies and persists it
//! (`Master::execute`); the answer is `ok` when done, else 400, 409 or 503 with the reason.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error;
use crate::command::{Command, CommandError};
use crate::Master;

/// Execute `cmd` and answer as Mesos does.
pub(super) async fn run(m: &Master, cmd: Command, ok: StatusCode) -> Response {
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
