//! High availability under network faults, with the real binary on the multi-host lab
//! (`meseta_testkit::netlab`): 3 etcd members, 3 `meseta master --store etcd://…` and 3 agents,
//! each on its own host (network namespace) with its own address.
//!
//! - the leading master partitioned from every etcd member while a client keeps writing: another
//!   master leads within seconds, writes are acknowledged again, the old leader steps down and
//!   stays a follower after the heal, and no acknowledged write is lost;
//! - kill -9 of an etcd member (a follower, then the raft leader) and its restart: writes keep
//!   being acknowledged and none is lost;
//! - every agent killed and restarted in turn: the tasks of an app keep their ids and pids;
//! - an agent partitioned from the masters longer than the unreachable timeout, then healed:
//!   its tasks go `TASK_UNREACHABLE`, each app's `unreachableStrategy` decides whether it is
//!   replaced, and after the heal every app runs exactly its instances again.
//!
//! The logs of a failing scenario are printed and kept (env `HA_NETLAB_KEEP_LOGS` keeps them
//! always). Needs root (namespaces, cgroups), iproute2, iptables and `/usr/bin/etcd`: skipped with the
//! reason on a laptop, failed under `CI=true`. The scenarios take the lab lock in turn: each runs
//! 9 hosts' worth of processes on 2-second leases, and running them at once on a small machine
//! would test the scheduler of the machine rather than the masters.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{remove_agent_cgroups, task_reachable_dir, wait_for, MESETA};
use meseta_testkit::netlab::{self, EtcdMembers, Host, Lab, Proc};
use serde_json::{json, Value};

/// One scenario at a time (see the module docs).
static LAB_LOCK: Mutex<()> = Mutex::new(());

const LEASE: &str = "2s";
const AGENT_TIMEOUT_SECS: u64 = 6;
/// The masters' agent heartbeat period (their default).
const AGENT_HEARTBEAT_SECS: u64 = 2;
const MASTER_PORT: u16 = 5050;
const AGENT_PORT: u16 = 5051;
const RESOURCES: &str = "cpus:4;mem:4096;disk:2048;ports:[31000-31999]";

fn client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_millis(800))
        .build()
        .expect("http client")
}

