//! Data types of the planner: per-job state, runs, commands for the runtime, errors.
//!
//! All of them are serde so the runtime can persist them; re-exported from [`crate::planner`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How many finished runs a job keeps in its history.
pub const HISTORY_LIMIT: usize = 100;

/// Identifier of one run attempt, in the Chronos task id form `ct:<dueMillis>:<attempt>:<jobName>:`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RunId(pub String);

impl RunId {
    /// The run id of attempt `attempt` of `job` scheduled for `due`.
    pub fn new(job: &str, due: Timestamp, attempt: u32) -> RunId {
        RunId(format!("ct:{}:{attempt}:{job}:", due.as_millisecond()))
    }

    /// The job name inside the id, if the id has the Chronos form.
    pub fn job_name(&self) -> Option<&str> {
        let mut parts = self.0.splitn(5, ':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("ct"), Some(_), Some(_), Some(name)) if !name.is_empty() => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What became of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunOutcome {
    /// Launch requested, no task reported yet.
    Pending,
    /// The task runs.
    Running,
    /// Exited 0.
    Succeeded,
    /// Failed (non-zero exit, lost, error).
    Failed,
    /// Killed on request (or by `maxCompletionTime`); never retried.
    Killed,
    /// Not run at all.
    Skipped {
        /// Why (missed by more than epsilon, overlap forbidden, disabled, …).
        reason: String,
    },
}

impl RunOutcome {
    /// True for `Pending` and `Running`.
    pub fn is_active(&self) -> bool {
        matches!(self, RunOutcome::Pending | RunOutcome::Running)
    }
}

/// One run attempt (or skipped occurrence) in a job's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run.
    pub run_id: RunId,
    /// The schedule time it belongs to.
    pub scheduled_for: Timestamp,
    /// When its task started running.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// What became of it.
    pub outcome: RunOutcome,
    /// 0 for the first try, then 1, 2, … for retries.
    pub attempt: u32,
    /// Exit code of the task, when known.
    pub exit_code: Option<i32>,
    /// The meseta task id of the run.
    pub task_id: Option<String>,
}

impl RunRecord {
    /// Run time in milliseconds, for a run that started and ended.
    pub fn duration_ms(&self) -> Option<f64> {
        let (s, f) = (self.started_at?, self.finished_at?);
        Some(f.duration_since(s).as_secs_f64() * 1000.0)
    }
}

/// A retry waiting for its backoff to pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRetry {
    /// When to launch it.
    pub due: Timestamp,
    /// Its attempt number (≥ 1).
    pub attempt: u32,
    /// The schedule time of the original run.
    pub scheduled_for: Timestamp,
}

/// The planner's state of one job (persisted beside its [`crate::job::JobSpec`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JobState {
    /// Next scheduled time (scheduled jobs only).
    pub next_due: Option<Timestamp>,
    /// Run attempts launched so far (retries included).
    pub runs_started: u64,
    /// Runs that succeeded.
    pub success_count: u64,
    /// Runs that failed after their last retry (or were killed).
    pub error_count: u64,
    /// Failed runs since the last success.
    pub errors_since_last_success: u64,
    /// Time of the last success.
    pub last_success: Option<Timestamp>,
    /// Time of the last final failure.
    pub last_error: Option<Timestamp>,
    /// Runs launched and not yet finished.
    pub active_runs: Vec<RunId>,
    /// The last [`HISTORY_LIMIT`] runs, oldest first (active ones are never dropped).
    pub history: VecDeque<RunRecord>,
    /// Fan-in bookkeeping: for each parent, its successes since this job last ran (0 or 1).
    pub parent_successes: BTreeMap<String, u64>,
    /// A retry waiting for its backoff.
    pub pending_retry: Option<PendingRetry>,
    /// Runs whose kill was requested (they are not retried whatever they report).
    pub killing: Vec<RunId>,
}

