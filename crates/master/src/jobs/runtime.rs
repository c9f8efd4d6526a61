//! The one task that owns the jobs [`Planner`]: it recovers the jobs from the store, subscribes
//! to the master as the `meseta-jobs` framework, and then loops over four inputs — HTTP commands,
//! framework events (offers, status updates), the planner's next wake-up, and shutdown.
//!
//! Every planner call returns [`Command`]s, executed here: `Launch` queues a run until an offer
//! fits it (REVIVE while something waits, SUPPRESS when idle), `Kill` sends KILL, and
//! `Persist`/`Forget` write the store *before* the HTTP reply that caused them is sent.
//! A queued run that finds no offer within its job's epsilon is recorded as skipped.

use futures::FutureExt;
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use meseta_api::scheduler::{
    Accept, Acknowledge, CallKind, Decline, Event, Filters, FrameworkInfo, IdValue, Kill, Launch,
    Offer, Operation, Reconcile, ReconcileTask, TaskStatus,
};
use meseta_jobs::job::JobSpec;
use meseta_jobs::planner::{Command, JobState, Planner, RunId, RunOutcome};
use meseta_types::{TaskId, TaskState};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::launch::{self, Queued};
use super::{store, JobsCommand, JobsHandle};
use crate::{FrameworkConnection, Master};

/// The framework name the runtime subscribes with.
pub(crate) const FRAMEWORK_NAME: &str = "meseta-jobs";
/// One week, as Chronos.
const FAILOVER_TIMEOUT: f64 = 604_800.0;
/// The longest the loop sleeps without checking the planner.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// The shortest sleep (a guard against spinning on a wake-up time that does not move).
const MIN_SLEEP: Duration = Duration::from_millis(2);
/// How long declined offers stay away (a REVIVE clears it sooner).
const DECLINE_SECONDS: f64 = 1.0;
/// How often run bookkeeping (starts, ends, skips) is written.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Events handled before one store commit.
const MAX_EVENT_BATCH: usize = 512;
/// How often active runs are reconciled with the master.
const RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// Delay before subscribing again after the subscription ended.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Start the runtime for `master`: returns the handle HTTP handlers use and the task.
pub(crate) fn start(master: &Master, cancel: CancellationToken) -> (JobsHandle, JoinHandle<()>) {
    let (handle, rx) = JobsHandle::channel();
    let m = master.clone();
    let task = tokio::spawn(async move { run(m, rx, cancel).await });
    (handle, task)
}

enum Wake {
    Command(Option<JobsCommand>),
    Event(Option<Event>),
    Timer,
}

async fn run(master: Master, mut rx: mpsc::Receiver<JobsCommand>, cancel: CancellationToken) {
    let mut rt = match Runtime::recover(master).await {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "jobs scheduler cannot load its jobs; not running");
            return;
        }
    };
    loop {
        rt.ensure_subscribed().await;
        let sleep = rt.sleep_for();
        let wake = tokio::select! {
            // Shutdown first: the master closes subscriptions right after cancelling.
            biased;
            _ = cancel.cancelled() => {
                if let Err(e) = rt.flush().await {
                    tracing::error!(error = %e, "jobs scheduler cannot persist at shutdown");
                }
                return;
            }
            c = rx.recv() => Wake::Command(c),
            e = next_event(&mut rt.conn) => Wake::Event(e),
            _ = tokio::time::sleep(sleep) => Wake::Timer,
        };
        match wake {
            Wake::Command(Some(c)) => rt.handle(c).await,
            Wake::Command(None) => return,
            Wake::Event(Some(e)) => {
                rt.on_event(e).await;
                // Take every event already waiting before the tick's one commit.
                for _ in 0..MAX_EVENT_BATCH {
                    let Some(conn) = rt.conn.as_mut() else { break };
                    match conn.next_event().now_or_never() {
                        Some(Some(e)) => rt.on_event(e).await,
                        Some(None) => {
                            rt.disconnected();
                            break;
                        }
                        None => break,
                    }
                }
            }
            Wake::Event(None) => rt.disconnected(),
            Wake::Timer => {}
        }
        rt.tick().await;
    }
}

