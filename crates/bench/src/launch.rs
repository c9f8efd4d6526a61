//! `meseta bench launch`: starts a private master and agent as child processes of the current
//! executable, then measures idle memory and submit → TASK_RUNNING latency against bare
//! fork+exec, and checks them against meseta's targets. With `--docker-image` the tasks are
//! DOCKER containers and the baseline is `docker run -d` of the same image (see
//! `crate::launch_docker`); the agent's RSS is also read with every container running.
//!
//! The cluster plumbing lives in `crate::cluster`; this module holds the measurement and the
//! report.

use crate::cluster::{self, Cluster};
use crate::{print_report, Check, Stats};
use anyhow::{anyhow, bail, Context};
use meseta_api::client::{SchedulerCaller, SchedulerSession};
use meseta_api::scheduler::{
    Acknowledge, CallKind, CommandInfo, Event, FrameworkInfo, IdValue, Offer, TaskInfo,
};
use meseta_types::{Resources, TaskState};
use serde::Serialize;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Resources of each benchmark task.
const TASK_RESOURCES: &str = "cpus:0.01;mem:16";
/// Longest wait for any single event the benchmark needs.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Target: meseta p99 / bare p99.
const TARGET_RATIO: f64 = 5.0;
/// Target: idle agent RSS in MiB.
const TARGET_AGENT_MIB: f64 = 20.0;
/// Target: idle master RSS in MiB.
const TARGET_MASTER_MIB: f64 = 50.0;
/// Target with `--docker-image`: meseta p99 / `docker run -d` p99.
const TARGET_DOCKER_RATIO: f64 = 1.5;

/// `bench launch` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct LaunchArgs {
    /// Number of tasks, launched one after another.
    #[arg(long, default_value_t = 200)]
    pub tasks: usize,
    /// Shell command each task (and each bare spawn) runs.
    #[arg(long, default_value = "sleep 1000")]
    pub command: String,
    /// Launch DOCKER containers of this image (its `/bin/sh` runs the command) and compare with
    /// `docker run -d`; without a value, a busybox image is imported from the host's busybox.
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    pub docker_image: Option<String>,
}

/// Everything `bench launch` measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Number of tasks launched (and bare spawns).
    pub tasks: usize,
    /// The command run.
    pub command: String,
    /// The image of the DOCKER tasks (`None`: plain processes).
    pub docker_image: Option<String>,
    /// Agent RSS in bytes with every task still running.
    pub agent_rss_running_bytes: Option<u64>,
    /// Idle master RSS in bytes.
    pub master_rss_bytes: u64,
    /// Idle agent RSS in bytes.
    pub agent_rss_bytes: u64,
    /// Submit → TASK_RUNNING through meseta.
    pub meseta: Stats,
    /// `Command::spawn` of the same command, or `docker run -d` of the same image.
    pub bare: Stats,
    /// `meseta.p99_ms / bare.p99_ms`.
    pub p99_ratio: f64,
    /// Where the submit → TASK_RUNNING time goes, hop by hop (from the agent's status
    /// timestamps; the agent and the benchmark share the host's clock).
    pub hops: Vec<Hop>,
    /// The targets.
    pub checks: Vec<Check>,
    /// Whether every target was met.
    pub pass: bool,
}

const MIB: f64 = 1024.0 * 1024.0;

/// One stretch of the launch path and its latency distribution.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hop {
    /// What the stretch covers.
    pub hop: String,
    /// Its latencies.
    pub stats: Stats,
}

/// Wall-clock instants of one task's launch, seconds since the epoch.
#[derive(Clone, Copy, Debug, Default)]
struct Marks {
    /// The benchmark sent ACCEPT.
    submit: f64,
    /// The agent's TASK_STARTING timestamp: task files written, fetched, shim spawned.
    starting: Option<f64>,
    /// The agent's TASK_RUNNING timestamp: the shim reported the exec.
    running: Option<f64>,
    /// TASK_RUNNING reached the benchmark.
    received: f64,
}

