//! Per-job run transitions of the planner: launching, ticking a schedule, finishing, fan-in.
//!
//! Used only by [`crate::planner::Planner`]; each function works on one job's entry.

use jiff::{SignedDuration, Timestamp};

use super::types::{Command, PendingRetry, RunId, RunOutcome, RunRecord};
use super::{persist, retry_backoff, Entry, MAX_SKIP_RECORDS};

/// Records a new run attempt and returns its `Launch` command.
pub(super) fn launch(entry: &mut Entry, attempt: u32, scheduled_for: Timestamp) -> Command {
    let name = entry.spec.name.clone();
    let state = &mut entry.state;
    let mut id_time = scheduled_for;
    let mut run = RunId::new(&name, id_time, attempt);
    // Two manual runs in the same millisecond still get distinct ids.
    while state.history.iter().any(|r| r.run_id == run) || state.active_runs.contains(&run) {
        id_time = id_time
            .checked_add(SignedDuration::from_millis(1))
            .unwrap_or(id_time);
        run = RunId::new(&name, id_time, attempt);
    }
    state.active_runs.push(run.clone());
    state.runs_started += 1;
    if attempt == 0 {
        state.parent_successes.values_mut().for_each(|v| *v = 0);
    }
    state.push_record(RunRecord {
        run_id: run.clone(),
        scheduled_for,
        started_at: None,
        finished_at: None,
        outcome: RunOutcome::Pending,
        attempt,
        exit_code: None,
        task_id: None,
    });
    Command::Launch {
        run,
        job: name,
        attempt,
        scheduled_for,
    }
}

/// Records an occurrence that did not run.
pub(super) fn skip(entry: &mut Entry, scheduled_for: Timestamp, reason: &str) {
    let run = RunId::new(&entry.spec.name, scheduled_for, 0);
    entry.state.push_record(RunRecord {
        run_id: run,
        scheduled_for,
        started_at: None,
        finished_at: None,
        outcome: RunOutcome::Skipped {
            reason: reason.to_string(),
        },
        attempt: 0,
        exit_code: None,
        task_id: None,
    });
}

fn overlaps(entry: &Entry) -> bool {
    !entry.spec.concurrent
        && (!entry.state.active_runs.is_empty() || entry.state.pending_retry.is_some())
}

/// Everything due for one job at `now`: a waiting retry, then the schedule.
pub(super) fn tick_job(entry: &mut Entry, now: Timestamp) -> Vec<Command> {
    let mut commands = Vec::new();
    let mut changed = false;
    if let Some(retry) = entry.state.pending_retry.take_if(|r| r.due <= now) {
        commands.push(launch(entry, retry.attempt, retry.scheduled_for));
        changed = true;
    }
    if entry.spec.disabled || entry.spec.schedule.is_none() {
        return finish_tick(entry, commands, changed);
    }
    // Nothing due: skip the schedule work (ticks come often; most jobs have nothing to do).
    let due_now = entry.state.next_due.is_some_and(|d| d <= now);
    if let Some(due) = due_now
        .then(|| advance_schedule(entry, now, &mut changed))
        .flatten()
    {
        if overlaps(entry) {
            skip(
                entry,
                due,
                "previous run still active (concurrent is false)",
            );
        } else {
            commands.push(launch(entry, 0, due));
        }
    }
    if entry.state.next_due.is_none() {
        // An `Rn` schedule ran out.
        entry.spec.disabled = true;
        changed = true;
    }
    finish_tick(entry, commands, changed)
}

fn finish_tick(entry: &Entry, mut commands: Vec<Command>, changed: bool) -> Vec<Command> {
    if changed {
        commands.push(persist(&entry.spec.name));
    }
    commands
}

