//! `meseta bench allocator`: times full allocation cycles of the pure allocator
//! (`meseta-allocator`) over many simulated agents and frameworks, and checks the cycle time
//! against meseta's targets (p99 ≤ 10 ms at 10,000 agents, ≤ 50 ms at 50,000).
//!
//! Every grant is recovered (as if declined without a filter) between cycles, so each timed
//! cycle has the whole cluster to hand out again. The first cycle after the agents registered
//! is reported on its own and not among the timed ones: it also pays for first-time
//! allocations (each agent's list of holdings), which a running master pays once.

use crate::{Check, Stats};
use anyhow::{bail, Context};
use meseta_allocator::{AgentInfo, Allocator, AllocatorConfig, FrameworkInfo, Quota};
use meseta_types::{AgentId, FrameworkId, Resources, Scalar};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Target: p99 of one full cycle at up to 10,000 agents, in milliseconds.
const TARGET_CYCLE_MS: f64 = 10.0;
/// Target: p99 of one full cycle beyond 10,000 agents (up to 50,000), in milliseconds.
const TARGET_CYCLE_MS_50K: f64 = 50.0;

/// The p99 target for a cluster of `agents`.
fn cycle_target(agents: usize) -> f64 {
    if agents > 10_000 {
        TARGET_CYCLE_MS_50K
    } else {
        TARGET_CYCLE_MS
    }
}
/// Resources of every simulated agent.
const AGENT_RESOURCES: &str = "cpus:16;mem:65536";
/// Roles the frameworks are spread over (round robin).
const ROLES: [&str; 4] = ["web", "batch", "analytics/etl", "analytics/ml"];

/// `bench allocator` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct AllocatorArgs {
    /// Number of simulated agents.
    #[arg(long, default_value_t = 10_000)]
    pub agents: usize,
    /// Number of frameworks, spread over four roles.
    #[arg(long, default_value_t = 100)]
    pub frameworks: usize,
    /// Number of timed cycles.
    #[arg(long, default_value_t = 20)]
    pub cycles: usize,
    /// Also give the `web` role a quota guarantee (exercises stage 1 and headroom).
    #[arg(long)]
    pub quota: bool,
}

/// Everything `bench allocator` measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Simulated agents.
    pub agents: usize,
    /// Frameworks.
    pub frameworks: usize,
    /// Timed cycles.
    pub cycles: usize,
    /// Whether a quota guarantee was configured.
    pub quota: bool,
    /// Time of the first cycle (not among the timed ones), in milliseconds.
    pub first_cycle_ms: f64,
    /// Time of one full cycle.
    pub cycle: Stats,
    /// Grants handed out per timed cycle (mean).
    pub grants_per_cycle: f64,
    /// Grants per second of allocation time.
    pub grants_per_sec: f64,
    /// The targets.
    pub checks: Vec<Check>,
    /// Whether every target was met.
    pub pass: bool,
}

impl Report {
    /// The human-readable report.
    pub fn render(&self) -> String {
        [
            format!(
                "allocator: {} agents, {} frameworks, {} cycles{}",
                self.agents,
                self.frameworks,
                self.cycles,
                if self.quota { ", with quota" } else { "" }
            ),
            format!(
                "full cycle: p50 {:.3} ms   p99 {:.3} ms   max {:.3} ms   (first cycle {:.3} ms, not timed)",
                self.cycle.p50_ms, self.cycle.p99_ms, self.cycle.max_ms, self.first_cycle_ms
            ),
            format!(
                "grants: {:.0} per cycle, {:.0} per second",
                self.grants_per_cycle, self.grants_per_sec
            ),
            String::new(),
            Check::table(&self.checks, 3),
        ]
        .join("\n")
    }
}

/// Runs the benchmark and prints the report; returns the exit code.
pub fn run(args: AllocatorArgs, json: bool) -> anyhow::Result<i32> {
    let report = measure(&args)?;
    crate::print_report(&report, json, |r| r.render())
}

