//! The fast path for plain HTTP/1.1: a client connection's requests are parsed here with
//! `httparse` and forwarded as bytes over the worker's own keep-alive connections to the
//! backends, without hyper's request and response objects, header maps, body channels and
//! client dispatch task hand-offs. Everything else goes to hyper ([`Exit::Hyper`]).
//!
//! ```text
//!  client bytes ─▶ head (httparse) ─┬─ plain HTTP/1.1 ─▶ route, split, pick (as hyper's path)
//!                                   │     ─▶ head rewritten + body ─▶ pooled backend stream
//!                                   │     ◀─ response head (httparse), body relayed as framed
//!                                   └─ h2c, HTTP/1.0, Upgrade, Expect, chunked or oversized
//!                                      request, bad head ─▶ the connection goes on under hyper,
//!                                      from the bytes already read
//! ```
//!
//! A plain request has no `Upgrade`, `Expect` or `Transfer-Encoding`, at most one
//! `Content-Length` (within the body limit), a `Host`, an origin-form target and `Connection`
//! tokens among `close` and `keep-alive`. Its behaviour is the hyper path's: same backend
//! choice, retries (a refused connection on any method; a broken one or a timeout only for an
//! idempotent method), ejection, metrics, drain accounting (the request counts as in flight on
//! its backend until its response body has been sent) and 502/503/504 answers with a JSON
//! body. Hop-by-hop headers are dropped both ways; the response body is relayed as the
//! backend framed it (length, chunked, or until the backend closes, which then closes the
//! client's connection too).

use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hyper::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::{failure_message, is_idempotent_name, Failure, Peer, Proxy, HOP_BY_HOP};
use crate::balancer::{split, Endpoint, Group};
use crate::live::LiveService;

/// Most headers a request head may have on this path (hyper takes those with more).
const MAX_HEADERS: usize = 64;

/// Most headers of a response head (as many as hyper's client takes).
const MAX_RESPONSE_HEADERS: usize = 100;

/// Largest request head looked at here (hyper answers larger ones).
const MAX_HEAD: usize = 64 << 10;

/// How the fast path left a client connection.
pub(super) enum Exit {
    /// It is over (closed by either side, or after an answer that ends it).
    Closed,
    /// A request this path does not take: hyper serves the connection from these bytes on.
    Hyper(TcpStream, Bytes),
}

/// A parsed request head, ready to go.
struct Prepared {
    /// Bytes of the head.
    head_len: usize,
    /// Bytes of the body after it.
    body_len: usize,
    /// Its service, or the host that none serves.
    route: Result<Arc<LiveService>, String>,
    group: Group,
    idempotent: bool,
    /// A HEAD request (its response has no body).
    head: bool,
    /// The client asked to close after it.
    close: bool,
}

enum Prep {
    Partial,
    Ready(Prepared),
    /// Not for this path.
    Other,
}

/// A client connection on the fast path.
struct Client {
    stream: TcpStream,
    /// The answer being written (reused).
    out: Vec<u8>,
    /// The backend timeout of its requests: one timer, moved later for each request (which
    /// costs an atomic; a timer per request would be inserted in and removed from the
    /// runtime's wheel each time, under its lock).
    deadline: Pin<Box<Sleep>>,
}

/// Serves the requests of `stream` until it closes or one is not for this path.
pub(super) async fn serve(proxy: &Proxy, stream: TcpStream, peer: &Peer) -> Exit {
    let mut inbuf = BytesMut::with_capacity(8 << 10);
    // The backend request (rewritten head and body), reused.
    let mut req: Vec<u8> = Vec::with_capacity(1024);
    let mut c = Client {
        stream,
        out: Vec::with_capacity(1024),
        deadline: Box::pin(tokio::time::sleep(proxy.opts.backend_timeout)),
    };
    loop {
        let p = loop {
            if !inbuf.is_empty() {
                match proxy.prepare(&inbuf, &mut req, peer) {
                    Prep::Ready(p) => break p,
                    Prep::Other => return Exit::Hyper(c.stream, inbuf.freeze()),
                    Prep::Partial if inbuf.len() >= MAX_HEAD => {
                        return Exit::Hyper(c.stream, inbuf.freeze())
                    }
                    Prep::Partial => {}
                }
            }
            inbuf.reserve(4096);
            match c.stream.read_buf(&mut inbuf).await {
                Ok(0) | Err(_) => return Exit::Closed,
                Ok(_) => {}
            }
        };
        let total = p.head_len + p.body_len;
        while inbuf.len() < total {
            inbuf.reserve(total - inbuf.len());
            match c.stream.read_buf(&mut inbuf).await {
                Ok(0) | Err(_) => return Exit::Closed,
                Ok(_) => {}
            }
        }
        req.extend_from_slice(&inbuf[p.head_len..total]);
        inbuf.advance(total);
        let keep = match &p.route {
            Ok(svc) => proxy.forward_fast(svc, &p, &req, &mut c).await,
            Err(host) => {
                proxy.metrics.unrouted("");
                let text = format!("no app serves host '{host}'");
                answer(&mut c, StatusCode::NOT_FOUND, &text, p.close).await
            }
        };
        if !keep || p.close {
            let _ = c.stream.shutdown().await;
            return Exit::Closed;
        }
    }
}