impl JobState {
    /// `success`, `failure` or `fresh` (Chronos "lastState").
    pub fn last_status(&self) -> &'static str {
        match (self.last_success, self.last_error) {
            (None, None) => "fresh",
            (Some(_), None) => "success",
            (None, Some(_)) => "failure",
            (Some(s), Some(e)) if s >= e => "success",
            _ => "failure",
        }
    }

    /// `idle`, `queued`, `running` or `N running` (Chronos "state").
    pub fn run_state(&self) -> String {
        let running = self
            .history
            .iter()
            .filter(|r| r.outcome == RunOutcome::Running && self.active_runs.contains(&r.run_id))
            .count();
        match running {
            0 if !self.active_runs.is_empty() || self.pending_retry.is_some() => "queued".into(),
            0 => "idle".into(),
            1 => "running".into(),
            n => format!("{n} running"),
        }
    }

    /// The history record of a run.
    pub fn record_mut(&mut self, run: &RunId) -> Option<&mut RunRecord> {
        self.history.iter_mut().rev().find(|r| &r.run_id == run)
    }

    /// Appends a record, dropping the oldest inactive ones beyond [`HISTORY_LIMIT`].
    pub fn push_record(&mut self, record: RunRecord) {
        self.history.push_back(record);
        while self.history.len() > HISTORY_LIMIT {
            let victim = self
                .history
                .iter()
                .position(|r| !self.active_runs.contains(&r.run_id));
            match victim {
                Some(i) => {
                    self.history.remove(i);
                }
                None => break,
            }
        }
    }
}

/// What the runtime must do after a planner call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Make a task for this run. The run id is an idempotency key: after a restart the same
    /// launch may be asked for again and must not create a second task.
    Launch {
        /// The run.
        run: RunId,
        /// The job.
        job: String,
        /// 0 for the first try.
        attempt: u32,
        /// The schedule time it belongs to.
        scheduled_for: Timestamp,
    },
    /// Kill the task of this run.
    Kill {
        /// The run.
        run: RunId,
    },
    /// The job's spec or state changed: write it.
    Persist {
        /// The job.
        job: String,
    },
    /// The job was removed: delete it.
    Forget {
        /// The job.
        job: String,
    },
}

/// Why a planner call was refused (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlannerError {
    /// No job of that name.
    #[error("job '{0}' does not exist")]
    UnknownJob(String),
    /// A parent named by a dependent job does not exist.
    #[error("parent '{parent}' of job '{job}' does not exist")]
    UnknownParent {
        /// The job being added.
        job: String,
        /// The missing parent.
        parent: String,
    },
    /// Adding the job would make the dependency graph cyclic.
    #[error("job '{job}' would create a dependency cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The job being added.
        job: String,
        /// The cycle, as job names from the job back to itself.
        cycle: Vec<String>,
    },
    /// The spec is inconsistent (both or neither of schedule and parents).
    #[error("job '{job}' is invalid: {reason}")]
    InvalidSpec {
        /// The job.
        job: String,
        /// What is wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_has_chronos_form() {
        let t: Timestamp = "2026-01-01T00:00:01.5Z".parse().expect("ts");
        let id = RunId::new("etl.daily", t, 2);
        assert_eq!(id.0, format!("ct:{}:2:etl.daily:", t.as_millisecond()));
        assert_eq!(id.job_name(), Some("etl.daily"));
        assert_eq!(RunId("task-1".into()).job_name(), None);
    }

    #[test]
    fn history_keeps_active_runs() {
        let t = Timestamp::UNIX_EPOCH;
        let mut s = JobState::default();
        let active = RunId::new("a", t, 0);
        s.active_runs.push(active.clone());
        let rec = |id: RunId, outcome| RunRecord {
            run_id: id,
            scheduled_for: t,
            started_at: None,
            finished_at: None,
            outcome,
            attempt: 0,
            exit_code: None,
            task_id: None,
        };
        s.push_record(rec(active.clone(), RunOutcome::Pending));
        for i in 0..150 {
            s.push_record(rec(RunId(format!("x{i}")), RunOutcome::Succeeded));
        }
        assert_eq!(s.history.len(), HISTORY_LIMIT);
        assert!(s.record_mut(&active).is_some());
        assert_eq!(s.run_state(), "queued");
    }

    #[test]
    fn last_status() {
        let t = Timestamp::UNIX_EPOCH;
        let mut s = JobState::default();
        assert_eq!(s.last_status(), "fresh");
        s.last_error = Some(t);
        assert_eq!(s.last_status(), "failure");
        s.last_success = Some(t);
        assert_eq!(s.last_status(), "success");
    }
}
