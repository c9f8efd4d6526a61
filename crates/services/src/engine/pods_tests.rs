//! Pod scenarios of the engine: fake offers and status updates of container tasks.

use meseta_api::marathon::pod::PodDefinition;
use meseta_api::scheduler::{IdValue, Offer, TaskStatus};
use meseta_types::{Attributes, Resources, TaskState};
use serde_json::json;

use super::pods::PodLaunchOrder;
use super::*;
use crate::pod::pod_from_body;

fn offer(n: usize, host: &str) -> Offer {
    Offer {
        id: IdValue::new(format!("o{n}-{host}")),
        framework_id: IdValue::new("fw"),
        agent_id: IdValue::new(format!("agent-{host}")),
        hostname: host.into(),
        resources: Resources::parse("cpus:4;mem:4096;disk:1000;ports:[31000-31099]").expect("res"),
        attributes: Attributes::default(),
        ..Offer::default()
    }
}

fn status(task: &str, state: TaskState, healthy: Option<bool>) -> TaskStatus {
    let mut s = TaskStatus::new(IdValue::new(task), state, 0.0);
    s.healthy = healthy;
    s
}

fn pod(n: u32, extra: serde_json::Value) -> PodDefinition {
    let mut body = json!({"id": "/web", "scaling": {"kind": "fixed", "instances": n}, "containers": [
        {"name": "writer", "resources": {"cpus": 0.1, "mem": 32},
         "exec": {"command": {"shell": "sleep 600"}},
         "volumeMounts": [{"name": "shared", "mountPath": "data"}]},
        {"name": "server", "resources": {"cpus": 0.1, "mem": 32},
         "exec": {"command": {"shell": "sleep 600"}},
         "endpoints": [{"name": "http", "hostPort": 0}],
         "volumeMounts": [{"name": "shared", "mountPath": "data"}]}
    ], "volumes": [{"name": "shared"}]});
    if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            b.insert(k.clone(), v.clone());
        }
    }
    pod_from_body(&body).expect("valid pod")
}

/// Offer each host once; every launched container reports `state` (healthy as given).
fn round(
    e: &mut Engine,
    hosts: &[&str],
    n: usize,
    now: f64,
    state: TaskState,
) -> Vec<PodLaunchOrder> {
    let offers: Vec<Offer> = hosts.iter().map(|h| offer(n, h)).collect();
    let launched = e.pod_offers(&offers.iter().collect::<Vec<_>>(), now);
    for l in &launched {
        for t in &l.tasks {
            e.on_status(&status(t.task_id.as_str(), state, None), now);
        }
    }
    e.tick(now);
    launched
}

/// Report every kill order's task killed.
fn confirm_kills(e: &mut Engine, now: f64) -> usize {
    let kills = e.take_outputs().kills;
    for k in &kills {
        e.on_status(&status(&k.task_id, TaskState::Killed, None), now);
    }
    kills.len()
}

fn stable(e: &Engine, id: &str) -> usize {
    e.pod(id)
        .map(|p| p.instances.values().filter(|i| i.stable()).count())
        .unwrap_or(0)
}

