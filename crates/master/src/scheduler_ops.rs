//! The operations of an ACCEPT, typed by the api crate ([`Operation`]) and dispatched here:
//! LAUNCH (`calls.rs`), LAUNCH_GROUP, and RESERVE / UNRESERVE / CREATE / DESTROY as one
//! [`ResourceOp`] (`ops.rs`); and the calls `SHUTDOWN` and `UPDATE_FRAMEWORK`.
//!
//! As in Mesos, an operation that fails validation is dropped (logged) and the next one still
//! runs; tasks of a dropped LAUNCH_GROUP get `TASK_ERROR`.

use meseta_allocator::ResourceOp;
use meseta_api::agent::MasterMessage;
use meseta_api::executor::ExecutorInfo;
use meseta_api::scheduler::{
    IdValue, LaunchGroup, Operation, Shutdown, TaskGroup, UpdateFramework,
};
use meseta_types::{AgentId, FrameworkId, Resources, TaskId, TaskState};
use tokio::time::Instant;

use crate::core::Core;

impl Core {
    /// Apply one non-LAUNCH operation of an ACCEPT to `pool`. An operation that cannot be
    /// applied is dropped and logged (never answered 4xx); the tasks of a dropped LAUNCH_GROUP
    /// get `TASK_ERROR`.
    pub(crate) fn accept_operation(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        role: &str,
        op: Operation,
        pool: &mut Resources,
    ) {
        let op_type = op.type_name().to_string();
        let resource_op = match op {
            Operation::Launch { launch } => {
                self.launch_tasks(fw, agent, role, launch.task_infos, pool);
                return;
            }
            Operation::LaunchGroup { launch_group } => {
                self.launch_group(fw, agent, role, launch_group, pool);
                Ok(None)
            }
            Operation::Reserve { reserve } => Ok(Some(ResourceOp::Reserve(reserve.resources))),
            Operation::Unreserve { unreserve } => {
                Ok(Some(ResourceOp::Unreserve(unreserve.resources)))
            }
            Operation::Create { create } => Ok(Some(ResourceOp::Create(create.volumes))),
            Operation::Destroy { destroy } => Ok(Some(ResourceOp::Destroy(destroy.volumes))),
            Operation::Unsupported { why, .. } => Err(why),
        };
        let outcome = resource_op.and_then(|op| match op {
            Some(op) => self.accept_op(fw, agent, role, &op, pool),
            None => Ok(()),
        });
        match outcome {
            Ok(()) => {
                tracing::info!(framework_id = %fw, agent_id = %agent, op_type, "offer operation applied")
            }
            Err(why) => {
                tracing::warn!(framework_id = %fw, agent_id = %agent, op_type, why, "offer operation dropped")
            }
        }
    }

    /// LAUNCH_GROUP: every task of the group launches, or none does (all get `TASK_ERROR`).
    /// The group runs in the DEFAULT executor (the agent itself), whose resources count once
    /// per executor id and agent; the agent gets the whole group in one message.
    fn launch_group(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        role: &str,
        group: LaunchGroup,
        pool: &mut Resources,
    ) {
        let TaskGroup { tasks, malformed } = group.task_group;
        let checked = Self::group_executor(group.executor)
            .and_then(|info| self.check_group(fw, agent, &info, &tasks, malformed, pool));
        let (info, left) = match checked {
            Ok(v) => v,
            Err(why) => {
                for t in &tasks {
                    self.reject_task(
                        fw,
                        t,
                        TaskState::Error,
                        "REASON_TASK_GROUP_INVALID",
                        &format!("invalid task group: {why}"),
                    );
                }
                return;
            }
        };
        *pool = left;
        let exec_id = info.executor_id.value.clone();
        let exec = self.executor_spec_of(fw, info);
        self.account_executor(fw, agent, role, &exec);
        let ids: Vec<TaskId> = tasks
            .iter()
            .map(|t| TaskId::new(t.task_id.as_str()))
            .collect();
        let mut specs = Vec::with_capacity(tasks.len());
        for t in tasks {
            let (mut spec, _) = self.prepare_launch(fw, agent, role, t);
            spec.executor = Some(exec.clone());
            spec.group = ids.clone();
            specs.push(spec);
        }
        self.ops
            .executors
            .entry((agent.clone(), exec_id))
            .or_default()
            .extend(ids);
        if let Some(a) = self.agents.get(agent) {
            let tasks = specs
                .into_iter()
                .map(|s| self.with_secret_values(s))
                .collect();
            a.send(MasterMessage::LaunchGroup { tasks });
        }
    }

