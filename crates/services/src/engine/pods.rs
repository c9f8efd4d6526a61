//! Marathon pods in the engine: each pod's instances (one task group each), placed on offers
//! as `LAUNCH_GROUP`s, their state from the status updates of their container tasks, and the
//! pod's deployment (start, scale, restart, upgrade, stop).
//!
//! Like apps, every decision is recomputed from the instance table ([`Engine::pod_converge`]):
//!
//! - an instance whose container ended while it should run is decommissioned (its other
//!   containers killed) and the pod backs off (`scheduling.backoff`); a new instance replaces it;
//! - instances of another version are replaced rolling: new ones are started while the pod
//!   stays within `instances × (1 + maximumOverCapacity)`, old ones are killed while at least
//!   `⌈instances × minimumHealthCapacity⌉` instances stay stable (all containers running, and
//!   healthy where they have a health check); with no room either way one old instance goes
//!   first, as Marathon does;
//! - instances beyond `scaling.instances` are decommissioned (not yet stable ones first);
//! - a deployment ends once exactly `scaling.instances` instances of the pod's version are
//!   stable and nothing else of the pod is alive;
//! - a removed pod kills every instance and is forgotten once they all ended.
//!
//! One record per pod (definition, versions, instances, deployment) is persisted.

use std::collections::BTreeMap;

use meseta_api::executor::ExecutorInfo;
use meseta_api::marathon::pod::PodDefinition;
use meseta_api::marathon::{Constraint, ConstraintOperator};
use meseta_api::scheduler::{IdValue, Offer, TaskInfo, TaskStatus};
use meseta_types::{Resources, TaskState};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::model::{marathon_ts, Backoff, Goal};
use super::place::AgentInfo;
use super::requests::{DeploymentResult, EngineError};
use super::{Engine, KillOrder, MAX_VERSIONS};
use crate::constraints::{AgentView, CompiledConstraints};
use crate::pod::group::{instance_id, split_task_id, task_group, task_id};
use crate::pod::status::{self, ContainerState, InstanceState};

/// One container of one pod instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodContainerRecord {
    /// Container name.
    pub name: String,
    /// Its task id.
    pub task_id: String,
    /// Last reported state (`None`: nothing reported yet).
    pub state: Option<TaskState>,
    /// Last health result.
    pub healthy: Option<bool>,
    /// The container has a health check (then it is healthy only once reported so).
    pub has_check: bool,
    /// When `state` was entered (Unix seconds).
    pub since: f64,
    /// Host port of each of its endpoints.
    pub ports: BTreeMap<String, u64>,
    /// Last status message.
    pub message: Option<String>,
}

impl PodContainerRecord {
    fn active(&self) -> bool {
        !self.state.is_some_and(|s| s.is_terminal())
    }

    fn healthy_enough(&self) -> bool {
        self.state == Some(TaskState::Running) && (!self.has_check || self.healthy == Some(true))
    }
}

/// One instance of a pod (one task group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodInstance {
    /// Instance id (`<safe pod id>.instance-<uuid>`).
    pub id: String,
    /// Version of the pod it runs.
    pub version: String,
    /// Keep running, or kill and forget.
    pub goal: Goal,
    /// Agent id and hostname, once placed.
    pub agent: Option<(String, String)>,
    /// Sent to an agent.
    pub launched: bool,
    /// Created (Unix seconds).
    pub created: f64,
    /// Its containers, in the pod's order.
    pub containers: Vec<PodContainerRecord>,
}

impl PodInstance {
    /// Every container runs (and is healthy where checked).
    pub fn stable(&self) -> bool {
        self.goal == Goal::Running && self.containers.iter().all(|c| c.healthy_enough())
    }

    /// Some container ended.
    fn failed(&self) -> bool {
        self.containers
            .iter()
            .any(|c| c.state.is_some_and(|s| s.is_terminal()))
    }

    /// Launched and some container not terminal yet.
    pub fn alive(&self) -> bool {
        self.launched && self.containers.iter().any(PodContainerRecord::active)
    }

