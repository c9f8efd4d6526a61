//! Agents and the CLI find the leading master among several, on an in-process `testkit` master
//! and a fake follower on loopback that keeps a follower's contract: every request answered
//! `307` to the leader with the same path and query, or `503 {"message":"no leading master
//! elected yet"}` while it knows none.
//!
//! - a follower first in the list (the leader not listed): the agent registers with the real
//!   master and runs a task; the client (GET, POST with a body, the scheduler subscription, the
//!   `/v2/events` stream) and a `meseta` CLI call work through it;
//! - a dead address and a follower without a leader first in the list are skipped;
//! - the master an agent is registered with goes away and another one takes over on a new
//!   address, told by the follower: the agent re-registers there with its running task.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use meseta_agent::{Agent, AgentHandle};
use meseta_api::client::MasterClient;
use meseta_api::scheduler::{Event, FrameworkInfo};
use meseta_testkit::{Cluster, ClusterOptions};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
/// The agent WebSocket endpoint.
const AGENT_PATH: &str = "/api/meseta/v1/agent";

/// A follower: redirects to `leader`, or answers 503 while it is `None`; records each request as
/// `METHOD /path`.
#[derive(Clone, Default)]
struct Follower {
    leader: Arc<Mutex<Option<String>>>,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Follower {
    /// Serve on a free loopback port; returns the follower and its base URL.
    async fn start(leader: Option<&str>) -> (Follower, String) {
        let f = Follower::default();
        f.set_leader(leader);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind follower");
        let url = format!("http://{}", listener.local_addr().expect("follower addr"));
        let app = axum::Router::new().fallback(follow).with_state(f.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (f, url)
    }

    fn set_leader(&self, leader: Option<&str>) {
        *self.leader.lock().expect("lock") = leader.map(str::to_string);
    }

    fn hits(&self, request: &str) -> usize {
        let hits = self.hits.lock().expect("lock");
        hits.iter().filter(|h| *h == request).count()
    }
}

async fn follow(State(f): State<Follower>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    f.hits
        .lock()
        .expect("lock")
        .push(format!("{} {path}", req.method()));
    let Some(leader) = f.leader.lock().expect("lock").clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"message": "no leading master elected yet"})),
        )
            .into_response();
    };
    let location = if path == "/master/redirect" {
        format!("//{}", leader.trim_start_matches("http://"))
    } else {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        format!("{leader}{pq}")
    };
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, location)],
    )
        .into_response()
}

/// A cluster with no agent of its own (each test starts its agent with a list of masters).
async fn cluster() -> Cluster {
    Cluster::start(ClusterOptions::new(common::MESETA).agents(0))
        .await
        .expect("cluster")
}

/// Start agent 0 of `cluster` with `masters` as its `--master`, wait for its registration and
/// keep it in the cluster (stopped with it).
async fn start_agent(cluster: &mut Cluster, masters: &str) -> AgentHandle {
    let mut cfg = cluster.agent_config(0);
    cfg.master = masters.to_string();
    let agent = Agent::start(cfg).await.expect("agent starts");
    agent
        .wait_registered(WAIT)
        .await
        .expect("agent registers through the list");
    agent
}

/// An address nothing listens on (a port bound, then released).
fn dead_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

