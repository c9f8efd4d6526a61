//! What the Chronos and Metronome handlers hold: [`JobsHandle`], which sends one
//! [`JobsCommand`] per request to the jobs scheduler and waits for its reply (released only
//! after the store writes the command caused), and the shapes the handlers render.

use std::sync::Arc;

use meseta_api::chronos::ChronosJob;
use meseta_jobs::job::{FieldError, JobSpec};
use meseta_jobs::planner::{JobState, PlannerError};
use meseta_jobs::stats::Stats;
use meseta_store::StoreError;
use tokio::sync::oneshot;

/// Why a jobs request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobsError {
    /// The job JSON failed validation.
    #[error("{}", field_errors(.0))]
    Invalid(Vec<FieldError>),
    /// The planner refused (unknown job or parent, cycle, …).
    #[error("{0}")]
    Planner(#[from] PlannerError),
    /// Unknown job.
    #[error("job '{0}' does not exist")]
    NotFound(String),
    /// A request that is well-formed JSON but not acceptable here.
    #[error("{0}")]
    BadRequest(String),
    /// Creating a job whose name is taken (Metronome's POST).
    #[error("job '{0}' already exists")]
    Conflict(String),
    /// The store failed after the planner accepted the change.
    #[error("state store: {0}")]
    Store(Arc<StoreError>),
    /// The runtime is not running (master shutting down).
    #[error("the jobs scheduler is not running")]
    Unavailable,
}

fn field_errors(errs: &[FieldError]) -> String {
    errs.iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the HTTP edge sees of one job.
#[derive(Clone, Debug)]
pub(crate) struct JobView {
    /// The validated spec.
    pub spec: JobSpec,
    /// Its schedule state, counters and history.
    pub state: JobState,
    /// The Chronos JSON form (what `GET /scheduler/jobs` shows).
    pub chronos: ChronosJob,
    /// Duration statistics over finished runs.
    pub stats: Option<Stats>,
    /// Runs waiting for an offer.
    pub queued: usize,
}

impl JobView {
    /// Chronos `status`: the outcome of the latest finished run.
    pub fn status(&self) -> &'static str {
        self.state.last_status()
    }

    /// Chronos `state`: `idle`, `queued`, `running` or `N running`.
    pub fn run_state(&self) -> String {
        let running = self.state.active_runs.len().saturating_sub(self.queued);
        match (running, self.queued) {
            (0, 0) => "idle".to_string(),
            (0, _) => "queued".to_string(),
            (1, _) => "running".to_string(),
            (n, _) => format!("{n} running"),
        }
    }
}

/// Where a create request came from: the endpoint decides what the job must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CreateKind {
    /// `/scheduler/iso8601`: a scheduled job.
    Scheduled,
    /// `/scheduler/dependency`: a job with parents.
    Dependent,
    /// Any form (Metronome edge, which validated by itself).
    Any,
    /// Any form, and the name must be new (Metronome's POST).
    New,
}

/// One request to the runtime; each carries its reply channel.
pub(crate) enum JobsCommand {
    /// Create or replace a job.
    Put {
        job: Box<ChronosJob>,
        kind: CreateKind,
        /// Chronos 2 name rules (the unprefixed `/scheduler` API).
        legacy_names: bool,
        reply: oneshot::Sender<Result<(), JobsError>>,
    },
    /// Delete a job (killing its runs).
    Remove {
        name: String,
        reply: oneshot::Sender<Result<(), JobsError>>,
    },
    /// Start a run now.
    RunNow {
        name: String,
        reply: oneshot::Sender<Result<(), JobsError>>,
    },
    /// Kill every active run of a job.
    Kill {
        name: String,
        reply: oneshot::Sender<Result<(), JobsError>>,
    },
    /// Mark a job successful (fires its children).
    MarkSuccess {
        name: String,
        reply: oneshot::Sender<Result<(), JobsError>>,
    },
    /// Enable or disable a job.
    SetDisabled {
        name: String,
        disabled: bool,
        reply: oneshot::Sender<Result<(), JobsError>>,
    },
    /// Every job.
    List {
        reply: oneshot::Sender<Vec<JobView>>,
    },
    /// One job.
    Get {
        name: String,
        reply: oneshot::Sender<Option<JobView>>,
    },
    /// The dependency graph, CSV or DOT.
    Graph {
        dot: bool,
        reply: oneshot::Sender<String>,
    },
}

/// The handlers' end of the scheduler's command channel.
#[derive(Clone)]
pub(crate) struct JobsHandle {
    kit: meseta_framework::Handle<JobsCommand>,
}

