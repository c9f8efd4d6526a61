//! Mesos v1 `ContainerInfo` (the `container` of a `TaskInfo`), typed for the Docker containerizer,
//! its validation, and its construction from the Marathon (`container` of an app) and Chronos
//! (`container` of a job) shapes.
//!
//! Fields meseta does not use (`network_infos`, `linux_info`, `mesos`, …) are kept in `extra` and
//! serialized back unchanged. [`ContainerInfo::validate`] is the one check of a container: the
//! master runs it on every LAUNCH, the agent before it creates a container and the Marathon edge
//! (through [`ContainerInfo::from_marathon`]) at submission.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Mesos `ContainerInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// `MESOS` (the default) or `DOCKER`.
    #[serde(rename = "type", default)]
    pub kind: ContainerType,
    /// Docker settings (required when `kind` is `DOCKER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerInfo>,
    /// Volumes mounted into the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Fields meseta does not interpret, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ContainerInfo.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerType {
    /// The agent's own containerizer (cgroups through `meseta shim`).
    #[default]
    #[serde(rename = "MESOS")]
    Mesos,
    /// The Docker engine.
    #[serde(rename = "DOCKER")]
    Docker,
}

/// Mesos `ContainerInfo.DockerInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DockerInfo {
    /// Image reference (`[registry/]name[:tag][@digest]`).
    pub image: String,
    /// Network mode; `HOST` when absent (as in Mesos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<DockerNetwork>,
    /// Container ports published on host ports (`BRIDGE` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    /// Run privileged (only where the agent allows it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// `docker run --key=value` options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    /// Pull the image even when it is present locally.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_pull_image: bool,
    /// Fields meseta does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl DockerInfo {
    /// The network mode, `HOST` when unset.
    pub fn network(&self) -> DockerNetwork {
        self.network.unwrap_or(DockerNetwork::Host)
    }
}

/// `DockerInfo.Network`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DockerNetwork {
    /// The host's network namespace.
    #[serde(rename = "HOST")]
    Host,
    /// Docker's default bridge, with port mappings.
    #[serde(rename = "BRIDGE")]
    Bridge,
    /// No network.
    #[serde(rename = "NONE")]
    None,
    /// A user-defined network (named in `network_infos`).
    #[serde(rename = "USER")]
    User,
}

/// `DockerInfo.PortMapping`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host port (one of the task's `ports` resources).
    pub host_port: u32,
    /// Port inside the container.
    pub container_port: u32,
    /// `tcp` (default), `udp`, or both as `tcp,udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl PortMapping {
    /// The protocols of the mapping (`tcp` when unset).
    pub fn protocols(&self) -> Vec<&str> {
        match self.protocol.as_deref() {
            None | Some("") => vec!["tcp"],
            Some(p) => p.split(',').map(str::trim).collect(),
        }
    }
}

/// A `docker run` option (`--key=value`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    /// Option name without dashes (`label`, `env`, `hostname`, …).
    pub key: String,
    /// Its value.
    #[serde(default)]
    pub value: String,
}

/// Mesos `Volume`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// Path inside the container (absolute; a relative one is under the sandbox).
    pub container_path: String,
    /// Host path: absolute, or relative to the task's sandbox; absent → a directory of the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// `RW` (default) or `RO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<VolumeMode>,
    /// Fields meseta does not interpret (`source`, `image`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Volume {
    /// The secret this volume holds, by reference: Mesos' `source: {type: SECRET, secret:
    /// {type: REFERENCE, reference: {name}}}` (`Some("")` for a secret without a reference).
    pub fn secret_reference(&self) -> Option<&str> {
        let src = self.extra.get("source")?;
        if src.get("type").and_then(Value::as_str) != Some("SECRET") {
            return None;
        }
        Some(
            src.pointer("/secret/reference/name")
                .and_then(Value::as_str)
                .unwrap_or(""),
        )
    }

    /// A volume holding the secret `reference` as the file `container_path` of the sandbox.
    pub fn secret(container_path: &str, reference: &str) -> Volume {
        let mut extra = Map::new();
        extra.insert(
            "source".into(),
            serde_json::json!({"type": "SECRET",
                "secret": {"type": "REFERENCE", "reference": {"name": reference}}}),
        );
        Volume {
            container_path: container_path.to_string(),
            host_path: None,
            mode: Some(VolumeMode::Ro),
            extra,
        }
    }
}

/// `Volume.Mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeMode {
    /// Read-write.
    #[serde(rename = "RW")]
    Rw,
    /// Read-only.
    #[serde(rename = "RO")]
    Ro,
}

