//! The meseta allocator: weighted hierarchical DRF over roles and frameworks, with quota
//! guarantees and limits, reservations, offer filters, suppress/revive, capability gates (GPU,
//! fault-domain region) and maintenance inverse offers.
//!
//! The master (`crates/master/src/allocator.rs`) owns one [`Allocator`], feeds it agent, framework
//! and role events, and turns each [`Cycle`] returned by [`Allocator::allocate`] into offers and
//! inverse offers. The crate is pure: no I/O, no clock (time is passed in as `now`), no
//! randomness. See `README.md` for the state machine.

#![forbid(unsafe_code)]

mod accounting;
mod agents;
mod allocator;
mod chop;
mod cycle;
mod dirty;
mod ops;
mod qty;
mod resource_op;
mod roles;
mod sorter;
mod types;

pub use allocator::{validate_weight, Allocator, MAX_WEIGHT};
pub use resource_op::ResourceOp;
pub use roles::validate_role;
pub use types::{
    AgentInfo, Allocation, AllocatorConfig, AllocatorError, Cycle, FaultDomain, FrameworkInfo,
    InverseOffer, Quota, RoleInfo, Unavailability,
};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod dirty_tests;

#[cfg(test)]
mod proptests;
