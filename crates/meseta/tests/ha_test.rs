//! High availability end to end, with the real binary: three `meseta master --store etcd://…`
//! processes on one real etcd and two agents given the list of masters.
//!
//! - kill -9 of the leader: another master leads and answers `/v2/apps` promptly, every app,
//!   job, quota and weight is there, running tasks are untouched (same pids), and the rolling
//!   deployment the leader was in the middle of completes without ever running more instances
//!   than `maximumOverCapacity` allows;
//! - a leader frozen (SIGSTOP) past its lease, then woken, is deposed: the write it is sent
//!   does not land, and it steps down and redirects to the new leader;
//! - DNS (`--dns-listen` on every master) is answered by whichever master leads, from its live
//!   state, before and after a leader kill.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{alive, free_port, task_reachable_dir, wait_for, Proc, MESETA};
use meseta_testkit::etcd::EtcdServer;
use serde_json::{json, Value};

const LEASE: &str = "2s";

struct Ha {
    dir: tempfile::TempDir,
    store: String,
    ports: Vec<u16>,
    masters: Vec<Option<Proc>>,
    agents: Vec<Proc>,
    /// DNS ports of the masters (`--dns-listen`), when set before they start.
    dns: Vec<u16>,
    _etcd: EtcdServer,
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

fn no_redirects() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

impl Ha {
    fn start(masters: usize, agents: usize) -> Option<Ha> {
        let mut ha = Ha::prepare(masters)?;
        for i in 0..masters {
            ha.start_master(i);
        }
        for i in 0..agents {
            ha.start_agent(i);
        }
        Some(ha)
    }

    /// etcd up, nothing else started yet.
    fn prepare(masters: usize) -> Option<Ha> {
        if !meseta_testkit::etcd::etcd_or_skip("ha_test") {
            return None;
        }
        let etcd = EtcdServer::start().expect("start etcd");
        Some(Ha {
            dir: task_reachable_dir(),
            store: etcd.url(),
            ports: (0..masters).map(|_| free_port()).collect(),
            masters: (0..masters).map(|_| None).collect(),
            agents: Vec::new(),
            dns: Vec::new(),
            _etcd: etcd,
        })
    }

