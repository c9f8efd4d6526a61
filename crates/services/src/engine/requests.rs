//! API requests on the engine: create/update/restart/remove apps, kill tasks, cancel
//! deployments. Each either fails without changing anything or changes the app table, starts a
//! deployment and returns its [`DeploymentResult`].

use std::collections::BTreeMap;
use std::sync::Arc;

use meseta_api::marathon::{App, VersionInfo};
use thiserror::Error;

use super::model::{AppState, Deployment, DeploymentKind, Goal};
use super::Engine;
use crate::group::levels;
use crate::plan::{is_upgrade, DeploymentPlan};
use crate::validate::ValidationError;

/// `{"version","deploymentId"}` of a change.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentResult {
    /// Version timestamp of the change.
    pub version: String,
    /// The deployment carrying it out.
    pub deployment_id: String,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EngineError {
    /// Unknown app.
    #[error("App '{0}' does not exist")]
    UnknownApp(String),
    /// The app exists (POST).
    #[error("An app with id [{0}] already exists.")]
    AppExists(String),
    /// Locked by running deployments and not forced.
    #[error("App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/{}'.", .0.first().map(String::as_str).unwrap_or(""))]
    Locked(Vec<String>),
    /// Unknown pod.
    #[error("Pod '{0}' does not exist")]
    UnknownPod(String),
    /// Unknown deployment.
    #[error("DeploymentPlan {0} does not exist")]
    UnknownDeployment(String),
    /// Unknown task.
    #[error("Task '{0}' does not exist")]
    UnknownTask(String),
    /// Unknown version of an app.
    #[error("App '{0}' does not exist in version {1}")]
    UnknownVersion(String, String),
    /// A request that cannot apply in the app's current state.
    #[error("{0}")]
    Conflict(String),
    /// The change is not valid against the other apps (a dependency cycle): 422.
    #[error("{0}")]
    Invalid(ValidationError),
}

/// A task killed by a kill request (for the response body).
#[derive(Debug, Clone, PartialEq)]
pub struct KilledTask {
    /// App id.
    pub app: String,
    /// Instance id.
    pub instance: String,
}

impl Engine {
    /// Create (`create_only`) or replace app `app` (validated, canonical; `version` unset).
    /// Returns the deployment result and whether the app was created.
    pub fn put_app(
        &mut self,
        mut app: App,
        now: f64,
        force: bool,
        create_only: bool,
    ) -> Result<(DeploymentResult, bool), EngineError> {
        let old = self.apps.get(&app.id).filter(|a| !a.deleted).cloned();
        if create_only && old.is_some() {
            return Err(EngineError::AppExists(app.id));
        }
        if self.pod_record(&app.id).is_some() {
            return Err(EngineError::Conflict(format!(
                "A pod with id [{}] already exists.",
                app.id
            )));
        }
        self.check_lock(&app.id, force)?;
        self.check_cycles(&app)?;
        self.check_claims(&app)?;
        if let Some(o) = &old {
            if o.canary.as_ref().is_some_and(|c| canary_active(&c.state)) {
                if !force {
                    return Err(EngineError::Conflict(format!(
                        "App '{}' has a canary in progress; promote or abort it, or use force=true",
                        app.id
                    )));
                }
                self.drop_canary(&app.id, now);
            }
        }
        self.cancel_conflicting(&app.id, now);
        let version = self.new_version(now);
        app.version = Some(version.clone());
        app.version_info = Some(version_info_for(
            old.as_ref().map(|o| &o.app),
            &app,
            &version,
        ));
        self.assign_service_ports(&mut app, old.as_ref().map(|o| &o.app));
        let plan = DeploymentPlan::compute(old.as_ref().map(|o| &o.app), &app);
        let created = old.is_none();
        self.store_app(app.clone(), old.as_ref());
        let original = BTreeMap::from([(app.id.clone(), old.map(|o| o.app))]);
        let result = self.start_deployment(plan, original, version, DeploymentKind::Normal, now);
        Ok((result, created))
    }

