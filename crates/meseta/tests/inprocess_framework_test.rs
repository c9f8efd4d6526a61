//! The in-process framework contract (offers, accept with launch, decline with filters, kill, status
//! updates with acknowledgement) on a `testkit` cluster: master and agents in this process on
//! loopback ports, tasks as real processes.

mod common;

use std::time::Duration;

use meseta_api::scheduler::{
    Accept, Acknowledge, CallKind, Capability, CommandInfo, Decline, Event, Filters, FrameworkInfo,
    IdValue, Kill, Offer, TaskInfo, TaskStatus,
};
use meseta_master::FrameworkConnection;
use meseta_testkit::{Cluster, ClusterOptions};
use meseta_types::{Resources, TaskState};

const WAIT: Duration = Duration::from_secs(15);

fn info(name: &str, failover: f64) -> FrameworkInfo {
    FrameworkInfo {
        user: String::new(),
        name: name.into(),
        failover_timeout: Some(failover),
        capabilities: Some(vec![Capability {
            kind: "PARTITION_AWARE".into(),
        }]),
        ..FrameworkInfo::default()
    }
}

/// A framework under test: its connection and the offers it has not used yet.
struct Fw {
    conn: FrameworkConnection,
    offers: Vec<Offer>,
}

impl Fw {
    fn call(&self, kind: CallKind) {
        self.conn.call(kind).expect("call accepted");
    }

    async fn next(&mut self) -> Event {
        let ev = tokio::time::timeout(WAIT, self.conn.next_event())
            .await
            .expect("an event in time")
            .expect("stream open");
        if let Event::Offers { offers } = &ev {
            self.offers.extend(offers.offers.iter().cloned());
        }
        ev
    }

    /// Every offer held now, waiting for at least one.
    async fn offers(&mut self) -> Vec<Offer> {
        while self.offers.is_empty() {
            self.next().await;
        }
        std::mem::take(&mut self.offers)
    }

    /// The next update of `task`, acknowledged when it carries a uuid.
    async fn update(&mut self, task: &str) -> TaskStatus {
        loop {
            if let Event::Update { update } = self.next().await {
                if let Some(ack) = Acknowledge::for_status(&update.status) {
                    self.call(CallKind::Acknowledge { acknowledge: ack });
                }
                if update.status.task_id.as_str() == task {
                    return update.status;
                }
            }
        }
    }

    async fn update_in(&mut self, task: &str, state: TaskState) -> TaskStatus {
        loop {
            let s = self.update(task).await;
            if s.state == state {
                return s;
            }
            assert!(
                !s.state.is_terminal(),
                "task {task} ended {:?} waiting for {state:?}: {s:?}",
                s.state
            );
        }
    }
}

async fn subscribe(cluster: &Cluster, name: &str, failover: f64) -> Fw {
    let conn = cluster
        .master
        .subscribe(info(name, failover))
        .await
        .expect("subscribe");
    Fw {
        conn,
        offers: Vec::new(),
    }
}

fn task(id: &str, offer: &Offer, resources: &str, cmd: &str) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: IdValue::new(id),
        agent_id: Some(offer.agent_id.clone()),
        resources: Resources::parse(resources).expect("resources"),
        command: Some(CommandInfo::shell(cmd)),
        ..TaskInfo::default()
    }
}

