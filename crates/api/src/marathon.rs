//! Marathon `/v2/apps` app definitions (reference `marathon-chronos-api.md` §1).
//!
//! Two shapes: [`AppDefinition`] is what clients send (every field optional, unknown keys ignored,
//! deprecated `ports`/`uris` accepted) and [`App`] is the canonical, normalized form with every
//! default filled in, serialized with only the keys marathon-python 0.13 accepts (§0.3). The
//! `meseta-services` crate validates an `AppDefinition` and turns it into an `App`; the master's
//! `/v2` endpoints, the CLI and tests use both.

mod constraint;
mod parts;
pub mod pod;

pub use constraint::{Constraint, ConstraintOperator};
pub use parts::{
    FetchUri, HealthCheck, HealthCommand, KillSelection, Network, PortDefinition, ReadinessCheck,
    UnreachableStrategy, UpgradeStrategy, VersionInfo,
};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Keys of an AppInfo the server sets (the version and status fields): ignored when a client
/// re-sends what GET returned, and left out of a body that restores a stored version.
pub const READ_ONLY_APP_KEYS: &[&str] = &[
    "version",
    "versionInfo",
    "tasks",
    "tasksRunning",
    "tasksStaged",
    "tasksHealthy",
    "tasksUnhealthy",
    "deployments",
    "lastTaskFailure",
    "taskStats",
    "readinessCheckResults",
];

/// The app definition as sent by a client (`POST /v2/apps`, `PUT /v2/apps/{id}`).
///
/// Every field is optional; unknown keys are ignored. Numbers are kept wide (`f64`/`i64`) so
/// that out-of-range values reach validation instead of failing deserialization.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppDefinition {
    /// Path id (`/group/app`); relative ids are made absolute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Shell command (`/bin/sh -c`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// Argument vector (exec without a shell).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// CPU shares per instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory per instance, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem: Option<f64>,
    /// Disk per instance, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<f64>,
    /// GPUs per instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<i64>,
    /// Desired instance count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<i64>,
    /// Executor (`""`, `//cmd` or a path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    /// OS user on the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Environment: string values or `{"secret": name}` references.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, serde_json::Value>>,
    /// Secrets (`{name: {"source": ...}}`), kept opaque.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<BTreeMap<String, serde_json::Value>>,
    /// Labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Raw constraints (`[field, OP]` or `[field, OP, value]`), checked by validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Vec<Vec<String>>>,
    /// Accepted resource roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_resource_roles: Option<Vec<String>>,
    /// Role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Container, kept opaque.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<serde_json::Value>,
    /// Networks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<Network>>,
    /// Port definitions (host networking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_definitions: Option<Vec<PortDefinition>>,
    /// Deprecated: port numbers, normalized to `portDefinitions`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<i64>>,
    /// Use `portDefinitions[].port` as literal host ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_ports: Option<bool>,
    /// Artifacts to fetch into the sandbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<Vec<FetchUri>>,
    /// Deprecated: URIs, normalized to `fetch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<String>>,
    /// Health checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<Vec<HealthCheck>>,
    /// Readiness checks (at most one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_checks: Option<Vec<ReadinessCheck>>,
    /// Ids of apps this one depends on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Vec<String>>,
    /// Rolling upgrade strategy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade_strategy: Option<UpgradeStrategyDefinition>,
    /// Initial launch backoff, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_seconds: Option<f64>,
    /// Backoff growth factor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_factor: Option<f64>,
    /// Maximum launch delay, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_launch_delay_seconds: Option<f64>,
    /// Which instances die first on scale-down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_selection: Option<String>,
    /// Unreachable strategy (`"disabled"` or timers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable_strategy: Option<UnreachableStrategy>,
    /// SIGTERM → SIGKILL grace period, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_kill_grace_period_seconds: Option<f64>,
    /// Version to roll back to (PUT only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Input form of `upgradeStrategy`: either field may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UpgradeStrategyDefinition {
    /// Fraction of instances that must stay healthy during a deploy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_health_capacity: Option<f64>,
    /// Fraction of extra instances allowed during a deploy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_over_capacity: Option<f64>,
}

