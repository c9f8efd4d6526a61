//! The services engine's state: apps with their instances, launch backoff, offer statistics,
//! deployments and canaries. Everything here is serializable: the master persists apps,
//! instances and deployments separately (an instance changes far more often than its app).

use std::collections::BTreeMap;
use std::sync::Arc;

use meseta_api::marathon::App;
use meseta_types::TaskState;
use serde::{Deserialize, Serialize};

use crate::plan::DeploymentPlan;

pub use super::condition::{condition_name, Goal, HealthRecord};
pub use super::instance::{Instance, InstanceRecord, Ports};
pub(crate) use super::instance::{Interner, TASK_SEPARATOR};

/// Marathon's timestamp form: `2021-07-27T20:40:33.123Z` (always UTC, three fractional digits).
pub fn marathon_ts(unix_secs: f64) -> String {
    let ms = (unix_secs * 1000.0).round() as i64;
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// Launch backoff of an app (reference §4.7).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    /// Current delay, seconds (0: none).
    pub delay: f64,
    /// No launch before this time.
    pub until: f64,
    /// Time of the latest failure.
    pub last_failure: f64,
}

/// `lastTaskFailure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// Task id.
    pub task_id: String,
    /// Instance id.
    pub instance_id: String,
    /// Terminal state.
    pub state: TaskState,
    /// Message of the update.
    pub message: String,
    /// Host.
    pub host: String,
    /// Agent id.
    pub agent_id: String,
    /// When.
    pub timestamp: f64,
    /// App version of the task.
    pub version: String,
}

/// Why offers were not used for an app (`processedOffersSummary`), since it last waited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OfferStats {
    /// Offers looked at.
    pub processed: u64,
    /// Offers that took nothing.
    pub unused: u64,
    /// Last offer that took nothing.
    pub last_unused_at: Option<f64>,
    /// Last offer that took an instance.
    pub last_used_at: Option<f64>,
    /// Reason → number of offers rejected for it (`InsufficientCpus`, `UnfulfilledConstraint`, …).
    pub rejects: BTreeMap<String, u64>,
    /// The latest human-readable reasons (at most a few).
    pub last_reasons: Vec<String>,
}

/// A canary of an app (a meseta extension): k instances of a new configuration beside the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// The canary configuration.
    pub app: App,
    /// Instances running it.
    pub instances: u32,
    /// `deploying`, `holding`, `promoting`, `promoted`, `rolledBack`.
    pub state: String,
    /// Promote automatically once all canaries stayed healthy this long.
    pub auto_promote_after: Option<f64>,
    /// Since when every canary counts (auto promotion clock).
    pub healthy_since: Option<f64>,
    /// The configuration the canary would replace.
    pub stable_version: String,
}

/// One app and everything the engine knows about it (instances are kept apart, see
/// [`crate::engine::Engine`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppState {
    /// Target definition (its `version`/`versionInfo` set).
    pub app: App,
    /// Being removed: hidden from the API, its instances dying.
    #[serde(default)]
    pub deleted: bool,
    /// Launch backoff.
    #[serde(default)]
    pub backoff: Backoff,
    /// Last failed task.
    pub last_task_failure: Option<TaskFailure>,
    /// A canary in progress or finished.
    pub canary: Option<Canary>,
    /// Earlier versions by `version` (newest last; bounded). Boxed behind an `Arc`: a tree
    /// node holds eleven entries, and inline ones made each app's node ~9 KB.
    pub versions: BTreeMap<String, Arc<App>>,
    /// Offer statistics while instances wait.
    #[serde(skip)]
    pub offers: OfferStats,
    /// When an instance started waiting for an offer (queue `since`).
    #[serde(skip)]
    pub waiting_since: Option<f64>,
}

impl AppState {
    /// The configuration key of the target (`versionInfo.lastConfigChangeAt`).
    pub fn config(&self) -> String {
        config_of(&self.app)
    }
}

/// Configuration key of an app.
pub fn config_of(app: &App) -> String {
    app.version_info
        .as_ref()
        .map(|v| v.last_config_change_at.clone())
        .or_else(|| app.version.clone())
        .unwrap_or_default()
}

/// What a deployment is for (decides how its steps run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeploymentKind {
    /// An app change, restart, scale or removal.
    Normal,
    /// Start `k` canary instances of an app.
    Canary,
}

/// A deployment: a plan, how far it got, and what it replaced (for rollback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// UUID.
    pub id: String,
    /// Version timestamp of the change.
    pub version: String,
    /// The steps.
    pub plan: DeploymentPlan,
    /// Index of the running step (`plan.steps.len()` when finished).
    pub step: usize,
    /// Apps as they were before (None: did not exist), for rollback.
    pub original: BTreeMap<String, Option<App>>,
    /// What kind of deployment.
    pub kind: DeploymentKind,
}
