//! Bookkeeping shared by every allocator input: moving resources between an agent's free pool
//! and a (framework, role) holding, and keeping the DRF and quota counters of the role tree and
//! the framework sorters in step.
//!
//! Used by [`crate::Allocator`]'s event methods and by the allocation cycle.

use crate::agents::{saturating_sub, Bag, Held};
use crate::allocator::Allocator;
use crate::qty::{Names, Qty};
use meseta_types::{FrameworkId, Resources, UNRESERVED};

/// What a grant changed in the accounting, shown to the allocation cycle (so its sorters
/// follow without looking the counters up again) while the grant is made.
pub(crate) struct Charged<'a> {
    /// The scalars moved (see [`Bag::scalars`]).
    pub scalars: &'a Bag,
    /// Whether the grant started a new (framework, role) holding on the agent.
    pub new_holding: bool,
    /// The framework's dominant share in the role afterwards.
    pub fw_share: f64,
    /// The framework's holdings in the role afterwards.
    pub fw_count: u64,
    /// The cluster's scalar totals.
    pub total: &'a Qty,
    /// The interned resource names.
    pub names: &'a Names,
}

impl Allocator {
    /// Moves up to `res` from agent `ai`'s free pool to the holding of (fw, role); returns what
    /// was moved (anything not free is skipped).
    pub(crate) fn grant(
        &mut self,
        ai: usize,
        fw: &FrameworkId,
        role: &str,
        res: &Resources,
    ) -> Resources {
        let ri = self.role_names.intern(role);
        self.grant_part(ai, fw, (ri, role), res, |_| {})
    }

