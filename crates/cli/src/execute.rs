//! `meseta execute`: run one shell command as a task through the Mesos v1 scheduler API and exit
//! with its exit code, like `mesos-execute`.
//!
//! [`plan`] validates the arguments before anything is sent, [`check_fit`] rejects resources no
//! agent could ever hold, [`Execution`] is the pure event → action core, and [`run`] is the
//! imperative shell that subscribes, re-subscribes after a broken stream and executes actions.

use anyhow::{bail, Context};
use meseta_api::client::{ClientError, MasterClient, SchedulerSession};
use meseta_api::container::{ContainerInfo, ContainerType, DockerInfo, DockerNetwork};
use meseta_api::scheduler::{
    Accept, Acknowledge, CallKind, Capability, CommandInfo, Decline, Environment, Event, Filters,
    FrameworkInfo, IdValue, Kill, Offer, Reconcile, ReconcileTask, TaskInfo, TaskStatus,
};
use meseta_types::TaskState;
use std::time::Duration;
use tokio::time::Instant;

/// Name of the framework `meseta execute` registers.
pub const FRAMEWORK_NAME: &str = "meseta-execute";
/// Seconds the master keeps the task while the CLI reconnects.
const FAILOVER_TIMEOUT: f64 = 60.0;
/// Seconds declined offers are filtered.
const DECLINE_SECONDS: f64 = 5.0;
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Re-subscribing stops after this long without a master (twice the failover timeout: by then
/// the master has removed the framework and killed the task).
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

mod plan;

pub use plan::{check_fit, parse_env, plan, summary_resources, ExecuteArgs, Plan};

/// The process exit code for a terminal status.
pub fn exit_code(status: &TaskStatus) -> i32 {
    match status.state {
        TaskState::Finished => 0,
        TaskState::Killed => 137,
        TaskState::Failed => status
            .message
            .as_deref()
            .and_then(|m| m.split("exited with status ").nth(1))
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
        _ => 1,
    }
}

/// What the shell must do in response to an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// ACCEPT `offer_id` with one LAUNCH of `task`.
    Launch {
        /// The offer used.
        offer_id: IdValue,
        /// The task (boxed: it is much larger than the other actions).
        task: Box<TaskInfo>,
    },
    /// DECLINE these offers.
    Decline(Vec<IdValue>),
    /// ACKNOWLEDGE an update.
    Acknowledge(Acknowledge),
    /// Report an update of our task.
    Report(TaskStatus),
    /// Our task reached TASK_RUNNING (starts the --kill-after timer).
    Running,
    /// The task is terminal: tear down and exit with this code.
    Finish(i32),
    /// The master gave up on the framework.
    Fail(String),
}

/// The event → action core of `meseta execute`.
#[derive(Clone, Debug)]
pub struct Execution {
    plan: Plan,
    launched: bool,
}

impl Execution {
    /// Starts with nothing launched.
    pub fn new(plan: Plan) -> Execution {
        Execution {
            plan,
            launched: false,
        }
    }

    /// The plan being executed.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether the LAUNCH was sent.
    pub fn launched(&self) -> bool {
        self.launched
    }

    /// The ACCEPT carrying the launch failed; launch again on the next fitting offer.
    pub fn launch_failed(&mut self) {
        self.launched = false;
    }

    fn task_info(&self, offer: &Offer) -> TaskInfo {
        let mut command = CommandInfo::shell(self.plan.command.clone());
        command.user = self.plan.user.clone();
        if !self.plan.env.is_empty() {
            command.environment = Some(Environment {
                variables: self.plan.env.clone(),
            });
        }
        let container = self.plan.docker_image.as_ref().map(|image| ContainerInfo {
            kind: ContainerType::Docker,
            docker: Some(DockerInfo {
                image: image.clone(),
                network: Some(DockerNetwork::Host),
                ..DockerInfo::default()
            }),
            ..ContainerInfo::default()
        });
        TaskInfo {
            name: self.plan.name.clone(),
            task_id: IdValue::new(self.plan.task_id.clone()),
            agent_id: Some(offer.agent_id.clone()),
            resources: self.plan.resources.clone(),
            command: Some(command),
            container,
            ..TaskInfo::default()
        }
    }