    fn host_list(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    fn master_list(&self) -> String {
        (0..self.ports.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start_master(&mut self, i: usize) {
        let log = self.dir.path().join(format!(
            "master-{i}-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let listen = format!("127.0.0.1:{}", self.ports[i]);
        let dns = self.dns.get(i).map(|p| format!("127.0.0.1:{p}"));
        let mut args = vec![
            "master",
            "--listen",
            &listen,
            "--store",
            &self.store,
            "--lease-ttl",
            LEASE,
            "--hostname",
            "127.0.0.1",
        ];
        if let Some(d) = &dns {
            args.extend(["--dns-listen", d.as_str()]);
        }
        self.masters[i] = Some(common::spawn(&args, &log));
        let url = self.url(i);
        wait_for("master /health", Duration::from_secs(20), || {
            http()
                .get(format!("{url}/health"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        });
    }

    fn start_agent(&mut self, i: usize) {
        let work = self.dir.path().join(format!("agent-{i}"));
        let log = self.dir.path().join(format!("agent-{i}.log"));
        let host = format!("agent-{i}");
        let masters = self.master_list();
        self.agents.push(common::spawn(
            &[
                "agent",
                "--master",
                &masters,
                "--work-dir",
                work.to_str().expect("utf8"),
                "--listen",
                "127.0.0.1:0",
                "--resources",
                "cpus:4;mem:4096;disk:2048;ports:[31000-31999]",
                "--hostname",
                &host,
            ],
            &log,
        ));
    }

    /// Index of the leading master, as every live master reports it.
    fn leader(&self, within: Duration) -> usize {
        wait_for("one leader", within, || {
            let mut seen = BTreeSet::new();
            for (i, m) in self.masters.iter().enumerate() {
                if m.is_none() {
                    continue;
                }
                let r = no_redirects()
                    .get(format!("{}/master/redirect", self.url(i)))
                    .send()
                    .ok()?;
                let loc = r.headers().get("location")?.to_str().ok()?.to_string();
                seen.insert(loc);
            }
            if seen.len() != 1 {
                return None;
            }
            let loc = seen.into_iter().next()?;
            let port: u16 = loc.rsplit(':').next()?.parse().ok()?;
            let i = self.ports.iter().position(|&p| p == port)?;
            // The one named must itself lead (answer, not redirect).
            let r = no_redirects()
                .get(format!("{}/v2/apps", self.url(i)))
                .send()
                .ok()?;
            r.status().is_success().then_some(i)
        })
    }

    /// Any live master, following redirects to the leader.
    fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        for (i, m) in self.masters.iter().enumerate() {
            if m.is_none() {
                continue;
            }
            let mut req = http().request(method.clone(), format!("{}{path}", self.url(i)));
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

    fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, path, None);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    fn wait_agents(&self, n: usize) {
        wait_for(
            &format!("{n} active agents"),
            Duration::from_secs(60),
            || {
                let (s, v) = self.call(reqwest::Method::GET, "/master/slaves", None);
                let active = v["slaves"]
                    .as_array()
                    .map(|a| a.iter().filter(|a| a["active"] == true).count())
                    .unwrap_or(0);
                (s == 200 && active == n).then_some(())
            },
        );
    }

    fn running_tasks(&self, app: &str) -> Vec<Value> {
        let (s, v) = self.call(reqwest::Method::GET, &format!("/v2/apps{app}/tasks"), None);
        if s != 200 {
            return Vec::new();
        }
        v["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .collect()
    }

    /// pid of a task from its agent's task dir (either agent).
    fn task_pid(&self, task_id: &str) -> Option<i32> {
        (0..self.agents.len()).find_map(|i| {
            std::fs::read_to_string(
                self.dir
                    .path()
                    .join(format!("agent-{i}"))
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

    fn kill_tasks(&self, agents: usize) {
        for i in 0..agents {
            let tasks = self.dir.path().join(format!("agent-{i}")).join("tasks");
            for e in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
                if let Some(pid) = std::fs::read_to_string(e.path().join("task.pid"))
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(-pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        self.masters.iter_mut().for_each(|m| drop(m.take()));
        // Agents first (so none restarts a task), then their tasks, found in their work dirs.
        let agents = self.agents.len();
        self.agents.clear();
        self.kill_tasks(agents);
        std::thread::sleep(Duration::from_millis(300));
        for i in 0..4 {
            let id_file = self.dir.path().join(format!("agent-{i}")).join("agent_id");
            if let Ok(id) = std::fs::read_to_string(id_file) {
                common::remove_agent_cgroups(id.trim());
            }
        }
    }
}

#[test]
fn leader_kill_loses_nothing_and_the_deployment_completes() {
    require_root!();
    let Some(mut ha) = Ha::start(3, 2) else {
        return;
    };
    let first = ha.leader(Duration::from_secs(20));
    ha.wait_agents(2);

    // State of every kind.
    let app = json!({
        "id": "/ha/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 2,
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0}
    });
    let (s, v) = ha.call(reqwest::Method::POST, "/v2/apps", Some(&app));
    assert_eq!(s, 201, "{v}");
    let job = json!({"name": "ha-job", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT24H",
                     "owner": "ops@example.com", "epsilon": "PT60S"});
    let (s, v) = ha.call(reqwest::Method::POST, "/scheduler/iso8601", Some(&job));
    assert!(s == 204 || s == 200, "{s} {v}");
    let (s, v) = ha.call(
        reqwest::Method::POST,
        "/quota",
        Some(&json!({"role": "prod", "guarantee": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}}]})),
    );
    assert!(s == 200 || s == 201, "quota: {s} {v}");
    let (s, v) = ha.call(
        reqwest::Method::PUT,
        "/master/weights",
        Some(&json!([{"role": "prod", "weight": 3.0}])),
    );
    assert_eq!(s, 200, "weights: {v}");
    let slaves = ha.get("/master/slaves");
    let agent = slaves["slaves"][0]["id"]
        .as_str()
        .expect("agent id")
        .to_string();
    let resources = serde_json::to_string(
        &meseta_types::Resources::parse("cpus(db):0.5;mem(db):64").expect("resources"),
    )
    .expect("json");
    let leader_url = ha.url(first);
    let r = http()
        .post(format!("{leader_url}/master/reserve"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("slaveId={agent}&resources={resources}"))
        .send()
        .expect("reserve");
    assert_eq!(r.status(), 202, "{:?}", r.text());
    let old_tasks = wait_for("2 running instances", Duration::from_secs(30), || {
        let t = ha.running_tasks("/ha/web");
        (t.len() == 2).then_some(t)
    });
    let old_pids: Vec<(String, i32)> = old_tasks
        .iter()
        .map(|t| {
            let id = t["id"].as_str().expect("id").to_string();
            let pid = wait_for("task pid", Duration::from_secs(10), || ha.task_pid(&id));
            (id, pid)
        })
        .collect();

    // A rolling restart whose new tasks become healthy only after 4 s each: the leader dies in
    // the middle of it.
    let update = json!({
        "cmd": "sleep 4; touch ready; sleep 1000",
        "healthChecks": [{"protocol": "COMMAND", "command": {"value": "test -f ready"},
                          "gracePeriodSeconds": 30, "intervalSeconds": 1, "timeoutSeconds": 2,
                          "maxConsecutiveFailures": 30}]
    });
    let (s, v) = ha.call(reqwest::Method::PUT, "/v2/apps/ha/web", Some(&update));
    assert_eq!(s, 200, "{v}");
    std::thread::sleep(Duration::from_millis(1500));

    let killed_at = Instant::now();
    ha.masters[first].take().expect("leader").kill9();
    let apps = wait_for("a new leader's /v2/apps", Duration::from_secs(15), || {
        let (s, v) = ha.call(reqwest::Method::GET, "/v2/apps", None);
        (s == 200).then_some(v)
    });
    let took = killed_at.elapsed();
    eprintln!("new leader answered /v2/apps {took:?} after the kill");
    assert!(
        took < Duration::from_secs(6),
        "takeover took {took:?} (lease {LEASE})"
    );
    let second = ha.leader(Duration::from_secs(10));
    assert_ne!(second, first);
    assert_eq!(apps["apps"][0]["id"], "/ha/web", "{apps}");
    let jobs = ha.get("/scheduler/jobs");
    assert!(
        jobs.as_array()
            .is_some_and(|j| j.iter().any(|j| j["name"] == "ha-job")),
        "{jobs}"
    );
    let roles = ha.get("/master/roles");
    assert!(roles.to_string().contains("prod"), "{roles}");
    let quota = ha.get("/master/quota");
    assert!(quota.to_string().contains("prod"), "{quota}");
    let reserved = wait_for(
        "the reservation after the takeover",
        Duration::from_secs(30),
        || {
            let s = ha.get("/master/slaves");
            let a = s["slaves"]
                .as_array()?
                .iter()
                .find(|a| a["id"] == agent.as_str())?
                .clone();
            (a["reserved_resources"]["db"]["cpus"] == 0.5).then_some(a)
        },
    );
    assert_eq!(
        reserved["reserved_resources"]["db"]["mem"], 64.0,
        "{reserved}"
    );

    // The deployment completes; never more than 2 instances (maximumOverCapacity 0) at once.
    let mut most = 0;
    wait_for(
        "the deployment to complete",
        Duration::from_secs(90),
        || {
            let running = ha.running_tasks("/ha/web");
            most = most.max(running.len());
            let (_, deps) = ha.call(reqwest::Method::GET, "/v2/deployments", None);
            let done = deps.as_array().is_some_and(|d| d.is_empty());
            let healthy = running
                .iter()
                .filter(|t| t["healthCheckResults"][0]["alive"] == true)
                .count();
            (done && healthy == 2).then_some(())
        },
    );
    assert!(
        most <= 2,
        "ran {most} instances at once; maximumOverCapacity is 0"
    );
    // The tasks the old leader had started and the new one did not replace were untouched:
    // any old task still listed runs with the same pid.
    let now_running: Vec<String> = ha
        .running_tasks("/ha/web")
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    for (id, pid) in &old_pids {
        if now_running.contains(id) {
            assert_eq!(ha.task_pid(id), Some(*pid), "task {id} was restarted");
            assert!(alive(*pid));
        }
    }
}

#[test]
fn a_frozen_leader_is_deposed_and_its_write_does_not_land() {
    require_root!();
    let Some(ha) = Ha::start(2, 0) else {
        return;
    };
    let first = ha.leader(Duration::from_secs(20));
    let pid = nix::unistd::Pid::from_raw(ha.masters[first].as_ref().expect("leader").pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("stop");
    // The other master takes over once the frozen one's lease expires.
    let other = 1 - first;
    wait_for("the other master to lead", Duration::from_secs(15), || {
        no_redirects()
            .get(format!("{}/v2/apps", ha.url(other)))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
    });
    // Send the old leader a write, then wake it: it still thinks it leads, but nothing it
    // writes may land.
    let stale_url = format!("{}/v2/apps", ha.url(first));
    let writer = std::thread::spawn(move || {
        no_redirects()
            .post(stale_url)
            .json(
                &json!({"id": "/stale", "cmd": "sleep 1", "cpus": 0.1, "mem": 16, "instances": 0}),
            )
            .timeout(Duration::from_secs(20))
            .send()
            .map(|r| r.status().as_u16())
    });
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("cont");
    let status = writer.join().expect("join");
    eprintln!("the deposed leader answered the write with {status:?}");
    assert!(
        !matches!(status, Ok(200..=299)),
        "a deposed leader acknowledged a write: {status:?}"
    );
    // It steps down and redirects to the new leader; the write is nowhere.
    wait_for(
        "the old leader to redirect",
        Duration::from_secs(10),
        || {
            let r = no_redirects()
                .get(format!("{}/v2/apps", ha.url(first)))
                .send()
                .ok()?;
            (r.status() == 307).then_some(())
        },
    );
    let apps = ha.get("/v2/apps");
    assert!(
        !apps.to_string().contains("/stale"),
        "the deposed leader's write landed: {apps}"
    );
    let out = Command::new(MESETA)
        .args(["app", "list", "--json"])
        .env("MESETA_MASTER", ha.master_list())
        .output()
        .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn meseta(args: &[&str]) -> std::process::Output {
    Command::new(MESETA)
        .args(args)
        .output()
        .expect("run meseta")
}

#[test]
fn a_dev_data_dir_restored_into_etcd_runs_under_three_masters_and_clients_ride_a_failover() {
    require_root!();
    if !common::python_has("marathon", "marathon==0.13.0")
        || !common::python_has("chronos", "chronos-python==1.2.1")
    {
        return;
    }
    let Some(mut ha) = Ha::prepare(3) else {
        return;
    };
    // A one-machine cluster with an app and a job.
    let dev_dir = ha.dir.path().join("dev");
    let port = free_port();
    let dev_url = format!("http://127.0.0.1:{port}");
    let mut dev = common::spawn(
        &[
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            dev_dir.to_str().expect("utf8"),
            "--agent-listen",
            "127.0.0.1:0",
        ],
        &ha.dir.path().join("dev.log"),
    );
    wait_for("meseta dev", Duration::from_secs(30), || {
        http()
            .get(format!("{dev_url}/v2/apps"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
    });
    let r = http()
        .post(format!("{dev_url}/v2/apps"))
        .json(
            &json!({"id": "/dev/web", "cmd": "sleep 100", "cpus": 0.1, "mem": 16, "instances": 0}),
        )
        .send()
        .expect("post app");
    assert_eq!(r.status(), 201);
    let r = http()
        .post(format!("{dev_url}/scheduler/iso8601"))
        .json(
            &json!({"name": "dev-job", "command": "true", "owner": "ops@example.com",
                      "schedule": "R/2099-01-01T00:00:00Z/PT24H", "epsilon": "PT60S"}),
        )
        .send()
        .expect("post job");
    assert!(r.status().is_success(), "{}", r.status());
    let snapshot = |base: &str| -> (Value, Value) {
        let get = |p: &str| -> Value {
            http()
                .get(format!("{base}{p}"))
                .send()
                .expect("get")
                .json()
                .expect("json")
        };
        (get("/v2/apps"), get("/scheduler/jobs"))
    };
    let before = snapshot(&dev_url);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("stop dev");
    let _ = dev.child.wait();

    // Its store, backed up and restored into the empty etcd.
    let file = ha.dir.path().join("dev.backup.json");
    let file = file.to_str().expect("utf8");
    let master_dir = dev_dir.join("master");
    let out = meseta(&[
        "backup",
        file,
        "--data-dir",
        master_dir.to_str().expect("utf8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = meseta(&["restore", file, "--store", &ha.store.clone()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Three masters run it: the same apps and jobs.
    for i in 0..3 {
        ha.start_master(i);
    }
    let first = ha.leader(Duration::from_secs(20));
    assert_eq!(snapshot(&ha.url(first)), before);

    // The marathon and chronos-python clients, given the list, ride a leader kill.
    let hosts = ha.host_list();
    common::run_python_script("ha_clients.py", &["before", &hosts]);
    ha.masters[first].take().expect("leader").kill9();
    ha.leader(Duration::from_secs(15));
    common::run_python_script("ha_clients.py", &["after", &hosts]);
}

/// A port free for both UDP and TCP on 127.0.0.1 (DNS binds both).
fn free_dns_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The ports of the SRV answers for `name` from the DNS server at `port` (`None`: no answer).
fn srv_ports(port: u16, name: &str) -> Option<Vec<u16>> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut q = Message::new(7, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::SRV));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    sock.send_to(&q.to_vec().ok()?, ("127.0.0.1", port)).ok()?;
    let mut buf = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let m = Message::from_vec(&buf[..n]).ok()?;
    let mut ports: Vec<u16> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.port),
            _ => None,
        })
        .collect();
    ports.sort_unstable();
    Some(ports)
}

#[test]
fn dns_is_answered_by_whichever_master_leads() {
    let Some(mut ha) = Ha::prepare(2) else {
        return;
    };
    ha.dns = (0..2).map(|_| free_dns_port()).collect();
    ha.start_master(0);
    ha.start_master(1);
    ha.start_agent(0);
    ha.wait_agents(1);
    let leader = ha.leader(Duration::from_secs(20));
    let app = json!({"id": "/dns/web", "cmd": "sleep 600", "cpus": 0.1, "mem": 16,
                     "instances": 2, "portDefinitions": [{"port": 0}]});
    let (status, body) = ha.call(reqwest::Method::POST, "/v2/apps", Some(&app));
    assert_eq!(status, 201, "{body}");
    let ports = wait_for("2 running tasks", Duration::from_secs(60), || {
        let mut p: Vec<u16> = ha
            .running_tasks("/dns/web")
            .iter()
            .filter_map(|t| t["ports"][0].as_u64())
            .filter_map(|p| u16::try_from(p).ok())
            .collect();
        p.sort_unstable();
        (p.len() == 2).then_some(p)
    });
    let name = "_web-dns._tcp.marathon.meseta.";
    wait_for("the leader's DNS answers", Duration::from_secs(30), || {
        srv_ports(ha.dns[leader], name).filter(|p| *p == ports)
    });

    // kill -9 of the leader: the new one answers the same names from its own state.
    if let Some(m) = ha.masters[leader].as_mut() {
        m.kill9();
    }
    ha.masters[leader] = None;
    let next = ha.leader(Duration::from_secs(20));
    assert_ne!(next, leader);
    wait_for(
        "the new leader's DNS answers",
        Duration::from_secs(20),
        || srv_ports(ha.dns[next], name).filter(|p| *p == ports),
    );
}
