//! Tasks naming a custom executor on an in-process cluster: what the master refuses
//! (`TASK_ERROR`, nothing launched), the executor's resources counted once however many tasks
//! share it, and SHUTDOWN of the executor ending its tasks and returning its resources.

mod common;

use std::time::Duration;

use meseta_api::scheduler::{
    Accept, Acknowledge, CallKind, Capability, CommandInfo, Event, FrameworkInfo, IdValue, Offer,
    Shutdown, TaskInfo, TaskStatus,
};
use meseta_master::FrameworkConnection;
use meseta_testkit::{Cluster, ClusterOptions};
use meseta_types::{Resources, TaskState};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

struct Fw {
    conn: FrameworkConnection,
    offers: Vec<Offer>,
    failures: Vec<serde_json::Value>,
    updates: Vec<TaskStatus>,
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
        match &ev {
            Event::Offers { offers } => self.offers.extend(offers.offers.iter().cloned()),
            Event::Failure { failure } => self
                .failures
                .push(serde_json::to_value(failure).expect("json")),
            _ => {}
        }
        ev
    }

    async fn offer(&mut self) -> Offer {
        while self.offers.is_empty() {
            self.next().await;
        }
        self.offers.remove(0)
    }

    /// The next update of `task` (updates of other tasks are kept for later).
    async fn update(&mut self, task: &str) -> TaskStatus {
        loop {
            if let Some(i) = self.updates.iter().position(|s| s.task_id.as_str() == task) {
                return self.updates.remove(i);
            }
            if let Event::Update { update } = self.next().await {
                if let Some(ack) = Acknowledge::for_status(&update.status) {
                    self.call(CallKind::Acknowledge { acknowledge: ack });
                }
                self.updates.push(update.status);
            }
        }
    }
}

fn executor(id: &str, cmd: &str, cpus: f64) -> serde_json::Value {
    json!({"executor_id": {"value": id}, "command": {"value": cmd},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]})
}

fn task(id: &str, offer: &Offer, res: &str, exec: Option<serde_json::Value>) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: IdValue::new(id),
        agent_id: Some(offer.agent_id.clone()),
        resources: Resources::parse(res).expect("resources"),
        executor: exec.map(|e| serde_json::from_value(e).expect("executor")),
        ..TaskInfo::default()
    }
}

fn launch(offer: &Offer, tasks: Vec<TaskInfo>) -> CallKind {
    CallKind::Accept {
        accept: Accept::launch(offer.id.clone(), tasks, 0.0),
    }
}

