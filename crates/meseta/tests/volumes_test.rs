//! Persistent volumes through the real master and agent: `/master/create-volumes` on reserved
//! disk (with the 4xx Mesos gives on bad input), a task of the role writes into its volume, the
//! volume is offered back to the role after the task ends, a second task reads what the first
//! wrote, a DOCKER task gets the volume bind-mounted under its sandbox, and
//! `/master/destroy-volumes` deletes the directory on the agent.

mod common;

mod ops_common;

use std::path::Path;
use std::time::Duration;

use meseta_api::scheduler::{
    Accept, Acknowledge, CallKind, CommandInfo, Decline, Event, Filters, IdValue, Launch, Offer,
    Operation, TaskInfo,
};
use meseta_master::FrameworkConnection;
use meseta_testkit::{Cluster, ClusterOptions};
use meseta_types::Resources;
use ops_common::{framework_in, next_matching, post_form};
use serde_json::{json, Value};

fn volume_json(id: &str, mb: f64) -> Value {
    json!([{"name": "disk", "type": "SCALAR", "scalar": {"value": mb},
        "reservations": [{"type": "DYNAMIC", "role": "db", "principal": "ops"}],
        "disk": {"persistence": {"id": id, "principal": "ops"},
                 "volume": {"container_path": "data", "mode": "RW"}}}])
}

/// The next offer holding a volume that is still valid; other offers are declined for a second.
/// Every event already queued is read before an offer is chosen, so an offer rescinded meanwhile
/// (one holding a volume just destroyed) is never used.
async fn offer_with_volume(fw: &mut FrameworkConnection) -> Offer {
    let mut pending: Vec<Offer> = Vec::new();
    loop {
        let first = next_matching(fw, "an offer or a rescind", |ev| match ev {
            Event::Offers { .. } | Event::Rescind { .. } => Some(ev.clone()),
            _ => None,
        })
        .await;
        let mut events = vec![first];
        while let Ok(Some(ev)) = tokio::time::timeout(Duration::ZERO, fw.next_event()).await {
            events.push(ev);
        }
        for ev in events {
            match ev {
                Event::Offers { offers } => pending.extend(offers.offers),
                Event::Rescind { rescind } => pending.retain(|o| o.id != rescind.offer_id),
                Event::Update { update } => {
                    if let Some(ack) = Acknowledge::for_status(&update.status) {
                        fw.call(CallKind::Acknowledge { acknowledge: ack })
                            .expect("acknowledge");
                    }
                }
                _ => {}
            }
        }
        let chosen = pending
            .iter()
            .position(|o| o.resources.volumes().count() > 0)
            .map(|i| pending.remove(i));
        let decline = Decline {
            offer_ids: pending.drain(..).map(|o| o.id).collect(),
            filters: Some(Filters {
                refuse_seconds: Some(1.0),
            }),
        };
        if !decline.offer_ids.is_empty() {
            fw.call(CallKind::Decline { decline }).expect("decline");
        }
        if let Some(o) = chosen {
            return o;
        }
    }
}

/// Launch `cmd` on the offer's volume plus a little unreserved cpu and mem.
fn launch_on_volume(fw: &FrameworkConnection, o: Offer, id: &str, cmd: &str) {
    launch_in(fw, o, id, cmd, None);
}

/// [`launch_on_volume`] in a DOCKER container of `image` when one is given.
fn launch_in(fw: &FrameworkConnection, o: Offer, id: &str, cmd: &str, image: Option<&str>) {
    let mut resources = Resources::parse("cpus:0.1;mem:32").expect("resources");
    for v in o.resources.volumes() {
        resources.push(v.clone()).expect("volume");
    }
    let t = TaskInfo {
        name: id.into(),
        task_id: IdValue::new(id),
        agent_id: Some(o.agent_id.clone()),
        resources,
        command: Some(CommandInfo::shell(cmd)),
        container: image.map(|i| {
            serde_json::from_value(json!({"type": "DOCKER", "docker": {"image": i}}))
                .expect("container")
        }),
        ..TaskInfo::default()
    };
    let accept = Accept {
        offer_ids: vec![o.id],
        operations: vec![Operation::Launch {
            launch: Launch {
                task_infos: vec![t],
            },
        }],
        filters: Some(Filters {
            refuse_seconds: Some(0.0),
        }),
    };
    fw.call(CallKind::Accept { accept }).expect("accept");
}

