//! The rest of `/v2`: tasks, deployments, the launch queue, groups (read-only), info, leader
//! and the `/v2/events` Server-Sent Events stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use meseta_services::engine::view::Embed;
use meseta_services::engine::EngineError;
use serde_json::{json, Value};
use tokio_stream::wrappers::BroadcastStream;

use super::Marathon;
use super::{
    app_id, body_bytes, deployment_result, engine_error, fail, flag, parse_json, unavailable,
    values, Body, Params,
};
use crate::unix_now;

/// `GET /v2/tasks` (`status=running|staging` filters).
pub(super) async fn tasks(State(m): State<Marathon>, Query(q): Query<Params>) -> Response {
    let h = &m.services;
    let wanted: Vec<String> = values(&q, "status")
        .chain(values(&q, "status[]"))
        .map(|s| format!("TASK_{}", s.to_uppercase()))
        .collect();
    match h.call(|eng, _| eng.all_tasks_json()).await {
        Ok(mut t) => {
            if !wanted.is_empty() {
                t.retain(|v| {
                    v["state"]
                        .as_str()
                        .is_some_and(|s| wanted.iter().any(|w| w == s))
                });
            }
            Json(json!({"tasks": t})).into_response()
        }
        Err(_) => unavailable(),
    }
}

#[derive(serde::Deserialize)]
struct TaskIds {
    ids: Vec<String>,
}

/// `POST /v2/tasks/delete` with `{"ids": [...]}`.
pub(super) async fn delete_tasks(
    State(m): State<Marathon>,
    Query(q): Query<Params>,
    body: Body,
) -> Response {
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ids: TaskIds = match parse_json(&body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let scale = flag(&q, "scale", false);
    if scale && flag(&q, "wipe", false) {
        return fail(
            StatusCode::BAD_REQUEST,
            "You cannot use scale and wipe at the same time.",
        );
    }
    let force = flag(&q, "force", false);
    let h = &m.services;
    let r = h
        .call(move |eng, now| {
            let mut shown = Vec::new();
            for t in &ids.ids {
                let Some((a, i)) = eng.task_owner(t).map(|(a, i)| (a.to_owned(), i.to_owned()))
                else {
                    return Err(EngineError::UnknownTask(t.clone()));
                };
                if let (Some(st), Some(inst)) = (eng.app(&a), eng.instance(&a, &i)) {
                    shown.push(eng.task_json(st, inst));
                }
            }
            let (_, dep) = eng.kill_tasks(&ids.ids, scale, now, force)?;
            Ok((shown, dep))
        })
        .await;
    match r {
        Err(_) => unavailable(),
        Ok(Err(EngineError::UnknownTask(t))) => fail(
            StatusCode::BAD_REQUEST,
            format!("Task '{t}' does not exist"),
        ),
        Ok(Err(e)) => engine_error(e),
        Ok(Ok((_, Some(d)))) => deployment_result(StatusCode::OK, &d),
        Ok(Ok((t, None))) => Json(json!({"tasks": t})).into_response(),
    }
}

/// `GET /v2/deployments`.
pub(super) async fn deployments(State(m): State<Marathon>) -> Response {
    let h = &m.services;
    match h
        .call(|eng, _| {
            eng.deployments()
                .map(|d| eng.deployment_json(d))
                .chain(
                    eng.pod_deployments()
                        .map(|(p, d)| meseta_services::engine::pods::pod_deployment_json(p, d)),
                )
                .collect::<Vec<_>>()
        })
        .await
    {
        Ok(d) => Json(Value::Array(d)).into_response(),
        Err(_) => unavailable(),
    }
}

/// `DELETE /v2/deployments/{id}`: rollback, or with `force=true` just stop (202, empty).
pub(super) async fn cancel_deployment(
    State(m): State<Marathon>,
    Path(id): Path<String>,
    Query(q): Query<Params>,
) -> Response {
    let h = &m.services;
    let force = flag(&q, "force", false);
    match h
        .call(
            move |eng, now| match eng.cancel_pod_deployment(&id, force, now) {
                Some(r) => Ok(r),
                None => eng.cancel_deployment(&id, force, now),
            },
        )
        .await
    {
        Err(_) => unavailable(),
        Ok(Err(e)) => engine_error(e),
        Ok(Ok(None)) => StatusCode::ACCEPTED.into_response(),
        Ok(Ok(Some(r))) => deployment_result(StatusCode::OK, &r),
    }
}

/// `GET /v2/queue`: apps with instances waiting, and why.
pub(super) async fn queue(State(m): State<Marathon>) -> Response {
    let h = &m.services;
    match h.call(|eng, now| eng.queue_json(now)).await {
        Ok(q) => Json(json!({"queue": q})).into_response(),
        Err(_) => unavailable(),
    }
}

/// `DELETE /v2/queue/{id}/delay`.
pub(super) async fn reset_delay(State(m): State<Marathon>, Path(rest): Path<String>) -> Response {
    let Some(app) = rest.trim_end_matches('/').strip_suffix("/delay") else {
        return fail(StatusCode::NOT_FOUND, "URI not found");
    };
    let id = app_id(app);
    let h = &m.services;
    let shown = id.clone();
    match h.call(move |eng, _| eng.reset_delay(&id)).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(_)) => fail(
            StatusCode::NOT_FOUND,
            format!("Application {shown} not found in tasks queue."),
        ),
        Err(_) => unavailable(),
    }
}

