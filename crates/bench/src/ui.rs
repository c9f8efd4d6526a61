//! `meseta bench ui`: the web UI at scale. A master process with simulated agents running
//! `--apps` Marathon apps of `--instances` each (default 1,000 × 10), then every page requested
//! `--requests` times in a row on loopback: server time p50/p99 (request → last byte, so an upper
//! bound of the render) and page weight. Beside it, the memory of 14 days of usage history at
//! `--nodes` nodes and `--apps` apps, from the history's own accounting (the bound: every
//! series of every node and app changing at each sample, so that its rings hold one value per
//! slot).
//!
//! Targets: p99 ≤ 100 ms for the dashboard and the services list.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use meseta_history::{Entity, History, Series};
use serde::Serialize;

use crate::cluster::MasterProcess;
use crate::services::{master_rss, post_apps, sum_running, SimRuntime};
use crate::{Check, Stats};

/// p99 target of the dashboard and the services list, ms.
const TARGET_P99_MS: f64 = 100.0;

/// Flags of `bench ui`.
#[derive(clap::Args, Debug)]
pub struct UiArgs {
    /// Apps.
    #[arg(long, default_value_t = 1000)]
    pub apps: usize,
    /// Instances per app.
    #[arg(long, default_value_t = 10)]
    pub instances: usize,
    /// Simulated agents (each holds up to 400 instances).
    #[arg(long, default_value_t = 40)]
    pub agents: usize,
    /// Requests per page.
    #[arg(long, default_value_t = 50)]
    pub requests: usize,
    /// Nodes of the history memory figure.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Seconds to wait for every instance to run.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
}

