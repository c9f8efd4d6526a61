//! A new HTTP/1.1 connection to a backend ([`handshake`], for the worker's pool and for an
//! upgrade), and why a send failed ([`SendError`]).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Time to establish a backend connection.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a request did not get a response head from the backend.
#[derive(Debug)]
pub(super) enum SendError {
    /// No connection could be made: nothing reached the backend.
    Connect(String),
    /// The connection failed during the exchange.
    Http(hyper::Error),
}

/// A TCP connection to the backend `addr` (within [`CONNECT_TIMEOUT`], no Nagle delay), or
/// why there is none.
pub(super) async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            return Err(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
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
    let stream = connect(addr).await.map_err(SendError::Connect)?;
    // Requests go out flattened in one `send` (see the server's builder).
    http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Http)
}