/// The canonical app: defaults filled, deprecated fields normalized. Serializes with only the
/// keys marathon-python 0.13 accepts; empty optional lists are omitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    /// Absolute path id.
    pub id: String,
    /// Shell command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// Argument vector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// CPU shares per instance.
    pub cpus: f64,
    /// Memory, MiB.
    pub mem: f64,
    /// Disk, MiB.
    pub disk: f64,
    /// GPUs.
    pub gpus: u32,
    /// Desired instances.
    pub instances: u32,
    /// Executor.
    pub executor: String,
    /// OS user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Environment.
    pub env: BTreeMap<String, serde_json::Value>,
    /// Secrets (opaque).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, serde_json::Value>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Placement constraints.
    pub constraints: Vec<Constraint>,
    /// Accepted resource roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_resource_roles: Option<Vec<String>>,
    /// Role.
    pub role: String,
    /// Container (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<serde_json::Value>,
    /// Networks.
    pub networks: Vec<Network>,
    /// Port definitions (empty for non-host networking).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_definitions: Vec<PortDefinition>,
    /// Literal host ports.
    pub require_ports: bool,
    /// Fetched artifacts.
    pub fetch: Vec<FetchUri>,
    /// Health checks.
    pub health_checks: Vec<HealthCheck>,
    /// Readiness checks.
    pub readiness_checks: Vec<ReadinessCheck>,
    /// Dependencies (absolute ids).
    pub dependencies: Vec<String>,
    /// Upgrade strategy.
    pub upgrade_strategy: UpgradeStrategy,
    /// Initial launch backoff, seconds.
    pub backoff_seconds: f64,
    /// Backoff factor.
    pub backoff_factor: f64,
    /// Max launch delay, seconds.
    pub max_launch_delay_seconds: f64,
    /// Scale-down victim order.
    pub kill_selection: KillSelection,
    /// Unreachable strategy.
    pub unreachable_strategy: UnreachableStrategy,
    /// Kill grace period, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_kill_grace_period_seconds: Option<f64>,
    /// Version timestamp (server-assigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Version info (server-assigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<VersionInfo>,
}

