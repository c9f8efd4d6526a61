//! Shared helpers of the planner integration tests: job builders and a fake clock.
#![allow(dead_code)]

use jiff::{SignedDuration, Timestamp};
use meseta_api::chronos::ChronosJob;
use meseta_jobs::{Command, JobSpec, Planner, RunId, RunOutcome};

/// A timestamp from text.
pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// `t + ms` milliseconds.
pub fn plus_ms(t: Timestamp, ms: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_millis(ms))
        .expect("in range")
}

/// A scheduled job.
pub fn scheduled(name: &str, schedule: &str, now: Timestamp) -> JobSpec {
    let j = ChronosJob {
        name: name.into(),
        command: "true".into(),
        schedule: Some(schedule.into()),
        ..ChronosJob::default()
    };
    JobSpec::from_chronos(&j, now).expect("valid scheduled job")
}

/// A dependent job.
pub fn dependent(name: &str, parents: &[&str], now: Timestamp) -> JobSpec {
    let j = ChronosJob {
        name: name.into(),
        command: "true".into(),
        parents: Some(parents.iter().map(|p| p.to_string()).collect()),
        ..ChronosJob::default()
    };
    JobSpec::from_chronos(&j, now).expect("valid dependent job")
}

/// The launches among commands.
pub fn launches(cmds: &[Command]) -> Vec<(RunId, String, u32, Timestamp)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Launch {
                run,
                job,
                attempt,
                scheduled_for,
            } => Some((run.clone(), job.clone(), *attempt, *scheduled_for)),
            _ => None,
        })
        .collect()
}

/// Launches of one job.
pub fn launches_of(cmds: &[Command], job: &str) -> Vec<RunId> {
    launches(cmds)
        .into_iter()
        .filter(|l| l.1 == job)
        .map(|l| l.0)
        .collect()
}

/// Starts and finishes a run at `at` with `outcome`; returns the commands of the finish.
pub fn complete(p: &mut Planner, run: &RunId, outcome: RunOutcome, at: Timestamp) -> Vec<Command> {
    p.run_started(run, &format!("task-{}", run.0), at);
    let code = if outcome == RunOutcome::Succeeded {
        0
    } else {
        1
    };
    p.run_finished(run, outcome, Some(code), at)
}

/// Runs a job now and completes it; returns the commands of the finish.
pub fn run_and_complete(
    p: &mut Planner,
    job: &str,
    outcome: RunOutcome,
    at: Timestamp,
) -> Vec<Command> {
    let cmds = p.run_now(job, at).expect("known job");
    let run = launches_of(&cmds, job).pop().expect("one launch");
    complete(p, &run, outcome, at)
}

/// What the runtime stores, read back (simulates persistence across a master restart).
pub fn stored(p: &Planner) -> Vec<(JobSpec, meseta_jobs::JobState)> {
    let jobs: Vec<_> = p.jobs().map(|(s, st)| (s.clone(), st.clone())).collect();
    let json = serde_json::to_string(&jobs).expect("serialize");
    serde_json::from_str(&json).expect("deserialize")
}
