//! One pod instance as one Mesos task group (`LAUNCH_GROUP` under the DEFAULT executor).
//!
//! [`task_group`] checks that an offer holds the instance (the containers' resources plus the
//! executor's, and one host port per endpoint: fixed ones as given, `hostPort: 0` ones from the
//! offer's ranges) and builds the executor and one task per container:
//!
//! - ids: instance `<safe-pod-id>.instance-<uuid>`, executor `instance-<instance id>`, task
//!   `<instance id>.<container name>` (Marathon's scheme, so status updates map back);
//! - environment: the pod's, then the container's, then `ENDPOINT_<NAME>` per endpoint of the
//!   pod (every container sees every endpoint, all share the host network), `MARATHON_APP_ID`,
//!   `MARATHON_APP_VERSION`, `MARATHON_CONTAINER_ID`;
//! - pod volumes: each mount is a `SANDBOX_PATH`/`PARENT` volume on the task's container, so
//!   the agent links `<mountPath>` in the task's sandbox to `volumes/<name>` of the group's
//!   shared sandbox — the same directory for every container of the instance;
//! - health checks: Mesos `HealthCheck` JSON on the endpoint's host port.

use std::collections::BTreeMap;

use meseta_api::container::{ContainerInfo, Volume, VolumeMode};
use meseta_api::executor::ExecutorInfo;
use meseta_api::marathon::pod::{EnvValue, PodCommand, PodContainer, PodDefinition, PodResources};
use meseta_api::scheduler::{
    CommandInfo, CommandUri, DurationInfo, EnvVariable, Environment, IdValue, KillPolicy, Label,
    Labels, TaskInfo,
};
use meseta_types::{Range, Ranges, Resource, Resources, Value as ResValue};
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::path::safe_path;

/// Why an offer cannot hold one instance (named like Marathon's offer reject reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Shortfall {
    /// Not enough CPU.
    #[error("InsufficientCpus")]
    Cpus,
    /// Not enough memory.
    #[error("InsufficientMemory")]
    Memory,
    /// Not enough disk.
    #[error("InsufficientDisk")]
    Disk,
    /// Not enough GPUs.
    #[error("InsufficientGpus")]
    Gpus,
    /// A fixed host port is not offered, or too few ports are.
    #[error("InsufficientPorts")]
    Ports,
    /// An amount cannot be expressed as a Mesos resource.
    #[error("UnrepresentableResources")]
    Unrepresentable,
}

/// What to send for one instance: the `LAUNCH_GROUP` parts and the ports it got.
#[derive(Debug, Clone, PartialEq)]
pub struct PodLaunch {
    /// The DEFAULT executor of the instance.
    pub executor: ExecutorInfo,
    /// One task per container, in the pod's order.
    pub tasks: Vec<TaskInfo>,
    /// Host port of each endpoint, by endpoint name.
    pub ports: BTreeMap<String, u64>,
}

/// The instance id Marathon gives a new instance of `pod_id` (`uuid` as 32 hex digits or a
/// hyphenated uuid).
pub fn instance_id(pod_id: &str, uuid: &str) -> String {
    format!("{}.instance-{uuid}", safe_path(pod_id))
}

/// The task id of container `name` of instance `instance`.
pub fn task_id(instance: &str, name: &str) -> String {
    format!("{instance}.{name}")
}

/// The instance and container of a task id (`None` when it is not a pod task).
pub fn split_task_id(task_id: &str) -> Option<(&str, &str)> {
    let (instance, name) = task_id.rsplit_once('.')?;
    instance.contains(".instance-").then_some((instance, name))
}

fn scalars(pairs: [(&str, f64); 4]) -> Result<Resources, Shortfall> {
    let mut r = Resources::new();
    for (name, v) in pairs {
        if v > 0.0 {
            let res = Resource::scalar(name, v).map_err(|_| Shortfall::Unrepresentable)?;
            r.push(res).map_err(|_| Shortfall::Unrepresentable)?;
        }
    }
    Ok(r)
}

/// The Mesos scalars of a pod's (or container's, or executor's) `resources`.
fn resources_of(r: &PodResources) -> Result<Resources, Shortfall> {
    scalars([
        ("cpus", r.cpus),
        ("mem", r.mem),
        ("disk", r.disk),
        ("gpus", f64::from(r.gpus)),
    ])
}

fn container_scalars(c: &PodContainer) -> Result<Resources, Shortfall> {
    resources_of(&c.resources)
}

/// cpus/mem/disk/gpus of one whole instance (executor included).
pub fn instance_resources(pod: &PodDefinition) -> Result<Resources, Shortfall> {
    let mut total = resources_of(&pod.executor_resources)?;
    for c in &pod.containers {
        total.add(&container_scalars(c)?);
    }
    Ok(total)
}

