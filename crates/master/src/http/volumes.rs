//! Operator persistent volumes: `POST /master/create-volumes` and `/master/destroy-volumes`
//! (form-encoded `slaveId=<id>&volumes=<JSON array of Resource>`, as Mesos), and the v1 calls
//! `CREATE_VOLUMES` / `DESTROY_VOLUMES` (`{agent_id:{value}, volumes:[..]}`).
//!
//! Answers as Mesos: 202 when applied, 400 on malformed input or an unknown agent, 409 when the
//! reserved disk is not available (to create) or the volume does not exist or is in use (to
//! destroy). Applied changes are persisted (with the reservations) before the answer; a creation
//! that cannot be stored is undone, a destruction is kept and stored again (503 either way).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use meseta_allocator::ResourceOp;

use super::reservations::resource_op;
use crate::Master;

pub(super) async fn create(State(m): State<Master>, body: Bytes) -> Response {
    resource_op(&m, &body, "volumes", ResourceOp::Create).await
}

pub(super) async fn destroy(State(m): State<Master>, body: Bytes) -> Response {
    resource_op(&m, &body, "volumes", ResourceOp::Destroy).await
}

#[cfg(test)]
mod tests {
    use super::super::reservations::form_request;

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
