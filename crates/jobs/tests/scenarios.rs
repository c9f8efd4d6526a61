//! Planner scenarios from issue 5: per-second schedules, fan-in, epsilon, restarts, cycles,
//! exhaustion, overlap, retries, kills, removal and the graph/stat outputs.

mod common;

use common::*;
use meseta_jobs::{Command, Planner, PlannerError, RunOutcome};

#[test]
fn every_second_for_a_minute_launches_sixty_times() {
    let t0 = ts("2026-03-01T12:00:00.250Z");
    let mut p = Planner::new();
    p.add(scheduled("tick", "R//PT1S", t0), t0).expect("add");
    let mut count = 0;
    for step in 0..600 {
        let now = plus_ms(t0, step * 100);
        let cmds = p.tick(now);
        for run in launches_of(&cmds, "tick") {
            count += 1;
            complete(&mut p, &run, RunOutcome::Succeeded, plus_ms(now, 50));
        }
    }
    assert!((59..=61).contains(&count), "launched {count} times");
    let (_, state) = p.job("tick").expect("job");
    assert_eq!(state.success_count, count);
    assert!(state
        .history
        .iter()
        .all(|r| r.outcome == RunOutcome::Succeeded));
}

fn fan_in() -> (Planner, jiff::Timestamp) {
    let t0 = ts("2026-03-01T00:00:00Z");
    let mut p = Planner::new();
    p.add(scheduled("a", "R/2030-01-01T00:00:00Z/P1D", t0), t0)
        .expect("a");
    p.add(scheduled("b", "R/2030-01-01T00:00:00Z/P1D", t0), t0)
        .expect("b");
    p.add(dependent("c", &["a", "b"], t0), t0).expect("c");
    (p, t0)
}

#[test]
fn both_parents_succeed_child_runs_exactly_once() {
    let (mut p, t0) = fan_in();
    let after_a = run_and_complete(&mut p, "a", RunOutcome::Succeeded, t0);
    assert!(launches_of(&after_a, "c").is_empty());
    let after_b = run_and_complete(&mut p, "b", RunOutcome::Succeeded, plus_ms(t0, 1000));
    let c_runs = launches_of(&after_b, "c");
    assert_eq!(c_runs.len(), 1);
    complete(&mut p, &c_runs[0], RunOutcome::Succeeded, plus_ms(t0, 2000));
    // A again alone does not fire C: B has not succeeded since C's last run.
    let again = run_and_complete(&mut p, "a", RunOutcome::Succeeded, plus_ms(t0, 3000));
    assert!(launches_of(&again, "c").is_empty());
    assert!(launches_of(&p.tick(plus_ms(t0, 4000)), "c").is_empty());
}

#[test]
fn a_failing_parent_keeps_the_child_from_running() {
    let (mut p, t0) = fan_in();
    run_and_complete(&mut p, "a", RunOutcome::Succeeded, t0);
    // B fails three times (retries = 2), with backoff between attempts.
    let mut cmds = run_and_complete(&mut p, "b", RunOutcome::Failed, t0);
    let mut now = t0;
    let mut attempts = 1;
    for _ in 0..200 {
        assert!(
            launches_of(&cmds, "c").is_empty(),
            "child launched on failure"
        );
        now = plus_ms(now, 500);
        cmds = p.tick(now);
        for run in launches_of(&cmds, "b") {
            attempts += 1;
            cmds = complete(&mut p, &run, RunOutcome::Failed, now);
        }
    }
    assert_eq!(attempts, 3);
    let (_, b) = p.job("b").expect("b");
    assert_eq!((b.error_count, b.errors_since_last_success), (1, 1));
    assert_eq!(p.job("c").expect("c").1.runs_started, 0);
}

#[test]
fn soft_error_fires_children_on_final_failure() {
    let t0 = ts("2026-03-01T00:00:00Z");
    let mut p = Planner::new();
    let mut a = scheduled("a", "R/2030-01-01T00:00:00Z/P1D", t0);
    a.soft_error = true;
    a.retries = 0;
    p.add(a, t0).expect("a");
    p.add(dependent("c", &["a"], t0), t0).expect("c");
    let cmds = run_and_complete(&mut p, "a", RunOutcome::Failed, t0);
    assert_eq!(launches_of(&cmds, "c").len(), 1);
}

fn hourly(t0: jiff::Timestamp) -> Planner {
    let mut p = Planner::new();
    // Due at t0 (12:00); added a minute before.
    let added = plus_ms(t0, -60_000);
    p.add(scheduled("h", "R/2026-03-01T12:00:00Z/PT1H", added), added)
        .expect("add");
    p
}

