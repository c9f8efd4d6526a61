//! The allocation cycle: stage 1 serves roles with unsatisfied quota guarantees, stage 2 serves
//! every role; within a stage, agents in a deterministic rotation, roles in weighted hierarchical
//! DRF order, frameworks in DRF order within the role. Then inverse offers for agents under
//! maintenance.
//!
//! Implements [`Allocator::allocate`]; the master calls it on its allocation ticks and events.

use crate::accounting::Charged;
use crate::agents::{free_pool, is_filtered};
use crate::allocator::Allocator;
use crate::chop::{allocatable, Headroom};
use crate::sorter::{cmp_entries, FwEntry, Sorter};
use crate::types::{Allocation, Cycle, InverseOffer};
use meseta_types::{AgentId, FrameworkId};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

impl Allocator {
    /// Runs one allocation cycle over all agents (`agents = None`) or the listed ones, and
    /// returns the grants (already counted as allocated) and the inverse offers to send.
    /// The walked agents leave the changed-agents set (a full cycle empties it).
    pub fn allocate(&mut self, now: Duration, agents: Option<&[AgentId]>) -> Cycle {
        let candidates = self.candidates(agents);
        if agents.is_none() {
            self.clear_dirty(now);
        } else {
            for &ai in &candidates {
                self.agents[ai].dirty = false;
            }
            let agents = &self.agents;
            self.dirty.agents.retain(|&ai| agents[ai].dirty);
        }
        self.run_cycle(now, candidates)
    }

    /// Runs one allocation cycle over the agents that changed since the last cycle (see
    /// `dirty.rs`): resources released, agent added or activated, a filter removed or expired,
    /// a reservation or maintenance change. When the demand side changed (a framework added,
    /// activated or un-suppressed, a weight or quota set) it walks every agent, as
    /// [`Allocator::allocate`] with `None` does. Cheap when little changed: the master runs it
    /// after every burst of events and a full cycle on its periodic tick (fairness, quota
    /// headroom freed elsewhere).
    pub fn allocate_changed(&mut self, now: Duration) -> Cycle {
        if self.dirty.full {
            return self.allocate(now, None);
        }
        for id in self.dirty.expired(now) {
            if let Some(&ai) = self.agent_index.get(&id) {
                self.mark_dirty(ai);
            }
        }
        let mut list = std::mem::take(&mut self.dirty.agents);
        for &ai in &list {
            self.agents[ai].dirty = false;
        }
        list.sort_unstable();
        list.retain(|&ai| self.agents[ai].active);
        self.run_cycle(now, list)
    }

    /// Whether the next [`Allocator::allocate_changed`] has anything to walk (ignoring filter
    /// expiry): some agent changed or a full walk is pending.
    pub fn has_changes(&self) -> bool {
        self.dirty.full || !self.dirty.agents.is_empty()
    }

    /// Empties the changed-agents set (every agent is about to be walked).
    fn clear_dirty(&mut self, now: Duration) {
        self.dirty.full = false;
        for ai in std::mem::take(&mut self.dirty.agents) {
            self.agents[ai].dirty = false;
        }
        // Filters expiring by now are seen by this walk.
        self.dirty.expired(now);
    }

    fn run_cycle(&mut self, now: Duration, candidates: Vec<usize>) -> Cycle {
        self.last_walked = candidates.len();
        let mut order = self.build_order();
        let mut headroom = self.headroom();
        let mut offers = Vec::with_capacity(candidates.len());
        if headroom.active {
            self.stage(
                true,
                &candidates,
                &mut order,
                &mut headroom,
                now,
                &mut offers,
            );
        }
        let stage1 = offers.len();
        self.stage(
            false,
            &candidates,
            &mut order,
            &mut headroom,
            now,
            &mut offers,
        );
        if stage1 > 0 {
            offers = merge(offers, stage1);
        }
        let inverse_offers = self.inverse_offers(&candidates, now);
        Cycle {
            offers,
            inverse_offers,
        }
    }

    /// Active candidate agents, rotated by one more position each cycle.
    fn candidates(&mut self, agents: Option<&[AgentId]>) -> Vec<usize> {
        let n = self.agents.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.rotation % n;
        self.rotation = self.rotation.wrapping_add(1);
        let mut list: Vec<usize> = match agents {
            None => (start..n).chain(0..start).collect(),
            Some(ids) => {
                let mut v: Vec<usize> = ids
                    .iter()
                    .filter_map(|id| self.agent_index.get(id).copied())
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            }
        };
        list.retain(|&ai| self.agents[ai].active);
        list
    }