/// The hop breakdown of `marks`.
fn hops(marks: &[Marks]) -> Vec<Hop> {
    type Span = fn(&Marks) -> Option<f64>;
    let spans: [(&str, Span); 3] = [
        ("ACCEPT -> agent spawned shim (STARTING)", |m| {
            Some(m.starting? - m.submit)
        }),
        ("STARTING -> task exec'd (RUNNING)", |m| {
            Some(m.running? - m.starting?)
        }),
        ("RUNNING -> update at the scheduler", |m| {
            Some(m.received - m.running?)
        }),
    ];
    spans
        .iter()
        .filter_map(|(name, f)| {
            let samples: Vec<Duration> = marks
                .iter()
                .filter_map(f)
                .map(|secs| Duration::from_secs_f64(secs.max(0.0)))
                .collect();
            Stats::of(&samples).map(|stats| Hop {
                hop: name.to_string(),
                stats,
            })
        })
        .collect()
}

fn wall_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Report {
    /// Assembles the report and evaluates the targets.
    pub fn new(
        args: &LaunchArgs,
        rss: (u64, u64),
        meseta: Stats,
        bare: Stats,
        hops: Vec<Hop>,
    ) -> Report {
        let p99_ratio = if bare.p99_ms > 0.0 {
            meseta.p99_ms / bare.p99_ms
        } else {
            f64::INFINITY
        };
        let target = if args.docker_image.is_some() {
            TARGET_DOCKER_RATIO
        } else {
            TARGET_RATIO
        };
        let checks = vec![
            Check::new("p99 ratio meseta/bare", p99_ratio, target),
            Check::new("agent idle RSS (MiB)", rss.1 as f64 / MIB, TARGET_AGENT_MIB),
            Check::new(
                "master idle RSS (MiB)",
                rss.0 as f64 / MIB,
                TARGET_MASTER_MIB,
            ),
        ];
        Report {
            tasks: args.tasks,
            command: args.command.clone(),
            docker_image: args.docker_image.clone(),
            agent_rss_running_bytes: None,
            master_rss_bytes: rss.0,
            agent_rss_bytes: rss.1,
            meseta,
            bare,
            p99_ratio,
            hops,
            pass: checks.iter().all(|c| c.pass),
            checks,
        }
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let line = |label: &str, s: &Stats| {
            format!(
                "{label:<42} p50 {:>9.3} ms   p99 {:>9.3} ms   max {:>9.3} ms",
                s.p50_ms, s.p99_ms, s.max_ms
            )
        };
        [
            format!(
                "idle RSS: master {:.1} MiB, agent {:.1} MiB",
                self.master_rss_bytes as f64 / MIB,
                self.agent_rss_bytes as f64 / MIB
            ),
            line(
                &format!("meseta submit->TASK_RUNNING ({} tasks)", self.tasks),
                &self.meseta,
            ),
            line(
                &if self.docker_image.is_some() {
                    format!("docker run -d ({} containers)", self.tasks)
                } else {
                    format!("bare fork+exec ({} spawns)", self.tasks)
                },
                &self.bare,
            ),
            format!("p99 ratio meseta/bare: {:.2}", self.p99_ratio),
            match (&self.docker_image, self.agent_rss_running_bytes) {
                (Some(image), Some(rss)) => format!(
                    "image {image}; agent RSS with {} containers running: {:.1} MiB",
                    self.tasks,
                    rss as f64 / MIB
                ),
                _ => String::new(),
            },
            String::new(),
            "where the time goes:".to_string(),
        ]
        .into_iter()
        .chain(
            self.hops
                .iter()
                .map(|h| line(&format!("  {}", h.hop), &h.stats)),
        )
        .chain([String::new(), Check::table(&self.checks, 2)])
        .collect::<Vec<_>>()
        .join("\n")
    }
}

/// Runs `bench launch`; returns the exit code.
pub async fn run(args: LaunchArgs, json: bool) -> anyhow::Result<i32> {
    if args.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    if args.command.trim().is_empty() {
        bail!("--command must not be empty");
    }
    let mut args = args;
    let image = match &args.docker_image {
        Some(given) => {
            let image = crate::launch_docker::Image::prepare(given)?;
            args.docker_image = Some(image.tag.clone());
            Some(image)
        }
        None => None,
    };
    let mut cluster = Cluster::start().await?;
    let result = measure(&mut cluster, &args).await;
    cluster.stop().await;
    if let Some(image) = image {
        image.remove();
    }
    let report = result?;
    print_report(&report, json, |r| r.render())
}

