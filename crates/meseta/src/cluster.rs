//! `meseta dev`, `meseta master` and `meseta agent`: flags → configs → running processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meseta_agent::{Agent, AgentConfig};
use meseta_api::domain::Domain;
use meseta_master::ha::HaOptions;
use meseta_master::{Cancel as CancellationToken, Master, MasterConfig};
use meseta_store::redb::RedbStore;
use meseta_store::Store;
use meseta_types::{Attributes, Resources};

/// Flags of `meseta master`.
#[derive(clap::Args, Debug)]
pub struct MasterArgs {
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:5050")]
    pub listen: SocketAddr,
    /// Where the embedded store lives (default: the user's data dir, `meseta/master`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seconds an agent may be silent before it is unreachable.
    #[arg(long, default_value_t = 30.0)]
    pub agent_timeout: f64,
    /// Host name to report.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Rescind offers unused for this long, e.g. `30s`, `2m` (default: never, as Mesos).
    #[arg(long, value_parser = parse_duration)]
    pub offer_timeout: Option<Duration>,
    /// The master's fault domain, e.g. `region=r1,zone=z1`: frameworks without the REGION_AWARE
    /// capability only get offers from agents of this region.
    #[arg(long, value_parser = parse_domain)]
    pub domain: Option<Domain>,
    /// Let tasks run as `root` (off by default: a task that names no user runs as the agent's
    /// default user, and one that asks for `root` is refused).
    #[arg(long)]
    pub allow_root: bool,
    /// Accept DOCKER apps asking for `privileged: true` (refused with a 422 by default).
    #[arg(long)]
    pub docker_allow_privileged: bool,
    /// Shared store for highly available masters, e.g. `etcd://h1:2379,h2:2379,h3:2379`: any
    /// number of masters on it elect one leader; the others redirect clients to it. Without
    /// it the master keeps its state in the embedded store under `--data-dir` and leads alone.
    #[arg(long, conflicts_with = "data_dir")]
    pub store: Option<String>,
    /// With `--store`: how long the leader's lease outlives its last keep-alive (how long a
    /// dead leader goes unnoticed at most).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// With `--store`: the URL other masters redirect clients to (default:
    /// `http://<hostname>:<port>`).
    #[arg(long)]
    pub advertise: Option<String>,
    /// TLS and agent admission.
    #[command(flatten)]
    pub tls: crate::tls::ServerTlsArgs,
    /// DNS service discovery.
    #[command(flatten)]
    pub dns: crate::dns::DnsArgs,
    /// Access control, bulk-delete guard and audit log.
    #[command(flatten)]
    pub access: crate::access::AccessArgs,
    /// The secrets key.
    #[command(flatten)]
    pub secrets: crate::secrets::SecretsArgs,
}

/// `region=<name>,zone=<name>`.
pub fn parse_domain(s: &str) -> Result<Domain, String> {
    Domain::parse(s).map_err(|e| e.to_string())
}

/// `30s`, `2m`, `1h`, `500ms` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration '{s}': expecting e.g. 30s, 2m, 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "secs" => n,
        "m" | "mins" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in '{s}': use ms, s, m or h")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("duration '{s}' must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Flags of `meseta agent`.
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Base URL of the master, or a comma-separated list of the masters of a highly available
    /// cluster (`http://m1:5050,http://m2:5050`): the agent tries them in turn, follows a
    /// follower's redirect to the leading master and, after a disconnect, starts again from the
    /// master it was registered with.
    #[arg(long, env = "MESETA_MASTER", default_value = "http://127.0.0.1:5050")]
    pub master: String,
    /// Where tasks, sandboxes and checkpoints live (default: the user's data dir, `meseta/agent`).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Total resources, e.g. `cpus:4;mem:8192;disk:20000;ports:[31000-32000]` (default: detected).
    #[arg(long)]
    pub resources: Option<String>,
    /// Attributes, e.g. `rack:r1;zone:eu-1a`.
    #[arg(long)]
    pub attributes: Option<String>,
    /// Address of the agent's HTTP server (sandbox logs).
    #[arg(long, default_value = "127.0.0.1:5051")]
    pub listen: SocketAddr,
    /// Host name tasks see as HOST.
    #[arg(long)]
    pub hostname: Option<String>,
    /// The agent's fault domain, e.g. `region=r1,zone=z1`.
    #[arg(long, value_parser = parse_domain)]
    pub domain: Option<Domain>,
    /// The user a task runs as when it names none (default: `nobody` when the agent runs as
    /// root, the agent's own user otherwise).
    #[arg(long)]
    pub default_user: Option<String>,
    /// Let tasks run as `root` (off by default: a task that names no user runs as the agent's
    /// default user, and one that asks for `root` is refused).
    #[arg(long)]
    pub allow_root: bool,
    /// Run no Docker containers even when an engine answers on /var/run/docker.sock (the agent
    /// then does not offer `docker:true`).
    #[arg(long, conflicts_with = "docker_socket")]
    pub no_docker: bool,
    /// The Docker engine's unix socket (probed at start and every 10 s: the agent offers
    /// `docker:true` only while an engine answers there).
    #[arg(long, value_name = "PATH", default_value = meseta_agent::config::DEFAULT_DOCKER_SOCKET)]
    pub docker_socket: PathBuf,
    /// Let DOCKER tasks run privileged containers (refused by default).
    #[arg(long)]
    pub docker_allow_privileged: bool,
    /// Mutual TLS and join token towards the master.
    #[command(flatten)]
    pub tls: crate::tls::AgentTlsArgs,
}

