//! The agents' WebSocket: registration, then launch/kill down and status/usage up.
//!
//! The upgrade is answered here rather than by axum's `WebSocketUpgrade` so that the socket
//! writes through [`Coalesce`]: the writer feeds every message queued for the agent, then
//! flushes once, and a burst (the launches of one ACCEPT, acknowledgements) leaves in one write
//! — one TLS record and one syscall instead of one per message — with no buffer kept between
//! bursts.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use meseta_api::agent::{AgentMessage, MasterMessage, Register, JOIN_TOKEN_HEADER};
use meseta_tls::listener::PeerInfo;
use meseta_types::AgentId;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::coalesce::Coalesce;
use crate::core::{Admission, AgentConn, Core};
use crate::{registry, Master};

/// An agent's socket.
type AgentSocket = WebSocketStream<Coalesce<TokioIo<hyper::upgrade::Upgraded>>>;

/// Largest message taken from an agent (a re-registration lists every task it runs).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Most queued messages written in one burst before the flush.
const BURST_MESSAGES: usize = 1024;

/// How long a new connection may take to send `Register`.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a connection may register as an agent: with a join token configured the agent must
/// present it; with a client CA (mutual TLS) it must have presented a certificate that CA
/// signed. The refusal is the status and message the agent sees and logs.
pub(crate) fn admit_connection(
    cfg: &crate::MasterConfig,
    token: Option<&[u8]>,
    client_cert: bool,
) -> Result<(), (StatusCode, &'static str)> {
    let mtls = cfg.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    if mtls && !client_cert {
        return Err((
            StatusCode::FORBIDDEN,
            "agent registration requires a client certificate signed by the master's client CA",
        ));
    }
    if let Some(want) = &cfg.join_token {
        match token {
            None => {
                return Err((
                    StatusCode::UNAUTHORIZED,
                    "agent registration requires a join token",
                ))
            }
            Some(got) if !same_secret(got, want.as_bytes()) => {
                return Err((StatusCode::FORBIDDEN, "wrong join token"))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Equality that takes the same time wherever the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) async fn upgrade(State(m): State<Master>, mut req: Request) -> Response {
    let client_cert = req
        .extensions()
        .get::<ConnectInfo<PeerInfo>>()
        .is_some_and(|p| p.0.client_cert);
    let token = req.headers().get(JOIN_TOKEN_HEADER).map(|v| v.as_bytes());
    let admitted = admit_connection(m.core().config(), token, client_cert);
    if let Err((status, why)) = admitted {
        tracing::warn!(status = status.as_u16(), why, "agent connection refused");
        return (status, Json(serde_json::json!({ "message": why }))).into_response();
    }
    let accept = match websocket_accept(req.headers()) {
        Ok(a) => a,
        Err((status, why)) => return (status, why).into_response(),
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket request couldn't be upgraded since no upgrade state was present",
        )
            .into_response();
    };
    tokio::spawn(connection(m, on_upgrade));
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, HeaderValue::from_static("upgrade"))
        .header(header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The `Sec-WebSocket-Accept` answering a WebSocket upgrade request (RFC 6455 §4.2.1; the
/// method, GET, is the route's), or why the request is not one.
fn websocket_accept(h: &HeaderMap) -> Result<HeaderValue, (StatusCode, &'static str)> {
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has(header::CONNECTION, "upgrade") {
        return Err((
            StatusCode::BAD_REQUEST,
            "Connection header did not include 'upgrade'",
        ));
    }
    if !has(header::UPGRADE, "websocket") {
        return Err((
            StatusCode::BAD_REQUEST,
            "`Upgrade` header did not include 'websocket'",
        ));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err((
            StatusCode::BAD_REQUEST,
            "`Sec-WebSocket-Version` header did not include '13'",
        ));
    }
    let key = h.get(header::SEC_WEBSOCKET_KEY).ok_or((
        StatusCode::BAD_REQUEST,
        "`Sec-WebSocket-Key` header missing",
    ))?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            "invalid `Sec-WebSocket-Key` header",
        )
    })
}

/// An agent's connection, for as long as it lasts. Its setup (the upgrade, registration, the
/// writer) runs as a future of its own on the heap, freed once done: the connection's task
/// lives as long as its agent (thousands of them) and keeps room for the largest state its
/// future can be in, which with the setup inline was several times the reading loop's.
async fn connection(m: Master, on_upgrade: hyper::upgrade::OnUpgrade) {
    if let Some(reader) = Box::pin(open(m, on_upgrade)).await {
        reader.run().await;
    }
}

/// A registered agent's connection: its incoming half, read until it closes.
struct Reader {
    m: Master,
    agent_id: AgentId,
    conn_id: u64,
    stream: futures::stream::SplitStream<AgentSocket>,
    /// Writes what the master queues for the agent.
    writer: tokio::task::JoinHandle<()>,
}

/// Completes the upgrade and registers the agent (or rejects it: `None`).
async fn open(m: Master, on_upgrade: hyper::upgrade::OnUpgrade) -> Option<Reader> {
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "agent connection upgrade failed");
            return None;
        }
    };
    // Small reads: a master holds one socket per agent (thousands), each keeping its read
    // buffer for life, and frames are small (heartbeats, status updates of a few hundred
    // bytes); a larger frame grows the buffer. 512 rather than 1,024 bytes saves 5 MiB with
    // 10,000 agents.
    // A write buffer of 0 hands every frame to `Coalesce` at once; the writer flushes.
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(512)
        .write_buffer_size(0);
    let io = Coalesce::new(TokioIo::new(upgraded));
    let mut socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (reg, agent_id) = match register(&m, &mut socket).await {
        Ok(registered) => registered,
        Err(why) => {
            reject(socket, why).await;
            return None;
        }
    };
    let (tx, rx) = futures::channel::mpsc::unbounded::<MasterMessage>();
    let conn_id = {
        let mut core = m.core();
        let conn_id = core.next_conn_id();
        let record = Core::agent_record(agent_id.clone(), &reg);
        core.register_agent(record, reg, AgentConn { id: conn_id, tx }, Instant::now());
        conn_id
    };
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(write_queued(rx, sink));
    Some(Reader {
        m,
        agent_id,
        conn_id,
        stream,
        writer,
    })
}

