//! Marathon-compatible services (issue 3) as a pure library: no I/O, no clock, no randomness.
//!
//! Used by the built-in Marathon (`meseta-marathon`: `/v2` endpoints, deployments) and by tests.
//!
//! - [`path`]: app path ids (`/group/app`): parsing, canonical form, Mesos-safe form.
//! - [`validate`]: checks an [`AppDefinition`](meseta_api::marathon::AppDefinition), returning
//!   every violation as Marathon `details`, and normalizes it into an [`App`](meseta_api::marathon::App).
//! - [`constraints`]: may an offer from an agent take one more instance of an app, and if not, why.
//! - [`plan`]: deployment plans (start/scale/restart/stop steps) and the rolling-restart step
//!   function honouring `upgradeStrategy`.
//! - [`pod`]: pod definitions (`/v2/pods`) parsed strictly and validated, every violation with
//!   its Marathon path.
//! - [`group`]: application groups: `GroupUpdate` bodies resolved into apps, dependency levels
//!   and cycle detection, and the plan of a group change.
//!
//! See `README.md` for the planner's state machine.
#![forbid(unsafe_code)]

pub mod constraints;
pub mod engine;
pub mod group;
pub mod path;
pub mod plan;
pub mod pod;
pub mod secrets;
pub mod validate;

#[cfg(test)]
mod test_support;
