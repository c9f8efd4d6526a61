//! The master's live state and the operations on it.
//!
//! Everything here is synchronous and runs under the master's lock; effects leave through the
//! per-agent and per-framework channels held in the entries. Agent-facing operations live in this
//! file; framework calls in `calls.rs`; offer generation in `allocator.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use meseta_api::agent::MasterMessage;
use meseta_api::scheduler::{Event, FrameworkInfo, IdValue, TaskStatus, Update};
use meseta_types::{AgentId, Attributes, FrameworkId, OfferId, Resources, TaskId, TaskState};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::records::AgentRecord;
use crate::task::{StatusEntry, TaskEntry};
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
    /// An offer unused for longer is rescinded (`--offer_timeout`; none by default, as Mesos).
    pub offer_timeout: Option<Duration>,
    /// The master's fault domain (`--domain`): frameworks without `REGION_AWARE` only get
    /// offers from agents of its region. `None`: no region gate.
    pub domain: Option<meseta_api::domain::Domain>,
    /// Whether the built-in schedulers accept tasks that ask to run as `root` (`--allow-root`,
    /// off by default). Agents enforce their own flag as well.
    pub allow_root_tasks: bool,
    /// Whether the built-in schedulers accept DOCKER containers with `privileged: true`
    /// (`--docker-allow-privileged`, off by default). Agents enforce their own flag as well.
    pub allow_privileged_containers: bool,
    /// A layer put around the whole router (routes of in-process frameworks included): the
    /// access check of `--acl`, the bulk-delete guard and the audit log. `None`: no layer.
    pub edge: Option<EdgeLayer>,
    /// TLS on the master's listener (`--tls-cert/--tls-key`, and `--tls-client-ca` for
    /// mutual TLS: agents must then present a certificate that CA signed to register).
    pub tls: Option<meseta_tls::ServerTls>,
    /// The shared secret agents present to register (`--join-token-file`); `None`: none asked.
    pub join_token: Option<String>,
    /// The bearer key handed to each agent at registration, which its HTTP endpoints (sandbox
    /// logs, state, statistics) then require; the master presents it when it proxies them.
    /// `None`: agents' endpoints stay open. `--acl` sets a random one.
    pub agent_http_key: Option<String>,
    /// Resolves a task's secret references (`/team-a/db/password`) to their values, only into
    /// the launch message to the agent. `None`: tasks that reference secrets fail `TASK_ERROR`.
    pub secrets: Option<SecretResolver>,
}

/// Looks a secret's value up by path: `Err` says why it cannot (no key, no such secret, the
/// wrong key).
#[derive(Clone)]
pub struct SecretResolver(pub std::sync::Arc<ResolveFn>);

/// Resolves one secret path to its value.
pub type ResolveFn = dyn Fn(&str) -> Result<String, String> + Send + Sync;

impl std::fmt::Debug for SecretResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretResolver")
    }
}

/// A function that wraps the master's full router in one more layer (see [`MasterConfig::edge`]).
/// It is given the master the router serves, whose [`crate::Master::shared_store`] is where the
/// layer's own writes go (fenced by leadership under HA).
#[derive(Clone)]
pub struct EdgeLayer(pub std::sync::Arc<EdgeFn>);

/// The function of an [`EdgeLayer`].
pub type EdgeFn = dyn Fn(axum::Router, &crate::Master) -> axum::Router + Send + Sync;

impl std::fmt::Debug for EdgeLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EdgeLayer")
    }
}

/// Which users a framework's caller may run tasks as, put on an ACCEPT request by the edge
/// layer (`--acl`): `Err` names the missing grant. A task asking for another user fails with
/// `TASK_ERROR` (`REASON_TASK_UNAUTHORIZED`); the call itself is still accepted.
#[derive(Clone)]
pub struct TaskUsers(pub std::sync::Arc<UserCheck>);