/// Host ports for every endpoint of the pod, in container then endpoint order, from `offered`
/// (fixed ports as given; 0 takes the lowest offered port no fixed one names).
fn host_ports(pod: &PodDefinition, offered: &Ranges) -> Result<Vec<(String, u64)>, Shortfall> {
    let wanted: Vec<(&str, u64)> = pod
        .containers
        .iter()
        .flat_map(|c| c.endpoints.iter())
        .map(|e| (e.name.as_str(), u64::from(e.host_port.unwrap_or(0))))
        .collect();
    let fixed: Vec<u64> = wanted.iter().map(|w| w.1).filter(|p| *p != 0).collect();
    if fixed.iter().any(|p| !offered.contains_value(*p)) {
        return Err(Shortfall::Ports);
    }
    let mut free = offered.values().filter(|p| !fixed.contains(p));
    wanted
        .into_iter()
        .map(|(name, p)| {
            let port = if p == 0 { free.next() } else { Some(p) };
            port.map(|p| (name.to_owned(), p)).ok_or(Shortfall::Ports)
        })
        .collect()
}

/// Checks that `offered` (one agent's offer) holds one instance and builds its task group.
pub fn task_group(
    pod: &PodDefinition,
    instance: &str,
    agent: &IdValue,
    offered: &Resources,
) -> Result<PodLaunch, Shortfall> {
    let need = instance_resources(pod)?;
    for (short, have, want) in [
        (Shortfall::Cpus, offered.cpus(), need.cpus()),
        (Shortfall::Memory, offered.mem(), need.mem()),
        (Shortfall::Disk, offered.disk(), need.disk()),
        (Shortfall::Gpus, offered.gpus(), need.gpus()),
    ] {
        if have + 1e-9 < want {
            return Err(short);
        }
    }
    let ports = host_ports(pod, &offered.ranges("ports"))?;
    let version = pod.version.clone().unwrap_or_default();
    let mut shared_env = vec![
        env("MARATHON_APP_ID", &pod.id),
        env("MARATHON_APP_VERSION", &version),
    ];
    for (name, port) in &ports {
        shared_env.push(env(&endpoint_var(name), &port.to_string()));
    }
    let executor = ExecutorInfo {
        executor_id: IdValue::new(format!("instance-{instance}")),
        kind: Some("DEFAULT".to_owned()),
        name: Some(format!("pod {}", pod.id)),
        resources: resources_of(&pod.executor_resources)?,
        labels: labels(&pod.labels).map(|l| json!(l)),
        ..ExecutorInfo::default()
    };
    let mut tasks = Vec::with_capacity(pod.containers.len());
    for c in &pod.containers {
        let mut resources = container_scalars(c)?;
        let mine: Vec<u64> = c
            .endpoints
            .iter()
            .filter_map(|e| ports.iter().find(|(n, _)| *n == e.name).map(|p| p.1))
            .collect();
        if !mine.is_empty() {
            let r = Ranges::new(mine.iter().map(|&p| Range::new(p, p)).collect());
            resources
                .push(Resource::new("ports", "*", ResValue::Ranges(r)))
                .map_err(|_| Shortfall::Unrepresentable)?;
        }
        let tid = task_id(instance, &c.name);
        let mut vars = pod_env(&pod.environment);
        vars.extend(pod_env(&c.environment));
        vars.extend(shared_env.iter().cloned());
        vars.push(env("MARATHON_CONTAINER_ID", &tid));
        let mut command = command_info(c.exec.as_ref().map(|e| &e.command));
        command.environment = Some(Environment { variables: vars });
        command.user = c.user.clone().or_else(|| pod.user.clone());
        command.uris = (!c.artifacts.is_empty()).then(|| {
            c.artifacts
                .iter()
                .map(|a| CommandUri {
                    value: a.uri.clone(),
                    executable: Some(a.executable),
                    extract: Some(a.extract),
                    cache: Some(a.cache),
                    output_file: a.dest_path.clone(),
                })
                .collect()
        });
        let volumes: Vec<Volume> = c
            .volume_mounts
            .iter()
            .map(|m| Volume {
                container_path: m.mount_path.clone(),
                host_path: None,
                mode: Some(if m.read_only == Some(true) {
                    VolumeMode::Ro
                } else {
                    VolumeMode::Rw
                }),
                extra: sandbox_source(&m.name),
            })
            .collect();
        let port_of = |name: &str| ports.iter().find(|(n, _)| n == name).map(|p| p.1);
        tasks.push(TaskInfo {
            name: c.name.clone(),
            task_id: IdValue::new(tid),
            agent_id: Some(agent.clone()),
            resources,
            command: Some(command),
            container: (!volumes.is_empty()).then(|| ContainerInfo {
                volumes,
                ..ContainerInfo::default()
            }),
            labels: labels(&c.labels),
            health_check: c
                .health_check
                .as_ref()
                .and_then(|h| health_check(h, &port_of)),
            kill_policy: c
                .lifecycle
                .as_ref()
                .and_then(|l| l.kill_grace_period_seconds)
                .map(|s| KillPolicy {
                    grace_period: Some(DurationInfo {
                        nanoseconds: (s * 1e9) as i64,
                    }),
                }),
            executor: None,
            data: None,
        });
    }
    Ok(PodLaunch {
        executor,
        tasks,
        ports: ports.into_iter().collect(),
    })
}

