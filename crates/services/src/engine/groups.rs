//! Group requests on the engine (`/v2/groups`): create, replace, scale and remove every app
//! under a group in **one** deployment whose steps follow the apps' dependency levels
//! ([`crate::group`]). Like the app requests, each either fails without changing anything
//! (unknown or existing group, a lock, a dependency cycle) or stores the target apps at once
//! and starts the deployment.

use std::collections::{BTreeMap, BTreeSet};

use meseta_api::marathon::App;
use thiserror::Error;

use super::model::{AppState, DeploymentKind};
use super::requests::{canary_active, version_info_for};
use super::{DeploymentResult, Engine, EngineError};
use crate::group::plan::Change;
use crate::group::{group_plan, is_under, levels, scaled_instances, GroupNode};
use crate::plan::{is_upgrade, DeploymentPlan};
use crate::validate::ValidationError;

/// Why a group request was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GroupError {
    /// Refused as an app request would be (locked, canary in progress).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The target is not valid (a dependency cycle, a bad scale factor): 422.
    #[error(transparent)]
    Invalid(ValidationError),
    /// POST of a group that exists.
    #[error("Group {0} is already created. Use PUT to change this group.")]
    Exists(String),
    /// No app lies under the group.
    #[error("Group '{0}' does not exist")]
    Unknown(String),
}

/// What a group request did.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupOutcome {
    /// The change is stored and its deployment started.
    Deployed(DeploymentResult),
    /// `dryRun`: the plan the change would run; nothing changed.
    DryRun(DeploymentPlan),
}

