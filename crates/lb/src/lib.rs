//! `meseta lb`: the edge load balancer that never reloads.
//!
//! It follows the leading master's Marathon event stream, rebuilds its routing table from
//! `/v2/apps?embed=apps.tasks` and swaps it in atomically. Listeners are never rebound: an L7
//! listener (HTTP/1.1 and h2c) routes by virtual host, and one TCP listener per service port
//! lives as long as its app. Only healthy, ready tasks get traffic; a backend that leaves drains.
//!
//! ```text
//!   masters ──/v2/events, /v2/apps──▶ feed ──Table──▶ live::Routes (ArcSwap)
//!                                                        │           │
//!   clients ──HTTP/h2c──▶ proxy (Host → service) ────────┘           │
//!   clients ──TCP :port─▶ tcp (service port → service) ──────────────┘
//!   operators ──▶ status (/status, /, /metrics)
//! ```
//!
//! Modules: [`table`] (pure table builder), [`balancer`] (choice, ejection, canary split),
//! [`live`] (swapping and draining), [`proxy`], [`tcp`], [`feed`], [`metrics`], [`status`].
#![forbid(unsafe_code)]

pub mod balancer;
pub mod feed;
pub mod live;
pub mod metrics;
pub mod proxy;
pub mod status;
pub mod table;
pub mod tcp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use meseta_api::client::MasterClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use balancer::Algorithm;
pub use proxy::ProxyOptions;

/// Why the balancer could not start.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The masters' list is unusable.
    #[error("bad master list: {0}")]
    Masters(#[from] meseta_api::client::ClientError),
}

/// How to run the balancer.
#[derive(Clone, Debug)]
pub struct Config {
    /// The masters (comma-separated URLs).
    pub masters: String,
    /// The L7 listener.
    pub listen_http: SocketAddr,
    /// The admin listener (status, metrics).
    pub listen_admin: SocketAddr,
    /// The address TCP service ports listen on.
    pub bind_ip: IpAddr,
    /// Proxy behaviour.
    pub proxy: ProxyOptions,
    /// Apps served, by `HAPROXY_GROUP` (empty: all).
    pub groups: Vec<String>,
    /// How long a removed backend keeps its requests and connections.
    pub drain: Duration,
    /// Periodic re-read of the masters' state.
    pub resync: Duration,
    /// Wait after an event before reading.
    pub debounce: Duration,
    /// Threads serving the L7 listener, each with its own event loop and backend pool (as
    /// many as the machine has cores by default).
    pub workers: usize,
}

impl Config {
    /// Defaults for `masters`: HTTP on :80, admin on :9090, service ports on every address.
    pub fn new(masters: impl Into<String>) -> Config {
        Config {
            masters: masters.into(),
            listen_http: SocketAddr::from(([0, 0, 0, 0], 80)),
            listen_admin: SocketAddr::from(([0, 0, 0, 0], 9090)),
            bind_ip: IpAddr::from([0, 0, 0, 0]),
            proxy: ProxyOptions::default(),
            groups: Vec::new(),
            drain: Duration::from_secs(30),
            resync: Duration::from_secs(10),
            debounce: Duration::from_millis(100),
            workers: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// A running balancer.
pub struct Lb {
    /// Where the L7 listener is bound.
    pub http_addr: SocketAddr,
    /// Where the admin listener is bound.
    pub admin_addr: SocketAddr,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    tcp: Arc<tcp::Tcp>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, LbError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| LbError::Bind { addr, source })
}

impl Lb {
    /// Binds the listeners and starts following the masters.
    pub async fn start(config: Config) -> Result<Lb, LbError> {
        let client = MasterClient::new(config.masters.clone())?;
        let http = bind(config.listen_http).await?;
        let admin = bind(config.listen_admin).await?;
        let http_addr = http.local_addr().unwrap_or(config.listen_http);
        let admin_addr = admin.local_addr().unwrap_or(config.listen_admin);
        let routes = Arc::new(live::Routes::new(config.drain));
        let metrics = Arc::new(metrics::Metrics::new());
        let alg = config.proxy.algorithm;
        let tcp = tcp::Tcp::new(
            config.bind_ip,
            routes.clone(),
            metrics.clone(),
            alg,
            config.proxy.ejection,
        );
        let feed_opts = feed::FeedOptions {
            filter: table::Filter {
                groups: config.groups.clone(),
            },
            debounce: config.debounce,
            resync: config.resync,
        };
        let feed = feed::Feed::new(client, feed_opts, routes.clone(), tcp.clone());
        let stop = CancellationToken::new();
        let workers = proxy::spawn_workers(
            http,
            &routes,
            &metrics,
            &config.proxy,
            config.workers,
            &stop,
        )
        .map_err(|source| LbError::Bind {
            addr: http_addr,
            source,
        })?;
        let router = status::router(status::Admin {
            routes,
            metrics,
            tcp: tcp.clone(),
            feed: feed.clone(),
            http_addr,
            admin_addr,
        });
        let admin_stop = stop.clone();
        let mut tasks = workers;
        tasks.extend([
            tokio::spawn(async move {
                let served = axum::serve(admin, router)
                    .with_graceful_shutdown(async move { admin_stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::warn!(error = %e, "admin listener failed");
                }
            }),
            tokio::spawn(feed.run(stop.clone())),
        ]);
        tracing::info!(%http_addr, %admin_addr, "load balancer listening");
        Ok(Lb {
            http_addr,
            admin_addr,
            stop,
            tasks,
            tcp,
        })
    }

    /// Stops listening and following.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tcp.close_all();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
