//! An in-process test cluster: one master and N agents on loopback ports, each agent with its own
//! work dir, sharing one tokio runtime. Tasks still run as real processes through `meseta shim`, so
//! the caller passes the path of the built `meseta` binary (`env!("CARGO_BIN_EXE_meseta")` in the
//! binary crate's tests).
//!
//! ```ignore
//! let cluster = Cluster::start(ClusterOptions::new(meseta_exe).agents(2)).await?;
//! let mut fw = cluster.master.subscribe(framework_info("test")).await?;
//! ```
//!
//! [`etcd`] starts real etcd members (one, or a cluster) for tests of the etcd store backend.
#![forbid(unsafe_code)]

pub mod etcd;
pub mod netlab;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meseta_agent::{Agent, AgentConfig, AgentHandle};
use meseta_master::{Master, MasterConfig, MasterHandle};
use meseta_store::redb::RedbStore;
use meseta_types::{AgentId, Resources};

/// How to build a test cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The `meseta` binary (for the task shim).
    pub meseta_exe: PathBuf,
    /// How many agents.
    pub agents: usize,
    /// Resources of each agent.
    pub agent_resources: Resources,
    /// Master's agent timeout.
    pub agent_timeout: Duration,
    /// Whether tasks may run as root (`--allow-root` on the master and every agent).
    pub allow_root: bool,
}

impl ClusterOptions {
    /// One agent with `cpus:4;mem:4096;disk:4096;ports:[31000-31999]`.
    pub fn new(meseta_exe: impl Into<PathBuf>) -> ClusterOptions {
        ClusterOptions {
            meseta_exe: meseta_exe.into(),
            agents: 1,
            agent_resources: Resources::parse("cpus:4;mem:4096;disk:4096;ports:[31000-31999]")
                .expect("literal resources parse"),
            agent_timeout: Duration::from_secs(30),
            allow_root: false,
        }
    }

    /// Let tasks run as root, as `--allow-root` does.
    pub fn allow_root(mut self) -> Self {
        self.allow_root = true;
        self
    }

    /// Set the number of agents.
    pub fn agents(mut self, n: usize) -> Self {
        self.agents = n;
        self
    }

    /// Set each agent's resources.
    pub fn agent_resources(mut self, r: &str) -> anyhow::Result<Self> {
        self.agent_resources = Resources::parse(r)?;
        Ok(self)
    }
}