/// Poll the app's tasks until one is running; returns that task.
async fn running_task(client: &MasterClient, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let app = client.marathon().app_with_tasks(id).await;
        if let Ok(Some(app)) = &app {
            let tasks = app["app"]["tasks"].as_array().cloned().unwrap_or_default();
            if let Some(t) = tasks.iter().find(|t| t["state"] == "TASK_RUNNING") {
                return t.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no running task of {id}: {app:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_cli_work_through_a_follower_first_in_the_list() {
    require_root!();
    let mut cluster = cluster().await;
    let (follower, f_url) = Follower::start(Some(&cluster.url)).await;
    // The leader is not listed: only the follower's redirect leads there.
    let masters = format!("{f_url},{}", dead_address());

    let agent = start_agent(&mut cluster, &masters).await;
    let agent_id = agent.agent_id().expect("registered").to_string();
    cluster.agents.push(agent);
    assert_eq!(
        follower.hits(&format!("GET {AGENT_PATH}")),
        1,
        "the agent asked the follower first"
    );

    // POST with a body, redirected; the client then sticks to the leader.
    let client = MasterClient::new(&masters).expect("client");
    let app = json!({"id": "/mm/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 1});
    let reply = client
        .marathon()
        .create_app(&app)
        .await
        .expect("app created through the follower");
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.body["id"], "/mm/web");
    assert_eq!(follower.hits("POST /v2/apps"), 1);
    assert_eq!(client.base_url(), cluster.url, "the leader is remembered");
    let task = running_task(&client, "/mm/web").await;
    assert_eq!(task["slaveId"], agent_id.as_str());
    assert_eq!(
        follower.hits("GET /v2/apps/mm/web"),
        0,
        "asked the leader directly"
    );

    // A fresh client: GETs, the scheduler subscription and the event stream follow too.
    let fresh = MasterClient::new(&masters).expect("client");
    let state = fresh.state().await.expect("state through the follower");
    assert_eq!(state["activated_slaves"].as_f64(), Some(1.0), "{state}");
    assert_eq!(follower.hits("GET /master/state"), 1);
    let fresh = MasterClient::new(&masters).expect("client");
    let info = FrameworkInfo {
        name: "mm-sched".into(),
        ..FrameworkInfo::default()
    };
    let mut session = fresh
        .subscribe(info)
        .await
        .expect("subscribed through the follower");
    assert!(matches!(
        session.next_event().await,
        Ok(Some(Event::Subscribed { .. }))
    ));
    assert_eq!(follower.hits("POST /api/v1/scheduler"), 1);
    fresh
        .teardown(&session.framework_id().value)
        .await
        .expect("teardown at the leader");
    let fresh = MasterClient::new(&masters).expect("client");
    let mut events = fresh
        .marathon()
        .events("deployment_info")
        .await
        .expect("event stream through the follower");
    assert_eq!(follower.hits("GET /v2/events"), 1);

    // The `meseta` CLI, given the list.
    let out = tokio::process::Command::new(common::MESETA)
        .args(["app", "list", "--json"])
        .env("MESETA_MASTER", &masters)
        .output()
        .await
        .expect("run meseta app list");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("/mm/web"), "{stdout}");
    assert_eq!(
        follower.hits("GET /v2/apps"),
        1,
        "the CLI asked the follower first"
    );

    // A change shows on the stream opened through the follower.
    client
        .marathon()
        .delete_app("/mm/web", false)
        .await
        .expect("app deleted");
    let data = tokio::time::timeout(WAIT, events.next_data())
        .await
        .expect("an event in time")
        .expect("stream readable")
        .expect("stream open");
    assert!(data.contains("/mm/web"), "{data}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_leaderless_masters_first_in_the_list_are_skipped() {
    let mut cluster = cluster().await;
    let (leaderless, l_url) = Follower::start(None).await;
    let masters = format!("{},{l_url},{}", dead_address(), cluster.url);

    let agent = start_agent(&mut cluster, &masters).await;
    cluster.agents.push(agent);
    assert!(leaderless.hits(&format!("GET {AGENT_PATH}")) >= 1);

    let client = MasterClient::new(&masters).expect("client");
    // A POST that reached no master able to take it is sent on.
    let app =
        json!({"id": "/mm/idle", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 0});
    let reply = client
        .marathon()
        .create_app(&app)
        .await
        .expect("app created past the dead and leaderless masters");
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(leaderless.hits("POST /v2/apps"), 1);
    assert_eq!(client.base_url(), cluster.url);
    let slaves = client.slaves().await.expect("slaves");
    assert_eq!(slaves["slaves"].as_array().map(Vec::len), Some(1));

    // With no leader anywhere, the follower's answer is the error.
    let lost = MasterClient::new(format!("{},{l_url}", dead_address())).expect("client");
    let e = lost.marathon().apps().await.expect_err("no leader");
    assert_eq!(e.status(), Some(503), "{e}");
    assert!(e.to_string().contains("no leading master"), "{e}");
    assert!(e.is_transient());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_follows_the_leader_to_a_new_master_with_its_running_task() {
    require_root!();
    let mut cluster = cluster().await;
    let first = cluster.url.clone();
    let (follower, f_url) = Follower::start(None).await;
    let masters = format!("{first},{f_url}");

    let agent = start_agent(&mut cluster, &masters).await;
    let agent_id = agent.agent_id().expect("registered").to_string();
    cluster.agents.push(agent);
    assert_eq!(follower.hits(&format!("GET {AGENT_PATH}")), 0);

    let client = MasterClient::new(&masters).expect("client");
    let app =
        json!({"id": "/mm/keep", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 1});
    client
        .marathon()
        .create_app(&app)
        .await
        .expect("app created");
    let task = running_task(&client, "/mm/keep").await;
    let task_id = task["id"].as_str().expect("task id").to_string();

    // The first master goes away; another takes over on a new address, which the follower names.
    let second = cluster
        .move_master(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("a new master");
    assert_ne!(second, first);
    follower.set_leader(Some(&second));
    cluster
        .wait_agents_active(WAIT)
        .await
        .expect("the agent re-registers with the new master");
    assert!(follower.hits(&format!("GET {AGENT_PATH}")) >= 1);

    // Same agent, same task, still running: reported by the new master.
    let state = cluster.get_json("/master/state").await.expect("state");
    let slaves = state["slaves"].as_array().cloned().unwrap_or_default();
    assert!(
        slaves.iter().any(|s| s["id"] == agent_id.as_str()),
        "{slaves:?}"
    );
    let tasks: Vec<Value> = state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["tasks"].as_array().cloned().unwrap_or_default())
        .collect();
    let again = tasks
        .iter()
        .find(|t| t["id"] == task_id.as_str())
        .unwrap_or_else(|| panic!("task {task_id} at the new master: {tasks:?}"));
    assert_eq!(again["state"], "TASK_RUNNING", "{again}");
    assert_eq!(again["slave_id"], agent_id.as_str());

    // The client finds the new master too (the first is gone, the follower redirects).
    let after = running_task(&client, "/mm/keep").await;
    assert_eq!(after["id"], task_id.as_str());
    assert_eq!(client.base_url(), second);
    cluster.stop().await;
}
