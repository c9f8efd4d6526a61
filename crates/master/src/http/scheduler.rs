//! `POST /api/v1/scheduler`: the Mesos v1 scheduler HTTP API in JSON, with the status codes Mesos
//! gives (reference mesos-api.md §1.1). SUBSCRIBE answers a chunked RecordIO stream of events;
//! every other call answers 202 and takes effect through the stream.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use meseta_api::recordio;
use meseta_api::scheduler::{Call, CallKind, Event};
use meseta_types::FrameworkId;
use tokio::time::Instant;

use super::error;
use crate::calls::CallError;
use crate::{FrameworkConnection, Master};

const STREAM_ID: &str = "Mesos-Stream-Id";

pub(super) async fn scheduler(
    State(m): State<Master>,
    method: Method,
    headers: HeaderMap,
    users: Option<axum::Extension<crate::TaskUsers>>,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "expecting a POST request");
    }
    let call = match parse_call(&headers, &body) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let stream_id = headers
        .get(STREAM_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match call.kind {
        CallKind::Subscribe { subscribe } => {
            if stream_id.is_some() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "SUBSCRIBE must not carry a Mesos-Stream-Id header",
                );
            }
            let info_id = subscribe.framework_info.id.clone();
            if call.framework_id.is_some() && call.framework_id != info_id {
                return error(
                    StatusCode::BAD_REQUEST,
                    "'framework_id' differs from 'subscribe.framework_info.id'",
                );
            }
            match m.subscribe(subscribe.framework_info).await {
                Ok(conn) => stream_response(&m, conn),
                Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            }
        }
        kind => {
            let Some(fw) = call.framework_id else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "expecting 'framework_id' to be present",
                );
            };
            let Some(stream_id) = stream_id else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "all non-subscribe calls should include the 'Mesos-Stream-Id' header",
                );
            };
            let fw = FrameworkId::new(fw.value);
            if let CallKind::UpdateFramework { update_framework } = kind {
                return update(&m, &fw, &stream_id, update_framework).await;
            }
            let mut core = m.core();
            match core.check_caller(&fw, Some(&stream_id)) {
                Ok(()) => {
                    let kind = match (kind, users) {
                        (CallKind::Accept { accept }, Some(users)) => CallKind::Accept {
                            accept: core.refuse_unauthorized_users(&fw, accept, &users.0),
                        },
                        (kind, _) => kind,
                    };
                    core.call(&fw, kind, Instant::now());
                    StatusCode::ACCEPTED.into_response()
                }
                Err(e @ CallError::NotSubscribed(_)) => error(StatusCode::FORBIDDEN, e.to_string()),
                Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
    }
}

/// UPDATE_FRAMEWORK: 200 once applied and persisted, 400 when refused.
async fn update(
    m: &Master,
    fw: &FrameworkId,
    stream_id: &str,
    u: meseta_api::scheduler::UpdateFramework,
) -> Response {
    let record = {
        let mut core = m.core();
        match core.check_caller(fw, Some(stream_id)) {
            Ok(()) => {}
            Err(e @ CallError::NotSubscribed(_)) => {
                return error(StatusCode::FORBIDDEN, e.to_string())
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        }
        if let Err(why) = core.update_framework(fw, u, Instant::now()) {
            return error(StatusCode::BAD_REQUEST, why);
        }
        core.frameworks
            .get(fw)
            .map(|f| crate::records::FrameworkRecord {
                id: fw.clone(),
                info: f.info.clone(),
                registered_time: f.registered_time,
            })
    };
    if let Some(r) = record {
        if let Err(e) = crate::registry::save_framework(m.store(), &r).await {
            return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    }
    StatusCode::OK.into_response()
}

/// Content-type, JSON and `Call` checks, in Mesos' order.
#[allow(clippy::result_large_err)]
fn parse_call(headers: &HeaderMap, body: &[u8]) -> Result<Call, Response> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "expecting 'Content-Type' to be present",
            )
        })?;
    if !ctype.trim_start().starts_with("application/json") {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content type '{ctype}': expecting application/json"),
        ));
    }
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        if !(accept.contains("application/json")
            || accept.contains("*/*")
            || accept.trim().is_empty())
        {
            return Err(error(
                StatusCode::NOT_ACCEPTABLE,
                format!("cannot produce '{accept}': only application/json"),
            ));
        }
    }
    // The hot calls (ACCEPT of LAUNCHes, ACKNOWLEDGE, DECLINE) straight from the bytes; any
    // other body, and every error, the usual way below.
    let call = match meseta_api::scheduler::decode_hot(body) {
        Some(call) => call,
        None => decode_call(body)?,
    };
    if let CallKind::Acknowledge { acknowledge } = &call.kind {
        if crate::core::base64_to_uuid(&acknowledge.uuid).is_none() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "Failed to validate scheduler::Call: 'acknowledge.uuid' is not a base64-encoded \
                 16-byte UUID",
            ));
        }
    }
    Ok(call)
}

/// The body as a `Call`, with the errors Mesos gives for a body that is not JSON, has no
/// string `type` or does not convert.
#[allow(clippy::result_large_err)]
fn decode_call(body: &[u8]) -> Result<Call, Response> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("Failed to parse body into JSON: {e}"),
        )
    })?;
    match value.get("type") {
        None => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "Failed to validate scheduler::Call: Expecting 'type' to be present",
            ))
        }
        Some(serde_json::Value::String(_)) => {}
        Some(other) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "Failed to convert JSON into Call protobuf: Not expecting a JSON {} for field 'type'",
                    json_kind(other)
                ),
            ))
        }
    }
    serde_json::from_value(value).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("Failed to convert JSON into Call protobuf: {e}"),
        )
    })
}

/// The JSON type of `v` as Mesos' JSON-to-protobuf errors name it.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// The SUBSCRIBE response: 200, chunked, RecordIO events, heartbeats.
fn stream_response(m: &Master, conn: FrameworkConnection) -> Response {
    let heartbeat = m.core().config().framework_heartbeat;
    let stream_id = conn.stream_id.clone();
    let events = futures::stream::unfold(
        (
            conn,
            tokio::time::interval_at(
                Instant::now() + heartbeat,
                heartbeat.max(Duration::from_millis(100)),
            ),
            false,
        ),
        |(mut conn, mut hb, done)| async move {
            if done {
                return None;
            }
            let ev = tokio::select! {
                ev = conn.next_event() => ev?,
                _ = hb.tick() => Event::Heartbeat,
            };
            // An ERROR ends the subscription (failed over, or refused).
            let last = matches!(ev, Event::Error { .. });
            let bytes = Bytes::from(recordio::encode(&recordio::to_ascii_json(&ev)));
            Some((Ok::<_, std::io::Error>(bytes), (conn, hb, last)))
        },
    );
    let mut resp = Response::new(Body::from_stream(events));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&stream_id) {
        h.insert(STREAM_ID, v);
    }
    resp
}
