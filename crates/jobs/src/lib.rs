//! `meseta-jobs`: a Chronos-compatible job scheduler written as a pure planner.
//!
//! Used by the built-in Chronos (`meseta-chronos`: timers, store, launching, HTTP endpoints) and
//! the CLI.
//! Nothing here does I/O, reads a clock or draws random numbers: time comes in and goes out as
//! [`jiff::Timestamp`], and every decision comes back as a [`planner::Command`] for the runtime.
//!
//! - [`schedule`]: ISO 8601 repeating intervals and cron expressions.
//! - [`job`]: the validated job ([`job::JobSpec`]) and the Chronos JSON conversion.
//! - [`planner`]: the state machine (due runs, epsilon, overlap, retries, fan-in, graph).
//! - [`queue`]: runs waiting for an offer, epsilon expiry, `maxCompletionTime` deadlines.
//! - [`stats`]: run-duration order statistics.
#![forbid(unsafe_code)]

pub mod job;
pub mod planner;
pub mod queue;
pub mod schedule;
pub mod stats;

pub use job::{FieldError, JobSpec};
pub use planner::{Command, JobState, Planner, PlannerError, RunId, RunOutcome, RunRecord};
pub use schedule::{Schedule, ScheduleError};
pub use stats::Stats;