/// Flags of `meseta dev`.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Address of the master's HTTP API.
    #[arg(long, default_value = "127.0.0.1:5050")]
    pub listen: SocketAddr,
    /// Where the store and the agent's work dir live (default: the user's data dir, `meseta/dev`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Total resources of the agent (default: detected).
    #[arg(long)]
    pub resources: Option<String>,
    /// Attributes of the agent.
    #[arg(long)]
    pub attributes: Option<String>,
    /// Address of the agent's HTTP server (default: `127.0.0.1:5051` beside a master on the
    /// default port, a free port beside any other, so several dev clusters share a host).
    #[arg(long)]
    pub agent_listen: Option<SocketAddr>,
    /// The user a task runs as when it names none (default: `nobody` when run as root, the
    /// invoking user otherwise).
    #[arg(long)]
    pub default_user: Option<String>,
    /// Let tasks run as `root` (off by default: a task that names no user runs as the agent's
    /// default user, and one that asks for `root` is refused).
    #[arg(long)]
    pub allow_root: bool,
    /// Accept and run DOCKER containers asking for `privileged: true` (refused by default).
    #[arg(long)]
    pub docker_allow_privileged: bool,
    /// DNS service discovery.
    #[command(flatten)]
    pub dns: crate::dns::DnsArgs,
    /// Access control, bulk-delete guard and audit log.
    #[command(flatten)]
    pub access: crate::access::AccessArgs,
    /// The secrets key.
    #[command(flatten)]
    pub secrets: crate::secrets::SecretsArgs,
    /// TLS and agent admission (the dev agent trusts `--ca-cert` and, under mutual TLS,
    /// presents `--tls-cert`, so it must then be a client certificate too).
    #[command(flatten)]
    pub tls: crate::tls::ServerTlsArgs,
}

/// Root keeps state under `/var/lib/meseta` (task users must be able to reach their sandboxes);
/// other users under their data dir.
fn default_dir(sub: &str) -> anyhow::Result<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/meseta").join(sub));
    }
    let base = dirs::data_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/share")))
        .context("no data directory for this user: pass --data-dir")?;
    Ok(base.join("meseta").join(sub))
}

fn parse_resources(r: Option<&str>) -> anyhow::Result<Option<Resources>> {
    r.map(|s| Resources::parse(s).with_context(|| format!("invalid --resources '{s}'")))
        .transpose()
}

fn parse_attributes(a: Option<&str>) -> anyhow::Result<Attributes> {
    match a {
        Some(s) => Attributes::parse(s).with_context(|| format!("invalid --attributes '{s}'")),
        None => Ok(Attributes::default()),
    }
}

/// The embedded store's file in a master's data dir.
pub(crate) fn store_path(dir: &std::path::Path) -> PathBuf {
    dir.join("store.redb")
}

/// Opens (creating if needed) the embedded store of the master data dir `dir`.
pub(crate) fn open_store(dir: &std::path::Path) -> anyhow::Result<Arc<RedbStore>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = store_path(dir);
    let store =
        RedbStore::open(&path).with_context(|| format!("opening store {}", path.display()))?;
    Ok(Arc::new(store))
}

fn master_config(
    listen: SocketAddr,
    agent_timeout: f64,
    hostname: Option<String>,
) -> anyhow::Result<MasterConfig> {
    anyhow::ensure!(
        agent_timeout.is_finite() && agent_timeout > 0.0,
        "--agent-timeout must be a positive number of seconds, got {agent_timeout}"
    );
    let mut cfg = MasterConfig {
        listen,
        agent_timeout: Duration::from_secs_f64(agent_timeout),
        ..MasterConfig::default()
    };
    if let Some(h) = hostname {
        cfg.hostname = h;
    }
    Ok(cfg)
}

