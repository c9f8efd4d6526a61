//! What the master persists about agents and frameworks, and everything loaded at start
//! (DESIGN.md decision 3): plain records, read and written by `registry.rs`, held by the core.
//! This module imports no other module of the crate but the plain `ops_state`.

use meseta_api::scheduler::FrameworkInfo;
use meseta_types::{AgentId, Attributes, FrameworkId, Resources};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::ops_state::Persisted;

/// A registered agent, as persisted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct AgentRecord {
    pub id: AgentId,
    pub hostname: String,
    pub address: String,
    /// What the agent reports. Shared with the allocator's total of the agent while the agent
    /// has no dynamic reservations: one copy per agent instead of two.
    pub resources: Arc<Resources>,
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
    pub maintenance: Persisted,
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
            resources: Resources::parse("cpus:1;mem:128")
                .expect("resources")
                .into(),
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
