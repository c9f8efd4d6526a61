//! What the master persists: registered agents and frameworks (DESIGN.md decision 3).
//!
//! Keys: `/meseta/master/agents/<agent-id>` and `/meseta/master/frameworks/<framework-id>`, JSON values.
//! Tasks are not persisted: agents report them when they re-register.

use meseta_api::scheduler::FrameworkInfo;
use meseta_store::{put_json, Store, StoreError};
use meseta_types::{AgentId, Attributes, FrameworkId, Resources};
use serde::{Deserialize, Serialize};

const AGENTS: &str = "/meseta/master/agents/";
const FRAMEWORKS: &str = "/meseta/master/frameworks/";
const WEIGHTS: &str = "/meseta/master/weights/";
const QUOTAS: &str = "/meseta/master/quota/";
/// The maintenance schedule and the machines that are down.
const MAINTENANCE: &str = "/meseta/master/maintenance";
/// Dynamic reservations of every agent, one JSON map `{agent id: [Resource]}`.
const RESERVATIONS: &str = "/meseta/master/reservations";

/// A registered agent, as persisted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct AgentRecord {
    pub id: AgentId,
    pub hostname: String,
    pub address: String,
    pub resources: Resources,
    pub attributes: Attributes,
    pub registered_time: f64,
    /// Fault domain the agent registered with (absent in records of older masters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<meseta_api::domain::Domain>,
}

/// A subscribed framework, as persisted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct FrameworkRecord {
    pub id: FrameworkId,
    pub info: FrameworkInfo,
    pub registered_time: f64,
}

/// Everything loaded at start.
#[derive(Default)]
pub(crate) struct Recovered {
    pub agents: Vec<AgentRecord>,
    pub frameworks: Vec<FrameworkRecord>,
    /// Role weights set by operators.
    pub weights: Vec<(String, f64)>,
    /// Role quotas set by operators.
    pub quotas: Vec<(String, meseta_allocator::Quota)>,
    /// Dynamic reservations by agent.
    pub reservations: std::collections::BTreeMap<AgentId, Resources>,
    /// Maintenance schedule and down machines.
    pub maintenance: crate::maintenance::Persisted,
}

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
pub(crate) async fn save_maintenance(
    store: &dyn Store,
    m: &crate::maintenance::Persisted,
) -> Result<(), StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_records_keep_their_domain_and_old_records_still_load() {
        let rec = AgentRecord {
            id: AgentId::new("a1"),
            hostname: "h".into(),
            address: "127.0.0.1:1".into(),
            resources: Resources::parse("cpus:1;mem:128").expect("resources"),
            attributes: Attributes::default(),
            registered_time: 1.0,
            domain: Some(meseta_api::domain::Domain {
                region: "r1".into(),
                zone: "z1".into(),
            }),
        };
        let json = serde_json::to_value(&rec).expect("json");
        assert_eq!(json["domain"]["region"], "r1");
        let back: AgentRecord = serde_json::from_value(json.clone()).expect("record");
        assert_eq!(back, rec);
        let mut old = json;
        old.as_object_mut().expect("object").remove("domain");
        let old: AgentRecord = serde_json::from_value(old).expect("old record");
        assert_eq!(old.domain, None);
    }
}
