//! The [`Allocator`] state and its event inputs: agents, frameworks, suppress/revive, recovered
//! resources, weights and quota, plus the read-only views. Reservations and maintenance live in
//! `ops.rs`, the allocation cycle in `cycle.rs`.
//!
//! Used by the master (one instance, driven from its event loop) and the allocator benchmark.

use crate::agents::{AgentState, Filter};
use crate::dirty::Dirty;
use crate::qty::{FastMap, Names, Qty};
use crate::roles::{validate_role, RoleTree};
use crate::types::{AgentInfo, AllocatorConfig, AllocatorError, FrameworkInfo, Quota, RoleInfo};
use meseta_types::{AgentId, FrameworkId, Resources, UNRESERVED};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A registered framework.
#[derive(Clone, Debug)]
pub(crate) struct FwState {
    /// What it subscribed with.
    pub info: FrameworkInfo,
    /// Whether it may receive offers.
    pub active: bool,
    /// Roles it suppressed.
    pub suppressed: BTreeSet<String>,
}

/// What a framework holds in one role (DRF input of the role's framework sorter).
#[derive(Clone, Debug, Default)]
pub(crate) struct FwRoleAlloc {
    /// Allocated scalars.
    pub alloc: Qty,
    /// Number of agents it holds resources on in this role.
    pub count: u64,
}

/// The hierarchical DRF allocator. See the crate docs and `README.md`.
#[derive(Debug)]
pub struct Allocator {
    pub(crate) cfg: AllocatorConfig,
    pub(crate) local_region: Option<String>,
    pub(crate) names: Names,
    /// Σ scalar totals of all registered agents.
    pub(crate) total: Qty,
    /// Σ free unreserved scalars of all registered agents (quota headroom).
    pub(crate) free: Qty,
    pub(crate) agents: Vec<AgentState>,
    pub(crate) agent_index: FastMap<AgentId, usize>,
    pub(crate) frameworks: BTreeMap<FrameworkId, FwState>,
    /// Allocation per framework and role, also for frameworks not (yet) registered.
    pub(crate) fw_alloc: FastMap<FrameworkId, FastMap<String, FwRoleAlloc>>,
    pub(crate) roles: RoleTree,
    /// Interned role names (holdings refer to roles by index).
    pub(crate) role_names: Names,
    /// Start offset of the agent rotation (deterministic stand-in for Mesos' shuffle).
    pub(crate) rotation: usize,
    /// What changed since the last cycle (see `dirty.rs`).
    pub(crate) dirty: Dirty,
    /// Agents walked by the last cycle.
    pub(crate) last_walked: usize,
}

impl Allocator {
    /// An empty allocator. `local_region` is the master's fault-domain region.
    pub fn new(cfg: AllocatorConfig, local_region: Option<String>) -> Allocator {
        let mut role_names = Names::new(&[]);
        // Index 0 is the unreserved role: `Bag::scalars` relies on it.
        role_names.intern(UNRESERVED);
        Allocator {
            names: Names::new(&cfg.fair_sharing_excluded),
            cfg,
            local_region,
            total: Qty::default(),
            free: Qty::default(),
            agents: Vec::new(),
            agent_index: FastMap::default(),
            frameworks: BTreeMap::new(),
            fw_alloc: FastMap::default(),
            roles: RoleTree::default(),
            role_names,
            rotation: 0,
            dirty: Dirty::default(),
            last_walked: 0,
        }
    }

    /// Marks agent `ai` as changed: the next [`Allocator::allocate_changed`] walks it.
    pub(crate) fn mark_dirty(&mut self, ai: usize) {
        if let Some(a) = self.agents.get_mut(ai) {
            if !a.dirty {
                a.dirty = true;
                self.dirty.agents.push(ai);
            }
        }
    }

    /// Marks the demand side as changed: the next [`Allocator::allocate_changed`] walks every
    /// agent.
    pub(crate) fn mark_all_dirty(&mut self) {
        self.dirty.full = true;
    }

    pub(crate) fn agent_idx(&self, id: &AgentId) -> Result<usize, AllocatorError> {
        self.agent_index
            .get(id)
            .copied()
            .ok_or_else(|| AllocatorError::UnknownAgent(id.clone()))
    }