/// A container field that failed validation, with why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} {message}", field.mesos_path())]
pub struct ContainerError {
    /// Which field.
    pub field: ContainerField,
    /// What is wrong with it.
    pub message: String,
}

/// Names a field of a container, in the Mesos or the Marathon spelling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerField {
    /// `docker` (missing for type DOCKER).
    Docker,
    /// `docker.image`.
    Image,
    /// `docker.network`.
    Network,
    /// `docker.port_mappings[i].host_port`.
    HostPort(usize),
    /// `docker.port_mappings[i].container_port`.
    ContainerPort(usize),
    /// `docker.port_mappings[i].protocol`.
    Protocol(usize),
    /// `volumes[i].container_path`.
    VolumePath(usize),
}

impl ContainerField {
    /// The field in Mesos' JSON (`container.docker.image`).
    pub fn mesos_path(&self) -> String {
        match self {
            ContainerField::Docker => "container.docker".into(),
            ContainerField::Image => "container.docker.image".into(),
            ContainerField::Network => "container.docker.network".into(),
            ContainerField::HostPort(i) => format!("container.docker.port_mappings[{i}].host_port"),
            ContainerField::ContainerPort(i) => {
                format!("container.docker.port_mappings[{i}].container_port")
            }
            ContainerField::Protocol(i) => format!("container.docker.port_mappings[{i}].protocol"),
            ContainerField::VolumePath(i) => format!("container.volumes[{i}].container_path"),
        }
    }

    /// The field as a JSON pointer into a Marathon app (`/container/docker/image`).
    pub fn marathon_path(&self) -> String {
        match self {
            ContainerField::Docker => "/container/docker".into(),
            ContainerField::Image => "/container/docker/image".into(),
            ContainerField::Network => "/container/docker/network".into(),
            ContainerField::HostPort(i) => format!("/container/portMappings/{i}/hostPort"),
            ContainerField::ContainerPort(i) => {
                format!("/container/portMappings/{i}/containerPort")
            }
            ContainerField::Protocol(i) => format!("/container/portMappings/{i}/protocol"),
            ContainerField::VolumePath(i) => format!("/container/volumes/{i}/containerPath"),
        }
    }
}

impl ContainerInfo {
    /// Whether the task runs through the Docker engine.
    pub fn is_docker(&self) -> bool {
        self.kind == ContainerType::Docker
    }

    /// Check a container: a DOCKER one has a valid image reference, a network meseta runs, port
    /// mappings (BRIDGE only) with distinct non-zero host ports per protocol and protocols among
    /// `tcp`/`udp`; volumes have a container path.
    pub fn validate(&self) -> Result<(), ContainerError> {
        let err = |field, message: String| Err(ContainerError { field, message });
        for (i, v) in self.volumes.iter().enumerate() {
            if v.container_path.trim().is_empty() {
                return err(ContainerField::VolumePath(i), "must not be empty".into());
            }
        }
        if !self.is_docker() {
            return Ok(());
        }
        let Some(d) = &self.docker else {
            return err(
                ContainerField::Docker,
                "is required for a DOCKER container".into(),
            );
        };
        if let Err(why) = validate_image(&d.image) {
            return err(
                ContainerField::Image,
                format!("{:?} is not a valid image reference: {why}", d.image),
            );
        }
        let net = d.network();
        if net != DockerNetwork::Bridge && net != DockerNetwork::User && !d.port_mappings.is_empty()
        {
            return err(
                ContainerField::Network,
                "port mappings need the BRIDGE or USER network".into(),
            );
        }
        let mut seen: BTreeSet<(u32, String)> = BTreeSet::new();
        for (i, m) in d.port_mappings.iter().enumerate() {
            if m.container_port == 0 || m.container_port > 65535 {
                return err(
                    ContainerField::ContainerPort(i),
                    format!("{} is not a port (1-65535)", m.container_port),
                );
            }
            if m.host_port > 65535 {
                return err(
                    ContainerField::HostPort(i),
                    format!("{} is not a port (0-65535)", m.host_port),
                );
            }
            for p in m.protocols() {
                if p != "tcp" && p != "udp" {
                    return err(
                        ContainerField::Protocol(i),
                        format!("{p:?} is not a protocol (tcp, udp)"),
                    );
                }
                if m.host_port != 0 && !seen.insert((m.host_port, p.to_string())) {
                    return err(
                        ContainerField::HostPort(i),
                        format!("{} is used by another port mapping", m.host_port),
                    );
                }
            }
        }
        Ok(())
    }

