//! Persistent volumes on the core: operator `/master/create-volumes` and
//! `/master/destroy-volumes` (and the v1 `CREATE_VOLUMES` / `DESTROY_VOLUMES` calls), and the
//! `CREATE` / `DESTROY` operations of an ACCEPT.
//!
//! A volume is dynamically reserved disk that keeps its identity (`Resource::disk`): it is kept
//! with the agent's reservations (`OpsState::reservations`, persisted with them), so it survives
//! agent re-registration and master restarts. Destroying one tells the agent to delete its
//! directory (`MasterMessage::DestroyVolume`).

use meseta_allocator::AllocatorError;
use meseta_api::agent::MasterMessage;
use meseta_types::{AgentId, FrameworkId, Resources};
use tokio::time::Instant;

use crate::core::Core;
use crate::ops::OpError;

/// The volumes of an operation's payload (`{"type":"CREATE","create":{"volumes":[..]}}`).
fn op_volumes(raw: &serde_json::Value, key: &str) -> Result<Resources, String> {
    let v = raw
        .get(key)
        .and_then(|p| p.get("volumes"))
        .ok_or_else(|| format!("expecting '{key}.volumes' to be present"))?;
    let volumes: Resources =
        serde_json::from_value(v.clone()).map_err(|e| format!("invalid '{key}.volumes': {e}"))?;
    check_volumes(&volumes).map_err(|e| e.to_string())?;
    Ok(volumes)
}

/// Checks that `volumes` is non-empty and holds only persistent volumes with a container path.
pub(crate) fn check_volumes(volumes: &Resources) -> Result<(), OpError> {
    if volumes.is_empty() {
        return Err(OpError::Invalid("no volumes given".into()));
    }
    for v in volumes.iter() {
        match &v.disk {
            None => {
                return Err(OpError::Invalid(format!(
                    "'{v}' is not a persistent volume (needs disk.persistence.id)"
                )))
            }
            Some(d) if d.container_path.trim().is_empty() => {
                return Err(OpError::Invalid(format!(
                    "volume '{}' needs disk.volume.container_path",
                    d.persistence_id
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl Core {
    /// The volumes must sit on dynamically reserved disk of this agent.
    fn check_on_reservations(&self, agent: &AgentId, plain: &Resources) -> Result<(), OpError> {
        let reserved = self
            .ops
            .reservations
            .get(agent)
            .cloned()
            .unwrap_or_default();
        if reserved.contains(plain) {
            Ok(())
        } else {
            Err(OpError::Conflict(format!(
                "'{plain}' is not dynamically reserved disk on agent '{agent}' (reserved: '{reserved}')"
            )))
        }
    }

    /// Operator CREATE: 409 unless free dynamically reserved disk holds the volumes.
    pub(crate) fn operator_create_volumes(
        &mut self,
        agent: &AgentId,
        volumes: &Resources,
        now: Instant,
    ) -> Result<(), OpError> {
        check_volumes(volumes)?;
        self.known_agent(agent)?;
        let plain = volumes.without_volumes();
        self.check_on_reservations(agent, &plain)?;
        let mut res = self.alloc.create_volumes(agent, volumes);
        if matches!(res, Err(AllocatorError::InsufficientResources(..))) {
            self.rescind_agent_offers(agent);
            res = self.alloc.create_volumes(agent, volumes);
        }
        self.volume_result(res)?;
        self.record_volumes(agent, &plain, volumes);
        self.allocate(now);
        Ok(())
    }

    /// Operator DESTROY: 409 unless the volumes exist and no task uses them.
    pub(crate) fn operator_destroy_volumes(
        &mut self,
        agent: &AgentId,
        volumes: &Resources,
        now: Instant,
    ) -> Result<(), OpError> {
        check_volumes(volumes)?;
        self.known_agent(agent)?;
        let mut res = self.alloc.destroy_volumes(agent, volumes);
        if matches!(res, Err(AllocatorError::ReservationInUse(..))) {
            self.rescind_agent_offers(agent);
            res = self.alloc.destroy_volumes(agent, volumes);
        }
        self.volume_result(res)?;
        self.record_volumes(agent, volumes, &volumes.without_volumes());
        self.tell_destroyed(agent, volumes);
        self.allocate(now);
        Ok(())
    }

    fn volume_result(&self, r: Result<(), AllocatorError>) -> Result<(), OpError> {
        r.map_err(|e| match e {
            AllocatorError::InsufficientResources(..)
            | AllocatorError::ReservationInUse(..)
            | AllocatorError::InvalidReservation(..) => OpError::Conflict(e.to_string()),
            e => OpError::Invalid(e.to_string()),
        })
    }

    /// Replace `from` by `to` in the agent's recorded reservations.
    fn record_volumes(&mut self, agent: &AgentId, from: &Resources, to: &Resources) {
        let entry = self.ops.reservations.entry(agent.clone()).or_default();
        *entry = entry.checked_sub(from).unwrap_or_default().plus(to);
        self.ops.reservations_dirty = true;
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

    /// CREATE inside an ACCEPT: reserved disk in `pool` becomes the volumes.
    pub(crate) fn accept_create(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        role: &str,
        raw: &serde_json::Value,
        pool: &mut Resources,
    ) -> Result<(), String> {
        let volumes = op_volumes(raw, "create")?;
        let plain = volumes.without_volumes();
        self.check_on_reservations(agent, &plain)
            .map_err(|e| e.to_string())?;
        let rest = pool
            .checked_sub(&plain)
            .map_err(|_| format!("the offers do not hold '{plain}' for the volumes"))?;
        self.alloc
            .create_volumes_held(agent, fw, role, &volumes)
            .map_err(|e| e.to_string())?;
        *pool = rest.plus(&volumes);
        self.record_volumes(agent, &plain, &volumes);
        Ok(())
    }

    /// DESTROY inside an ACCEPT: offered volumes in `pool` become plain reserved disk.
    pub(crate) fn accept_destroy(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        role: &str,
        raw: &serde_json::Value,
        pool: &mut Resources,
    ) -> Result<(), String> {
        let volumes = op_volumes(raw, "destroy")?;
        let rest = pool
            .checked_sub(&volumes)
            .map_err(|_| format!("the offers do not hold the volumes '{volumes}'"))?;
        self.alloc
            .destroy_volumes_held(agent, fw, role, &volumes)
            .map_err(|e| e.to_string())?;
        let plain = volumes.without_volumes();
        *pool = rest.plus(&plain);
        self.record_volumes(agent, &volumes, &plain);
        self.tell_destroyed(agent, &volumes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_need_volumes_with_ids_and_paths() {
        let vol = |disk: serde_json::Value| {
            json!({"create": {"volumes": [{"name": "disk", "type": "SCALAR",
                "scalar": {"value": 8.0}, "role": "db", "disk": disk}]}})
        };
        let ok = vol(
            json!({"persistence": {"id": "v1"}, "volume": {"container_path": "d", "mode": "RW"}}),
        );
        let v = op_volumes(&ok, "create").expect("valid");
        assert_eq!(v.volumes().count(), 1);
        for (raw, why) in [
            (json!({"create": {}}), "create.volumes"),
            (json!({"create": {"volumes": []}}), "no volumes"),
            (vol(json!({"persistence": {"id": "v1"}})), "container_path"),
            (
                json!({"create": {"volumes": [{"name": "disk", "type": "SCALAR",
                    "scalar": {"value": 8.0}, "role": "db"}]}}),
                "not a persistent volume",
            ),
        ] {
            let err = op_volumes(&raw, "create").expect_err("invalid");
            assert!(err.contains(why), "{raw}: {err}");
        }
    }
}
