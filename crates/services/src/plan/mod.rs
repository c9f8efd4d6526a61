//! Deployment plans (reference §4.1–§4.2) and the rolling-restart step function (§4.3).
//!
//! Used by the services framework when an app is created, changed, restarted or removed: it
//! persists the [`DeploymentPlan`] and executes its steps one by one; `/v2/deployments` shows
//! them via [`DeploymentPlan::marathon_steps`]. Restart steps are driven by [`rolling::step`].

pub mod rolling;

pub use rolling::{step as rolling_step, RollingDecision, RollingState};

use meseta_api::marathon::App;
use serde::{Deserialize, Serialize};

/// One action of a deployment step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action")]
pub enum DeploymentAction {
    /// A new app appears (always 0 instances; kept for API compatibility).
    #[serde(rename = "StartApplication")]
    Start {
        /// App id.
        app: String,
    },
    /// Scale to `instances` (new app, instance-only change, or scale to 0).
    #[serde(rename = "ScaleApplication")]
    Scale {
        /// App id.
        app: String,
        /// Target instance count.
        #[serde(skip)]
        instances: u32,
    },
    /// Replace every instance with the new version (rolling, §4.3).
    #[serde(rename = "RestartApplication")]
    Restart {
        /// App id.
        app: String,
    },
    /// Kill every instance and forget the app.
    #[serde(rename = "StopApplication")]
    Stop {
        /// App id.
        app: String,
    },
}

impl DeploymentAction {
    /// The app id the action is about.
    pub fn app(&self) -> &str {
        match self {
            DeploymentAction::Start { app }
            | DeploymentAction::Scale { app, .. }
            | DeploymentAction::Restart { app }
            | DeploymentAction::Stop { app } => app,
        }
    }
}

/// One step: actions that run in parallel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentStep {
    /// The step's actions.
    pub actions: Vec<DeploymentAction>,
}

/// An ordered list of steps; empty steps are never kept.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeploymentPlan {
    /// The steps, in order.
    pub steps: Vec<DeploymentStep>,
}

impl DeploymentPlan {
    /// The plan taking `old` (absent for a new app) to `new`:
    /// - new app → `[[Start], [Scale(n)]]`;
    /// - target of 0 instances, or only `instances` changed → `[[Scale(n)]]`;
    /// - any runtime field changed, or a restart (new `versionInfo.lastConfigChangeAt`) →
    ///   `[[Restart]]`;
    /// - nothing changed → no steps.
    pub fn compute(old: Option<&App>, new: &App) -> DeploymentPlan {
        let app = new.id.clone();
        let steps: Vec<Vec<DeploymentAction>> = match old {
            None => vec![
                vec![DeploymentAction::Start { app: app.clone() }],
                vec![DeploymentAction::Scale {
                    app,
                    instances: new.instances,
                }],
            ],
            Some(old) if new.instances == 0 && old.instances != 0 => {
                vec![vec![DeploymentAction::Scale { app, instances: 0 }]]
            }
            Some(old) if is_upgrade(old, new) || needs_restart(old, new) => {
                vec![vec![DeploymentAction::Restart { app }]]
            }
            Some(old) if old.instances != new.instances => {
                vec![vec![DeploymentAction::Scale {
                    app,
                    instances: new.instances,
                }]]
            }
            Some(_) => vec![],
        };
        DeploymentPlan::from_steps(steps)
    }

    /// The plan removing `app`: `[[Stop]]`.
    pub fn stop(app: &App) -> DeploymentPlan {
        DeploymentPlan::from_steps(vec![vec![DeploymentAction::Stop {
            app: app.id.clone(),
        }]])
    }

    fn from_steps(steps: Vec<Vec<DeploymentAction>>) -> DeploymentPlan {
        DeploymentPlan {
            steps: steps
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(|actions| DeploymentStep { actions })
                .collect(),
        }
    }

    /// True when the plan does nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// True when some step acts on `app`.
    pub fn affects(&self, app: &str) -> bool {
        self.steps
            .iter()
            .any(|s| s.actions.iter().any(|a| a.app() == app))
    }

