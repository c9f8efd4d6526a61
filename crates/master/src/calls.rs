//! Framework calls on the core: the scheduler contract shared by `/api/v1/scheduler` and
//! in-process frameworks.
//!
//! Semantic problems never fail the call (pymesos tears a framework down on a 4xx): invalid offers
//! turn the launches into `TASK_DROPPED`, invalid tasks into `TASK_ERROR`, both without uuid.

use std::time::Duration;

use meseta_api::agent::{Command, MasterMessage, TaskSpec};
use meseta_api::scheduler::{
    Accept, Acknowledge, CallKind, Decline, Event, Filters, IdValue, Kill, Operation, Reconcile,
    TaskInfo, TaskStatus, Update,
};
use meseta_types::{AgentId, FrameworkId, OfferId, Resources, TaskId, TaskState};
use tokio::time::Instant;

use crate::core::Core;
use crate::task::{TaskEntry, TaskMeta};
use crate::unix_now;

/// Default offer filter when a call gives none (Mesos: 5 s).
const DEFAULT_REFUSE: f64 = 5.0;

/// Why a call was refused before it was dispatched (these are the 4xx Mesos gives).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CallError {
    /// Unknown framework id.
    #[error("framework '{0}' cannot be found")]
    UnknownFramework(String),
    /// The framework has no subscription.
    #[error("framework '{0}' is not subscribed")]
    NotSubscribed(String),
    /// Stream id missing or foreign.
    #[error("the stream id '{0}' does not match the framework's subscription")]
    StreamMismatch(String),
}

impl Core {
    /// Check that `fw_id` may make calls on stream `stream_id` (None = in-process, trusted).
    pub(crate) fn check_caller(
        &self,
        fw_id: &FrameworkId,
        stream_id: Option<&str>,
    ) -> Result<(), CallError> {
        let fw = self
            .frameworks
            .get(fw_id)
            .ok_or_else(|| CallError::UnknownFramework(fw_id.to_string()))?;
        let conn = fw
            .conn
            .as_ref()
            .ok_or_else(|| CallError::NotSubscribed(fw_id.to_string()))?;
        match stream_id {
            Some(s) if s != conn.stream_id => Err(CallError::StreamMismatch(s.to_string())),
            _ => Ok(()),
        }
    }

    /// Dispatch one (already validated) call of framework `fw_id`.
    pub(crate) fn call(&mut self, fw_id: &FrameworkId, kind: CallKind, now: Instant) {
        match kind {
            CallKind::Accept { accept } => self.accept(fw_id, accept, now),
            CallKind::Decline { decline } => self.decline(fw_id, decline, now),
            CallKind::Kill { kill } => self.kill(fw_id, kill),
            CallKind::Acknowledge { acknowledge } => self.acknowledge(acknowledge),
            CallKind::Reconcile { reconcile } => self.reconcile(fw_id, reconcile),
            CallKind::Teardown => {
                self.teardown(fw_id);
                self.allocate(now);
            }
            CallKind::Revive { revive } => {
                let roles = revive.and_then(|r| r.roles).filter(|r| !r.is_empty());
                self.alloc.revive(fw_id, roles.as_deref());
                if let Some(fw) = self.frameworks.get_mut(fw_id) {
                    fw.suppressed = false;
                }
                self.allocate(now);
            }
            CallKind::Suppress { suppress } => {
                let roles = suppress.and_then(|r| r.roles).filter(|r| !r.is_empty());
                self.alloc.suppress(fw_id, roles.as_deref());
                if let Some(fw) = self.frameworks.get_mut(fw_id) {
                    fw.suppressed = roles.is_none();
                }
            }
            CallKind::AcceptInverseOffers {
                accept_inverse_offers: p,
            } => self.answer_inverse_offers(fw_id, &p, true, now),
            CallKind::DeclineInverseOffers {
                decline_inverse_offers: p,
            } => self.answer_inverse_offers(fw_id, &p, false, now),
            CallKind::Shutdown { shutdown } => self.shutdown_executor(fw_id, &shutdown),
            CallKind::UpdateFramework { update_framework } => {
                if let Err(why) = self.update_framework(fw_id, update_framework, now) {
                    tracing::warn!(framework_id = %fw_id, why, "UPDATE_FRAMEWORK refused");
                }
            }
            CallKind::Message { message } => self.framework_message(fw_id, message),
            // Accepted (202) and without effect: no operation feedback is kept.
            CallKind::Subscribe { .. }
            | CallKind::Request { .. }
            | CallKind::ReconcileOperations { .. }
            | CallKind::AcknowledgeOperationStatus { .. } => {}
        }
    }

