//! Helpers for end-to-end tests: run the real `meseta` binary as separate master, agent and CLI
//! processes on free loopback ports, and read the master's HTTP API.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod browser;
pub mod docker;

pub const MESETA: &str = env!("CARGO_BIN_EXE_meseta");

/// A reply of the master's HTTP API: status, headers and JSON body (`Null` when not JSON).
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The header `name` as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// Is this process allowed to create cgroups (root on Linux)?
pub fn can_isolate() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skip a test (with a visible reason) when it cannot run here; fail it under `CI=true`.
#[macro_export]
macro_rules! require_root {
    () => {
        if !common::can_isolate() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "needs root to create cgroups and CI=true"
            );
            eprintln!("SKIPPED: needs root to create cgroups");
            return;
        }
    };
}

/// A temp dir that the unprivileged users tasks run as may traverse (to their sandboxes below
/// it), but not list.
pub fn task_reachable_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    dir
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Poll `f` until it returns Some, or panic after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process killed with SIGKILL on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn spawn(args: &[&str], log: &Path) -> Proc {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file clone");
    let child = Command::new(MESETA)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn meseta");
    Proc {
        child,
        log: log.to_path_buf(),
    }
}

/// A master and agents as separate processes, with their own dirs.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub master: Option<Proc>,
    pub agents: Vec<Option<Proc>>,
    pub agent_ports: Vec<u16>,
    pub agent_timeout: f64,
    pub resources: String,
    /// Extra flags of `meseta master`.
    pub master_flags: Vec<String>,
    /// Extra flags of `meseta agent` (for agents started after they are set).
    pub agent_flags: Vec<String>,
}

impl Cluster {
    pub fn new(agents: usize, agent_timeout: f64) -> Cluster {
        Cluster::with_resources(
            agents,
            agent_timeout,
            "cpus:4;mem:4096;disk:2048;ports:[31000-31999]",
        )
    }

    /// A cluster whose agents each offer `resources` (tests that run servers on their ports in
    /// parallel give each cluster its own port range).
    pub fn with_resources(agents: usize, agent_timeout: f64, resources: &str) -> Cluster {
        Cluster::with_master_flags(agents, agent_timeout, resources, &[])
    }

    /// As [`Cluster::with_resources`], the master started with `master_flags` too.
    pub fn with_master_flags(
        agents: usize,
        agent_timeout: f64,
        resources: &str,
        master_flags: &[&str],
    ) -> Cluster {
        Cluster::with_flags(agents, agent_timeout, resources, master_flags, &[])
    }

