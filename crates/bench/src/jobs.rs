//! `meseta bench jobs`: measures the jobs scheduler. Starts a private `meseta master` process
//! and in-process simulated agents (`meseta-sim`), creates N Chronos jobs that run every second,
//! and reports the start delay of the runs (simulated agent's receive time − the run's due time,
//! read from the Chronos task id `ct:<dueMillis>:<attempt>:<job>:`), the runs against the
//! expected count, and the master's CPU use, against meseta's targets.

use crate::cluster::MasterProcess;
use crate::{Check, Stats};
use anyhow::{bail, Context};
use futures::StreamExt;
use meseta_api::client::{Chronos, MasterClient};
use meseta_sim::{LaunchRecord, SimCluster, SimConfig};
use serde::Serialize;
use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Target: p99 start delay in ms.
const TARGET_P99_MS: f64 = 100.0;
/// Target: master CPU in cores (strictly below).
const TARGET_CPU_CORES: f64 = 0.5;
/// Target: share of expected runs that never started, in percent.
const TARGET_MISSED_PCT: f64 = 1.0;
/// Jobs created concurrently.
const CREATE_CONCURRENCY: usize = 16;
/// Settling time between creating the jobs and the measured window.
const WARMUP: Duration = Duration::from_secs(2);
/// Time after the window for runs due inside it to reach the agents.
const GRACE: Duration = Duration::from_secs(3);
/// Linux reports /proc/<pid>/stat times in USER_HZ, which is 100 on every supported platform.
const USER_HZ: f64 = 100.0;

/// `bench jobs` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct JobsArgs {
    /// Number of jobs, each scheduled every second.
    #[arg(long, default_value_t = 1000)]
    pub jobs: usize,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Number of simulated agents.
    #[arg(long, default_value_t = 50)]
    pub agents: usize,
}

/// Everything `bench jobs` measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobsReport {
    /// Jobs created.
    pub jobs: usize,
    /// Measured window in seconds.
    pub seconds: u64,
    /// Simulated agents.
    pub agents: usize,
    /// Due time → simulated agent received the launch.
    pub start_delay: Stats,
    /// Launches received before their due time (counted as 0 ms in `start_delay`).
    pub early_launches: usize,
    /// Distinct runs due inside the window that reached an agent.
    pub runs: usize,
    /// Runs due inside the window: `jobs × seconds`.
    pub expected_runs: usize,
    /// Retries (attempt > 0) due inside the window.
    pub retries: usize,
    /// Master CPU time over the window ÷ wall time, in cores.
    pub master_cpu_cores: f64,
    /// The targets.
    pub checks: Vec<Check>,
    /// Whether every target was met.
    pub pass: bool,
}

/// The due time, attempt and job of a Chronos task id `ct:<dueMillis>:<attempt>:<job>:[args]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChronosRun {
    /// Due time, Unix milliseconds.
    pub due_ms: u64,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// Job name.
    pub job: String,
}

impl ChronosRun {
    /// Parses a Chronos task id; `None` for any other id.
    pub fn parse(task_id: &str) -> Option<ChronosRun> {
        let mut parts = task_id.strip_prefix("ct:")?.splitn(4, ':');
        let due_ms = parts.next()?.parse().ok()?;
        let attempt = parts.next()?.parse().ok()?;
        let job = parts.next()?;
        parts.next()?;
        if job.is_empty() {
            return None;
        }
        Some(ChronosRun {
            due_ms,
            attempt,
            job: job.to_string(),
        })
    }
}

/// Runs `bench jobs`; returns the exit code.
pub async fn run(args: JobsArgs, json: bool) -> anyhow::Result<i32> {
    if args.jobs == 0 || args.seconds == 0 || args.agents == 0 {
        bail!("--jobs, --seconds and --agents must be at least 1");
    }
    let mut master = MasterProc::start().await?;
    let result = measure(&mut master, &args).await;
    master.stop().await;
    let report = result?;
    crate::print_report(&report, json, |r| r.render())
}

async fn measure(master: &mut MasterProc, args: &JobsArgs) -> anyhow::Result<JobsReport> {
    let mut cfg = SimConfig::new(master.url.clone(), args.agents);
    cfg.hostname_prefix = "bench-sim".into();
    cfg.run_time = Some(Duration::from_millis(10));
    let sim = SimCluster::start(cfg)
        .await
        .context("cannot start the simulated agents")?;
    let result = measure_with(master, &sim, args).await;
    sim.shutdown().await;
    result
}

