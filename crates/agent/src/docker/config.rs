//! The container configuration of a DOCKER task (pure): command, environment, labels, cgroup
//! limits, network and port bindings, binds and the `docker run` parameters meseta maps.
//!
//! Mesos semantics: with `shell: true` the entrypoint is overridden by `/bin/sh -c <value>`; with
//! `shell: false` the value (if any) and the arguments are the image's arguments (its entrypoint
//! stays); no command at all runs the image's own. The sandbox is bound at
//! [`CONTAINER_SANDBOX`] and `MESOS_SANDBOX` names it.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, PortBinding};
use meseta_api::agent::TaskSpec;
use meseta_api::container::{ContainerInfo, DockerNetwork, VolumeMode};

/// Where the task's sandbox appears inside its container.
pub(crate) const CONTAINER_SANDBOX: &str = "/mnt/mesos/sandbox";
/// CPU shares per cpu (as Mesos).
const SHARES_PER_CPU: f64 = 1024.0;
/// Smallest CPU shares the kernel accepts.
const MIN_SHARES: i64 = 2;
/// CFS period, µs.
const CFS_PERIOD_US: i64 = 100_000;
/// Smallest CFS quota, µs.
const MIN_CFS_QUOTA_US: i64 = 1_000;

/// Why a task cannot be turned into a container.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConfigError(pub String);

/// Everything [`create_body`] needs besides the task.
pub(crate) struct Context<'a> {
    /// The agent's id (label).
    pub agent_id: &'a str,
    /// The task's sandbox on the host.
    pub sandbox: &'a Path,
    /// The environment (as exec tasks get it, `MESOS_SANDBOX` pointing inside the container).
    pub env: Vec<(String, String)>,
    /// Whether the agent allows privileged containers (and added capabilities).
    pub allow_privileged: bool,
    /// The task user's uid and gid, which the container runs as (`None`: the task runs as
    /// root, allowed by `--allow-root`; the image's own user is kept).
    pub user: Option<(u32, u32)>,
    /// Whether the agent runs tasks as root (`--allow-root`): only then may a `user` parameter
    /// name a user the agent cannot check (a name inside the image) or uid 0.
    pub allow_root: bool,
    /// The task's persistent volumes: (directory on the host, path relative to the sandbox),
    /// bind-mounted read-write under the container's sandbox.
    pub volumes: Vec<(std::path::PathBuf, std::path::PathBuf)>,
}

/// The task's `ContainerInfo` when it runs through Docker.
pub(crate) fn docker_container(spec: &TaskSpec) -> Option<&ContainerInfo> {
    spec.container.as_ref().filter(|c| c.is_docker())
}

/// The image of a DOCKER task (empty when it has none).
pub(crate) fn image(spec: &TaskSpec) -> &str {
    docker_container(spec)
        .and_then(|c| c.docker.as_ref())
        .map(|d| d.image.as_str())
        .unwrap_or_default()
}

