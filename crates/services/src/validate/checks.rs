//! The individual validation rules of [`super::validate_app_in`], one function per field group.
//!
//! Each function records violations in [`Errors`] and never stops early, so the caller gets every
//! problem in one answer.

use super::Errors;
use crate::constraints::full_match_regex;
use crate::path::{canonical_app_id, parent};
use meseta_api::marathon::{AppDefinition, Constraint, ConstraintOperator, KillSelection};
use meseta_api::marathon::{PortDefinition, UnreachableStrategy};
use serde_json::Value;
use std::collections::BTreeSet;

const CMD_ARGS: &str =
    "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.";
const PORT_INDEX: &str = "Health check port indices must address an element of the ports \
                          array or container port mappings.";

/// The app id, canonical and absolute, or `None` after recording why not.
pub(super) fn id(def: &AppDefinition, base: &str, errs: &mut Errors) -> Option<String> {
    match def.id.as_deref() {
        None => {
            errs.add("/id", "is required");
            None
        }
        Some(raw) => match canonical_app_id(raw, base) {
            Ok(id) => Some(id),
            Err(e) => {
                errs.add("/id", e.to_string());
                None
            }
        },
    }
}

/// `cmd`, `args` and their exclusivity.
pub(super) fn command(def: &AppDefinition, errs: &mut Errors) {
    if let Some(cmd) = &def.cmd {
        if cmd.chars().count() <= 1 {
            errs.add("/cmd", "must not be an empty string");
        }
    }
    let has_cmd = def.cmd.is_some();
    let has_args = def.args.as_ref().is_some_and(|a| !a.is_empty());
    let has_container = def.container.is_some();
    if has_cmd && has_args || !has_container && !has_cmd && !has_args {
        errs.add("/", CMD_ARGS);
    }
}

fn at_least(errs: &mut Errors, path: &str, v: Option<f64>, min: f64) {
    if let Some(v) = v {
        if v < min || v.is_nan() {
            errs.add(path, format!("got {v}, expected {min} or more"));
        }
    }
}

fn at_most(errs: &mut Errors, path: &str, v: Option<f64>, max: f64) {
    if let Some(v) = v {
        if v > max {
            errs.add(path, format!("got {v}, expected at most {max}"));
        }
    }
}

/// The largest amount a fixed-point resource scalar holds (whole units).
const MAX_SCALAR: f64 = (i64::MAX / 1000) as f64;

/// Marathon's integer fields (`instances`, health check seconds and counts) are 32-bit.
const MAX_INT: i64 = i32::MAX as i64;

/// A resource amount: at least `min`, and small enough for the fixed-point scalar the task's
/// resources are made of (a larger one would launch the task without that resource).
fn amount(errs: &mut Errors, path: &str, v: Option<f64>, min: f64) {
    at_least(errs, path, v, min);
    at_most(errs, path, v, MAX_SCALAR);
    if let Some(v) = v.filter(|v| *v >= min && *v <= MAX_SCALAR) {
        if let Err(e) = meseta_types::Scalar::from_f64(v) {
            errs.add(path, e.to_string());
        }
    }
}

/// `cpus`, `mem`, `disk`, `gpus`, `instances` and the single-instance label.
pub(super) fn resources(def: &AppDefinition, errs: &mut Errors) {
    amount(errs, "/cpus", def.cpus, 0.001);
    amount(errs, "/mem", def.mem, 0.0);
    amount(errs, "/disk", def.disk, 0.0);
    at_least(errs, "/gpus", def.gpus.map(|g| g as f64), 0.0);
    if let Some(g) = def.gpus {
        if g > i64::from(u32::MAX) {
            errs.add("/gpus", format!("got {g}, expected at most {}", u32::MAX));
        }
    }
    if let Some(n) = def.instances {
        if n < 0 {
            errs.add("/instances", format!("got {n}, expected 0 or more"));
        } else if n > MAX_INT {
            errs.add("/instances", format!("got {n}, expected at most {MAX_INT}"));
        }
    }
    let single = def
        .labels
        .as_ref()
        .and_then(|l| l.get("MARATHON_SINGLE_INSTANCE_APP"))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if single && def.instances.unwrap_or(1) > 1 {
        errs.add(
            "/instances",
            "single instance apps may have no more than 1 instance",
        );
    }
    if let Some(roles) = &def.accepted_resource_roles {
        if roles.is_empty() {
            errs.add("/acceptedResourceRoles", "must not be empty");
        }
    }
}

