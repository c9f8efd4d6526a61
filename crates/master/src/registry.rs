//! What the master persists: registered agents and frameworks (DESIGN.md decision 3).
//!
//! Keys: `/meseta/master/agents/<agent-id>` and `/meseta/master/frameworks/<framework-id>`, JSON values.
//! Tasks are not persisted: agents report them when they re-register.

use meseta_store::{put_json, Store, StoreError};
use meseta_types::{AgentId, FrameworkId, Resources};

use crate::ops_state::Persisted;
use crate::records::{AgentRecord, FrameworkRecord, Recovered};

const AGENTS: &str = "/meseta/master/agents/";
const FRAMEWORKS: &str = "/meseta/master/frameworks/";
const WEIGHTS: &str = "/meseta/master/weights/";
const QUOTAS: &str = "/meseta/master/quota/";
/// The maintenance schedule and the machines that are down.
const MAINTENANCE: &str = "/meseta/master/maintenance";
/// Dynamic reservations of every agent, one JSON map `{agent id: [Resource]}`.
const RESERVATIONS: &str = "/meseta/master/reservations";

/// Load the persisted agents and frameworks. A record that no longer parses is skipped with a warning.
pub(crate) async fn load(store: &dyn Store) -> Result<Recovered, StoreError> {
    let mut out = Recovered::default();
    for kv in store.list(AGENTS).await? {
        match serde_json::from_slice::<AgentRecord>(&kv.value) {
            Ok(r) => out.agents.push(r),
            Err(e) => tracing::warn!(key = %kv.key, error = %e, "skipping unreadable agent record"),
        }
    }
    for kv in store.list(FRAMEWORKS).await? {
        match serde_json::from_slice::<FrameworkRecord>(&kv.value) {
            Ok(r) => out.frameworks.push(r),
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "skipping unreadable framework record")
            }
        }
    }
    for kv in store.list(WEIGHTS).await? {
        match serde_json::from_slice::<f64>(&kv.value) {
            Ok(w) => out.weights.push((kv.key[WEIGHTS.len()..].to_string(), w)),
            Err(e) => tracing::warn!(key = %kv.key, error = %e, "skipping unreadable weight"),
        }
    }
    for kv in store.list(QUOTAS).await? {
        match serde_json::from_slice::<meseta_allocator::Quota>(&kv.value) {
            Ok(q) => out.quotas.push((kv.key[QUOTAS.len()..].to_string(), q)),
            Err(e) => tracing::warn!(key = %kv.key, error = %e, "skipping unreadable quota"),
        }
    }
    if let Some(kv) = store.get(RESERVATIONS).await? {
        match serde_json::from_slice(&kv.value) {
            Ok(r) => out.reservations = r,
            Err(e) => tracing::warn!(error = %e, "skipping unreadable reservations"),
        }
    }
    if let Some(kv) = store.get(MAINTENANCE).await? {
        match serde_json::from_slice(&kv.value) {
            Ok(m) => out.maintenance = m,
            Err(e) => tracing::warn!(error = %e, "skipping unreadable maintenance schedule"),
        }
    }
    Ok(out)
}

/// Persist the maintenance schedule and down machines.
pub(crate) async fn save_maintenance(store: &dyn Store, m: &Persisted) -> Result<(), StoreError> {
    put_json(store, MAINTENANCE, m).await.map(|_| ())
}

/// Persist the dynamic reservations of every agent.
pub(crate) async fn save_reservations(
    store: &dyn Store,
    r: &std::collections::BTreeMap<AgentId, Resources>,
) -> Result<(), StoreError> {
    put_json(store, RESERVATIONS, r).await.map(|_| ())
}

/// Persist role weights (all in one transaction).
pub(crate) async fn save_weights(
    store: &dyn Store,
    weights: &[(String, f64)],
) -> Result<(), StoreError> {
    let mut ops = Vec::new();
    for (role, w) in weights {
        let value = serde_json::to_vec(w).map_err(|e| StoreError::Encode(e.to_string()))?;
        ops.push(meseta_store::Op::Put {
            key: format!("{WEIGHTS}{role}"),
            value,
            lease: None,
        });
    }
    store.txn(vec![], ops, vec![]).await.map(|_| ())
}

/// Persist a role's quota, or delete it (`None`).
pub(crate) async fn save_quota(
    store: &dyn Store,
    role: &str,
    quota: Option<&meseta_allocator::Quota>,
) -> Result<(), StoreError> {
    let key = format!("{QUOTAS}{role}");
    match quota {
        Some(q) => put_json(store, &key, q).await.map(|_| ()),
        None => store.delete(&key).await.map(|_| ()),
    }
}

/// Persist an agent (before it is told it is registered).
pub(crate) async fn save_agent(store: &dyn Store, r: &AgentRecord) -> Result<(), StoreError> {
    put_json(store, &format!("{AGENTS}{}", r.id), r)
        .await
        .map(|_| ())
}

/// Persist a framework (before it is told it is subscribed).
pub(crate) async fn save_framework(
    store: &dyn Store,
    r: &FrameworkRecord,
) -> Result<(), StoreError> {
    put_json(store, &format!("{FRAMEWORKS}{}", r.id), r)
        .await
        .map(|_| ())
}

/// Forget a removed framework. Failures are logged: a stale record only costs a recovered entry.
pub(crate) async fn forget_framework(store: &dyn Store, id: &FrameworkId) {
    if let Err(e) = store.delete(&format!("{FRAMEWORKS}{id}")).await {
        tracing::warn!(framework_id = %id, error = %e, "could not delete framework record");
    }
}
