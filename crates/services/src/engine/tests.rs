//! Engine tests: deployments driven by fake offers and status updates.

use meseta_api::scheduler::{IdValue, Offer, TaskStatus};
use meseta_types::{Attributes, Resources, TaskState};
use serde_json::json;

use super::*;

use crate::test_support::app;

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

/// Offer every host once and report every launched task RUNNING (healthy when asked).
fn run_round(
    e: &mut Engine,
    hosts: &[&str],
    round: usize,
    now: f64,
    healthy: Option<bool>,
) -> usize {
    let offers: Vec<Offer> = hosts.iter().map(|h| offer(round, h)).collect();
    let launches = e.offers(&offers, now);
    let mut n = 0;
    for l in launches {
        for t in l.tasks {
            e.on_status(
                &status(t.task_id.as_str(), TaskState::Running, healthy),
                now,
            );
            n += 1;
        }
    }
    e.tick(now);
    n
}

fn kill_all(e: &mut Engine, now: f64) {
    for k in e.take_outputs().kills {
        e.on_status(&status(&k.task_id, TaskState::Killed, None), now);
    }
}

#[test]
fn new_app_deploys_and_completes_after_running() {
    let mut e = Engine::new(1);
    let (r, created) = e
        .put_app(
            app(json!({"id": "web", "cmd": "sleep 100", "cpus": 0.1, "mem": 16, "instances": 3})),
            1.0,
            false,
            true,
        )
        .expect("create");
    assert!(created);
    assert_eq!(
        e.deployments().count(),
        1,
        "deployment stays until tasks run"
    );
    assert!(e.deployment(&r.deployment_id).is_some());
    assert_eq!(run_round(&mut e, &["a"], 1, 2.0, None), 3);
    assert_eq!(e.deployments().count(), 0);
    let out = e.take_outputs();
    let kinds: Vec<&str> = out
        .events
        .iter()
        .filter_map(|v| v["eventType"].as_str())
        .collect();
    assert!(kinds.contains(&"deployment_success"), "{kinds:?}");
    assert!(kinds.contains(&"status_update_event"));
    assert!(e
        .put_app(app(json!({"id": "web", "cmd": "xx"})), 3.0, false, true)
        .is_err());
}

#[test]
fn unique_hostname_places_one_per_host_and_says_why() {
    let mut e = Engine::new(2);
    e.put_app(
        app(
            json!({"id": "u", "cmd": "sleep 1", "cpus": 0.1, "mem": 16, "instances": 4,
                   "constraints": [["hostname", "UNIQUE"]]}),
        ),
        1.0,
        false,
        true,
    )
    .expect("create");
    assert_eq!(run_round(&mut e, &["h1", "h2", "h3"], 1, 2.0, None), 3);
    assert_eq!(run_round(&mut e, &["h1", "h2", "h3"], 2, 3.0, None), 0);
    let q = e.queue_json(3.0);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["count"], 1);
    let why = q[0]["lastUnusedOffers"][0]["reason"][0]
        .as_str()
        .expect("reason");
    assert!(why.contains("UNIQUE"), "{why}");
}