fn unit_interval(errs: &mut Errors, path: &str, v: Option<f64>) {
    match v {
        Some(v) if v > 1.0 => errs.add(path, "is greater than 1"),
        Some(v) if v < 0.0 || v.is_nan() => errs.add(path, "is less than 0"),
        _ => {}
    }
}

/// The longest kill grace period: whole seconds whose nanoseconds fit an i64.
const MAX_GRACE_SECONDS: f64 = (i64::MAX / 1_000_000_000) as f64;

/// `upgradeStrategy`, backoff, `killSelection`, `unreachableStrategy`, kill grace period.
pub(super) fn strategies(def: &AppDefinition, errs: &mut Errors) {
    if let Some(u) = &def.upgrade_strategy {
        unit_interval(
            errs,
            "/upgradeStrategy/minimumHealthCapacity",
            u.minimum_health_capacity,
        );
        unit_interval(
            errs,
            "/upgradeStrategy/maximumOverCapacity",
            u.maximum_over_capacity,
        );
    }
    at_least(errs, "/backoffSeconds", def.backoff_seconds, 0.0);
    at_least(errs, "/backoffFactor", def.backoff_factor, 1.0);
    at_least(
        errs,
        "/maxLaunchDelaySeconds",
        def.max_launch_delay_seconds,
        0.0,
    );
    at_least(
        errs,
        "/taskKillGracePeriodSeconds",
        def.task_kill_grace_period_seconds,
        0.0,
    );
    // The grace period travels to the agent in nanoseconds (an i64).
    at_most(
        errs,
        "/taskKillGracePeriodSeconds",
        def.task_kill_grace_period_seconds,
        MAX_GRACE_SECONDS,
    );
    if let Some(k) = &def.kill_selection {
        if KillSelection::parse(k).is_none() {
            errs.add(
                "/killSelection",
                format!("unknown kill selection {k:?}, expected YOUNGEST_FIRST or OLDEST_FIRST"),
            );
        }
    }
    if let Some(UnreachableStrategy::Enabled {
        inactive_after_seconds: i,
        expunge_after_seconds: x,
    }) = def.unreachable_strategy
    {
        if i < 0 || x < i {
            errs.add(
                "/unreachableStrategy",
                format!("need 0 <= inactiveAfterSeconds ({i}) <= expungeAfterSeconds ({x})"),
            );
        }
    }
}

/// Every constraint: shape, operator and value rules.
pub(super) fn constraints(def: &AppDefinition, errs: &mut Errors) {
    for (i, parts) in def.constraints.iter().flatten().enumerate() {
        let path = format!("/constraints({i})");
        match Constraint::from_parts(parts) {
            Err(e) => errs.add(path, e),
            Ok(c) => {
                if let Err(e) = constraint_value(&c) {
                    errs.add(path, e);
                }
            }
        }
    }
}

/// Checks a constraint's value against its operator (§1.5 texts).
pub fn constraint_value(c: &Constraint) -> Result<(), String> {
    let v = c.value.as_deref();
    let is_int = |s: &str| s.trim().parse::<u32>().is_ok();
    match c.operator {
        ConstraintOperator::Unique if v.is_some() => {
            Err("UNIQUE does not accept a value".to_owned())
        }
        ConstraintOperator::GroupBy if v.is_some_and(|s| !is_int(s)) => {
            Err("GROUP BY must define an integer value or else no value at all".to_owned())
        }
        ConstraintOperator::MaxPer if !v.is_some_and(is_int) => {
            Err("MAX_PER requires an integer value".to_owned())
        }
        ConstraintOperator::Like | ConstraintOperator::Unlike => match v {
            None | Some("") => {
                Err("LIKE and UNLIKE require a non-empty, regular expression value".to_owned())
            }
            Some(re) => full_match_regex(re)
                .map(|_| ())
                .map_err(|_| format!("'{re}' is not a valid regular expression")),
        },
        ConstraintOperator::Is => {
            let ok = v.is_some_and(|s| {
                s.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_/.-".contains(ch))
            });
            if ok {
                Ok(())
            } else {
                Err("IS only supports Mesos text and float values (see http://mesos.apache.org/documentation/latest/attributes-resources/)".to_owned())
            }
        }
        _ => Ok(()),
    }
}

