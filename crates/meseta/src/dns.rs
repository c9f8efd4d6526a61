//! The DNS flags of `meseta master` and `meseta dev`, and starting the DNS server beside the
//! master. A highly available master (`--store`) binds the address at start and serves it while
//! it leads (each leadership term starts the server on the same sockets and stops it when the
//! term ends): resolvers given every master get their answer from the leader.

use std::net::SocketAddr;

use anyhow::Context;
use meseta_master::{Cancel as CancellationToken, Master};

/// DNS service discovery flags of `meseta master` and `meseta dev` (Mesos-DNS naming).
#[derive(clap::Args, Debug, Clone)]
pub struct DnsArgs {
    /// Serve DNS (UDP and TCP) on this address, e.g. `127.0.0.1:8053` (`:0`: a free port,
    /// printed at start). Off unless given. With `--store`, answered while this master leads.
    #[arg(long)]
    pub dns_listen: Option<SocketAddr>,
    /// The DNS domain (`mesos` for Mesos-DNS compatibility).
    #[arg(long, default_value = "meseta")]
    pub dns_domain: String,
    /// TTL of DNS answers, seconds (1 to 5).
    #[arg(long, default_value_t = meseta_dns::MAX_TTL)]
    pub dns_ttl: u32,
    /// Relay names outside the domain to these resolvers (`1.1.1.1:53`, repeatable);
    /// without it they are refused.
    #[arg(long)]
    pub dns_upstream: Vec<SocketAddr>,
}

/// The bound DNS sockets and settings, when `--dns-listen` is given.
pub fn bind(a: &DnsArgs) -> anyhow::Result<Option<(meseta_dns::Sockets, meseta_dns::Config)>> {
    let Some(addr) = a.dns_listen else {
        return Ok(None);
    };
    let cfg = meseta_dns::Config::new(&a.dns_domain, a.dns_ttl, a.dns_upstream.clone())?;
    let sockets = meseta_dns::Sockets::bind(addr).context("--dns-listen")?;
    eprintln!(
        "meseta dns serving {} on {} (udp, tcp)",
        cfg.domain,
        sockets.local_addr()
    );
    Ok(Some((sockets, cfg)))
}

/// The routes `base` serves, plus the DNS server and its lookup API when `dns` is given.
pub fn with(
    dns: Option<(meseta_dns::Sockets, meseta_dns::Config)>,
    base: impl FnOnce(&Master, &CancellationToken) -> axum::Router,
) -> impl FnOnce(&Master, &CancellationToken) -> axum::Router {
    move |master, cancel| {
        let routes = base(master, cancel);
        match dns {
            Some((sockets, cfg)) => match meseta_dns::serve(master, cancel, sockets, cfg) {
                Ok(api) => routes.merge(api),
                Err(e) => {
                    eprintln!("meseta dns: {e}");
                    routes
                }
            },
            None => routes,
        }
    }
}

/// As [`with`], for a master that may lead several times (`--store`): each term serves DNS on
/// the same sockets until the term ends.
pub fn with_each_term(
    dns: Option<(meseta_dns::Sockets, meseta_dns::Config)>,
    base: impl Fn(&Master, &CancellationToken) -> axum::Router + Send + Sync + 'static,
) -> impl Fn(&Master, &CancellationToken) -> axum::Router + Send + Sync + 'static {
    move |master, cancel| {
        let routes = base(master, cancel);
        let Some((sockets, cfg)) = &dns else {
            return routes;
        };
        let served = sockets
            .try_clone()
            .map_err(|e| e.to_string())
            .and_then(|s| {
                meseta_dns::serve(master, cancel, s, cfg.clone()).map_err(|e| e.to_string())
            });
        match served {
            Ok(api) => routes.merge(api),
            Err(e) => {
                eprintln!("meseta dns: {e}");
                routes
            }
        }
    }
}
