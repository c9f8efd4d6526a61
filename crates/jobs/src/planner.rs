//! The job planner: a pure state machine that decides when runs start, retry, skip and fan in.
//!
//! Used by the built-in Chronos (`meseta-chronos`), which feeds it the clock (`now`), task
//! updates and API calls, and carries out the returned [`Command`]s (launch/kill tasks,
//! persist/forget jobs).
//! The planner does no I/O and reads no clock. See `crates/jobs/README.md` for the state machine.
//!
//! Rules in short:
//! - A scheduled job has `next_due`. When `tick(now)` finds `next_due ≤ now`, the occurrence is
//!   launched if `now − due ≤ epsilon`, else recorded as `Skipped`; several due occurrences in one
//!   tick launch only the latest within epsilon (the others are recorded as skipped). With
//!   `concurrent = false` an occurrence that would overlap an active run is recorded as skipped.
//! - An `Rn` schedule that runs out disables the job.
//! - A failed attempt `a` is retried while `a < retries`, after [`retry_backoff`]`(a)`.
//! - A dependent job runs once every parent has succeeded since its own last run; a parent's
//!   final failure (without `softError`) clears that parent's success.

mod graph;
mod runs;
pub(crate) mod types;

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::job::JobSpec;
use crate::schedule::Schedule;
use crate::stats::Stats;

pub use types::{
    Command, JobState, PendingRetry, PlannerError, RunId, RunOutcome, RunRecord, HISTORY_LIMIT,
};

/// At most this many skipped occurrences are recorded one by one per job and tick; a longer gap
/// is jumped over with one summary record.
pub const MAX_SKIP_RECORDS: usize = 100;

/// Backoff before retry attempt `failed_attempt + 1`: 1 s × 2^attempt, capped at 60 s.
pub fn retry_backoff(failed_attempt: u32) -> SignedDuration {
    let secs = 1i64 << failed_attempt.min(6);
    SignedDuration::from_secs(secs.min(60))
}

/// One job with its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    spec: JobSpec,
    state: JobState,
}

/// Everything the scheduler knows; serde so the runtime can persist it (per job: `jobs()` / `job_state()`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Planner {
    jobs: BTreeMap<String, Entry>,
}

fn persist(job: &str) -> Command {
    Command::Persist {
        job: job.to_string(),
    }
}

/// The earliest time a (re)added job may have its first occurrence: within epsilon of now, but
/// never an occurrence it already ran or skipped.
fn first_due_bound(spec: &JobSpec, state: &JobState, now: Timestamp) -> Timestamp {
    let mut bound = now.checked_sub(spec.epsilon).unwrap_or(now);
    if let Some(last) = state.history.iter().map(|r| r.scheduled_for).max() {
        let after_last = last
            .checked_add(SignedDuration::from_nanos(1))
            .unwrap_or(last);
        bound = bound.max(after_last);
    }
    bound
}

impl Planner {
    /// An empty planner.
    pub fn new() -> Planner {
        Planner::default()
    }

    /// Rebuilds the planner after a master restart, re-requests launches that were never
    /// confirmed (the runtime dedupes by run id) and handles everything that fell due meanwhile
    /// exactly as [`Planner::tick`] would.
    pub fn restore(jobs: Vec<(JobSpec, JobState)>, now: Timestamp) -> (Planner, Vec<Command>) {
        let mut planner = Planner::new();
        let mut commands = Vec::new();
        for (mut spec, mut state) in jobs {
            let name = spec.name.clone();
            if !spec
                .schedule
                .as_ref()
                .is_none_or(Schedule::within_resolution)
            {
                // Written before periods below the resolution were refused: kept (listed and
                // deletable) but disabled, so it never runs; see `Planner::unrunnable`.
                spec.disabled = true;
                state.next_due = None;
                commands.push(persist(&name));
            }
            if let (Some(s), None, false) = (&spec.schedule, state.next_due, spec.disabled) {
                state.next_due = s.next_at_or_after(first_due_bound(&spec, &state, now));
            }
            state
                .active_runs
                .retain(|run| state.history.iter().any(|r| &r.run_id == run));
            for record in &state.history {
                if record.outcome == RunOutcome::Pending
                    && state.active_runs.contains(&record.run_id)
                {
                    commands.push(Command::Launch {
                        run: record.run_id.clone(),
                        job: name.clone(),
                        attempt: record.attempt,
                        scheduled_for: record.scheduled_for,
                    });
                }
            }
            planner.jobs.insert(name, Entry { spec, state });
        }
        commands.extend(planner.tick(now));
        (planner, commands)
    }