#[test]
fn rolling_restart_keeps_full_health_capacity() {
    let mut e = Engine::new(3);
    let def = json!({"id": "r", "cmd": "sleep 1", "cpus": 0.1, "mem": 16, "instances": 10,
                     "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.2}});
    e.put_app(app(def), 1.0, false, true).expect("create");
    run_round(&mut e, &["a", "b"], 1, 2.0, None);
    assert_eq!(e.deployments().count(), 0);
    e.take_outputs();
    e.restart_app("/r", 3.0, false).expect("restart");
    for round in 0..40 {
        let now = 4.0 + round as f64;
        run_round(&mut e, &["a", "b"], round + 2, now, None);
        let healthy = e
            .instances_of("/r")
            .filter(|i| i.counts(false) && i.goal == Goal::Running)
            .count();
        assert!(healthy >= 10, "round {round}: {healthy} healthy");
        kill_all(&mut e, now);
        if e.deployments().count() == 0 {
            break;
        }
    }
    assert_eq!(e.deployments().count(), 0, "restart finished");
    let cfg = e.app("/r").expect("app").config();
    assert!(e.instances_of("/r").all(|i| *i.config == *cfg));
    assert_eq!(e.instances_of("/r").count(), 10);
}

#[test]
fn failed_task_is_relaunched_after_backoff() {
    let mut e = Engine::new(4);
    e.put_app(
        app(json!({"id": "f", "cmd": "false", "cpus": 0.1, "mem": 16, "backoffSeconds": 5})),
        1.0,
        false,
        true,
    )
    .expect("create");
    let l = e.offers(&[offer(1, "a")], 1.0);
    let t = l[0].tasks[0].task_id.as_str().to_owned();
    e.on_status(&status(&t, TaskState::Failed, None), 2.0);
    assert!(e.offers(&[offer(2, "a")], 3.0).is_empty(), "backed off");
    assert!(!e.wants_offers(3.0));
    let l = e.offers(&[offer(3, "a")], 7.5);
    let t2 = l[0].tasks[0].task_id.as_str();
    assert!(t2.ends_with("._app.2"), "{t2}");
    assert_eq!(
        t2.split("._app.").next(),
        t.split("._app.").next(),
        "same instance"
    );
}

#[test]
fn scale_down_kills_youngest_and_delete_forgets_the_app() {
    let mut e = Engine::new(5);
    e.put_app(
        app(json!({"id": "s", "cmd": "xx", "cpus": 0.1, "mem": 16, "instances": 3})),
        1.0,
        false,
        true,
    )
    .expect("create");
    for (n, now) in [(1, 2.0), (2, 3.0), (3, 4.0)] {
        // One instance per round so they have distinct start times.
        let mut o = offer(n, "a");
        o.resources = Resources::parse("cpus:0.1;mem:16;ports:[31000-31000]").expect("res");
        let launches = e.offers(std::slice::from_ref(&o), now);
        for l in launches {
            for t in l.tasks {
                e.on_status(&status(t.task_id.as_str(), TaskState::Running, None), now);
            }
        }
        e.tick(now);
    }
    let youngest = e
        .instances_of("/s")
        .max_by(|a, b| {
            a.staged_at
                .unwrap_or(0.0)
                .total_cmp(&b.staged_at.unwrap_or(0.0))
        })
        .map(|i| i.id.clone())
        .expect("instance");
    let mut scaled = e.app("/s").expect("app").app.clone();
    scaled.instances = 2;
    e.put_app(scaled, 5.0, false, false).expect("scale");
    let kills = e.take_outputs().kills;
    assert_eq!(kills.len(), 1);
    assert!(kills[0].task_id.starts_with(&*youngest));
    e.on_status(&status(&kills[0].task_id, TaskState::Killed, None), 6.0);
    e.tick(6.0);
    assert_eq!(e.deployments().count(), 0);
    e.delete_app("/s", 7.0, false).expect("delete");
    assert!(e.app("/s").is_none(), "hidden at once");
    kill_all(&mut e, 8.0);
    e.tick(8.0);
    assert!(e.app_record("/s").is_none());
    assert!(e.take_outputs().forget_apps.contains("/s"));
}

#[test]
fn change_during_deployment_is_locked_unless_forced() {
    let mut e = Engine::new(6);
    e.put_app(
        app(json!({"id": "l", "cmd": "xx", "cpus": 0.1, "mem": 16})),
        1.0,
        false,
        true,
    )
    .expect("create");
    let err = e.restart_app("/l", 2.0, false).expect_err("locked");
    assert!(matches!(err, EngineError::Locked(_)));
    assert!(e.restart_app("/l", 2.0, true).is_ok());
    assert_eq!(e.deployments().count(), 1);
}

#[test]
fn unhealthy_kill_relaunches_and_health_is_shown() {
    let mut e = Engine::new(7);
    e.put_app(
        app(
            json!({"id": "h", "cmd": "xx", "cpus": 0.1, "mem": 16, "portDefinitions": [{"port": 0}],
                   "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0}]}),
        ),
        1.0,
        false,
        true,
    )
    .expect("create");
    let l = e.offers(&[offer(1, "a")], 1.0);
    let task = &l[0].tasks[0];
    let hc = task.health_check.as_ref().expect("health check sent");
    assert_eq!(hc["type"], "HTTP");
    assert_eq!(hc["http"]["port"], 31000);
    let t = task.task_id.as_str().to_owned();
    e.on_status(&status(&t, TaskState::Running, None), 2.0);
    e.tick(2.0);
    assert_eq!(e.deployments().count(), 1, "waits for health");
    e.on_status(&status(&t, TaskState::Running, Some(true)), 3.0);
    e.tick(3.0);
    assert_eq!(e.deployments().count(), 0);
    let mut k = status(&t, TaskState::Killed, Some(false));
    k.reason = Some(status::HEALTH_KILL_REASON.into());
    e.on_status(&k, 4.0);
    let st = e.app("/h").expect("app");
    assert!(st.last_task_failure.is_some());
    assert!(e.instances_of("/h").all(|i| i.needs_launch()));
}

#[test]
fn canary_then_promote_rolls_everything() {
    let mut e = Engine::new(8);
    e.put_app(
        app(json!({"id": "c", "cmd": "v1", "cpus": 0.1, "mem": 16, "instances": 4})),
        1.0,
        false,
        true,
    )
    .expect("create");
    run_round(&mut e, &["a"], 1, 2.0, None);
    let v2 = app(json!({"id": "c", "cmd": "v2", "cpus": 0.1, "mem": 16, "instances": 4}));
    e.start_canary("/c", v2, 1, None, 3.0).expect("canary");
    for round in 0..10 {
        let now = 4.0 + round as f64;
        run_round(&mut e, &["a"], round + 2, now, None);
        kill_all(&mut e, now);
    }
    assert_eq!(e.canary_json("/c").expect("canary")["state"], "holding");
    assert_eq!(e.instances_of("/c").filter(|i| i.canary).count(), 1);
    assert_eq!(e.instances_of("/c").count(), 4);
    e.promote_canary("/c", 20.0).expect("promote");
    for round in 0..20 {
        let now = 21.0 + round as f64;
        run_round(&mut e, &["a"], round + 20, now, None);
        kill_all(&mut e, now);
    }
    assert_eq!(e.deployments().count(), 0);
    assert_eq!(e.app("/c").expect("app").app.cmd.as_deref(), Some("v2"));
    let cfg = e.app("/c").expect("app").config();
    assert!(e.instances_of("/c").all(|i| *i.config == *cfg));
    assert_eq!(e.instances_of("/c").count(), 4);
}

#[test]
fn rollback_deployment_restores_the_previous_definition() {
    let mut e = Engine::new(9);
    e.put_app(
        app(json!({"id": "b", "cmd": "v1", "cpus": 0.1, "mem": 16})),
        1.0,
        false,
        true,
    )
    .expect("create");
    run_round(&mut e, &["a"], 1, 2.0, None);
    let (r, _) = e
        .put_app(
            app(json!({"id": "b", "cmd": "v2", "cpus": 0.1, "mem": 16})),
            3.0,
            false,
            false,
        )
        .expect("update");
    let back = e
        .cancel_deployment(&r.deployment_id, false, 4.0)
        .expect("rollback");
    assert!(back.is_some());
    assert_eq!(e.app("/b").expect("app").app.cmd.as_deref(), Some("v1"));
}

#[test]
fn restored_engine_resumes_a_deployment() {
    let mut e = Engine::new(10);
    e.put_app(
        app(json!({"id": "p", "cmd": "xx", "cpus": 0.1, "mem": 16, "instances": 2})),
        1.0,
        false,
        true,
    )
    .expect("create");
    let launched = e.offers(&[offer(1, "a")], 1.0);
    let tasks: Vec<String> = launched[0]
        .tasks
        .iter()
        .map(|t| t.task_id.as_str().to_owned())
        .collect();
    // Persist everything, as the shell would, and restore.
    let apps: Vec<AppState> = e.apps.values().cloned().collect();
    let insts: Vec<(String, Instance)> = e
        .instances
        .iter()
        .flat_map(|(a, m)| m.values().map(move |i| (a.clone(), (**i).clone())))
        .collect();
    let deps: Vec<Deployment> = e.deployments.values().cloned().collect();
    let mut r = Engine::restore(11, apps, insts, deps);
    assert_eq!(r.deployments().count(), 1);
    assert!(
        r.offers(&[offer(2, "a")], 2.0).is_empty(),
        "nothing launched twice"
    );
    for t in &tasks {
        r.on_status(&status(t, TaskState::Running, None), 3.0);
    }
    r.tick(3.0);
    assert_eq!(r.deployments().count(), 0);
}

#[test]
fn zone_constraints_use_the_offers_fault_domain() {
    let mut e = Engine::new(12);
    e.put_app(
        app(
            json!({"id": "z", "cmd": "sleep 1", "cpus": 0.1, "mem": 16, "instances": 3,
                   "constraints": [["@zone", "UNIQUE"]]}),
        ),
        1.0,
        false,
        true,
    )
    .expect("create");
    let offers: Vec<Offer> = [("a", "z1"), ("b", "z1"), ("c", "z2")]
        .iter()
        .map(|(h, z)| {
            let mut o = offer(1, h);
            o.domain =
                Some(json!({"fault_domain": {"region": {"name": "r"}, "zone": {"name": z}}}));
            o
        })
        .collect();
    let placed: usize = e.offers(&offers, 2.0).iter().map(|l| l.tasks.len()).sum();
    assert_eq!(placed, 2, "one per zone");
    let q = e.queue_json(2.0);
    assert!(q[0]["lastUnusedOffers"][0]["reason"][0]
        .as_str()
        .is_some_and(|r| r.contains("@zone")));
}

#[test]
fn kills_of_decommissioned_instances_can_be_sent_again() {
    let mut e = Engine::new(13);
    e.put_app(
        app(json!({"id": "k", "cmd": "sleep 1", "cpus": 0.1, "mem": 16, "instances": 1})),
        1.0,
        false,
        true,
    )
    .expect("create");
    run_round(&mut e, &["a"], 1, 2.0, None);
    e.delete_app("/k", 3.0, false).expect("delete");
    let first = e.take_outputs().kills;
    assert_eq!(first.len(), 1);
    // The kill was lost: it is still pending until the task ends.
    assert_eq!(e.pending_kills(), first);
    e.on_status(&status(&first[0].task_id, TaskState::Killed, None), 4.0);
    assert!(e.pending_kills().is_empty());
}

#[test]
fn instances_share_their_version_config_agent_and_host_strings() {
    let mut e = Engine::new(14);
    e.put_app(
        app(json!({"id": "s", "cmd": "sleep 1", "cpus": 0.1, "mem": 16, "instances": 6})),
        1.0,
        false,
        true,
    )
    .expect("create");
    run_round(&mut e, &["a", "b"], 1, 2.0, None);
    let insts: Vec<&Instance> = e.instances_of("/s").collect();
    assert_eq!(insts.len(), 6);
    let first = insts[0];
    for i in &insts {
        assert!(Arc::ptr_eq(&i.version, &first.version));
        assert!(Arc::ptr_eq(&i.config, &first.config));
        assert!(i.active());
        // The map key is the instance's own id.
        let (key, _) = e.instances["/s"]
            .get_key_value(&*i.id)
            .expect("keyed by id");
        assert!(Arc::ptr_eq(key, &i.id));
    }
    let on_a: Vec<&&Instance> = insts
        .iter()
        .filter(|i| i.host.as_deref() == Some("a"))
        .collect();
    assert!(on_a.len() > 1, "several instances on one agent");
    for i in &on_a {
        let (h, a) = (i.host.as_ref(), i.agent_id.as_ref());
        assert!(Arc::ptr_eq(
            h.expect("host"),
            on_a[0].host.as_ref().expect("host")
        ));
        assert!(Arc::ptr_eq(
            a.expect("agent"),
            on_a[0].agent_id.as_ref().expect("agent")
        ));
    }
}

#[test]
fn tasks_are_found_until_terminal_and_stale_updates_are_killed() {
    let mut e = Engine::new(15);
    e.put_app(
        app(json!({"id": "t/x", "cmd": "sleep 1", "cpus": 0.1, "mem": 16, "instances": 1})),
        1.0,
        false,
        true,
    )
    .expect("create");
    // `/t_x` (not a valid id, but possible in a record) has the same safe id as `/t/x`: both
    // are candidates for their instance ids.
    let mut same_safe = app(json!({"id": "tx", "cmd": "sleep 1", "cpus": 0.1, "mem": 16}));
    same_safe.id = "/t_x".into();
    e.put_app(same_safe, 1.0, false, true).expect("create");
    let l = e.offers(&[offer(1, "a")], 2.0);
    let tasks: Vec<String> = l[0]
        .tasks
        .iter()
        .map(|t| t.task_id.as_str().to_owned())
        .collect();
    assert_eq!(tasks.len(), 2);
    let mut owners: Vec<&str> = tasks
        .iter()
        .map(|t| e.task_owner(t).expect("owner").0)
        .collect();
    owners.sort_unstable();
    assert_eq!(owners, ["/t/x", "/t_x"]);
    let t = &tasks[0];
    let (app_id, inst) = e
        .task_owner(t)
        .map(|(a, i)| (a.to_owned(), i.to_owned()))
        .expect("owner");
    assert!(t.starts_with(&inst));
    e.on_status(&status(t, TaskState::Failed, None), 3.0);
    assert_eq!(e.task_owner(t), None, "a terminal task is forgotten");
    e.take_outputs();
    // A late update of the ended task is an unknown task: killed, the instance untouched.
    e.on_status(&status(t, TaskState::Running, None), 4.0);
    let out = e.take_outputs();
    assert_eq!(out.kills.len(), 1);
    assert_eq!(
        e.instance(&app_id, &inst).and_then(|i| i.state),
        Some(TaskState::Failed)
    );
    assert_eq!(e.task_owner("nope._app.1"), None);
    assert_eq!(e.task_owner("garbage"), None);
}

#[test]
fn restored_instances_with_task_ids_of_another_form_are_found() {
    let mut e = Engine::new(16);
    e.put_app(
        app(json!({"id": "o", "cmd": "sleep 1", "cpus": 0.1, "mem": 16, "instances": 1})),
        1.0,
        false,
        true,
    )
    .expect("create");
    e.offers(&[offer(1, "a")], 2.0);
    let apps: Vec<AppState> = e.apps.values().cloned().collect();
    let mut rec: serde_json::Value =
        serde_json::to_value(e.instances_of("/o").next().expect("instance")).expect("encode");
    rec["task_id"] = json!("legacy-task-7");
    rec["id"] = json!("legacy-instance");
    let inst: Instance = serde_json::from_value(rec).expect("decode");
    let mut r = Engine::restore(17, apps, vec![("/o".into(), inst)], Vec::new());
    assert_eq!(
        r.task_owner("legacy-task-7"),
        Some(("/o", "legacy-instance"))
    );
    r.on_status(&status("legacy-task-7", TaskState::Running, None), 3.0);
    assert!(r.take_outputs().kills.is_empty());
    assert_eq!(
        r.instance("/o", "legacy-instance").and_then(|i| i.state),
        Some(TaskState::Running)
    );
    assert_eq!(
        r.live_tasks(),
        vec![("legacy-task-7".to_owned(), Some("agent-a".to_owned()))]
    );
    // Killing it by instance id works too.
    let (killed, _) = r
        .kill_tasks(&["legacy-instance".to_owned()], false, 4.0, false)
        .expect("kill");
    assert_eq!(killed.len(), 1);
    assert_eq!(r.take_outputs().kills[0].task_id, "legacy-task-7");
}

#[test]
fn a_failed_write_is_marked_again_unless_changed_the_other_way_since() {
    let mut e = Engine::new(9);
    e.put_app(
        app(json!({"id": "w", "cmd": "xx", "cpus": 0.1, "mem": 16, "instances": 2})),
        1.0,
        false,
        true,
    )
    .expect("create");
    assert_eq!(run_round(&mut e, &["a"], 1, 2.0, None), 2);
    let failed = e.take_outputs();
    assert!(failed.apps.contains("/w"));
    assert_eq!(failed.instances.len(), 2);
    let gone = failed
        .instances
        .iter()
        .next()
        .cloned()
        .expect("an instance");
    // After the write was taken, one instance is forgotten (its record is to be deleted).
    e.forget_instance(&gone.0, &gone.1);
    e.mark_unwritten(&failed);
    let again = e.take_outputs();
    assert!(again.apps.contains("/w"), "the app record is written again");
    assert_eq!(again.instances.len(), 1, "the forgotten instance is not");
    assert!(!again.instances.contains(&gone));
    assert!(again.forget_instances.contains(&gone), "its deletion stays");
    assert!(
        again.kills.is_empty() && again.events.is_empty(),
        "only records"
    );
}

#[test]
fn waiting_instances_are_not_written_and_a_restore_creates_them_again() {
    let mut e = Engine::new(12);
    e.put_app(
        app(json!({"id": "q", "cmd": "xx", "cpus": 0.1, "mem": 16, "instances": 3})),
        1.0,
        false,
        true,
    )
    .expect("create");
    e.tick(1.0);
    assert_eq!(e.instances_of("/q").count(), 3);
    let out = e.take_outputs();
    assert!(out.instances.is_empty(), "no record for a waiting instance");
    assert!(out.apps.contains("/q") && out.deployments.len() == 1);
    // Restore from what was written: the app and its deployment, no instance.
    let apps: Vec<AppState> = e.apps.values().cloned().collect();
    let deps: Vec<Deployment> = e.deployments.values().cloned().collect();
    let mut r = Engine::restore(13, apps, Vec::new(), deps);
    r.tick(2.0);
    let launched: usize = r
        .offers(&[offer(1, "a")], 2.0)
        .iter()
        .map(|l| l.tasks.len())
        .sum();
    assert_eq!(launched, 3, "the deployment created them again");
    let out = r.take_outputs();
    assert_eq!(out.instances.len(), 3, "placed instances are written");
}

#[test]
fn a_task_start_is_not_written_but_health_and_ends_are() {
    let mut e = Engine::new(14);
    e.put_app(
        app(json!({"id": "s", "cmd": "xx", "cpus": 0.1, "mem": 16, "instances": 1})),
        1.0,
        false,
        true,
    )
    .expect("create");
    let launched = e.offers(&[offer(1, "a")], 1.0);
    let task = launched[0].tasks[0].task_id.as_str().to_owned();
    assert_eq!(
        e.take_outputs().instances.len(),
        1,
        "written before the launch"
    );
    e.on_status(&status(&task, TaskState::Starting, None), 2.0);
    e.on_status(&status(&task, TaskState::Running, None), 2.0);
    let out = e.take_outputs();
    assert!(out.instances.is_empty(), "a start is not written");
    assert!(!out.events.is_empty(), "but announced");
    e.on_status(&status(&task, TaskState::Running, Some(true)), 3.0);
    assert_eq!(e.take_outputs().instances.len(), 1, "a health report is");
    e.on_status(&status(&task, TaskState::Failed, None), 4.0);
    assert_eq!(e.take_outputs().instances.len(), 1, "an end is");
}
