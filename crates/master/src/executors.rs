//! Custom executors in the master: validation of the `ExecutorInfo` a task names, their resource
//! accounting (once per executor and agent, from the first task that names it until the agent
//! reports it ended), framework messages both ways, SHUTDOWN and the `FAILURE` of an executor.
//!
//! ```text
//!  ACCEPT(LAUNCH task{executor}) ─▶ check_executor ─▶ launch (calls.rs) ─▶ LaunchTask{executor}
//!  scheduler MESSAGE ─▶ FrameworkMessage ─▶ agent ─▶ executor MESSAGE event
//!  agent ExecutorMessage ─▶ scheduler MESSAGE event
//!  scheduler SHUTDOWN / teardown ─▶ ShutdownExecutor / ShutdownFramework ─▶ agent
//!  agent ExecutorExited{status} ─▶ resources recovered, scheduler FAILURE{executor_id, status}
//! ```

use meseta_api::agent::{Command, ExecutorSpec, MasterMessage};
use meseta_api::executor::ExecutorInfo;
use meseta_api::scheduler::{Event, Failure, IdValue, Message, TaskInfo};
use meseta_types::{AgentId, FrameworkId, Resources};
use std::sync::Arc;
use tokio::time::Instant;

use crate::core::{take_from, Core};
use crate::ops_state::ExecutorRecord;

impl Core {
    /// Check the executor of a LAUNCH_GROUP (the DEFAULT executor, run by the agent) against the
    /// one already on the agent; returns the resources it adds (its own when new).
    pub(crate) fn check_group_executor(
        &self,
        fw: &FrameworkId,
        agent: &AgentId,
        info: &ExecutorInfo,
    ) -> Result<Resources, String> {
        info.validate()?;
        if !info.is_default() {
            return Err("task groups run in the DEFAULT executor ('type': 'DEFAULT')".into());
        }
        self.executor_adds(fw, agent, info)
    }

    /// Check the executor a task names against the one already on the agent. Returns the
    /// resources the executor adds to this launch: its own when it is new, nothing otherwise.
    pub(crate) fn check_executor(
        &self,
        fw: &FrameworkId,
        agent: &AgentId,
        info: &ExecutorInfo,
    ) -> Result<Resources, String> {
        info.validate()?;
        if info.is_default() {
            return Err(
                "a task launched alone needs a CUSTOM executor; the DEFAULT \
                executor runs task groups (LAUNCH_GROUP)"
                    .to_string(),
            );
        }
        if let Some(f) = &info.framework_id {
            if f.as_str() != fw.as_str() {
                return Err(format!(
                    "executor's framework_id '{f}' is not the framework's '{fw}'"
                ));
            }
        }
        self.executor_adds(fw, agent, info)
    }

    /// What executor `info` adds to a launch on `agent`: its resources when it is not running
    /// there yet, nothing when it is; refused when one of that id runs with another ExecutorInfo.
    fn executor_adds(
        &self,
        fw: &FrameworkId,
        agent: &AgentId,
        info: &ExecutorInfo,
    ) -> Result<Resources, String> {
        let key = (agent.clone(), fw.clone(), info.executor_id.value.clone());
        match self.ops.custom_executors.get(&key) {
            Some(rec) if !rec.spec.info.same_as(info) => Err(format!(
                "ExecutorInfo of executor '{}' is not compatible with the one already running \
                 on agent '{agent}'",
                info.executor_id
            )),
            Some(_) => Ok(Resources::new()),
            None => Ok(info.resources.clone()),
        }
    }

    /// The agent's view of the executor a task names on `agent` (`None` for command tasks):
    /// the one already accounted there (built at its first task; the task was checked to name
    /// the same `ExecutorInfo`), else a new one.
    pub(crate) fn executor_spec(
        &self,
        fw: &FrameworkId,
        agent: &AgentId,
        t: &TaskInfo,
    ) -> Option<Arc<ExecutorSpec>> {
        let info = t.executor.as_ref()?;
        let key = (agent.clone(), fw.clone(), info.executor_id.value.clone());
        match self.ops.custom_executors.get(&key) {
            Some(rec) => Some(rec.spec.clone()),
            None => Some(self.executor_spec_of(fw, info.clone())),
        }
    }

    /// The agent's view of an `ExecutorInfo` of framework `fw`.
    pub(crate) fn executor_spec_of(
        &self,
        fw: &FrameworkId,
        mut info: ExecutorInfo,
    ) -> Arc<ExecutorSpec> {
        info.framework_id = Some(IdValue::new(fw.as_str()));
        let mut framework_info = self
            .frameworks
            .get(fw)
            .map(|f| f.info.clone())
            .unwrap_or_default();
        framework_info.id = Some(IdValue::new(fw.as_str()));
        let cmd = info.command.clone().unwrap_or_default();
        let env = cmd
            .environment
            .map(|e| e.variables.into_iter().map(|v| (v.name, v.value)).collect())
            .unwrap_or_default();
        let user = cmd
            .user
            .or_else(|| Some(framework_info.user.clone()).filter(|u| !u.is_empty()));
        Arc::new(ExecutorSpec {
            command: Command {
                shell: cmd.shell,
                value: cmd.value.unwrap_or_default(),
                arguments: cmd.arguments.unwrap_or_default(),
            },
            env,
            user,
            fetch: cmd
                .uris
                .unwrap_or_default()
                .into_iter()
                .map(meseta_api::agent::FetchUri::from)
                .collect(),
            checkpoint: framework_info.checkpoint.unwrap_or(false),
            framework_info,
            info,
        })
    }

