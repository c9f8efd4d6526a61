//! The master's live state and the operations on it.
//!
//! Everything here is synchronous and runs under the master's lock; effects leave through the
//! per-agent and per-framework channels held in the entries. Agent-facing operations live in this
//! file; framework calls in `calls.rs`; offer generation in `allocator.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use meseta_api::agent::{MasterMessage, Register, StatusUpdate, TaskSpec, UsageReport};
use meseta_api::scheduler::{Event, FrameworkInfo, IdValue, TaskStatus, Update};
use meseta_types::{AgentId, Attributes, FrameworkId, OfferId, Resources, TaskId, TaskState};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::registry::{AgentRecord, Recovered};
use crate::unix_now;

/// How the master runs.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// An agent silent for longer is marked unreachable and its tasks `TASK_UNREACHABLE`.
    pub agent_timeout: Duration,
    /// How often agents heartbeat.
    pub agent_heartbeat: Duration,
    /// Period of the allocation/timer tick (offers are also made on every change).
    pub allocation_interval: Duration,
    /// Heartbeat period of scheduler event streams.
    pub framework_heartbeat: Duration,
    /// Host name reported in `/master/state`.
    pub hostname: String,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5050)),
            agent_timeout: Duration::from_secs(30),
            agent_heartbeat: Duration::from_secs(2),
            allocation_interval: Duration::from_secs(1),
            framework_heartbeat: Duration::from_secs(15),
            hostname: hostname(),
        }
    }
}

/// The machine's host name, "localhost" if unknown.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Connection state of an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AgentStatus {
    /// Connected and heartbeating.
    Active,
    /// Its connection broke; not yet past the timeout.
    Disconnected,
    /// Silent past the timeout.
    Unreachable,
    /// Known from the store; has not re-registered since this master started.
    Recovered,
}

pub(crate) struct AgentConn {
    pub id: u64,
    pub tx: UnboundedSender<MasterMessage>,
}

pub(crate) struct AgentEntry {
    pub record: AgentRecord,
    pub reregistered_time: Option<f64>,
    pub status: AgentStatus,
    pub last_seen: Instant,
    pub conn: Option<AgentConn>,
    pub used: Resources,
    pub offered: Resources,
    pub version: String,
}

impl AgentEntry {
    pub fn free(&self) -> Resources {
        self.record
            .resources
            .checked_sub(&self.used)
            .and_then(|r| r.checked_sub(&self.offered))
            .unwrap_or_default()
    }

    fn send(&self, msg: MasterMessage) -> bool {
        match &self.conn {
            Some(c) => c.tx.send(msg).is_ok(),
            None => false,
        }
    }
}

pub(crate) struct FwConn {
    pub stream_id: String,
    pub tx: UnboundedSender<Event>,
}

pub(crate) struct FrameworkEntry {
    pub id: FrameworkId,
    pub info: FrameworkInfo,
    pub registered_time: f64,
    pub unregistered_time: f64,
    pub conn: Option<FwConn>,
    pub disconnected_at: Option<Instant>,
    pub recovered: bool,
    pub suppressed: bool,
    pub used: Resources,
    pub offered: Resources,
    pub completed_tasks: VecDeque<TaskEntry>,
    pub filters: HashMap<AgentId, Instant>,
}

impl FrameworkEntry {
    pub fn new(id: FrameworkId, info: FrameworkInfo, registered_time: f64) -> FrameworkEntry {
        FrameworkEntry {
            id,
            info,
            registered_time,
            unregistered_time: 0.0,
            conn: None,
            disconnected_at: None,
            recovered: false,
            suppressed: false,
            used: Resources::new(),
            offered: Resources::new(),
            completed_tasks: VecDeque::new(),
            filters: HashMap::new(),
        }
    }

    pub fn send(&self, ev: Event) -> bool {
        match &self.conn {
            Some(c) => c.tx.send(ev).is_ok(),
            None => false,
        }
    }

    pub fn failover_timeout(&self) -> Duration {
        let secs = self.info.failover_timeout.unwrap_or(0.0);
        if secs.is_finite() && secs > 0.0 {
            Duration::from_secs_f64(secs.min(1e9))
        } else {
            Duration::ZERO
        }
    }
}