/// Wait for the task's terminal update; panics naming the state and message unless FINISHED.
async fn wait_finished(fw: &mut FrameworkConnection, task: &str) {
    let (state, message) = next_matching(fw, &format!("{task} to end"), |ev| match ev {
        meseta_api::scheduler::Event::Update { update }
            if update.status.task_id.as_str() == task
                && !matches!(
                    update.status.state.as_str(),
                    "TASK_STAGING" | "TASK_STARTING" | "TASK_RUNNING"
                ) =>
        {
            Some((
                update.status.state.as_str().to_string(),
                update.status.message.clone(),
            ))
        }
        _ => None,
    })
    .await;
    assert_eq!(state, "TASK_FINISHED", "{task}: {message:?}");
}

async fn wait_gone(path: &Path) {
    let deadline = tokio::time::Instant::now() + ops_common::WAIT;
    while path.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} still exists",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_outlive_tasks_and_come_back_to_their_role() {
    require_root!();
    let opts = ClusterOptions::new(common::MESETA)
        .agent_resources("cpus:2;mem:1024;disk:1024")
        .expect("resources");
    let cluster = Cluster::start(opts).await.expect("cluster");
    let agent = cluster.agent_id(0).expect("agent id").to_string();
    let create = format!("{}/master/create-volumes", cluster.url);
    let destroy = format!("{}/master/destroy-volumes", cluster.url);
    let reserved = json!([{"name": "disk", "type": "SCALAR", "scalar": {"value": 100.0},
        "reservations": [{"type": "DYNAMIC", "role": "db", "principal": "ops"}]}]);
    let (status, v) = post_form(
        &format!("{}/master/reserve", cluster.url),
        &format!("slaveId={agent}&resources={reserved}"),
    )
    .await;
    assert_eq!(status, 202, "{v}");

    // Bad input gets the 4xx Mesos gives.
    let v1 = volume_json("v1", 64.0);
    for (body, want) in [
        (format!("volumes={v1}"), 400),
        (format!("slaveId={agent}"), 400),
        (format!("slaveId={agent}&volumes=[nope"), 400),
        (format!("slaveId=no-such-agent&volumes={v1}"), 400),
        (format!("slaveId={agent}&volumes={reserved}"), 400),
        (
            format!("slaveId={agent}&volumes={}", volume_json("big", 500.0)),
            409,
        ),
        (format!("slaveId={agent}&volumes={v1}"), 202),
        (format!("slaveId={agent}&volumes={v1}"), 409),
    ] {
        let (status, v) = post_form(&create, &body).await;
        assert_eq!(status, want, "create-volumes {body}: {v}");
    }
    let (status, v) = post_form(
        &destroy,
        &format!("slaveId={agent}&volumes={}", volume_json("nope", 64.0)),
    )
    .await;
    assert_eq!(status, 409, "destroying a volume that does not exist: {v}");
    let slaves = cluster.get_json("/master/slaves").await.expect("slaves");
    let full = &slaves["slaves"][0]["reserved_resources_full"]["db"];
    assert!(
        full.as_array().is_some_and(|a| a
            .iter()
            .any(|r| r["disk"]["persistence"]["id"] == json!("v1"))),
        "{slaves}"
    );

    // Another role is never offered the volume.
    let mut web = cluster
        .master
        .subscribe(framework_in("web", "web"))
        .await
        .expect("web");
    let o = ops_common::next_offer(&mut web).await;
    assert_eq!(o.resources.volumes().count(), 0, "{o:?}");
    drop(web);

    let mut db = cluster
        .master
        .subscribe(framework_in("db", "db"))
        .await
        .expect("db");
    let o = offer_with_volume(&mut db).await;
    let vol = o.resources.volumes().next().expect("volume").clone();
    assert_eq!(vol.persistence_id(), Some("v1"));
    assert_eq!(vol.role, "db");
    launch_on_volume(&db, o, "writer", "echo hello > \"$MESOS_SANDBOX/data/x\"");
    wait_finished(&mut db, "writer").await;
    let dir = cluster.dir.path().join("agent-0/volumes/roles/db/v1");
    assert_eq!(
        std::fs::read_to_string(dir.join("x")).expect("written into the volume"),
        "hello\n"
    );

    // Back to the role after the task ended; a second task reads what the first wrote.
    let o = offer_with_volume(&mut db).await;
    launch_on_volume(
        &db,
        o,
        "reader",
        "test \"$(cat \"$MESOS_SANDBOX/data/x\")\" = hello",
    );
    wait_finished(&mut db, "reader").await;

    // A DOCKER task of the role gets the same volume under its sandbox, as its own user.
    if common::docker::docker_ready() {
        let img = common::docker::Image::build("volumes");
        let o = offer_with_volume(&mut db).await;
        launch_in(
            &db,
            o,
            "in-container",
            "test \"$(cat /mnt/mesos/sandbox/data/x)\" = hello && echo from-container > /mnt/mesos/sandbox/data/y",
            Some(&img.tag),
        );
        wait_finished(&mut db, "in-container").await;
        let o = offer_with_volume(&mut db).await;
        launch_on_volume(
            &db,
            o,
            "after-container",
            "test \"$(cat \"$MESOS_SANDBOX/data/y\")\" = from-container",
        );
        wait_finished(&mut db, "after-container").await;
    }

    // Destroyed (its offer is rescinded): the agent deletes the directory.
    let (status, v) = post_form(&destroy, &format!("slaveId={agent}&volumes={v1}")).await;
    assert_eq!(status, 202, "{v}");
    wait_gone(&dir).await;
    let (status, v) = post_form(&destroy, &format!("slaveId={agent}&volumes={v1}")).await;
    assert_eq!(status, 409, "{v}");
    // The disk is plain reserved disk again: v1 API creates a volume on it anew.
    let call = json!({"type": "CREATE_VOLUMES", "create_volumes": {
        "agent_id": {"value": agent}, "volumes": volume_json("v2", 100.0)}});
    let (status, v) = ops_common::post_json(&format!("{}/api/v1", cluster.url), &call).await;
    assert_eq!(status, 202, "{v}");

    // Inside an ACCEPT: DESTROY the offered volume and CREATE another on the freed disk.
    let o = offer_with_volume(&mut db).await;
    assert_eq!(
        o.resources
            .volumes()
            .next()
            .and_then(|v| v.persistence_id()),
        Some("v2")
    );
    let op = |kind: &str, id: &str| -> Operation {
        let key = kind.to_ascii_lowercase();
        serde_json::from_value(json!({"type": kind, key: {"volumes": volume_json(id, 100.0)}}))
            .expect("operation")
    };
    let accept = Accept {
        offer_ids: vec![o.id],
        operations: vec![op("DESTROY", "v2"), op("CREATE", "v3")],
        filters: Some(Filters {
            refuse_seconds: Some(0.0),
        }),
    };
    db.call(CallKind::Accept { accept }).expect("accept");
    let o = offer_with_volume(&mut db).await;
    let ids: Vec<_> = o
        .resources
        .volumes()
        .filter_map(|v| v.persistence_id())
        .collect();
    assert_eq!(ids, vec!["v3"], "{o:?}");

    let call =
        json!({"type": "DESTROY_VOLUMES", "destroy_volumes": {"agent_id": {"value": agent}}});
    let (status, v) = ops_common::post_json(&format!("{}/api/v1", cluster.url), &call).await;
    assert_eq!(status, 400, "{v}");
    drop(db);
    cluster.stop().await;
}
