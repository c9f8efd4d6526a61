//! `meseta bench launch-rate`: tasks launched per second through a master started in this
//! process, with simulated agents (`meseta-sim`).
//!
//! Two paths are measured, each on a fresh master: (a) an in-process framework
//! ([`meseta_master::Master::subscribe`]) and (b) a real framework subscribed over HTTP to
//! `/api/v1/scheduler` ([`MasterClient::subscribe`]). Each accepts every offer with as many tasks
//! as fit (`refuse_seconds` 0) until N tasks are launched; the rate is N ÷ (first ACCEPT → N-th
//! `TASK_RUNNING`). The in-process rate is checked against meseta's target (≥ 5,000 tasks/s), the
//! HTTP rate against ≥ 10,000 tasks/s. The master and the simulated agents each run on a
//! runtime of two worker threads, as the `meseta master` and `meseta sim` processes do.
//! With `--executor custom` a third run (in-process again) launches tasks that name one custom
//! executor per agent (its resources taken from the first offer of each agent); its rate is
//! checked against ≥ 0.8 of the command-executor rate of the same run. Simulated agents run the
//! tasks of a custom executor themselves (there is no executor process): the figure is the
//! master's and the agent protocol's share of launching through an executor.
//! With `--acl` and/or `--tls` the HTTP path runs once more on a master that checks a scoped
//! token on every call (the `meseta-access` edge, as `meseta master --acl` has it) and/or
//! serves HTTPS (agents on `wss`); that rate over the plain HTTP rate is checked against ≥ 0.9.

use anyhow::{anyhow, bail, Context};
use futures::StreamExt;
use meseta_api::client::{MasterClient, SchedulerCaller};
use meseta_api::scheduler::{
    Acknowledge, CallKind, CommandInfo, Decline, Event, Filters, FrameworkInfo, IdValue, Offer,
    TaskInfo, TaskStatus,
};
use meseta_cli::output;

use crate::services::{Secured, SimRuntime};
use meseta_master::{MasterConfig, MasterHandle};
use meseta_sim::SimConfig;
use meseta_store::mem::MemStore;
use meseta_types::{Resources, TaskState};
use serde::Serialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Target: tasks/s launched through an in-process framework.
const TARGET_TASKS_PER_SEC: f64 = 5_000.0;
/// Target: tasks/s launched through a framework on `/api/v1/scheduler`.
const TARGET_HTTP_TASKS_PER_SEC: f64 = 10_000.0;
/// Resources of every simulated agent.
const AGENT_RESOURCES: &str = "cpus:64;mem:262144";
/// Resources of every benchmark task.
const TASK_RESOURCES: &str = "cpus:0.01;mem:8";
/// Longest wait without progress (a task launched or running) before the run fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP calls (accepts, acknowledgements) in flight at once.
const CALL_CONCURRENCY: usize = 16;
/// Resources of the custom executor (`--executor custom`), one per agent.
const EXECUTOR_RESOURCES: &str = "cpus:0.1;mem:32";
/// Target: the custom-executor rate over the command-executor rate.
const TARGET_CUSTOM_RATIO: f64 = 0.8;
/// Target: the HTTP rate with ACLs and/or TLS over the plain HTTP rate.
const TARGET_SECURED_RATIO: f64 = 0.9;

/// Which executor the benchmark's tasks name.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExecutorMode {
    /// The built-in command executor only.
    #[default]
    Command,
    /// Also a run through one custom executor per agent.
    Custom,
}

/// `bench launch-rate` arguments.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct LaunchRateArgs {
    /// Tasks launched through the in-process framework (a quarter of them through HTTP).
    #[arg(long, default_value_t = 20_000)]
    pub tasks: usize,
    /// Number of simulated agents.
    #[arg(long, default_value_t = 200)]
    pub agents: usize,
    /// Most tasks launched by one ACCEPT (the rest of the offer comes back at once). The master
    /// takes request bodies of at most 1 MiB, about 3,000 tasks.
    #[arg(long, default_value_t = 1000)]
    pub per_accept: usize,
    /// `custom`: also measure tasks launched through one custom executor per agent.
    #[arg(long, value_enum, default_value_t = ExecutorMode::Command)]
    pub executor: ExecutorMode,
    /// Also run the HTTP path on a master with ACL checks (a scoped token on every call).
    #[arg(long)]
    pub acl: bool,
    /// Also run the HTTP path on a master serving TLS (with `--acl` too if given).
    #[arg(long)]
    pub tls: bool,
}