/// Builds the allocator, runs the cycles and assembles the report.
pub fn measure(args: &AllocatorArgs) -> anyhow::Result<Report> {
    if args.agents == 0 || args.frameworks == 0 || args.cycles == 0 {
        bail!("--agents, --frameworks and --cycles must be at least 1");
    }
    let mut alloc = build(args)?;
    let t0 = Instant::now();
    let first = alloc.allocate(Duration::ZERO, None);
    let first_cycle_ms = t0.elapsed().as_secs_f64() * 1e3;
    for g in &first.offers {
        alloc.recover(
            &g.agent,
            &g.framework,
            &g.role,
            &g.resources,
            None,
            Duration::ZERO,
        );
    }
    let mut samples = Vec::with_capacity(args.cycles);
    let mut grants = 0usize;
    let mut busy = Duration::ZERO;
    for i in 1..=args.cycles {
        let now = Duration::from_secs(i as u64);
        let t0 = Instant::now();
        let cycle = alloc.allocate(now, None);
        let took = t0.elapsed();
        samples.push(took);
        busy += took;
        grants += cycle.offers.len();
        for g in &cycle.offers {
            alloc.recover(&g.agent, &g.framework, &g.role, &g.resources, None, now);
        }
    }
    let cycle = Stats::of(&samples).context("no cycle ran")?;
    let grants_per_sec = if busy.is_zero() {
        0.0
    } else {
        grants as f64 / busy.as_secs_f64()
    };
    let checks = vec![Check::new(
        &format!("p99 cycle (ms) at {} agents", args.agents),
        cycle.p99_ms,
        cycle_target(args.agents),
    )];
    Ok(Report {
        agents: args.agents,
        frameworks: args.frameworks,
        cycles: args.cycles,
        quota: args.quota,
        first_cycle_ms,
        cycle,
        grants_per_cycle: grants as f64 / args.cycles as f64,
        grants_per_sec,
        pass: checks.iter().all(|c| c.pass),
        checks,
    })
}

fn build(args: &AllocatorArgs) -> anyhow::Result<Allocator> {
    let mut alloc = Allocator::new(AllocatorConfig::default(), None);
    let total = std::sync::Arc::new(Resources::parse(AGENT_RESOURCES).context("agent resources")?);
    for i in 0..args.agents {
        let info = AgentInfo {
            hostname: format!("agent-{i}"),
            total: total.clone(),
            domain: None,
        };
        alloc.add_agent(AgentId::new(format!("agent-{i}")), info, &[])?;
    }
    for i in 0..args.frameworks {
        let info = FrameworkInfo {
            roles: vec![ROLES[i % ROLES.len()].to_string()],
            ..FrameworkInfo::default()
        };
        alloc.add_framework(FrameworkId::new(format!("fw-{i}")), info, &[])?;
    }
    alloc.set_weight("web", 2.0)?;
    if args.quota {
        // A tenth of the cluster's cpus guaranteed to `web`.
        let cpus = Scalar::from_f64(total.cpus() * args.agents as f64 / 10.0)?;
        let quota = Quota {
            guarantees: [("cpus".to_string(), cpus)].into(),
            ..Quota::default()
        };
        alloc.set_quota("web", quota, false)?;
    }
    Ok(alloc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_hands_out_every_agent_each_cycle() {
        for quota in [false, true] {
            let args = AllocatorArgs {
                agents: 50,
                frameworks: 8,
                cycles: 3,
                quota,
            };
            let r = measure(&args).expect("runs");
            assert_eq!(r.grants_per_cycle, 50.0, "quota {quota}");
            assert_eq!(r.checks.len(), 1);
            assert!(r.render().contains("full cycle"));
            let json = serde_json::to_value(&r).expect("json");
            assert_eq!(json["agents"], 50);
        }
    }

    #[test]
    fn larger_clusters_get_the_looser_target() {
        assert_eq!(cycle_target(10_000), 10.0);
        assert_eq!(cycle_target(50_000), 50.0);
    }

    #[test]
    fn rejects_empty_runs() {
        let args = AllocatorArgs {
            agents: 0,
            frameworks: 1,
            cycles: 1,
            quota: false,
        };
        assert!(measure(&args).is_err());
    }
}
