//! Marathon `/v2/pods` pod definitions (Marathon 1.10 `PodDefinition`).
//!
//! A pod is a set of containers launched together on one agent as one Mesos task group, under
//! the DEFAULT executor, sharing the group's sandbox volumes and the host network. Unlike app
//! definitions, Marathon rejects a pod body with keys it does not know, so every struct here
//! denies unknown fields (the services crate turns such a failure into a 422 with Marathon's
//! `{"message","details"}` body). Defaults are the ones Marathon fills in, so a pod read back
//! from `GET /v2/pods/{id}` is complete.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A pod as sent by a client and as stored (`POST /v2/pods`, `PUT /v2/pods/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodDefinition {
    /// Path id (`/group/pod`).
    pub id: String,
    /// Pod labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Version (set by the server; ignored on input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// User the containers run as, unless a container says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Environment of every container.
    #[serde(default)]
    pub environment: BTreeMap<String, EnvValue>,
    /// The containers (at least one).
    pub containers: Vec<PodContainer>,
    /// Secrets referenced by `environment` (`{"secret": name}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Volumes the containers may mount.
    #[serde(default)]
    pub volumes: Vec<PodVolume>,
    /// Networks (only `host` is supported).
    #[serde(default = "host_networks")]
    pub networks: Vec<PodNetwork>,
    /// How many instances.
    #[serde(default)]
    pub scaling: PodScaling,
    /// Placement, upgrade and backoff policy.
    #[serde(default)]
    pub scheduling: PodScheduling,
    /// Resources of the executor itself (beside the containers').
    #[serde(default = "executor_resources")]
    pub executor_resources: PodResources,
}

/// A value of an environment map: a literal or a reference to a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvValue {
    /// `"KEY": "value"`.
    Value(String),
    /// `"KEY": {"secret": "secretName"}`.
    Secret {
        /// The name in the pod's `secrets`.
        secret: String,
    },
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// Secret store path.
    pub source: String,
}

/// One container of a pod (Marathon's `MesosContainer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodContainer {
    /// Name, unique in the pod; also the last part of the task id.
    pub name: String,
    /// What to run (none: the image's entrypoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<PodExec>,
    /// Resources of this container.
    pub resources: PodResources,
    /// Named ports.
    #[serde(default)]
    pub endpoints: Vec<PodEndpoint>,
    /// Container image (runs the command in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<PodImage>,
    /// Environment of this container (over the pod's).
    #[serde(default)]
    pub environment: BTreeMap<String, EnvValue>,
    /// User (over the pod's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<PodHealthCheck>,
    /// Pod volumes mounted into this container.
    #[serde(default)]
    pub volume_mounts: Vec<PodVolumeMount>,
    /// URIs fetched into the sandbox.
    #[serde(default)]
    pub artifacts: Vec<PodArtifact>,
    /// Container labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Kill grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<PodLifecycle>,
}

/// `exec` of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodExec {
    /// The command.
    pub command: PodCommand,
    /// Whether the command replaces the image's entrypoint.
    #[serde(default)]
    pub override_entrypoint: bool,
}

/// A command: `{"shell": "…"}` or `{"argv": […]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PodCommand {
    /// Run with `/bin/sh -c`.
    Shell {
        /// The shell line.
        shell: String,
    },
    /// Run directly.
    Argv {
        /// The argument vector.
        argv: Vec<String>,
    },
}

/// Resources of a container or of the executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodResources {
    /// CPU shares.
    #[serde(default = "default_cpus")]
    pub cpus: f64,
    /// Memory, MiB.
    #[serde(default = "default_mem")]
    pub mem: f64,
    /// Disk, MiB.
    #[serde(default)]
    pub disk: f64,
    /// GPUs.
    #[serde(default)]
    pub gpus: u32,
}

fn default_cpus() -> f64 {
    1.0
}

fn default_mem() -> f64 {
    128.0
}

/// Marathon's default executor resources.
fn executor_resources() -> PodResources {
    PodResources {
        cpus: 0.1,
        mem: 32.0,
        disk: 10.0,
        gpus: 0,
    }
}

/// A named port of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodEndpoint {
    /// Name, unique in the pod (health checks refer to it).
    pub name: String,
    /// Port inside the container (container networking only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<u32>,
    /// Host port: 0 takes one from the offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u32>,
    /// Protocols (`tcp`, `udp`).
    #[serde(default = "tcp")]
    pub protocol: Vec<String>,
    /// Endpoint labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn tcp() -> Vec<String> {
    vec!["tcp".to_owned()]
}

