//! The meseta agent: runs tasks for the master and survives its own restart.
//!
//! The `meseta agent` / `meseta dev` commands and the in-process test cluster call
//! [`Agent::start`], which recovers from the work dir, binds the agent's HTTP server and connects to
//! the master over one WebSocket (protocol in `meseta_api::agent`); given several masters, it
//! finds the leading one (a follower redirects the handshake to it).
//!
//! ```text
//!            ┌──────────── connection (ws loop) ◀──── master: LaunchTask / KillTask / Acknowledge
//!            │                   │ ▲ StatusUpdate / Heartbeat / Usage
//!            ▼                   ▼ │
//!   tasks (launch/kill) ──▶ Shared state ◀── monitor (shim stdout, exit.json polling)
//!            │                   │
//!            ▼                   ▼
//!   isolation: meseta shim   checkpoint: agent_id, tasks/<id>/ (with updates.log)
//! ```
//!
//! Modules: [`config`] (configuration), `connection` (WebSocket loop), `tasks` (launch/kill),
//! `fetch` (URIs into the sandbox before launch), `monitor` (task exits → status updates),
//! `health` (HTTP/TCP/COMMAND health checks), `http_client` (GET over hyper + rustls),
//! `checkpoint` (disk layout), `recovery` (restart), `state` (shared state), `http` (logs/state
//! endpoints), `usage` (usage reports), `volumes` (persistent volumes), [`resources`] (resource detection),
//! `docker` (the Docker containerizer: `type: DOCKER` tasks run through the local engine),
//! `executor` (custom executors and the `/api/v1/executor` API), `group` (task groups in the
//! agent's default executor).
#![forbid(unsafe_code)]

mod checkpoint;
pub mod config;
mod connection;
mod docker;
mod error;
mod executor;
mod fetch;
mod group;
mod health;
mod http;
mod http_client;
mod monitor;
mod path_id;
mod recovery;
pub mod resources;
mod secrets;
mod state;
mod tasks;
mod usage;
mod users;
mod volumes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meseta_types::AgentId;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::AgentConfig;
pub use error::AgentError;
pub use path_id::InvalidId;
pub use resources::detect_resources;

use state::Shared;

/// Extra time allowed, beyond the largest kill grace, for tasks to end on `shutdown(true)`.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(5);
/// How long `shutdown(true)` waits for the final updates to be acknowledged.
const ACK_WAIT: Duration = Duration::from_secs(1);

/// The agent process (entry point: [`Agent::start`]).
pub struct Agent {
    _private: (),
}

impl Agent {
    /// Recover from work_dir, bind the HTTP listener; does not connect yet (the connection is made in
    /// the background right after). Errors are typed.
    pub async fn start(cfg: AgentConfig) -> Result<AgentHandle, AgentError> {
        let masters = config::ws_urls(&cfg.master).map_err(AgentError::InvalidMaster)?;
        let checkpoint = checkpoint::Checkpoint::open(&cfg.work_dir)?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| AgentError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| AgentError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let hostname = cfg
            .hostname
            .clone()
            .unwrap_or_else(config::machine_hostname);
        let resources = cfg
            .resources
            .clone()
            .unwrap_or_else(|| detect_resources(&cfg.work_dir));
        let cgroups = match meseta_isolation::cgroup::detect() {
            Ok(c) => Some(Arc::from(c)),
            Err(e) => {
                tracing::warn!(error = %e, "cgroups not detected");
                None
            }
        };
        let shared = Arc::new(Shared::new(
            cfg, checkpoint, hostname, resources, http_addr, cgroups,
        ));
        if let Some(socket) = shared.cfg.docker_socket.clone() {
            if let Some(engine) = docker::Engine::probe(&socket).await {
                let _ = shared.docker.set(engine);
                shared
                    .docker_up
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            tokio::spawn(docker::watch(Arc::clone(&shared), socket));
        }
        recovery::recover(&shared)?;
        prune_stale_cgroups(&shared);
        tracing::info!(addr = %http_addr, masters = ?masters, resources = %shared.resources,
            "agent started");

        let http = spawn_http(Arc::clone(&shared), listener);
        let usage = tokio::spawn(usage::run(Arc::clone(&shared)));
        let conn_cancel = CancellationToken::new();
        let (ended_tx, ended) = watch::channel(None);
        let conn = tokio::spawn({
            let shared = Arc::clone(&shared);
            let cancel = conn_cancel.clone();
            async move {
                let r = connection::run(shared, masters, cancel).await;
                let why = match &r {
                    Ok(()) => Stop::Other("shut down".to_string()),
                    Err(AgentError::Rejected(m)) => Stop::Rejected(m.clone()),
                    Err(e) => Stop::Other(e.to_string()),
                };
                ended_tx.send_replace(Some(why));
                r
            }
        });
        Ok(AgentHandle {
            shared,
            conn_cancel,
            conn: Some(conn),
            ended,
            http,
            usage,
        })
    }
}

fn spawn_http(shared: Arc<Shared>, listener: tokio::net::TcpListener) -> JoinHandle<()> {
    let stop = shared.stop.clone();
    let app = http::router(shared);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "agent http server failed");
        }
    })
}

/// Why the connection loop ended.
#[derive(Clone, Debug)]
enum Stop {
    /// The master rejected the agent with this message.
    Rejected(String),
    /// Anything else (shutdown, failure).
    Other(String),
}

/// A running agent.
pub struct AgentHandle {
    shared: Arc<Shared>,
    conn_cancel: CancellationToken,
    conn: Option<JoinHandle<Result<(), AgentError>>>,
    ended: watch::Receiver<Option<Stop>>,
    http: JoinHandle<()>,
    usage: JoinHandle<()>,
}