    /// Adds or replaces a job. An unknown parent or a dependency cycle is refused and nothing
    /// changes. Replacing keeps the job's counters and history. Call [`Planner::tick`] after.
    pub fn add(&mut self, mut spec: JobSpec, now: Timestamp) -> Result<Vec<Command>, PlannerError> {
        let name = spec.name.clone();
        if spec.schedule.is_some() != spec.parents.is_empty() {
            return Err(PlannerError::InvalidSpec {
                job: name,
                reason: "a job needs exactly one of a schedule and parents".into(),
            });
        }
        self.check_parents(&name, &spec.parents)?;
        let mut state = self.jobs.remove(&name).map(|e| e.state).unwrap_or_default();
        state
            .parent_successes
            .retain(|p, _| spec.parents.contains(p));
        for p in &spec.parents {
            state.parent_successes.entry(p.clone()).or_insert(0);
        }
        state.next_due = match &spec.schedule {
            Some(s) => s.next_at_or_after(first_due_bound(&spec, &state, now)),
            None => None,
        };
        if spec.schedule.is_some() && state.next_due.is_none() {
            spec.disabled = true;
        }
        self.jobs.insert(name.clone(), Entry { spec, state });
        Ok(vec![persist(&name)])
    }

    fn check_parents(&self, name: &str, parents: &[String]) -> Result<(), PlannerError> {
        for p in parents {
            if p == name {
                return Err(PlannerError::Cycle {
                    job: name.to_string(),
                    cycle: vec![name.to_string(), name.to_string()],
                });
            }
            if !self.jobs.contains_key(p) {
                return Err(PlannerError::UnknownParent {
                    job: name.to_string(),
                    parent: p.clone(),
                });
            }
        }
        match graph::find_path_to(self, parents, name) {
            Some(path) => {
                let mut cycle = vec![name.to_string()];
                cycle.extend(path);
                Err(PlannerError::Cycle {
                    job: name.to_string(),
                    cycle,
                })
            }
            None => Ok(()),
        }
    }

    /// Removes a job, kills its runs and re-parents its children (Chronos §7.3): children of a
    /// dependent job inherit its parents; a child left without parents by a scheduled job
    /// takes over that job's schedule.
    pub fn remove(&mut self, name: &str, now: Timestamp) -> Result<Vec<Command>, PlannerError> {
        let gone = self
            .jobs
            .remove(name)
            .ok_or_else(|| PlannerError::UnknownJob(name.to_string()))?;
        let mut commands: Vec<Command> = gone
            .state
            .active_runs
            .iter()
            .map(|run| Command::Kill { run: run.clone() })
            .collect();
        commands.push(Command::Forget {
            job: name.to_string(),
        });
        for (child_name, child) in self.jobs.iter_mut() {
            if !child.spec.parents.iter().any(|p| p == name) {
                continue;
            }
            reparent(child, &gone, now);
            commands.push(persist(child_name));
        }
        Ok(commands)
    }

    /// Starts a run now (attempt 0), whatever the schedule, `disabled` or overlap policy.
    pub fn run_now(&mut self, name: &str, now: Timestamp) -> Result<Vec<Command>, PlannerError> {
        let entry = self.entry_mut(name)?;
        let launch = runs::launch(entry, 0, now);
        Ok(vec![launch, persist(name)])
    }

    /// Kills every active run of a job and cancels a waiting retry (killed runs are not retried).
    pub fn kill(&mut self, name: &str) -> Result<Vec<Command>, PlannerError> {
        let entry = self.entry_mut(name)?;
        let mut commands = Vec::new();
        for run in entry.state.active_runs.clone() {
            if !entry.state.killing.contains(&run) {
                entry.state.killing.push(run.clone());
            }
            commands.push(Command::Kill { run });
        }
        entry.state.pending_retry = None;
        commands.push(persist(name));
        Ok(commands)
    }

