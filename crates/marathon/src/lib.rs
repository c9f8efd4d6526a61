//! The built-in Marathon: the services scheduler as a framework on the kit
//! ([`meseta_framework`]), over the pure [`meseta_services`] engine, with Marathon's `/v2` HTTP
//! API and its store records.
//!
//! ```text
//!  HTTP /v2/* ── closure over &mut Engine (ServicesHandle::call) ──┐
//!                                                                  ▼
//!  store /meseta/services/* ◀── Persist ── Services (on the kit session) ── ACCEPT/KILL/… ──▶ Master
//!  SSE /v2/events ◀── Publish ──┘          ▲              ▲                                  │
//!  readiness probes ── mark_ready ─────────┘              └──── offers, status updates ──────┘
//! ```
//!
//! It is a framework of the master like any other (`marathon`, subscribed in-process,
//! PARTITION_AWARE) and talks to it only through the framework contract and the master's read
//! API. HTTP handlers send a closure to the one session task owning the engine; the reply is
//! released only after the store writes the change caused have committed, and before any task
//! is launched its instance record is written (so a restarted master never launches an
//! instance twice).
//!
//! - `handle.rs`: [`ServicesHandle`], what the handlers hold
//! - `runtime.rs`: the [`meseta_framework::Scheduler`] over the engine
//! - `readiness.rs`: readiness probes
//! - `store.rs`: apps, instances, deployments under `/meseta/services/`
//! - `http/`: the `/v2` API
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod handle;
mod http;
mod readiness;
mod runtime;
mod store;

use std::time::SystemTime;

use axum::Router;
use meseta_master::Master;
use tokio_util::sync::CancellationToken;

pub use handle::{Job, ServicesHandle, Unavailable};

/// The framework name (what Marathon registers as).
pub const FRAMEWORK_NAME: &str = "marathon";

/// Unix seconds, the engine's clock.
pub(crate) fn secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> f64 {
    secs(SystemTime::now())
}

/// Start the services scheduler against `master` (until `cancel`) and return the `/v2` routes.
/// The routes answer 503 if the scheduler cannot load its state.
pub fn start(master: &Master, cancel: &CancellationToken) -> Router {
    let (kit, inbox) = meseta_framework::channel("services");
    let services = ServicesHandle::new(kit);
    tokio::spawn(runtime::run(master.clone(), inbox, cancel.clone()));
    tokio::spawn(readiness::run(
        services.clone(),
        master.http_client().clone(),
        cancel.clone(),
    ));
    http::routes().with_state(http::Marathon {
        master: master.clone(),
        services,
    })
}
