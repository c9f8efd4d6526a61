//! Extreme schedules fed to the schedule parser and the planner: periods below the resolution,
//! absurd repetition counts, years out of range, starts decades in the past, huge epsilons, and
//! cron expressions that match rarely or never. Each must either be refused or answered with a
//! bounded amount of work; a case that does not finish within the watchdog's bound has hung
//! (before occurrences were computed arithmetically, several of these spun for hours).

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::ts;
use jiff::{SignedDuration, Timestamp};
use meseta_api::chronos::ChronosJob;
use meseta_jobs::planner::MAX_SKIP_RECORDS;
use meseta_jobs::{Command, JobSpec, Planner, RunOutcome, Schedule};

/// Far beyond what any bounded case needs, even on a loaded machine: reaching it means a hang.
const WATCHDOG: Duration = Duration::from_secs(120);

/// Runs `f` on its own thread; fails the test if it does not come back within [`WATCHDOG`].
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("{what}: the worker ended without an answer"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no answer (the schedule work is unbounded)")
        }
    }
}

fn now() -> Timestamp {
    ts("2026-06-15T12:34:56.789Z")
}

fn job(name: &str, schedule: &str, epsilon: &str, tz: Option<&str>) -> ChronosJob {
    ChronosJob {
        name: name.into(),
        command: "true".into(),
        schedule: Some(schedule.into()),
        schedule_time_zone: tz.map(Into::into),
        epsilon: Some(epsilon.into()),
        concurrent: true,
        ..ChronosJob::default()
    }
}

/// Every query a schedule answers, at instants from 1970 to the end of jiff's range.
fn exercise_schedule(s: &Schedule) {
    let instants = [
        Timestamp::UNIX_EPOCH,
        now(),
        ts("2076-06-15T00:00:00Z"),
        ts("9999-12-30T00:00:00Z"),
    ];
    for t in instants {
        let next = s.next_at_or_after(t);
        if let Some(n) = next {
            assert!(n >= t, "{s:?}: next {n} before {t}");
        }
        let after = s.next_after(t);
        if let Some(a) = after {
            assert!(a > t, "{s:?}: next_after {a} not after {t}");
        }
        if let Some(l) = s.last_at_or_before(t) {
            assert!(l <= t, "{s:?}: last {l} after {t}");
            if let Some(n) = s.next_after(l) {
                assert!(n > t || n == l || n > l, "{s:?}");
            }
        }
        let _ = s.to_chronos_string(next, 0);
    }
}

/// Adds the job to a planner and ticks it now, fifty years on, and across a restore; every
/// tick's record keeping stays bounded.
fn exercise_planner(spec: JobSpec) {
    let mut p = Planner::new();
    let _ = p
        .add(spec.clone(), now())
        .expect("the planner takes a valid job");
    for at in [
        now(),
        ts("2076-06-15T00:00:00Z"),
        ts("9999-12-29T00:00:00Z"),
    ] {
        let cmds = p.tick(at);
        let launches = cmds
            .iter()
            .filter(|c| matches!(c, Command::Launch { .. }))
            .count();
        assert!(
            launches <= 1,
            "one tick launches at most one run: {launches}"
        );
        let (_, state) = p.job(&spec.name).expect("job");
        assert!(
            state.history.len() <= MAX_SKIP_RECORDS + 2,
            "history stays bounded: {}",
            state.history.len()
        );
        let _ = p.next_wakeup();
    }
    let stored: Vec<_> = p.jobs().map(|(s, st)| (s.clone(), st.clone())).collect();
    let (_, _) = Planner::restore(stored, ts("2100-01-01T00:00:00Z"));
}

#[test]
fn iso_schedules_are_refused_or_answered_promptly() {
    let cases: &[(&str, Option<&str>, bool)] = &[
        ("R//PT0.000001S", None, false),
        ("R/2026-01-01T00:00:00Z/PT0.000000001S", None, false),
        ("R/1976-06-15T00:00:00Z/PT0.5S", None, false),
        (
            "R99999999999999999999999/2026-01-01T00:00:00Z/PT1S",
            None,
            false,
        ),
        ("R/99999-01-01T00:00:00Z/PT1S", None, false),
        ("R/+099999-01-01T00:00:00Z/PT1S", None, false),
        ("R1/99999-01-01T00:00:00Z/PT1H", None, false),
        ("R/1976-06-15T00:00:00Z/PT1S", None, true),
        ("R/1970-01-01T00:00:00Z/PT1S", None, true),
        (
            "R18446744073709551615/1976-06-15T00:00:00Z/PT1S",
            None,
            true,
        ),
        ("R/1976-01-31T00:00:00Z/P1M", Some("Europe/Berlin"), true),
        ("R/1976-02-29T02:30:00Z/P1Y", Some("America/New_York"), true),
        (
            "R/1976-03-28T02:30:00Z/P1Y2M3DT4H5M6S",
            Some("Europe/Berlin"),
            true,
        ),
        (
            "R/1976-06-15T00:00:00Z/P1D",
            Some("Australia/Lord_Howe"),
            true,
        ),
        ("R0/2014-01-01T00:00:00Z/PT60M", None, true),
        ("R5/2014-01-01T00:00:00Z/PT1S", None, true),
        ("R/9999-12-29T23:59:58Z/PT1S", None, true),
    ];
    for &(text, tz, valid) in cases {
        let what = format!("{text} ({tz:?})");
        let parsed = bounded(&what, move || Schedule::parse(text, tz, now()));
        assert_eq!(parsed.is_ok(), valid, "{what}: {parsed:?}");
        if let Ok(s) = parsed {
            bounded(&what, move || exercise_schedule(&s));
            for eps in ["PT1S", "PT5M", "PT876000H"] {
                let j = job("extreme", text, eps, tz);
                let spec = JobSpec::from_chronos(&j, now()).expect("valid job");
                bounded(&what, move || exercise_planner(spec));
            }
        }
    }
}

