//! `/v2/pods` (Marathon 1.10 `PodsResource`): create, list, read, replace, remove, status,
//! versions, and instance kills. Bodies are validated strictly ([`meseta_services::pod`]);
//! changes answer with the `Marathon-Deployment-Id` header, and `pod_created_event`,
//! `pod_updated_event`, `pod_deleted_event` (`clientIp`, `uri`) follow each one.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use meseta_api::marathon::pod::PodDefinition;
use meseta_services::engine::model::marathon_ts;
use meseta_services::engine::{DeploymentResult, EngineError};
use meseta_services::pod::pod_from_body;
use serde_json::{json, Value};

use super::{
    app_id, body_bytes, engine_error, fail, flag, parse_json, refuse_root, unavailable, Body,
    Marathon, Params,
};

/// What a path under `/v2/pods/` names.
enum Sub {
    Pod(String),
    AllStatus,
    Status(String),
    Versions(String),
    Version(String, String),
    Instance(String, String),
    Instances(String),
    Unknown,
}

fn parse_sub(rest: &str) -> Sub {
    let Some((id, what)) = rest.split_once("::") else {
        return Sub::Pod(app_id(rest));
    };
    let blank = id.trim_matches('/').is_empty();
    let id = app_id(id);
    let what = what.trim_end_matches('/');
    match what.split_once('/') {
        None if what == "status" && blank => Sub::AllStatus,
        None if blank => Sub::Unknown,
        None => match what {
            "status" => Sub::Status(id),
            "versions" => Sub::Versions(id),
            "instances" => Sub::Instances(id),
            _ => Sub::Unknown,
        },
        Some(_) if blank => Sub::Unknown,
        Some(("versions", v)) => Sub::Version(id, v.to_owned()),
        Some(("instances", i)) => Sub::Instance(id, i.to_owned()),
        Some(_) => Sub::Unknown,
    }
}

fn unknown_pod(id: &str) -> Response {
    fail(StatusCode::NOT_FOUND, format!("Pod '{id}' does not exist"))
}

/// The client address of the request (empty when the server does not record it).
fn client_ip(ext: &Extensions, headers: &HeaderMap) -> String {
    let conn = ext.get::<ConnectInfo<SocketAddr>>();
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_owned())
        .or_else(|| conn.map(|c| c.0.ip().to_string()))
        .unwrap_or_default()
}

fn pod_event(m: &Marathon, kind: &str, client_ip: String, uri: String) {
    m.services.publish(json!({
        "eventType": kind,
        "timestamp": marathon_ts(crate::unix_now()),
        "clientIp": client_ip,
        "uri": uri,
    }));
}

fn with_deployment(mut resp: Response, r: &DeploymentResult) -> Response {
    if let Ok(v) = HeaderValue::from_str(&r.deployment_id) {
        resp.headers_mut().insert("Marathon-Deployment-Id", v);
    }
    resp
}

fn with_location(mut resp: Response, location: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert("Location", v);
    }
    resp
}

/// Reads and validates a pod body: 400 for bad JSON, 422 with every violation otherwise, and
/// 422 for a pod asking for root where the master does not allow it.
fn read_pod(m: &Marathon, body: Body) -> Result<PodDefinition, Response> {
    let bytes = body_bytes(body)?;
    let raw: Value = parse_json(&bytes)?;
    let pod = pod_from_body(&raw)
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, Json(e.marathon_body())).into_response())?;
    let mut root = Vec::new();
    if pod.user.as_deref() == Some("root") {
        root.push("/user".to_owned());
    }
    for (i, c) in pod.containers.iter().enumerate() {
        if c.user.as_deref() == Some("root") {
            root.push(format!("/containers({i})/user"));
        }
    }
    refuse_root(m, root)?;
    Ok(pod)
}

