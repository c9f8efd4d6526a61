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
        user: "root".into(),
        name: name.into(),
        failover_timeout: Some(60.0),
        ..FrameworkInfo::default()
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
    // Settle: until nothing new has started for 3 s.
    let mut last = (usize::MAX, usize::MAX);
    let mut stable_since = tokio::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = (
            a_running.load(Ordering::SeqCst),
            b_running.load(Ordering::SeqCst),
        );
        if now != last {
            last = now;
            stable_since = tokio::time::Instant::now();
        } else if stable_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stable allocation: {now:?}"
        );
    }
    assert_eq!(last, (3, 2), "DRF should give A 3 tasks and B 2 tasks");
    ta.abort();
    tb.abort();
    cluster.stop().await;
}
