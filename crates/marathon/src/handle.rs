//! What the `/v2` handlers hold: [`ServicesHandle`], the client end of the services scheduler.
//! A request is a closure run on the [`Engine`] by the one session task that owns it; its
//! answer is released only after the store writes the change caused have committed.

use std::sync::Arc;

use meseta_framework::{Handle, Published};
use meseta_services::engine::Engine;
use tokio::sync::broadcast;

pub use meseta_framework::Unavailable;

/// Work for the scheduler: runs on the engine at `now` (Unix seconds), returns what to do once
/// the change is persisted.
pub type Job = Box<dyn FnOnce(&mut Engine, f64) -> Box<dyn FnOnce() + Send> + Send>;

/// A Marathon event's `eventType` (what `/v2/events` readers filter on).
pub(crate) fn event_type(event: &serde_json::Value) -> String {
    event["eventType"].as_str().unwrap_or("").to_owned()
}

/// What HTTP handlers hold.
#[derive(Clone)]
pub struct ServicesHandle {
    kit: Handle<Job>,
}

impl ServicesHandle {
    pub(crate) fn new(kit: Handle<Job>) -> ServicesHandle {
        ServicesHandle { kit }
    }

    /// Run `f` on the engine; the answer comes after what it changed is persisted.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine, f64) -> R + Send + 'static,
    ) -> Result<R, Unavailable> {
        self.kit
            .ask(|tx| -> Job {
                Box::new(move |e, now| {
                    let r = f(e, now);
                    Box::new(move || {
                        let _ = tx.send(r);
                    })
                })
            })
            .await
    }

    /// Watch Marathon events (`kind` is the `eventType`).
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<Published>> {
        self.kit.subscribe_events()
    }

    /// Publish a Marathon event (its `eventType` is its kind).
    pub fn publish(&self, event: serde_json::Value) {
        self.kit.publish(event_type(&event), &event);
    }

    /// The id of the `marathon` framework, once it subscribed.
    pub fn framework_id(&self) -> Option<String> {
        self.kit.framework_id()
    }
}
