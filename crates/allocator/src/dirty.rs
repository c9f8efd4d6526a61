//! What changed since the last allocation cycle: the agents whose free resources or offer
//! eligibility changed (resources released, agent added or activated, reservation or
//! maintenance change, an offer filter removed or expired) and whether the demand side changed
//! (framework added, activated or un-suppressed, weights or quota changed), which needs every
//! agent walked again.
//!
//! [`crate::Allocator::allocate_changed`] walks only the changed agents unless a full walk is
//! pending; [`crate::Allocator::allocate`] with `None` walks all and clears the set. An agent
//! that is not marked here either has nothing free or was already offered to every framework
//! that could take it (they held, refused or suppressed), so skipping it offers nothing less.

use meseta_types::AgentId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// The changed-agents set of the allocator.
#[derive(Debug)]
pub(crate) struct Dirty {
    /// Indices of marked agents (each once: see `AgentState::dirty`).
    pub agents: Vec<usize>,
    /// The next cycle must walk every agent.
    pub full: bool,
    /// Expiry of offer filters (earliest first): the agent becomes offerable again then.
    pub expiries: BinaryHeap<Reverse<(Duration, AgentId)>>,
}

impl Default for Dirty {
    fn default() -> Dirty {
        Dirty {
            agents: Vec::new(),
            full: true,
            expiries: BinaryHeap::new(),
        }
    }
}

impl Dirty {
    /// The agents whose filters expire at or before `now` (entries for removed agents are
    /// dropped by the caller's lookup).
    pub fn expired(&mut self, now: Duration) -> Vec<AgentId> {
        let mut out = Vec::new();
        while let Some(Reverse((until, _))) = self.expiries.peek() {
            if *until > now {
                break;
            }
            if let Some(Reverse((_, id))) = self.expiries.pop() {
                out.push(id);
            }
        }
        out
    }

    /// Agent `removed` was swap-removed and agent `moved_from` (the former last) now has its
    /// index: keep the indices of the set valid.
    pub fn agent_removed(&mut self, removed: usize, moved_from: usize) {
        self.agents.retain(|&ai| ai != removed);
        for ai in &mut self.agents {
            if *ai == moved_from {
                *ai = removed;
            }
        }
    }
}
