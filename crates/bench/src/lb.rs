//! `meseta bench lb`: `meseta lb` against HAProxy, same backends, same load generator (`wrk`,
//! Debian package `wrk`; `haproxy` from Debian too).
//!
//! ```text
//!  wrk ──▶ meseta lb ──┐                          ┌── backends: 2×--backends small HTTP
//!  wrk ──▶ haproxy ────┴──▶ --backends of them ◀──┘   servers in this process (own runtime)
//!  meseta lb ◀── /v2/apps, /v2/events of a stand-in master in this process
//! ```
//!
//! 1. Steady: `--seconds` of load through each, in `--rounds` alternating rounds (ABBA);
//!    requests/s and p99 of each, and the medians of the paired rounds' ratios (targets:
//!    meseta ≥ 1.0× HAProxy's requests/s, p99 ≤ 1.1×).
//! 2. Churn: for `--duration` seconds, one backend swapped for another every second under load.
//!    HAProxy gets a regenerated config and a reload the way marathon-lb does it
//!    (`haproxy -D -p PIDFILE -f CFG -sf OLD_PIDS`); meseta lb gets an event from the stand-in
//!    master and re-reads its apps. Failed requests (socket errors and non-2xx) and p99 of each
//!    (target: meseta 0 failed).
//!
//! Both balancers use round-robin over keep-alive connections to the backends.
//!
//! With `--baseline-exe PATH`, the `meseta lb` of another build (e.g. the previous commit's)
//! runs beside them on the same backends and takes part in every steady round (order
//! meseta, baseline, haproxy, then reversed), so a change is measured against its baseline and
//! against HAProxy in one run: the report adds the medians of the paired ratios
//! baseline/HAProxy and meseta/baseline.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::Check;

/// The virtual host the bench app is served under.
const VHOST: &str = "bench.local";

/// Flags of `bench lb`.
#[derive(clap::Args, Debug)]
pub struct LbArgs {
    /// Backends in rotation (as many more wait to be swapped in).
    #[arg(long, default_value_t = 4)]
    pub backends: usize,
    /// Seconds of steady load through each balancer.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Steady load is cut into this many rounds per balancer, alternating between them (ABBA),
    /// so that a change in the machine's other load weighs on both alike; the ratios are the
    /// medians of the paired rounds'.
    #[arg(long, default_value_t = 5)]
    pub rounds: u64,
    /// Seconds of load while backends change every second.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// `meseta lb --workers` (default: its own, one per core).
    #[arg(long)]
    pub lb_workers: Option<usize>,
    /// Another meseta executable whose `lb` runs in the steady rounds too, as a baseline.
    #[arg(long)]
    pub baseline_exe: Option<PathBuf>,
}

/// What wrk measured in one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Run {
    /// Balancer and phase.
    pub name: String,
    /// Requests per second.
    pub rps: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Requests completed.
    pub requests: u64,
    /// Socket errors (connect, read, write, timeout) plus non-2xx/3xx answers.
    pub failed: u64,
    /// Backend changes made during the run.
    pub changes: u64,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct LbReport {
    /// Each run.
    pub runs: Vec<Run>,
    /// Checks against the targets.
    pub checks: Vec<Check>,
    /// With `--baseline-exe`: medians of the paired rounds' ratios with the baseline.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub baseline: Vec<Ratio>,
}

/// A median ratio of paired rounds.
#[derive(Debug, Serialize)]
pub struct Ratio {
    /// What over what.
    pub name: String,
    /// The median.
    pub value: f64,
}

impl LbReport {
    fn render(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .runs
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    format!("{:.0}", r.rps),
                    format!("{:.2}", r.p99_ms),
                    r.requests.to_string(),
                    r.failed.to_string(),
                    r.changes.to_string(),
                ]
            })
            .collect();
        let mut text = format!(
            "{}\n\n{}",
            meseta_cli::output::table(
                &["RUN", "REQ/S", "P99 MS", "REQUESTS", "FAILED", "CHANGES"],
                &rows
            ),
            Check::table(&self.checks, 2)
        );
        if !self.baseline.is_empty() {
            let rows: Vec<Vec<String>> = self
                .baseline
                .iter()
                .map(|r| vec![r.name.clone(), format!("{:.2}", r.value)])
                .collect();
            text.push_str("\n\n");
            text.push_str(&meseta_cli::output::table(&["RATIO", "MEDIAN"], &rows));
        }
        text
    }
}

