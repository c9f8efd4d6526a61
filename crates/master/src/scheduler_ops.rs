//! ACCEPT operations other than LAUNCH (`RESERVE`, `UNRESERVE`, `LAUNCH_GROUP`), kept by the api
//! crate as raw JSON ([`Operation::Other`]) and interpreted here.
//!
//! As in Mesos, an operation that fails validation is dropped (logged) and the next one still
//! runs; tasks of a dropped LAUNCH_GROUP get `TASK_ERROR`.

use meseta_api::scheduler::{Operation, TaskInfo};
use meseta_types::{AgentId, FrameworkId, Resources, TaskId, TaskState};

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
