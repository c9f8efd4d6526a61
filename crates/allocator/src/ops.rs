//! Dynamic reservations (RESERVE / UNRESERVE, operator `/reserve`) and maintenance inputs
//! (unavailability windows, inverse-offer answers) of the [`Allocator`].
//!
//! Used by the master when it applies operations and maintenance schedules.

use crate::allocator::Allocator;
use crate::roles::validate_role;
use crate::types::{AllocatorError, Unavailability};
use meseta_types::{AgentId, FrameworkId, Resources, UNRESERVED};
use std::time::Duration;

impl Allocator {
    /// Dynamically reserves `resources` (role-labelled) on `agent`, converting the same amounts of
    /// unreserved resources. They come from the free pool, or else from what a framework holds
    /// in the reservation's role (a RESERVE inside an ACCEPT), which then holds the reserved form.
    pub fn reserve(
        &mut self,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), AllocatorError> {
        let ai = self.agent_idx(agent)?;
        let role = single_reserved_role(agent, resources)?;
        let need = resources.with_role(UNRESERVED);
        let holder = if self.agents[ai].available.contains(&need) {
            None
        } else {
            let ri = self.role_names.get(&role);
            let held = self.agents[ai]
                .held
                .iter()
                .find(|h| {
                    Some(h.role) == ri
                        && h.res
                            .to_resources(&self.names, &self.role_names)
                            .contains(&need)
                })
                .map(|h| h.fw.clone());
            match held {
                Some(fw) => {
                    self.release(ai, &fw, &role, &need);
                    Some(fw)
                }
                None => {
                    return Err(AllocatorError::InsufficientResources(
                        agent.clone(),
                        need.to_string(),
                    ))
                }
            }
        };
        self.convert(ai, &need, resources);
        self.count_reservations(resources, 1);
        if let Some(fw) = holder {
            self.grant(ai, &fw, &role, resources);
        }
        Ok(())
    }

    /// Undoes a dynamic reservation on `agent`. Fails with [`AllocatorError::ReservationInUse`]
    /// unless all of `resources` is free (not offered, not used by tasks).
    pub fn unreserve(
        &mut self,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), AllocatorError> {
        let ai = self.agent_idx(agent)?;
        single_reserved_role(agent, resources)?;
        let a = &self.agents[ai];
        if !a.info.total.contains(resources) {
            return Err(AllocatorError::InsufficientResources(
                agent.clone(),
                resources.to_string(),
            ));
        }
        if !a.available.contains(resources) {
            return Err(AllocatorError::ReservationInUse(
                agent.clone(),
                resources.to_string(),
            ));
        }
        self.convert(ai, resources, &resources.with_role(UNRESERVED));
        self.count_reservations(resources, -1);
        Ok(())
    }

    /// RESERVE inside an ACCEPT: converts part of what `fw` holds in `role` on `agent` (the
    /// offer being accepted) into a reservation for `role`; `fw` then holds the reserved form.
    pub fn reserve_held(
        &mut self,
        agent: &AgentId,
        fw: &FrameworkId,
        role: &str,
        resources: &Resources,
    ) -> Result<(), AllocatorError> {
        let ai = self.agent_idx(agent)?;
        let target = single_reserved_role(agent, resources)?;
        if target != role {
            return Err(AllocatorError::InvalidReservation(
                agent.clone(),
                format!("reservation role `{target}` differs from the offer's role `{role}`"),
            ));
        }
        let need = resources.with_role(UNRESERVED);
        if !self.held_by(ai, fw, role).contains(&need) {
            return Err(AllocatorError::InsufficientResources(
                agent.clone(),
                need.to_string(),
            ));
        }
        self.release(ai, fw, role, &need);
        self.convert(ai, &need, resources);
        self.count_reservations(resources, 1);
        self.grant(ai, fw, role, resources);
        Ok(())
    }

    /// UNRESERVE inside an ACCEPT: turns reserved resources `fw` holds in `role` on `agent`
    /// back into unreserved ones, which `fw` keeps holding.
    pub fn unreserve_held(
        &mut self,
        agent: &AgentId,
        fw: &FrameworkId,
        role: &str,
        resources: &Resources,
    ) -> Result<(), AllocatorError> {
        let ai = self.agent_idx(agent)?;
        single_reserved_role(agent, resources)?;
        if !self.held_by(ai, fw, role).contains(resources) {
            return Err(AllocatorError::InsufficientResources(
                agent.clone(),
                resources.to_string(),
            ));
        }
        let plain = resources.with_role(UNRESERVED);
        self.release(ai, fw, role, resources);
        self.convert(ai, resources, &plain);
        self.count_reservations(resources, -1);
        self.grant(ai, fw, role, &plain);
        Ok(())
    }