impl JobsHandle {
    pub(crate) fn new(kit: meseta_framework::Handle<JobsCommand>) -> JobsHandle {
        JobsHandle { kit }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> JobsCommand,
    ) -> Result<T, JobsError> {
        self.kit.ask(make).await.map_err(|_| JobsError::Unavailable)
    }

    /// Create or replace a job from its Chronos JSON (Chronos 3 name rules).
    pub async fn put(&self, job: ChronosJob, kind: CreateKind) -> Result<(), JobsError> {
        self.put_with(job, kind, false).await
    }

    /// Create or replace a job; `legacy_names` applies the Chronos 2 name rules.
    pub async fn put_with(
        &self,
        job: ChronosJob,
        kind: CreateKind,
        legacy_names: bool,
    ) -> Result<(), JobsError> {
        self.ask(|reply| JobsCommand::Put {
            job: Box::new(job),
            kind,
            legacy_names,
            reply,
        })
        .await?
    }

    /// Delete a job.
    pub async fn remove(&self, name: &str) -> Result<(), JobsError> {
        let name = name.to_string();
        self.ask(|reply| JobsCommand::Remove { name, reply })
            .await?
    }

    /// Run a job now.
    pub async fn run_now(&self, name: &str) -> Result<(), JobsError> {
        let name = name.to_string();
        self.ask(|reply| JobsCommand::RunNow { name, reply })
            .await?
    }

    /// Kill a job's active runs.
    pub async fn kill(&self, name: &str) -> Result<(), JobsError> {
        let name = name.to_string();
        self.ask(|reply| JobsCommand::Kill { name, reply }).await?
    }

    /// Mark a job successful.
    pub async fn mark_success(&self, name: &str) -> Result<(), JobsError> {
        let name = name.to_string();
        self.ask(|reply| JobsCommand::MarkSuccess { name, reply })
            .await?
    }

    /// Enable or disable a job.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), JobsError> {
        let name = name.to_string();
        self.ask(|reply| JobsCommand::SetDisabled {
            name,
            disabled,
            reply,
        })
        .await?
    }

    /// Every job, sorted by name.
    pub async fn list(&self) -> Result<Vec<JobView>, JobsError> {
        self.ask(|reply| JobsCommand::List { reply }).await
    }

    /// One job.
    pub async fn get(&self, name: &str) -> Result<JobView, JobsError> {
        let n = name.to_string();
        self.ask(|reply| JobsCommand::Get { name: n, reply })
            .await?
            .ok_or_else(|| JobsError::NotFound(name.to_string()))
    }

    /// The dependency graph.
    pub async fn graph(&self, dot: bool) -> Result<String, JobsError> {
        self.ask(|reply| JobsCommand::Graph { dot, reply }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use meseta_jobs::planner::RunId;

    fn view() -> JobView {
        let j: ChronosJob = serde_json::from_value(serde_json::json!({
            "name": "a", "command": "true", "schedule": "R//PT1S"
        }))
        .expect("chronos json");
        let spec = JobSpec::from_chronos(&j, Timestamp::now()).expect("valid");
        let state = JobState::default();
        JobView {
            chronos: spec.to_chronos(&state),
            spec,
            state,
            stats: None,
            queued: 0,
        }
    }

    #[test]
    fn status_is_the_latest_outcome() {
        let mut v = view();
        assert_eq!(v.status(), "fresh");
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        v.state.last_error = Some(t);
        assert_eq!(v.status(), "failure");
        v.state.last_success = Some(t + jiff::SignedDuration::from_secs(1));
        assert_eq!(v.status(), "success");
    }

    #[test]
    fn run_state_counts_queued_and_running_runs() {
        let mut v = view();
        assert_eq!(v.run_state(), "idle");
        v.state.active_runs = vec![RunId("r1".into())];
        v.queued = 1;
        assert_eq!(v.run_state(), "queued");
        v.queued = 0;
        assert_eq!(v.run_state(), "running");
        v.state.active_runs.push(RunId("r2".into()));
        assert_eq!(v.run_state(), "2 running");
    }

    #[test]
    fn field_errors_are_all_named() {
        let e = JobsError::Invalid(vec![
            FieldError {
                field: "name".into(),
                message: "invalid".into(),
            },
            FieldError {
                field: "cpus".into(),
                message: "negative".into(),
            },
        ]);
        assert_eq!(e.to_string(), "name: invalid; cpus: negative");
    }
}