#[test]
fn cron_schedules_are_refused_or_answered_promptly() {
    let cases: &[(&str, bool)] = &[
        ("* * * * * *", true),
        ("*/1 * * * * *", true),
        ("0 0 30 2 *", false),
        ("0 0 31 4 *", false),
        ("0 0 1 1 * 99999", false),
        ("0 0 0 1 1 * 2020", true),
        ("0 0 0 1 1 * 99999", false),
        ("0 0 29 2 1", true),
        ("59 59 23 31 12 * 4999", true),
        ("R//PT0.000001S", false),
    ];
    for &(text, valid) in cases {
        let parsed = bounded(text, move || Schedule::parse(text, None, now()));
        assert_eq!(parsed.is_ok(), valid, "{text}: {parsed:?}");
        if let Ok(s) = parsed {
            bounded(text, move || exercise_schedule(&s));
            for eps in ["PT1S", "PT876000H"] {
                let spec =
                    JobSpec::from_chronos(&job("cron", text, eps, None), now()).expect("valid job");
                bounded(text, move || exercise_planner(spec));
            }
        }
    }
}

/// A record written before sub-resolution periods were refused still loads: restoring it is
/// bounded, the job is disabled and listed, enabling it is refused, and it can be removed.
#[test]
fn a_stored_sub_resolution_job_is_restored_disabled_and_removable() {
    let valid = JobSpec::from_chronos(
        &job("poison", "R/1976-06-15T00:00:00Z/PT1S", "PT876000H", None),
        now(),
    )
    .expect("valid");
    let mut record = serde_json::to_value(&valid).expect("serialize");
    record["schedule"]["period"] = "PT0.000001S".into();
    let poisoned: JobSpec = serde_json::from_value(record).expect("an old record still loads");
    let schedule = poisoned.schedule.clone().expect("schedule");
    assert!(!schedule.within_resolution());
    bounded("queries on the stored schedule", move || {
        exercise_schedule(&schedule)
    });

    let (mut p, cmds) = bounded("restore", move || {
        Planner::restore(vec![(poisoned, meseta_jobs::JobState::default())], now())
    });
    assert!(
        !cmds.iter().any(|c| matches!(c, Command::Launch { .. })),
        "{cmds:?}"
    );
    assert_eq!(p.unrunnable(), ["poison"]);
    let (spec, state) = p.job("poison").expect("listed");
    assert!(spec.disabled);
    assert_eq!(state.next_due, None);
    assert!(p
        .tick(now() + SignedDuration::from_secs(3600))
        .iter()
        .all(|c| !matches!(c, Command::Launch { .. })));
    assert!(p.set_disabled("poison", false, now()).is_err());
    let removed = p.remove("poison", now()).expect("removable");
    assert!(removed
        .iter()
        .any(|c| matches!(c, Command::Forget { job } if job == "poison")));
}

/// Before the fix a tick walked every occurrence within epsilon one by one: a one-second
/// schedule started fifty years ago with a century of epsilon is 1.6 billion steps.
#[test]
fn a_huge_backlog_within_epsilon_is_one_launch_and_a_bounded_history() {
    let spec = JobSpec::from_chronos(
        &job("backlog", "R/1976-06-15T00:00:00Z/PT1S", "PT876000H", None),
        ts("1976-06-15T00:00:00Z"),
    )
    .expect("valid");
    let mut p = Planner::new();
    p.add(spec, ts("1976-06-15T00:00:00Z")).expect("added");
    let cmds = bounded("a tick after fifty years", move || {
        let cmds = p.tick(now());
        (cmds, p)
    });
    let (cmds, p) = cmds;
    let launches: Vec<_> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Launch { scheduled_for, .. } => Some(*scheduled_for),
            _ => None,
        })
        .collect();
    assert_eq!(
        launches,
        [ts("2026-06-15T12:34:56Z")],
        "only the latest runs"
    );
    let (_, state) = p.job("backlog").expect("job");
    let skipped = state
        .history
        .iter()
        .filter(|r| matches!(r.outcome, RunOutcome::Skipped { .. }))
        .count();
    assert!(skipped <= MAX_SKIP_RECORDS + 1, "{skipped}");
    assert_eq!(state.next_due, Some(ts("2026-06-15T12:34:57Z")));
}
