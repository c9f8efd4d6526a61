//! Relaying names outside the domain to upstream resolvers: the query's bytes as they came, over
//! UDP, to each resolver in turn until one answers within [`TIMEOUT`]. An answer the upstream
//! truncated is relayed truncated (the client retries over TCP, and gets it truncated again:
//! large answers from upstream need a resolver of their own).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::net::UdpSocket;

/// How long one upstream resolver has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

async fn ask(upstream: SocketAddr, query: &[u8]) -> Option<Message> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).await.ok()?;
    sock.connect(upstream).await.ok()?;
    sock.send(query).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = sock.recv(&mut buf).await.ok()?;
    Message::from_vec(&buf[..n]).ok()
}

/// The first answer of `upstreams` to `query` (a whole DNS message), if any answers in time.
pub async fn forward(upstreams: &[SocketAddr], query: &[u8]) -> Option<Message> {
    for u in upstreams {
        if let Ok(Some(m)) = tokio::time::timeout(TIMEOUT, ask(*u, query)).await {
            return Some(m);
        }
    }
    None
}
