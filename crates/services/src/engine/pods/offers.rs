//! Pods on offers and status updates: waiting instances placed as task groups (constraints,
//! accepted roles, resources and host ports), container updates folded into their instance,
//! and the live tasks and owed kills of pods (reconciliation).

use meseta_api::marathon::pod::PodDefinition;
use meseta_api::marathon::{Constraint, ConstraintOperator};
use meseta_api::scheduler::{Offer, TaskStatus};
use meseta_types::Resources;
use serde_json::json;

use super::super::model::{Backoff, Goal};
use super::super::place::AgentInfo;
use super::super::{Engine, KillOrder};
use super::model::{PodInstance, PodLaunchOrder};
use crate::constraints::{AgentView, CompiledConstraints};
use crate::pod::group::{split_task_id, task_group};

fn constraints_of(pod: &PodDefinition) -> Option<CompiledConstraints> {
    let cs: Vec<Constraint> = pod
        .scheduling
        .placement
        .constraints
        .iter()
        .filter_map(|c| {
            Some(Constraint {
                field: c.field_name.clone(),
                operator: ConstraintOperator::parse(&c.operator)?,
                value: c.value.clone(),
            })
        })
        .collect();
    CompiledConstraints::new(&cs).ok()
}

impl Engine {
    /// Some pod instance waits for an offer now.
    pub fn pods_want_offers(&self, now: f64) -> bool {
        self.pods
            .values()
            .any(|p| !p.deleted && p.backoff.until <= now && p.waiting().next().is_some())
    }

    /// Earliest end of a pod's backoff while its instances wait.
    pub fn pods_next_backoff_end(&self, now: f64) -> Option<f64> {
        self.pods
            .values()
            .filter(|p| !p.deleted && p.backoff.until > now && p.waiting().next().is_some())
            .map(|p| p.backoff.until)
            .reduce(f64::min)
    }

    /// Place waiting pod instances on `offers` (at most one instance per offer); the
    /// instances are marked launched (persist them before the launches leave).
    pub fn pod_offers(&mut self, offers: &[&Offer], now: f64) -> Vec<PodLaunchOrder> {
        let mut orders = Vec::new();
        let ids: Vec<String> = self
            .pods
            .values()
            .filter(|p| !p.deleted && p.backoff.until <= now && p.waiting().next().is_some())
            .map(|p| p.pod.id.clone())
            .collect();
        if ids.is_empty() {
            return orders;
        }
        for o in offers {
            AgentInfo::learn(&mut self.agents, o);
        }
        let mut used = vec![false; offers.len()];
        for id in ids {
            while let Some(ps) = self.pods.get(&id) {
                let Some(inst) = ps.waiting().next() else {
                    break;
                };
                let inst_id = inst.id.clone();
                let def = ps.definition(&inst.version).clone();
                let compiled = constraints_of(&def);
                let placed: Vec<&AgentInfo> = ps
                    .live()
                    .filter(|i| i.launched)
                    .filter_map(|i| i.agent.as_ref())
                    .filter_map(|(a, _)| self.agents.get(a))
                    .collect();
                let placed_views: Vec<AgentView<'_>> = placed.iter().map(|a| a.view()).collect();
                let mut chosen = None;
                for (k, o) in offers.iter().enumerate() {
                    if used[k] {
                        continue;
                    }
                    if !role_ok(&def, &o.resources) {
                        continue;
                    }
                    if let (Some(c), Some(agent)) =
                        (&compiled, self.agents.get(o.agent_id.as_str()))
                    {
                        if c.check(&agent.view(), &placed_views).is_err() {
                            continue;
                        }
                    }
                    if let Ok(l) = task_group(&def, &inst_id, &o.agent_id, &o.resources) {
                        chosen = Some((k, l, o.hostname.clone()));
                        break;
                    }
                }
                let Some((k, launch, host)) = chosen else {
                    break;
                };
                used[k] = true;
                let offer = offers[k];
                if let Some(i) = self
                    .pods
                    .get_mut(&id)
                    .and_then(|p| p.instances.get_mut(&inst_id))
                {
                    i.launched = true;
                    i.agent = Some((offer.agent_id.as_str().to_owned(), host));
                    for c in &mut i.containers {
                        c.since = now;
                        if let Some(spec) = def.containers.iter().find(|s| s.name == c.name) {
                            c.ports = spec
                                .endpoints
                                .iter()
                                .filter_map(|e| {
                                    launch.ports.get(&e.name).map(|p| (e.name.clone(), *p))
                                })
                                .collect();
                        }
                    }
                }
                self.persist_pod(&id);
                orders.push(PodLaunchOrder {
                    offer_id: offer.id.clone(),
                    executor: launch.executor,
                    tasks: launch.tasks,
                });
            }
        }
        orders
    }

