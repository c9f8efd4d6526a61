//! DNS service discovery for the master, Mesos-DNS style: every app and task of every framework
//! gets A and SRV names under a domain (`web-prod.marathon.meseta`,
//! `_web-prod._tcp.marathon.meseta`), with the leading master and the agents beside them. See
//! [`records`] for the names and [`names`] for how labels are made.
//!
//! ```text
//!  Master::state_and_events ──▶ feed: Model ──(≤ every 100 ms)──▶ records::build ──▶ Snapshot
//!        (GET_STATE + bus)                                                     │ ArcSwap
//!   UDP ──▶ udp loops ──plain A/SRV: pre-encoded answer──────────────────────┤
//!                    └──other──┐                                               │
//!                        TCP ──▶ hickory Server ──▶ Handler ◀──────────────────┤
//!                        HTTP /v1/hosts, /v1/services ─────────────────────────┘
//! ```
//!
//! Answers come from the current snapshot only (nothing is computed per query); a change in the
//! master (a scale, a task that ends, an agent that leaves) reaches the answers within about
//! 100 ms. Names outside the domain are refused, or relayed to upstream resolvers
//! ([`Config::upstream`]).
//!
//! Start it with [`Sockets::bind`] (before the master serves, so a bad address fails early) and
//! [`serve`] (from [`meseta_master::start_with`]'s hook), which returns the HTTP lookup API's
//! routes ([`http`]). It follows the master it is started with: in a highly available cluster it
//! belongs beside the leader's state and is not started there yet.
#![forbid(unsafe_code)]

pub mod feed;
pub mod handler;
pub mod http;
pub mod model;
pub mod names;
pub mod records;
mod udp;
pub mod upstream;
mod wire;
pub mod zone;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_server::Server;
use tokio_util::sync::CancellationToken;

/// The longest TTL we hand out: answers change as tasks move, resolvers must not keep them long.
pub const MAX_TTL: u32 = 5;

/// How long a TCP client may stay silent before its connection is closed.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors starting the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The address could not be bound (UDP or TCP).
    #[error("cannot listen for DNS on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The domain is not a valid DNS name.
    #[error("invalid DNS domain {0:?}: labels of letters, digits and '-'")]
    Domain(String),
    /// The TTL is above [`MAX_TTL`] (or zero).
    #[error("DNS TTL must be 1..={MAX_TTL} seconds, got {0}")]
    Ttl(u32),
}

/// Settings of the DNS server.
#[derive(Clone, Debug)]
pub struct Config {
    /// The domain (lower-case, no root dot), `meseta` by default.
    pub domain: String,
    /// TTL of every answer, seconds (≤ [`MAX_TTL`]).
    pub ttl: u32,
    /// Resolvers names outside the domain are relayed to; empty: REFUSED.
    pub upstream: Vec<SocketAddr>,
    /// How often the feed takes the master's whole state again (health changes that keep a
    /// task running are not on the event bus).
    pub resync: Duration,
}

impl Config {
    /// Checked settings: a valid domain and a TTL in `1..=5`.
    pub fn new(domain: &str, ttl: u32, upstream: Vec<SocketAddr>) -> Result<Config, DnsError> {
        let domain = names::domain(domain).ok_or_else(|| DnsError::Domain(domain.to_string()))?;
        if ttl == 0 || ttl > MAX_TTL {
            return Err(DnsError::Ttl(ttl));
        }
        Ok(Config {
            domain,
            ttl,
            upstream,
            resync: Duration::from_secs(2),
        })
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            domain: "meseta".into(),
            ttl: MAX_TTL,
            upstream: Vec::new(),
            resync: Duration::from_secs(2),
        }
    }
}

/// The UDP socket and TCP listener of the server, bound to one address (and one port: with port
/// 0, the TCP listener takes the port the UDP socket got).
pub struct Sockets {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
}

impl Sockets {
    /// Bind UDP and TCP on `addr`. Needs no runtime.
    pub fn bind(addr: SocketAddr) -> Result<Sockets, DnsError> {
        let err = |source| DnsError::Bind { addr, source };
        // With port 0 another process may hold the TCP side of the UDP port we got: try again.
        let mut last = None;
        for _ in 0..if addr.port() == 0 { 20 } else { 1 } {
            let udp = std::net::UdpSocket::bind(addr).map_err(err)?;
            let bound = udp.local_addr().map_err(err)?;
            match std::net::TcpListener::bind(bound) {
                Ok(tcp) => {
                    udp.set_nonblocking(true).map_err(err)?;
                    tcp.set_nonblocking(true).map_err(err)?;
                    return Ok(Sockets { udp, tcp });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(err(last.unwrap_or_else(|| std::io::Error::other("no port"))))
    }

    /// The same sockets again (for a server started anew, e.g. by each leadership term of a
    /// highly available master, while the process keeps the address bound).
    pub fn try_clone(&self) -> Result<Sockets, DnsError> {
        let addr = self.local_addr();
        let err = |source| DnsError::Bind { addr, source };
        Ok(Sockets {
            udp: self.udp.try_clone().map_err(err)?,
            tcp: self.tcp.try_clone().map_err(err)?,
        })
    }

    /// The bound address (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.udp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

/// Start the DNS server on `sockets`, fed by `master`, until `cancel`; returns the routes of the
/// HTTP lookup API to serve beside the master's. Must run inside a tokio runtime.
pub fn serve(
    master: &meseta_master::Master,
    cancel: &CancellationToken,
    sockets: Sockets,
    cfg: Config,
) -> Result<axum::Router, DnsError> {
    let addr = sockets.local_addr();
    let err = |source| DnsError::Bind { addr, source };
    // One receive loop per core on the same socket: a query is read by whichever is free.
    let loops = std::thread::available_parallelism().map_or(1, usize::from);
    let tcp = tokio::net::TcpListener::from_std(sockets.tcp).map_err(err)?;
    let snapshot = Arc::new(ArcSwap::new(zone::Snapshot::empty(&cfg.domain, cfg.ttl)));
    let handler = || handler::Handler::new(snapshot.clone(), cfg.upstream.clone());
    udp::spawn(
        sockets.udp,
        loops,
        snapshot.clone(),
        Arc::new(handler()),
        cancel,
    )
    .map_err(err)?;
    let mut server = Server::new(handler());
    server.register_listener(tcp, TCP_TIMEOUT, 64 * 1024);
    let c = cancel.clone();
    tokio::spawn(async move {
        c.cancelled().await;
        if let Err(e) = server.shutdown_gracefully().await {
            tracing::warn!(error = %e, "dns server stopped with an error");
        }
    });
    tokio::spawn(feed::run(
        master.clone(),
        cfg.clone(),
        snapshot.clone(),
        cancel.clone(),
    ));
    Ok(http::router(snapshot, cfg, addr.to_string()))
}