/// Writes a JSON answer of the balancer itself; false when the client is gone.
async fn answer(c: &mut Client, status: StatusCode, message: &str, close: bool) -> bool {
    let body = serde_json::json!({ "message": message }).to_string();
    let out = &mut c.out;
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        if close { "connection: close\r\n" } else { "" },
    );
    out.extend_from_slice(body.as_bytes());
    c.stream.write_all(out).await.is_ok()
}

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_str()))
}

/// `Content-Length`'s value, if it is one number.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The comma-separated tokens of a header value, trimmed.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

impl Proxy {
    /// Parses the request head at the start of `buf`; when it is one for this path, routes it
    /// and writes the backend's version of its head into `req`.
    fn prepare(&self, buf: &[u8], req: &mut Vec<u8>, peer: &Peer) -> Prep {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Request::new(&mut headers);
        let head_len = match r.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Prep::Partial,
            Err(_) => return Prep::Other,
        };
        let (Some(method), Some(path), Some(1)) = (r.method, r.path, r.version) else {
            return Prep::Other;
        };
        if method == "CONNECT" || !path.starts_with('/') {
            return Prep::Other;
        }
        let canary_name = self.opts.canary_header.as_str();
        let (mut host, mut length, mut close, mut canary, mut xff) =
            (None, None, false, None, None);
        for h in r.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("host") {
                match (host, std::str::from_utf8(h.value)) {
                    (None, Ok(v)) => host = Some(v),
                    _ => return Prep::Other,
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                match (length, parse_length(h.value)) {
                    (None, Some(n)) => length = Some(n),
                    _ => return Prep::Other,
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("upgrade")
                || name.eq_ignore_ascii_case("expect")
            {
                return Prep::Other;
            } else if name.eq_ignore_ascii_case("connection") {
                for t in tokens(h.value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if !t.eq_ignore_ascii_case(b"keep-alive") {
                        return Prep::Other;
                    }
                }
            } else if name.eq_ignore_ascii_case(canary_name) {
                canary = Some(std::str::from_utf8(h.value).ok());
            } else if name.eq_ignore_ascii_case("x-forwarded-for") && xff.is_none() {
                xff = Some(h.value);
            }
        }
        let Some(host) = host else {
            return Prep::Other;
        };
        let body_len = length.unwrap_or(0);
        let Some(body_len) = usize::try_from(body_len)
            .ok()
            .filter(|&n| n <= self.opts.max_body)
        else {
            return Prep::Other;
        };
        let route = match self.routes.load().by_host(host) {
            Some(svc) => Ok(svc.clone()),
            None => Err(host.to_owned()),
        };
        let mut group = Group::Any;
        if let Ok(svc) = &route {
            let c = svc.service.canary.as_ref();
            let weight = c.and_then(|c| c.weight).or(self.opts.canary_weight);
            group = split(canary.flatten(), weight, c.is_some(), fastrand::u32(..100));
        }
        req.clear();
        req.extend_from_slice(method.as_bytes());
        req.push(b' ');
        req.extend_from_slice(path.as_bytes());
        req.extend_from_slice(b" HTTP/1.1\r\n");
        for h in r.headers.iter() {
            if is_hop_by_hop(h.name) || h.name.eq_ignore_ascii_case("x-forwarded-for") {
                continue;
            }
            req.extend_from_slice(h.name.as_bytes());
            req.extend_from_slice(b": ");
            req.extend_from_slice(h.value);
            req.extend_from_slice(b"\r\n");
        }
        let ip = peer.forwarded.as_ref().map(|v| v.as_bytes());
        if xff.is_some() || ip.is_some() {
            req.extend_from_slice(b"x-forwarded-for: ");
            if let Some(prev) = xff {
                req.extend_from_slice(prev);
                if ip.is_some() {
                    req.extend_from_slice(b", ");
                }
            }
            req.extend_from_slice(ip.unwrap_or_default());
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        Prep::Ready(Prepared {
            head_len,
            body_len,
            route,
            group,
            idempotent: is_idempotent_name(method),
            head: method == "HEAD",
            close,
        })
    }

    /// Sends `req` to backends of `svc` until one answers (relayed to `client`) or attempts
    /// run out (answered here). False when the client's connection is to be closed.
    async fn forward_fast(
        &self,
        svc: &LiveService,
        p: &Prepared,
        req: &[u8],
        c: &mut Client,
    ) -> bool {
        let app = &svc.service.app_id;
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut last: Option<(&Arc<Endpoint>, Failure)> = None;
        for _ in 0..self.opts.max_attempts {
            let Some(ep) = self.choose(svc, p.group, &tried) else {
                break;
            };
            tried.push(ep.addr);
            match self.attempt_fast(ep, app, p, req, c).await {
                Ok(keep) => return keep,
                Err(f) => {
                    let retry = matches!(f, Failure::Refused(_)) || p.idempotent;
                    self.series(ep, app).failure(&self.metrics);
                    last = Some((ep, f));
                    if !retry {
                        break;
                    }
                }
            }
        }
        let (status, text) = match last {
            None => {
                self.metrics.unrouted(app);
                let text = format!("app {app} has no healthy backend");
                (StatusCode::SERVICE_UNAVAILABLE, text)
            }
            Some((ep, failure)) => {
                self.series(ep, app).failed_request();
                failure_message(app, ep, failure, self.opts.backend_timeout)
            }
        };
        answer(c, status, &text, p.close).await
    }

    /// One try on `ep`: `Err` when no response head came (nothing was sent to the client),
    /// else whether the client's connection stays open after the relayed response.
    async fn attempt_fast(
        &self,
        ep: &Arc<Endpoint>,
        app: &str,
        p: &Prepared,
        req: &[u8],
        c: &mut Client,
    ) -> Result<bool, Failure> {
        let guard = ep.start();
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started) + self.opts.backend_timeout;
        c.deadline.as_mut().reset(deadline);
        let got = {
            let mut exchange = std::pin::pin!(self.raw.exchange(ep.addr, req, p, &mut c.out));
            let timer = &mut c.deadline;
            std::future::poll_fn(|cx| match exchange.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
            })
            .await
        };
        let failure = match got {
            Some(Ok((backend, resp))) => {
                if resp.status >= 500 {
                    ep.failed(&self.opts.ejection, Instant::now());
                } else {
                    ep.succeeded();
                }
                let secs = started.elapsed().as_secs_f64();
                self.series(ep, app)
                    .response(&self.metrics, resp.status, secs);
                let keep = self.raw.relay(ep.addr, backend, resp, c).await;
                drop(guard);
                return Ok(keep);
            }
            Some(Err(f)) => f,
            None => Failure::Timeout,
        };
        if ep.failed(&self.opts.ejection, Instant::now()) {
            tracing::warn!(backend = %ep.addr, task = %ep.task_id, "backend ejected");
        }
        Err(failure)
    }
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the backend closes (the client's connection then closes too).
    UntilClose,
}

/// A response head read from a backend (its rewritten version is in the caller's `out`).
struct Head {
    status: u16,
    framing: Framing,
    /// The backend's connection may serve another request.
    reusable: bool,
    /// The client's connection closes after this response.
    close: bool,
}

/// A keep-alive connection to a backend with what was read from it and not used yet.
struct Backend {
    stream: TcpStream,
    buf: BytesMut,
}

impl Backend {
    async fn connect(addr: SocketAddr) -> Result<Backend, Failure> {
        let stream = super::conn::connect(addr).await.map_err(Failure::Refused)?;
        Ok(Backend {
            stream,
            buf: BytesMut::with_capacity(8 << 10),
        })
    }