impl LaunchRateArgs {
    /// Tasks launched through the HTTP framework: a quarter of `tasks`, at least 1.
    pub fn http_tasks(&self) -> usize {
        (self.tasks / 4).max(1)
    }
}

/// What one path measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseReport {
    /// `in-process` or `http`.
    pub path: String,
    /// Tasks launched (all reached `TASK_RUNNING`).
    pub tasks: usize,
    /// ACCEPT calls made.
    pub accepts: usize,
    /// First ACCEPT → N-th `TASK_RUNNING`, in seconds.
    pub seconds: f64,
    /// `tasks / seconds`.
    pub tasks_per_sec: f64,
    /// First ACCEPT sent → last ACCEPT processed by the master (launches sent), in seconds.
    pub accept_seconds: f64,
    /// `tasks / accept_seconds`: ACCEPT → launch-sent throughput.
    pub launch_sent_per_sec: f64,
}

impl PhaseReport {
    fn new(path: &str, tasks: usize, accepts: usize, running: Duration, sent: Duration) -> Self {
        PhaseReport {
            path: path.to_string(),
            tasks,
            accepts,
            seconds: running.as_secs_f64(),
            tasks_per_sec: rate(tasks, running),
            accept_seconds: sent.as_secs_f64(),
            launch_sent_per_sec: rate(tasks, sent),
        }
    }
}

/// `n / d` per second; infinite for a zero duration.
fn rate(n: usize, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        f64::INFINITY
    }
}

/// Everything `bench launch-rate` measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LaunchRateReport {
    /// Simulated agents.
    pub agents: usize,
    /// Most tasks per ACCEPT.
    pub per_accept: usize,
    /// Through the in-process framework.
    pub in_process: PhaseReport,
    /// Through `/api/v1/scheduler`.
    pub http: PhaseReport,
    /// Target of the in-process rate (tasks/s, at least).
    pub target_tasks_per_sec: f64,
    /// Target of the HTTP rate (tasks/s, at least).
    pub target_http_tasks_per_sec: f64,
    /// Whether the in-process and HTTP rates (and the ratios of the runs asked for) met their
    /// targets.
    pub pass: bool,
    /// Through one custom executor per agent (in-process), with `--executor custom`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<PhaseReport>,
    /// `custom.tasks_per_sec / in_process.tasks_per_sec` (target ≥ 0.8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_ratio: Option<f64>,
    /// The HTTP path again with `--acl` and/or `--tls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secured: Option<PhaseReport>,
    /// `secured.tasks_per_sec / http.tasks_per_sec` (target ≥ 0.9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secured_ratio: Option<f64>,
}

impl LaunchRateReport {
    /// Assembles the report and checks the targets.
    pub fn new(args: &LaunchRateArgs, in_process: PhaseReport, http: PhaseReport) -> Self {
        LaunchRateReport {
            agents: args.agents,
            per_accept: args.per_accept,
            pass: in_process.tasks_per_sec >= TARGET_TASKS_PER_SEC
                && http.tasks_per_sec >= TARGET_HTTP_TASKS_PER_SEC,
            in_process,
            http,
            target_tasks_per_sec: TARGET_TASKS_PER_SEC,
            target_http_tasks_per_sec: TARGET_HTTP_TASKS_PER_SEC,
            custom: None,
            custom_ratio: None,
            secured: None,
            secured_ratio: None,
        }
    }

    /// Adds the HTTP run with ACLs and/or TLS; the verdict then needs its ratio to the plain
    /// HTTP run too.
    pub fn with_secured(mut self, secured: PhaseReport) -> Self {
        let ratio = secured.tasks_per_sec / self.http.tasks_per_sec;
        self.pass = self.pass && ratio >= TARGET_SECURED_RATIO;
        self.secured_ratio = Some(ratio);
        self.secured = Some(secured);
        self
    }

