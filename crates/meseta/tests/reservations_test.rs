//! Dynamic reservations through the real master and agents: operator `/master/reserve` and
//! `/master/unreserve` (with the 4xx Mesos gives on bad input), offers to the reserved role and
//! not to others, `/master/slaves`, and RESERVE inside an ACCEPT followed by a launch on the
//! reserved resources.

mod common;

mod ops_common;

use meseta_api::scheduler::{Accept, CallKind, Decline, Filters, Operation};
use meseta_testkit::{Cluster, ClusterOptions};
use meseta_types::Resources;
use ops_common::{framework_in, next_offer, post_form, task};
use serde_json::json;

fn res_json(s: &str) -> String {
    serde_json::to_string(&Resources::parse(s).expect("resources")).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_reservations_are_offered_to_their_role_only() {
    require_root!();
    let opts = ClusterOptions::new(common::MESETA)
        .agent_resources("cpus:4;mem:4096;disk:1024")
        .expect("resources");
    let cluster = Cluster::start(opts).await.expect("cluster");
    let agent = cluster.agent_id(0).expect("agent id").to_string();
    let reserve = format!("{}/master/reserve", cluster.url);
    let unreserve = format!("{}/master/unreserve", cluster.url);

    // Bad input gets the 4xx Mesos gives.
    let db1 = res_json("cpus(db):1;mem(db):512");
    for (body, want) in [
        (format!("resources={db1}"), 400),
        (format!("slaveId={agent}"), 400),
        (format!("slaveId={agent}&resources=[nope"), 400),
        (format!("slaveId=no-such-agent&resources={db1}"), 400),
        (
            format!("slaveId={agent}&resources={}", res_json("cpus:1")),
            400,
        ),
        (
            format!("slaveId={agent}&resources={}", res_json("cpus(db):64")),
            409,
        ),
        (format!("slaveId={agent}&resources={db1}"), 202),
    ] {
        let (status, v) = post_form(&reserve, &body).await;
        assert_eq!(status, want, "reserve {body}: {v}");
    }
    let (status, v) = post_form(
        &unreserve,
        &format!("slaveId={agent}&resources={}", res_json("cpus(web):1")),
    )
    .await;
    assert_eq!(status, 409, "unreserving what is not reserved: {v}");

    let slaves = cluster.get_json("/master/slaves").await.expect("slaves");
    let s = &slaves["slaves"][0];
    assert_eq!(s["reserved_resources"]["db"]["cpus"], json!(1.0), "{s}");
    assert_eq!(s["reserved_resources"]["db"]["mem"], json!(512.0), "{s}");
    assert_eq!(s["unreserved_resources"]["cpus"], json!(3.0), "{s}");

    // Another role sees only the unreserved part; it turns it away for a while.
    let mut web = cluster
        .master
        .subscribe(framework_in("web", "web"))
        .await
        .expect("web");
    let o = next_offer(&mut web).await;
    assert!(o.resources.roles().iter().all(|r| r == "*"), "{:?}", o);
    assert_eq!(o.resources.cpus(), 3.0);
    let decline = Decline {
        offer_ids: vec![o.id],
        filters: Some(Filters {
            refuse_seconds: Some(600.0),
        }),
    };
    web.call(CallKind::Decline { decline }).expect("decline");

    // The reserved role gets the reservation (and the rest).
    let mut db = cluster
        .master
        .subscribe(framework_in("db", "db"))
        .await
        .expect("db");
    let o = next_offer(&mut db).await;
    assert_eq!(
        o.resources.reserved("db"),
        Resources::parse("cpus(db):1;mem(db):512").expect("r"),
        "{o:?}"
    );
    // RESERVE inside the ACCEPT, then a task on what was just reserved.
    let reserve_op: Operation = serde_json::from_value(json!({
        "type": "RESERVE",
        "reserve": {"resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0},
             "reservations": [{"type": "DYNAMIC", "role": "db", "principal": "ops"}]}
        ]}
    }))
    .expect("op");
    let t = task("db-1", "cpus(db):2;mem(db):256", &o.agent_id);
    let accept = Accept {
        offer_ids: vec![o.id],
        operations: vec![
            reserve_op,
            Operation::Launch {
                launch: meseta_api::scheduler::Launch {
                    task_infos: vec![t],
                },
            },
        ],
        filters: Some(Filters {
            refuse_seconds: Some(0.0),
        }),
    };
    db.call(CallKind::Accept { accept }).expect("accept");
    ops_common::wait_update(&mut db, "db-1", "TASK_RUNNING").await;
    let slaves = cluster.get_json("/master/slaves").await.expect("slaves");
    let s = &slaves["slaves"][0];
    assert_eq!(s["reserved_resources"]["db"]["cpus"], json!(2.0), "{s}");
    assert_eq!(s["used_resources"]["cpus"], json!(2.0), "{s}");

    // In use: cannot be unreserved.
    let (status, v) = post_form(
        &unreserve,
        &format!("slaveId={agent}&resources={}", res_json("cpus(db):2")),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    // The unused part can, also through the v1 operator API (the task uses 256 of the 512 MB).
    let call = json!({"type": "UNRESERVE_RESOURCES", "unreserve_resources": {
        "agent_id": {"value": agent},
        "resources": serde_json::from_str::<serde_json::Value>(&res_json("mem(db):256")).expect("v")}});
    let (status, v) = ops_common::post_json(&format!("{}/api/v1", cluster.url), &call).await;
    assert_eq!(status, 202, "{v}");
    let slaves = cluster.get_json("/master/slaves").await.expect("slaves");
    let s = &slaves["slaves"][0];
    assert_eq!(s["reserved_resources"]["db"]["mem"], json!(256.0), "{s}");
    assert_eq!(s["reserved_resources"]["db"]["cpus"], json!(2.0), "{s}");
    drop(web);
    drop(db);
    cluster.stop().await;
}