    /// Registers an agent; `used` lists what frameworks already hold on it (re-registration
    /// after a master failover). Frameworks in `used` need not be registered yet.
    pub fn add_agent(
        &mut self,
        id: AgentId,
        info: AgentInfo,
        used: &[(FrameworkId, String, Resources)],
    ) -> Result<(), AllocatorError> {
        if self.agent_index.contains_key(&id) {
            return Err(AllocatorError::DuplicateAgent(id));
        }
        for role in info.total.roles() {
            validate_role(&role)?;
        }
        let mut sum = Resources::new();
        for (_, role, res) in used {
            validate_role(role)?;
            sum.add(res);
        }
        if !info.total.contains(&sum) {
            return Err(AllocatorError::InsufficientResources(id, sum.to_string()));
        }
        self.count_total(&info.total, 1);
        self.count_reservations(&info.total, 1);
        self.count_free(&info.total, 1);
        let agent = AgentState::new(id.clone(), info, self.local_region.as_deref());
        self.agents.push(agent);
        let ai = self.agents.len() - 1;
        self.agent_index.insert(id, ai);
        for (fw, role, res) in used {
            self.grant(ai, fw, role, res);
        }
        self.mark_dirty(ai);
        Ok(())
    }

    /// Removes an agent and frees everything on it.
    pub fn remove_agent(&mut self, id: &AgentId) {
        let Some(ai) = self.agent_index.remove(id) else {
            return;
        };
        self.release_all(ai, |_| true);
        let agent = self.agents.swap_remove(ai);
        self.dirty.agent_removed(ai, self.agents.len());
        if let Some(moved) = self.agents.get(ai) {
            self.agent_index.insert(moved.id.clone(), ai);
        }
        self.count_total(&agent.info.total, -1);
        self.count_reservations(&agent.info.total, -1);
        self.count_free(agent.available(), -1);
    }

    /// Lets the agent receive offers again.
    pub fn activate_agent(&mut self, id: &AgentId) {
        self.set_agent_active(id, true);
    }

    /// Stops offers from the agent (what it holds stays allocated).
    pub fn deactivate_agent(&mut self, id: &AgentId) {
        self.set_agent_active(id, false);
    }

    fn set_agent_active(&mut self, id: &AgentId, active: bool) {
        if let Some(&ai) = self.agent_index.get(id) {
            self.agents[ai].active = active;
            if active {
                self.mark_dirty(ai);
            }
        }
    }

    /// Registers a framework; `used` lists what it already holds (framework failover). Entries
    /// already reported by their agent, or on agents not registered yet, are skipped.
    pub fn add_framework(
        &mut self,
        id: FrameworkId,
        info: FrameworkInfo,
        used: &[(AgentId, String, Resources)],
    ) -> Result<(), AllocatorError> {
        if self.frameworks.contains_key(&id) {
            return Err(AllocatorError::DuplicateFramework(id));
        }
        for role in &info.roles {
            validate_role(role)?;
        }
        let mut todo = Vec::new();
        for (agent, role, res) in used {
            validate_role(role)?;
            let Some(&ai) = self.agent_index.get(agent) else {
                continue;
            };
            let a = &self.agents[ai];
            let held = self
                .role_names
                .get(role)
                .and_then(|ri| a.held_index(&id, ri));
            if held.is_some() {
                continue;
            }
            if !a.available().contains(res) {
                return Err(AllocatorError::InsufficientResources(
                    agent.clone(),
                    res.to_string(),
                ));
            }
            todo.push((ai, role, res));
        }
        for (ai, role, res) in todo {
            self.grant(ai, &id, role, res);
        }
        for role in &info.roles {
            self.roles.ensure(role).frameworks.insert(id.clone());
        }
        let state = FwState {
            info,
            active: true,
            suppressed: BTreeSet::new(),
        };
        self.frameworks.insert(id, state);
        self.mark_all_dirty();
        Ok(())
    }

    /// Removes a framework and frees everything it holds.
    pub fn remove_framework(&mut self, id: &FrameworkId) {
        let Some(fw) = self.frameworks.remove(id) else {
            return;
        };
        for ai in 0..self.agents.len() {
            self.release_all(ai, |f| f == id);
            let agent = &mut self.agents[ai];
            agent.filters.retain(|f| &f.fw != id);
            agent.inverse.retain(|s| &s.fw != id);
        }
        for role in &fw.info.roles {
            if let Some(n) = self.roles.nodes.get_mut(role) {
                n.frameworks.remove(id);
            }
        }
        self.fw_alloc.remove(id);
    }