    /// Adds the custom-executor run; the verdict then needs its ratio to the command executor
    /// too.
    pub fn with_custom(mut self, custom: PhaseReport) -> Self {
        let ratio = custom.tasks_per_sec / self.in_process.tasks_per_sec;
        self.pass = self.pass && ratio >= TARGET_CUSTOM_RATIO;
        self.custom_ratio = Some(ratio);
        self.custom = Some(custom);
        self
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let verdict = if self.pass { "PASS" } else { "MISS" };
        // Each row shows its own check; the last line, all of them together.
        let check = |ok: bool| if ok { "PASS" } else { "MISS" };
        let target = format!(">= {}", output::num(self.target_tasks_per_sec));
        let row = |p: &PhaseReport, target: &str, result: &str| {
            vec![
                p.path.clone(),
                p.tasks.to_string(),
                p.accepts.to_string(),
                format!("{:.3}", p.seconds),
                format!("{:.0}", p.tasks_per_sec),
                format!("{:.0}", p.launch_sent_per_sec),
                target.to_string(),
                result.to_string(),
            ]
        };
        let mut rows = vec![
            row(
                &self.in_process,
                &target,
                check(self.in_process.tasks_per_sec >= self.target_tasks_per_sec),
            ),
            row(
                &self.http,
                &format!(">= {}", output::num(self.target_http_tasks_per_sec)),
                check(self.http.tasks_per_sec >= self.target_http_tasks_per_sec),
            ),
        ];
        let mut ratio_line = match (&self.custom, self.custom_ratio) {
            (Some(c), Some(ratio)) => {
                rows.push(row(
                    c,
                    &format!(">= {TARGET_CUSTOM_RATIO} x in-process"),
                    check(ratio >= TARGET_CUSTOM_RATIO),
                ));
                format!(
                    "\ncustom executor / command executor: {ratio:.2} (target >= {TARGET_CUSTOM_RATIO})"
                )
            }
            _ => String::new(),
        };
        if let (Some(s), Some(ratio)) = (&self.secured, self.secured_ratio) {
            rows.push(row(
                s,
                &format!(">= {TARGET_SECURED_RATIO} x http"),
                check(ratio >= TARGET_SECURED_RATIO),
            ));
            ratio_line.push_str(&format!(
                "\n{} / http: {ratio:.2} (target >= {TARGET_SECURED_RATIO})",
                s.path
            ));
        }
        let headers = [
            "PATH",
            "TASKS",
            "ACCEPTS",
            "ACCEPT->RUNNING (s)",
            "TASKS/S",
            "LAUNCH-SENT/S",
            "TARGET",
            "RESULT",
        ];
        format!(
            "{} simulated agents ({AGENT_RESOURCES}), tasks {TASK_RESOURCES}, at most {} per ACCEPT\n{}\n\
             in-process launch rate: {:.0} tasks/s (target >= {})\n\
             http launch rate: {:.0} tasks/s (target >= {}){ratio_line}: {verdict}",
            self.agents,
            self.per_accept,
            output::table(&headers, &rows),
            self.in_process.tasks_per_sec,
            output::num(self.target_tasks_per_sec),
            self.http.tasks_per_sec,
            output::num(self.target_http_tasks_per_sec),
        )
    }
}

/// Runs `bench launch-rate`; returns the exit code.
pub async fn run(args: LaunchRateArgs, json: bool) -> anyhow::Result<i32> {
    if args.tasks == 0 || args.agents == 0 || args.per_accept == 0 {
        bail!("--tasks, --agents and --per-accept must be at least 1");
    }
    let report = measure(&args).await?;
    crate::print_report(&report, json, |r| r.render())
}

/// Both phases, each on a fresh master and agents.
pub async fn measure(args: &LaunchRateArgs) -> anyhow::Result<LaunchRateReport> {
    let plain = Secured::default();
    let bed = Bed::start(args.agents, plain).await?;
    let l = Launcher::new("lr-local", args.tasks, args.per_accept)?;
    let in_process = in_process_phase(&bed, l, "in-process").await;
    bed.stop().await;
    let in_process = in_process.context("in-process framework")?;
    let custom = match args.executor {
        ExecutorMode::Command => None,
        ExecutorMode::Custom => {
            let bed = Bed::start(args.agents, plain).await?;
            let l = Launcher::new("lr-exec", args.tasks, args.per_accept)?.with_executor()?;
            let custom = in_process_phase(&bed, l, "custom-executor").await;
            bed.stop().await;
            Some(custom.context("in-process framework, custom executor")?)
        }
    };
    let bed = Bed::start(args.agents, plain).await?;
    let http = http_phase(&bed, args.http_tasks(), args.per_accept, "http").await;
    bed.stop().await;
    let http = http.context("HTTP framework")?;
    let secured = Secured {
        acl: args.acl,
        tls: args.tls,
    };
    let secured = if secured.acl || secured.tls {
        let bed = Bed::start(args.agents, secured).await?;
        let path = format!("http with {}", secured.describe());
        let r = http_phase(&bed, args.http_tasks(), args.per_accept, &path).await;
        bed.stop().await;
        Some(r.with_context(|| format!("HTTP framework with {}", secured.describe()))?)
    } else {
        None
    };
    let mut report = LaunchRateReport::new(args, in_process, http);
    if let Some(c) = custom {
        report = report.with_custom(c);
    }
    if let Some(s) = secured {
        report = report.with_secured(s);
    }
    Ok(report)
}