/// `ENDPOINT_<NAME>`: upper case, `-` and `.` as `_`.
pub fn endpoint_var(name: &str) -> String {
    format!("ENDPOINT_{}", name.to_uppercase().replace(['-', '.'], "_"))
}

fn env(name: &str, value: &str) -> EnvVariable {
    EnvVariable {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// Literal variables (secret references never reach here: validation refuses them).
fn pod_env(vars: &BTreeMap<String, EnvValue>) -> Vec<EnvVariable> {
    vars.iter()
        .filter_map(|(k, v)| match v {
            EnvValue::Value(s) => Some(env(k, s)),
            EnvValue::Secret { .. } => None,
        })
        .collect()
}

fn command_info(cmd: Option<&PodCommand>) -> CommandInfo {
    match cmd {
        Some(PodCommand::Shell { shell }) => CommandInfo::shell(shell.clone()),
        Some(PodCommand::Argv { argv }) => CommandInfo {
            shell: false,
            value: argv.first().cloned(),
            arguments: Some(argv.clone()),
            ..CommandInfo::default()
        },
        None => CommandInfo::shell(String::new()),
    }
}

fn labels(l: &BTreeMap<String, String>) -> Option<Labels> {
    (!l.is_empty()).then(|| Labels {
        labels: l
            .iter()
            .map(|(k, v)| Label {
                key: k.clone(),
                value: Some(v.clone()),
            })
            .collect(),
    })
}

/// `source` of a pod volume mount: the group's shared sandbox, `volumes/<name>`.
fn sandbox_source(volume: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "source".into(),
        json!({"type": "SANDBOX_PATH",
               "sandbox_path": {"type": "PARENT", "path": format!("volumes/{volume}")}}),
    );
    m
}

fn health_check(
    h: &meseta_api::marathon::pod::PodHealthCheck,
    port_of: &dyn Fn(&str) -> Option<u64>,
) -> Option<Value> {
    let mut v = json!({
        "delay_seconds": h.delay_seconds,
        "interval_seconds": h.interval_seconds.max(1),
        "timeout_seconds": h.timeout_seconds.max(1),
        "consecutive_failures": h.max_consecutive_failures,
        "grace_period_seconds": h.grace_period_seconds,
    });
    let m = v.as_object_mut()?;
    if let Some(http) = &h.http {
        m.insert("type".into(), json!("HTTP"));
        m.insert(
            "http".into(),
            json!({"scheme": http.scheme.to_lowercase(), "port": port_of(&http.endpoint)?,
                   "path": http.path}),
        );
    } else if let Some(tcp) = &h.tcp {
        m.insert("type".into(), json!("TCP"));
        m.insert("tcp".into(), json!({"port": port_of(&tcp.endpoint)?}));
    } else if let Some(exec) = &h.exec {
        m.insert("type".into(), json!("COMMAND"));
        m.insert(
            "command".into(),
            serde_json::to_value(command_info(Some(&exec.command))).ok()?,
        );
    } else {
        return None;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::pod_from_body;

    fn pod() -> PodDefinition {
        pod_from_body(&json!({
            "id": "/shop/web",
            "environment": {"A": "pod"},
            "containers": [
                {"name": "writer", "resources": {"cpus": 0.2, "mem": 32},
                 "exec": {"command": {"shell": "echo hi > data/index.html"}},
                 "environment": {"A": "container"},
                 "volumeMounts": [{"name": "shared", "mountPath": "data"}]},
                {"name": "server", "resources": {"cpus": 0.3, "mem": 64, "disk": 5},
                 "exec": {"command": {"argv": ["python3", "-m", "http.server"]}},
                 "endpoints": [{"name": "http-main", "hostPort": 0}, {"name": "admin", "hostPort": 31005}],
                 "healthCheck": {"http": {"endpoint": "http-main", "path": "/index.html"},
                                 "intervalSeconds": 2, "timeoutSeconds": 1},
                 "volumeMounts": [{"name": "shared", "mountPath": "data", "readOnly": true}]}
            ],
            "volumes": [{"name": "shared"}]
        }))
        .expect("valid pod")
    }

    fn offer(spec: &str) -> Resources {
        Resources::parse(spec).expect("resources")
    }

    fn var<'a>(t: &'a TaskInfo, name: &str) -> Vec<&'a str> {
        t.command
            .as_ref()
            .and_then(|c| c.environment.as_ref())
            .map(|e| {
                e.variables
                    .iter()
                    .filter(|v| v.name == name)
                    .map(|v| v.value.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn one_task_per_container_under_one_default_executor() {
        let inst = instance_id("/shop/web", "abc");
        let agent = IdValue::new("a1");
        let l = task_group(
            &pod(),
            &inst,
            &agent,
            &offer("cpus:2;mem:512;disk:100;ports:[31000-31010]"),
        )
        .expect("fits");
        assert!(l.executor.is_default());
        l.executor.validate().expect("a valid executor");
        assert_eq!(
            l.executor.executor_id.as_str(),
            "instance-shop_web.instance-abc"
        );
        let ids: Vec<&str> = l.tasks.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "shop_web.instance-abc.writer",
                "shop_web.instance-abc.server"
            ]
        );
        assert_eq!(
            split_task_id(ids[1]),
            Some(("shop_web.instance-abc", "server"))
        );
        assert_eq!(split_task_id("plain-app.1234"), None);
        // The dynamic port avoids the fixed one; both containers see both endpoints.
        assert_eq!(l.ports.get("http-main"), Some(&31000));
        assert_eq!(l.ports.get("admin"), Some(&31005));
        for t in &l.tasks {
            assert_eq!(var(t, "ENDPOINT_HTTP_MAIN"), ["31000"]);
            assert_eq!(var(t, "MARATHON_APP_ID"), ["/shop/web"]);
        }
        // The container's variable comes after (so wins over) the pod's.
        assert_eq!(var(&l.tasks[0], "A"), ["pod", "container"]);
        assert_eq!(l.tasks[1].resources.ranges("ports").count(), 2);
        assert_eq!(l.tasks[0].resources.ranges("ports").count(), 0);
    }

    #[test]
    fn shared_volume_is_the_same_parent_sandbox_path_for_every_container() {
        let l = task_group(
            &pod(),
            "i",
            &IdValue::new("a"),
            &offer("cpus:2;mem:512;disk:100;ports:[31000-31010]"),
        )
        .expect("fits");
        let sources: Vec<&Value> = l
            .tasks
            .iter()
            .map(|t| &t.container.as_ref().expect("container").volumes[0].extra["source"])
            .collect();
        assert_eq!(sources[0], sources[1]);
        assert_eq!(sources[0]["sandbox_path"]["type"], "PARENT");
        let v = &l.tasks[1].container.as_ref().expect("container").volumes[0];
        assert_eq!(v.container_path, "data");
        assert_eq!(v.mode, Some(VolumeMode::Ro));
    }

    #[test]
    fn health_check_targets_the_endpoint_host_port() {
        let l = task_group(
            &pod(),
            "i",
            &IdValue::new("a"),
            &offer("cpus:2;mem:512;disk:100;ports:[31000-31010]"),
        )
        .expect("fits");
        let hc = l.tasks[1].health_check.as_ref().expect("health check");
        assert_eq!(hc["type"], "HTTP");
        assert_eq!(hc["http"]["port"], 31000);
        assert_eq!(hc["http"]["path"], "/index.html");
        assert_eq!(hc["interval_seconds"], 2);
        assert!(l.tasks[0].health_check.is_none());
    }

    #[test]
    fn an_offer_too_small_says_what_is_short() {
        let p = pod();
        let a = IdValue::new("a");
        // Containers 0.5 cpus + executor 0.1.
        let short = task_group(
            &p,
            "i",
            &a,
            &offer("cpus:0.55;mem:512;disk:100;ports:[31000-31010]"),
        );
        assert_eq!(short, Err(Shortfall::Cpus));
        let short = task_group(
            &p,
            "i",
            &a,
            &offer("cpus:1;mem:100;disk:100;ports:[31000-31010]"),
        );
        assert_eq!(short, Err(Shortfall::Memory));
        let short = task_group(
            &p,
            "i",
            &a,
            &offer("cpus:1;mem:512;disk:100;ports:[31000-31004]"),
        );
        assert_eq!(
            short,
            Err(Shortfall::Ports),
            "the fixed port is not offered"
        );
        let short = task_group(
            &p,
            "i",
            &a,
            &offer("cpus:1;mem:512;disk:100;ports:[31005-31005]"),
        );
        assert_eq!(short, Err(Shortfall::Ports), "no port left for hostPort 0");
        let need = instance_resources(&p).expect("resources");
        assert!((need.cpus() - 0.6).abs() < 1e-9);
        assert!((need.mem() - 128.0).abs() < 1e-9);
    }
}
