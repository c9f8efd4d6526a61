//! The ACL endpoints (admin, except the one-time bootstrap) and the audit log:
//!
//! - `POST /api/meseta/v1/acl/bootstrap` → `201 {accessor, secret, ...}` once; then `409`
//! - `GET|POST /api/meseta/v1/acl/tokens` (`{description, policies, principal?, ttlSeconds?}`)
//! - `DELETE /api/meseta/v1/acl/tokens/{accessor}` (revoke)
//! - `GET|POST /api/meseta/v1/acl/policies` (a policy JSON), `DELETE .../policies/{name}`
//! - `GET /api/meseta/v1/audit?limit=N` → the newest N entries, oldest first

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use meseta_acl::{hash_secret, Policy, Token};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::registry::RegistryError;
use meseta_store::Store;

use crate::{unix_now, Edge};

/// The endpoints' state: the edge, and the store its writes go through.
#[derive(Clone)]
pub(crate) struct Term {
    pub(crate) edge: Arc<Edge>,
    pub(crate) writes: Arc<dyn Store>,
}

pub(crate) fn routes(term: Term) -> Router {
    Router::new()
        .route("/api/meseta/v1/acl/bootstrap", post(bootstrap))
        .route("/api/meseta/v1/acl/tokens", get(tokens).post(create_token))
        .route("/api/meseta/v1/acl/tokens/{accessor}", delete(revoke))
        .route(
            "/api/meseta/v1/acl/policies",
            get(policies).post(apply_policy),
        )
        .route("/api/meseta/v1/acl/policies/{name}", delete(delete_policy))
        .route("/api/meseta/v1/audit", get(audit))
        .with_state(term)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let m: String = message.into();
    (status, Json(json!({"message": m, "details": []}))).into_response()
}

fn registry_error(e: RegistryError) -> Response {
    let status = match e {
        RegistryError::AlreadyBootstrapped => StatusCode::CONFLICT,
        RegistryError::NoToken(_) | RegistryError::NoPolicy(_) => StatusCode::NOT_FOUND,
        RegistryError::Store(_) | RegistryError::Corrupt { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

/// A new random secret (244 random bits from two v4 UUIDs) and its accessor.
fn mint() -> (String, String) {
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    (uuid::Uuid::new_v4().to_string(), secret)
}

/// A token as listings show it: everything but the hash.
fn view(t: &Token) -> Value {
    json!({
        "accessor": t.accessor, "description": t.description, "policies": t.policies,
        "management": t.management, "principal": t.principal, "created": t.created,
        "expires": t.expires,
    })
}

async fn bootstrap(State(Term { edge, writes }): State<Term>) -> Response {
    let (accessor, secret) = mint();
    let token = Token {
        accessor,
        secret_hash: hash_secret(&secret),
        description: "bootstrap token (global admin)".into(),
        policies: vec![],
        management: true,
        principal: None,
        created: unix_now(),
        expires: None,
    };
    match edge
        .registry
        .bootstrap(writes.as_ref(), token.clone())
        .await
    {
        Ok(()) => created(&token, &secret),
        Err(e) => registry_error(e),
    }
}

fn created(t: &Token, secret: &str) -> Response {
    let mut v = view(t);
    v["secret"] = json!(secret);
    (StatusCode::CREATED, Json(v)).into_response()
}

async fn tokens(State(Term { edge, .. }): State<Term>) -> Response {
    let snap = edge.registry.snapshot();
    Json(snap.tokens.iter().map(view).collect::<Vec<_>>()).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewToken {
    #[serde(default)]
    description: String,
    #[serde(default)]
    policies: Vec<String>,
    principal: Option<String>,
    ttl_seconds: Option<f64>,
}

async fn create_token(
    State(Term { edge, writes }): State<Term>,
    body: axum::body::Bytes,
) -> Response {
    let req: NewToken = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid token request: {e}"),
            )
        }
    };
    let snap = edge.registry.snapshot();
    if let Some(p) = req
        .policies
        .iter()
        .find(|p| !snap.policies.iter().any(|q| &q.name == *p))
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("no policy named {p}"),
        );
    }
    if let Some(p) = req
        .principal
        .as_deref()
        .filter(|p| !meseta_acl::policy::valid_name(p))
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid principal {p:?}"),
        );
    }
    if req.ttl_seconds.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ttlSeconds must be positive",
        );
    }
    let (accessor, secret) = mint();
    let now = unix_now();
    let token = Token {
        accessor,
        secret_hash: hash_secret(&secret),
        description: req.description,
        policies: req.policies,
        management: false,
        principal: req.principal,
        created: now,
        expires: req.ttl_seconds.map(|t| now + t),
    };
    match edge.registry.create_token(writes.as_ref(), &token).await {
        Ok(()) => created(&token, &secret),
        Err(e) => registry_error(e),
    }
}

async fn revoke(
    State(Term { edge, writes }): State<Term>,
    Path(accessor): Path<String>,
) -> Response {
    match edge.registry.revoke(writes.as_ref(), &accessor).await {
        Ok(()) => Json(json!({"revoked": accessor})).into_response(),
        Err(e) => registry_error(e),
    }
}

async fn policies(State(Term { edge, .. }): State<Term>) -> Response {
    Json(edge.registry.snapshot().policies.clone()).into_response()
}

async fn apply_policy(
    State(Term { edge, writes }): State<Term>,
    body: axum::body::Bytes,
) -> Response {
    let p: Policy = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid policy: {e}")),
    };
    if let Err(e) = p.validate() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
    }
    match edge.registry.apply_policy(writes.as_ref(), &p).await {
        Ok(()) => Json(p).into_response(),
        Err(e) => registry_error(e),
    }
}

async fn delete_policy(
    State(Term { edge, writes }): State<Term>,
    Path(name): Path<String>,
) -> Response {
    match edge.registry.delete_policy(writes.as_ref(), &name).await {
        Ok(()) => Json(json!({"deleted": name})).into_response(),
        Err(e) => registry_error(e),
    }
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn audit(State(Term { edge, .. }): State<Term>, Query(q): Query<Limit>) -> Response {
    match edge.audit.newest(q.limit.unwrap_or(100)).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