    /// Lets the framework receive offers again.
    pub fn activate_framework(&mut self, id: &FrameworkId) {
        if let Some(f) = self.frameworks.get_mut(id) {
            f.active = true;
            self.dirty.full = true;
        }
    }

    /// Stops offers to the framework (what it holds stays allocated).
    pub fn deactivate_framework(&mut self, id: &FrameworkId) {
        if let Some(f) = self.frameworks.get_mut(id) {
            f.active = false;
        }
    }

    /// Stops offers to the framework in `roles` (all its roles when `None`).
    pub fn suppress(&mut self, id: &FrameworkId, roles: Option<&[String]>) {
        if let Some(f) = self.frameworks.get_mut(id) {
            let which = roles.map_or_else(|| f.info.roles.clone(), <[String]>::to_vec);
            f.suppressed.extend(which);
        }
    }

    /// Un-suppresses the framework in `roles` (all when `None`) and clears its offer filters in
    /// those roles and its inverse-offer filters.
    pub fn revive(&mut self, id: &FrameworkId, roles: Option<&[String]>) {
        let Some(f) = self.frameworks.get_mut(id) else {
            return;
        };
        let which = roles.map_or_else(|| f.info.roles.clone(), <[String]>::to_vec);
        let mut unsuppressed = false;
        for r in &which {
            unsuppressed |= f.suppressed.remove(r);
        }
        if unsuppressed {
            // It wants offers again: every agent with something free may serve it.
            self.dirty.full = true;
        }
        for (ai, agent) in self.agents.iter_mut().enumerate() {
            let before = agent.filters.len();
            agent
                .filters
                .retain(|flt| &flt.fw != id || !which.contains(&flt.role));
            let mut changed = agent.filters.len() != before;
            for s in agent.inverse.iter_mut().filter(|s| &s.fw == id) {
                changed |= s.until.is_some();
                s.until = None;
            }
            if changed && !agent.dirty {
                agent.dirty = true;
                self.dirty.agents.push(ai);
            }
        }
    }

    /// Returns resources of (fw, role) on `agent` to the pool: a declined or unused offer part
    /// (with `refuse`, installing a filter until `now + refuse`), a finished task or a rescinded
    /// offer (`refuse = None`). Unknown agents, frameworks or holdings are ignored.
    pub fn recover(
        &mut self,
        agent: &AgentId,
        fw: &FrameworkId,
        role: &str,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Duration,
    ) {
        let Some(&ai) = self.agent_index.get(agent) else {
            return;
        };
        let released = self.release(ai, fw, role, resources);
        let Some(d) = refuse.filter(|d| !d.is_zero()) else {
            return;
        };
        if released.is_empty() || !self.frameworks.contains_key(fw) {
            return;
        }
        let until = now.saturating_add(d);
        self.dirty
            .expiries
            .push(std::cmp::Reverse((until, agent.clone())));
        self.agents[ai].filters.push(Filter {
            fw: fw.clone(),
            role: role.to_string(),
            refused: released,
            until,
        });
    }

    /// Sets the DRF weight of `role` (positive, at most [`MAX_WEIGHT`]).
    pub fn set_weight(&mut self, role: &str, weight: f64) -> Result<(), AllocatorError> {
        validate_role(role)?;
        validate_weight(role, weight)?;
        self.roles.ensure(role).weight = Some(weight);
        self.mark_all_dirty();
        Ok(())
    }

