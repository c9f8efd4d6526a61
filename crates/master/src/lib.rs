//! The meseta master: pools the agents' resources and offers them to frameworks.
//!
//! ```text
//!  HTTP (axum) ── /api/v1/scheduler ──┐          ┌── agent WebSocket (launch/kill ↓, status/usage ↑)
//!              ── /master/state …     ├─▶ Core ◀─┤
//!  in-process frameworks (FrameworkConnection) ──┘    └── store (agents, frameworks survive restarts)
//! ```
//!
//! [`Core`](core::Core) holds the live state behind one lock; every handler turns its request into one
//! call on it. Side effects leave the core through channels: a sender per connected agent
//! ([`meseta_api::agent::MasterMessage`]) and per subscribed framework
//! ([`meseta_api::scheduler::Event`]). Agents are the source of truth for tasks: the master persists
//! only registered agents and frameworks, and rebuilds the task table when agents re-register.
#![forbid(unsafe_code)]

mod agents;
mod allocator;
mod apply;
pub mod bus;
mod calls;
mod command;
mod core;
mod executors;
mod framework;
pub mod ha;
mod http;
mod inspect;
mod maintenance;
mod ops;
mod ops_state;
mod persist;
mod read;
mod records;
mod recovery;
mod registry;
mod scheduler_ops;
mod task;
mod task_table;
pub mod usage;
mod v1json;
mod view;

pub use crate::core::{EdgeLayer, MasterConfig, SecretResolver, TaskUsers};
pub use crate::framework::FrameworkConnection;
pub use crate::http::{error as error_response, router};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::serve::ListenerExt;
use meseta_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::core::Core;

/// Errors starting or running the master.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The store failed.
    #[error("state store: {0}")]
    Store(#[from] meseta_store::StoreError),
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Serve(std::io::Error),
    /// The TLS certificate, key or client CA is unusable.
    #[error("tls: {0}")]
    Tls(#[from] meseta_tls::TlsError),
}

/// How long an allocation request waits for others to join it.
const ALLOCATION_BATCH: Duration = Duration::from_millis(2);

/// Mesos API level we speak (what `/version` reports; pymesos parses it as digits).
pub const MESOS_VERSION: &str = "1.11.0";

/// Shared handle on the master's state.
#[derive(Clone)]
pub struct Master {
    inner: Arc<Inner>,
}

struct Inner {
    core: Mutex<Core>,
    store: Arc<dyn Store>,
    http: reqwest::Client,
    agent_http_key: Option<String>,
}

impl Master {
    /// Build a master over `store`, loading the agents and frameworks it persisted.
    pub async fn new(cfg: MasterConfig, store: Arc<dyn Store>) -> Result<Master, MasterError> {
        meseta_store::schema::check_or_init(store.as_ref()).await?;
        let recovered = registry::load(store.as_ref()).await?;
        let agent_http_key = cfg.agent_http_key.clone();
        let core = Core::new(cfg, recovered);
        Ok(Master {
            inner: Arc::new(Inner {
                core: Mutex::new(core),
                store,
                // Agents' own listeners speak plain HTTP.
                http: reqwest::Client::builder()
                    .tls_backend_preconfigured(std::sync::Arc::unwrap_or_clone(
                        meseta_tls::plain_client_config(),
                    ))
                    .build()
                    .unwrap_or_default(),
                agent_http_key,
            }),
        })
    }

    /// Lock the core. A panic while holding the lock leaves consistent-enough state to keep serving.
    pub(crate) fn core(&self) -> MutexGuard<'_, Core> {
        self.inner.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state store the master persists to (in-process frameworks keep their own records
    /// in it, under their own keys).
    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// [`Master::store`] as a shared handle: under HA, the store fenced by this master's
    /// leadership, so that what writes through it lands only while this master leads.
    pub fn shared_store(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }

    /// The key agents' HTTP endpoints require (see [`MasterConfig::agent_http_key`]).
    pub fn agent_http_key(&self) -> Option<&str> {
        self.inner.agent_http_key.as_deref()
    }

    /// A shared HTTP client (agents' sandboxes, readiness probes of in-process frameworks).
    pub fn http_client(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// How many changes the event bus has published (for readers that only need to know
    /// whether anything changed: subscribing keeps the last events' JSON alive).
    pub fn changes(&self) -> bus::Changes {
        self.core().bus.changes()
    }

    /// Watch the event bus (every task, agent and framework change from now on).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<bus::ClusterEvent>> {
        self.core().bus.subscribe()
    }

    /// Subscribe an in-process framework (the same contract as `/api/v1/scheduler`).
    pub async fn subscribe(
        &self,
        info: meseta_api::scheduler::FrameworkInfo,
    ) -> Result<FrameworkConnection, MasterError> {
        framework::subscribe(self, info).await
    }

    /// Run allocation when asked (coalesced) and the periodic work: liveness of agents, failover
    /// of frameworks, offer filters.
    pub async fn run_timers(&self, cancel: CancellationToken) {
        let (tick, wanted) = {
            let core = self.core();
            (
                core.config().allocation_interval,
                core.allocation_wanted.clone(),
            )
        };
        let mut interval = tokio::time::interval(tick.max(Duration::from_millis(50)));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wanted.notified() => {
                    // Let a burst (accepts, declines, finished tasks) gather, but never more than
                    // ALLOCATION_BATCH after the first request.
                    tokio::time::sleep(ALLOCATION_BATCH).await;
                    self.core().run_allocation(tokio::time::Instant::now(), false);
                    continue;
                }
                _ = interval.tick() => {}
            }
            let removed = self.core().tick(tokio::time::Instant::now());
            self.store_dirty(removed).await;
        }
    }
}