    /// Refuse `app` when its dependencies close a cycle with the other apps (itself included).
    fn check_cycles(&self, app: &App) -> Result<(), EngineError> {
        if app.dependencies.is_empty() {
            return Ok(());
        }
        let mut graph: BTreeMap<String, Vec<String>> = self
            .apps()
            .map(|a| (a.app.id.clone(), a.app.dependencies.clone()))
            .collect();
        graph.insert(app.id.clone(), app.dependencies.clone());
        levels(&graph)
            .map(|_| ())
            .map_err(|c| EngineError::Invalid(c.to_validation_error()))
    }

    /// Write `app` as the app's target, keeping its history and runtime state.
    pub(crate) fn store_app(&mut self, app: App, old: Option<&AppState>) {
        let id = app.id.clone();
        let mut state = match old {
            Some(o) => {
                let mut s = o.clone();
                if is_upgrade(&o.app, &app)
                    || o.app
                        .version_info
                        .as_ref()
                        .map(|v| &v.last_config_change_at)
                        != app.version_info.as_ref().map(|v| &v.last_config_change_at)
                {
                    // A new configuration starts without backoff (reference §4.7).
                    s.backoff = Default::default();
                }
                s.app = app.clone();
                s
            }
            None => AppState {
                app: app.clone(),
                deleted: false,
                backoff: Default::default(),
                last_task_failure: None,
                canary: None,
                versions: BTreeMap::new(),
                offers: Default::default(),
                waiting_since: None,
            },
        };
        if let Some(v) = &app.version {
            state.versions.insert(v.clone(), Arc::new(app.clone()));
        }
        while state.versions.len() > super::MAX_VERSIONS {
            let Some(k) = state.versions.keys().next().cloned() else {
                break;
            };
            state.versions.remove(&k);
        }
        state.deleted = false;
        self.add_app_id(&state.app);
        self.apps.insert(id.clone(), state);
        self.persist_app(&id);
    }

    /// Restart every instance of `id` with its current definition (a new configuration time).
    pub fn restart_app(
        &mut self,
        id: &str,
        now: f64,
        force: bool,
    ) -> Result<DeploymentResult, EngineError> {
        let old = self
            .app(id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownApp(id.into()))?;
        self.check_lock(id, force)?;
        self.cancel_conflicting(id, now);
        let version = self.new_version(now);
        let mut app = old.app.clone();
        app.version = Some(version.clone());
        app.version_info = Some(VersionInfo {
            last_scaling_at: old
                .app
                .version_info
                .as_ref()
                .map_or(version.clone(), |v| v.last_scaling_at.clone()),
            last_config_change_at: version.clone(),
        });
        let plan = DeploymentPlan::compute(Some(&old.app), &app);
        self.store_app(app, Some(&old));
        let original = BTreeMap::from([(id.to_owned(), Some(old.app))]);
        Ok(self.start_deployment(plan, original, version, DeploymentKind::Normal, now))
    }

    /// Remove app `id`: it disappears from the API now; its instances are killed.
    pub fn delete_app(
        &mut self,
        id: &str,
        now: f64,
        force: bool,
    ) -> Result<DeploymentResult, EngineError> {
        let old = self
            .app(id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownApp(id.into()))?;
        self.check_lock(id, force)?;
        self.cancel_conflicting(id, now);
        let version = self.new_version(now);
        if let Some(a) = self.apps.get_mut(id) {
            a.deleted = true;
            a.canary = None;
        }
        self.persist_app(id);
        let plan = DeploymentPlan::stop(&old.app);
        let original = BTreeMap::from([(id.to_owned(), Some(old.app))]);
        Ok(self.start_deployment(plan, original, version, DeploymentKind::Normal, now))
    }

    /// Roll app `id` back to its stored `version` (a PUT of `{"version": v}`).
    pub fn rollback_app(
        &mut self,
        id: &str,
        version: &str,
        now: f64,
        force: bool,
    ) -> Result<DeploymentResult, EngineError> {
        let st = self
            .app(id)
            .ok_or_else(|| EngineError::UnknownApp(id.into()))?;
        let mut app = st
            .versions
            .get(version)
            .map(|a| App::clone(a))
            .ok_or_else(|| EngineError::UnknownVersion(id.into(), version.into()))?;
        app.version = None;
        app.version_info = None;
        self.put_app(app, now, force, false).map(|(r, _)| r)
    }

