//! Helpers of the [`Allocator`]'s resource conversions (what a framework holds, replacing
//! resources in an agent's pool; see `resource_op.rs`) and its maintenance inputs
//! (unavailability windows, inverse-offer answers).
//!
//! Used by the master when it applies operations and maintenance schedules.

use crate::allocator::Allocator;
use crate::types::Unavailability;
use meseta_types::{AgentId, FrameworkId, Resources};
use std::time::Duration;

impl Allocator {
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
            a.available().checked_sub(from),
        ) {
            a.info.total = std::sync::Arc::new(total.plus(to));
            // A pool that is still the whole total stays so.
            if a.free.is_some() {
                a.free = Some(avail.plus(to));
            }
            self.count_free(from, -1);
            self.count_free(to, 1);
            self.mark_dirty(ai);
        }
    }

    /// Sets (or clears) the maintenance window of `agent`; resets its inverse-offer state.
    pub fn set_unavailability(&mut self, agent: &AgentId, u: Option<Unavailability>) {
        if let Some(&ai) = self.agent_index.get(agent) {
            let a = &mut self.agents[ai];
            a.unavailability = u;
            a.inverse.clear();
            self.mark_dirty(ai);
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
        // Asked again at the next cycle (no refusal) or at the next full one.
        self.mark_dirty(ai);
    }
}