/// Runs the benchmark.
pub async fn run(args: LbArgs, json: bool) -> anyhow::Result<i32> {
    if args.backends == 0 || args.connections == 0 || args.threads == 0 {
        bail!("--backends, --connections and --threads must be at least 1");
    }
    for tool in ["wrk", "haproxy"] {
        if !on_path(tool) {
            bail!("`{tool}` is not installed (apt-get install {tool})");
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("meseta-bench-lb-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let pool = start_backends(args.backends * 2)?;
    let master = FakeMaster::start(pool[..args.backends].to_vec()).await?;
    let exe = std::env::current_exe().context("cannot find the meseta executable")?;
    let mut lb = MesetaLb::start(
        &exe,
        dir.path(),
        &master.url,
        args.backends,
        args.lb_workers,
    )
    .await?;
    let mut baseline = match &args.baseline_exe {
        Some(exe) => {
            let d = dir.path().join("baseline");
            std::fs::create_dir_all(&d).context("baseline directory")?;
            Some(MesetaLb::start(exe, &d, &master.url, args.backends, args.lb_workers).await?)
        }
        None => None,
    };
    let mut haproxy = Haproxy::start(dir.path(), &pool[..args.backends])?;
    let result = measure(&args, &pool, &master, &lb, baseline.as_ref(), &mut haproxy).await;
    haproxy.stop();
    lb.stop().await;
    if let Some(b) = &mut baseline {
        b.stop().await;
    }
    let report = result?;
    crate::print_report(&report, json, |r| r.render())
}

async fn measure(
    args: &LbArgs,
    pool: &[SocketAddr],
    master: &FakeMaster,
    lb: &MesetaLb,
    baseline: Option<&MesetaLb>,
    haproxy: &mut Haproxy,
) -> anyhow::Result<LbReport> {
    let rounds = args.rounds.clamp(1, args.seconds.max(1));
    let secs = (args.seconds / rounds).max(1);
    // Each round runs every balancer once, in reverse order every other round (ABBA).
    let mut order: Vec<(&str, SocketAddr)> = vec![("meseta lb", lb.http)];
    if let Some(b) = baseline {
        order.push(("baseline lb", b.http));
    }
    order.push(("haproxy", haproxy.addr));
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); order.len()];
    for i in 0..rounds {
        let name = format!("round {}", i + 1);
        let mut slots: Vec<usize> = (0..order.len()).collect();
        if i % 2 == 1 {
            slots.reverse();
        }
        for k in slots {
            let (who, addr) = order[k];
            runs[k].push(wrk(args, addr, secs, &format!("{who}, {name}")).await?);
        }
    }
    let ratio = |a: &[Run], b: &[Run], f: fn(&Run) -> f64, floor: f64| {
        median(a.iter().zip(b).map(|(x, y)| f(x) / f(y).max(floor)))
    };
    fn rps(r: &Run) -> f64 {
        r.rps
    }
    fn p99(r: &Run) -> f64 {
        r.p99_ms
    }
    let (ms, hs) = (&runs[0], &runs[order.len() - 1]);
    let ratio_rps = ratio(ms, hs, rps, 1.0);
    let ratio_p99 = ratio(ms, hs, p99, 0.001);
    let steady_m = combine("meseta lb, steady", ms);
    let steady_h = combine("haproxy, steady", hs);
    let mut steady = vec![steady_m];
    let mut compared = Vec::new();
    if baseline.is_some() {
        let bs = &runs[1];
        steady.push(combine("baseline lb, steady", bs));
        let r = |name: &str, value: f64| Ratio {
            name: name.to_owned(),
            value,
        };
        compared = vec![
            r(
                "baseline/haproxy requests per second",
                ratio(bs, hs, rps, 1.0),
            ),
            r("baseline/haproxy p99 latency", ratio(bs, hs, p99, 0.001)),
            r(
                "meseta/baseline requests per second",
                ratio(ms, bs, rps, 1.0),
            ),
            r("meseta/baseline p99 latency", ratio(ms, bs, p99, 0.001)),
        ];
    }
    steady.push(steady_h);
    eprintln!("churn through meseta lb for {} s ...", args.duration);
    let churn_m = churn(args, lb.http, "meseta lb, churn", pool, |active| {
        master.set(active.to_vec());
        Ok(())
    })
    .await?;
    eprintln!("churn through haproxy for {} s ...", args.duration);
    let churn_h = churn(args, haproxy.addr, "haproxy, churn", pool, |active| {
        haproxy.reload(active)
    })
    .await?;
    let checks = vec![
        Check::at_least("meseta/haproxy requests per second", ratio_rps, 1.0),
        Check::new("meseta/haproxy p99 latency", ratio_p99, 1.1),
        Check::new(
            "meseta failed requests while backends change",
            churn_m.failed as f64,
            0.0,
        ),
    ];
    steady.extend([churn_m, churn_h]);
    Ok(LbReport {
        runs: steady,
        checks,
        baseline: compared,
    })
}

/// The median of `xs` (0 when empty).
fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The rounds of one balancer as one run: requests/s over all of them, the median round's p99.
fn combine(name: &str, rounds: &[Run]) -> Run {
    let requests: u64 = rounds.iter().map(|r| r.requests).sum();
    let secs: f64 = rounds
        .iter()
        .map(|r| r.requests as f64 / r.rps.max(1.0))
        .sum();
    Run {
        name: name.to_owned(),
        rps: requests as f64 / secs.max(1e-9),
        p99_ms: median(rounds.iter().map(|r| r.p99_ms)),
        requests,
        failed: rounds.iter().map(|r| r.failed).sum(),
        changes: 0,
    }
}

/// Load for `--duration` while the active backends rotate every second through `apply`.
async fn churn(
    args: &LbArgs,
    target: SocketAddr,
    name: &str,
    pool: &[SocketAddr],
    mut apply: impl FnMut(&[SocketAddr]) -> anyhow::Result<()>,
) -> anyhow::Result<Run> {
    let n = args.backends;
    let load = wrk(args, target, args.duration, name);
    tokio::pin!(load);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut changes = 0u64;
    loop {
        tokio::select! {
            r = &mut load => {
                let mut run = r?;
                run.changes = changes;
                // Back to the first set for the next run.
                apply(&pool[..n])?;
                return Ok(run);
            }
            _ = tick.tick() => {
                changes += 1;
                let start = (changes as usize) % pool.len();
                let active: Vec<SocketAddr> =
                    (0..n).map(|i| pool[(start + i) % pool.len()]).collect();
                apply(&active)?;
            }
        }
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?)
}

/// Runs wrk against `target` for `seconds`.
async fn wrk(args: &LbArgs, target: SocketAddr, seconds: u64, name: &str) -> anyhow::Result<Run> {
    eprintln!("{name}: wrk for {seconds} s ...");
    let out = tokio::process::Command::new("wrk")
        .arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{seconds}s"))
        .args(["--latency", "-H", &format!("Host: {VHOST}")])
        .arg(format!("http://{target}/"))
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut run = parse_wrk(&text).with_context(|| format!("cannot read wrk's output: {text}"))?;
    run.name = name.to_owned();
    Ok(run)
}

/// Reads requests/s, p99, requests and failures out of wrk's `--latency` report.
fn parse_wrk(text: &str) -> Option<Run> {
    let mut run = Run::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().ok()?;
        } else if words.first() == Some(&"99%") {
            run.p99_ms = duration_ms(words.get(1)?)?;
        } else if words.get(1) == Some(&"requests") && words.get(2) == Some(&"in") {
            run.requests = words[0].parse().ok()?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            run.failed += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.failed += v.trim().parse::<u64>().ok()?;
        }
    }
    (run.rps > 0.0).then_some(run)
}

