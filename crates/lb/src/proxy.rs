//! The L7 proxy: one listener speaking HTTP/1.1 and h2c (prior knowledge), routing by `Host` to
//! the virtual hosts of the routing table, through keep-alive pools to the backends.
//!
//! ```text
//!  client ─▶ Host → service ─▶ canary split ─▶ pick backend ─▶ pooled HTTP/1.1 ─▶ task
//!                                   ▲                     │ refused: next backend (any method)
//!                                   └── retry ────────────┤ reset / timeout: next backend if
//!                                                         │   idempotent, else 502 / 504
//! ```
//!
//! A response's body keeps its backend counted as busy until it is sent, so a backend leaving
//! the table drains its requests before connections to it are cut.
//!
//! The listener is served by a few single-threaded workers ([`workers`]). Plain HTTP/1.1
//! requests (most of them) take a fast path ([`fast`]): heads parsed with `httparse`, bytes
//! forwarded over the worker's own keep-alive backend streams, the same choice, retries and
//! accounting as below. A connection's first request that is not plain (h2c, HTTP/1.0, an
//! `Upgrade`, a chunked body…) hands the connection to hyper's server, whose requests go
//! through the worker's keep-alive pool of hyper client connections ([`pool`]). An `Upgrade`
//! request (WebSocket) is forwarded over a connection of its own and, once both sides switched
//! protocols, spliced both ways ([`upgrade`]).

mod conn;
mod fast;
mod pool;
mod upgrade;
mod workers;

pub use workers::spawn_workers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderName, HeaderValue, HOST, UPGRADE};
use hyper::http::uri::PathAndQuery;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::balancer::{pick, split, Algorithm, Ejection, Endpoint, Group};
use crate::live::{LiveService, Routes};
use crate::metrics::{BackendSeries, Metrics};

/// A response body of the proxy.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// How the proxy behaves.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// Backend choice.
    pub algorithm: Algorithm,
    /// Passive ejection.
    pub ejection: Ejection,
    /// The request header that selects the canary (`1`) or the stable version (`0`).
    pub canary_header: HeaderName,
    /// The canary's share of other requests when its app has no weight label.
    pub canary_weight: Option<u32>,
    /// Time a backend has to send its response head.
    pub backend_timeout: Duration,
    /// Backends one request may try.
    pub max_attempts: usize,
    /// Largest request body accepted (bodies are kept to be resent on retry).
    pub max_body: usize,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            algorithm: Algorithm::LeastRequest,
            ejection: Ejection::default(),
            canary_header: HeaderName::from_static("x-meseta-canary"),
            canary_weight: None,
            backend_timeout: Duration::from_secs(30),
            max_attempts: 3,
            max_body: 8 << 20,
        }
    }
}

/// The L7 proxy.
pub struct Proxy {
    routes: Arc<Routes>,
    metrics: Arc<Metrics>,
    pool: pool::Pool,
    /// The fast path's keep-alive connections.
    raw: fast::RawPool,
    opts: ProxyOptions,
}

/// Why an attempt on a backend failed.
enum Failure {
    Refused(String),
    Broken(String),
    Timeout,
}

/// Headers of one hop, never forwarded (names made once, not parsed per request).
static HOP_BY_HOP: [HeaderName; 8] = [
    hyper::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    hyper::header::TRANSFER_ENCODING,
    UPGRADE,
    hyper::header::TE,
    hyper::header::TRAILER,
    hyper::header::PROXY_AUTHORIZATION,
];

impl Proxy {
    /// A proxy over `routes`, counting into `metrics`.
    pub fn new(routes: Arc<Routes>, metrics: Arc<Metrics>, opts: ProxyOptions) -> Proxy {
        Proxy {
            routes,
            metrics,
            pool: pool::Pool::new(1024, Duration::from_secs(30)),
            raw: fast::RawPool::new(1024, Duration::from_secs(30)),
            opts,
        }
    }