/// `env` values and secret references.
pub(super) fn env(def: &AppDefinition, errs: &mut Errors) {
    let secrets = def.secrets.clone().unwrap_or_default();
    for (k, v) in def.env.iter().flatten() {
        let path = format!("/env({k})");
        match v {
            Value::String(_) => {}
            Value::Object(o) => match o.get("secret").and_then(Value::as_str) {
                Some(s) if secrets.contains_key(s) => {}
                Some(s) => errs.add(path, format!("references an undefined secret named '{s}'")),
                None => errs.add(path, "must be a string or {\"secret\": name}"),
            },
            _ => errs.add(path, "must be a string or {\"secret\": name}"),
        }
    }
}

/// `secrets` (`{name: {"source": path}}`) and the secret volumes of `container.volumes`
/// (`{"containerPath": relative path, "secret": name}`, MESOS containers only). Secrets reach
/// process tasks only: an app with a DOCKER container may not use them.
pub(super) fn secrets(def: &AppDefinition, errs: &mut Errors) {
    let secrets = def.secrets.clone().unwrap_or_default();
    for (name, v) in &secrets {
        match v.get("source").and_then(Value::as_str) {
            Some(src) => {
                if let Err(e) = meseta_api::secret_path::source_problem(src) {
                    errs.add(format!("/secrets({name})/source"), e);
                }
            }
            None => errs.add(
                format!("/secrets({name})"),
                "must be an object {\"source\": \"/path/of/the/secret\"}",
            ),
        }
    }
    let Some(c) = def.container.as_ref().and_then(Value::as_object) else {
        return;
    };
    let kind = c.get("type").and_then(Value::as_str).unwrap_or("DOCKER");
    let env_secrets = def
        .env
        .iter()
        .flatten()
        .any(|(_, v)| v.get("secret").is_some());
    let mut file_secrets = false;
    for (i, v) in c
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(secret) = v.get("secret") else {
            continue;
        };
        file_secrets = true;
        let at = format!("/container/volumes({i})");
        match secret.as_str() {
            Some(s) if secrets.contains_key(s) => {}
            Some(s) => errs.add(
                format!("{at}/secret"),
                format!("references an undefined secret named '{s}'"),
            ),
            None => errs.add(format!("{at}/secret"), "must be the name of a secret"),
        }
        let path = v.get("containerPath").and_then(Value::as_str).unwrap_or("");
        if !crate::secrets::sandbox_relative(path) {
            errs.add(
                format!("{at}/containerPath"),
                "a secret volume's path must be relative to the sandbox, without '..'",
            );
        }
    }
    if kind == "DOCKER" && (env_secrets || file_secrets) {
        errs.add(
            "/container/type",
            "secrets are delivered to MESOS containers and plain processes, not DOCKER",
        );
    }
}

/// The Docker network the app's `networks` name (`None`: none named, the container's own
/// `docker.network` applies), so that its port mappings are checked as the agent will run them.
fn app_network(def: &AppDefinition) -> Option<meseta_api::container::DockerNetwork> {
    use meseta_api::container::DockerNetwork;
    match def.networks.as_ref()?.first()?.mode.as_str() {
        "container/bridge" => Some(DockerNetwork::Bridge),
        "container" => Some(DockerNetwork::User),
        "host" => Some(DockerNetwork::Host),
        _ => None,
    }
}

