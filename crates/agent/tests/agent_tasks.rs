//! The agent against a fake master: launch, kill, exit codes, logs, restart with reattach.
//! Needs the `meseta` binary (`target/debug/meseta`) for the shim; skips with a reason without it.

mod fake_master;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_master::FakeMaster;
use meseta_agent::{Agent, AgentConfig, AgentHandle};
use meseta_api::agent::{AgentMessage, Command, MasterMessage, TaskSpec};
use meseta_api::operator::LogChunk;
use meseta_types::{FrameworkId, Resources, TaskId, TaskState};

fn meseta_exe() -> Option<PathBuf> {
    // The workspace's target dir, or the one `CARGO_TARGET_DIR` names.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let p = target.join("debug/meseta");
    if p.exists() {
        Some(p)
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} not built and CI=true (run `cargo build -p meseta`)",
            p.display()
        );
        println!(
            "skipping: {} not built (run `cargo build -p meseta`)",
            p.display()
        );
        None
    }
}

/// The first of 11 consecutive ports nothing listened on when first asked (tests never take
/// fixed ports: another test's task may hold one).
fn port_base() -> u16 {
    static BASE: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if first < 65_000
            && (1..=10).all(|i| std::net::TcpListener::bind(("0.0.0.0", first + i)).is_ok())
        {
            return first;
        }
    })
}

/// `begin-end` of the ports `base + from ..= base + to`.
fn ports(from: u16, to: u16) -> String {
    format!("{}-{}", port_base() + from, port_base() + to)
}

fn config(master: &FakeMaster, work_dir: &Path, exe: PathBuf, cgroup_root: &str) -> AgentConfig {
    let mut cfg = AgentConfig::new(master.url(), work_dir, "127.0.0.1:0".parse().expect("addr"));
    cfg.resources = Some(
        Resources::parse(&format!(
            "cpus:2;mem:1024;disk:100;ports:[{}]",
            ports(0, 10)
        ))
        .expect("res"),
    );
    cfg.hostname = Some("test-host".into());
    cfg.meseta_exe = exe;
    cfg.cgroup_root = cgroup_root.to_string();
    cfg.usage_interval = Duration::from_millis(300);
    cfg
}

fn spec(id: &str, cmd: &str, res: &str) -> Box<TaskSpec> {
    Box::new(TaskSpec {
        task_id: TaskId::new(id),
        framework_id: FrameworkId::new("fw-1"),
        name: id.to_string(),
        resources: Resources::parse(res).expect("res"),
        command: Command {
            shell: true,
            value: cmd.to_string(),
            arguments: vec![],
        },
        env: vec![("GREETING".into(), "hi".into())],
        user: None,
        kill_grace_secs: Some(1.0),
        role: "*".to_string(),
        health_check: None,
        fetch: vec![],
        volumes: vec![],
        container: None,
        executor: None,
        task_info: None,
        group: vec![],
        secrets: vec![],
    })
}

fn unique_root() -> String {
    format!("meseta-agent-test-{}", uuid::Uuid::new_v4().simple())
}

/// Removes a test's cgroup tree even when the test fails (after its assertions ran).
struct CgroupGuard(String);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for c in controllers.flatten() {
            remove_tree(&c.path().join(&self.0));
        }
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                remove_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
}

async fn start(master: &FakeMaster, dir: &Path, exe: PathBuf, root: &str) -> AgentHandle {
    let agent = Agent::start(config(master, dir, exe, root))
        .await
        .expect("agent starts");
    agent
        .wait_registered(Duration::from_secs(10))
        .await
        .expect("agent registers");
    agent
}

/// Wait for the next update, check its state and acknowledge it.
async fn expect_state(
    master: &mut FakeMaster,
    task: &str,
    state: TaskState,
) -> meseta_api::agent::StatusUpdate {
    let u = master.next_update().await;
    assert_eq!(u.task_id.as_str(), task, "{u:?}");
    assert_eq!(u.state, state, "{u:?}");
    master.ack(&u);
    u
}

async fn logs(agent: &AgentHandle, task: &str, stream: &str) -> reqwest::Response {
    let url = format!(
        "http://{}/api/meseta/v1/tasks/{task}/logs?stream={stream}",
        agent.http_addr()
    );
    reqwest::get(url).await.expect("logs request")
}

fn cgroup_gone(root: &str) -> bool {
    ["memory", "cpu", "pids"]
        .iter()
        .all(|c| !Path::new("/sys/fs/cgroup").join(c).join(root).exists())
}