impl Engine {
    /// Visible apps under `group` (the group itself excluded; `/` holds every app).
    pub fn group_apps<'a>(&'a self, group: &'a str) -> impl Iterator<Item = &'a AppState> + 'a {
        self.apps()
            .filter(move |a| a.app.id != group && is_under(&a.app.id, group))
    }

    /// True when the group exists: the root, or a group some app lies under.
    pub fn group_exists(&self, group: &str) -> bool {
        group == "/" || self.group_apps(group).next().is_some()
    }

    /// `POST /v2/groups`: create every app of `node` (a group that must not exist yet).
    pub fn create_group(
        &mut self,
        node: &GroupNode,
        now: f64,
        force: bool,
    ) -> Result<DeploymentResult, GroupError> {
        if self.group_exists(&node.id) || self.app(&node.id).is_some() {
            return Err(GroupError::Exists(node.id.clone()));
        }
        let target = node.all_apps().into_iter().cloned().collect();
        match self.change_group(&node.id, target, now, force, false)? {
            GroupOutcome::Deployed(r) => Ok(r),
            GroupOutcome::DryRun(_) => unreachable_dry_run(),
        }
    }

    /// `PUT /v2/groups/{id}` with a group: the apps under the group become those of `node`
    /// (where the body left `apps` or `groups` out, the current ones are kept).
    pub fn update_group(
        &mut self,
        node: &GroupNode,
        now: f64,
        force: bool,
        dry_run: bool,
    ) -> Result<GroupOutcome, GroupError> {
        let target = self.target_of(node);
        self.change_group(&node.id, target, now, force, dry_run)
    }

    /// `PUT /v2/groups/{id}` with `{"scaleBy": f}`: every app under the group gets
    /// `ceil(instances × f)` instances.
    pub fn scale_group(
        &mut self,
        group: &str,
        factor: f64,
        now: f64,
        force: bool,
        dry_run: bool,
    ) -> Result<GroupOutcome, GroupError> {
        if !self.group_exists(group) {
            return Err(GroupError::Unknown(group.to_owned()));
        }
        let mut target = Vec::new();
        for st in self.group_apps(group) {
            let mut app = st.app.clone();
            app.instances = scaled_instances(app.instances, factor).ok_or_else(|| {
                GroupError::Invalid(ValidationError {
                    violations: vec![crate::validate::Violation {
                        path: "/scaleBy".into(),
                        errors: vec!["must be a finite number >= 0".into()],
                    }],
                })
            })?;
            target.push(app);
        }
        self.change_group(group, target, now, force, dry_run)
    }

    /// `DELETE /v2/groups/{id}`: remove every app under the group.
    pub fn delete_group(
        &mut self,
        group: &str,
        now: f64,
        force: bool,
    ) -> Result<DeploymentResult, GroupError> {
        if !self.group_exists(group) {
            return Err(GroupError::Unknown(group.to_owned()));
        }
        match self.change_group(group, Vec::new(), now, force, false)? {
            GroupOutcome::Deployed(r) => Ok(r),
            GroupOutcome::DryRun(_) => unreachable_dry_run(),
        }
    }

    /// The apps under `node.id` after an update: the body's where it gave them, the current
    /// ones where it did not.
    fn target_of(&self, node: &GroupNode) -> Vec<App> {
        let mut out: Vec<App> = Vec::new();
        let parent_is = |a: &App| crate::path::parent(&a.id) == node.id;
        match &node.apps {
            Some(apps) => out.extend(apps.iter().cloned()),
            None => out.extend(
                self.group_apps(&node.id)
                    .filter(|a| parent_is(&a.app))
                    .map(|a| a.app.clone()),
            ),
        }
        match &node.groups {
            Some(groups) => {
                for g in groups {
                    out.extend(self.target_of(g));
                }
            }
            None => out.extend(
                self.group_apps(&node.id)
                    .filter(|a| !parent_is(&a.app))
                    .map(|a| a.app.clone()),
            ),
        }
        out
    }

    /// Make the apps under `group` exactly `target` (ids under `group`, validated) in one
    /// deployment. Checks everything before changing anything.
    fn change_group(
        &mut self,
        group: &str,
        target: Vec<App>,
        now: f64,
        force: bool,
        dry_run: bool,
    ) -> Result<GroupOutcome, GroupError> {
        let wanted: BTreeSet<&str> = target.iter().map(|a| a.id.as_str()).collect();
        let mut changes: Vec<Change> = self
            .group_apps(group)
            .filter(|a| !wanted.contains(a.app.id.as_str()))
            .map(|a| (Some(a.app.clone()), None))
            .collect();
        // Ports are assigned to probes for comparison and the dry-run plan only: the stored
        // apps get theirs one after the other below, so two new apps never share one.
        for app in &target {
            let old = self.app(&app.id).map(|a| a.app.clone());
            let mut probe = app.clone();
            self.assign_service_ports(&mut probe, old.as_ref());
            let changed = old
                .as_ref()
                .is_none_or(|o| o.instances != probe.instances || is_upgrade(o, &probe));
            if changed {
                changes.push((old, Some(probe)));
            }
        }
        // Dependency levels over the whole target root: apps elsewhere keep theirs.
        let removed: BTreeSet<String> = changes
            .iter()
            .filter(|c| c.1.is_none())
            .filter_map(|c| c.0.as_ref().map(|a| a.id.clone()))
            .collect();
        let mut graph: BTreeMap<String, Vec<String>> = self
            .apps()
            .filter(|a| !removed.contains(&a.app.id) && !wanted.contains(a.app.id.as_str()))
            .map(|a| (a.app.id.clone(), a.app.dependencies.clone()))
            .collect();
        for a in &target {
            graph.insert(a.id.clone(), a.dependencies.clone());
        }
        let levels = levels(&graph).map_err(|c| GroupError::Invalid(c.to_validation_error()))?;
        self.check_group_claims(&target, &|id| wanted.contains(id) || removed.contains(id))
            .map_err(GroupError::Invalid)?;
        let affected: Vec<String> = changes
            .iter()
            .filter_map(|(o, n)| n.as_ref().or(o.as_ref()).map(|a| a.id.clone()))
            .collect();
        self.check_group_locks(&affected, force)?;
        if dry_run {
            return Ok(GroupOutcome::DryRun(group_plan(&changes, &levels)));
        }
        for id in &affected {
            self.cancel_conflicting(id, now);
            let canary = self.apps.get(id).and_then(|a| a.canary.as_ref());
            if canary.is_some_and(|c| canary_active(&c.state)) {
                self.drop_canary(id, now);
            }
        }
        let version = self.new_version(now);
        let mut raw: BTreeMap<String, App> =
            target.into_iter().map(|a| (a.id.clone(), a)).collect();
        let mut done: Vec<Change> = Vec::with_capacity(changes.len());
        for (old, new) in changes {
            match new {
                None => {
                    if let Some(o) = &old {
                        if let Some(a) = self.apps.get_mut(&o.id) {
                            a.deleted = true;
                            a.canary = None;
                        }
                        self.persist_app(&o.id);
                    }
                    done.push((old, None));
                }
                Some(probe) => {
                    let Some(mut app) = raw.remove(&probe.id) else {
                        continue;
                    };
                    let old_state = self.app(&app.id).cloned();
                    app.version = Some(version.clone());
                    app.version_info = Some(version_info_for(old.as_ref(), &app, &version));
                    self.assign_service_ports(&mut app, old.as_ref());
                    self.store_app(app.clone(), old_state.as_ref());
                    done.push((old, Some(app)));
                }
            }
        }
        let plan = group_plan(&done, &levels);
        let original: BTreeMap<String, Option<App>> = done
            .into_iter()
            .filter_map(|(o, n)| Some((n.as_ref().or(o.as_ref())?.id.clone(), o)))
            .collect();
        Ok(GroupOutcome::Deployed(self.start_deployment_in(
            group,
            plan,
            original,
            version,
            DeploymentKind::Normal,
            now,
        )))
    }

    /// 409 unless forced when a deployment touches an affected app or one has a canary in
    /// progress.
    fn check_group_locks(&self, affected: &[String], force: bool) -> Result<(), GroupError> {
        if force {
            return Ok(());
        }
        let mut locked: Vec<String> = Vec::new();
        for id in affected {
            if let Err(EngineError::Locked(ids)) = self.check_lock(id, false) {
                locked.extend(ids);
            }
            if self
                .app(id)
                .and_then(|a| a.canary.as_ref())
                .is_some_and(|c| canary_active(&c.state))
            {
                return Err(EngineError::Conflict(format!(
                    "App '{id}' has a canary in progress; promote or abort it, or use force=true"
                ))
                .into());
            }
        }
        locked.sort();
        locked.dedup();
        if locked.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Locked(locked).into())
        }
    }
}

/// `change_group` returns a dry run only when asked for one.
fn unreachable_dry_run<T>() -> Result<T, GroupError> {
    Err(EngineError::Conflict("internal: unexpected dry run".into()).into())
}

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;
