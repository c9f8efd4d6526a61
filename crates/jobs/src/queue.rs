//! Runs waiting for an offer, and the time rules on runs outside the planner: a queued run that
//! waits longer than its job's epsilon is skipped ([`RunQueue::expire`]), and a run still
//! running past its job's `maxCompletionTime` is to be killed, once ([`Deadlines::overdue`]).
//! Pure: time is passed in.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};

use crate::planner::{Command, Planner, RunId, RunOutcome};

/// Why an expired run is recorded as skipped.
pub const EPSILON_SKIP_REASON: &str = "no offer fitted its cpus/mem/disk within epsilon";

/// A run waiting for an offer.
#[derive(Clone, Debug)]
pub struct Queued {
    /// The run (also the task id).
    pub run: RunId,
    /// Its job.
    pub job: String,
    /// When it was queued (for the epsilon deadline).
    pub queued_at: Timestamp,
    /// Re-requested after a master restart: it may already run on an agent that has not
    /// re-registered yet, so it is held until recovery settles ([`RunQueue::settle`]).
    pub restored: bool,
}

/// The runs waiting for an offer, in order.
#[derive(Clone, Debug, Default)]
pub struct RunQueue {
    runs: Vec<Queued>,
}

impl RunQueue {
    /// Queue `run` of `job` at `now`; false if it is queued already (launches are idempotent).
    pub fn push(&mut self, run: RunId, job: String, now: Timestamp, restored: bool) -> bool {
        if self.contains(&run) {
            return false;
        }
        self.runs.push(Queued {
            run,
            job,
            queued_at: now,
            restored,
        });
        true
    }

    /// Is `run` waiting?
    pub fn contains(&self, run: &RunId) -> bool {
        self.runs.iter().any(|q| &q.run == run)
    }

    /// Take `run` out of the queue; false if it was not queued.
    pub fn remove(&mut self, run: &RunId) -> bool {
        let before = self.runs.len();
        self.runs.retain(|q| &q.run != run);
        self.runs.len() != before
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// How many runs of `job` wait.
    pub fn queued_for(&self, job: &str) -> usize {
        self.runs.iter().filter(|q| q.job == job).count()
    }

    /// Take the runs that may be placed now (restored runs stay held).
    pub fn take_placeable(&mut self) -> Vec<Queued> {
        let (held, free): (Vec<Queued>, Vec<Queued>) = std::mem::take(&mut self.runs)
            .into_iter()
            .partition(|q| q.restored);
        self.runs = held;
        free
    }

    /// Put back runs that found no room (after the held ones, in their order).
    pub fn put_back(&mut self, runs: Vec<Queued>) {
        self.runs.extend(runs);
    }

    /// Recovery settled: restored runs the master already knows (`known`) were launched before
    /// the restart and leave the queue — launching them again would run them twice; the other
    /// restored runs become ordinary queued runs.
    pub fn settle(&mut self, known: impl Fn(&RunId) -> bool) {
        self.runs.retain(|q| !(q.restored && known(&q.run)));
        for q in &mut self.runs {
            q.restored = false;
        }
    }

    /// Skip the runs that waited longer than their job's epsilon at `now` (runs of jobs that no
    /// longer exist are dropped). Returns the skipped runs and the planner's commands.
    pub fn expire(&mut self, planner: &mut Planner, now: Timestamp) -> (Vec<RunId>, Vec<Command>) {
        let mut skipped = Vec::new();
        let mut cmds = Vec::new();
        let mut keep = Vec::with_capacity(self.runs.len());
        for q in std::mem::take(&mut self.runs) {
            match planner.job(&q.job).map(|(s, _)| s.epsilon) {
                None => {}
                Some(eps) if now.duration_since(q.queued_at) > eps => {
                    let reason = EPSILON_SKIP_REASON.to_string();
                    cmds.extend(planner.run_finished(
                        &q.run,
                        RunOutcome::Skipped { reason },
                        None,
                        now,
                    ));
                    skipped.push(q.run);
                }
                Some(_) => keep.push(q),
            }
        }
        self.runs = keep;
        (skipped, cmds)
    }
}

/// Runs already killed for exceeding `maxCompletionTime` (each is killed once).
#[derive(Clone, Debug, Default)]
pub struct Deadlines {
    timed_out: BTreeSet<RunId>,
}

impl Deadlines {
    /// The runs running longer than their job's `maxCompletionTime` at `now` that were not
    /// reported before; runs no longer active are forgotten.
    pub fn overdue(&mut self, planner: &Planner, now: Timestamp) -> Vec<RunId> {
        let mut overdue = Vec::new();
        for (spec, state) in planner.jobs() {
            if spec.max_completion_time == 0 {
                continue;
            }
            let limit = SignedDuration::from_secs(
                i64::try_from(spec.max_completion_time).unwrap_or(i64::MAX),
            );
            for r in &state.history {
                let started = match (&r.outcome, r.started_at) {
                    (RunOutcome::Running, Some(t)) => t,
                    _ => continue,
                };
                if now.duration_since(started) > limit && !self.timed_out.contains(&r.run_id) {
                    overdue.push(r.run_id.clone());
                }
            }
        }
        self.timed_out.extend(overdue.iter().cloned());
        let active: BTreeSet<&RunId> = planner
            .jobs()
            .flat_map(|(_, st)| st.active_runs.iter())
            .collect();
        self.timed_out.retain(|r| active.contains(r));
        overdue
    }
}

#[cfg(test)]
mod tests;
