//! Plain data of the master's operations state: dynamic reservations by agent, the executors of
//! LAUNCH_GROUP tasks and the custom executors (`executors.rs`), and the maintenance schedule with its live inverse-offer bookkeeping.
//!
//! Held by [`Core`](crate::core::Core) in its `ops` field; changed by `ops.rs` (reservations and
//! volumes), `scheduler_ops.rs` (executors) and `maintenance.rs`; persisted through `persist.rs`.
//! This module imports no other module of the crate.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use meseta_api::maintenance::{MachineId, Schedule, WindowTime};
use meseta_types::{AgentId, FrameworkId, Resources, TaskId};
use serde::{Deserialize, Serialize};

/// Master-side state of operations.
#[derive(Default)]
pub(crate) struct OpsState {
    /// Dynamically reserved resources (role-labelled, persistent volumes among them) by agent.
    pub reservations: BTreeMap<AgentId, Resources>,
    /// The reservations changed since they were last persisted.
    pub reservations_dirty: bool,
    /// Tasks launched by LAUNCH_GROUP, by (agent, executor id), for SHUTDOWN.
    pub executors: HashMap<(AgentId, String), Vec<TaskId>>,
    /// Custom executors running on agents, by (agent, framework, executor id): their resources
    /// are counted once, from their first task's launch until the agent reports them ended.
    pub custom_executors: HashMap<(AgentId, FrameworkId, String), ExecutorRecord>,
    /// Maintenance schedule, down machines, inverse offers (see `maintenance.rs`).
    pub maint: MaintState,
}

/// A custom executor the master accounts for.
#[derive(Clone, Debug)]
pub(crate) struct ExecutorRecord {
    /// What the agent was sent at its first task: its `ExecutorInfo` (with `framework_id`), to
    /// refuse a reused id with another one, and the spec every later task of it shares.
    pub spec: std::sync::Arc<meseta_api::agent::ExecutorSpec>,
    /// The role its resources were allocated in.
    pub role: String,
}

/// What is persisted of maintenance: the schedule and the machines that are down.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Persisted {
    pub schedule: Schedule,
    pub down: BTreeSet<MachineId>,
}

/// Live maintenance state.
#[derive(Default)]
pub(crate) struct MaintState {
    pub schedule: Schedule,
    pub down: BTreeSet<MachineId>,
    /// Inverse-offer answers by machine and framework: (ACCEPT|DECLINE|UNKNOWN, unix time).
    pub statuses: BTreeMap<MachineId, BTreeMap<FrameworkId, (&'static str, f64)>>,
    /// Outstanding inverse offers: id → (framework, agent).
    pub inverse: HashMap<String, (FrameworkId, AgentId)>,
    pub dirty: bool,
}

impl MaintState {
    pub fn restore(p: Persisted) -> MaintState {
        MaintState {
            schedule: p.schedule,
            down: p.down,
            ..MaintState::default()
        }
    }

    /// Every scheduled machine with its window.
    pub fn scheduled(&self) -> impl Iterator<Item = (&MachineId, &WindowTime)> {
        self.schedule
            .windows
            .iter()
            .flat_map(|w| w.machine_ids.iter().map(move |m| (m, &w.unavailability)))
    }
}