    /// Accepts connections on `listener` until `stop` is cancelled.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) {
        self.sweep_pool(stop.clone());
        while let Some((stream, peer)) = next_client(&listener, &stop).await {
            self.connection(stream, peer, None);
        }
    }

    /// Sweeps the keep-alive pool now and then until `stop` is cancelled.
    fn sweep_pool(self: &Arc<Self>, stop: CancellationToken) {
        let proxy = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(proxy.pool.idle_timeout() / 3);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = every.tick() => {
                        proxy.pool.sweep(Instant::now());
                        proxy.raw.sweep(Instant::now());
                    }
                }
            }
        });
    }

    /// Serves the client connection `stream` from `peer` in a task of its own (holding
    /// `counted` until it ends).
    fn connection(
        self: &Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        counted: Option<workers::Open>,
    ) {
        let proxy = self.clone();
        let client = Arc::new(Peer::new(peer));
        tokio::spawn(async move {
            let _counted = counted;
            // Plain HTTP/1.1 requests take the fast path; the connection goes on under hyper
            // from the first request that is not one (or from the start, for h2c).
            let (stream, read) = match fast::serve(&proxy, stream, &client).await {
                fast::Exit::Closed => return,
                fast::Exit::Hyper(stream, read) => (stream, read),
            };
            let stream = fast::Prefixed::new(read, stream);
            let svc = hyper::service::service_fn(move |req| {
                let proxy = proxy.clone();
                let client = client.clone();
                async move { Ok::<_, Infallible>(proxy.handle_from(req, &client).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // One `send` of a flattened buffer instead of a `writev`: the kernel's vectored
            // path costs more than copying a response's small body behind its head.
            builder.http1().writev(false);
            let server = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            if let Err(e) = server.await {
                tracing::debug!(error = %e, %peer, "client connection ended");
            }
        });
    }

    /// Answers one request of the client at `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        self.handle_from(req, &Peer::new(peer)).await
    }

    /// Answers one request of `peer`.
    async fn handle_from(&self, mut req: Request<Incoming>, peer: &Peer) -> Response<Body> {
        let routed = host_of(&req).and_then(|h| self.routes.load().by_host(h).cloned());
        let Some(svc) = routed else {
            self.metrics.unrouted("");
            let host = host_of(&req).unwrap_or_default();
            return reply(
                StatusCode::NOT_FOUND,
                &format!("no app serves host '{host}'"),
            );
        };
        let mut via = if upgrade::is_upgrade(req.version(), req.headers()) {
            Via::Upgrade(Some(hyper::upgrade::on(&mut req)))
        } else {
            Via::Pool
        };
        let (parts, body) = req.into_parts();
        // Most requests have no body: nothing to wait for.
        let body = if body.is_end_stream() {
            Bytes::new()
        } else {
            match Limited::new(body, self.opts.max_body).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    self.metrics.unrouted(&svc.service.app_id);
                    let status = if e.is::<http_body_util::LengthLimitError>() {
                        StatusCode::PAYLOAD_TOO_LARGE
                    } else {
                        StatusCode::BAD_REQUEST
                    };
                    return reply(status, &format!("cannot read the request body: {e}"));
                }
            }
        };
        self.forward(&svc, &parts, body, peer, &mut via).await
    }

    /// Sends the request to backends of `svc` until one answers or attempts run out.
    async fn forward(
        &self,
        svc: &LiveService,
        parts: &hyper::http::request::Parts,
        body: Bytes,
        peer: &Peer,
        via: &mut Via,
    ) -> Response<Body> {
        let app = &svc.service.app_id;
        let header = parts
            .headers
            .get(&self.opts.canary_header)
            .and_then(|v| v.to_str().ok());
        let canary = svc.service.canary.as_ref();
        let weight = canary.and_then(|c| c.weight).or(self.opts.canary_weight);
        let group = split(header, weight, canary.is_some(), fastrand::u32(..100));
        let idempotent = is_idempotent(&parts.method);
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut last: Option<(&Arc<Endpoint>, Failure)> = None;
        for _ in 0..self.opts.max_attempts {
            let Some(ep) = self.choose(svc, group, &tried) else {
                break;
            };
            tried.push(ep.addr);
            match self.attempt(ep, parts, body.clone(), peer, app, via).await {
                Ok(resp) => return resp,
                Err(f) => {
                    let retry = matches!(f, Failure::Refused(_)) || idempotent;
                    self.series(ep, app).failure(&self.metrics);
                    last = Some((ep, f));
                    if !retry {
                        break;
                    }
                }
            }
        }
        let Some((ep, failure)) = last else {
            self.metrics.unrouted(app);
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("app {app} has no healthy backend"),
            );
        };
        // The request failed: it counts against the version that failed it last.
        self.series(ep, app).failed_request();
        failure_reply(app, ep, failure, self.opts.backend_timeout)
    }

    /// The metric series of `ep`, an endpoint of `app`.
    fn series<'e>(&self, ep: &'e Endpoint, app: &str) -> &'e BackendSeries {
        ep.series
            .get_or_init(|| self.metrics.backend(app, &ep.addr.to_string(), &ep.version))
    }

    fn choose<'s>(
        &self,
        svc: &'s LiveService,
        group: Group,
        tried: &[SocketAddr],
    ) -> Option<&'s Arc<Endpoint>> {
        let now = Instant::now();
        let alg = self.opts.algorithm;
        pick(&svc.endpoints, group, tried, alg, svc.rr.here(), now).or_else(|| {
            // A canary-only or stable-only request with none left of its group.
            (group != Group::Any)
                .then(|| pick(&svc.endpoints, Group::Any, tried, alg, svc.rr.here(), now))
                .flatten()
        })
    }

    /// One try on `ep`.
    async fn attempt(
        &self,
        ep: &Arc<Endpoint>,
        parts: &hyper::http::request::Parts,
        body: Bytes,
        peer: &Peer,
        app: &str,
        via: &mut Via,
    ) -> Result<Response<Body>, Failure> {
        let mut req = backend_request(parts, body, peer);
        if let Via::Upgrade(_) = via {
            upgrade::restore(req.headers_mut(), parts.headers.get(UPGRADE).cloned());
        }
        let guard = ep.start();
        let started = Instant::now();
        let result =
            tokio::time::timeout(self.opts.backend_timeout, self.send(via, ep.addr, req)).await;
        let failure = match result {
            Ok(Ok((resp, lease))) => {
                let status = resp.status();
                if status.is_server_error() {
                    ep.failed(&self.opts.ejection, Instant::now());
                } else {
                    ep.succeeded();
                }
                let secs = started.elapsed().as_secs_f64();
                self.series(ep, app)
                    .response(&self.metrics, status.as_u16(), secs);
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    if let Via::Upgrade(client) = via {
                        if let Some(client) = client.take() {
                            let ep = ep.clone();
                            return Ok(upgrade::splice(
                                resp,
                                client,
                                ep,
                                guard,
                                &self.metrics,
                                app,
                            ));
                        }
                    }
                }
                let (mut head, body) = resp.into_parts();
                strip_hop_by_hop(&mut head.headers);
                let body = pool::Relayed::new(body, lease).map_frame(move |f| {
                    let _busy = &guard;
                    f
                });
                return Ok(Response::from_parts(head, body.boxed()));
            }
            Ok(Err(conn::SendError::Connect(e))) => Failure::Refused(e),
            Ok(Err(conn::SendError::Http(e))) => Failure::Broken(error_text(&e)),
            Err(_) => Failure::Timeout,
        };
        if ep.failed(&self.opts.ejection, Instant::now()) {
            tracing::warn!(backend = %ep.addr, task = %ep.task_id, "backend ejected");
        }
        Err(failure)
    }
}