/// `812.00us`, `5.12ms`, `1.02s` → ms.
fn duration_ms(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (s.strip_suffix('s')?, 1000.0)
    };
    Some(num.parse::<f64>().ok()? * scale)
}

/// Starts `n` small HTTP servers on their own two-thread runtime; they live as long as the
/// process.
fn start_backends(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("binding a backend"))
        .collect::<anyhow::Result<_>>()?;
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr().context("backend address"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for l in &listeners {
        l.set_nonblocking(true)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the backends' runtime")?;
    std::thread::Builder::new()
        .name("bench-backends".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut served = Vec::new();
                for l in listeners {
                    let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                        continue;
                    };
                    let app = Router::new().fallback(|| async { "ok\n" });
                    served.push(tokio::spawn(async move { axum::serve(l, app).await }));
                }
                for s in served {
                    let _ = s.await;
                }
            });
        })
        .context("starting the backends' thread")?;
    Ok(addrs)
}

/// A stand-in for the masters: one app whose tasks are the active backends, and the event
/// stream that says when they change.
struct FakeMaster {
    url: String,
    state: Arc<Mutex<Vec<SocketAddr>>>,
    events: broadcast::Sender<()>,
}

#[derive(Clone)]
struct FakeState {
    active: Arc<Mutex<Vec<SocketAddr>>>,
    events: broadcast::Sender<()>,
}