#[test]
fn missed_by_more_than_epsilon_is_skipped() {
    let t0 = ts("2026-03-01T12:00:00Z");
    let mut p = hourly(t0);
    let late = plus_ms(t0, 10 * 60_000);
    let cmds = p.tick(late);
    assert!(launches(&cmds).is_empty());
    assert!(cmds.contains(&Command::Persist { job: "h".into() }));
    let (_, s) = p.job("h").expect("h");
    assert!(matches!(s.history[0].outcome, RunOutcome::Skipped { .. }));
    assert_eq!(s.history[0].scheduled_for, t0);
    assert_eq!(s.next_due, Some(ts("2026-03-01T13:00:00Z")));
    assert!(s.next_due.expect("due") > late);
}

#[test]
fn within_epsilon_launches_exactly_once() {
    let t0 = ts("2026-03-01T12:00:00Z");
    let mut p = hourly(t0);
    let cmds = p.tick(plus_ms(t0, 2 * 60_000));
    assert_eq!(launches_of(&cmds, "h").len(), 1);
    assert!(launches(&p.tick(plus_ms(t0, 2 * 60_000 + 100))).is_empty());
    assert_eq!(p.next_wakeup(), Some(ts("2026-03-01T13:00:00Z")));
}

#[test]
fn restart_within_epsilon_runs_once_beyond_epsilon_skips() {
    let t0 = ts("2026-03-01T12:00:00Z");
    // The master dies before t0 and comes back after it.
    let before = hourly(t0);
    let (mut within, cmds) = Planner::restore(stored(&before), plus_ms(t0, 90_000));
    assert_eq!(launches_of(&cmds, "h").len(), 1);
    assert!(launches(&within.tick(plus_ms(t0, 91_000))).is_empty());
    let (beyond, cmds) = Planner::restore(stored(&before), plus_ms(t0, 20 * 60_000));
    assert!(launches(&cmds).is_empty());
    let (_, s) = beyond.job("h").expect("h");
    assert!(matches!(s.history[0].outcome, RunOutcome::Skipped { .. }));
}

#[test]
fn restart_after_launch_repeats_the_same_run_id_only() {
    let t0 = ts("2026-03-01T12:00:00Z");
    let mut p = hourly(t0);
    let first = launches_of(&p.tick(t0), "h");
    assert_eq!(first.len(), 1);
    // Killed right after the launch was persisted, before the task was reported.
    let (mut p2, cmds) = Planner::restore(stored(&p), plus_ms(t0, 30_000));
    assert_eq!(
        launches_of(&cmds, "h"),
        first,
        "the same idempotent launch, nothing new"
    );
    assert!(launches(&p2.tick(plus_ms(t0, 31_000))).is_empty());
    // Once started, a restart asks for nothing.
    p2.run_started(&first[0], "task-1", plus_ms(t0, 32_000));
    let (_, cmds) = Planner::restore(stored(&p2), plus_ms(t0, 40_000));
    assert!(launches(&cmds).is_empty());
}

#[test]
fn cycles_and_unknown_parents_are_rejected_without_change() {
    let t0 = ts("2026-03-01T00:00:00Z");
    let mut p = Planner::new();
    p.add(scheduled("a", "R/2030-01-01T00:00:00Z/P1D", t0), t0)
        .expect("a");
    p.add(dependent("b", &["a"], t0), t0).expect("b");
    p.add(dependent("c", &["b"], t0), t0).expect("c");
    let before = p.clone();
    match p.add(dependent("a", &["c"], t0), t0) {
        Err(PlannerError::Cycle { cycle, .. }) => assert_eq!(cycle, ["a", "c", "b", "a"]),
        other => panic!("expected a cycle, got {other:?}"),
    }
    assert!(matches!(
        p.add(dependent("d", &["d"], t0), t0),
        Err(PlannerError::Cycle { .. })
    ));
    assert_eq!(
        p.add(dependent("e", &["a", "zz"], t0), t0),
        Err(PlannerError::UnknownParent {
            job: "e".into(),
            parent: "zz".into()
        })
    );
    assert_eq!(p, before);
}

