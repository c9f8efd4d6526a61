//! `meseta bench dns`: the master's DNS server under load. A master started with `--dns-listen`,
//! simulated agents, `--apps` Marathon apps of one instance each (default 1,000); once every app
//! answers, a query load of their A names (`bench-dns-<i>.marathon.meseta`), for `--seconds`:
//!
//! - `dnsperf` (Debian package `dnsperf`) when it is installed: its queries per second and average
//!   latency (dnsperf prints no percentiles);
//! - always, an in-process UDP load generator: `--clients` sockets, each keeping `--window`
//!   queries in flight; queries per second, p50/p99 latency and lost queries.
//!
//! Target: ≥ 50,000 queries/s.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use serde::Serialize;
use serde_json::json;

use crate::cluster::MasterProcess;
use crate::services::SimRuntime;
use crate::{Check, Stats};

/// Queries per second the DNS server must sustain.
const TARGET_QPS: f64 = 50_000.0;
/// Apps are named `/bench-dns-<i>`.
const APP_PREFIX: &str = "bench-dns-";

/// Flags of `bench dns`.
#[derive(clap::Args, Debug)]
pub struct DnsArgs {
    /// Apps (one instance each).
    #[arg(long, default_value_t = 1000)]
    pub apps: usize,
    /// Simulated agents.
    #[arg(long, default_value_t = 20)]
    pub agents: usize,
    /// Seconds of load (each generator).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Sockets of the in-process generator.
    #[arg(long, default_value_t = 2)]
    pub clients: usize,
    /// Queries each socket keeps in flight.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
}