#[tokio::test]
async fn launch_running_kill_is_killed_and_no_cgroup_is_left() {
    let Some(exe) = meseta_exe() else { return };
    let mut master = FakeMaster::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = unique_root();
    let _guard = CgroupGuard(root.clone());
    let agent = start(&master, dir.path(), exe, &root).await;

    master.send(MasterMessage::LaunchTask(spec(
        "sleeper",
        "sleep 30",
        &format!("cpus:0.1;mem:32;ports:[{}]", ports(0, 0)),
    )));
    expect_state(&mut master, "sleeper", TaskState::Starting).await;
    expect_state(&mut master, "sleeper", TaskState::Running).await;

    // A second task with the same id is refused.
    master.send(MasterMessage::LaunchTask(spec(
        "sleeper",
        "true",
        "cpus:0.1;mem:32",
    )));
    let u = expect_state(&mut master, "sleeper", TaskState::Error).await;
    assert_eq!(u.reason.as_deref(), Some("REASON_TASK_INVALID"));
    // So is one that does not fit.
    master.send(MasterMessage::LaunchTask(spec(
        "huge",
        "true",
        "cpus:5;mem:32",
    )));
    let u = expect_state(&mut master, "huge", TaskState::Error).await;
    assert_eq!(u.reason.as_deref(), Some("REASON_TASK_INVALID"));

    // Usage of the running task is reported.
    let usage = master
        .next_matching("usage", |m| match m {
            AgentMessage::Usage(u) if !u.tasks.is_empty() => Some(u),
            _ => None,
        })
        .await;
    assert_eq!(usage.tasks[0].task_id.as_str(), "sleeper");

    master.send(MasterMessage::KillTask {
        task_id: TaskId::new("sleeper"),
        grace_secs: None,
    });
    let u = expect_state(&mut master, "sleeper", TaskState::Killed).await;
    assert!(u.message.is_some());

    // Killing an unknown task answers TASK_LOST.
    master.send(MasterMessage::KillTask {
        task_id: TaskId::new("ghost"),
        grace_secs: None,
    });
    let u = master.next_update().await;
    assert_eq!((u.task_id.as_str(), u.state), ("ghost", TaskState::Lost));

    agent.shutdown(true).await;
    assert!(cgroup_gone(&root), "cgroup {root} left behind");
}

#[tokio::test]
async fn exit_3_is_failed_with_code_and_logs_are_served() {
    let Some(exe) = meseta_exe() else { return };
    let mut master = FakeMaster::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = unique_root();
    let _guard = CgroupGuard(root.clone());
    let agent = start(&master, dir.path(), exe, &root).await;

    let cmd = "echo \"$GREETING port=$PORT0 ports=$PORTS task=$MESOS_TASK_ID host=$HOST\"; echo oops >&2; exit 3";
    master.send(MasterMessage::LaunchTask(spec(
        "three",
        cmd,
        &format!("cpus:0.1;mem:32;ports:[{}]", ports(3, 4)),
    )));
    expect_state(&mut master, "three", TaskState::Starting).await;
    let mut u = master.next_update().await;
    master.ack(&u);
    if u.state == TaskState::Running {
        u = master.next_update().await;
        master.ack(&u);
    }
    assert_eq!(u.state, TaskState::Failed, "{u:?}");
    assert_eq!(u.exit_code, Some(3));
    assert_eq!(u.message.as_deref(), Some("Command exited with status 3"));

    let out: LogChunk = logs(&agent, "three", "stdout")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        out.data,
        format!(
            "hi port={} ports={},{} task=three host=test-host\n",
            port_base() + 3,
            port_base() + 3,
            port_base() + 4
        )
    );
    assert_eq!(out.size, out.data.len() as u64);
    let err: LogChunk = logs(&agent, "three", "stderr")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(err.data, "oops\n");
    assert_eq!(logs(&agent, "three", "bogus").await.status(), 400);
    assert_eq!(logs(&agent, "nope", "stdout").await.status(), 404);

    agent.shutdown(true).await;
    assert!(cgroup_gone(&root), "cgroup {root} left behind");
}

