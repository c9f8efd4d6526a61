//! The agent's shared in-memory state: the task table, the queue of unacknowledged status updates and
//! the current master connection.
//!
//! Every task watcher, the WebSocket loop and the HTTP server hold an `Arc<Shared>`. Status updates go
//! through [`Shared::emit`]: checkpoint to disk, record the task's latest state, queue as pending, and
//! send on the connection if one is registered. All of it happens under one lock, so updates reach the
//! connection's channel in checkpoint order (per task and globally).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use meseta_api::agent::{AgentMessage, Register, StatusUpdate, TaskReport, TaskSpec};
use meseta_isolation::cgroup::Cgroups;
use meseta_isolation::user::Identity;
use meseta_types::{AgentId, FrameworkId, Resources, TaskId, TaskState};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Checkpoint, PendingUpdate, StateRecord};
use crate::path_id::PathId;
use crate::{AgentConfig, AgentError};

/// One task the agent knows about.
#[derive(Clone, Debug)]
pub(crate) struct TaskEntry {
    /// What was launched.
    pub spec: TaskSpec,
    /// Latest state (and how it was reached).
    pub record: StateRecord,
    /// A kill was requested (persisted as a marker too).
    pub kill_requested: bool,
    /// The task's cgroup (relative), once known.
    pub cgroup: Option<String>,
}

/// Mutable state behind [`Shared`]'s lock.
#[derive(Default)]
pub(crate) struct State {
    /// Every known task.
    pub tasks: BTreeMap<TaskId, TaskEntry>,
    /// Unacknowledged updates, in sequence order.
    pending: Vec<PendingUpdate>,
    next_seq: u64,
    /// The registered connection, if any.
    conn: Option<mpsc::UnboundedSender<AgentMessage>>,
    /// The agent id (persisted one until the master confirms it).
    pub agent_id: Option<AgentId>,
    /// Tasks whose health checker runs (one checker per task).
    pub health_checkers: BTreeSet<TaskId>,
    /// The resources of the last `Register` message.
    advertised: Option<Resources>,
    /// Whether the last `Register` message offered `docker:true`.
    advertised_docker: bool,
    /// Default executors of task groups, by (framework, executor id) (`crate::group`).
    pub groups: BTreeMap<(FrameworkId, String), crate::group::GroupEntry>,
    /// Custom executors, by (framework, executor id) (`crate::executor`).
    pub executors: BTreeMap<(FrameworkId, String), crate::executor::ExecutorEntry>,
    /// Messages for the master that must not be lost to a disconnection (an executor's exit):
    /// sent on the next registered connection.
    deferred: Vec<AgentMessage>,
}

/// What an executor adds to a status update it sends.
#[derive(Clone, Debug, Default)]
pub(crate) struct UpdateExtra {
    /// The executor's uuid for the update (a new one when `None`).
    pub uuid: Option<String>,
    /// The executor.
    pub executor_id: Option<String>,
    /// The status's data, base64.
    pub data: Option<String>,
}

/// State shared by every part of a running agent.
pub(crate) struct Shared {
    /// Configuration.
    pub cfg: AgentConfig,
    /// On-disk checkpoints.
    pub checkpoint: Checkpoint,
    /// Host name reported to the master and given to tasks.
    pub hostname: String,
    /// Total resources.
    pub resources: Resources,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Host cgroups, for usage and cleanup (`None` when undetectable).
    pub cgroups: Option<Arc<dyn Cgroups>>,
    /// The user the agent runs as (tasks run as another only when it is root).
    pub agent_user: Identity,
    /// Stops watchers, the usage loop and the HTTP server.
    pub stop: CancellationToken,
    /// Id confirmed by the master in this run.
    pub registered: watch::Sender<Option<AgentId>>,
    /// The Docker engine, set when one first answers (DOCKER tasks are refused without it).
    pub docker: std::sync::OnceLock<crate::docker::Engine>,
    /// Whether the engine answered its last probe (`docker::watch`): the agent offers
    /// `docker:true` and launches containers only while it does.
    pub docker_up: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
    /// The latest usage figures of running tasks (`/monitor/statistics`).
    last_usage: Mutex<Vec<meseta_api::agent::TaskUsage>>,
    /// The bearer key the HTTP endpoints require (given by the master, kept across restarts).
    http_key: Mutex<Option<String>>,
}

