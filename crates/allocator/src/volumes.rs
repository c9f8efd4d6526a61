//! Persistent volumes in the [`Allocator`] (CREATE / DESTROY, operator `/create-volumes`): a
//! volume is reserved disk of its role that keeps its identity (`Resource::disk`), so it is only
//! offered to that role and comes back to it, whole, after the task using it ends.
//!
//! Creating turns plain reserved disk (`disk(db):64`) into the volume (`disk(db)[v1:data]:64`);
//! destroying turns it back. Used by the master when it applies these operations.

use crate::allocator::Allocator;
use crate::types::AllocatorError;
use meseta_types::{AgentId, FrameworkId, Resources, UNRESERVED};

/// Checks that `volumes` are all persistent volumes of one reserved role; returns the role.
fn volume_role(agent: &AgentId, volumes: &Resources) -> Result<String, AllocatorError> {
    let bad = |why: &str| AllocatorError::InvalidReservation(agent.clone(), why.to_string());
    if volumes.is_empty() {
        return Err(bad("no volumes given"));
    }
    if volumes.iter().any(|r| r.disk.is_none()) {
        return Err(bad("a volume needs `disk.persistence.id`"));
    }
    let roles = volumes.roles();
    let mut it = roles.into_iter();
    match (it.next(), it.next()) {
        (Some(r), None) if r != UNRESERVED => Ok(r),
        (Some(_), None) => Err(bad("a volume must be on disk reserved for a role")),
        _ => Err(bad("volumes of several roles")),
    }
}

impl Allocator {
    /// Operator CREATE: turns free reserved disk of `agent` into `volumes`. The persistence ids
    /// must be new on the agent.
    pub fn create_volumes(
        &mut self,
        agent: &AgentId,
        volumes: &Resources,
    ) -> Result<(), AllocatorError> {
        let ai = self.agent_idx(agent)?;
        self.check_new(ai, agent, volumes)?;
        let plain = volumes.without_volumes();
        if !self.agents[ai].available.contains(&plain) {
            return Err(AllocatorError::InsufficientResources(
                agent.clone(),
                plain.to_string(),
            ));
        }
        self.convert(ai, &plain, volumes);
        Ok(())
    }

    /// Operator DESTROY: turns free `volumes` of `agent` back into plain reserved disk; fails
    /// with [`AllocatorError::ReservationInUse`] while one is offered or used by a task.
    pub fn destroy_volumes(
        &mut self,
        agent: &AgentId,
        volumes: &Resources,
    ) -> Result<(), AllocatorError> {
        let ai = self.agent_idx(agent)?;
        volume_role(agent, volumes)?;
        let a = &self.agents[ai];
        if !a.info.total.contains(volumes) {
            return Err(AllocatorError::InsufficientResources(
                agent.clone(),
                volumes.to_string(),
            ));
        }
        if !a.available.contains(volumes) {
            return Err(AllocatorError::ReservationInUse(
                agent.clone(),
                volumes.to_string(),
            ));
        }
        self.convert(ai, volumes, &volumes.without_volumes());
        Ok(())
    }

    /// CREATE inside an ACCEPT: part of the reserved disk `fw` holds in `role` on `agent` becomes
    /// `volumes`, which `fw` then holds.
    pub fn create_volumes_held(
        &mut self,
        agent: &AgentId,
        fw: &FrameworkId,
        role: &str,
        volumes: &Resources,
    ) -> Result<(), AllocatorError> {
        let ai = self.agent_idx(agent)?;
        if self.check_new(ai, agent, volumes)? != role {
            return Err(AllocatorError::InvalidReservation(
                agent.clone(),
                format!("volumes must be of the offer's role `{role}`"),
            ));
        }
        let plain = volumes.without_volumes();
        if !self.held_by(ai, fw, role).contains(&plain) {
            return Err(AllocatorError::InsufficientResources(
                agent.clone(),
                plain.to_string(),
            ));
        }
        self.release(ai, fw, role, &plain);
        self.convert(ai, &plain, volumes);
        self.grant(ai, fw, role, volumes);
        Ok(())
    }

    /// DESTROY inside an ACCEPT: volumes `fw` holds in `role` on `agent` (offered, so unused)
    /// become plain reserved disk, which `fw` keeps holding.
    pub fn destroy_volumes_held(
        &mut self,
        agent: &AgentId,
        fw: &FrameworkId,
        role: &str,
        volumes: &Resources,
    ) -> Result<(), AllocatorError> {
        let ai = self.agent_idx(agent)?;
        volume_role(agent, volumes)?;
        if !self.held_by(ai, fw, role).contains(volumes) {
            return Err(AllocatorError::InsufficientResources(
                agent.clone(),
                volumes.to_string(),
            ));
        }
        let plain = volumes.without_volumes();
        self.release(ai, fw, role, volumes);
        self.convert(ai, volumes, &plain);
        self.grant(ai, fw, role, &plain);
        Ok(())
    }