/// A container image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodImage {
    /// `DOCKER` or `APPC`.
    pub kind: String,
    /// Image reference.
    pub id: String,
    /// Always pull.
    #[serde(default)]
    pub force_pull: bool,
}

/// A container health check: exactly one of `http`, `tcp`, `exec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodHealthCheck {
    /// HTTP GET on an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// TCP connect to an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    /// A command in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecCheck>,
    /// Failures ignored this long after start.
    #[serde(default = "grace")]
    pub grace_period_seconds: u32,
    /// Seconds between checks.
    #[serde(default = "interval")]
    pub interval_seconds: u32,
    /// Failures in a row before the container is killed.
    #[serde(default = "failures")]
    pub max_consecutive_failures: u32,
    /// Seconds a check may take.
    #[serde(default = "timeout")]
    pub timeout_seconds: u32,
    /// Seconds before the first check.
    #[serde(default = "delay")]
    pub delay_seconds: u32,
}

fn grace() -> u32 {
    300
}
fn interval() -> u32 {
    60
}
fn failures() -> u32 {
    3
}
fn timeout() -> u32 {
    20
}
fn delay() -> u32 {
    15
}

/// HTTP health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// The endpoint's name.
    pub endpoint: String,
    /// Path (`/`).
    #[serde(default = "slash")]
    pub path: String,
    /// `HTTP` or `HTTPS`.
    #[serde(default = "http")]
    pub scheme: String,
}

fn slash() -> String {
    "/".to_owned()
}
fn http() -> String {
    "HTTP".to_owned()
}

/// TCP health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpCheck {
    /// The endpoint's name.
    pub endpoint: String,
}

/// Command health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecCheck {
    /// The command.
    pub command: PodCommand,
}

/// A pod volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodVolumeMount {
    /// The pod volume's name.
    pub name: String,
    /// Where it appears in the container (relative: under the container's sandbox).
    pub mount_path: String,
    /// Read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// A pod volume: ephemeral (in the group's sandbox) or a host path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodVolume {
    /// Name, unique in the pod.
    pub name: String,
    /// Host path (absent: an ephemeral directory shared by the pod's containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A URI fetched into a container's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodArtifact {
    /// The URI.
    pub uri: String,
    /// Extract archives.
    #[serde(default = "yes")]
    pub extract: bool,
    /// Mark executable.
    #[serde(default)]
    pub executable: bool,
    /// Use the fetcher cache.
    #[serde(default)]
    pub cache: bool,
    /// File name in the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_path: Option<String>,
}

fn yes() -> bool {
    true
}

/// Container lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodLifecycle {
    /// Seconds between SIGTERM and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_grace_period_seconds: Option<f64>,
}

/// A pod network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodNetwork {
    /// `host` (the only mode a pod of plain processes can have here).
    #[serde(default = "host")]
    pub mode: String,
    /// Network name (container mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Network labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn host() -> String {
    "host".to_owned()
}

fn host_networks() -> Vec<PodNetwork> {
    vec![PodNetwork {
        mode: host(),
        name: None,
        labels: BTreeMap::new(),
    }]
}

/// How many instances of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodScaling {
    /// `fixed` (the only kind).
    #[serde(default = "fixed")]
    pub kind: String,
    /// Instances wanted.
    #[serde(default = "one")]
    pub instances: u32,
    /// Upper bound on `instances`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
}

fn fixed() -> String {
    "fixed".to_owned()
}
fn one() -> u32 {
    1
}

impl Default for PodScaling {
    fn default() -> PodScaling {
        PodScaling {
            kind: fixed(),
            instances: one(),
            max_instances: None,
        }
    }
}

/// Scheduling policy of a pod.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodScheduling {
    /// Launch backoff.
    #[serde(default)]
    pub backoff: PodBackoff,
    /// Rolling upgrade bounds.
    #[serde(default)]
    pub upgrade: PodUpgrade,
    /// Where instances may go.
    #[serde(default)]
    pub placement: PodPlacement,
    /// Which instances go first when scaling down (`YOUNGEST_FIRST`, `OLDEST_FIRST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_selection: Option<String>,
}

/// Launch backoff of a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodBackoff {
    /// First delay, seconds.
    #[serde(default = "backoff")]
    pub backoff: f64,
    /// Growth factor.
    #[serde(default = "backoff_factor")]
    pub backoff_factor: f64,
    /// Largest delay, seconds.
    #[serde(default = "max_launch_delay")]
    pub max_launch_delay: f64,
}

