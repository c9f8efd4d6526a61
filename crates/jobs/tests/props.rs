//! Property tests: schedules stay on their grid, the planner never launches one scheduled time
//! twice (across restarts, failures and retries), and fan-in follows the "every parent succeeded
//! since the child's last run" model.

mod common;

use std::collections::BTreeMap;

use common::*;
use jiff::{SignedDuration, Timestamp};
use meseta_jobs::{Planner, RunId, RunOutcome, Schedule};
use proptest::prelude::*;

proptest! {
    #[test]
    fn iso_next_is_on_the_grid_and_not_before_t(
        start in 0i64..4_000_000_000,
        period in 1i64..200_000,
        offset in -100_000_000i64..100_000_000_000,
    ) {
        let start_ts = Timestamp::from_second(start).expect("start");
        let text = format!("R/{start_ts}/PT{period}S");
        let s = Schedule::parse(&text, None, start_ts).expect("schedule");
        let t = Timestamp::from_millisecond(start * 1000 + offset).expect("t");
        let next = s.next_at_or_after(t).expect("infinite schedule");
        prop_assert!(next >= t);
        let since = next.duration_since(start_ts).as_secs();
        prop_assert_eq!(since % period, 0);
        prop_assert!(next == start_ts || next.checked_sub(SignedDuration::from_secs(period)).expect("x") < t);
        let after = s.next_after(next).expect("infinite schedule");
        prop_assert!(after > next);
        prop_assert_eq!(after.duration_since(next).as_secs(), period);
    }

    #[test]
    fn cron_next_is_strictly_after_with_next_after(
        minute_step in 1u32..30,
        t in 0i64..4_000_000_000,
    ) {
        let s = Schedule::parse(&format!("*/{minute_step} * * * *"), Some("Europe/Paris"), Timestamp::UNIX_EPOCH)
            .expect("cron");
        let t = Timestamp::from_second(t).expect("t");
        let next = s.next_after(t).expect("cron repeats");
        prop_assert!(next > t);
        prop_assert_eq!(next.as_second() % 60, 0);
        let minute = (next.as_second() / 60) % 60;
        prop_assert_eq!(minute % i64::from(minute_step), 0);
    }
}

/// One step of the planner property: advance the clock, maybe finish a run, maybe restart.
#[derive(Debug, Clone)]
enum Step {
    Advance(i64),
    Finish(usize, bool),
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0i64..4000).prop_map(Step::Advance),
        3 => (0usize..8, any::<bool>()).prop_map(|(i, ok)| Step::Finish(i, ok)),
        1 => Just(Step::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn never_launches_one_scheduled_time_twice(
        period in 1u32..4,
        retries in 0u32..3,
        concurrent in any::<bool>(),
        eps_secs in 0u32..5,
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let t0 = ts("2026-03-01T12:00:00Z");
        let mut spec = scheduled("j", &format!("R//PT{period}S"), t0);
        spec.retries = retries;
        spec.concurrent = concurrent;
        spec.epsilon = SignedDuration::from_secs(i64::from(eps_secs));
        let mut p = Planner::new();
        p.add(spec, t0).expect("add");
        let mut now = t0;
        // (scheduled_for, attempt) → the run id that got it.
        let mut seen: BTreeMap<(Timestamp, u32), RunId> = BTreeMap::new();
        let mut active: Vec<RunId> = Vec::new();
        let mut record = |cmds: &[meseta_jobs::Command], active: &mut Vec<RunId>| -> Result<(), TestCaseError> {
            for (run, _, attempt, due) in launches(cmds) {
                if let Some(prev) = seen.insert((due, attempt), run.clone()) {
                    prop_assert_eq!(&prev, &run, "two runs for one scheduled time");
                }
                if !active.contains(&run) {
                    active.push(run);
                }
            }
            Ok(())
        };
        record(&p.tick(now), &mut active)?;
        for s in steps {
            match s {
                Step::Advance(ms) => {
                    now = plus_ms(now, ms);
                    record(&p.tick(now), &mut active)?;
                }
                Step::Finish(i, ok) if !active.is_empty() => {
                    let run = active.remove(i % active.len());
                    let outcome = if ok { RunOutcome::Succeeded } else { RunOutcome::Failed };
                    record(&complete(&mut p, &run, outcome, now), &mut active)?;
                }
                Step::Finish(..) => {}
                Step::Restart => {
                    let (restored, cmds) = Planner::restore(stored(&p), now);
                    p = restored;
                    record(&cmds, &mut active)?;
                }
            }
            let (_, state) = p.job("j").expect("job");
            if !concurrent {
                prop_assert!(state.active_runs.len() <= 1, "overlap with concurrent=false");
            }
            if let Some(due) = state.next_due {
                prop_assert!(due > now, "a due run was left behind");
            }
        }
    }

    #[test]
    fn fan_in_matches_the_model(events in prop::collection::vec((any::<bool>(), any::<bool>()), 0..40)) {
        let t0 = ts("2026-03-01T00:00:00Z");
        let mut p = Planner::new();
        for name in ["a", "b"] {
            let mut s = scheduled(name, "R/2030-01-01T00:00:00Z/P1D", t0);
            s.retries = 0;
            p.add(s, t0).expect("parent");
        }
        p.add(dependent("c", &["a", "b"], t0), t0).expect("child");
        let (mut a_ok, mut b_ok) = (false, false);
        let (mut expected, mut launched) = (0, 0);
        for (i, (is_a, success)) in events.into_iter().enumerate() {
            let now = plus_ms(t0, i as i64 * 1000);
            let parent = if is_a { "a" } else { "b" };
            let outcome = if success { RunOutcome::Succeeded } else { RunOutcome::Failed };
            let cmds = run_and_complete(&mut p, parent, outcome, now);
            if is_a { a_ok = success } else { b_ok = success }
            if a_ok && b_ok {
                expected += 1;
                a_ok = false;
                b_ok = false;
            }
            for run in launches_of(&cmds, "c") {
                launched += 1;
                complete(&mut p, &run, RunOutcome::Succeeded, now);
            }
            prop_assert_eq!(launched, expected);
        }
    }
}
