//! Operator persistent volumes: `POST /master/create-volumes` and `/master/destroy-volumes`
//! (form-encoded `slaveId=<id>&volumes=<JSON array of Resource>`, as Mesos), and the v1 calls
//! `CREATE_VOLUMES` / `DESTROY_VOLUMES` (`{agent_id:{value}, volumes:[..]}`).
//!
//! Answers as Mesos: 202 when applied, 400 on malformed input or an unknown agent, 409 when the
//! reserved disk is not available (to create) or the volume does not exist or is in use (to
//! destroy). Applied changes are persisted (with the reservations) before the answer; one that
//! cannot be stored is undone (503).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use meseta_types::{AgentId, Resources};
use tokio::time::Instant;

use super::error;
use super::reservations::form_request;
use crate::ops::OpError;
use crate::{registry, Master};

pub(super) async fn create(State(m): State<Master>, body: Bytes) -> Response {
    match form_request(&body, "volumes") {
        Ok((agent, vols)) => apply(&m, &agent, &vols, true).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

pub(super) async fn destroy(State(m): State<Master>, body: Bytes) -> Response {
    match form_request(&body, "volumes") {
        Ok((agent, vols)) => apply(&m, &agent, &vols, false).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

/// Create (or destroy) and persist; the answer Mesos gives.
pub(super) async fn apply(m: &Master, agent: &AgentId, vols: &Resources, create: bool) -> Response {
    let snapshot = {
        let mut core = m.core();
        let now = Instant::now();
        let r = if create {
            core.operator_create_volumes(agent, vols, now)
        } else {
            core.operator_destroy_volumes(agent, vols, now)
        };
        match r {
            Ok(()) => core.take_dirty_reservations(),
            Err(OpError::Invalid(why)) => return error(StatusCode::BAD_REQUEST, why),
            Err(OpError::Conflict(why)) => return error(StatusCode::CONFLICT, why),
        }
    };
    if let Some(s) = snapshot {
        if let Err(e) = registry::save_reservations(m.store(), &s).await {
            let mut core = m.core();
            let now = Instant::now();
            // A destroyed volume's directory is already being deleted: only a create is undone.
            if create {
                let _ = core.operator_destroy_volumes(agent, vols, now);
            }
            core.ops.reservations_dirty = !create;
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("volumes not stored: {e}"),
            );
        }
    }
    StatusCode::ACCEPTED.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_requests_need_an_agent_and_volumes() {
        assert!(form_request(b"volumes=[]", "volumes").is_err());
        assert!(form_request(b"slaveId=a", "volumes").is_err());
        assert!(form_request(b"slaveId=a&volumes=%5Bnope", "volumes").is_err());
        let (agent, vols) = form_request(b"slaveId=a&volumes=%5B%5D", "volumes").expect("valid");
        assert_eq!(agent.as_str(), "a");
        assert!(vols.is_empty());
    }
}