    /// Sorters for this cycle: only active frameworks, only roles they have not suppressed.
    /// Interns the roles served, so that grants carry them as indices.
    fn build_order(&mut self) -> Sorter {
        let mut fws: HashMap<String, Vec<FwEntry>> = HashMap::new();
        // `frameworks` is ordered by id: its positions rank the ids.
        let ranked = self.frameworks.iter().zip(0u32..);
        for ((id, f), rank) in ranked.filter(|((_, f), _)| f.active) {
            for role in f.info.roles.iter().filter(|r| !f.suppressed.contains(*r)) {
                self.role_names.intern(role);
                let (share, count) = self.fw_key(id, role);
                fws.entry(role.clone()).or_default().push(FwEntry {
                    share,
                    count,
                    id: id.clone(),
                    rank,
                    gpu_aware: f.info.gpu_aware,
                    region_aware: f.info.region_aware,
                });
            }
        }
        Sorter::new(&self.roles, fws, &self.total, &self.names, &self.role_names)
    }

    /// DRF key of a framework in a role: (share, holdings).
    fn fw_key(&self, id: &FrameworkId, role: &str) -> (f64, u64) {
        self.fw_alloc
            .get(id)
            .and_then(|m| m.get(role))
            .map_or((0.0, 0), |a| {
                (a.alloc.share(&self.total, &self.names), a.count)
            })
    }

    fn stage(
        &mut self,
        quota_stage: bool,
        candidates: &[usize],
        order: &mut Sorter,
        headroom: &mut Headroom,
        now: Duration,
        out: &mut Vec<Allocation>,
    ) {
        let mut roles: Vec<usize> = Vec::new();
        for &ai in candidates {
            if quota_stage && headroom.required.is_zero() {
                break; // Every guarantee is met: stage 1 is over.
            }
            if self.agents[ai].available().is_empty() {
                continue;
            }
            roles.clear();
            roles.extend_from_slice(&order.order);
            for &node in roles.iter() {
                if quota_stage && !self.has_unsatisfied(&order.nodes[node].name) {
                    continue;
                }
                if let Some(grant) = self.serve_role(ai, node, quota_stage, order, headroom, now) {
                    out.push(grant);
                    if self.agents[ai].available().is_empty() {
                        break;
                    }
                }
            }
        }
    }

    /// Offers agent `ai` to the first eligible framework of sorter node `node`, if any.
    fn serve_role(
        &mut self,
        ai: usize,
        node: usize,
        quota_stage: bool,
        order: &mut Sorter,
        headroom: &mut Headroom,
        now: Duration,
    ) -> Option<Allocation> {
        let role = Rc::clone(&order.nodes[node].name);
        let role: &str = &role;
        let offer = self.offer_for_role(ai, role, headroom);
        let agent = &mut self.agents[ai];
        let offered = match &offer.res {
            Some(r) => r,
            None => free_pool(&agent.free, &agent.info.total),
        };
        if (quota_stage && !offer.guaranteed) || !allocatable(&self.cfg, offered) {
            return None;
        }
        let list = &order.nodes[node].fws;
        let mut chosen = None;
        for (fi, &ei) in list.iter().enumerate() {
            let e = &order.entries[ei as usize];
            if (agent.gpu && !e.gpu_aware) || (agent.foreign && !e.region_aware) {
                continue;
            }
            if is_filtered(&mut agent.filters, &e.id, role, offered, now) {
                continue;
            }
            chosen = Some((fi, e.id.clone()));
            break;
        }
        let (fi, fw) = chosen?;
        let ri = match order.nodes[node].role {
            Some(ri) => ri,
            None => self.role_names.intern(role),
        };
        let mut moved = None;
        let seen = |c: Charged<'_>| {
            order.charge(node, c.scalars.scalars(), c.new_holding, c.total, c.names);
            moved = Some((c.fw_share, c.fw_count));
        };
        let granted = match &offer.res {
            None => self.grant_all(ai, &fw, (ri, role), seen),
            Some(res) => self.grant_part(ai, &fw, (ri, role), res, seen),
        };
        self.charge_headroom(headroom, role);
        if let Some((share, count)) = moved {
            debug_assert!(order.agrees_with(&self.roles, node));
            reposition(order, node, fi, share, count);
            order.sort();
        }
        Some(Allocation {
            framework: fw,
            role: role.to_string(),
            agent: self.agents[ai].id.clone(),
            resources: granted,
        })
    }

    /// One inverse offer per (framework holding resources, agent under maintenance) that has
    /// none outstanding, did not accept and is not filtered.
    fn inverse_offers(&mut self, candidates: &[usize], now: Duration) -> Vec<InverseOffer> {
        let mut out = Vec::new();
        for &ai in candidates {
            let Some(unavailability) = self.agents[ai].unavailability else {
                continue;
            };
            let mut holders: Vec<FrameworkId> =
                self.agents[ai].held.iter().map(|h| h.fw.clone()).collect();
            holders.sort();
            holders.dedup();
            for fw in holders {
                if !self.frameworks.get(&fw).is_some_and(|f| f.active) {
                    continue;
                }
                let agent = &mut self.agents[ai];
                let id = agent.id.clone();
                let s = agent.inverse_of(&fw);
                if s.outstanding || s.accepted || s.until.is_some_and(|u| u > now) {
                    continue;
                }
                s.outstanding = true;
                s.until = None;
                out.push(InverseOffer {
                    framework: fw,
                    agent: id,
                    unavailability,
                });
            }
        }
        out
    }
}

