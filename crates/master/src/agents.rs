//! Agent-facing operations of the core: admission, (re-)registration and task reconciliation,
//! heartbeats and usage, status updates born on agents, disconnection and unreachability.

use std::collections::HashSet;

use meseta_api::agent::{MasterMessage, Register, StatusUpdate, TaskReport, TaskSpec, UsageReport};
use meseta_api::scheduler::{Event, FrameworkInfo, IdValue, TaskStatus, Update};
use meseta_types::{AgentId, FrameworkId, Resources, TaskId, TaskState};
use tokio::time::Instant;

use crate::bus::ClusterEvent;
use crate::core::{
    uuid_to_base64, Admission, AgentConn, AgentEntry, AgentStatus, Core, FrameworkEntry,
};
use crate::records::AgentRecord;
use crate::task::{StatusEntry, TaskEntry, TaskMeta};
use crate::unix_now;

impl Core {
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
                let id = self.new_agent_id();
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
        // Offers made on an earlier connection are void; the allocator hears of the agent again
        // below, once its tasks are reconciled.
        self.rescind_agent_offers(&id);
        self.alloc.remove_agent(&id);
        let old_version = self.agents.get(&id).map(|a| a.record.registered_time);
        let hb = self.config().agent_heartbeat.as_secs_f64();
        let http_key = self.config().agent_http_key.clone();
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
        entry.send(MasterMessage::Registered {
            agent_id: id.clone(),
            heartbeat_interval_secs: hb,
            http_key,
        });
        if let Some(a) = self.agents.get(&id) {
            self.bus
                .publish_with(|| ClusterEvent::AgentAdded(crate::v1json::agent(a)));
        }
        self.reconcile_agent_tasks(&id, reg.tasks);
        self.alloc_add_agent(&id);
        tracing::info!(agent_id = %id, reregister, "agent registered");
        self.allocate(now);
    }

    /// Make the master's task table agree with what a (re-)registering agent reports.
    fn reconcile_agent_tasks(&mut self, agent_id: &AgentId, reported: Vec<TaskReport>) {
        let mut seen = HashSet::new();
        for report in reported {
            let task_id = report.spec.task_id.clone();
            seen.insert(task_id.clone());
            if report.state.is_terminal() {
                // Its pending terminal update (resent after registration) settles it.
                if !self.tasks.contains_key(&task_id) {
                    // Its executor is not counted on its behalf: an ended task's executor may
                    // be gone (its end is reported on its own).
                    let mut spec = report.spec;
                    spec.executor = None;
                    self.adopt_task(agent_id, spec, TaskState::Running);
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
            .ids_on_agent(agent_id)
            .filter(|id| !seen.contains(*id))
            .cloned()
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
        if let Some(e) = &spec.executor {
            self.adopt_executor(agent_id, &spec.role, e);
        }
        let meta = TaskMeta::of(&spec, &mut self.shapes);
        let task = TaskEntry::new(meta, agent_id.clone(), state, unix_now());
        self.bus
            .publish_with(|| ClusterEvent::TaskAdded(crate::v1json::task(&task)));
        if let Err(e) = self.tasks.insert(task) {
            tracing::error!(task_id = %spec.task_id, error = %e, "agent's task not adopted");
        }
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
                if t.agent_id() == agent_id {
                    t.usage = Some(Box::new(crate::usage::view(t.usage.as_deref(), &u)));
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
        self.alloc.deactivate_agent(agent_id);
        self.allocate(now);
    }

    /// Apply a status update born on an agent and forward it to the framework.
    pub fn status_update(&mut self, agent_id: &AgentId, u: StatusUpdate, now: Instant) {
        let _timer = meseta_phases::time(meseta_phases::Phase::StatusMaster);
        self.agent_heartbeat(agent_id, now);
        let status = TaskStatus {
            source: Some("SOURCE_EXECUTOR".to_string()),
            reason: u.reason.clone(),
            message: u.message.clone(),
            agent_id: Some(IdValue::new(agent_id.as_str())),
            uuid: Some(uuid_to_base64(&u.uuid)),
            healthy: u.healthy,
            executor_id: u.executor_id.as_deref().map(IdValue::new),
            data: u.data.clone(),
            ..TaskStatus::new(IdValue::new(u.task_id.as_str()), u.state, u.timestamp)
        };
        let fw_id = u.framework_id.clone();
        if let Some(task) = self.tasks.get_mut(&u.task_id) {
            // Health changes are kept in the history as Mesos keeps them (a RUNNING status
            // that turns healthy or unhealthy); repeats of the same report are not.
            let health_changed =
                u.healthy.is_some() && task.statuses.last().map(|s| s.healthy) != Some(u.healthy);
            let state_changed = task.state != u.state;
            if state_changed || health_changed {
                task.push_status(
                    StatusEntry::new(u.state, u.timestamp, u.message.clone(), u.reason.clone())
                        .with_health(u.healthy),
                );
            }
            if state_changed {
                self.bus.publish_with(|| ClusterEvent::TaskUpdated {
                    framework_id: fw_id.clone(),
                    status: serde_json::to_value(&status).unwrap_or_default(),
                    state: u.state,
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

    /// The agent record a registration produces.
    pub fn agent_record(id: AgentId, reg: &Register) -> AgentRecord {
        AgentRecord {
            id,
            hostname: reg.hostname.clone(),
            address: reg.address.clone(),
            resources: std::sync::Arc::new(reg.resources.clone()),
            attributes: reg.attributes.clone(),
            registered_time: unix_now(),
            domain: reg.domain.clone(),
        }
    }

    /// Mark a silent agent unreachable: its tasks go `TASK_UNREACHABLE`, its connection is dropped.
    pub(crate) fn mark_unreachable(&mut self, agent_id: &AgentId) {
        let Some(a) = self.agents.get_mut(agent_id) else {
            return;
        };
        a.status = AgentStatus::Unreachable;
        a.conn = None;
        tracing::warn!(agent_id = %agent_id, "agent unreachable");
        self.bus
            .publish_with(|| ClusterEvent::AgentRemoved(agent_id.clone()));
        self.rescind_agent_offers(agent_id);
        self.alloc.deactivate_agent(agent_id);
        let ids: Vec<TaskId> = self
            .tasks
            .on_agent(agent_id)
            .filter(|t| !t.state.is_terminal())
            .map(|t| t.spec.task_id.clone())
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
}
