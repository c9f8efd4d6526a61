//! The jobs scheduler's HTTP edge: Chronos (`/scheduler/*`, `/v1/scheduler/*`, `/ping`) and
//! Metronome (`/v1/jobs`). Handlers parse one request into one [`JobsHandle`] call and render the
//! answer in their API's shapes.
//!
//! - `chronos.rs`: the Chronos 2/3 API (what `chronos-python` and `meseta job` use)
//! - `metronome.rs`: the Metronome `/v1/jobs` API

mod chronos;
mod metronome;

use axum::Router;
use meseta_master::Master;

use crate::JobsHandle;

/// What every handler gets: the scheduler's handle and the master (for the leader address).
#[derive(Clone)]
pub(crate) struct Chronos {
    /// The master the scheduler runs against.
    pub master: Master,
    /// The jobs scheduler (a stopped one answers every call with `JobsError::Unavailable`,
    /// which each API renders as its 503).
    pub jobs: JobsHandle,
}

/// The Chronos and Metronome routes.
pub(crate) fn routes() -> Router<Chronos> {
    chronos::routes().merge(metronome::routes())
}
