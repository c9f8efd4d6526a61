//! The worker's keep-alive pool for the requests hyper serves (those off the fast path):
//! HTTP/1.1 connections to its backends, by address. A connection has no task of its own:
//! whoever holds it drives it. The request's future writes the request and reads the response
//! head; the response body, as the client's connection sends it on, reads the rest and, at its
//! end, puts the connection back. A request and its backend exchange so run in one task,
//! without a hop through a channel to another task.
//!
//! ```text
//!  request ─▶ take(addr): newest idle connection, open and ready ─▶ send ─▶ response head
//!                 │ none                           │ closed before the        │
//!                 ▼                                │ request went out:        ▼
//!             connect (2 s) + handshake ─▶ send    └─▶ the next one     body: drives the
//!                                                                       connection; at its
//!                                                                       end ─▶ put back
//! ```
//!
//! A body dropped before its end closes its connection (what is left of the response is
//! never read). Idle connections are driven only when looked at ([`Pool::take`],
//! [`Pool::sweep`]): a connection its backend closed is then seen closed and dropped, as is
//! one unused for longer than the idle timeout. The pool belongs to one worker thread: its
//! lock is never contended.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::TrySendError;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::conn::{handshake, SendError};

type Sender = SendRequest<Full<Bytes>>;
type Conn = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// A backend connection, driven by whoever holds it.
struct Link {
    sender: Sender,
    /// `None` once the connection has closed.
    conn: Option<Conn>,
}

impl Link {
    async fn connect(addr: SocketAddr) -> Result<Link, SendError> {
        let (sender, conn) = handshake(addr).await?;
        Ok(Link {
            sender,
            conn: Some(conn),
        })
    }

    /// Moves the connection's reads and writes on as far as they go; false once it has
    /// closed. The task of `cx` is woken when it can go on.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        match Pin::new(conn).poll(cx) {
            Poll::Pending => true,
            Poll::Ready(ended) => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "backend connection ended");
                }
                self.conn = None;
                false
            }
        }
    }

    /// Drives the connection once without asking to be woken; false once it has closed.
    fn open(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop()))
    }

    /// Whether it is open and can take a request now.
    fn ready(&mut self) -> bool {
        self.open() && self.sender.is_ready()
    }

    /// Sends `req`, driving the connection until the response head arrives.
    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Full<Bytes>>>> {
        let mut response = std::pin::pin!(self.sender.try_send_request(req));
        std::future::poll_fn(|cx| {
            // Once the connection has closed (and been dropped), the response is an error
            // (with the request if it never went out).
            self.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

/// A connection waiting for its next request.
struct Idle {
    link: Link,
    since: Instant,
}

/// What the pool and the leases of its connections share.
struct Shared {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    max_idle_per_backend: usize,
    idle_timeout: Duration,
}

/// Keep-alive connections to backends, by address.
#[derive(Clone)]
pub(super) struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// An empty pool keeping at most `max_idle_per_backend` connections per backend, each for
    /// at most `idle_timeout` unused.
    pub(super) fn new(max_idle_per_backend: usize, idle_timeout: Duration) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                idle: Mutex::new(HashMap::new()),
                max_idle_per_backend: max_idle_per_backend.max(1),
                idle_timeout,
            }),
        }
    }

    /// How long a connection may stay unused.
    pub(super) fn idle_timeout(&self) -> Duration {
        self.shared.idle_timeout
    }

    /// Sends `req` (origin-form) to `addr` over a pooled connection, else a new one; returns
    /// the response with its connection lent until the body has been read. A request that a
    /// pooled connection closed before sending goes out on the next one.
    pub(super) async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        while let Some(mut link) = self.take(addr) {
            match link.send(req).await {
                Ok(resp) => return Ok((resp, self.lease(addr, link))),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(SendError::Http(e.into_error())),
                },
            }
        }
        let mut link = Link::connect(addr).await?;
        match link.send(req).await {
            Ok(resp) => Ok((resp, self.lease(addr, link))),
            Err(e) => Err(SendError::Http(e.into_error())),
        }
    }

    fn lease(&self, addr: SocketAddr, link: Link) -> Lease {
        Lease {
            pool: self.clone(),
            addr,
            link: Some(link),
        }
    }

    /// The newest idle connection to `addr` that is ready; drops the closed ones it passes.
    fn take(&self, addr: SocketAddr) -> Option<Link> {
        let mut idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&addr)?;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            if list[i].link.ready() {
                return Some(list.swap_remove(i).link);
            }
            if list[i].link.conn.is_none() {
                list.swap_remove(i);
            }
        }
        None
    }

    /// Returns a connection to the pool (the oldest one goes when it is full).
    fn put(&self, addr: SocketAddr, link: Link) {
        let since = Instant::now();
        let mut idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(addr).or_default();
        if list.len() >= self.shared.max_idle_per_backend {
            list.remove(0);
        }
        list.push(Idle { link, since });
    }

    /// Drops the connections closed by their backend or unused since `now - idle_timeout`.
    pub(super) fn sweep(&self, now: Instant) {
        let timeout = self.shared.idle_timeout;
        let mut idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        idle.retain(|_, list| {
            list.retain_mut(|c| now.saturating_duration_since(c.since) < timeout && c.link.open());
            !list.is_empty()
        });
    }

    /// Idle connections held, over all backends.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        let idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        idle.values().map(Vec::len).sum()
    }
}

