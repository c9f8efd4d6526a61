//! ACCEPT operations other than LAUNCH (`RESERVE`, `UNRESERVE`, `CREATE`, `DESTROY`, `LAUNCH_GROUP`), kept by the api
//! crate as raw JSON ([`Operation::Other`]) and interpreted here; the calls `SHUTDOWN` and
//! `UPDATE_FRAMEWORK`.
//!
//! As in Mesos, an operation that fails validation is dropped (logged) and the next one still
//! runs; tasks of a dropped LAUNCH_GROUP get `TASK_ERROR`.

use meseta_api::scheduler::{IdValue, Operation, Shutdown, TaskInfo, UpdateFramework};
use meseta_types::{AgentId, FrameworkId, OfferId, Resources, TaskId, TaskState};
use tokio::time::Instant;

use crate::core::Core;

/// The tasks an operation would launch (LAUNCH and LAUNCH_GROUP), e.g. to drop them.
pub(crate) fn op_tasks(op: &Operation) -> Vec<TaskInfo> {
    match op {
        Operation::Launch { launch } => launch.task_infos.clone(),
        Operation::Other { op_type, raw } if op_type == "LAUNCH_GROUP" => group_tasks(raw),
        Operation::Other { .. } => Vec::new(),
    }
}

/// `launch_group.task_group.tasks` (those that parse).
fn group_tasks(raw: &serde_json::Value) -> Vec<TaskInfo> {
    raw.pointer("/launch_group/task_group/tasks")
        .and_then(|t| t.as_array())
        .map(|tasks| {
            tasks
                .iter()
                .filter_map(|t| serde_json::from_value(t.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

impl Core {
    /// Apply one non-LAUNCH operation of an ACCEPT to `pool`.
    pub(crate) fn accept_operation(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        role: &str,
        op_type: &str,
        raw: &serde_json::Value,
        pool: &mut Resources,
    ) {
        let outcome = match op_type {
            "RESERVE" => self.accept_reserve(fw, agent, role, raw, pool),
            "UNRESERVE" => self.accept_unreserve(fw, agent, role, raw, pool),
            "CREATE" => self.accept_create(fw, agent, role, raw, pool),
            "DESTROY" => self.accept_destroy(fw, agent, role, raw, pool),
            "LAUNCH_GROUP" => {
                self.launch_group(fw, agent, role, raw, pool);
                Ok(())
            }
            other => Err(format!("operation '{other}' is not supported")),
        };
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
        raw: &serde_json::Value,
        pool: &mut Resources,
    ) {
        let declared = raw
            .pointer("/launch_group/task_group/tasks")
            .and_then(|t| t.as_array())
            .map_or(0, Vec::len);
        let tasks = group_tasks(raw);
        let executor = raw
            .pointer("/launch_group/executor/executor_id/value")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let mut left = pool.clone();
        let mut problem = None;
        if tasks.is_empty() || tasks.len() != declared {
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
        let offers: Vec<OfferId> = self
            .offers
            .iter()
            .filter(|(_, o)| &o.framework_id == fw_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in offers {
            self.rescind_offer(&id);
        }
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
