//! Dynamic reservations on the core: operator `/master/reserve` and `/master/unreserve` (and the
//! v1 `RESERVE_RESOURCES` / `UNRESERVE_RESOURCES` calls), and the `RESERVE` / `UNRESERVE`
//! operations of an ACCEPT.
//!
//! The allocator holds each agent's effective total (what the agent reports, with the dynamic
//! reservations applied); the core keeps the reservations per agent (`OpsState::reservations`)
//! so that they survive agent re-registration and, persisted by the caller
//! (`registry::save_reservations`), a master restart.

use std::collections::BTreeMap;

use meseta_allocator::AllocatorError;
use meseta_types::{AgentId, FrameworkId, Resources, UNRESERVED};
use tokio::time::Instant;

use crate::core::Core;

/// Master-side state of operations: dynamic reservations by agent.
#[derive(Default)]
pub(crate) struct OpsState {
    /// Dynamically reserved resources (role-labelled) by agent.
    pub reservations: BTreeMap<AgentId, Resources>,
    /// The reservations changed since they were last persisted.
    pub reservations_dirty: bool,
    /// Tasks launched by LAUNCH_GROUP, by (agent, executor id), for SHUTDOWN.
    pub executors: std::collections::HashMap<(AgentId, String), Vec<meseta_types::TaskId>>,
    /// Maintenance schedule, down machines, inverse offers (see `maintenance.rs`).
    pub maint: crate::maintenance::MaintState,
}

/// Why an operator reservation request was refused: 400 or 409, as Mesos answers.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum OpError {
    /// Malformed or invalid request (400).
    #[error("{0}")]
    Invalid(String),
    /// The resources are not available, or not reserved / still in use (409).
    #[error("{0}")]
    Conflict(String),
}

/// `base` with `reserved` (persistent volumes among them) carved out of its unreserved part;
/// `None` when `base` lacks them.
pub(crate) fn apply_reservations(base: &Resources, reserved: &Resources) -> Option<Resources> {
    base.checked_sub(&reserved.without_volumes().with_role(UNRESERVED))
        .ok()
        .map(|rest| rest.plus(reserved))
}

/// Checks that `resources` is non-empty and reserved for exactly one role other than `*`.
fn check_reserved(resources: &Resources) -> Result<String, OpError> {
    let roles = resources.roles();
    let mut it = roles.iter();
    match (it.next(), it.next()) {
        (None, _) => Err(OpError::Invalid("no resources given".into())),
        (Some(_), Some(_)) => Err(OpError::Invalid(
            "resources must be reserved for one role".into(),
        )),
        (Some(r), None) if r == UNRESERVED => Err(OpError::Invalid(
            "resources must name the role they are reserved for (not '*')".into(),
        )),
        (Some(r), None) => {
            meseta_allocator::validate_role(r).map_err(|e| OpError::Invalid(e.to_string()))?;
            Ok(r.clone())
        }
    }
}

impl Core {
    /// The agent's total with its dynamic reservations applied.
    pub(crate) fn agent_total(&self, id: &AgentId) -> Resources {
        if let Some(t) = self.alloc.agent_total(id) {
            return t.clone();
        }
        let Some(a) = self.agents.get(id) else {
            return Resources::new();
        };
        self.ops
            .reservations
            .get(id)
            .and_then(|r| apply_reservations(&a.record.resources, r))
            .unwrap_or_else(|| a.record.resources.clone())
    }

    /// The total the allocator is told for a (re-)registering agent: what it reports with the
    /// recorded reservations applied (dropped, with a warning, if the agent no longer has them).
    pub(crate) fn reserved_total(&mut self, id: &AgentId, base: &Resources) -> Resources {
        let Some(r) = self.ops.reservations.get(id) else {
            return base.clone();
        };
        match apply_reservations(base, r) {
            Some(t) => t,
            None => {
                tracing::warn!(agent_id = %id, reservations = %r, resources = %base,
                    "agent no longer has its reserved resources: reservations dropped");
                self.ops.reservations.remove(id);
                self.ops.reservations_dirty = true;
                base.clone()
            }
        }
    }