/// How a request reaches its backend.
enum Via {
    /// The worker's keep-alive pool.
    Pool,
    /// A connection of its own, for an upgrade; holds the client's side until it is spliced.
    Upgrade(Option<OnUpgrade>),
}

impl Proxy {
    async fn send(
        &self,
        via: &Via,
        addr: SocketAddr,
        req: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Option<pool::Lease>), conn::SendError> {
        match via {
            Via::Pool => {
                let (resp, lease) = self.pool.send(addr, req).await?;
                Ok((resp, Some(lease)))
            }
            Via::Upgrade(_) => Ok((upgrade::send(addr, req).await?, None)),
        }
    }
}

/// GET, HEAD, OPTIONS, TRACE, PUT and DELETE may be sent twice.
pub fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// [`is_idempotent`] of a method's name as it came in.
fn is_idempotent_name(m: &str) -> bool {
    matches!(m, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE")
}

/// The host a request is for: the `Host` header, else the URI's authority (HTTP/2).
fn host_of<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// The client of a connection and its `X-Forwarded-For` entry, made once per connection.
struct Peer {
    ip: std::net::IpAddr,
    forwarded: Option<HeaderValue>,
}

impl Peer {
    fn new(addr: SocketAddr) -> Peer {
        Peer {
            ip: addr.ip(),
            forwarded: HeaderValue::from_str(&addr.ip().to_string()).ok(),
        }
    }
}

fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// The request as the backend gets it: HTTP/1.1, the URI in origin-form, the client's `Host`,
/// hop-by-hop headers removed, `X-Forwarded-For` appended.
fn backend_request(
    parts: &hyper::http::request::Parts,
    body: Bytes,
    peer: &Peer,
) -> Request<Full<Bytes>> {
    let uri = if parts.uri.scheme().is_none() && parts.uri.authority().is_none() {
        // Already origin-form (HTTP/1.1): shares the client's bytes.
        parts.uri.clone()
    } else {
        Uri::from(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        )
    };
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    headers.clone_from(&parts.headers);
    strip_hop_by_hop(headers);
    if !headers.contains_key(HOST) {
        if let Some(a) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                headers.insert(HOST, v);
            }
        }
    }
    let xff = HeaderName::from_static("x-forwarded-for");
    let forwarded = match headers.get(&xff) {
        None => peer.forwarded.clone(),
        Some(prev) => prev
            .to_str()
            .ok()
            .and_then(|prev| HeaderValue::from_str(&format!("{prev}, {}", peer.ip)).ok()),
    };
    if let Some(v) = forwarded {
        headers.insert(xff, v);
    }
    req
}

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    // A scan of the few headers a request has, comparing names without hashing them.
    if headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        strip_named_hop_by_hop(headers);
    }
}

