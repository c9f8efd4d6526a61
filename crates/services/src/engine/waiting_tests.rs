//! Waiting instances are bounded per app: a deployment wanting far more instances than the
//! cluster holds creates (and has stored) only [`MAX_WAITING`] at a time, and the next ones as
//! those are placed; `/v2/queue` still counts every wanted instance.

use meseta_api::scheduler::{IdValue, Offer, TaskStatus};
use meseta_types::{Attributes, Resources, TaskState};
use serde_json::json;

use super::*;
use crate::test_support::app;

fn offer(n: usize, resources: &str) -> Offer {
    Offer {
        id: IdValue::new(format!("o{n}")),
        framework_id: IdValue::new("fw"),
        agent_id: IdValue::new("agent-a"),
        hostname: "a".into(),
        resources: Resources::parse(resources).expect("res"),
        attributes: Attributes::default(),
        ..Offer::default()
    }
}

fn huge(instances: u32) -> App {
    app(
        json!({"id": "huge", "cmd": "sleep 100", "cpus": 0.001, "mem": 1, "disk": 0,
               "portDefinitions": [], "instances": instances}),
    )
}

fn queue_count(e: &Engine, now: f64) -> u64 {
    e.queue_json(now)[0]["count"].as_u64().expect("count")
}

#[test]
fn a_million_instance_app_creates_a_bounded_number_and_stores_none_until_placed() {
    let mut e = Engine::new(1);
    e.put_app(huge(1_000_000), 1.0, false, true)
        .expect("create");
    e.tick(1.0);
    assert_eq!(e.instances_of("/huge").count(), MAX_WAITING);
    let out = e.take_outputs();
    assert!(
        out.instances.is_empty(),
        "waiting instances are not written"
    );
    assert!(
        out.deployments.len() == 1,
        "the deployment that recreates them is"
    );
    assert_eq!(queue_count(&e, 1.0), 1_000_000);
    assert!(e.wants_offers(1.0));
    // More ticks and requests create nothing more while nothing is placed.
    e.tick(2.0);
    e.tick(3.0);
    assert_eq!(e.instances_of("/huge").count(), MAX_WAITING);
    assert!(e.take_outputs().instances.is_empty());
}

#[test]
fn placed_instances_make_room_for_the_next_ones_within_one_batch_of_offers() {
    let mut e = Engine::new(2);
    e.put_app(huge(1_000), 1.0, false, true).expect("create");
    // One offer holds every instance: all are placed from it, not MAX_WAITING per offer.
    let launches = e.offers(&[offer(1, "cpus:4;mem:4096;disk:10")], 2.0);
    let tasks: Vec<String> = launches
        .iter()
        .flat_map(|l| l.tasks.iter().map(|t| t.task_id.as_str().to_owned()))
        .collect();
    assert_eq!(tasks.len(), 1_000);
    for t in &tasks {
        e.on_status(
            &TaskStatus::new(IdValue::new(t), TaskState::Running, 0.0),
            3.0,
        );
    }
    e.tick(3.0);
    assert_eq!(e.deployments().count(), 0, "the deployment completed");
    assert!(e.queue_json(3.0).is_empty());
}

#[test]
fn a_small_agent_takes_what_fits_and_the_rest_stays_a_count() {
    let mut e = Engine::new(3);
    e.put_app(huge(1_000_000), 1.0, false, true)
        .expect("create");
    // Ten fit.
    let launches = e.offers(&[offer(1, "cpus:0.01;mem:100;disk:10")], 2.0);
    assert_eq!(launches.iter().map(|l| l.tasks.len()).sum::<usize>(), 10);
    e.tick(2.0);
    let waiting = e.instances_of("/huge").filter(|i| i.needs_launch()).count();
    assert_eq!(waiting, MAX_WAITING, "the placed ones were replaced");
    assert_eq!(e.instances_of("/huge").count(), MAX_WAITING + 10);
    assert_eq!(queue_count(&e, 2.0), 1_000_000 - 10);
}

#[test]
fn restoring_forgets_never_launched_instances_past_the_bound() {
    let mut first = Engine::new(4);
    first
        .put_app(huge(2_000), 1.0, false, true)
        .expect("create");
    let st = first.app("/huge").cloned().expect("app");
    let deployments: Vec<Deployment> = first.deployments().cloned().collect();
    // Records as an engine without the bound wrote them: every instance waiting.
    let waiting: Vec<(String, Instance)> = (0..2_000)
        .map(|n| {
            let id: Arc<str> = format!("huge.instance-{n}").into();
            let i = Instance::waiting(id, "v".into(), "c".into(), false, true);
            ("/huge".to_owned(), i)
        })
        .collect();
    let mut e = Engine::restore(5, vec![st], waiting, deployments);
    assert_eq!(e.instances_of("/huge").count(), MAX_WAITING);
    let out = e.take_outputs();
    assert_eq!(out.forget_instances.len(), 2_000 - MAX_WAITING);
    assert_eq!(queue_count(&e, 2.0), 2_000);
}

