//! Agent-side health checks and URI fetching, end to end on an in-process `testkit` cluster: an
//! HTTP check on a real server reports healthy; a COMMAND check that starts failing (also across
//! an agent restart) reports unhealthy and gets the task killed with Mesos' reason; a `file://`
//! tar.gz is extracted into the sandbox before the task runs; a bad URI fails the launch.

mod common;

use std::path::Path;
use std::time::Duration;

use meseta_api::scheduler::{
    Accept, Acknowledge, CallKind, CommandInfo, CommandUri, Event, FrameworkInfo, IdValue, Offer,
    TaskInfo, TaskStatus,
};
use meseta_master::FrameworkConnection;
use meseta_testkit::{Cluster, ClusterOptions};
use meseta_types::{Resources, TaskState};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const HEALTH_REASON: &str = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED";

/// A framework that acknowledges every update and keeps the ones of interest in order.
struct Fw {
    conn: FrameworkConnection,
    offers: Vec<Offer>,
}

impl Fw {
    async fn subscribe(cluster: &Cluster, name: &str) -> Fw {
        let info = FrameworkInfo {
            user: String::new(),
            name: name.into(),
            failover_timeout: Some(60.0),
            ..FrameworkInfo::default()
        };
        let conn = cluster.master.subscribe(info).await.expect("subscribe");
        Fw {
            conn,
            offers: Vec::new(),
        }
    }

    async fn next(&mut self) -> Event {
        let ev = tokio::time::timeout(WAIT, self.conn.next_event())
            .await
            .expect("an event in time")
            .expect("event stream open");
        if let Event::Offers { offers } = &ev {
            self.offers.extend(offers.offers.iter().cloned());
        }
        ev
    }

    async fn offer(&mut self) -> Offer {
        while self.offers.is_empty() {
            self.next().await;
        }
        self.offers.remove(0)
    }

    /// The next update of `task` (every update is acknowledged).
    async fn update(&mut self, task: &str) -> TaskStatus {
        loop {
            if let Event::Update { update } = self.next().await {
                if let Some(ack) = Acknowledge::for_status(&update.status) {
                    self.conn
                        .call(CallKind::Acknowledge { acknowledge: ack })
                        .expect("ack");
                }
                if update.status.task_id.as_str() == task {
                    return update.status;
                }
            }
        }
    }

    /// Updates of `task` until one satisfies `want`; panics on a terminal update that does not.
    async fn until(&mut self, task: &str, want: impl Fn(&TaskStatus) -> bool) -> TaskStatus {
        loop {
            let s = self.update(task).await;
            if want(&s) {
                return s;
            }
            assert!(!s.state.is_terminal(), "task {task} ended first: {s:?}");
        }
    }