    /// Kill tasks by id. `scale`: the app shrinks by the number killed (one deployment);
    /// otherwise each instance is relaunched.
    pub fn kill_tasks(
        &mut self,
        task_ids: &[String],
        scale: bool,
        now: f64,
        force: bool,
    ) -> Result<(Vec<KilledTask>, Option<DeploymentResult>), EngineError> {
        let mut found = Vec::new();
        for t in task_ids {
            let owner = self
                .find_instance_by_task(t)
                .ok_or_else(|| EngineError::UnknownTask(t.clone()))?;
            found.push(owner);
        }
        if !scale {
            for (app, inst) in &found {
                self.kill_instance_task(app, inst);
            }
            return Ok((to_killed(found), None));
        }
        let mut by_app: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (a, i) in &found {
            by_app.entry(a.clone()).or_default().push(i.clone());
        }
        for app in by_app.keys() {
            self.check_lock(app, force)?;
        }
        let mut last = None;
        for (app_id, insts) in by_app {
            let Some(st) = self.app(&app_id).cloned() else {
                continue;
            };
            for i in &insts {
                if let Some(inst) = self
                    .instances
                    .get_mut(&app_id)
                    .and_then(|m| m.get_mut(i.as_str()))
                {
                    inst.sentenced = true;
                }
            }
            let mut app = st.app.clone();
            app.instances = app.instances.saturating_sub(insts.len() as u32);
            app.version = None;
            let (r, _) = self.put_app(app, now, true, false)?;
            last = Some(r);
        }
        Ok((to_killed(found), last))
    }

