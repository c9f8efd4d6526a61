//! The WebSocket life of one simulated agent: connect, register, serve master messages, fire
//! task timers, heartbeat, resend unacknowledged updates, reconnect with backoff.
//!
//! Each agent is one tokio task on the caller's runtime; its timers live in a `FuturesUnordered`
//! owned by that task, so an agent costs one socket, one task and a few small buffers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, SplitSink, SplitStream};
use futures::{FutureExt, SinkExt, StreamExt};
use meseta_api::agent::{AgentMessage, MasterMessage};
use meseta_types::TaskId;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{interval, Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::agent::{AgentState, Step, Timer};
use crate::SimError;

/// Bound on connecting and being answered `Registered`.
pub(crate) const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Period of resending unacknowledged updates.
const RESEND_INTERVAL: Duration = Duration::from_secs(10);
/// First reconnect delay.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Largest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(3);
/// Most received frames handled before the updates they caused are sent.
const BURST_FRAMES: usize = 256;
/// Bytes of outgoing frames gathered before they are written without waiting for the flush:
/// the updates of one burst leave in one write.
const WRITE_BUFFER: usize = 8 * 1024;
/// Connection attempts of the first registration before `SimCluster::start` gives up.
const FIRST_ATTEMPTS: u32 = 3;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type TimerFuture = Pin<Box<dyn Future<Output = Fired> + Send>>;

/// A timer that went off.
struct Fired {
    task_id: TaskId,
    generation: u64,
    step: Step,
}

/// How a served connection ended.
enum Ended {
    Shutdown,
    Lost(String),
}

/// Everything one agent task owns.
pub(crate) struct AgentTask {
    pub(crate) state: AgentState,
    pub(crate) url: Arc<str>,
    /// The TLS connector of a `wss` master.
    connector: Option<tokio_tungstenite::Connector>,
    pub(crate) cancel: CancellationToken,
    timers: FuturesUnordered<TimerFuture>,
}

impl AgentTask {
    pub(crate) fn new(
        state: AgentState,
        url: Arc<str>,
        connector: Option<tokio_tungstenite::Connector>,
        cancel: CancellationToken,
    ) -> AgentTask {
        AgentTask {
            state,
            url,
            connector,
            cancel,
            timers: FuturesUnordered::new(),
        }
    }

    /// Registers (reporting the outcome on `ready`, releasing `permit` then), then serves and
    /// reconnects until cancelled.
    pub(crate) async fn run(
        mut self,
        ready: oneshot::Sender<Result<(), SimError>>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let first = self.first_registration().await;
        drop(permit);
        let (ws, heartbeat) = match first {
            Ok(Some(connected)) => connected,
            Ok(None) => {
                let _ = ready.send(Ok(()));
                return;
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let mut next = Some((ws, heartbeat));
        let mut backoff = BACKOFF_MIN;
        loop {
            if let Some((ws, hb)) = next.take() {
                match self.serve(ws, hb).await {
                    Ended::Shutdown => return,
                    Ended::Lost(why) => {
                        tracing::warn!(agent = self.state.hostname(), reason = %why, "disconnected");
                        backoff = BACKOFF_MIN;
                    }
                }
            }
            if !self.wait(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            match self.connect_and_register().await {
                Ok(c) => next = Some(c),
                Err(SimError::Rejected { message, .. }) => {
                    tracing::error!(agent = self.state.hostname(), %message, "rejected");
                    return;
                }
                Err(e) => {
                    tracing::debug!(agent = self.state.hostname(), error = %e, "reconnect failed")
                }
            }
        }
    }

    /// `Ok(None)` when cancelled meanwhile.
    async fn first_registration(&mut self) -> Result<Option<(Ws, Duration)>, SimError> {
        let mut attempt = 1;
        let cancel = self.cancel.clone();
        loop {
            let result = tokio::select! {
                r = self.connect_and_register() => r,
                () = cancel.cancelled() => return Ok(None),
            };
            match result {
                Ok(c) => return Ok(Some(c)),
                Err(e @ SimError::Rejected { .. }) => return Err(e),
                Err(e) if attempt >= FIRST_ATTEMPTS => return Err(e),
                Err(_) => attempt += 1,
            }
            if !self.wait(BACKOFF_MIN * attempt).await {
                return Ok(None);
            }
        }
    }

    /// Sleeps `d` while still firing task timers; false when cancelled.
    async fn wait(&mut self, d: Duration) -> bool {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                () = self.cancel.cancelled() => return false,
                Some(f) = self.timers.next(), if !self.timers.is_empty() => {
                    self.state.on_timer(&f.task_id, f.generation, f.step);
                    self.arm_timers();
                    // Not connected: the updates stay pending for the next registration.
                    self.state.take_outbox();
                }
            }
        }
    }

    /// Connects, sends `Register` and waits for `Registered`; returns the socket and the
    /// heartbeat period.
    async fn connect_and_register(&mut self) -> Result<(Ws, Duration), SimError> {
        let agent = self.state.hostname().to_string();
        let fail = |reason: String| SimError::Connect {
            agent: agent.clone(),
            url: self.url.to_string(),
            reason,
        };
        let attempt = async {
            let config = WebSocketConfig::default()
                .read_buffer_size(8 * 1024)
                .write_buffer_size(WRITE_BUFFER);
            let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
                &*self.url,
                Some(config),
                true,
                self.connector.clone(),
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
            let register = encode(&self.state.register_message());
            ws.send(register).await.map_err(|e| fail(e.to_string()))?;
            loop {
                let text = match ws.next().await {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => {
                        return Err(fail("closed by master".into()))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(fail(e.to_string())),
                };
                match serde_json::from_str::<MasterMessage>(text.as_str()) {
                    Ok(MasterMessage::Registered {
                        agent_id,
                        heartbeat_interval_secs,
                        ..
                    }) => {
                        self.state.on_registered(agent_id);
                        return Ok((ws, heartbeat_period(heartbeat_interval_secs)));
                    }
                    Ok(MasterMessage::Rejected { message }) => {
                        return Err(SimError::Rejected {
                            agent: agent.clone(),
                            message,
                        })
                    }
                    Ok(other) => tracing::debug!(?other, "ignoring message before Registered"),
                    Err(e) => return Err(fail(format!("undecodable master message: {e}"))),
                }
            }
        };
        match tokio::time::timeout(REGISTER_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(fail(format!("not registered within {REGISTER_TIMEOUT:?}"))),
        }
    }

    /// Serves one registered connection until it is lost or the cluster shuts down.
    async fn serve(&mut self, ws: Ws, heartbeat: Duration) -> Ended {
        let (mut sink, mut stream) = ws.split();
        let mut hb = interval_after(heartbeat);
        let mut resend = interval_after(RESEND_INTERVAL);
        let ended = loop {
            // Updates resent at registration (and anything else queued) go out first.
            if let Err(why) = self.flush_outbox(&mut sink).await {
                break Ended::Lost(why);
            }
            tokio::select! {
                () = self.cancel.cancelled() => {
                    let _ = sink.send(Message::Close(None)).await;
                    break Ended::Shutdown;
                }
                frame = stream.next() => {
                    if let Some(ended) = self.on_frames(frame, &mut stream) {
                        break ended;
                    }
                }
                Some(f) = self.timers.next(), if !self.timers.is_empty() => {
                    self.state.on_timer(&f.task_id, f.generation, f.step);
                }
                _ = hb.tick() => self.state.heartbeat(),
                _ = resend.tick() => self.state.resend_pending(),
            }
            self.arm_timers();
        };
        self.state.on_disconnected();
        ended
    }

    /// Handles `frame` and then every frame already received (at most [`BURST_FRAMES`]), so
    /// that the updates they cause leave together; `Some` when the connection ended.
    fn on_frames(
        &mut self,
        frame: Option<Result<Message, WsError>>,
        stream: &mut SplitStream<Ws>,
    ) -> Option<Ended> {
        let mut frame = Some(frame);
        let mut handled = 0;
        while let Some(f) = frame.take() {
            match f {
                Some(Ok(Message::Text(text))) => self.handle(text.as_str()),
                Some(Ok(Message::Close(_))) | None => {
                    return Some(Ended::Lost("closed by master".into()))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Some(Ended::Lost(e.to_string())),
            }
            handled += 1;
            if handled < BURST_FRAMES {
                frame = stream.next().now_or_never();
            }
        }
        None
    }

    async fn flush_outbox(&mut self, sink: &mut SplitSink<Ws, Message>) -> Result<(), String> {
        let out = self.state.take_outbox();
        if out.is_empty() {
            return Ok(());
        }
        for msg in out {
            sink.feed(encode(&msg)).await.map_err(|e| e.to_string())?;
        }
        sink.flush().await.map_err(|e| e.to_string())
    }

    fn handle(&mut self, text: &str) {
        let msg = match serde_json::from_str::<MasterMessage>(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring undecodable master message");
                return;
            }
        };
        match msg {
            MasterMessage::LaunchTask(spec) => self.state.on_launch(*spec),
            MasterMessage::LaunchGroup { tasks } => {
                for spec in tasks {
                    self.state.on_launch(spec);
                }
            }
            MasterMessage::KillTask { task_id, .. } => self.state.on_kill(&task_id),
            MasterMessage::Acknowledge { task_id, uuid } => {
                self.state.on_acknowledge(&task_id, &uuid)
            }
            MasterMessage::Registered { .. } | MasterMessage::Rejected { .. } => {
                tracing::debug!("ignoring a second registration answer")
            }
            // Simulated agents keep no files: there is no volume directory to delete.
            MasterMessage::DestroyVolume { .. } => {}
            // Simulated tasks of a custom executor run in the simulated agent itself: there is
            // no executor process to message or shut down.
            MasterMessage::FrameworkMessage { .. }
            | MasterMessage::ShutdownExecutor { .. }
            | MasterMessage::ShutdownFramework { .. } => {}
        }
    }

    fn arm_timers(&mut self) {
        for Timer {
            after,
            task_id,
            generation,
            step,
        } in self.state.take_timers()
        {
            self.timers.push(Box::pin(async move {
                tokio::time::sleep(after).await;
                Fired {
                    task_id,
                    generation,
                    step,
                }
            }));
        }
    }
}

fn heartbeat_period(secs: f64) -> Duration {
    if secs.is_finite() && secs > 0.0 {
        Duration::from_secs_f64(secs.clamp(0.05, 3600.0))
    } else {
        Duration::from_secs(5)
    }
}

fn encode(msg: &AgentMessage) -> Message {
    match serde_json::to_string(msg) {
        Ok(text) => Message::text(text),
        Err(e) => {
            // Our own wire types have string keys only; this cannot happen.
            tracing::error!(error = %e, "cannot encode an agent message");
            Message::text("{}")
        }
    }
}

fn interval_after(period: Duration) -> Interval {
    let mut i = interval(period);
    i.reset_at(Instant::now() + period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_period_is_sane() {
        assert_eq!(heartbeat_period(2.0), Duration::from_secs(2));
        assert_eq!(heartbeat_period(0.0), Duration::from_secs(5));
        assert_eq!(heartbeat_period(f64::NAN), Duration::from_secs(5));
        assert_eq!(heartbeat_period(0.001), Duration::from_millis(50));
    }
}
