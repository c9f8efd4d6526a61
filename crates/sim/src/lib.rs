//! Simulated agents: many fake meseta agents in one process that register with a real master
//! through the real agent protocol ([`meseta_api::agent`]) and pretend to run tasks.
//!
//! Used by tests and benchmarks (`meseta sim agents`, `meseta bench jobs`, the services
//! benchmark): [`SimCluster::start`] registers `count` agents and keeps them connected; each
//! `LaunchTask` becomes `TASK_STARTING`/`TASK_RUNNING` after the configured start delay, then
//! `TASK_FINISHED` after the run time or `TASK_FAILED` at the configured failure rate, and
//! `TASK_KILLED` when the master kills it. All agents share the caller's tokio runtime: one task
//! and one WebSocket per agent, no thread per agent.
//!
//! ```no_run
//! # async fn demo() -> Result<(), meseta_sim::SimError> {
//! use meseta_sim::{SimCluster, SimConfig};
//! let cluster = SimCluster::start(SimConfig::new("http://127.0.0.1:5050", 50)).await?;
//! println!("{:?}", cluster.stats());
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod agent;
mod conn;
mod rng;
mod stats;

pub use stats::{LaunchRecord, SimStats, MAX_RECORDS};

use std::sync::Arc;
use std::time::Duration;

use meseta_api::agent::AGENT_WS_PATH;
use meseta_types::Resources;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agent::{AgentState, Behaviour};
use crate::conn::AgentTask;
use crate::rng::Rng;
use crate::stats::Shared;

/// Registrations in flight at once during [`SimCluster::start`].
const REGISTER_CONCURRENCY: usize = 64;
/// Resources of each simulated agent unless configured otherwise.
pub const DEFAULT_RESOURCES: &str = "cpus:4;mem:8192;disk:10000;ports:[31000-32000]";
/// First fake port of the agents' advertised addresses.
const FIRST_FAKE_PORT: usize = 20_000;
/// How long [`SimCluster::shutdown`] waits for the agents to close their sockets.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors starting simulated agents.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration cannot work.
    #[error("invalid simulation config: {0}")]
    Config(String),
    /// An agent could not connect or register.
    #[error("simulated agent {agent} cannot register at {url}: {reason}")]
    Connect {
        /// Host name of the agent.
        agent: String,
        /// The agent WebSocket URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The master refused an agent.
    #[error("the master rejected simulated agent {agent}: {message}")]
    Rejected {
        /// Host name of the agent.
        agent: String,
        /// The master's reason.
        message: String,
    },
}

/// How to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The master: `http(s)://host:port`, `host:port` or a full `ws(s)://…/api/meseta/v1/agent`
    /// URL.
    pub master: String,
    /// The TLS client configuration (trusting the master's CA) for an `https`/`wss` master.
    pub tls: Option<Arc<meseta_tls::tokio_rustls::rustls::ClientConfig>>,
    /// Number of agents.
    pub count: usize,
    /// Resources of each agent.
    pub resources: Resources,
    /// Host names are `<prefix>-<i>`.
    pub hostname_prefix: String,
    /// Between receiving a launch and reporting `TASK_STARTING`/`TASK_RUNNING`.
    pub start_delay: Duration,
    /// Probability (0..=1) that a task ends `TASK_FAILED` (after `run_time`, or right after
    /// `TASK_RUNNING` when tasks run until killed).
    pub failure_rate: f64,
    /// Tasks finish after this; `None`: they run until killed.
    pub run_time: Option<Duration>,
    /// Seed of the failure draws.
    pub seed: u64,
}

impl SimConfig {
    /// `count` agents of [`DEFAULT_RESOURCES`] named `sim-<i>`, starting tasks at once, never
    /// failing, running tasks until killed.
    pub fn new(master: impl Into<String>, count: usize) -> SimConfig {
        SimConfig {
            master: master.into(),
            count,
            resources: Resources::parse(DEFAULT_RESOURCES)
                .expect("the default resources are valid"),
            hostname_prefix: "sim".to_string(),
            start_delay: Duration::ZERO,
            failure_rate: 0.0,
            run_time: None,
            seed: 0,
            tls: None,
        }
    }

    fn validate(&self) -> Result<(), SimError> {
        if self.count == 0 {
            return Err(SimError::Config("count must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(SimError::Config(format!(
                "failure_rate {} is not within 0..=1",
                self.failure_rate
            )));
        }
        if self.resources.cpus() <= 0.0 && self.resources.mem() <= 0.0 {
            return Err(SimError::Config(format!(
                "resources '{}' have no cpus and no mem",
                self.resources
            )));
        }
        if self.hostname_prefix.is_empty() {
            return Err(SimError::Config("hostname_prefix must not be empty".into()));
        }
        if agent_url(&self.master)?.starts_with("wss://") && self.tls.is_none() {
            return Err(SimError::Config(format!(
                "master '{}' speaks TLS: give the simulated agents its CA (SimConfig::tls)",
                self.master
            )));
        }
        Ok(())
    }
}

