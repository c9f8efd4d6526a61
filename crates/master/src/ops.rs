//! Resource operations on the core: dynamic reservations and persistent volumes, from the
//! operator (`/master/reserve`, `/master/unreserve`, `/master/create-volumes`,
//! `/master/destroy-volumes` and their v1 calls, through [`Core::operator_op`]) and from the
//! RESERVE / UNRESERVE / CREATE / DESTROY operations of an ACCEPT ([`Core::accept_op`]).
//! Both take one [`ResourceOp`] down to the allocator (`Allocator::apply` / `apply_held`).
//!
//! The allocator holds each agent's effective total (what the agent reports, with the dynamic
//! reservations applied); the core keeps the reservations per agent (`OpsState::reservations`,
//! persistent volumes among them) so that they survive agent re-registration and, persisted
//! through `persist.rs`, a master restart. A volume is dynamically reserved disk that keeps its
//! identity (`Resource::disk`); destroying one tells the agent to delete its directory
//! (`MasterMessage::DestroyVolume`).

use std::collections::BTreeMap;
use std::sync::Arc;

use meseta_allocator::{AllocatorError, ResourceOp};
use meseta_api::agent::MasterMessage;
use meseta_types::{AgentId, FrameworkId, Resources, UNRESERVED};
use tokio::time::Instant;

use crate::command::CommandError;
use crate::core::Core;

/// `base` with `reserved` (persistent volumes among them) carved out of its unreserved part;
/// `None` when `base` lacks them.
pub(crate) fn apply_reservations(base: &Resources, reserved: &Resources) -> Option<Resources> {
    base.checked_sub(&reserved.without_volumes().with_role(UNRESERVED))
        .ok()
        .map(|rest| rest.plus(reserved))
}

/// Checks the resources of `op`: reservations for exactly one role other than `*`, or persistent
/// volumes with a container path.
fn check_op(op: &ResourceOp) -> Result<(), CommandError> {
    match op {
        ResourceOp::Reserve(r) | ResourceOp::Unreserve(r) => check_reserved(r).map(|_| ()),
        ResourceOp::Create(v) | ResourceOp::Destroy(v) => check_volumes(v),
    }
}

/// Checks that `resources` is non-empty and reserved for exactly one role other than `*`.
fn check_reserved(resources: &Resources) -> Result<String, CommandError> {
    let roles = resources.roles();
    let mut it = roles.iter();
    match (it.next(), it.next()) {
        (None, _) => Err(CommandError::Invalid("no resources given".into())),
        (Some(_), Some(_)) => Err(CommandError::Invalid(
            "resources must be reserved for one role".into(),
        )),
        (Some(r), None) if r == UNRESERVED => Err(CommandError::Invalid(
            "resources must name the role they are reserved for (not '*')".into(),
        )),
        (Some(r), None) => {
            meseta_allocator::validate_role(r).map_err(|e| CommandError::Invalid(e.to_string()))?;
            Ok(r.clone())
        }
    }
}

