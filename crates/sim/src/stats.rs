//! Counters and launch records shared by every simulated agent of a [`crate::SimCluster`].
//!
//! Agents bump lock-free counters; each `LaunchTask` received is also recorded with its receive
//! time (the benchmarks derive start delays from them). Records are capped at [`MAX_RECORDS`] so
//! a long-running `meseta sim agents` cannot grow without bound.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use meseta_types::TaskId;
use serde::Serialize;

/// Most launch records kept; later launches are only counted (see [`SimStats::records_dropped`]).
pub const MAX_RECORDS: usize = 1_000_000;

/// One `LaunchTask` as a simulated agent received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchRecord {
    /// The launched task.
    pub task_id: TaskId,
    /// Host name of the simulated agent that received it.
    pub agent: String,
    /// When the agent decoded the launch.
    pub received_at: SystemTime,
}

/// A snapshot of what the simulated agents did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// Simulated agents in the cluster.
    pub agents: usize,
    /// Agents currently registered with the master.
    pub connected: usize,
    /// `LaunchTask` messages received.
    pub launches: u64,
    /// Tasks in `TASK_RUNNING` now.
    pub running: u64,
    /// Tasks that ended `TASK_FINISHED`.
    pub finished: u64,
    /// Tasks that ended `TASK_FAILED`.
    pub failed: u64,
    /// Tasks that ended `TASK_KILLED`.
    pub killed: u64,
    /// Status updates sent and not yet acknowledged by the master.
    pub unacked: u64,
    /// Launches not recorded because [`MAX_RECORDS`] records were held.
    pub records_dropped: u64,
}

/// The state shared between agents and the cluster handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) agents: usize,
    pub(crate) connected: AtomicUsize,
    pub(crate) launches: AtomicU64,
    pub(crate) running: AtomicU64,
    pub(crate) finished: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) killed: AtomicU64,
    pub(crate) unacked: AtomicU64,
    records_dropped: AtomicU64,
    records: Mutex<Vec<LaunchRecord>>,
}

impl Shared {
    pub(crate) fn new(agents: usize) -> Shared {
        Shared {
            agents,
            ..Shared::default()
        }
    }

    /// Counts a launch and records it (unless the record buffer is full).
    pub(crate) fn record_launch(&self, record: LaunchRecord) {
        self.launches.fetch_add(1, Ordering::Relaxed);
        let mut records = self.lock_records();
        if records.len() < MAX_RECORDS {
            records.push(record);
        } else {
            self.records_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> SimStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SimStats {
            agents: self.agents,
            connected: self.connected.load(Ordering::Relaxed),
            launches: get(&self.launches),
            running: get(&self.running),
            finished: get(&self.finished),
            failed: get(&self.failed),
            killed: get(&self.killed),
            unacked: get(&self.unacked),
            records_dropped: get(&self.records_dropped),
        }
    }

    pub(crate) fn launches(&self) -> Vec<LaunchRecord> {
        self.lock_records().clone()
    }

    pub(crate) fn take_launches(&self) -> Vec<LaunchRecord> {
        std::mem::take(&mut *self.lock_records())
    }

    fn lock_records(&self) -> std::sync::MutexGuard<'_, Vec<LaunchRecord>> {
        // A panic while pushing leaves a valid Vec: keep using it.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> LaunchRecord {
        LaunchRecord {
            task_id: TaskId::new(format!("t{i}")),
            agent: "a".into(),
            received_at: SystemTime::now(),
        }
    }

    #[test]
    fn launches_are_counted_recorded_and_taken() {
        let s = Shared::new(3);
        s.record_launch(rec(1));
        s.record_launch(rec(2));
        let snap = s.snapshot();
        assert_eq!((snap.agents, snap.launches), (3, 2));
        assert_eq!(s.launches().len(), 2);
        let taken = s.take_launches();
        assert_eq!(taken[1].task_id.as_str(), "t2");
        assert!(s.launches().is_empty());
        assert_eq!(s.snapshot().launches, 2, "taking records keeps the count");
    }
}