    fn kills(&self) -> Vec<KillOrder> {
        if !self.launched {
            return Vec::new();
        }
        self.containers
            .iter()
            .filter(|c| c.active())
            .map(|c| KillOrder {
                task_id: c.task_id.clone(),
                agent_id: self.agent.as_ref().map(|a| a.0.clone()),
            })
            .collect()
    }

    fn view(&self) -> InstanceState {
        InstanceState {
            id: self.id.clone(),
            agent: self.agent.clone(),
            version: self.version.clone(),
            since: marathon_ts(self.created),
            containers: self
                .containers
                .iter()
                .map(|c| ContainerState {
                    name: c.name.clone(),
                    task_id: c.task_id.clone(),
                    state: c.state,
                    // A checked container is unhealthy until its first healthy report.
                    healthy: if c.has_check {
                        Some(c.healthy == Some(true))
                    } else {
                        c.healthy
                    },
                    since: marathon_ts(c.since),
                    ports: c.ports.clone(),
                    message: c.message.clone(),
                })
                .collect(),
        }
    }
}

/// A pod's running deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodDeployment {
    /// UUID.
    pub id: String,
    /// Version of the change.
    pub version: String,
    /// `StartPod`, `ScalePod`, `RestartPod` or `StopPod`.
    pub action: String,
    /// The definition before (None: the pod did not exist), for rollback.
    pub original: Option<PodDefinition>,
}

/// One pod and everything the engine knows about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodState {
    /// Target definition (`version` set).
    pub pod: PodDefinition,
    /// Being removed.
    #[serde(default)]
    pub deleted: bool,
    /// Earlier definitions by version (bounded).
    #[serde(default)]
    pub versions: BTreeMap<String, PodDefinition>,
    /// Launch backoff.
    #[serde(default)]
    pub backoff: Backoff,
    /// When the pod's status last changed.
    pub status_since: f64,
    /// Instances by id.
    #[serde(default)]
    pub instances: BTreeMap<String, PodInstance>,
    /// The running deployment.
    pub deployment: Option<PodDeployment>,
}

impl PodState {
    fn live(&self) -> impl Iterator<Item = &PodInstance> {
        self.instances.values().filter(|i| i.goal == Goal::Running)
    }

    fn waiting(&self) -> impl Iterator<Item = &PodInstance> {
        self.live().filter(|i| !i.launched)
    }

    /// The definition an instance runs.
    pub fn definition(&self, version: &str) -> &PodDefinition {
        if self.pod.version.as_deref() == Some(version) {
            &self.pod
        } else {
            self.versions.get(version).unwrap_or(&self.pod)
        }
    }
}

/// A task group to launch: ACCEPT `offer_id` with one LAUNCH_GROUP.
#[derive(Debug, Clone, PartialEq)]
pub struct PodLaunchOrder {
    /// The offer.
    pub offer_id: IdValue,
    /// The instance's DEFAULT executor.
    pub executor: ExecutorInfo,
    /// One task per container.
    pub tasks: Vec<TaskInfo>,
}

