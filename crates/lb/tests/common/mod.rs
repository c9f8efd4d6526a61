//! Helpers of the balancer's integration tests: a stand-in master serving one app on a virtual
//! host, raw HTTP reads, and waiting on the balancer's status.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The virtual host of the stand-in master's one app, `/ws`.
pub const VHOST: &str = "ws.local";

/// How long the tests wait for the balancer.
pub const WAIT: Duration = Duration::from_secs(20);

/// Reads from `s` until the end of a response or request head; returns the head.
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The app's tasks: addresses and the virtual host.
pub type Tasks = Arc<Mutex<Vec<SocketAddr>>>;

async fn apps(State(tasks): State<Tasks>) -> Json<Value> {
    let active = tasks.lock().expect("tasks").clone();
    let tasks: Vec<Value> = active
        .iter()
        .map(|a| {
            json!({"id": format!("ws.t{}", a.port()), "appId": "/ws", "host": a.ip().to_string(),
                   "state": "TASK_RUNNING", "ports": [a.port()], "version": "v1",
                   "healthCheckResults": []})
        })
        .collect();
    Json(
        json!({"apps": [{"id": "/ws", "version": "v1", "instances": active.len(),
        "portDefinitions": [{"port": 0}], "labels": {"MESETA_VHOST": VHOST},
        "healthChecks": [], "tasks": tasks}]}),
    )
}

/// A stand-in master serving `/v2/apps` (the balancer re-reads it every 100 ms) and an event
/// stream that stays quiet.
pub async fn fake_master(tasks: Tasks) -> String {
    let app = Router::new()
        .route("/v2/apps", get(apps))
        .route(
            "/v2/events",
            get(|| async {
                axum::response::sse::Sse::new(futures::stream::pending::<
                    Result<axum::response::sse::Event, std::convert::Infallible>,
                >())
            }),
        )
        .with_state(tasks);
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind master");
    let url = format!("http://{}", l.local_addr().expect("master address"));
    tokio::spawn(async move { axum::serve(l, app).await });
    url
}

/// `GET path` on `addr` (HTTP/1.0, read to the end).
pub async fn get_text(addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The backends the balancer routes to now: (address, requests in flight).
pub async fn routed(admin: SocketAddr) -> Vec<(String, u64)> {
    let text = get_text(admin, "/status").await;
    let Some((_, body)) = text.split_once("\r\n\r\n") else {
        return Vec::new();
    };
    let status: Value = serde_json::from_str(body).unwrap_or_default();
    let mut out = Vec::new();
    for app in status["apps"].as_array().into_iter().flatten() {
        for b in app["backends"].as_array().into_iter().flatten() {
            let addr = b["address"].as_str().unwrap_or_default().to_owned();
            out.push((addr, b["outstanding"].as_u64().unwrap_or_default()));
        }
    }
    out
}

/// Waits until the balancer whose admin listener is `admin` routes to `backend`.
pub async fn wait_routed(admin: SocketAddr, backend: SocketAddr) {
    let backend = backend.to_string();
    wait_until("the backend in the balancer's table", || async {
        routed(admin).await.iter().any(|(a, _)| *a == backend)
    })
    .await;
}

pub async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