/// `POST /v2/pods`: 201 with `Location`, the pod, and `Marathon-Deployment-Id`.
pub(super) async fn create(
    State(m): State<Marathon>,
    Query(q): Query<Params>,
    ext: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let pod = match read_pod(&m, body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let force = flag(&q, "force", false);
    let r = m
        .services
        .call(move |eng, now| eng.put_pod(pod, true, force, now))
        .await;
    match r {
        Err(_) => unavailable(),
        Ok(Err(e)) => engine_error(e),
        Ok(Ok(change)) => {
            let uri = format!("/v2/pods{}", change.pod.id);
            pod_event(
                &m,
                "pod_created_event",
                client_ip(&ext, &headers),
                "/v2/pods".to_owned(),
            );
            let resp = (StatusCode::CREATED, Json(json!(change.pod))).into_response();
            with_location(with_deployment(resp, &change.result), &uri)
        }
    }
}

/// `GET /v2/pods`.
pub(super) async fn list(State(m): State<Marathon>) -> Response {
    match m
        .services
        .call(|eng, _| eng.pods().map(|p| json!(p.pod)).collect::<Vec<_>>())
        .await
    {
        Ok(pods) => Json(Value::Array(pods)).into_response(),
        Err(_) => unavailable(),
    }
}

/// `GET /v2/pods/{id}`, `{id}::status`, `::status`, `{id}::versions`, `{id}::versions/{v}`.
pub(super) async fn get_sub(State(m): State<Marathon>, Path(rest): Path<String>) -> Response {
    let h = &m.services;
    let r = match parse_sub(&rest) {
        Sub::Pod(id) => {
            h.call(move |eng, _| eng.pod(&id).map(|p| json!(p.pod)).ok_or(id))
                .await
        }
        Sub::AllStatus => {
            h.call(|eng, now| {
                let ids: Vec<String> = eng.pods().map(|p| p.pod.id.clone()).collect();
                Ok(Value::Array(
                    ids.iter()
                        .filter_map(|id| eng.pod_status_json(id, now))
                        .collect(),
                ))
            })
            .await
        }
        Sub::Status(id) => {
            h.call(move |eng, now| eng.pod_status_json(&id, now).ok_or(id))
                .await
        }
        Sub::Versions(id) => {
            h.call(move |eng, _| {
                let p = eng.pod(&id).ok_or_else(|| id.clone())?;
                let mut v: Vec<String> = p.versions.keys().cloned().collect();
                if let Some(cur) = &p.pod.version {
                    if !v.contains(cur) {
                        v.push(cur.clone());
                    }
                }
                v.sort();
                v.reverse();
                Ok(json!(v))
            })
            .await
        }
        Sub::Version(id, version) => {
            h.call(move |eng, _| {
                let p = eng.pod(&id).ok_or_else(|| id.clone())?;
                if p.pod.version.as_deref() == Some(version.as_str()) {
                    return Ok(json!(p.pod));
                }
                p.versions.get(&version).map(|d| json!(d)).ok_or(id)
            })
            .await
        }
        Sub::Instance(..) | Sub::Instances(_) | Sub::Unknown => {
            return fail(StatusCode::NOT_FOUND, "URI not found")
        }
    };
    match r {
        Err(_) => unavailable(),
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(id)) => unknown_pod(&id),
    }
}

