//! The operations of an ACCEPT, typed by the api crate ([`Operation`]) and dispatched here:
//! LAUNCH (`calls.rs`), LAUNCH_GROUP, and RESERVE / UNRESERVE / CREATE / DESTROY as one
//! [`ResourceOp`] (`ops.rs`); and the calls `SHUTDOWN` and `UPDATE_FRAMEWORK`.
//!
//! As in Mesos, an operation that fails validation is dropped (logged) and the next one still
//! runs; tasks of a dropped LAUNCH_GROUP get `TASK_ERROR`.

use meseta_allocator::ResourceOp;
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
    fn launch_group(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        role: &str,
        group: LaunchGroup,
        pool: &mut Resources,
    ) {
        let executor = group.executor_id().map(str::to_string);
        let TaskGroup { tasks, malformed } = group.task_group;
        let mut left = pool.clone();
        let mut problem = None;
        if tasks.is_empty() || malformed > 0 {
            problem = Some("the task group is empty or holds malformed tasks".to_string());
        }
        let mut ids = std::collections::HashSet::new();
        for t in &tasks {
            if problem.is_some() {
                break;
            }
            if !ids.insert(t.task_id.value.clone()) {
                problem = Some(format!(
                    "task id '{}' appears twice in the group",
                    t.task_id
                ));
                break;
            }
            match self.validate_task(t, agent, &left) {
                Ok(()) => left = left.checked_sub(&t.resources).unwrap_or_default(),
                Err(why) => problem = Some(format!("task '{}': {why}", t.task_id)),
            }
        }
        if let Some(why) = problem {
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
        *pool = left;
        for t in tasks {
            if let Some(e) = &executor {
                self.ops
                    .executors
                    .entry((agent.clone(), e.clone()))
                    .or_default()
                    .push(TaskId::new(t.task_id.as_str()));
            }
            self.launch_task(fw, agent, role, t);
        }
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
                    .is_some_and(|t| &t.spec.framework_id == fw && t.agent_id == agent)
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
