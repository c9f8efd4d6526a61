//! Canary deployments (a meseta extension of the Marathon API): run `k` instances of a new
//! configuration beside the stable ones, hold, then promote (a rolling restart to the canary's
//! configuration, the canaries counting as already replaced) or abort (canaries killed,
//! stable instances back to the full count). With `autoPromoteAfterSeconds`, health decides:
//! canaries healthy that long → promote; a canary failing → abort.

use std::collections::BTreeMap;

use meseta_api::marathon::{App, VersionInfo};

use super::model::{Canary, DeploymentKind, Goal};
use super::requests::canary_active;
use super::{DeploymentResult, Engine, EngineError};
use crate::plan::{DeploymentAction, DeploymentPlan, DeploymentStep};

impl Engine {
    /// Start a canary of app `id`: `new` (validated) runs on `instances` instances.
    pub fn start_canary(
        &mut self,
        id: &str,
        mut new: App,
        instances: u32,
        auto_promote_after: Option<f64>,
        now: f64,
    ) -> Result<DeploymentResult, EngineError> {
        let st = self
            .app(id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownApp(id.into()))?;
        if !self.deployments_of(id).is_empty() {
            return Err(EngineError::Locked(self.deployments_of(id)));
        }
        if st.canary.as_ref().is_some_and(|c| canary_active(&c.state)) {
            return Err(EngineError::Conflict(format!(
                "App '{id}' already has a canary"
            )));
        }
        if instances == 0 || instances > st.app.instances {
            return Err(EngineError::Conflict(format!(
                "canary instances must be between 1 and the app's {} instances",
                st.app.instances
            )));
        }
        let version = self.new_version(now);
        new.id = id.to_owned();
        new.instances = st.app.instances;
        new.port_definitions = st.app.port_definitions.clone();
        new.version = Some(version.clone());
        new.version_info = Some(VersionInfo {
            last_scaling_at: version.clone(),
            last_config_change_at: version.clone(),
        });
        if let Some(a) = self.apps.get_mut(id) {
            a.canary = Some(Canary {
                app: new,
                instances,
                state: "deploying".into(),
                auto_promote_after,
                healthy_since: None,
                stable_version: st.app.version.clone().unwrap_or_default(),
            });
        }
        self.persist_app(id);
        let plan = DeploymentPlan {
            steps: vec![DeploymentStep {
                actions: vec![DeploymentAction::Restart { app: id.to_owned() }],
            }],
        };
        let original = BTreeMap::from([(id.to_owned(), Some(st.app))]);
        Ok(self.start_deployment(plan, original, version, DeploymentKind::Canary, now))
    }

    /// Promote the canary: its configuration becomes the app's, the rest rolls over to it.
    pub fn promote_canary(&mut self, id: &str, now: f64) -> Result<DeploymentResult, EngineError> {
        let st = self
            .app(id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownApp(id.into()))?;
        let c = st
            .canary
            .clone()
            .filter(|c| canary_active(&c.state))
            .ok_or_else(|| EngineError::Conflict(format!("App '{id}' has no canary to promote")))?;
        for d in self.deployments_of(id) {
            self.fail_deployment(&d, now, "canary promoted");
        }
        let version = self.new_version(now);
        let mut app = c.app.clone();
        app.version = Some(version.clone());
        if let Some(vi) = app.version_info.as_mut() {
            vi.last_scaling_at = version.clone();
        }
        if let Some(m) = self.instances.get_mut(id) {
            for i in m.values_mut() {
                i.canary = false;
            }
        }
        let ids: Vec<String> = self.instances_of(id).map(|i| i.id.to_string()).collect();
        for i in ids {
            self.persist_instance(id, &i);
        }
        self.store_app(app.clone(), Some(&st));
        if let Some(a) = self.apps.get_mut(id) {
            if let Some(cc) = a.canary.as_mut() {
                cc.state = "promoted".into();
            }
        }
        let plan = DeploymentPlan {
            steps: vec![DeploymentStep {
                actions: vec![DeploymentAction::Restart { app: id.to_owned() }],
            }],
        };
        let original = BTreeMap::from([(id.to_owned(), Some(st.app))]);
        Ok(self.start_deployment(plan, original, version, DeploymentKind::Normal, now))
    }

