//! The WebSocket connection to the master: find the leading master, register, dispatch master
//! commands, heartbeat, resend unacknowledged updates, reconnect forever with backoff.
//!
//! ```text
//!  round: last leader, then each listed master ──▶ connect ─▶ Register ─▶ Registered ─▶ serve loop
//!           │  307 on the handshake: follow Location (≤ 4 hops)           Rejected ──▶ stop
//!           │  503 / refused / closed before Registered: next master
//!           ▲
//!           └── backoff 200 ms … 3 s after a round without registering (200 ms after a
//!               registered connection ends, then again from the master it registered with)
//! ```
//!
//! Master commands are handed to [`crate::tasks`] which never blocks this loop (slow work runs in
//! tokio tasks). Outgoing messages arrive on an mpsc channel fed by [`Shared`].

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use meseta_api::agent::{AgentMessage, MasterMessage};
use tokio::sync::mpsc;
use tokio::time::{interval, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use crate::state::Shared;
use crate::{config, tasks, AgentError};

/// First reconnect delay.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Largest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(3);
/// Period of resending unacknowledged updates.
const RESEND_INTERVAL: Duration = Duration::from_secs(10);
/// Bound on the WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Redirects followed from one listed master before moving to the next.
const MAX_REDIRECTS: usize = 4;

/// How one connection ended.
enum Ended {
    /// Shutdown requested.
    Shutdown,
    /// Lost the connection (after registering or not).
    Disconnected { registered: bool, why: String },
    /// The handshake was redirected (a follower names the leader) to this WebSocket URL.
    Redirected(String),
}

/// How one attempt at a listed master (redirects followed) ended.
enum Attempt {
    /// Shutdown requested.
    Shutdown,
    /// Registered at `master`, then lost the connection.
    Lost { master: String, why: String },
    /// Never registered.
    Failed { why: String },
}

/// Connect, serve, reconnect until `cancel` fires or the master rejects us. `masters` are the
/// agent WebSocket URLs of the listed masters, tried in turn.
pub(crate) async fn run(
    shared: Arc<Shared>,
    masters: Vec<String>,
    cancel: CancellationToken,
) -> Result<(), AgentError> {
    let mut backoff = BACKOFF_MIN;
    let mut leader: Option<String> = None;
    loop {
        for start in round(&masters, leader.as_deref()) {
            match attempt(&shared, &start, &cancel).await? {
                Attempt::Shutdown => return Ok(()),
                Attempt::Lost { master, why } => {
                    tracing::warn!(%master, reason = %why, "disconnected from master");
                    leader = Some(master);
                    backoff = BACKOFF_MIN;
                    break;
                }
                Attempt::Failed { why } => {
                    tracing::debug!(master = %start, reason = %why, "connection attempt failed");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = cancel.cancelled() => return Ok(()),
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The masters of one round: the one last registered with first, then the listed ones in order.
fn round(masters: &[String], leader: Option<&str>) -> Vec<String> {
    let mut order: Vec<String> = leader.map(str::to_string).into_iter().collect();
    for m in masters {
        if Some(m.as_str()) != leader {
            order.push(m.clone());
        }
    }
    order
}

/// Try `start` and the masters its redirects name; `Err` only when a master rejected us.
async fn attempt(
    shared: &Arc<Shared>,
    start: &str,
    cancel: &CancellationToken,
) -> Result<Attempt, AgentError> {
    let mut url = start.to_string();
    for _ in 0..=MAX_REDIRECTS {
        match connect_and_serve(shared, &url, cancel).await {
            Ok(Ended::Shutdown) => return Ok(Attempt::Shutdown),
            Ok(Ended::Redirected(to)) => {
                tracing::debug!(from = %url, %to, "master redirected the agent");
                url = to;
            }
            Ok(Ended::Disconnected {
                registered: true,
                why,
            }) => return Ok(Attempt::Lost { master: url, why }),
            Ok(Ended::Disconnected {
                registered: false,
                why,
            }) => return Ok(Attempt::Failed { why }),
            Err(AgentError::Rejected(m)) => {
                tracing::error!(master = %url, message = %m, "master rejected the agent");
                return Err(AgentError::Rejected(m));
            }
            Err(e) => return Ok(Attempt::Failed { why: e.to_string() }),
        }
    }
    Ok(Attempt::Failed {
        why: format!("more than {MAX_REDIRECTS} redirects from {start}"),
    })
}

/// How a handshake refused with an HTTP answer ends: a redirect to follow, else a failure naming
/// the status and the answer's message.
fn refused(url: &str, resp: &tungstenite::http::Response<Option<Vec<u8>>>) -> Ended {
    let status = resp.status();
    if status.is_redirection() {
        let location = resp
            .headers()
            .get(tungstenite::http::header::LOCATION)
            .and_then(|v| v.to_str().ok());
        if let Some(to) = location.and_then(|l| config::redirect_target(url, l)) {
            return Ended::Redirected(to);
        }
        return Ended::Disconnected {
            registered: false,
            why: format!("{status} without a usable Location ({location:?})"),
        };
    }
    let body = resp
        .body()
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    Ended::Disconnected {
        registered: false,
        why: format!("handshake answered {status}: {message}"),
    }
}

/// Whether a connection failed in the TLS handshake (a certificate refused on either side).
fn is_tls_failure(e: &tungstenite::Error) -> bool {
    match e {
        tungstenite::Error::Tls(_) => true,
        tungstenite::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.is::<meseta_tls::tokio_rustls::rustls::Error>()),
        _ => false,
    }
}

/// The WebSocket handshake request to `url`, with the join token when there is one.
fn master_request(
    cfg: &crate::AgentConfig,
    url: &str,
) -> Result<tungstenite::http::Request<()>, String> {
    use tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    if let Some(token) = &cfg.join_token {
        let value = tungstenite::http::HeaderValue::from_str(token.trim())
            .map_err(|_| "the join token is not a valid header value".to_string())?;
        request
            .headers_mut()
            .insert(meseta_api::agent::JOIN_TOKEN_HEADER, value);
    }
    Ok(request)
}

/// One connection's lifetime.
async fn connect_and_serve(
    shared: &Arc<Shared>,
    url: &str,
    cancel: &CancellationToken,
) -> Result<Ended, AgentError> {
    let request = match master_request(&shared.cfg, url) {
        Ok(r) => r,
        Err(why) => {
            return Ok(Ended::Disconnected {
                registered: false,
                why,
            })
        }
    };
    // Without --ca-cert a wss master is verified against the system's roots (built here with
    // the ring provider: the process has no default rustls provider to fall back on).
    let config = match shared.cfg.master_tls.config() {
        Ok(Some(c)) => Ok(Some(c)),
        Ok(None) if url.starts_with("wss://") => {
            crate::http_client::tls_config(crate::http_client::Tls::Verify)
                .map(Some)
                .map_err(|e| e.to_string())
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    };
    let connector = match config {
        Ok(c) => c.map(tokio_tungstenite::Connector::Rustls),
        Err(why) => {
            return Ok(Ended::Disconnected {
                registered: false,
                why,
            })
        }
    };
    let connect = tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector);
    let ws = tokio::select! {
        r = tokio::time::timeout(CONNECT_TIMEOUT, connect) => match r {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(tungstenite::Error::Http(resp))) => {
                let ended = refused(url, &resp);
                if matches!(resp.status().as_u16(), 401 | 403) {
                    if let Ended::Disconnected { why, .. } = &ended {
                        tracing::error!(master = %url, %why, "master refused the agent (join token or client certificate)");
                    }
                }
                return Ok(ended);
            }
            Ok(Err(e)) if is_tls_failure(&e) => {
                tracing::error!(master = %url, error = %e, "TLS handshake with the master failed");
                return Ok(Ended::Disconnected { registered: false, why: e.to_string() });
            }
            Ok(Err(e)) => return Ok(Ended::Disconnected { registered: false, why: e.to_string() }),
            Err(_) => return Ok(Ended::Disconnected { registered: false, why: "connect timeout".into() }),
        },
        () = cancel.cancelled() => return Ok(Ended::Shutdown),
    };
    let (mut sink, mut stream) = ws.split();
    let register = AgentMessage::Register(shared.register_message());
    if let Err(e) = sink.send(encode(&register)).await {
        return Ok(Ended::Disconnected {
            registered: false,
            why: e.to_string(),
        });
    }
    tracing::info!(master = %url, tasks = ?task_count(&register), "registering with master");
    let (tx, mut rx) = mpsc::unbounded_channel::<AgentMessage>();
    let mut conn = Conn {
        shared,
        master: url,
        tx,
        registered: false,
    };
    let mut heartbeat: Option<tokio::time::Interval> = None;
    let mut resend = interval_after(RESEND_INTERVAL);
    let result = loop {
        let event = tokio::select! {
            () = cancel.cancelled() => Event::Cancel,
            frame = stream.next() => Event::Frame(frame),
            Some(msg) = rx.recv() => Event::Out(msg),
            () = heartbeat_tick(&mut heartbeat) => Event::Out(AgentMessage::Heartbeat),
            _ = resend.tick() => Event::Resend,
        };
        let outgoing = match event {
            Event::Cancel => {
                // Flush what is already queued (e.g. final updates of killed tasks), then close.
                while let Ok(msg) = rx.try_recv() {
                    if sink.send(encode(&msg)).await.is_err() {
                        break;
                    }
                }
                let _ = sink.send(Message::Close(None)).await;
                break Ok(Ended::Shutdown);
            }
            Event::Frame(Some(Ok(Message::Text(text)))) => match conn.handle_text(text.as_str()) {
                Ok(Some(hb)) => {
                    heartbeat = Some(interval_after(hb));
                    continue;
                }
                Ok(None) => continue,
                Err(e) => break Err(e),
            },
            Event::Frame(Some(Ok(Message::Close(_))) | None) => {
                break Ok(conn.lost("closed by master"))
            }
            Event::Frame(Some(Ok(_))) => continue,
            Event::Frame(Some(Err(e))) => break Ok(conn.lost(&e.to_string())),
            Event::Resend => {
                if conn.registered && shared.advertised_changed() {
                    // Register again: the master takes the new resources and attributes from it.
                    let _ = sink.send(Message::Close(None)).await;
                    break Ok(conn.lost(
                        "ports in use on the host or the Docker engine changed: registering again",
                    ));
                }
                if conn.registered {
                    shared.resend_pending();
                }
                continue;
            }
            Event::Out(msg) => msg,
        };
        if let Err(e) = sink.send(encode(&outgoing)).await {
            break Ok(conn.lost(&e.to_string()));
        }
    };
    shared.detach();
    result
}

fn task_count(msg: &AgentMessage) -> usize {
    match msg {
        AgentMessage::Register(r) => r.tasks.len(),
        _ => 0,
    }
}

fn encode(msg: &AgentMessage) -> Message {
    // Serializing our own wire types cannot fail (no maps with non-string keys).
    Message::text(serde_json::to_string(msg).unwrap_or_default())
}

fn interval_after(period: Duration) -> tokio::time::Interval {
    let mut i = interval(period);
    i.reset_at(Instant::now() + period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

/// What woke the connection loop.
enum Event {
    Cancel,
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Out(AgentMessage),
    Resend,
}

/// Tick the heartbeat once registered; never resolves before.
async fn heartbeat_tick(hb: &mut Option<tokio::time::Interval>) {
    match hb.as_mut() {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Per-connection state.
struct Conn<'a> {
    shared: &'a Arc<Shared>,
    /// The master's WebSocket URL.
    master: &'a str,
    tx: mpsc::UnboundedSender<AgentMessage>,
    registered: bool,
}

impl Conn<'_> {
    fn lost(&self, why: &str) -> Ended {
        Ended::Disconnected {
            registered: self.registered,
            why: why.to_string(),
        }
    }

    /// Dispatch one master message; returns the heartbeat period once registered.
    fn handle_text(&mut self, text: &str) -> Result<Option<Duration>, AgentError> {
        let msg: MasterMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring undecodable master message");
                return Ok(None);
            }
        };
        match msg {
            MasterMessage::Registered {
                agent_id,
                heartbeat_interval_secs,
                http_key,
            } => {
                self.shared.set_http_key(http_key);
                if let Err(e) = crate::path_id::PathId::agent(&agent_id) {
                    return Err(AgentError::Rejected(format!(
                        "the master assigned an unusable agent id: {e}"
                    )));
                }
                tracing::info!(agent_id = %agent_id, master = %self.master, "registered with master");
                self.shared.set_registered(&agent_id);
                let secs = if heartbeat_interval_secs.is_finite() && heartbeat_interval_secs > 0.0 {
                    heartbeat_interval_secs.clamp(0.05, 3600.0)
                } else {
                    5.0
                };
                self.registered = true;
                self.shared.attach(self.tx.clone());
                return Ok(Some(Duration::from_secs_f64(secs)));
            }
            MasterMessage::Rejected { message } => return Err(AgentError::Rejected(message)),
            MasterMessage::LaunchTask(spec) => tasks::launch(self.shared, *spec),
            MasterMessage::LaunchGroup { tasks } => crate::group::launch(self.shared, tasks),
            MasterMessage::KillTask {
                task_id,
                grace_secs,
            } => tasks::kill(self.shared, &task_id, grace_secs),
            MasterMessage::FrameworkMessage {
                framework_id,
                executor_id,
                data,
            } => crate::executor::message(self.shared, &(framework_id, executor_id), data),
            MasterMessage::ShutdownExecutor {
                framework_id,
                executor_id,
            } => crate::executor::shutdown(
                self.shared,
                &(framework_id, executor_id),
                "REASON_EXECUTOR_TERMINATED",
            ),
            MasterMessage::ShutdownFramework { framework_id } => {
                crate::executor::shutdown_framework(self.shared, &framework_id)
            }
            MasterMessage::Acknowledge { task_id, uuid } => {
                self.shared.acknowledge(&task_id, &uuid)
            }
            MasterMessage::DestroyVolume {
                role,
                persistence_id,
            } => match crate::volumes::destroy(&self.shared.cfg.work_dir, &role, &persistence_id) {
                Ok(existed) => {
                    tracing::info!(%role, %persistence_id, existed, "volume destroyed")
                }
                Err(e) => {
                    tracing::error!(%role, %persistence_id, error = %e, "cannot destroy volume")
                }
            },
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::http::Response;

    #[test]
    fn a_round_starts_at_the_last_leader() {
        let listed = vec!["ws://a/p".to_string(), "ws://b/p".to_string()];
        assert_eq!(round(&listed, None), listed);
        assert_eq!(round(&listed, Some("ws://b/p")), ["ws://b/p", "ws://a/p"]);
        assert_eq!(
            round(&listed, Some("ws://c/p")),
            ["ws://c/p", "ws://a/p", "ws://b/p"]
        );
    }

    #[test]
    fn refused_handshakes_redirect_or_name_the_reason() {
        let here = "ws://m1:5050/api/meseta/v1/agent";
        let redirect = Response::builder()
            .status(307)
            .header("Location", "http://m2:5050/api/meseta/v1/agent")
            .body(None)
            .expect("response");
        assert!(matches!(
            refused(here, &redirect),
            Ended::Redirected(to) if to == "ws://m2:5050/api/meseta/v1/agent"
        ));
        let no_location = Response::builder()
            .status(307)
            .body(None)
            .expect("response");
        assert!(matches!(
            refused(here, &no_location),
            Ended::Disconnected { registered: false, why } if why.contains("Location")
        ));
        let no_leader = Response::builder()
            .status(503)
            .body(Some(
                br#"{"message":"no leading master elected yet"}"#.to_vec(),
            ))
            .expect("response");
        assert!(matches!(
            refused(here, &no_leader),
            Ended::Disconnected { registered: false, why }
                if why == "handshake answered 503 Service Unavailable: no leading master elected yet"
        ));
    }
}
