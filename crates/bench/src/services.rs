//! `meseta bench services`: measures the services (Marathon) scheduler. Starts a private
//! `meseta master` process and simulated agents (`meseta-sim`, on their own two-thread runtime so
//! they keep up), posts N apps of M instances each to `/v2/apps`, and measures the time from the
//! first POST until every instance is TASK_RUNNING, counted from the master's `/v2/events`
//! stream (distinct `status_update_event` TASK_RUNNING task ids) and cross-checked by polling the
//! apps' `tasksRunning`. Reports placements per second and the master's resident memory per
//! instance (RSS a few seconds after all instances run, once the deployment's transient buffers
//! are gone, minus RSS before the first app), against meseta's targets.

use crate::cluster::{parse_vm_rss, MasterProcess};
use crate::{Check, Stats};
use anyhow::{bail, Context};
use futures::StreamExt;
use meseta_api::client::{Marathon, MasterClient};
use meseta_sim::{SimCluster, SimConfig};
use meseta_types::Resources;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Target: instances placed and running per second (at least).
const TARGET_PLACEMENTS_PER_S: f64 = 10_000.0;
/// Target at the `100k` preset (10,000 agents): instances placed and running per second.
const TARGET_PLACEMENTS_PER_S_100K: f64 = 5_000.0;
/// Target at the `100k` preset: seconds until every instance runs (at most).
const TARGET_ALL_RUNNING_S_100K: f64 = 20.0;
/// Target at the `100k` preset: master RSS once every instance runs, MiB (at most).
const TARGET_RSS_MIB_100K: f64 = 300.0;
/// Target: master RSS with 10,000 idle agents, MiB (at most; scaled by the agent count).
const TARGET_IDLE_MIB_PER_10K_AGENTS: f64 = 80.0;
/// Target: master memory per running instance, KiB (at most).
const TARGET_KIB_PER_INSTANCE: f64 = 2.0;
/// Resources of each simulated agent.
const AGENT_RESOURCES: &str = "cpus:4;mem:16384;disk:10000;ports:[31000-32000]";
/// The ids of the benchmark's apps start with this.
const APP_PREFIX: &str = "/bench-svc-";
/// Apps posted concurrently.
const POST_CONCURRENCY: usize = 16;
/// Settling time after the agents registered, before the idle RSS is read.
const SETTLE: Duration = Duration::from_secs(2);
/// Settling time after every instance runs, before the loaded RSS is read.
const SETTLE_LOADED: Duration = Duration::from_secs(5);
/// Between two polls of `/v2/apps` (four times that with the event stream).
const POLL: Duration = Duration::from_millis(250);
/// How often the master's running-task count is read once the event stream has ended.
const COUNT_POLL: Duration = Duration::from_millis(50);
/// Between two looks at the event counter.
const TICK: Duration = Duration::from_millis(20);

/// `bench services` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ServicesArgs {
    /// Number of simulated agents.
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    /// Number of apps.
    #[arg(long, default_value_t = 100)]
    pub apps: usize,
    /// Instances of each app.
    #[arg(long, default_value_t = 100)]
    pub instances: usize,
    /// A small run for tests: 20 agents, 5 apps of 20 instances (overrides the three above).
    #[arg(long)]
    pub quick: bool,
    /// A named size (overrides `--agents`, `--apps`, `--instances`): `100k` is 10,000 agents
    /// and 1,000 apps of 100 instances.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Give up when the instances are not all running after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// `etcd`: run the same benchmark a second time with the master on a 3-member etcd
    /// (`meseta master --store etcd://…`, as in HA) and compare with the embedded store.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,
    /// Run a second time on a master with `--acl` (a scoped token on every request) and
    /// print the ratio of placements per second (target ≥ 0.9).
    #[arg(long, conflicts_with = "store")]
    pub acl: bool,
    /// Run a second time on a master serving TLS (HTTPS to the client, `wss` to the simulated
    /// agents), with `--acl` too if given, and print the ratio (target ≥ 0.9).
    #[arg(long, conflicts_with = "store")]
    pub tls: bool,
}