/// The group tree under `root`, built from the app and pod ids.
fn group_json(apps: &[Value], pods: &[Value], root: &str, version: &str) -> Value {
    let prefix = if root == "/" {
        "/".to_owned()
    } else {
        format!("{root}/")
    };
    let mut children: std::collections::BTreeSet<String> = Default::default();
    let mut direct = |items: &[Value]| -> Vec<Value> {
        let mut here = Vec::new();
        for a in items {
            let Some(id) = a["id"].as_str() else { continue };
            let Some(rest) = id.strip_prefix(&prefix) else {
                continue;
            };
            match rest.split_once('/') {
                None => here.push(a.clone()),
                Some((g, _)) => {
                    children.insert(format!("{prefix}{g}"));
                }
            }
        }
        here
    };
    let direct_apps = direct(apps);
    let direct_pods = direct(pods);
    let groups: Vec<Value> = children
        .iter()
        .map(|g| group_json(apps, pods, g, version))
        .collect();
    json!({"id": root, "apps": direct_apps, "groups": groups, "pods": direct_pods,
           "dependencies": [], "version": version})
}

/// Apps and pods (Marathon JSON) with the newest version among them.
type Everything = (Vec<Value>, Vec<Value>, String);

async fn all_apps(m: &Marathon) -> Result<Everything, Response> {
    let h = &m.services;
    h.call(|eng, now| {
        let apps: Vec<Value> = eng
            .apps()
            .map(|a| eng.app_json(a, Embed::default()))
            .collect();
        let pods: Vec<Value> = eng.pods().map(|p| json!(p.pod)).collect();
        let version = eng
            .apps()
            .filter_map(|a| a.app.version.clone())
            .max()
            .unwrap_or_else(|| meseta_services::engine::marathon_ts(now));
        (apps, pods, version)
    })
    .await
    .map_err(|_| unavailable())
}

/// `GET /v2/groups`.
pub(super) async fn groups(State(m): State<Marathon>) -> Response {
    match all_apps(&m).await {
        Ok((apps, pods, v)) => Json(group_json(&apps, &pods, "/", &v)).into_response(),
        Err(r) => r,
    }
}

/// `GET /v2/groups/{id}`.
pub(super) async fn group(State(m): State<Marathon>, Path(id): Path<String>) -> Response {
    let id = app_id(&id);
    match all_apps(&m).await {
        Ok((apps, pods, v)) => {
            let prefix = format!("{id}/");
            if id != "/"
                && !apps
                    .iter()
                    .chain(pods.iter())
                    .any(|a| a["id"].as_str().is_some_and(|s| s.starts_with(&prefix)))
            {
                return fail(
                    StatusCode::NOT_FOUND,
                    format!("Group '{id}' does not exist"),
                );
            }
            Json(group_json(&apps, &pods, &id, &v)).into_response()
        }
        Err(r) => r,
    }
}

fn leader_address(m: &Marathon) -> String {
    m.master.advertised_address()
}

