//! Operator reservations: `POST /master/reserve` and `/master/unreserve` (form-encoded
//! `slaveId=<id>&resources=<JSON array of Resource>`, as Mesos), and the v1 calls
//! `RESERVE_RESOURCES` / `UNRESERVE_RESOURCES` (`{agent_id:{value}, resources:[..]}`).
//!
//! Answers as Mesos: 202 when applied, 400 on malformed input or an unknown agent, 409 when the
//! resources are not available (or not reserved / in use, to unreserve). Applied changes are
//! persisted before the answer; one that cannot be stored is undone (503).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use meseta_types::{AgentId, Resources};
use serde_json::Value;
use tokio::time::Instant;

use super::error;
use crate::ops::OpError;
use crate::{registry, Master};

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

/// Agent and resources of a v1 call payload (`reserve_resources`, `create_volumes`, …); `field`
/// names the resources.
pub(super) fn v1_request(payload: &Value, field: &str) -> Result<(AgentId, Resources), String> {
    let Some(agent) = payload.pointer("/agent_id/value").and_then(Value::as_str) else {
        return Err("expecting 'agent_id' to be present".into());
    };
    let resources: Resources = serde_json::from_value(payload[field].clone())
        .map_err(|e| format!("invalid '{field}': {e}"))?;
    Ok((AgentId::new(agent), resources))
}

pub(super) async fn reserve(State(m): State<Master>, body: Bytes) -> Response {
    match form_request(&body, "resources") {
        Ok((agent, res)) => apply(&m, &agent, &res, true).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

pub(super) async fn unreserve(State(m): State<Master>, body: Bytes) -> Response {
    match form_request(&body, "resources") {
        Ok((agent, res)) => apply(&m, &agent, &res, false).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

/// Reserve (or unreserve) and persist; the answer Mesos gives.
pub(super) async fn apply(m: &Master, agent: &AgentId, res: &Resources, reserve: bool) -> Response {
    let snapshot = {
        let mut core = m.core();
        let now = Instant::now();
        let r = if reserve {
            core.operator_reserve(agent, res, now)
        } else {
            core.operator_unreserve(agent, res, now)
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
            let _ = if reserve {
                core.operator_unreserve(agent, res, now)
            } else {
                core.operator_reserve(agent, res, now)
            };
            core.ops.reservations_dirty = false;
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("reservation not stored: {e}"),
            );
        }
    }
    StatusCode::ACCEPTED.into_response()
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