/// The master's store in `bench services`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded store only.
    Embedded,
    /// The embedded store, then etcd, in one run.
    Etcd,
}

/// Named sizes of `bench services`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// 10,000 agents, 1,000 apps × 100 instances = 100,000 instances.
    #[value(name = "100k")]
    P100k,
}

/// The embedded-versus-etcd comparison of `bench services --store etcd`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoreComparison {
    /// The run on the embedded store.
    pub embedded: ServicesReport,
    /// The run on etcd.
    pub etcd: ServicesReport,
    /// Placements per second on etcd ÷ on the embedded store.
    pub placement_ratio: f64,
    /// etcd proposals (write requests: transactions and single writes) committed from the
    /// first POST until every instance ran, in the etcd run.
    pub etcd_writes: u64,
    /// `etcd_writes / instances`.
    pub etcd_writes_per_placement: f64,
    /// The targets.
    pub checks: Vec<Check>,
    /// Whether every target was met.
    pub pass: bool,
}

impl StoreComparison {
    fn render(&self) -> String {
        [
            "== embedded store".to_string(),
            self.embedded.render(),
            String::new(),
            "== etcd (3 members)".to_string(),
            self.etcd.render(),
            String::new(),
            format!(
                "placements/s etcd / embedded = {:.2}; {} etcd transactions while placing = {:.4} per placement",
                self.placement_ratio, self.etcd_writes, self.etcd_writes_per_placement
            ),
            Check::table(&self.checks, 2),
        ]
        .join("\n")
    }
}

/// Target: placements per second on etcd ÷ on the embedded store (at least).
const TARGET_ETCD_RATIO: f64 = 0.5;

impl ServicesArgs {
    /// `(agents, apps, instances)` after `--quick`.
    pub fn sizes(&self) -> (usize, usize, usize) {
        if self.quick {
            (20, 5, 20)
        } else if self.preset == Some(Preset::P100k) {
            (10_000, 1_000, 100)
        } else {
            (self.agents, self.apps, self.instances)
        }
    }
}

/// Everything `bench services` measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServicesReport {
    /// Simulated agents.
    pub agents: usize,
    /// Apps posted.
    pub apps: usize,
    /// Instances per app.
    pub instances_per_app: usize,
    /// `apps × instances_per_app`.
    pub instances: usize,
    /// First POST → every instance TASK_RUNNING, seconds.
    pub seconds: f64,
    /// Time to POST every app, seconds.
    pub post_seconds: f64,
    /// Latency of each `POST /v2/apps` (they run [`POST_CONCURRENCY`] at a time).
    pub post_latency: Option<Stats>,
    /// Whether the end was seen on the event stream (else by polling the master's
    /// `master/tasks_running`).
    pub timed_by_events: bool,
    /// `instances / seconds`.
    pub placements_per_s: f64,
    /// Master RSS before the first app, bytes.
    pub master_rss_before: u64,
    /// Master RSS when the last instance started running, bytes.
    pub master_rss_after: u64,
    /// Master RSS `SETTLE_LOADED` later (what the memory check uses), bytes.
    pub master_rss_settled: u64,
    /// `(after − before) / instances`.
    pub bytes_per_instance: f64,
    /// Where the master's time went during the run: (phase, calls, milliseconds), from its
    /// `/metrics/snapshot` before the first POST and once every instance ran.
    pub phases: Vec<(String, f64, f64)>,
    /// On etcd: write requests (raft proposals) etcd committed between the first POST and
    /// the moment every instance ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_writes: Option<u64>,
    /// The targets.
    pub checks: Vec<Check>,
    /// Whether every target was met.
    pub pass: bool,
}