/// `container`: its type, image reference, port mappings and `gpus` combination.
pub(super) fn container(def: &AppDefinition, errs: &mut Errors) {
    let Some(c) = &def.container else { return };
    let Some(obj) = c.as_object() else {
        errs.add("/container", "must be an object");
        return;
    };
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("DOCKER");
    if kind != "DOCKER" && kind != "MESOS" {
        errs.add(
            "/container/type",
            format!("got {kind:?}, expected DOCKER or MESOS"),
        );
    }
    let image = obj
        .get("docker")
        .and_then(|d| d.get("image"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if kind == "DOCKER" {
        if image.is_empty() {
            errs.add("/container/docker/image", "must not be empty");
        } else if let Some(Err(e)) =
            meseta_api::container::ContainerInfo::from_marathon(c, app_network(def), &[])
                .map(|m| m.validate())
        {
            // Image syntax, port mapping protocols and host ports, as the agent checks them.
            let network_field = e.field == meseta_api::container::ContainerField::Network;
            if !network_field {
                errs.add(e.field.marathon_path(), e.message);
            }
        }
        if def.gpus.unwrap_or(0) > 0 {
            errs.add(
                "/gpus",
                "GPU resources only work with the Mesos containerizer",
            );
        }
    }
    if obj
        .get("docker")
        .and_then(|d| d.get("network"))
        .and_then(Value::as_str)
        == Some("NONE")
    {
        errs.add(
            "/container/docker/network",
            "unsupported docker network type NONE",
        );
    }
}

/// What health and readiness checks may refer to.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ports {
    /// Canonical port definitions (empty for non-host networking).
    pub defs: Vec<PortDefinition>,
    /// True for host networking.
    pub host: bool,
    /// Number of ports a `portIndex` may address.
    pub count: usize,
    /// Port names a readiness check may refer to.
    pub names: Vec<String>,
}

fn container_port_mappings(def: &AppDefinition) -> Vec<Value> {
    let c = def.container.as_ref();
    let direct = c.and_then(|c| c.get("portMappings"));
    let docker = c
        .and_then(|c| c.get("docker"))
        .and_then(|d| d.get("portMappings"));
    direct
        .or(docker)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether the app uses host networking (canonical `networks` or deprecated docker network).
pub(super) fn host_networking(def: &AppDefinition) -> bool {
    if let Some(nets) = &def.networks {
        return nets.iter().all(|n| n.mode == "host");
    }
    let docker_net = def
        .container
        .as_ref()
        .and_then(|c| c.get("docker"))
        .and_then(|d| d.get("network"))
        .and_then(Value::as_str);
    matches!(docker_net, None | Some("HOST"))
}

/// `networks`, `ports`/`portDefinitions`; returns what checks may address.
pub(super) fn ports(def: &AppDefinition, errs: &mut Errors) -> Ports {
    for (i, n) in def.networks.iter().flatten().enumerate() {
        match n.mode.as_str() {
            "host" | "container/bridge" => {}
            "container" if n.name.is_none() => errs.add(
                format!("/networks({i})/name"),
                "is required in container mode",
            ),
            "container" => {}
            m => errs.add(
                format!("/networks({i})/mode"),
                format!("unknown network mode {m:?}"),
            ),
        }
    }
    let defs = port_definitions(def, errs);
    let host = host_networking(def);
    if host {
        let names = defs.iter().filter_map(|p| p.name.clone()).collect();
        Ports {
            count: defs.len(),
            defs,
            host,
            names,
        }
    } else {
        let mappings = container_port_mappings(def);
        let names = mappings
            .iter()
            .filter_map(|m| m.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        Ports {
            defs: Vec::new(),
            host,
            count: mappings.len().max(1),
            names,
        }
    }
}

fn port_definitions(def: &AppDefinition, errs: &mut Errors) -> Vec<PortDefinition> {
    let from_ports = def.ports.as_ref().map(|ports| {
        ports
            .iter()
            .enumerate()
            .filter_map(|(i, &p)| match u32::try_from(p) {
                Ok(port) if port <= 65535 => Some(PortDefinition {
                    port,
                    protocol: "tcp".to_owned(),
                    name: None,
                    labels: Default::default(),
                }),
                _ => {
                    errs.add(
                        format!("/ports({i})"),
                        format!("got {p}, expected 0 to 65535"),
                    );
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    let defs = match (&def.port_definitions, from_ports) {
        (Some(pd), Some(fp)) => {
            let same = pd.len() == fp.len() && pd.iter().zip(&fp).all(|(a, b)| a.port == b.port);
            if !same {
                errs.add("/", "cannot specify both ports and port definitions");
            }
            pd.clone()
        }
        (Some(pd), None) => pd.clone(),
        (None, Some(fp)) => fp,
        (None, None) => vec![PortDefinition {
            port: 0,
            protocol: "tcp".to_owned(),
            name: Some("default".to_owned()),
            labels: Default::default(),
        }],
    };
    check_port_definitions(&defs, errs);
    defs
}

fn check_port_definitions(defs: &[PortDefinition], errs: &mut Errors) {
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (i, p) in defs.iter().enumerate() {
        if !matches!(p.protocol.as_str(), "tcp" | "udp" | "udp,tcp") {
            errs.add(
                format!("/portDefinitions({i})/protocol"),
                format!("got {:?}, expected tcp, udp or udp,tcp", p.protocol),
            );
        }
        if p.port > 65535 {
            errs.add(
                format!("/portDefinitions({i})/port"),
                format!("got {}, expected 0 to 65535", p.port),
            );
        }
        if let Some(n) = &p.name {
            if !names.insert(n.clone()) {
                errs.add("/portDefinitions", "Port names must be unique.");
            }
        }
        if p.port != 0 && !numbers.insert(p.port) {
            errs.add("/portDefinitions", "Ports must be unique.");
        }
    }
}

const PROTOCOLS: [&str; 7] = [
    "HTTP",
    "HTTPS",
    "TCP",
    "COMMAND",
    "MESOS_HTTP",
    "MESOS_HTTPS",
    "MESOS_TCP",
];

/// Health checks: protocol, port index, command, counters.
pub(super) fn health_checks(def: &AppDefinition, ports: &Ports, errs: &mut Errors) {
    let mut mesos_side = 0;
    for (i, hc) in def.health_checks.iter().flatten().enumerate() {
        let path = format!("/healthChecks({i})");
        if !PROTOCOLS.contains(&hc.protocol.as_str()) {
            errs.add(
                format!("{path}/protocol"),
                format!("unknown protocol {:?}", hc.protocol),
            );
        }
        if hc.protocol.starts_with("MESOS_") {
            mesos_side += 1;
        }
        if hc.protocol == "COMMAND" {
            if hc.command.as_ref().is_none_or(|c| c.value.is_empty()) {
                errs.add(format!("{path}/command"), "is required for COMMAND checks");
            }
        } else if hc.port.is_none() {
            let index = hc.port_index.unwrap_or(0);
            if index < 0 || index as usize >= ports.count {
                errs.add(path.clone(), PORT_INDEX);
            }
        }
        for (name, v) in [
            ("gracePeriodSeconds", hc.grace_period_seconds),
            ("intervalSeconds", hc.interval_seconds),
            ("timeoutSeconds", hc.timeout_seconds),
            ("maxConsecutiveFailures", hc.max_consecutive_failures),
            ("delaySeconds", hc.delay_seconds),
        ] {
            if v < 0 {
                errs.add(
                    format!("{path}/{name}"),
                    format!("got {v}, expected 0 or more"),
                );
            } else if v > MAX_INT {
                errs.add(
                    format!("{path}/{name}"),
                    format!("got {v}, expected at most {MAX_INT}"),
                );
            }
        }
        if let Some(p) = hc.port.filter(|p| !(0..=65535).contains(p)) {
            errs.add(
                format!("{path}/port"),
                format!("got {p}, expected 0 to 65535"),
            );
        }
    }
    if mesos_side > 1 {
        errs.add(
            "/healthChecks",
            "AppDefinition can contain at most one Mesos health check.",
        );
    }
}

/// Readiness checks: at most one, naming a known port, timeout below interval.
pub(super) fn readiness_checks(def: &AppDefinition, ports: &Ports, errs: &mut Errors) {
    let checks = def.readiness_checks.as_deref().unwrap_or_default();
    if checks.len() > 1 {
        errs.add("/readinessChecks", "must have at most 1 element");
    }
    for (i, rc) in checks.iter().enumerate() {
        let path = format!("/readinessChecks({i})");
        if !ports.names.contains(&rc.port_name) {
            errs.add(
                format!("{path}/portName"),
                format!("No port definition reference for portName {}", rc.port_name),
            );
        }
        if rc.timeout_seconds >= rc.interval_seconds {
            errs.add(
                format!("{path}/timeoutSeconds"),
                "must be smaller than intervalSeconds",
            );
        }
        if !matches!(rc.protocol.as_str(), "HTTP" | "HTTPS") {
            errs.add(format!("{path}/protocol"), "must be HTTP or HTTPS");
        }
    }
}

/// `fetch` and deprecated `uris`.
pub(super) fn fetch(def: &AppDefinition, errs: &mut Errors) {
    if def.uris.as_ref().is_some_and(|u| !u.is_empty())
        && def.fetch.as_ref().is_some_and(|f| !f.is_empty())
    {
        errs.add("/uris", "may not be set in conjunction with fetch");
    }
    for (i, f) in def.fetch.iter().flatten().enumerate() {
        let n = f.uri.chars().count();
        if n == 0 || n > 1024 {
            errs.add(
                format!("/fetch({i})/uri"),
                "size must be between 1 and 1024",
            );
        }
    }
}

/// `dependencies`, resolved against the app's parent group.
pub(super) fn dependencies(def: &AppDefinition, app_id: &str, errs: &mut Errors) -> Vec<String> {
    let base = parent(app_id);
    let mut out = Vec::new();
    for (i, d) in def.dependencies.iter().flatten().enumerate() {
        match crate::path::resolve(d, &base) {
            Ok(segs) => out.push(crate::path::join(&segs)),
            Err(e) => errs.add(format!("/dependencies({i})"), e.to_string()),
        }
    }
    out
}