/// One page's figures.
#[derive(Clone, Debug, Serialize)]
pub struct PageFigures {
    /// Page.
    pub page: String,
    /// Latency percentiles.
    pub time: Stats,
    /// Bytes of HTML.
    pub bytes: usize,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct UiReport {
    /// Apps × instances running.
    pub apps: usize,
    /// Instances per app.
    pub instances: usize,
    /// One row per page.
    pub pages: Vec<PageFigures>,
    /// Master resident memory with the apps running, bytes.
    pub master_rss_bytes: u64,
    /// History heap for 14 days at `nodes` nodes and `apps` apps at most, bytes.
    pub history_bytes: usize,
    /// Nodes of that figure.
    pub history_nodes: usize,
    /// Checks.
    pub checks: Vec<Check>,
}

impl UiReport {
    fn render(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .pages
            .iter()
            .map(|p| {
                vec![
                    p.page.clone(),
                    format!("{:.1}", p.time.p50_ms),
                    format!("{:.1}", p.time.p99_ms),
                    format!("{:.1}", p.bytes as f64 / 1024.0),
                ]
            })
            .collect();
        [
            format!("{} apps x {} instances", self.apps, self.instances),
            meseta_cli::output::table(&["PAGE", "P50 MS", "P99 MS", "KIB"], &rows),
            format!(
                "master RSS {:.0} MiB; history for 14 days at {} nodes and {} apps: at most {:.1} MiB",
                self.master_rss_bytes as f64 / 1048576.0,
                self.history_nodes,
                self.apps,
                self.history_bytes as f64 / 1048576.0
            ),
            Check::table(&self.checks, 1),
        ]
        .join("\n")
    }
}

/// The history heap of a cluster of `nodes` and `apps` at most: every series a node has (totals,
/// allocations, use, tasks; no gpus) and an app has (allocations, use, tasks; no disk, no gpus).
pub fn history_bytes(nodes: usize, apps: usize) -> usize {
    let mut h = History::new();
    let t = 1_800_000_000;
    let node_series = [
        Series::CpusTotal,
        Series::CpusAllocated,
        Series::CpusUsed,
        Series::MemTotal,
        Series::MemAllocated,
        Series::MemUsed,
        Series::DiskTotal,
        Series::DiskAllocated,
        Series::DiskUsed,
        Series::Tasks,
    ];
    let app_series = [
        Series::CpusAllocated,
        Series::CpusUsed,
        Series::MemAllocated,
        Series::MemUsed,
        Series::Tasks,
    ];
    for s in node_series {
        h.record(&Entity::Cluster, s, t, 1.0);
    }
    for n in 0..nodes {
        for s in node_series {
            h.record(&Entity::Node(format!("agent-{n}")), s, t, 1.0);
        }
    }
    for a in 0..apps {
        for s in app_series {
            h.record(&Entity::App(format!("app-{a}")), s, t, 1.0);
        }
    }
    h.max_heap_bytes()
}

/// Runs `bench ui`; returns the exit code.
pub async fn run(args: UiArgs, json: bool) -> anyhow::Result<i32> {
    if args.apps == 0 || args.instances == 0 || args.agents == 0 || args.requests == 0 {
        bail!("--apps, --instances, --agents and --requests must be at least 1");
    }
    let dir = tempfile::Builder::new()
        .prefix("meseta-bench-ui-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let mut master = MasterProcess::start(dir.path()).await?;
    let sims = SimRuntime::start(&master.url, args.agents, None).await;
    let result = match sims {
        Ok(sims) => {
            let r = measure(&mut master, &args).await;
            sims.stop().await;
            r
        }
        Err(e) => Err(e),
    };
    master.stop(Duration::from_secs(5)).await;
    let report = result?;
    crate::print_report(&report, json, |r| r.render())
}

async fn measure(master: &mut MasterProcess, args: &UiArgs) -> anyhow::Result<UiReport> {
    let total = (args.apps * args.instances) as u64;
    eprintln!(
        "posting {} apps x {} instances ...",
        args.apps, args.instances
    );
    post_apps(&master.client.marathon(), args.apps, args.instances).await?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        master.check_alive()?;
        let running = sum_running(&master.client.marathon().apps().await?);
        if running >= total {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {running} of {total} instances running after {}s",
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let http = reqwest::Client::new();
    let slaves = master.client.slaves().await?;
    let node = slaves["slaves"][0]["id"]
        .as_str()
        .unwrap_or("none")
        .to_string();
    let pages = [
        ("dashboard", "/ui".to_string()),
        ("services", "/ui/services".to_string()),
        ("services page 10", "/ui/services?page=10".to_string()),
        (
            "services filtered",
            "/ui/services?q=svc-99&status=all".to_string(),
        ),
        ("service", "/ui/services/bench-svc-1".to_string()),
        ("jobs", "/ui/jobs".to_string()),
        ("nodes", "/ui/nodes".to_string()),
        ("node", format!("/ui/nodes/{node}")),
        ("frameworks", "/ui/frameworks".to_string()),
    ];
    let mut out = Vec::new();
    for (name, path) in pages {
        let url = format!("{}{path}", master.url);
        let mut times = Vec::with_capacity(args.requests);
        let mut bytes = 0;
        for i in 0..args.requests + 3 {
            let t0 = Instant::now();
            let resp = http
                .get(&url)
                .send()
                .await
                .with_context(|| format!("GET {path}"))?;
            let status = resp.status();
            let body = resp.bytes().await.with_context(|| format!("GET {path}"))?;
            let took = t0.elapsed();
            if !status.is_success() {
                bail!("GET {path} answered {status}");
            }
            if i >= 3 {
                times.push(took);
                bytes = body.len();
            }
        }
        let time = Stats::of(&times).context("no samples")?;
        eprintln!(
            "{name}: p50 {:.1} ms, p99 {:.1} ms, {} bytes",
            time.p50_ms, time.p99_ms, bytes
        );
        out.push(PageFigures {
            page: name.to_string(),
            time,
            bytes,
        });
    }
    let rss = master_rss(master)?;
    let history = history_bytes(args.nodes, args.apps);
    let p99 = |n: &str| {
        out.iter()
            .find(|p| p.page == n)
            .map(|p| p.time.p99_ms)
            .unwrap_or(f64::MAX)
    };
    let checks = vec![
        Check::new("dashboard p99 ms", p99("dashboard"), TARGET_P99_MS),
        Check::new("services list p99 ms", p99("services"), TARGET_P99_MS),
    ];
    Ok(UiReport {
        apps: args.apps,
        instances: args.instances,
        pages: out,
        master_rss_bytes: rss,
        history_bytes: history,
        history_nodes: args.nodes,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_memory_is_series_times_the_ring_bytes() {
        let bytes = history_bytes(10, 5);
        assert_eq!(
            bytes,
            (10 + 1) * 10 * meseta_history::SERIES_BYTES + 5 * 5 * meseta_history::SERIES_BYTES
        );
    }
}
