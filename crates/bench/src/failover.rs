//! `meseta bench failover`: how long a highly available control plane is without a leader.
//!
//! Starts a 3-member etcd cluster and three `meseta master --store etcd://…` processes on
//! loopback, then, `--kills` times: finds the leading master, makes sure it acknowledges a write,
//! kills it with SIGKILL and measures the time until the first write (`POST /v2/apps`) that a
//! master acknowledges again, asking every surviving master in turn as a client given the list
//! would. The killed master is restarted (as a follower) before the next round. Beside it, the
//! same measurement for etcd itself: kill its raft leader, time until a put through another
//! member succeeds — the floor under any store-backed failover.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use meseta_testkit::etcd::EtcdCluster;
use serde::Serialize;
use serde_json::json;

use crate::cluster::MasterProcess;
use crate::{Check, Stats};

/// Target: p99 of leader kill → first acknowledged write, with a 2 s lease.
const TARGET_P99_MS: f64 = 3000.0;
/// Longest a single failover may take before the benchmark gives up.
const GIVE_UP: Duration = Duration::from_secs(30);
/// Time per request while probing for a leader.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Flags of `meseta bench failover`.
#[derive(clap::Args, Debug)]
pub struct FailoverArgs {
    /// Leader kills to measure.
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// Masters in the group.
    #[arg(long, default_value_t = 3)]
    pub masters: usize,
    /// The masters' leader lease (`meseta master --lease-ttl`), seconds.
    #[arg(long, default_value_t = 2)]
    pub lease_ttl: u64,
    /// etcd raft-leader kills to measure beside it.
    #[arg(long, default_value_t = 5)]
    pub etcd_kills: usize,
}

/// What `bench failover` measured.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverReport {
    /// Masters in the group.
    pub masters: usize,
    /// The leader lease, seconds.
    pub lease_ttl_s: u64,
    /// Leader kill → first acknowledged write, per kill, milliseconds.
    pub failover_ms: Vec<f64>,
    /// Percentiles of `failover_ms`.
    pub failover: Option<Stats>,
    /// etcd raft-leader kill → first successful put, per kill, milliseconds.
    pub etcd_election_ms: Vec<f64>,
    /// Percentiles of `etcd_election_ms`.
    pub etcd_election: Option<Stats>,
    /// The targets.
    pub checks: Vec<Check>,
    /// Whether every target was met.
    pub pass: bool,
}

impl FailoverReport {
    fn render(&self) -> String {
        let line = |what: &str, s: &Option<Stats>, n: usize| match s {
            Some(s) => format!(
                "{what}: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {n}",
                s.p50_ms, s.p99_ms, s.max_ms
            ),
            None => format!("{what}: not measured"),
        };
        [
            format!(
                "{} masters on a 3-member etcd, leader lease {} s",
                self.masters, self.lease_ttl_s
            ),
            line(
                "leader kill -> first acknowledged write",
                &self.failover,
                self.failover_ms.len(),
            ),
            line(
                "etcd raft leader kill -> first put (etcd's own election)",
                &self.etcd_election,
                self.etcd_election_ms.len(),
            ),
            String::new(),
            Check::table(&self.checks, 0),
        ]
        .join("\n")
    }
}