/// One entry of a task's history.
#[derive(Clone, Debug)]
pub(crate) struct StatusEntry {
    pub state: TaskState,
    pub timestamp: f64,
    pub message: Option<String>,
    pub reason: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct TaskEntry {
    pub spec: TaskSpec,
    pub agent_id: AgentId,
    pub state: TaskState,
    pub statuses: Vec<StatusEntry>,
    pub usage: Option<(u64, f64)>,
}

pub(crate) struct OfferEntry {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub resources: Resources,
}

/// Counters of terminal task states since the master started.
#[derive(Default)]
pub(crate) struct Counters {
    pub terminal: BTreeMap<TaskState, u64>,
    pub agent_registrations: u64,
    pub agent_reregistrations: u64,
}

/// The outcome of checking a registration before it is persisted.
pub(crate) enum Admission {
    /// A new agent gets this id (persist it first).
    New(AgentId),
    /// A known agent comes back.
    Known(AgentId),
}

/// The live state of the master.
pub(crate) struct Core {
    pub cfg: MasterConfig,
    pub master_id: String,
    pub addr: SocketAddr,
    pub start_time: f64,
    pub agents: BTreeMap<AgentId, AgentEntry>,
    pub frameworks: BTreeMap<FrameworkId, FrameworkEntry>,
    pub completed_frameworks: VecDeque<FrameworkEntry>,
    pub tasks: HashMap<TaskId, TaskEntry>,
    pub offers: HashMap<OfferId, OfferEntry>,
    pub counters: Counters,
    next_agent: u64,
    pub next_framework: u64,
    pub next_offer: u64,
    next_conn: u64,
}

/// At most this many completed tasks are kept per framework.
pub(crate) const MAX_COMPLETED_TASKS: usize = 1000;
/// At most this many completed frameworks are kept.
pub(crate) const MAX_COMPLETED_FRAMEWORKS: usize = 50;

impl Core {
    pub fn new(cfg: MasterConfig, recovered: Recovered) -> Core {
        let now = Instant::now();
        let master_id = uuid::Uuid::new_v4().to_string();
        let mut core = Core {
            addr: cfg.listen,
            cfg,
            master_id,
            start_time: unix_now(),
            agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            tasks: HashMap::new(),
            offers: HashMap::new(),
            counters: Counters::default(),
            next_agent: 0,
            next_framework: 0,
            next_offer: 0,
            next_conn: 0,
        };
        for rec in recovered.agents {
            core.agents.insert(
                rec.id.clone(),
                AgentEntry {
                    record: rec,
                    reregistered_time: None,
                    status: AgentStatus::Recovered,
                    last_seen: now,
                    conn: None,
                    used: Resources::new(),
                    offered: Resources::new(),
                    version: String::new(),
                },
            );
        }
        for rec in recovered.frameworks {
            let mut fw = FrameworkEntry::new(rec.id.clone(), rec.info, rec.registered_time);
            fw.recovered = true;
            fw.disconnected_at = Some(now);
            core.frameworks.insert(rec.id, fw);
        }
        core
    }

    pub fn config(&self) -> &MasterConfig {
        &self.cfg
    }

    pub fn master_id(&self) -> &str {
        &self.master_id
    }

    pub fn set_address(&mut self, addr: SocketAddr) {
        self.addr = addr;
    }

    pub fn next_conn_id(&mut self) -> u64 {
        self.next_conn += 1;
        self.next_conn
    }

    pub fn new_framework_id(&mut self) -> FrameworkId {
        let id = FrameworkId::new(format!("{}-{:04}", self.master_id, self.next_framework));
        self.next_framework += 1;
        id
    }

    /// Decide whether a registration is admitted, before anything is persisted.
    pub fn admit(&mut self, reg: &Register) -> Result<Admission, String> {
        if reg.resources.cpus() <= 0.0 && reg.resources.mem() <= 0.0 {
            return Err(format!(
                "agent offers no cpus and no mem (resources '{}')",
                reg.resources
            ));
        }
        match &reg.agent_id {
            None => {
                let id = AgentId::new(format!("{}-S{}", self.master_id, self.next_agent));
                self.next_agent += 1;
                Ok(Admission::New(id))
            }
            Some(id) if self.agents.contains_key(id) => Ok(Admission::Known(id.clone())),
            Some(id) => Err(format!(
                "agent id '{id}' is unknown to this master (not in its registry); remove the \
                 agent's work_dir/agent_id file to register as a new agent"
            )),
        }
    }

