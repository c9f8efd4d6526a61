//! Custom executors on the agent against a fake master: the executor API's answers to bad
//! calls, the event stream (SUBSCRIBED, LAUNCH, ACKNOWLEDGED, ERROR, MESSAGE, KILL, SHUTDOWN),
//! the checkpointed updates it forwards, and an executor that never subscribes.
//! The executor process is a plain `sleep` (the test speaks the executor API in its place).
//! Needs the `meseta` binary for the shim; skips with a reason without it (fails under CI=true).

mod fake_master;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use fake_master::FakeMaster;
use meseta_agent::{Agent, AgentConfig, AgentHandle};
use meseta_api::agent::{AgentMessage, Command, ExecutorSpec, MasterMessage, TaskSpec};
use meseta_api::recordio::Decoder;
use meseta_api::scheduler::{FrameworkInfo, IdValue, TaskInfo};
use meseta_types::{FrameworkId, Resources, TaskId, TaskState};
use serde_json::{json, Value};

fn meseta_exe() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let p = target.join("debug/meseta");
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{} not built and CI=true (run `cargo build -p meseta`)",
        p.display()
    );
    println!("skipping: {} not built", p.display());
    None
}

async fn agent(master: &FakeMaster, dir: &Path, exe: PathBuf, reg_timeout: u64) -> AgentHandle {
    let mut cfg = AgentConfig::new(master.url(), dir, "127.0.0.1:0".parse().expect("addr"));
    cfg.resources = Some(Resources::parse("cpus:2;mem:1024;disk:100").expect("res"));
    cfg.meseta_exe = exe;
    cfg.cgroup_root = format!("meseta-exec-test-{}", uuid::Uuid::new_v4().simple());
    cfg.executor_registration_timeout = Duration::from_secs(reg_timeout);
    let a = Agent::start(cfg).await.expect("agent starts");
    a.wait_registered(Duration::from_secs(10))
        .await
        .expect("registers");
    a
}

fn task(id: &str, grace_ns: i64) -> Box<TaskSpec> {
    let info = serde_json::from_value(json!({
        "executor_id": {"value": "e1"}, "framework_id": {"value": "fw-1"},
        "command": {"value": "sleep 100"},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}],
        "shutdown_grace_period": {"nanoseconds": grace_ns}
    }))
    .expect("info");
    Box::new(TaskSpec {
        task_id: TaskId::new(id),
        framework_id: FrameworkId::new("fw-1"),
        name: id.into(),
        resources: Resources::parse("cpus:0.1;mem:32").expect("res"),
        command: Command {
            shell: true,
            value: String::new(),
            arguments: vec![],
        },
        env: vec![],
        user: None,
        kill_grace_secs: None,
        role: "*".into(),
        health_check: None,
        fetch: vec![],
        volumes: vec![],
        container: None,
        executor: Some(Arc::new(ExecutorSpec {
            info,
            framework_info: FrameworkInfo {
                id: Some(IdValue::new("fw-1")),
                name: "t".into(),
                ..FrameworkInfo::default()
            },
            command: Command {
                shell: true,
                value: "sleep 100".into(),
                arguments: vec![],
            },
            env: vec![],
            user: None,
            fetch: vec![],
            checkpoint: true,
        })),
        task_info: Some(Box::new(TaskInfo {
            name: id.into(),
            task_id: IdValue::new(id),
            data: Some("aGk=".into()),
            ..TaskInfo::default()
        })),
        group: vec![],
        secrets: vec![],
    })
}

/// A subscription's event stream, decoded.
struct Stream {
    resp: reqwest::Response,
    dec: Decoder,
}

impl Stream {
    async fn next(&mut self) -> Value {
        loop {
            if let Ok(Some(rec)) = self.dec.next_record() {
                return serde_json::from_slice(&rec).expect("json event");
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.resp.chunk())
                .await
                .expect("an event within 20 s")
                .expect("stream readable")
                .expect("stream open");
            self.dec.feed(&chunk);
        }
    }