    /// Whether an idle connection is still usable: nothing (not even its end) has arrived on
    /// it. Costs no system call unless the socket was reported readable.
    fn idle_and_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Reads more into the buffer; an error when the backend closed.
    async fn fill(&mut self) -> Result<(), String> {
        self.buf.reserve(4096);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err("connection closed before message completed".to_owned()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// An idle connection and since when.
struct Idle {
    backend: Backend,
    since: Instant,
}

/// The worker's keep-alive connections of the fast path, by backend address (used by one
/// worker thread: the lock is never contended).
pub(super) struct RawPool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    max_idle_per_backend: usize,
    idle_timeout: Duration,
}

impl RawPool {
    pub(super) fn new(max_idle_per_backend: usize, idle_timeout: Duration) -> RawPool {
        RawPool {
            idle: Mutex::new(HashMap::new()),
            max_idle_per_backend: max_idle_per_backend.max(1),
            idle_timeout,
        }
    }

    /// The newest usable idle connection to `addr`; drops the closed ones it passes.
    fn take(&self, addr: SocketAddr) -> Option<Backend> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&addr)?;
        while let Some(c) = list.pop() {
            if c.backend.idle_and_open() {
                return Some(c.backend);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, backend: Backend) {
        let since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(addr).or_default();
        if list.len() >= self.max_idle_per_backend {
            list.remove(0);
        }
        list.push(Idle { backend, since });
    }

    /// Drops the connections closed by their backend or unused since `now - idle_timeout`.
    pub(super) fn sweep(&self, now: Instant) {
        let timeout = self.idle_timeout;
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|_, list| {
            list.retain(|c| {
                now.saturating_duration_since(c.since) < timeout && c.backend.idle_and_open()
            });
            !list.is_empty()
        });
    }

    /// Sends `req` to `addr` and reads the response head; writes the client's version of the
    /// head into `out`.
    async fn exchange(
        &self,
        addr: SocketAddr,
        req: &[u8],
        p: &Prepared,
        out: &mut Vec<u8>,
    ) -> Result<(Backend, Head), Failure> {
        let mut b = match self.take(addr) {
            Some(b) => b,
            None => Backend::connect(addr).await?,
        };
        if let Err(e) = b.stream.write_all(req).await {
            return Err(Failure::Broken(e.to_string()));
        }
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
            let mut r = httparse::Response::new(&mut headers);
            match r.parse(&b.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = r.code.unwrap_or(0);
                    if (100..200).contains(&status) && status != 101 {
                        // An interim response (100 Continue, 103 Early Hints): the final one
                        // follows.
                        b.buf.advance(n);
                        continue;
                    }
                    if status == 101 {
                        return Err(Failure::Broken("unexpected 101 response".to_owned()));
                    }
                    let head = rewrite_response(&r, p, out).map_err(Failure::Broken)?;
                    b.buf.advance(n);
                    return Ok((b, head));
                }
                Ok(httparse::Status::Partial) => {
                    if b.buf.len() >= MAX_HEAD {
                        return Err(Failure::Broken("response head too large".to_owned()));
                    }
                }
                Err(e) => return Err(Failure::Broken(format!("invalid response: {e}"))),
            }
            b.fill().await.map_err(Failure::Broken)?;
        }
    }