    /// A status update of a pod container task; false when the task is no pod's.
    pub fn pod_on_status(&mut self, s: &TaskStatus, now: f64) -> bool {
        let task = s.task_id.as_str();
        let Some((inst, _)) = split_task_id(task) else {
            return false;
        };
        let Some(pod_id) = self
            .pods
            .values()
            .find(|p| p.instances.contains_key(inst))
            .map(|p| p.pod.id.clone())
        else {
            return false;
        };
        let inst = inst.to_owned();
        let host = s
            .agent_id
            .as_ref()
            .and_then(|a| self.agents.get(a.as_str()))
            .map(|a| a.hostname.clone());
        let Some(i) = self
            .pods
            .get_mut(&pod_id)
            .and_then(|p| p.instances.get_mut(&inst))
        else {
            return false;
        };
        let Some(c) = i.containers.iter_mut().find(|c| c.task_id == task) else {
            return false;
        };
        if c.state != Some(s.state) {
            c.since = now;
        }
        c.state = Some(s.state);
        if s.healthy.is_some() {
            c.healthy = s.healthy;
        }
        c.message = s.message.clone().filter(|m| !m.is_empty());
        if let Some(a) = &s.agent_id {
            let known = i.agent.as_ref().map(|x| x.0.as_str()) == Some(a.as_str());
            if !known {
                i.agent = Some((a.as_str().to_owned(), host.unwrap_or_default()));
            }
        }
        let condition = super::super::condition::condition_name(s.state);
        let (agent, hostname) = i.agent.clone().unwrap_or_default();
        let version = i.version.clone();
        let stable = i.stable();
        let body = json!({"instanceId": inst, "slaveId": agent, "condition": condition,
                          "host": hostname, "runSpecId": pod_id, "runSpecVersion": version});
        self.event("instance_changed_event", now, body);
        if stable {
            if let Some(p) = self.pods.get_mut(&pod_id) {
                p.backoff = Backoff::default();
            }
        }
        self.persist_pod(&pod_id);
        self.pod_converge(&pod_id, now);
        true
    }

    /// Live pod container tasks with their agent (for reconciliation).
    pub fn pod_live_tasks(&self) -> Vec<(String, Option<String>)> {
        self.pods
            .values()
            .flat_map(|p| p.instances.values())
            .filter(|i| i.launched)
            .flat_map(|i| {
                i.containers
                    .iter()
                    .filter(|c| c.active())
                    .map(|c| (c.task_id.clone(), i.agent.as_ref().map(|a| a.0.clone())))
            })
            .collect()
    }

    /// Kills of decommissioned pod instances still alive.
    pub fn pod_pending_kills(&self) -> Vec<KillOrder> {
        self.pods
            .values()
            .flat_map(|p| p.instances.values())
            .filter(|i| i.goal == Goal::Decommissioned)
            .flat_map(PodInstance::kills)
            .collect()
    }
}

/// Offers of other roles than the pod accepts are skipped (`acceptedResourceRoles`).
fn role_ok(pod: &PodDefinition, offered: &Resources) -> bool {
    let roles = &pod.scheduling.placement.accepted_resource_roles;
    roles.is_empty()
        || offered
            .iter()
            .any(|r| roles.iter().any(|a| a == r.role.as_str() || a == "*"))
}
