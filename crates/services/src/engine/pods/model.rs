//! The pod records the engine keeps and persists: one per pod with its versions, instances
//! (each container's last state, health and host ports) and running deployment.

use std::collections::BTreeMap;

use meseta_api::executor::ExecutorInfo;
use meseta_api::marathon::pod::PodDefinition;
use meseta_api::scheduler::{IdValue, TaskInfo};
use meseta_types::TaskState;
use serde::{Deserialize, Serialize};

use super::super::model::{marathon_ts, Backoff, Goal};
use super::super::requests::DeploymentResult;
use super::super::KillOrder;
use crate::pod::status::{ContainerState, InstanceState};

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
    pub(crate) fn active(&self) -> bool {
        !self.state.is_some_and(|s| s.is_terminal())
    }

    pub(crate) fn healthy_enough(&self) -> bool {
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
    pub(crate) fn failed(&self) -> bool {
        self.containers
            .iter()
            .any(|c| c.state.is_some_and(|s| s.is_terminal()))
    }

    /// Launched and some container not terminal yet.
    pub fn alive(&self) -> bool {
        self.launched && self.containers.iter().any(PodContainerRecord::active)
    }

    pub(crate) fn kills(&self) -> Vec<KillOrder> {
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

    pub(crate) fn view(&self) -> InstanceState {
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
    pub(crate) fn live(&self) -> impl Iterator<Item = &PodInstance> {
        self.instances.values().filter(|i| i.goal == Goal::Running)
    }

    pub(crate) fn waiting(&self) -> impl Iterator<Item = &PodInstance> {
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
