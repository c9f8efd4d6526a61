//! `/v2/groups` changes: create (`POST`), replace, scale or dry-run (`PUT`), remove (`DELETE`),
//! and `GET /v2/groups/{id}/apps`. Bodies are resolved and validated here
//! ([`meseta_services::group`]); the change itself is one engine call, so it either stores
//! every app of the group and starts one deployment, or changes nothing.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use meseta_services::engine::view::Embed;
use meseta_services::engine::{GroupError, GroupOutcome};
use meseta_services::group::{resolve_update, GroupNode, GroupUpdate};
use meseta_services::path::{join, resolve};
use serde_json::json;

use super::Marathon;
use super::{
    app_id, body_bytes, deployment_result, engine_error, fail, flag, parse_json, refuse_privileged,
    refuse_root, refuse_unoffered_host_ports, unavailable, Body, Params,
};
use crate::unix_now;
use crate::ServicesHandle;

/// `POST /v2/groups`.
pub(super) async fn create_root(
    State(m): State<Marathon>,
    Query(q): Query<Params>,
    body: Body,
) -> Response {
    create(m, "/".into(), q, body).await
}

/// `POST /v2/groups/{id}`.
pub(super) async fn create_sub(
    State(m): State<Marathon>,
    Path(id): Path<String>,
    Query(q): Query<Params>,
    body: Body,
) -> Response {
    create(m, app_id(&id), q, body).await
}

/// `PUT /v2/groups`.
pub(super) async fn update_root(
    State(m): State<Marathon>,
    Query(q): Query<Params>,
    body: Body,
) -> Response {
    update(m, "/".into(), q, body).await
}

/// `PUT /v2/groups/{id}`.
pub(super) async fn update_sub(
    State(m): State<Marathon>,
    Path(id): Path<String>,
    Query(q): Query<Params>,
    body: Body,
) -> Response {
    update(m, app_id(&id), q, body).await
}

/// `DELETE /v2/groups`: every app.
pub(super) async fn delete_root(State(m): State<Marathon>, Query(q): Query<Params>) -> Response {
    delete(m, "/".into(), q).await
}

/// `DELETE /v2/groups/{id}`.
pub(super) async fn delete_sub(
    State(m): State<Marathon>,
    Path(id): Path<String>,
    Query(q): Query<Params>,
) -> Response {
    delete(m, app_id(&id), q).await
}

/// `GET /v2/groups/{id}`, or `GET /v2/groups/{id}/apps` (every app under the group, as a
/// bare array).
pub(super) async fn get_sub(State(m): State<Marathon>, Path(id): Path<String>) -> Response {
    let trimmed = id.trim_end_matches('/');
    let Some(group) = trimmed
        .strip_suffix("/apps")
        .or((trimmed == "apps").then_some(""))
    else {
        return super::other::group(State(m), Path(id)).await;
    };
    let group = app_id(group);
    let h = &m.services;
    let r = h
        .call(move |eng, _| {
            eng.group_exists(&group)
                .then(|| {
                    eng.group_apps(&group)
                        .map(|a| eng.app_json(a, Embed::default()))
                        .collect::<Vec<_>>()
                })
                .ok_or(group)
        })
        .await;
    match r {
        Err(_) => unavailable(),
        Ok(Ok(apps)) => Json(apps).into_response(),
        Ok(Err(g)) => fail(StatusCode::NOT_FOUND, format!("Group '{g}' does not exist")),
    }
}

/// The group a body names: its `id` resolved against the URL's group (the URL's group when
/// absent), or the 422.
fn group_of(update: &GroupUpdate, url_group: &str) -> Result<String, Response> {
    let Some(raw) = update.id.as_deref() else {
        return Ok(url_group.to_owned());
    };
    resolve(raw, url_group).map(|s| join(&s)).map_err(|e| {
        invalid(json!({"message": "Object is not valid",
                       "details": [{"path": "/id", "errors": [e.to_string()]}]}))
    })
}

fn invalid(body: serde_json::Value) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// The body parsed and resolved into the group it describes.
fn parse_group(body: &[u8], url_group: &str) -> Result<(GroupUpdate, String), Response> {
    let update: GroupUpdate = parse_json(body)?;
    let gid = group_of(&update, url_group)?;
    Ok((update, gid))
}