/// `GET /v2/leader`.
pub(super) async fn leader(State(m): State<Marathon>) -> Response {
    Json(json!({"leader": leader_address(&m)})).into_response()
}

/// `GET /v2/info` with exactly the keys marathon-python accepts (reference §2.14).
pub(super) async fn info(State(m): State<Marathon>) -> Response {
    let leader = leader_address(&m);
    let framework_id = m.services.framework_id();
    let (hostname, port) = (m.master.hostname(), m.master.local_addr().port());
    Json(json!({
        "name": "marathon",
        "version": "1.11.0",
        "buildref": env!("CARGO_PKG_VERSION"),
        "elected": true,
        "leader": leader,
        "frameworkId": framework_id,
        "marathon_config": {
            "checkpoint": true, "decline_offer_duration": 120000, "executor": "//cmd",
            "failover_timeout": 604800, "features": [], "framework_name": crate::FRAMEWORK_NAME,
            "ha": false, "hostname": hostname, "local_port_max": 20000, "local_port_min": 10000,
            "master": format!("http://{leader}"), "mesos_role": "*", "mesos_user": "root",
            "webui_url": null, "maintenance_mode": false,
        },
        "zookeeper_config": {"zk": null, "zk_timeout": 10000, "zk_session_timeout": 10000, "zk_max_versions": 50},
        "http_config": {"http_port": port, "https_port": 8443},
    }))
    .into_response()
}

/// The events of `rx`, ending when the reader has fallen so far behind that some are lost.
fn until_lagging(
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<meseta_framework::Published>>,
) -> impl futures::Stream<Item = std::sync::Arc<meseta_framework::Published>> {
    BroadcastStream::new(rx)
        .take_while(|r| futures::future::ready(r.is_ok()))
        .filter_map(|r| async move { r.ok() })
}

/// `GET /v2/events`: Server-Sent Events (`event_type` filters), starting with
/// `event_stream_attached`; idle streams get a keep-alive comment every 10 s. A reader that
/// falls too far behind is cut off (as Marathon drops a subscriber with too many outstanding
/// messages): its stream ends, and it reconnects and rereads what it needs, instead of going on
/// with events silently missing.
pub(super) async fn events(State(m): State<Marathon>, Query(q): Query<Params>) -> Response {
    let h = &m.services;
    let filter: Vec<String> = values(&q, "event_type").map(str::to_owned).collect();
    let rx = h.subscribe_events();
    let now = unix_now();
    let attached = json!({"eventType": "event_stream_attached", "remoteAddress": "",
                          "timestamp": meseta_services::engine::marathon_ts(now)});
    let first = futures::stream::iter(std::iter::once(std::sync::Arc::new(
        meseta_framework::Published {
            kind: "event_stream_attached".into(),
            data: attached.to_string(),
        },
    )));
    let stream = first.chain(until_lagging(rx)).filter_map(move |ev| {
        let keep = filter.is_empty() || filter.contains(&ev.kind);
        async move {
            keep.then(|| Ok::<_, Infallible>(SseEvent::default().event(&ev.kind).data(&ev.data)))
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ev(i: usize) -> Arc<meseta_framework::Published> {
        Arc::new(meseta_framework::Published {
            kind: "status_update_event".into(),
            data: i.to_string(),
        })
    }

    #[tokio::test]
    async fn a_reader_that_keeps_up_gets_every_event_and_one_that_lags_is_cut_off() {
        let (tx, _) = tokio::sync::broadcast::channel(4);
        let keeping_up = tx.subscribe();
        let lagging = tx.subscribe();
        let mut stream = Box::pin(until_lagging(keeping_up));
        for i in 0..3 {
            tx.send(ev(i)).expect("send");
            let got = stream.next().await.expect("event");
            assert_eq!(got.data, i.to_string());
        }
        // `lagging` read nothing while 6 events went by a buffer of 4: its stream ends rather
        // than going on without the two it lost.
        for i in 3..6 {
            tx.send(ev(i)).expect("send");
        }
        drop(tx);
        let rest: Vec<_> = until_lagging(lagging).collect().await;
        assert!(rest.is_empty(), "{} events after a gap", rest.len());
        let kept: Vec<String> = stream.map(|e| e.data.clone()).collect().await;
        assert_eq!(kept, ["3", "4", "5"]);
    }
}