#[test]
fn a_docker_app_waits_for_an_agent_with_docker_and_queue_says_why() {
    let mut e = Engine::new(4);
    let web = app(json!({"id": "web", "cpus": 0.1, "mem": 32, "instances": 1,
        "container": {"type": "DOCKER", "docker": {"image": "img"},
                      "portMappings": [{"containerPort": 80, "hostPort": 0}]},
        "networks": [{"mode": "container/bridge"}]}));
    e.put_app(web, 1.0, false, true).expect("create");
    e.tick(1.0);
    let plain = offer(1, "cpus:4;mem:4096;ports:[31000-31010]");
    assert!(e.offers(&[plain], 2.0).is_empty(), "no engine: not placed");
    let q = serde_json::Value::from(e.queue_json(2.0)).to_string();
    assert!(q.contains("docker:true"), "{q}");
    let mut with_docker = offer(2, "cpus:4;mem:4096;ports:[31000-31010]");
    with_docker.attributes = Attributes::parse("docker:true").expect("attrs");
    let launches = e.offers(&[with_docker], 3.0);
    let task = &launches[0].tasks[0];
    let c = task.container.as_ref().expect("container");
    let d = c.docker.as_ref().expect("docker");
    assert_eq!(d.network(), meseta_api::container::DockerNetwork::Bridge);
    assert_eq!(d.port_mappings[0].host_port, 31000);
    assert_eq!(d.port_mappings[0].container_port, 80);
    assert_eq!(
        task.resources.ranges("ports").values().collect::<Vec<_>>(),
        vec![31000]
    );
    let cmd = task.command.as_ref().expect("command");
    assert!(
        !cmd.shell && cmd.value.is_none(),
        "the image's own command: {cmd:?}"
    );
}

fn waiting_of(e: &Engine, app: &str) -> usize {
    e.waiting.get(app).copied().unwrap_or(0)
}

#[test]
fn waiting_counts_follow_placement_failure_backoff_and_scale_down() {
    let mut e = Engine::new(6);
    let web = |n: u32| {
        app(
            json!({"id": "web", "cmd": "sleep 100", "cpus": 1, "mem": 32, "disk": 0,
                   "portDefinitions": [], "instances": n}),
        )
    };
    e.put_app(web(3), 1.0, false, true).expect("create");
    e.tick(1.0);
    assert_eq!(waiting_of(&e, "/web"), 3);
    assert!(e.wants_offers(1.0));
    // Two fit: one still waits.
    let launches = e.offers(&[offer(1, "cpus:2;mem:1024;disk:10")], 2.0);
    let tasks: Vec<String> = launches
        .iter()
        .flat_map(|l| l.tasks.iter().map(|t| t.task_id.as_str().to_owned()))
        .collect();
    assert_eq!(tasks.len(), 2);
    assert_eq!(waiting_of(&e, "/web"), 1);
    assert_eq!(e.waiting, e.count_waiting());
    for t in &tasks {
        e.on_status(
            &TaskStatus::new(IdValue::new(t), TaskState::Running, 0.0),
            3.0,
        );
    }
    assert_eq!(waiting_of(&e, "/web"), 1);
    // A failed task waits again, behind the app's backoff.
    e.on_status(
        &TaskStatus::new(IdValue::new(&tasks[0]), TaskState::Failed, 0.0),
        4.0,
    );
    assert_eq!(waiting_of(&e, "/web"), 2);
    assert_eq!(e.waiting, e.count_waiting());
    assert!(!e.wants_offers(4.0), "backed off");
    let end = e.next_backoff_end(4.0).expect("a backoff end");
    assert!(e.wants_offers(end));
    // Scaling to zero decommissions everything: nothing waits.
    e.put_app(web(0), 5.0, true, false).expect("scale");
    e.tick(5.0);
    assert_eq!(waiting_of(&e, "/web"), 0);
    assert!(!e.wants_offers(100.0));
    assert!(e.next_backoff_end(5.0).is_none());
    assert_eq!(e.waiting, e.count_waiting());
    e.take_outputs();
}