    /// Sends the response (head in `out`, body from `b`) to the client; the backend's
    /// connection goes back to the pool when the body ended cleanly. Whether the client's
    /// connection stays open.
    async fn relay(&self, addr: SocketAddr, mut b: Backend, head: Head, c: &mut Client) -> bool {
        let (client, out) = (&mut c.stream, &mut c.out);
        let mut chunked = Chunked::default();
        let mut left = match head.framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        // What of the buffer belongs to this body; true once it ended.
        let mut take = |buf: &[u8]| -> Result<(usize, bool), ()> {
            match head.framing {
                Framing::Empty => Ok((0, true)),
                Framing::Length(_) => {
                    let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                    left -= n as u64;
                    Ok((n, left == 0))
                }
                Framing::Chunked => Ok(match chunked.feed(buf)? {
                    Some(n) => (n, true),
                    None => (buf.len(), false),
                }),
                Framing::UntilClose => Ok((buf.len(), false)),
            }
        };
        let Ok((n, mut done)) = take(&b.buf) else {
            return false;
        };
        out.extend_from_slice(&b.buf[..n]);
        b.buf.advance(n);
        if client.write_all(out).await.is_err() {
            return false;
        }
        while !done {
            if let Err(e) = b.fill().await {
                if head.framing == Framing::UntilClose {
                    break;
                }
                tracing::debug!(error = %e, backend = %addr, "response body cut");
                return false;
            }
            let Ok((n, end)) = take(&b.buf) else {
                return false;
            };
            done = end;
            if client.write_all(&b.buf[..n]).await.is_err() {
                return false;
            }
            b.buf.advance(n);
        }
        if head.reusable && head.framing != Framing::UntilClose && b.buf.is_empty() {
            self.put(addr, b);
        }
        !head.close
    }
}

