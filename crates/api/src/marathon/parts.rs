//! The parts of a Marathon app (reference §1.1, §1.4): ports, networks, fetch URIs, health and
//! readiness checks, upgrade/unreachable strategies, kill selection, version info.
//!
//! Re-exported by [`super`] (`meseta_api::marathon`); used wherever apps are.

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One port definition (host networking).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortDefinition {
    /// Service port (0 = assign one), or the literal host port with `requirePorts`.
    #[serde(default)]
    pub port: u32,
    /// `tcp`, `udp` or `udp,tcp`.
    #[serde(default = "default_tcp")]
    pub protocol: String,
    /// Port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn default_tcp() -> String {
    "tcp".to_owned()
}

/// One network of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// `host`, `container` or `container/bridge`.
    #[serde(default = "default_host")]
    pub mode: String,
    /// Network name (`container` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Network labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn default_host() -> String {
    "host".to_owned()
}

impl Network {
    /// The default `{"mode": "host"}` network.
    pub fn host() -> Network {
        Network {
            mode: default_host(),
            name: None,
            labels: BTreeMap::new(),
        }
    }
}

/// One artifact fetched into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchUri {
    /// `http(s)://` or `file://` URI, or a path.
    pub uri: String,
    /// Extract archives.
    #[serde(default = "default_true")]
    pub extract: bool,
    /// Mark executable.
    #[serde(default)]
    pub executable: bool,
    /// Cache on the agent.
    #[serde(default)]
    pub cache: bool,
    /// Destination path in the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_path: Option<String>,
}

fn default_true() -> bool {
    true
}

/// The command of a `COMMAND` health check: `{"value": "..."}` (a plain string is accepted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCommand {
    /// Shell command.
    pub value: String,
}

impl<'de> Deserialize<'de> for HealthCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Plain(String),
            Object { value: String },
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Plain(value) | Raw::Object { value } => HealthCommand { value },
        })
    }
}

/// One health check (§1.4), defaults filled on input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HealthCheck {
    /// `HTTP HTTPS TCP COMMAND MESOS_HTTP MESOS_HTTPS MESOS_TCP`.
    pub protocol: String,
    /// HTTP path (HTTP-like protocols only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Index into the port definitions / port mappings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_index: Option<i64>,
    /// Literal port (overrides `portIndex`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Command of a `COMMAND` check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<HealthCommand>,
    /// Seconds during which failures are ignored.
    pub grace_period_seconds: i64,
    /// Seconds between checks.
    pub interval_seconds: i64,
    /// Seconds before a check counts as failed.
    pub timeout_seconds: i64,
    /// Consecutive failures before the task is killed.
    pub max_consecutive_failures: i64,
    /// Mesos-side initial delay, seconds.
    pub delay_seconds: i64,
    /// Ignore 1xx responses.
    pub ignore_http1xx: bool,
    /// `IPv4` or `IPv6`.
    pub ip_protocol: String,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            protocol: "HTTP".to_owned(),
            path: None,
            port_index: None,
            port: None,
            command: None,
            grace_period_seconds: 300,
            interval_seconds: 60,
            timeout_seconds: 20,
            max_consecutive_failures: 3,
            delay_seconds: 15,
            ignore_http1xx: false,
            ip_protocol: "IPv4".to_owned(),
        }
    }
}

/// One readiness check (§1.4), defaults filled on input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReadinessCheck {
    /// Name.
    pub name: String,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    /// HTTP path.
    pub path: String,
    /// Name of the port to check.
    pub port_name: String,
    /// Seconds between checks.
    pub interval_seconds: i64,
    /// Seconds before a check counts as failed.
    pub timeout_seconds: i64,
    /// Status codes meaning "ready".
    pub http_status_codes_for_ready: Vec<u16>,
    /// Keep the last response for `/v2/apps?embed=app.readiness`.
    pub preserve_last_response: bool,
}

impl Default for ReadinessCheck {
    fn default() -> Self {
        ReadinessCheck {
            name: "readinessCheck".to_owned(),
            protocol: "HTTP".to_owned(),
            path: "/".to_owned(),
            port_name: "http-api".to_owned(),
            interval_seconds: 30,
            timeout_seconds: 10,
            http_status_codes_for_ready: vec![200],
            preserve_last_response: false,
        }
    }
}

