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

    /// Replaces `from` by `to` in agent `ai`'s total and free pool (both must contain `from`).
    fn convert(&mut self, ai: usize, from: &Resources, to: &Resources) {
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
