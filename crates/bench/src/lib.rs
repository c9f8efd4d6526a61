//! Benchmarks of meseta (`meseta bench …`) and simulated agents at scale (`meseta sim agents`).
//!
//! Each benchmark runs against a private cluster it starts itself, prints its figures (a table,
//! or JSON with `--json`) and checks them against meseta's targets:
//!
//! - [`launch`] (`bench launch`): a master and an agent as child processes; the idle resident
//!   memory of both, and the submit → `TASK_RUNNING` latency of tasks launched one after another
//!   through `/api/v1/scheduler`, against bare fork+exec of the same command.
//! - [`allocator`] (`bench allocator`): the cycle time of the pure allocator (`meseta-allocator`)
//!   handing out a whole cluster of simulated agents to many frameworks over weighted roles.
//! - [`launch_rate`] (`bench launch-rate`): tasks per second launched through an in-process
//!   framework and through an HTTP framework, on a master in this process with simulated agents.
//! - [`jobs`] (`bench jobs`): the jobs (Chronos) scheduler's start delay (run due → launch seen
//!   by a simulated agent), the runs it missed, and the master's CPU use, for N jobs every second.
//! - [`services`] (`bench services`): the services (Marathon) scheduler's placements per second
//!   (first `POST /v2/apps` → every instance `TASK_RUNNING`) and the master's memory per instance.
//!
//! - [`dns`] (`bench dns`): queries per second and p99 latency of the master's DNS server with
//!   1,000 apps on simulated agents, from `dnsperf` when it is installed and from an in-process
//!   UDP load generator.
//!
//! - [`ui`] (`bench ui`): server time and weight of every web UI page at 1,000 apps × 10 tasks,
//!   and the memory of 14 days of usage history at 1,000 nodes and 1,000 apps.
//! - [`lb`] (`bench lb`): `meseta lb` and HAProxy in front of the same backends under `wrk`:
//!   requests/s and p99, then failed requests while backends change every second.
//!
//! - [`failover`] (`bench failover`): three masters on a 3-member etcd; leader kill -9 → first
//!   acknowledged write on the new leader, beside etcd's own raft election time.
//!
//! `cluster` starts the private master and agent processes; [`sim`] is `meseta sim agents`,
//! simulated agents (`meseta-sim`) registered with a running master until Ctrl-C. The benchmarks
//! talk to the master through the one typed client, [`meseta_api::client::MasterClient`].
#![forbid(unsafe_code)]

pub mod acl;
pub mod allocator;
mod cluster;
pub mod dns;
pub mod failover;
pub mod jobs;
pub mod launch;
mod launch_docker;
pub mod launch_rate;
pub mod lb;
pub mod services;
pub mod sim;
pub mod ui;

use meseta_api::scheduler::{Accept, CallKind, Offer, TaskInfo};
use meseta_cli::output;
use serde::Serialize;
use std::time::Duration;

/// `meseta bench ...`
#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// Launch latency and idle memory of a private local cluster.
    Launch(launch::LaunchArgs),
    /// Full allocation cycle time of the allocator over many simulated agents.
    Allocator(allocator::AllocatorArgs),
    /// Start delay and master CPU of the jobs scheduler with simulated agents.
    Jobs(jobs::JobsArgs),
    /// Tasks launched per second through in-process and HTTP frameworks (simulated agents).
    LaunchRate(launch_rate::LaunchRateArgs),
    /// Placements per second and master memory per instance of the services scheduler.
    Services(services::ServicesArgs),
    /// Leader kill → first acknowledged write of three masters on etcd, beside etcd's own
    /// election time.
    Failover(failover::FailoverArgs),
    /// Queries per second and p99 of the master's DNS server with many apps.
    Dns(dns::DnsArgs),
    /// Render time and weight of the web UI's pages at 1,000 apps x 10 tasks, and the memory
    /// of 14 days of usage history.
    Ui(ui::UiArgs),
    /// `meseta lb` against HAProxy (wrk): steady requests/s and p99, then backends changing
    /// every second (HAProxy reloaded, meseta lb following events): failed requests.
    Lb(lb::LbArgs),
}