/// The container configuration of a DOCKER task.
pub(crate) fn create_body(
    spec: &TaskSpec,
    ctx: &Context<'_>,
) -> Result<ContainerCreateBody, ConfigError> {
    let c = docker_container(spec)
        .ok_or_else(|| ConfigError("the task has no DOCKER container".into()))?;
    c.validate().map_err(|e| ConfigError(e.to_string()))?;
    let d = c
        .docker
        .as_ref()
        .ok_or_else(|| ConfigError("container.docker is required".into()))?;
    if d.privileged && !ctx.allow_privileged {
        return Err(ConfigError(privileged_refused()));
    }
    let (entrypoint, cmd) = command(spec);
    let mut labels: HashMap<String, String> = HashMap::from([
        (super::LABEL_AGENT.to_string(), ctx.agent_id.to_string()),
        (super::LABEL_TASK.to_string(), spec.task_id.to_string()),
        (
            super::LABEL_FRAMEWORK.to_string(),
            spec.framework_id.to_string(),
        ),
    ]);
    let mut env: Vec<String> = ctx.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut host = host_config(spec, c, ctx)?;
    let (mut user, mut workdir, mut hostname) = (
        ctx.user.map(|(uid, gid)| format!("{uid}:{gid}")),
        None,
        None,
    );
    for p in &d.parameters {
        let v = p.value.clone();
        match p.key.trim_start_matches('-') {
            "label" | "l" => {
                let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
                // The agent's own labels cannot be overridden.
                if !k.starts_with("meseta.") {
                    labels.insert(k.to_string(), val.to_string());
                }
            }
            "env" | "e" => env.push(v),
            "user" | "u" => user = Some(parameter_user(&v, ctx.allow_root)?),
            "workdir" | "w" => workdir = Some(v),
            "hostname" | "h" => hostname = Some(v),
            "add-host" => host.extra_hosts.get_or_insert_with(Vec::new).push(v),
            "cap-add" if !ctx.allow_privileged => {
                return Err(ConfigError(format!(
                    "container.docker.parameters: cap-add {v:?} is a privilege: this agent does \
                     not add capabilities (start it with --docker-allow-privileged)"
                )))
            }
            "cap-add" => host.cap_add.get_or_insert_with(Vec::new).push(v),
            "cap-drop" => host.cap_drop.get_or_insert_with(Vec::new).push(v),
            "init" => host.init = Some(v != "false"),
            other => {
                return Err(ConfigError(format!(
                    "container.docker.parameters: {other:?} is not supported by this agent \
                     (supported: label, env, user, workdir, hostname, add-host, cap-add, \
                     cap-drop, init)"
                )))
            }
        }
    }
    let exposed: Vec<String> = port_bindings(c)
        .map(|b| b.keys().cloned().collect())
        .unwrap_or_default();
    Ok(ContainerCreateBody {
        image: Some(d.image.clone()),
        entrypoint,
        cmd,
        env: Some(env),
        labels: Some(labels),
        user,
        working_dir: workdir,
        hostname,
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        tty: Some(false),
        host_config: Some(host),
        ..ContainerCreateBody::default()
    })
}

/// The `user` docker parameter: a numeric uid (and gid) other than root, or, on an agent that
/// runs tasks as root, anything (a name is looked up inside the image, where the agent cannot
/// tell whether it is root).
fn parameter_user(v: &str, allow_root: bool) -> Result<String, ConfigError> {
    let v = v.trim();
    if allow_root {
        return Ok(v.to_string());
    }
    let (uid, gid) = v.split_once(':').unwrap_or((v, ""));
    let numeric = |s: &str| s.parse::<u32>().ok();
    match (numeric(uid), gid.is_empty() || numeric(gid).is_some()) {
        (Some(u), true) if u != 0 => Ok(v.to_string()),
        _ => Err(ConfigError(format!(
            "container.docker.parameters: user {v:?} is not allowed: this agent runs containers \
             as the task's user and takes only a numeric non-root uid[:gid] here (start it with \
             --allow-root to allow others)"
        ))),
    }
}

/// The message of a refused privileged container (names the agent flag).
pub(crate) fn privileged_refused() -> String {
    "container.docker.privileged: this agent does not run privileged containers \
     (start it with --docker-allow-privileged)"
        .to_string()
}

/// Entrypoint override and command, Mesos style.
fn command(spec: &TaskSpec) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let c = &spec.command;
    if c.shell {
        if c.value.trim().is_empty() {
            return (None, None);
        }
        return (
            Some(vec!["/bin/sh".into(), "-c".into()]),
            Some(vec![c.value.clone()]),
        );
    }
    let args: Vec<String> = (!c.value.is_empty())
        .then(|| c.value.clone())
        .into_iter()
        .chain(c.arguments.iter().cloned())
        .collect();
    (None, (!args.is_empty()).then_some(args))
}