    async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let ev = self.next().await;
            if ev["type"] == kind {
                return ev;
            }
        }
    }
}

fn call(kind: &str, payload: Value) -> Value {
    let mut v = json!({"type": kind, "framework_id": {"value": "fw-1"},
        "executor_id": {"value": "e1"}});
    for (k, val) in payload.as_object().expect("object") {
        v[k] = val.clone();
    }
    v
}

async fn post(url: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("post")
}

fn b64_uuid() -> (String, String) {
    let u = uuid::Uuid::new_v4();
    (
        base64::engine::general_purpose::STANDARD.encode(u.as_bytes()),
        u.to_string(),
    )
}

#[tokio::test]
async fn executor_api_streams_events_and_refuses_bad_calls() {
    let Some(exe) = meseta_exe() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut master = FakeMaster::start().await;
    let agent = agent(&master, dir.path(), exe, 60).await;
    let url = format!("http://{}/api/v1/executor", agent.http_addr());
    master.send(MasterMessage::LaunchTask(task("t1", 500_000_000)));

    // Malformed calls get 4xx with a message; nothing is half-done.
    let r = reqwest::Client::new()
        .post(&url)
        .header("Content-Type", "application/json")
        .body("{garbage")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("invalid executor call"));
    let r = reqwest::Client::new()
        .post(&url)
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 415);
    let mut unknown = call("HEARTBEAT", json!({}));
    unknown["executor_id"] = json!({"value": "nope"});
    assert_eq!(post(&url, &unknown).await.status(), 400);

    // SUBSCRIBE: SUBSCRIBED (with the ids pymesos checks), then the waiting task.
    let sub = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let r = post(&url, &call("SUBSCRIBE", json!({"subscribe": {}}))).await;
            if r.status() == 200 {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("executor known");
    let mut s = Stream {
        resp: sub,
        dec: Decoder::new(),
    };
    let ev = s.next().await;
    assert_eq!(ev["type"], "SUBSCRIBED");
    assert_eq!(
        ev["subscribed"]["executor_info"]["executor_id"]["value"],
        "e1"
    );
    assert_eq!(ev["subscribed"]["framework_info"]["id"]["value"], "fw-1");
    let ev = s.next_of("LAUNCH").await;
    assert_eq!(ev["launch"]["task"]["task_id"]["value"], "t1");
    assert_eq!(ev["launch"]["task"]["data"], "aGk=");
    // The master sends the ExecutorInfo once, beside the task: the agent puts it back.
    assert_eq!(
        ev["launch"]["task"]["executor"]["executor_id"]["value"],
        "e1"
    );
    assert_eq!(
        ev["launch"]["task"]["executor"]["framework_id"]["value"],
        "fw-1"
    );

    // Bad updates: no uuid, TASK_STAGING → 400.
    let no_uuid = call(
        "UPDATE",
        json!({"update": {"status": {"task_id": {"value": "t1"},
        "state": "TASK_RUNNING"}}}),
    );
    assert_eq!(post(&url, &no_uuid).await.status(), 400);
    let (u0, _) = b64_uuid();
    let staging = call(
        "UPDATE",
        json!({"update": {"status": {"task_id": {"value": "t1"},
        "state": "TASK_STAGING", "uuid": u0}}}),
    );
    assert_eq!(post(&url, &staging).await.status(), 400);
    // An update for a task it was not given: an ERROR event, nothing forwarded.
    let (u1, _) = b64_uuid();
    let foreign = call(
        "UPDATE",
        json!({"update": {"status": {"task_id": {"value": "other"},
        "state": "TASK_RUNNING", "uuid": u1}}}),
    );
    assert_eq!(post(&url, &foreign).await.status(), 202);
    let ev = s.next_of("ERROR").await;
    assert!(ev["error"]["message"]
        .as_str()
        .expect("msg")
        .contains("other"));

    // A good update: checkpointed, forwarded with the executor's uuid and id, ACKNOWLEDGED.
    let (u2, hyphenated) = b64_uuid();
    let running = call(
        "UPDATE",
        json!({"update": {"status": {"task_id": {"value": "t1"},
        "state": "TASK_RUNNING", "uuid": u2, "source": "SOURCE_EXECUTOR", "data": "ZA=="}}}),
    );
    assert_eq!(post(&url, &running).await.status(), 202);
    let ev = s.next_of("ACKNOWLEDGED").await;
    assert_eq!(ev["acknowledged"]["uuid"], u2.as_str());
    let up = master.next_update().await;
    assert_eq!(up.task_id.as_str(), "t1");
    assert_eq!(up.state, TaskState::Running);
    assert_eq!(up.uuid, hyphenated);
    assert_eq!(up.executor_id.as_deref(), Some("e1"));
    assert_eq!(up.data.as_deref(), Some("ZA=="));
    let log = std::fs::read_to_string(dir.path().join("tasks/t1/updates.log")).expect("log");
    assert!(
        log.contains(&hyphenated),
        "the update is checkpointed in its task's log: {log}"
    );
    master.ack(&up);

    // Messages both ways.
    let msg = call("MESSAGE", json!({"message": {"data": "aGVsbG8="}}));
    assert_eq!(post(&url, &msg).await.status(), 202);
    let data = master
        .next_matching("an executor message", |m| match m {
            AgentMessage::ExecutorMessage {
                executor_id, data, ..
            } if executor_id == "e1" => Some(data),
            _ => None,
        })
        .await;
    assert_eq!(data, "aGVsbG8=");
    master.send(MasterMessage::FrameworkMessage {
        framework_id: FrameworkId::new("fw-1"),
        executor_id: "e1".into(),
        data: "cGluZw==".into(),
    });
    assert_eq!(s.next_of("MESSAGE").await["message"]["data"], "cGluZw==");

    // A kill goes to the executor.
    master.send(MasterMessage::KillTask {
        task_id: TaskId::new("t1"),
        grace_secs: Some(2.0),
    });
    let ev = s.next_of("KILL").await;
    assert_eq!(ev["kill"]["task_id"]["value"], "t1");
    assert_eq!(
        ev["kill"]["kill_policy"]["grace_period"]["nanoseconds"],
        2_000_000_000_i64
    );

    // SHUTDOWN, then (it does not exit) the kill after the 0.5 s grace: the task it did not
    // finish ends KILLED (a kill was asked), and the master hears of the executor's end.
    master.send(MasterMessage::ShutdownExecutor {
        framework_id: FrameworkId::new("fw-1"),
        executor_id: "e1".into(),
    });
    s.next_of("SHUTDOWN").await;
    let up = master.next_update().await;
    assert_eq!(up.state, TaskState::Killed, "{up:?}");
    assert_eq!(up.reason.as_deref(), Some("REASON_EXECUTOR_TERMINATED"));
    master.ack(&up);
    let status = master
        .next_matching("the executor's exit", |m| match m {
            AgentMessage::ExecutorExited { status, .. } => Some(status),
            _ => None,
        })
        .await;
    assert_ne!(status, 0, "killed by a signal");
    agent.shutdown(true).await;
}

#[tokio::test]
async fn executor_that_never_subscribes_is_killed_and_its_task_lost() {
    let Some(exe) = meseta_exe() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut master = FakeMaster::start().await;
    let agent = agent(&master, dir.path(), exe, 1).await;
    master.send(MasterMessage::LaunchTask(task("t2", 1_000_000_000)));
    let up = master.next_update().await;
    assert_eq!(up.task_id.as_str(), "t2");
    assert_eq!(up.state, TaskState::Lost, "{up:?}");
    assert_eq!(
        up.reason.as_deref(),
        Some("REASON_EXECUTOR_REGISTRATION_TIMEOUT")
    );
    assert_eq!(up.executor_id.as_deref(), Some("e1"));
    master.ack(&up);
    master
        .next_matching("the executor's exit", |m| match m {
            AgentMessage::ExecutorExited { executor_id, .. } => Some(executor_id),
            _ => None,
        })
        .await;
    agent.shutdown(true).await;
}
