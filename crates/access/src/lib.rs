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
    pub fn wrap(self: &Arc<Edge>, router: Router) -> Router {
        let full = router.merge(endpoints::routes(self.clone()));
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
