//! The worker's keep-alive pool: HTTP/1.1 connections to its backends, by address, each
//! driven by a task of its own on the worker's event loop.
//!
//! ```text
//!  request ─▶ take(addr): newest idle connection that is ready ──▶ send ──▶ put back
//!                 │ none                                           │ closed before the
//!                 ▼                                                │ request went out:
//!             connect (2 s) + handshake ─▶ send ─▶ put back        └─▶ the next one
//! ```
//!
//! A connection goes back to the pool as soon as its response head arrives; it is taken again
//! only once hyper says it is ready (its previous response read to the end). Connections idle
//! for longer than the idle timeout, or closed by their backend, are dropped by [`Pool::sweep`].
//! The pool belongs to one worker thread: its lock is never contended.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};

use super::conn::{handshake, SendError};

type Sender = SendRequest<Full<Bytes>>;

/// A connection waiting for its next request.
struct Idle {
    sender: Sender,
    since: Instant,
}

/// Keep-alive connections to backends, by address.
pub(super) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    max_idle_per_backend: usize,
    idle_timeout: Duration,
}

impl Pool {
    /// An empty pool keeping at most `max_idle_per_backend` connections per backend, each for
    /// at most `idle_timeout` unused.
    pub(super) fn new(max_idle_per_backend: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            max_idle_per_backend: max_idle_per_backend.max(1),
            idle_timeout,
        }
    }

    /// How long a connection may stay unused.
    pub(super) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Sends `req` (origin-form) to `addr` over a pooled connection, else a new one. A request
    /// that a pooled connection closed before sending goes out on the next one.
    pub(super) async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, SendError> {
        while let Some(mut sender) = self.take(addr) {
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.put(addr, sender);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(SendError::Http(e.into_error())),
                },
            }
        }
        let (mut sender, conn) = handshake(addr).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, backend = %addr, "backend connection ended");
            }
        });
        match sender.try_send_request(req).await {
            Ok(resp) => {
                self.put(addr, sender);
                Ok(resp)
            }
            Err(e) => Err(SendError::Http(e.into_error())),
        }
    }

    /// The newest idle connection to `addr` that is ready; drops the closed ones it passes.
    fn take(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&addr)?;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            if list[i].sender.is_ready() {
                return Some(list.swap_remove(i).sender);
            }
            if list[i].sender.is_closed() {
                list.swap_remove(i);
            }
        }
        None
    }

    /// Returns a connection to the pool (the oldest one goes when it is full).
    fn put(&self, addr: SocketAddr, sender: Sender) {
        let since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(addr).or_default();
        if list.len() >= self.max_idle_per_backend {
            list.remove(0);
        }
        list.push(Idle { sender, since });
    }

    /// Drops the connections closed by their backend or unused since `now - idle_timeout`.
    pub(super) fn sweep(&self, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|_, list| {
            list.retain(|c| {
                !c.sender.is_closed() && now.saturating_duration_since(c.since) < self.idle_timeout
            });
            !list.is_empty()
        });
    }

    /// Idle connections held, over all backends.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A backend answering `n` requests on each connection, then closing it; sends the
    /// number of connections it accepted.
    async fn backend(n: usize) -> (SocketAddr, tokio::sync::watch::Receiver<usize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::watch::channel(0);
        tokio::spawn(async move {
            let mut accepted = 0;
            while let Ok((mut s, _)) = l.accept().await {
                accepted += 1;
                let _ = tx.send(accepted);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    for _ in 0..n {
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => got.extend_from_slice(&buf[..k]),
                            }
                        }
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, rx)
    }

    fn get() -> Request<Full<Bytes>> {
        Request::builder()
            .uri("/")
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .expect("request")
    }

    async fn read_body(resp: Response<Incoming>) -> Bytes {
        use http_body_util::BodyExt;
        resp.into_body().collect().await.expect("body").to_bytes()
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (addr, accepted) = backend(100).await;
        let pool = Pool::new(8, Duration::from_secs(30));
        for _ in 0..5 {
            let resp = pool.send(addr, get()).await.expect("response");
            assert_eq!(read_body(resp).await, "ok");
        }
        assert_eq!(*accepted.borrow(), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_replaced() {
        let (addr, accepted) = backend(1).await;
        let pool = Pool::new(8, Duration::from_secs(30));
        for _ in 0..3 {
            let resp = pool.send(addr, get()).await.expect("response");
            assert_eq!(read_body(resp).await, "ok");
            // Let the connection task see the backend's close.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(*accepted.borrow(), 3);
        pool.sweep(Instant::now());
        assert_eq!(pool.idle_count(), 0, "closed connections are swept");
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let (addr, _) = backend(100).await;
        let pool = Pool::new(8, Duration::from_secs(30));
        let resp = pool.send(addr, get()).await.expect("response");
        read_body(resp).await;
        pool.sweep(Instant::now());
        assert_eq!(pool.idle_count(), 1);
        pool.sweep(Instant::now() + Duration::from_secs(31));
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        let pool = Pool::new(8, Duration::from_secs(30));
        match pool.send(addr, get()).await {
            Err(SendError::Connect(_)) => {}
            other => panic!("expected a connect error, got {other:?}"),
        }
    }
}