fn agent_config(
    master: String,
    work_dir: PathBuf,
    listen: SocketAddr,
    resources: Option<Resources>,
    attributes: Attributes,
    hostname: Option<String>,
) -> anyhow::Result<AgentConfig> {
    let mut cfg = AgentConfig::new(master, work_dir, listen);
    cfg.resources = resources;
    cfg.attributes = attributes;
    cfg.hostname = hostname;
    cfg.meseta_exe =
        std::env::current_exe().context("locating the meseta binary for the task shim")?;
    Ok(cfg)
}

/// The built-in schedulers, started against `master` before it serves HTTP: Chronos (jobs)
/// and Marathon (services), whose routes join the master's, with the secrets endpoints.
fn built_in_schedulers(
    secrets: Arc<meseta_secrets::Secrets>,
) -> impl Fn(&Master, &CancellationToken) -> axum::Router + Send + Sync + 'static {
    move |master, cancel| {
        meseta_chronos::start(master, cancel)
            .merge(meseta_marathon::start(master, cancel))
            .merge(meseta_ui::start(master, cancel))
            .merge(crate::secrets::routes(secrets.clone()))
    }
}

/// Opens a shared store named by URL (`meseta master --store`).
pub async fn open_shared_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("etcd") => {
            let store = meseta_store::etcd::EtcdStore::from_url(url)
                .await
                .with_context(|| format!("--store {url}"))?;
            // Fail now, with the reason, rather than campaign against an unreachable store.
            store
                .revision()
                .await
                .with_context(|| format!("--store {url}: cannot reach etcd"))?;
            Ok(Arc::new(store))
        }
        _ => anyhow::bail!("--store {url}: expecting etcd://host:port[,host:port...][/prefix]"),
    }
}

/// `meseta master`.
pub async fn master(a: MasterArgs) -> anyhow::Result<()> {
    let mut cfg = master_config(a.listen, a.agent_timeout, a.hostname)?;
    cfg.offer_timeout = a.offer_timeout;
    cfg.domain = a.domain;
    cfg.allow_root_tasks = a.allow_root;
    cfg.allow_privileged_containers = a.docker_allow_privileged;
    cfg.tls = a.tls.server_tls();
    cfg.join_token = a.tls.join_token()?;
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    if let Some(url) = &a.store {
        let store = open_shared_store(url).await?;
        crate::access::install(&a.access, store.clone(), &mut cfg).await?;
        let secrets = crate::secrets::install(&a.secrets, None, store.clone(), &mut cfg).await?;
        let dns = crate::dns::bind(&a.dns)?;
        let ha = HaOptions {
            lease_ttl: a.lease_ttl,
            advertise_url: a.advertise,
        };
        let routes = crate::dns::with_each_term(dns, built_in_schedulers(secrets));
        let mut handle = meseta_master::ha::start_ha(cfg, ha, store, routes)
            .await
            .context("starting the master (pass --listen ADDR for another address)")?;
        eprintln!(
            "meseta master listening on {scheme}://{} (advertised as {}; store {url})",
            handle.addr, handle.url
        );
        tokio::select! {
            r = handle.wait() => r.context("master stopped")?,
            _ = shutdown_signal() => handle.shutdown().await.context("stopping the master")?,
        }
        return Ok(());
    }
    let dir = match a.data_dir {
        Some(d) => d,
        None => default_dir("master")?,
    };
    let store = open_store(&dir)?;
    crate::access::install(&a.access, store.clone(), &mut cfg).await?;
    let secrets = crate::secrets::install(&a.secrets, None, store.clone(), &mut cfg).await?;
    let dns = crate::dns::bind(&a.dns)?;
    let mut handle = meseta_master::start_with(
        cfg,
        store,
        crate::dns::with(dns, built_in_schedulers(secrets)),
    )
    .await
    .context("starting the master (pass --listen ADDR for another address)")?;
    eprintln!("meseta master listening on {scheme}://{}", handle.addr);
    tokio::select! {
        r = handle.wait() => r.context("master stopped")?,
        _ = shutdown_signal() => { handle.shutdown().await; }
    }
    Ok(())
}

/// `meseta agent`.
pub async fn agent(a: AgentArgs, ca_cert: Option<PathBuf>) -> anyhow::Result<()> {
    let resources = parse_resources(a.resources.as_deref())?;
    let attributes = parse_attributes(a.attributes.as_deref())?;
    let work_dir = match a.work_dir {
        Some(d) => d,
        None => default_dir("agent")?,
    };
    let mut cfg = agent_config(
        a.master, work_dir, a.listen, resources, attributes, a.hostname,
    )?;
    cfg.domain = a.domain;
    cfg.default_user = a.default_user;
    cfg.allow_root = a.allow_root;
    cfg.docker_socket = (!a.no_docker).then_some(a.docker_socket);
    cfg.docker_allow_privileged = a.docker_allow_privileged;
    cfg.join_token = a
        .tls
        .join_token_file
        .as_deref()
        .map(crate::tls::read_token)
        .transpose()?;
    cfg.master_tls = meseta_tls::ClientTls {
        ca: ca_cert,
        identity: a.tls.tls_cert.zip(a.tls.tls_key),
    };
    let mut handle = Agent::start(cfg)
        .await
        .context("starting the agent (pass --listen ADDR, e.g. 127.0.0.1:0 for a free port)")?;
    eprintln!("meseta agent serving on http://{}", handle.http_addr());
    tokio::select! {
        r = handle.wait() => r.context("agent stopped")?,
        // A plain agent stop leaves tasks running: a restarted agent reattaches to them.
        _ = shutdown_signal() => handle.shutdown(false).await,
    }
    Ok(())
}

