//! A custom executor written against the raw executor HTTP API survives an agent `kill -9`:
//! the restarted agent waits for it, it SUBSCRIBEs again (with what it holds unacknowledged),
//! and the task it runs is still killed through it (KILL event → its TASK_KILLED update).
//!
//! The executor is this test binary itself: the agent starts it with `MESETA_TEST_RAW_EXECUTOR`
//! set, and [`executor_process_entry`] then plays the executor (blocking HTTP, RecordIO decoding,
//! resubscription with backoff); run normally, that entry does nothing.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::Cluster;
use meseta_api::client::subscription::SchedulerSession;
use meseta_api::client::MasterClient;
use meseta_api::recordio::Decoder;
use meseta_api::scheduler::{
    Accept, Acknowledge, CallKind, Event, FrameworkInfo, IdValue, Kill, TaskInfo, TaskStatus,
};
use meseta_types::TaskState;
use serde_json::{json, Value};

const EXECUTOR_ENV: &str = "MESETA_TEST_RAW_EXECUTOR";

/// The executor's side (runs only inside the process the agent started).
#[test]
fn executor_process_entry() {
    if std::env::var(EXECUTOR_ENV).is_err() {
        return;
    }
    raw_executor::run();
    std::process::exit(0);
}

mod raw_executor {
    use super::*;

    struct Exec {
        endpoint: String,
        framework_id: String,
        executor_id: String,
        log: PathBuf,
        http: reqwest::blocking::Client,
        /// Tasks given and not yet acknowledged-terminal, by id.
        tasks: BTreeMap<String, Value>,
        /// Updates sent and not acknowledged, by uuid.
        unacked: BTreeMap<String, Value>,
    }

