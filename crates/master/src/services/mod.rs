//! The services scheduler runtime (Marathon `/v2`): the imperative shell around the pure
//! [`meseta_services::engine::Engine`].
//!
//! ```text
//!  HTTP /v2/* ── closure over &mut Engine ──┐
//!                                           ▼
//!  store /meseta/services/* ◀── save ── runtime task (owns Engine) ── ACCEPT/KILL/… ──▶ Master
//!  SSE /v2/events ◀── broadcast ──┘               ▲                                    │
//!                                                 └──── offers, status updates ────────┘
//! ```
//!
//! Like the jobs scheduler it is a framework of the master (`marathon`, subscribed in-process,
//! PARTITION_AWARE). HTTP handlers send a closure to the one task owning the engine; the reply
//! is released only after the store writes the change caused have committed, and before any
//! task is launched its instance record is written (so a restarted master never launches an
//! instance twice).

mod readiness;
mod runtime;
mod store;

use std::sync::Arc;

use meseta_services::engine::Engine;
use tokio::sync::{broadcast, mpsc, oneshot};

pub(crate) use runtime::start;

/// The framework name (what Marathon registers as).
pub(crate) const FRAMEWORK_NAME: &str = "marathon";

/// How many requests may wait for the runtime.
const COMMAND_QUEUE: usize = 256;
/// Events buffered for slow `/v2/events` readers before they lag.
const EVENT_BUFFER: usize = 1024;

/// A Marathon event, serialized once for every `/v2/events` reader.
#[derive(Debug)]
pub(crate) struct MarathonEvent {
    /// `eventType`.
    pub kind: String,
    /// The JSON text.
    pub data: String,
}

/// Work for the runtime: runs on the engine, returns what to do once the change is persisted.
pub(crate) type Job = Box<dyn FnOnce(&mut Engine, f64) -> Box<dyn FnOnce() + Send> + Send>;

/// The services scheduler is not running (master shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the services scheduler is not running")]
pub(crate) struct Unavailable;

/// What HTTP handlers hold.
#[derive(Clone)]
pub(crate) struct ServicesHandle {
    tx: mpsc::Sender<Job>,
    events: broadcast::Sender<Arc<MarathonEvent>>,
}

impl ServicesHandle {
    fn channel() -> (ServicesHandle, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        (ServicesHandle { tx, events }, rx)
    }

    /// Run `f` on the engine; the answer comes after what it changed is persisted.
    pub(crate) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine, f64) -> R + Send + 'static,
    ) -> Result<R, Unavailable> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |e, now| {
            let r = f(e, now);
            Box::new(move || {
                let _ = tx.send(r);
            })
        });
        self.tx.send(job).await.map_err(|_| Unavailable)?;
        rx.await.map_err(|_| Unavailable)
    }

    /// Watch Marathon events.
    pub(crate) fn subscribe_events(&self) -> broadcast::Receiver<Arc<MarathonEvent>> {
        self.events.subscribe()
    }

    /// Publish an event (serialized only when someone listens).
    pub(crate) fn publish(&self, event: serde_json::Value) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let kind = event["eventType"].as_str().unwrap_or("").to_owned();
        let data = serde_json::to_string(&event).unwrap_or_default();
        let _ = self.events.send(Arc::new(MarathonEvent { kind, data }));
    }
}