impl Reader {
    /// Handles the agent's messages until the connection ends, then tells the master.
    async fn run(mut self) {
        while let Some(Ok(msg)) = self.stream.next().await {
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(_) => break,
                _ => continue,
            };
            match serde_json::from_str::<AgentMessage>(text.as_str()) {
                Ok(msg) => handle(&self.m, &self.agent_id, msg),
                Err(e) => tracing::warn!(
                    agent_id = %self.agent_id, error = %e, "unparseable agent message ignored"
                ),
            }
        }
        self.m
            .core()
            .agent_disconnected(&self.agent_id, self.conn_id, Instant::now());
        self.writer.abort();
    }
}

/// Sends the messages queued for the agent: each burst (what is queued when the writer wakes,
/// at most [`BURST_MESSAGES`]) is fed, then flushed once.
async fn write_queued(
    mut rx: futures::channel::mpsc::UnboundedReceiver<MasterMessage>,
    mut sink: futures::stream::SplitSink<AgentSocket, Message>,
) {
    let encode = |msg: MasterMessage| serde_json::to_string(&msg).ok().map(Message::text);
    // Only encoded frames are held across an await: a message is several times the size of
    // its frame, and this future lives as long as the agent's connection.
    'bursts: while let Some(first) = rx.next().await {
        let mut frame = encode(first);
        let mut fed = 1;
        loop {
            if let Some(f) = frame.take() {
                if sink.feed(f).await.is_err() {
                    break 'bursts;
                }
            }
            if fed >= BURST_MESSAGES {
                break;
            }
            // `Err`: nothing queued now, or the queue closed.
            match rx.try_recv() {
                Ok(msg) => frame = encode(msg),
                Err(_) => break,
            }
            fed += 1;
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

/// The agent's `Register` (within [`REGISTER_TIMEOUT`]) and the id it is admitted under, or why
/// it is refused.
async fn register(m: &Master, socket: &mut AgentSocket) -> Result<(Register, AgentId), String> {
    let reg = match tokio::time::timeout(REGISTER_TIMEOUT, first_message(socket)).await {
        Ok(result) => result?,
        Err(_) => return Err("no Register message within 10 s".to_string()),
    };
    let agent_id = admit(m, &reg).await?;
    Ok((reg, agent_id))
}

/// Read and parse the first message, which must be `Register`.
async fn first_message(socket: &mut AgentSocket) -> Result<Register, String> {
    loop {
        let msg = match socket.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(format!("connection error before registration: {e}")),
            None => return Err("connection closed before registration".to_string()),
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Ping(_) | Message::Pong(_) => continue,
            _ => return Err("expected a JSON text message".to_string()),
        };
        return match serde_json::from_str::<AgentMessage>(text.as_str()) {
            Ok(AgentMessage::Register(r)) => Ok(r),
            Ok(_) => Err("the first message must be REGISTER".to_string()),
            Err(e) => Err(format!("invalid REGISTER message: {e}")),
        };
    }
}

/// Admit the agent and persist it before it is told it is registered.
async fn admit(m: &Master, reg: &Register) -> Result<AgentId, String> {
    let admission = m.core().admit(reg)?;
    let (id, registered_time) = match admission {
        Admission::New(id) => (id, None),
        Admission::Known(id) => {
            let t = m.core().agents.get(&id).map(|a| a.record.registered_time);
            (id, t)
        }
    };
    let mut record = Core::agent_record(id.clone(), reg);
    if let Some(t) = registered_time {
        record.registered_time = t;
    }
    registry::save_agent(m.store(), &record)
        .await
        .map_err(|e| format!("master could not persist the agent: {e}"))?;
    Ok(id)
}

async fn reject(mut socket: AgentSocket, message: String) {
    tracing::warn!(%message, "agent registration rejected");
    let msg = MasterMessage::Rejected { message };
    if let Ok(text) = serde_json::to_string(&msg) {
        let _ = socket.send(Message::text(text)).await;
    }
    let _ = socket.close(None).await;
}

fn handle(m: &Master, agent_id: &AgentId, msg: AgentMessage) {
    let now = Instant::now();
    let mut core = m.core();
    match msg {
        AgentMessage::Heartbeat => core.agent_heartbeat(agent_id, now),
        AgentMessage::StatusUpdate(u) => core.status_update(agent_id, u, now),
        AgentMessage::Usage(u) => core.agent_usage(agent_id, u, now),
        AgentMessage::ExecutorMessage {
            framework_id,
            executor_id,
            data,
        } => core.executor_message(agent_id, &framework_id, &executor_id, data),
        AgentMessage::ExecutorExited {
            framework_id,
            executor_id,
            status,
        } => core.executor_exited(agent_id, &framework_id, &executor_id, status, now),
        AgentMessage::Register(_) => {
            tracing::warn!(agent_id = %agent_id, "duplicate REGISTER on one connection ignored")
        }
    }
}

#[cfg(test)]
mod admission_tests {
    use super::*;
    use crate::MasterConfig;

    fn mtls() -> Option<meseta_tls::ServerTls> {
        Some(meseta_tls::ServerTls {
            cert: "c".into(),
            key: "k".into(),
            client_ca: Some("ca".into()),
        })
    }

    #[test]
    fn websocket_upgrades_are_answered_as_rfc_6455_says() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        let accept = websocket_accept(&h).expect("a valid upgrade");
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        for missing in [
            header::CONNECTION,
            header::UPGRADE,
            header::SEC_WEBSOCKET_VERSION,
            header::SEC_WEBSOCKET_KEY,
        ] {
            let mut without = h.clone();
            without.remove(&missing);
            let refused = websocket_accept(&without).expect_err("not an upgrade");
            assert_eq!(refused.0, StatusCode::BAD_REQUEST, "{missing}");
        }
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert!(websocket_accept(&h).is_err());
    }

    #[test]
    fn open_master_admits_anyone() {
        assert!(admit_connection(&MasterConfig::default(), None, false).is_ok());
    }

    #[test]
    fn join_token_must_match() {
        let cfg = MasterConfig {
            join_token: Some("s3cret".into()),
            ..MasterConfig::default()
        };
        assert_eq!(
            admit_connection(&cfg, None, false).map_err(|e| e.0),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            admit_connection(&cfg, Some(b"s3cres"), false).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            admit_connection(&cfg, Some(b"s3cret!"), false).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
        assert!(admit_connection(&cfg, Some(b"s3cret"), false).is_ok());
    }

    #[test]
    fn mutual_tls_needs_a_verified_client_certificate() {
        let cfg = MasterConfig {
            tls: mtls(),
            ..MasterConfig::default()
        };
        assert_eq!(
            admit_connection(&cfg, None, false).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
        assert!(admit_connection(&cfg, None, true).is_ok());
        let both = MasterConfig {
            join_token: Some("t".into()),
            ..cfg
        };
        assert!(admit_connection(&both, None, true).is_err());
        assert!(admit_connection(&both, Some(b"t"), true).is_ok());
    }

    /// The size of the future an async fn of two arguments returns.
    fn future_size<A, B, F: std::future::Future>(_: fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_connection_keeps_only_the_reading_loop_for_its_life() {
        // One of each per agent for as long as it is connected (thousands): the setup's state
        // lives in a box of its own, freed once the agent is registered.
        let conn = future_size(connection);
        let writer = future_size(write_queued);
        eprintln!("connection future {conn} bytes, writer future {writer} bytes");
        assert!(conn <= 512, "connection future: {conn} bytes");
        assert!(writer <= 512, "writer future: {writer} bytes");
    }
}