/// Writes the client's response head for the backend's `r` into `out` (hop-by-hop headers
/// dropped, except `Transfer-Encoding`: the body is relayed as the backend framed it).
fn rewrite_response(
    r: &httparse::Response<'_, '_>,
    p: &Prepared,
    out: &mut Vec<u8>,
) -> Result<Head, String> {
    let status = r.code.unwrap_or(0);
    let mut length = None;
    let mut chunked = None;
    let mut reusable = r.version == Some(1);
    let mut named = false;
    for h in r.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            match (length, parse_length(h.value)) {
                (None, Some(n)) => length = Some(n),
                (Some(a), Some(n)) if a == n => {}
                _ => return Err("invalid content-length in the response".to_owned()),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = Some(
                tokens(h.value)
                    .last()
                    .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")),
            );
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    reusable = false;
                } else if !t.eq_ignore_ascii_case(b"keep-alive") {
                    named = true;
                }
            }
        }
    }
    let framing = if p.head || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    if framing == Framing::UntilClose {
        reusable = false;
    }
    let close = p.close || framing == Framing::UntilClose;
    // Headers the backend's `Connection` names are hop-by-hop too (rare: listed only then).
    let listed: Vec<&[u8]> = if named {
        r.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| tokens(h.value))
            .collect()
    } else {
        Vec::new()
    };
    out.clear();
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .or(r.reason)
        .unwrap_or("");
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    for h in r.headers.iter() {
        let hop = if h.name.eq_ignore_ascii_case("transfer-encoding") {
            false
        } else if h.name.eq_ignore_ascii_case("content-length") {
            // A transfer coding overrides a length (RFC 9112 6.3): only one goes on.
            chunked.is_some()
        } else {
            is_hop_by_hop(h.name)
        };
        if hop
            || listed
                .iter()
                .any(|l| h.name.as_bytes().eq_ignore_ascii_case(l))
        {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Head {
        status,
        framing,
        reusable,
        close,
    })
}

/// Where a chunked body's reader is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk's size (hex digits so far: `digits`).
    #[default]
    Size,
    /// In a chunk extension.
    Ext,
    /// After the size line's CR.
    SizeLf,
    /// In a chunk's data, this many bytes left.
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    /// After the final CR.
    EndLf,
    Done,
}

/// Finds the end of a chunked body in the bytes passing through.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u32,
}

impl Chunked {
    /// Reads `bytes`: `Some(n)` when the body ends after their first `n`, `None` when all of
    /// them belong to it, `Err` when they are not a chunked body.
    fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, ()> {
        use ChunkState::*;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match self.state {
                Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        // A digit's value: hex digits are ASCII, and `to_digit(16)` takes them.
                        let d = u64::from(char::from(b).to_digit(16).ok_or(())?);
                        if self.digits >= 15 {
                            return Err(());
                        }
                        self.digits += 1;
                        self.size = self.size * 16 + d;
                        Size
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => Ext,
                    b'\r' if self.digits > 0 => SizeLf,
                    _ => return Err(()),
                },
                Ext => match b {
                    b'\r' => SizeLf,
                    _ => Ext,
                },
                SizeLf => match b {
                    b'\n' if self.size == 0 => TrailerStart,
                    b'\n' => Data(self.size),
                    _ => return Err(()),
                },
                Data(left) => {
                    let n =
                        usize::try_from(left).map_or(bytes.len() - i, |l| l.min(bytes.len() - i));
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 { DataCr } else { Data(left) };
                    continue;
                }
                DataCr => match b {
                    b'\r' => DataLf,
                    _ => return Err(()),
                },
                DataLf => match b {
                    b'\n' => {
                        self.size = 0;
                        self.digits = 0;
                        Size
                    }
                    _ => return Err(()),
                },
                TrailerStart => match b {
                    b'\r' => EndLf,
                    _ => TrailerLine,
                },
                TrailerLine => match b {
                    b'\r' => TrailerLf,
                    _ => TrailerLine,
                },
                TrailerLf => match b {
                    b'\n' => TrailerStart,
                    _ => return Err(()),
                },
                EndLf => match b {
                    b'\n' => {
                        self.state = Done;
                        return Ok(Some(i + 1));
                    }
                    _ => return Err(()),
                },
                Done => return Ok(Some(i)),
            };
            i += 1;
        }
        Ok((self.state == Done).then_some(i))
    }
}