    /// Abort the canary: canary instances die, the stable configuration returns to full count.
    pub fn abort_canary(&mut self, id: &str, now: f64) -> Result<DeploymentResult, EngineError> {
        let st = self
            .app(id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownApp(id.into()))?;
        if !st.canary.as_ref().is_some_and(|c| canary_active(&c.state)) {
            return Err(EngineError::Conflict(format!(
                "App '{id}' has no canary to abort"
            )));
        }
        for d in self.deployments_of(id) {
            self.fail_deployment(&d, now, "canary aborted");
        }
        self.drop_canary(id, now);
        let version = self.new_version(now);
        let plan = DeploymentPlan {
            steps: vec![DeploymentStep {
                actions: vec![DeploymentAction::Scale {
                    app: id.to_owned(),
                    instances: st.app.instances,
                }],
            }],
        };
        let original = BTreeMap::from([(id.to_owned(), Some(st.app))]);
        Ok(self.start_deployment(plan, original, version, DeploymentKind::Normal, now))
    }

    /// Kill the canary instances and mark the canary rolled back.
    pub(crate) fn drop_canary(&mut self, id: &str, _now: f64) {
        let canaries: Vec<String> = self
            .instances_of(id)
            .filter(|i| i.canary && i.goal == Goal::Running)
            .map(|i| i.id.to_string())
            .collect();
        for c in canaries {
            self.decommission(id, &c);
        }
        if let Some(cc) = self.apps.get_mut(id).and_then(|a| a.canary.as_mut()) {
            cc.state = "rolledBack".into();
        }
        self.persist_app(id);
    }

    /// One canary deployment step: start the canaries, then retire as many stable instances.
    pub(crate) fn run_canary_step(&mut self, id: &str, now: f64) -> bool {
        let Some(st) = self.apps.get(id) else {
            return true;
        };
        let Some(c) = st.canary.clone() else {
            return true;
        };
        let n = st.app.instances;
        let checks = !c.app.health_checks.is_empty();
        let canaries = self
            .instances_of(id)
            .filter(|i| i.canary && i.goal == Goal::Running)
            .count() as u32;
        let wanted = c.instances.saturating_sub(canaries) as usize;
        for _ in 0..wanted.min(self.waiting_room(id)) {
            if let Some(i) = self.new_instance(id, true, now) {
                self.persist_instance(id, &i);
            }
        }
        let counted = self
            .instances_of(id)
            .filter(|i| i.canary && i.goal == Goal::Running && i.counts(checks))
            .count() as u32;
        if counted < c.instances {
            return false;
        }
        let stable = self
            .instances_of(id)
            .filter(|i| !i.canary && i.goal == Goal::Running)
            .count() as u32;
        let keep = n - c.instances;
        if stable > keep {
            for v in self.victims(id, (stable - keep) as usize, |i| !i.canary) {
                self.decommission(id, &v);
            }
        }
        !self
            .instances_of(id)
            .any(|i| i.goal == Goal::Decommissioned)
    }

    /// Automatic promotion once every canary stayed healthy long enough.
    pub(crate) fn canary_auto(&mut self, now: f64) {
        let mut promote = Vec::new();
        for (id, st) in &mut self.apps {
            let Some(c) = st.canary.as_mut() else {
                continue;
            };
            let Some(after) = c.auto_promote_after else {
                continue;
            };
            if c.state != "holding" {
                continue;
            }
            let checks = !c.app.health_checks.is_empty();
            let all = self
                .instances
                .get(id)
                .map(|m| {
                    let v: Vec<_> = m
                        .values()
                        .filter(|i| i.canary && i.goal == Goal::Running)
                        .collect();
                    v.len() as u32 >= c.instances && v.iter().all(|i| i.counts(checks))
                })
                .unwrap_or(false);
            if !all {
                c.healthy_since = None;
                continue;
            }
            let since = *c.healthy_since.get_or_insert(now);
            if now - since >= after {
                promote.push(id.clone());
            }
        }
        for id in promote {
            let _ = self.promote_canary(&id, now);
        }
    }

    /// A canary instance ended: with automatic promotion, that aborts the canary.
    pub(crate) fn canary_failed(&mut self, id: &str, now: f64) {
        let auto = self
            .apps
            .get(id)
            .and_then(|a| a.canary.as_ref())
            .is_some_and(|c| c.auto_promote_after.is_some() && canary_active(&c.state));
        if auto {
            let _ = self.abort_canary(id, now);
        }
    }
}
