//! Pod definition parsing and validation (`POST /v2/pods`, `PUT /v2/pods/{id}`).
//!
//! [`parse_pod`] reads a request body into a [`PodDefinition`], refusing unknown keys as
//! Marathon does; [`validate_pod`] checks it and returns its canonical form (absolute id,
//! server-set `version` dropped). Every violation is collected, each with a Marathon path
//! (`/containers(0)/endpoints(1)/name`), so a handler answers one 422 listing all of them.
//!
//! Pods here run plain processes on the host network, as one task group under the DEFAULT
//! executor ([`group`] builds it); images, host volumes and container networks are refused
//! rather than silently ignored. A pod volume is an ephemeral directory of the group's shared
//! sandbox that each container mounting it sees as a link at its (sandbox-relative) `mountPath`.

pub mod group;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};

use meseta_api::marathon::pod::{EnvValue, PodContainer, PodDefinition};

use crate::path::{canonical_app_id, valid_segment};
use crate::validate::{Errors, ValidationError, Violation};

/// Operators a pod placement constraint may use.
const OPERATORS: [&str; 7] = [
    "UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS",
];

/// Reads a pod body; a body that is not a pod (unknown key, wrong type, missing field) is one
/// violation at `/` carrying the decoder's text.
pub fn parse_pod(body: &serde_json::Value) -> Result<PodDefinition, ValidationError> {
    serde_json::from_value(body.clone()).map_err(|e| ValidationError {
        violations: vec![Violation {
            path: "/".to_owned(),
            errors: vec![e.to_string()],
        }],
    })
}

/// Parses and validates a pod body in one go (what the handlers call).
pub fn pod_from_body(body: &serde_json::Value) -> Result<PodDefinition, ValidationError> {
    validate_pod(&parse_pod(body)?)
}

/// Checks `def` and returns its canonical form, or every violation found.
pub fn validate_pod(def: &PodDefinition) -> Result<PodDefinition, ValidationError> {
    let mut errs = Errors::default();
    let id = match canonical_app_id(&def.id, "/") {
        Ok(id) => Some(id),
        Err(e) => {
            errs.add("/id", e.to_string());
            None
        }
    };
    if !def.secrets.is_empty() {
        errs.add("/secrets", "secrets are not supported in pods");
    }
    env(&def.environment, &def.secrets, "", &mut errs);
    let volumes = volumes(def, &mut errs);
    containers(def, &volumes, &mut errs);
    networks(def, &mut errs);
    scaling(def, &mut errs);
    scheduling(def, &mut errs);
    if !(def.executor_resources.cpus >= 0.0 && def.executor_resources.mem >= 0.0) {
        errs.add("/executorResources", "must not be negative");
    }
    errs.finish()?;
    let mut pod = def.clone();
    pod.id = id.unwrap_or_default();
    pod.version = None;
    Ok(pod)
}

fn env(
    env: &BTreeMap<String, EnvValue>,
    secrets: &BTreeMap<String, meseta_api::marathon::pod::SecretSource>,
    at: &str,
    errs: &mut Errors,
) {
    for (k, v) in env {
        if k.is_empty() {
            errs.add(format!("{at}/environment"), "names must not be empty");
        }
        if let EnvValue::Secret { secret } = v {
            if !secrets.contains_key(secret) {
                errs.add(
                    format!("{at}/environment/{k}"),
                    format!("references the undefined secret {secret:?}"),
                );
            }
        }
    }
}

/// Names of the pod's volumes (checked unique).
fn volumes(def: &PodDefinition, errs: &mut Errors) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, v) in def.volumes.iter().enumerate() {
        if !valid_segment(&v.name) || v.name.starts_with('.') {
            errs.add(
                format!("/volumes({i})/name"),
                "must be lowercase letters, digits and '-'",
            );
        }
        if !names.insert(v.name.clone()) {
            errs.add(format!("/volumes({i})/name"), "volume names must be unique");
        }
        if v.host.is_some() {
            errs.add(
                format!("/volumes({i})/host"),
                "host volumes are not supported; a pod volume is an ephemeral directory",
            );
        }
    }
    names
}

