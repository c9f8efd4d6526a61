//! The deployment plan of a group change (reference §4.1): removed apps stop in the first step,
//! new apps get their (no-op) start in the second, then every added or changed app is scaled or
//! restarted in one step per dependency level, lowest level first. Empty steps are dropped.

use std::collections::BTreeMap;

use meseta_api::marathon::App;

use super::layers::layered;
use crate::plan::{DeploymentAction, DeploymentPlan, DeploymentStep};

/// One app's change: `(before, after)`; `None` before = new, `None` after = removed.
pub type Change = (Option<App>, Option<App>);

/// The plan carrying out `changes`, ordered by `levels` (from [`super::levels`]).
pub fn group_plan(changes: &[Change], levels: &BTreeMap<String, usize>) -> DeploymentPlan {
    let stops: Vec<DeploymentAction> = changes
        .iter()
        .filter_map(|c| match c {
            (Some(old), None) => Some(DeploymentAction::Stop {
                app: old.id.clone(),
            }),
            _ => None,
        })
        .collect();
    let starts: Vec<DeploymentAction> = changes
        .iter()
        .filter_map(|c| match c {
            (None, Some(new)) => Some(DeploymentAction::Start {
                app: new.id.clone(),
            }),
            _ => None,
        })
        .collect();
    // The action of each added or changed app: the last step of its own plan (a new app's
    // `[[Start], [Scale]]` contributes the Scale; its Start is in the start step).
    let mut actions: BTreeMap<String, Vec<DeploymentAction>> = BTreeMap::new();
    for (old, new) in changes {
        let Some(new) = new else { continue };
        let own = DeploymentPlan::compute(old.as_ref(), new);
        if let Some(last) = own.steps.into_iter().last() {
            actions.insert(new.id.clone(), last.actions);
        }
    }
    let ids: Vec<String> = actions.keys().cloned().collect();
    let mut steps = vec![stops, starts];
    for layer in layered(&ids, levels) {
        steps.push(
            layer
                .iter()
                .flat_map(|id| actions.remove(id).unwrap_or_default())
                .collect(),
        );
    }
    DeploymentPlan {
        steps: steps
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|actions| DeploymentStep { actions })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::levels;
    use serde_json::json;

    use crate::test_support::app;

    #[test]
    fn stops_then_starts_then_dependency_layers() {
        let db = app(json!({"id": "g/db", "cmd": "sleep 1"}));
        let web = app(json!({"id": "g/web", "cmd": "sleep 1", "dependencies": ["db"]}));
        let old_api = app(json!({"id": "g/api", "cmd": "sleep 1", "instances": 1}));
        let api = app(json!({"id": "g/api", "cmd": "sleep 1", "instances": 2,
                             "dependencies": ["web"]}));
        let gone = app(json!({"id": "g/gone", "cmd": "sleep 1"}));
        let changes = vec![
            (None, Some(web.clone())),
            (Some(old_api), Some(api.clone())),
            (Some(gone), None),
            (None, Some(db.clone())),
        ];
        let graph = [&db, &web, &api]
            .iter()
            .map(|a| (a.id.clone(), a.dependencies.clone()))
            .collect();
        let plan = group_plan(&changes, &levels(&graph).expect("acyclic"));
        assert_eq!(
            plan.marathon_steps(),
            json!([
                {"actions": [{"action": "StopApplication", "app": "/g/gone"}]},
                {"actions": [{"action": "StartApplication", "app": "/g/web"},
                             {"action": "StartApplication", "app": "/g/db"}]},
                {"actions": [{"action": "ScaleApplication", "app": "/g/db"}]},
                {"actions": [{"action": "ScaleApplication", "app": "/g/web"}]},
                {"actions": [{"action": "RestartApplication", "app": "/g/api"}]},
            ])
        );
    }

    #[test]
    fn unchanged_apps_add_no_step() {
        let a = app(json!({"id": "a", "cmd": "sleep 1"}));
        let plan = group_plan(&[(Some(a.clone()), Some(a))], &BTreeMap::new());
        assert!(plan.is_empty());
    }
}