impl ServicesReport {
    /// Assembles the report and evaluates the targets.
    pub fn new(sizes: (usize, usize, usize), timing: Timing, rss: Rss) -> ServicesReport {
        let (agents, apps, per_app) = sizes;
        let instances = apps * per_app;
        let seconds = timing.all_running.as_secs_f64();
        let placements_per_s = if seconds > 0.0 {
            instances as f64 / seconds
        } else {
            0.0
        };
        let bytes_per_instance = if instances == 0 {
            0.0
        } else {
            rss.settled.saturating_sub(rss.before) as f64 / instances as f64
        };
        const MIB: f64 = 1024.0 * 1024.0;
        let big = agents >= 10_000;
        let rate_target = if big {
            TARGET_PLACEMENTS_PER_S_100K
        } else {
            TARGET_PLACEMENTS_PER_S
        };
        let mut checks = vec![
            Check::at_least("placements/s", placements_per_s, rate_target),
            Check::new(
                "master memory per instance (KiB)",
                bytes_per_instance / 1024.0,
                TARGET_KIB_PER_INSTANCE,
            ),
        ];
        if big {
            checks.push(Check::new(
                "all running (s)",
                seconds,
                TARGET_ALL_RUNNING_S_100K,
            ));
            checks.push(Check::new(
                "master RSS all running (MiB)",
                rss.all_running.max(rss.settled) as f64 / MIB,
                TARGET_RSS_MIB_100K,
            ));
            checks.push(Check::new(
                "idle master RSS (MiB)",
                rss.before as f64 / MIB,
                TARGET_IDLE_MIB_PER_10K_AGENTS * agents as f64 / 10_000.0,
            ));
        }
        ServicesReport {
            agents,
            apps,
            instances_per_app: per_app,
            instances,
            seconds,
            post_seconds: timing.posted.as_secs_f64(),
            post_latency: timing.post_latency,
            timed_by_events: timing.by_events,
            placements_per_s,
            master_rss_before: rss.before,
            master_rss_after: rss.all_running,
            master_rss_settled: rss.settled,
            bytes_per_instance,
            phases: Vec::new(),
            store_writes: None,
            pass: checks.iter().all(|c| c.pass),
            checks,
        }
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        const MIB: f64 = 1024.0 * 1024.0;
        let source = if self.timed_by_events {
            "/v2/events"
        } else {
            "the master's tasks_running"
        };
        [
            format!(
                "{} apps x {} instances = {} on {} simulated agents",
                self.apps, self.instances_per_app, self.instances, self.agents
            ),
            format!(
                "all running after {:.3} s (apps posted in {:.3} s; end seen on {source})",
                self.seconds, self.post_seconds
            ),
            match &self.post_latency {
                Some(l) => format!(
                    "POST /v2/apps ({POST_CONCURRENCY} at a time): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    l.p50_ms, l.p99_ms, l.max_ms
                ),
                None => String::new(),
            },
            format!("placements {:.0}/s", self.placements_per_s),
            format!(
                "master RSS {:.1} MiB before, {:.1} MiB when all ran, {:.1} MiB {} s later: \
                 {:.0} bytes per instance",
                self.master_rss_before as f64 / MIB,
                self.master_rss_after as f64 / MIB,
                self.master_rss_settled as f64 / MIB,
                SETTLE_LOADED.as_secs(),
                self.bytes_per_instance
            ),
            String::new(),
            self.render_phases(),
            Check::table(&self.checks, 2),
        ]
        .join("\n")
    }

    /// The per-phase breakdown of the master's time (empty when it was not read).
    fn render_phases(&self) -> String {
        if self.phases.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "master time by phase (first POST -> all running):\n  phase               calls        ms   us/call\n",
        );
        for (name, calls, ms) in &self.phases {
            let per = if *calls > 0.0 {
                ms * 1000.0 / calls
            } else {
                0.0
            };
            out.push_str(&format!("  {name:<16} {calls:>8.0} {ms:>9.1} {per:>9.1}\n"));
        }
        out
    }
}

/// The master's resident memory at the three moments the benchmark reads it, bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rss {
    /// Agents registered, no app yet.
    pub before: u64,
    /// When the last instance started running.
    pub all_running: u64,
    /// `SETTLE_LOADED` later.
    pub settled: u64,
}

/// When things happened, from the first POST.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// Every app posted.
    pub posted: Duration,
    /// Each POST's latency.
    pub post_latency: Option<Stats>,
    /// Every instance running.
    pub all_running: Duration,
    /// Whether `all_running` came from the event stream.
    pub by_events: bool,
}