fn containers(def: &PodDefinition, volumes: &BTreeSet<String>, errs: &mut Errors) {
    if def.containers.is_empty() {
        errs.add("/containers", "a pod needs at least one container");
    }
    let mut names = BTreeSet::new();
    let mut endpoint_names = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    for (i, c) in def.containers.iter().enumerate() {
        let at = format!("/containers({i})");
        if !valid_segment(&c.name) || c.name.contains('.') {
            errs.add(
                format!("{at}/name"),
                "must be lowercase letters, digits and '-', not starting or ending with '-'",
            );
        }
        if !names.insert(c.name.as_str()) {
            errs.add(format!("{at}/name"), "container names must be unique");
        }
        resources(c, &at, errs);
        if c.exec.is_none() {
            errs.add(&at, "a container needs exec.command");
        }
        if c.image.is_some() {
            errs.add(
                format!("{at}/image"),
                "pod containers run as plain processes here; images are not supported",
            );
        }
        env(&c.environment, &def.secrets, &at, errs);
        for (j, e) in c.endpoints.iter().enumerate() {
            let ep = format!("{at}/endpoints({j})");
            if e.name.is_empty() {
                errs.add(format!("{ep}/name"), "must not be empty");
            }
            if !endpoint_names.insert(e.name.as_str()) {
                errs.add(
                    format!("{ep}/name"),
                    "endpoint names must be unique in a pod",
                );
            }
            match e.host_port {
                Some(p) if p > 65535 => errs.add(format!("{ep}/hostPort"), "must be ≤ 65535"),
                Some(p) if p > 0 && !host_ports.insert(p) => errs.add(
                    format!("{ep}/hostPort"),
                    "host ports must be unique in a pod",
                ),
                None => errs.add(
                    format!("{ep}/hostPort"),
                    "is required on the host network (0 takes a port from the offer)",
                ),
                _ => {}
            }
            if e.container_port.is_some() {
                errs.add(
                    format!("{ep}/containerPort"),
                    "only applies to container networks",
                );
            }
            if e.protocol.is_empty() || e.protocol.iter().any(|p| p != "tcp" && p != "udp") {
                errs.add(format!("{ep}/protocol"), "must be a list of tcp and udp");
            }
        }
        health_check(c, &at, errs);
        for (j, m) in c.volume_mounts.iter().enumerate() {
            let vm = format!("{at}/volumeMounts({j})");
            if !volumes.contains(&m.name) {
                errs.add(
                    format!("{vm}/name"),
                    format!("no pod volume is named {:?}", m.name),
                );
            }
            if m.mount_path.is_empty()
                || m.mount_path.starts_with('/')
                || m.mount_path.split('/').any(|s| s == "..")
            {
                errs.add(
                    format!("{vm}/mountPath"),
                    "must be a path relative to the container's sandbox, without '..' \
                     (the volume appears there as a link)",
                );
            }
        }
        for (j, a) in c.artifacts.iter().enumerate() {
            if a.uri.is_empty() {
                errs.add(format!("{at}/artifacts({j})/uri"), "must not be empty");
            }
        }
        if let Some(l) = &c.lifecycle {
            if l.kill_grace_period_seconds
                .is_some_and(|s| s.is_nan() || s < 0.0)
            {
                errs.add(
                    format!("{at}/lifecycle/killGracePeriodSeconds"),
                    "must not be negative",
                );
            }
        }
    }
}

fn resources(c: &PodContainer, at: &str, errs: &mut Errors) {
    let r = &c.resources;
    if !(r.cpus.is_finite() && r.cpus > 0.0) {
        errs.add(format!("{at}/resources/cpus"), "must be greater than 0");
    }
    if !(r.mem.is_finite() && r.mem > 0.0) {
        errs.add(format!("{at}/resources/mem"), "must be greater than 0");
    }
    if !(r.disk.is_finite() && r.disk >= 0.0) {
        errs.add(format!("{at}/resources/disk"), "must not be negative");
    }
}

