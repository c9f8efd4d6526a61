//! `meseta lb`: runs the load balancer (`meseta_lb`) against the masters given by `--master`,
//! or with `meseta lb status` asks a running one how it routes.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use meseta_lb::{Algorithm, Config, Lb};

/// `meseta lb [FLAGS]` runs a balancer; `meseta lb status` reads one.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LbArgs {
    /// Read a running balancer.
    #[command(subcommand)]
    pub cmd: Option<LbCmd>,
    /// How to run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `meseta lb status`.
#[derive(clap::Subcommand, Debug)]
pub enum LbCmd {
    /// The balancer's listeners, apps, backends and per-version error counts.
    Status(meseta_cli::lb::StatusArgs),
}

/// Flags of a running balancer.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The HTTP (HTTP/1.1 and h2c) listener routing by virtual host (`:0`: a free port).
    #[arg(long, default_value = "0.0.0.0:80")]
    pub listen_http: SocketAddr,
    /// The admin listener: `/status`, `/` (HTML), `/metrics`.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub listen_admin: SocketAddr,
    /// The address the apps' TCP service ports listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_ip: IpAddr,
    /// Backend choice: `least-request` (power of two choices) or `round-robin`.
    #[arg(long, default_value = "least-request")]
    pub algorithm: Algorithm,
    /// Serve only apps whose `HAPROXY_GROUP` label names one of these groups (repeatable; none:
    /// every app).
    #[arg(long)]
    pub group: Vec<String>,
    /// The request header that sends a request to the canary (`1`) or the stable version (`0`).
    #[arg(long, default_value = "X-Meseta-Canary")]
    pub canary_header: String,
    /// Percent of requests without the header sent to a canary whose app has no
    /// `MESETA_CANARY_WEIGHT` label (default: in proportion to instances).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub canary_weight: Option<u32>,
    /// How long a removed backend keeps its requests and connections, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout: f64,
    /// How long a backend has to answer, seconds (then the request fails over or gets 504).
    #[arg(long, default_value_t = 30.0)]
    pub backend_timeout: f64,
    /// Consecutive failures that take a backend out of rotation (for 10 s).
    #[arg(long, default_value_t = 3)]
    pub eject_after: u32,
    /// Re-read the masters' state at least this often, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub resync: f64,
    /// Threads serving the HTTP listener, each its own event loop and backend pool (default:
    /// one per core).
    #[arg(long)]
    pub workers: Option<usize>,
}

fn secs(what: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("--{what} must be a positive number"))
}

/// Runs the subcommand.
pub async fn run(a: LbArgs, master: &str, json: bool) -> anyhow::Result<i32> {
    if let Some(LbCmd::Status(s)) = a.cmd {
        return meseta_cli::lb::status(&s, json).await;
    }
    let r = a.run;
    let mut config = Config::new(master);
    config.listen_http = r.listen_http;
    config.listen_admin = r.listen_admin;
    config.bind_ip = r.bind_ip;
    config.groups = r.group;
    if let Some(w) = r.workers {
        if w == 0 {
            anyhow::bail!("--workers must be at least 1");
        }
        config.workers = w;
    }
    config.drain = secs("drain-timeout", r.drain_timeout)?;
    config.resync = secs("resync", r.resync)?;
    config.proxy.algorithm = r.algorithm;
    config.proxy.canary_header = r
        .canary_header
        .parse()
        .with_context(|| format!("--canary-header '{}' is no header name", r.canary_header))?;
    config.proxy.canary_weight = r.canary_weight;
    config.proxy.backend_timeout = secs("backend-timeout", r.backend_timeout)?;
    config.proxy.ejection.after_failures = r.eject_after.max(1);
    let lb = Lb::start(config)
        .await
        .context("cannot start the load balancer")?;
    // One line for scripts and tests that bound port 0.
    println!("lb listening http={} admin={}", lb.http_addr, lb.admin_addr);
    crate::cluster::shutdown_signal().await;
    lb.stop().await;
    Ok(0)
}