#[tokio::test]
async fn restarted_agent_reattaches_and_resends_unacked_updates() {
    let Some(exe) = meseta_exe() else { return };
    let mut master = FakeMaster::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = unique_root();
    let _guard = CgroupGuard(root.clone());
    let agent = start(&master, dir.path(), exe.clone(), &root).await;
    let id = agent.agent_id().expect("registered id");

    master.send(MasterMessage::LaunchTask(spec(
        "survivor",
        "sleep 30",
        "cpus:0.1;mem:32",
    )));
    expect_state(&mut master, "survivor", TaskState::Starting).await;
    let running = master.next_update().await; // not acknowledged on purpose
    assert_eq!(running.state, TaskState::Running);
    agent.shutdown(false).await;

    let agent = Agent::start(config(&master, dir.path(), exe, &root))
        .await
        .expect("restart");
    let register = master
        .next_matching("register", |m| match m {
            AgentMessage::Register(r) => Some(r),
            _ => None,
        })
        .await;
    assert_eq!(register.agent_id.as_ref(), Some(&id));
    assert_eq!(register.tasks.len(), 1);
    assert_eq!(register.tasks[0].state, TaskState::Running);
    assert_eq!(
        agent
            .wait_registered(Duration::from_secs(5))
            .await
            .expect("registered"),
        id
    );

    let resent = master.next_update().await;
    assert_eq!(
        resent.uuid, running.uuid,
        "the unacknowledged update is resent"
    );
    master.ack(&resent);

    master.send(MasterMessage::KillTask {
        task_id: TaskId::new("survivor"),
        grace_secs: None,
    });
    expect_state(&mut master, "survivor", TaskState::Killed).await;
    agent.shutdown(true).await;
    assert!(cgroup_gone(&root), "cgroup {root} left behind");
}

#[tokio::test]
async fn rejected_agent_stops_with_the_reason() {
    // A master that rejects everyone.
    use axum::extract::ws::{Message, WebSocketUpgrade};
    let app = axum::Router::new().route(
        meseta_api::agent::AGENT_WS_PATH,
        axum::routing::get(|ws: WebSocketUpgrade| async move {
            ws.on_upgrade(|mut socket| async move {
                let _ = socket.recv().await;
                let reply = MasterMessage::Rejected {
                    message: "agent is decommissioned".into(),
                };
                let text = serde_json::to_string(&reply).expect("json");
                let _ = socket.send(Message::Text(text.into())).await;
                let _ = socket.recv().await;
            })
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = AgentConfig::new(
        format!("http://{addr}"),
        dir.path(),
        "127.0.0.1:0".parse().expect("addr"),
    );
    let mut agent = Agent::start(cfg).await.expect("start");
    match agent.wait_registered(Duration::from_secs(10)).await {
        Err(meseta_agent::AgentError::Rejected(m)) => assert_eq!(m, "agent is decommissioned"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(agent.agent_id(), None);
    let err = tokio::time::timeout(Duration::from_secs(10), agent.wait())
        .await
        .expect("agent stops by itself")
        .expect_err("rejected");
    assert!(err.to_string().contains("agent is decommissioned"), "{err}");
    agent.shutdown(false).await;
}

#[tokio::test]
async fn agent_reconnects_and_reregisters_with_its_tasks() {
    let Some(exe) = meseta_exe() else { return };
    let mut master = FakeMaster::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = unique_root();
    let _guard = CgroupGuard(root.clone());
    let agent = start(&master, dir.path(), exe, &root).await;
    let id = agent.agent_id().expect("id");
    master.send(MasterMessage::LaunchTask(spec(
        "steady",
        "sleep 30",
        "cpus:0.1;mem:32",
    )));
    expect_state(&mut master, "steady", TaskState::Starting).await;
    expect_state(&mut master, "steady", TaskState::Running).await;

    master.drop_connection();
    let register = master
        .next_matching("re-registration", |m| match m {
            AgentMessage::Register(r) => Some(r),
            _ => None,
        })
        .await;
    assert_eq!(register.agent_id, Some(id));
    let states: Vec<_> = register
        .tasks
        .iter()
        .map(|t| (t.spec.task_id.to_string(), t.state))
        .collect();
    assert_eq!(states, vec![("steady".to_string(), TaskState::Running)]);
    assert_eq!(register.address, agent.http_addr().to_string());

    master.send(MasterMessage::KillTask {
        task_id: TaskId::new("steady"),
        grace_secs: None,
    });
    expect_state(&mut master, "steady", TaskState::Killed).await;
    agent.shutdown(true).await;
    assert!(cgroup_gone(&root), "cgroup {root} left behind");
}