/// The Marathon JSON of benchmark app `i`.
pub fn app_json(i: usize, instances: usize) -> Value {
    serde_json::json!({
        "id": format!("{APP_PREFIX}{i}"),
        "cmd": "sleep 1000",
        "cpus": 0.01,
        "mem": 16,
        "instances": instances,
    })
}

/// Runs `bench services`; returns the exit code.
pub async fn run(args: ServicesArgs, json: bool) -> anyhow::Result<i32> {
    let sizes = args.sizes();
    if sizes.0 == 0 || sizes.1 == 0 || sizes.2 == 0 || args.timeout == 0 {
        bail!("--agents, --apps, --instances and --timeout must be at least 1");
    }
    raise_fd_limit();
    let timeout = Duration::from_secs(args.timeout);
    let embedded = run_once(sizes, timeout, None, Secured::default()).await?;
    if args.acl || args.tls {
        let secured = Secured {
            acl: args.acl,
            tls: args.tls,
        };
        let on = run_once(sizes, timeout, None, secured).await?;
        let report = crate::acl::AclComparison::new(secured.describe(), embedded, on);
        return crate::print_report(&report, json, |r| r.render());
    }
    if args.store == StoreKind::Embedded {
        return crate::print_report(&embedded, json, |r| r.render());
    }
    eprintln!("starting a 3-member etcd cluster ...");
    // Blocking while etcd starts is fine: nothing else runs in this process now.
    let etcd = meseta_testkit::etcd::EtcdCluster::start(3)
        .context("cannot start etcd (apt-get install etcd-server)")?;
    let metrics = format!("{}/metrics", etcd.members()[0]);
    let url = etcd.url();
    let target = EtcdTarget {
        url: &url,
        metrics: &metrics,
    };
    let on_etcd = run_once(sizes, timeout, Some(target), Secured::default()).await?;
    drop(etcd);
    let writes = on_etcd.store_writes.unwrap_or(0);
    let ratio = if embedded.placements_per_s > 0.0 {
        on_etcd.placements_per_s / embedded.placements_per_s
    } else {
        0.0
    };
    let checks = vec![Check::at_least(
        "placements/s etcd / embedded",
        ratio,
        TARGET_ETCD_RATIO,
    )];
    let report = StoreComparison {
        etcd_writes: writes,
        etcd_writes_per_placement: writes as f64 / on_etcd.instances.max(1) as f64,
        embedded,
        etcd: on_etcd,
        placement_ratio: ratio,
        pass: checks.iter().all(|c| c.pass),
        checks,
    };
    crate::print_report(&report, json, |r| r.render())
}

/// etcd's `etcd_server_proposals_committed_total` (every write request is one proposal).
async fn etcd_proposals(metrics_url: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(metrics_url)
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("cannot read {metrics_url}"))?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix("etcd_server_proposals_committed_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .with_context(|| format!("no etcd_server_proposals_committed_total in {metrics_url}"))
}

/// What protects the master of a run: ACL checks, TLS.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Secured {
    pub(crate) acl: bool,
    pub(crate) tls: bool,
}

impl Secured {
    /// How the report names it.
    pub(crate) fn describe(self) -> String {
        match (self.acl, self.tls) {
            (true, true) => "--acl (scoped token) and TLS",
            (true, false) => "--acl (scoped token)",
            (false, true) => "TLS",
            (false, false) => "nothing",
        }
        .to_string()
    }
}

/// The etcd cluster a run's master stores on.
#[derive(Clone, Copy)]
struct EtcdTarget<'a> {
    /// `etcd://…` for `meseta master --store`.
    url: &'a str,
    /// A member's `/metrics` (its count of committed proposals).
    metrics: &'a str,
}