/// Moves entry `fi` of `node`'s framework list to its place for its new DRF key after a grant.
/// Usually `fi` is the first and its place the last: two ring-buffer steps, no moves of the
/// entries between (shifting them, once per grant, was a fifth of a 10,000-agent cycle).
fn reposition(order: &mut Sorter, node: usize, fi: usize, share: f64, count: u64) {
    let Sorter { nodes, entries, .. } = order;
    let list = &mut nodes[node].fws;
    let Some(e) = list.get(fi).and_then(|&ei| entries.get_mut(ei as usize)) else {
        return;
    };
    e.share = share;
    e.count = count;
    let Some(ei) = list.remove(fi) else {
        return;
    };
    let e = &entries[ei as usize];
    let pos = list.partition_point(|&x| cmp_entries(&entries[x as usize], e) == Ordering::Less);
    list.insert(pos, ei);
}

/// Merges stage-2 grants into the stage-1 grant of the same (framework, role, agent), keeping
/// the first order. `stage1` = number of stage-1 grants at the front of `offers`.
fn merge(mut offers: Vec<Allocation>, stage1: usize) -> Vec<Allocation> {
    let mut moves: Vec<(usize, usize)> = Vec::new();
    {
        let key = |o: &Allocation| (o.framework.clone(), o.role.clone(), o.agent.clone());
        let index: HashMap<(FrameworkId, String, AgentId), usize> = offers[..stage1]
            .iter()
            .enumerate()
            .map(|(i, o)| (key(o), i))
            .collect();
        let agents: std::collections::HashSet<&AgentId> =
            offers[..stage1].iter().map(|o| &o.agent).collect();
        for (j, o) in offers.iter().enumerate().skip(stage1) {
            if !agents.contains(&o.agent) {
                continue;
            }
            if let Some(&i) = index.get(&key(o)) {
                moves.push((j, i));
            }
        }
    }
    let mut dropped = vec![false; offers.len()];
    for (j, i) in moves {
        let extra = std::mem::take(&mut offers[j].resources);
        offers[i].resources.add(&extra);
        dropped[j] = true;
    }
    let mut j = 0;
    offers.retain(|_| {
        j += 1;
        !dropped[j - 1]
    });
    offers
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_types::Resources;

    fn grant(fw: &str, role: &str, agent: &str, res: &str) -> Allocation {
        Allocation {
            framework: FrameworkId::new(fw),
            role: role.into(),
            agent: AgentId::new(agent),
            resources: Resources::parse(res).expect("valid"),
        }
    }

    #[test]
    fn merge_folds_stage_two_into_stage_one() {
        let offers = vec![
            grant("f", "r", "a1", "cpus:1"),
            grant("g", "r", "a2", "cpus:1"),
            grant("f", "r", "a1", "mem:10"),
            grant("f", "s", "a1", "mem:5"),
            grant("h", "r", "a3", "cpus:2"),
        ];
        let merged = merge(offers, 2);
        assert_eq!(merged.len(), 4);
        assert_eq!(merged[0], grant("f", "r", "a1", "cpus:1;mem:10"));
        assert_eq!(merged[2], grant("f", "s", "a1", "mem:5"));
        assert_eq!(merged[3], grant("h", "r", "a3", "cpus:2"));
    }
}
