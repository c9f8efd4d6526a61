//! Dominant Resource Fairness through the real master: the example of the DRF paper (Ghodsi et
//! al.), two frameworks whose tasks need ⟨1 cpu, 4 GB⟩ and ⟨3 cpus, 1 GB⟩ on a 9-cpu / 18-GB
//! cluster end with 3 and 2 tasks.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meseta_api::scheduler::{
    Accept, Acknowledge, CallKind, CommandInfo, Decline, Event, Filters, FrameworkInfo, IdValue,
    Launch, Operation, TaskInfo,
};
use meseta_master::FrameworkConnection;
use meseta_testkit::{Cluster, ClusterOptions};
use meseta_types::{Resources, TaskState};

/// A framework that launches one task of `want` per offer that holds it, and turns away offers
/// that cannot hold one for a minute. Counts its running tasks.
async fn drive(
    mut fw: FrameworkConnection,
    name: &'static str,
    want: Resources,
    running: Arc<AtomicUsize>,
) {
    let mut n = 0;
    while let Some(ev) = fw.next_event().await {
        match ev {
            Event::Offers { offers } => {
                for o in offers.offers {
                    if o.resources.contains(&want) {
                        n += 1;
                        let task = TaskInfo {
                            name: format!("{name}-{n}"),
                            task_id: IdValue::new(format!("{name}-{n}")),
                            agent_id: Some(o.agent_id.clone()),
                            resources: want.clone(),
                            command: Some(CommandInfo::shell("sleep 1000")),
                            ..TaskInfo::default()
                        };
                        let accept = Accept {
                            offer_ids: vec![o.id],
                            operations: vec![Operation::Launch {
                                launch: Launch {
                                    task_infos: vec![task],
                                },
                            }],
                            filters: Some(Filters {
                                refuse_seconds: Some(0.0),
                            }),
                        };
                        let _ = fw.call(CallKind::Accept { accept });
                    } else {
                        let decline = Decline {
                            offer_ids: vec![o.id],
                            filters: Some(Filters {
                                refuse_seconds: Some(60.0),
                            }),
                        };
                        let _ = fw.call(CallKind::Decline { decline });
                    }
                }
            }
            Event::Update { update } => {
                if update.status.state == TaskState::Running {
                    running.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(ack) = Acknowledge::for_status(&update.status) {
                    let _ = fw.call(CallKind::Acknowledge { acknowledge: ack });
                }
            }
            _ => {}
        }
    }
}

fn info(name: &str) -> FrameworkInfo {
    FrameworkInfo {
        user: String::new(),
        name: name.into(),
        failover_timeout: Some(60.0),
        ..FrameworkInfo::default()
    }
}

fn info_in(name: &str, role: &str) -> FrameworkInfo {
    FrameworkInfo {
        role: Some(role.into()),
        ..info(name)
    }
}

/// Wait until the two counters have not moved for 3 s; return them.
async fn settle(a: &AtomicUsize, b: &AtomicUsize) -> (usize, usize) {
    let mut last = (usize::MAX, usize::MAX);
    let mut stable_since = tokio::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = (a.load(Ordering::SeqCst), b.load(Ordering::SeqCst));
        if now != last {
            last = now;
            stable_since = tokio::time::Instant::now();
        } else if stable_since.elapsed() > Duration::from_secs(3) {
            return last;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stable allocation: {now:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drf_paper_example_ends_with_three_and_two_tasks() {
    require_root!();
    let opts = ClusterOptions::new(common::MESETA)
        .agent_resources("cpus:9;mem:18432;disk:1024")
        .expect("resources");
    let cluster = Cluster::start(opts).await.expect("cluster");
    let a_running = Arc::new(AtomicUsize::new(0));
    let b_running = Arc::new(AtomicUsize::new(0));
    let a = cluster.master.subscribe(info("drf-a")).await.expect("a");
    let b = cluster.master.subscribe(info("drf-b")).await.expect("b");
    let ta = tokio::spawn(drive(
        a,
        "a",
        Resources::parse("cpus:1;mem:4096").expect("a"),
        a_running.clone(),
    ));
    let tb = tokio::spawn(drive(
        b,
        "b",
        Resources::parse("cpus:3;mem:1024").expect("b"),
        b_running.clone(),
    ));
    let last = settle(&a_running, &b_running).await;
    assert_eq!(last, (3, 2), "DRF should give A 3 tasks and B 2 tasks");
    ta.abort();
    tb.abort();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_guarantee_is_met_on_a_full_cluster_before_others_grow() {
    require_root!();
    let opts = ClusterOptions::new(common::MESETA)
        .agent_resources("cpus:4;mem:4096;disk:1024")
        .expect("resources");
    let cluster = Cluster::start(opts).await.expect("cluster");
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/master/quota", cluster.url))
        .body(
            r#"{"role":"prod","guarantee":[{"name":"cpus","type":"SCALAR","scalar":{"value":2}}]}"#,
        )
        .send()
        .await
        .expect("set quota");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);

    // A greedy framework in the default role takes what it is offered, 1 cpu at a time.
    let greedy_running = Arc::new(AtomicUsize::new(0));
    let prod_running = Arc::new(AtomicUsize::new(0));
    let g = cluster
        .master
        .subscribe(info("greedy"))
        .await
        .expect("greedy");
    let tg = tokio::spawn(drive(
        g,
        "g",
        Resources::parse("cpus:1;mem:256").expect("g"),
        greedy_running.clone(),
    ));
    let (greedy_alone, _) = settle(&greedy_running, &prod_running).await;
    assert_eq!(
        greedy_alone, 2,
        "the 2 guaranteed cpus are held back for prod"
    );

    let p = cluster
        .master
        .subscribe(info_in("prod-fw", "prod"))
        .await
        .expect("prod");
    let tp = tokio::spawn(drive(
        p,
        "p",
        Resources::parse("cpus:1;mem:256").expect("p"),
        prod_running.clone(),
    ));
    let (greedy, prod) = settle(&greedy_running, &prod_running).await;
    assert_eq!(
        (greedy, prod),
        (2, 2),
        "prod gets its guarantee; greedy did not grow into it"
    );

    let roles: serde_json::Value = cluster.get_json("/master/roles").await.expect("roles");
    let prod_role = roles["roles"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "prod").cloned())
        .expect("prod role");
    assert_eq!(prod_role["quota"]["guarantee"]["cpus"], 2.0);
    assert_eq!(prod_role["allocated"]["cpus"], 2.0);
    tg.abort();
    tp.abort();
    cluster.stop().await;
}