async fn measure_with(
    master: &mut MasterProc,
    sim: &SimCluster,
    args: &JobsArgs,
) -> anyhow::Result<JobsReport> {
    eprintln!("creating {} jobs ...", args.jobs);
    create_jobs(&master.master.client, args.jobs).await?;
    tokio::time::sleep(WARMUP).await;
    sim.take_launches();
    let window_start = SystemTime::now();
    let cpu0 = master.cpu_seconds()?;
    let t0 = Instant::now();
    eprintln!("measuring for {} s ...", args.seconds);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let cpu1 = master.cpu_seconds()?;
    let wall = t0.elapsed().as_secs_f64();
    let window_end = window_start + Duration::from_secs(args.seconds);
    tokio::time::sleep(GRACE).await;
    master.check_alive()?;
    let window = (unix_ms(window_start), unix_ms(window_end));
    let runs = analyse(&sim.take_launches(), window);
    if runs.delays.is_empty() {
        bail!(
            "no job run due in the window reached the simulated agents ({} launches seen); \
             is the jobs scheduler running? The master log ends with:\n{}",
            sim.stats().launches,
            master.log_tail()
        );
    }
    let cores = (cpu1 - cpu0).max(0.0) / wall;
    JobsReport::new(args, runs, cores).context("no start delay measured")
}

/// Creates `bench-0` … `bench-<n-1>`, each running `true` every second.
async fn create_jobs(master: &MasterClient, n: usize) -> anyhow::Result<()> {
    let api = &master.chronos();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..n)
        .map(|i| create_job(api, i))
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn create_job(api: &Chronos<'_>, i: usize) -> anyhow::Result<()> {
    match api.add_job(&job_json(i)).await {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.status(), Some(404 | 405)) => {
            bail!("the master has no jobs API ({e}); cannot measure the jobs scheduler")
        }
        Err(e) => Err(e).with_context(|| format!("creating job bench-{i}")),
    }
}

/// The Chronos JSON of benchmark job `i`.
pub fn job_json(i: usize) -> serde_json::Value {
    serde_json::json!({
        "name": format!("bench-{i}"),
        "command": "true",
        "schedule": "R//PT1S",
        "epsilon": "PT30S",
        "owner": "bench@x",
        "cpus": 0.01,
        "mem": 16,
    })
}

/// What the launch records say about the runs due inside the window.
#[derive(Debug, Default, PartialEq)]
pub struct Runs {
    /// Start delays of the first launch of each run.
    pub delays: Vec<Duration>,
    /// Launches before their due time.
    pub early: usize,
    /// Retries (attempt > 0).
    pub retries: usize,
}

/// Start delays of the runs (first attempts) due within `[window.0, window.1)` Unix ms.
pub fn analyse(records: &[LaunchRecord], window: (u64, u64)) -> Runs {
    let mut runs = Runs::default();
    let mut seen = HashSet::new();
    for r in records {
        let Some(run) = ChronosRun::parse(r.task_id.as_str()) else {
            continue;
        };
        if run.due_ms < window.0 || run.due_ms >= window.1 {
            continue;
        }
        if run.attempt > 0 {
            runs.retries += 1;
            continue;
        }
        if !seen.insert((run.job, run.due_ms)) {
            continue;
        }
        let due = UNIX_EPOCH + Duration::from_millis(run.due_ms);
        match r.received_at.duration_since(due) {
            Ok(d) => runs.delays.push(d),
            Err(_) => {
                runs.early += 1;
                runs.delays.push(Duration::ZERO);
            }
        }
    }
    runs
}