fn backoff() -> f64 {
    1.0
}
fn backoff_factor() -> f64 {
    1.15
}
fn max_launch_delay() -> f64 {
    300.0
}

impl Default for PodBackoff {
    fn default() -> PodBackoff {
        PodBackoff {
            backoff: backoff(),
            backoff_factor: backoff_factor(),
            max_launch_delay: max_launch_delay(),
        }
    }
}

/// Rolling upgrade bounds, as fractions of `scaling.instances`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodUpgrade {
    /// Healthy instances kept during an upgrade.
    #[serde(default = "one_f")]
    pub minimum_health_capacity: f64,
    /// Extra instances allowed during an upgrade.
    #[serde(default = "one_f")]
    pub maximum_over_capacity: f64,
}

fn one_f() -> f64 {
    1.0
}

impl Default for PodUpgrade {
    fn default() -> PodUpgrade {
        PodUpgrade {
            minimum_health_capacity: 1.0,
            maximum_over_capacity: 1.0,
        }
    }
}

/// Placement of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodPlacement {
    /// Placement constraints.
    #[serde(default)]
    pub constraints: Vec<PodConstraint>,
    /// Roles whose resources instances may use.
    #[serde(default)]
    pub accepted_resource_roles: Vec<String>,
}

/// A pod placement constraint (`{"fieldName","operator","value"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodConstraint {
    /// `hostname` or an agent attribute.
    pub field_name: String,
    /// `UNIQUE`, `CLUSTER`, `GROUP_BY`, `LIKE`, `UNLIKE`, `MAX_PER`, `IS`.
    pub operator: String,
    /// The operator's argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn minimal_pod_gets_marathon_defaults() {
        let p: PodDefinition = serde_json::from_value(json!({
            "id": "/web",
            "containers": [{"name": "a", "resources": {"cpus": 0.1, "mem": 32}}]
        }))
        .expect("minimal pod");
        assert_eq!(p.scaling.instances, 1);
        assert_eq!(p.scaling.kind, "fixed");
        assert_eq!(p.networks[0].mode, "host");
        assert_eq!(p.scheduling.upgrade.minimum_health_capacity, 1.0);
        assert_eq!(p.containers[0].resources.disk, 0.0);
        assert_eq!(p.executor_resources.mem, 32.0);
    }

    #[test]
    fn unknown_keys_are_refused_at_every_level() {
        let top = json!({"id": "/p", "containers": [], "bogus": 1});
        assert!(serde_json::from_value::<PodDefinition>(top).is_err());
        let nested = json!({"id": "/p", "containers": [
            {"name": "a", "resources": {"cpus": 1, "mem": 1, "bogus": 2}}]});
        assert!(serde_json::from_value::<PodDefinition>(nested).is_err());
    }

    #[test]
    fn full_pod_round_trips() {
        let body = json!({
            "id": "/shop/web", "labels": {"a": "b"}, "user": "nobody",
            "environment": {"X": "1", "S": {"secret": "s1"}},
            "secrets": {"s1": {"source": "/db/password"}},
            "containers": [{
                "name": "srv",
                "exec": {"command": {"shell": "python3 -m http.server $ENDPOINT_HTTP"}},
                "resources": {"cpus": 0.1, "mem": 32, "disk": 0, "gpus": 0},
                "endpoints": [{"name": "http", "hostPort": 0, "protocol": ["tcp"]}],
                "healthCheck": {"http": {"endpoint": "http", "path": "/"}, "gracePeriodSeconds": 5},
                "volumeMounts": [{"name": "shared", "mountPath": "data"}],
                "lifecycle": {"killGracePeriodSeconds": 2.0}
            }],
            "volumes": [{"name": "shared"}],
            "networks": [{"mode": "host"}],
            "scaling": {"kind": "fixed", "instances": 2, "maxInstances": 4},
            "scheduling": {"upgrade": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0},
                "placement": {"constraints": [{"fieldName": "hostname", "operator": "UNIQUE"}]}}
        });
        let p: PodDefinition = serde_json::from_value(body).expect("full pod");
        assert_eq!(
            p.environment.get("S"),
            Some(&EnvValue::Secret {
                secret: "s1".into()
            })
        );
        let again: PodDefinition =
            serde_json::from_value(serde_json::to_value(&p).expect("ser")).expect("de");
        assert_eq!(p, again);
        let hc = p.containers[0].health_check.as_ref().expect("hc");
        assert_eq!(hc.interval_seconds, 60);
        assert_eq!(hc.http.as_ref().map(|h| h.scheme.as_str()), Some("HTTP"));
    }
}
