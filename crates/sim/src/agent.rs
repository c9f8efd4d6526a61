//! The state machine of one simulated agent, free of I/O so it can be tested directly.
//!
//! [`crate::conn`] feeds it master messages and fired timers; it answers by filling an outbox of
//! [`AgentMessage`]s and a list of new [`Timer`]s. A task goes
//!
//! ```text
//!  LaunchTask ─(start_delay)─▶ STARTING, RUNNING ─┬─(run_time)─▶ FINISHED
//!                                                 ├─ failure drawn: FAILED (after run_time, or at once
//!                                                 │   when tasks run until killed)
//!  KillTask (any time before the end) ───────────▶ KILLED
//! ```
//!
//! Every update gets a fresh uuid and stays pending until the master acknowledges it; a task is
//! forgotten once its terminal update is acknowledged. Pending updates are kept in the order they
//! were sent and found by uuid ([`Pending`]), so an acknowledgement costs the same however many
//! updates an agent has outstanding (thousands when one ACCEPT launches a thousand tasks on it).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meseta_api::agent::{AgentMessage, Register, StatusUpdate, TaskReport, TaskSpec};
use meseta_types::{AgentId, Attributes, FrameworkId, Resources, TaskId, TaskState};

use crate::rng::Rng;
use crate::stats::{LaunchRecord, Shared};

/// How simulated tasks behave (shared by all agents of a cluster).
#[derive(Clone, Debug)]
pub(crate) struct Behaviour {
    pub(crate) resources: Resources,
    pub(crate) start_delay: Duration,
    pub(crate) failure_rate: f64,
    pub(crate) run_time: Option<Duration>,
}

/// What a timer does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send STARTING and RUNNING.
    Start,
    /// End the task (FAILED when `fail`, else FINISHED).
    End {
        /// Whether the task fails.
        fail: bool,
    },
}

/// A pending piece of simulated work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Timer {
    pub(crate) after: Duration,
    pub(crate) task_id: TaskId,
    /// Launch generation, so a stale timer never touches a relaunched task of the same id.
    pub(crate) generation: u64,
    pub(crate) step: Step,
}

struct SimTask {
    spec: TaskSpec,
    state: TaskState,
    generation: u64,
    /// Its updates still pending.
    unacked: u32,
}

/// Updates awaiting the master's acknowledgement: in the order they were sent (they are resent
/// in that order) and found by uuid, so removing one moves no other.
#[derive(Default)]
struct Pending {
    by_seq: BTreeMap<u64, StatusUpdate>,
    seq_of: HashMap<String, u64>,
    next: u64,
}

impl Pending {
    fn push(&mut self, u: StatusUpdate) {
        self.seq_of.insert(u.uuid.clone(), self.next);
        self.by_seq.insert(self.next, u);
        self.next += 1;
    }

    fn remove(&mut self, uuid: &str) -> Option<StatusUpdate> {
        let seq = self.seq_of.remove(uuid)?;
        self.by_seq.remove(&seq)
    }

    /// In the order they were sent.
    fn iter(&self) -> impl Iterator<Item = &StatusUpdate> {
        self.by_seq.values()
    }

    fn len(&self) -> usize {
        self.by_seq.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }
}

/// One simulated agent.
pub(crate) struct AgentState {
    hostname: String,
    address: String,
    agent_id: Option<AgentId>,
    behaviour: Arc<Behaviour>,
    shared: Arc<Shared>,
    rng: Rng,
    tasks: HashMap<TaskId, SimTask>,
    pending: Pending,
    next_generation: u64,
    connected: bool,
    outbox: Vec<AgentMessage>,
    timers: Vec<Timer>,
}

impl AgentState {
    pub(crate) fn new(
        hostname: String,
        address: String,
        behaviour: Arc<Behaviour>,
        shared: Arc<Shared>,
        rng: Rng,
    ) -> AgentState {
        AgentState {
            hostname,
            address,
            agent_id: None,
            behaviour,
            shared,
            rng,
            tasks: HashMap::new(),
            pending: Pending::default(),
            next_generation: 0,
            connected: false,
            outbox: Vec::new(),
            timers: Vec::new(),
        }
    }