impl AgentHandle {
    /// The actual bound address of the agent's HTTP server.
    pub fn http_addr(&self) -> SocketAddr {
        self.shared.http_addr
    }

    /// The agent id, once the master accepted the registration.
    pub fn agent_id(&self) -> Option<AgentId> {
        self.shared.registered.borrow().clone()
    }

    /// Wait until the master accepted the registration.
    pub async fn wait_registered(&self, timeout: Duration) -> Result<AgentId, AgentError> {
        let mut registered = self.shared.registered.subscribe();
        let mut ended = self.ended.clone();
        let wait = async {
            tokio::select! {
                r = registered.wait_for(Option::is_some) => match r {
                    Ok(id) => id.clone().ok_or_else(|| AgentError::Stopped("no id".into())),
                    Err(_) => Err(AgentError::Stopped("agent dropped".into())),
                },
                r = ended.wait_for(Option::is_some) => {
                    Err(match r.ok().and_then(|w| w.clone()) {
                        Some(Stop::Rejected(m)) => AgentError::Rejected(m),
                        Some(Stop::Other(why)) => AgentError::Stopped(why),
                        None => AgentError::Stopped("agent dropped".into()),
                    })
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| AgentError::RegistrationTimeout(timeout))?
    }

    /// Stop the agent. `kill_tasks = true`: kill every task (bounded by the largest grace + 5 s) and
    /// remove the agent's cgroups. `false`: leave tasks running (a restarted agent reattaches).
    pub async fn shutdown(mut self, kill_tasks: bool) {
        tracing::info!(kill_tasks, "agent shutting down");
        if kill_tasks {
            kill_all_tasks(&self.shared).await;
        }
        self.conn_cancel.cancel();
        if let Some(conn) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), conn).await;
        }
        self.shared.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(3), &mut self.http).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.usage).await;
        if kill_tasks {
            remove_cgroups(&self.shared);
        }
    }

    /// Resolves when the agent stops by itself (e.g. the master rejected it): Err carries why.
    pub async fn wait(&mut self) -> Result<(), AgentError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(AgentError::Stopped("agent already stopped".into()));
        };
        let r = conn.await;
        self.conn = None;
        match r {
            Ok(r) => r,
            Err(e) => Err(AgentError::Stopped(format!("connection task failed: {e}"))),
        }
    }
}

/// Kill every active task and wait until each one's terminal update was emitted.
async fn kill_all_tasks(shared: &Arc<Shared>) {
    let active = shared.active_tasks();
    if active.is_empty() {
        return;
    }
    let grace = active
        .iter()
        .filter_map(|id| shared.task(id))
        .map(|t| {
            t.spec
                .kill_grace_secs
                .unwrap_or(tasks::DEFAULT_KILL_GRACE_SECS)
        })
        .filter(|g| g.is_finite() && *g >= 0.0)
        .fold(0.0_f64, f64::max);
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(grace) + SHUTDOWN_SLACK;
    for id in &active {
        tasks::kill(shared, id, None);
    }
    let executors: Vec<executor::Key> = shared.lock().executors.keys().cloned().collect();
    for key in &executors {
        executor::shutdown(shared, key, "REASON_EXECUTOR_TERMINATED");
    }
    while !shared.active_tasks().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = shared.active_tasks();
    if !left.is_empty() {
        tracing::warn!(tasks = ?left, "tasks still running after the kill deadline");
    }
    // Give the master a moment to acknowledge the final updates while still connected.
    let ack_deadline = tokio::time::Instant::now() + ACK_WAIT;
    while shared.connected()
        && shared.pending_count() > 0
        && tokio::time::Instant::now() < ack_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Remove the empty `<root>/<agent_id>` cgroups left behind by agents that no longer exist (killed
/// test clusters): every one but this agent's and those holding a recovered task's cgroup; cgroups
/// holding processes are never touched.
fn prune_stale_cgroups(shared: &Shared) {
    let Some(cg) = shared.cgroups.as_ref() else {
        return;
    };
    let root = shared.cfg.cgroup_root.trim_matches('/');
    if root.is_empty() {
        return;
    }
    let keep: Vec<String> = {
        let st = shared.lock();
        let own = st.agent_id.as_ref().map(|id| id.to_string());
        let of_tasks = st.tasks.values().filter_map(|t| {
            let rest = t.cgroup.as_deref()?.trim_matches('/').strip_prefix(root)?;
            rest.trim_start_matches('/')
                .split('/')
                .next()
                .map(str::to_string)
        });
        own.into_iter().chain(of_tasks).collect()
    };
    let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
    match cg.prune_stale(root, &keep) {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(?removed, "removed stale empty agent cgroups")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot prune stale agent cgroups"),
    }
}

/// Remove the task cgroups and the agent's own `<root>/<agent_id>` (and `<root>` if empty).
fn remove_cgroups(shared: &Shared) {
    let Some(cg) = shared.cgroups.as_ref() else {
        return;
    };
    let (paths, agent_id) = {
        let st = shared.lock();
        let paths: Vec<String> = st.tasks.values().filter_map(|t| t.cgroup.clone()).collect();
        (paths, st.agent_id.clone())
    };
    for p in &paths {
        let _ = cg.kill_all(p);
        let _ = cg.remove(p);
    }
    let root = shared.cfg.cgroup_root.trim_matches('/');
    if let Some(id) = agent_id.and_then(|id| path_id::PathId::agent(&id).ok()) {
        let _ = cg.remove(&tasks::agent_cgroup(root, &id));
    }
    if !root.is_empty() {
        let _ = cg.remove(root);
    }
}
