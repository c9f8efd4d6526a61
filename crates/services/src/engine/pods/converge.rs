//! How a pod moves toward its target: failed instances replaced with backoff, surplus ones
//! stopped, other versions replaced rolling within the upgrade strategy, the deployment ended,
//! a removed pod forgotten once its instances ended.

use std::collections::BTreeMap;

use serde_json::json;

use super::super::model::{Backoff, Goal};
use super::super::Engine;
use super::model::{PodContainerRecord, PodInstance};
use super::pod_plan_json;
use crate::pod::group::{instance_id, task_id};

impl Engine {
    /// Move pod `id` toward its target (see the module docs).
    pub(crate) fn pod_converge(&mut self, id: &str, now: f64) {
        let Some(ps) = self.pods.get(id) else {
            return;
        };
        let mut changed = false;
        // Forget decommissioned instances that ended (or never left).
        let gone: Vec<String> = ps
            .instances
            .values()
            .filter(|i| i.goal == Goal::Decommissioned && !i.alive())
            .map(|i| i.id.clone())
            .collect();
        if let Some(ps) = self.pods.get_mut(id) {
            for g in &gone {
                ps.instances.remove(g);
                changed = true;
            }
        }
        let Some(ps) = self.pods.get(id) else {
            return;
        };
        if ps.deleted {
            let live: Vec<String> = ps.live().map(|i| i.id.clone()).collect();
            for i in &live {
                self.decommission_pod_instance(id, i);
            }
            if self.pods.get(id).is_some_and(|p| p.instances.is_empty()) {
                if let Some(ps) = self.pods.remove(id) {
                    if let Some(d) = &ps.deployment {
                        self.event(
                            "deployment_success",
                            now,
                            json!({"id": d.id, "plan": pod_plan_json(id, d)}),
                        );
                    }
                }
                self.out.pods.remove(id);
                self.out.forget_pods.insert(id.to_owned());
            }
            return;
        }
        let n = ps.pod.scaling.instances as usize;
        let version = ps.pod.version.clone().unwrap_or_default();
        let min_healthy = (n as f64 * ps.pod.scheduling.upgrade.minimum_health_capacity).ceil();
        let min_healthy = (min_healthy.max(0.0) as usize).min(n);
        let max_total =
            (n as f64 * (1.0 + ps.pod.scheduling.upgrade.maximum_over_capacity)).floor() as usize;
        let max_total = max_total.max(n);
        // Instances whose container ended while they should run.
        let failed: Vec<String> = ps
            .live()
            .filter(|i| i.failed())
            .map(|i| i.id.clone())
            .collect();
        let mut kill: Vec<String> = failed.clone();
        let is_new = |i: &&PodInstance| i.version == version;
        let mut new: Vec<&PodInstance> = ps
            .live()
            .filter(|i| !failed.contains(&i.id))
            .filter(is_new)
            .collect();
        let mut old: Vec<&PodInstance> = ps
            .live()
            .filter(|i| !failed.contains(&i.id))
            .filter(|i| !is_new(i))
            .collect();
        // Not stable first, then the newest: those are given up first.
        let order = |a: &&PodInstance, b: &&PodInstance| {
            a.stable()
                .cmp(&b.stable())
                .then(b.created.total_cmp(&a.created))
        };
        new.sort_by(order);
        old.sort_by(order);
        let surplus = new.len().saturating_sub(n);
        kill.extend(new.drain(..surplus).map(|i| i.id.clone()));
        let mut healthy = new.iter().chain(old.iter()).filter(|i| i.stable()).count();
        let mut old_left = Vec::new();
        for o in old {
            if !o.stable() {
                kill.push(o.id.clone());
            } else if healthy > min_healthy {
                healthy -= 1;
                kill.push(o.id.clone());
            } else {
                old_left.push(o);
            }
        }
        let total = new.len() + old_left.len();
        let mut start = n
            .saturating_sub(new.len())
            .min(max_total.saturating_sub(total));
        let settled = new.iter().all(|i| i.stable())
            && !ps
                .instances
                .values()
                .any(|i| i.goal == Goal::Decommissioned);
        if start == 0 && settled && new.len() < n && !old_left.is_empty() && total >= max_total {
            // No room to start nor to stop (`maximumOverCapacity` 0 with every instance
            // needed healthy): one old instance goes first, then the next once its
            // replacement is stable.
            if let Some(o) = old_left.pop() {
                kill.push(o.id.clone());
                start = 0;
            }
        }
        let finished = ps.deployment.is_some()
            && new.len() == n
            && new.iter().all(|i| i.stable())
            && old_left.is_empty()
            && kill.is_empty()
            && !ps
                .instances
                .values()
                .any(|i| i.goal == Goal::Decommissioned);
        let specs: Vec<(String, bool)> = ps
            .pod
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.health_check.is_some()))
            .collect();
        let pod_id = ps.pod.id.clone();
        let failed_count = failed.len();
        for k in &kill {
            self.decommission_pod_instance(id, k);
            changed = true;
        }
        if failed_count > 0 {
            self.pod_backoff(id, now);
        }
        for _ in 0..start {
            let uuid = self.new_uuid();
            let inst = instance_id(&pod_id, &uuid);
            let containers = specs
                .iter()
                .map(|(name, has_check)| PodContainerRecord {
                    name: name.clone(),
                    task_id: task_id(&inst, name),
                    state: None,
                    healthy: None,
                    has_check: *has_check,
                    since: now,
                    ports: BTreeMap::new(),
                    message: None,
                })
                .collect();
            if let Some(ps) = self.pods.get_mut(id) {
                ps.instances.insert(
                    inst.clone(),
                    PodInstance {
                        id: inst,
                        version: version.clone(),
                        goal: Goal::Running,
                        agent: None,
                        launched: false,
                        created: now,
                        containers,
                    },
                );
            }
            self.out.revive = true;
            changed = true;
        }
        if finished {
            if let Some(d) = self.pods.get_mut(id).and_then(|p| p.deployment.take()) {
                self.event(
                    "deployment_success",
                    now,
                    json!({"id": d.id, "plan": pod_plan_json(id, &d)}),
                );
                if let Some(p) = self.pods.get_mut(id) {
                    p.status_since = now;
                }
                changed = true;
            }
        }
        if changed {
            self.persist_pod(id);
        }
    }

    fn pod_backoff(&mut self, id: &str, now: f64) {
        let Some(ps) = self.pods.get_mut(id) else {
            return;
        };
        let b = &ps.pod.scheduling.backoff;
        let delay = if ps.backoff.delay <= 0.0 {
            b.backoff
        } else {
            (ps.backoff.delay * b.backoff_factor).min(b.max_launch_delay)
        };
        ps.backoff = Backoff {
            delay,
            until: now + delay,
            last_failure: now,
        };
    }

    /// Time-driven pod work (deployments progress, backoff ends).
    pub fn pods_tick(&mut self, now: f64) {
        let ids: Vec<String> = self.pods.keys().cloned().collect();
        for id in ids {
            self.pod_converge(&id, now);
        }
    }
}