async fn measure(cluster: &mut Cluster, args: &LaunchArgs) -> anyhow::Result<Report> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = (cluster.master_rss()?, cluster.agent_rss()?);
    let info = FrameworkInfo {
        user: meseta_cli::current_user(),
        name: "meseta-bench".to_string(),
        failover_timeout: Some(0.0),
        ..FrameworkInfo::default()
    };
    let session = cluster
        .client()
        .subscribe(info)
        .await
        .context("cannot subscribe the benchmark framework")?;
    let session = cluster.hold_session(session);
    let framework = format!("meseta.framework_id={}", session.framework_id().as_str());
    let launched = launch_tasks(session, args).await;
    let running_rss = cluster.agent_rss().ok();
    if args.docker_image.is_some() {
        // The containers outlive the agent by design: remove this run's here.
        tokio::task::spawn_blocking(move || crate::launch_docker::remove_labelled(&framework))
            .await?;
    }
    let (meseta, marks) = launched?;
    let command = args.command.clone();
    let n = args.tasks;
    let image = args.docker_image.clone();
    let want = Resources::parse(TASK_RESOURCES).context("benchmark task resources")?;
    let (cpus, mem) = (want.cpus(), want.mem());
    let bare = tokio::task::spawn_blocking(move || match image {
        Some(image) => crate::launch_docker::bare_runs(&image, &command, n, cpus, mem),
        None => bare_spawns(&command, n),
    })
    .await??;
    let meseta = Stats::of(&meseta).ok_or_else(|| anyhow!("no task launched"))?;
    let bare = Stats::of(&bare).ok_or_else(|| anyhow!("no process spawned"))?;
    let mut report = Report::new(args, rss, meseta, bare, hops(&marks));
    if args.docker_image.is_some() {
        report.agent_rss_running_bytes = running_rss;
    }
    Ok(report)
}

/// Launches `args.tasks` tasks one after another; returns each submit → TASK_RUNNING latency
/// and the instants of its hops.
async fn launch_tasks(
    session: &mut SchedulerSession,
    args: &LaunchArgs,
) -> anyhow::Result<(Vec<Duration>, Vec<Marks>)> {
    let want = Resources::parse(TASK_RESOURCES).context("benchmark task resources")?;
    let caller = session.caller();
    let mut pool: Vec<Offer> = Vec::new();
    let mut latencies = Vec::with_capacity(args.tasks);
    let mut all_marks = Vec::with_capacity(args.tasks);
    for i in 0..args.tasks {
        let offer = loop {
            if let Some(pos) = pool.iter().position(|o| o.resources.contains(&want)) {
                break pool.swap_remove(pos);
            }
            let ev = next_event(session, "an offer").await?;
            handle_background(&ev, &caller, &mut pool, None, &mut Marks::default())?;
        };
        let task_id = format!("bench.{i}");
        let task = TaskInfo {
            name: task_id.clone(),
            task_id: IdValue::new(task_id.clone()),
            agent_id: Some(offer.agent_id.clone()),
            resources: want.clone(),
            command: Some(CommandInfo::shell(args.command.clone())),
            container: args
                .docker_image
                .as_deref()
                .map(crate::launch_docker::container),
            ..TaskInfo::default()
        };
        let mut marks = Marks {
            submit: wall_now(),
            ..Marks::default()
        };
        let t0 = Instant::now();
        caller
            .call(crate::launch_call(&offer, vec![task]))
            .await
            .with_context(|| format!("cannot launch {task_id}"))?;
        loop {
            let ev = next_event(session, &format!("TASK_RUNNING of {task_id}")).await?;
            if handle_background(&ev, &caller, &mut pool, Some(&task_id), &mut marks)? {
                latencies.push(t0.elapsed());
                marks.received = wall_now();
                all_marks.push(marks);
                break;
            }
        }
    }
    Ok((latencies, all_marks))
}

async fn next_event(session: &mut SchedulerSession, waiting_for: &str) -> anyhow::Result<Event> {
    match tokio::time::timeout(EVENT_TIMEOUT, session.next_event()).await {
        Err(_) => bail!("no {waiting_for} within {EVENT_TIMEOUT:?}"),
        Ok(Err(e)) => Err(e).context(format!("while waiting for {waiting_for}")),
        Ok(Ok(None)) => bail!("the master closed the stream while waiting for {waiting_for}"),
        Ok(Ok(Some(ev))) => Ok(ev),
    }
}

