//! A scripted stand-in for the master's `/v2` API in unit tests: a loopback HTTP/1.1 server that
//! answers each request from a closure and records what was asked.

use std::sync::{Arc, Mutex};

use meseta_api::client::MasterClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// `(method, path with query)` → `(status, JSON body)`.
pub type Handler = dyn Fn(&str, &str) -> (u16, String) + Send + Sync;

/// The running server.
pub struct Fake {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// `METHOD /path?query BODY` of every request so far.
    pub requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Fake {
    /// Serves `handler` on a free loopback port.
    pub async fn start(handler: Arc<Handler>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    while let Some((method, path, body)) = read_request(&mut sock).await {
                        log.lock()
                            .expect("log")
                            .push(format!("{method} {path} {body}"));
                        let (status, body) = handler(&method, &path);
                        let resp = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Fake {
            url,
            requests,
            task,
        }
    }

    /// A client of this server.
    pub fn client(&self) -> MasterClient {
        MasterClient::new(&self.url).expect("client")
    }

    /// The requests that start with `prefix` (`"GET /v2/queue"`).
    pub fn matching(&self, prefix: &str) -> Vec<String> {
        self.requests
            .lock()
            .expect("log")
            .iter()
            .filter(|r| r.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// How many requests started with `prefix` (`"GET /v2/queue"`).
    pub fn count(&self, prefix: &str) -> usize {
        self.requests
            .lock()
            .expect("log")
            .iter()
            .filter(|r| r.starts_with(prefix))
            .count()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head and a content-length body) → `(method, path, body)`; `None` at the
/// end of the stream.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<(String, String, String)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if sock.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut first = head.lines().next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let len: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).await.ok()?;
    Some((method, path, String::from_utf8_lossy(&body).to_string()))
}