/// `PUT /v2/pods/{id}`: creates (201) or replaces (200) the pod.
pub(super) async fn put_sub(
    State(m): State<Marathon>,
    Path(rest): Path<String>,
    Query(q): Query<Params>,
    ext: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Sub::Pod(id) = parse_sub(&rest) else {
        return fail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    };
    let pod = match read_pod(&m, body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if pod.id != id {
        return fail(
            StatusCode::BAD_REQUEST,
            format!("'{id}' does not match definition's id ('{}')", pod.id),
        );
    }
    let force = flag(&q, "force", false);
    let r = m
        .services
        .call(move |eng, now| eng.put_pod(pod, false, force, now))
        .await;
    match r {
        Err(_) => unavailable(),
        Ok(Err(e)) => engine_error(e),
        Ok(Ok(change)) => {
            let uri = format!("/v2/pods{}", change.pod.id);
            pod_event(
                &m,
                "pod_updated_event",
                client_ip(&ext, &headers),
                uri.clone(),
            );
            let status = if change.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let resp = (status, Json(json!(change.pod))).into_response();
            with_location(with_deployment(resp, &change.result), &uri)
        }
    }
}

/// `DELETE /v2/pods/{id}` (202, `Marathon-Deployment-Id`), `{id}::instances/{instance}` and
/// `{id}::instances` (body: instance ids): the killed instances' status (they are replaced).
pub(super) async fn delete_sub(
    State(m): State<Marathon>,
    Path(rest): Path<String>,
    Query(q): Query<Params>,
    ext: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let force = flag(&q, "force", false);
    match parse_sub(&rest) {
        Sub::Pod(id) => {
            let uri = format!("/v2/pods{id}");
            let r = m
                .services
                .call(move |eng, now| eng.delete_pod(&id, force, now))
                .await;
            match r {
                Err(_) => unavailable(),
                Ok(Err(e)) => engine_error(e),
                Ok(Ok(d)) => {
                    pod_event(&m, "pod_deleted_event", client_ip(&ext, &headers), uri);
                    let resp = StatusCode::ACCEPTED.into_response();
                    with_location(with_deployment(resp, &d), &d.deployment_id)
                }
            }
        }
        Sub::Instance(id, inst) => {
            let shown = inst.clone();
            let r = m
                .services
                .call(move |eng, now| eng.kill_pod_instances(&id, &[inst], now))
                .await;
            match r {
                Err(_) => unavailable(),
                Ok(Err(e)) => engine_error(e),
                Ok(Ok(mut killed)) => match killed.pop() {
                    Some(v) => Json(v).into_response(),
                    None => engine_error(EngineError::UnknownTask(shown)),
                },
            }
        }
        Sub::Instances(id) => {
            let bytes = match body_bytes(body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let ids: Vec<String> = match serde_json::from_slice(&bytes) {
                Ok(ids) => ids,
                Err(e) => {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        Json(json!({"message": "Invalid JSON",
                                    "details": [{"path": "/", "errors": [e.to_string()]}]})),
                    )
                        .into_response()
                }
            };
            let r = m
                .services
                .call(move |eng, now| eng.kill_pod_instances(&id, &ids, now))
                .await;
            match r {
                Err(_) => unavailable(),
                Ok(Err(e)) => engine_error(e),
                Ok(Ok(killed)) => Json(Value::Array(killed)).into_response(),
            }
        }
        Sub::AllStatus | Sub::Status(_) | Sub::Versions(_) | Sub::Version(..) => {
            fail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        }
        Sub::Unknown => fail(StatusCode::NOT_FOUND, "URI not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_split_at_the_double_colon() {
        assert!(matches!(parse_sub("a/b"), Sub::Pod(id) if id == "/a/b"));
        assert!(matches!(parse_sub("::status"), Sub::AllStatus));
        assert!(matches!(parse_sub("a/b::status"), Sub::Status(id) if id == "/a/b"));
        assert!(matches!(parse_sub("a::versions"), Sub::Versions(id) if id == "/a"));
        assert!(
            matches!(parse_sub("a::versions/2020-01-01T00:00:00.000Z"), Sub::Version(id, v) if id == "/a" && v.starts_with("2020"))
        );
        assert!(
            matches!(parse_sub("a::instances/a.instance-1"), Sub::Instance(id, i) if id == "/a" && i == "a.instance-1")
        );
        assert!(matches!(parse_sub("a::instances"), Sub::Instances(id) if id == "/a"));
        assert!(matches!(parse_sub("a::nope"), Sub::Unknown));
    }
}
