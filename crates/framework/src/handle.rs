//! The client side of a running scheduler: [`Handle`] sends it requests, watches the events it
//! publishes and tells its current framework id. [`channel`] makes a handle and the [`Inbox`]
//! the session reads, so a handle exists (and can be put into an HTTP router) before the
//! scheduler has even loaded its state.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// How many requests may wait for the scheduler before senders wait too.
const REQUEST_QUEUE: usize = 256;
/// Events buffered for slow readers before they lag (a 10,000-instance deployment publishes
/// about 30,000 in two seconds). A lagging reader's event stream ends.
const EVENT_BUFFER: usize = 4096;

/// The scheduler is not running (the master is shutting down, or its state did not load).
#[derive(Debug, thiserror::Error)]
#[error("the {0} scheduler is not running")]
pub struct Unavailable(pub String);

/// An event a scheduler published, serialized once for every reader.
#[derive(Debug)]
pub struct Published {
    /// Its kind.
    pub kind: String,
    /// The JSON text.
    pub data: String,
}

/// A client's end of a scheduler.
pub struct Handle<R> {
    name: String,
    tx: mpsc::Sender<R>,
    events: broadcast::Sender<Arc<Published>>,
    framework_id: watch::Receiver<Option<String>>,
}

impl<R> Clone for Handle<R> {
    fn clone(&self) -> Self {
        Handle {
            name: self.name.clone(),
            tx: self.tx.clone(),
            events: self.events.clone(),
            framework_id: self.framework_id.clone(),
        }
    }
}

/// The session's end: requests to read, events to publish, the framework id to announce.
pub struct Inbox<R> {
    pub(crate) rx: mpsc::Receiver<R>,
    pub(crate) events: broadcast::Sender<Arc<Published>>,
    pub(crate) framework_id: watch::Sender<Option<String>>,
}

/// A handle for the scheduler called `name` and the inbox its session reads.
pub fn channel<R>(name: &str) -> (Handle<R>, Inbox<R>) {
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let (fw_tx, fw_rx) = watch::channel(None);
    let handle = Handle {
        name: name.to_string(),
        tx,
        events: events.clone(),
        framework_id: fw_rx,
    };
    let inbox = Inbox {
        rx,
        events,
        framework_id: fw_tx,
    };
    (handle, inbox)
}

impl<R: Send + 'static> Handle<R> {
    /// Send a request built around a reply channel and wait for the reply.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> R,
    ) -> Result<T, Unavailable> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| self.unavailable())?;
        rx.await.map_err(|_| self.unavailable())
    }

    /// Send a request without waiting for an answer.
    pub async fn send(&self, request: R) -> Result<(), Unavailable> {
        self.tx.send(request).await.map_err(|_| self.unavailable())
    }

    /// Watch the events the scheduler publishes from now on.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<Published>> {
        self.events.subscribe()
    }

    /// Publish an event on the scheduler's stream from outside it (serialized only when
    /// somebody listens).
    pub fn publish(&self, kind: String, data: &serde_json::Value) {
        publish(&self.events, kind, data);
    }

    /// The framework id of the current (or last) subscription, if any.
    pub fn framework_id(&self) -> Option<String> {
        self.framework_id.borrow().clone()
    }

    fn unavailable(&self) -> Unavailable {
        Unavailable(self.name.clone())
    }
}

impl<R> Inbox<R> {
    /// Publish an event when somebody listens.
    pub(crate) fn publish(&self, kind: String, data: &serde_json::Value) {
        publish(&self.events, kind, data);
    }
}

fn publish(events: &broadcast::Sender<Arc<Published>>, kind: String, data: &serde_json::Value) {
    if events.receiver_count() == 0 {
        return;
    }
    let _timer = meseta_phases::time(meseta_phases::Phase::Events);
    let data = serde_json::to_string(data).unwrap_or_default();
    let _ = events.send(Arc::new(Published { kind, data }));
}
