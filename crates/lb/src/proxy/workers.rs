//! The L7 listener's threads: `workers` single-threaded event loops, each with its own
//! [`Proxy`] (and so its own keep-alive pool), and one acceptor handing each new client
//! connection to the loop holding the fewest.
//!
//! ```text
//!  listener ─▶ acceptor ─(fewest open connections)─▶ worker 0: connections, pool
//!                                                 └─▶ worker 1: connections, pool  …
//! ```
//!
//! A connection stays on its worker: its requests are read, forwarded and answered on one
//! thread without waking another. Loops accepting from a shared socket would each take
//! whatever connection they happen to wake first for, and a burst of new connections (a load
//! generator starting, clients reconnecting) could land mostly on one loop, leaving one core
//! to queue requests while the other idles; handing them out by count keeps the loops even,
//! as HAProxy's threads are.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Proxy, ProxyOptions};
use crate::live::Routes;
use crate::metrics::Metrics;

/// A client connection handed to a worker.
type Handed = (std::net::TcpStream, SocketAddr);

/// The acceptor's side of a worker.
struct Worker {
    connections: mpsc::UnboundedSender<Handed>,
    open: Arc<AtomicUsize>,
}

/// One open client connection of a worker; counted until dropped.
pub(super) struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `listener` from `workers` threads until `stop` is cancelled; each ends with the
/// connections it holds, and the returned tasks (the workers' and the acceptor's) with them.
pub fn spawn_workers(
    listener: TcpListener,
    routes: &Arc<Routes>,
    metrics: &Arc<Metrics>,
    opts: &ProxyOptions,
    workers: usize,
    stop: &CancellationToken,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..workers.max(1) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let proxy = Arc::new(Proxy::new(routes.clone(), metrics.clone(), opts.clone()));
        let (tx, rx) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicUsize::new(0));
        let worker_open = open.clone();
        let stop = stop.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            runtime.block_on(serve(proxy, rx, worker_open, stop));
        }));
        handles.push(Worker {
            connections: tx,
            open,
        });
    }
    tasks.push(tokio::spawn(accept(listener, handles, stop.clone())));
    Ok(tasks)
}

/// Accepts client connections and hands each to the worker with the fewest open.
async fn accept(listener: TcpListener, workers: Vec<Worker>, stop: CancellationToken) {
    let mut next = 0usize;
    while let Some((stream, peer)) = super::next_client(&listener, &stop).await {
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "cannot hand a client connection over");
                continue;
            }
        };
        // Ties go round, so that an idle balancer spreads its first connections too.
        next = next.wrapping_add(1);
        let n = workers.len();
        let Some(w) = (0..n)
            .map(|i| &workers[(next + i) % n])
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
        else {
            return;
        };
        w.open.fetch_add(1, Ordering::Relaxed);
        if w.connections.send((stream, peer)).is_err() {
            // That worker has stopped: so has the balancer.
            w.open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    }
}

/// One worker: serves the connections handed to it until `stop` is cancelled.
async fn serve(
    proxy: Arc<Proxy>,
    mut handed: mpsc::UnboundedReceiver<Handed>,
    open: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    proxy.sweep_pool(stop.clone());
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            h = handed.recv() => match h {
                Some(h) => h,
                None => return,
            },
        };
        let counted = Open(open.clone());
        match TcpStream::from_std(stream) {
            Ok(stream) => proxy.connection(stream, peer, Some(counted)),
            Err(e) => tracing::warn!(error = %e, %peer, "cannot serve a client connection"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn new_connections_go_to_the_worker_with_the_fewest_open() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut receivers = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = mpsc::unbounded_channel();
            receivers.push(rx);
            workers.push(Worker {
                connections: tx,
                open: Arc::new(AtomicUsize::new(0)),
            });
        }
        // Worker 0 already holds three connections.
        workers[0].open.store(3, Ordering::Relaxed);
        let opens: Vec<Arc<AtomicUsize>> = workers.iter().map(|w| w.open.clone()).collect();
        let stop = CancellationToken::new();
        let acceptor = tokio::spawn(accept(listener, workers, stop.clone()));
        let mut clients = Vec::new();
        for _ in 0..7 {
            clients.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let mut got = [0usize; 2];
        for (i, rx) in receivers.iter_mut().enumerate() {
            while got.iter().sum::<usize>() < 7 {
                match tokio::time::timeout(std::time::Duration::from_millis(500), rx.recv()).await {
                    Ok(Some(_)) => got[i] += 1,
                    _ => break,
                }
            }
        }
        assert_eq!(got, [2, 5], "worker 1 catches up, then they alternate");
        assert_eq!(opens[0].load(Ordering::Relaxed), 5);
        assert_eq!(opens[1].load(Ordering::Relaxed), 5);
        drop(Open(opens[1].clone()));
        assert_eq!(
            opens[1].load(Ordering::Relaxed),
            4,
            "a closed connection is uncounted"
        );
        stop.cancel();
        acceptor.await.expect("acceptor");
    }
}
