//! A task must not get out of its sandbox: tasks (and their command health checks) run as an
//! unprivileged user unless the agent allows root, sandbox logs never follow a link out, the
//! fetcher reads local files with the task user's permissions, an id never names a path outside
//! the work dir, and an agent never offers (nor launches on) a port another process on the host
//! listens on. Each is driven as a framework would: an ACCEPT
//! through the master of an in-process cluster, tasks as real processes.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use meseta_api::scheduler::{
    Accept, Acknowledge, CallKind, CommandInfo, CommandUri, Decline, Event, Filters, FrameworkInfo,
    IdValue, Offer, TaskInfo, TaskStatus,
};
use meseta_master::FrameworkConnection;
use meseta_testkit::{Cluster, ClusterOptions};
use meseta_types::{Resources, TaskState};

const WAIT: Duration = Duration::from_secs(15);
const RES: &str = "cpus:0.1;mem:32";

/// A framework with its connection and the offers it has not used yet.
struct Fw {
    conn: FrameworkConnection,
    offers: Vec<Offer>,
}

impl Fw {
    /// Subscribe with `user` as the framework's default task user ("" for none).
    async fn subscribe(cluster: &Cluster, user: &str) -> Fw {
        let info = FrameworkInfo {
            user: user.into(),
            name: "sandbox-test".into(),
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
            .expect("stream open");
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

    /// Launch one task on the next offer.
    async fn launch(&mut self, id: &str, cmd: CommandInfo) {
        self.launch_checked(id, cmd, None).await;
    }

    /// Launch one task with a health check on the next offer.
    async fn launch_checked(
        &mut self,
        id: &str,
        cmd: CommandInfo,
        health_check: Option<serde_json::Value>,
    ) {
        let offer = self.offer().await;
        let task = TaskInfo {
            name: "t".into(),
            task_id: IdValue::new(id),
            agent_id: Some(offer.agent_id.clone()),
            resources: Resources::parse(RES).expect("resources"),
            command: Some(cmd),
            health_check,
            ..TaskInfo::default()
        };
        let accept = Accept::launch(offer.id.clone(), vec![task], 0.0);
        self.conn.call(CallKind::Accept { accept }).expect("accept");
    }

    /// Updates of `task` (acknowledged) until one in `want` or a terminal one.
    async fn until(&mut self, task: &str, want: TaskState) -> TaskStatus {
        loop {
            let Event::Update { update } = self.next().await else {
                continue;
            };
            if let Some(ack) = Acknowledge::for_status(&update.status) {
                let _ = self.conn.call(CallKind::Acknowledge { acknowledge: ack });
            }
            let s = update.status;
            if s.task_id.as_str() == task && (s.state == want || s.state.is_terminal()) {
                return s;
            }
        }
    }
}

fn as_user(cmd: &str, user: &str) -> CommandInfo {
    CommandInfo {
        user: Some(user.into()),
        ..CommandInfo::shell(cmd)
    }
}

fn nobody_uid() -> u32 {
    nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .expect("user nobody")
        .uid
        .as_raw()
}

fn sandbox(cluster: &Cluster, task: &str) -> std::path::PathBuf {
    cluster
        .dir
        .path()
        .join("agent-0/tasks")
        .join(task)
        .join("sandbox")
}

/// A root-only 0600 file in a directory everyone may traverse.
fn root_only_secret(dir: &Path) -> std::path::PathBuf {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let secret = secrets.join("secret");
    std::fs::write(&secret, "TOP-SECRET-VALUE").expect("write secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    secret
}

async fn get_text(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.expect("GET");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_without_a_user_runs_as_nobody_in_a_sandbox_it_owns() {
    require_root!();
    let cluster = Cluster::start(ClusterOptions::new(common::MESETA))
        .await
        .expect("cluster");
    let mut fw = Fw::subscribe(&cluster, "").await;
    fw.launch("who", CommandInfo::shell("id -u > uid; id -u"))
        .await;
    let s = fw.until("who", TaskState::Finished).await;
    assert_eq!(s.state, TaskState::Finished, "{s:?}");
    let sb = sandbox(&cluster, "who");
    let uid = std::fs::read_to_string(sb.join("uid")).expect("the task wrote its uid");
    assert_eq!(uid.trim(), nobody_uid().to_string());
    let meta = std::fs::metadata(&sb).expect("sandbox");
    assert_eq!(
        meta.uid(),
        nobody_uid(),
        "the sandbox belongs to the task user"
    );
    assert_eq!(
        meta.mode() & 0o007,
        0,
        "other users cannot enter the sandbox"
    );
    let task_json = sb.parent().expect("task dir").join("task.json");
    let mode = std::fs::metadata(task_json).expect("task.json").mode();
    assert_eq!(mode & 0o077, 0, "checkpoints are the agent's alone");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_health_checks_run_as_the_task_user() {
    require_root!();
    let cluster = Cluster::start(ClusterOptions::new(common::MESETA))
        .await
        .expect("cluster");
    let mut fw = Fw::subscribe(&cluster, "").await;
    let check = serde_json::json!({
        "type": "COMMAND",
        "command": {"value": format!("test \"$(id -u)\" = {}", nobody_uid())},
        "delay_seconds": 0, "interval_seconds": 0.5, "timeout_seconds": 10,
        "grace_period_seconds": 0, "consecutive_failures": 0
    });
    fw.launch_checked("checked", CommandInfo::shell("sleep 30"), Some(check))
        .await;
    let s = loop {
        let s = fw.until("checked", TaskState::Running).await;
        if s.healthy.is_some() || s.state.is_terminal() {
            break s;
        }
    };
    assert_eq!(s.healthy, Some(true), "{s:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_is_refused_unless_the_agent_allows_it() {
    require_root!();
    let cluster = Cluster::start(ClusterOptions::new(common::MESETA))
        .await
        .expect("cluster");
    // By the task's user, and by the framework's default user: one framework after the other,
    // each torn down before the next subscribes (a framework holding the only agent's offers
    // would starve the other).
    for (user, id, cmd) in [
        ("", "by-task", as_user("id -u", "root")),
        ("root", "by-fw", CommandInfo::shell("id -u")),
    ] {
        let mut fw = Fw::subscribe(&cluster, user).await;
        fw.launch(id, cmd).await;
        let s = fw.until(id, TaskState::Error).await;
        assert_eq!(s.state, TaskState::Error, "{id}: {s:?}");
        let msg = s.message.unwrap_or_default();
        assert!(
            msg.contains("root") && msg.contains("--allow-root"),
            "{msg}"
        );
        assert!(!sandbox(&cluster, id).exists(), "{id} never started");
        fw.conn.call(CallKind::Teardown).expect("teardown");
    }
    cluster.stop().await;

    let cluster = Cluster::start(ClusterOptions::new(common::MESETA).allow_root())
        .await
        .expect("cluster");
    let mut fw = Fw::subscribe(&cluster, "").await;
    fw.launch("root-ok", as_user("id -u > uid", "root")).await;
    let s = fw.until("root-ok", TaskState::Finished).await;
    assert_eq!(s.state, TaskState::Finished, "{s:?}");
    let uid = std::fs::read_to_string(sandbox(&cluster, "root-ok").join("uid")).expect("uid");
    assert_eq!(uid.trim(), "0");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_follow_a_link_out_of_the_sandbox() {
    require_root!();
    let cluster = Cluster::start(ClusterOptions::new(common::MESETA))
        .await
        .expect("cluster");
    let secret = root_only_secret(cluster.dir.path());
    let mut fw = Fw::subscribe(&cluster, "").await;
    let cmd = format!(
        "rm -f stdout && ln -s {} stdout && touch linked && sleep 30",
        secret.display()
    );
    fw.launch("linker", as_user(&cmd, "nobody")).await;
    let s = fw.until("linker", TaskState::Running).await;
    assert_eq!(s.state, TaskState::Running, "{s:?}");
    let linked = sandbox(&cluster, "linker").join("linked");
    common::wait_for("the task to plant its link", WAIT, || {
        linked.exists().then_some(())
    });
    let agent = format!("http://{}", cluster.agents[0].http_addr());
    for base in [agent.as_str(), cluster.url.as_str()] {
        let url = format!("{base}/api/meseta/v1/tasks/linker/logs?stream=stdout");
        let (status, body) = get_text(&url).await;
        assert!(
            !body.contains("TOP-SECRET-VALUE"),
            "{url} served the secret"
        );
        assert!(status >= 400, "{url}: {status} {body}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fetcher_reads_local_files_as_the_task_user() {
    require_root!();
    let cluster = Cluster::start(ClusterOptions::new(common::MESETA))
        .await
        .expect("cluster");
    let secret = root_only_secret(cluster.dir.path());
    let readable = secret.with_file_name("public");
    std::fs::write(&readable, "public").expect("write");
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let fetch = |path: &Path| CommandUri {
        value: format!("file://{}", path.display()),
        executable: None,
        extract: None,
        cache: None,
        output_file: None,
    };
    let mut fw = Fw::subscribe(&cluster, "").await;
    let mut cmd = as_user("cat public", "nobody");
    cmd.uris = Some(vec![fetch(&readable)]);
    fw.launch("fetch-ok", cmd).await;
    let s = fw.until("fetch-ok", TaskState::Finished).await;
    assert_eq!(s.state, TaskState::Finished, "{s:?}");
    let fetched = sandbox(&cluster, "fetch-ok").join("public");
    assert_eq!(
        std::fs::metadata(fetched).expect("fetched").uid(),
        nobody_uid()
    );

    let mut cmd = as_user("cat secret", "nobody");
    cmd.uris = Some(vec![fetch(&secret)]);
    fw.launch("fetch-secret", cmd).await;
    let s = fw.until("fetch-secret", TaskState::Running).await;
    assert_eq!(s.state, TaskState::Failed, "{s:?}");
    let msg = s.message.unwrap_or_default();
    assert!(msg.contains("Permission denied"), "{msg}");
    let copied = sandbox(&cluster, "fetch-secret").join("secret");
    assert!(
        !copied.exists(),
        "the root-only file was copied into the sandbox"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_task_id_writes_nothing_outside_the_work_dir() {
    require_root!();
    let cluster = Cluster::start(ClusterOptions::new(common::MESETA))
        .await
        .expect("cluster");
    // From `<dir>/agent-0/updates/<id>` and `<dir>/agent-0/tasks/<id>`: `<dir>/escaped/a/b`.
    let id = "../../escaped/a/b";
    let mut fw = Fw::subscribe(&cluster, "").await;
    fw.launch(id, CommandInfo::shell("true")).await;
    let s = fw.until(id, TaskState::Error).await;
    assert_eq!(s.state, TaskState::Error, "{s:?}");
    assert!(
        s.message.unwrap_or_default().contains("invalid task id"),
        "the refusal says why"
    );
    assert!(
        !cluster.dir.path().join("escaped").exists(),
        "a path was built from the invalid id"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_another_process_listens_on_are_not_offered() {
    require_root!();
    let stray = std::net::TcpListener::bind("0.0.0.0:0").expect("stray listener");
    let taken = u64::from(stray.local_addr().expect("addr").port());
    let free = u64::from(common::free_port());
    let res = format!("cpus:2;mem:1024;disk:100;ports:[{taken}-{taken},{free}-{free}]");
    let opts = ClusterOptions::new(common::MESETA)
        .agent_resources(&res)
        .expect("resources");
    let cluster = Cluster::start(opts).await.expect("cluster");
    let mut fw = Fw::subscribe(&cluster, "").await;
    let offer = fw.offer().await;
    let ports: Vec<u64> = offer.resources.ranges("ports").values().collect();
    assert!(
        !ports.contains(&taken),
        "offered {taken}, held by a stray listener"
    );
    assert!(ports.contains(&free), "the free port is offered: {ports:?}");
    drop(stray);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_taken_after_registration_is_refused_then_no_longer_offered() {
    require_root!();
    let port = u64::from(common::free_port());
    let res = format!("cpus:2;mem:1024;disk:100;ports:[{port}-{port}]");
    let opts = ClusterOptions::new(common::MESETA)
        .agent_resources(&res)
        .expect("resources");
    let cluster = Cluster::start(opts).await.expect("cluster");
    let mut fw = Fw::subscribe(&cluster, "").await;
    let offer = fw.offer().await;
    assert!(offer.resources.ranges("ports").values().any(|p| p == port));
    // A stray process takes the port after the agent registered.
    let stray = std::net::TcpListener::bind(("0.0.0.0", port as u16)).expect("stray listener");
    let task = TaskInfo {
        name: "t".into(),
        task_id: IdValue::new("on-taken-port"),
        agent_id: Some(offer.agent_id.clone()),
        resources: Resources::parse(&format!("{RES};ports:[{port}-{port}]")).expect("res"),
        command: Some(CommandInfo::shell("sleep 30")),
        ..TaskInfo::default()
    };
    let accept = Accept::launch(offer.id.clone(), vec![task], 0.0);
    fw.conn.call(CallKind::Accept { accept }).expect("accept");
    let s = fw.until("on-taken-port", TaskState::Running).await;
    assert_eq!(s.state, TaskState::Error, "{s:?}");
    let msg = s.message.unwrap_or_default();
    assert!(
        msg.contains(&port.to_string()) && msg.contains("in use"),
        "{msg}"
    );
    // The agent registers again without the port: the next offers leave it out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "port {port} is still offered"
        );
        let offer = fw.offer().await;
        if !offer.resources.ranges("ports").values().any(|p| p == port) {
            break;
        }
        let decline = Decline {
            offer_ids: vec![offer.id.clone()],
            filters: Some(Filters {
                refuse_seconds: Some(0.5),
            }),
        };
        let _ = fw.conn.call(CallKind::Decline { decline });
    }
    drop(stray);
    cluster.stop().await;
}
