//! The routing state the proxy reads: a [`Table`] with an [`Endpoint`] per backend, swapped as a
//! whole (`ArcSwap`) so a request sees one consistent table. Endpoints are carried over from
//! table to table by (task, address); one that leaves the table drains: requests and
//! connections already on it go on, and those still open after the drain deadline are cut.
//!
//! ```text
//!  feed ──Table──▶ Routes::apply ──▶ ArcSwap<Live> ◀── load() per request / connection
//!                      │ endpoints gone: removed=true, drain task (deadline) → drained.cancel()
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::balancer::{Cursor, Endpoint};
use crate::table::{Service, Table};

/// A service and its endpoints.
#[derive(Debug)]
pub struct LiveService {
    /// What the table says.
    pub service: Service,
    /// One per backend, in the table's order.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Round-robin position (per worker thread).
    pub rr: Cursor,
}

/// One routing table with its endpoints.
#[derive(Debug, Default)]
pub struct Live {
    /// The table it was built from.
    pub table: Table,
    /// Services, in the table's order.
    pub services: Vec<Arc<LiveService>>,
}

impl Live {
    /// The service on TCP `port`.
    pub fn by_port(&self, port: u16) -> Option<&Arc<LiveService>> {
        self.table.by_port.get(&port).map(|&i| &self.services[i])
    }

    /// The service of virtual host `host`.
    pub fn by_host(&self, host: &str) -> Option<&Arc<LiveService>> {
        let host = crate::table::normalized_host(host);
        self.table
            .by_host
            .get(host.as_ref())
            .map(|&i| &self.services[i])
    }
}

type Key = (String, SocketAddr);

/// The current routes and the endpoints draining out of them.
#[derive(Debug)]
pub struct Routes {
    live: ArcSwap<Live>,
    endpoints: Mutex<HashMap<Key, Arc<Endpoint>>>,
    draining: Mutex<Vec<Arc<Endpoint>>>,
    drain_deadline: Duration,
}

impl Routes {
    /// Empty routes; removed endpoints drain for at most `drain_deadline`.
    pub fn new(drain_deadline: Duration) -> Routes {
        Routes {
            live: ArcSwap::from_pointee(Live::default()),
            endpoints: Mutex::new(HashMap::new()),
            draining: Mutex::new(Vec::new()),
            drain_deadline,
        }
    }

    /// The current routes.
    pub fn load(&self) -> arc_swap::Guard<Arc<Live>> {
        self.live.load()
    }

    /// Endpoints that left the table and still have work on them.
    pub fn draining(&self) -> Vec<Arc<Endpoint>> {
        let mut d = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        d.retain(|e| !e.drained.is_cancelled());
        d.clone()
    }

    /// Swaps in `table`; returns the endpoints that left it (now draining). Must be called
    /// within a Tokio runtime (drains are timed tasks).
    pub fn apply(&self, table: Table) -> Vec<Arc<Endpoint>> {
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: HashMap<Key, Arc<Endpoint>> = HashMap::new();
        let services = table
            .services
            .iter()
            .map(|s| {
                let endpoints = s
                    .backends
                    .iter()
                    .map(|b| {
                        let key = (b.task_id.clone(), b.addr);
                        let ep = map
                            .get(&key)
                            .filter(|e| e.canary == b.canary && e.version == b.version)
                            .cloned()
                            .unwrap_or_else(|| {
                                Arc::new(Endpoint::new(&b.task_id, b.addr, &b.version, b.canary))
                            });
                        next.insert(key, ep.clone());
                        ep
                    })
                    .collect();
                Arc::new(LiveService {
                    service: s.clone(),
                    endpoints,
                    rr: Cursor::default(),
                })
            })
            .collect();
        self.live.store(Arc::new(Live { table, services }));
        let gone: Vec<Arc<Endpoint>> = map
            .drain()
            .filter(|(k, e)| !next.get(k).is_some_and(|n| Arc::ptr_eq(n, e)))
            .map(|(_, e)| e)
            .collect();
        *map = next;
        drop(map);
        for e in &gone {
            self.drain(e.clone());
        }
        gone
    }

    /// Marks `e` removed and cuts what is still open on it once idle or at the deadline.
    fn drain(&self, e: Arc<Endpoint>) {
        e.removed.store(true, Ordering::Relaxed);
        self.draining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.clone());
        let deadline = tokio::time::Instant::now() + self.drain_deadline;
        tokio::spawn(async move {
            while e.outstanding.load(Ordering::Relaxed) > 0
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let left = e.outstanding.load(Ordering::Relaxed);
            tracing::info!(task = %e.task_id, backend = %e.addr, cut = left, "backend drained");
            e.drained.cancel();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Backend;

    fn table(tasks: &[(&str, u16)]) -> Table {
        let backends = tasks
            .iter()
            .map(|(id, port)| Backend {
                task_id: (*id).into(),
                addr: SocketAddr::from(([127, 0, 0, 1], *port)),
                version: "v1".into(),
                canary: false,
            })
            .collect();
        Table {
            services: vec![Service {
                app_id: "/web".into(),
                port_index: 0,
                service_port: Some(10000),
                vhosts: vec![],
                backends,
                canary: None,
            }],
            by_port: HashMap::from([(10000, 0)]),
            ..Table::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn kept_backends_keep_their_state_and_removed_ones_drain_until_idle_or_deadline() {
        let routes = Routes::new(Duration::from_secs(5));
        routes.apply(table(&[("a", 1), ("b", 2), ("c", 3)]));
        let live = routes.load();
        let svc = live.by_port(10000).expect("service");
        let (a, b, c) = (
            svc.endpoints[0].clone(),
            svc.endpoints[1].clone(),
            svc.endpoints[2].clone(),
        );
        let on_b = b.start();
        let _on_c = c.start();
        let gone = routes.apply(table(&[("a", 1)]));
        assert_eq!(gone.len(), 2);
        let live = routes.load();
        assert!(Arc::ptr_eq(&live.services[0].endpoints[0], &a));
        assert!(b.removed.load(Ordering::Relaxed) && !a.removed.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!b.drained.is_cancelled(), "b still has a request in flight");
        drop(on_b);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(b.drained.is_cancelled(), "b drained once idle");
        assert!(!c.drained.is_cancelled(), "c still busy");
        assert_eq!(routes.draining().len(), 1);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(c.drained.is_cancelled(), "c cut at the deadline");
        assert!(routes.draining().is_empty());
    }
}
