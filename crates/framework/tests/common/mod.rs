//! What the kit's tests share: the `meseta` binary (for the task shim) and a real master with
//! one real agent on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meseta_agent::{Agent, AgentConfig, AgentHandle};
use meseta_master::{MasterConfig, MasterHandle};
use meseta_types::Resources;

/// The `meseta` binary beside this test's directory (`<target>/debug/deps/<test>` →
/// `<target>/debug/meseta`), when it is built; under `CI=true` a missing binary fails the test
/// (`cargo test --workspace` builds it).
pub fn meseta_exe() -> Option<PathBuf> {
    let this = std::env::current_exe().ok()?;
    let built = this.parent()?.parent()?.join("meseta");
    if !built.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} is not built and CI=true (cargo build -p meseta)",
            built.display()
        );
        println!(
            "skipping: {} is not built (cargo build -p meseta)",
            built.display()
        );
        return None;
    }
    Some(built)
}

/// A master on an in-memory store allocating every `allocation_interval`, and one registered
/// agent (work dir under `dir`) that runs tasks through `exe`.
#[allow(dead_code)]
pub async fn master_and_agent(
    exe: PathBuf,
    dir: &Path,
    allocation_interval: Duration,
) -> anyhow::Result<(MasterHandle, AgentHandle)> {
    master_and_agent_offering(exe, dir, allocation_interval, "cpus:2;mem:1024;disk:1024").await
}

/// [`master_and_agent`] with an agent offering `resources` (Mesos `--resources` syntax).
pub async fn master_and_agent_offering(
    exe: PathBuf,
    dir: &Path,
    allocation_interval: Duration,
    resources: &str,
) -> anyhow::Result<(MasterHandle, AgentHandle)> {
    let cfg = MasterConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        allocation_interval,
        ..MasterConfig::default()
    };
    let store = Arc::new(meseta_store::mem::MemStore::new());
    let master = meseta_master::start(cfg, store).await?;
    let mut agent_cfg = AgentConfig::new(
        format!("http://{}", master.addr),
        dir.join("agent"),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    agent_cfg.resources = Some(Resources::parse(resources)?);
    agent_cfg.meseta_exe = exe;
    let agent = Agent::start(agent_cfg).await?;
    agent.wait_registered(Duration::from_secs(10)).await?;
    Ok((master, agent))
}
