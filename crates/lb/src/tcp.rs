//! L4: one TCP listener per service port, opened when an app with that port appears and closed
//! only when no app holds the port any more — never rebound when backends change. Each
//! accepted connection is spliced to a backend chosen at accept time; it stays there until
//! either side closes it, or its backend left the table and the drain deadline passed.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::balancer::{pick, Algorithm, Ejection, Group};
use crate::live::Routes;
use crate::metrics::Metrics;

/// Backends one connection may try.
const CONNECT_ATTEMPTS: usize = 3;
/// Time to establish a backend connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A service port's listener, as the status page shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PortState {
    /// The service port.
    pub port: u16,
    /// The app holding it.
    pub app: String,
    /// Where it listens, or `None` when binding failed.
    pub listening: Option<SocketAddr>,
    /// Why binding failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

struct Listener {
    state: PortState,
    stop: CancellationToken,
}

/// The TCP listeners, kept in step with the routing table.
pub struct Tcp {
    bind_ip: IpAddr,
    routes: Arc<Routes>,
    metrics: Arc<Metrics>,
    algorithm: Algorithm,
    ejection: Ejection,
    listeners: Mutex<BTreeMap<u16, Listener>>,
}

impl Tcp {
    /// Listeners on `bind_ip` for the service ports of `routes`.
    pub fn new(
        bind_ip: IpAddr,
        routes: Arc<Routes>,
        metrics: Arc<Metrics>,
        algorithm: Algorithm,
        ejection: Ejection,
    ) -> Arc<Tcp> {
        Arc::new(Tcp {
            bind_ip,
            routes,
            metrics,
            algorithm,
            ejection,
            listeners: Mutex::new(BTreeMap::new()),
        })
    }

    /// The listeners now.
    pub fn ports(&self) -> Vec<PortState> {
        let l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        l.values().map(|x| x.state.clone()).collect()
    }

    /// Opens listeners for new service ports of the current table and closes those of ports no
    /// app holds; ports that stay are left alone. A port that failed to bind is tried again.
    pub async fn sync(self: &Arc<Self>) {
        let wanted: BTreeMap<u16, String> = {
            let live = self.routes.load();
            live.table
                .by_port
                .iter()
                .map(|(&p, &i)| (p, live.table.services[i].app_id.clone()))
                .collect()
        };
        let to_open: Vec<(u16, String)> = {
            let mut l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
            l.retain(|port, x| {
                let keep = wanted.contains_key(port);
                if !keep {
                    tracing::info!(port, app = %x.state.app, "service port closed");
                    x.stop.cancel();
                }
                keep
            });
            for (port, x) in l.iter_mut() {
                if let Some(app) = wanted.get(port) {
                    x.state.app.clone_from(app);
                }
            }
            wanted
                .iter()
                .filter(|(p, _)| l.get(p).is_none_or(|x| x.state.listening.is_none()))
                .map(|(p, a)| (*p, a.clone()))
                .collect()
        };
        for (port, app) in to_open {
            self.open(port, app).await;
        }
    }

    /// Stops every listener.
    pub fn close_all(&self) {
        let mut l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for x in l.values() {
            x.stop.cancel();
        }
        l.clear();
    }

    async fn open(self: &Arc<Self>, port: u16, app: String) {
        let addr = SocketAddr::new(self.bind_ip, port);
        let stop = CancellationToken::new();
        let state = match TcpListener::bind(addr).await {
            Ok(listener) => {
                let local = listener.local_addr().ok();
                tracing::info!(port, %app, "service port listening");
                tokio::spawn(self.clone().accept_loop(listener, port, stop.clone()));
                PortState {
                    port,
                    app,
                    listening: local.or(Some(addr)),
                    error: None,
                }
            }
            Err(e) => {
                tracing::warn!(port, %app, error = %e, "cannot listen on service port");
                PortState {
                    port,
                    app,
                    listening: None,
                    error: Some(format!("cannot listen on {addr}: {e}")),
                }
            }
        };
        let mut l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        l.insert(port, Listener { state, stop });
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        port: u16,
        stop: CancellationToken,
    ) {
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(port, error = %e, "tcp accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(self.clone().splice(stream, port));
        }
    }

    /// Connects `client` to a backend of the service on `port` and copies both ways.
    async fn splice(self: Arc<Self>, mut client: TcpStream, port: u16) {
        let Some(svc) = self.routes.load().by_port(port).cloned() else {
            return;
        };
        let mut tried = Vec::new();
        for _ in 0..CONNECT_ATTEMPTS {
            let now = Instant::now();
            let Some(ep) = pick(
                &svc.endpoints,
                Group::Any,
                &tried,
                self.algorithm,
                svc.rr.here(),
                now,
            )
            .cloned() else {
                break;
            };
            tried.push(ep.addr);
            let backend = ep.addr.to_string();
            let _busy = ep.start();
            let connected =
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(ep.addr)).await;
            let mut upstream = match connected {
                Ok(Ok(s)) => s,
                _ => {
                    ep.failed(&self.ejection, Instant::now());
                    self.metrics.failure(&svc.service.app_id, &backend);
                    continue;
                }
            };
            ep.succeeded();
            let _ = upstream.set_nodelay(true);
            self.metrics.connection(&svc.service.app_id, &backend);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                _ = ep.drained.cancelled() => {
                    tracing::debug!(%backend, "connection cut after the drain deadline");
                }
            }
            return;
        }
        self.metrics.unrouted(&svc.service.app_id);
    }
}