/// What one load generator measured.
#[derive(Clone, Debug, Serialize)]
pub struct Load {
    /// `dnsperf` or `in-process`.
    pub generator: String,
    /// Answers received per second.
    pub qps: f64,
    /// Latency percentiles (in-process only).
    pub latency: Option<Stats>,
    /// Average latency, ms (dnsperf).
    pub avg_ms: Option<f64>,
    /// Queries without an answer within a second.
    pub lost: u64,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct DnsReport {
    /// Apps served.
    pub apps: usize,
    /// One entry per generator that ran.
    pub loads: Vec<Load>,
    /// Checks against the target.
    pub checks: Vec<Check>,
}

impl DnsReport {
    fn render(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .loads
            .iter()
            .map(|l| {
                vec![
                    l.generator.clone(),
                    format!("{:.0}", l.qps),
                    l.latency
                        .map(|s| format!("{:.3}", s.p50_ms))
                        .unwrap_or("-".into()),
                    l.latency
                        .map(|s| format!("{:.3}", s.p99_ms))
                        .unwrap_or("-".into()),
                    l.avg_ms.map(|a| format!("{a:.3}")).unwrap_or("-".into()),
                    l.lost.to_string(),
                ]
            })
            .collect();
        format!(
            "DNS with {} apps\n{}\n\n{}",
            self.apps,
            meseta_cli::output::table(
                &[
                    "GENERATOR",
                    "QUERIES/S",
                    "P50 MS",
                    "P99 MS",
                    "AVG MS",
                    "LOST"
                ],
                &rows
            ),
            Check::table(&self.checks, 0)
        )
    }
}

fn free_udp_port() -> anyhow::Result<u16> {
    let s = UdpSocket::bind("127.0.0.1:0").context("cannot find a free UDP port")?;
    Ok(s.local_addr()?.port())
}

/// Runs `bench dns`; returns the exit code.
pub async fn run(args: DnsArgs, json: bool) -> anyhow::Result<i32> {
    if args.apps == 0 || args.agents == 0 || args.clients == 0 || args.window == 0 {
        bail!("--apps, --agents, --clients and --window must be at least 1");
    }
    let dir = tempfile::Builder::new()
        .prefix("meseta-bench-dns-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let dns: SocketAddr = ([127, 0, 0, 1], free_udp_port()?).into();
    let listen = dns.to_string();
    let mut master = MasterProcess::start_with_args(dir.path(), &["--dns-listen", &listen]).await?;
    let sims = SimRuntime::start(&master.url, args.agents, None).await;
    let result = match sims {
        Ok(sims) => {
            let r = measure(&mut master, dns, &args).await;
            sims.stop().await;
            r
        }
        Err(e) => Err(e),
    };
    master.stop(Duration::from_secs(5)).await;
    let report = result?;
    crate::print_report(&report, json, |r| r.render())
}

fn names(apps: usize) -> Vec<String> {
    (0..apps)
        .map(|i| format!("{APP_PREFIX}{i}.marathon.meseta."))
        .collect()
}

async fn measure(
    master: &mut MasterProcess,
    dns: SocketAddr,
    args: &DnsArgs,
) -> anyhow::Result<DnsReport> {
    let api = master.client.marathon();
    eprintln!("posting {} apps ...", args.apps);
    let posts: Vec<anyhow::Result<()>> = {
        use futures::StreamExt;
        futures::stream::iter(0..args.apps)
            .map(|i| {
                let api = &api;
                async move {
                    let body = json!({"id": format!("/{APP_PREFIX}{i}"), "cmd": "sleep 1000",
                                      "cpus": 0.01, "mem": 16, "instances": 1});
                    api.create_app(&body).await?;
                    Ok(())
                }
            })
            .buffer_unordered(16)
            .collect()
            .await
    };
    posts.into_iter().collect::<anyhow::Result<()>>()?;
    // Every app answers (the feed has caught up with every launch).
    let names = names(args.apps);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        master.check_alive()?;
        let n = names.clone();
        let answered = tokio::task::spawn_blocking(move || count_answered(dns, &n)).await??;
        eprintln!("{answered}/{} apps answer", names.len());
        if answered == names.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {answered} of {} apps answered DNS within 300 s",
                names.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut loads = Vec::new();
    match dnsperf(dns, &names, args.seconds).await {
        Ok(Some(l)) => loads.push(l),
        Ok(None) => eprintln!(
            "dnsperf is not installed (apt-get install dnsperf); using the in-process generator only"
        ),
        Err(e) => eprintln!("dnsperf failed ({e:#}); using the in-process generator only"),
    }
    let (clients, window, secs) = (args.clients, args.window, args.seconds);
    let n = names.clone();
    loads.push(
        tokio::task::spawn_blocking(move || generate(dns, &n, clients, window, secs)).await??,
    );
    let best = loads.iter().map(|l| l.qps).fold(0.0, f64::max);
    Ok(DnsReport {
        apps: args.apps,
        loads,
        checks: vec![Check::at_least("queries/s", best, TARGET_QPS)],
    })
}

fn query_bytes(id: u16, name: &str) -> anyhow::Result<Vec<u8>> {
    let mut q = Message::new(id, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    Ok(q.to_vec()?)
}

/// How many of `names` have an A answer now.
fn count_answered(dns: SocketAddr, names: &[String]) -> anyhow::Result<usize> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(dns)?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 4096];
    let mut n = 0;
    for (i, name) in names.iter().enumerate() {
        sock.send(&query_bytes(i as u16, name)?)?;
        let Ok(len) = sock.recv(&mut buf) else {
            continue;
        };
        if let Ok(m) = Message::from_vec(&buf[..len]) {
            n += usize::from(!m.answers.is_empty());
        }
    }
    Ok(n)
}

/// The in-process generator: `clients` threads, each a UDP socket with `window` queries in flight.
fn generate(
    dns: SocketAddr,
    names: &[String],
    clients: usize,
    window: usize,
    secs: u64,
) -> anyhow::Result<Load> {
    let queries: Vec<Vec<u8>> = names
        .iter()
        .map(|n| query_bytes(0, n))
        .collect::<anyhow::Result<_>>()?;
    let end = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let results: Vec<anyhow::Result<(Vec<Duration>, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let queries = &queries;
                s.spawn(move || client(dns, queries, c, window, end))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("generator panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut samples = Vec::new();
    let mut lost = 0;
    for r in results {
        let (s, l) = r?;
        samples.extend(s);
        lost += l;
    }
    Ok(Load {
        generator: "in-process".into(),
        qps: samples.len() as f64 / elapsed,
        latency: Stats::of(&samples),
        avg_ms: None,
        lost,
    })
}

fn client(
    dns: SocketAddr,
    queries: &[Vec<u8>],
    c: usize,
    window: usize,
    end: Instant,
) -> anyhow::Result<(Vec<Duration>, u64)> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(dns)?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut inflight: HashMap<u16, Instant> = HashMap::new();
    let mut next: u16 = 0;
    let mut k = c;
    let mut samples = Vec::new();
    let mut lost = 0u64;
    let mut buf = [0u8; 4096];
    let send = |inflight: &mut HashMap<u16, Instant>, next: &mut u16, k: &mut usize| {
        let mut q = queries[*k % queries.len()].clone();
        *k += 1;
        *next = next.wrapping_add(1);
        q[..2].copy_from_slice(&next.to_be_bytes());
        inflight.insert(*next, Instant::now());
        sock.send(&q)
    };
    for _ in 0..window {
        send(&mut inflight, &mut next, &mut k)?;
    }
    while Instant::now() < end {
        match sock.recv(&mut buf) {
            Ok(n) if n >= 2 => {
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                if let Some(t) = inflight.remove(&id) {
                    samples.push(t.elapsed());
                }
            }
            Ok(_) => {}
            Err(_) => {
                // A second without answers: count what is in flight as lost and start over.
                lost += inflight.len() as u64;
                inflight.clear();
            }
        }
        while inflight.len() < window {
            send(&mut inflight, &mut next, &mut k)?;
        }
    }
    Ok((samples, lost))
}

/// dnsperf's figures, `None` when it is not installed.
async fn dnsperf(dns: SocketAddr, names: &[String], secs: u64) -> anyhow::Result<Option<Load>> {
    let which = tokio::process::Command::new("sh")
        .args(["-c", "command -v dnsperf"])
        .output()
        .await?;
    if !which.status.success() {
        return Ok(None);
    }
    let file = tempfile::NamedTempFile::new()?;
    let list: String = names
        .iter()
        .map(|n| format!("{} A\n", n.trim_end_matches('.')))
        .collect();
    std::fs::write(file.path(), list)?;
    let out = tokio::process::Command::new("dnsperf")
        .args(["-s", &dns.ip().to_string(), "-p", &dns.port().to_string()])
        .arg("-d")
        .arg(file.path())
        .args(["-l", &secs.to_string(), "-c", "4", "-q", "256"])
        .output()
        .await
        .context("running dnsperf")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
    };
    let qps =
        field("Queries per second:").context("no 'Queries per second' in dnsperf's output")?;
    let lost = field("Queries lost:").unwrap_or(0.0) as u64;
    let avg = field("Average Latency (s):").map(|s| s * 1000.0);
    Ok(Some(Load {
        generator: "dnsperf".into(),
        qps,
        latency: None,
        avg_ms: avg,
        lost,
    }))
}