    /// The actions `ev` calls for.
    pub fn on_event(&mut self, ev: &Event) -> Vec<Action> {
        match ev {
            Event::Offers { offers } => self.on_offers(&offers.offers),
            Event::Update { update } => self.on_update(&update.status),
            Event::Error { error } => vec![Action::Fail(error.message.clone())],
            _ => Vec::new(),
        }
    }

    fn on_offers(&mut self, offers: &[Offer]) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut declined = Vec::new();
        for offer in offers {
            // A container task waits for an agent that runs Docker (attribute docker:true).
            let runs_it = self.plan.docker_image.is_none()
                || matches!(offer.attributes.get("docker"),
                    Some(meseta_types::AttrValue::Text(t)) if t == "true");
            if !self.launched && runs_it && offer.resources.contains(&self.plan.resources) {
                self.launched = true;
                actions.push(Action::Launch {
                    offer_id: offer.id.clone(),
                    task: Box::new(self.task_info(offer)),
                });
            } else {
                declined.push(offer.id.clone());
            }
        }
        if !declined.is_empty() {
            actions.push(Action::Decline(declined));
        }
        actions
    }

    fn on_update(&mut self, status: &TaskStatus) -> Vec<Action> {
        let mut actions = Vec::new();
        if status.task_id.as_str() == self.plan.task_id {
            actions.push(Action::Report(status.clone()));
            if status.state == TaskState::Running {
                actions.push(Action::Running);
            }
        }
        if let Some(ack) = Acknowledge::for_status(status) {
            actions.push(Action::Acknowledge(ack));
        }
        if status.task_id.as_str() == self.plan.task_id && status.state.is_terminal() {
            actions.push(Action::Finish(exit_code(status)));
        }
        actions
    }
}

/// How one subscription ended.
enum Outcome {
    Finished(i32),
    Broken(String),
}