/// A pooled connection lent to one exchange. [`Lease::release`] at the end of the response
/// puts it back; a lease dropped before closes it.
pub(super) struct Lease {
    pool: Pool,
    addr: SocketAddr,
    link: Option<Link>,
}

impl Lease {
    /// Drives the connection (the response body's data comes in through it).
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(link) = self.link.as_mut() {
            link.drive(cx);
        }
    }

    /// The response has been read to its end: the connection goes back to the pool if open.
    fn release(&mut self) {
        if let Some(mut link) = self.link.take() {
            if link.open() {
                self.pool.put(self.addr, link);
            }
        }
    }
}

/// A backend's response body on its way to the client. Polling it drives the backend
/// connection it comes over; its end (read, or known to be reached when it is dropped)
/// returns that connection to the pool.
pub(super) struct Relayed {
    body: Incoming,
    lease: Option<Lease>,
}

impl Relayed {
    /// `body`, read over `lease` (`None`: a connection not from the pool, driven elsewhere).
    pub(super) fn new(body: Incoming, lease: Option<Lease>) -> Relayed {
        Relayed { body, lease }
    }

    fn end(&mut self) {
        if let Some(mut lease) = self.lease.take() {
            lease.release();
        }
    }
}

impl Body for Relayed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(lease) = this.lease.as_mut() {
            lease.drive(cx);
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.end(),
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ if this.body.is_end_stream() => this.end(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        // The client's connection stops polling a body that says it has ended.
        if self.body.is_end_stream() {
            self.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A backend on a free port whose connections are each served by `serve`; sends the
    /// number of connections it accepted.
    async fn listen<F, Fut>(serve: F) -> (SocketAddr, tokio::sync::watch::Receiver<usize>)
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::watch::channel(0);
        tokio::spawn(async move {
            let mut accepted = 0;
            while let Ok((s, _)) = l.accept().await {
                accepted += 1;
                let _ = tx.send(accepted);
                tokio::spawn(serve(s));
            }
        });
        (addr, rx)
    }

    /// Reads through the end of the next request head; `false` once the connection ends.
    async fn read_head(s: &mut tokio::net::TcpStream, buf: &mut [u8]) -> bool {
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(buf).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
        }
        true
    }

    /// A backend answering `n` requests on each connection, then closing it; sends the
    /// number of connections it accepted.
    async fn backend(n: usize) -> (SocketAddr, tokio::sync::watch::Receiver<usize>) {
        listen(move |mut s| async move {
            let mut buf = vec![0u8; 4096];
            for _ in 0..n {
                if !read_head(&mut s, &mut buf).await {
                    return;
                }
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if s.write_all(ok).await.is_err() {
                    return;
                }
            }
        })
        .await
    }