/// The body resolved and validated; apps asking for root are refused unless allowed.
fn resolved(m: &Marathon, update: &GroupUpdate, gid: &str) -> Result<GroupNode, Response> {
    let node = resolve_update(update, gid).map_err(|e| invalid(e.marathon_body()))?;
    refuse_root(m, node.root_app_paths())?;
    refuse_privileged(m, node.privileged_app_paths())?;
    refuse_unoffered_host_ports(m, &node.apps_with_paths())?;
    super::refuse_missing_secrets(m, &node.apps_with_paths())?;
    Ok(node)
}

/// Engine refusals of group requests as Marathon answers them. A refused change (conflict,
/// lock, invalid target) also emits `group_change_failed` (reference §4.1).
fn refused(h: &ServicesHandle, group: &str, e: GroupError) -> Response {
    if !matches!(e, GroupError::Unknown(_)) {
        let now = meseta_services::engine::marathon_ts(unix_now());
        h.publish(json!({"eventType": "group_change_failed", "timestamp": now,
                         "groupId": group, "version": now, "reason": e.to_string()}));
    }
    group_error(e)
}

/// Engine refusals of group requests as Marathon answers them.
fn group_error(e: GroupError) -> Response {
    match e {
        GroupError::Engine(e) => engine_error(e),
        GroupError::Invalid(v) => invalid(v.marathon_body()),
        GroupError::Exists(_) => fail(StatusCode::CONFLICT, e.to_string()),
        GroupError::Unknown(_) => fail(StatusCode::NOT_FOUND, e.to_string()),
    }
}

async fn create(m: Marathon, url_group: String, q: Params, body: Body) -> Response {
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let node = match parse_group(&body, &url_group).and_then(|(u, gid)| resolved(&m, &u, &gid)) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let h = &m.services;
    let force = flag(&q, "force", false);
    let gid = node.id.clone();
    match h
        .call(move |eng, now| eng.create_group(&node, now, force))
        .await
    {
        Err(_) => unavailable(),
        Ok(Err(e)) => refused(h, &gid, e),
        Ok(Ok(r)) => {
            let mut resp = deployment_result(StatusCode::CREATED, &r);
            if let Ok(v) = HeaderValue::from_str(&format!("/v2/groups{gid}")) {
                resp.headers_mut().insert("Location", v);
            }
            resp
        }
    }
}

async fn update(m: Marathon, url_group: String, q: Params, body: Body) -> Response {
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (update, gid) = match parse_group(&body, &url_group) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let force = flag(&q, "force", false);
    let dry_run = flag(&q, "dryRun", false);
    if update.version.is_some() {
        return fail(
            StatusCode::BAD_REQUEST,
            "Group rollback is not supported: group versions are not kept. Roll back each app \
             with PUT /v2/apps/{id} and {\"version\": ...}.",
        );
    }
    let node = match update.scale_by {
        Some(_) => None,
        None => match resolved(&m, &update, &gid) {
            Ok(n) => Some(n),
            Err(r) => return r,
        },
    };
    let h = &m.services;
    let scale_by = update.scale_by;
    let shown = gid.clone();
    let r = h
        .call(move |eng, now| match (node, scale_by) {
            (Some(node), _) => eng.update_group(&node, now, force, dry_run),
            (None, Some(f)) => eng.scale_group(&gid, f, now, force, dry_run),
            (None, None) => Err(GroupError::Unknown(gid)),
        })
        .await;
    match r {
        Err(_) => unavailable(),
        Ok(Err(e)) => refused(h, &shown, e),
        Ok(Ok(GroupOutcome::Deployed(r))) => deployment_result(StatusCode::OK, &r),
        Ok(Ok(GroupOutcome::DryRun(plan))) => {
            Json(json!({"steps": plan.marathon_steps()})).into_response()
        }
    }
}

async fn delete(m: Marathon, group: String, q: Params) -> Response {
    let h = &m.services;
    let force = flag(&q, "force", false);
    let shown = group.clone();
    match h
        .call(move |eng, now| eng.delete_group(&group, now, force))
        .await
    {
        Err(_) => unavailable(),
        Ok(Err(e)) => refused(h, &shown, e),
        Ok(Ok(r)) => deployment_result(StatusCode::OK, &r),
    }
}
