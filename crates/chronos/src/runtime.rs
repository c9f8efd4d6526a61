//! The jobs scheduler on the framework kit: [`Jobs`] owns the [`Planner`], the queue of runs
//! waiting for an offer and the run deadlines, and turns planner commands into kit commands.
//!
//! `Launch` queues a run until an offer fits it (REVIVE when a run is queued; the kit
//! SUPPRESSes while the queue is empty), `Kill` ends a queued run here or sends KILL, and
//! `Persist`/`Forget` mark jobs for the next write. Changes an HTTP request made are written
//! before it is answered ([`Command::Persist`] then [`Command::Reply`]); run bookkeeping
//! (starts, ends, skips) is written in batches, every [`FLUSH_EVERY`]. After a master restart,
//! restored runs wait until recovery settles: those the master already knows leave the queue.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use meseta_api::scheduler::{IdValue, Offer, ReconcileTask, TaskStatus};
use meseta_framework::{Command, Commit, FrameworkSpec, Inbox, Scheduler};
use meseta_jobs::job::JobSpec;
use meseta_jobs::planner::{self, Planner, RunId, RunOutcome};
use meseta_jobs::queue::{Deadlines, RunQueue};
use meseta_master::Master;
use meseta_store::StoreError;
use meseta_types::{TaskId, TaskState};
use tokio_util::sync::CancellationToken;

use crate::launch;
use crate::store;
use crate::JobsCommand;

/// The framework name the scheduler subscribes with.
pub const FRAMEWORK_NAME: &str = "meseta-jobs";
/// The longest the loop sleeps without checking the planner.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// The shortest sleep (a guard against spinning on a wake-up time that does not move).
const MIN_SLEEP: Duration = Duration::from_millis(2);
/// How long declined offers stay away (a REVIVE clears it sooner).
const DECLINE_SECONDS: f64 = 1.0;
/// How often run bookkeeping (starts, ends, skips) is written.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How often active runs are reconciled with the master.
const RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// Load the jobs, restore the planner (runs missed while the master was down beyond epsilon
/// are recorded as skipped) and run the scheduler until `cancel`.
pub(crate) async fn run(master: Master, inbox: Inbox<JobsCommand>, cancel: CancellationToken) {
    match Jobs::recover(master.clone()).await {
        Ok(jobs) => meseta_framework::run(master, jobs, inbox, cancel).await,
        Err(e) => tracing::error!(error = %e, "jobs scheduler cannot load its jobs; not running"),
    }
}

/// The planner's clock.
pub(crate) fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The jobs scheduler's state; request handling lives in `requests.rs`.
pub(crate) struct Jobs {
    pub(crate) master: Master,
    pub(crate) planner: Planner,
    /// Runs waiting for an offer.
    pub(crate) queue: RunQueue,
    /// Runs killed for exceeding `maxCompletionTime`.
    deadlines: Deadlines,
    /// Jobs changed since the last write.
    dirty: BTreeSet<String>,
    /// Jobs removed since the last write.
    forgotten: BTreeSet<String>,
    /// The (changed, removed) jobs of each write not finished yet, oldest first.
    writing: VecDeque<(BTreeSet<String>, BTreeSet<String>)>,
    /// When run bookkeeping was last written.
    last_flush: SystemTime,
}

impl Jobs {
    async fn recover(master: Master) -> Result<Jobs, StoreError> {
        let jobs = store::load(master.store()).await?;
        let n = jobs.len();
        let now = SystemTime::now();
        let (planner, cmds) = Planner::restore(jobs, timestamp(now));
        for name in planner.unrunnable() {
            tracing::error!(
                job = name,
                "stored job's schedule is below the scheduler's resolution; it is disabled \
                 (replace it with a valid schedule, or delete it)"
            );
        }
        tracing::info!(jobs = n, "jobs scheduler recovered");
        let mut jobs = Jobs {
            master,
            planner,
            queue: RunQueue::default(),
            deadlines: Deadlines::default(),
            dirty: BTreeSet::new(),
            forgotten: BTreeSet::new(),
            writing: VecDeque::new(),
            last_flush: now,
        };
        let (launches, rest): (Vec<_>, Vec<_>) = cmds
            .into_iter()
            .partition(|c| matches!(c, planner::Command::Launch { .. }));
        for c in launches {
            if let planner::Command::Launch { run, job, .. } = c {
                jobs.queue.push(run, job, timestamp(now), true);
            }
        }
        // Not subscribed yet: what this would send has no connection to go to.
        let _ = jobs.apply(rest, now);
        if let Some(commit) = jobs.persist() {
            let written = commit.await;
            jobs.persisted(written.as_ref().map(|_| ()), now);
            written?;
        }
        Ok(jobs)
    }