    /// Disables or enables a job. Enabling skips (silently) what fell due while disabled.
    pub fn set_disabled(
        &mut self,
        name: &str,
        disabled: bool,
        now: Timestamp,
    ) -> Result<Vec<Command>, PlannerError> {
        let entry = self.entry_mut(name)?;
        if !disabled
            && !entry
                .spec
                .schedule
                .as_ref()
                .is_none_or(Schedule::within_resolution)
        {
            return Err(PlannerError::InvalidSpec {
                job: name.to_string(),
                reason: format!(
                    "its schedule's period is shorter than the scheduler's resolution of {}s; \
                     replace the job with a valid schedule",
                    crate::schedule::RESOLUTION.as_secs()
                ),
            });
        }
        let was = entry.spec.disabled;
        entry.spec.disabled = disabled;
        if was && !disabled {
            if let Some(s) = &entry.spec.schedule {
                let bound = first_due_bound(&entry.spec, &entry.state, now).max(now);
                entry.state.next_due = s.next_at_or_after(bound);
            }
        }
        Ok(vec![persist(name)])
    }

    /// Marks a job successful now and fires its children (`PUT /scheduler/job/success/{name}`).
    pub fn mark_success(
        &mut self,
        name: &str,
        now: Timestamp,
    ) -> Result<Vec<Command>, PlannerError> {
        let entry = self.entry_mut(name)?;
        entry.state.last_success = Some(now);
        entry.state.errors_since_last_success = 0;
        let mut commands = vec![persist(name)];
        commands.extend(self.fire_children(name, true, now));
        Ok(commands)
    }

