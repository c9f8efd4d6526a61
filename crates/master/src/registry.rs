//! What the master persists: registered agents and frameworks (DESIGN.md decision 3).
//!
//! Keys: `/meseta/master/agents/<agent-id>` and `/meseta/master/frameworks/<framework-id>`, JSON values.
//! Tasks are not persisted: agents report them when they re-register.

use meseta_store::{put_json, Op, Store, StoreError};
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

/// Persist role weights: in one transaction when they fit in
/// [`MAX_TXN_OPS`](meseta_store::MAX_TXN_OPS) (what etcd accepts), else in several. Each
/// role's weight is its own record and no write needs a compare, so a split write leaves every
/// weight old or new; when a later transaction fails the caller puts the old ones back
/// ([`restore_weights`]).
pub(crate) async fn save_weights(
    store: &dyn Store,
    weights: &[(String, f64)],
) -> Result<(), StoreError> {
    let mut ops = Vec::new();
    for (role, w) in weights {
        let value = serde_json::to_vec(w).map_err(|e| StoreError::Encode(e.to_string()))?;
        ops.push(Op::Put {
            key: format!("{WEIGHTS}{role}"),
            value,
            lease: None,
        });
    }
    write_in_chunks(store, ops).await
}

/// Put back the weight records of roles as they were before a refused [`save_weights`]
/// (`None`: the role had no weight record).
pub(crate) async fn restore_weights(
    store: &dyn Store,
    before: &[(String, Option<f64>)],
) -> Result<(), StoreError> {
    let mut ops = Vec::new();
    for (role, w) in before {
        let key = format!("{WEIGHTS}{role}");
        ops.push(match w {
            Some(w) => {
                let value = serde_json::to_vec(w).map_err(|e| StoreError::Encode(e.to_string()))?;
                Op::Put {
                    key,
                    value,
                    lease: None,
                }
            }
            None => Op::Delete { key },
        });
    }
    write_in_chunks(store, ops).await
}

/// Writes `ops` in the bounded transactions of [`meseta_store::txn_chunks`].
async fn write_in_chunks(store: &dyn Store, ops: Vec<Op>) -> Result<(), StoreError> {
    for txn in meseta_store::txn_chunks(ops) {
        store.txn(vec![], txn, vec![]).await?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_store::mem::MemStore;

    #[tokio::test]
    async fn many_weights_go_out_in_bounded_transactions_and_restore() {
        let store = MemStore::new();
        let weights: Vec<(String, f64)> = (0..250).map(|i| (format!("r{i}"), 2.0)).collect();
        let start = store.revision().await.expect("revision");
        save_weights(&store, &weights).await.expect("save");
        let end = store.revision().await.expect("revision");
        assert_eq!(end - start, 3, "250 weights in 100 + 100 + 50");
        assert_eq!(load(&store).await.expect("load").weights.len(), 250);

        let before: Vec<(String, Option<f64>)> = (0..250)
            .map(|i| (format!("r{i}"), (i % 2 == 0).then_some(1.5)))
            .collect();
        restore_weights(&store, &before).await.expect("restore");
        let back = load(&store).await.expect("load").weights;
        assert_eq!(
            back.len(),
            125,
            "roles that had no weight lost their record"
        );
        assert!(back.iter().all(|(_, w)| *w == 1.5));
    }
}