/// Runs a bench subcommand; returns the exit code.
pub async fn run(cmd: BenchCmd, json: bool) -> anyhow::Result<i32> {
    match cmd {
        BenchCmd::Launch(args) => launch::run(args, json).await,
        BenchCmd::Allocator(args) => allocator::run(args, json),
        BenchCmd::Jobs(args) => jobs::run(args, json).await,
        BenchCmd::LaunchRate(args) => launch_rate::run(args, json).await,
        BenchCmd::Services(args) => services::run(args, json).await,
        BenchCmd::Failover(args) => failover::run(args, json).await,
        BenchCmd::Dns(args) => dns::run(args, json).await,
        BenchCmd::Ui(args) => ui::run(args, json).await,
        BenchCmd::Lb(args) => lb::run(args, json).await,
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl Stats {
    /// Nearest-rank percentiles of `samples`; `None` when empty.
    pub fn of(samples: &[Duration]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let pick = |p: f64| {
            let rank = (p * sorted.len() as f64).ceil() as usize;
            sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
        };
        Some(Stats {
            p50_ms: ms(pick(0.50)?),
            p99_ms: ms(pick(0.99)?),
            max_ms: ms(*sorted.last()?),
        })
    }
}

/// A runtime of two worker threads named `name`, for one side of a benchmark (the simulated
/// agents, an in-process master): the CLI's runtime has one thread, and a side that shared it
/// would be measured on a single core, unlike `meseta master` and `meseta sim`.
pub(crate) fn bench_runtime(name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
}

/// Prints a benchmark's report (JSON with `--json`, else its text form); returns exit code 0.
pub(crate) fn print_report<R: Serialize>(
    report: &R,
    json: bool,
    render: impl FnOnce(&R) -> String,
) -> anyhow::Result<i32> {
    if json {
        output::print_json(&serde_json::to_value(report)?);
    } else {
        println!("{}", render(report));
    }
    Ok(0)
}

/// The ACCEPT that launches `tasks` on `offer` and lets the rest of it come back at once
/// (`refuse_seconds` 0).
pub(crate) fn launch_call(offer: &Offer, tasks: Vec<TaskInfo>) -> CallKind {
    CallKind::Accept {
        accept: Accept::launch(offer.id.clone(), tasks, 0.0),
    }
}

/// One target and whether it was met.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// The bound.
    pub target: f64,
    /// Whether `value` is within `target` (see `op`).
    pub pass: bool,
    /// How `value` must compare with `target`: `<=`, `<` or `>=` (shown in the table only).
    #[serde(skip)]
    pub op: &'static str,
}

impl Check {
    /// The CHECK / VALUE / TARGET / RESULT table of every benchmark, values shown with
    /// `decimals` places.
    pub(crate) fn table(checks: &[Check], decimals: usize) -> String {
        let rows: Vec<Vec<String>> = checks
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    format!("{:.*}", decimals, c.value),
                    format!("{} {}", c.op, output::num(c.target)),
                    if c.pass { "PASS" } else { "MISS" }.to_string(),
                ]
            })
            .collect();
        output::table(&["CHECK", "VALUE", "TARGET", "RESULT"], &rows)
    }

    /// A check of `value` against the upper bound `target`.
    pub(crate) fn new(name: &str, value: f64, target: f64) -> Check {
        Check::with(name, value, target, "<=", value <= target)
    }

    /// A check that `value` stays strictly below `target`.
    pub(crate) fn below(name: &str, value: f64, target: f64) -> Check {
        Check::with(name, value, target, "<", value < target)
    }

    /// A check that `value` reaches at least `target`.
    pub(crate) fn at_least(name: &str, value: f64, target: f64) -> Check {
        Check::with(name, value, target, ">=", value >= target)
    }

    fn with(name: &str, value: f64, target: f64, op: &'static str, pass: bool) -> Check {
        Check {
            name: name.to_string(),
            value,
            target,
            pass,
            op,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples = ms(&(1..=100).rev().collect::<Vec<_>>());
        let s = Stats::of(&samples).expect("non-empty");
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (50.0, 99.0, 100.0));
        let s = Stats::of(&ms(&[7])).expect("non-empty");
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (7.0, 7.0, 7.0));
        assert!(Stats::of(&[]).is_none());
    }

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: BenchCmd,
    }

    #[test]
    fn command_tree_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_defaults() {
        let cli = Cli::try_parse_from(["bench", "launch"]).expect("valid args");
        let BenchCmd::Launch(a) = cli.cmd else {
            panic!("not bench")
        };
        assert_eq!(a.tasks, 200);
        assert_eq!(a.command, "sleep 1000");
    }
}