/// A running in-process cluster; dropping it without [`Cluster::stop`] leaves tasks running.
pub struct Cluster {
    /// The master.
    pub master: Master,
    /// Its HTTP base URL.
    pub url: String,
    master_handle: Option<MasterHandle>,
    /// The agents, in start order.
    pub agents: Vec<AgentHandle>,
    opts: ClusterOptions,
    /// The master's store, kept across [`Cluster::restart_master`].
    store: Arc<RedbStore>,
    /// A duplicate of the master's listening socket: a restart never releases the port, so no
    /// other test binding port 0 meanwhile can take it.
    listener: std::net::TcpListener,
    /// Holds the store and agents' work dirs.
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Start a master (redb store in a temp dir) and the agents; wait until all registered.
    pub async fn start(opts: ClusterOptions) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir().context("temp dir")?;
        // Tasks run as an unprivileged user: it must traverse down to its sandbox.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
                .context("chmod temp dir")?;
        }
        let store = Arc::new(RedbStore::open(&dir.path().join("store.redb"))?);
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let handle = start_master(&opts, &listener, Arc::clone(&store)).await?;
        let url = format!("http://{}", handle.addr);
        let mut cluster = Cluster {
            master: handle.master.clone(),
            url,
            master_handle: Some(handle),
            agents: Vec::new(),
            opts,
            store,
            listener,
            dir,
        };
        for i in 0..cluster.opts.agents {
            let agent = cluster.start_agent(i).await?;
            cluster.agents.push(agent);
        }
        Ok(cluster)
    }

    /// The config of agent `i` (same work dir every time, so a restart recovers).
    pub fn agent_config(&self, i: usize) -> AgentConfig {
        let mut cfg = AgentConfig::new(
            self.url.clone(),
            self.dir.path().join(format!("agent-{i}")),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        );
        cfg.resources = Some(self.opts.agent_resources.clone());
        cfg.hostname = Some(format!("agent-{i}"));
        cfg.meseta_exe = self.opts.meseta_exe.clone();
        cfg.usage_interval = Duration::from_secs(1);
        cfg.allow_root = self.opts.allow_root;
        cfg
    }

    /// Stop the master and start a new one on the same address over the same store (its state
    /// rebuilt from what was persisted, as after a process restart); waits until every agent
    /// has re-registered.
    pub async fn restart_master(&mut self) -> anyhow::Result<()> {
        self.stop_master().await?;
        self.serve_master().await?;
        self.wait_agents_active(Duration::from_secs(30)).await
    }

    /// Shut the running master down (the kept listener stays open).
    async fn stop_master(&mut self) -> anyhow::Result<()> {
        let handle = self
            .master_handle
            .take()
            .context("the master is not running")?;
        handle.shutdown().await;
        Ok(())
    }

    /// Start a master on the kept listener over the store.
    async fn serve_master(&mut self) -> anyhow::Result<String> {
        let handle = start_master(&self.opts, &self.listener, Arc::clone(&self.store)).await?;
        self.master = handle.master.clone();
        self.url = format!("http://{}", handle.addr);
        self.master_handle = Some(handle);
        Ok(self.url.clone())
    }

    /// Stop the master and start a new one on `listen` (port 0: a free one) over the same store,
    /// as when another master takes over; [`Cluster::url`] becomes its URL, which is returned.
    /// Does not wait for the agents (they find the new master only if told where it is).
    pub async fn move_master(&mut self, listen: SocketAddr) -> anyhow::Result<String> {
        self.stop_master().await?;
        self.listener = self::listen(listen)?;
        self.serve_master().await
    }

    /// Wait until the master counts every agent of [`Cluster::agents`] active.
    pub async fn wait_agents_active(&self, timeout: Duration) -> anyhow::Result<()> {
        let want = self.agents.len();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let active = self
                .get_json("/master/slaves")
                .await
                .ok()
                .and_then(|v| {
                    v["slaves"]
                        .as_array()
                        .map(|a| a.iter().filter(|s| s["active"] == true).count())
                })
                .unwrap_or(0);
            if active >= want {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{active} of {want} agents re-registered after the master restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Start agent `i` and wait for its registration.
    pub async fn start_agent(&self, i: usize) -> anyhow::Result<AgentHandle> {
        let agent = Agent::start(self.agent_config(i)).await?;
        agent.wait_registered(Duration::from_secs(10)).await?;
        Ok(agent)
    }

    /// The registered id of agent `i`.
    pub fn agent_id(&self, i: usize) -> Option<AgentId> {
        self.agents.get(i).and_then(|a| a.agent_id())
    }

    /// GET a master endpoint as JSON.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.url);
        let resp = reqwest::get(&url)
            .await
            .with_context(|| format!("GET {url}"))?;
        anyhow::ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
        Ok(resp.json().await?)
    }

    /// Stop everything: kill tasks, stop agents and the master.
    pub async fn stop(mut self) {
        for a in self.agents.drain(..) {
            a.shutdown(true).await;
        }
        if let Some(h) = self.master_handle.take() {
            h.shutdown().await;
        }
    }
}

/// A listening socket on `addr` (port 0: a free one).
fn listen(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    l.set_nonblocking(true).context("non-blocking listener")?;
    Ok(l)
}

/// A master with the built-in schedulers, as `meseta master` runs it, serving a duplicate of
/// `listener`.
async fn start_master(
    opts: &ClusterOptions,
    listener: &std::net::TcpListener,
    store: Arc<RedbStore>,
) -> anyhow::Result<MasterHandle> {
    let listener = tokio::net::TcpListener::from_std(listener.try_clone().context("dup listener")?)
        .context("listener")?;
    let cfg = MasterConfig {
        listen: listener.local_addr()?,
        agent_timeout: opts.agent_timeout,
        allocation_interval: Duration::from_millis(200),
        allow_root_tasks: opts.allow_root,
        ..MasterConfig::default()
    };
    let handle = meseta_master::start_on(listener, cfg, store, |m, cancel| {
        // The UI samples every second in tests (charts fill without waiting 10 s).
        let ui = meseta_ui::HistoryConfig {
            sample_every: Duration::from_secs(1),
            persist_every: Duration::from_secs(2),
        };
        meseta_chronos::start(m, cancel)
            .merge(meseta_marathon::start(m, cancel))
            .merge(meseta_ui::start_with(m, cancel, ui))
    })
    .await?;
    Ok(handle)
}