/// The agent WebSocket URL for a master given as `http(s)://…`, `ws(s)://…` or `host:port`.
pub fn agent_url(master: &str) -> Result<String, SimError> {
    let m = master.trim();
    let (scheme, rest) = if let Some(r) = m.strip_prefix("http://").or(m.strip_prefix("ws://")) {
        ("ws", r)
    } else if let Some(r) = m.strip_prefix("https://").or(m.strip_prefix("wss://")) {
        ("wss", r)
    } else if m.contains("://") {
        return Err(SimError::Config(format!(
            "master '{master}': unsupported scheme"
        )));
    } else {
        ("ws", m)
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.starts_with('/') {
        return Err(SimError::Config(format!("master '{master}' has no host")));
    }
    if rest.ends_with(AGENT_WS_PATH) {
        Ok(format!("{scheme}://{rest}"))
    } else {
        Ok(format!("{scheme}://{rest}{AGENT_WS_PATH}"))
    }
}

/// A running set of simulated agents. Dropping it stops the agents (without waiting).
pub struct SimCluster {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    handles: Vec<JoinHandle<()>>,
}

impl SimCluster {
    /// Starts `cfg.count` agents and returns once every one is registered (at most
    /// 64 registrations in flight). Fails, stopping all agents, if any cannot register.
    pub async fn start(cfg: SimConfig) -> Result<SimCluster, SimError> {
        cfg.validate()?;
        let url: Arc<str> = agent_url(&cfg.master)?.into();
        let connector = cfg.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        let shared = Arc::new(Shared::new(cfg.count));
        let behaviour = Arc::new(Behaviour {
            resources: cfg.resources.clone(),
            start_delay: cfg.start_delay,
            failure_rate: cfg.failure_rate,
            run_time: cfg.run_time,
        });
        let cancel = CancellationToken::new();
        let gate = Arc::new(Semaphore::new(REGISTER_CONCURRENCY));
        let mut handles = Vec::with_capacity(cfg.count);
        let mut ready = Vec::with_capacity(cfg.count);
        for i in 0..cfg.count {
            let state = AgentState::new(
                format!("{}-{i}", cfg.hostname_prefix),
                format!("127.0.0.1:{}", fake_port(i)),
                behaviour.clone(),
                shared.clone(),
                Rng::for_agent(cfg.seed, i),
            );
            let task = AgentTask::new(state, url.clone(), connector.clone(), cancel.clone());
            let (tx, rx) = oneshot::channel();
            let gate = gate.clone();
            handles.push(tokio::spawn(async move {
                let Ok(permit) = gate.acquire_owned().await else {
                    return;
                };
                task.run(tx, permit).await;
            }));
            ready.push(rx);
        }
        let cluster = SimCluster {
            shared,
            cancel,
            handles,
        };
        for rx in ready {
            let outcome = rx.await.unwrap_or_else(|_| {
                Err(SimError::Config(
                    "a simulated agent stopped during startup".into(),
                ))
            });
            if let Err(e) = outcome {
                cluster.shutdown().await;
                return Err(e);
            }
        }
        Ok(cluster)
    }

    /// Counters of what the agents did so far.
    pub fn stats(&self) -> SimStats {
        self.shared.snapshot()
    }

    /// Every recorded launch so far, in the order the agents received them.
    pub fn launches(&self) -> Vec<LaunchRecord> {
        self.shared.launches()
    }

    /// Like [`SimCluster::launches`], but also forgets them (long runs use this to bound memory).
    pub fn take_launches(&self) -> Vec<LaunchRecord> {
        self.shared.take_launches()
    }

    /// Closes every agent's connection and waits (briefly) for the agents to stop.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let handles = std::mem::take(&mut self.handles);
        let all = futures::future::join_all(handles);
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, all).await.is_err() {
            tracing::warn!("simulated agents did not stop within {SHUTDOWN_TIMEOUT:?}");
        }
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The advertised (never listened on) port of agent `i`.
fn fake_port(i: usize) -> usize {
    FIRST_FAKE_PORT + i % (65_535 - FIRST_FAKE_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_addresses_become_agent_urls() {
        let want = "ws://127.0.0.1:5050/api/meseta/v1/agent";
        for m in [
            "http://127.0.0.1:5050",
            "http://127.0.0.1:5050/",
            "127.0.0.1:5050",
            "ws://127.0.0.1:5050/api/meseta/v1/agent",
        ] {
            assert_eq!(agent_url(m).expect(m), want, "{m}");
        }
        assert_eq!(
            agent_url("https://m:1").expect("https"),
            "wss://m:1/api/meseta/v1/agent"
        );
        let mut tls = SimConfig::new("https://m:1", 1);
        assert!(tls.validate().is_err(), "a TLS master needs its CA");
        tls.tls = Some(meseta_tls::plain_client_config());
        assert!(tls.validate().is_ok());
        for bad in ["ftp://m", "http://", ""] {
            assert!(agent_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_is_validated() {
        let ok = SimConfig::new("http://m:1", 2);
        assert!(ok.validate().is_ok());
        let cases = [
            SimConfig {
                count: 0,
                ..ok.clone()
            },
            SimConfig {
                failure_rate: 1.5,
                ..ok.clone()
            },
            SimConfig {
                failure_rate: f64::NAN,
                ..ok.clone()
            },
            SimConfig {
                resources: Resources::parse("disk:10").expect("r"),
                ..ok.clone()
            },
            SimConfig {
                hostname_prefix: String::new(),
                ..ok.clone()
            },
        ];
        for c in cases {
            assert!(matches!(c.validate(), Err(SimError::Config(_))), "{c:?}");
        }
        assert!(fake_port(100_000) <= 65_535);
    }

    #[tokio::test]
    async fn start_fails_clearly_without_a_master() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let err = SimCluster::start(SimConfig::new(format!("127.0.0.1:{port}"), 3))
            .await
            .err()
            .expect("no master listens");
        assert!(matches!(err, SimError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("cannot register"), "{err}");
    }
}
