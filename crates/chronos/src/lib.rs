//! The built-in Chronos: the jobs scheduler as a framework on the kit ([`meseta_framework`]),
//! over the pure [`meseta_jobs`] planner, with the Chronos and Metronome HTTP APIs and its store
//! records.
//!
//! ```text
//!  HTTP (/scheduler/*, /v1/scheduler/*, /v1/jobs) ── JobsCommand + oneshot ──┐
//!                                                                           ▼
//!  store /meseta/jobs/<name> ◀── Persist ── Jobs (on the kit session) ── ACCEPT/KILL/… ──▶ Master
//!                                                     ▲                                    │
//!                                                     └──── offers, status updates ────────┘
//! ```
//!
//! It is a framework of the master like any external one: it subscribes in-process as
//! `meseta-jobs`, launches runs on offers, and the kit acknowledges its status updates. One
//! session task owns the [`Planner`](meseta_jobs::planner::Planner); the HTTP handlers send it
//! one `JobsCommand` each and wait for the reply, which comes only after the store writes the
//! command caused have completed.
//!
//! - `handle.rs`: the handle, commands, errors and job views the handlers use
//! - `runtime.rs`: the [`meseta_framework::Scheduler`] over the planner; `requests.rs`: its
//!   request side
//! - `launch.rs`: runs → tasks, first-fit onto offers; `store.rs`: the job records
//! - `view.rs`: statistics shapes; `http/`: the Chronos and Metronome APIs
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod handle;
mod http;
mod launch;
mod requests;
mod runtime;
mod store;
mod view;

use axum::Router;
use meseta_master::Master;
use tokio_util::sync::CancellationToken;

pub(crate) use handle::{CreateKind, JobView, JobsCommand, JobsError, JobsHandle};
pub use runtime::FRAMEWORK_NAME;

/// Start the jobs scheduler against `master` (until `cancel`) and return the Chronos and
/// Metronome routes. The routes answer 503 if the scheduler cannot load its jobs.
pub fn start(master: &Master, cancel: &CancellationToken) -> Router {
    let (kit, inbox) = meseta_framework::channel("jobs");
    let jobs = JobsHandle::new(kit);
    tokio::spawn(runtime::run(master.clone(), inbox, cancel.clone()));
    http::routes().with_state(http::Chronos {
        master: master.clone(),
        jobs,
    })
}
