//! Backend connections owned by one HTTP/1 client connection and driven inside that client
//! connection's task.
//!
//! ```text
//!  client conn task: poll(server conn) ─▶ request ─▶ Local::send ─▶ SendRequest ─┐
//!                    poll(drivers)    ◀── backend Connection futures (same task) ◀┘
//! ```
//!
//! An HTTP/1 client sends one request at a time, so one connection per backend is all it
//! needs; keeping them beside the client's connection (instead of in a shared pool whose
//! connections run as tasks of their own) saves a channel hop, a task wake-up and a pool lock
//! per request. The connections close with the client's.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Time to establish a backend connection.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Backend connections kept per client connection (one per backend it used lately).
const KEPT: usize = 16;

type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why a request did not get a response head from the backend.
#[derive(Debug)]
pub(super) enum SendError {
    /// No connection could be made: nothing reached the backend.
    Connect(String),
    /// The connection failed during the exchange.
    Http(hyper::Error),
    /// The worker's pool failed (connecting or during the exchange).
    Pool(hyper_util::client::legacy::Error),
}

/// The backend connections of one client connection.
#[derive(Default)]
pub(super) struct Local {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Senders of open connections, by backend, least recently used first.
    kept: Vec<(SocketAddr, SendRequest<Full<Bytes>>)>,
    /// The connections themselves, polled by [`Local::serve`].
    drivers: FuturesUnordered<Driver>,
}

impl Local {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
        let mut inner = self.lock();
        let i = inner.kept.iter().position(|(a, _)| *a == addr)?;
        Some(inner.kept.remove(i).1)
    }

    fn keep(&self, addr: SocketAddr, sender: SendRequest<Full<Bytes>>) {
        let mut inner = self.lock();
        if inner.kept.len() >= KEPT {
            // Dropping the sender closes its connection once idle.
            inner.kept.remove(0);
        }
        inner.kept.push((addr, sender));
    }

    /// Opens a connection to `addr`, driven by this client connection's task.
    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let (sender, conn) = handshake(addr).await?;
        self.lock().drivers.push(Box::pin(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, backend = %addr, "backend connection ended");
            }
        }));
        Ok(sender)
    }

    /// Sends `req` to `addr` over this client connection's connection to it (opened when
    /// missing or closed). A request a kept connection could not take — it closed before
    /// the request was written — goes again over a new one.
    pub(super) async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, SendError> {
        loop {
            let kept = match self.take(addr) {
                Some(mut s) => s.ready().await.is_ok().then_some(s),
                None => None,
            };
            let (mut sender, fresh) = match kept {
                Some(s) => (s, false),
                None => (self.connect(addr).await?, true),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.keep(addr, sender);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
    }

    /// Runs `server` (the client connection) and, in the same task, the backend connections
    /// its requests opened; ends with `server`.
    pub(super) async fn serve<F: Future>(&self, server: F) -> F::Output {
        let mut server = std::pin::pin!(server);
        std::future::poll_fn(|cx| {
            let done = server.as_mut().poll(cx);
            if done.is_pending() {
                self.poll_drivers(cx);
            }
            done
        })
        .await
    }

    fn poll_drivers(&self, cx: &mut Context<'_>) {
        let mut inner = self.lock();
        while let Poll::Ready(Some(())) = inner.drivers.poll_next_unpin(cx) {}
    }
}

/// A new HTTP/1.1 connection to `addr`: its sender and the connection to drive.
pub(super) async fn handshake(
    addr: SocketAddr,
) -> Result<
    (
        SendRequest<Full<Bytes>>,
        http1::Connection<TokioIo<TcpStream>, Full<Bytes>>,
    ),
    SendError,
> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(SendError::Connect(e.to_string())),
        Err(_) => {
            return Err(SendError::Connect(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            )))
        }
    };
    let _ = stream.set_nodelay(true);
    http1::handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Http)
}