impl FakeMaster {
    async fn start(active: Vec<SocketAddr>) -> anyhow::Result<FakeMaster> {
        let state = Arc::new(Mutex::new(active));
        let (events, _) = broadcast::channel(64);
        let shared = FakeState {
            active: state.clone(),
            events: events.clone(),
        };
        let app = Router::new()
            .route("/v2/apps", get(fake_apps))
            .route("/v2/events", get(fake_events))
            .with_state(shared);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the stand-in master")?;
        let url = format!("http://{}", l.local_addr()?);
        tokio::spawn(async move { axum::serve(l, app).await });
        Ok(FakeMaster { url, state, events })
    }

    fn set(&self, active: Vec<SocketAddr>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = active;
        let _ = self.events.send(());
    }
}

async fn fake_apps(State(s): State<FakeState>) -> Json<Value> {
    let active = s.active.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let tasks: Vec<Value> = active
        .iter()
        .map(|a| {
            json!({"id": format!("bench.b{}", a.port()), "appId": "/bench", "host": a.ip().to_string(),
                   "state": "TASK_RUNNING", "ports": [a.port()], "version": "v1",
                   "healthCheckResults": []})
        })
        .collect();
    Json(
        json!({"apps": [{"id": "/bench", "version": "v1", "instances": active.len(),
        "portDefinitions": [{"port": 0}], "labels": {"MESETA_VHOST": VHOST},
        "healthChecks": [], "tasks": tasks}]}),
    )
}

