//! A tiny fake master for the agent's integration tests: one WebSocket endpoint that answers
//! `Register` with `Registered` (keeping the agent's id if it has one), forwards every agent message
//! to the test and every test command to the agent.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures::{SinkExt, StreamExt};
use meseta_api::agent::{AgentMessage, MasterMessage, StatusUpdate};
use meseta_types::AgentId;
use tokio::sync::{mpsc, Mutex, Notify};

/// Shared between the test and the WebSocket handler.
#[derive(Clone)]
struct Hub {
    kick: Arc<Notify>,
    from_agent: mpsc::UnboundedSender<AgentMessage>,
    to_agent: Arc<Mutex<mpsc::UnboundedReceiver<MasterMessage>>>,
}

/// The test's side of the fake master.
pub struct FakeMaster {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every message the agent sent (Register included).
    pub from_agent: mpsc::UnboundedReceiver<AgentMessage>,
    /// Commands for the agent.
    pub to_agent: mpsc::UnboundedSender<MasterMessage>,
    kick: Arc<Notify>,
}

impl FakeMaster {
    /// Listen on an ephemeral port.
    pub async fn start() -> FakeMaster {
        let (from_tx, from_rx) = mpsc::unbounded_channel();
        let (to_tx, to_rx) = mpsc::unbounded_channel();
        let kick = Arc::new(Notify::new());
        let hub = Hub {
            kick: Arc::clone(&kick),
            from_agent: from_tx,
            to_agent: Arc::new(Mutex::new(to_rx)),
        };
        let app = Router::new()
            .route(meseta_api::agent::AGENT_WS_PATH, get(upgrade))
            .with_state(hub);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake master");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeMaster {
            addr,
            from_agent: from_rx,
            to_agent: to_tx,
            kick,
        }
    }

    /// Drop the current agent connection (the agent should reconnect).
    pub fn drop_connection(&self) {
        self.kick.notify_one();
    }

    /// Base URL for `AgentConfig::master`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Send a command to the connected agent.
    pub fn send(&self, msg: MasterMessage) {
        self.to_agent.send(msg).expect("fake master alive");
    }

    /// The next message from the agent that `pick` accepts (others are skipped).
    pub async fn next_matching<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(AgentMessage) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.from_agent.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("fake master channel open");
            if let Some(v) = pick(msg) {
                return v;
            }
        }
    }

    /// The next status update (heartbeats, usage and registrations are skipped).
    pub async fn next_update(&mut self) -> StatusUpdate {
        self.next_matching("a status update", |m| match m {
            AgentMessage::StatusUpdate(u) => Some(u),
            _ => None,
        })
        .await
    }

    /// Acknowledge an update.
    pub fn ack(&self, u: &StatusUpdate) {
        self.send(MasterMessage::Acknowledge {
            task_id: u.task_id.clone(),
            uuid: u.uuid.clone(),
        });
    }
}

async fn upgrade(ws: WebSocketUpgrade, State(hub): State<Hub>) -> Response {
    ws.on_upgrade(move |socket| serve(socket, hub))
}

async fn serve(socket: WebSocket, hub: Hub) {
    let (mut sink, mut stream) = socket.split();
    let mut to_agent = hub.to_agent.lock().await;
    loop {
        tokio::select! {
            () = hub.kick.notified() => return,
            frame = stream.next() => {
                let Some(Ok(Message::Text(text))) = frame else {
                    if matches!(frame, Some(Ok(_))) { continue; }
                    return;
                };
                let msg: AgentMessage = serde_json::from_str(text.as_str()).expect("agent message json");
                if let AgentMessage::Register(r) = &msg {
                    let id = r.agent_id.clone().unwrap_or_else(|| AgentId::new("agent-test-1"));
                    let reply = MasterMessage::Registered { agent_id: id, heartbeat_interval_secs: 1.0, http_key: None };
                    let text = serde_json::to_string(&reply).expect("json");
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                let _ = hub.from_agent.send(msg);
            }
            Some(cmd) = to_agent.recv() => {
                let text = serde_json::to_string(&cmd).expect("json");
                if sink.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
        }
    }
}
