//! Engine tests of group requests: one deployment per change, dependency order, locks,
//! scaling, replacing and removing.

use meseta_api::scheduler::{IdValue, Offer, TaskStatus};
use meseta_types::{Resources, TaskState};
use serde_json::json;

use super::*;
use crate::group::{resolve_update, GroupUpdate};

fn node(v: serde_json::Value, id: &str) -> GroupNode {
    let u: GroupUpdate = serde_json::from_value(v).expect("parses");
    resolve_update(&u, id).expect("valid")
}

fn offer(n: usize) -> Offer {
    Offer {
        id: IdValue::new(format!("o{n}")),
        framework_id: IdValue::new("fw"),
        agent_id: IdValue::new("agent-a"),
        hostname: "a".into(),
        resources: Resources::parse("cpus:8;mem:8192;disk:1000;ports:[31000-31999]").expect("res"),
        ..Offer::default()
    }
}

/// Offer once and report every launched task RUNNING; the app ids launched.
fn round(e: &mut Engine, n: usize, now: f64) -> Vec<String> {
    let mut apps = Vec::new();
    for l in e.offers(&[offer(n)], now) {
        for t in l.tasks {
            let id = t.task_id.as_str().to_owned();
            e.on_status(
                &TaskStatus::new(IdValue::new(&id), TaskState::Running, now),
                now,
            );
            if let Some((a, _)) = e.task_owner(&id) {
                apps.push(a.to_owned());
            }
        }
    }
    e.tick(now);
    apps
}

fn kill_all(e: &mut Engine, now: f64) {
    for k in e.take_outputs().kills {
        e.on_status(
            &TaskStatus::new(IdValue::new(&k.task_id), TaskState::Killed, now),
            now,
        );
    }
    e.tick(now);
}

fn two_apps() -> GroupNode {
    node(
        json!({"id": "/g", "apps": [
            {"id": "web", "cmd": "sleep 100", "cpus": 0.1, "mem": 16, "dependencies": ["db"]},
            {"id": "db", "cmd": "sleep 100", "cpus": 0.1, "mem": 16},
        ]}),
        "/g",
    )
}

#[test]
fn create_is_one_deployment_and_dependents_start_after_their_dependencies() {
    let mut e = Engine::new(7);
    let r = e.create_group(&two_apps(), 1.0, false).expect("created");
    assert_eq!(e.deployments().count(), 1);
    let d = e.deployment(&r.deployment_id).expect("deployment");
    assert_eq!(
        d.plan.marathon_steps(),
        json!([
            {"actions": [{"action": "StartApplication", "app": "/g/web"},
                         {"action": "StartApplication", "app": "/g/db"}]},
            {"actions": [{"action": "ScaleApplication", "app": "/g/db"}]},
            {"actions": [{"action": "ScaleApplication", "app": "/g/web"}]},
        ])
    );
    let events = e.take_outputs().events;
    assert!(events
        .iter()
        .any(|v| v["eventType"] == "group_change_success"
            && v["groupId"] == "/g"
            && v["version"] == r.version.as_str()));
    assert_eq!(round(&mut e, 1, 2.0), vec!["/g/db"], "web waits for db");
    assert_eq!(round(&mut e, 2, 3.0), vec!["/g/web"]);
    assert_eq!(e.deployments().count(), 0);
    assert_eq!(
        e.create_group(&two_apps(), 4.0, false),
        Err(GroupError::Exists("/g".into()))
    );
}

#[test]
fn a_running_deployment_locks_the_group_unless_forced() {
    let mut e = Engine::new(7);
    e.create_group(&two_apps(), 1.0, false).expect("created");
    let err = e
        .scale_group("/g", 2.0, 2.0, false, false)
        .expect_err("locked");
    assert!(
        matches!(err, GroupError::Engine(EngineError::Locked(_))),
        "{err:?}"
    );
    assert_eq!(e.app("/g/db").map(|a| a.app.instances), Some(1));
    let out = e.scale_group("/g", 2.0, 2.0, true, false).expect("forced");
    assert!(matches!(out, GroupOutcome::Deployed(_)));
    assert_eq!(e.deployments().count(), 1, "the old deployment was stopped");
    assert_eq!(e.app("/g/web").map(|a| a.app.instances), Some(2));
}