    /// Complete a (re-)registration: bind the connection, reconcile tasks, answer `Registered`.
    pub fn register_agent(
        &mut self,
        record: AgentRecord,
        reg: Register,
        conn: AgentConn,
        now: Instant,
    ) {
        let id = record.id.clone();
        let reregister = self.agents.contains_key(&id);
        let old_version = self.agents.get(&id).map(|a| a.record.registered_time);
        let entry = self.agents.entry(id.clone()).or_insert_with(|| AgentEntry {
            record: record.clone(),
            reregistered_time: None,
            status: AgentStatus::Active,
            last_seen: now,
            conn: None,
            used: Resources::new(),
            offered: Resources::new(),
            version: String::new(),
        });
        entry.record = AgentRecord {
            registered_time: old_version.unwrap_or(record.registered_time),
            ..record
        };
        if reregister {
            entry.reregistered_time = Some(unix_now());
            self.counters.agent_reregistrations += 1;
        } else {
            self.counters.agent_registrations += 1;
        }
        entry.status = AgentStatus::Active;
        entry.last_seen = now;
        entry.version = reg.version.clone();
        entry.conn = Some(conn);
        let hb = self.cfg.agent_heartbeat.as_secs_f64();
        entry.send(MasterMessage::Registered {
            agent_id: id.clone(),
            heartbeat_interval_secs: hb,
        });
        self.reconcile_agent_tasks(&id, reg.tasks);
        tracing::info!(agent_id = %id, reregister, "agent registered");
        self.allocate(now);
    }

    /// Make the master's task table agree with what a (re-)registering agent reports.
    fn reconcile_agent_tasks(
        &mut self,
        agent_id: &AgentId,
        reported: Vec<meseta_api::agent::TaskReport>,
    ) {
        let mut seen = std::collections::HashSet::new();
        for report in reported {
            let task_id = report.spec.task_id.clone();
            seen.insert(task_id.clone());
            if report.state.is_terminal() {
                // Its pending terminal update (resent after registration) settles it.
                if !self.tasks.contains_key(&task_id) {
                    self.adopt_task(agent_id, report.spec, TaskState::Running);
                }
                continue;
            }
            if self.tasks.contains_key(&task_id) {
                let changed = self
                    .tasks
                    .get(&task_id)
                    .is_some_and(|t| t.state != report.state);
                if changed {
                    self.master_update(&task_id, report.state, "REASON_AGENT_REREGISTERED", None);
                }
            } else {
                self.adopt_task(agent_id, report.spec, report.state);
            }
            if !self.frameworks.contains_key(&self.task_framework(&task_id)) {
                // Its framework was removed: the task must not keep running.
                self.send_kill(&task_id, None);
            }
        }
        let missing: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(id, t)| &t.agent_id == agent_id && !seen.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in missing {
            self.master_update(
                &id,
                TaskState::Lost,
                "REASON_AGENT_RESTARTED",
                Some("task not found on the re-registered agent".to_string()),
            );
        }
    }

    fn task_framework(&self, id: &TaskId) -> FrameworkId {
        self.tasks
            .get(id)
            .map(|t| t.spec.framework_id.clone())
            .unwrap_or_default()
    }

    /// Take a task the master did not know (after a master restart) into the table.
    fn adopt_task(&mut self, agent_id: &AgentId, spec: TaskSpec, state: TaskState) {
        let fw_id = spec.framework_id.clone();
        if !self.frameworks.contains_key(&fw_id)
            && !self.completed_frameworks.iter().any(|f| f.id == fw_id)
        {
            let mut fw = FrameworkEntry::new(
                fw_id.clone(),
                FrameworkInfo {
                    name: String::new(),
                    user: String::new(),
                    ..FrameworkInfo::default()
                },
                unix_now(),
            );
            fw.recovered = true;
            fw.disconnected_at = Some(Instant::now());
            self.frameworks.insert(fw_id.clone(), fw);
        }
        if let Some(fw) = self.frameworks.get_mut(&fw_id) {
            fw.used.add(&spec.resources);
        }
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.used.add(&spec.resources);
        }
        let task = TaskEntry {
            spec,
            agent_id: agent_id.clone(),
            state,
            statuses: vec![StatusEntry {
                state,
                timestamp: unix_now(),
                message: None,
                reason: None,
            }],
            usage: None,
        };
        self.tasks.insert(task.spec.task_id.clone(), task);
    }

