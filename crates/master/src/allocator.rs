//! The master's side of allocation: it owns a [`meseta_allocator::Allocator`] (hierarchical
//! DRF with roles, weights, quota, filters, reservations — a pure library), keeps it told about
//! agents, frameworks and released resources, and turns each allocation cycle into offers.
//!
//! ```text
//!  agent (re)registers ─▶ add_agent(used)        framework subscribes ─▶ add/activate_framework
//!  decline / unused part of accept ─▶ recover(refuse)   task ends / offer rescinded ─▶ recover
//!  Core::allocate() (coalesced) ─▶ run_allocation ─▶ Allocator::allocate_changed ─▶ OFFERS
//!  periodic tick ─▶ run_allocation(full) ─▶ Allocator::allocate (every agent)
//! ```
//!
//! The coalesced runs walk only the agents whose free resources or eligibility changed (the
//! allocator keeps that set); the tick's full cycle keeps DRF fairness over the whole cluster.

use std::collections::HashMap;
use std::time::Duration;

use meseta_allocator::{
    AgentInfo, Allocator, AllocatorConfig, FaultDomain, FrameworkInfo as AllocFramework,
};
use meseta_api::domain::Domain;
use meseta_api::scheduler::{AgentUrl, Event, FrameworkInfo, IdValue, Offer, OfferList};
use meseta_phases::Phase;
use meseta_types::{AgentId, FrameworkId, OfferId, Resources};
use tokio::time::Instant;

use crate::core::{Core, OfferEntry};

/// A new allocator with Mesos' defaults (min allocatable `cpus:0.01 | mem:32`, gpus not in DRF),
/// gating offers by the master's region when it has a fault domain.
pub(crate) fn new_allocator(domain: Option<&Domain>) -> Allocator {
    Allocator::new(AllocatorConfig::default(), domain.map(|d| d.region.clone()))
}

/// The allocator's view of an agent's fault domain.
fn fault_domain(d: &Domain) -> FaultDomain {
    FaultDomain {
        region: d.region.clone(),
        zone: d.zone.clone(),
    }
}

/// The roles a framework subscribes with: `roles` (MULTI_ROLE), else `role`, else `*`.
pub(crate) fn framework_roles(info: &FrameworkInfo) -> Vec<String> {
    match (&info.roles, &info.role) {
        (Some(r), _) if !r.is_empty() => r.clone(),
        (_, Some(r)) if !r.is_empty() => vec![r.clone()],
        _ => vec!["*".to_string()],
    }
}

fn capable(info: &FrameworkInfo, cap: &str) -> bool {
    info.capabilities.iter().flatten().any(|c| c.kind == cap)
}