fn health_check(c: &PodContainer, at: &str, errs: &mut Errors) {
    let Some(hc) = &c.health_check else { return };
    let at = format!("{at}/healthCheck");
    let kinds = [hc.http.is_some(), hc.tcp.is_some(), hc.exec.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        errs.add(&at, "exactly one of http, tcp and exec must be given");
    }
    let endpoint = hc
        .http
        .as_ref()
        .map(|h| h.endpoint.as_str())
        .or(hc.tcp.as_ref().map(|t| t.endpoint.as_str()));
    if let Some(name) = endpoint {
        if !c.endpoints.iter().any(|e| e.name == name) {
            errs.add(
                &at,
                format!(
                    "the health check's endpoint {name:?} is not an endpoint of this container"
                ),
            );
        }
    }
    if let Some(h) = &hc.http {
        if h.scheme != "HTTP" && h.scheme != "HTTPS" {
            errs.add(format!("{at}/http/scheme"), "must be HTTP or HTTPS");
        }
        if !h.path.starts_with('/') {
            errs.add(format!("{at}/http/path"), "must start with '/'");
        }
    }
    if hc.interval_seconds == 0 {
        errs.add(format!("{at}/intervalSeconds"), "must be at least 1");
    }
    if hc.timeout_seconds == 0 || hc.timeout_seconds > hc.interval_seconds.max(1) {
        errs.add(
            format!("{at}/timeoutSeconds"),
            "must be at least 1 and at most intervalSeconds",
        );
    }
}

fn networks(def: &PodDefinition, errs: &mut Errors) {
    if def.networks.is_empty() {
        errs.add("/networks", "a pod needs a network");
    }
    for (i, n) in def.networks.iter().enumerate() {
        if n.mode != "host" {
            errs.add(
                format!("/networks({i})/mode"),
                format!("network mode {:?} is not supported; only host", n.mode),
            );
        }
    }
}

fn scaling(def: &PodDefinition, errs: &mut Errors) {
    let s = &def.scaling;
    if s.kind != "fixed" {
        errs.add("/scaling/kind", "must be fixed");
    }
    if let Some(max) = s.max_instances {
        if s.instances > max {
            errs.add("/scaling/instances", "must not exceed maxInstances");
        }
    }
}