    fn get() -> Request<Full<Bytes>> {
        Request::builder()
            .uri("/")
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .expect("request")
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (addr, accepted) = backend(100).await;
        let pool = Pool::new(8, Duration::from_secs(30));
        for _ in 0..5 {
            let (resp, lease) = pool.send(addr, get()).await.expect("response");
            assert_eq!(read_relayed(resp, lease).await, "ok");
        }
        assert_eq!(*accepted.borrow(), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_replaced() {
        let (addr, accepted) = backend(1).await;
        let pool = Pool::new(8, Duration::from_secs(30));
        for _ in 0..3 {
            let (resp, lease) = pool.send(addr, get()).await.expect("response");
            assert_eq!(read_relayed(resp, lease).await, "ok");
            // Let the backend's close arrive.
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
        let (resp, lease) = pool.send(addr, get()).await.expect("response");
        read_relayed(resp, lease).await;
        pool.sweep(Instant::now());
        assert_eq!(pool.idle_count(), 1);
        pool.sweep(Instant::now() + Duration::from_secs(31));
        assert_eq!(pool.idle_count(), 0);
    }

    /// A backend sending each response in two parts, `pause` apart: the head with the first
    /// half of a chunked body, then the rest.
    async fn slow_backend(pause: Duration) -> (SocketAddr, tokio::sync::watch::Receiver<usize>) {
        listen(move |mut s| async move {
            let mut buf = vec![0u8; 4096];
            while read_head(&mut s, &mut buf).await {
                let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n";
                if s.write_all(head).await.is_err() {
                    return;
                }
                tokio::time::sleep(pause).await;
                if s.write_all(b"3\r\ndef\r\n0\r\n\r\n").await.is_err() {
                    return;
                }
            }
        })
        .await
    }

    async fn read_relayed(resp: Response<Incoming>, lease: Lease) -> Bytes {
        use http_body_util::BodyExt;
        Relayed::new(resp.into_body(), Some(lease))
            .collect()
            .await
            .expect("body")
            .to_bytes()
    }

    #[tokio::test]
    async fn a_body_arriving_later_is_read_through_the_lent_connection_which_comes_back() {
        let (addr, accepted) = slow_backend(Duration::from_millis(30)).await;
        let pool = Pool::new(8, Duration::from_secs(30));
        for _ in 0..3 {
            let (resp, lease) = pool.send(addr, get()).await.expect("response");
            assert_eq!(read_relayed(resp, lease).await, "abcdef");
            assert_eq!(
                pool.idle_count(),
                1,
                "back in the pool at the end of the body"
            );
        }
        assert_eq!(*accepted.borrow(), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_closes_its_connection() {
        let (addr, accepted) = slow_backend(Duration::from_millis(200)).await;
        let pool = Pool::new(8, Duration::from_secs(30));
        let (resp, lease) = pool.send(addr, get()).await.expect("response");
        drop(Relayed::new(resp.into_body(), Some(lease)));
        assert_eq!(pool.idle_count(), 0);
        let (resp, lease) = pool.send(addr, get()).await.expect("response");
        assert_eq!(read_relayed(resp, lease).await, "abcdef");
        assert_eq!(
            *accepted.borrow(),
            2,
            "a new connection for the second request"
        );
    }

    #[tokio::test]
    async fn concurrent_requests_each_get_a_connection_and_all_come_back() {
        let (addr, accepted) = slow_backend(Duration::from_millis(20)).await;
        let pool = Pool::new(8, Duration::from_secs(30));
        let one = || async {
            let (resp, lease) = pool.send(addr, get()).await.expect("response");
            read_relayed(resp, lease).await
        };
        let (a, b, c) = tokio::join!(one(), one(), one());
        assert_eq!([a, b, c], ["abcdef", "abcdef", "abcdef"]);
        assert_eq!(*accepted.borrow(), 3);
        assert_eq!(pool.idle_count(), 3);
        let (a, b) = tokio::join!(one(), one());
        assert_eq!([a, b], ["abcdef", "abcdef"]);
        assert_eq!(*accepted.borrow(), 3, "pooled connections are reused");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        let pool = Pool::new(8, Duration::from_secs(30));
        match pool.send(addr, get()).await {
            Err(SendError::Connect(_)) => {}
            Err(other) => panic!("expected a connect error, got {other:?}"),
            Ok((resp, _)) => panic!("expected a connect error, got {}", resp.status()),
        }
    }
}
