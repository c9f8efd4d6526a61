//! Operator reservations: `POST /master/reserve` and `/master/unreserve` (form-encoded
//! `slaveId=<id>&resources=<JSON array of Resource>`, as Mesos), and the v1 calls
//! `RESERVE_RESOURCES` / `UNRESERVE_RESOURCES` (`{agent_id:{value}, resources:[..]}`, parsed by
//! `meseta_api::operator::v1` and run from `operator_v1.rs`).
//!
//! Answers as Mesos: 202 when applied, 400 on malformed input or an unknown agent, 409 when the
//! resources are not available (or not reserved / in use, to unreserve). Each request becomes one
//! `Command::Resources` (the volume endpoints in `volumes.rs` share [`resource_op`]); it is
//! persisted before the answer, and one that cannot be stored is undone (503).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use meseta_allocator::ResourceOp;
use meseta_types::{AgentId, Resources};

use super::{error, run_command as run};
use crate::command::Command;
use crate::Master;

/// Decode `a=b&c=d` (`+` is a space, `%XX` a byte).
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Agent and resources of a form request; `field` names the resources (`resources` for
/// reservations, `volumes` for volumes).
pub(super) fn form_request(body: &[u8], field: &str) -> Result<(AgentId, Resources), String> {
    let form = parse_form(body);
    let Some(agent) = form.get("slaveId").or_else(|| form.get("agentId")) else {
        return Err("Missing 'slaveId' query parameter in the request body".into());
    };
    let Some(res) = form.get(field) else {
        return Err(format!(
            "Missing '{field}' query parameter in the request body"
        ));
    };
    let resources: Resources = serde_json::from_str(res)
        .map_err(|e| format!("Error in parsing '{field}' query parameter: {e}"))?;
    Ok((AgentId::new(agent.as_str()), resources))
}

pub(super) async fn reserve(State(m): State<Master>, body: Bytes) -> Response {
    resource_op(&m, &body, "resources", ResourceOp::Reserve).await
}

pub(super) async fn unreserve(State(m): State<Master>, body: Bytes) -> Response {
    resource_op(&m, &body, "resources", ResourceOp::Unreserve).await
}

/// A form request (`slaveId` and the resources under `field`) run as one resource operation;
/// 202 when applied and stored.
pub(super) async fn resource_op(
    m: &Master,
    body: &[u8],
    field: &str,
    op: fn(Resources) -> ResourceOp,
) -> Response {
    match form_request(body, field) {
        Ok((agent, res)) => {
            let cmd = Command::Resources { agent, op: op(res) };
            run(m, cmd, StatusCode::ACCEPTED).await
        }
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_percent_and_plus() {
        let f = parse_form(b"slaveId=a%2Db&resources=%5B1%2C+2%5D&x");
        assert_eq!(f["slaveId"], "a-b");
        assert_eq!(f["resources"], "[1, 2]");
        assert_eq!(f["x"], "");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