    fn accept(&mut self, fw_id: &FrameworkId, accept: Accept, now: Instant) {
        let _timer = meseta_phases::time(meseta_phases::Phase::Accept);
        let offer_ids: Vec<OfferId> = accept
            .offer_ids
            .iter()
            .map(|o| OfferId::new(o.as_str()))
            .collect();
        let Some((agent_id, role, mut pool)) = self.take_offers(fw_id, &offer_ids) else {
            let tasks = accept.operations.iter().flat_map(Operation::task_infos);
            for t in tasks.collect::<Vec<&TaskInfo>>() {
                self.reject_task(
                    fw_id,
                    t,
                    TaskState::Dropped,
                    "REASON_INVALID_OFFERS",
                    "offer is invalid, rescinded or not yours",
                );
            }
            self.allocate(now);
            return;
        };
        // Operations apply in order against the pooled offer resources.
        for op in accept.operations {
            self.accept_operation(fw_id, &agent_id, &role, op, &mut pool);
        }
        // What no task used goes back, filtered from this framework for `refuse_seconds`.
        let refuse = refuse_for(accept.filters.as_ref());
        self.recover(&agent_id, fw_id, &role, &pool, refuse, now);
        self.allocate(now);
    }

    /// Remove the offers from the books and pool their resources; None if any is invalid.
    fn take_offers(
        &mut self,
        fw_id: &FrameworkId,
        ids: &[OfferId],
    ) -> Option<(AgentId, String, Resources)> {
        let mut agent: Option<(AgentId, String)> = None;
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            let o = self.offers.get(id)?;
            if &o.framework_id != fw_id || !seen.insert(id.clone()) {
                return None;
            }
            // One agent and one allocation role per ACCEPT (as Mesos requires).
            match &agent {
                Some((a, r)) if a != &o.agent_id || r != &o.role => return None,
                _ => agent = Some((o.agent_id.clone(), o.role.clone())),
            }
        }
        let (agent, role) = agent?;
        let mut pool = Resources::new();
        for id in ids {
            if let Some(o) = self.remove_offer(id) {
                pool.add(&o.resources);
            }
        }
        Some((agent, role, pool))
    }

    pub(crate) fn validate_task(
        &self,
        t: &TaskInfo,
        agent_id: &AgentId,
        pool: &Resources,
    ) -> Result<(), String> {
        if t.task_id.value.trim().is_empty() {
            return Err("task_id must not be empty".to_string());
        }
        if self.tasks.contains_key(&TaskId::new(t.task_id.as_str())) {
            return Err(format!("task id '{}' is already in use", t.task_id));
        }
        if let Some(a) = &t.agent_id {
            if a.as_str() != agent_id.as_str() {
                return Err(format!(
                    "task agent_id '{a}' does not match the offer's agent '{agent_id}'"
                ));
            }
        }
        if t.resources.cpus() <= 0.0 && t.resources.mem() <= 0.0 {
            return Err("task must use some cpus or mem".to_string());
        }
        match (&t.command, &t.executor) {
            (Some(cmd), None) => {
                if cmd.value.as_deref().unwrap_or("").trim().is_empty() {
                    return Err("task command has no value".to_string());
                }
            }
            // The executor itself is checked by `check_executor` (it needs the framework).
            (None, Some(_)) => {}
            _ => {
                return Err(
                    "task should have at least one (but not both) of CommandInfo or \
                    ExecutorInfo present"
                        .to_string(),
                )
            }
        }
        Self::health_check_of(t)?;
        if let Some(c) = &t.container {
            c.validate().map_err(|e| e.to_string())?;
        }
        self.check_secrets(t)?;
        let unreserved = t.resources.clone();
        if !pool.contains(&unreserved) {
            return Err(format!(
                "task resources '{}' exceed what the offers hold ('{}')",
                t.resources, pool
            ));
        }
        Ok(())
    }

    /// A task's secrets must name existing secrets this master can decrypt, be delivered to
    /// a process task (not a DOCKER container or a custom executor), and files must stay in the
    /// sandbox.
    fn check_secrets(&self, t: &TaskInfo) -> Result<(), String> {
        let uses = secret_uses(t);
        if uses.is_empty() {
            return Ok(());
        }
        if t.executor.is_some() {
            return Err(
                "secrets are delivered to command tasks only, not through a custom \
                executor"
                    .to_string(),
            );
        }
        if t.container
            .as_ref()
            .is_some_and(|c| c.kind == meseta_api::container::ContainerType::Docker)
        {
            return Err("secrets are not delivered to DOCKER containers".to_string());
        }
        let Some(resolver) = &self.config().secrets else {
            return Err("this master has no secrets store".to_string());
        };
        for u in &uses {
            if u.reference.is_empty() {
                return Err("a secret must be a REFERENCE to a secret path".to_string());
            }
            if let meseta_api::agent::SecretTarget::File(p) = &u.target {
                if !sandbox_relative(p) {
                    return Err(format!(
                        "secret file path {p:?} must be relative to the sandbox, without '..'"
                    ));
                }
            }
            (resolver.0)(&u.reference).map_err(|why| format!("secret {}: {why}", u.reference))?;
        }
        Ok(())
    }

    /// The spec the agent receives: `spec` with its secrets' values (a secret that no longer
    /// resolves is sent without one, and the agent fails the task).
    pub(crate) fn with_secret_values(&self, mut spec: TaskSpec) -> TaskSpec {
        let Some(resolver) = &self.config().secrets else {
            return spec;
        };
        for u in &mut spec.secrets {
            match (resolver.0)(&u.reference) {
                Ok(v) => u.value = Some(meseta_api::agent::SecretValue(v)),
                Err(why) => {
                    tracing::warn!(task_id = %spec.task_id, secret = %u.reference, %why,
                        "secret does not resolve at launch")
                }
            }
        }
        spec
    }

    /// The task's health check, typed and validated (`None` when it has none).
    fn health_check_of(t: &TaskInfo) -> Result<Option<meseta_api::agent::HealthCheck>, String> {
        t.health_check
            .as_ref()
            .map(meseta_api::agent::HealthCheck::from_mesos_json)
            .transpose()
    }

    /// LAUNCH: each valid task launches and takes its resources from `pool`; an invalid one
    /// gets `TASK_ERROR`.
    pub(crate) fn launch_tasks(
        &mut self,
        fw_id: &FrameworkId,
        agent_id: &AgentId,
        role: &str,
        tasks: Vec<TaskInfo>,
        pool: &mut Resources,
    ) {
        for t in tasks {
            let checked = self
                .validate_task(&t, agent_id, pool)
                .and_then(|()| self.executor_needs(fw_id, agent_id, &t, pool));
            match checked {
                Ok(()) => {
                    *pool = pool.checked_sub(&t.resources).unwrap_or_default();
                    let extra = self.launch(fw_id, agent_id, role, t);
                    *pool = pool.checked_sub(&extra).unwrap_or_default();
                }
                Err(why) => {
                    self.reject_task(fw_id, &t, TaskState::Error, "REASON_TASK_INVALID", &why)
                }
            }
        }
    }

    /// A task naming an executor: the executor must be valid and, when it is new on the agent,
    /// its resources must fit in the offers beside the task's.
    fn executor_needs(
        &self,
        fw_id: &FrameworkId,
        agent_id: &AgentId,
        t: &TaskInfo,
        pool: &Resources,
    ) -> Result<(), String> {
        let Some(info) = &t.executor else {
            return Ok(());
        };
        let mut need = self.check_executor(fw_id, agent_id, info)?;
        if need.is_empty() {
            return Ok(());
        }
        need.add(&t.resources);
        if !pool.contains(&need) {
            return Err(format!(
                "task and executor resources '{need}' exceed what the offers hold ('{pool}')"
            ));
        }
        Ok(())
    }

    /// Launch a validated task; returns the resources its executor took on top of the task's
    /// (a custom executor's, at its first task on the agent).
    fn launch(
        &mut self,
        fw_id: &FrameworkId,
        agent_id: &AgentId,
        role: &str,
        t: TaskInfo,
    ) -> Resources {
        let (spec, extra) = self.prepare_launch(fw_id, agent_id, role, t);
        if let Some(a) = self.agents.get(agent_id) {
            a.send(MasterMessage::LaunchTask(Box::new(
                self.with_secret_values(spec),
            )));
        }
        extra
    }

    /// Record a validated task as launched (task table, resources, its executor's) and return
    /// what the agent gets, with the resources its executor took on top of the task's.
    pub(crate) fn prepare_launch(
        &mut self,
        fw_id: &FrameworkId,
        agent_id: &AgentId,
        role: &str,
        t: TaskInfo,
    ) -> (TaskSpec, Resources) {
        // Validated in `validate_task`: an invalid check never gets here.
        let health_check = Self::health_check_of(&t).ok().flatten();
        let executor = self.executor_spec(fw_id, agent_id, &t);
        let extra = match &executor {
            Some(e) => self.account_executor(fw_id, agent_id, role, e),
            None => Resources::new(),
        };
        let secrets = secret_uses(&t);
        let mut t = t;
        // A task names a command or an executor, never both (`validate_task`).
        let cmd = t.command.take().unwrap_or_default();
        let env = cmd
            .environment
            .map(|e| e.variables.into_iter().map(|v| (v.name, v.value)).collect())
            .unwrap_or_default();
        let user = cmd.user.or_else(|| {
            self.frameworks
                .get(fw_id)
                .map(|f| f.info.user.clone())
                .filter(|u| !u.is_empty())
        });
        let kill_grace_secs = t
            .kill_policy
            .as_ref()
            .and_then(|k| k.grace_period.as_ref())
            .map(|g| g.nanoseconds as f64 / 1e9);
        let task_id = TaskId::new(t.task_id.as_str());
        let resources = t.resources.clone();
        let volumes = meseta_api::agent::VolumeMount::of(&resources);
        let container = t.container.clone();
        // The executor gets the task as the framework wrote it, with its agent. Its
        // `ExecutorInfo` is in `executor` already: the agent puts it back into the task when it
        // hands it to the executor, so it does not travel twice.
        let (name, task_info) = match &executor {
            Some(_) => {
                t.agent_id = Some(IdValue::new(agent_id.as_str()));
                t.executor = None;
                (t.name.clone(), Some(Box::new(t)))
            }
            None => (t.name, None),
        };
        let spec = TaskSpec {
            task_id,
            framework_id: fw_id.clone(),
            name,
            resources,
            command: Command {
                shell: cmd.shell,
                value: cmd.value.unwrap_or_default(),
                arguments: cmd.arguments.unwrap_or_default(),
            },
            env,
            user,
            kill_grace_secs,
            role: role.to_string(),
            health_check,
            volumes,
            fetch: cmd
                .uris
                .unwrap_or_default()
                .into_iter()
                .map(meseta_api::agent::FetchUri::from)
                .collect(),
            container,
            executor,
            task_info,
            group: vec![],
            secrets,
        };
        let meta = TaskMeta::of(&spec, &mut self.shapes);
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.used.add(&spec.resources);
        }
        if let Some(fw) = self.frameworks.get_mut(fw_id) {
            fw.used.add(&meta.resources);
        }
        tracing::info!(task_id = %meta.task_id, agent_id = %agent_id, "launching task");
        let entry = TaskEntry::new(meta, agent_id.clone(), TaskState::Staging, unix_now());
        self.bus
            .publish_with(|| crate::bus::ClusterEvent::TaskAdded(crate::v1json::task(&entry)));
        if let Err(e) = self.tasks.insert(entry) {
            tracing::error!(task_id = %spec.task_id, error = %e, "launching a task the master does not track");
        }
        (spec, extra)
    }

    /// `accept` without the launches whose task user `users` refuses: those tasks (a whole
    /// task group when one of its tasks is refused) get `TASK_ERROR` naming the missing grant,
    /// and their resources go back with the rest of the offer.
    pub(crate) fn refuse_unauthorized_users(
        &mut self,
        fw_id: &FrameworkId,
        mut accept: Accept,
        users: &crate::TaskUsers,
    ) -> Accept {
        let default_user = self
            .frameworks
            .get(fw_id)
            .map(|f| f.info.user.clone())
            .unwrap_or_default();
        let refusal = |t: &TaskInfo| -> Option<String> {
            let user = t
                .command
                .as_ref()
                .and_then(|c| c.user.clone())
                .or_else(|| {
                    t.executor
                        .as_ref()
                        .and_then(|e| e.command.as_ref())
                        .and_then(|c| c.user.clone())
                })
                .unwrap_or_else(|| default_user.clone());
            if user.is_empty() {
                return None;
            }
            (users.0)(&user).err().map(|missing| {
                format!("not authorized to run tasks as user '{user}': missing {missing}")
            })
        };
        let mut refused: Vec<(TaskInfo, String)> = Vec::new();
        for op in &mut accept.operations {
            match op {
                Operation::Launch { launch } => {
                    let (keep, out): (Vec<TaskInfo>, Vec<TaskInfo>) =
                        std::mem::take(&mut launch.task_infos)
                            .into_iter()
                            .partition(|t| refusal(t).is_none());
                    launch.task_infos = keep;
                    refused.extend(out.into_iter().map(|t| {
                        let why = refusal(&t).unwrap_or_default();
                        (t, why)
                    }));
                }
                Operation::LaunchGroup { launch_group } => {
                    let why = launch_group.task_group.tasks.iter().find_map(refusal);
                    if let Some(why) = why {
                        let tasks = std::mem::take(&mut launch_group.task_group.tasks);
                        refused.extend(tasks.into_iter().map(|t| (t, why.clone())));
                    }
                }
                _ => {}
            }
        }
        accept.operations.retain(|op| match op {
            Operation::LaunchGroup { launch_group } => !launch_group.task_group.tasks.is_empty(),
            _ => true,
        });
        for (t, why) in &refused {
            self.reject_task(fw_id, t, TaskState::Error, "REASON_TASK_UNAUTHORIZED", why);
        }
        accept
    }

    pub(crate) fn reject_task(
        &mut self,
        fw_id: &FrameworkId,
        t: &TaskInfo,
        state: TaskState,
        reason: &str,
        why: &str,
    ) {
        tracing::info!(framework_id = %fw_id, task_id = %t.task_id, why, "task rejected");
        let state = self
            .frameworks
            .get(fw_id)
            .map_or(state, |f| f.visible_state(state));
        let status = TaskStatus {
            source: Some("SOURCE_MASTER".to_string()),
            reason: Some(reason.to_string()),
            message: Some(why.to_string()),
            agent_id: t.agent_id.clone(),
            ..TaskStatus::new(t.task_id.clone(), state, unix_now())
        };
        if let Some(fw) = self.frameworks.get(fw_id) {
            fw.send(Event::Update {
                update: Update { status },
            });
        }
        *self.counters.terminal.entry(state).or_default() += 1;
    }

    fn decline(&mut self, fw_id: &FrameworkId, d: Decline, now: Instant) {
        for id in d.offer_ids {
            let id = OfferId::new(id.as_str());
            if self
                .offers
                .get(&id)
                .is_some_and(|o| &o.framework_id == fw_id)
            {
                if let Some(o) = self.remove_offer(&id) {
                    let refuse = refuse_for(d.filters.as_ref());
                    self.recover(&o.agent_id, fw_id, &o.role, &o.resources, refuse, now);
                }
            }
        }
        self.allocate(now);
    }

    fn kill(&mut self, fw_id: &FrameworkId, k: Kill) {
        let id = TaskId::new(k.task_id.as_str());
        let owned = self
            .tasks
            .get(&id)
            .is_some_and(|t| &t.spec.framework_id == fw_id);
        if owned {
            self.send_kill(&id, None);
            return;
        }
        if self.agents_transitioning() {
            return; // it may be on an agent that has not re-registered yet
        }
        let status = TaskStatus {
            source: Some("SOURCE_MASTER".to_string()),
            reason: Some("REASON_RECONCILIATION".to_string()),
            message: Some("attempted to kill an unknown task".to_string()),
            ..TaskStatus::new(k.task_id, TaskState::Lost, unix_now())
        };
        if let Some(fw) = self.frameworks.get(fw_id) {
            fw.send(Event::Update {
                update: Update { status },
            });
        }
    }

    fn acknowledge(&mut self, ack: Acknowledge) {
        let Some(uuid) = crate::core::base64_to_uuid(&ack.uuid) else {
            tracing::warn!(uuid = %ack.uuid, "acknowledgement with an undecodable uuid ignored");
            return;
        };
        if let Some(a) = self.agents.get(&AgentId::new(ack.agent_id.as_str())) {
            if let Some(c) = &a.conn {
                let _ = c.tx.unbounded_send(MasterMessage::Acknowledge {
                    task_id: TaskId::new(ack.task_id.as_str()),
                    uuid,
                });
            }
        }
    }

    fn reconcile(&mut self, fw_id: &FrameworkId, r: Reconcile) {
        let wanted: Vec<IdValue> = if r.tasks.is_empty() {
            self.tasks
                .iter()
                .filter(|(_, t)| &t.spec.framework_id == fw_id)
                .map(|(id, _)| IdValue::new(id.as_str()))
                .collect()
        } else {
            r.tasks.into_iter().map(|t| t.task_id).collect()
        };
        let Some(fw) = self.frameworks.get(fw_id) else {
            return;
        };
        let transitioning = self.agents_transitioning();
        for id in wanted {
            let task = self
                .tasks
                .get(&TaskId::new(id.as_str()))
                .filter(|t| &t.spec.framework_id == fw_id);
            let (state, agent) = match task {
                Some(t) => (
                    fw.visible_state(t.state),
                    Some(IdValue::new(t.agent_id().as_str())),
                ),
                // The task may be on an agent that has not re-registered since this master
                // started: say nothing until it has (as Mesos does), rather than a false LOST.
                None if transitioning => continue,
                None => (TaskState::Lost, None),
            };
            let status = TaskStatus {
                source: Some("SOURCE_MASTER".to_string()),
                reason: Some("REASON_RECONCILIATION".to_string()),
                agent_id: agent,
                ..TaskStatus::new(id, state, unix_now())
            };
            fw.send(Event::Update {
                update: Update { status },
            });
        }
    }
}