/// A client connection handed to hyper, with the bytes the fast path had already read from
/// it served first.
pub(super) struct Prefixed {
    pre: Bytes,
    io: TcpStream,
}

impl Prefixed {
    pub(super) fn new(pre: Bytes, io: TcpStream) -> Prefixed {
        Prefixed { pre, io }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(parts: &[&[u8]]) -> Result<Option<usize>, ()> {
        let mut c = Chunked::default();
        let mut last = None;
        for p in parts {
            last = c.feed(p)?;
            if last.is_some() {
                return Ok(last);
            }
        }
        Ok(last)
    }

    #[test]
    fn chunked_bodies_end_where_their_last_chunk_and_trailers_do() {
        let body = b"3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n0\r\n\r\nGET";
        assert_eq!(ends(&[body]), Ok(Some(body.len() - 3)));
        // Split anywhere, the end is found in the last part.
        for cut in 1..body.len() - 3 {
            let (a, b) = body.split_at(cut);
            assert_eq!(
                ends(&[a, b]),
                Ok(Some(body.len() - 3 - cut)),
                "cut at {cut}"
            );
        }
        let trailers = b"0\r\nx-a: 1\r\nx-b: 2\r\n\r\n";
        assert_eq!(ends(&[trailers]), Ok(Some(trailers.len())));
        assert_eq!(ends(&[b"5\r\nab"]), Ok(None), "not over yet");
        assert_eq!(ends(&[b"zz\r\n"]), Err(()));
        assert_eq!(ends(&[b"3\r\nabcX"]), Err(()), "data not followed by CRLF");
        assert_eq!(ends(&[b"\r\n"]), Err(()), "a size needs a digit");
        assert_eq!(ends(&[b"fffffffffffffffff\r\n"]), Err(()), "size overflow");
    }

    #[test]
    fn content_lengths_are_plain_numbers() {
        assert_eq!(parse_length(b" 42 "), Some(42));
        assert_eq!(parse_length(b"+1"), None);
        assert_eq!(parse_length(b"1,1"), None);
        assert_eq!(parse_length(b""), None);
    }

    fn prepared(head: bool, close: bool) -> Prepared {
        Prepared {
            head_len: 0,
            body_len: 0,
            route: Err(String::new()),
            group: Group::Any,
            idempotent: true,
            head,
            close,
        }
    }

    fn rewrite(raw: &[u8], p: &Prepared) -> (Result<Head, String>, String) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut headers);
        assert!(matches!(r.parse(raw), Ok(httparse::Status::Complete(_))));
        let mut out = Vec::new();
        let h = rewrite_response(&r, p, &mut out);
        (h, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn response_heads_lose_hop_by_hop_headers_and_keep_their_framing() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x-private\r\nX-Private: 1\r\n\
Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-Kept: yes\r\n\r\n";
        let (h, text) = rewrite(raw, &prepared(false, false));
        let h = h.expect("head");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.reusable && !h.close);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kept: yes\r\n\r\n"
        );
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n";
        let (h, _) = rewrite(raw, &prepared(false, false));
        assert_eq!(h.expect("head").framing, Framing::Length(2));
        let (h, _) = rewrite(raw, &prepared(true, false));
        assert_eq!(h.expect("head").framing, Framing::Empty, "HEAD");
        // No length: read until the backend closes, and close the client's connection.
        let raw = b"HTTP/1.0 200 OK\r\n\r\n";
        let (h, text) = rewrite(raw, &prepared(false, false));
        let h = h.expect("head");
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.reusable && h.close);
        assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\ntransfer-encoding: chunked\r\n\r\n";
        let (h, text) = rewrite(raw, &prepared(false, false));
        assert_eq!(h.expect("head").framing, Framing::Chunked);
        assert!(!text.contains("content-length"), "{text}");
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n";
        assert!(rewrite(raw, &prepared(false, false)).0.is_err());
    }
}