async fn fake_events(
    State(s): State<FakeState>,
) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = s.events.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(()) => {
                    let ev = Event::default()
                        .event("status_update_event")
                        .data(r#"{"eventType":"status_update_event"}"#);
                    return Some((Ok(ev), rx));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `meseta lb` as a child process.
struct MesetaLb {
    child: tokio::process::Child,
    http: SocketAddr,
}

impl MesetaLb {
    async fn start(
        exe: &Path,
        dir: &Path,
        master: &str,
        backends: usize,
        workers: Option<usize>,
    ) -> anyhow::Result<MesetaLb> {
        let http = free_addr()?;
        let admin = free_addr()?;
        let log = std::fs::File::create(dir.join("lb.log")).context("lb log")?;
        let child = tokio::process::Command::new(exe)
            .args(["lb", "--master", master, "--bind-ip", "127.0.0.1"])
            .args(["--listen-http", &http.to_string()])
            .args(["--listen-admin", &admin.to_string()])
            .args(["--algorithm", "round-robin"])
            .args(
                workers
                    .map(|w| vec!["--workers".to_owned(), w.to_string()])
                    .unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start meseta lb")?;
        let lb = MesetaLb { child, http };
        let status = format!("http://{admin}/status");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = match reqwest::get(&status).await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|s| s["apps"][0]["backends"].as_array().map(Vec::len)),
                Err(_) => None,
            };
            if n == Some(backends) {
                return Ok(lb);
            }
            if Instant::now() > deadline {
                bail!("meseta lb did not route to the {backends} backends within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// HAProxy, daemonized, reloaded with `-sf` as marathon-lb does.
struct Haproxy {
    addr: SocketAddr,
    cfg: PathBuf,
    pidfile: PathBuf,
    /// Every process started (old ones finish their connections after a reload).
    pids: Vec<i32>,
}

impl Haproxy {
    fn start(dir: &Path, active: &[SocketAddr]) -> anyhow::Result<Haproxy> {
        let mut h = Haproxy {
            addr: free_addr()?,
            cfg: dir.join("haproxy.cfg"),
            pidfile: dir.join("haproxy.pid"),
            pids: Vec::new(),
        };
        h.reload(active)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(h.addr).is_err() {
            if Instant::now() > deadline {
                bail!("haproxy did not listen on {} within 10 s", h.addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(h)
    }

    fn config(&self, active: &[SocketAddr]) -> String {
        let servers: String = active
            .iter()
            .enumerate()
            .map(|(i, a)| format!("  server b{i}_{} {a}\n", a.port()))
            .collect();
        format!(
            "global\n  maxconn 4000\n\ndefaults\n  mode http\n  timeout connect 2s\n  \
             timeout client 30s\n  timeout server 30s\n  option http-keep-alive\n  \
             retries 2\n  option redispatch\n\nfrontend bench\n  bind {}\n  \
             default_backend bench\n\nbackend bench\n  balance roundrobin\n  \
             http-reuse always\n{servers}",
            self.addr
        )
    }

    /// Writes the config for `active` and starts a new HAProxy that takes over from the old.
    fn reload(&mut self, active: &[SocketAddr]) -> anyhow::Result<()> {
        std::fs::write(&self.cfg, self.config(active)).context("writing haproxy.cfg")?;
        let old: Vec<String> = std::fs::read_to_string(&self.pidfile)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let mut cmd = std::process::Command::new("haproxy");
        cmd.arg("-D")
            .arg("-p")
            .arg(&self.pidfile)
            .arg("-f")
            .arg(&self.cfg);
        if !old.is_empty() {
            cmd.arg("-sf").args(&old);
        }
        let out = cmd.output().context("cannot run haproxy")?;
        if !out.status.success() {
            bail!("haproxy failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let started = std::fs::read_to_string(&self.pidfile).unwrap_or_default();
        self.pids.extend(
            started
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
        Ok(())
    }

    fn stop(&mut self) {
        for &pid in &self.pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.pids.clear();
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_combine_into_one_run_and_medians() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), 2.5);
        assert_eq!(median(std::iter::empty()), 0.0);
        let r = |rps: f64, p99: f64, secs: f64| Run {
            rps,
            p99_ms: p99,
            requests: (rps * secs) as u64,
            ..Run::default()
        };
        let c = combine(
            "x",
            &[r(100.0, 1.0, 2.0), r(300.0, 5.0, 2.0), r(200.0, 3.0, 2.0)],
        );
        assert_eq!(c.requests, 1200);
        assert!((c.rps - 200.0).abs() < 1e-6, "{}", c.rps);
        assert_eq!(c.p99_ms, 3.0);
    }

    #[test]
    fn wrk_reports_are_read() {
        let text = "Running 10s test @ http://127.0.0.1:8080/\n  2 threads and 64 connections\n\
  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.20ms  300.00us  12.00ms   90.00%\n\
  Latency Distribution\n     50%    1.10ms\n     75%    1.30ms\n     90%    1.60ms\n     99%  812.00us\n\
  523456 requests in 10.00s, 60.00MB read\n  Socket errors: connect 0, read 12, write 1, timeout 2\n\
  Non-2xx or 3xx responses: 5\nRequests/sec:  52345.60\nTransfer/sec:      6.00MB\n";
        let r = parse_wrk(text).expect("parsed");
        assert_eq!(r.requests, 523_456);
        assert_eq!(r.failed, 20);
        assert!((r.rps - 52_345.6).abs() < 1e-6);
        assert!((r.p99_ms - 0.812).abs() < 1e-9);
        assert_eq!(duration_ms("1.50s"), Some(1500.0));
        assert!(parse_wrk("garbage").is_none());
    }

    #[test]
    fn the_haproxy_config_lists_the_active_backends() {
        let h = Haproxy {
            addr: "127.0.0.1:9000".parse().expect("addr"),
            cfg: PathBuf::new(),
            pidfile: PathBuf::new(),
            pids: Vec::new(),
        };
        let a: SocketAddr = "127.0.0.1:31001".parse().expect("addr");
        let cfg = h.config(&[a]);
        assert!(cfg.contains("bind 127.0.0.1:9000"), "{cfg}");
        assert!(cfg.contains("server b0_31001 127.0.0.1:31001"), "{cfg}");
        assert!(cfg.contains("balance roundrobin"), "{cfg}");
    }
}