    /// 400 unless `id` is a registered agent.
    pub(crate) fn known_agent(&self, id: &AgentId) -> Result<(), OpError> {
        if self.alloc.agent_total(id).is_none() {
            return Err(OpError::Invalid(format!(
                "no registered agent with id '{id}'"
            )));
        }
        Ok(())
    }

    /// Operator RESERVE: reserve free resources of `agent` (rescinding its offers if that frees
    /// enough). 409 when they are not there.
    pub(crate) fn operator_reserve(
        &mut self,
        agent: &AgentId,
        resources: &Resources,
        now: Instant,
    ) -> Result<(), OpError> {
        check_reserved(resources)?;
        self.known_agent(agent)?;
        let mut res = self.alloc.reserve(agent, resources);
        if matches!(res, Err(AllocatorError::InsufficientResources(..))) {
            self.rescind_agent_offers(agent);
            res = self.alloc.reserve(agent, resources);
        }
        self.op_result(res)?;
        self.record_reservation(agent, resources, true);
        self.allocate(now);
        Ok(())
    }

    /// Operator UNRESERVE: 409 unless all of `resources` is dynamically reserved on `agent` and
    /// not used by tasks.
    pub(crate) fn operator_unreserve(
        &mut self,
        agent: &AgentId,
        resources: &Resources,
        now: Instant,
    ) -> Result<(), OpError> {
        check_reserved(resources)?;
        self.known_agent(agent)?;
        let reserved = self
            .ops
            .reservations
            .get(agent)
            .cloned()
            .unwrap_or_default();
        if !reserved.contains(resources) {
            return Err(OpError::Conflict(format!(
                "'{resources}' is not dynamically reserved on agent '{agent}' (reserved: '{reserved}')"
            )));
        }
        let mut res = self.alloc.unreserve(agent, resources);
        if matches!(res, Err(AllocatorError::ReservationInUse(..))) {
            self.rescind_agent_offers(agent);
            res = self.alloc.unreserve(agent, resources);
        }
        self.op_result(res)?;
        self.record_reservation(agent, resources, false);
        self.allocate(now);
        Ok(())
    }

    fn op_result(&self, r: Result<(), AllocatorError>) -> Result<(), OpError> {
        r.map_err(|e| match e {
            AllocatorError::InsufficientResources(..) | AllocatorError::ReservationInUse(..) => {
                OpError::Conflict(e.to_string())
            }
            e => OpError::Invalid(e.to_string()),
        })
    }

    /// Add (or remove) `resources` to the agent's recorded reservations.
    fn record_reservation(&mut self, agent: &AgentId, resources: &Resources, add: bool) {
        let entry = self.ops.reservations.entry(agent.clone()).or_default();
        if add {
            entry.add(resources);
        } else {
            *entry = entry.checked_sub(resources).unwrap_or_default();
        }
        if entry.is_empty() {
            self.ops.reservations.remove(agent);
        }
        self.ops.reservations_dirty = true;
    }

    /// RESERVE inside an ACCEPT: `pool` (what the accepted offers hold) trades the unreserved
    /// amounts for the reserved ones. An error names why the operation was dropped.
    pub(crate) fn accept_reserve(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        role: &str,
        raw: &serde_json::Value,
        pool: &mut Resources,
    ) -> Result<(), String> {
        let resources = op_resources(raw, "reserve")?;
        check_reserved(&resources).map_err(|e| e.to_string())?;
        let need = resources.with_role(UNRESERVED);
        let rest = pool
            .checked_sub(&need)
            .map_err(|_| format!("the offers do not hold '{need}' to reserve"))?;
        self.alloc
            .reserve_held(agent, fw, role, &resources)
            .map_err(|e| e.to_string())?;
        *pool = rest.plus(&resources);
        self.record_reservation(agent, &resources, true);
        Ok(())
    }