fn launch(offer: &Offer, tasks: Vec<TaskInfo>) -> CallKind {
    CallKind::Accept {
        accept: Accept::launch(offer.id.clone(), tasks, 0.0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_launch_ack_decline_and_kill() {
    require_root!();
    let cluster = Cluster::start(ClusterOptions::new(common::MESETA).agents(2))
        .await
        .expect("cluster");
    let mut fw = subscribe(&cluster, "contract", 60.0).await;
    assert!(matches!(fw.next().await, Event::Subscribed { .. }));
    let first = fw.offers().await;
    assert_eq!(first.len(), 2, "one offer per agent: {first:?}");
    assert!(first.iter().all(|o| o.resources.cpus() == 4.0));

    // Decline agent B for a minute; launch on agent A.
    let (a, b) = (&first[0], &first[1]);
    fw.call(CallKind::Decline {
        decline: Decline {
            offer_ids: vec![b.id.clone()],
            filters: Some(Filters {
                refuse_seconds: Some(60.0),
            }),
        },
    });
    fw.call(launch(
        a,
        vec![task("t1", a, "cpus:1;mem:64", "sleep 1000")],
    ));
    let running = fw.update_in("t1", TaskState::Running).await;
    assert_eq!(running.agent_id.as_ref(), Some(&a.agent_id));
    assert!(running.uuid.is_some(), "agent-born updates carry a uuid");

    // Only agent A's remainder comes back (B is filtered): 3 cpus.
    let again = fw.offers().await;
    assert!(again.iter().all(|o| o.agent_id == a.agent_id), "{again:?}");
    assert_eq!(again[0].resources.cpus(), 3.0);

    fw.call(CallKind::Kill {
        kill: Kill {
            task_id: IdValue::new("t1"),
            agent_id: None,
        },
    });
    let killed = fw.update_in("t1", TaskState::Killed).await;
    assert_eq!(killed.source.as_deref(), Some("SOURCE_EXECUTOR"));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_launches_get_error_or_dropped_and_leak_nothing() {
    require_root!();
    let cluster = Cluster::start(ClusterOptions::new(common::MESETA))
        .await
        .expect("cluster");
    let mut fw = subscribe(&cluster, "invalid", 60.0).await;
    let o = fw.offers().await.remove(0);

    // Bigger than the offer → TASK_ERROR without uuid; the valid one in the same call runs.
    fw.call(launch(
        &o,
        vec![
            task("big", &o, "cpus:64;mem:64", "true"),
            task("ok", &o, "cpus:1;mem:32", "sleep 1000"),
        ],
    ));
    let big = fw.update("big").await;
    assert_eq!(big.state, TaskState::Error);
    assert_eq!(big.reason.as_deref(), Some("REASON_TASK_INVALID"));
    assert!(big.uuid.is_none());
    fw.update_in("ok", TaskState::Running).await;

    // A stale (already used) offer → TASK_DROPPED.
    fw.call(launch(&o, vec![task("stale", &o, "cpus:1;mem:32", "true")]));
    let stale = fw.update("stale").await;
    assert_eq!(
        stale.state,
        TaskState::Dropped,
        "a PARTITION_AWARE framework sees DROPPED"
    );
    assert_eq!(stale.reason.as_deref(), Some("REASON_INVALID_OFFERS"));

    // A duplicate task id → TASK_ERROR.
    let o2 = fw.offers().await.remove(0);
    fw.call(launch(&o2, vec![task("ok", &o2, "cpus:1;mem:32", "true")]));
    assert_eq!(fw.update("ok").await.state, TaskState::Error);

    let slaves = cluster.get_json("/master/slaves").await.expect("slaves");
    assert_eq!(
        slaves["slaves"][0]["used_resources"]["cpus"], 1.0,
        "only the running task is used"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_gone_past_failover_timeout_has_its_tasks_killed() {
    require_root!();
    let cluster = Cluster::start(ClusterOptions::new(common::MESETA))
        .await
        .expect("cluster");
    let mut fw = subscribe(&cluster, "short-lived", 0.5).await;
    let o = fw.offers().await.remove(0);
    fw.call(launch(
        &o,
        vec![task("orphan", &o, "cpus:1;mem:32", "sleep 1000")],
    ));
    fw.update_in("orphan", TaskState::Running).await;
    drop(fw.conn);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let tasks = cluster.get_json("/master/tasks").await.expect("tasks");
        let state = tasks["tasks"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["id"] == "orphan").cloned());
        if state.as_ref().is_some_and(|t| t["state"] == "TASK_KILLED") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task not killed after failover timeout: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = cluster.get_json("/master/state").await.expect("state");
    assert_eq!(state["completed_frameworks"][0]["name"], "short-lived");
    cluster.stop().await;
}