fn no_redirects() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_millis(800))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// The cluster on its 9 hosts. Dropping it stops everything; when the test is failing it prints
/// the tail of every log and keeps the log directory.
struct HaLab {
    masters: Vec<Option<Proc>>,
    agents: Vec<Option<Proc>>,
    etcd: EtcdMembers,
    master_hosts: Vec<Host>,
    agent_hosts: Vec<Host>,
    etcd_hosts: Vec<Host>,
    store: String,
    rt: tokio::runtime::Runtime,
    lab: Option<Lab>,
    dir: Option<tempfile::TempDir>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl HaLab {
    /// The whole cluster up: one leader elected, 3 agents active. `None` (test skipped) when the
    /// lab or etcd is unavailable here.
    fn start(name: &str) -> Option<HaLab> {
        let serial = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if !common::can_isolate() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "needs root to create cgroups and CI=true"
            );
            eprintln!("SKIPPED: needs root to create cgroups");
            return None;
        }
        if !netlab::available_or_skip() {
            return None;
        }
        if let Err(why) = EtcdMembers::available() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{why} and CI=true"
            );
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let lab = Lab::new().expect("create lab");
        let add = |prefix: &str| -> Vec<Host> {
            (0..3)
                .map(|i| lab.add_host(&format!("{prefix}{i}")).expect("add host"))
                .collect()
        };
        let (etcd_hosts, master_hosts, agent_hosts) = (add("e"), add("m"), add("a"));
        let etcd = rt
            .block_on(lab.etcd_cluster(&etcd_hosts.iter().collect::<Vec<_>>()))
            .expect("etcd cluster");
        let store = format!(
            "etcd://{}",
            etcd_hosts
                .iter()
                .map(|h| format!("{}:2379", h.ip()))
                .collect::<Vec<_>>()
                .join(",")
        );
        let dir = task_reachable_dir();
        eprintln!("{name}: lab {} logs in {}", lab.id(), dir.path().display());
        let mut ha = HaLab {
            masters: vec![None, None, None],
            agents: vec![None, None, None],
            etcd,
            master_hosts,
            agent_hosts,
            etcd_hosts,
            store,
            rt,
            lab: Some(lab),
            dir: Some(dir),
            _serial: serial,
        };
        for i in 0..3 {
            ha.start_master(i);
        }
        for i in 0..3 {
            ha.start_agent(i);
        }
        ha.leader(Duration::from_secs(20));
        ha.wait_agents(3, Duration::from_secs(30));
        Some(ha)
    }

    fn lab(&self) -> &Lab {
        self.lab.as_ref().expect("lab")
    }

    fn dir(&self) -> PathBuf {
        self.dir.as_ref().expect("dir").path().to_owned()
    }

    /// A fresh log file (a restarted process gets a new one).
    fn log(&self, name: &str) -> PathBuf {
        let dir = self.dir();
        (0..)
            .map(|n| dir.join(format!("{name}.{n}.log")))
            .find(|p| !p.exists())
            .expect("a free log name")
    }

    fn url(&self, i: usize) -> String {
        format!("http://{}:{MASTER_PORT}", self.master_hosts[i].ip())
    }

    fn urls(&self) -> Vec<String> {
        (0..3).map(|i| self.url(i)).collect()
    }

    fn start_master(&mut self, i: usize) {
        let host = &self.master_hosts[i];
        let ip = host.ip().to_string();
        let timeout = AGENT_TIMEOUT_SECS.to_string();
        let listen = format!("{ip}:{MASTER_PORT}");
        let args = [
            "master",
            "--listen",
            &listen,
            "--store",
            &self.store,
            "--lease-ttl",
            LEASE,
            "--hostname",
            &ip,
            "--agent-timeout",
            &timeout,
        ];
        let log = self.log(&format!("master-{i}"));
        let proc = host
            .spawn(MESETA, args, &[("RUST_LOG", "info")], &log)
            .expect("spawn master");
        self.masters[i] = Some(proc);
        let url = self.url(i);
        wait_for(
            &format!("master {i} /health"),
            Duration::from_secs(20),
            || {
                client(Duration::from_secs(1))
                    .get(format!("{url}/health"))
                    .send()
                    .ok()
                    .filter(|r| r.status().is_success())
            },
        );
    }

    fn agent_work_dir(&self, i: usize) -> PathBuf {
        self.dir().join(format!("agent-{i}"))
    }

    fn start_agent(&mut self, i: usize) {
        let host = &self.agent_hosts[i];
        let ip = host.ip().to_string();
        let work = self.agent_work_dir(i);
        let masters = self.urls().join(",");
        let listen = format!("{ip}:{AGENT_PORT}");
        let args = [
            "agent",
            "--master",
            &masters,
            "--listen",
            &listen,
            "--hostname",
            &ip,
            "--work-dir",
            work.to_str().expect("utf8"),
            "--resources",
            RESOURCES,
        ];
        let log = self.log(&format!("agent-{i}"));
        // `ip netns exec` gives the program a mount namespace with /sys remounted for the
        // network namespace, which hides /sys/fs/cgroup: the agent goes back into the test
        // process's mount namespace (keeping the host's network) to create task cgroups.
        let mount_ns = format!("--mount=/proc/{}/ns/mnt", std::process::id());
        let proc = host
            .spawn(
                "nsenter",
                [mount_ns.as_str(), MESETA].into_iter().chain(args),
                &[("RUST_LOG", "info")],
                &log,
            )
            .expect("spawn agent");
        self.agents[i] = Some(proc);
    }

    /// The master `location` (`//host:port` or `http://host:port/…`) names.
    fn master_named(&self, location: &str) -> Option<usize> {
        let rest = location
            .trim_start_matches("http:")
            .trim_start_matches("//");
        let host = rest.split([':', '/']).next()?;
        self.master_hosts
            .iter()
            .position(|h| h.ip().to_string() == host)
    }

    /// The leader as master `i` reports it through `/master/redirect`.
    fn leader_seen_by(&self, i: usize) -> Option<usize> {
        let r = no_redirects()
            .get(format!("{}/master/redirect", self.url(i)))
            .send()
            .ok()?;
        let loc = r.headers().get("location")?.to_str().ok()?;
        self.master_named(loc)
    }

    /// Whether master `i` answers `/v2/apps` itself (it leads).
    fn answers(&self, i: usize) -> bool {
        no_redirects()
            .get(format!("{}/v2/apps", self.url(i)))
            .send()
            .is_ok_and(|r| r.status().is_success())
    }

    /// The status of master `i`'s own answer to `GET /v2/apps` (0: none).
    fn apps_status(&self, i: usize) -> u16 {
        no_redirects()
            .get(format!("{}/v2/apps", self.url(i)))
            .send()
            .map_or(0, |r| r.status().as_u16())
    }

    /// The leading master, once the masters in `among` agree on it and it answers itself.
    fn leader_among(&self, among: &[usize], within: Duration) -> usize {
        let start = Instant::now();
        loop {
            let seen: BTreeSet<Option<usize>> =
                among.iter().map(|&i| self.leader_seen_by(i)).collect();
            if let [Some(l)] = seen.iter().copied().collect::<Vec<_>>()[..] {
                // Right after a partition the others may still name the old leader (its lease
                // has not run out yet): only a leader among `among` counts.
                if among.contains(&l) && self.answers(l) {
                    return l;
                }
            }
            if start.elapsed() > within {
                self.fail(&format!(
                    "no agreed leader among masters {among:?} after {within:?} (seen {seen:?})"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The leading master, as every running master reports it.
    fn leader(&self, within: Duration) -> usize {
        let all: Vec<usize> = (0..3).filter(|&i| self.masters[i].is_some()).collect();
        self.leader_among(&all, within)
    }

    /// `method path` through the list of masters (redirects followed, 503 and connection errors
    /// skipped): status and JSON body, `(0, Null)` when no master answered.
    fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        for url in self.urls() {
            let mut req =
                client(Duration::from_secs(3)).request(method.clone(), format!("{url}{path}"));
            if let Some(b) = body {
                req = req.json(b);
            }
            if let Ok(r) = req.send() {
                let status = r.status().as_u16();
                if status == 503 {
                    continue;
                }
                let text = r.text().unwrap_or_default();
                return (status, serde_json::from_str(&text).unwrap_or(Value::Null));
            }
        }
        (0, Value::Null)
    }

    /// `GET path` that must answer 200 within a few seconds (retrying through an election).
    fn get(&self, path: &str) -> Value {
        let start = Instant::now();
        loop {
            let (s, v) = self.call(reqwest::Method::GET, path, None);
            if s == 200 {
                return v;
            }
            if start.elapsed() > Duration::from_secs(10) {
                self.fail(&format!("GET {path}: {s} {v}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Agents by hostname (their address): whether active.
    fn agents_active(&self) -> BTreeMap<String, bool> {
        let (s, v) = self.call(reqwest::Method::GET, "/master/slaves", None);
        if s != 200 {
            return BTreeMap::new();
        }
        v["slaves"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| Some((a["hostname"].as_str()?.to_owned(), a["active"] == true)))
            .collect()
    }

    fn agent_active(&self, i: usize) -> bool {
        let name = self.agent_hosts[i].ip().to_string();
        self.agents_active().get(&name).copied().unwrap_or(false)
    }

    fn wait_agents(&self, n: usize, within: Duration) {
        self.wait(&format!("{n} active agents"), within, || {
            let active = self.agents_active().values().filter(|a| **a).count();
            (active == n).then_some(())
        });
    }

    /// Like `common::wait_for`, but the failure message carries the log tails.
    fn wait<T>(&self, what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            if start.elapsed() > within {
                self.fail(&format!("timed out after {within:?} waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panic with `msg` and the tail of every master's and agent's log.
    fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.log_tails())
    }

    fn log_tails(&self) -> String {
        let mut out = String::new();
        for (kind, procs) in [("master", &self.masters), ("agent", &self.agents)] {
            for (i, p) in procs.iter().enumerate() {
                if let Some(p) = p {
                    out += &format!(
                        "--- {kind} {i} ({}):\n{}\n",
                        p.log_path().display(),
                        p.log_tail(15)
                    );
                }
            }
        }
        for i in 0..self.etcd.len() {
            out += &format!("--- etcd {i}:\n{}\n", self.etcd.log_tail(i, 5));
        }
        out
    }

    /// Running tasks of `app`: id → agent hostname.
    fn running(&self, app: &str) -> BTreeMap<String, String> {
        let (s, v) = self.call(reqwest::Method::GET, &format!("/v2/apps{app}/tasks"), None);
        if s != 200 {
            return BTreeMap::new();
        }
        v["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .filter_map(|t| Some((t["id"].as_str()?.to_owned(), t["host"].as_str()?.to_owned())))
            .collect()
    }

    /// Every task of `app` the master lists: id → state.
    fn task_states(&self, app: &str) -> BTreeMap<String, String> {
        let (s, v) = self.call(reqwest::Method::GET, &format!("/v2/apps{app}/tasks"), None);
        if s != 200 {
            return BTreeMap::new();
        }
        v["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some((
                    t["id"].as_str()?.to_owned(),
                    t["state"].as_str()?.to_owned(),
                ))
            })
            .collect()
    }

    /// pid of a task, from its agent's task dir.
    fn task_pid(&self, task_id: &str) -> Option<i32> {
        (0..3).find_map(|i| {
            std::fs::read_to_string(
                self.agent_work_dir(i)
                    .join("tasks")
                    .join(task_id)
                    .join("task.pid"),
            )
            .ok()?
            .trim()
            .parse()
            .ok()
        })
    }

    /// Deploy `app` and wait until `n` instances run; their ids → pids.
    fn deploy(&self, app: &Value, n: usize) -> BTreeMap<String, i32> {
        let id = app["id"].as_str().expect("app id");
        let (s, v) = self.call(reqwest::Method::POST, "/v2/apps", Some(app));
        if s != 201 {
            self.fail(&format!("POST {id}: {s} {v}"));
        }
        let tasks = self.wait(
            &format!("{n} running instances of {id}"),
            Duration::from_secs(30),
            || {
                let t = self.running(id);
                (t.len() == n).then_some(t)
            },
        );
        tasks
            .into_keys()
            .map(|t| {
                let pid = self.wait("a task pid", Duration::from_secs(10), || self.task_pid(&t));
                (t, pid)
            })
            .collect()
    }

    /// Start a client writing a new app every ~100 ms through the list of masters.
    fn writer(&self, prefix: &str) -> Writer {
        Writer::start(self.urls(), prefix)
    }
}

impl Drop for HaLab {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if failing {
            eprintln!("{}", self.log_tails());
        }
        self.masters.iter_mut().for_each(|m| drop(m.take()));
        // Agents before their tasks, so that none restarts one; the lab's teardown kills every
        // process left in its namespaces, tasks included.
        self.agents.iter_mut().for_each(|a| drop(a.take()));
        drop(self.lab.take());
        std::thread::sleep(Duration::from_millis(300));
        for i in 0..3 {
            if let Ok(id) = std::fs::read_to_string(self.agent_work_dir(i).join("agent_id")) {
                remove_agent_cgroups(id.trim());
            }
        }
        if failing || std::env::var_os("HA_NETLAB_KEEP_LOGS").is_some() {
            if let Some(dir) = self.dir.take() {
                for i in 0..self.etcd.len() {
                    let _ = std::fs::copy(
                        self.etcd.log_path(i),
                        dir.path().join(format!("etcd-{i}.log")),
                    );
                }
                eprintln!("logs kept in {}", dir.keep().display());
            }
        }
    }
}

/// One acknowledged write: the app created, when the request was sent and answered, and which
/// master answered it in the end.
#[derive(Clone, Debug)]
struct Ack {
    app: String,
    sent: Instant,
    at: Instant,
    by: String,
}

/// A client thread POSTing a new app (`instances: 0`) every ~100 ms through the list of masters,
/// following redirects and moving on to the next master on 503 or a connection error.
struct Writer {
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
    started: Instant,
}

impl Writer {
    fn start(urls: Vec<String>, prefix: &str) -> Writer {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s, prefix) = (acks.clone(), stop.clone(), prefix.to_owned());
        let thread = std::thread::spawn(move || {
            let http = client(Duration::from_millis(1500));
            let mut next = 0usize;
            let mut n = 0usize;
            while !s.load(Ordering::Relaxed) {
                let tick = Instant::now();
                n += 1;
                let app = format!("/{prefix}/w{n}");
                let body =
                    json!({"id": app, "cmd": "sleep 1", "cpus": 0.01, "mem": 8, "instances": 0});
                for k in 0..urls.len() {
                    let i = (next + k) % urls.len();
                    let sent = Instant::now();
                    let Ok(r) = http.post(format!("{}/v2/apps", urls[i])).json(&body).send() else {
                        continue;
                    };
                    if r.status().is_success() {
                        let by = r.url().authority().to_owned();
                        a.lock().unwrap_or_else(|e| e.into_inner()).push(Ack {
                            app: app.clone(),
                            sent,
                            at: Instant::now(),
                            by,
                        });
                        next = i;
                        break;
                    }
                    if r.status().as_u16() != 503 {
                        // A conflict (an earlier attempt landed) or a refusal: not acknowledged.
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed()));
            }
            n
        });
        Writer {
            acks,
            stop,
            thread: Some(thread),
            started: Instant::now(),
        }
    }

    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Acknowledged writes sent after `t`.
    fn acks_since(&self, t: Instant) -> usize {
        self.acks().iter().filter(|a| a.sent >= t).count()
    }

    /// Stop; every acknowledged write, and how many were attempted.
    fn stop(mut self) -> (Vec<Ack>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let n = self
            .thread
            .take()
            .map(|t| t.join().expect("writer thread"))
            .unwrap_or(0);
        (self.acks(), n)
    }

    /// The longest time without an acknowledgement between the start and the last ack.
    fn longest_gap(&self, acks: &[Ack]) -> Duration {
        let mut last = self.started;
        let mut gap = Duration::ZERO;
        for a in acks {
            gap = gap.max(a.at.saturating_duration_since(last));
            last = last.max(a.at);
        }
        gap
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Assert every acknowledged app exists (nothing acknowledged was lost).
fn assert_nothing_lost(ha: &HaLab, acks: &[Ack], attempted: usize) {
    let apps = ha.get("/v2/apps");
    let present: BTreeSet<String> = apps["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["id"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&Ack> = acks.iter().filter(|a| !present.contains(&a.app)).collect();
    eprintln!(
        "{} of {attempted} writes acknowledged, {} apps present",
        acks.len(),
        present.len()
    );
    if !lost.is_empty() {
        ha.fail(&format!("acknowledged writes lost: {lost:?}"));
    }
}

#[test]
fn leader_partitioned_from_etcd_steps_down_and_no_acknowledged_write_is_lost() {
    let Some(ha) = HaLab::start("leader partition") else {
        return;
    };
    let old = ha.leader(Duration::from_secs(10));
    let old_authority = format!("{}:{MASTER_PORT}", ha.master_hosts[old].ip());
    let writer = ha.writer("p");
    ha.wait(
        "writes acknowledged before the partition",
        Duration::from_secs(10),
        || (writer.acks().len() >= 5).then_some(()),
    );

    let cut_at = Instant::now();
    for e in &ha.etcd_hosts {
        ha.lab()
            .partition(&ha.master_hosts[old], e)
            .expect("partition");
    }
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = ha.leader_among(&others, Duration::from_secs(15));
    let new_seen_at = Instant::now();
    assert_ne!(new, old);
    eprintln!(
        "master {new} leads {:?} after master {old} was cut from etcd",
        new_seen_at - cut_at
    );
    ha.wait(
        "writes acknowledged by the new leader",
        Duration::from_secs(10),
        || (writer.acks_since(new_seen_at) >= 5).then_some(()),
    );
    // The old leader stepped down: cut from etcd it knows no leader, so it serves nothing
    // itself (503, or 307 once it learns of the new leader).
    ha.wait(
        "the old leader to step down",
        Duration::from_secs(10),
        || matches!(ha.apps_status(old), 503 | 307).then_some(()),
    );

    // Heal: it follows the new leader (names it, redirects to it) and stays a follower.
    for e in &ha.etcd_hosts {
        ha.lab().heal(&ha.master_hosts[old], e).expect("heal");
    }
    ha.wait(
        "the old leader to follow the new one",
        Duration::from_secs(10),
        || (ha.leader_seen_by(old) == Some(new) && ha.apps_status(old) == 307).then_some(()),
    );
    let healed_at = Instant::now();
    while healed_at.elapsed() < Duration::from_secs(5) {
        let seen = ha.leader_seen_by(old);
        let status = ha.apps_status(old);
        if seen != Some(new) || status != 307 {
            ha.fail(&format!(
                "after the heal the old leader names {seen:?} (not {new}) and answers /v2/apps with {status}"
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        ha.leader(Duration::from_secs(5)),
        new,
        "leadership moved after the heal"
    );
    ha.wait(
        "writes acknowledged after the heal",
        Duration::from_secs(10),
        || (writer.acks_since(healed_at) >= 5).then_some(()),
    );

    let gap = writer.longest_gap(&writer.acks());
    let (acks, attempted) = writer.stop();
    eprintln!("longest time without an acknowledged write: {gap:?}");
    // Two leaders never acted: nothing the old leader was sent once the new one led was
    // acknowledged by it.
    let stale: Vec<&Ack> = acks
        .iter()
        .filter(|a| a.by == old_authority && a.sent >= new_seen_at)
        .collect();
    if !stale.is_empty() {
        ha.fail(&format!(
            "the deposed leader acknowledged writes sent after the new leader led: {stale:?}"
        ));
    }
    assert_nothing_lost(&ha, &acks, attempted);
}

/// The index of the etcd raft leader, from `POST /v3/maintenance/status` of the members.
fn etcd_raft_leader(ha: &HaLab) -> Option<usize> {
    let http = client(Duration::from_secs(2));
    let mut leader = None;
    let mut ids = Vec::new();
    for i in 0..ha.etcd.len() {
        let v: Value = http
            .post(format!("{}/v3/maintenance/status", ha.etcd.client_url(i)))
            .json(&json!({}))
            .send()
            .ok()?
            .json()
            .ok()?;
        ids.push(v["header"]["member_id"].as_str()?.to_owned());
        let l = v["leader"].as_str()?.to_owned();
        if leader.get_or_insert(l.clone()) != &l {
            return None;
        }
    }
    let leader = leader?;
    ids.iter().position(|id| *id == leader)
}

#[test]
fn writes_survive_the_kill_of_an_etcd_follower_and_of_the_raft_leader() {
    let Some(mut ha) = HaLab::start("etcd kill") else {
        return;
    };
    let first = ha.leader(Duration::from_secs(10));
    let writer = ha.writer("e");
    ha.wait("writes acknowledged", Duration::from_secs(10), || {
        (writer.acks().len() >= 5).then_some(())
    });
    let raft_leader = ha.wait("the etcd raft leader", Duration::from_secs(10), || {
        etcd_raft_leader(&ha)
    });
    let follower = (raft_leader + 1) % 3;
    for (what, member) in [("follower", follower), ("raft leader", raft_leader)] {
        let killed_at = Instant::now();
        ha.etcd.kill9(member).expect("kill etcd member");
        ha.wait(
            &format!("writes acknowledged with the etcd {what} {member} dead"),
            Duration::from_secs(15),
            || (writer.acks_since(killed_at) >= 10).then_some(()),
        );
        eprintln!(
            "etcd {what} {member} killed: 10 writes acknowledged after {:?}",
            killed_at.elapsed()
        );
        ha.rt
            .block_on(ha.etcd.restart(member))
            .expect("restart etcd member");
        let back_at = Instant::now();
        ha.wait(
            &format!("writes acknowledged after etcd {member} restarted"),
            Duration::from_secs(10),
            || (writer.acks_since(back_at) >= 5).then_some(()),
        );
    }
    let gap = writer.longest_gap(&writer.acks());
    let (acks, attempted) = writer.stop();
    eprintln!("longest time without an acknowledged write: {gap:?}");
    assert_nothing_lost(&ha, &acks, attempted);
    // One master leads (the same one, unless an etcd election outlasted its lease).
    let last = ha.leader(Duration::from_secs(10));
    eprintln!("leading master before the kills: {first}, after: {last}");
}

#[test]
fn restarting_every_agent_in_turn_keeps_every_task_and_pid() {
    let Some(mut ha) = HaLab::start("agent restarts") else {
        return;
    };
    let app = json!({
        "id": "/r/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 3,
        "constraints": [["hostname", "UNIQUE"]]
    });
    let before = ha.deploy(&app, 3);
    eprintln!("tasks and pids: {before:?}");
    for i in 0..3 {
        ha.agents[i]
            .as_mut()
            .expect("agent")
            .kill9()
            .expect("kill agent");
        // The master notices the lost connection (or the agent comes back before it does).
        let start = Instant::now();
        while ha.agent_active(i) && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(100));
        }
        ha.start_agent(i);
        let log = ha.agents[i].as_ref().expect("agent").log_path().to_owned();
        ha.wait(
            &format!("agent {i} to re-register"),
            Duration::from_secs(20),
            || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                (text.contains("registered with master") && ha.agent_active(i)).then_some(())
            },
        );
        let ids: BTreeSet<String> = ha.running("/r/web").into_keys().collect();
        let want: BTreeSet<String> = before.keys().cloned().collect();
        if ids != want {
            ha.fail(&format!(
                "after restarting agent {i} the running tasks are {ids:?}, not {want:?}"
            ));
        }
    }
    // Stable: the same tasks, the same live processes, no deployment, nothing replaced.
    std::thread::sleep(Duration::from_secs(2));
    let states = ha.task_states("/r/web");
    let want: BTreeMap<String, String> = before
        .keys()
        .map(|id| (id.clone(), "TASK_RUNNING".to_owned()))
        .collect();
    if states != want {
        ha.fail(&format!(
            "tasks after the restarts: {states:?}, want {want:?}"
        ));
    }
    for (id, pid) in &before {
        assert_eq!(ha.task_pid(id), Some(*pid), "task {id} was restarted");
        assert!(common::alive(*pid), "task {id} (pid {pid}) died");
    }
    let deps = ha.get("/v2/deployments");
    assert_eq!(deps, json!([]), "a deployment after the agent restarts");
}

#[test]
fn an_agent_partitioned_past_the_timeout_goes_unreachable_and_rejoins() {
    let Some(ha) = HaLab::start("agent partition") else {
        return;
    };
    // `keep` waits an hour before replacing an unreachable instance; `replace` replaces at once
    // (and kills the old task if it comes back). UNIQUE hostname on 3 agents: the replacement
    // has nowhere to go until the partitioned agent returns.
    let keep = json!({
        "id": "/u/keep", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 3,
        "constraints": [["hostname", "UNIQUE"]],
        "unreachableStrategy": {"inactiveAfterSeconds": 3600, "expungeAfterSeconds": 7200}
    });
    let replace = json!({
        "id": "/u/replace", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 3,
        "constraints": [["hostname", "UNIQUE"]],
        "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0}
    });
    let keep_before = ha.deploy(&keep, 3);
    let replace_before = ha.deploy(&replace, 3);
    let cut = 2;
    let cut_host = ha.agent_hosts[cut].ip().to_string();
    let on_cut = |tasks: &BTreeMap<String, String>| -> Vec<String> {
        tasks
            .iter()
            .filter(|(_, h)| **h == cut_host)
            .map(|(id, _)| id.clone())
            .collect()
    };
    let keep_cut = on_cut(&ha.running("/u/keep"));
    let replace_cut = on_cut(&ha.running("/u/replace"));
    assert_eq!(
        (keep_cut.len(), replace_cut.len()),
        (1, 1),
        "one task of each app on agent {cut}"
    );
    let (keep_cut, replace_cut) = (keep_cut[0].clone(), replace_cut[0].clone());

    let cut_at = Instant::now();
    for m in &ha.master_hosts {
        ha.lab()
            .partition(&ha.agent_hosts[cut], m)
            .expect("partition");
    }
    ha.wait(
        "the partitioned agent's task of /u/keep to be TASK_UNREACHABLE",
        Duration::from_secs(AGENT_TIMEOUT_SECS + 15),
        || {
            let s = ha.task_states("/u/keep");
            (s.get(&keep_cut).map(String::as_str) == Some("TASK_UNREACHABLE")).then_some(())
        },
    );
    let took = cut_at.elapsed();
    eprintln!(
        "TASK_UNREACHABLE {took:?} after the partition (agent timeout {AGENT_TIMEOUT_SECS} s)"
    );
    // The timeout runs from the agent's last message, which the partition may follow by up to
    // one heartbeat period (the master's default, 2 s).
    assert!(
        took >= Duration::from_secs(AGENT_TIMEOUT_SECS - AGENT_HEARTBEAT_SECS),
        "unreachable after {took:?}, before the {AGENT_TIMEOUT_SECS} s timeout less one \
         {AGENT_HEARTBEAT_SECS} s heartbeat"
    );
    // `replace` gave its unreachable instance up at once; its replacement cannot be placed.
    ha.wait(
        "/u/replace to drop its unreachable instance",
        Duration::from_secs(10),
        || (!ha.task_states("/u/replace").contains_key(&replace_cut)).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let keep_now = ha.task_states("/u/keep");
    let replace_now = ha.running("/u/replace");
    let keep_running = keep_now.values().filter(|s| *s == "TASK_RUNNING").count();
    if keep_now.len() != 3 || keep_running != 2 || replace_now.len() != 2 {
        ha.fail(&format!(
            "during the partition /u/keep has {keep_now:?} (want 2 running + 1 unreachable), \
             /u/replace runs {replace_now:?} (want 2: UNIQUE leaves its replacement nowhere)"
        ));
    }

    // Heal: the agent re-registers with its tasks; `keep` gets its task back, `replace` kills
    // the returning task and runs its replacement there.
    for m in &ha.master_hosts {
        ha.lab().heal(&ha.agent_hosts[cut], m).expect("heal");
    }
    let mut most = (0, 0);
    ha.wait(
        "both apps to run exactly 3 instances again",
        Duration::from_secs(40),
        || {
            let k = ha.running("/u/keep");
            let r = ha.running("/u/replace");
            most = (most.0.max(k.len()), most.1.max(r.len()));
            (k.len() == 3 && r.len() == 3 && !r.contains_key(&replace_cut)).then_some(())
        },
    );
    // Steady: exactly 3 each for a while.
    let steady = Instant::now();
    while steady.elapsed() < Duration::from_secs(3) {
        let (k, r) = (ha.running("/u/keep"), ha.running("/u/replace"));
        most = (most.0.max(k.len()), most.1.max(r.len()));
        if k.len() != 3 || r.len() != 3 {
            ha.fail(&format!(
                "not steady after the heal: /u/keep {k:?}, /u/replace {r:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!(
        "most running instances seen after the heal: /u/keep {}, /u/replace {}",
        most.0, most.1
    );
    assert!(
        most.0 <= 3 && most.1 <= 3,
        "more than 3 instances ran: {most:?}"
    );
    // `keep`: the very same tasks and processes.
    let keep_after: BTreeSet<String> = ha.running("/u/keep").into_keys().collect();
    assert_eq!(
        keep_after,
        keep_before.keys().cloned().collect(),
        "/u/keep's tasks changed"
    );
    for (id, pid) in &keep_before {
        assert_eq!(ha.task_pid(id), Some(*pid), "task {id} was restarted");
        assert!(common::alive(*pid), "task {id} (pid {pid}) died");
    }
    // `replace`: its old task on the healed agent was killed; the replacement runs there.
    let replace_after = ha.running("/u/replace");
    assert_eq!(on_cut(&replace_after).len(), 1, "{replace_after:?}");
    let old_pid = replace_before[&replace_cut];
    ha.wait(
        "the replaced task's process to end",
        Duration::from_secs(10),
        || (!common::alive(old_pid)).then_some(()),
    );
}