/// What a pod create or update did.
#[derive(Debug, Clone, PartialEq)]
pub struct PodChange {
    /// The stored definition (version set).
    pub pod: PodDefinition,
    /// The deployment carrying it out.
    pub result: DeploymentResult,
    /// The pod did not exist before.
    pub created: bool,
}

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
    /// Pods restored from the store (call after [`Engine::restore`]).
    pub fn with_pods(mut self, pods: Vec<PodState>) -> Engine {
        for p in pods {
            self.pods.insert(p.pod.id.clone(), p);
        }
        self
    }

    /// Visible pods (not being removed), by id.
    pub fn pods(&self) -> impl Iterator<Item = &PodState> {
        self.pods.values().filter(|p| !p.deleted)
    }

    /// One visible pod.
    pub fn pod(&self, id: &str) -> Option<&PodState> {
        self.pods.get(id).filter(|p| !p.deleted)
    }

    /// Any pod record, removed ones included (for persistence).
    pub fn pod_record(&self, id: &str) -> Option<&PodState> {
        self.pods.get(id)
    }

    /// Running pod deployments.
    pub fn pod_deployments(&self) -> impl Iterator<Item = (&str, &PodDeployment)> {
        self.pods
            .values()
            .filter_map(|p| p.deployment.as_ref().map(|d| (p.pod.id.as_str(), d)))
    }

    fn persist_pod(&mut self, id: &str) {
        self.out.forget_pods.remove(id);
        self.out.pods.insert(id.to_owned());
    }

    /// Create (`create_only`: refuse an existing pod) or replace pod `def` (validated,
    /// canonical). A running deployment of the pod refuses the change unless `force`. A
    /// change of `scaling.instances` alone scales (instances keep their version); any other
    /// replacement, the same definition included, is a new version that restarts every
    /// instance rolling (as Marathon does for a `PUT`).
    pub fn put_pod(
        &mut self,
        def: PodDefinition,
        create_only: bool,
        force: bool,
        now: f64,
    ) -> Result<PodChange, EngineError> {
        let id = def.id.clone();
        if self.app(&id).is_some() {
            return Err(EngineError::Conflict(format!(
                "An app with id [{id}] already exists."
            )));
        }
        if self.pods.get(&id).is_some_and(|p| p.deleted) {
            return Err(EngineError::Locked(
                self.pods[&id]
                    .deployment
                    .iter()
                    .map(|d| d.id.clone())
                    .collect(),
            ));
        }
        let old = self.pod(&id).map(|p| p.pod.clone());
        if create_only && old.is_some() {
            return Err(EngineError::Conflict(format!(
                "A pod with id [{id}] already exists."
            )));
        }
        if let Some(d) = self.pods.get(&id).and_then(|p| p.deployment.as_ref()) {
            if !force {
                return Err(EngineError::Locked(vec![d.id.clone()]));
            }
        }
        let version = self.new_version(now);
        let mut pod = def;
        let action = match &old {
            None => "StartPod",
            Some(o) => {
                let mut same = o.clone();
                same.version = None;
                same.scaling = pod.scaling.clone();
                if same == pod && o.scaling.instances != pod.scaling.instances {
                    // Only the instance count changed: instances keep their version.
                    "ScalePod"
                } else {
                    "RestartPod"
                }
            }
        };
        let keep_version = action == "ScalePod";
        pod.version = if keep_version {
            old.as_ref().and_then(|o| o.version.clone())
        } else {
            Some(version.clone())
        };
        let result = self.start_pod_deployment(&id, pod.clone(), action, old.clone(), now);
        Ok(PodChange {
            pod,
            result,
            created: old.is_none(),
        })
    }

    /// Install `pod` as the target and start its deployment (replacing a running one).
    fn start_pod_deployment(
        &mut self,
        id: &str,
        pod: PodDefinition,
        action: &str,
        original: Option<PodDefinition>,
        now: f64,
    ) -> DeploymentResult {
        let dep = PodDeployment {
            id: self.new_uuid(),
            version: self.new_version(now),
            action: action.to_owned(),
            original,
        };
        let result = DeploymentResult {
            version: pod.version.clone().unwrap_or_default(),
            deployment_id: dep.id.clone(),
        };
        let ps = self.pods.entry(id.to_owned()).or_insert_with(|| PodState {
            pod: pod.clone(),
            deleted: false,
            versions: BTreeMap::new(),
            backoff: Backoff::default(),
            status_since: now,
            instances: BTreeMap::new(),
            deployment: None,
        });
        if let Some(v) = ps.pod.version.clone() {
            ps.versions.insert(v, ps.pod.clone());
        }
        if let Some(v) = pod.version.clone() {
            ps.versions.insert(v, pod.clone());
        }
        while ps.versions.len() > MAX_VERSIONS {
            // Keep the versions instances still run.
            let used: Vec<&String> = ps.instances.values().map(|i| &i.version).collect();
            let Some(k) = ps.versions.keys().find(|k| !used.contains(k)).cloned() else {
                break;
            };
            ps.versions.remove(&k);
        }
        ps.pod = pod;
        ps.backoff = Backoff::default();
        ps.status_since = now;
        let replaced = ps.deployment.replace(dep.clone());
        if let Some(r) = replaced {
            self.event(
                "deployment_failed",
                now,
                json!({"id": r.id, "plan": pod_plan_json(id, &r)}),
            );
        }
        self.event(
            "deployment_info",
            now,
            json!({"plan": pod_plan_json(id, &dep),
                   "currentStep": {"actions": [{"action": dep.action, "pod": id}]}}),
        );
        self.persist_pod(id);
        self.pod_converge(id, now);
        self.out.revive = true;
        result
    }

    /// Scale pod `id` to `instances` (a `ScalePod` deployment).
    pub fn scale_pod(
        &mut self,
        id: &str,
        instances: u32,
        force: bool,
        now: f64,
    ) -> Result<PodChange, EngineError> {
        let mut def = self
            .pod(id)
            .ok_or_else(|| EngineError::UnknownPod(id.to_owned()))?
            .pod
            .clone();
        def.version = None;
        def.scaling.instances = instances;
        self.put_pod(def, false, force, now)
    }

    /// Restart every instance of pod `id` (a new version of the same definition).
    pub fn restart_pod(
        &mut self,
        id: &str,
        force: bool,
        now: f64,
    ) -> Result<PodChange, EngineError> {
        let ps = self
            .pod(id)
            .ok_or_else(|| EngineError::UnknownPod(id.to_owned()))?;
        if let Some(d) = &ps.deployment {
            if !force {
                return Err(EngineError::Locked(vec![d.id.clone()]));
            }
        }
        let old = ps.pod.clone();
        let mut pod = old.clone();
        pod.version = Some(self.new_version(now));
        let result = self.start_pod_deployment(id, pod.clone(), "RestartPod", Some(old), now);
        Ok(PodChange {
            pod,
            result,
            created: false,
        })
    }

    /// Remove pod `id`: its instances are killed, then it is forgotten.
    pub fn delete_pod(
        &mut self,
        id: &str,
        force: bool,
        now: f64,
    ) -> Result<DeploymentResult, EngineError> {
        let ps = self
            .pod(id)
            .ok_or_else(|| EngineError::UnknownPod(id.to_owned()))?;
        if let Some(d) = &ps.deployment {
            if !force {
                return Err(EngineError::Locked(vec![d.id.clone()]));
            }
        }
        let original = Some(ps.pod.clone());
        let pod = ps.pod.clone();
        let r = self.start_pod_deployment(id, pod, "StopPod", original, now);
        if let Some(ps) = self.pods.get_mut(id) {
            ps.deleted = true;
        }
        self.pod_converge(id, now);
        Ok(r)
    }

    /// Kill instances of pod `id` (they are replaced, the pod keeps its size); the status of
    /// each one killed. Unknown instance ids are skipped.
    pub fn kill_pod_instances(
        &mut self,
        id: &str,
        instances: &[String],
        now: f64,
    ) -> Result<Vec<Value>, EngineError> {
        let ps = self
            .pod(id)
            .ok_or_else(|| EngineError::UnknownPod(id.to_owned()))?;
        let found: Vec<String> = instances
            .iter()
            .filter(|i| {
                ps.instances
                    .get(*i)
                    .is_some_and(|x| x.goal == Goal::Running)
            })
            .cloned()
            .collect();
        let mut out = Vec::new();
        for inst in &found {
            self.decommission_pod_instance(id, inst);
            if let Some(ps) = self.pods.get(id) {
                if let Some(i) = ps.instances.get(inst) {
                    out.push(status::instance_json(
                        ps.definition(&i.version),
                        &i.view(),
                        &marathon_ts(now),
                    ));
                }
            }
        }
        self.pod_converge(id, now);
        Ok(out)
    }

    /// `PodStatus` of pod `id`.
    pub fn pod_status_json(&self, id: &str, now: f64) -> Option<Value> {
        let ps = self.pod(id)?;
        let instances: Vec<InstanceState> = ps.instances.values().map(PodInstance::view).collect();
        Some(status::pod_status_json(
            &ps.pod,
            &instances,
            ps.deployment.is_some(),
            ps.deleted,
            &marathon_ts(ps.status_since),
            &marathon_ts(now),
        ))
    }

    fn decommission_pod_instance(&mut self, pod: &str, inst: &str) {
        let Some(i) = self
            .pods
            .get_mut(pod)
            .and_then(|p| p.instances.get_mut(inst))
        else {
            return;
        };
        i.goal = Goal::Decommissioned;
        let kills = i.kills();
        self.out.kills.extend(kills);
        self.persist_pod(pod);
    }

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
    pub fn pod_offers(&mut self, offers: &[Offer], now: f64) -> Vec<PodLaunchOrder> {
        for o in offers {
            self.agents
                .insert(o.agent_id.as_str().to_owned(), AgentInfo::of(o));
        }
        let mut orders = Vec::new();
        let ids: Vec<String> = self
            .pods
            .values()
            .filter(|p| !p.deleted && p.backoff.until <= now && p.waiting().next().is_some())
            .map(|p| p.pod.id.clone())
            .collect();
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
                let offer = &offers[k];
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
        let condition = super::condition::condition_name(s.state);
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

    /// Time-driven pod work (deployments progress, backoff ends).
    pub fn pods_tick(&mut self, now: f64) {
        let ids: Vec<String> = self.pods.keys().cloned().collect();
        for id in ids {
            self.pod_converge(&id, now);
        }
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

    /// Cancel pod deployment `id`: `force` just stops it; otherwise the pod goes back to its
    /// definition before (a removed creation). None when no pod has that deployment.
    pub fn cancel_pod_deployment(
        &mut self,
        id: &str,
        force: bool,
        now: f64,
    ) -> Option<Option<DeploymentResult>> {
        let (pod_id, dep) = self
            .pod_deployments()
            .find(|(_, d)| d.id == id)
            .map(|(p, d)| (p.to_owned(), d.clone()))?;
        if force {
            if let Some(p) = self.pods.get_mut(&pod_id) {
                p.deployment = None;
            }
            self.persist_pod(&pod_id);
            return Some(None);
        }
        if let Some(p) = self.pods.get_mut(&pod_id) {
            p.deployment = None;
            p.deleted = false;
        }
        Some(match dep.original {
            None => self.delete_pod(&pod_id, true, now).ok(),
            Some(orig) => {
                let mut orig = orig;
                orig.version = Some(self.new_version(now));
                Some(self.start_pod_deployment(&pod_id, orig, "RestartPod", None, now))
            }
        })
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

/// A pod deployment as `/v2/deployments` shows it.
pub fn pod_deployment_json(pod: &str, d: &PodDeployment) -> Value {
    let action = json!({"action": d.action, "pod": pod});
    json!({
        "id": d.id,
        "version": d.version,
        "affectedApps": [],
        "affectedPods": [pod],
        "steps": [{"actions": [action.clone()]}],
        "currentActions": [{"action": d.action, "pod": pod, "readinessCheckResults": []}],
        "currentStep": 1,
        "totalSteps": 1,
    })
}

fn pod_plan_json(pod: &str, d: &PodDeployment) -> Value {
    json!({
        "id": d.id,
        "version": d.version,
        "original": {"id": "/", "apps": [], "groups": [], "pods": [], "dependencies": []},
        "target": {"id": "/", "apps": [], "groups": [], "pods": [], "dependencies": []},
        "steps": [{"actions": [{"action": d.action, "pod": pod}]}],
    })
}