#[test]
fn scale_replace_dry_run_and_delete() {
    let mut e = Engine::new(7);
    e.create_group(&two_apps(), 1.0, false).expect("created");
    round(&mut e, 1, 2.0);
    round(&mut e, 2, 3.0);
    let GroupOutcome::DryRun(plan) = e.scale_group("/g", 1.5, 4.0, false, true).expect("dry")
    else {
        panic!("dry run expected");
    };
    assert_eq!(plan.steps.len(), 2, "{plan:?}");
    assert_eq!(
        e.app("/g/db").map(|a| a.app.instances),
        Some(1),
        "dry run changes nothing"
    );
    e.scale_group("/g", 1.5, 4.0, false, false).expect("scaled");
    assert_eq!(e.app("/g/db").map(|a| a.app.instances), Some(2));
    for i in 0..4 {
        round(&mut e, 10 + i, 5.0 + i as f64);
    }
    assert_eq!(e.deployments().count(), 0);
    // Replace: only db stays (with a new command), web goes.
    let only_db = node(
        json!({"apps": [{"id": "db", "cmd": "sleep 200", "cpus": 0.1, "mem": 16}]}),
        "/g",
    );
    let GroupOutcome::Deployed(r) = e.update_group(&only_db, 10.0, false, false).expect("put")
    else {
        panic!("deployed expected");
    };
    assert_eq!(
        e.deployment(&r.deployment_id)
            .map(|d| d.plan.marathon_steps()),
        Some(json!([
            {"actions": [{"action": "StopApplication", "app": "/g/web"}]},
            {"actions": [{"action": "RestartApplication", "app": "/g/db"}]},
        ]))
    );
    assert!(e.app("/g/web").is_none(), "removed apps disappear at once");
    assert_eq!(e.app("/g/db").map(|a| a.app.instances), Some(1));
    kill_all(&mut e, 11.0);
    for i in 0..4 {
        round(&mut e, 20 + i, 12.0 + i as f64);
        kill_all(&mut e, 12.5 + i as f64);
    }
    assert_eq!(e.deployments().count(), 0);
    e.delete_group("/g", 20.0, false).expect("deleted");
    assert!(!e.group_exists("/g"));
    assert_eq!(
        e.delete_group("/g", 21.0, false),
        Err(GroupError::Unknown("/g".into()))
    );
}

#[test]
fn a_cycle_through_existing_apps_is_refused_and_nothing_is_stored() {
    let mut e = Engine::new(7);
    e.create_group(&two_apps(), 1.0, false).expect("created");
    // db now depends on /g/x/web, which depends on db; the kept web is unchanged.
    let cyclic = node(
        json!({"groups": [{"id": "x", "dependencies": ["/g/db"],
                           "apps": [{"id": "web", "cmd": "sleep 1"}]}],
               "apps": [{"id": "db", "cmd": "sleep 100", "dependencies": ["x"]}]}),
        "/g",
    );
    let err = e
        .update_group(&cyclic, 2.0, true, false)
        .expect_err("cycle");
    assert!(matches!(err, GroupError::Invalid(_)), "{err:?}");
    assert!(e
        .app("/g/db")
        .is_some_and(|a| a.app.dependencies.is_empty()));
    assert_eq!(e.deployments().count(), 1);
}

#[test]
fn putting_the_same_apps_again_changes_nothing() {
    let mut e = Engine::new(7);
    e.create_group(&two_apps(), 1.0, false).expect("created");
    let same = node(
        json!({"apps": [{"id": "db", "cmd": "sleep 100", "cpus": 0.1, "mem": 16}]}),
        "/g",
    );
    let GroupOutcome::DryRun(plan) = e.update_group(&same, 2.0, true, true).expect("dry") else {
        panic!("dry run expected");
    };
    assert_eq!(
        plan.marathon_steps(),
        json!([{"actions": [{"action": "StopApplication", "app": "/g/web"}]}]),
    );
    let port = |id: &str| e.app(id).map(|a| a.app.port_definitions[0].port);
    assert_ne!(
        port("/g/db"),
        port("/g/web"),
        "new apps get distinct service ports"
    );
}
