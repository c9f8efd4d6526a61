//! Marathon's `/v2` REST API (reference `marathon-chronos-api.md` §2–§5) over the services
//! scheduler. Handlers parse and validate, then run one closure on the engine
//! ([`ServicesHandle::call`]); the answer comes after the
//! change is persisted. Errors use Marathon's `{"message", "details"}` body.
//!
//! - `apps.rs`: `/v2/apps…` (create, read, update, delete, restart, tasks, versions, canary)
//! - `pods.rs`: `/v2/pods…` (create, read, replace, delete, status, versions, instance kills)
//! - `groups.rs`: `/v2/groups` changes (create, replace, scale, delete) and `/v2/groups/{id}/apps`
//! - `other.rs`: `/v2/tasks`, `/v2/deployments`, `/v2/queue`, `/v2/groups` (read), `/v2/info`,
//!   `/v2/leader`, `/v2/events` (SSE)

// Helpers return `Result<_, Response>` so handlers can use `?`: the error is the finished HTTP
// answer, built once per request, so its size does not matter.
#![allow(clippy::result_large_err)]

mod apps;
mod groups;
mod other;
mod pods;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use meseta_services::engine::{DeploymentResult, EngineError};
use serde_json::{json, Value};

use meseta_master::Master;

use crate::ServicesHandle;

/// What every handler gets: the scheduler's handle and the master (for `/v2/info`, `/v2/leader`).
#[derive(Clone)]
pub(crate) struct Marathon {
    /// The master the scheduler runs against.
    pub master: Master,
    /// The services scheduler (a stopped one fails its calls: answer [`unavailable`]).
    pub services: ServicesHandle,
}

/// The `/v2` routes.
pub(crate) fn routes() -> Router<Marathon> {
    Router::new()
        .route("/v2/apps", get(apps::list).post(apps::create))
        .route(
            "/v2/apps/{*rest}",
            get(apps::get_sub)
                .put(apps::put_sub)
                .patch(apps::patch_sub)
                .delete(apps::delete_sub)
                .post(apps::post_sub),
        )
        .route("/v2/pods", get(pods::list).post(pods::create))
        .route(
            "/v2/pods/{*rest}",
            get(pods::get_sub)
                .put(pods::put_sub)
                .delete(pods::delete_sub),
        )
        .route("/v2/tasks", get(other::tasks))
        .route("/v2/tasks/delete", post(other::delete_tasks))
        .route("/v2/deployments", get(other::deployments))
        .route(
            "/v2/deployments/{id}",
            axum::routing::delete(other::cancel_deployment),
        )
        .route("/v2/queue", get(other::queue))
        .route(
            "/v2/queue/{*rest}",
            axum::routing::delete(other::reset_delay),
        )
        .route(
            "/v2/groups",
            get(other::groups)
                .post(groups::create_root)
                .put(groups::update_root)
                .delete(groups::delete_root),
        )
        .route(
            "/v2/groups/{*id}",
            get(groups::get_sub)
                .post(groups::create_sub)
                .put(groups::update_sub)
                .delete(groups::delete_sub),
        )
        .route("/v2/info", get(other::info))
        .route("/v2/leader", get(other::leader))
        .route("/v2/events", get(other::events))
        .route("/v2", any(not_found))
        .route("/v2/{*rest}", any(not_found))
        .method_not_allowed_fallback(method_not_allowed)
}

/// A `/v2` path no route serves: Marathon's JSON error body, not the master's.
async fn not_found() -> Response {
    fail(StatusCode::NOT_FOUND, "URI not found")
}

/// A known `/v2` path with a method it does not take: Marathon's JSON body (its reason phrase).
async fn method_not_allowed() -> Response {
    fail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

/// Query parameters as pairs (repeated keys allowed).
pub(super) type Params = Vec<(String, String)>;

/// A boolean query parameter (`True`/`true`; anything else false; absent → `default`).
pub(super) fn flag(q: &Params, name: &str, default: bool) -> bool {
    q.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map_or(default, |(_, v)| v.eq_ignore_ascii_case("true"))
}

/// All values of a query parameter.
pub(super) fn values<'a>(q: &'a Params, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    q.iter()
        .filter(move |(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A Marathon error body.
pub(super) fn fail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"message": message.into()}))).into_response()
}

/// Engine refusals as Marathon answers them.
pub(super) fn engine_error(e: EngineError) -> Response {
    if let EngineError::Invalid(v) = &e {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(v.marathon_body())).into_response();
    }
    let status = match &e {
        EngineError::UnknownApp(_)
        | EngineError::UnknownPod(_)
        | EngineError::UnknownDeployment(_)
        | EngineError::UnknownTask(_)
        | EngineError::UnknownVersion(..) => StatusCode::NOT_FOUND,
        EngineError::AppExists(_) | EngineError::Locked(_) | EngineError::Conflict(_) => {
            StatusCode::CONFLICT
        }
        EngineError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let mut body = json!({"message": e.to_string()});
    if let EngineError::Locked(ids) = &e {
        body["deployments"] = json!(ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>());
    }
    (status, Json(body)).into_response()
}