    /// A Marathon app's `container` (canonical or legacy form: `docker.portMappings` or
    /// `container.portMappings`, `docker.network` or the app's `networks` given as `network`)
    /// as a Mesos container. The mappings with a `hostPort` publish on `host_ports` (the task's
    /// ports, in mapping order: see [`marathon_host_ports`]); mappings without one publish
    /// nothing (USER networks). `None` when `c` is not an object.
    pub fn from_marathon(
        c: &Value,
        network: Option<DockerNetwork>,
        host_ports: &[u64],
    ) -> Option<ContainerInfo> {
        let obj = c.as_object()?;
        let kind = match obj.get("type").and_then(Value::as_str) {
            Some("MESOS") => ContainerType::Mesos,
            _ => ContainerType::Docker,
        };
        let docker_obj = obj.get("docker").and_then(Value::as_object);
        let docker = docker_obj.map(|d| {
            let mappings = obj
                .get("portMappings")
                .or_else(|| d.get("portMappings"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let net = network.or_else(|| network_of(d.get("network")));
            DockerInfo {
                image: str_of(d.get("image")),
                network: net,
                port_mappings: marathon_port_mappings(&mappings, host_ports),
                privileged: d
                    .get("privileged")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                parameters: d
                    .get("parameters")
                    .and_then(Value::as_array)
                    .map(|ps| ps.iter().map(parameter_of).collect())
                    .unwrap_or_default(),
                force_pull_image: d
                    .get("forcePullImage")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                extra: Map::new(),
            }
        });
        let volumes = obj
            .get("volumes")
            .and_then(Value::as_array)
            .map(|vs| vs.iter().filter_map(volume_of).collect())
            .unwrap_or_default();
        Some(ContainerInfo {
            kind,
            docker: if kind == ContainerType::Docker {
                docker
            } else {
                None
            },
            volumes,
            extra: Map::new(),
        })
    }

    /// A Chronos job's `container` (`{"type":"DOCKER","image":…,"network":…,"volumes":[…],
    /// "forcePullImage":…,"parameters":[…]}`) as a Mesos container; `None` when it is none.
    pub fn from_chronos(c: &Value) -> Option<ContainerInfo> {
        let obj = c.as_object()?;
        if obj.get("docker").is_some() {
            return ContainerInfo::from_marathon(c, None, &[]);
        }
        let mut docker = Map::new();
        for key in [
            "image",
            "network",
            "forcePullImage",
            "parameters",
            "privileged",
        ] {
            if let Some(v) = obj.get(key) {
                docker.insert(key.to_string(), v.clone());
            }
        }
        let mut marathon = Map::new();
        marathon.insert(
            "type".into(),
            obj.get("type")
                .cloned()
                .unwrap_or_else(|| Value::String("DOCKER".into())),
        );
        marathon.insert("docker".into(), Value::Object(docker));
        if let Some(v) = obj.get("volumes") {
            marathon.insert("volumes".into(), v.clone());
        }
        ContainerInfo::from_marathon(&Value::Object(marathon), None, &[])
    }
}

fn str_of(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_string()
}

fn network_of(v: Option<&Value>) -> Option<DockerNetwork> {
    match v.and_then(Value::as_str)? {
        "HOST" => Some(DockerNetwork::Host),
        "BRIDGE" => Some(DockerNetwork::Bridge),
        "NONE" => Some(DockerNetwork::None),
        "USER" => Some(DockerNetwork::User),
        _ => None,
    }
}

fn parameter_of(p: &Value) -> Parameter {
    Parameter {
        key: str_of(p.get("key")),
        value: str_of(p.get("value")),
    }
}

fn volume_of(v: &Value) -> Option<Volume> {
    // Persistent (`persistent`) and external volumes are resources of their own, not binds.
    // Secret volumes name a key of the app's `secrets`: the services scheduler adds them.
    if v.get("persistent").is_some() || v.get("external").is_some() || v.get("secret").is_some() {
        return None;
    }
    Some(Volume {
        container_path: str_of(v.get("containerPath")),
        host_path: v
            .get("hostPath")
            .and_then(Value::as_str)
            .map(str::to_string),
        mode: match v.get("mode").and_then(Value::as_str) {
            Some("RO") => Some(VolumeMode::Ro),
            Some(_) => Some(VolumeMode::Rw),
            None => None,
        },
        extra: Map::new(),
    })
}

/// Marathon port mappings: those without a `hostPort` publish nothing; the k-th one with a
/// `hostPort` publishes on `host_ports[k]` (the task's ports, in mapping order), or on its own
/// `hostPort` when `host_ports` is shorter (a 0 left unassigned publishes nothing).
fn marathon_port_mappings(mappings: &[Value], host_ports: &[u64]) -> Vec<PortMapping> {
    let mut next = host_ports.iter();
    let port = |v: Option<&Value>| v.and_then(Value::as_u64);
    mappings
        .iter()
        .filter_map(|m| {
            let literal = port(m.get("hostPort"))?;
            let host = match next.next() {
                Some(p) => *p,
                None if literal != 0 => literal,
                None => return None,
            };
            Some(PortMapping {
                host_port: u32::try_from(host).unwrap_or(u32::MAX),
                container_port: port(m.get("containerPort"))
                    .and_then(|p| u32::try_from(p).ok())
                    .unwrap_or(0),
                protocol: m
                    .get("protocol")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect()
}

/// The host ports a Marathon container's port mappings ask for, in mapping order: one per
/// mapping with a `hostPort`, `0` meaning any port of the offer.
pub fn marathon_host_ports(c: &Value) -> Vec<u64> {
    c.get("portMappings")
        .or_else(|| c.get("docker").and_then(|d| d.get("portMappings")))
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m.get("hostPort").map(|p| p.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Check an image reference: `[host[:port]/]path[:tag][@algorithm:hex]`, path components of
/// lower-case letters and digits joined by `.`, `_`, `__` or dashes.
pub fn validate_image(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("it is empty".into());
    }
    if image.len() > 255 {
        return Err("it is longer than 255 characters".into());
    }
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let (algo, hex) = d
            .split_once(':')
            .ok_or_else(|| "the digest needs algorithm:hex".to_string())?;
        let algo_ok = !algo.is_empty()
            && algo
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
        if !algo_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("{d:?} is not a digest"));
        }
    }
    // A tag follows the last ':' when no '/' comes after it (else that ':' is a registry port).
    let (name, tag) = match rest.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (rest, None),
    };
    if let Some(t) = tag {
        let mut cs = t.chars();
        let first_ok = cs
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok
            || t.len() > 128
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(format!("{t:?} is not a tag"));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            validate_registry(first)?;
            parts.remove(0);
        }
    }
    for p in &parts {
        validate_path_component(p)?;
    }
    Ok(())
}

fn validate_registry(host: &str) -> Result<(), String> {
    let (h, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("{host:?} is not a registry host[:port]"));
        }
    }
    let ok = !h.is_empty()
        && h.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{host:?} is not a registry host[:port]"))
    }
}