/// Current unix time in seconds.
pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Shared {
    /// Build the shared state; `pending` and `tasks` come from recovery.
    pub fn new(
        cfg: AgentConfig,
        checkpoint: Checkpoint,
        hostname: String,
        resources: Resources,
        http_addr: SocketAddr,
        cgroups: Option<Arc<dyn Cgroups>>,
    ) -> Shared {
        Shared {
            cfg,
            hostname,
            resources,
            http_addr,
            cgroups,
            agent_user: Identity::current(),
            stop: CancellationToken::new(),
            registered: watch::channel(None).0,
            docker: std::sync::OnceLock::new(),
            docker_up: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(State::default()),
            last_usage: Mutex::new(Vec::new()),
            http_key: Mutex::new(checkpoint.read_http_key()),
            checkpoint,
        }
    }

    /// The key the HTTP endpoints require, if the master gave one.
    pub fn http_key(&self) -> Option<String> {
        self.http_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Keep the key the master gave at registration (`None`: endpoints open), on disk too.
    pub fn set_http_key(&self, key: Option<String>) {
        if let Err(e) = self.checkpoint.write_http_key(key.as_deref()) {
            tracing::error!(error = %e, "cannot persist the HTTP key");
        }
        *self.http_key.lock().unwrap_or_else(|p| p.into_inner()) = key;
    }

    /// Lock the state (a poisoned lock is still usable: every mutation is a single step).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Load recovered pending updates (sequence continues after the highest).
    pub fn load_pending(&self, pending: Vec<PendingUpdate>) {
        let mut st = self.lock();
        st.next_seq = pending.iter().map(|p| p.seq + 1).max().unwrap_or(1);
        st.pending = pending;
    }

    /// Checkpoint and send a status update for `task_id`; records it as the task's latest state.
    pub fn emit(&self, task_id: &TaskId, framework_id: &FrameworkId, rec: StateRecord) {
        self.emit_inner(task_id, framework_id, rec, true);
    }

    /// Like [`Shared::emit`], with the executor's uuid, id and data; `cond` is checked on the
    /// task's entry under the same lock (returns whether it was emitted).
    pub fn emit_with(
        &self,
        task_id: &TaskId,
        framework_id: &FrameworkId,
        rec: StateRecord,
        extra: UpdateExtra,
        cond: impl FnOnce(&State, &TaskEntry) -> bool,
    ) -> bool {
        let st = self.lock();
        if !st.tasks.get(task_id).is_some_and(|t| cond(&st, t)) {
            return false;
        }
        self.emit_locked(st, task_id, framework_id, rec, true, extra);
        true
    }

    /// Whether an update with this uuid awaits acknowledgement.
    pub fn is_pending(st: &State, uuid: &str) -> bool {
        st.pending.iter().any(|p| p.update.uuid == uuid)
    }

    /// Send `msg` now if registered, else on the next registration.
    pub fn send_or_defer(&self, msg: AgentMessage) {
        let mut st = self.lock();
        let sent = st
            .conn
            .as_ref()
            .is_some_and(|c| c.send(msg.clone()).is_ok());
        if !sent {
            st.deferred.push(msg);
        }
    }

    /// Like [`Shared::emit`] but leaves the task table alone: the answer to a refused launch, whose
    /// id may belong to another (running) task.
    pub fn emit_detached(&self, task_id: &TaskId, framework_id: &FrameworkId, rec: StateRecord) {
        self.emit_inner(task_id, framework_id, rec, false);
    }

    /// Like [`Shared::emit`], but only when `cond` holds for the task's entry (checked under the
    /// same lock that records the update); returns whether it was emitted.
    pub fn emit_if(
        &self,
        task_id: &TaskId,
        framework_id: &FrameworkId,
        rec: StateRecord,
        cond: impl FnOnce(&TaskEntry) -> bool,
    ) -> bool {
        let st = self.lock();
        if !st.tasks.get(task_id).is_some_and(cond) {
            return false;
        }
        self.emit_locked(st, task_id, framework_id, rec, true, UpdateExtra::default());
        true
    }

    fn emit_inner(
        &self,
        task_id: &TaskId,
        framework_id: &FrameworkId,
        rec: StateRecord,
        record: bool,
    ) {
        let st = self.lock();
        self.emit_locked(
            st,
            task_id,
            framework_id,
            rec,
            record,
            UpdateExtra::default(),
        );
    }

    fn emit_locked(
        &self,
        mut st: MutexGuard<'_, State>,
        task_id: &TaskId,
        framework_id: &FrameworkId,
        rec: StateRecord,
        record: bool,
        extra: UpdateExtra,
    ) {
        let executor_id = extra.executor_id.or_else(|| {
            st.tasks
                .get(task_id)
                .and_then(|t| t.spec.executor.as_ref())
                .map(|e| e.id().to_string())
        });
        let update = StatusUpdate {
            uuid: extra
                .uuid
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            executor_id,
            data: extra.data,
            task_id: task_id.clone(),
            framework_id: framework_id.clone(),
            state: rec.state,
            reason: rec.reason.clone(),
            message: rec.message.clone(),
            timestamp: now_secs(),
            exit_code: rec.exit_code,
            healthy: rec.healthy,
        };
        tracing::info!(task_id = %task_id, state = %rec.state, reason = ?rec.reason,
            message = ?rec.message, healthy = ?rec.healthy, uuid = %update.uuid, "status update");
        let seq = st.next_seq;
        st.next_seq += 1;
        // The task's latest state is recorded with the update (one append to its log).
        let entry = st.tasks.get_mut(task_id).filter(|_| record);
        let recorded = entry.is_some();
        if let Some(entry) = entry {
            entry.record = rec.clone();
        }
        // An invalid id (a refused launch) names no file: its update is kept in memory only.
        match self
            .checkpoint
            .write_update(seq, &update, recorded.then_some(&rec))
        {
            Ok(()) => {}
            Err(e @ AgentError::InvalidId(_)) => {
                tracing::warn!(error = %e, "status update of an invalid task id is not checkpointed")
            }
            Err(e) => {
                tracing::error!(task_id = %task_id, error = %e, "cannot checkpoint status update")
            }
        }
        if let Some(conn) = &st.conn {
            let _ = conn.send(AgentMessage::StatusUpdate(update.clone()));
        }
        st.pending.push(PendingUpdate { seq, update });
    }

    /// The framework acknowledged `uuid`: drop its checkpoint.
    pub fn acknowledge(&self, task_id: &TaskId, uuid: &str) {
        let mut st = self.lock();
        let Some(pos) = st
            .pending
            .iter()
            .position(|p| p.update.uuid == uuid && &p.update.task_id == task_id)
        else {
            tracing::debug!(task_id = %task_id, uuid, "acknowledgement of unknown update");
            return;
        };
        let p = st.pending.remove(pos);
        if let Err(e) = self.checkpoint.remove_update(p.seq, &p.update) {
            tracing::warn!(task_id = %task_id, error = %e, "cannot remove acknowledged update");
        }
        tracing::debug!(task_id = %task_id, uuid, state = %p.update.state, "update acknowledged");
    }

    /// A registered connection: send every pending update on it, then route new ones to it.
    pub fn attach(&self, conn: mpsc::UnboundedSender<AgentMessage>) {
        let mut st = self.lock();
        for p in &st.pending {
            let _ = conn.send(AgentMessage::StatusUpdate(p.update.clone()));
        }
        for msg in std::mem::take(&mut st.deferred) {
            let _ = conn.send(msg);
        }
        st.conn = Some(conn);
    }

    /// The connection is gone.
    pub fn detach(&self) {
        self.lock().conn = None;
    }

    /// Resend every pending update on the current connection.
    pub fn resend_pending(&self) {
        let st = self.lock();
        if let Some(conn) = &st.conn {
            for p in &st.pending {
                let _ = conn.send(AgentMessage::StatusUpdate(p.update.clone()));
            }
        }
    }

    /// Send a message that is not checkpointed (heartbeat, usage, reconciliation answers).
    pub fn send_unchecked(&self, msg: AgentMessage) -> bool {
        match &self.lock().conn {
            Some(conn) => conn.send(msg).is_ok(),
            None => false,
        }
    }

    /// Whether a registered connection is up.
    pub fn connected(&self) -> bool {
        self.lock().conn.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// How many updates await acknowledgement.
    pub fn pending_count(&self) -> usize {
        self.lock().pending.len()
    }

    /// The resources to register with: the totals without the ports other processes on the host
    /// listen on (the ports of this agent's own active tasks stay theirs).
    fn advertised_resources(&self, st: &State) -> Resources {
        let mut taken = crate::resources::host_listening_ports();
        for t in st.tasks.values().filter(|t| !t.record.state.is_terminal()) {
            for p in t.spec.resources.ranges("ports").values() {
                taken.remove(&p);
            }
        }
        crate::resources::without_ports(&self.resources, &taken)
    }

    /// Whether the resources to register with changed since the last `Register` (a process on
    /// the host started or stopped listening on a port of the agent's ranges), or the Docker
    /// engine came or went (the `docker` attribute).
    pub fn advertised_changed(&self) -> bool {
        let st = self.lock();
        let now = self.advertised_resources(&st);
        st.advertised
            .as_ref()
            .is_some_and(|before| *before != now || st.advertised_docker != self.docker_answers())
    }

    /// Whether a Docker engine is set and answered its last probe.
    pub fn docker_answers(&self) -> bool {
        self.docker.get().is_some() && self.docker_up.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The `Register` message: every task that is not terminal or has unacknowledged updates.
    pub fn register_message(&self) -> Register {
        let mut st = self.lock();
        let resources = self.advertised_resources(&st);
        st.advertised = Some(resources.clone());
        st.advertised_docker = self.docker_answers();
        let tasks = st
            .tasks
            .values()
            .filter(|t| {
                !t.record.state.is_terminal()
                    || st
                        .pending
                        .iter()
                        .any(|p| p.update.task_id == t.spec.task_id)
            })
            .map(|t| TaskReport {
                spec: t.spec.clone(),
                state: t.record.state,
            })
            .collect();
        Register {
            agent_id: st.agent_id.clone(),
            hostname: self.hostname.clone(),
            address: self.http_addr.to_string(),
            resources,
            attributes: self.attributes(),
            tasks,
            version: env!("CARGO_PKG_VERSION").to_string(),
            domain: self.cfg.domain.clone(),
        }
    }

    /// The configured attributes, plus `docker:true` while a Docker engine answers (what DOCKER
    /// apps are placed by).
    fn attributes(&self) -> meseta_types::Attributes {
        let mut a = self.cfg.attributes.clone();
        if self.docker_answers() && a.get("docker").is_none() {
            a.0.push(meseta_types::Attribute {
                name: "docker".into(),
                value: meseta_types::AttrValue::Text("true".into()),
            });
        }
        a
    }

    /// The master confirmed `id`: persist it and publish it.
    pub fn set_registered(&self, id: &AgentId) {
        if let Err(e) = self.checkpoint.write_agent_id(id) {
            tracing::error!(agent_id = %id, error = %e, "cannot persist agent id");
        }
        self.lock().agent_id = Some(id.clone());
        self.registered.send_replace(Some(id.clone()));
    }

    /// Resources not held by non-terminal tasks.
    pub fn free_resources(st: &State, total: &Resources) -> Resources {
        let mut used = Resources::new();
        for t in st.tasks.values().filter(|t| !t.record.state.is_terminal()) {
            used.add(&t.spec.resources);
        }
        for e in st.executors.values() {
            used.add(&e.spec.info.resources);
        }
        for g in st.groups.values() {
            used.add(&g.resources);
        }
        total
            .with_role("*")
            .checked_sub(&used.without_volumes().with_role("*"))
            .unwrap_or_default()
    }

    /// Ids of tasks that are not terminal.
    pub fn active_tasks(&self) -> Vec<TaskId> {
        self.lock()
            .tasks
            .values()
            .filter(|t| !t.record.state.is_terminal())
            .map(|t| t.spec.task_id.clone())
            .collect()
    }

    /// `<work_dir>/tasks/<task_id>`; `None` for an id that cannot name a directory (no such
    /// task was admitted).
    pub fn task_dir(&self, id: &TaskId) -> Option<std::path::PathBuf> {
        PathId::task(id).ok().map(|p| self.checkpoint.task_dir(&p))
    }

    /// Keep the latest usage figures.
    pub fn set_last_usage(&self, usage: Vec<meseta_api::agent::TaskUsage>) {
        *self.last_usage.lock().unwrap_or_else(|p| p.into_inner()) = usage;
    }

    /// The latest usage figures.
    pub fn last_usage(&self) -> Vec<meseta_api::agent::TaskUsage> {
        self.last_usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A copy of one task's entry.
    pub fn task(&self, id: &TaskId) -> Option<TaskEntry> {
        self.lock().tasks.get(id).cloned()
    }
}

/// A state record without reason/message/exit code.
pub(crate) fn plain(state: TaskState) -> StateRecord {
    StateRecord {
        state,
        reason: None,
        message: None,
        exit_code: None,
        healthy: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(dir: &std::path::Path) -> Shared {
        let cfg = AgentConfig::new(
            "http://127.0.0.1:1",
            dir,
            "127.0.0.1:0".parse().expect("addr"),
        );
        let cp = Checkpoint::open(dir).expect("open");
        Shared::new(
            cfg,
            cp,
            "h".into(),
            Resources::parse("cpus:2;mem:1024").expect("res"),
            "127.0.0.1:5051".parse().expect("addr"),
            None,
        )
    }

    #[test]
    fn emit_checkpoints_then_sends_and_ack_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sh = shared(dir.path());
        sh.load_pending(Vec::new());
        let tid = TaskId::new("t1");
        let fw = FrameworkId::new("fw");
        sh.emit(&tid, &fw, plain(TaskState::Starting));
        assert_eq!(sh.checkpoint.load_updates().expect("load").len(), 1);

        let (tx, mut rx) = mpsc::unbounded_channel();
        sh.attach(tx);
        sh.emit(&tid, &fw, plain(TaskState::Running));
        let mut uuids = Vec::new();
        while let Ok(AgentMessage::StatusUpdate(u)) = rx.try_recv() {
            uuids.push((u.uuid, u.state));
        }
        assert_eq!(uuids.len(), 2);
        assert_eq!(uuids[0].1, TaskState::Starting);
        assert_eq!(uuids[1].1, TaskState::Running);

        sh.acknowledge(&tid, &uuids[0].0);
        assert_eq!(sh.pending_count(), 1);
        let left = sh.checkpoint.load_updates().expect("load");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].update.uuid, uuids[1].0);
    }

    #[test]
    fn free_resources_subtracts_active_tasks_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sh = shared(dir.path());
        let mut st = State::default();
        let mut spec = crate::tasks::tests::spec("a", "cpus:1;mem:256");
        st.tasks.insert(
            spec.task_id.clone(),
            TaskEntry {
                spec: spec.clone(),
                record: plain(TaskState::Running),
                kill_requested: false,
                cgroup: None,
            },
        );
        spec.task_id = TaskId::new("b");
        st.tasks.insert(
            spec.task_id.clone(),
            TaskEntry {
                spec,
                record: plain(TaskState::Finished),
                kill_requested: false,
                cgroup: None,
            },
        );
        let free = Shared::free_resources(&st, &sh.resources);
        assert_eq!(free.cpus(), 1.0);
        assert_eq!(free.mem(), 768.0);
    }
}