/// The next framework event, or pending forever while not subscribed.
async fn next_event(conn: &mut Option<FrameworkConnection>) -> Option<Event> {
    match conn {
        Some(c) => c.next_event().await,
        None => std::future::pending().await,
    }
}

/// The runtime's state; request handling lives in `requests.rs`.
pub(super) struct Runtime {
    master: Master,
    pub(super) planner: Planner,
    conn: Option<FrameworkConnection>,
    framework_id: Option<String>,
    pub(super) queue: Vec<Queued>,
    offers: Vec<Offer>,
    suppressed: bool,
    last_reconcile: Instant,
    next_subscribe: Instant,
    /// Restarted and not yet settled (see [`Runtime::settle_recovery`]).
    recovering: bool,
    /// Runs killed for exceeding `maxCompletionTime`.
    timed_out: BTreeSet<RunId>,
    /// Jobs changed since the last flush.
    dirty: BTreeSet<String>,
    /// When run bookkeeping was last written.
    last_flush: Instant,
    /// Jobs removed since the last flush.
    forgotten: BTreeSet<String>,
}

impl Runtime {
    /// Load the jobs and restore the planner (runs missed while the master was down beyond
    /// epsilon are recorded as skipped by the planner).
    async fn recover(master: Master) -> Result<Runtime, meseta_store::StoreError> {
        let jobs = store::load(master.store()).await?;
        let framework_id = store::framework_id(master.store()).await?;
        let n = jobs.len();
        let (planner, cmds) = Planner::restore(jobs, Timestamp::now());
        tracing::info!(jobs = n, "jobs scheduler recovered");
        let mut rt = Runtime {
            master,
            planner,
            conn: None,
            framework_id,
            queue: Vec::new(),
            offers: Vec::new(),
            suppressed: false,
            last_reconcile: Instant::now(),
            next_subscribe: Instant::now(),
            recovering: true,
            timed_out: BTreeSet::new(),
            dirty: BTreeSet::new(),
            forgotten: BTreeSet::new(),
            last_flush: Instant::now(),
        };
        let now = Timestamp::now();
        let (launches, rest): (Vec<Command>, Vec<Command>) = cmds
            .into_iter()
            .partition(|c| matches!(c, Command::Launch { .. }));
        for c in launches {
            if let Command::Launch { run, job, .. } = c {
                rt.queue.push(Queued {
                    run,
                    job,
                    queued_at: now,
                    restored: true,
                });
            }
        }
        rt.execute(rest).await?;
        Ok(rt)
    }

    fn sleep_for(&self) -> Duration {
        let now = Timestamp::now();
        match self.planner.next_wakeup() {
            None => MAX_SLEEP,
            Some(t) => {
                let d = t.duration_since(now);
                Duration::try_from(d)
                    .unwrap_or(MIN_SLEEP)
                    .clamp(MIN_SLEEP, MAX_SLEEP)
            }
        }
    }

    /// Subscribe when there is at least one job (a master without jobs shows no jobs framework).
    async fn ensure_subscribed(&mut self) {
        if self.conn.is_some()
            || Instant::now() < self.next_subscribe
            || self.planner.jobs().next().is_none()
        {
            return;
        }
        self.next_subscribe = Instant::now() + RESUBSCRIBE_AFTER;
        let info = FrameworkInfo {
            user: "root".to_string(),
            name: FRAMEWORK_NAME.to_string(),
            failover_timeout: Some(FAILOVER_TIMEOUT),
            id: self.framework_id.as_deref().map(IdValue::new),
            // A run on a cut-off agent is UNREACHABLE (it may come back), not a failed LOST.
            capabilities: Some(vec![meseta_api::scheduler::Capability {
                kind: "PARTITION_AWARE".to_string(),
            }]),
            ..FrameworkInfo::default()
        };
        match self.master.subscribe(info).await {
            Ok(conn) => self.conn = Some(conn),
            Err(e) => tracing::warn!(error = %e, "jobs scheduler cannot subscribe; retrying"),
        }
    }