fn validate_path_component(p: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "{p:?} is not a name component (a-z, 0-9, '.', '_', '-')"
        ))
    };
    let bytes = p.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return bad();
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // Separators: '.', '_', '__', or any run of '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-');
        if !ok {
            return bad();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_references() {
        for ok in [
            "busybox",
            "meseta-test/busybox:latest",
            "library/nginx:1.25-alpine",
            "localhost:5000/a/b_c__d:v1",
            "registry.example.com/team/app@sha256:0123456789abcdef0123456789abcdef",
            "a--b.c:T_1",
        ] {
            assert!(validate_image(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Busybox",
            "busy box",
            "a/:tag",
            "a:-x",
            "a@sha256:xyz",
            "-a",
            "a..b",
            "a/b/",
        ] {
            assert!(validate_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mesos_json_round_trips_unknown_fields() {
        let j = json!({"type": "DOCKER", "docker": {"image": "x", "network": "BRIDGE",
            "port_mappings": [{"host_port": 31000, "container_port": 80, "protocol": "tcp"}],
            "force_pull_image": true, "volume_driver": "v"},
            "network_infos": [{"name": "n"}],
            "volumes": [{"container_path": "/d", "host_path": "/tmp", "mode": "RO"}]});
        let c: ContainerInfo = serde_json::from_value(j.clone()).expect("decode");
        assert!(c.is_docker());
        let d = c.docker.as_ref().expect("docker");
        assert_eq!(d.network(), DockerNetwork::Bridge);
        assert_eq!(d.port_mappings[0].host_port, 31000);
        assert!(d.force_pull_image);
        assert_eq!(c.volumes[0].mode, Some(VolumeMode::Ro));
        assert_eq!(serde_json::to_value(&c).expect("encode"), j);
        c.validate().expect("valid");
        let mesos: ContainerInfo =
            serde_json::from_value(json!({"type": "MESOS", "mesos": {}})).expect("mesos");
        assert!(!mesos.is_docker());
        assert!(serde_json::from_value::<ContainerInfo>(json!({"type": "RKT"})).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = ContainerInfo {
            kind: ContainerType::Docker,
            ..ContainerInfo::default()
        };
        assert_eq!(
            c.validate().expect_err("no docker").field,
            ContainerField::Docker
        );
        let m = |h, c, p: Option<&str>| PortMapping {
            host_port: h,
            container_port: c,
            protocol: p.map(str::to_string),
        };
        c.docker = Some(DockerInfo {
            image: "img".into(),
            network: Some(DockerNetwork::Bridge),
            port_mappings: vec![m(31000, 80, None), m(31000, 81, Some("udp"))],
            ..DockerInfo::default()
        });
        c.validate().expect("same port on tcp and udp is fine");
        let d = c.docker.as_mut().expect("docker");
        d.port_mappings.push(m(31000, 82, Some("udp,tcp")));
        assert_eq!(
            c.validate().expect_err("dup").field,
            ContainerField::HostPort(2)
        );
        let d = c.docker.as_mut().expect("docker");
        d.port_mappings = vec![m(0, 80, Some("sctp"))];
        let e = c.validate().expect_err("proto");
        assert_eq!(e.field, ContainerField::Protocol(0));
        assert_eq!(
            e.field.marathon_path(),
            "/container/portMappings/0/protocol"
        );
        let d = c.docker.as_mut().expect("docker");
        d.port_mappings = vec![m(0, 80, None)];
        d.network = Some(DockerNetwork::Host);
        assert_eq!(
            c.validate().expect_err("host").field,
            ContainerField::Network
        );
        let d = c.docker.as_mut().expect("docker");
        d.network = None;
        d.port_mappings.clear();
        d.image = "Bad Image".into();
        assert_eq!(
            c.validate().expect_err("image").field,
            ContainerField::Image
        );
    }

    #[test]
    fn marathon_container_takes_task_ports_in_order() {
        let app = json!({"type": "DOCKER", "docker": {"image": "img", "forcePullImage": true,
            "privileged": true, "parameters": [{"key": "label", "value": "a=b"}]},
            "portMappings": [{"containerPort": 80, "hostPort": 0},
                             {"containerPort": 81, "hostPort": 32000, "protocol": "udp"},
                             {"containerPort": 82},
                             {"containerPort": 83, "hostPort": 0}],
            "volumes": [{"containerPath": "/data", "hostPath": "/srv", "mode": "RO"},
                        {"containerPath": "pv", "persistent": {"size": 10}}]});
        assert_eq!(marathon_host_ports(&app), vec![0, 32000, 0]);
        let c =
            ContainerInfo::from_marathon(&app, Some(DockerNetwork::Bridge), &[31001, 32000, 31002])
                .expect("object");
        let d = c.docker.as_ref().expect("docker");
        let hp: Vec<u32> = d.port_mappings.iter().map(|m| m.host_port).collect();
        assert_eq!(hp, vec![31001, 32000, 31002]);
        assert_eq!(d.port_mappings[2].container_port, 83);
        assert!(d.force_pull_image && d.privileged);
        assert_eq!(d.parameters[0].key, "label");
        assert_eq!(c.volumes.len(), 1);
        assert_eq!(c.volumes[0].host_path.as_deref(), Some("/srv"));
        let legacy = json!({"docker": {"image": "i", "network": "BRIDGE",
            "portMappings": [{"containerPort": 80, "hostPort": 0}]}});
        let c = ContainerInfo::from_marathon(&legacy, None, &[31005]).expect("object");
        let d = c.docker.as_ref().expect("docker");
        assert_eq!(d.network(), DockerNetwork::Bridge);
        assert_eq!(d.port_mappings[0].host_port, 31005);
        assert_eq!(marathon_host_ports(&legacy), vec![0]);
    }

    #[test]
    fn chronos_container() {
        let c = ContainerInfo::from_chronos(&json!({"type": "DOCKER", "image": "busybox",
            "network": "HOST", "forcePullImage": true,
            "volumes": [{"containerPath": "/x", "hostPath": "/y", "mode": "RW"}]}))
        .expect("object");
        assert!(c.is_docker());
        let d = c.docker.as_ref().expect("docker");
        assert_eq!(d.image, "busybox");
        assert_eq!(d.network(), DockerNetwork::Host);
        assert!(d.force_pull_image);
        assert_eq!(c.volumes[0].mode, Some(VolumeMode::Rw));
    }
}