    /// The role of `volumes`, if valid and none of their persistence ids exists on agent `ai`.
    fn check_new(
        &self,
        ai: usize,
        agent: &AgentId,
        volumes: &Resources,
    ) -> Result<String, AllocatorError> {
        let role = volume_role(agent, volumes)?;
        let existing: Vec<&str> = self.agents[ai]
            .info
            .total
            .volumes()
            .filter(|v| v.role == role)
            .filter_map(|v| v.persistence_id())
            .collect();
        if let Some(dup) = volumes
            .volumes()
            .filter_map(|v| v.persistence_id())
            .find(|id| existing.contains(id))
        {
            return Err(AllocatorError::InvalidReservation(
                agent.clone(),
                format!("a volume with persistence id `{dup}` already exists"),
            ));
        }
        Ok(role)
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{agent, fw, res};
    use crate::{Allocator, AllocatorError};
    use meseta_types::{AgentId, DiskInfo, FrameworkId, Resource, Resources};
    use std::time::Duration;

    fn volume(role: &str, id: &str, mb: f64) -> Resources {
        let mut r = Resources::new();
        let disk = Resource::scalar("disk", mb).expect("disk");
        let v = Resource {
            role: role.into(),
            ..disk
        }
        .with_disk(DiskInfo {
            persistence_id: id.into(),
            container_path: "data".into(),
            read_only: false,
        });
        r.push(v).expect("volume");
        r
    }

    fn s1() -> AgentId {
        AgentId::new("s1")
    }

    #[test]
    fn operator_volumes_are_offered_to_their_role_and_destroyed_when_free() {
        let mut a = Allocator::new(crate::AllocatorConfig::default(), None);
        a.add_agent(s1(), agent("cpus:4;mem:4096;disk:100"), &[])
            .expect("agent");
        a.reserve(&s1(), &res("cpus(db):1;mem(db):64;disk(db):64"))
            .expect("reserve");
        // Not on unreserved disk, not more than is reserved, not twice.
        assert!(a.create_volumes(&s1(), &volume("*", "v1", 1.0)).is_err());
        assert!(matches!(
            a.create_volumes(&s1(), &volume("db", "v1", 65.0)),
            Err(AllocatorError::InsufficientResources(..))
        ));
        a.create_volumes(&s1(), &volume("db", "v1", 32.0))
            .expect("create");
        assert!(matches!(
            a.create_volumes(&s1(), &volume("db", "v1", 1.0)),
            Err(AllocatorError::InvalidReservation(..))
        ));
        let total = a.agent_total(&s1()).expect("total").clone();
        assert_eq!(total.volumes().count(), 1);
        assert_eq!(total.disk(), 100.0);

        // Only the volume's role is offered it.
        let web = FrameworkId::new("web");
        a.add_framework(web.clone(), fw(&["web"]), &[])
            .expect("web");
        let c = a.allocate(Duration::ZERO, None);
        assert!(c.offers.iter().all(|o| o.resources.volumes().count() == 0));
        a.remove_framework(&web);
        let db = FrameworkId::new("db");
        a.add_framework(db.clone(), fw(&["db"]), &[]).expect("db");
        let c = a.allocate(Duration::from_secs(1), None);
        let offered: Resources = c
            .offers
            .iter()
            .filter(|o| o.framework == db)
            .fold(Resources::new(), |acc, o| acc.plus(&o.resources));
        assert!(offered.contains(&volume("db", "v1", 32.0)), "{offered}");

        // Offered: in use. Given back: destroyed into plain reserved disk.
        assert!(matches!(
            a.destroy_volumes(&s1(), &volume("db", "v1", 32.0)),
            Err(AllocatorError::ReservationInUse(..))
        ));
        a.recover(&s1(), &db, "db", &offered, None, Duration::from_secs(2));
        a.destroy_volumes(&s1(), &volume("db", "v1", 32.0))
            .expect("destroy");
        let total = a.agent_total(&s1()).expect("total");
        assert_eq!(total.volumes().count(), 0);
        assert_eq!(
            total.reserved("db"),
            res("cpus(db):1;mem(db):64;disk(db):64")
        );
    }

    #[test]
    fn volumes_created_and_destroyed_inside_an_accept_stay_with_the_framework() {
        let mut a = Allocator::new(crate::AllocatorConfig::default(), None);
        a.add_agent(s1(), agent("cpus:4;mem:4096;disk(db):64"), &[])
            .expect("agent");
        let db = FrameworkId::new("db");
        a.add_framework(db.clone(), fw(&["db"]), &[]).expect("db");
        assert_eq!(a.allocate(Duration::ZERO, None).offers.len(), 1);
        assert!(a
            .create_volumes_held(&s1(), &db, "web", &volume("web", "v", 8.0))
            .is_err());
        a.create_volumes_held(&s1(), &db, "db", &volume("db", "v", 8.0))
            .expect("create held");
        let held = a.allocated_on(&s1());
        assert!(held.contains(&volume("db", "v", 8.0)), "{held}");
        assert_eq!(held.disk(), 64.0);
        a.destroy_volumes_held(&s1(), &db, "db", &volume("db", "v", 8.0))
            .expect("destroy held");
        assert_eq!(a.allocated_on(&s1()).volumes().count(), 0);
        assert_eq!(a.allocated_on(&s1()).disk(), 64.0);
    }
}