/// Whether tasks may run as a user: `Err` names the missing grant.
pub type UserCheck = dyn Fn(&str) -> Result<(), String> + Send + Sync;

impl std::fmt::Debug for TaskUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskUsers")
    }
}

impl EdgeLayer {
    /// `router` (of `master`) wrapped by `edge`, or as it is without one.
    pub fn apply(
        edge: Option<&EdgeLayer>,
        router: axum::Router,
        master: &crate::Master,
    ) -> axum::Router {
        match edge {
            Some(e) => (e.0)(router, master),
            None => router,
        }
    }
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
            offer_timeout: None,
            domain: None,
            allow_root_tasks: false,
            allow_privileged_containers: false,
            edge: None,
            tls: None,
            join_token: None,
            agent_http_key: None,
            secrets: None,
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

/// The sending end of an agent's connection. Its queue is a list of one node per message (a
/// master holds one per agent, and most are idle): tokio's unbounded channel would keep a
/// block of 32 message slots, ~2.5 KiB, for every agent.
pub(crate) struct AgentConn {
    pub id: u64,
    pub tx: futures::channel::mpsc::UnboundedSender<MasterMessage>,
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
    pub fn send(&self, msg: MasterMessage) -> bool {
        match &self.conn {
            Some(c) => c.tx.unbounded_send(msg).is_ok(),
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
        }
    }

    pub fn send(&self, ev: Event) -> bool {
        match &self.conn {
            Some(c) => c.tx.send(ev).is_ok(),
            None => false,
        }
    }

    /// Did the framework declare `PARTITION_AWARE`?
    pub fn partition_aware(&self) -> bool {
        self.info
            .capabilities
            .iter()
            .flatten()
            .any(|c| c.kind == "PARTITION_AWARE")
    }