    /// What `fw` holds in `role` on agent `ai`.
    pub(crate) fn held_by(&self, ai: usize, fw: &FrameworkId, role: &str) -> Resources {
        self.role_names
            .get(role)
            .and_then(|ri| self.agents[ai].held_index(fw, ri))
            .map(|hi| {
                self.agents[ai].held[hi]
                    .res
                    .to_resources(&self.names, &self.role_names)
            })
            .unwrap_or_default()
    }

    /// Replaces `from` by `to` in agent `ai`'s total and free pool (both must contain `from`).
    pub(crate) fn convert(&mut self, ai: usize, from: &Resources, to: &Resources) {
        let a = &mut self.agents[ai];
        if let (Ok(total), Ok(avail)) = (
            a.info.total.checked_sub(from),
            a.available.checked_sub(from),
        ) {
            a.info.total = total.plus(to);
            a.available = avail.plus(to);
            self.count_free(from, -1);
            self.count_free(to, 1);
        }
    }

    /// Sets (or clears) the maintenance window of `agent`; resets its inverse-offer state.
    pub fn set_unavailability(&mut self, agent: &AgentId, u: Option<Unavailability>) {
        if let Some(&ai) = self.agent_index.get(agent) {
            let a = &mut self.agents[ai];
            a.unavailability = u;
            a.inverse.clear();
        }
    }

    /// Records a framework's answer to its inverse offer for `agent`. An accept ends the asking
    /// for this window; a decline asks again after `refuse` (next cycle when `None`).
    pub fn inverse_offer_answer(
        &mut self,
        agent: &AgentId,
        fw: &FrameworkId,
        accept: bool,
        refuse: Option<Duration>,
        now: Duration,
    ) {
        let Some(&ai) = self.agent_index.get(agent) else {
            return;
        };
        let s = self.agents[ai].inverse_of(fw);
        s.outstanding = false;
        s.accepted = accept;
        s.until = refuse.map(|d| now.saturating_add(d));
    }
}

/// The one reservation role of `resources`; errors if empty, unreserved parts, several roles or
/// an invalid role.
fn single_reserved_role(agent: &AgentId, resources: &Resources) -> Result<String, AllocatorError> {
    let bad = |why: &str| {
        Err(AllocatorError::InvalidReservation(
            agent.clone(),
            why.into(),
        ))
    };
    let roles = resources.roles();
    let mut it = roles.into_iter();
    match (it.next(), it.next()) {
        (None, _) => bad("no resources given"),
        (Some(_), Some(_)) => bad("resources of several roles"),
        (Some(r), None) if r == UNRESERVED => bad("cannot reserve for or unreserve `*`"),
        (Some(r), None) => {
            validate_role(&r)?;
            Ok(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{agent, fw, res};
    use crate::{Allocator, AllocatorError};
    use meseta_types::{AgentId, FrameworkId, Resources};
    use std::time::Duration;

    fn s1() -> AgentId {
        AgentId::new("s1")
    }

    fn db() -> FrameworkId {
        FrameworkId::new("db")
    }

    #[test]
    fn reserve_and_unreserve_what_an_offer_holds() {
        let mut a = Allocator::new(crate::AllocatorConfig::default(), None);
        a.add_agent(s1(), agent("cpus:4;mem:4096"), &[])
            .expect("agent");
        a.add_framework(db(), fw(&["db"]), &[]).expect("fw");
        let c = a.allocate(Duration::ZERO, None);
        assert_eq!(c.offers.len(), 1);
        // A reservation for another role than the offer's is refused.
        assert!(matches!(
            a.reserve_held(&s1(), &db(), "db", &res("cpus(web):1")),
            Err(AllocatorError::InvalidReservation(..))
        ));
        // More than the offer holds is refused.
        assert!(matches!(
            a.reserve_held(&s1(), &db(), "db", &res("cpus(db):5")),
            Err(AllocatorError::InsufficientResources(..))
        ));
        a.reserve_held(&s1(), &db(), "db", &res("cpus(db):1"))
            .expect("reserve held");
        assert_eq!(a.allocated_on(&s1()), res("cpus:3;mem:4096;cpus(db):1"));
        assert_eq!(a.available_on(&s1()), Resources::new());
        assert!(matches!(
            a.unreserve_held(&s1(), &db(), "db", &res("cpus(db):2")),
            Err(AllocatorError::InsufficientResources(..))
        ));
        a.unreserve_held(&s1(), &db(), "db", &res("cpus(db):1"))
            .expect("unreserve held");
        assert_eq!(a.allocated_on(&s1()), res("cpus:4;mem:4096"));
        assert_eq!(a.agent_total(&s1()), Some(&res("cpus:4;mem:4096")));
    }
}
