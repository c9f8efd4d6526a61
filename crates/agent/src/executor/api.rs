//! `POST /api/v1/executor`: the Mesos v1 executor HTTP API in JSON.
//!
//! SUBSCRIBE answers `200` with a chunked RecordIO stream (SUBSCRIBED, then the LAUNCHes and
//! KILLs waiting for the executor, then whatever comes); UPDATE, MESSAGE and HEARTBEAT answer
//! `202`. Malformed calls (bad JSON, an unknown executor, an update without a valid uuid or in
//! TASK_STAGING) get `400` with a JSON message; an update about a task the executor was not
//! given is refused with an ERROR event on its stream, as nothing about the call is malformed.
//! A subscribed executor gets a HEARTBEAT event every [`HEARTBEAT_EVERY`] on its stream, as
//! Mesos sends them, so it (and any proxy in between) sees a live connection.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use futures::StreamExt;
use meseta_api::executor::{self as wire, Call, CallKind, Event};
use meseta_api::operator::ErrorBody;
use meseta_api::recordio;
use meseta_api::scheduler::{IdValue, TaskStatus};
use meseta_types::{FrameworkId, TaskId, TaskState};
use tokio::sync::mpsc;

use super::Key;
use crate::checkpoint::StateRecord;
use crate::state::{Shared, UpdateExtra};

/// The executor API's path.
pub(crate) const PATH: &str = "/api/v1/executor";

/// How often a subscribed executor's stream carries a HEARTBEAT event.
pub(crate) const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Send HEARTBEAT on the stream behind `tx` every `every`, until the stream is gone (every
/// strong sender dropped: replaced by a new SUBSCRIBE, or the executor removed); holds only a
/// weak sender so that it never keeps a stream open.
fn spawn_heartbeats(tx: mpsc::WeakUnboundedSender<Event>, every: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            let Some(tx) = tx.upgrade() else { break };
            if tx.send(Event::Heartbeat).is_err() {
                break;
            }
        }
    });
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            message: message.into(),
            details: Vec::new(),
        }),
    )
        .into_response()
}

/// The handler of every executor call.
pub(crate) async fn executor(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with("application/json") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expecting 'Content-Type' of application/json, got '{ctype}'"),
        );
    }
    let call: Call = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid executor call: {e}"),
            )
        }
    };
    let key: Key = (
        FrameworkId::new(call.framework_id.as_str()),
        call.executor_id.value.clone(),
    );
    if !shared.lock().executors.contains_key(&key) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "executor '{}' of framework '{}' cannot be found on this agent",
                key.1, key.0
            ),
        );
    }
    match call.kind {
        CallKind::Subscribe { subscribe } => subscribe_call(&shared, &key, subscribe),
        CallKind::Update { update } => match update_call(&shared, &key, update.status) {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(why) => error(StatusCode::BAD_REQUEST, why),
        },
        CallKind::Message { message } => {
            shared.send_unchecked(meseta_api::agent::AgentMessage::ExecutorMessage {
                framework_id: key.0.clone(),
                executor_id: key.1.clone(),
                data: message.data,
            });
            StatusCode::ACCEPTED.into_response()
        }
        CallKind::Heartbeat => StatusCode::ACCEPTED.into_response(),
    }
}