#[test]
fn exhausted_repetitions_disable_the_job() {
    let t0 = ts("2026-03-01T12:00:00Z");
    let mut p = Planner::new();
    p.add(scheduled("r2", "R2/2026-03-01T12:00:00Z/PT1S", t0), t0)
        .expect("add");
    let mut count = 0;
    for step in 0..50 {
        let now = plus_ms(t0, step * 100);
        for run in launches_of(&p.tick(now), "r2") {
            count += 1;
            complete(&mut p, &run, RunOutcome::Succeeded, now);
        }
    }
    assert_eq!(count, 2);
    let (spec, state) = p.job("r2").expect("r2");
    assert!(spec.disabled);
    assert_eq!(state.next_due, None);
    assert_eq!(p.next_wakeup(), None);
    assert_eq!(
        spec.to_chronos(state).schedule.as_deref(),
        Some("R0/2026-03-01T12:00:00.000Z/PT1S")
    );
}

#[test]
fn overlap_is_skipped_unless_concurrent() {
    let t0 = ts("2026-03-01T12:00:00Z");
    let mut p = Planner::new();
    p.add(scheduled("solo", "R//PT1S", t0), t0).expect("solo");
    let mut many = scheduled("many", "R//PT1S", t0);
    many.concurrent = true;
    p.add(many, t0).expect("many");
    let mut cmds = Vec::new();
    for step in 0..5 {
        cmds.extend(p.tick(plus_ms(t0, step * 1000)));
    }
    assert_eq!(launches_of(&cmds, "solo").len(), 1);
    assert_eq!(launches_of(&cmds, "many").len(), 5);
    let (_, solo) = p.job("solo").expect("solo");
    let skipped = solo
        .history
        .iter()
        .filter(|r| matches!(r.outcome, RunOutcome::Skipped { .. }))
        .count();
    assert_eq!(skipped, 4);
    assert_eq!(solo.run_state(), "queued");
}

#[test]
fn retries_back_off_and_kill_stops_them() {
    let t0 = ts("2026-03-01T12:00:00Z");
    let mut p = Planner::new();
    p.add(scheduled("r", "R/2030-01-01T00:00:00Z/P1D", t0), t0)
        .expect("r");
    run_and_complete(&mut p, "r", RunOutcome::Failed, t0);
    assert_eq!(p.next_wakeup(), Some(plus_ms(t0, 1000)));
    assert!(launches(&p.tick(plus_ms(t0, 999))).is_empty());
    let retry = launches(&p.tick(plus_ms(t0, 1000)));
    assert_eq!(retry.len(), 1);
    assert_eq!((retry[0].2, retry[0].3), (1, t0));
    let cmds = p.kill("r").expect("kill");
    assert!(cmds.contains(&Command::Kill {
        run: retry[0].0.clone()
    }));
    p.run_finished(
        &retry[0].0,
        RunOutcome::Failed,
        Some(137),
        plus_ms(t0, 1500),
    );
    let (_, s) = p.job("r").expect("r");
    assert_eq!(s.pending_retry, None);
    assert_eq!(
        s.history.back().map(|r| r.outcome.clone()),
        Some(RunOutcome::Killed)
    );
    assert_eq!(s.error_count, 1);
    // A repeated report of the same run changes nothing.
    let again = p.run_finished(
        &retry[0].0,
        RunOutcome::Succeeded,
        Some(0),
        plus_ms(t0, 1600),
    );
    assert!(again.is_empty());
    assert_eq!(p.job("r").expect("r").1.success_count, 0);
}

#[test]
fn remove_reparents_children() {
    let t0 = ts("2026-03-01T00:00:00Z");
    let mut p = Planner::new();
    p.add(scheduled("a", "R/2030-01-01T00:00:00Z/P1D", t0), t0)
        .expect("a");
    p.add(dependent("b", &["a"], t0), t0).expect("b");
    p.add(dependent("c", &["b"], t0), t0).expect("c");
    let cmds = p.remove("b", t0).expect("remove b");
    assert!(cmds.contains(&Command::Forget { job: "b".into() }));
    assert_eq!(p.job("c").expect("c").0.parents, ["a"]);
    p.remove("a", t0).expect("remove a");
    let (c, state) = p.job("c").expect("c");
    assert!(c.parents.is_empty());
    assert!(c.schedule.is_some());
    assert_eq!(state.next_due, Some(ts("2030-01-01T00:00:00Z")));
    assert_eq!(p.remove("a", t0), Err(PlannerError::UnknownJob("a".into())));
}

#[test]
fn graph_and_stats() {
    let (mut p, t0) = fan_in();
    let run = launches_of(&p.run_now("a", t0).expect("a"), "a").remove(0);
    p.run_started(&run, "t", t0);
    p.run_finished(&run, RunOutcome::Succeeded, Some(0), plus_ms(t0, 250));
    run_and_complete(&mut p, "b", RunOutcome::Failed, t0);
    assert_eq!(
        p.graph_csv(),
        "node,a,success,idle\nnode,b,fresh,queued\nnode,c,fresh,idle\nlink,a,c\nlink,b,c\n"
    );
    assert!(p.graph_dot().contains("\"a\" -> \"c\";"));
    let stats = p.stats("a").expect("a");
    assert_eq!((stats.count, stats.median), (1, 250.0));
    assert!(p.stats("nope").is_none());
}