impl Core {
    /// Are agents known from the store still to re-register after a master restart?
    pub(crate) fn agents_transitioning(&self) -> bool {
        self.agents
            .values()
            .any(|a| a.status == crate::core::AgentStatus::Recovered)
    }
}

/// The filter a DECLINE or the unused part of an ACCEPT installs: `refuse_seconds` (default 5 s;
/// a negative or non-finite value means the default; capped at a year; 0 = none), lasting at least
/// as long as one allocation would.
fn refuse_for(f: Option<&Filters>) -> Option<Duration> {
    let secs = f.and_then(|f| f.refuse_seconds).unwrap_or(DEFAULT_REFUSE);
    let secs = if secs.is_finite() && secs >= 0.0 {
        secs.min(31_536_000.0)
    } else {
        DEFAULT_REFUSE
    };
    (secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The secrets a task references: its secret environment variables and secret volumes.
fn secret_uses(t: &TaskInfo) -> Vec<meseta_api::agent::SecretUse> {
    use meseta_api::agent::{SecretTarget, SecretUse};
    let env = t
        .command
        .iter()
        .flat_map(|c| &c.secret_env)
        .map(|e| SecretUse {
            reference: e.reference.clone(),
            target: SecretTarget::Env(e.name.clone()),
            value: None,
        });
    let files = t.container.iter().flat_map(|c| &c.volumes).filter_map(|v| {
        v.secret_reference().map(|r| SecretUse {
            reference: r.to_string(),
            target: SecretTarget::File(v.container_path.clone()),
            value: None,
        })
    });
    env.chain(files).collect()
}

/// A relative path of plain segments (no `..`, not absolute, not empty).
fn sandbox_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{FwConn, MasterConfig};
    use crate::records::{AgentRecord, Recovered};
    use meseta_api::scheduler::{FrameworkInfo, ReconcileTask};
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    fn core_with_recovered_agent() -> Core {
        let agent = AgentRecord {
            id: AgentId::new("a1"),
            hostname: "h".into(),
            address: "127.0.0.1:1".into(),
            resources: Resources::parse("cpus:1;mem:128")
                .expect("resources")
                .into(),
            attributes: Default::default(),
            registered_time: 0.0,
            domain: None,
        };
        Core::new(
            MasterConfig::default(),
            Recovered {
                agents: vec![agent],
                ..Recovered::default()
            },
        )
    }

    fn subscribe(core: &mut Core) -> (FrameworkId, UnboundedReceiver<Event>) {
        let info = FrameworkInfo {
            user: "u".into(),
            name: "f".into(),
            ..FrameworkInfo::default()
        };
        let (id, info) = core.admit_framework(info).expect("admitted");
        let (tx, rx) = unbounded_channel();
        let conn = FwConn {
            stream_id: "s".into(),
            tx,
        };
        core.activate_framework(&id, info, conn, Instant::now());
        (id, rx)
    }

    fn updates(rx: &mut UnboundedReceiver<Event>) -> Vec<TaskStatus> {
        let mut out = vec![];
        while let Ok(ev) = rx.try_recv() {
            if let Event::Update { update } = ev {
                out.push(update.status);
            }
        }
        out
    }

    fn reconcile_one(core: &mut Core, fw: &FrameworkId) {
        let r = Reconcile {
            tasks: vec![ReconcileTask {
                task_id: IdValue::new("t1"),
                agent_id: None,
            }],
        };
        core.call(fw, CallKind::Reconcile { reconcile: r }, Instant::now());
    }

    #[test]
    fn unknown_task_is_not_reported_lost_while_agents_are_reregistering() {
        let mut core = core_with_recovered_agent();
        let (fw, mut rx) = subscribe(&mut core);
        reconcile_one(&mut core, &fw);
        assert!(
            updates(&mut rx).is_empty(),
            "no answer while an agent may still bring the task back"
        );

        // Once the agent is known to be gone, the answer is TASK_LOST.
        if let Some(a) = core.agents.get_mut(&AgentId::new("a1")) {
            a.status = crate::core::AgentStatus::Unreachable;
        }
        reconcile_one(&mut core, &fw);
        let got = updates(&mut rx);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].state, TaskState::Lost);
        assert!(got[0].uuid.is_none(), "master-born updates carry no uuid");
    }

    #[test]
    fn accept_of_a_foreign_offer_drops_the_tasks() {
        let mut core = core_with_recovered_agent();
        let (fw, mut rx) = subscribe(&mut core);
        let task = TaskInfo {
            name: "t".into(),
            task_id: IdValue::new("t1"),
            resources: Resources::parse("cpus:1").expect("resources"),
            command: Some(meseta_api::scheduler::CommandInfo::shell("true")),
            ..TaskInfo::default()
        };
        let accept = Accept {
            offer_ids: vec![IdValue::new("no-such-offer")],
            operations: vec![Operation::Launch {
                launch: meseta_api::scheduler::Launch {
                    task_infos: vec![task],
                },
            }],
            filters: None,
        };
        core.call(&fw, CallKind::Accept { accept }, Instant::now());
        let got = updates(&mut rx);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].state,
            TaskState::Lost,
            "not partition-aware: LOST, not DROPPED"
        );
        assert_eq!(got[0].reason.as_deref(), Some("REASON_INVALID_OFFERS"));
        assert!(core.tasks.is_empty());
    }

    #[test]
    fn inverse_offer_and_operation_calls_are_accepted_without_effect() {
        let mut core = core_with_recovered_agent();
        let (fw, mut rx) = subscribe(&mut core);
        let _ = updates(&mut rx);
        let v = serde_json::json!({"operations": [{"operation_id": {"value": "op1"}}]});
        for kind in [
            CallKind::AcceptInverseOffers {
                accept_inverse_offers: v.clone(),
            },
            CallKind::DeclineInverseOffers {
                decline_inverse_offers: v.clone(),
            },
            CallKind::ReconcileOperations {
                reconcile_operations: v.clone(),
            },
            CallKind::AcknowledgeOperationStatus {
                acknowledge_operation_status: v.clone(),
            },
        ] {
            core.call(&fw, kind, Instant::now());
        }
        assert!(
            core.check_caller(&fw, Some("s")).is_ok(),
            "still subscribed"
        );
        assert!(updates(&mut rx).is_empty());
        assert!(core.tasks.is_empty());
    }
}