/// SUBSCRIBE: open (or replace) the stream, replay the executor's unacknowledged updates, then
/// send what waits for it.
fn subscribe_call(shared: &Arc<Shared>, key: &Key, sub: wire::Subscribe) -> Response {
    let (tx, rx) = mpsc::unbounded_channel();
    let known: BTreeSet<String> = sub
        .unacknowledged_tasks
        .iter()
        .filter_map(|t| t.pointer("/task_id/value").and_then(|v| v.as_str()))
        .map(str::to_string)
        .collect();
    let kills = {
        let mut st = shared.lock();
        let agent_id = st.agent_id.clone().unwrap_or_default();
        let Some(e) = st.executors.get_mut(key) else {
            return error(StatusCode::BAD_REQUEST, "executor is gone");
        };
        let first = e.subscribed;
        e.subscribed = true;
        e.delivered = e
            .tasks
            .iter()
            .filter(|id| known.contains(id.as_str()))
            .cloned()
            .collect();
        e.stream = Some(tx.clone());
        let _ = tx.send(Event::Subscribed {
            subscribed: Box::new(wire::Subscribed {
                executor_info: e.spec.info.clone(),
                framework_info: serde_json::to_value(&e.spec.framework_info).unwrap_or_default(),
                agent_info: serde_json::json!({
                    "id": {"value": agent_id.as_str()},
                    "hostname": shared.hostname,
                    "port": shared.http_addr.port(),
                    "resources": shared.resources,
                }),
                container_id: IdValue::new(format!("{}.{}", key.0, key.1)),
            }),
        });
        tracing::info!(executor_id = %key.1, resubscribe = first, "executor subscribed");
        std::mem::take(&mut e.pending_kills)
    };
    for u in sub.unacknowledged_updates {
        if let Err(why) = update_call(shared, key, u.status) {
            tracing::warn!(executor_id = %key.1, %why, "unacknowledged update refused");
        }
    }
    super::deliver(shared, key);
    spawn_heartbeats(tx.downgrade(), HEARTBEAT_EVERY);
    for id in kills {
        let _ = tx.send(Event::Kill {
            kill: wire::KillEvent {
                task_id: IdValue::new(id.as_str()),
                kill_policy: None,
            },
        });
    }
    let events = futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) },
    )
    .map(|ev| {
        Ok::<_, std::convert::Infallible>(Bytes::from(recordio::encode(&recordio::to_ascii_json(
            &ev,
        ))))
    });
    let mut resp = Response::new(Body::from_stream(events));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("Mesos-Stream-Id", v);
    }
    resp
}

/// The executor's uuid (base64 of 16 bytes) as the agent protocol's hyphenated text.
fn parse_uuid(b64: &str) -> Result<uuid::Uuid, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("status uuid '{b64}' is not base64: {e}"))?;
    uuid::Uuid::from_slice(&bytes).map_err(|_| format!("status uuid '{b64}' is not 16 bytes"))
}

/// UPDATE: checkpoint and forward the status, then ACKNOWLEDGED to the executor.
fn update_call(shared: &Shared, key: &Key, status: TaskStatus) -> Result<(), String> {
    let b64 = status.uuid.clone().ok_or("status update without 'uuid'")?;
    let uuid = parse_uuid(&b64)?.to_string();
    if status.state == TaskState::Staging {
        return Err("an executor must not send TASK_STAGING".to_string());
    }
    if let Some(e) = &status.executor_id {
        if e.as_str() != key.1 {
            return Err(format!(
                "status executor_id '{e}' is not the caller's '{}'",
                key.1
            ));
        }
    }
    let task_id = TaskId::new(status.task_id.as_str());
    let given = shared
        .lock()
        .executors
        .get(key)
        .is_some_and(|e| e.tasks.contains(&task_id));
    if !given {
        tracing::warn!(executor_id = %key.1, task_id = %task_id, "update for a task the executor was not given");
        send(
            shared,
            key,
            Event::Error {
                error: wire::ErrorEvent {
                    message: format!(
                        "status update for task '{task_id}', which executor '{}' was not given",
                        key.1
                    ),
                },
            },
        );
        return Ok(());
    }
    let rec = StateRecord {
        state: status.state,
        reason: status.reason.clone(),
        message: status.message.clone(),
        exit_code: None,
        healthy: status.healthy,
    };
    let extra = UpdateExtra {
        uuid: Some(uuid.clone()),
        executor_id: Some(key.1.clone()),
        data: status.data.clone(),
    };
    let emitted = shared.emit_with(&task_id, &key.0, rec, extra, |st, t| {
        // A replayed update (same uuid) or anything after the end is acknowledged only.
        !t.record.state.is_terminal() && !Shared::is_pending(st, &uuid)
    });
    tracing::debug!(task_id = %task_id, state = %status.state, emitted, "executor update");
    send(
        shared,
        key,
        Event::Acknowledged {
            acknowledged: wire::Acknowledged {
                task_id: status.task_id,
                uuid: b64,
            },
        },
    );
    Ok(())
}

fn send(shared: &Shared, key: &Key, ev: Event) {
    if let Some(e) = shared.lock().executors.get(key) {
        e.send(ev);
    }
}

#[cfg(test)]
mod heartbeat_tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn heartbeats_flow_until_the_stream_is_dropped() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        spawn_heartbeats(tx.downgrade(), Duration::from_millis(10));
        for _ in 0..3 {
            let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a heartbeat within 5 s");
            assert!(matches!(ev, Some(Event::Heartbeat)), "{ev:?}");
        }
        // The heartbeat task holds no strong sender: dropping ours ends the stream.
        drop(tx);
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            while rx.recv().await.is_some() {}
        })
        .await;
        assert!(end.is_ok(), "the stream ends once its sender is dropped");
    }
}