/// Pools offers, drops rescinded ones and acknowledges updates (without blocking the reader).
/// Returns whether `running` reached TASK_RUNNING (noting its STARTING and RUNNING timestamps in
/// `marks`); errors if it ended before that.
fn handle_background(
    ev: &Event,
    caller: &SchedulerCaller,
    pool: &mut Vec<Offer>,
    running: Option<&str>,
    marks: &mut Marks,
) -> anyhow::Result<bool> {
    match ev {
        Event::Offers { offers } => pool.extend(offers.offers.iter().cloned()),
        Event::Rescind { rescind } => pool.retain(|o| o.id != rescind.offer_id),
        Event::Error { error } => bail!("the master ended the framework: {}", error.message),
        Event::Update { update } => {
            let status = &update.status;
            if let Some(acknowledge) = Acknowledge::for_status(status) {
                let caller = caller.clone();
                tokio::spawn(async move {
                    let _ = caller.call(CallKind::Acknowledge { acknowledge }).await;
                });
            }
            if running == Some(status.task_id.as_str()) {
                if status.state == TaskState::Starting {
                    marks.starting = Some(status.timestamp);
                }
                if status.state == TaskState::Running {
                    marks.running = Some(status.timestamp);
                    return Ok(true);
                }
                if status.state.is_terminal() {
                    bail!(
                        "task {} ended {} before running: {}",
                        status.task_id,
                        status.state,
                        status.message.as_deref().unwrap_or("no message")
                    );
                }
            }
        }
        _ => {}
    }
    Ok(false)
}

/// Spawns `n` `/bin/sh -c command` processes one after another (each `spawn` returns once exec
/// succeeded), then kills them; returns each spawn's latency.
fn bare_spawns(command: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut children = Vec::with_capacity(n);
    let mut latencies = Vec::with_capacity(n);
    let mut result = Ok(());
    for _ in 0..n {
        let t0 = Instant::now();
        let spawned = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        match spawned {
            Ok(child) => {
                latencies.push(t0.elapsed());
                children.push(child);
            }
            Err(e) => {
                result = Err(e).context("cannot spawn /bin/sh");
                break;
            }
        }
    }
    for mut child in children {
        cluster::kill_group(&child);
        let _ = child.kill();
        let _ = child.wait();
    }
    result.map(|()| latencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_checks_targets() {
        let args = LaunchArgs {
            tasks: 3,
            command: "sleep 1000".into(),
            docker_image: None,
        };
        let fast = Stats {
            p50_ms: 1.0,
            p99_ms: 2.0,
            max_ms: 3.0,
        };
        let bare = Stats {
            p50_ms: 0.5,
            p99_ms: 1.0,
            max_ms: 1.0,
        };
        let marks = [Marks {
            submit: 10.0,
            starting: Some(10.002),
            running: Some(10.003),
            received: 10.004,
        }];
        let r = Report::new(&args, (30 << 20, 10 << 20), fast, bare, hops(&marks));
        assert_eq!(r.hops.len(), 3);
        assert!((r.hops[0].stats.p50_ms - 2.0).abs() < 1e-6, "{:?}", r.hops);
        assert_eq!(r.p99_ratio, 2.0);
        assert!(r.pass);
        let slow = Stats {
            p99_ms: 6.0,
            ..fast
        };
        let r = Report::new(&args, (60 << 20, 10 << 20), slow, bare, Vec::new());
        let failed: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed, ["p99 ratio meseta/bare", "master idle RSS (MiB)"]);
        assert!(!r.pass);
        let text = r.render();
        assert!(
            text.contains("MISS") && text.contains("PASS") && text.contains("master 60.0 MiB"),
            "{text}"
        );
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["checks"][0]["pass"], false);
        assert_eq!(json["meseta"]["p99_ms"], 6.0);
    }

    #[test]
    fn bare_spawns_measure_and_reap() {
        let lat = bare_spawns("sleep 5", 3).expect("spawn works");
        assert_eq!(lat.len(), 3);
    }
}
