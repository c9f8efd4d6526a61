//! Unit tests of the run queue and the run deadlines, on a real planner with time passed in.

use jiff::{SignedDuration, Timestamp};
use meseta_api::chronos::ChronosJob;

use super::*;
use crate::job::JobSpec;

fn t(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_800_000_000 + secs)
}

/// A planner with job `a` (epsilon 10 s, maxCompletionTime 5 s) and one run of it started.
fn planner_with_run() -> (Planner, RunId) {
    let j: ChronosJob = serde_json::from_value(serde_json::json!({
        "name": "a", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT1H",
        "epsilon": "PT10S", "maxCompletionTime": 5
    }))
    .expect("chronos json");
    let mut p = Planner::new();
    let spec = JobSpec::from_chronos(&j, t(0)).expect("valid");
    p.add(spec, t(0)).expect("added");
    let run = p
        .run_now("a", t(0))
        .expect("run")
        .into_iter()
        .find_map(|c| match c {
            Command::Launch { run, .. } => Some(run),
            _ => None,
        })
        .expect("a launch");
    (p, run)
}

#[test]
fn a_run_is_queued_once_and_restored_runs_are_held() {
    let mut q = RunQueue::default();
    assert!(q.push(RunId("r1".into()), "a".into(), t(0), false));
    assert!(
        !q.push(RunId("r1".into()), "a".into(), t(1), false),
        "idempotent"
    );
    q.push(RunId("r2".into()), "a".into(), t(0), true);
    let free = q.take_placeable();
    assert_eq!(free.len(), 1);
    assert_eq!(free[0].run, RunId("r1".into()));
    assert_eq!(q.queued_for("a"), 1, "the restored run stays held");
    q.put_back(free);
    assert_eq!(q.queued_for("a"), 2);
    assert!(q.remove(&RunId("r1".into())));
    assert!(!q.remove(&RunId("r1".into())));
}

#[test]
fn settling_drops_restored_runs_the_master_knows_and_frees_the_rest() {
    let mut q = RunQueue::default();
    q.push(RunId("known".into()), "a".into(), t(0), true);
    q.push(RunId("lost".into()), "a".into(), t(0), true);
    q.push(RunId("new".into()), "a".into(), t(0), false);
    q.settle(|r| r.0 == "known");
    let free = q.take_placeable();
    let runs: Vec<&str> = free.iter().map(|q| q.run.0.as_str()).collect();
    assert_eq!(runs, ["lost", "new"]);
    assert!(q.is_empty());
}

#[test]
fn a_queued_run_past_epsilon_is_skipped_and_one_within_it_waits() {
    let (mut p, run) = planner_with_run();
    let mut q = RunQueue::default();
    q.push(run.clone(), "a".into(), t(0), false);
    q.push(RunId("gone".into()), "deleted-job".into(), t(0), false);
    let (skipped, _) = q.expire(&mut p, t(10));
    assert!(skipped.is_empty(), "exactly epsilon is still in time");
    assert!(q.contains(&run));
    assert!(
        !q.contains(&RunId("gone".into())),
        "runs of removed jobs are dropped"
    );
    let (skipped, cmds) = q.expire(&mut p, t(11));
    assert_eq!(skipped, vec![run]);
    assert!(q.is_empty());
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::Persist { job } if job == "a")));
}

#[test]
fn a_run_past_max_completion_time_is_reported_once() {
    let (mut p, run) = planner_with_run();
    p.run_started(&run, &run.0, t(0));
    let mut d = Deadlines::default();
    assert!(
        d.overdue(&p, t(5)).is_empty(),
        "exactly the limit is in time"
    );
    assert_eq!(d.overdue(&p, t(6)), vec![run.clone()]);
    assert!(d.overdue(&p, t(7)).is_empty(), "killed once");
    p.run_finished(&run, RunOutcome::Killed, None, t(8));
    assert!(d.overdue(&p, t(9)).is_empty());
    assert!(d.timed_out.is_empty(), "inactive runs are forgotten");
}