/// The services scheduler stopped.
pub(super) fn unavailable() -> Response {
    fail(
        StatusCode::SERVICE_UNAVAILABLE,
        "the services scheduler is not running or could not store the change (check before retrying)",
    )
}

/// `200 {"version","deploymentId"}` with `Marathon-Deployment-Id` (status configurable).
pub(super) fn deployment_result(status: StatusCode, r: &DeploymentResult) -> Response {
    let mut resp = (
        status,
        Json(json!({"version": r.version, "deploymentId": r.deployment_id})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&r.deployment_id) {
        resp.headers_mut().insert("Marathon-Deployment-Id", v);
    }
    resp
}

/// A request body, or why it could not be read.
pub(super) type Body = Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;

/// The body's bytes; a body over the 1 MiB limit is a 413 with a Marathon error body.
pub(super) fn body_bytes(b: Body) -> Result<axum::body::Bytes, Response> {
    b.map_err(|e| {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "Request body too large: the limit is 1 MiB".to_owned()
        } else {
            e.body_text()
        };
        fail(status, message)
    })
}

/// Parse a JSON object body: syntax errors are 400, shape errors (a non-object included) 422
/// (reference §0.2).
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    let text = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    let value: Value = serde_json::from_slice(text).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "Invalid JSON", "details": e.to_string()})),
        )
            .into_response()
    })?;
    if !value.is_object() {
        // Every `/v2` body is an object; serde would read an array as a struct's fields.
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "Invalid JSON",
                        "details": [{"path": "/", "errors": ["error.expected.jsobject"]}]})),
        )
            .into_response());
    }
    serde_json::from_value(value).map_err(shape_error)
}

/// Well-formed JSON of the wrong shape or type: 422 (reference §0.2).
pub(super) fn shape_error(e: serde_json::Error) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"message": "Invalid JSON",
                    "details": [{"path": "/", "errors": [e.to_string()]}]})),
    )
        .into_response()
}

/// Apps asking to run as root (at these body paths) are a 422 unless the master allows root
/// tasks (`--allow-root`).
pub(super) fn refuse_root(m: &Marathon, at: Vec<String>) -> Result<(), Response> {
    if at.is_empty() || m.master.allows_root_tasks() {
        return Ok(());
    }
    meseta_services::validate::root_refused(&at)
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, Json(e.marathon_body())).into_response())
}

/// Apps mapping a host port that no agent of the cluster offers are a 422 naming each such
/// `hostPort` (`apps`: the apps with their body paths).
pub(super) fn refuse_unoffered_host_ports(
    m: &Marathon,
    apps: &[(String, &meseta_api::marathon::App)],
) -> Result<(), Response> {
    let wanted: Vec<(String, usize, u64)> = apps
        .iter()
        .flat_map(|(at, app)| {
            meseta_services::validate::mapped_host_ports(app)
                .into_iter()
                .map(move |(i, p)| (at.clone(), i, p))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let ports: Vec<u64> = wanted.iter().map(|w| w.2).collect();
    let missing = m.master.ports_no_agent_offers(&ports);
    let bad: Vec<_> = wanted
        .into_iter()
        .filter(|w| missing.contains(&w.2))
        .collect();
    meseta_services::validate::host_ports_refused(&bad)
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, Json(e.marathon_body())).into_response())
}

/// Apps naming a secret this master cannot deliver (no such secret, no key, another key) are
/// a 422 naming each `secrets(name)/source` (`apps`: the apps with their body paths).
pub(super) fn refuse_missing_secrets(
    m: &Marathon,
    apps: &[(String, &meseta_api::marathon::App)],
) -> Result<(), Response> {
    let resolver = m.master.secret_resolver();
    let mut details = Vec::new();
    for (at, app) in apps {
        for (path, source) in meseta_services::secrets::sources(app) {
            let why = match &resolver {
                None => Some("this master has no secrets store".to_string()),
                Some(r) => (r.0)(&source).err(),
            };
            if let Some(why) = why {
                details.push(json!({"path": format!("{at}{path}"), "errors": [why]}));
            }
        }
    }
    if details.is_empty() {
        return Ok(());
    }
    Err((
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"message": "Object is not valid", "details": details})),
    )
        .into_response())
}

/// Apps asking for a privileged container (at these body paths) are a 422 unless the master
/// allows them (`--docker-allow-privileged`).
pub(super) fn refuse_privileged(m: &Marathon, at: Vec<String>) -> Result<(), Response> {
    if at.is_empty() || m.master.allows_privileged_containers() {
        return Ok(());
    }
    meseta_services::validate::privileged_refused(&at)
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, Json(e.marathon_body())).into_response())
}

/// An app id from a URL path: leading/trailing (and doubled) slashes removed, made absolute.
pub(super) fn app_id(raw: &str) -> String {
    let segs: Vec<&str> = raw.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segs.join("/"))
}