    fn launch(&self, offer: &Offer, task: TaskInfo) {
        self.conn
            .call(CallKind::Accept {
                accept: Accept::launch(offer.id.clone(), vec![task], 0.0),
            })
            .expect("accept");
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

/// A cluster whose only agent offers one free loopback port, so parallel tests never collide.
async fn cluster_with_port() -> (Cluster, u16) {
    let port = common::free_port();
    let res = format!("cpus:4;mem:4096;disk:4096;ports:[{port}-{port}]");
    let opts = ClusterOptions::new(common::MESETA)
        .agent_resources(&res)
        .expect("resources");
    (Cluster::start(opts).await.expect("cluster"), port)
}

fn sandbox(cluster: &Cluster, task_id: &str) -> std::path::PathBuf {
    cluster
        .dir
        .path()
        .join("agent-0/tasks")
        .join(task_id)
        .join("sandbox")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_health_check_reports_healthy() {
    require_root!();
    let (cluster, port) = cluster_with_port().await;
    let mut fw = Fw::subscribe(&cluster, "health-http").await;
    let o = fw.offer().await;
    let mut t = task(
        "web",
        &o,
        &format!("cpus:0.5;mem:128;ports:[{port}-{port}]"),
        "exec /usr/bin/python3 -m http.server $PORT0 --bind 127.0.0.1",
    );
    t.health_check = Some(json!({
        "type": "HTTP", "http": {"port": port, "path": "/"},
        "delay_seconds": 0, "interval_seconds": 0.5, "timeout_seconds": 5,
        "grace_period_seconds": 60, "consecutive_failures": 3
    }));
    fw.launch(&o, t);
    let healthy = fw.until("web", |s| s.healthy.is_some()).await;
    assert_eq!(healthy.state, TaskState::Running);
    assert_eq!(healthy.healthy, Some(true), "{healthy:?}");
    assert_eq!(healthy.reason.as_deref(), Some(HEALTH_REASON));
    let msg = healthy.message.unwrap_or_default();
    assert!(
        msg.contains(&format!("http://127.0.0.1:{port}/")) && msg.contains("returned 200"),
        "{msg}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_command_check_kills_the_task_even_after_an_agent_restart() {
    require_root!();
    let (mut cluster, _) = cluster_with_port().await;
    let mut fw = Fw::subscribe(&cluster, "health-cmd").await;
    let o = fw.offer().await;
    let mut t = task("flaky", &o, "cpus:0.5;mem:64", "sleep 1000");
    t.health_check = Some(json!({
        "type": "COMMAND", "command": {"value": "test ! -f $MESOS_SANDBOX/fail"},
        "delay_seconds": 0, "interval_seconds": 0.5, "timeout_seconds": 10,
        "grace_period_seconds": 0, "consecutive_failures": 3
    }));
    fw.launch(&o, t);
    let healthy = fw.until("flaky", |s| s.healthy.is_some()).await;
    assert_eq!(healthy.healthy, Some(true), "{healthy:?}");

    // Restart the agent: the task is reattached and its checker restarted.
    let agent = cluster.agents.remove(0);
    agent.shutdown(false).await;
    let agent = cluster.start_agent(0).await.expect("agent restarted");
    cluster.agents.insert(0, agent);

    std::fs::write(sandbox(&cluster, "flaky").join("fail"), b"").expect("fail marker");
    let unhealthy = fw.until("flaky", |s| s.healthy == Some(false)).await;
    assert_eq!(unhealthy.state, TaskState::Running, "{unhealthy:?}");
    assert_eq!(unhealthy.reason.as_deref(), Some(HEALTH_REASON));
    assert!(
        unhealthy
            .message
            .as_deref()
            .is_some_and(|m| m.contains("exited with status 1")),
        "{unhealthy:?}"
    );
    let killed = fw.until("flaky", |s| s.state.is_terminal()).await;
    assert_eq!(killed.state, TaskState::Killed, "{killed:?}");
    assert_eq!(killed.healthy, Some(false));
    assert_eq!(killed.reason.as_deref(), Some(HEALTH_REASON));
    cluster.stop().await;
}

fn make_tgz(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("data")).expect("src dir");
    std::fs::write(src.join("data/x.txt"), "fetched-content-42\n").expect("x.txt");
    let archive = dir.join("bundle.tar.gz");
    let out = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg("data")
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar failed: {out:?}");
    archive
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_archive_is_extracted_and_bad_uri_fails_the_launch() {
    require_root!();
    let (cluster, _) = cluster_with_port().await;
    let files = common::task_reachable_dir();
    let archive = make_tgz(files.path());
    let mut fw = Fw::subscribe(&cluster, "fetch").await;

    let o = fw.offer().await;
    let mut t = task("reader", &o, "cpus:0.5;mem:64", "cat data/x.txt");
    if let Some(cmd) = t.command.as_mut() {
        cmd.uris = Some(vec![CommandUri {
            value: format!("file://{}", archive.display()),
            ..CommandUri::default()
        }]);
    }
    fw.launch(&o, t);
    let done = fw.until("reader", |s| s.state.is_terminal()).await;
    assert_eq!(done.state, TaskState::Finished, "{done:?}");
    let sb = sandbox(&cluster, "reader");
    let stdout = std::fs::read_to_string(sb.join("stdout")).expect("stdout");
    assert!(stdout.contains("fetched-content-42"), "{stdout:?}");
    assert!(sb.join("bundle.tar.gz").is_file(), "the archive is kept");

    let o = fw.offer().await;
    let missing = files.path().join("missing.tgz");
    let uri = format!("file://{}", missing.display());
    let mut t = task("unfetchable", &o, "cpus:0.5;mem:64", "touch started");
    if let Some(cmd) = t.command.as_mut() {
        cmd.uris = Some(vec![CommandUri {
            value: uri.clone(),
            ..CommandUri::default()
        }]);
    }
    fw.launch(&o, t);
    let failed = fw.until("unfetchable", |s| s.state.is_terminal()).await;
    assert_eq!(failed.state, TaskState::Failed, "{failed:?}");
    assert_eq!(
        failed.reason.as_deref(),
        Some("REASON_CONTAINER_LAUNCH_FAILED")
    );
    assert!(
        failed.message.as_deref().is_some_and(|m| m.contains(&uri)),
        "{failed:?}"
    );
    assert!(
        !sandbox(&cluster, "unfetchable").join("started").exists(),
        "no process was started"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_health_check_is_a_task_error() {
    require_root!();
    let (cluster, _) = cluster_with_port().await;
    let mut fw = Fw::subscribe(&cluster, "health-invalid").await;
    let o = fw.offer().await;
    let mut t = task("bad-check", &o, "cpus:0.5;mem:64", "sleep 1000");
    t.health_check = Some(json!({"type": "TCP", "tcp": {"port": 0}}));
    fw.launch(&o, t);
    let s = fw.update("bad-check").await;
    assert_eq!(s.state, TaskState::Error, "{s:?}");
    assert_eq!(s.reason.as_deref(), Some("REASON_TASK_INVALID"));
    assert!(
        s.message.as_deref().is_some_and(|m| m.contains("port 0")),
        "{s:?}"
    );
    cluster.stop().await;
}