    /// A message from a registered agent on connection `conn_id`.
    pub fn agent_heartbeat(&mut self, agent_id: &AgentId, now: Instant) {
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.last_seen = now;
        }
    }

    /// Record usage figures.
    pub fn agent_usage(&mut self, agent_id: &AgentId, usage: UsageReport, now: Instant) {
        self.agent_heartbeat(agent_id, now);
        for u in usage.tasks {
            if let Some(t) = self.tasks.get_mut(&u.task_id) {
                if &t.agent_id == agent_id {
                    t.usage = Some((u.mem_bytes, u.cpu_secs));
                }
            }
        }
    }

    /// The agent's connection `conn_id` closed.
    pub fn agent_disconnected(&mut self, agent_id: &AgentId, conn_id: u64, now: Instant) {
        let Some(a) = self.agents.get_mut(agent_id) else {
            return;
        };
        if a.conn.as_ref().map(|c| c.id) != Some(conn_id) {
            return; // a newer connection replaced it
        }
        a.conn = None;
        if a.status == AgentStatus::Active {
            a.status = AgentStatus::Disconnected;
        }
        tracing::warn!(agent_id = %agent_id, "agent disconnected");
        self.rescind_agent_offers(agent_id);
        self.allocate(now);
    }

    /// Apply a status update born on an agent and forward it to the framework.
    pub fn status_update(&mut self, agent_id: &AgentId, u: StatusUpdate, now: Instant) {
        self.agent_heartbeat(agent_id, now);
        let status = TaskStatus {
            source: Some("SOURCE_EXECUTOR".to_string()),
            reason: u.reason.clone(),
            message: u.message.clone(),
            agent_id: Some(IdValue::new(agent_id.as_str())),
            uuid: Some(uuid_to_base64(&u.uuid)),
            ..TaskStatus::new(IdValue::new(u.task_id.as_str()), u.state, u.timestamp)
        };
        let fw_id = u.framework_id.clone();
        if let Some(task) = self.tasks.get_mut(&u.task_id) {
            if task.state != u.state {
                task.state = u.state;
                task.statuses.push(StatusEntry {
                    state: u.state,
                    timestamp: u.timestamp,
                    message: u.message.clone(),
                    reason: u.reason.clone(),
                });
            }
            if u.state.is_terminal() {
                self.finish_task(&u.task_id);
            }
        }
        self.forward_update(agent_id, &fw_id, &u.task_id, &u.uuid, status);
        if u.state.is_terminal() {
            self.allocate(now);
        }
    }

    /// Deliver an agent-born update to its framework, or acknowledge it ourselves when no
    /// framework will ever acknowledge it.
    fn forward_update(
        &mut self,
        agent_id: &AgentId,
        fw_id: &FrameworkId,
        task_id: &TaskId,
        uuid: &str,
        status: TaskStatus,
    ) {
        match self.frameworks.get(fw_id) {
            Some(fw) => {
                fw.send(Event::Update {
                    update: Update { status },
                });
            }
            None => {
                if let Some(a) = self.agents.get(agent_id) {
                    a.send(MasterMessage::Acknowledge {
                        task_id: task_id.clone(),
                        uuid: uuid.to_string(),
                    });
                }
            }
        }
    }

    /// A task reached a terminal state: release its resources and file it as completed.
    pub fn finish_task(&mut self, task_id: &TaskId) {
        let Some(task) = self.tasks.remove(task_id) else {
            return;
        };
        *self.counters.terminal.entry(task.state).or_default() += 1;
        if let Some(a) = self.agents.get_mut(&task.agent_id) {
            a.used = a.used.checked_sub(&task.spec.resources).unwrap_or_default();
        }
        let fw_id = task.spec.framework_id.clone();
        let fw = match self.frameworks.get_mut(&fw_id) {
            Some(fw) => Some(fw),
            None => self.completed_frameworks.iter_mut().find(|f| f.id == fw_id),
        };
        if let Some(fw) = fw {
            fw.used = fw
                .used
                .checked_sub(&task.spec.resources)
                .unwrap_or_default();
            fw.completed_tasks.push_back(task);
            while fw.completed_tasks.len() > MAX_COMPLETED_TASKS {
                fw.completed_tasks.pop_front();
            }
        }
    }

    /// A master-born update (no uuid; nothing to acknowledge).
    pub fn master_update(
        &mut self,
        task_id: &TaskId,
        state: TaskState,
        reason: &str,
        message: Option<String>,
    ) {
        let Some(task) = self.tasks.get_mut(task_id) else {
            return;
        };
        let now = unix_now();
        task.state = state;
        task.statuses.push(StatusEntry {
            state,
            timestamp: now,
            message: message.clone(),
            reason: Some(reason.to_string()),
        });
        let status = TaskStatus {
            source: Some("SOURCE_MASTER".to_string()),
            reason: Some(reason.to_string()),
            message,
            agent_id: Some(IdValue::new(task.agent_id.as_str())),
            ..TaskStatus::new(IdValue::new(task_id.as_str()), state, now)
        };
        let fw_id = task.spec.framework_id.clone();
        if let Some(fw) = self.frameworks.get(&fw_id) {
            fw.send(Event::Update {
                update: Update { status },
            });
        }
        if state.is_terminal() {
            self.finish_task(task_id);
        }
    }

    /// Ask the agent running `task_id` to kill it.
    pub fn send_kill(&mut self, task_id: &TaskId, grace_secs: Option<f64>) -> bool {
        let Some(task) = self.tasks.get(task_id) else {
            return false;
        };
        match self.agents.get(&task.agent_id) {
            Some(a) => a.send(MasterMessage::KillTask {
                task_id: task_id.clone(),
                grace_secs,
            }),
            None => false,
        }
    }

    /// Withdraw every offer on an agent (it left or disconnected).
    fn rescind_agent_offers(&mut self, agent_id: &AgentId) {
        let ids: Vec<OfferId> = self
            .offers
            .iter()
            .filter(|(_, o)| &o.agent_id == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.rescind_offer(&id);
        }
    }

    /// Withdraw one offer and tell its framework.
    pub fn rescind_offer(&mut self, offer_id: &OfferId) {
        if let Some(o) = self.remove_offer(offer_id) {
            if let Some(fw) = self.frameworks.get(&o.framework_id) {
                fw.send(Event::Rescind {
                    rescind: meseta_api::scheduler::Rescind {
                        offer_id: IdValue::new(offer_id.as_str()),
                    },
                });
            }
        }
    }

    /// Forget an offer and give its resources back.
    pub fn remove_offer(&mut self, offer_id: &OfferId) -> Option<OfferEntry> {
        let o = self.offers.remove(offer_id)?;
        if let Some(a) = self.agents.get_mut(&o.agent_id) {
            a.offered = a.offered.checked_sub(&o.resources).unwrap_or_default();
        }
        if let Some(fw) = self.frameworks.get_mut(&o.framework_id) {
            fw.offered = fw.offered.checked_sub(&o.resources).unwrap_or_default();
        }
        Some(o)
    }

    /// Periodic work: unreachable agents, framework failover, expired filters, allocation.
    /// Returns the frameworks removed (their records are deleted by the caller).
    pub fn tick(&mut self, now: Instant) -> Vec<FrameworkId> {
        let timeout = self.cfg.agent_timeout;
        let silent: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, a)| a.status != AgentStatus::Unreachable)
            .filter(|(_, a)| now.saturating_duration_since(a.last_seen) > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            self.mark_unreachable(&id);
        }
        let expired: Vec<FrameworkId> = self
            .frameworks
            .values()
            .filter(|f| f.conn.is_none())
            .filter(|f| {
                f.disconnected_at
                    .is_some_and(|t| now.saturating_duration_since(t) >= f.failover_timeout())
            })
            .map(|f| f.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(framework_id = %id, "framework failover timeout: tearing down");
            self.teardown(id);
        }
        for fw in self.frameworks.values_mut() {
            fw.filters.retain(|_, until| *until > now);
        }
        self.allocate(now);
        expired
    }

    fn mark_unreachable(&mut self, agent_id: &AgentId) {
        let Some(a) = self.agents.get_mut(agent_id) else {
            return;
        };
        a.status = AgentStatus::Unreachable;
        a.conn = None;
        tracing::warn!(agent_id = %agent_id, "agent unreachable");
        self.rescind_agent_offers(agent_id);
        let ids: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| &t.agent_id == agent_id && !t.state.is_terminal())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.master_update(
                &id,
                TaskState::Unreachable,
                "REASON_AGENT_REMOVED",
                Some("agent is unreachable".to_string()),
            );
        }
        for fw in self.frameworks.values() {
            fw.send(Event::Failure {
                failure: meseta_api::scheduler::Failure {
                    agent_id: Some(IdValue::new(agent_id.as_str())),
                    executor_id: None,
                    status: None,
                },
            });
        }
    }

    /// Remove a framework: kill its tasks, withdraw its offers, file it as completed.
    pub fn teardown(&mut self, fw_id: &FrameworkId) {
        let task_ids: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| &t.spec.framework_id == fw_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &task_ids {
            self.send_kill(id, None);
        }
        let offer_ids: Vec<OfferId> = self
            .offers
            .iter()
            .filter(|(_, o)| &o.framework_id == fw_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in offer_ids {
            self.remove_offer(&id);
        }
        if let Some(mut fw) = self.frameworks.remove(fw_id) {
            fw.conn = None;
            fw.unregistered_time = unix_now();
            self.completed_frameworks.push_back(fw);
            while self.completed_frameworks.len() > MAX_COMPLETED_FRAMEWORKS {
                self.completed_frameworks.pop_front();
            }
        }
    }

    /// The agent record a registration produces.
    pub fn agent_record(id: AgentId, reg: &Register) -> AgentRecord {
        AgentRecord {
            id,
            hostname: reg.hostname.clone(),
            address: reg.address.clone(),
            resources: reg.resources.clone(),
            attributes: reg.attributes.clone(),
            registered_time: unix_now(),
        }
    }

    /// Drop every agent connection and framework subscription (the master is stopping).
    pub fn close_connections(&mut self) {
        for a in self.agents.values_mut() {
            a.conn = None;
        }
        for f in self.frameworks.values_mut() {
            f.conn = None;
        }
    }

    /// Total and used resources over every registered agent.
    pub fn totals(&self) -> (Resources, Resources) {
        let mut total = Resources::new();
        let mut used = Resources::new();
        for a in self.agents.values() {
            if a.status == AgentStatus::Recovered {
                continue;
            }
            total.add(&a.record.resources);
            used.add(&a.used);
        }
        (total, used)
    }

    /// The attributes of an agent (for offers).
    pub fn agent_attributes(&self, id: &AgentId) -> Attributes {
        self.agents
            .get(id)
            .map(|a| a.record.attributes.clone())
            .unwrap_or_default()
    }
}

/// Agent update uuids are hyphenated text; Mesos frameworks see base64 of the 16 bytes.
pub(crate) fn uuid_to_base64(u: &str) -> String {
    use base64::Engine;
    match uuid::Uuid::parse_str(u) {
        Ok(id) => base64::engine::general_purpose::STANDARD.encode(id.as_bytes()),
        Err(_) => base64::engine::general_purpose::STANDARD.encode(u.as_bytes()),
    }
}

/// The inverse of [`uuid_to_base64`].
pub(crate) fn base64_to_uuid(b: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
    let arr: [u8; 16] = bytes.try_into().ok()?;
    Some(uuid::Uuid::from_bytes(arr).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_round_trips_through_base64() {
        let u = uuid::Uuid::new_v4().to_string();
        let b = uuid_to_base64(&u);
        assert_eq!(base64_to_uuid(&b).as_deref(), Some(u.as_str()));
        assert_eq!(base64_to_uuid("not base64!"), None);
    }
}
