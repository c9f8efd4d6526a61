//! Secrets of `meseta dev` and `meseta master`: the key (`--secrets-key-file` or
//! `MESETA_SECRETS_KEY`; `meseta dev` creates `<data dir>/secrets.key` beside its store when
//! given none), the registry on the master's store handed to the master as its resolver, and the
//! endpoints (inside the access edge, which checks the `secrets` grants by path):
//!
//! - `PUT /api/meseta/v1/secrets/{path}` `{"value": "..."}` → 201 created / 200 replaced
//! - `GET /api/meseta/v1/secrets` → `{"secrets": [{id, version, created, updated}]}`
//! - `GET /api/meseta/v1/secrets/{path}` → the metadata; `DELETE` → 204
//!
//! No response holds a value.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meseta_master::{MasterConfig, SecretResolver};
use meseta_secrets::{SecretError, SecretKey, Secrets};
use meseta_store::Store;
use serde_json::json;

/// Secrets flags.
#[derive(clap::Args, Debug)]
pub struct SecretsArgs {
    /// File holding the secrets key (base64 of 32 bytes; `head -c32 /dev/urandom | base64`).
    /// Without it the key comes from `MESETA_SECRETS_KEY`; with neither, `meseta master`
    /// refuses secret writes and launches that need secrets (`meseta dev` creates
    /// `secrets.key` in its data dir).
    #[arg(long)]
    pub secrets_key_file: Option<PathBuf>,
}

/// The key the flags name, or (for `meseta dev`, `dev_key`) the one in that file, created when
/// absent.
fn key(a: &SecretsArgs, dev_key: Option<&Path>) -> anyhow::Result<Option<SecretKey>> {
    let env = std::env::var(meseta_secrets::KEY_ENV).ok();
    let key = SecretKey::load(a.secrets_key_file.as_deref(), env.as_deref())?;
    match (key, dev_key) {
        (Some(k), _) => Ok(Some(k)),
        (None, Some(p)) => Ok(Some(SecretKey::read_or_create(p)?)),
        (None, None) => Ok(None),
    }
}

/// Opens the secrets registry on `store` and makes it the master's resolver.
pub async fn install(
    a: &SecretsArgs,
    dev_key: Option<&Path>,
    store: Arc<dyn Store>,
    cfg: &mut MasterConfig,
) -> anyhow::Result<Arc<Secrets>> {
    let key = key(a, dev_key)?;
    if key.is_none() {
        eprintln!(
            "meseta: no secrets key (--secrets-key-file or MESETA_SECRETS_KEY): secrets \
             cannot be stored or delivered"
        );
    }
    let secrets = Secrets::open(store, key)
        .await
        .context("opening the secrets store")?;
    let s = secrets.clone();
    cfg.secrets = Some(SecretResolver(Arc::new(move |path: &str| {
        s.resolve(path).map_err(|e| e.to_string())
    })));
    Ok(secrets)
}

/// The secrets endpoints.
pub fn routes(secrets: Arc<Secrets>) -> Router {
    Router::new()
        .route("/api/meseta/v1/secrets", get(list))
        .route(
            "/api/meseta/v1/secrets/{*path}",
            get(one).put(put).delete(remove),
        )
        .with_state(secrets)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let m: String = message.into();
    (status, Json(json!({"message": m, "details": []}))).into_response()
}

fn failure(e: SecretError) -> Response {
    let status = match &e {
        SecretError::NoKey => StatusCode::CONFLICT,
        SecretError::Path(_) | SecretError::TooLarge { .. } | SecretError::NotText(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        SecretError::NotFound(_) => StatusCode::NOT_FOUND,
        SecretError::Conflict(_) => StatusCode::CONFLICT,
        SecretError::OtherKey { .. } | SecretError::Open(_) => StatusCode::CONFLICT,
        SecretError::Corrupt { .. } | SecretError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

fn absolute(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

async fn list(State(s): State<Arc<Secrets>>) -> Response {
    Json(json!({"secrets": s.list()})).into_response()
}

async fn one(State(s): State<Arc<Secrets>>, UrlPath(path): UrlPath<String>) -> Response {
    let path = absolute(&path);
    match s.get(&path) {
        Some(m) => Json(m).into_response(),
        None => failure(SecretError::NotFound(path)),
    }
}

async fn put(
    State(s): State<Arc<Secrets>>,
    UrlPath(path): UrlPath<String>,
    body: Bytes,
) -> Response {
    let path = absolute(&path);
    // Parse errors never quote the body: it holds the value.
    let value = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("value")?.as_str().map(str::to_string));
    let Some(value) = value else {
        return error(
            StatusCode::BAD_REQUEST,
            "expecting a JSON object {\"value\": \"...\"} with a string value",
        );
    };
    match s.put(&path, &value).await {
        Ok((meta, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(meta)).into_response()
        }
        Err(e) => failure(e),
    }
}

async fn remove(State(s): State<Arc<Secrets>>, UrlPath(path): UrlPath<String>) -> Response {
    match s.delete(&absolute(&path)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(e),
    }
}