/// Where the dev agent listens when not told: loopback, on Mesos' 5051 beside a master on the
/// default 5050 and on a free port beside any other master port.
fn dev_agent_listen(master: SocketAddr) -> SocketAddr {
    let port = if master.port() == 5050 { 5051 } else { 0 };
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `meseta dev`: a master and one agent in this process.
pub async fn dev(a: DevArgs, ca_cert: Option<PathBuf>) -> anyhow::Result<()> {
    let resources = parse_resources(a.resources.as_deref())?;
    let attributes = parse_attributes(a.attributes.as_deref())?;
    let dir = match a.data_dir {
        Some(d) => d,
        None => default_dir("dev")?,
    };
    let store = open_store(&dir.join("master"))?;
    let mut cfg = master_config(a.listen, 30.0, None)?;
    cfg.allow_root_tasks = a.allow_root;
    cfg.allow_privileged_containers = a.docker_allow_privileged;
    crate::access::install(&a.access, store.clone(), &mut cfg).await?;
    // The key lives beside the store, never inside it (a backup of the store holds none).
    let secrets = crate::secrets::install(
        &a.secrets,
        Some(&dir.join("secrets.key")),
        store.clone(),
        &mut cfg,
    )
    .await?;
    cfg.tls = a.tls.server_tls();
    cfg.join_token = a.tls.join_token()?;
    let (scheme, host) = match &cfg.tls {
        // The certificate names localhost / 127.0.0.1 rather than whatever --listen says.
        Some(_) => ("https", "localhost"),
        None => ("http", ""),
    };
    let join_token = cfg.join_token.clone();
    let dns = crate::dns::bind(&a.dns)?;
    let mut master = meseta_master::start_with(
        cfg,
        store,
        crate::dns::with(dns, built_in_schedulers(secrets)),
    )
    .await
    .context("starting the master (pass --listen ADDR for another address)")?;
    let url = if host.is_empty() {
        format!("{scheme}://{}", master.addr)
    } else {
        format!("{scheme}://{host}:{}", master.addr.port())
    };
    let agent_listen = a.agent_listen.unwrap_or_else(|| dev_agent_listen(a.listen));
    let mut cfg = agent_config(
        url.clone(),
        dir.join("agent"),
        agent_listen,
        resources,
        attributes,
        None,
    )?;
    cfg.default_user = a.default_user;
    cfg.allow_root = a.allow_root;
    cfg.docker_allow_privileged = a.docker_allow_privileged;
    cfg.join_token = join_token;
    cfg.master_tls = meseta_tls::ClientTls {
        ca: ca_cert,
        identity: a.tls.tls_cert.zip(a.tls.tls_key),
    };
    let mut agent = Agent::start(cfg).await.context(
        "starting the agent (pass --agent-listen ADDR, e.g. 127.0.0.1:0 for a free port)",
    )?;
    agent
        .wait_registered(Duration::from_secs(10))
        .await
        .context("the dev agent did not register")?;
    println!("meseta dev: master at {url} (data in {})", dir.display());
    println!(
        "  try: meseta execute --name hello --command 'echo hello' --resources 'cpus:0.1;mem:32'"
    );
    let outcome = tokio::select! {
        r = master.wait() => r.context("master stopped"),
        r = agent.wait() => r.context("agent stopped"),
        _ = shutdown_signal() => Ok(()),
    };
    eprintln!("meseta dev: stopping (killing tasks)");
    agent.shutdown(true).await;
    master.shutdown().await;
    outcome
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::dev_agent_listen;
    use std::net::SocketAddr;

    #[test]
    fn the_dev_agent_takes_5051_only_beside_the_default_master_port() {
        let at = |s: &str| dev_agent_listen(s.parse::<SocketAddr>().expect("addr"));
        assert_eq!(
            at("127.0.0.1:5050"),
            "127.0.0.1:5051".parse().expect("addr")
        );
        assert_eq!(at("0.0.0.0:5050"), "127.0.0.1:5051".parse().expect("addr"));
        assert_eq!(at("127.0.0.1:17050"), "127.0.0.1:0".parse().expect("addr"));
    }
}