/// Canonical `upgradeStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStrategy {
    /// Fraction of instances that must stay healthy, in `[0, 1]`.
    pub minimum_health_capacity: f64,
    /// Fraction of extra instances allowed, in `[0, 1]`.
    pub maximum_over_capacity: f64,
}

impl Default for UpgradeStrategy {
    fn default() -> Self {
        UpgradeStrategy {
            minimum_health_capacity: 1.0,
            maximum_over_capacity: 1.0,
        }
    }
}

impl UpgradeStrategy {
    /// The default of resident apps (with persistent volumes): `{0.5, 0}`.
    pub const RESIDENT: UpgradeStrategy = UpgradeStrategy {
        minimum_health_capacity: 0.5,
        maximum_over_capacity: 0.0,
    };
}

/// `killSelection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KillSelection {
    /// Kill the newest instances first (default).
    #[default]
    YoungestFirst,
    /// Kill the oldest instances first.
    OldestFirst,
}

impl KillSelection {
    /// Parses the wire name (`YOUNGEST_FIRST`, `OLDEST_FIRST`).
    pub fn parse(s: &str) -> Option<KillSelection> {
        match s {
            "YOUNGEST_FIRST" => Some(KillSelection::YoungestFirst),
            "OLDEST_FIRST" => Some(KillSelection::OldestFirst),
            _ => None,
        }
    }
}

/// `unreachableStrategy`: `"disabled"` or the two timers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnreachableStrategy {
    /// Never replace unreachable instances.
    Disabled,
    /// Replace after `inactive_after_seconds`, expunge after `expunge_after_seconds`.
    Enabled {
        /// Seconds until a replacement is scheduled.
        inactive_after_seconds: i64,
        /// Seconds until the instance is expunged.
        expunge_after_seconds: i64,
    },
}

impl Default for UnreachableStrategy {
    fn default() -> Self {
        UnreachableStrategy::Enabled {
            inactive_after_seconds: 0,
            expunge_after_seconds: 0,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UnreachableTimers {
    #[serde(default, alias = "unreachableInactiveAfterSeconds")]
    inactive_after_seconds: i64,
    #[serde(default, alias = "unreachableExpungeAfterSeconds")]
    expunge_after_seconds: i64,
}

impl Serialize for UnreachableStrategy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            UnreachableStrategy::Disabled => s.serialize_str("disabled"),
            UnreachableStrategy::Enabled {
                inactive_after_seconds,
                expunge_after_seconds,
            } => UnreachableTimers {
                inactive_after_seconds,
                expunge_after_seconds,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for UnreachableStrategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Timers(UnreachableTimers),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) if t == "disabled" => Ok(UnreachableStrategy::Disabled),
            Raw::Text(t) => Err(de::Error::custom(format!(
                "unreachableStrategy must be \"disabled\" or an object, got {t:?}"
            ))),
            Raw::Timers(t) => Ok(UnreachableStrategy::Enabled {
                inactive_after_seconds: t.inactive_after_seconds,
                expunge_after_seconds: t.expunge_after_seconds,
            }),
        }
    }
}

/// `versionInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// Last time `instances` changed.
    pub last_scaling_at: String,
    /// Last time anything else changed (or a restart was asked for).
    pub last_config_change_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unreachable_strategy_forms() {
        let s: UnreachableStrategy = serde_json::from_value(
            json!({"unreachableInactiveAfterSeconds": 5, "unreachableExpungeAfterSeconds": 9}),
        )
        .expect("legacy keys");
        assert_eq!(
            s,
            UnreachableStrategy::Enabled {
                inactive_after_seconds: 5,
                expunge_after_seconds: 9
            }
        );
        assert!(serde_json::from_value::<UnreachableStrategy>(json!("sometimes")).is_err());
        assert_eq!(
            serde_json::to_value(UnreachableStrategy::Disabled).expect("ser"),
            json!("disabled")
        );
    }
}