/// A running master: its HTTP server and timers.
pub struct MasterHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// The master itself.
    pub master: Master,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), MasterError>>,
    timers: tokio::task::JoinHandle<()>,
}

impl MasterHandle {
    /// Stop serving and wait for the server to finish.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        // Streams never end by themselves: close them so the graceful shutdown can finish.
        self.master.core().close_connections();
        if tokio::time::timeout(Duration::from_secs(3), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
        let _ = self.timers.await;
    }

    /// Wait until the server stops by itself (an I/O error).
    pub async fn wait(&mut self) -> Result<(), MasterError> {
        match (&mut self.server).await {
            Ok(r) => r,
            Err(e) => Err(MasterError::Serve(std::io::Error::other(e.to_string()))),
        }
    }
}

/// Start a bare master on `cfg.listen` over `store` (no built-in schedulers).
pub async fn start(cfg: MasterConfig, store: Arc<dyn Store>) -> Result<MasterHandle, MasterError> {
    start_with(cfg, store, |_, _| axum::Router::new()).await
}

/// Start a master on `cfg.listen` over `store` with more routes: `extra` runs once the master
/// exists and before HTTP is served (start in-process frameworks there, with the cancellation
/// token that stops the master), and returns a router merged into the master's. The master's
/// JSON 404 fallback and body limit apply to the merged routes too.
pub async fn start_with(
    cfg: MasterConfig,
    store: Arc<dyn Store>,
    extra: impl FnOnce(&Master, &CancellationToken) -> axum::Router,
) -> Result<MasterHandle, MasterError> {
    let (listener, _) = bind(cfg.listen).await?;
    start_on(listener, cfg, store, extra).await
}

/// [`start_with`] on a listener the caller bound (`cfg.listen` is not used): a caller that
/// keeps a duplicate of the socket can stop this master and start the next on the same address
/// without ever releasing the port, connections arriving in between wait in the backlog.
pub async fn start_on(
    listener: TcpListener,
    cfg: MasterConfig,
    store: Arc<dyn Store>,
    extra: impl FnOnce(&Master, &CancellationToken) -> axum::Router,
) -> Result<MasterHandle, MasterError> {
    let tls = server_tls(&cfg)?;
    let addr = listener.local_addr().map_err(MasterError::Serve)?;
    let master = Master::new(cfg, store).await?;
    master.core().set_address(addr);
    let cancel = CancellationToken::new();
    let extra = extra(&master, &cancel);
    let app = http::router_with(master.clone(), extra);
    let edge = master.core().config().edge.clone();
    let app = EdgeLayer::apply(edge.as_ref(), app, &master);
    let server = serve(listener, app, cancel.clone(), tls);
    let m = master.clone();
    let c = cancel.clone();
    let timers = tokio::spawn(async move { m.run_timers(c).await });
    tracing::info!(%addr, master_id = %master.core().master_id(), "master listening");
    Ok(MasterHandle {
        addr,
        master,
        cancel,
        server,
        timers,
    })
}

/// Binds the master's listener; returns it and the address it got.
pub(crate) async fn bind(listen: SocketAddr) -> Result<(TcpListener, SocketAddr), MasterError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| MasterError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(MasterError::Serve)?;
    Ok((listener, addr))
}

/// The rustls configuration of `cfg.tls`, if any.
pub(crate) fn server_tls(
    cfg: &MasterConfig,
) -> Result<Option<Arc<meseta_tls::tokio_rustls::rustls::ServerConfig>>, MasterError> {
    Ok(match &cfg.tls {
        Some(t) => Some(meseta_tls::server_config(t)?),
        None => None,
    })
}

/// Serves `app` on `listener` (over TLS with `tls`) until `cancel` fires. Under TLS, handlers
/// see the peer as `ConnectInfo<meseta_tls::listener::PeerInfo>`.
pub(crate) fn serve(
    listener: TcpListener,
    app: axum::Router,
    cancel: CancellationToken,
    tls: Option<Arc<meseta_tls::tokio_rustls::rustls::ServerConfig>>,
) -> tokio::task::JoinHandle<Result<(), MasterError>> {
    tokio::spawn(async move {
        if let Some(tls) = tls {
            let listener = meseta_tls::listener::TlsListener::new(listener, tls)
                .map_err(MasterError::Serve)?;
            let app = app.into_make_service_with_connect_info::<meseta_tls::listener::PeerInfo>();
            return axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await
                .map_err(MasterError::Serve);
        }
        // Small frames (events, RecordIO records) must not wait for Nagle's algorithm.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await
            .map_err(MasterError::Serve)
    })
}

/// Unix time in seconds.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub use tokio_util::sync::CancellationToken as Cancel;