    /// The group's `ExecutorInfo` (required, as in Mesos).
    fn group_executor(v: Option<serde_json::Value>) -> Result<ExecutorInfo, String> {
        let v = v.ok_or("a task group needs an 'executor'")?;
        serde_json::from_value(v).map_err(|e| format!("invalid 'executor': {e}"))
    }

    /// Validate the group against `pool`; returns the executor and what is left of the pool.
    fn check_group(
        &self,
        fw: &FrameworkId,
        agent: &AgentId,
        info: &ExecutorInfo,
        tasks: &[meseta_api::scheduler::TaskInfo],
        malformed: usize,
        pool: &Resources,
    ) -> Result<(ExecutorInfo, Resources), String> {
        if tasks.is_empty() || malformed > 0 {
            return Err("the task group is empty or holds malformed tasks".to_string());
        }
        let extra = self.check_group_executor(fw, agent, info)?;
        let mut left = pool
            .checked_sub(&extra)
            .map_err(|_| format!("executor resources '{extra}' exceed the offers ('{pool}')"))?;
        let mut ids = std::collections::HashSet::new();
        for t in tasks {
            if !ids.insert(t.task_id.value.clone()) {
                return Err(format!(
                    "task id '{}' appears twice in the group",
                    t.task_id
                ));
            }
            if t.executor.is_some() {
                return Err(format!("task '{}' must not name an executor", t.task_id));
            }
            self.validate_task(t, agent, &left)
                .map_err(|why| format!("task '{}': {why}", t.task_id))?;
            left = left.checked_sub(&t.resources).unwrap_or_default();
        }
        Ok((info.clone(), left))
    }
}

impl Core {
    /// SHUTDOWN: kill the tasks of `executor_id` on `agent_id` (a LAUNCH_GROUP's executor, or a
    /// command task, whose executor id is its task id).
    pub(crate) fn shutdown_executor(&mut self, fw: &FrameworkId, s: &Shutdown) {
        let agent = AgentId::new(s.agent_id.as_str());
        let exec = s.executor_id.value.clone();
        if self.shutdown_custom_executor(fw, &agent, &exec) {
            tracing::info!(framework_id = %fw, agent_id = %agent, executor_id = %exec,
                "shutting down custom executor");
            return;
        }
        let mut ids = self
            .ops
            .executors
            .remove(&(agent.clone(), exec.clone()))
            .unwrap_or_default();
        ids.push(TaskId::new(exec.as_str()));
        let mine: Vec<TaskId> = ids
            .into_iter()
            .filter(|id| {
                self.tasks
                    .get(id)
                    .is_some_and(|t| &t.spec.framework_id == fw && t.agent_id() == &agent)
            })
            .collect();
        tracing::info!(framework_id = %fw, agent_id = %agent, executor_id = %exec, tasks = mine.len(), "shutting down executor");
        for id in mine {
            self.send_kill(&id, None);
        }
    }

    /// UPDATE_FRAMEWORK: new roles, name, capabilities, … for a subscribed framework. Its offers
    /// are rescinded and the allocator hears of it afresh (keeping what its tasks use).
    pub(crate) fn update_framework(
        &mut self,
        fw_id: &FrameworkId,
        u: UpdateFramework,
        now: Instant,
    ) -> Result<(), String> {
        let mut info = u.framework_info;
        if info
            .id
            .as_ref()
            .is_some_and(|id| id.as_str() != fw_id.as_str())
        {
            return Err("'framework_info.id' differs from the caller's framework id".into());
        }
        for role in crate::allocator::framework_roles(&info) {
            meseta_allocator::validate_role(&role).map_err(|e| e.to_string())?;
        }
        let Some(fw) = self.frameworks.get(fw_id) else {
            return Err(format!("framework '{fw_id}' is not subscribed"));
        };
        if fw.info.user != info.user && !info.user.is_empty() {
            return Err("updating 'user' is not supported".into());
        }
        if info.principal.is_some() && fw.info.principal != info.principal {
            return Err("updating 'principal' is not supported".into());
        }
        if info.user.is_empty() {
            info.user = fw.info.user.clone();
        }
        info.id = Some(IdValue::new(fw_id.as_str()));
        self.rescind_framework_offers(fw_id);
        if let Some(fw) = self.frameworks.get_mut(fw_id) {
            fw.info = info.clone();
        }
        self.alloc_add_framework(fw_id, &info);
        if let Some(roles) = u.suppressed_roles.filter(|r| !r.is_empty()) {
            self.alloc.suppress(fw_id, Some(&roles));
        }
        if let Some(fw) = self.frameworks.get(fw_id) {
            let v = crate::v1json::framework(fw);
            self.bus
                .publish_with(|| crate::bus::ClusterEvent::FrameworkUpdated(v));
        }
        self.allocate(now);
        Ok(())
    }
}