    /// [`Allocator::grant`] for the allocation cycle: the role comes interned (`(index,
    /// name)`), and `seen` is shown what changed in the accounting (not called when nothing
    /// was moved).
    pub(crate) fn grant_part(
        &mut self,
        ai: usize,
        fw: &FrameworkId,
        role: (usize, &str),
        res: &Resources,
        seen: impl FnOnce(Charged<'_>),
    ) -> Resources {
        let Some(agent) = self.agents.get_mut(ai) else {
            return Resources::new();
        };
        let taken = if agent.available_mut().subtract(res).is_ok() {
            // The usual case, in place: the free pool keeps its allocation.
            res.clone()
        } else {
            let (rest, taken) = saturating_sub(agent.available(), res);
            *agent.available_mut() = rest;
            taken
        };
        self.hold(ai, fw, role, &taken, seen);
        taken
    }

    /// Moves agent `ai`'s whole free pool to the holding of (fw, role) (the role interned:
    /// `(index, name)`) and returns it; `seen` as for [`Allocator::grant_part`].
    ///
    /// The pool is copied out and emptied in place, not moved out: its buffer stays where the
    /// agent's registration allocated it, beside the other agents' (in registration order), and
    /// takes back what is released without a new allocation. Moved out, each cycle left the
    /// pools wherever the releases allocated them, and a full cycle over 50,000 agents slowed
    /// from about 40 to about 90 ms as they scattered.
    pub(crate) fn grant_all(
        &mut self,
        ai: usize,
        fw: &FrameworkId,
        role: (usize, &str),
        seen: impl FnOnce(Charged<'_>),
    ) -> Resources {
        let Some(agent) = self.agents.get_mut(ai) else {
            return Resources::new();
        };
        let taken = agent.available().clone();
        agent.available_mut().clear();
        self.hold(ai, fw, role, &taken, seen);
        taken
    }

    /// Adds `taken` (already out of the free pool) to the holding of (fw, role), the role
    /// interned (`(index, name)`), and shows `seen` what changed (unless `taken` is empty).
    fn hold(
        &mut self,
        ai: usize,
        fw: &FrameworkId,
        (ri, role): (usize, &str),
        taken: &Resources,
        seen: impl FnOnce(Charged<'_>),
    ) {
        if taken.is_empty() {
            return;
        }
        let bag = Bag::of(taken, &mut self.names, &mut self.role_names);
        let existing = self.agents[ai].held_index(fw, ri);
        for (i, v, reserved) in bag.scalars() {
            if !reserved {
                self.free.add(i, -v);
            }
        }
        let new_holding = existing.is_none();
        let (share, count) = self.count_scalars(fw, role, bag.scalars(), 1, i64::from(new_holding));
        seen(Charged {
            scalars: &bag,
            new_holding,
            fw_share: share,
            fw_count: count,
            total: &self.total,
            names: &self.names,
        });
        match existing {
            Some(i) => {
                let held = &self.agents[ai].held[i];
                let mut all = held.res.to_resources(&self.names, &self.role_names);
                all.add(taken);
                let merged = Bag::of(&all, &mut self.names, &mut self.role_names);
                self.agents[ai].held[i].res = merged;
            }
            None => self.agents[ai].held.push(Held {
                fw: fw.clone(),
                role: ri,
                res: bag,
            }),
        }
    }

    /// Moves up to `res` from the holding of (fw, role) on agent `ai` back to its free pool;
    /// returns what was actually released.
    pub(crate) fn release(
        &mut self,
        ai: usize,
        fw: &FrameworkId,
        role: &str,
        res: &Resources,
    ) -> Resources {
        let Some(agent) = self.agents.get_mut(ai) else {
            return Resources::new();
        };
        let Some(hi) = self
            .role_names
            .get(role)
            .and_then(|ri| agent.held_index(fw, ri))
        else {
            return Resources::new();
        };
        let cur = agent.held[hi]
            .res
            .to_resources(&self.names, &self.role_names);
        let (rest, taken) = saturating_sub(&cur, res);
        let emptied = rest.is_empty();
        if emptied {
            agent.held.swap_remove(hi);
        } else {
            agent.held[hi].res = Bag::of(&rest, &mut self.names, &mut self.role_names);
        }
        agent.available_mut().add(&taken);
        if !taken.is_empty() {
            self.mark_dirty(ai);
        }
        let scalars = self.names.scalars(&taken);
        for &(i, v, reserved) in &scalars {
            if !reserved {
                self.free.add(i, v);
            }
        }
        self.count_scalars(fw, role, scalars.into_iter(), -1, -i64::from(emptied));
        taken
    }

    /// Releases every holding on agent `ai` of frameworks matching `which`.
    pub(crate) fn release_all(&mut self, ai: usize, which: impl Fn(&FrameworkId) -> bool) {
        let held: Vec<(FrameworkId, String, Resources)> = match self.agents.get(ai) {
            Some(a) => a
                .held
                .iter()
                .filter(|h| which(&h.fw))
                .map(|h| {
                    let role = self.role_names.name(h.role).to_string();
                    let res = h.res.to_resources(&self.names, &self.role_names);
                    (h.fw.clone(), role, res)
                })
                .collect(),
            None => return,
        };
        for (fw, role, res) in held {
            self.release(ai, &fw, &role, &res);
        }
    }

    /// Adds (`sign` = 1) or subtracts (-1) `scalars` (from [`crate::qty::Names::scalars`]) to
    /// the counters of `role` (and ancestors) and of framework `fw` in `role`; `holdings` changes
    /// the holding counts. Returns the framework's new DRF key in the role: (dominant share,
    /// holdings).
    fn count_scalars(
        &mut self,
        fw: &FrameworkId,
        role: &str,
        scalars: impl Iterator<Item = (usize, i64, bool)> + Clone,
        sign: i64,
        holdings: i64,
    ) -> (f64, u64) {
        self.roles.for_path(role, |node, own| {
            for (i, v, reserved) in scalars.clone() {
                node.alloc.add(i, sign * v);
                if !reserved {
                    node.unres_alloc.add(i, sign * v);
                }
                if own {
                    node.own_alloc.add(i, sign * v);
                }
            }
            node.count = node.count.saturating_add_signed(holdings);
            if own {
                node.own_count = node.own_count.saturating_add_signed(holdings);
            }
        });
        let per_role = match self.fw_alloc.get_mut(fw) {
            Some(m) => m,
            None => self.fw_alloc.entry(fw.clone()).or_default(),
        };
        let entry = match per_role.get_mut(role) {
            Some(e) => e,
            None => per_role.entry(role.to_string()).or_default(),
        };
        for (i, v, _) in scalars {
            entry.alloc.add(i, sign * v);
        }
        entry.count = entry.count.saturating_add_signed(holdings);
        (entry.alloc.share(&self.total, &self.names), entry.count)
    }

    /// Adds (`sign` = 1) or subtracts (-1) the reserved entries of `res` to their roles'
    /// reservation counters (quota consumption).
    pub(crate) fn count_reservations(&mut self, res: &Resources, sign: i64) {
        for r in res.iter().filter(|r| r.role != UNRESERVED) {
            let one = r.clone();
            let mut single = Resources::new();
            if single.push(one).is_err() {
                continue;
            }
            let scalars = self.names.scalars(&single);
            self.roles.for_path(&r.role, |node, _| {
                for &(i, v, _) in &scalars {
                    node.reserved.add(i, sign * v);
                }
            });
        }
    }

    /// Adds (`sign` = 1) or subtracts (-1) the unreserved scalars of `res` to the free headroom
    /// counter (free unreserved scalars of all agents).
    pub(crate) fn count_free(&mut self, res: &Resources, sign: i64) {
        for (i, v, reserved) in self.names.scalars(res) {
            if !reserved {
                self.free.add(i, sign * v);
            }
        }
    }

    /// Recomputes the free headroom counter from the agents (tests check it against `free`).
    #[cfg(test)]
    pub(crate) fn free_recomputed(&mut self) -> crate::qty::Qty {
        let mut out = crate::qty::Qty::default();
        for ai in 0..self.agents.len() {
            let avail = self.agents[ai].available().clone();
            for (i, v, reserved) in self.names.scalars(&avail) {
                if !reserved {
                    out.add(i, v);
                }
            }
        }
        out
    }

    /// Adds (`sign` = 1) or subtracts (-1) an agent's total to the cluster total.
    pub(crate) fn count_total(&mut self, res: &Resources, sign: i64) {
        for (i, v, _) in self.names.scalars(res) {
            self.total.add(i, sign * v);
        }
    }
}