    /// UNRESERVE inside an ACCEPT: the reserved amounts in `pool` become unreserved.
    pub(crate) fn accept_unreserve(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        role: &str,
        raw: &serde_json::Value,
        pool: &mut Resources,
    ) -> Result<(), String> {
        let resources = op_resources(raw, "unreserve")?;
        check_reserved(&resources).map_err(|e| e.to_string())?;
        let reserved = self
            .ops
            .reservations
            .get(agent)
            .cloned()
            .unwrap_or_default();
        if !reserved.contains(&resources) {
            return Err(format!("'{resources}' is not dynamically reserved"));
        }
        let rest = pool
            .checked_sub(&resources)
            .map_err(|_| format!("the offers do not hold '{resources}' to unreserve"))?;
        self.alloc
            .unreserve_held(agent, fw, role, &resources)
            .map_err(|e| e.to_string())?;
        *pool = rest.plus(&resources.with_role(UNRESERVED));
        self.record_reservation(agent, &resources, false);
        Ok(())
    }

    /// Rescind the offers older than the offer timeout (if one is set).
    pub(crate) fn expire_offers(&mut self, now: Instant) {
        let Some(timeout) = self.cfg.offer_timeout else {
            return;
        };
        let old: Vec<meseta_types::OfferId> = self
            .offers
            .iter()
            .filter(|(_, o)| now.saturating_duration_since(o.created) >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in old {
            tracing::info!(offer_id = %id, "offer timed out: rescinding");
            self.rescind_offer(&id);
        }
    }

    /// The reservations to persist, if they changed since the last call.
    pub(crate) fn take_dirty_reservations(&mut self) -> Option<BTreeMap<AgentId, Resources>> {
        if !self.ops.reservations_dirty {
            return None;
        }
        self.ops.reservations_dirty = false;
        Some(self.ops.reservations.clone())
    }
}

/// The `resources` of an operation's payload (`{"type":"RESERVE","reserve":{"resources":[..]}}`).
fn op_resources(raw: &serde_json::Value, key: &str) -> Result<Resources, String> {
    let v = raw
        .get(key)
        .and_then(|p| p.get("resources"))
        .ok_or_else(|| format!("expecting '{key}.resources' to be present"))?;
    serde_json::from_value(v.clone()).map_err(|e| format!("invalid '{key}.resources': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Resources {
        Resources::parse(s).expect("resources")
    }

    #[test]
    fn reservations_are_carved_out_of_the_unreserved_part() {
        assert_eq!(
            apply_reservations(&r("cpus:4;mem:100"), &r("cpus(db):1")),
            Some(r("cpus:3;mem:100;cpus(db):1"))
        );
        assert_eq!(apply_reservations(&r("cpus:1"), &r("cpus(db):2")), None);
    }

    #[tokio::test]
    async fn reservations_survive_a_master_restart() {
        let store = meseta_store::mem::MemStore::new();
        let agent = AgentId::new("a1");
        let mut map = BTreeMap::new();
        map.insert(agent.clone(), r("cpus(db):1"));
        crate::registry::save_reservations(&store, &map)
            .await
            .expect("saved");
        let mut recovered = crate::registry::load(&store).await.expect("loaded");
        assert_eq!(recovered.reservations, map);
        recovered.agents.push(crate::registry::AgentRecord {
            id: agent.clone(),
            hostname: "h".into(),
            address: "127.0.0.1:1".into(),
            resources: r("cpus:4;mem:128"),
            attributes: Default::default(),
            registered_time: 0.0,
            domain: None,
        });
        let core = Core::new(crate::core::MasterConfig::default(), recovered);
        assert_eq!(core.agent_total(&agent), r("cpus:3;mem:128;cpus(db):1"));
    }

    #[test]
    fn only_single_role_reservations_are_valid() {
        assert!(check_reserved(&r("cpus(db):1;mem(db):2")).is_ok());
        for bad in ["", "cpus:1", "cpus(a):1;mem(b):1"] {
            assert!(
                matches!(check_reserved(&r(bad)), Err(OpError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
