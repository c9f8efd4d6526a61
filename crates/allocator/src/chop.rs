//! What a role may be offered from an agent: everything usable in the role, with unreserved
//! scalars chopped by the role's (and its ancestors') quota limits and by the headroom that other
//! roles' unsatisfied guarantees need; and the `min_allocatable` test.
//!
//! Used by the allocation cycle (`cycle.rs`).

use crate::allocator::Allocator;
use crate::qty::Qty;
use crate::roles::{self_and_ancestors, usable_in};
use crate::types::AllocatorConfig;
use meseta_types::{Resource, Resources, Scalar, Value, UNRESERVED};

/// Quota state of one cycle.
#[derive(Debug, Default)]
pub(crate) struct Headroom {
    /// Whether any role has quota (otherwise nothing is chopped).
    pub active: bool,
    /// Σ unsatisfied guarantees (kept current after each grant).
    pub required: Qty,
}

/// An offer for a role before the framework is chosen.
pub(crate) struct RoleOffer {
    /// The resources; `None` = the agent's whole free pool (the common case, not copied).
    pub res: Option<Resources>,
    /// Whether any of it serves an unsatisfied guarantee.
    pub guaranteed: bool,
}

impl Allocator {
    /// The cycle's headroom state.
    pub(crate) fn headroom(&self) -> Headroom {
        if !self.roles.nodes.values().any(|n| n.quota.is_some()) {
            return Headroom::default();
        }
        let required = self.required_headroom();
        Headroom {
            active: true,
            required,
        }
    }

    /// Whether `role` or an ancestor has quota.
    pub(crate) fn under_quota(&self, role: &str) -> bool {
        self_and_ancestors(role).any(|p| self.roles.get(p).is_some_and(|n| n.quota.is_some()))
    }

    /// Σ over roles with guarantees (outermost ones) of their unsatisfied guarantees.
    fn required_headroom(&self) -> Qty {
        let mut req = Qty::default();
        for role in self.roles.outermost_guarantee_roles() {
            for (i, v) in self.unsatisfied(role).0.iter().enumerate() {
                req.add(i, *v);
            }
        }
        req
    }

    /// `max(0, guarantee − consumed)` of `role` by name index.
    pub(crate) fn unsatisfied(&self, role: &str) -> Qty {
        let mut out = Qty::default();
        let Some(node) = self.roles.get(role) else {
            return out;
        };
        let Some(q) = &node.quota else {
            return out;
        };
        for (name, g) in &q.guarantees {
            if let Some(i) = self.names.get(name) {
                out.add(i, (g.milli() - node.consumed(i)).max(0));
            }
        }
        out
    }

    /// Whether `role` (through its nearest guarantee holder) still has unsatisfied guarantees.
    pub(crate) fn has_unsatisfied(&self, role: &str) -> bool {
        self.roles
            .guarantee_holder(role)
            .is_some_and(|h| !self.unsatisfied(h).is_zero())
    }

    /// Room left under the limits of `role` and its ancestors for scalar `i` (`i64::MAX` if none).
    fn limit_room(&self, role: &str, name: &str, i: usize) -> i64 {
        let mut room = i64::MAX;
        for path in self_and_ancestors(role) {
            let Some(node) = self.roles.get(path) else {
                continue;
            };
            if let Some(limit) = node.quota.as_ref().and_then(|q| q.limits.get(name)) {
                room = room.min((limit.milli() - node.consumed(i)).max(0));
            }
        }
        room
    }

    /// Everything on agent `ai` usable in `role`, chopped by quota (see the module docs).
    pub(crate) fn offer_for_role(&self, ai: usize, role: &str, h: &Headroom) -> RoleOffer {
        let avail = self.agents[ai].available();
        let whole = avail.iter().all(|r| usable_in(&r.role, role));
        if !h.active && whole {
            return RoleOffer {
                res: None,
                guaranteed: false,
            };
        }
        let filtered;
        let usable = if whole {
            avail
        } else {
            filtered = avail.filter(|r| usable_in(&r.role, role));
            &filtered
        };
        if !h.active {
            return RoleOffer {
                res: Some(usable.clone()),
                guaranteed: false,
            };
        }
        let quota = self.under_quota(role);
        let unsat = match self.roles.guarantee_holder(role) {
            Some(g) => self.unsatisfied(g),
            None => Qty::default(),
        };
        let mut takes: Vec<(usize, i64)> = Vec::new();
        let mut chopped = false;
        let mut guaranteed_any = false;
        for r in usable.iter() {
            let (Value::Scalar(s), UNRESERVED) = (&r.value, r.role.as_str()) else {
                continue; // Reservations, ranges and sets are never chopped.
            };
            let Some(i) = self.names.get(&r.name) else {
                continue;
            };
            let amount = s.milli();
            let room = if quota {
                self.limit_room(role, &r.name, i)
            } else {
                i64::MAX
            };
            let guaranteed = amount.min(unsat.get(i)).min(room);
            let surplus = (self.free.get(i) - h.required.get(i)).max(0);
            let extra = (amount - guaranteed).min(room - guaranteed).min(surplus);
            let take = guaranteed + extra.max(0);
            guaranteed_any |= guaranteed > 0;
            chopped |= take < amount;
            takes.push((i, take));
        }
        if !chopped {
            return RoleOffer {
                res: (!whole).then(|| usable.clone()),
                guaranteed: guaranteed_any,
            };
        }
        let mut out = Resources::new();
        for r in usable.iter() {
            let take = match (&r.value, r.role.as_str()) {
                (Value::Scalar(_), UNRESERVED) => self
                    .names
                    .get(&r.name)
                    .and_then(|i| takes.iter().find(|(j, _)| *j == i))
                    .map(|(_, t)| *t),
                _ => None,
            };
            let entry = match take {
                Some(t) => Resource::new(
                    r.name.clone(),
                    UNRESERVED,
                    Value::Scalar(Scalar::from_milli(t)),
                ),
                None => r.clone(),
            };
            // Entries of a valid Resources keep their kinds: push cannot fail here.
            let _ = out.push(entry);
        }
        RoleOffer {
            res: Some(out),
            guaranteed: guaranteed_any,
        }
    }

    /// Refreshes the required headroom after a grant in `role` changed a quota role's
    /// consumption (the free headroom itself is kept by the accounting).
    pub(crate) fn charge_headroom(&mut self, h: &mut Headroom, role: &str) {
        if h.active && self.under_quota(role) {
            h.required = self.required_headroom();
        }
    }
}

/// Whether `r` meets `min_allocatable` (any one entry, all its scalars).
pub(crate) fn allocatable(cfg: &AllocatorConfig, r: &Resources) -> bool {
    if r.is_empty() {
        return false;
    }
    if cfg.min_allocatable.is_empty() {
        return true;
    }
    cfg.min_allocatable.iter().any(|min| {
        min.iter().all(|m| match &m.value {
            Value::Scalar(s) => r.scalar(&m.name) >= *s,
            Value::Ranges(want) => r.ranges(&m.name).count() >= want.count(),
            Value::Set(_) => true,
        })
    })
}