    /// A task of `spec` launches on `agent`: the first one of its executor takes the
    /// executor's resources too. Returns what the executor adds (empty when it already ran).
    pub(crate) fn account_executor(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        role: &str,
        spec: &Arc<ExecutorSpec>,
    ) -> Resources {
        let key = (agent.clone(), fw.clone(), spec.id().to_string());
        if self.ops.custom_executors.contains_key(&key) {
            return Resources::new();
        }
        let res = spec.info.resources.clone();
        self.ops.custom_executors.insert(
            key,
            ExecutorRecord {
                spec: spec.clone(),
                role: role.to_string(),
            },
        );
        if let Some(a) = self.agents.get_mut(agent) {
            a.used.add(&res);
        }
        if let Some(f) = self.frameworks.get_mut(fw) {
            f.used.add(&res);
        }
        tracing::info!(framework_id = %fw, agent_id = %agent, executor_id = spec.id(),
            resources = %res, "executor accounted");
        res
    }

    /// A re-registering agent reports a task of a custom executor the master may not know
    /// (after a master restart): account for the executor once.
    pub(crate) fn adopt_executor(&mut self, agent: &AgentId, role: &str, spec: &Arc<ExecutorSpec>) {
        let fw = spec
            .info
            .framework_id
            .as_ref()
            .map(|f| FrameworkId::new(f.as_str()))
            .unwrap_or_default();
        self.account_executor(&fw, agent, role, spec);
    }

    /// The agent reports an executor ended: release its resources and tell its framework.
    pub(crate) fn executor_exited(
        &mut self,
        agent: &AgentId,
        fw: &FrameworkId,
        executor_id: &str,
        status: i32,
        now: Instant,
    ) {
        let key = (agent.clone(), fw.clone(), executor_id.to_string());
        if let Some(rec) = self.ops.custom_executors.remove(&key) {
            let res = rec.spec.info.resources.clone();
            if let Some(a) = self.agents.get_mut(agent) {
                take_from(&mut a.used, &res);
            }
            if let Some(f) = self.frameworks.get_mut(fw) {
                take_from(&mut f.used, &res);
            }
            if !res.is_empty() {
                self.recover(agent, fw, &rec.role, &res, None, now);
            }
        }
        tracing::info!(framework_id = %fw, agent_id = %agent, executor_id, status, "executor exited");
        if let Some(f) = self.frameworks.get(fw) {
            f.send(Event::Failure {
                failure: Failure {
                    agent_id: Some(IdValue::new(agent.as_str())),
                    executor_id: Some(IdValue::new(executor_id)),
                    status: Some(status),
                },
            });
        }
        self.allocate(now);
    }

    /// An executor's framework message, for its scheduler (dropped when it is not subscribed,
    /// as Mesos does).
    pub(crate) fn executor_message(
        &mut self,
        agent: &AgentId,
        fw: &FrameworkId,
        executor_id: &str,
        data: String,
    ) {
        match self.frameworks.get(fw) {
            Some(f) => {
                f.send(Event::Message {
                    message: Message {
                        agent_id: IdValue::new(agent.as_str()),
                        executor_id: IdValue::new(executor_id),
                        data,
                    },
                });
            }
            None => tracing::info!(framework_id = %fw, executor_id,
                "executor message dropped: unknown framework"),
        }
    }

    /// Scheduler MESSAGE: forward to the executor's agent (best effort, as in Mesos).
    pub(crate) fn framework_message(&mut self, fw: &FrameworkId, m: Message) {
        let agent = AgentId::new(m.agent_id.as_str());
        let sent = self.agents.get(&agent).is_some_and(|a| {
            a.send(MasterMessage::FrameworkMessage {
                framework_id: fw.clone(),
                executor_id: m.executor_id.value.clone(),
                data: m.data.clone(),
            })
        });
        if !sent {
            tracing::info!(framework_id = %fw, agent_id = %agent, executor_id = %m.executor_id,
                "framework message dropped: agent not connected");
        }
    }

    /// Scheduler SHUTDOWN of a custom executor: the agent sends it SHUTDOWN and kills it after
    /// its grace period. Returns whether the executor is a custom one the master knows.
    pub(crate) fn shutdown_custom_executor(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        executor_id: &str,
    ) -> bool {
        let key = (agent.clone(), fw.clone(), executor_id.to_string());
        if !self.ops.custom_executors.contains_key(&key) {
            return false;
        }
        if let Some(a) = self.agents.get(agent) {
            a.send(MasterMessage::ShutdownExecutor {
                framework_id: fw.clone(),
                executor_id: executor_id.to_string(),
            });
        }
        true
    }

    /// A framework is torn down: every agent running one of its executors shuts them down.
    pub(crate) fn shutdown_framework_executors(&mut self, fw: &FrameworkId) {
        let agents: std::collections::BTreeSet<AgentId> = self
            .ops
            .custom_executors
            .keys()
            .filter(|(_, f, _)| f == fw)
            .map(|(a, _, _)| a.clone())
            .collect();
        for agent in agents {
            if let Some(a) = self.agents.get(&agent) {
                a.send(MasterMessage::ShutdownFramework {
                    framework_id: fw.clone(),
                });
            }
        }
    }

    /// What the custom executors of `pred` hold, for the allocator's books:
    /// (agent, framework, role, resources).
    pub(crate) fn executor_usage(
        &self,
        pred: impl Fn(&AgentId, &FrameworkId) -> bool,
    ) -> Vec<(AgentId, FrameworkId, String, Resources)> {
        self.ops
            .custom_executors
            .iter()
            .filter(|((a, f, _), _)| pred(a, f))
            .map(|((a, f, _), r)| {
                (
                    a.clone(),
                    f.clone(),
                    r.role.clone(),
                    r.spec.info.resources.clone(),
                )
            })
            .collect()
    }
}