    /// The state this framework is told: frameworks that are not partition-aware see
    /// `TASK_LOST` where others see `TASK_UNREACHABLE` or `TASK_DROPPED` (as Mesos does).
    pub fn visible_state(&self, state: TaskState) -> TaskState {
        match state {
            TaskState::Unreachable | TaskState::Dropped if !self.partition_aware() => {
                TaskState::Lost
            }
            s => s,
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

pub(crate) struct OfferEntry {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    /// The allocation role the offer was made in.
    pub role: String,
    pub resources: Resources,
    /// When it was made (for the offer timeout).
    pub created: Instant,
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
    cfg: MasterConfig,
    master_id: String,
    pub addr: SocketAddr,
    start_time: f64,
    pub agents: BTreeMap<AgentId, AgentEntry>,
    pub frameworks: BTreeMap<FrameworkId, FrameworkEntry>,
    pub completed_frameworks: VecDeque<FrameworkEntry>,
    pub tasks: crate::task_table::TaskTable,
    /// The resources of tasks, one copy per distinct set.
    pub shapes: crate::task::ResourceShapes,
    pub offers: HashMap<OfferId, OfferEntry>,
    pub counters: Counters,
    /// Where every change is published.
    pub bus: crate::bus::Bus,
    /// The DRF allocator (pure; see `allocator.rs`).
    pub alloc: meseta_allocator::Allocator,
    /// Time zero of the allocator's clock.
    epoch: Instant,
    /// Weights operators set, by role (also in the allocator).
    pub weights: BTreeMap<String, f64>,
    /// Quotas operators set, by role (also in the allocator).
    pub quotas: BTreeMap<String, meseta_allocator::Quota>,
    /// Signalled when an allocation run is wanted (see `Core::allocate`).
    pub allocation_wanted: std::sync::Arc<tokio::sync::Notify>,
    /// Dynamic reservations, maintenance and other operations state (see `ops.rs`).
    pub ops: crate::ops_state::OpsState,
    next_agent: u64,
    next_framework: u64,
    next_offer: u64,
    next_conn: u64,
}

/// Takes `part` out of the running total `total` in place (keeping its allocation: totals
/// change on every offer and task); a total that does not hold `part` is out of step and is
/// cleared.
pub(crate) fn take_from(total: &mut Resources, part: &Resources) {
    if total.subtract(part).is_err() {
        *total = Resources::new();
    }
}

/// At most this many completed tasks are kept per framework.
pub(crate) const MAX_COMPLETED_TASKS: usize = 1000;
/// At most this many completed frameworks are kept.
pub(crate) const MAX_COMPLETED_FRAMEWORKS: usize = 50;

impl Core {
    /// A core with nothing registered yet (`recovery.rs` fills it from the store).
    pub(crate) fn empty(
        cfg: MasterConfig,
        alloc: meseta_allocator::Allocator,
        now: Instant,
    ) -> Core {
        let master_id = uuid::Uuid::new_v4().to_string();
        Core {
            addr: cfg.listen,
            cfg,
            master_id,
            start_time: unix_now(),
            agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            tasks: crate::task_table::TaskTable::default(),
            shapes: crate::task::ResourceShapes::default(),
            offers: HashMap::new(),
            counters: Counters::default(),
            bus: crate::bus::Bus::new(),
            allocation_wanted: std::sync::Arc::new(tokio::sync::Notify::new()),
            alloc,
            epoch: now,
            weights: BTreeMap::new(),
            quotas: BTreeMap::new(),
            ops: crate::ops_state::OpsState::default(),
            next_agent: 0,
            next_framework: 0,
            next_offer: 0,
            next_conn: 0,
        }
    }

    pub fn config(&self) -> &MasterConfig {
        &self.cfg
    }

    pub fn master_id(&self) -> &str {
        &self.master_id
    }

    /// When this master started (unix seconds).
    pub fn start_time(&self) -> f64 {
        self.start_time
    }

    pub fn set_address(&mut self, addr: SocketAddr) {
        self.addr = addr;
    }

    pub fn next_conn_id(&mut self) -> u64 {
        self.next_conn += 1;
        self.next_conn
    }

    /// A new agent id (`<master id>-S<n>`).
    pub fn new_agent_id(&mut self) -> AgentId {
        let id = AgentId::new(format!("{}-S{}", self.master_id, self.next_agent));
        self.next_agent += 1;
        id
    }

    /// A new offer (or inverse offer) id (`<master id>-O<n>`).
    pub fn new_offer_id(&mut self) -> String {
        let id = format!("{}-O{}", self.master_id, self.next_offer);
        self.next_offer += 1;
        id
    }

    /// Time zero of the allocator's clock.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    pub fn new_framework_id(&mut self) -> FrameworkId {
        let id = FrameworkId::new(format!("{}-{:04}", self.master_id, self.next_framework));
        self.next_framework += 1;
        id
    }

    /// A task reached a terminal state: release its resources and file it as completed.
    pub fn finish_task(&mut self, task_id: &TaskId) {
        let Some(task) = self.tasks.remove(task_id) else {
            return;
        };
        *self.counters.terminal.entry(task.state).or_default() += 1;
        if let Some(a) = self.agents.get_mut(task.agent_id()) {
            take_from(&mut a.used, &task.spec.resources);
        }
        let (agent, fw_id, role) = (
            task.agent_id().clone(),
            task.spec.framework_id.clone(),
            task.spec.role.clone(),
        );
        self.recover(
            &agent,
            &fw_id,
            &role,
            &task.spec.resources,
            None,
            Instant::now(),
        );
        let fw_id = task.spec.framework_id.clone();
        let fw = match self.frameworks.get_mut(&fw_id) {
            Some(fw) => Some(fw),
            None => self.completed_frameworks.iter_mut().find(|f| f.id == fw_id),
        };
        if let Some(fw) = fw {
            take_from(&mut fw.used, &task.spec.resources);
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
        task.push_status(StatusEntry::new(
            state,
            now,
            message.clone(),
            Some(reason.to_owned()),
        ));
        let status = TaskStatus {
            source: Some("SOURCE_MASTER".to_string()),
            reason: Some(reason.to_string()),
            message,
            agent_id: Some(IdValue::new(task.agent_id().as_str())),
            ..TaskStatus::new(IdValue::new(task_id.as_str()), state, now)
        };
        let fw_id = task.spec.framework_id.clone();
        self.bus
            .publish_with(|| crate::bus::ClusterEvent::TaskUpdated {
                framework_id: fw_id.clone(),
                status: serde_json::to_value(&status).unwrap_or_default(),
                state,
            });
        if let Some(fw) = self.frameworks.get(&fw_id) {
            let status = TaskStatus {
                state: fw.visible_state(state),
                ..status
            };
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
        match self.agents.get(task.agent_id()) {
            Some(a) => a.send(MasterMessage::KillTask {
                task_id: task_id.clone(),
                grace_secs,
            }),
            None => false,
        }
    }

    /// Withdraw every offer on an agent (it left or disconnected).
    pub(crate) fn rescind_agent_offers(&mut self, agent_id: &AgentId) {
        for id in self.offers_where(|o| &o.agent_id == agent_id) {
            self.rescind_offer(&id);
        }
    }

    /// Withdraw every offer made to a framework and tell it.
    pub(crate) fn rescind_framework_offers(&mut self, fw_id: &FrameworkId) {
        for id in self.offers_where(|o| &o.framework_id == fw_id) {
            self.rescind_offer(&id);
        }
    }

    /// The ids of the outstanding offers that `keep` selects.
    pub(crate) fn offers_where(&self, keep: impl Fn(&OfferEntry) -> bool) -> Vec<OfferId> {
        self.offers
            .iter()
            .filter(|(_, o)| keep(o))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Withdraw one offer and tell its framework.
    pub fn rescind_offer(&mut self, offer_id: &OfferId) {
        if let Some(o) = self.drop_offer(offer_id) {
            if let Some(fw) = self.frameworks.get(&o.framework_id) {
                fw.send(Event::Rescind {
                    rescind: meseta_api::scheduler::Rescind {
                        offer_id: IdValue::new(offer_id.as_str()),
                    },
                });
            }
        }
    }

    /// Withdraw an offer and give its resources back to the allocator (no filter).
    pub fn drop_offer(&mut self, offer_id: &OfferId) -> Option<OfferEntry> {
        let o = self.remove_offer(offer_id)?;
        self.recover(
            &o.agent_id,
            &o.framework_id,
            &o.role,
            &o.resources,
            None,
            Instant::now(),
        );
        Some(o)
    }

    /// Forget an offer (the caller says what becomes of its resources in the allocator).
    pub fn remove_offer(&mut self, offer_id: &OfferId) -> Option<OfferEntry> {
        let o = self.offers.remove(offer_id)?;
        if let Some(a) = self.agents.get_mut(&o.agent_id) {
            take_from(&mut a.offered, &o.resources);
        }
        if let Some(fw) = self.frameworks.get_mut(&o.framework_id) {
            take_from(&mut fw.offered, &o.resources);
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
        self.expire_offers(now);
        self.run_allocation(now, true);
        expired
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
        self.shutdown_framework_executors(fw_id);
        for id in self.offers_where(|o| &o.framework_id == fw_id) {
            self.remove_offer(&id);
        }
        // Everything it holds (offers and its tasks' resources) goes back to the pool now.
        self.alloc.remove_framework(fw_id);
        if let Some(mut fw) = self.frameworks.remove(fw_id) {
            self.bus.publish_with(|| {
                crate::bus::ClusterEvent::FrameworkRemoved(
                    serde_json::to_value(&fw.info).unwrap_or_default(),
                )
            });
            fw.conn = None;
            fw.unregistered_time = unix_now();
            self.completed_frameworks.push_back(fw);
            while self.completed_frameworks.len() > MAX_COMPLETED_FRAMEWORKS {
                self.completed_frameworks.pop_front();
            }
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