/// Runs `meseta execute`; returns the task's exit code.
pub async fn run(args: ExecuteArgs, client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    let plan = plan(&args)?;
    let slaves = client
        .slaves()
        .await
        .context("cannot list the master's agents")?;
    check_fit(&slaves, &plan.resources)?;
    let kill_after = plan.kill_after;
    let mut exec = Execution::new(plan);
    let mut shell = Shell {
        json,
        last_state: None,
        kill_at: None,
        kill_after,
        kill_sent: false,
    };
    let mut framework_id: Option<IdValue> = None;
    let mut backoff = BACKOFF_MIN;
    let mut unreachable_since = Instant::now();
    loop {
        let mut info = framework_info();
        info.id = framework_id.clone();
        let mut session = match client.subscribe(info).await {
            Ok(s) => s,
            Err(e) if e.is_transient() && unreachable_since.elapsed() < GIVE_UP_AFTER => {
                eprintln!("cannot subscribe ({e}); retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            Err(e) => return Err(e).context("cannot subscribe to the master"),
        };
        backoff = BACKOFF_MIN;
        framework_id = Some(session.framework_id().clone());
        if exec.launched() {
            let tasks = vec![ReconcileTask {
                task_id: IdValue::new(exec.plan().task_id.clone()),
                agent_id: None,
            }];
            let _ = session
                .call(CallKind::Reconcile {
                    reconcile: Reconcile { tasks },
                })
                .await;
        }
        match shell.drive(&mut session, &mut exec).await? {
            Outcome::Finished(code) => {
                let _ = session.call(CallKind::Teardown).await;
                return Ok(code);
            }
            Outcome::Broken(why) => {
                unreachable_since = Instant::now();
                eprintln!("lost the master ({why}); re-subscribing in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

fn framework_info() -> FrameworkInfo {
    FrameworkInfo {
        user: crate::current_user(),
        name: FRAMEWORK_NAME.to_string(),
        failover_timeout: Some(FAILOVER_TIMEOUT),
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok()),
        // TASK_UNREACHABLE (not a terminal TASK_LOST) while an agent is cut off: it may come back.
        capabilities: Some(vec![Capability {
            kind: "PARTITION_AWARE".to_string(),
        }]),
        ..FrameworkInfo::default()
    }
}

/// The imperative side of one `execute` run: printing and the kill timer.
struct Shell {
    json: bool,
    last_state: Option<TaskState>,
    kill_at: Option<Instant>,
    kill_after: Option<Duration>,
    kill_sent: bool,
}

impl Shell {
    async fn drive(
        &mut self,
        session: &mut SchedulerSession,
        exec: &mut Execution,
    ) -> anyhow::Result<Outcome> {
        let mut heartbeat = Duration::from_secs(15);
        loop {
            let kill_at = self.kill_at.filter(|_| !self.kill_sent);
            let ev = tokio::select! {
                ev = tokio::time::timeout(heartbeat * 5, session.next_event()) => ev,
                _ = sleep_until(kill_at) => {
                    self.kill_sent = true;
                    let kill = Kill { task_id: IdValue::new(exec.plan().task_id.clone()), agent_id: None };
                    eprintln!("killing task {} after {:?}", kill.task_id, self.kill_after.unwrap_or_default());
                    if let Err(e) = session.call(CallKind::Kill { kill }).await {
                        self.kill_sent = false;
                        return Ok(Outcome::Broken(e.to_string()));
                    }
                    continue;
                }
            };
            let ev = match ev {
                Err(_) => return Ok(Outcome::Broken("no heartbeat from the master".into())),
                Ok(Err(e)) => return Ok(Outcome::Broken(e.to_string())),
                Ok(Ok(None)) => return Ok(Outcome::Broken("the master closed the stream".into())),
                Ok(Ok(Some(ev))) => ev,
            };
            if let Event::Subscribed { subscribed } = &ev {
                let secs = subscribed.heartbeat_interval_seconds;
                if secs.is_finite() && secs > 0.0 {
                    heartbeat = Duration::from_secs_f64(secs.max(2.0));
                }
            }
            for action in exec.on_event(&ev) {
                if let Some(outcome) = self.act(session, exec, action).await? {
                    return Ok(outcome);
                }
            }
        }
    }

    async fn act(
        &mut self,
        session: &SchedulerSession,
        exec: &mut Execution,
        action: Action,
    ) -> anyhow::Result<Option<Outcome>> {
        let broken = |e: ClientError| Ok(Some(Outcome::Broken(e.to_string())));
        match action {
            Action::Launch { offer_id, task } => {
                eprintln!("launching task {} on {}", task.task_id, offer_id);
                let accept = Accept::launch(offer_id, vec![*task], DECLINE_SECONDS);
                if let Err(e) = session.call(CallKind::Accept { accept }).await {
                    exec.launch_failed();
                    return broken(e);
                }
            }
            Action::Decline(offer_ids) => {
                let decline = Decline {
                    offer_ids,
                    filters: Some(Filters {
                        refuse_seconds: Some(DECLINE_SECONDS),
                    }),
                };
                if let Err(e) = session.call(CallKind::Decline { decline }).await {
                    return broken(e);
                }
            }
            Action::Acknowledge(acknowledge) => {
                // Not fatal: a broken master also breaks the stream, and the agent re-sends
                // unacknowledged updates; a terminal update must still end the run.
                if let Err(e) = session.call(CallKind::Acknowledge { acknowledge }).await {
                    eprintln!("cannot acknowledge an update: {e}");
                }
            }
            Action::Report(status) => self.report(&status),
            Action::Running => {
                if self.kill_at.is_none() {
                    self.kill_at = self.kill_after.map(|d| Instant::now() + d);
                }
            }
            Action::Finish(code) => return Ok(Some(Outcome::Finished(code))),
            Action::Fail(message) => bail!("the master ended the framework: {message}"),
        }
        Ok(None)
    }

    fn report(&mut self, status: &TaskStatus) {
        if self.json {
            println!("{}", serde_json::to_string(status).unwrap_or_default());
            return;
        }
        if self.last_state == Some(status.state) {
            return;
        }
        self.last_state = Some(status.state);
        eprintln!("{}", status_line(status));
    }
}

/// One human-readable status line: `TASK_FAILED (Command exited with status 3)`.
pub fn status_line(status: &TaskStatus) -> String {
    let mut line = format!("task {} {}", status.task_id, status.state);
    let detail: Vec<&str> = [status.message.as_deref(), status.reason.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    if !detail.is_empty() {
        line.push_str(&format!(" ({})", detail.join(", ")));
    }
    line
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_api::scheduler::{OfferList, Update};
    use meseta_types::Resources;

    fn args(resources: &str) -> ExecuteArgs {
        ExecuteArgs {
            name: "web".into(),
            command: "echo hi".into(),
            resources: resources.into(),
            user: None,
            env: Vec::new(),
            kill_after: None,
            docker_image: None,
        }
    }

    fn offer(id: &str, resources: &str) -> Offer {
        Offer {
            id: IdValue::new(id),
            agent_id: IdValue::new("S0"),
            resources: Resources::parse(resources).expect("valid"),
            ..Offer::default()
        }
    }

    fn update(task: &str, state: TaskState, uuid: Option<&str>, message: Option<&str>) -> Event {
        let mut status = TaskStatus::new(task, state, 1.0);
        status.uuid = uuid.map(str::to_string);
        status.agent_id = Some(IdValue::new("S0"));
        status.message = message.map(str::to_string);
        Event::Update {
            update: Update { status },
        }
    }

    #[test]
    fn launches_on_first_fitting_offer_and_declines_the_rest() {
        let mut e = Execution::new(plan(&args("cpus:1;mem:64")).expect("valid"));
        let ev = Event::Offers {
            offers: OfferList {
                offers: vec![
                    offer("O1", "cpus:0.5;mem:1024"),
                    offer("O2", "cpus:4;mem:1024"),
                    offer("O3", "cpus:4;mem:1024"),
                ],
            },
        };
        let actions = e.on_event(&ev);
        assert_eq!(actions.len(), 2);
        let Action::Launch { offer_id, task } = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(offer_id.as_str(), "O2");
        assert_eq!(task.task_id.as_str(), e.plan().task_id);
        assert_eq!(task.agent_id, Some(IdValue::new("S0")));
        let cmd = task.command.as_ref().expect("command");
        assert!(cmd.shell);
        assert_eq!(cmd.value.as_deref(), Some("echo hi"));
        assert_eq!(
            actions[1],
            Action::Decline(vec![IdValue::new("O1"), IdValue::new("O3")])
        );
        let again = e.on_event(&Event::Offers {
            offers: OfferList {
                offers: vec![offer("O4", "cpus:4;mem:1024")],
            },
        });
        assert_eq!(again, vec![Action::Decline(vec![IdValue::new("O4")])]);
    }

    #[test]
    fn updates_are_reported_acked_and_finish() {
        let mut e = Execution::new(plan(&args("cpus:1")).expect("valid"));
        let id = e.plan().task_id.clone();
        let acts = e.on_event(&update(&id, TaskState::Running, Some("dXVpZA=="), None));
        assert!(matches!(acts[0], Action::Report(_)));
        assert_eq!(acts[1], Action::Running);
        assert!(matches!(&acts[2], Action::Acknowledge(a) if a.uuid == "dXVpZA=="));
        let acts = e.on_event(&update(
            &id,
            TaskState::Failed,
            None,
            Some("Command exited with status 3"),
        ));
        assert_eq!(acts.last(), Some(&Action::Finish(3)));
        assert!(
            !acts.iter().any(|a| matches!(a, Action::Acknowledge(_))),
            "no uuid, no ack"
        );
        let other = e.on_event(&update("other", TaskState::Finished, Some("eA=="), None));
        assert!(matches!(other.as_slice(), [Action::Acknowledge(_)]));
    }

    #[test]
    fn exit_codes() {
        let st = |state, msg: Option<&str>| {
            let mut s = TaskStatus::new("t", state, 0.0);
            s.message = msg.map(str::to_string);
            s
        };
        assert_eq!(exit_code(&st(TaskState::Finished, None)), 0);
        assert_eq!(
            exit_code(&st(
                TaskState::Failed,
                Some("Command exited with status 42")
            )),
            42
        );
        assert_eq!(exit_code(&st(TaskState::Failed, Some("boom"))), 1);
        assert_eq!(exit_code(&st(TaskState::Killed, None)), 137);
        assert_eq!(exit_code(&st(TaskState::Lost, None)), 1);
    }

    #[test]
    fn status_lines_name_state_and_detail() {
        let mut s = TaskStatus::new("t1", TaskState::Failed, 0.0);
        assert_eq!(status_line(&s), "task t1 TASK_FAILED");
        s.message = Some("Command exited with status 3".into());
        s.reason = Some("REASON_COMMAND_EXECUTOR_FAILED".into());
        assert_eq!(
            status_line(&s),
            "task t1 TASK_FAILED (Command exited with status 3, REASON_COMMAND_EXECUTOR_FAILED)"
        );
    }
}