impl App {
    /// Default `cpus`.
    pub const DEFAULT_CPUS: f64 = 1.0;
    /// Default `mem` (MiB).
    pub const DEFAULT_MEM: f64 = 128.0;
    /// Default `disk` (MiB).
    pub const DEFAULT_DISK: f64 = 0.0;
    /// Default `instances`.
    pub const DEFAULT_INSTANCES: u32 = 1;
    /// Default `backoffSeconds`.
    pub const DEFAULT_BACKOFF_SECONDS: f64 = 1.0;
    /// Default `backoffFactor`.
    pub const DEFAULT_BACKOFF_FACTOR: f64 = 1.15;
    /// Default `maxLaunchDelaySeconds`.
    pub const DEFAULT_MAX_LAUNCH_DELAY_SECONDS: f64 = 300.0;
    /// Default role.
    pub const DEFAULT_ROLE: &'static str = "*";
    /// The keys marathon-python 0.13's `MarathonApp` accepts (reference §0.3).
    pub const MARATHON_PYTHON_KEYS: &'static [&'static str] = &[
        "acceptedResourceRoles",
        "args",
        "backoffFactor",
        "backoffSeconds",
        "cmd",
        "constraints",
        "container",
        "cpus",
        "dependencies",
        "deployments",
        "disk",
        "env",
        "executor",
        "healthChecks",
        "id",
        "role",
        "instances",
        "killSelection",
        "labels",
        "lastTaskFailure",
        "maxLaunchDelaySeconds",
        "mem",
        "ports",
        "requirePorts",
        "storeUrls",
        "taskRateLimit",
        "tasks",
        "tasksRunning",
        "tasksStaged",
        "tasksHealthy",
        "taskKillGracePeriodSeconds",
        "tasksUnhealthy",
        "upgradeStrategy",
        "unreachableStrategy",
        "uris",
        "user",
        "version",
        "versionInfo",
        "ipAddress",
        "fetch",
        "taskStats",
        "readinessChecks",
        "readinessCheckResults",
        "secrets",
        "portDefinitions",
        "residency",
        "gpus",
        "networks",
    ];

    /// Mesos-safe form of the id: `/prod/web` → `prod_web`.
    pub fn safe_id(&self) -> String {
        self.id.trim_start_matches('/').replace('/', "_")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample_app() -> App {
        App {
            id: "/web".into(),
            cmd: Some("sleep 1".into()),
            args: vec![],
            cpus: 0.1,
            mem: 16.0,
            disk: 0.0,
            gpus: 0,
            instances: 2,
            executor: String::new(),
            user: None,
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
            labels: BTreeMap::new(),
            constraints: vec![Constraint {
                field: "hostname".into(),
                operator: ConstraintOperator::Unique,
                value: None,
            }],
            accepted_resource_roles: None,
            role: "*".into(),
            container: None,
            networks: vec![Network::host()],
            port_definitions: vec![PortDefinition {
                port: 0,
                protocol: "tcp".into(),
                name: Some("default".into()),
                labels: BTreeMap::new(),
            }],
            require_ports: false,
            fetch: vec![],
            health_checks: vec![HealthCheck::default()],
            readiness_checks: vec![],
            dependencies: vec![],
            upgrade_strategy: UpgradeStrategy::default(),
            backoff_seconds: 1.0,
            backoff_factor: 1.15,
            max_launch_delay_seconds: 300.0,
            kill_selection: KillSelection::YoungestFirst,
            unreachable_strategy: UnreachableStrategy::default(),
            task_kill_grace_period_seconds: None,
            version: Some("2021-07-27T20:40:33.123Z".into()),
            version_info: Some(VersionInfo {
                last_scaling_at: "2021-07-27T20:40:33.123Z".into(),
                last_config_change_at: "2021-07-27T20:40:33.123Z".into(),
            }),
        }
    }

    #[test]
    fn app_emits_only_marathon_python_keys() {
        let v = serde_json::to_value(sample_app()).expect("serializes");
        let obj = v.as_object().expect("object");
        for k in obj.keys() {
            assert!(App::MARATHON_PYTHON_KEYS.contains(&k.as_str()), "{k}");
        }
        assert_eq!(obj["constraints"], json!([["hostname", "UNIQUE"]]));
        assert_eq!(
            obj["unreachableStrategy"],
            json!({"inactiveAfterSeconds":0,"expungeAfterSeconds":0})
        );
        assert_eq!(obj["killSelection"], json!("YOUNGEST_FIRST"));
        assert!(!obj.contains_key("args"));
    }

    #[test]
    fn app_roundtrips() {
        let app = sample_app();
        let text = serde_json::to_string(&app).expect("serializes");
        let back: App = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, app);
    }

    #[test]
    fn definition_ignores_unknown_keys_and_keeps_raw_values() {
        let d: AppDefinition = serde_json::from_value(json!({
            "id": "web", "cpus": -1, "instances": -3, "bogus": {"x": 1},
            "constraints": [["hostname", "unique"]], "ports": [0, 0],
            "unreachableStrategy": "disabled",
            "healthChecks": [{"protocol": "COMMAND", "command": "true"}]
        }))
        .expect("parses");
        assert_eq!(d.id.as_deref(), Some("web"));
        assert_eq!(d.cpus, Some(-1.0));
        assert_eq!(d.instances, Some(-3));
        assert_eq!(d.ports, Some(vec![0, 0]));
        assert_eq!(d.unreachable_strategy, Some(UnreachableStrategy::Disabled));
        let hc = &d.health_checks.expect("checks")[0];
        assert_eq!(hc.command.as_ref().map(|c| c.value.as_str()), Some("true"));
        assert_eq!(hc.grace_period_seconds, 300);
    }

    #[test]
    fn safe_id_replaces_slashes() {
        let mut app = sample_app();
        app.id = "/prod/web".into();
        assert_eq!(app.safe_id(), "prod_web");
    }
}