fn scheduling(def: &PodDefinition, errs: &mut Errors) {
    let s = &def.scheduling;
    let fraction = |v: f64| (0.0..=1.0).contains(&v);
    if !fraction(s.upgrade.minimum_health_capacity) {
        errs.add(
            "/scheduling/upgrade/minimumHealthCapacity",
            "must be between 0 and 1",
        );
    }
    if !fraction(s.upgrade.maximum_over_capacity) {
        errs.add(
            "/scheduling/upgrade/maximumOverCapacity",
            "must be between 0 and 1",
        );
    }
    if !(s.backoff.backoff.is_finite() && s.backoff.backoff >= 0.0) {
        errs.add("/scheduling/backoff/backoff", "must not be negative");
    }
    if !(s.backoff.backoff_factor.is_finite() && s.backoff.backoff_factor >= 1.0) {
        errs.add("/scheduling/backoff/backoffFactor", "must be at least 1");
    }
    if !(s.backoff.max_launch_delay.is_finite() && s.backoff.max_launch_delay >= 0.0) {
        errs.add("/scheduling/backoff/maxLaunchDelay", "must not be negative");
    }
    for (i, c) in s.placement.constraints.iter().enumerate() {
        let at = format!("/scheduling/placement/constraints({i})");
        if c.field_name.is_empty() {
            errs.add(format!("{at}/fieldName"), "must not be empty");
        }
        if !OPERATORS.contains(&c.operator.as_str()) {
            errs.add(
                format!("{at}/operator"),
                format!("must be one of {}", OPERATORS.join(", ")),
            );
        }
        let needs_value = !matches!(c.operator.as_str(), "UNIQUE" | "CLUSTER" | "GROUP_BY");
        if needs_value && c.value.as_deref().unwrap_or("").is_empty() {
            errs.add(
                format!("{at}/value"),
                format!("{} needs a value", c.operator),
            );
        }
    }
    if let Some(k) = &s.kill_selection {
        if k != "YOUNGEST_FIRST" && k != "OLDEST_FIRST" {
            errs.add(
                "/scheduling/killSelection",
                "must be YOUNGEST_FIRST or OLDEST_FIRST",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn two_containers() -> serde_json::Value {
        json!({
            "id": "shop/web",
            "version": "2020-01-01T00:00:00.000Z",
            "containers": [
                {"name": "writer", "resources": {"cpus": 0.1, "mem": 32},
                 "exec": {"command": {"shell": "echo hi > data/index.html; sleep 1000"}},
                 "volumeMounts": [{"name": "shared", "mountPath": "data"}]},
                {"name": "server", "resources": {"cpus": 0.1, "mem": 32},
                 "exec": {"command": {"shell": "cd data && python3 -m http.server $ENDPOINT_HTTP"}},
                 "endpoints": [{"name": "http", "hostPort": 0}],
                 "healthCheck": {"http": {"endpoint": "http"}, "timeoutSeconds": 2,
                                 "intervalSeconds": 2},
                 "volumeMounts": [{"name": "shared", "mountPath": "data"}]}
            ],
            "volumes": [{"name": "shared"}],
            "scaling": {"instances": 2}
        })
    }

    #[test]
    fn a_valid_pod_is_made_canonical() {
        let p = pod_from_body(&two_containers()).expect("valid");
        assert_eq!(p.id, "/shop/web");
        assert_eq!(p.version, None);
        assert_eq!(p.scaling.instances, 2);
    }

    #[test]
    fn unknown_key_is_one_violation_naming_it() {
        let mut b = two_containers();
        b["containers"][0]["bogus"] = json!(true);
        let e = pod_from_body(&b).expect_err("unknown key");
        assert_eq!(e.violations.len(), 1);
        assert!(e.violations[0].errors[0].contains("bogus"), "{e}");
        assert_eq!(e.marathon_body()["message"], "Object is not valid");
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let mut b = two_containers();
        b["id"] = json!("/Bad_Id");
        b["containers"][1]["name"] = json!("writer");
        b["containers"][0]["resources"]["cpus"] = json!(0);
        b["containers"][0]["volumeMounts"][0]["name"] = json!("nope");
        b["containers"][1]["healthCheck"]["http"]["endpoint"] = json!("other");
        b["networks"] = json!([{"mode": "container", "name": "dcos"}]);
        b["scaling"] = json!({"instances": 5, "maxInstances": 2});
        b["scheduling"] = json!({"upgrade": {"minimumHealthCapacity": 1.5}});
        b["environment"] = json!({"PW": {"secret": "missing"}});
        let e = pod_from_body(&b).expect_err("invalid");
        for path in [
            "/id",
            "/containers(1)/name",
            "/containers(0)/resources/cpus",
            "/containers(0)/volumeMounts(0)/name",
            "/containers(1)/healthCheck",
            "/networks(0)/mode",
            "/scaling/instances",
            "/scheduling/upgrade/minimumHealthCapacity",
            "/environment/PW",
        ] {
            assert!(e.has_path(path), "missing {path} in {e}");
        }
    }

    #[test]
    fn endpoints_need_unique_names_and_host_ports() {
        let mut b = two_containers();
        b["containers"][0]["endpoints"] = json!([
            {"name": "http", "hostPort": 8080}, {"name": "b", "hostPort": 8080}, {"name": "c"}
        ]);
        let e = pod_from_body(&b).expect_err("invalid");
        assert!(e.has_path("/containers(1)/endpoints(0)/name"), "{e}");
        assert!(e.has_path("/containers(0)/endpoints(1)/hostPort"), "{e}");
        assert!(e.has_path("/containers(0)/endpoints(2)/hostPort"), "{e}");
    }

    #[test]
    fn unsupported_features_are_refused_not_ignored() {
        let mut b = two_containers();
        b["containers"][0]
            .as_object_mut()
            .expect("object")
            .remove("exec");
        b["containers"][1]["image"] = json!({"kind": "DOCKER", "id": "alpine"});
        b["containers"][1]["volumeMounts"][0]["mountPath"] = json!("/data");
        b["volumes"] = json!([{"name": "shared", "host": "/tmp"}]);
        let e = pod_from_body(&b).expect_err("invalid");
        for path in [
            "/containers(0)",
            "/containers(1)/image",
            "/containers(1)/volumeMounts(0)/mountPath",
            "/volumes(0)/host",
        ] {
            assert!(e.has_path(path), "missing {path} in {e}");
        }
    }
}
