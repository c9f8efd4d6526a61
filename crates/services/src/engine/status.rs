//! Task status updates: instance state and health, failures with launch backoff
//! (reference §4.7), unreachable instances (§4.8), and the Marathon events they cause.

use meseta_api::scheduler::TaskStatus;
use meseta_types::TaskState;
use serde_json::json;

use super::model::{condition_name, Goal, TaskFailure};
use super::{Engine, KillOrder};

/// The reason the agent gives a task it killed for failing its health checks.
pub const HEALTH_KILL_REASON: &str = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED";

impl Engine {
    /// Apply one status update. Unknown tasks that still run are killed (an expunged instance
    /// that came back, or a task launched by a previous life of the scheduler).
    pub fn on_status(&mut self, s: &TaskStatus, now: f64) {
        if self.pod_on_status(s, now) {
            return;
        }
        let task_id = s.task_id.as_str().to_owned();
        let owner = self.task_index(&task_id);
        let Some((app, inst)) = owner.map(|(a, i)| (a.to_owned(), i.id.to_string())) else {
            if !s.state.is_terminal() {
                self.out.kills.push(KillOrder {
                    task_id: task_id.clone(),
                    agent_id: s.agent_id.as_ref().map(|a| a.as_str().to_owned()),
                });
                self.event(
                    "unknown_instance_terminated_event",
                    now,
                    json!({"instanceId": task_id.split("._app.").next().unwrap_or(&task_id),
                           "runSpecId": "", "condition": condition_name(s.state)}),
                );
            }
            return;
        };
        let checks = self
            .apps
            .get(&app)
            .is_some_and(|a| !a.app.health_checks.is_empty());
        let strings = &mut self.strings;
        let Some(i) = self.instances.get_mut(&app).and_then(|m| m.get_mut(&*inst)) else {
            return;
        };
        if !i.is_task(&task_id) {
            return;
        }
        let prev_state = i.state;
        let prev_health = i.healthy;
        let was_unreachable = i.unreachable_since().is_some();
        let was_waiting = i.needs_launch();
        i.state = Some(s.state);
        super::note_waiting(&mut self.waiting, &app, was_waiting, i.needs_launch());
        let mut moved = false;
        if let Some(a) = &s.agent_id {
            if i.agent_id.as_deref() != Some(a.as_str()) {
                i.agent_id = Some(strings.intern(a.as_str()));
                moved = true;
            }
        }
        match s.state {
            TaskState::Running => {
                i.started_at.get_or_insert(now);
                i.set_unreachable_since(None);
            }
            TaskState::Unreachable => {
                let since = i.unreachable_since().unwrap_or(now);
                i.set_unreachable_since(Some(since));
            }
            _ => {}
        }
        if let Some(h) = s.healthy {
            i.healthy = Some(h);
            i.edit_health(|r| {
                if h {
                    r.first_success.get_or_insert(now);
                    r.last_success = Some(now);
                    r.consecutive_failures = 0;
                } else {
                    r.last_failure = Some(now);
                    r.consecutive_failures += 1;
                    r.last_failure_cause = s.message.clone();
                }
            });
        }
        let health_killed = s.state == TaskState::Killed
            && (s.reason.as_deref() == Some(HEALTH_KILL_REASON) || s.healthy == Some(false));
        let terminal = s.state.is_terminal();
        if terminal {
            i.indexed = false;
        }
        let inst_snapshot = i.clone();
        // Events.
        let version = inst_snapshot.version.to_string();
        let host = inst_snapshot.host.as_deref().unwrap_or_default().to_owned();
        let agent = inst_snapshot
            .agent_id
            .as_deref()
            .unwrap_or_default()
            .to_owned();
        if prev_state != Some(s.state) {
            self.event(
                "status_update_event",
                now,
                json!({
                    "slaveId": agent, "taskId": task_id, "taskStatus": s.state.as_str(),
                    "message": s.message.clone().unwrap_or_default(), "appId": app, "host": host,
                    "ipAddresses": [{"ipAddress": "127.0.0.1", "protocol": "IPv4"}],
                    "ports": inst_snapshot.ports, "version": version,
                }),
            );
            self.event(
                "instance_changed_event",
                now,
                json!({
                    "instanceId": inst, "condition": condition_name(s.state), "runSpecId": app,
                    "agentId": agent, "host": host, "runSpecVersion": version,
                }),
            );
        }
        if checks && s.healthy.is_some() && prev_health != s.healthy {
            let alive = s.healthy == Some(true);
            self.event(
                "health_status_changed_event",
                now,
                json!({"appId": app, "instanceId": inst, "version": version, "alive": alive}),
            );
            self.event(
                "instance_health_changed_event",
                now,
                json!({"instanceId": inst, "runSpecId": app, "runSpecVersion": version, "healthy": alive}),
            );
            if !alive {
                self.event(
                    "failed_health_check_event",
                    now,
                    json!({"appId": app, "taskId": inst, "healthCheck": {}}),
                );
            }
        }
        if health_killed {
            self.event(
                "unhealthy_instance_kill_event",
                now,
                json!({"appId": app, "taskId": task_id, "instanceId": inst, "version": version,
                       "reason": s.message.clone().unwrap_or_else(|| "health check failed".into()),
                       "host": host, "slaveId": agent}),
            );
        }
        if !terminal {
            let routine =
                startup(prev_state, s.state) && !moved && !was_unreachable && s.healthy.is_none();
            if !routine {
                self.persist_instance(&app, &inst);
            }
            return;
        }
        if inst_snapshot.goal == Goal::Decommissioned {
            self.forget_instance(&app, &inst);
            return;
        }
        // A wanted instance ended: relaunch it (after backoff for failures).
        if let Some(i) = self.instance_mut(&app, &inst) {
            i.healthy = None;
            i.edit_health(|r| *r = Default::default());
            i.set_unreachable_since(None);
        }
        let failed = matches!(
            s.state,
            TaskState::Failed | TaskState::Error | TaskState::Finished
        ) || health_killed;
        if let Some(st) = self.apps.get_mut(&app) {
            if st.waiting_since.is_none() {
                st.waiting_since = Some(now);
            }
            if failed {
                let b = &mut st.backoff;
                b.delay = if b.delay <= 0.0 {
                    st.app.backoff_seconds.min(st.app.max_launch_delay_seconds)
                } else {
                    (b.delay * st.app.backoff_factor).min(st.app.max_launch_delay_seconds)
                };
                b.last_failure = now;
                b.until = now + b.delay;
            }
            if s.state != TaskState::Killed || health_killed {
                st.last_task_failure = Some(TaskFailure {
                    task_id: task_id.clone(),
                    instance_id: inst.clone(),
                    state: s.state,
                    message: s.message.clone().unwrap_or_default(),
                    host,
                    agent_id: agent,
                    timestamp: now,
                    version,
                });
            }
        }
        self.persist_app(&app);
        self.persist_instance(&app, &inst);
        if inst_snapshot.canary {
            self.canary_failed(&app, now);
        }
        self.out.revive = true;
    }
}