    /// Carry out planner commands: queue launches, end or kill runs, mark writes. Returns the
    /// kit commands (KILLs, a REVIVE when a run was queued).
    pub(crate) fn apply(&mut self, cmds: Vec<planner::Command>, now: SystemTime) -> Vec<Command> {
        let ts = timestamp(now);
        let mut out = Vec::new();
        let mut work: VecDeque<planner::Command> = cmds.into();
        let mut queued_new = false;
        while let Some(c) = work.pop_front() {
            match c {
                planner::Command::Launch { run, job, .. } => {
                    queued_new |= self.queue.push(run, job, ts, false);
                }
                planner::Command::Kill { run } => {
                    // A queued run ends here as killed; a launched one gets a KILL.
                    if self.queue.remove(&run) {
                        let more = self
                            .planner
                            .run_finished(&run, RunOutcome::Killed, None, ts);
                        work.extend(more);
                    } else {
                        out.push(kill(run));
                    }
                }
                planner::Command::Persist { job } => {
                    self.forgotten.remove(&job);
                    self.dirty.insert(job);
                }
                planner::Command::Forget { job } => {
                    self.dirty.remove(&job);
                    self.forgotten.insert(job);
                }
            }
        }
        if queued_new {
            out.push(Command::Revive);
        }
        out
    }
}

fn kill(run: RunId) -> Command {
    Command::Kill {
        task_id: run.0,
        agent_id: None,
    }
}

impl Scheduler for Jobs {
    type Request = JobsCommand;

    fn spec(&self) -> FrameworkSpec {
        FrameworkSpec::long_running(FRAMEWORK_NAME, store::FRAMEWORK_ID)
            .reconcile_every(RECONCILE_EVERY)
    }

    /// Subscribe when there is at least one job (a master without jobs shows no jobs framework).
    fn has_work(&self) -> bool {
        self.planner.jobs().next().is_some()
    }

    fn wants_offers(&self, _now: SystemTime) -> bool {
        !self.queue.is_empty()
    }

    fn wake_in(&self, now: SystemTime) -> Duration {
        match self.planner.next_wakeup() {
            None => MAX_SLEEP,
            Some(t) => Duration::try_from(t.duration_since(timestamp(now)))
                .unwrap_or(MIN_SLEEP)
                .clamp(MIN_SLEEP, MAX_SLEEP),
        }
    }

    /// First-fit the queued runs onto the offers; decline what is left.
    fn offers(&mut self, offers: Vec<Offer>, _now: SystemTime) -> Vec<Command> {
        let queue = self.queue.take_placeable();
        let planner = &self.planner;
        let placed = launch::place(queue, &offers, |name| {
            planner.job(name).map(|(s, _)| s as &JobSpec)
        });
        self.queue.put_back(placed.still_queued);
        let mut cmds: Vec<Command> = placed
            .accepts
            .into_values()
            .map(|(offer_id, tasks)| {
                tracing::debug!(tasks = tasks.len(), "launching job runs");
                Command::Launch { offer_id, tasks }
            })
            .collect();
        if !placed.unused.is_empty() {
            cmds.push(Command::Decline {
                offer_ids: placed.unused,
                refuse_seconds: DECLINE_SECONDS,
            });
        }
        cmds
    }