impl JobsReport {
    /// Assembles the report and evaluates the targets; `None` without any delay.
    pub fn new(args: &JobsArgs, runs: Runs, master_cpu_cores: f64) -> Option<JobsReport> {
        let start_delay = Stats::of(&runs.delays)?;
        let expected_runs = args.jobs.saturating_mul(args.seconds as usize);
        let done = runs.delays.len();
        let missed_pct = if expected_runs == 0 {
            0.0
        } else {
            expected_runs.saturating_sub(done) as f64 * 100.0 / expected_runs as f64
        };
        let checks = vec![
            Check::new("start delay p99 (ms)", start_delay.p99_ms, TARGET_P99_MS),
            Check::below("master CPU (cores)", master_cpu_cores, TARGET_CPU_CORES),
            Check::new("runs missed (%)", missed_pct, TARGET_MISSED_PCT),
        ];
        Some(JobsReport {
            jobs: args.jobs,
            seconds: args.seconds,
            agents: args.agents,
            start_delay,
            early_launches: runs.early,
            runs: done,
            expected_runs,
            retries: runs.retries,
            master_cpu_cores,
            pass: checks.iter().all(|c| c.pass),
            checks,
        })
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let d = &self.start_delay;
        [
            format!(
                "{} jobs every second for {} s on {} simulated agents",
                self.jobs, self.seconds, self.agents
            ),
            format!(
                "start delay (due -> agent)   p50 {:>9.3} ms   p99 {:>9.3} ms   max {:>9.3} ms",
                d.p50_ms, d.p99_ms, d.max_ms
            ),
            format!(
                "runs {} of {} expected ({} retries, {} early)",
                self.runs, self.expected_runs, self.retries, self.early_launches
            ),
            format!("master CPU {:.3} cores", self.master_cpu_cores),
            String::new(),
            Check::table(&self.checks, 3),
        ]
        .join("\n")
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// utime + stime of a `/proc/<pid>/stat` line, in clock ticks.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is parenthesised and may hold spaces: fields start after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')': state(3) … utime is field 14, stime field 15 → indexes 11 and 12 here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The private master of `bench jobs`: a [`MasterProcess`] and its temporary directory.
struct MasterProc {
    master: MasterProcess,
    url: String,
    // Dropped after `master` (field order): the process dies before its directory is removed.
    _dir: tempfile::TempDir,
}

impl MasterProc {
    async fn start() -> anyhow::Result<MasterProc> {
        let dir = tempfile::Builder::new()
            .prefix("meseta-bench-jobs-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let master = MasterProcess::start(dir.path()).await?;
        let url = master.url.clone();
        Ok(MasterProc {
            master,
            url,
            _dir: dir,
        })
    }

    /// CPU time (user + system, all threads) the master used so far, in seconds.
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let path = format!("/proc/{}/stat", self.master.pid());
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let ticks = parse_cpu_ticks(&text).with_context(|| format!("cannot parse {path}"))?;
        Ok(ticks as f64 / USER_HZ)
    }

    fn log_tail(&self) -> String {
        self.master.log_tail()
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        self.master.check_alive()
    }

    async fn stop(self) {
        self.master.stop(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_types::TaskId;

    #[test]
    fn chronos_task_ids_parse() {
        let r = ChronosRun::parse("ct:1700000000123:2:bench-7:").expect("valid");
        assert_eq!(
            r,
            ChronosRun {
                due_ms: 1_700_000_000_123,
                attempt: 2,
                job: "bench-7".into()
            }
        );
        assert!(ChronosRun::parse("ct:1:0:job:--arg x").is_some());
        for bad in ["bench.1", "ct:x:0:j:", "ct:1:0::", "ct:1:0:j", "ct:1"] {
            assert!(ChronosRun::parse(bad).is_none(), "{bad}");
        }
    }

    fn rec(id: &str, received_ms: u64) -> LaunchRecord {
        LaunchRecord {
            task_id: TaskId::new(id),
            agent: "a".into(),
            received_at: UNIX_EPOCH + Duration::from_millis(received_ms),
        }
    }

    #[test]
    fn delays_count_first_launch_of_runs_in_the_window() {
        let records = [
            rec("ct:1000:0:a:", 1005),
            rec("ct:1000:0:a:", 1500), // duplicate launch of the same run
            rec("ct:2000:0:a:", 1990), // early
            rec("ct:2000:1:a:", 2100), // retry
            rec("ct:1000:0:b:", 1040),
            rec("ct:500:0:a:", 600),   // before the window
            rec("ct:3000:0:a:", 3001), // at the window's end (exclusive)
            rec("other", 1000),
        ];
        let runs = analyse(&records, (1000, 3000));
        assert_eq!(
            runs.delays,
            [5, 0, 40].map(Duration::from_millis).to_vec(),
            "{runs:?}"
        );
        assert_eq!((runs.early, runs.retries), (1, 1));
    }

    #[test]
    fn report_checks_targets() {
        let args = JobsArgs {
            jobs: 2,
            seconds: 2,
            agents: 1,
        };
        let runs = Runs {
            delays: [5, 7, 9, 150].map(Duration::from_millis).to_vec(),
            ..Runs::default()
        };
        let r = JobsReport::new(&args, runs, 0.2).expect("delays");
        assert_eq!((r.runs, r.expected_runs), (4, 4));
        let pass: Vec<bool> = r.checks.iter().map(|c| c.pass).collect();
        assert_eq!(pass, [false, true, true]);
        assert!(!r.pass);
        let text = r.render();
        assert!(
            text.contains("MISS") && text.contains("runs 4 of 4"),
            "{text}"
        );
        let runs = Runs {
            delays: vec![Duration::from_millis(3)],
            ..Runs::default()
        };
        let r = JobsReport::new(&args, runs, 0.5).expect("delays");
        let pass: Vec<bool> = r.checks.iter().map(|c| c.pass).collect();
        assert_eq!(
            pass,
            [true, false, false],
            "0.5 core is not under half a core; 75% missed"
        );
        assert!(JobsReport::new(&args, Runs::default(), 0.1).is_none());
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["start_delay"]["p99_ms"], 3.0);
    }

    #[test]
    fn cpu_ticks_parse_from_proc_stat() {
        let stat = "42 (meseta (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(280));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
        let own = std::fs::read_to_string("/proc/self/stat").expect("procfs");
        assert!(parse_cpu_ticks(&own).is_some());
    }

    #[test]
    fn job_json_is_the_chronos_shape() {
        let j = job_json(3);
        assert_eq!(j["name"], "bench-3");
        assert_eq!(j["schedule"], "R//PT1S");
        assert_eq!(j["cpus"], 0.01);
    }
}