#[test]
fn a_new_pod_launches_one_group_per_instance_and_its_deployment_ends() {
    let mut e = Engine::new(1);
    let change = e
        .put_pod(pod(2, json!({})), true, false, 1.0)
        .expect("create");
    assert!(change.created);
    assert!(e.wants_offers(1.0));
    let out = e.take_outputs();
    assert!(out.pods.contains("/web") && out.revive);
    let launched = round(&mut e, &["a", "b"], 1, 2.0, TaskState::Running);
    assert_eq!(launched.len(), 2, "one instance per offer");
    for l in &launched {
        assert_eq!(l.tasks.len(), 2);
        assert_eq!(l.executor.kind.as_deref(), Some("DEFAULT"));
    }
    assert_eq!(stable(&e, "/web"), 2);
    assert!(
        e.pod("/web").expect("pod").deployment.is_none(),
        "deployment done"
    );
    let st = e.pod_status_json("/web", 3.0).expect("status");
    assert_eq!(st["status"], "STABLE");
    let inst = &st["instances"][0];
    assert_eq!(inst["status"], "STABLE");
    let server = inst["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "server")
        .expect("server")
        .clone();
    assert_eq!(server["endpoints"][0]["name"], "http");
    assert_eq!(server["endpoints"][0]["allocatedHostPort"], 31000);
    assert!(!e.wants_offers(3.0));
}

#[test]
fn a_second_create_conflicts_and_a_change_during_a_deployment_is_locked() {
    let mut e = Engine::new(2);
    e.put_pod(pod(1, json!({})), true, false, 1.0)
        .expect("create");
    assert!(matches!(
        e.put_pod(pod(1, json!({})), true, false, 1.5),
        Err(EngineError::Conflict(_))
    ));
    assert!(matches!(
        e.scale_pod("/web", 3, false, 2.0),
        Err(EngineError::Locked(_))
    ));
    assert!(e.scale_pod("/web", 3, true, 2.0).is_ok(), "force overrides");
    assert!(matches!(
        e.delete_pod("/nope", false, 2.0),
        Err(EngineError::UnknownPod(_))
    ));
    let app = crate::test_support::app(json!({"id": "/web", "cmd": "sleep 1"}));
    assert!(
        matches!(
            e.put_app(app, 3.0, false, true),
            Err(EngineError::Conflict(_))
        ),
        "an app may not take a pod's id"
    );
}

#[test]
fn a_failed_container_replaces_its_instance_after_backoff() {
    let mut e = Engine::new(3);
    e.put_pod(pod(1, json!({})), true, false, 1.0)
        .expect("create");
    let launched = round(&mut e, &["a"], 1, 2.0, TaskState::Running);
    let first = launched[0].tasks[0].task_id.as_str().to_owned();
    e.take_outputs();
    e.on_status(&status(&first, TaskState::Failed, None), 3.0);
    let out = e.take_outputs();
    assert_eq!(out.kills.len(), 1, "the other container is killed");
    e.on_status(&status(&out.kills[0].task_id, TaskState::Killed, None), 3.0);
    let p = e.pod("/web").expect("pod");
    assert_eq!(
        p.instances.len(),
        1,
        "the failed one is forgotten, a new one waits"
    );
    assert!(p.backoff.until > 3.0, "backed off");
    assert!(!e.wants_offers(3.0));
    assert!(e.next_backoff_end(3.0).is_some());
    let again = round(&mut e, &["a"], 2, 10.0, TaskState::Running);
    assert_eq!(again.len(), 1, "relaunched after the delay");
    assert_ne!(again[0].tasks[0].task_id.as_str(), first);
    assert_eq!(stable(&e, "/web"), 1);
}

#[test]
fn a_restart_keeps_minimum_health_capacity_throughout() {
    let mut e = Engine::new(4);
    let upgrade = json!({"scheduling": {"upgrade":
        {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0}}});
    e.put_pod(pod(2, upgrade), true, false, 1.0)
        .expect("create");
    round(&mut e, &["a", "b"], 1, 2.0, TaskState::Running);
    assert_eq!(stable(&e, "/web"), 2);
    e.take_outputs();
    e.restart_pod("/web", false, 3.0).expect("restart");
    let mut now = 3.0;
    let mut rounds = 0;
    while e.pod("/web").expect("pod").deployment.is_some() {
        rounds += 1;
        assert!(rounds < 20, "the restart ends");
        confirm_kills(&mut e, now);
        assert!(stable(&e, "/web") >= 1, "at least half stays stable");
        let total = e
            .pod("/web")
            .expect("pod")
            .instances
            .values()
            .filter(|i| i.goal == Goal::Running)
            .count();
        assert!(total <= 2, "never over capacity: {total}");
        now += 1.0;
        round(&mut e, &["a", "b"], rounds + 1, now, TaskState::Running);
    }
    let p = e.pod("/web").expect("pod");
    let version = p.pod.version.clone();
    assert_eq!(p.instances.len(), 2);
    assert!(p
        .instances
        .values()
        .all(|i| Some(&i.version) == version.as_ref()));
}

#[test]
fn an_upgrade_waits_for_health_checks_before_killing_old_instances() {
    let mut e = Engine::new(5);
    let checked = json!({"containers": [
        {"name": "server", "resources": {"cpus": 0.1, "mem": 32},
         "exec": {"command": {"shell": "sleep 600"}},
         "endpoints": [{"name": "http", "hostPort": 0}],
         "healthCheck": {"http": {"endpoint": "http", "path": "/"}}}
    ], "volumes": []});
    e.put_pod(pod(1, checked.clone()), true, false, 1.0)
        .expect("create");
    let l = round(&mut e, &["a"], 1, 2.0, TaskState::Running);
    let task = l[0].tasks[0].task_id.as_str().to_owned();
    assert_eq!(stable(&e, "/web"), 0, "running is not healthy yet");
    assert_eq!(
        e.pod_status_json("/web", 2.0).expect("st")["instances"][0]["status"],
        "DEGRADED"
    );
    e.on_status(&status(&task, TaskState::Running, Some(true)), 2.5);
    assert_eq!(stable(&e, "/web"), 1);
    assert!(e.pod("/web").expect("pod").deployment.is_none());
    e.take_outputs();
    e.restart_pod("/web", false, 3.0).expect("restart");
    let l = round(&mut e, &["a"], 2, 4.0, TaskState::Running);
    assert_eq!(l.len(), 1, "the new instance starts beside the old one");
    assert_eq!(
        e.take_outputs().kills.len(),
        0,
        "the old one stays until the new is healthy"
    );
    e.on_status(
        &status(
            l[0].tasks[0].task_id.as_str(),
            TaskState::Running,
            Some(true),
        ),
        5.0,
    );
    let kills = e.take_outputs().kills;
    assert_eq!(kills.len(), 1);
    assert_eq!(kills[0].task_id, task);
    e.on_status(&status(&task, TaskState::Killed, None), 6.0);
    assert!(e.pod("/web").expect("pod").deployment.is_none());
}

#[test]
fn scale_down_kills_surplus_and_delete_forgets_the_pod_once_all_ended() {
    let mut e = Engine::new(6);
    e.put_pod(pod(3, json!({})), true, false, 1.0)
        .expect("create");
    round(&mut e, &["a", "b", "c"], 1, 2.0, TaskState::Running);
    assert_eq!(stable(&e, "/web"), 3);
    e.take_outputs();
    let change = e.scale_pod("/web", 1, false, 3.0).expect("scale");
    assert_eq!(change.pod.version, e.pod("/web").expect("pod").pod.version);
    assert_eq!(
        confirm_kills(&mut e, 3.0),
        4,
        "two instances of two containers"
    );
    assert_eq!(stable(&e, "/web"), 1);
    assert!(e.pod("/web").expect("pod").deployment.is_none());
    e.delete_pod("/web", false, 4.0).expect("delete");
    assert!(e.pod("/web").is_none(), "hidden at once");
    assert!(e.pod_record("/web").is_some(), "kept while instances die");
    assert_eq!(confirm_kills(&mut e, 5.0), 2);
    assert!(e.pod_record("/web").is_none());
    assert!(e.take_outputs().forget_pods.contains("/web"));
}

#[test]
fn killing_an_instance_replaces_it_and_restore_continues() {
    let mut e = Engine::new(7);
    e.put_pod(pod(1, json!({})), true, false, 1.0)
        .expect("create");
    round(&mut e, &["a"], 1, 2.0, TaskState::Running);
    let inst = e
        .pod("/web")
        .expect("pod")
        .instances
        .keys()
        .next()
        .cloned()
        .expect("inst");
    e.take_outputs();
    let killed = e
        .kill_pod_instances("/web", std::slice::from_ref(&inst), 3.0)
        .expect("kill");
    assert_eq!(killed.len(), 1);
    assert_eq!(killed[0]["id"], inst);
    confirm_kills(&mut e, 3.0);
    // The record as persisted, restored into a new engine (a master restart).
    let saved = e.pod_record("/web").cloned().expect("record");
    let mut r = Engine::new(8).with_pods(vec![saved]);
    assert!(
        r.wants_offers(4.0),
        "the replacement waits in the restored engine"
    );
    let l = round(&mut r, &["b"], 2, 4.0, TaskState::Running);
    assert_eq!(l.len(), 1);
    let p = r.pod("/web").expect("pod");
    assert_eq!(p.instances.len(), 1);
    assert!(!p.instances.contains_key(&inst));
    assert!(r.live_tasks().len() == 2, "both containers are reconciled");
}

#[test]
fn placement_constraints_hold_for_pods() {
    let mut e = Engine::new(9);
    let unique = json!({"scheduling": {"placement":
        {"constraints": [{"fieldName": "hostname", "operator": "UNIQUE"}]}}});
    e.put_pod(pod(2, unique), true, false, 1.0).expect("create");
    let first = round(&mut e, &["a"], 1, 2.0, TaskState::Running);
    assert_eq!(first.len(), 1);
    let second = round(&mut e, &["a"], 2, 3.0, TaskState::Running);
    assert!(
        second.is_empty(),
        "UNIQUE hostname keeps the second off host a"
    );
    let third = round(&mut e, &["b"], 3, 4.0, TaskState::Running);
    assert_eq!(third.len(), 1);
}
