//! Resolving a [`GroupUpdate`] body into a [`GroupNode`] tree: ids made absolute (apps against
//! their group, sub-groups against their parent, group dependencies against the group), every
//! app validated, and every violation collected with its path in the body.

use std::collections::BTreeSet;

use meseta_api::marathon::{App, AppDefinition};

use super::GroupUpdate;
use crate::path::{join, parent, resolve};
use crate::validate::{validate_app_in, Errors, ValidationError};

/// A group of a resolved update.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupNode {
    /// Absolute group id.
    pub id: String,
    /// Its own apps (canonical, the dependencies of enclosing groups added); `None`: the body
    /// did not say (an update keeps the current ones).
    pub apps: Option<Vec<App>>,
    /// Its sub-groups; `None`: the body did not say.
    pub groups: Option<Vec<GroupNode>>,
    /// The group's own dependencies (absolute).
    pub dependencies: Vec<String>,
}

impl GroupNode {
    /// Every app the tree defines (own apps and those of sub-groups, recursively).
    pub fn all_apps(&self) -> Vec<&App> {
        let mut out: Vec<&App> = self.apps.iter().flatten().collect();
        for g in self.groups.iter().flatten() {
            out.extend(g.all_apps());
        }
        out
    }

    /// Where in the body each app asking to run as root sits (`/apps(0)`,
    /// `/groups(1)/apps(0)`), for [`crate::validate::root_refused`].
    pub fn root_app_paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_apps("", crate::validate::runs_as_root, &mut out);
        out
    }

    /// Body paths of the apps (anywhere in the tree) asking for a privileged container.
    pub fn privileged_app_paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_apps("", crate::validate::runs_privileged, &mut out);
        out
    }

    /// Every app of the tree with its body path (`/apps(0)`, `/groups(1)/apps(0)`, …).
    pub fn apps_with_paths(&self) -> Vec<(String, &App)> {
        let mut out = Vec::new();
        self.walk_apps("", &mut out);
        out
    }

    fn walk_apps<'a>(&'a self, at: &str, out: &mut Vec<(String, &'a App)>) {
        for (i, a) in self.apps.iter().flatten().enumerate() {
            out.push((format!("{at}/apps({i})"), a));
        }
        for (j, g) in self.groups.iter().flatten().enumerate() {
            g.walk_apps(&format!("{at}/groups({j})"), out);
        }
    }

    fn collect_apps(&self, at: &str, pick: fn(&App) -> bool, out: &mut Vec<String>) {
        for (i, a) in self.apps.iter().flatten().enumerate() {
            if pick(a) {
                out.push(format!("{at}/apps({i})"));
            }
        }
        for (j, g) in self.groups.iter().flatten().enumerate() {
            g.collect_apps(&format!("{at}/groups({j})"), pick, out);
        }
    }
}

/// Resolves `update` as group `id` (absolute). Fails with every violation found.
pub fn resolve_update(update: &GroupUpdate, id: &str) -> Result<GroupNode, ValidationError> {
    let mut errs = Errors::default();
    let mut seen = BTreeSet::new();
    let node = node(update, id, "", &[], &mut seen, &mut errs);
    errs.finish()?;
    Ok(node)
}

fn node(
    u: &GroupUpdate,
    id: &str,
    at: &str,
    inherited: &[String],
    seen: &mut BTreeSet<String>,
    errs: &mut Errors,
) -> GroupNode {
    let mut deps: Vec<String> = Vec::new();
    for (i, d) in u.dependencies.iter().flatten().enumerate() {
        match resolve(d, id) {
            Ok(segs) => deps.push(join(&segs)),
            Err(e) => errs.add(format!("{at}/dependencies({i})"), e.to_string()),
        }
    }
    let mut all_deps: Vec<String> = inherited.to_vec();
    for d in &deps {
        if !all_deps.contains(d) {
            all_deps.push(d.clone());
        }
    }
    let apps = u.apps.as_ref().map(|defs| {
        defs.iter()
            .enumerate()
            .filter_map(|(i, v)| app(v, id, &format!("{at}/apps({i})"), &all_deps, seen, errs))
            .collect()
    });
    let groups = u.groups.as_ref().map(|gs| {
        gs.iter()
            .enumerate()
            .filter_map(|(i, g)| {
                let here = format!("{at}/groups({i})");
                let gid = child_id(g.id.as_deref(), id, &format!("{here}/id"), seen, errs)?;
                Some(node(g, &gid, &here, &all_deps, seen, errs))
            })
            .collect()
    });
    GroupNode {
        id: id.to_owned(),
        apps,
        groups,
        dependencies: deps,
    }
}

