//! Process-wide phase timers: how much time the master spends in each stage of turning apps
//! into running tasks (allocator cycles, offer construction and sending, the services
//! engine's placement, status handling, store writes, the event stream), and how often.
//!
//! Each phase is two relaxed atomic counters (calls, nanoseconds), so timing a hot path costs
//! two `Instant::now()` and two atomic adds. The master serves them in `/metrics/snapshot`
//! (`master/phase/<name>/count`, `master/phase/<name>/ms`); `meseta bench services` reads them
//! before and after a run and prints the per-phase breakdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A stage of the master's work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// One allocator cycle (`Allocator::allocate`).
    AllocatorCycle,
    /// Turning a cycle's grants into offers and sending them.
    Offers,
    /// The services engine placing instances on offers.
    Placement,
    /// The master handling an agent's status update.
    StatusMaster,
    /// The services engine handling a task status.
    StatusServices,
    /// The services scheduler writing its changes to the store (one batch per call).
    StoreWrites,
    /// Publishing events to `/v2/events` subscribers.
    Events,
    /// Launching tasks: the master handling an ACCEPT.
    Accept,
}

impl Phase {
    /// Every phase, in report order.
    pub const ALL: [Phase; 8] = [
        Phase::AllocatorCycle,
        Phase::Offers,
        Phase::Placement,
        Phase::Accept,
        Phase::StatusMaster,
        Phase::StatusServices,
        Phase::StoreWrites,
        Phase::Events,
    ];

    /// The metric name part.
    pub fn name(self) -> &'static str {
        match self {
            Phase::AllocatorCycle => "allocator_cycle",
            Phase::Offers => "offers",
            Phase::Placement => "placement",
            Phase::Accept => "accept",
            Phase::StatusMaster => "status_master",
            Phase::StatusServices => "status_services",
            Phase::StoreWrites => "store_writes",
            Phase::Events => "events",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const N: usize = Phase::ALL.len();

static CALLS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static NANOS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];

/// Adds one call of `took` to `phase`.
pub fn record(phase: Phase, took: Duration) {
    let i = phase.index();
    CALLS[i].fetch_add(1, Ordering::Relaxed);
    let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
    NANOS[i].fetch_add(nanos, Ordering::Relaxed);
}

/// Times `phase` until dropped.
#[must_use = "the phase is timed until the guard is dropped"]
pub struct Timer {
    phase: Phase,
    start: Instant,
}

impl Drop for Timer {
    fn drop(&mut self) {
        record(self.phase, self.start.elapsed());
    }
}

/// Starts timing one call of `phase`.
pub fn time(phase: Phase) -> Timer {
    Timer {
        phase,
        start: Instant::now(),
    }
}

/// Runs `f` as one call of `phase`.
pub fn timed<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
    let _t = time(phase);
    f()
}

/// Calls and total time of one phase.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    /// Calls.
    pub calls: u64,
    /// Total time, milliseconds.
    pub ms: f64,
}

/// Every phase's totals since the process started.
pub fn snapshot() -> Vec<(Phase, Totals)> {
    Phase::ALL
        .iter()
        .map(|&p| {
            let i = p.index();
            let totals = Totals {
                calls: CALLS[i].load(Ordering::Relaxed),
                ms: NANOS[i].load(Ordering::Relaxed) as f64 / 1e6,
            };
            (p, totals)
        })
        .collect()
}

/// The `/metrics/snapshot` keys of every phase with their values.
pub fn metrics() -> Vec<(String, f64)> {
    snapshot()
        .into_iter()
        .flat_map(|(p, t)| {
            [
                (format!("master/phase/{}/count", p.name()), t.calls as f64),
                (format!("master/phase/{}/ms", p.name()), t.ms),
            ]
        })
        .collect()
}

/// Per phase `after − before` from two `/metrics/snapshot` answers (read as key → value):
/// (name, calls, ms) in report order; phases missing from either side count as zero.
pub fn delta(
    before: impl Fn(&str) -> Option<f64>,
    after: impl Fn(&str) -> Option<f64>,
) -> Vec<(&'static str, f64, f64)> {
    Phase::ALL
        .iter()
        .map(|p| {
            let count = format!("master/phase/{}/count", p.name());
            let ms = format!("master/phase/{}/ms", p.name());
            let d = |k: &str| (after(k).unwrap_or(0.0) - before(k).unwrap_or(0.0)).max(0.0);
            (p.name(), d(&count), d(&ms))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn recording_adds_calls_and_time() {
        let before = snapshot();
        record(Phase::Events, Duration::from_millis(3));
        timed(Phase::Events, || ());
        let after = snapshot();
        let get = |s: &[(Phase, Totals)]| {
            s.iter()
                .find(|(p, _)| *p == Phase::Events)
                .map(|(_, t)| *t)
                .unwrap_or_default()
        };
        let (b, a) = (get(&before), get(&after));
        assert!(a.calls >= b.calls + 2);
        assert!(a.ms >= b.ms + 3.0);
    }

    #[test]
    fn metric_names_are_distinct_and_delta_reads_them() {
        let m = metrics();
        assert_eq!(m.len(), 2 * N);
        let before: HashMap<String, f64> = m.iter().cloned().collect();
        let mut after = before.clone();
        *after
            .get_mut("master/phase/placement/ms")
            .expect("placement ms") += 12.5;
        *after
            .get_mut("master/phase/placement/count")
            .expect("placement count") += 2.0;
        let d = delta(|k| before.get(k).copied(), |k| after.get(k).copied());
        let placement = d.iter().find(|(n, _, _)| *n == "placement").expect("row");
        assert_eq!((placement.1, placement.2), (2.0, 12.5));
        let other = d.iter().find(|(n, _, _)| *n == "offers").expect("row");
        assert_eq!((other.1, other.2), (0.0, 0.0));
    }
}