/// A master in this process and its simulated agents, each on a runtime of its own with two
/// worker threads as `meseta master` has (the framework's side stays on the CLI's runtime).
struct Bed {
    master: MasterHandle,
    master_rt: tokio::runtime::Runtime,
    sims: SimRuntime,
    /// The framework's client: the master's URL, its CA under TLS, a scoped token under ACLs.
    client: MasterClient,
    /// The CA and certificates of a TLS master.
    _tls: Option<tempfile::TempDir>,
}

impl Bed {
    async fn start(agents: usize, secured: Secured) -> anyhow::Result<Bed> {
        let store: Arc<dyn meseta_store::Store> = Arc::new(MemStore::new());
        let mut cfg = MasterConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..MasterConfig::default()
        };
        let tls = if secured.tls {
            let dir = tempfile::Builder::new()
                .prefix("meseta-bench-tls-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            let (ca, cert, key) = crate::cluster::loopback_certificate(dir.path())?;
            cfg.tls = Some(meseta_tls::ServerTls {
                cert,
                key,
                client_ca: None,
            });
            Some((dir, ca))
        } else {
            None
        };
        if secured.acl {
            let access = meseta_access::AccessConfig {
                enabled: true,
                ..meseta_access::AccessConfig::default()
            };
            let edge = meseta_access::Edge::open(access, store.clone())
                .await
                .context("opening the access edge")?;
            cfg.edge = Some(meseta_master::EdgeLayer(Arc::new(move |r, m| {
                edge.wrap(r, m.shared_store())
            })));
        }
        let master_rt =
            crate::bench_runtime("bench-master").context("cannot start the master's runtime")?;
        let master = match master_rt
            .spawn(meseta_master::start(cfg, store))
            .await
            .context("the master's start panicked")
            .and_then(|r| r.context("cannot start the in-process master"))
        {
            Ok(m) => m,
            Err(e) => {
                master_rt.shutdown_background();
                return Err(e);
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", master.addr);
        let ca = tls.as_ref().map(|(_, ca)| ca.clone());
        let setup = async {
            let token = match secured.acl {
                true => Some(framework_token(&url, ca.as_deref()).await?),
                false => None,
            };
            let client = MasterClient::with_options(url.clone(), token.as_deref(), ca.as_deref())?;
            let mut sim_cfg = SimConfig::new(url.clone(), agents);
            sim_cfg.hostname_prefix = "launch-rate".into();
            sim_cfg.resources = Resources::parse(AGENT_RESOURCES).context("agent resources")?;
            sim_cfg.tls = ca
                .as_deref()
                .map(|ca| meseta_tls::client_config(ca, None).map(Arc::new))
                .transpose()
                .context("the master's CA")?;
            let sims = SimRuntime::start_with(sim_cfg).await?;
            anyhow::Ok((client, sims))
        };
        match setup.await {
            Ok((client, sims)) => Ok(Bed {
                master,
                master_rt,
                sims,
                client,
                _tls: tls.map(|(dir, _)| dir),
            }),
            Err(e) => {
                stop_master(master, master_rt).await;
                Err(e)
            }
        }
    }

    async fn stop(self) {
        let Bed {
            master,
            master_rt,
            sims,
            ..
        } = self;
        sims.stop().await;
        stop_master(master, master_rt).await;
    }
}

/// Shuts the master down on its own runtime, then that runtime.
async fn stop_master(master: MasterHandle, rt: tokio::runtime::Runtime) {
    let _ = rt.spawn(master.shutdown()).await;
    rt.shutdown_background();
}

/// A token whose policy lets a framework register (any role) and run tasks as the current
/// user, as a team's framework token would, on the master at `url` (ACLs bootstrapped here).
async fn framework_token(url: &str, ca: Option<&std::path::Path>) -> anyhow::Result<String> {
    let policy = serde_json::json!({"name": "launch-rate", "rules": [
        {"resource": "roles", "prefix": "*", "access": "write"},
        {"resource": "users", "prefix": meseta_cli::current_user(), "access": "write"}]});
    crate::acl::scoped_token(url, ca, &policy).await
}

fn framework_info(name: &str) -> FrameworkInfo {
    FrameworkInfo {
        user: meseta_cli::current_user(),
        name: name.to_string(),
        failover_timeout: Some(0.0),
        ..FrameworkInfo::default()
    }
}

/// The framework's bookkeeping: which tasks to put in an offer and which are running.
#[derive(Debug)]
struct Launcher {
    want: Resources,
    prefix: String,
    total: usize,
    per_accept: usize,
    launched: usize,
    accepts: usize,
    running: HashSet<String>,
    last_progress: Instant,
    /// The custom executor every task names, and the agents it already holds resources on.
    executor: Option<(meseta_api::executor::ExecutorInfo, HashSet<IdValue>)>,
}

impl Launcher {
    fn new(prefix: &str, total: usize, per_accept: usize) -> anyhow::Result<Launcher> {
        Ok(Launcher {
            want: Resources::parse(TASK_RESOURCES).context("task resources")?,
            prefix: prefix.to_string(),
            total,
            per_accept,
            launched: 0,
            accepts: 0,
            running: HashSet::new(),
            last_progress: Instant::now(),
            executor: None,
        })
    }

    /// Tasks name one custom executor (per agent) instead of a command.
    fn with_executor(mut self) -> anyhow::Result<Launcher> {
        let info = meseta_api::executor::ExecutorInfo {
            executor_id: IdValue::new("lr-executor"),
            command: Some(CommandInfo::shell("meseta-bench-executor")),
            resources: Resources::parse(EXECUTOR_RESOURCES).context("executor resources")?,
            ..Default::default()
        };
        self.executor = Some((info, HashSet::new()));
        Ok(self)
    }

    /// An ACCEPT launching as many of the remaining tasks as fit in `offer`, or a DECLINE when
    /// none fits or none remains.
    fn respond(&mut self, offer: &Offer) -> CallKind {
        let mut left = offer.resources.clone();
        if let Some((info, seen)) = &self.executor {
            // The executor's first task on an agent takes the executor's resources too.
            if !seen.contains(&offer.agent_id) {
                left = left.checked_sub(&info.resources).unwrap_or_default();
            }
        }
        let mut tasks = Vec::new();
        while tasks.len() < self.per_accept && self.launched + tasks.len() < self.total {
            let Ok(rest) = left.checked_sub(&self.want) else {
                break;
            };
            left = rest;
            tasks.push(self.task(offer, self.launched + tasks.len()));
        }
        if tasks.is_empty() {
            // Done: keep the offers away; nothing fits: let them come back at once.
            let refuse = if self.launched >= self.total {
                3600.0
            } else {
                0.0
            };
            return CallKind::Decline {
                decline: Decline {
                    offer_ids: vec![offer.id.clone()],
                    filters: Some(Filters {
                        refuse_seconds: Some(refuse),
                    }),
                },
            };
        }
        self.launched += tasks.len();
        self.accepts += 1;
        if let Some((_, seen)) = &mut self.executor {
            seen.insert(offer.agent_id.clone());
        }
        self.last_progress = Instant::now();
        crate::launch_call(offer, tasks)
    }

    fn task(&self, offer: &Offer, i: usize) -> TaskInfo {
        let id = format!("{}.{i}", self.prefix);
        TaskInfo {
            name: id.clone(),
            task_id: IdValue::new(id),
            agent_id: Some(offer.agent_id.clone()),
            resources: self.want.clone(),
            command: match &self.executor {
                Some(_) => None,
                None => Some(CommandInfo::shell("sleep 1000")),
            },
            executor: self.executor.as_ref().map(|(info, _)| info.clone()),
            ..TaskInfo::default()
        }
    }

    /// Counts a `TASK_RUNNING` (once per task); errors when a task ended before running.
    fn on_status(&mut self, status: &TaskStatus) -> anyhow::Result<()> {
        if !status.task_id.as_str().starts_with(&self.prefix) {
            return Ok(());
        }
        if status.state == TaskState::Running {
            if self.running.insert(status.task_id.as_str().to_string()) {
                self.last_progress = Instant::now();
            }
        } else if status.state.is_terminal() {
            bail!(
                "task {} ended {} before running: {}",
                status.task_id,
                status.state,
                status.message.as_deref().unwrap_or("no message")
            );
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.running.len() >= self.total
    }

    /// When the run is declared stalled.
    fn stall_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.last_progress + STALL_TIMEOUT)
    }
}

/// Times of one phase.
#[derive(Default)]
struct Clock {
    first_accept: Option<Instant>,
    last_accept_done: Option<Instant>,
}

impl Clock {
    fn phase(&self, path: &str, l: &Launcher) -> anyhow::Result<PhaseReport> {
        let t0 = self
            .first_accept
            .ok_or_else(|| anyhow!("no ACCEPT was made"))?;
        let sent = self.last_accept_done.unwrap_or(t0).duration_since(t0);
        Ok(PhaseReport::new(
            path,
            l.total,
            l.accepts,
            t0.elapsed(),
            sent,
        ))
    }
}

fn wait_error(e: impl std::fmt::Display, l: &Launcher) -> anyhow::Error {
    anyhow!(
        "{e} ({} of {} tasks launched, {} running)",
        l.launched,
        l.total,
        l.running.len()
    )
}

async fn in_process_phase(bed: &Bed, mut l: Launcher, path: &str) -> anyhow::Result<PhaseReport> {
    let mut fw = bed
        .master
        .master
        .subscribe(framework_info("launch-rate-in-process"))
        .await
        .context("cannot subscribe the in-process framework")?;
    let mut clock = Clock::default();
    while !l.done() {
        let ev = match tokio::time::timeout_at(l.stall_deadline(), fw.next_event()).await {
            Err(_) => return Err(wait_error(format!("no progress in {STALL_TIMEOUT:?}"), &l)),
            Ok(None) => return Err(wait_error("the master dropped the framework", &l)),
            Ok(Some(ev)) => ev,
        };
        on_event(&mut l, &mut clock, ev, true, |kind| {
            fw.call(kind)
                .map_err(|e| anyhow!("the master refused a call: {e}"))
        })?;
    }
    clock.phase(path, &l)
}

/// Answers one event of a launching framework through `send`: offers with ACCEPT (or DECLINE
/// once done), updates with ACKNOWLEDGE. When `sent_is_done`, `send` returns once the master took
/// the call, so the end of the last ACCEPT is clocked here.
fn on_event(
    l: &mut Launcher,
    clock: &mut Clock,
    ev: Event,
    sent_is_done: bool,
    mut send: impl FnMut(CallKind) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match ev {
        Event::Offers { offers } => {
            for offer in &offers.offers {
                let kind = l.respond(offer);
                let accept = matches!(kind, CallKind::Accept { .. });
                if accept {
                    clock.first_accept.get_or_insert_with(Instant::now);
                }
                send(kind)?;
                if accept && sent_is_done {
                    clock.last_accept_done = Some(Instant::now());
                }
            }
        }
        Event::Update { update } => {
            if let Some(acknowledge) = Acknowledge::for_status(&update.status) {
                send(CallKind::Acknowledge { acknowledge })?;
            }
            l.on_status(&update.status)?;
        }
        Event::Error { error } => bail!("the master ended the framework: {}", error.message),
        _ => {}
    }
    Ok(())
}

/// Sends the calls queued on `rx`, [`CALL_CONCURRENCY`] at a time, until the queue closes.
/// Reports failures on `errors`; returns when the last ACCEPT was answered.
async fn send_calls(
    caller: SchedulerCaller,
    rx: futures::channel::mpsc::UnboundedReceiver<CallKind>,
    errors: tokio::sync::mpsc::UnboundedSender<String>,
) -> Option<Instant> {
    rx.map(|kind| {
        let caller = caller.clone();
        async move {
            let accept = matches!(kind, CallKind::Accept { .. });
            let result = caller.call(kind).await;
            (accept, result, Instant::now())
        }
    })
    .buffer_unordered(CALL_CONCURRENCY)
    .fold(None, |last, (accept, result, at)| {
        let last = match result {
            Ok(()) if accept => Some(at),
            Ok(()) => last,
            Err(e) => {
                let _ = errors.send(e.to_string());
                last
            }
        };
        futures::future::ready(last)
    })
    .await
}

async fn http_phase(
    bed: &Bed,
    n: usize,
    per_accept: usize,
    path: &str,
) -> anyhow::Result<PhaseReport> {
    let mut session = bed
        .client
        .subscribe(framework_info("launch-rate-http"))
        .await
        .context("cannot subscribe over /api/v1/scheduler")?;
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let (err_tx, mut err_rx) = tokio::sync::mpsc::unbounded_channel();
    let sender = tokio::spawn(send_calls(session.caller(), rx, err_tx));
    let mut l = Launcher::new("lr-http", n, per_accept)?;
    let mut clock = Clock::default();
    let read = async {
        while !l.done() {
            let ev = tokio::select! {
                Some(e) = err_rx.recv() => bail!(wait_error(format!("a call failed: {e}"), &l)),
                r = tokio::time::timeout_at(l.stall_deadline(), session.next_event()) => match r {
                    Err(_) => bail!(wait_error(format!("no progress in {STALL_TIMEOUT:?}"), &l)),
                    Ok(Err(e)) => bail!(wait_error(e, &l)),
                    Ok(Ok(None)) => bail!(wait_error("the master closed the stream", &l)),
                    Ok(Ok(Some(ev))) => ev,
                },
            };
            on_event(&mut l, &mut clock, ev, false, |kind| {
                tx.unbounded_send(kind)
                    .map_err(|_| anyhow!("the HTTP call sender stopped"))
            })?;
        }
        Ok(())
    }
    .await;
    drop(tx);
    let last_accept_done = sender.await.context("the HTTP call sender panicked")?;
    read?;
    clock.last_accept_done = last_accept_done;
    clock.phase(path, &l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use meseta_api::scheduler::Operation;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: crate::BenchCmd,
    }

    fn parse(args: &[&str]) -> LaunchRateArgs {
        let cli = Cli::try_parse_from(args).expect("valid args");
        match cli.cmd {
            crate::BenchCmd::LaunchRate(a) => a,
            other => panic!("not launch-rate: {other:?}"),
        }
    }

    #[test]
    fn arguments_have_defaults_and_overrides() {
        let a = parse(&["bench", "launch-rate"]);
        assert_eq!((a.tasks, a.agents, a.http_tasks()), (20_000, 200, 5_000));
        assert_eq!(a.per_accept, 1000);
        let a = parse(&[
            "bench",
            "launch-rate",
            "--tasks",
            "2",
            "--agents",
            "3",
            "--per-accept",
            "7",
        ]);
        assert_eq!(
            (a.tasks, a.agents, a.http_tasks(), a.per_accept),
            (2, 3, 1, 7)
        );
        assert!(Cli::try_parse_from(["bench", "launch-rate", "--tasks", "-1"]).is_err());
    }

    fn phase(path: &str, tasks: usize, secs: f64) -> PhaseReport {
        PhaseReport::new(
            path,
            tasks,
            2,
            Duration::from_secs_f64(secs),
            Duration::from_secs_f64(secs / 2.0),
        )
    }

    #[test]
    fn report_checks_the_in_process_and_http_targets() {
        let args = parse(&["bench", "launch-rate", "--agents", "10"]);
        let r = LaunchRateReport::new(
            &args,
            phase("in-process", 10_000, 1.0),
            phase("http", 10_000, 1.0),
        );
        assert_eq!(r.in_process.tasks_per_sec, 10_000.0);
        assert_eq!(r.in_process.launch_sent_per_sec, 20_000.0);
        assert!(r.pass);
        let text = r.render();
        assert!(
            text.contains("PASS") && text.contains("10000 tasks/s"),
            "{text}"
        );
        let r = LaunchRateReport::new(
            &args,
            phase("in-process", 10_000, 1.0),
            phase("http", 9_000, 1.0),
        );
        assert!(!r.pass, "the HTTP rate misses");
        assert!(r.render().contains("http launch rate: 9000 tasks/s"));
        let r = LaunchRateReport::new(
            &args,
            phase("in-process", 4_000, 1.0),
            phase("http", 10_000, 1.0),
        );
        assert!(!r.pass);
        assert!(r.render().contains("MISS"));
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["pass"], false);
        assert_eq!(json["in_process"]["tasks_per_sec"], 4_000.0);
        assert_eq!(json["http"]["path"], "http");
        assert_eq!(json["per_accept"], 1000);
    }