    /// Cancel deployment `id`: `force` just stops it; otherwise a new deployment reverts the apps
    /// it changed.
    pub fn cancel_deployment(
        &mut self,
        id: &str,
        force: bool,
        now: f64,
    ) -> Result<Option<DeploymentResult>, EngineError> {
        let d = self
            .deployments
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownDeployment(id.into()))?;
        self.fail_deployment(id, now, "canceled");
        if force {
            return Ok(None);
        }
        let mut last = None;
        for (app_id, orig) in d.original {
            let r = match orig {
                None => self.delete_app(&app_id, now, true).ok(),
                Some(mut app) => {
                    if let Some(a) = self.apps.get_mut(&app_id) {
                        a.deleted = false;
                    }
                    app.version = None;
                    let mut cur = app.clone();
                    // Reverting a change is a change of configuration again.
                    cur.version_info = None;
                    self.put_app(cur, now, true, false).ok().map(|(r, _)| r)
                }
            };
            if r.is_some() {
                last = r;
            }
        }
        Ok(last)
    }

    /// Forget the launch delay of app `id` (`DELETE /v2/queue/{id}/delay`).
    pub fn reset_delay(&mut self, id: &str) -> Result<(), EngineError> {
        let a = self
            .apps
            .get_mut(id)
            .filter(|a| !a.deleted)
            .ok_or_else(|| EngineError::UnknownApp(id.into()))?;
        a.backoff = Default::default();
        self.out.revive = true;
        Ok(())
    }

    /// 409 unless forced when a deployment touches `app`.
    pub(crate) fn check_lock(&self, app: &str, force: bool) -> Result<(), EngineError> {
        let ids = self.deployments_of(app);
        if ids.is_empty() || force {
            Ok(())
        } else {
            Err(EngineError::Locked(ids))
        }
    }

    /// Stop (without rollback) every deployment touching `app`.
    pub(crate) fn cancel_conflicting(&mut self, app: &str, now: f64) {
        for id in self.deployments_of(app) {
            self.fail_deployment(&id, now, "superseded by a forced change");
        }
    }

    pub(crate) fn start_deployment(
        &mut self,
        plan: DeploymentPlan,
        original: BTreeMap<String, Option<App>>,
        version: String,
        kind: DeploymentKind,
        now: f64,
    ) -> DeploymentResult {
        self.start_deployment_in("/", plan, original, version, kind, now)
    }

    /// [`Engine::start_deployment`] of a change to group `group` (named in
    /// `group_change_success`).
    pub(crate) fn start_deployment_in(
        &mut self,
        group: &str,
        plan: DeploymentPlan,
        original: BTreeMap<String, Option<App>>,
        version: String,
        kind: DeploymentKind,
        now: f64,
    ) -> DeploymentResult {
        let id = self.new_uuid();
        self.event(
            "group_change_success",
            now,
            serde_json::json!({"groupId": group, "version": version}),
        );
        let d = Deployment {
            id: id.clone(),
            version: version.clone(),
            plan,
            step: 0,
            original,
            kind,
        };
        let empty = d.plan.is_empty();
        self.deployments.insert(id.clone(), d);
        self.persist_deployment(&id);
        if empty {
            self.finish_deployment(&id, now);
        } else {
            self.announce_step(&id, now);
            self.advance(now);
        }
        DeploymentResult {
            version,
            deployment_id: id,
        }
    }

    /// The instance a task id (current or earlier incarnation) belongs to.
    fn find_instance_by_task(&self, task_id: &str) -> Option<(String, String)> {
        if let Some((a, i)) = self.task_index(task_id) {
            return Some((a.to_owned(), i.id.to_string()));
        }
        // An instance id, or an older incarnation's task id.
        let inst = task_id.split("._app.").next().unwrap_or(task_id);
        self.instances.iter().find_map(|(a, m)| {
            m.contains_key(inst)
                .then(|| (a.clone(), inst.to_owned()))
                .filter(|(a, _)| self.app(a).is_some())
        })
    }

    /// Kill an instance's task; the instance stays wanted and is relaunched.
    pub(crate) fn kill_instance_task(&mut self, app: &str, inst: &str) {
        let Some(i) = self.instances.get(app).and_then(|m| m.get(inst)) else {
            return;
        };
        if let (true, Some(t)) = (i.active(), i.task_id()) {
            self.out.kills.push(super::KillOrder {
                task_id: t,
                agent_id: i.agent_id.as_deref().map(str::to_owned),
            });
        }
    }

    /// Give an instance the goal Decommissioned: kill its task, or forget it when it has none.
    pub(crate) fn decommission(&mut self, app: &str, inst: &str) {
        let Some(i) = self.instances.get_mut(app).and_then(|m| m.get_mut(inst)) else {
            return;
        };
        let was_waiting = i.needs_launch();
        i.goal = Goal::Decommissioned;
        super::note_waiting(&mut self.waiting, app, was_waiting, i.needs_launch());
        if i.active() {
            let t = i.task_id().unwrap_or_default();
            let agent = i.agent_id.as_deref().map(str::to_owned);
            self.out.kills.push(super::KillOrder {
                task_id: t,
                agent_id: agent,
            });
            self.persist_instance(app, inst);
        } else {
            self.forget_instance(app, inst);
        }
    }
}

/// The `versionInfo` of `app` stored at `version` over `old`: a new configuration time when it
/// is new or any runtime field changed (`isUpgrade`), otherwise only a new scaling time.
pub(crate) fn version_info_for(old: Option<&App>, app: &App, version: &str) -> VersionInfo {
    let fresh = VersionInfo {
        last_scaling_at: version.to_owned(),
        last_config_change_at: version.to_owned(),
    };
    let Some(o) = old else {
        return fresh;
    };
    let mut probe = app.clone();
    probe.version_info = o.version_info.clone();
    match &o.version_info {
        Some(prev) if !is_upgrade(o, &probe) => VersionInfo {
            last_scaling_at: version.to_owned(),
            last_config_change_at: prev.last_config_change_at.clone(),
        },
        _ => fresh,
    }
}

fn to_killed(found: Vec<(String, String)>) -> Vec<KilledTask> {
    found
        .into_iter()
        .map(|(app, instance)| KilledTask { app, instance })
        .collect()
}

/// A canary state that still changes the app's instances.
pub(crate) fn canary_active(state: &str) -> bool {
    matches!(state, "deploying" | "holding")
}
