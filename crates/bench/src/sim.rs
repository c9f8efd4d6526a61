//! `meseta sim agents`: runs many simulated agents (see `meseta-sim`) against a master until
//! Ctrl-C, printing a status line every few seconds. Used to try schedulers at scale without
//! real machines.

use std::time::Duration;

use anyhow::Context;
use meseta_sim::{SimCluster, SimConfig, SimStats, DEFAULT_RESOURCES};
use meseta_types::Resources;

/// Period of the status line.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// `meseta sim ...`
#[derive(clap::Subcommand, Debug)]
pub enum SimCmd {
    /// Register simulated agents with the master (`--master`) and run until Ctrl-C.
    Agents(AgentsArgs),
}

/// `sim agents` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentsArgs {
    /// Number of simulated agents.
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// Resources of each agent (`cpus:4;mem:8192;...`).
    #[arg(long, default_value = DEFAULT_RESOURCES)]
    pub resources: String,
    /// Host names are `<prefix>-<i>`.
    #[arg(long, default_value = "sim")]
    pub hostname_prefix: String,
    /// Delay between a launch and TASK_STARTING/TASK_RUNNING, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub start_delay_ms: u64,
    /// Probability (0..1) that a task ends TASK_FAILED.
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Tasks finish after this many milliseconds; without it they run until killed.
    #[arg(long)]
    pub run_time_ms: Option<u64>,
    /// Seed of the failure draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The CA that signed an `https` master's certificate (the agents connect with `wss`).
    #[arg(long, env = "MESETA_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
}

impl AgentsArgs {
    /// The simulation config for a master at `master`.
    pub fn config(&self, master: &str) -> anyhow::Result<SimConfig> {
        let resources = Resources::parse(&self.resources)
            .with_context(|| format!("invalid --resources '{}'", self.resources))?;
        Ok(SimConfig {
            master: master.to_string(),
            count: self.count,
            resources,
            hostname_prefix: self.hostname_prefix.clone(),
            start_delay: Duration::from_millis(self.start_delay_ms),
            failure_rate: self.failure_rate,
            run_time: self.run_time_ms.map(Duration::from_millis),
            seed: self.seed,
            tls: self
                .ca_cert
                .as_deref()
                .map(|ca| meseta_tls::client_config(ca, None).map(std::sync::Arc::new))
                .transpose()
                .context("--ca-cert")?,
        })
    }
}

/// Runs a sim subcommand against `master`; returns the exit code.
pub async fn run(cmd: SimCmd, master: &str, json: bool) -> anyhow::Result<i32> {
    match cmd {
        SimCmd::Agents(args) => agents(args, master, json).await,
    }
}

async fn agents(args: AgentsArgs, master: &str, json: bool) -> anyhow::Result<i32> {
    let cfg = args.config(master)?;
    eprintln!(
        "registering {} simulated agents with {master} ...",
        cfg.count
    );
    let cluster = SimCluster::start(cfg).await?;
    eprintln!("all {} agents registered; Ctrl-C stops them", args.count);
    let mut tick = tokio::time::interval(STATUS_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.context("cannot wait for Ctrl-C")?;
                break;
            }
            _ = tick.tick() => {
                // Nothing reads the launch records here: drop them so memory stays flat.
                cluster.take_launches();
                print_status(&cluster.stats(), json)?;
            }
        }
    }
    let last = cluster.stats();
    cluster.shutdown().await;
    print_status(&last, json)?;
    Ok(0)
}

fn print_status(s: &SimStats, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
    } else {
        println!("{}", status_line(s));
    }
    Ok(())
}

/// The human status line.
pub fn status_line(s: &SimStats) -> String {
    format!(
        "agents {}/{} connected  launches {}  running {}  finished {}  failed {}  killed {}  unacked {}",
        s.connected, s.agents, s.launches, s.running, s.finished, s.failed, s.killed, s.unacked
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AgentsArgs {
        AgentsArgs {
            count: 3,
            resources: "cpus:2;mem:512".into(),
            hostname_prefix: "h".into(),
            start_delay_ms: 5,
            failure_rate: 0.25,
            run_time_ms: Some(20),
            seed: 9,
            ca_cert: None,
        }
    }

    #[test]
    fn args_become_a_config() {
        let c = args().config("http://m:1").expect("valid");
        assert_eq!(c.count, 3);
        assert_eq!(c.resources.cpus(), 2.0);
        assert_eq!(c.start_delay, Duration::from_millis(5));
        assert_eq!(c.run_time, Some(Duration::from_millis(20)));
        assert_eq!((c.failure_rate, c.seed), (0.25, 9));
        let bad = AgentsArgs {
            resources: "cpus:x".into(),
            ..args()
        };
        let err = bad.config("http://m:1").expect_err("bad resources");
        assert!(err.to_string().contains("--resources"), "{err}");
    }

    #[test]
    fn status_line_names_every_counter() {
        let s = SimStats {
            agents: 5,
            connected: 4,
            launches: 10,
            running: 3,
            finished: 6,
            failed: 1,
            killed: 0,
            unacked: 2,
            records_dropped: 0,
        };
        assert_eq!(
            status_line(&s),
            "agents 4/5 connected  launches 10  running 3  finished 6  failed 1  killed 0  unacked 2"
        );
    }
}