    #[test]
    fn each_row_shows_its_own_check_and_the_last_line_all_of_them() {
        let args = parse(&["bench", "launch-rate", "--agents", "10"]);
        let r = LaunchRateReport::new(
            &args,
            phase("in-process", 10_000, 1.0),
            phase("http", 10_000, 1.0),
        )
        .with_secured(phase("http with --acl", 5_000, 1.0));
        assert!(!r.pass, "the secured ratio misses");
        let text = r.render();
        let line = |path: &str| {
            text.lines()
                .find(|l| l.starts_with(path))
                .unwrap_or_default()
                .to_string()
        };
        assert!(line("in-process ").ends_with("PASS"), "{text}");
        assert!(line("http with --acl").ends_with("MISS"), "{text}");
        assert!(text.trim_end().ends_with("MISS"), "{text}");
    }

    fn offer(resources: &str) -> Offer {
        Offer {
            id: IdValue::new("o1"),
            agent_id: IdValue::new("a1"),
            resources: Resources::parse(resources).expect("resources"),
            ..Offer::default()
        }
    }

    fn launched(kind: &CallKind) -> Vec<String> {
        let CallKind::Accept { accept } = kind else {
            return Vec::new();
        };
        let Operation::Launch { launch } = &accept.operations[0] else {
            panic!("not a launch");
        };
        launch
            .task_infos
            .iter()
            .map(|t| t.task_id.as_str().to_string())
            .collect()
    }