    /// Sets the quota of `role`. Guarantees must not exceed limits; limits below the role's
    /// current consumption need `force`.
    pub fn set_quota(&mut self, role: &str, q: Quota, force: bool) -> Result<(), AllocatorError> {
        validate_role(role)?;
        let invalid = |why: String| Err(AllocatorError::InvalidQuota(role.to_string(), why));
        if role == UNRESERVED {
            return invalid("the default role `*` cannot have quota".into());
        }
        for name in q.guarantees.keys().chain(q.limits.keys()) {
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return invalid(format!("bad resource name `{name}`"));
            }
        }
        for (name, g) in &q.guarantees {
            if q.limits.get(name).is_some_and(|l| g > l) {
                return invalid(format!("guarantee {g} of `{name}` exceeds its limit"));
            }
        }
        if !force {
            let node = self.roles.get(role);
            let over: Vec<String> = q
                .limits
                .iter()
                .filter_map(|(name, limit)| {
                    let used = node
                        .zip(self.names.get(name))
                        .map_or(0, |(n, i)| n.consumed(i));
                    (used > limit.milli())
                        .then(|| format!("{name}:{}", meseta_types::Scalar::from_milli(used)))
                })
                .collect();
            if !over.is_empty() {
                return Err(AllocatorError::LimitBelowConsumption(
                    role.to_string(),
                    over.join(";"),
                ));
            }
        }
        for name in q.guarantees.keys().chain(q.limits.keys()) {
            self.names.intern(name);
        }
        self.roles.ensure(role).quota = Some(q);
        self.mark_all_dirty();
        Ok(())
    }

    /// Removes the quota of `role`.
    pub fn remove_quota(&mut self, role: &str) {
        if let Some(n) = self.roles.nodes.get_mut(role) {
            n.quota = None;
        }
        self.mark_all_dirty();
    }

    /// Known roles (with frameworks, reservations, allocation, quota or a weight), by name.
    pub fn roles(&self) -> Vec<RoleInfo> {
        self.roles
            .nodes
            .iter()
            .filter(|(_, n)| {
                !n.frameworks.is_empty()
                    || n.weight.is_some()
                    || n.quota.is_some()
                    || !n.reserved.is_zero()
                    || !n.alloc.is_zero()
            })
            .map(|(name, n)| {
                let mut consumed = n.reserved.clone();
                for (i, v) in n.unres_alloc.0.iter().enumerate() {
                    consumed.add(i, *v);
                }
                RoleInfo {
                    name: name.clone(),
                    weight: n.weight(),
                    quota: n.quota.clone(),
                    allocated: self.names.to_map(&n.alloc),
                    reserved: self.names.to_map(&n.reserved),
                    consumed: self.names.to_map(&consumed),
                    frameworks: n.frameworks.iter().cloned().collect(),
                    share: n.alloc.share(&self.total, &self.names) / n.weight(),
                }
            })
            .collect()
    }

    /// How many agents the last cycle walked (all active ones for a full cycle, the changed
    /// ones for [`Allocator::allocate_changed`]).
    pub fn last_walked(&self) -> usize {
        self.last_walked
    }

    /// Total resources of all registered agents.
    pub fn total(&self) -> Resources {
        let mut out = Resources::new();
        for a in &self.agents {
            out.add(&a.info.total);
        }
        out
    }

    /// Everything allocated (offered or in use) on `agent`; empty if unknown.
    pub fn allocated_on(&self, agent: &AgentId) -> Resources {
        self.agent_index
            .get(agent)
            .map(|&ai| {
                let mut out = Resources::new();
                for h in &self.agents[ai].held {
                    out.add(&h.res.to_resources(&self.names, &self.role_names));
                }
                out
            })
            .unwrap_or_default()
    }

    /// What is free on `agent` (its total minus everything allocated); empty if unknown.
    pub fn available_on(&self, agent: &AgentId) -> Resources {
        self.agent_index
            .get(agent)
            .map(|&ai| self.agents[ai].available().clone())
            .unwrap_or_default()
    }

    /// The agent's current total (static plus dynamic reservations); `None` if unknown.
    pub fn agent_total(&self, agent: &AgentId) -> Option<&Resources> {
        self.agent_index
            .get(agent)
            .map(|&ai| &*self.agents[ai].info.total)
    }
}

/// The largest DRF weight a role may have: beyond it shares divided by the weight lose all
/// precision, and no operator means a role to count a million times another.
pub const MAX_WEIGHT: f64 = 1_000_000.0;

/// A weight must be a finite number in `(0, MAX_WEIGHT]`.
pub fn validate_weight(role: &str, weight: f64) -> Result<(), AllocatorError> {
    if weight.is_finite() && weight > 0.0 && weight <= MAX_WEIGHT {
        Ok(())
    } else {
        Err(AllocatorError::InvalidWeight(role.to_string(), weight))
    }
}
