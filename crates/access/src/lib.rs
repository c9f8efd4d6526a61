//! The master's access edge: one tower layer around the whole router that authenticates each
//! request once, checks it against the ACL policies (`meseta-acl`), filters listings and the
//! event stream to what the token may read, applies the bulk-delete guard and writes the
//! audit log; plus the endpoints that manage tokens and policies and read the audit log.
//!
//! ```text
//!  request ─▶ [check: credential → token (snapshot by hash) → classify → allows?
//!                      → bulk-delete guard] ─▶ router ─▶ [filter listing / events] ─▶ response
//!                 │ denial, mutation                               │
//!                 ▼                                                ▼
//!            audit log (channel → writer → store ring)        audit entry with status
//! ```
//!
//! With ACLs off every request has all grants, but the guard and the audit log still run.
//! Called by the `meseta` binary, which wraps the master's router with [`Edge::wrap`].
#![forbid(unsafe_code)]

pub mod audit;
mod check;
mod endpoints;
mod events;
mod peek;
pub mod registry;

use std::sync::{Arc, Mutex};

use axum::Router;
use meseta_acl::guard::DeleteWindow;
use meseta_store::Store;

pub use audit::{AuditEntry, AuditLog};
pub use registry::{Registry, RegistryError};

/// How the edge behaves.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// Whether requests need tokens (`--acl`).
    pub enabled: bool,
    /// The bulk-delete guard's N: more apps or jobs than this in one request, or within a
    /// minute by one token, need `?confirm=true` (`--bulk-delete-limit`).
    pub bulk_delete_limit: usize,
    /// Entries the audit ring keeps.
    pub audit_capacity: usize,
}

impl Default for AccessConfig {
    fn default() -> AccessConfig {
        AccessConfig {
            enabled: false,
            bulk_delete_limit: 10,
            audit_capacity: 10_000,
        }
    }
}

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Loading the tokens and policies failed.
    #[error("loading ACL tokens and policies: {0}")]
    Registry(#[from] RegistryError),
    /// Opening the audit log failed.
    #[error("opening the audit log: {0}")]
    Audit(#[from] meseta_store::StoreError),
}

/// The access edge of one master.
#[derive(Debug)]
pub struct Edge {
    cfg: AccessConfig,
    registry: Arc<Registry>,
    audit: AuditLog,
    deletes: Mutex<DeleteWindow>,
}

impl Edge {
    /// Loads tokens and policies from `store` and starts the audit writer.
    pub async fn open(cfg: AccessConfig, store: Arc<dyn Store>) -> Result<Arc<Edge>, AccessError> {
        let registry = Registry::open(store.clone()).await?;
        let audit = AuditLog::start(store, cfg.audit_capacity).await?;
        Ok(Arc::new(Edge {
            cfg,
            registry,
            audit,
            deletes: Mutex::new(DeleteWindow::default()),
        }))
    }

    /// `router` with the ACL and audit endpoints added and every request going through the
    /// check. Internal look-ups (what a group delete would remove) go to `router` directly.
    /// Token and policy changes are written through `writes`: the store of the master this
    /// router serves, fenced by its leadership under HA, so that a deposed leader that has not
    /// noticed yet cannot change them.
    pub fn wrap(self: &Arc<Edge>, router: Router, writes: Arc<dyn Store>) -> Router {
        let term = endpoints::Term {
            edge: self.clone(),
            writes,
        };
        let full = router.merge(endpoints::routes(term));
        let state = check::Gate {
            edge: self.clone(),
            inner: full.clone(),
        };
        full.layer(axum::middleware::from_fn_with_state(state, check::check))
    }
}

/// Unix time in seconds.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use meseta_store::election::{Election, LeaderInfo, LEADER_KEY};
    use meseta_store::mem::MemStore;
    use tower::ServiceExt;

    use super::*;

    fn leader(id: &str) -> LeaderInfo {
        LeaderInfo {
            id: id.into(),
            url: format!("http://{id}:5050"),
            elected_at: 0.0,
        }
    }

    async fn post(
        router: &Router,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, String) {
        let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = router
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn a_deposed_leader_cannot_change_tokens() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let election = Election::new(store.clone(), Duration::from_secs(5));
        let l1 = election
            .campaign(&leader("m1"), |_| {})
            .await
            .expect("m1 leads");
        let cfg = AccessConfig {
            enabled: true,
            ..AccessConfig::default()
        };
        let edge = Edge::open(cfg, store.clone()).await.expect("edge");
        let router = edge.wrap(Router::new(), l1.fenced_store());
        let (s, body) = post(&router, "/api/meseta/v1/acl/bootstrap", None, "").await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let admin = v["secret"].as_str().expect("secret").to_string();
        let tokens = || async { store.list("/meseta/acl/tokens/").await.expect("list").len() };
        assert_eq!(tokens().await, 1);
        // m1's leadership goes behind its back and m2 leads: m1's router may not write.
        store.delete(LEADER_KEY).await.expect("delete");
        let _l2 = election
            .campaign(&leader("m2"), |_| {})
            .await
            .expect("m2 leads");
        let (s, body) = post(
            &router,
            "/api/meseta/v1/acl/tokens",
            Some(&admin),
            r#"{"description":"late","policies":[]}"#,
        )
        .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(tokens().await, 1, "nothing written by the deposed leader");
    }
}