/// Limits, network, ports, binds and privilege.
fn host_config(
    spec: &TaskSpec,
    c: &ContainerInfo,
    ctx: &Context<'_>,
) -> Result<HostConfig, ConfigError> {
    let limits = crate::tasks::limits(spec);
    let mem_bytes = i64::try_from(limits.mem_mib.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
    let shares = ((limits.cpus * SHARES_PER_CPU) as i64).max(MIN_SHARES);
    let quota = ((limits.cpus * CFS_PERIOD_US as f64) as i64).max(MIN_CFS_QUOTA_US);
    let d = c.docker.as_ref();
    let network = d.map(|d| d.network()).unwrap_or(DockerNetwork::Host);
    let network_mode = match network {
        DockerNetwork::Host => "host",
        DockerNetwork::Bridge => "bridge",
        DockerNetwork::None => "none",
        DockerNetwork::User => {
            return Err(ConfigError(
                "container.docker.network: USER networks are not supported by this agent \
                 (use HOST or BRIDGE)"
                    .into(),
            ))
        }
    };
    // Every published host port must be one of the task's `ports` resources.
    let task_ports = spec.resources.ranges("ports");
    for (i, m) in d
        .map(|d| d.port_mappings.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !task_ports.contains_value(u64::from(m.host_port)) {
            return Err(ConfigError(format!(
                "container.docker.port_mappings[{i}].host_port: {} is not among the task's \
                 ports resources ({task_ports})",
                m.host_port
            )));
        }
    }
    // The sandbox is a mount, not a bind string: its path holds the task id, which may contain
    // ':' (Chronos run ids do), the bind string's separator.
    let sandbox = Mount {
        target: Some(CONTAINER_SANDBOX.to_string()),
        source: Some(ctx.sandbox.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(false),
        ..Mount::default()
    };
    let mut binds = Vec::new();
    for (dir, rel) in &ctx.volumes {
        let bind = format!("{}:{CONTAINER_SANDBOX}/{}:rw", dir.display(), rel.display());
        if bind.matches(':').count() != 2 {
            return Err(ConfigError(format!(
                "persistent volume {}: its paths must not contain ':'",
                rel.display()
            )));
        }
        binds.push(bind);
    }
    for (i, v) in c.volumes.iter().enumerate() {
        binds.push(
            bind(ctx.sandbox, v)
                .map_err(|why| ConfigError(format!("container.volumes[{i}]: {why}")))?,
        );
    }
    Ok(HostConfig {
        cpu_shares: Some(shares),
        cpu_period: Some(CFS_PERIOD_US),
        cpu_quota: Some(quota),
        memory: Some(mem_bytes),
        // Swap equal to memory: no swap.
        memory_swap: Some(mem_bytes),
        pids_limit: limits.pids.and_then(|p| i64::try_from(p).ok()),
        network_mode: Some(network_mode.to_string()),
        port_bindings: port_bindings(c),
        privileged: Some(d.is_some_and(|d| d.privileged)),
        binds: Some(binds),
        mounts: Some(vec![sandbox]),
        ..HostConfig::default()
    })
}

/// `host:container:mode` of a volume: an absolute host path as is, a relative one under the
/// sandbox; none → a sandbox directory named after the container path.
fn bind(sandbox: &Path, v: &meseta_api::container::Volume) -> Result<String, String> {
    let cpath = v.container_path.trim();
    if cpath.contains(':') {
        return Err(format!("container path {cpath:?} must not contain ':'"));
    }
    let in_container = if cpath.starts_with('/') {
        cpath.to_string()
    } else {
        format!("{CONTAINER_SANDBOX}/{cpath}")
    };
    let host = match v.host_path.as_deref().map(str::trim) {
        Some(h) if h.starts_with('/') => std::path::PathBuf::from(h),
        Some(h) if !h.is_empty() => relative_in(sandbox, h)?,
        _ => relative_in(sandbox, cpath.trim_start_matches('/'))?,
    };
    if host.to_string_lossy().contains(':') {
        return Err(format!("host path {} must not contain ':'", host.display()));
    }
    let mode = match v.mode {
        Some(VolumeMode::Ro) => "ro",
        _ => "rw",
    };
    Ok(format!("{}:{in_container}:{mode}", host.display()))
}

/// `rel` under `base`, refusing `..` components.
fn relative_in(base: &Path, rel: &str) -> Result<std::path::PathBuf, String> {
    if rel.split('/').any(|c| c == "..") {
        return Err(format!("path {rel:?} must stay inside the sandbox"));
    }
    Ok(base.join(rel))
}

/// `"<container port>/<proto>" → [host port]` of the port mappings (BRIDGE).
fn port_bindings(c: &ContainerInfo) -> Option<HashMap<String, Option<Vec<PortBinding>>>> {
    let d = c.docker.as_ref()?;
    if d.network() != DockerNetwork::Bridge || d.port_mappings.is_empty() {
        return None;
    }
    let mut map: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for m in &d.port_mappings {
        for proto in m.protocols() {
            map.entry(format!("{}/{proto}", m.container_port))
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: None,
                    host_port: Some(m.host_port.to_string()),
                });
        }
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_api::agent::Command;
    use meseta_api::container::{ContainerType, DockerInfo, Parameter, PortMapping, Volume};

    fn docker_spec(network: DockerNetwork, mappings: Vec<PortMapping>) -> TaskSpec {
        let mut s = crate::tasks::tests::spec("t1", "cpus:0.5;mem:64;ports:[31000-31001]");
        s.container = Some(ContainerInfo {
            kind: ContainerType::Docker,
            docker: Some(DockerInfo {
                image: "meseta-test/busybox:latest".into(),
                network: Some(network),
                port_mappings: mappings,
                ..DockerInfo::default()
            }),
            volumes: vec![
                Volume {
                    container_path: "/data".into(),
                    host_path: Some("/srv/d".into()),
                    mode: Some(VolumeMode::Ro),
                    ..Volume::default()
                },
                Volume {
                    container_path: "cache".into(),
                    ..Volume::default()
                },
            ],
            ..ContainerInfo::default()
        });
        s
    }

    fn ctx(sandbox: &Path) -> Context<'_> {
        Context {
            agent_id: "ag-1",
            sandbox,
            env: vec![("MESOS_TASK_ID".into(), "t1".into())],
            allow_privileged: false,
            user: Some((65534, 65534)),
            allow_root: false,
            volumes: Vec::new(),
        }
    }

    fn with_parameter(s: &mut TaskSpec, key: &str, value: &str) {
        if let Some(d) = s.container.as_mut().and_then(|c| c.docker.as_mut()) {
            d.parameters = vec![Parameter {
                key: key.into(),
                value: value.into(),
            }];
        }
    }

    #[test]
    fn the_container_runs_as_the_task_user_and_never_as_root_unless_allowed() {
        let mut s = docker_spec(DockerNetwork::Host, vec![]);
        let sb = Path::new("/s");
        let b = create_body(&s, &ctx(sb)).expect("body");
        assert_eq!(b.user.as_deref(), Some("65534:65534"));
        // A root task (allowed by --allow-root): the image's own user.
        let mut root = ctx(sb);
        root.user = None;
        root.allow_root = true;
        assert_eq!(create_body(&s, &root).expect("body").user, None);
        // A numeric non-root user parameter is taken; root or a name is refused unless allowed.
        with_parameter(&mut s, "user", "1000:1000");
        assert_eq!(
            create_body(&s, &ctx(sb)).expect("body").user.as_deref(),
            Some("1000:1000")
        );
        for bad in ["0", "0:0", "root", "daemon", "1000:x"] {
            with_parameter(&mut s, "user", bad);
            let e = create_body(&s, &ctx(sb)).expect_err(bad);
            assert!(e.0.contains("--allow-root"), "{bad}: {e}");
            assert_eq!(
                create_body(&s, &root).expect("allowed").user.as_deref(),
                Some(bad)
            );
        }
        // Added capabilities are a privilege.
        with_parameter(&mut s, "cap-add", "SYS_ADMIN");
        let e = create_body(&s, &ctx(sb)).expect_err("cap-add");
        assert!(e.0.contains("--docker-allow-privileged"), "{e}");
        let mut privileged = ctx(sb);
        privileged.allow_privileged = true;
        let h = create_body(&s, &privileged).expect("allowed").host_config;
        assert_eq!(
            h.and_then(|h| h.cap_add),
            Some(vec!["SYS_ADMIN".to_string()])
        );
    }

    #[test]
    fn bridge_task_gets_limits_ports_binds_and_labels() {
        let s = docker_spec(
            DockerNetwork::Bridge,
            vec![PortMapping {
                host_port: 31001,
                container_port: 80,
                protocol: None,
            }],
        );
        let sb = Path::new("/w/tasks/t1/sandbox");
        let mut cx = ctx(sb);
        cx.volumes = vec![("/w/volumes/roles/db/v1".into(), "data".into())];
        let b = create_body(&s, &cx).expect("body");
        assert_eq!(b.image.as_deref(), Some("meseta-test/busybox:latest"));
        assert_eq!(
            b.entrypoint,
            Some(vec!["/bin/sh".to_string(), "-c".to_string()])
        );
        assert_eq!(b.cmd, Some(vec!["sleep 1".to_string()]));
        let labels = b.labels.expect("labels");
        assert_eq!(
            labels.get("meseta.agent_id").map(String::as_str),
            Some("ag-1")
        );
        assert_eq!(labels.get("meseta.task_id").map(String::as_str), Some("t1"));
        assert_eq!(
            labels.get("meseta.framework_id").map(String::as_str),
            Some("fw-1")
        );
        assert_eq!(b.env, Some(vec!["MESOS_TASK_ID=t1".to_string()]));
        let h = b.host_config.expect("host config");
        assert_eq!(h.cpu_shares, Some(512));
        assert_eq!(h.cpu_quota, Some(50_000));
        assert_eq!(h.memory, Some(64 * 1024 * 1024));
        assert_eq!(h.memory_swap, h.memory);
        assert_eq!(h.network_mode.as_deref(), Some("bridge"));
        let pb = h.port_bindings.expect("bindings");
        let b80 = pb.get("80/tcp").cloned().flatten().expect("80/tcp");
        assert_eq!(b80[0].host_port.as_deref(), Some("31001"));
        assert_eq!(b.exposed_ports, Some(vec!["80/tcp".to_string()]));
        let mounts = h.mounts.expect("the sandbox mount");
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].source.as_deref(), Some("/w/tasks/t1/sandbox"));
        assert_eq!(mounts[0].target.as_deref(), Some("/mnt/mesos/sandbox"));
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(
            h.binds,
            Some(vec![
                "/w/volumes/roles/db/v1:/mnt/mesos/sandbox/data:rw".to_string(),
                "/srv/d:/data:ro".to_string(),
                "/w/tasks/t1/sandbox/cache:/mnt/mesos/sandbox/cache:rw".to_string(),
            ])
        );
        assert_eq!(h.privileged, Some(false));
    }

    #[test]
    fn command_semantics() {
        let mut s = docker_spec(DockerNetwork::Host, vec![]);
        s.command = Command {
            shell: false,
            value: String::new(),
            arguments: vec!["httpd".into(), "-f".into()],
        };
        let b = create_body(&s, &ctx(Path::new("/s"))).expect("body");
        assert_eq!(b.entrypoint, None);
        assert_eq!(b.cmd, Some(vec!["httpd".to_string(), "-f".to_string()]));
        s.command = Command {
            shell: true,
            value: " ".into(),
            arguments: vec![],
        };
        let b = create_body(&s, &ctx(Path::new("/s"))).expect("body");
        assert_eq!(
            (b.entrypoint, b.cmd),
            (None, None),
            "the image's own command"
        );
        let h = b.host_config.expect("hc");
        assert_eq!(h.network_mode.as_deref(), Some("host"));
        assert_eq!(h.port_bindings, None);
    }

    #[test]
    fn refusals_name_the_field() {
        let mut s = docker_spec(
            DockerNetwork::Bridge,
            vec![PortMapping {
                host_port: 32000,
                container_port: 80,
                protocol: None,
            }],
        );
        let e = create_body(&s, &ctx(Path::new("/s"))).expect_err("port not held");
        assert!(e.0.contains("port_mappings[0].host_port"), "{e}");
        s = docker_spec(DockerNetwork::Host, vec![]);
        if let Some(d) = s.container.as_mut().and_then(|c| c.docker.as_mut()) {
            d.privileged = true;
        }
        let e = create_body(&s, &ctx(Path::new("/s"))).expect_err("privileged");
        assert!(e.0.contains("--docker-allow-privileged"), "{e}");
        let mut c = ctx(Path::new("/s"));
        c.allow_privileged = true;
        let h = create_body(&s, &c)
            .expect("allowed")
            .host_config
            .expect("hc");
        assert_eq!(h.privileged, Some(true));
        if let Some(d) = s.container.as_mut().and_then(|c| c.docker.as_mut()) {
            d.privileged = false;
            d.parameters = vec![
                Parameter {
                    key: "label".into(),
                    value: "team=a".into(),
                },
                Parameter {
                    key: "volume-driver".into(),
                    value: "x".into(),
                },
            ];
        }
        let e = create_body(&s, &ctx(Path::new("/s"))).expect_err("unknown parameter");
        assert!(e.0.contains("volume-driver"), "{e}");
        s.container = s.container.map(|mut c| {
            c.volumes = vec![Volume {
                container_path: "x".into(),
                host_path: Some("../../etc".into()),
                ..Volume::default()
            }];
            c
        });
        if let Some(d) = s.container.as_mut().and_then(|c| c.docker.as_mut()) {
            d.parameters.clear();
        }
        let e = create_body(&s, &ctx(Path::new("/s"))).expect_err("escape");
        assert!(e.0.contains("volumes[0]"), "{e}");
    }
}