/// One measurement on a fresh master: on the embedded store, or on `etcd`.
async fn run_once(
    sizes: (usize, usize, usize),
    timeout: Duration,
    etcd: Option<EtcdTarget<'_>>,
    secured: Secured,
) -> anyhow::Result<ServicesReport> {
    let dir = tempfile::Builder::new()
        .prefix("meseta-bench-services-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let acl: &[&str] = if secured.acl { &["--acl"] } else { &[] };
    let mut master = match etcd {
        None if secured.tls || secured.acl => {
            let mut m = if secured.tls {
                MasterProcess::start_tls(dir.path(), acl).await?
            } else {
                MasterProcess::start_with_args(dir.path(), acl).await?
            };
            if secured.acl {
                crate::acl::enable(&mut m).await?;
            }
            m
        }
        None => MasterProcess::start(dir.path()).await?,
        Some(target) => {
            let m = MasterProcess::start_ha(dir.path(), target.url, "2s", None).await?;
            m.wait_leading(Duration::from_secs(30)).await?;
            m
        }
    };
    let sims = SimRuntime::start(&master.url, sizes.0, master.client_tls()?).await;
    let result = match sims {
        Ok(sims) => {
            let r = measure(&mut master, sizes, timeout, etcd.map(|e| e.metrics)).await;
            sims.stop().await;
            r
        }
        Err(e) => Err(e),
    };
    master.stop(Duration::from_secs(5)).await;
    drop(dir);
    result
}

/// Simulated agents on a runtime of their own: the CLI's runtime has one thread, which would
/// make the agents (not the master) the bottleneck.
pub(crate) struct SimRuntime {
    rt: tokio::runtime::Runtime,
    sim: SimCluster,
}

impl SimRuntime {
    pub(crate) async fn start(
        master: &str,
        agents: usize,
        tls: Option<std::sync::Arc<meseta_tls::tokio_rustls::rustls::ClientConfig>>,
    ) -> anyhow::Result<SimRuntime> {
        let mut cfg = SimConfig::new(master.to_string(), agents);
        cfg.hostname_prefix = "bench-svc".into();
        cfg.tls = tls;
        cfg.resources = Resources::parse(AGENT_RESOURCES).context("agent resources")?;
        eprintln!("registering {agents} simulated agents ...");
        SimRuntime::start_with(cfg).await
    }

    /// Simulated agents as `cfg` describes them, on a runtime of their own.
    pub(crate) async fn start_with(cfg: SimConfig) -> anyhow::Result<SimRuntime> {
        let rt = crate::bench_runtime("bench-sim")
            .context("cannot start the simulated agents' runtime")?;
        let started = rt.spawn(SimCluster::start(cfg)).await;
        match started {
            Ok(Ok(sim)) => Ok(SimRuntime { rt, sim }),
            Ok(Err(e)) => {
                rt.shutdown_background();
                Err(e).context("cannot start the simulated agents")
            }
            Err(e) => {
                rt.shutdown_background();
                Err(e).context("the simulated agents' start panicked")
            }
        }
    }

    pub(crate) async fn stop(self) {
        let SimRuntime { rt, sim } = self;
        let _ = rt.spawn(sim.shutdown()).await;
        rt.shutdown_background();
    }
}

async fn measure(
    master: &mut MasterProcess,
    sizes: (usize, usize, usize),
    timeout: Duration,
    etcd_metrics: Option<&str>,
) -> anyhow::Result<ServicesReport> {
    let (_, apps, per_app) = sizes;
    let total = apps * per_app;
    tokio::time::sleep(SETTLE).await;
    master.check_alive()?;
    let before = master_rss(master)?;
    let phases_before = phase_metrics(&master.client).await;
    let counter = EventCounter::start(&master.client, total).await;
    if let Err(e) = &counter {
        eprintln!("no event stream ({e:#}); timing by polling /v2/apps");
    }
    let client = master.client.clone();
    let api = &client.marathon();
    eprintln!("posting {apps} apps x {per_app} instances ...");
    let writes_before = match etcd_metrics {
        Some(url) => Some(etcd_proposals(url).await?),
        None => None,
    };
    let t0 = Instant::now();
    let post_latency = Stats::of(&post_apps(api, apps, per_app).await?);
    let posted = t0.elapsed();
    let deadline = t0 + timeout;
    // With the event stream, the master's running-task count is only a slow cross-check; once
    // the stream has ended (the master cuts off a reader that lags), the count times the end.
    let poll_every = || match &counter {
        Ok(c) if !c.ended() => POLL * 4,
        _ => COUNT_POLL,
    };
    let mut next_poll = Instant::now();
    let mut last_print = Instant::now();
    let mut running = 0;
    let mut told_ended = false;
    let timing = loop {
        if !told_ended && counter.as_ref().is_ok_and(EventCounter::ended) {
            eprintln!("the event stream ended (a lagging reader is cut off); timing by the master's task count");
            told_ended = true;
            // The next poll was planned at the slow rate: count now, then at COUNT_POLL (else
            // the end could be seen up to a second late).
            next_poll = Instant::now();
        }
        if let Some(at) = counter.as_ref().ok().and_then(EventCounter::done_at) {
            break Timing {
                posted,
                post_latency,
                all_running: at.saturating_duration_since(t0),
                by_events: true,
            };
        }
        if Instant::now() >= next_poll {
            running = tasks_running(&client).await?;
            next_poll = Instant::now() + poll_every();
            if running >= total as u64 {
                break Timing {
                    posted,
                    post_latency,
                    all_running: t0.elapsed(),
                    by_events: false,
                };
            }
            master.check_alive()?;
        }
        if Instant::now() >= deadline {
            bail!(
                "only {running} of {total} instances running after {timeout:?}; the master log \
                 ends with:\n{}",
                master.log_tail()
            );
        }
        if last_print.elapsed() >= Duration::from_secs(2) {
            eprintln!("{running}/{total} running ...");
            last_print = Instant::now();
        }
        tokio::time::sleep(TICK).await;
    };
    let all_running = master_rss(master)?;
    let store_writes = match (etcd_metrics, writes_before) {
        (Some(url), Some(before)) => Some(etcd_proposals(url).await?.saturating_sub(before)),
        _ => None,
    };
    let phases_after = phase_metrics(&master.client).await;
    tokio::time::sleep(SETTLE_LOADED).await;
    master.check_alive()?;
    let rss = Rss {
        before,
        all_running,
        settled: master_rss(master)?,
    };
    let mut report = ServicesReport::new(sizes, timing, rss);
    report.store_writes = store_writes;
    if let (Some(b), Some(a)) = (phases_before, phases_after) {
        report.phases = meseta_phases::delta(|k| b.get(k).copied(), |k| a.get(k).copied())
            .into_iter()
            .map(|(n, c, ms)| (n.to_string(), c, ms))
            .collect();
    }
    Ok(report)
}

/// The master's count of running tasks (`master/tasks_running`: the benchmark's master runs
/// only the benchmark's tasks).
async fn tasks_running(master: &MasterClient) -> anyhow::Result<u64> {
    let m: std::collections::HashMap<String, f64> = master.get_path_as("/metrics/snapshot").await?;
    Ok(m.get("master/tasks_running").copied().unwrap_or(0.0) as u64)
}

/// The master's `/metrics/snapshot` (phase timers among them), or `None` when unreadable.
async fn phase_metrics(master: &MasterClient) -> Option<std::collections::HashMap<String, f64>> {
    master.get_path_as("/metrics/snapshot").await.ok()
}

pub(crate) fn master_rss(master: &MasterProcess) -> anyhow::Result<u64> {
    let path = format!("/proc/{}/status", master.pid());
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss(&text).with_context(|| format!("no VmRSS in {path}"))
}

/// Posts the apps, [`POST_CONCURRENCY`] at a time; returns each POST's latency.
pub(crate) async fn post_apps(
    api: &Marathon<'_>,
    apps: usize,
    per_app: usize,
) -> anyhow::Result<Vec<Duration>> {
    let results: Vec<anyhow::Result<Duration>> = futures::stream::iter(0..apps)
        .map(|i| async move {
            let body = app_json(i, per_app);
            let t0 = Instant::now();
            api.create_app(&body).await?;
            Ok(t0.elapsed())
        })
        .buffer_unordered(POST_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The sum of `tasksRunning` over the benchmark's apps in a `/v2/apps` answer.
pub fn sum_running(apps: &Value) -> u64 {
    apps.get("apps")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|app| {
                    app.get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id.starts_with(APP_PREFIX))
                })
                .filter_map(|app| app.get("tasksRunning").and_then(Value::as_u64))
                .sum()
        })
        .unwrap_or(0)
}