    #[test]
    fn offers_are_filled_until_every_task_is_launched() {
        let mut l = Launcher::new("t", 5, 100).expect("launcher");
        // Memory for 3 tasks of 8 MB.
        let first = l.respond(&offer("cpus:1;mem:24"));
        assert_eq!(launched(&first), ["t.0", "t.1", "t.2"]);
        let second = l.respond(&offer("cpus:1;mem:100"));
        assert_eq!(launched(&second), ["t.3", "t.4"]);
        assert_eq!((l.launched, l.accepts), (5, 2));
        let CallKind::Decline { decline } = l.respond(&offer("cpus:1;mem:100")) else {
            panic!("all launched: decline");
        };
        assert_eq!(decline.filters.and_then(|f| f.refuse_seconds), Some(3600.0));
        let mut l = Launcher::new("t", 5, 100).expect("launcher");
        assert!(matches!(
            l.respond(&offer("cpus:1;mem:4")),
            CallKind::Decline { .. }
        ));
        // At most `per_accept` tasks per ACCEPT.
        let mut l = Launcher::new("t", 5, 2).expect("launcher");
        assert_eq!(
            launched(&l.respond(&offer("cpus:1;mem:100"))),
            ["t.0", "t.1"]
        );
        assert_eq!(
            launched(&l.respond(&offer("cpus:1;mem:100"))),
            ["t.2", "t.3"]
        );
    }