    pub fn run() {
        let env = |k: &str| std::env::var(k).unwrap_or_default();
        let mut ex = Exec {
            endpoint: env("MESOS_AGENT_ENDPOINT"),
            framework_id: env("MESOS_FRAMEWORK_ID"),
            executor_id: env("MESOS_EXECUTOR_ID"),
            log: PathBuf::from(env("MESOS_SANDBOX")).join("raw-executor.log"),
            http: reqwest::blocking::Client::builder()
                .timeout(None)
                .build()
                .expect("client"),
            tasks: BTreeMap::new(),
            unacked: BTreeMap::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut subscriptions = 0;
        while Instant::now() < deadline {
            match ex.subscribe() {
                Ok(resp) => {
                    subscriptions += 1;
                    ex.note(&format!("subscribed {subscriptions}"));
                    if ex.follow(resp) {
                        return; // SHUTDOWN
                    }
                    ex.note("stream ended");
                }
                Err(e) => ex.note(&format!("subscribe failed: {e}")),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    impl Exec {
        fn note(&self, line: &str) {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
            {
                let _ = writeln!(f, "{line}");
            }
        }

        fn url(&self) -> String {
            format!("http://{}/api/v1/executor", self.endpoint)
        }

        fn call(&self, kind: &str, payload: Value) -> Value {
            let mut v = json!({"type": kind, "framework_id": {"value": self.framework_id},
                "executor_id": {"value": self.executor_id}});
            if let Some(obj) = payload.as_object() {
                for (k, val) in obj {
                    v[k] = val.clone();
                }
            }
            v
        }

        fn subscribe(&self) -> Result<reqwest::blocking::Response, String> {
            let body = self.call(
                "SUBSCRIBE",
                json!({"subscribe": {
                    "unacknowledged_tasks": self.tasks.values().collect::<Vec<_>>(),
                    "unacknowledged_updates": self.unacked.values().collect::<Vec<_>>(),
                }}),
            );
            let resp = self
                .http
                .post(self.url())
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .body(body.to_string())
                .send()
                .map_err(|e| e.to_string())?;
            if resp.status() != 200 {
                return Err(format!("status {}", resp.status()));
            }
            Ok(resp)
        }

        /// Read events until the stream ends; true on SHUTDOWN.
        fn follow(&mut self, mut resp: reqwest::blocking::Response) -> bool {
            let mut dec = Decoder::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = match resp.read(&mut buf) {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => n,
                };
                dec.feed(&buf[..n]);
                while let Ok(Some(rec)) = dec.next_record() {
                    let Ok(ev) = serde_json::from_slice::<Value>(&rec) else {
                        continue;
                    };
                    if self.handle(ev) {
                        return true;
                    }
                }
            }
        }

        fn handle(&mut self, ev: Value) -> bool {
            let kind = ev["type"].as_str().unwrap_or_default().to_string();
            self.note(&format!("event {kind}"));
            match kind.as_str() {
                "LAUNCH" => {
                    let task = ev["launch"]["task"].clone();
                    let id = task["task_id"]["value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    self.tasks.insert(id.clone(), task);
                    self.update(&id, "TASK_RUNNING");
                }
                "KILL" => {
                    let id = ev["kill"]["task_id"]["value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    self.update(&id, "TASK_KILLED");
                }
                "ACKNOWLEDGED" => {
                    let uuid = ev["acknowledged"]["uuid"].as_str().unwrap_or_default();
                    self.unacked.remove(uuid);
                }
                "SHUTDOWN" => return true,
                _ => {}
            }
            false
        }

        fn update(&mut self, task_id: &str, state: &str) {
            let uuid =
                base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes());
            let status = json!({"task_id": {"value": task_id}, "state": state,
                "source": "SOURCE_EXECUTOR", "uuid": uuid,
                "executor_id": {"value": self.executor_id},
                "timestamp": 1.0});
            let update = json!({"status": status});
            self.unacked.insert(uuid, update.clone());
            let sent = self
                .http
                .post(self.url())
                .header("Content-Type", "application/json")
                .body(self.call("UPDATE", json!({"update": update})).to_string())
                .timeout(Duration::from_secs(5))
                .send();
            self.note(&format!(
                "update {task_id} {state}: {:?}",
                sent.map(|r| r.status())
            ));
        }
    }
}

fn cluster() -> Cluster {
    let root = nix::unistd::Uid::effective().is_root();
    let flags: &[&str] = if root { &["--allow-root"] } else { &[] };
    Cluster::with_flags(
        1,
        30.0,
        "cpus:4;mem:4096;disk:2048;ports:[34100-34199]",
        &[],
        flags,
    )
}

fn executor_dir(work: &Path) -> Option<PathBuf> {
    let fws = std::fs::read_dir(work.join("executors")).ok()?;
    fws.flatten()
        .map(|fw| fw.path().join("raw"))
        .find(|d| d.is_dir())
}

fn log_of(c: &Cluster) -> String {
    executor_dir(&c.agent_work_dir(0))
        .and_then(|d| std::fs::read_to_string(d.join("sandbox/raw-executor.log")).ok())
        .unwrap_or_default()
}

/// Next UPDATE for `task`, acknowledging what carries a uuid.
async fn next_update(s: &mut SchedulerSession, task: &str) -> TaskStatus {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(60), s.next_event())
            .await
            .expect("an event within 60 s")
            .expect("stream")
            .expect("stream open");
        if let Event::Update { update } = ev {
            if let Some(ack) = Acknowledge::for_status(&update.status) {
                s.call(CallKind::Acknowledge { acknowledge: ack })
                    .await
                    .expect("ack");
            }
            if update.status.task_id.as_str() == task {
                return update.status;
            }
        }
    }
}

#[test]
fn raw_executor_resubscribes_after_agent_kill9_and_still_runs_its_task() {
    let mut c = cluster();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = MasterClient::new(c.url()).expect("client");
    let user = if nix::unistd::Uid::effective().is_root() {
        "root".to_string()
    } else {
        std::env::var("USER").unwrap_or_default()
    };
    let exe = std::env::current_exe().expect("exe");
    let mut session = rt.block_on(async {
        let mut s = client
            .subscribe(FrameworkInfo {
                user,
                name: "raw-executor-test".into(),
                checkpoint: Some(true),
                ..FrameworkInfo::default()
            })
            .await
            .expect("subscribe");
        let offer = loop {
            let ev = tokio::time::timeout(Duration::from_secs(30), s.next_event())
                .await
                .expect("offers in time")
                .expect("stream")
                .expect("open");
            if let Event::Offers { offers } = ev {
                if let Some(o) = offers.offers.into_iter().next() {
                    break o;
                }
            }
        };
        let task: TaskInfo = serde_json::from_value(json!({
            "name": "raw", "task_id": {"value": "rt1"}, "agent_id": offer.agent_id,
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                          {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
            "executor": {"executor_id": {"value": "raw"},
                "command": {"value": format!("exec '{}' executor_process_entry --exact --nocapture --test-threads=1", exe.display()),
                    "environment": {"variables": [{"name": EXECUTOR_ENV, "value": "1"}]}},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}}]}
        }))
        .expect("task");
        s.call(CallKind::Accept {
            accept: Accept::launch(offer.id, vec![task], 0.0),
        })
        .await
        .expect("accept");
        let st = next_update(&mut s, "rt1").await;
        assert_eq!(st.state, TaskState::Running, "{st:?}");
        assert_eq!(st.executor_id.as_ref().map(IdValue::as_str), Some("raw"));
        s
    });
    let dir = executor_dir(&c.agent_work_dir(0)).expect("executor dir");
    let pid: i32 = std::fs::read_to_string(dir.join("task.pid"))
        .expect("executor pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(log_of(&c).contains("subscribed 1"), "{}", log_of(&c));

    // kill -9 the agent: the executor lives on and retries.
    if let Some(a) = c.agents[0].as_mut() {
        a.kill9();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(common::alive(pid), "the executor died with the agent");
    c.start_agent(0);
    common::wait_for(
        "the executor to subscribe again",
        Duration::from_secs(30),
        || log_of(&c).contains("subscribed 2").then_some(()),
    );

    // The task still runs through the executor: a kill goes to it, and its update comes back.
    rt.block_on(async {
        session
            .call(CallKind::Kill {
                kill: Kill {
                    task_id: IdValue::new("rt1"),
                    agent_id: None,
                },
            })
            .await
            .expect("kill");
        // The RUNNING update may come again first: its acknowledgement may not have reached
        // the agent before it was killed, and an unacknowledged update is resent.
        let st = loop {
            let st = next_update(&mut session, "rt1").await;
            if st.state != TaskState::Running {
                break st;
            }
        };
        assert_eq!(st.state, TaskState::Killed, "{st:?}\n{}", log_of(&c));
        assert_eq!(st.source.as_deref(), Some("SOURCE_EXECUTOR"));
    });
    assert!(common::alive(pid), "the executor still runs after the kill");
    let log = log_of(&c);
    assert!(log.contains("event KILL"), "{log}");
}