/// The benchmark's tasks running according to `/v2/events` (TASK_RUNNING adds a task id, a
/// terminal state removes it), and when `target` were running at once.
struct RunningSet {
    ids: HashSet<String>,
    target: usize,
    reached: Option<Instant>,
}

impl RunningSet {
    fn new(target: usize) -> RunningSet {
        RunningSet {
            ids: HashSet::with_capacity(target),
            target,
            reached: None,
        }
    }

    /// Feeds one SSE `data:` payload received at `now`.
    fn feed(&mut self, data: &str, now: Instant) {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
        if field("eventType") != "status_update_event" || !field("appId").starts_with(APP_PREFIX) {
            return;
        }
        match field("taskStatus") {
            "TASK_RUNNING" => {
                if self.ids.insert(field("taskId").to_string())
                    && self.ids.len() == self.target
                    && self.reached.is_none()
                {
                    self.reached = Some(now);
                }
            }
            "TASK_STAGING" | "TASK_STARTING" | "TASK_KILLING" => {}
            _ => {
                self.ids.remove(field("taskId"));
            }
        }
    }
}

/// Reads `/v2/events` in the background into a [`RunningSet`].
struct EventCounter {
    set: Arc<Mutex<RunningSet>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventCounter {
    /// Connects (the stream is attached when this returns) and starts reading.
    async fn start(master: &MasterClient, target: usize) -> anyhow::Result<EventCounter> {
        let mut events = master.marathon().events("status_update_event").await?;
        let set = Arc::new(Mutex::new(RunningSet::new(target)));
        let sink = set.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(data)) = events.next_data().await {
                let now = Instant::now();
                if let Ok(mut s) = sink.lock() {
                    s.feed(&data, now);
                }
            }
        });
        Ok(EventCounter { set, task })
    }

    /// When the target count of distinct tasks was seen running, if it was.
    fn done_at(&self) -> Option<Instant> {
        self.set.lock().ok()?.reached
    }

    /// Whether the stream ended (it no longer counts).
    fn ended(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for EventCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Raises the soft open-files limit to the hard one: the master (which inherits it) and this
/// process each hold one connection per simulated agent.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quick_mode_is_small() {
        let args = ServicesArgs {
            agents: 1000,
            apps: 100,
            instances: 100,
            quick: true,
            preset: None,
            timeout: 300,
            store: StoreKind::Embedded,
            acl: false,
            tls: false,
        };
        assert_eq!(args.sizes(), (20, 5, 20));
        let args = ServicesArgs {
            quick: false,
            ..args
        };
        assert_eq!(args.sizes(), (1000, 100, 100));
        let args = ServicesArgs {
            preset: Some(Preset::P100k),
            ..args
        };
        assert_eq!(args.sizes(), (10_000, 1_000, 100));
    }

    #[test]
    fn apps_are_marathon_json() {
        let a = app_json(7, 100);
        assert_eq!(a["id"], "/bench-svc-7");
        assert_eq!(a["instances"], 100);
        assert_eq!(a["cmd"], "sleep 1000");
        let parsed: meseta_api::marathon::AppDefinition =
            serde_json::from_value(a).expect("an AppDefinition");
        assert_eq!(parsed.instances, Some(100));
    }

    #[test]
    fn running_tasks_are_counted_once_and_leave_when_they_end() {
        let mut s = RunningSet::new(2);
        let t = Instant::now();
        let ev = |task: &str, app: &str, status: &str| {
            json!({"eventType":"status_update_event","taskId":task,"appId":app,"taskStatus":status})
                .to_string()
        };
        s.feed(&ev("a.1", "/bench-svc-0", "TASK_STAGING"), t);
        s.feed(&ev("a.1", "/bench-svc-0", "TASK_RUNNING"), t);
        s.feed(&ev("a.1", "/bench-svc-0", "TASK_RUNNING"), t);
        s.feed(&ev("b.1", "/other", "TASK_RUNNING"), t);
        s.feed("not json", t);
        s.feed(r#"{"eventType":"event_stream_attached"}"#, t);
        s.feed(&ev("a.1", "/bench-svc-0", "TASK_FAILED"), t);
        s.feed(&ev("a.2", "/bench-svc-0", "TASK_RUNNING"), t);
        assert_eq!((s.ids.len(), s.reached), (1, None), "a.1 ended");
        let later = t + Duration::from_secs(1);
        s.feed(&ev("a.3", "/bench-svc-1", "TASK_RUNNING"), later);
        assert_eq!(s.reached, Some(later));
        s.feed(&ev("a.3", "/bench-svc-1", "TASK_KILLED"), later);
        s.feed(
            &ev("a.4", "/bench-svc-1", "TASK_RUNNING"),
            later + Duration::from_secs(1),
        );
        assert_eq!(s.reached, Some(later), "reached once");
    }

    #[test]
    fn running_sum_covers_only_benchmark_apps() {
        let v = json!({"apps":[{"id":"/bench-svc-0","tasksRunning":40},
                               {"id":"/bench-svc-1","tasksRunning":2},
                               {"id":"/web","tasksRunning":7}]});
        assert_eq!(sum_running(&v), 42);
        assert_eq!(sum_running(&json!({})), 0);
    }

    /// RSS from 40 MiB, grown by `all_running` KiB with every instance running and by
    /// `settled` KiB once settled.
    fn rss_growth(all_running: u64, settled: u64) -> Rss {
        Rss {
            before: 40 << 20,
            all_running: (40 << 20) + all_running * 1024,
            settled: (40 << 20) + settled * 1024,
        }
    }

    #[test]
    fn the_100k_preset_checks_time_rss_and_idle_memory() {
        let timing = Timing {
            posted: Duration::from_secs(2),
            post_latency: None,
            all_running: Duration::from_secs(16),
            by_events: true,
        };
        let rss = Rss {
            before: 70 << 20,
            all_running: 250 << 20,
            settled: 240 << 20,
        };
        let mut r = ServicesReport::new((10_000, 1_000, 100), timing, rss);
        let names: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(r.pass, "{:?}", r.checks);
        r.phases = vec![("placement".into(), 4.0, 2.0)];
        assert!(r.render().contains("placement"), "{}", r.render());
        let slow = Timing {
            all_running: Duration::from_secs(30),
            ..timing
        };
        let heavy = Rss {
            before: 140 << 20,
            ..rss
        };
        let r = ServicesReport::new((10_000, 1_000, 100), slow, heavy);
        let pass: Vec<bool> = r.checks.iter().map(|c| c.pass).collect();
        assert_eq!(pass, [false, true, false, true, false]);
    }

    #[test]
    fn report_checks_rate_and_memory() {
        let timing = Timing {
            posted: Duration::from_millis(500),
            post_latency: Stats::of(&[Duration::from_millis(40)]),
            all_running: Duration::from_millis(800),
            by_events: true,
        };
        let r = ServicesReport::new((1000, 100, 100), timing, rss_growth(20_000, 10_000));
        assert_eq!(r.instances, 10_000);
        assert_eq!(r.placements_per_s, 12500.0);
        assert_eq!(r.bytes_per_instance, 1024.0);
        assert!(r.pass, "{r:?}");
        let slow = Timing {
            all_running: Duration::from_secs(10),
            ..timing
        };
        let r = ServicesReport::new((1000, 100, 100), slow, rss_growth(30_000, 30_000));
        let pass: Vec<bool> = r.checks.iter().map(|c| c.pass).collect();
        assert_eq!(pass, [false, false]);
        let text = r.render();
        assert!(
            text.contains(">= 10000") && text.contains("<= 2") && text.contains("MISS"),
            "{text}"
        );
        let shrunk = ServicesReport::new(
            (1, 1, 10),
            timing,
            Rss {
                before: 50 << 20,
                all_running: 45 << 20,
                settled: 40 << 20,
            },
        );
        assert_eq!(shrunk.bytes_per_instance, 0.0);
        let json = serde_json::to_value(&shrunk).expect("json");
        assert_eq!(json["checks"][1]["value"], 0.0);
    }
}