/// Moves `next_due` past `now`, recording missed occurrences; returns the occurrence to run.
///
/// The latest occurrence at or before `now` is found arithmetically; the ones before it are
/// recorded one by one up to [`MAX_SKIP_RECORDS`], and the rest in one summary record, so the
/// work is bounded whatever the period, the epsilon or the time since the last tick.
fn advance_schedule(entry: &mut Entry, now: Timestamp, changed: &mut bool) -> Option<Timestamp> {
    let schedule = entry.spec.schedule.clone()?;
    let first = entry.state.next_due.filter(|d| *d <= now)?;
    *changed = true;
    let epsilon = entry.spec.epsilon;
    let late = |due: Timestamp| now.duration_since(due) > epsilon;
    let latest = schedule
        .last_at_or_before(now)
        .filter(|l| *l >= first)
        .unwrap_or(first);
    let mut due = first;
    let mut recorded = 0usize;
    while due < latest {
        if recorded == MAX_SKIP_RECORDS {
            skip(
                entry,
                due,
                "missed, as was every occurrence after it before the latest due one",
            );
            break;
        }
        let reason = if late(due) {
            "missed by more than epsilon"
        } else {
            "superseded by a later due run"
        };
        skip(entry, due, reason);
        recorded += 1;
        match schedule.next_after(due) {
            Some(next) if next < latest => due = next,
            _ => break,
        }
    }
    entry.state.next_due = schedule.next_after(latest.max(now));
    if late(latest) {
        skip(entry, latest, "missed by more than epsilon");
        None
    } else {
        Some(latest)
    }
}

/// Applies a finished run. Returns `Some(true)` when children should see a success,
/// `Some(false)` for a final failure, `None` when nothing is final yet (a retry waits) or the run
/// was unknown.
pub(super) fn finish(
    entry: &mut Entry,
    run: &RunId,
    outcome: RunOutcome,
    exit_code: Option<i32>,
    at: Timestamp,
) -> Option<bool> {
    let state = &mut entry.state;
    let pos = state.active_runs.iter().position(|r| r == run)?;
    state.active_runs.remove(pos);
    let killed = match state.killing.iter().position(|r| r == run) {
        Some(i) => {
            state.killing.remove(i);
            true
        }
        None => false,
    };
    let outcome = match outcome {
        RunOutcome::Succeeded => RunOutcome::Succeeded,
        _ if killed => RunOutcome::Killed,
        // The runtime could not start it in time (no offer within epsilon): a skip, not a failure.
        skipped @ RunOutcome::Skipped { .. } => skipped,
        RunOutcome::Killed => RunOutcome::Killed,
        _ => RunOutcome::Failed,
    };
    let (attempt, scheduled_for) = match state.record_mut(run) {
        Some(record) => {
            record.finished_at = Some(at);
            record.outcome = outcome.clone();
            record.exit_code = exit_code;
            (record.attempt, record.scheduled_for)
        }
        None => (0, at),
    };
    match outcome {
        RunOutcome::Succeeded => {
            state.success_count += 1;
            state.errors_since_last_success = 0;
            state.last_success = Some(at);
            Some(true)
        }
        RunOutcome::Skipped { .. } => None,
        RunOutcome::Failed if attempt < entry.spec.retries => {
            let due = at.checked_add(retry_backoff(attempt)).unwrap_or(at);
            state.pending_retry = Some(PendingRetry {
                due,
                attempt: attempt + 1,
                scheduled_for,
            });
            None
        }
        failed => {
            state.error_count += 1;
            state.errors_since_last_success += 1;
            state.last_error = Some(at);
            Some(failed == RunOutcome::Failed && entry.spec.soft_error)
        }
    }
}

/// A parent of `child` succeeded or finally failed; launches the child when every parent has
/// succeeded since its last run.
pub(super) fn parent_result(
    child: &mut Entry,
    parent: &str,
    success: bool,
    at: Timestamp,
) -> Vec<Command> {
    child
        .state
        .parent_successes
        .insert(parent.to_string(), u64::from(success));
    let ready = success
        && child
            .spec
            .parents
            .iter()
            .all(|p| child.state.parent_successes.get(p).copied().unwrap_or(0) > 0);
    if !ready {
        return Vec::new();
    }
    if child.spec.disabled {
        child
            .state
            .parent_successes
            .values_mut()
            .for_each(|v| *v = 0);
        skip(child, at, "job is disabled");
        return Vec::new();
    }
    if overlaps(child) {
        child
            .state
            .parent_successes
            .values_mut()
            .for_each(|v| *v = 0);
        skip(child, at, "previous run still active (concurrent is false)");
        return Vec::new();
    }
    vec![launch(child, 0, at)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let secs: Vec<i64> = (0..10).map(|a| retry_backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
    }
}