    /// Due runs: launch (respecting `concurrent` = forbid overlap, recording the overlap as skipped),
    /// or, when `now - due > epsilon`, record Skipped (and advance) instead of running late.
    /// Retries whose backoff has passed are launched too.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Command> {
        let mut commands = Vec::new();
        for entry in self.jobs.values_mut() {
            commands.extend(runs::tick_job(entry, now));
        }
        commands
    }

    /// The earliest time `tick` has something to do (a due run or a retry), if any.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.jobs
            .values()
            .flat_map(|e| {
                let scheduled = match (&e.spec.schedule, e.spec.disabled) {
                    (Some(_), false) => e.state.next_due,
                    _ => None,
                };
                [scheduled, e.state.pending_retry.as_ref().map(|r| r.due)]
            })
            .flatten()
            .min()
    }

    /// A run's task is running.
    pub fn run_started(&mut self, run: &RunId, task_id: &str, at: Timestamp) -> Vec<Command> {
        let Some(name) = self.job_of_run(run) else {
            return Vec::new();
        };
        let Some(entry) = self.jobs.get_mut(&name) else {
            return Vec::new();
        };
        let Some(record) = entry.state.record_mut(run) else {
            return Vec::new();
        };
        if record.outcome == RunOutcome::Pending {
            record.outcome = RunOutcome::Running;
        }
        record.started_at.get_or_insert(at);
        record.task_id = Some(task_id.to_string());
        vec![persist(&name)]
    }

    /// A run ended: success feeds children (fan-in: a child with several parents runs once when every parent
    /// has succeeded since the child's last run; never on a parent failure unless softError); failure retries
    /// (attempt < retries) after [`retry_backoff`]. A report for a run that is not active is ignored.
    pub fn run_finished(
        &mut self,
        run: &RunId,
        outcome: RunOutcome,
        exit_code: Option<i32>,
        at: Timestamp,
    ) -> Vec<Command> {
        let Some(name) = self.job_of_run(run) else {
            return Vec::new();
        };
        let Some(entry) = self.jobs.get_mut(&name) else {
            return Vec::new();
        };
        let fire = runs::finish(entry, run, outcome, exit_code, at)
            // An async job's task exiting is not the job succeeding: it reports that itself.
            .filter(|success| !(*success && entry.spec.asynchronous));
        let mut commands = vec![persist(&name)];
        if let Some(success) = fire {
            commands.extend(self.fire_children(&name, success, at));
        }
        commands
    }

    /// Tells children of `parent` about its success (`true`) or final failure (`false`).
    fn fire_children(&mut self, parent: &str, success: bool, at: Timestamp) -> Vec<Command> {
        let mut commands = Vec::new();
        for (name, child) in self.jobs.iter_mut() {
            if child.spec.parents.iter().any(|p| p == parent) {
                commands.extend(runs::parent_result(child, parent, success, at));
                commands.push(persist(name));
            }
        }
        commands
    }

    fn job_of_run(&self, run: &RunId) -> Option<String> {
        let owns = |e: &Entry| e.state.active_runs.contains(run);
        if let Some(name) = run.job_name() {
            if self.jobs.get(name).is_some_and(owns) {
                return Some(name.to_string());
            }
        }
        self.jobs
            .iter()
            .find(|(_, e)| owns(e))
            .map(|(n, _)| n.clone())
    }

    fn entry_mut(&mut self, name: &str) -> Result<&mut Entry, PlannerError> {
        self.jobs
            .get_mut(name)
            .ok_or_else(|| PlannerError::UnknownJob(name.to_string()))
    }

    /// Jobs kept disabled because their schedule is below the scheduler's resolution (only a
    /// record written by an older version can hold one), for the runtime to report.
    pub fn unrunnable(&self) -> Vec<&str> {
        self.jobs
            .values()
            .filter(|e| {
                !e.spec
                    .schedule
                    .as_ref()
                    .is_none_or(Schedule::within_resolution)
            })
            .map(|e| e.spec.name.as_str())
            .collect()
    }

    /// A job and its state.
    pub fn job(&self, name: &str) -> Option<(&JobSpec, &JobState)> {
        self.jobs.get(name).map(|e| (&e.spec, &e.state))
    }

    /// The state of one job (what the runtime persists beside the spec).
    pub fn job_state(&self, name: &str) -> Option<&JobState> {
        self.jobs.get(name).map(|e| &e.state)
    }

    /// All jobs, by name.
    pub fn jobs(&self) -> impl Iterator<Item = (&JobSpec, &JobState)> {
        self.jobs.values().map(|e| (&e.spec, &e.state))
    }

    /// The jobs whose parents include `name`.
    pub fn children(&self, name: &str) -> Vec<&str> {
        self.jobs
            .values()
            .filter(|e| e.spec.parents.iter().any(|p| p == name))
            .map(|e| e.spec.name.as_str())
            .collect()
    }

    /// The dependency graph as Chronos CSV:
    /// `node,<name>,<success|failure|fresh>,<idle|queued|running>` lines, then `link,<parent>,<child>`.
    pub fn graph_csv(&self) -> String {
        graph::csv(self)
    }

    /// The dependency graph in Graphviz DOT.
    pub fn graph_dot(&self) -> String {
        graph::dot(self)
    }

    /// Order statistics of the job's finished run durations (ms); None for an unknown job.
    pub fn stats(&self, name: &str) -> Option<Stats> {
        let entry = self.jobs.get(name)?;
        let samples: Vec<f64> = entry
            .state
            .history
            .iter()
            .filter(|r| matches!(r.outcome, RunOutcome::Succeeded | RunOutcome::Failed))
            .filter_map(RunRecord::duration_ms)
            .collect();
        Some(Stats::from_samples(samples))
    }
}

/// Rewires `child` after its parent `gone` was removed.
fn reparent(child: &mut Entry, gone: &Entry, now: Timestamp) {
    let name = &gone.spec.name;
    child.spec.parents.retain(|p| p != name);
    child.state.parent_successes.remove(name);
    for p in &gone.spec.parents {
        if p != &child.spec.name && !child.spec.parents.contains(p) {
            child.spec.parents.push(p.clone());
            child.state.parent_successes.insert(p.clone(), 0);
        }
    }
    if child.spec.parents.is_empty() {
        if let Some(s) = &gone.spec.schedule {
            child.spec.schedule = Some(s.clone());
            child.spec.schedule_text = gone.spec.schedule_text.clone();
            child.state.next_due = gone.state.next_due.or_else(|| s.next_at_or_after(now));
            if child.state.next_due.is_none() {
                child.spec.disabled = true;
            }
        }
    }
}