impl Core {
    /// Monotonic time for the allocator (it has no clock of its own).
    pub(crate) fn alloc_now(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.epoch())
    }

    /// Ask for an allocation run soon. Runs are coalesced: a burst of accepts, declines and
    /// finished tasks costs one run, made by the master's timer task right after.
    pub(crate) fn allocate(&mut self, _now: Instant) {
        self.allocation_wanted.notify_one();
    }

    /// (Re)tell the allocator about an agent, with what its tasks use.
    pub(crate) fn alloc_add_agent(&mut self, agent_id: &AgentId) {
        let Some(a) = self.agents.get(agent_id) else {
            return;
        };
        let (hostname, base) = (a.record.hostname.clone(), a.record.resources.clone());
        let domain = a.record.domain.as_ref().map(fault_domain);
        self.alloc.remove_agent(agent_id);
        let info = AgentInfo {
            hostname,
            total: self.reserved_total(agent_id, &base),
            domain,
        };
        let used: Vec<(FrameworkId, String, Resources)> = self
            .tasks
            .on_agent(agent_id)
            .map(|t| {
                (
                    t.spec.framework_id.clone(),
                    t.spec.role.to_string(),
                    Resources::clone(&t.spec.resources),
                )
            })
            .chain(
                self.executor_usage(|a, _| a == agent_id)
                    .into_iter()
                    .map(|(_, f, role, r)| (f, role, r)),
            )
            .collect();
        if let Err(e) = self.alloc.add_agent(agent_id.clone(), info.clone(), &used) {
            tracing::error!(agent_id = %agent_id, error = %e, "allocator refused the agent's tasks; adding it empty");
            let _ = self.alloc.add_agent(agent_id.clone(), info, &[]);
        }
        self.alloc_maintenance(agent_id);
    }

    /// Tell the allocator a framework is subscribed (new, failed over, or recovered).
    pub(crate) fn alloc_add_framework(&mut self, fw_id: &FrameworkId, info: &FrameworkInfo) {
        let spec = AllocFramework {
            roles: framework_roles(info),
            region_aware: capable(info, "REGION_AWARE"),
            gpu_aware: capable(info, "GPU_RESOURCES"),
        };
        let used: Vec<(AgentId, String, Resources)> = self
            .tasks
            .values()
            .filter(|t| &t.spec.framework_id == fw_id)
            .map(|t| {
                (
                    t.agent_id().clone(),
                    t.spec.role.to_string(),
                    Resources::clone(&t.spec.resources),
                )
            })
            .chain(
                self.executor_usage(|_, f| f == fw_id)
                    .into_iter()
                    .map(|(a, _, role, r)| (a, role, r)),
            )
            .collect();
        // A failed-over framework re-subscribes with possibly new roles: start it afresh, keeping
        // what its tasks use.
        self.alloc.remove_framework(fw_id);
        if let Err(e) = self.alloc.add_framework(fw_id.clone(), spec, &used) {
            tracing::error!(framework_id = %fw_id, error = %e, "allocator refused the framework");
        }
    }

    /// Give resources held by `fw` in `role` on `agent` back (with an offer filter when `refuse`).
    pub(crate) fn recover(
        &mut self,
        agent: &AgentId,
        fw: &FrameworkId,
        role: &str,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Instant,
    ) {
        let t = self.alloc_now(now);
        self.alloc.recover(agent, fw, role, resources, refuse, t);
    }

    /// Offer what the allocator grants to the frameworks that want it: a full cycle over every
    /// agent when `full` (the periodic tick: DRF order over the whole cluster, expired filters,
    /// quota headroom), else a cycle over the agents that changed since the last one.
    pub(crate) fn run_allocation(&mut self, now: Instant, full: bool) {
        let t = self.alloc_now(now);
        let cycle = meseta_phases::timed(Phase::AllocatorCycle, || {
            if full {
                self.alloc.allocate(t, None)
            } else {
                self.alloc.allocate_changed(t)
            }
        });
        let _offers = meseta_phases::time(Phase::Offers);
        let mut batches: HashMap<FrameworkId, Vec<Offer>> = HashMap::new();
        for grant in cycle.offers {
            if self
                .frameworks
                .get(&grant.framework)
                .is_none_or(|f| f.conn.is_none())
            {
                // Not deliverable (the subscription just ended): give it straight back.
                self.alloc.recover(
                    &grant.agent,
                    &grant.framework,
                    &grant.role,
                    &grant.resources,
                    None,
                    t,
                );
                continue;
            }
            let offer =
                self.make_offer(&grant.agent, &grant.framework, &grant.role, grant.resources);
            batches.entry(grant.framework).or_default().push(offer);
        }
        if !cycle.inverse_offers.is_empty() {
            self.send_inverse_offers(cycle.inverse_offers);
        }
        for (fw_id, offers) in batches {
            if let Some(fw) = self.frameworks.get(&fw_id) {
                fw.send(Event::Offers {
                    offers: OfferList { offers },
                });
            }
        }
    }

    fn make_offer(
        &mut self,
        agent_id: &AgentId,
        fw_id: &FrameworkId,
        role: &str,
        resources: Resources,
    ) -> Offer {
        let id = OfferId::new(self.new_offer_id());
        let (hostname, url, domain) = match self.agents.get_mut(agent_id) {
            Some(a) => {
                a.offered.add(&resources);
                (
                    a.record.hostname.clone(),
                    agent_url(&a.record.address),
                    a.record.domain.as_ref().map(Domain::to_mesos_json),
                )
            }
            None => (String::new(), None, None),
        };
        if let Some(fw) = self.frameworks.get_mut(fw_id) {
            fw.offered.add(&resources);
        }
        self.offers.insert(
            id.clone(),
            OfferEntry {
                framework_id: fw_id.clone(),
                agent_id: agent_id.clone(),
                role: role.to_string(),
                resources: resources.clone(),
                created: Instant::now(),
            },
        );
        Offer {
            id: IdValue::new(id.as_str()),
            framework_id: IdValue::new(fw_id.as_str()),
            agent_id: IdValue::new(agent_id.as_str()),
            hostname,
            attributes: self.agent_attributes(agent_id),
            resources,
            url,
            unavailability: self.offer_unavailability(agent_id),
            domain,
        }
    }
}

/// The Mesos `URL` of an agent listening on `address`.
fn agent_url(address: &str) -> Option<AgentUrl> {
    address.parse().ok().map(AgentUrl::of_agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_roles_then_role_then_star() {
        let mut info = FrameworkInfo::default();
        assert_eq!(framework_roles(&info), vec!["*"]);
        info.role = Some("eng".into());
        assert_eq!(framework_roles(&info), vec!["eng"]);
        info.roles = Some(vec!["a".into(), "b".into()]);
        assert_eq!(framework_roles(&info), vec!["a", "b"]);
    }
}
