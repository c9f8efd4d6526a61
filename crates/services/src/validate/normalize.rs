//! Turns a validated [`AppDefinition`] into the canonical [`App`]: defaults filled in, deprecated
//! fields (`ports`, `uris`, docker `network`/`portMappings`) moved to their canonical places.
//!
//! Only called by [`super::validate_app_in`] after every check passed.

use super::checks::{host_networking, Ports};
use meseta_api::marathon::{App, AppDefinition, Constraint, FetchUri, HealthCheck};
use meseta_api::marathon::{KillSelection, Network, UnreachableStrategy, UpgradeStrategy};
use serde_json::Value;

const ARCHIVES: [&str; 7] = [
    ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".zip",
];

/// Builds the canonical app. `id`, `ports` and `deps` come from the checks.
pub(super) fn app(def: &AppDefinition, id: String, ports: Ports, deps: Vec<String>) -> App {
    let resident = is_resident(def);
    let host = ports.host;
    let has_ports = ports.count > 0;
    App {
        id,
        cmd: def.cmd.clone(),
        args: def.args.clone().unwrap_or_default(),
        cpus: def.cpus.unwrap_or(App::DEFAULT_CPUS),
        mem: def.mem.unwrap_or(App::DEFAULT_MEM),
        disk: def.disk.unwrap_or(App::DEFAULT_DISK),
        gpus: def.gpus.and_then(|g| u32::try_from(g).ok()).unwrap_or(0),
        instances: def
            .instances
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(App::DEFAULT_INSTANCES),
        executor: def.executor.clone().unwrap_or_default(),
        user: def.user.clone(),
        env: def.env.clone().unwrap_or_default(),
        secrets: def.secrets.clone().unwrap_or_default(),
        labels: def.labels.clone().unwrap_or_default(),
        constraints: def
            .constraints
            .iter()
            .flatten()
            .filter_map(|p| Constraint::from_parts(p).ok())
            .collect(),
        accepted_resource_roles: def.accepted_resource_roles.clone(),
        role: def
            .role
            .clone()
            .unwrap_or_else(|| App::DEFAULT_ROLE.to_owned()),
        container: def.container.clone().map(canonical_container),
        networks: networks(def),
        port_definitions: ports.defs,
        require_ports: host && def.require_ports.unwrap_or(false),
        fetch: fetch(def),
        health_checks: health_checks(def, has_ports),
        readiness_checks: def.readiness_checks.clone().unwrap_or_default(),
        dependencies: deps,
        upgrade_strategy: upgrade_strategy(def, resident),
        backoff_seconds: def.backoff_seconds.unwrap_or(App::DEFAULT_BACKOFF_SECONDS),
        backoff_factor: def.backoff_factor.unwrap_or(App::DEFAULT_BACKOFF_FACTOR),
        max_launch_delay_seconds: def
            .max_launch_delay_seconds
            .unwrap_or(App::DEFAULT_MAX_LAUNCH_DELAY_SECONDS),
        kill_selection: def
            .kill_selection
            .as_deref()
            .and_then(KillSelection::parse)
            .unwrap_or_default(),
        unreachable_strategy: def.unreachable_strategy.unwrap_or(if resident {
            UnreachableStrategy::Disabled
        } else {
            UnreachableStrategy::default()
        }),
        task_kill_grace_period_seconds: def.task_kill_grace_period_seconds,
        version: None,
        version_info: None,
    }
}

/// True when the container declares a persistent volume.
fn is_resident(def: &AppDefinition) -> bool {
    def.container
        .as_ref()
        .and_then(|c| c.get("volumes"))
        .and_then(Value::as_array)
        .is_some_and(|vs| vs.iter().any(|v| v.get("persistent").is_some()))
}

fn upgrade_strategy(def: &AppDefinition, resident: bool) -> UpgradeStrategy {
    let base = if resident {
        UpgradeStrategy::RESIDENT
    } else {
        UpgradeStrategy::default()
    };
    match def.upgrade_strategy {
        None => base,
        Some(u) => UpgradeStrategy {
            minimum_health_capacity: u
                .minimum_health_capacity
                .unwrap_or(base.minimum_health_capacity),
            maximum_over_capacity: u
                .maximum_over_capacity
                .unwrap_or(base.maximum_over_capacity),
        },
    }
}

/// Canonical `networks`, derived from the deprecated docker network when absent.
fn networks(def: &AppDefinition) -> Vec<Network> {
    if let Some(n) = &def.networks {
        if !n.is_empty() {
            return n.clone();
        }
    }
    if host_networking(def) {
        return vec![Network::host()];
    }
    let docker_net = def
        .container
        .as_ref()
        .and_then(|c| c.get("docker"))
        .and_then(|d| d.get("network"))
        .and_then(Value::as_str);
    let mode = match docker_net {
        Some("USER") => "container",
        _ => "container/bridge",
    };
    vec![Network {
        mode: mode.to_owned(),
        name: None,
        labels: Default::default(),
    }]
}

/// Removes `docker.network`, moves `docker.portMappings` to `container.portMappings`, and
/// defaults `type` to `DOCKER`.
fn canonical_container(mut c: Value) -> Value {
    let Some(obj) = c.as_object_mut() else {
        return c;
    };
    obj.entry("type")
        .or_insert_with(|| Value::String("DOCKER".to_owned()));
    let moved = obj
        .get_mut("docker")
        .and_then(Value::as_object_mut)
        .and_then(|d| {
            d.remove("network");
            d.remove("portMappings")
        });
    if let Some(pm) = moved {
        obj.entry("portMappings").or_insert(pm);
    }
    c
}

fn fetch(def: &AppDefinition) -> Vec<FetchUri> {
    if let Some(f) = &def.fetch {
        if !f.is_empty() {
            return f.clone();
        }
    }
    def.uris
        .iter()
        .flatten()
        .map(|uri| FetchUri {
            uri: uri.clone(),
            extract: ARCHIVES.iter().any(|ext| uri.ends_with(ext)),
            executable: false,
            cache: false,
            dest_path: None,
        })
        .collect()
}

/// Health checks with `portIndex` auto-filled and `path` defaulted for HTTP-like protocols.
fn health_checks(def: &AppDefinition, has_ports: bool) -> Vec<HealthCheck> {
    let mut out = def.health_checks.clone().unwrap_or_default();
    for hc in &mut out {
        if hc.protocol != "COMMAND" && hc.port.is_none() && hc.port_index.is_none() && has_ports {
            hc.port_index = Some(0);
        }
        if hc.protocol.contains("HTTP") && hc.path.is_none() {
            hc.path = Some("/".to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn docker_bridge_form_is_canonicalized() {
        let c = canonical_container(json!({"docker": {"image": "x", "network": "BRIDGE",
            "portMappings": [{"containerPort": 80}]}}));
        assert_eq!(
            c,
            json!({"type": "DOCKER", "docker": {"image": "x"},
                   "portMappings": [{"containerPort": 80}]})
        );
        let def: AppDefinition = serde_json::from_value(json!({"id": "a",
            "container": {"docker": {"image": "x", "network": "BRIDGE"}}}))
        .expect("parses");
        assert_eq!(networks(&def)[0].mode, "container/bridge");
    }
}