async fn assert_error(fw: &mut Fw, id: &str, why: &str) {
    let st = fw.update(id).await;
    assert_eq!(st.state, TaskState::Error, "{id}: {st:?}");
    assert_eq!(st.reason.as_deref(), Some("REASON_TASK_INVALID"));
    assert!(st.uuid.is_none());
    let msg = st.message.unwrap_or_default();
    assert!(msg.contains(why), "{id}: '{msg}' lacks '{why}'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_tasks_are_validated_counted_once_and_shut_down() {
    if !common::can_isolate() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "needs root and CI=true"
        );
        eprintln!("SKIPPED: needs root to create cgroups");
        return;
    }
    let cluster = Cluster::start(ClusterOptions::new(common::MESETA))
        .await
        .expect("cluster");
    let conn = cluster
        .master
        .subscribe(FrameworkInfo {
            user: String::new(),
            name: "executors".into(),
            failover_timeout: Some(60.0),
            capabilities: Some(vec![Capability {
                kind: "PARTITION_AWARE".into(),
            }]),
            ..FrameworkInfo::default()
        })
        .await
        .expect("subscribe");
    let mut fw = Fw {
        conn,
        offers: Vec::new(),
        failures: Vec::new(),
        updates: Vec::new(),
    };
    let o = fw.offer().await;
    assert_eq!(o.resources.cpus(), 4.0);

    // Refused: command and executor both, neither, an executor without command, DEFAULT alone.
    let mut both = task(
        "both",
        &o,
        "cpus:0.5;mem:32",
        Some(executor("e1", "sleep 100", 1.0)),
    );
    both.command = Some(CommandInfo::shell("true"));
    let neither = task("neither", &o, "cpus:0.5;mem:32", None);
    let no_cmd = task(
        "nocmd",
        &o,
        "cpus:0.5;mem:32",
        Some(json!({"executor_id": {"value": "e9"}})),
    );
    let default = task(
        "dflt",
        &o,
        "cpus:0.5;mem:32",
        Some(json!({"executor_id": {"value": "e8"}, "type": "DEFAULT"})),
    );
    // Accepted: two tasks sharing e1 (1 cpu) take 1 + 2 × 1 cpus.
    let t1 = task(
        "t1",
        &o,
        "cpus:1;mem:32",
        Some(executor("e1", "sleep 100", 1.0)),
    );
    let t2 = task(
        "t2",
        &o,
        "cpus:1;mem:32",
        Some(executor("e1", "sleep 100", 1.0)),
    );
    fw.call(launch(&o, vec![both, neither, no_cmd, default, t1, t2]));
    assert_error(&mut fw, "both", "not both").await;
    assert_error(&mut fw, "neither", "not both").await;
    assert_error(&mut fw, "nocmd", "needs a command").await;
    assert_error(&mut fw, "dflt", "CUSTOM").await;

    // What is left comes back: 4 − 3 cpus (the executor counted once).
    let o2 = fw.offer().await;
    assert!(
        (o2.resources.cpus() - 1.0).abs() < 1e-9,
        "left after two tasks + one executor: {}",
        o2.resources
    );
    // e1 again with another ExecutorInfo; a new executor that does not fit with its task.
    let other = task(
        "t3",
        &o2,
        "cpus:0.5;mem:32",
        Some(executor("e1", "sleep 5", 1.0)),
    );
    let too_big = task(
        "t4",
        &o2,
        "cpus:0.5;mem:32",
        Some(executor("e2", "sleep 5", 1.0)),
    );
    fw.call(launch(&o2, vec![other, too_big]));
    assert_error(&mut fw, "t3", "not compatible").await;
    assert_error(&mut fw, "t4", "exceed").await;

    // SHUTDOWN of e1 (it never subscribed: killed at once): its tasks go TASK_GONE (the
    // framework is PARTITION_AWARE), FAILURE names it, and all 4 cpus come back.
    let held = fw.offer().await;
    let agent_id = held.agent_id.clone();
    fw.call(CallKind::Shutdown {
        shutdown: Shutdown {
            executor_id: IdValue::new("e1"),
            agent_id: agent_id.clone(),
        },
    });
    for id in ["t1", "t2"] {
        let st = fw.update(id).await;
        assert_eq!(st.state, TaskState::Gone, "{st:?}");
        assert_eq!(st.reason.as_deref(), Some("REASON_EXECUTOR_TERMINATED"));
        assert_eq!(st.executor_id.as_ref().map(IdValue::as_str), Some("e1"));
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let full = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the resources did not all come back"
        );
        let offered: f64 = fw.offers.iter().map(|o| o.resources.cpus()).sum();
        let failed = fw
            .failures
            .iter()
            .any(|f| f["executor_id"]["value"] == "e1");
        if failed && (offered + held.resources.cpus() - 4.0).abs() < 1e-9 {
            break true;
        }
        fw.next().await;
    };
    assert!(full);
    let failure = fw
        .failures
        .iter()
        .find(|f| f["executor_id"]["value"] == "e1")
        .expect("failure");
    assert_eq!(failure["agent_id"]["value"], agent_id.as_str());
    assert!(failure["status"].is_i64());
    cluster.stop().await;
}

fn group_task(id: &str, offer: &Offer, cmd: &str) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: IdValue::new(id),
        agent_id: Some(offer.agent_id.clone()),
        resources: Resources::parse("cpus:0.5;mem:32").expect("resources"),
        command: Some(CommandInfo::shell(cmd)),
        container: Some(
            serde_json::from_value(json!({"type": "MESOS", "volumes": [{
                "container_path": "shared", "mode": "RW",
                "source": {"type": "SANDBOX_PATH",
                           "sandbox_path": {"type": "PARENT", "path": "shared"}}}]}))
            .expect("container"),
        ),
        ..TaskInfo::default()
    }
}