    #[test]
    fn running_tasks_count_once_and_failures_stop_the_run() {
        let mut l = Launcher::new("t", 2, 100).expect("launcher");
        let running = TaskStatus::new("t.0", TaskState::Running, 1.0);
        l.on_status(&running).expect("running");
        l.on_status(&running).expect("duplicate");
        l.on_status(&TaskStatus::new("other.1", TaskState::Running, 1.0))
            .expect("foreign");
        assert!(!l.done());
        l.on_status(&TaskStatus::new("t.1", TaskState::Running, 1.0))
            .expect("running");
        assert!(l.done());
        let err = l
            .on_status(&TaskStatus::new("t.2", TaskState::Error, 1.0))
            .expect_err("error ends the run");
        assert!(err.to_string().contains("t.2"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_launches_every_task_on_both_paths() {
        let args = LaunchRateArgs {
            tasks: 40,
            agents: 3,
            per_accept: 15,
            executor: ExecutorMode::Custom,
            acl: true,
            tls: true,
        };
        let r = measure(&args).await.expect("bench runs");
        assert_eq!((r.in_process.tasks, r.http.tasks), (40, 10));
        // The framework went through the access check with a scoped token, over HTTPS.
        let secured = r.secured.as_ref().expect("the run with ACLs and TLS");
        assert_eq!(secured.tasks, 10);
        assert!(r.secured_ratio.is_some_and(|x| x > 0.0));
        assert!(r
            .render()
            .contains("http with --acl (scoped token) and TLS / http"));
        let custom = r.custom.as_ref().expect("custom executor run");
        assert_eq!(custom.tasks, 40);
        assert!(r.custom_ratio.is_some_and(|x| x > 0.0));
        assert!(r.render().contains("custom executor / command executor"));
        // 40 tasks at most 15 per ACCEPT: 3 accepts; 10 tasks: 1.
        assert_eq!((r.in_process.accepts, r.http.accepts), (3, 1));
        assert!(r.in_process.tasks_per_sec > 0.0 && r.http.tasks_per_sec > 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_accept_bigger_than_a_mebibyte_is_taken_over_http() {
        // 5,000 tasks in one ACCEPT are over 1 MiB of JSON: the scheduler API takes it (Mesos
        // sets no limit), where the other endpoints would answer 413.
        let bed = Bed::start(1, Secured::default()).await.expect("bed");
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            http_phase(&bed, 5_000, 5_000, "http"),
        )
        .await;
        bed.stop().await;
        let report = result.expect("finishes in time").expect("all tasks run");
        assert_eq!(report.tasks, 5_000);
        assert_eq!(report.accepts, 1);
    }
}
