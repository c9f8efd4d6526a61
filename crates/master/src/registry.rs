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

/// A registered agent, as persisted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct AgentRecord {
    pub id: AgentId,
    pub hostname: String,
    pub address: String,
    pub resources: Resources,
    pub attributes: Attributes,
    pub registered_time: f64,
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
    Ok(out)
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