    pub(crate) fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The `Register` message for a new connection.
    pub(crate) fn register_message(&self) -> AgentMessage {
        AgentMessage::Register(Register {
            agent_id: self.agent_id.clone(),
            hostname: self.hostname.clone(),
            address: self.address.clone(),
            resources: self.behaviour.resources.clone(),
            attributes: Attributes::default(),
            tasks: self
                .tasks
                .values()
                .map(|t| TaskReport {
                    spec: t.spec.clone(),
                    state: t.state,
                })
                .collect(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            domain: None,
        })
    }

    /// The master accepted us: remember the id and resend every unacknowledged update.
    pub(crate) fn on_registered(&mut self, agent_id: AgentId) {
        if !self.connected {
            self.shared.connected.fetch_add(1, Ordering::Relaxed);
        }
        self.agent_id = Some(agent_id);
        self.connected = true;
        self.resend_pending();
    }

    /// The connection is gone: updates stay pending until the next registration.
    pub(crate) fn on_disconnected(&mut self) {
        if self.connected {
            self.shared.connected.fetch_sub(1, Ordering::Relaxed);
        }
        self.connected = false;
    }

    /// Queue every pending update again.
    pub(crate) fn resend_pending(&mut self) {
        if self.connected {
            let again = self.pending.iter().cloned().map(AgentMessage::StatusUpdate);
            self.outbox.extend(again);
        }
    }

    /// Queue a heartbeat.
    pub(crate) fn heartbeat(&mut self) {
        if self.connected {
            self.outbox.push(AgentMessage::Heartbeat);
        }
    }

    pub(crate) fn on_launch(&mut self, spec: TaskSpec) {
        self.shared.record_launch(LaunchRecord {
            task_id: spec.task_id.clone(),
            agent: self.hostname.clone(),
            received_at: SystemTime::now(),
        });
        if self.tasks.contains_key(&spec.task_id) {
            tracing::debug!(task_id = %spec.task_id, "ignoring launch of a known task");
            return;
        }
        let task_id = spec.task_id.clone();
        let generation = self.next_generation;
        self.next_generation += 1;
        self.tasks.insert(
            task_id.clone(),
            SimTask {
                spec,
                state: TaskState::Staging,
                generation,
                unacked: 0,
            },
        );
        if self.behaviour.start_delay.is_zero() {
            self.start(&task_id);
        } else {
            self.timers.push(Timer {
                after: self.behaviour.start_delay,
                task_id,
                generation,
                step: Step::Start,
            });
        }
    }

    pub(crate) fn on_timer(&mut self, task_id: &TaskId, generation: u64, step: Step) {
        let live = self
            .tasks
            .get(task_id)
            .is_some_and(|t| t.generation == generation && !t.state.is_terminal());
        if !live {
            return;
        }
        match step {
            Step::Start => self.start(task_id),
            Step::End { fail: true } => self.fail(task_id),
            Step::End { fail: false } => self.emit(task_id, TaskState::Finished, None, None),
        }
    }

    fn start(&mut self, task_id: &TaskId) {
        self.emit(task_id, TaskState::Starting, None, None);
        self.emit(task_id, TaskState::Running, None, None);
        let fail = self.rng.chance(self.behaviour.failure_rate);
        match self.behaviour.run_time {
            Some(after) => {
                let generation = self.tasks.get(task_id).map_or(0, |t| t.generation);
                self.timers.push(Timer {
                    after,
                    task_id: task_id.clone(),
                    generation,
                    step: Step::End { fail },
                });
            }
            None if fail => self.fail(task_id),
            None => {}
        }
    }

    fn fail(&mut self, task_id: &TaskId) {
        let message = "Command exited with status 1".to_string();
        self.emit(task_id, TaskState::Failed, Some(message), Some(1));
    }

    pub(crate) fn on_kill(&mut self, task_id: &TaskId) {
        let Some(task) = self.tasks.get(task_id) else {
            self.send_lost(task_id);
            return;
        };
        if !task.state.is_terminal() {
            self.emit(task_id, TaskState::Killed, Some("Task killed".into()), None);
            return;
        }
        // The master still believes it runs: tell it again how it ended.
        let again: Vec<AgentMessage> = self
            .pending
            .iter()
            .filter(|u| &u.task_id == task_id)
            .cloned()
            .map(AgentMessage::StatusUpdate)
            .collect();
        if self.connected {
            self.outbox.extend(again);
        }
    }

    pub(crate) fn on_acknowledge(&mut self, task_id: &TaskId, uuid: &str) {
        if self.pending.remove(uuid).is_none() {
            return;
        }
        self.shared.unacked.fetch_sub(1, Ordering::Relaxed);
        let Some(task) = self.tasks.get_mut(task_id) else {
            return;
        };
        task.unacked = task.unacked.saturating_sub(1);
        // Ended, and every update of it (the terminal one last sent) acknowledged.
        if task.state.is_terminal() && task.unacked == 0 {
            self.tasks.remove(task_id);
        }
    }

    /// A new update of `task_id`: change its state, count it, keep it pending and queue it.
    fn emit(
        &mut self,
        task_id: &TaskId,
        state: TaskState,
        message: Option<String>,
        exit_code: Option<i32>,
    ) {
        let Some(task) = self.tasks.get_mut(task_id) else {
            return;
        };
        let was_running = task.state == TaskState::Running;
        task.state = state;
        task.unacked += 1;
        let framework_id = task.spec.framework_id.clone();
        let executor_id = task.spec.executor.as_ref().map(|e| e.id().to_string());
        self.count(state, was_running);
        let update = StatusUpdate {
            uuid: uuid::Uuid::new_v4().to_string(),
            task_id: task_id.clone(),
            framework_id,
            state,
            reason: None,
            message,
            timestamp: now_secs(),
            exit_code,
            healthy: None,
            executor_id,
            data: None,
        };
        if self.connected {
            self.outbox.push(AgentMessage::StatusUpdate(update.clone()));
        }
        self.pending.push(update);
        self.shared.unacked.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self, state: TaskState, was_running: bool) {
        let s = &self.shared;
        let counter = match state {
            TaskState::Running => Some(&s.running),
            TaskState::Finished => Some(&s.finished),
            TaskState::Failed => Some(&s.failed),
            TaskState::Killed => Some(&s.killed),
            _ => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if was_running && state.is_terminal() {
            s.running.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Kill of a task this agent never heard of: TASK_LOST, not checkpointed (like the real agent).
    fn send_lost(&mut self, task_id: &TaskId) {
        if !self.connected {
            return;
        }
        self.outbox.push(AgentMessage::StatusUpdate(StatusUpdate {
            uuid: uuid::Uuid::new_v4().to_string(),
            task_id: task_id.clone(),
            framework_id: FrameworkId::default(),
            state: TaskState::Lost,
            reason: Some("REASON_RECONCILIATION".into()),
            message: Some("Task is unknown to the agent".into()),
            timestamp: now_secs(),
            exit_code: None,
            healthy: None,
            executor_id: None,
            data: None,
        }));
    }

    /// Messages to send now.
    pub(crate) fn take_outbox(&mut self) -> Vec<AgentMessage> {
        std::mem::take(&mut self.outbox)
    }

    /// Timers to arm now.
    pub(crate) fn take_timers(&mut self) -> Vec<Timer> {
        std::mem::take(&mut self.timers)
    }
}

impl Drop for AgentState {
    fn drop(&mut self) {
        self.on_disconnected();
        let running = self
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Running)
            .count() as u64;
        self.shared.running.fetch_sub(running, Ordering::Relaxed);
        let unacked = self.pending.len() as u64;
        self.shared.unacked.fetch_sub(unacked, Ordering::Relaxed);
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_api::agent::Command;

    fn agent(start_delay: u64, failure_rate: f64, run_time: Option<u64>) -> AgentState {
        let behaviour = Behaviour {
            resources: Resources::parse("cpus:2;mem:1024").expect("resources"),
            start_delay: Duration::from_millis(start_delay),
            failure_rate,
            run_time: run_time.map(Duration::from_millis),
        };
        let mut a = AgentState::new(
            "sim-0".into(),
            "127.0.0.1:20000".into(),
            Arc::new(behaviour),
            Arc::new(Shared::new(1)),
            Rng::for_agent(1, 0),
        );
        a.on_registered(AgentId::new("S0"));
        a
    }

    fn spec(id: &str) -> TaskSpec {
        TaskSpec {
            task_id: TaskId::new(id),
            framework_id: FrameworkId::new("fw"),
            name: id.into(),
            resources: Resources::parse("cpus:1").expect("resources"),
            command: Command {
                shell: true,
                value: "true".into(),
                arguments: vec![],
            },
            env: vec![],
            user: None,
            kill_grace_secs: None,
            role: "*".to_string(),
            health_check: None,
            fetch: vec![],
            volumes: vec![],
            container: None,
            executor: None,
            task_info: None,
            group: vec![],
            secrets: vec![],
        }
    }

    fn states(out: &[AgentMessage]) -> Vec<TaskState> {
        out.iter()
            .filter_map(|m| match m {
                AgentMessage::StatusUpdate(u) => Some(u.state),
                _ => None,
            })
            .collect()
    }

    fn fire(a: &mut AgentState) {
        for t in a.take_timers() {
            a.on_timer(&t.task_id, t.generation, t.step);
        }
    }

    #[test]
    fn runs_then_finishes_after_run_time() {
        let mut a = agent(0, 0.0, Some(10));
        a.on_launch(spec("t1"));
        let out = a.take_outbox();
        assert_eq!(states(&out), [TaskState::Starting, TaskState::Running]);
        let timers = a.take_timers();
        assert_eq!(timers.len(), 1);
        assert_eq!(timers[0].after, Duration::from_millis(10));
        a.on_timer(&timers[0].task_id, timers[0].generation, timers[0].step);
        assert_eq!(states(&a.take_outbox()), [TaskState::Finished]);
        let s = a.shared.snapshot();
        assert_eq!((s.launches, s.running, s.finished), (1, 0, 1));
        assert_eq!(s.unacked, 3, "STARTING, RUNNING, FINISHED await acks");
    }

    #[test]
    fn start_delay_arms_a_timer_and_failures_exit_1() {
        let mut a = agent(50, 1.0, None);
        a.on_launch(spec("t1"));
        assert!(a.take_outbox().is_empty());
        fire(&mut a);
        let out = a.take_outbox();
        assert_eq!(
            states(&out),
            [TaskState::Starting, TaskState::Running, TaskState::Failed]
        );
        let AgentMessage::StatusUpdate(failed) = &out[2] else {
            panic!("not an update")
        };
        assert_eq!(failed.exit_code, Some(1));
        assert_eq!(
            failed.message.as_deref(),
            Some("Command exited with status 1")
        );
        assert_eq!(a.shared.snapshot().failed, 1);
    }

    #[test]
    fn kill_before_start_wins_and_stale_timer_is_ignored() {
        let mut a = agent(50, 0.0, None);
        a.on_launch(spec("t1"));
        a.on_kill(&TaskId::new("t1"));
        assert_eq!(states(&a.take_outbox()), [TaskState::Killed]);
        fire(&mut a);
        assert!(a.take_outbox().is_empty(), "no start after the kill");
        a.on_kill(&TaskId::new("nope"));
        assert_eq!(states(&a.take_outbox()), [TaskState::Lost]);
    }

    #[test]
    fn acks_clear_pending_and_forget_ended_tasks() {
        let mut a = agent(0, 0.0, None);
        a.on_launch(spec("t1"));
        let out = a.take_outbox();
        a.on_kill(&TaskId::new("t1"));
        let kill = a.take_outbox();
        for m in out.iter().chain(&kill) {
            if let AgentMessage::StatusUpdate(u) = m {
                a.on_acknowledge(&u.task_id, &u.uuid);
            }
        }
        assert!(a.pending.is_empty());
        assert_eq!(a.shared.snapshot().unacked, 0);
        assert!(a.tasks.is_empty());
        a.resend_pending();
        assert!(a.take_outbox().is_empty());
    }

    #[test]
    fn acks_in_any_order_keep_the_rest_in_sending_order() {
        let mut a = agent(0, 0.0, None);
        for id in ["t1", "t2", "t3"] {
            a.on_launch(spec(id));
        }
        let sent: Vec<StatusUpdate> = a
            .take_outbox()
            .into_iter()
            .filter_map(|m| match m {
                AgentMessage::StatusUpdate(u) => Some(u),
                _ => None,
            })
            .collect();
        assert_eq!(sent.len(), 6, "STARTING and RUNNING of each");
        // Acknowledge the last, a middle one and an unknown uuid.
        a.on_acknowledge(&sent[5].task_id, &sent[5].uuid);
        a.on_acknowledge(&sent[2].task_id, &sent[2].uuid);
        a.on_acknowledge(&sent[2].task_id, "no-such-uuid");
        assert_eq!(a.shared.snapshot().unacked, 4);
        a.resend_pending();
        let again: Vec<String> = a
            .take_outbox()
            .into_iter()
            .filter_map(|m| match m {
                AgentMessage::StatusUpdate(u) => Some(u.uuid),
                _ => None,
            })
            .collect();
        let expected: Vec<String> = [0, 1, 3, 4].iter().map(|&i| sent[i].uuid.clone()).collect();
        assert_eq!(again, expected);
        // t2 ends: it is forgotten once its last update (the terminal one) is acknowledged.
        a.on_kill(&TaskId::new("t2"));
        let killed = match a.take_outbox().pop() {
            Some(AgentMessage::StatusUpdate(u)) => u,
            other => panic!("not an update: {other:?}"),
        };
        a.on_acknowledge(&killed.task_id, &killed.uuid);
        assert!(
            a.tasks.contains_key(&TaskId::new("t2")),
            "RUNNING still pending"
        );
        a.on_acknowledge(&sent[3].task_id, &sent[3].uuid);
        assert!(!a.tasks.contains_key(&TaskId::new("t2")));
        assert_eq!(a.tasks.len(), 2);
    }

    #[test]
    fn unacked_updates_are_resent_and_reported_on_reregistration() {
        let mut a = agent(0, 0.0, None);
        a.on_launch(spec("t1"));
        a.take_outbox();
        a.on_disconnected();
        assert_eq!(a.shared.snapshot().connected, 0);
        let AgentMessage::Register(reg) = a.register_message() else {
            panic!("not a register")
        };
        assert_eq!(reg.agent_id, Some(AgentId::new("S0")));
        assert_eq!(reg.tasks.len(), 1);
        assert_eq!(reg.tasks[0].state, TaskState::Running);
        a.on_registered(AgentId::new("S0"));
        assert_eq!(
            states(&a.take_outbox()),
            [TaskState::Starting, TaskState::Running]
        );
    }
}