    fn status(&mut self, status: &TaskStatus, now: SystemTime) -> Vec<Command> {
        let ts = timestamp(now);
        let run = RunId(status.task_id.value.clone());
        let cmds = if status.state == TaskState::Running {
            self.planner.run_started(&run, status.task_id.as_str(), ts)
        } else if let Some((outcome, exit)) = launch::outcome(status) {
            self.planner.run_finished(&run, outcome, exit, ts)
        } else {
            return Vec::new();
        };
        self.apply(cmds, now)
    }

    fn request(&mut self, cmd: JobsCommand, now: SystemTime) -> Vec<Command> {
        self.handle(cmd, now)
    }

    /// Due runs, queued runs past epsilon, batched writes, runs past `maxCompletionTime`.
    fn tick(&mut self, now: SystemTime) -> Vec<Command> {
        let ts = timestamp(now);
        let mut cmds = self.planner.tick(ts);
        let (skipped, more) = self.queue.expire(&mut self.planner, ts);
        for run in skipped {
            let reason = meseta_jobs::queue::EPSILON_SKIP_REASON;
            tracing::warn!(run = %run.0, "{reason}; skipped");
        }
        cmds.extend(more);
        let mut out = self.apply(cmds, now);
        if now
            .duration_since(self.last_flush)
            .map_or(true, |d| d >= FLUSH_EVERY)
        {
            self.last_flush = now;
            out.push(Command::Persist);
        }
        for run in self.deadlines.overdue(&self.planner, ts) {
            tracing::info!(run = %run.0, "run exceeded maxCompletionTime; killing it");
            out.push(kill(run));
        }
        out
    }

    fn subscribed(&mut self, _recovering: bool, _now: SystemTime) -> Vec<Command> {
        let mut cmds = self.reconcile();
        if !self.queue.is_empty() {
            cmds.push(Command::Revive);
        }
        cmds
    }

    /// Active runs that were launched (not those still queued).
    fn reconcile(&mut self) -> Vec<Command> {
        let tasks: Vec<ReconcileTask> = self
            .planner
            .jobs()
            .flat_map(|(_, st)| st.active_runs.iter())
            .filter(|r| !self.queue.contains(r))
            .map(|r| ReconcileTask {
                task_id: IdValue::new(r.0.clone()),
                agent_id: None,
            })
            .collect();
        vec![Command::Reconcile(tasks)]
    }

    /// Restored runs the master already knows were launched before the restart.
    fn recovery_settled(&mut self, known: &dyn Fn(&TaskId) -> bool) -> Vec<Command> {
        self.queue.settle(|run| known(&TaskId::new(run.0.as_str())));
        Vec::new()
    }

    /// Every job changed since the last write, serialized now and written in the background
    /// (in one transaction when it fits).
    fn persist(&mut self) -> Option<Commit> {
        if self.dirty.is_empty() && self.forgotten.is_empty() {
            return None;
        }
        let dirty = std::mem::take(&mut self.dirty);
        let forgotten = std::mem::take(&mut self.forgotten);
        let gone: Vec<String> = forgotten.iter().cloned().collect();
        let save: Vec<(&JobSpec, &meseta_jobs::planner::JobState)> = dirty
            .iter()
            .filter_map(|name| self.planner.job(name))
            .collect();
        let ops = store::encode(&save, &gone);
        self.writing.push_back((dirty, forgotten));
        let store = self.master.shared_store();
        Some(Box::pin(
            async move { store::write_ops(&*store, ops?).await },
        ))
    }

    /// On failure the jobs of that write are marked again (unless changed the other way
    /// since), so the next write retries them.
    fn persisted(&mut self, outcome: Result<(), &StoreError>, _now: SystemTime) -> Vec<Command> {
        let Some((dirty, forgotten)) = self.writing.pop_front() else {
            return Vec::new();
        };
        if outcome.is_err() {
            let again = dirty.into_iter().filter(|j| !self.forgotten.contains(j));
            let again: Vec<String> = again.collect();
            let gone: Vec<String> = forgotten
                .into_iter()
                .filter(|j| !self.dirty.contains(j))
                .collect();
            self.dirty.extend(again);
            self.forgotten.extend(gone);
        }
        Vec::new()
    }
}