fn launch_group(offer: &Offer, executor: serde_json::Value, tasks: Vec<TaskInfo>) -> CallKind {
    let op = json!({"type": "LAUNCH_GROUP", "launch_group": {
        "executor": executor,
        "task_group": {"tasks": tasks}}});
    CallKind::Accept {
        accept: Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![serde_json::from_value(op).expect("operation")],
            filters: Some(meseta_api::scheduler::Filters {
                refuse_seconds: Some(0.0),
            }),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_group_shares_a_sandbox_volume_and_one_failure_kills_the_other() {
    if !common::can_isolate() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "needs root and CI=true"
        );
        eprintln!("SKIPPED: needs root to create cgroups");
        return;
    }
    let cluster = Cluster::start(ClusterOptions::new(common::MESETA))
        .await
        .expect("cluster");
    let conn = cluster
        .master
        .subscribe(FrameworkInfo {
            user: String::new(),
            name: "groups".into(),
            failover_timeout: Some(60.0),
            ..FrameworkInfo::default()
        })
        .await
        .expect("subscribe");
    let mut fw = Fw {
        conn,
        offers: Vec::new(),
        failures: Vec::new(),
        updates: Vec::new(),
    };
    let executor = json!({"executor_id": {"value": "g1"}, "type": "DEFAULT",
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]});

    // Bigger than the offer: no task of the group launches.
    let o = fw.offer().await;
    let mut big = group_task("big-a", &o, "sleep 100");
    big.resources = Resources::parse("cpus:64;mem:32").expect("res");
    fw.call(launch_group(
        &o,
        executor.clone(),
        vec![group_task("big-b", &o, "sleep 100"), big],
    ));
    for id in ["big-b", "big-a"] {
        let st = fw.update(id).await;
        assert_eq!(st.state, TaskState::Error, "{st:?}");
        assert_eq!(st.reason.as_deref(), Some("REASON_TASK_GROUP_INVALID"));
    }

    // The writer puts a file in the shared volume and stays; the reader finds it there and
    // fails on purpose (exit 3), which kills the writer.
    let o = fw.offer().await;
    let writer = group_task(
        "writer",
        &o,
        "echo from-writer > shared/msg; exec sleep 100",
    );
    let reader = group_task(
        "reader",
        &o,
        "for i in $(seq 100); do [ -s shared/msg ] && break; sleep 0.1; done; \
         grep -q from-writer shared/msg && exit 3; exit 0",
    );
    fw.call(launch_group(&o, executor, vec![writer, reader]));
    let failed = loop {
        let st = fw.update("reader").await;
        if st.state.is_terminal() {
            break st;
        }
    };
    assert_eq!(failed.state, TaskState::Failed, "{failed:?}");
    assert_eq!(
        failed.message.as_deref(),
        Some("Command exited with status 3"),
        "the reader saw the writer's file in the shared volume"
    );
    let killed = loop {
        let st = fw.update("writer").await;
        if st.state.is_terminal() {
            break st;
        }
    };
    assert_eq!(killed.state, TaskState::Killed, "{killed:?}");

    // Both ended: the default executor is over (FAILURE, status 0) and its resources return.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !fw
        .failures
        .iter()
        .any(|f| f["executor_id"]["value"] == "g1")
    {
        assert!(tokio::time::Instant::now() < deadline, "no FAILURE for g1");
        fw.next().await;
    }
    let f = fw
        .failures
        .iter()
        .find(|f| f["executor_id"]["value"] == "g1")
        .expect("failure");
    assert_eq!(f["status"], 0);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let offered: f64 = fw.offers.iter().map(|o| o.resources.cpus()).sum();
        if (offered - 4.0).abs() < 1e-9 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "resources did not all come back"
        );
        fw.next().await;
    }
    cluster.stop().await;
}
