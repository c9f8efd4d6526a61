//! The master's operator changes as one command enum ([`Command`]), and the error every change
//! answers with ([`CommandError`]). HTTP handlers (v0 and the v1 operator API) parse and validate
//! their request into one `Command`; `persist.rs` applies it to the core and persists it. Plain
//! data: this module imports no other module of the crate.

use meseta_allocator::{Quota, ResourceOp};
use meseta_api::maintenance::{MachineId, Schedule};
use meseta_types::{AgentId, FrameworkId};

/// One change an operator asks of the master.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Command {
    /// Reserve, unreserve, create or destroy volumes on an agent's free resources.
    Resources { agent: AgentId, op: ResourceOp },
    /// Set role weights (all or nothing).
    Weights(Vec<(String, f64)>),
    /// Set (`Some`) or remove (`None`) a role's quota; `force` skips the capacity check.
    Quota {
        role: String,
        quota: Option<Quota>,
        force: bool,
    },
    /// Remove a role's quota; refused when it has none.
    RemoveQuota(String),
    /// Set several quotas: all apply, or none.
    Quotas {
        configs: Vec<(String, Quota)>,
        force: bool,
    },
    /// A maintenance change.
    Maintenance(MaintenanceChange),
    /// Remove a framework: kill its tasks, withdraw its offers.
    Teardown(FrameworkId),
}

/// A maintenance change.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum MaintenanceChange {
    /// Replace the schedule.
    Schedule(Schedule),
    /// Machines go down.
    Down(Vec<MachineId>),
    /// Machines come back up.
    Up(Vec<MachineId>),
}

/// Why a change was refused or not kept; the HTTP edge answers 400, 409 or 503.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub(crate) enum CommandError {
    /// Malformed or invalid request (400).
    #[error("{0}")]
    Invalid(String),
    /// The resources are not available, or not reserved / still in use (409).
    #[error("{0}")]
    Conflict(String),
    /// Applied, but the store refused it (503): undone, or kept to be stored again.
    #[error("{0}")]
    NotStored(String),
}