#[test]
fn cron_job_with_time_zone_wakes_at_local_time() {
    let t0 = ts("2026-01-10T00:00:00Z");
    let mut spec = scheduled("daily", "0 9 * * *", t0);
    spec.schedule = Some(
        meseta_jobs::Schedule::parse("0 9 * * *", Some("America/New_York"), t0).expect("cron"),
    );
    let mut p = Planner::new();
    p.add(spec, t0).expect("add");
    assert_eq!(p.next_wakeup(), Some(ts("2026-01-10T14:00:00Z")));
    assert_eq!(
        launches_of(&p.tick(ts("2026-01-10T14:00:01Z")), "daily").len(),
        1
    );
    assert_eq!(p.next_wakeup(), Some(ts("2026-01-11T14:00:00Z")));
}

#[test]
fn disable_and_enable_skip_what_fell_due_meanwhile() {
    let t0 = ts("2026-03-01T12:00:00Z");
    let mut p = Planner::new();
    p.add(scheduled("d", "R//PT1S", t0), t0).expect("add");
    p.set_disabled("d", true, t0).expect("disable");
    assert!(launches(&p.tick(plus_ms(t0, 5000))).is_empty());
    assert_eq!(p.next_wakeup(), None);
    p.set_disabled("d", false, plus_ms(t0, 10_000))
        .expect("enable");
    assert_eq!(p.next_wakeup(), Some(plus_ms(t0, 10_000)));
    assert_eq!(launches(&p.tick(plus_ms(t0, 10_000))).len(), 1);
}

#[test]
fn replacing_a_job_does_not_rerun_its_last_occurrence() {
    let t0 = ts("2026-03-01T12:00:00Z");
    let mut p = hourly(t0);
    let run = launches_of(&p.tick(t0), "h").remove(0);
    complete(&mut p, &run, RunOutcome::Succeeded, plus_ms(t0, 1000));
    let now = plus_ms(t0, 60_000);
    p.add(scheduled("h", "R/2026-03-01T12:00:00Z/PT1H", now), now)
        .expect("replace");
    assert!(launches(&p.tick(now)).is_empty());
    assert_eq!(p.job("h").expect("h").1.success_count, 1);
}

#[test]
fn a_run_the_runtime_could_not_start_in_time_is_skipped_not_retried() {
    let t0 = ts("2026-03-01T00:00:00Z");
    let mut p = Planner::new();
    p.add(scheduled("late", "R1//PT1H", t0), t0).expect("add");
    let cmds = p.tick(plus_ms(t0, 10));
    let runs = launches_of(&cmds, "late");
    assert_eq!(runs.len(), 1);
    let after = complete(
        &mut p,
        &runs[0],
        RunOutcome::Skipped {
            reason: "no offer within epsilon".into(),
        },
        plus_ms(t0, 1000),
    );
    assert!(launches_of(&after, "late").is_empty());
    assert!(
        launches_of(&p.tick(plus_ms(t0, 120_000)), "late").is_empty(),
        "no retry of a skip"
    );
    let (_, state) = p.job("late").expect("job");
    assert_eq!(state.error_count, 0);
    assert!(state.pending_retry.is_none());
    assert!(matches!(
        state.history.back().map(|r| &r.outcome),
        Some(RunOutcome::Skipped { .. })
    ));
}

#[test]
fn an_async_job_fires_its_children_when_it_reports_success_not_when_its_task_exits() {
    let t0 = ts("2026-03-01T00:00:00Z");
    let mut p = Planner::new();
    let mut parent = scheduled("load", "R/2030-01-01T00:00:00Z/P1D", t0);
    parent.asynchronous = true;
    p.add(parent, t0).expect("parent");
    p.add(dependent("report", &["load"], t0), t0)
        .expect("child");
    let exited = run_and_complete(&mut p, "load", RunOutcome::Succeeded, t0);
    assert!(
        launches_of(&exited, "report").is_empty(),
        "the task exiting is not the job succeeding"
    );
    let reported = p
        .mark_success("load", plus_ms(t0, 5000))
        .expect("known job");
    assert_eq!(launches_of(&reported, "report").len(), 1);
}