/// A readiness check to run on an instance (reference §1.4).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadinessProbe {
    /// App id.
    pub app: String,
    /// Instance id.
    pub instance: String,
    /// The task the answer is for.
    pub task_id: String,
    /// URL to GET.
    pub url: String,
    /// Status codes meaning ready.
    pub ready_codes: Vec<u16>,
    /// Seconds between probes.
    pub interval: f64,
    /// Seconds before a probe fails.
    pub timeout: f64,
}

impl Engine {
    /// Running instances whose readiness check has not passed yet.
    pub fn readiness_probes(&self) -> Vec<ReadinessProbe> {
        let mut out = Vec::new();
        for st in self.apps() {
            let app = match &st.canary {
                Some(c) if super::requests::canary_active(&c.state) => &c.app,
                _ => &st.app,
            };
            let Some(rc) = st
                .app
                .readiness_checks
                .first()
                .or(app.readiness_checks.first())
            else {
                continue;
            };
            let idx = st
                .app
                .port_definitions
                .iter()
                .position(|p| p.name.as_deref() == Some(rc.port_name.as_str()))
                .unwrap_or(0);
            for i in self.instances_of(&st.app.id) {
                if i.ready || i.state != Some(TaskState::Running) || i.goal != Goal::Running {
                    continue;
                }
                let (Some(port), Some(host), Some(task)) =
                    (i.ports.get(idx), i.host.as_deref(), i.task_id())
                else {
                    continue;
                };
                out.push(ReadinessProbe {
                    app: st.app.id.clone(),
                    instance: i.id.to_string(),
                    task_id: task,
                    url: format!("{}://{host}:{port}{}", rc.protocol.to_lowercase(), rc.path),
                    ready_codes: rc.http_status_codes_for_ready.clone(),
                    interval: rc.interval_seconds.max(1) as f64,
                    timeout: rc.timeout_seconds.max(1) as f64,
                });
            }
        }
        out
    }

    /// The readiness check of `task_id` passed.
    pub fn mark_ready(&mut self, app: &str, instance: &str, task_id: &str, now: f64) {
        let Some(i) = self.instance_mut(app, instance) else {
            return;
        };
        if !i.is_task(task_id) || i.ready {
            return;
        }
        i.ready = true;
        self.persist_instance(app, instance);
        self.advance(now);
    }
}

/// A task going through its start (staging → starting → running, or a repeat of one), with no
/// health report, no new agent and no way back from unreachable: the instance's record is not
/// written for it. The record written when the task was launched
/// (before the launch left) already names the task and its agent, and after a restart the
/// agent re-registers with the task and reconciliation reports its state again, so writing
/// every start would only add store writes on the path of every launch. What the record would
/// lose is `startedAt`, taken again from the first TASK_RUNNING seen after the restart.
fn startup(prev: Option<TaskState>, now: TaskState) -> bool {
    matches!(
        prev,
        Some(TaskState::Staging | TaskState::Starting | TaskState::Running)
    ) && matches!(now, TaskState::Starting | TaskState::Running)
}
