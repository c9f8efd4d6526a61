//! A minimal allocator: offers every agent's free resources to one framework at a time.
//!
//! The choice is a pure function ([`plan`]): each agent with something to offer goes to the
//! framework with the lowest dominant share that is not filtering that agent. Full hierarchical DRF
//! with roles, weights and quota lives in its own crate later; this keeps the same shape
//! (state in, decisions out, no clock of its own).

use std::collections::HashMap;

use meseta_api::scheduler::{Event, IdValue, Offer, OfferList};
use meseta_types::{AgentId, FrameworkId, OfferId, Resources};
use tokio::time::Instant;

use crate::core::{AgentStatus, Core, OfferEntry};

/// A framework as the planner sees it.
pub(crate) struct FwView {
    pub id: FrameworkId,
    /// Resources it holds (tasks and offers).
    pub allocated: Resources,
    /// Agents it refuses for now.
    pub filtered: Vec<AgentId>,
}

/// Decide which framework gets each agent's free resources.
pub(crate) fn plan(
    total: &Resources,
    agents: &[(AgentId, Resources)],
    frameworks: &mut [FwView],
) -> Vec<(AgentId, FrameworkId)> {
    let mut out = Vec::new();
    for (agent, free) in agents {
        let best = frameworks
            .iter_mut()
            .filter(|f| !f.filtered.contains(agent))
            .min_by(|a, b| {
                dominant_share(&a.allocated, total)
                    .total_cmp(&dominant_share(&b.allocated, total))
                    .then_with(|| a.id.cmp(&b.id))
            });
        if let Some(f) = best {
            f.allocated.add(free);
            out.push((agent.clone(), f.id.clone()));
        }
    }
    out
}

/// The largest share of any of cpus, mem, disk and gpus a framework holds.
pub(crate) fn dominant_share(alloc: &Resources, total: &Resources) -> f64 {
    ["cpus", "mem", "disk", "gpus"]
        .iter()
        .map(|n| {
            let t = total.scalar(n).as_f64();
            if t > 0.0 {
                alloc.scalar(n).as_f64() / t
            } else {
                0.0
            }
        })
        .fold(0.0, f64::max)
}

/// Is there enough to be worth offering? (At least 0.01 cpus or 32 MiB.)
fn worth_offering(free: &Resources) -> bool {
    free.cpus() >= 0.01 || free.mem() >= 32.0
}

impl Core {
    /// Ask for an allocation run soon. Runs are coalesced: a burst of accepts, declines and
    /// finished tasks costs one run, made by the master's timer task right after.
    pub(crate) fn allocate(&mut self, _now: Instant) {
        self.allocation_wanted.notify_one();
    }

    /// Offer every agent's free resources to the frameworks that want them.
    pub(crate) fn run_allocation(&mut self, now: Instant) {
        // Frameworks first: with nobody asking, no agent's free resources need computing.
        let mut fws: Vec<FwView> = self
            .frameworks
            .values()
            .filter(|f| f.conn.is_some() && !f.suppressed)
            .map(|f| FwView {
                id: f.id.clone(),
                allocated: f.used.plus(&f.offered),
                filtered: f
                    .filters
                    .iter()
                    .filter(|(_, until)| **until > now)
                    .map(|(a, _)| a.clone())
                    .collect(),
            })
            .collect();
        if fws.is_empty() {
            return;
        }
        let agents: Vec<(AgentId, Resources)> = self
            .agents
            .iter()
            .filter(|(_, a)| a.status == AgentStatus::Active)
            .map(|(id, a)| (id.clone(), a.free()))
            .filter(|(_, free)| worth_offering(free))
            .collect();
        if agents.is_empty() {
            return;
        }
        let (total, _) = self.totals();
        let decisions = plan(&total, &agents, &mut fws);
        let free: HashMap<AgentId, Resources> = agents.into_iter().collect();
        let mut batches: HashMap<FrameworkId, Vec<Offer>> = HashMap::new();
        for (agent_id, fw_id) in decisions {
            let Some(resources) = free.get(&agent_id).cloned() else {
                continue;
            };
            let offer = self.make_offer(&agent_id, &fw_id, resources);
            batches.entry(fw_id).or_default().push(offer);
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
        resources: Resources,
    ) -> Offer {
        let id = OfferId::new(format!("{}-O{}", self.master_id, self.next_offer));
        self.next_offer += 1;
        let (hostname, url) = match self.agents.get_mut(agent_id) {
            Some(a) => {
                a.offered.add(&resources);
                (a.record.hostname.clone(), agent_url(&a.record.address))
            }
            None => (String::new(), None),
        };
        if let Some(fw) = self.frameworks.get_mut(fw_id) {
            fw.offered.add(&resources);
        }
        self.offers.insert(
            id.clone(),
            OfferEntry {
                framework_id: fw_id.clone(),
                agent_id: agent_id.clone(),
                resources: resources.clone(),
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
        }
    }
}

/// The Mesos `URL` of an agent: `{"scheme","address":{"hostname","ip","port"},"path"}`.
fn agent_url(address: &str) -> Option<serde_json::Value> {
    let addr: std::net::SocketAddr = address.parse().ok()?;
    Some(serde_json::json!({
        "scheme": "http",
        "address": {"hostname": addr.ip().to_string(), "ip": addr.ip().to_string(), "port": addr.port()},
        "path": "/slave(1)"
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Resources {
        Resources::parse(s).expect("valid resources")
    }

    fn fw(id: &str, alloc: &str) -> FwView {
        FwView {
            id: FrameworkId::new(id),
            allocated: r(alloc),
            filtered: vec![],
        }
    }

    #[test]
    fn lowest_dominant_share_gets_the_agent() {
        let total = r("cpus:10;mem:1000");
        let agents = vec![(AgentId::new("a1"), r("cpus:2;mem:100"))];
        let mut fws = vec![fw("f1", "cpus:5;mem:10"), fw("f2", "cpus:1;mem:300")];
        let out = plan(&total, &agents, &mut fws);
        assert_eq!(out, vec![(AgentId::new("a1"), FrameworkId::new("f2"))]);
    }

    #[test]
    fn offers_spread_as_shares_grow_and_filters_are_honoured() {
        let total = r("cpus:4;mem:400");
        let agents = vec![
            (AgentId::new("a1"), r("cpus:2;mem:200")),
            (AgentId::new("a2"), r("cpus:2;mem:200")),
        ];
        let mut fws = vec![fw("f1", "cpus:0.001"), fw("f2", "cpus:0.002")];
        let out = plan(&total, &agents, &mut fws);
        assert_eq!(out[0].1, FrameworkId::new("f1"));
        assert_eq!(out[1].1, FrameworkId::new("f2"));

        let mut fws = vec![fw("f1", ""), fw("f2", "cpus:1")];
        fws[0].filtered.push(AgentId::new("a1"));
        let out = plan(&total, &agents[..1], &mut fws);
        assert_eq!(out, vec![(AgentId::new("a1"), FrameworkId::new("f2"))]);
    }

    #[test]
    fn no_framework_no_offer() {
        let total = r("cpus:4");
        let agents = vec![(AgentId::new("a1"), r("cpus:2"))];
        let mut fws = vec![{
            let mut f = fw("f1", "");
            f.filtered.push(AgentId::new("a1"));
            f
        }];
        assert!(plan(&total, &agents, &mut fws).is_empty());
    }
}
