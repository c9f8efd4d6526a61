//! Keeps the snapshot current: the master's state (`GET_STATE`) and its event bus, subscribed
//! under one lock ([`Master::state_and_events`]), applied to a [`Model`]; the records are rebuilt
//! after a change, at most every [`DEBOUNCE`], and swapped in whole.
//!
//! The feed takes a fresh snapshot of the master when it fell behind the bus, and every
//! [`Config::resync`]: the bus reports state changes only, so a task that turns healthy or
//! unhealthy while it keeps running shows up at the next resync.
//!
//! Agent addresses: the IP of the address an agent registered (its HTTP server's) when it is
//! an IPv4 literal other than `0.0.0.0`; otherwise its host name, resolved once per host name and
//! kept (a host name that does not resolve to IPv4 leaves the agent, and its tasks, out).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use meseta_master::Master;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::model::Model;
use crate::zone::Snapshot;
use crate::Config;

/// The shortest time between two rebuilds of the records.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Host names resolved once.
#[derive(Default)]
struct Resolver {
    cache: HashMap<String, Option<Ipv4Addr>>,
}

impl Resolver {
    async fn v4(&mut self, host: &str) -> Option<Ipv4Addr> {
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Some(ip);
        }
        if let Some(ip) = self.cache.get(host) {
            return *ip;
        }
        let found = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::lookup_host((host.to_string(), 0)),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .and_then(|mut addrs| {
            addrs.find_map(|a| match a.ip() {
                IpAddr::V4(ip) => Some(ip),
                IpAddr::V6(_) => None,
            })
        });
        if found.is_none() {
            tracing::warn!(
                host,
                "dns: agent host name has no IPv4 address; its tasks get no records"
            );
        }
        self.cache.insert(host.to_string(), found);
        found
    }

    /// Fill in the addresses the model lacks.
    async fn fill(&mut self, model: &mut Model) {
        for a in model.agents.values_mut() {
            if a.ip.is_none() {
                a.ip = self.v4(&a.hostname).await;
            }
        }
    }
}

async fn master_ip(master: &Master, resolver: &mut Resolver) -> Option<(Ipv4Addr, u16)> {
    let addr = master.local_addr();
    let ip = match addr.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => resolver.v4(&master.hostname()).await,
    }?;
    Some((ip, addr.port()))
}

/// Run the feed until `cancel`.
pub async fn run(
    master: Master,
    cfg: Config,
    snapshot: Arc<ArcSwap<Snapshot>>,
    cancel: CancellationToken,
) {
    let mut resolver = Resolver::default();
    let mut serial: u32 = 0;
    let publish = |model: &Model, serial: &mut u32| {
        *serial = serial.wrapping_add(1);
        let names = crate::records::build(model, &cfg.domain);
        snapshot.store(Arc::new(Snapshot::new(
            names,
            &cfg.domain,
            cfg.ttl,
            *serial,
        )));
    };
    loop {
        let (state, mut rx) = master.state_and_events();
        let mut model = Model::from_v1_state(&state);
        drop(state);
        model.master = master_ip(&master, &mut resolver).await;
        resolver.fill(&mut model).await;
        publish(&model, &mut serial);
        let mut last_build = Instant::now();
        let mut pending: Option<Instant> = None;
        let resync = tokio::time::sleep(cfg.resync);
        tokio::pin!(resync);
        loop {
            let due = pending.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = &mut resync => break,
                _ = tokio::time::sleep_until(due), if pending.is_some() => {
                    pending = None;
                    publish(&model, &mut serial);
                    last_build = Instant::now();
                }
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if model.apply(&ev) {
                            resolver.fill(&mut model).await;
                            if pending.is_none() {
                                pending = Some((last_build + DEBOUNCE).max(Instant::now()));
                            }
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "dns: fell behind the event bus; taking the state again");
                        break;
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }
}