/// One app of group `group`: parsed, validated, checked to be a direct child, group
/// dependencies added.
fn app(
    v: &serde_json::Value,
    group: &str,
    at: &str,
    deps: &[String],
    seen: &mut BTreeSet<String>,
    errs: &mut Errors,
) -> Option<App> {
    let def: AppDefinition = match serde_json::from_value(v.clone()) {
        Ok(d) => d,
        Err(e) => {
            errs.add(at, format!("Invalid JSON: {e}"));
            return None;
        }
    };
    let mut app = match validate_app_in(&def, group) {
        Ok(a) => a,
        Err(e) => {
            for viol in e.violations {
                let path = if viol.path == "/" {
                    at.to_owned()
                } else {
                    format!("{at}{}", viol.path)
                };
                for msg in viol.errors {
                    errs.add(path.clone(), msg);
                }
            }
            return None;
        }
    };
    if parent(&app.id) != group {
        errs.add(
            format!("{at}/id"),
            format!("Identifier is not child of '{group}'. Hint: use relative paths."),
        );
        return None;
    }
    if !seen.insert(app.id.clone()) {
        errs.add(format!("{at}/id"), format!("Duplicate id '{}'", app.id));
        return None;
    }
    for d in deps {
        if !app.dependencies.contains(d) {
            app.dependencies.push(d.clone());
        }
    }
    Some(app)
}

/// A sub-group's absolute id; it must be given and be a direct child of `group`.
fn child_id(
    raw: Option<&str>,
    group: &str,
    at: &str,
    seen: &mut BTreeSet<String>,
    errs: &mut Errors,
) -> Option<String> {
    let Some(raw) = raw else {
        errs.add(at, "A sub-group needs an id");
        return None;
    };
    let gid = match resolve(raw, group) {
        Ok(segs) => join(&segs),
        Err(e) => {
            errs.add(at, e.to_string());
            return None;
        }
    };
    if gid == "/" || parent(&gid) != group {
        errs.add(
            at,
            format!("Identifier is not child of '{group}'. Hint: use relative paths."),
        );
        return None;
    }
    if !seen.insert(gid.clone()) {
        errs.add(at, format!("Duplicate id '{gid}'"));
        return None;
    }
    Some(gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn update(v: serde_json::Value) -> GroupUpdate {
        serde_json::from_value(v).expect("parses")
    }

    #[test]
    fn relative_ids_resolve_against_their_groups_and_group_dependencies_are_inherited() {
        let u = update(json!({
            "id": "prod",
            "dependencies": ["/infra"],
            "apps": [{"id": "web", "cmd": "sleep 1", "dependencies": ["db"]}],
            "groups": [{"id": "back", "dependencies": ["../front"],
                        "apps": [{"id": "/prod/back/api", "cmd": "sleep 1"}]}],
        }));
        let n = resolve_update(&u, "/prod").expect("valid");
        let apps = n.all_apps();
        assert_eq!(apps[0].id, "/prod/web");
        assert_eq!(apps[0].dependencies, vec!["/prod/db", "/infra"]);
        let back = &n.groups.as_ref().expect("groups")[0];
        assert_eq!(back.id, "/prod/back");
        assert_eq!(back.dependencies, vec!["/prod/front"]);
        assert_eq!(apps[1].id, "/prod/back/api");
        assert_eq!(apps[1].dependencies, vec!["/infra", "/prod/front"]);
        assert!(n.apps.is_some());
        assert!(back.groups.is_none());
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let u = update(json!({
            "apps": [
                {"id": "a", "cmd": "sleep 1", "cpus": "lots"},
                {"id": "/elsewhere/b", "cmd": "sleep 1"},
                {"id": "c"},
                {"id": "d", "cmd": "sleep 1"},
                {"id": "d", "cmd": "sleep 1"},
            ],
            "groups": [{"apps": []}, {"id": "x/y"}],
        }));
        let e = resolve_update(&u, "/g").expect_err("invalid");
        for p in [
            "/apps(0)",
            "/apps(1)/id",
            "/apps(2)",
            "/apps(4)/id",
            "/groups(0)/id",
            "/groups(1)/id",
        ] {
            assert!(e.has_path(p), "{p} missing in {e}");
        }
        assert!(!e.has_path("/apps(3)/id"), "{e}");
    }
}
