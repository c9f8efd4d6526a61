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
//!   first once the replacements so far are stable, as Marathon does;
//! - instances beyond `scaling.instances` are decommissioned (not yet stable ones first);
//! - a deployment ends once exactly `scaling.instances` instances of the pod's version are
//!   stable and nothing else of the pod is alive;
//! - a removed pod kills every instance and is forgotten once they all ended.
//!
//! One record per pod (definition, versions, instances, deployment) is persisted.
//!
//! - `mod.rs`: requests (create, replace, scale, restart, remove, kill, cancel) and status JSON
//! - `model.rs`: the records
//! - `converge.rs`: the convergence above
//! - `offers.rs`: placement on offers, container status updates, reconciliation

mod converge;
mod model;
mod offers;

use std::collections::BTreeMap;

use meseta_api::marathon::pod::PodDefinition;
use serde_json::{json, Value};

pub use model::{
    PodChange, PodContainerRecord, PodDeployment, PodInstance, PodLaunchOrder, PodState,
};

use super::model::{marathon_ts, Backoff, Goal};
use super::requests::{DeploymentResult, EngineError};
use super::{Engine, MAX_VERSIONS};
use crate::pod::status::{self, InstanceState};

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

    /// Pod `id` for a change: unknown → `UnknownPod`; held by a deployment → `Locked` unless
    /// `force`.
    fn pod_to_change(&self, id: &str, force: bool) -> Result<&PodState, EngineError> {
        let ps = self
            .pod(id)
            .ok_or_else(|| EngineError::UnknownPod(id.to_owned()))?;
        match &ps.deployment {
            Some(d) if !force => Err(EngineError::Locked(vec![d.id.clone()])),
            _ => Ok(ps),
        }
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
        let ps = self.pod_to_change(id, force)?;
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
        let ps = self.pod_to_change(id, force)?;
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

pub(super) fn pod_plan_json(pod: &str, d: &PodDeployment) -> Value {
    json!({
        "id": d.id,
        "version": d.version,
        "original": {"id": "/", "apps": [], "groups": [], "pods": [], "dependencies": []},
        "target": {"id": "/", "apps": [], "groups": [], "pods": [], "dependencies": []},
        "steps": [{"actions": [{"action": d.action, "pod": pod}]}],
    })
}