    fn disconnected(&mut self) {
        tracing::warn!("jobs scheduler subscription ended; subscribing again");
        self.conn = None;
        self.offers.clear();
    }

    fn call(&self, kind: CallKind) {
        let Some(conn) = &self.conn else {
            return;
        };
        let name = kind.type_name();
        if let Err(e) = conn.call(kind) {
            tracing::warn!(call = name, error = %e, "jobs scheduler call refused");
        }
    }

    /// Time-driven work: due runs, queued runs past epsilon, periodic reconciliation.
    async fn tick(&mut self) {
        let now = Timestamp::now();
        let mut cmds = self.planner.tick(now);
        cmds.extend(self.expire_queue(now));
        self.apply(cmds);
        // Run bookkeeping is written in batches (a job changes several times per run); changes
        // an HTTP request made are written before it is answered (`execute`).
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.last_flush = Instant::now();
            if let Err(e) = self.flush().await {
                tracing::error!(error = %e, "jobs scheduler cannot persist a job");
            }
        }
        self.settle_recovery();
        self.enforce_max_completion_time(now);
        if self.last_reconcile.elapsed() >= RECONCILE_EVERY {
            self.reconcile();
        }
    }

    /// Execute planner commands (and those that executing them yields). Store writes are
    /// coalesced per job and awaited; the first store error is returned after all are tried.
    pub(super) async fn execute(
        &mut self,
        cmds: Vec<Command>,
    ) -> Result<(), meseta_store::StoreError> {
        self.apply(cmds);
        self.flush().await
    }

    /// Carry out planner commands now; their store writes wait in `dirty`/`forgotten` for the
    /// next [`Runtime::flush`] (so a burst of status updates costs one commit).
    pub(super) fn apply(&mut self, cmds: Vec<Command>) {
        let now = Timestamp::now();
        let mut work: VecDeque<Command> = cmds.into();
        let mut queued_new = false;
        while let Some(c) = work.pop_front() {
            match c {
                Command::Launch { run, job, .. } => {
                    if !self.queue.iter().any(|q| q.run == run) {
                        self.queue.push(Queued {
                            run,
                            job,
                            queued_at: now,
                            restored: false,
                        });
                        queued_new = true;
                    }
                }
                Command::Kill { run } => work.extend(self.kill_run(run, now)),
                Command::Persist { job } => {
                    self.forgotten.remove(&job);
                    self.dirty.insert(job);
                }
                Command::Forget { job } => {
                    self.dirty.remove(&job);
                    self.forgotten.insert(job);
                }
            }
        }
        if queued_new {
            self.revive();
        }
        self.launch_queued();
        self.update_interest();
    }

    /// Write every job changed since the last flush, in one transaction. On failure the jobs stay
    /// marked, so the next flush retries them.
    pub(super) async fn flush(&mut self) -> Result<(), meseta_store::StoreError> {
        if self.dirty.is_empty() && self.forgotten.is_empty() {
            return Ok(());
        }
        let forgotten: Vec<String> = self.forgotten.iter().cloned().collect();
        let save: Vec<(&JobSpec, &JobState)> = self
            .dirty
            .iter()
            .filter_map(|name| self.planner.job(name))
            .collect();
        store::save_all(self.master.store(), &save, &forgotten).await?;
        self.dirty.clear();
        self.forgotten.clear();
        Ok(())
    }

    /// Kill a run: a queued one ends here as killed; a launched one gets a KILL call.
    fn kill_run(&mut self, run: RunId, now: Timestamp) -> Vec<Command> {
        if let Some(i) = self.queue.iter().position(|q| q.run == run) {
            self.queue.remove(i);
            return self
                .planner
                .run_finished(&run, RunOutcome::Killed, None, now);
        }
        self.call(CallKind::Kill {
            kill: Kill {
                task_id: IdValue::new(run.0.clone()),
                agent_id: None,
            },
        });
        Vec::new()
    }

    /// Kill runs that have been running longer than their job's `maxCompletionTime` (once each).
    fn enforce_max_completion_time(&mut self, now: Timestamp) {
        let mut overdue = Vec::new();
        for (spec, state) in self.planner.jobs() {
            if spec.max_completion_time == 0 {
                continue;
            }
            let limit = jiff::SignedDuration::from_secs(
                i64::try_from(spec.max_completion_time).unwrap_or(i64::MAX),
            );
            for r in &state.history {
                let started = match (&r.outcome, r.started_at) {
                    (RunOutcome::Running, Some(t)) => t,
                    _ => continue,
                };
                if now.duration_since(started) > limit && !self.timed_out.contains(&r.run_id) {
                    overdue.push(r.run_id.clone());
                }
            }
        }
        for run in overdue {
            tracing::info!(run = %run.0, "run exceeded maxCompletionTime; killing it");
            self.call(CallKind::Kill {
                kill: Kill {
                    task_id: IdValue::new(run.0.clone()),
                    agent_id: None,
                },
            });
            self.timed_out.insert(run);
        }
        // Forget runs that are no longer active.
        let active: BTreeSet<&RunId> = self
            .planner
            .jobs()
            .flat_map(|(_, st)| st.active_runs.iter())
            .collect();
        self.timed_out.retain(|r| active.contains(r));
    }

    /// Queued runs that waited longer than their job's epsilon are skipped.
    fn expire_queue(&mut self, now: Timestamp) -> Vec<Command> {
        let mut cmds = Vec::new();
        let mut keep = Vec::with_capacity(self.queue.len());
        for q in std::mem::take(&mut self.queue) {
            let eps = self.planner.job(&q.job).map(|(s, _)| s.epsilon);
            match eps {
                None => {}
                Some(eps) if now.duration_since(q.queued_at) > eps => {
                    let reason = "no offer fitted its cpus/mem/disk within epsilon".to_string();
                    tracing::warn!(run = %q.run.0, "{reason}; skipped");
                    cmds.extend(self.planner.run_finished(
                        &q.run,
                        RunOutcome::Skipped { reason },
                        None,
                        now,
                    ));
                }
                Some(_) => keep.push(q),
            }
        }
        self.queue = keep;
        cmds
    }

    /// After a master restart, once subscribed and every agent known before the restart is back:
    /// restored runs the master already knows (launched before the restart) leave the queue —
    /// launching them again would run them twice — and every active run is reconciled, so runs
    /// that ended while the master was down are reported.
    fn settle_recovery(&mut self) {
        if !self.recovering || self.conn.is_none() {
            return;
        }
        let known: Vec<bool> = {
            let core = self.master.core();
            if core.agents_transitioning() {
                return;
            }
            self.queue
                .iter()
                .map(|q| {
                    let id = TaskId::new(q.run.0.as_str());
                    core.tasks.contains_key(&id)
                        || core
                            .frameworks
                            .values()
                            .any(|f| f.completed_tasks.iter().any(|t| t.spec.task_id == id))
                })
                .collect()
        };
        let mut i = 0;
        self.queue.retain(|q| {
            let keep = !(q.restored && known[i]);
            i += 1;
            keep
        });
        for q in &mut self.queue {
            q.restored = false;
        }
        self.recovering = false;
        self.reconcile();
    }

    /// Place queued runs on the held offers; decline what is left.
    fn launch_queued(&mut self) {
        self.settle_recovery();
        if self.offers.is_empty() {
            return;
        }
        let offers = std::mem::take(&mut self.offers);
        let (held, queue): (Vec<Queued>, Vec<Queued>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|q| q.restored);
        let planner = &self.planner;
        let placed = launch::place(queue, &offers, |name| {
            planner.job(name).map(|(s, _)| s as &JobSpec)
        });
        self.queue = held;
        self.queue.extend(placed.still_queued);
        for (offer_id, tasks) in placed.accepts.into_values() {
            tracing::debug!(tasks = tasks.len(), "launching job runs");
            self.call(CallKind::Accept {
                accept: Accept {
                    offer_ids: vec![offer_id],
                    operations: vec![Operation::Launch {
                        launch: Launch { task_infos: tasks },
                    }],
                    filters: Some(Filters {
                        refuse_seconds: Some(0.0),
                    }),
                },
            });
        }
        if !placed.unused.is_empty() {
            self.call(CallKind::Decline {
                decline: Decline {
                    offer_ids: placed.unused,
                    filters: Some(Filters {
                        refuse_seconds: Some(DECLINE_SECONDS),
                    }),
                },
            });
        }
    }

    fn revive(&mut self) {
        self.call(CallKind::Revive { revive: None });
        self.suppressed = false;
    }

    /// SUPPRESS when nothing waits for an offer; REVIVE when something does.
    fn update_interest(&mut self) {
        if self.queue.is_empty() && !self.suppressed && self.conn.is_some() {
            self.call(CallKind::Suppress { suppress: None });
            self.suppressed = true;
        } else if !self.queue.is_empty() && self.suppressed {
            self.revive();
        }
    }

    fn reconcile(&mut self) {
        self.last_reconcile = Instant::now();
        let tasks: Vec<ReconcileTask> = self
            .planner
            .jobs()
            .flat_map(|(_, st)| st.active_runs.iter())
            .filter(|r| !self.queue.iter().any(|q| &q.run == *r))
            .map(|r| ReconcileTask {
                task_id: IdValue::new(r.0.clone()),
                agent_id: None,
            })
            .collect();
        if !tasks.is_empty() {
            self.call(CallKind::Reconcile {
                reconcile: Reconcile { tasks },
            });
        }
    }

    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Subscribed { subscribed } => self.subscribed(subscribed.framework_id).await,
            Event::Offers { offers } => {
                self.offers.extend(offers.offers);
                self.launch_queued();
                self.update_interest();
            }
            Event::Rescind { rescind } => self.offers.retain(|o| o.id != rescind.offer_id),
            Event::Update { update } => self.status(update.status).await,
            Event::Error { error } => {
                tracing::warn!(message = %error.message, "jobs scheduler subscription error");
                if error.message.contains("removed") {
                    // Torn down by an operator: come back as a new framework.
                    self.framework_id = None;
                }
                self.disconnected();
            }
            Event::Message { .. }
            | Event::Failure { .. }
            | Event::InverseOffers { .. }
            | Event::Heartbeat => {}
        }
    }

    async fn subscribed(&mut self, id: IdValue) {
        self.suppressed = false;
        if self.framework_id.as_deref() != Some(id.as_str()) {
            if let Err(e) = store::save_framework_id(self.master.store(), id.as_str()).await {
                tracing::error!(error = %e, "cannot persist the jobs framework id");
            }
            self.framework_id = Some(id.value);
        }
        tracing::info!(framework_id = ?self.framework_id, "jobs scheduler subscribed");
        self.reconcile();
        if !self.queue.is_empty() {
            self.revive();
        }
        self.update_interest();
    }

    async fn status(&mut self, status: TaskStatus) {
        if let Some(ack) = Acknowledge::for_status(&status) {
            self.call(CallKind::Acknowledge { acknowledge: ack });
        }
        let now = Timestamp::now();
        let run = RunId(status.task_id.value.clone());
        let cmds = if status.state == TaskState::Running {
            self.planner.run_started(&run, status.task_id.as_str(), now)
        } else if let Some((outcome, exit)) = launch::outcome(&status) {
            self.planner.run_finished(&run, outcome, exit, now)
        } else {
            return;
        };
        self.apply(cmds);
    }
}
