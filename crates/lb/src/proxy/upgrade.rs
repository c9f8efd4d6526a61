//! HTTP/1.1 `Upgrade` (WebSocket and the like) through the L7 listener.
//!
//! ```text
//!  client ──GET, Connection: upgrade──▶ proxy ──same, own connection──▶ backend
//!  client ◀──────────── 101 ─────────── proxy ◀────────── 101 ───────── backend
//!  client ◀═══════ bytes both ways (splice task) ═══════▶ backend
//! ```
//!
//! The upgraded connection counts as in flight on its backend until it closes, so a backend
//! that leaves the table keeps it until the drain deadline, which then cuts it.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper::{HeaderMap, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;

use super::conn::{handshake, SendError};
use super::Body;
use crate::balancer::{Endpoint, InFlight};
use crate::metrics::Metrics;

/// Whether a request asks to switch protocols (HTTP/1.1 `Connection: upgrade` with an
/// `Upgrade` header).
pub(super) fn is_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Puts the upgrade back on a request or response whose hop-by-hop headers were removed.
pub(super) fn restore(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    if let Some(u) = upgrade {
        headers.insert(UPGRADE, u);
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Sends an upgrade request over a connection of its own (it leaves HTTP once upgraded).
pub(super) async fn send(
    addr: std::net::SocketAddr,
    req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<Response<Incoming>, SendError> {
    let (mut sender, conn) = handshake(addr).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, backend = %addr, "upgrade connection ended");
        }
    });
    sender.send_request(req).await.map_err(SendError::Http)
}

/// Answers the client's upgrade with the backend's `101` and splices the two upgraded
/// connections in a task of their own, holding `busy` on `ep` until either side closes or
/// the drain deadline of `ep` passes.
pub(super) fn splice(
    mut resp: Response<Incoming>,
    client: OnUpgrade,
    ep: std::sync::Arc<Endpoint>,
    busy: InFlight,
    metrics: &Metrics,
    app: &str,
) -> Response<Body> {
    let backend = hyper::upgrade::on(&mut resp);
    metrics.upgrade(app, &ep.addr.to_string());
    let (mut head, _) = resp.into_parts();
    let upgrade = head.headers.get(UPGRADE).cloned();
    super::strip_hop_by_hop(&mut head.headers);
    restore(&mut head.headers, upgrade);
    tokio::spawn(async move {
        let _busy = busy;
        let (client, backend) = match tokio::join!(client, backend) {
            (Ok(c), Ok(b)) => (c, b),
            (c, b) => {
                let e = c
                    .err()
                    .or(b.err())
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                tracing::debug!(error = %e, backend = %ep.addr, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut backend) => {}
            _ = ep.drained.cancelled() => {
                tracing::debug!(backend = %ep.addr, "upgraded connection cut after the drain deadline");
            }
        }
    });
    let mut out = Response::from_parts(head, super::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    out
}