/// Runs `bench failover`; returns the exit code.
pub async fn run(args: FailoverArgs, json: bool) -> anyhow::Result<i32> {
    if args.kills == 0 || args.masters < 2 || args.lease_ttl == 0 {
        bail!("--kills and --lease-ttl must be at least 1, --masters at least 2");
    }
    let dir = tempfile::Builder::new()
        .prefix("meseta-bench-failover-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    eprintln!("starting a 3-member etcd cluster ...");
    // Blocking while etcd starts is fine: nothing else runs in this process yet.
    let mut etcd =
        EtcdCluster::start(3).context("cannot start etcd (apt-get install etcd-server)")?;
    let report = measure(&args, dir.path(), &mut etcd).await;
    drop(etcd);
    drop(dir);
    let report = report?;
    crate::print_report(&report, json, |r| r.render())
}

async fn measure(
    args: &FailoverArgs,
    dir: &Path,
    etcd: &mut EtcdCluster,
) -> anyhow::Result<FailoverReport> {
    let store = etcd.url();
    let lease = format!("{}s", args.lease_ttl);
    let mut masters = Vec::with_capacity(args.masters);
    for i in 0..args.masters {
        let d = dir.join(format!("m{i}"));
        masters.push(Some(
            MasterProcess::start_ha(&d, &store, &lease, None).await?,
        ));
    }
    let http = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .build()
        .context("http client")?;
    let mut failover = Vec::with_capacity(args.kills);
    for k in 0..args.kills {
        let leader = wait_leader(&masters).await?;
        write(
            &http,
            &masters,
            &format!("/bench-failover/warm-{k}"),
            GIVE_UP,
        )
        .await?;
        let (url, dir_k) = {
            let m = masters[leader].take().context("leader slot")?;
            let url = m.url.clone();
            m.kill();
            (url, dir.join(format!("m{leader}")))
        };
        let t0 = Instant::now();
        write(
            &http,
            &masters,
            &format!("/bench-failover/after-{k}"),
            GIVE_UP,
        )
        .await?;
        let took = t0.elapsed();
        eprintln!("kill {}: acknowledged again after {took:?}", k + 1);
        failover.push(took);
        let port = url.rsplit(':').next().unwrap_or("0").to_string();
        masters[leader] = Some(MasterProcess::start_ha(&dir_k, &store, &lease, Some(&port)).await?);
    }
    for m in masters.into_iter().flatten() {
        m.stop(Duration::from_secs(5)).await;
    }
    let mut elections = Vec::with_capacity(args.etcd_kills);
    for k in 0..args.etcd_kills {
        let took = etcd_election(&http, etcd).await?;
        eprintln!("etcd leader kill {}: put succeeded after {took:?}", k + 1);
        elections.push(took);
    }
    let failover_stats = Stats::of(&failover);
    let p99 = failover_stats.map_or(f64::INFINITY, |s| s.p99_ms);
    let checks = vec![Check::new(
        "failover p99 (ms)",
        p99,
        TARGET_P99_MS * args.lease_ttl as f64 / 2.0,
    )];
    let ms = |v: &[Duration]| v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    Ok(FailoverReport {
        masters: args.masters,
        lease_ttl_s: args.lease_ttl,
        failover_ms: ms(&failover),
        failover: failover_stats,
        etcd_election_ms: ms(&elections),
        etcd_election: Stats::of(&elections),
        pass: checks.iter().all(|c| c.pass),
        checks,
    })
}

/// Index of the master that answers `/v2/apps` itself (not with a redirect).
async fn wait_leader(masters: &[Option<MasterProcess>]) -> anyhow::Result<usize> {
    let raw = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("http client")?;
    let deadline = Instant::now() + GIVE_UP;
    while Instant::now() < deadline {
        for (i, m) in masters.iter().enumerate() {
            let Some(m) = m else { continue };
            if let Ok(r) = raw.get(format!("{}/v2/apps", m.url)).send().await {
                if r.status().is_success() {
                    return Ok(i);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("no master led within {GIVE_UP:?}")
}

/// Posts app `id` (no instances) through the live masters in turn until one acknowledges it.
async fn write(
    http: &reqwest::Client,
    masters: &[Option<MasterProcess>],
    id: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let app = json!({"id": id, "cmd": "sleep 1", "cpus": 0.01, "mem": 8, "instances": 0});
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for m in masters.iter().flatten() {
            if let Ok(r) = http
                .post(format!("{}/v2/apps", m.url))
                .json(&app)
                .send()
                .await
            {
                if r.status().as_u16() == 201 {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("no master acknowledged a write within {within:?}")
}

/// Kills etcd's raft leader; time until a put through another member succeeds. Restarts it.
async fn etcd_election(http: &reqwest::Client, etcd: &mut EtcdCluster) -> anyhow::Result<Duration> {
    let members = etcd.members();
    let mut leader = None;
    for (i, m) in members.iter().enumerate() {
        let Ok(r) = http
            .post(format!("{m}/v3/maintenance/status"))
            .body("{}")
            .send()
            .await
        else {
            continue;
        };
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        if v["leader"].is_string() && v["leader"] == v["header"]["member_id"] {
            leader = Some(i);
        }
    }
    let leader = leader.context("no etcd member says it leads")?;
    etcd.kill(leader);
    let t0 = Instant::now();
    let put = json!({"key": "YmVuY2gtZmFpbG92ZXI=", "value": "MQ=="});
    let took = loop {
        let mut ok = false;
        for (i, m) in members.iter().enumerate() {
            if i == leader {
                continue;
            }
            if let Ok(r) = http.post(format!("{m}/v3/kv/put")).json(&put).send().await {
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                if v["header"]["revision"].is_string() {
                    ok = true;
                    break;
                }
            }
        }
        if ok {
            break t0.elapsed();
        }
        if t0.elapsed() > GIVE_UP {
            bail!("etcd took no put within {GIVE_UP:?} of its leader's kill");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    etcd.restart(leader).context("restarting the etcd member")?;
    Ok(took)
}