    /// Ids of the apps the plan touches (`affectedApps`), sorted, without duplicates.
    pub fn affected_apps(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .steps
            .iter()
            .flat_map(|s| s.actions.iter().map(|a| a.app().to_owned()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// True when both plans touch a common app (the 409 conflict rule).
    pub fn conflicts_with(&self, other: &DeploymentPlan) -> bool {
        let mine = self.affected_apps();
        other
            .affected_apps()
            .iter()
            .any(|a| mine.binary_search(a).is_ok())
    }

    /// The `steps` array of `/v2/deployments`: `[{"actions":[{"action":…,"app":…}]}]`.
    pub fn marathon_steps(&self) -> serde_json::Value {
        serde_json::to_value(&self.steps).unwrap_or(serde_json::Value::Null)
    }
}

/// True when a restart was asked for (`versionInfo.lastConfigChangeAt` moved).
fn needs_restart(old: &App, new: &App) -> bool {
    match (&old.version_info, &new.version_info) {
        (Some(a), Some(b)) => a.last_config_change_at != b.last_config_change_at,
        _ => false,
    }
}

/// Marathon's `isUpgrade`: any runtime field differs (everything but `instances`, `id`,
/// `version`/`versionInfo`).
pub fn is_upgrade(old: &App, new: &App) -> bool {
    let mut a = old.clone();
    let b = new;
    a.instances = b.instances;
    a.version = b.version.clone();
    a.version_info = b.version_info.clone();
    a.id = b.id.clone();
    a != *b
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_api::marathon::VersionInfo;
    use serde_json::json;

    use crate::test_support::app;

    #[test]
    fn new_app_starts_then_scales() {
        let new = app(json!({"id": "a", "cmd": "sleep 1", "instances": 3}));
        let plan = DeploymentPlan::compute(None, &new);
        assert_eq!(
            plan.marathon_steps(),
            json!([{"actions":[{"action":"StartApplication","app":"/a"}]},
                   {"actions":[{"action":"ScaleApplication","app":"/a"}]}])
        );
        assert_eq!(
            plan.steps[1].actions[0],
            DeploymentAction::Scale {
                app: "/a".into(),
                instances: 3
            }
        );
    }

    #[test]
    fn instance_change_scales_and_runtime_change_restarts() {
        let old = app(json!({"id": "a", "cmd": "sleep 1", "instances": 3}));
        let scaled = app(json!({"id": "a", "cmd": "sleep 1", "instances": 5}));
        let plan = DeploymentPlan::compute(Some(&old), &scaled);
        assert!(matches!(
            plan.steps[0].actions[0],
            DeploymentAction::Scale { instances: 5, .. }
        ));
        for change in [
            json!({"id": "a", "cmd": "sleep 2", "instances": 5}),
            json!({"id": "a", "cmd": "sleep 1", "instances": 3, "labels": {"x": "y"}}),
            json!({"id": "a", "cmd": "sleep 1", "instances": 3, "backoffSeconds": 2}),
        ] {
            let plan = DeploymentPlan::compute(Some(&old), &app(change));
            assert!(matches!(
                plan.steps[0].actions[0],
                DeploymentAction::Restart { .. }
            ));
        }
        let zero = app(json!({"id": "a", "cmd": "sleep 2", "instances": 0}));
        assert!(matches!(
            DeploymentPlan::compute(Some(&old), &zero).steps[0].actions[0],
            DeploymentAction::Scale { instances: 0, .. }
        ));
        assert!(DeploymentPlan::compute(Some(&old), &old).is_empty());
    }

    #[test]
    fn restart_via_version_info() {
        let mut old = app(json!({"id": "a", "cmd": "sleep 1"}));
        old.version_info = Some(VersionInfo {
            last_scaling_at: "2020-01-01T00:00:00.000Z".into(),
            last_config_change_at: "2020-01-01T00:00:00.000Z".into(),
        });
        let mut new = old.clone();
        assert!(DeploymentPlan::compute(Some(&old), &new).is_empty());
        new.version_info = Some(VersionInfo {
            last_scaling_at: "2020-01-02T00:00:00.000Z".into(),
            last_config_change_at: "2020-01-02T00:00:00.000Z".into(),
        });
        let plan = DeploymentPlan::compute(Some(&old), &new);
        assert!(matches!(
            plan.steps[0].actions[0],
            DeploymentAction::Restart { .. }
        ));
    }

    #[test]
    fn stop_and_conflicts() {
        let a = app(json!({"id": "a", "cmd": "sleep 1"}));
        let b = app(json!({"id": "b", "cmd": "sleep 1"}));
        let stop = DeploymentPlan::stop(&a);
        assert_eq!(
            stop.marathon_steps(),
            json!([{"actions":[{"action":"StopApplication","app":"/a"}]}])
        );
        assert!(stop.conflicts_with(&DeploymentPlan::compute(None, &a)));
        assert!(!stop.conflicts_with(&DeploymentPlan::compute(None, &b)));
        assert_eq!(stop.affected_apps(), vec!["/a".to_owned()]);
    }
}