    /// As [`Cluster::with_master_flags`], every agent started with `agent_flags` too.
    pub fn with_flags(
        agents: usize,
        agent_timeout: f64,
        resources: &str,
        master_flags: &[&str],
        agent_flags: &[&str],
    ) -> Cluster {
        let mut c = Cluster {
            dir: task_reachable_dir(),
            port: free_port(),
            master: None,
            agents: Vec::new(),
            // 0 until each agent's first start picks a free port itself (a port chosen here and
            // bound later could be taken in between by another test's process).
            agent_ports: vec![0; agents],
            agent_timeout,
            resources: resources.to_string(),
            master_flags: master_flags.iter().map(|f| f.to_string()).collect(),
            agent_flags: agent_flags.iter().map(|f| f.to_string()).collect(),
        };
        c.start_master();
        for i in 0..agents {
            c.agents.push(None);
            c.start_agent(i);
        }
        c.wait_agents(agents);
        c
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn start_master(&mut self) {
        let data = self.dir.path().join("master");
        let log = self.dir.path().join(format!(
            "master-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let listen = format!("127.0.0.1:{}", self.port);
        let timeout = self.agent_timeout.to_string();
        let mut args = vec![
            "master",
            "--listen",
            &listen,
            "--data-dir",
            data.to_str().expect("utf8"),
            "--agent-timeout",
            &timeout,
        ];
        args.extend(self.master_flags.iter().map(String::as_str));
        self.master = Some(spawn(&args, &log));
        wait_for("master /health", Duration::from_secs(15), || {
            reqwest::blocking::get(format!("{}/health", self.url()))
                .ok()
                .filter(|r| r.status().is_success())
        });
    }

    pub fn agent_work_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("agent-{i}"))
    }

    pub fn start_agent(&mut self, i: usize) {
        let work = self.agent_work_dir(i);
        let log = self.dir.path().join(format!("agent-{i}.log"));
        let listen = format!("127.0.0.1:{}", self.agent_ports[i]);
        let host = format!("agent-{i}");
        let url = self.url();
        let mut args = vec![
            "agent",
            "--master",
            &url,
            "--work-dir",
            work.to_str().expect("utf8"),
            "--listen",
            &listen,
            "--resources",
            &self.resources,
            "--hostname",
            &host,
        ];
        args.extend(self.agent_flags.iter().map(String::as_str));
        let p = spawn(&args, &log);
        if self.agent_ports[i] == 0 {
            // Remember the port the agent bound, so that a restart comes back on it.
            let port = wait_for("the agent's address", Duration::from_secs(30), || {
                let text = std::fs::read_to_string(&log).ok()?;
                let rest = text.split("meseta agent serving on http://").nth(1)?;
                let addr = rest.lines().next()?;
                addr.rsplit(':').next()?.trim().parse::<u16>().ok()
            });
            self.agent_ports[i] = port;
        }
        self.agents[i] = Some(p);
    }

    pub fn wait_agents(&self, n: usize) {
        let start = Instant::now();
        // Generous: on a loaded CI machine many clusters start at once.
        let timeout = Duration::from_secs(60);
        loop {
            let active = self
                .get("/master/slaves")
                .and_then(|s| {
                    s["slaves"]
                        .as_array()
                        .map(|a| a.iter().filter(|a| a["active"] == true).count())
                })
                .unwrap_or(0);
            if active == n {
                return;
            }
            if start.elapsed() > timeout {
                let logs: Vec<String> = self
                    .agents
                    .iter()
                    .flatten()
                    .map(|p| {
                        let t = p.log_text();
                        let tail: Vec<&str> = t.lines().rev().take(10).collect();
                        format!(
                            "{}:\n{}",
                            p.log.display(),
                            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                        )
                    })
                    .collect();
                panic!("timed out after {timeout:?} waiting for {n} active agents ({active} active); agent logs:\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `method path` to the master with an optional JSON body.
    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Reply {
        let (status, headers, text) = self.call_text(method, path, None, body);
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// Sends `method path` with a bearer `token` (if any) and a JSON body (if any); the status,
    /// headers and the body as text.
    pub fn call_text(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let client = reqwest::blocking::Client::new();
        let mut req = client.request(method, format!("{}{path}", self.url()));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().unwrap_or_default())
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        let r = reqwest::blocking::get(format!("{}{path}", self.url())).ok()?;
        r.json().ok()
    }

    /// Run a CLI command to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(MESETA)
            .args(args)
            .env("MESETA_MASTER", self.url())
            .output()
            .expect("run meseta cli")
    }

    /// Start `meseta execute` in the background.
    pub fn execute_bg(&self, name: &str, command: &str, resources: &str) -> Proc {
        let log = self.dir.path().join(format!("execute-{name}.log"));
        let out = std::fs::File::create(&log).expect("log");
        let err = out.try_clone().expect("log");
        let child = Command::new(MESETA)
            .args([
                "execute",
                "--name",
                name,
                "--command",
                command,
                "--resources",
                resources,
            ])
            .env("MESETA_MASTER", self.url())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn execute");
        Proc { child, log }
    }

    /// Every task of every framework (active and completed) from /master/tasks.
    pub fn tasks(&self) -> Vec<Value> {
        self.get("/master/tasks")
            .and_then(|v| v["tasks"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The task whose name is `name` (the latest one), once it is in `state`.
    pub fn wait_task_state(&self, name: &str, state: &str, timeout: Duration) -> Value {
        wait_for(&format!("task {name} in {state}"), timeout, || {
            self.tasks()
                .into_iter()
                .rev()
                .find(|t| t["name"] == name && t["state"] == state)
        })
    }

    /// The agent's task dir of a task.
    pub fn task_dir(&self, agent: usize, task_id: &str) -> PathBuf {
        self.agent_work_dir(agent).join("tasks").join(task_id)
    }

    pub fn task_pid(&self, agent: usize, task_id: &str) -> Option<i32> {
        std::fs::read_to_string(self.task_dir(agent, task_id).join("task.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Cluster {
    /// Kill every task left behind by killed agents (their shims then clean up the cgroups).
    fn drop(&mut self) {
        for i in 0..self.agent_ports.len() {
            let tasks = self.agent_work_dir(i).join("tasks");
            let Ok(entries) = std::fs::read_dir(&tasks) else {
                continue;
            };
            for e in entries.flatten() {
                if let Some(pid) = std::fs::read_to_string(e.path().join("task.pid"))
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(-pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        // The shims removed the task cgroups; remove the (now empty) per-agent ones too.
        for i in 0..self.agent_ports.len() {
            if let Ok(id) = std::fs::read_to_string(self.agent_work_dir(i).join("agent_id")) {
                remove_agent_cgroups(id.trim());
            }
        }
    }
}

/// Remove `meseta/<agent_id>` in every cgroup hierarchy (v1 controllers or the v2 root).
pub fn remove_agent_cgroups(agent_id: &str) {
    if agent_id.is_empty() || agent_id.contains('/') {
        return;
    }
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join("meseta").join(agent_id)];
    for c in ["cpu", "cpuacct", "memory", "pids", "cpu,cpuacct"] {
        dirs.push(root.join(c).join("meseta").join(agent_id));
    }
    for d in dirs {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                let _ = std::fs::remove_dir(e.path());
            }
        }
        let _ = std::fs::remove_dir(&d);
    }
}

pub fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

/// Whether python3 can import `module` (a client library some tests drive, installed with
/// `pip install <pip>`); says that the test is skipped when it cannot — or fails it when `CI=true`,
/// where a skipped test would prove nothing.
pub fn python_has(module: &str, pip: &str) -> bool {
    let why = match Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
    {
        Ok(o) if o.status.success() => return true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        Err(e) => format!("python3 is not available: {e}"),
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "python3 cannot import {module} (pip install {pip}) and CI=true: {why}"
    );
    eprintln!("SKIPPED: python3 cannot import {module} (pip install {pip}): {why}");
    false
}

/// Run `tests/py/<script> <args…>` with python3; it must exit 0 having printed `OK`.
pub fn run_python_script(script: &str, args: &[&str]) {
    let path = format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