/// Removes the hop-by-hop headers and those `Connection` names.
fn strip_named_hop_by_hop(headers: &mut hyper::HeaderMap) {
    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    for h in &named {
        headers.remove(h.as_str());
    }
}

fn failure_reply(app: &str, ep: &Endpoint, failure: Failure, timeout: Duration) -> Response<Body> {
    let (status, text) = failure_message(app, ep, failure, timeout);
    reply(status, &text)
}

/// The status and message of a request that got no response from `ep`, its last backend.
fn failure_message(
    app: &str,
    ep: &Endpoint,
    failure: Failure,
    timeout: Duration,
) -> (StatusCode, String) {
    let backend = ep.addr;
    match failure {
        Failure::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "backend {backend} of app {app} did not answer within {} s",
                timeout.as_secs_f64()
            ),
        ),
        Failure::Refused(e) => (
            StatusCode::BAD_GATEWAY,
            format!("cannot connect to backend {backend} of app {app}: {e}"),
        ),
        Failure::Broken(e) => (
            StatusCode::BAD_GATEWAY,
            format!("backend {backend} of app {app} failed: {e}"),
        ),
    }
}

/// An empty body.
fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON answer of the balancer itself: `{"message": …}`.
pub fn reply(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The next client connection on `listener` (with `TCP_NODELAY` set), or `None` once `stop` is
/// cancelled. A failed accept (out of file descriptors, say) is logged and retried shortly.
pub(crate) async fn next_client(
    listener: &TcpListener,
    stop: &CancellationToken,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_methods_are_retried_after_reaching_a_backend() {
        assert!(is_idempotent(&Method::GET) && is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST) && !is_idempotent(&Method::PATCH));
    }

    #[test]
    fn backend_requests_keep_host_drop_hop_by_hop_and_add_forwarded_for() {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/a/b?c=d")
            .header("host", "www.example.com")
            .header("connection", "keep-alive, x-private")
            .header("x-private", "1")
            .header("x-forwarded-for", "10.1.1.1")
            .header("x-other", "kept")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        let peer = SocketAddr::from(([10, 2, 2, 2], 5555));
        let out = backend_request(&parts, Bytes::from_static(b"x"), &Peer::new(peer));
        assert_eq!(out.uri().to_string(), "/a/b?c=d");
        assert_eq!(out.version(), Version::HTTP_11);
        let h = out.headers();
        assert_eq!(h["host"], "www.example.com");
        assert_eq!(h["x-forwarded-for"], "10.1.1.1, 10.2.2.2");
        assert_eq!(h["x-other"], "kept");
        assert!(h.get("connection").is_none() && h.get("x-private").is_none());
    }

    #[test]
    fn h2_requests_get_a_host_from_their_authority() {
        let req = Request::builder()
            .uri("http://api.example.com/x")
            .version(Version::HTTP_2)
            .body(())
            .expect("request");
        assert_eq!(host_of(&req), Some("api.example.com"));
        let (parts, ()) = req.into_parts();
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        let out = backend_request(&parts, Bytes::new(), &Peer::new(a));
        assert_eq!(out.headers()["host"], "api.example.com");
        assert_eq!(out.uri().to_string(), "/x", "origin-form to the backend");
    }
}