/// Checks that `volumes` is non-empty and holds only persistent volumes with a container path.
fn check_volumes(volumes: &Resources) -> Result<(), CommandError> {
    if volumes.is_empty() {
        return Err(CommandError::Invalid("no volumes given".into()));
    }
    for v in volumes.iter() {
        match &v.disk {
            None => {
                return Err(CommandError::Invalid(format!(
                    "'{v}' is not a persistent volume (needs disk.persistence.id)"
                )))
            }
            Some(d) if d.container_path.trim().is_empty() => {
                return Err(CommandError::Invalid(format!(
                    "volume '{}' needs disk.volume.container_path",
                    d.persistence_id
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The answer to an allocator refusal: 409 when the resources are not there (or in use, or,
/// for volumes, not valid on this agent), 400 otherwise.
fn refusal(op: &ResourceOp, e: AllocatorError) -> CommandError {
    match e {
        AllocatorError::InsufficientResources(..) | AllocatorError::ReservationInUse(..) => {
            CommandError::Conflict(e.to_string())
        }
        AllocatorError::InvalidReservation(..) if op.is_volume_op() => {
            CommandError::Conflict(e.to_string())
        }
        e => CommandError::Invalid(e.to_string()),
    }
}

/// Would rescinding the agent's offers let `op` through? (They may hold what it takes, or the
/// reservation it gives back.)
fn offers_in_the_way(op: &ResourceOp, e: &AllocatorError) -> bool {
    match e {
        AllocatorError::InsufficientResources(..) => op.takes(),
        AllocatorError::ReservationInUse(..) => !op.takes(),
        _ => false,
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
            .unwrap_or_else(|| Resources::clone(&a.record.resources))
    }

    /// The total the allocator is told for a (re-)registering agent: what it reports with the
    /// recorded reservations applied (dropped, with a warning, if the agent no longer has them).
    pub(crate) fn reserved_total(&mut self, id: &AgentId, base: &Arc<Resources>) -> Arc<Resources> {
        let Some(r) = self.ops.reservations.get(id) else {
            return Arc::clone(base);
        };
        match apply_reservations(base, r) {
            Some(t) => Arc::new(t),
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
    fn known_agent(&self, id: &AgentId) -> Result<(), CommandError> {
        if self.alloc.agent_total(id).is_none() {
            return Err(CommandError::Invalid(format!(
                "no registered agent with id '{id}'"
            )));
        }
        Ok(())
    }

    /// 409 unless what `op` takes from the agent's dynamic reservations is recorded there:
    /// the reservation to undo, or the reserved disk for new volumes.
    fn check_recorded(&self, agent: &AgentId, op: &ResourceOp) -> Result<(), CommandError> {
        let (needed, what) = match op {
            ResourceOp::Unreserve(r) => (r.clone(), "dynamically reserved"),
            ResourceOp::Create(v) => (v.without_volumes(), "dynamically reserved disk"),
            ResourceOp::Reserve(_) | ResourceOp::Destroy(_) => return Ok(()),
        };
        let reserved = self
            .ops
            .reservations
            .get(agent)
            .cloned()
            .unwrap_or_default();
        if reserved.contains(&needed) {
            return Ok(());
        }
        Err(CommandError::Conflict(format!(
            "'{needed}' is not {what} on agent '{agent}' (reserved: '{reserved}')"
        )))
    }

    /// An operator's RESERVE, UNRESERVE, CREATE or DESTROY on the free resources of `agent`
    /// (rescinding its offers if that frees what the operation needs). 400 when malformed or the
    /// agent is unknown, 409 when the resources are not there (or still in use).
    pub(crate) fn operator_op(
        &mut self,
        agent: &AgentId,
        op: &ResourceOp,
        now: Instant,
    ) -> Result<(), CommandError> {
        check_op(op)?;
        self.known_agent(agent)?;
        self.check_recorded(agent, op)?;
        let mut res = self.alloc.apply(agent, op);
        if res.as_ref().is_err_and(|e| offers_in_the_way(op, e)) {
            self.rescind_agent_offers(agent);
            res = self.alloc.apply(agent, op);
        }
        res.map_err(|e| refusal(op, e))?;
        self.record_op(agent, op);
        self.allocate(now);
        Ok(())
    }

    /// A RESERVE, UNRESERVE, CREATE or DESTROY inside an ACCEPT: `pool` (what the accepted offers
    /// hold) trades what the operation consumes for what it produces. An error names why the
    /// operation was dropped.
    pub(crate) fn accept_op(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        role: &str,
        op: &ResourceOp,
        pool: &mut Resources,
    ) -> Result<(), String> {
        check_op(op).map_err(|e| e.to_string())?;
        self.check_recorded(agent, op).map_err(|e| e.to_string())?;
        let from = op.consumes();
        let rest = pool
            .checked_sub(&from)
            .map_err(|_| format!("the offers do not hold '{from}'"))?;
        self.alloc
            .apply_held(agent, fw, role, op)
            .map_err(|e| e.to_string())?;
        *pool = rest.plus(&op.produces());
        self.record_op(agent, op);
        Ok(())
    }

    /// Record an applied operation in the agent's reservations (marked to be persisted); tell
    /// the agent to delete destroyed volumes.
    fn record_op(&mut self, agent: &AgentId, op: &ResourceOp) {
        let entry = self.ops.reservations.entry(agent.clone()).or_default();
        let from = match op {
            ResourceOp::Reserve(_) => Resources::new(),
            _ => op.consumes(),
        };
        let to = match op {
            ResourceOp::Unreserve(_) => Resources::new(),
            _ => op.produces(),
        };
        *entry = entry.checked_sub(&from).unwrap_or_default().plus(&to);
        if entry.is_empty() {
            self.ops.reservations.remove(agent);
        }
        self.ops.reservations_dirty = true;
        if let ResourceOp::Destroy(volumes) = op {
            self.tell_destroyed(agent, volumes);
        }
    }

    /// Ask the agent to delete the destroyed volumes' directories.
    fn tell_destroyed(&self, agent: &AgentId, volumes: &Resources) {
        let Some(a) = self.agents.get(agent) else {
            return;
        };
        for v in volumes.volumes() {
            if let Some(id) = v.persistence_id() {
                a.send(MasterMessage::DestroyVolume {
                    role: v.role.to_string(),
                    persistence_id: id.to_string(),
                });
            }
        }
    }

    /// Rescind the offers older than the offer timeout (if one is set).
    pub(crate) fn expire_offers(&mut self, now: Instant) {
        let Some(timeout) = self.config().offer_timeout else {
            return;
        };
        for id in self.offers_where(|o| now.saturating_duration_since(o.created) >= timeout) {
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
        recovered.agents.push(crate::records::AgentRecord {
            id: agent.clone(),
            hostname: "h".into(),
            address: "127.0.0.1:1".into(),
            resources: r("cpus:4;mem:128").into(),
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
                matches!(check_reserved(&r(bad)), Err(CommandError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn operations_need_volumes_with_ids_and_paths() {
        use meseta_types::{DiskInfo, Resource};
        let vol = |path: Option<&str>| {
            let disk = Resource::scalar("disk", 8.0).expect("disk");
            let disk = Resource {
                role: "db".into(),
                ..disk
            };
            let mut r = Resources::new();
            let v = match path {
                Some(p) => disk.with_disk(DiskInfo {
                    persistence_id: "v1".into(),
                    container_path: p.into(),
                    read_only: false,
                }),
                None => disk,
            };
            r.push(v).expect("volume");
            r
        };
        assert!(check_op(&ResourceOp::Create(vol(Some("d")))).is_ok());
        for (v, why) in [
            (Resources::new(), "no volumes"),
            (vol(Some(" ")), "container_path"),
            (vol(None), "not a persistent volume"),
        ] {
            let err = check_op(&ResourceOp::Create(v))
                .expect_err("invalid")
                .to_string();
            assert!(err.contains(why), "{err}");
        }
    }
}
