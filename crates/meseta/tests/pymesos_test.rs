//! The `pymesos` package from PyPI (0.3.15), unchanged, as a framework on a real meseta cluster:
//! `tests/py/framework.py` drives `pymesos.MesosSchedulerDriver` against `/api/v1/scheduler` and
//! reports what it saw as JSON lines. Skips (with a reason) when python3 or pymesos is missing;
//! `.ci/run` installs pymesos, so CI runs these.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::Value;

/// Skip the test when pymesos cannot be imported here.
macro_rules! require_pymesos {
    () => {
        if !common::python_has("pymesos", "pymesos==0.3.15") {
            return;
        }
    };
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/framework.py")
}

/// One run of `framework.py`: the process, its JSON-lines output and its log.
struct Framework {
    child: Child,
    out: PathBuf,
    log: PathBuf,
}

impl Framework {
    fn start(c: &Cluster, name: &str, args: &[&str]) -> Framework {
        let out = c.dir.path().join(format!("{name}.jsonl"));
        let log = c.dir.path().join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("framework log");
        let stdout = stderr.try_clone().expect("framework log clone");
        let master = format!("127.0.0.1:{}", c.port);
        let child = Command::new("python3")
            .arg(script())
            .args(["--master", &master, "--out"])
            .arg(&out)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn python3 framework.py");
        Framework { child, out, log }
    }

    /// Every event written so far.
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn has_event(&self, name: &str) -> bool {
        self.events().iter().any(|e| e["event"] == name)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What to print when an assertion about this run fails.
    fn diagnostics(&self) -> String {
        let events: Vec<String> = self
            .events()
            .iter()
            .filter(|e| e["event"] != "update" && e["event"] != "launch")
            .map(Value::to_string)
            .collect();
        format!(
            "framework events (updates omitted):\n{}\nframework log (tail):\n{}",
            events.join("\n"),
            tail(&self.log_text(), 40)
        )
    }

    /// Wait for the event `name`; panics (with diagnostics) on timeout or an early exit.
    fn wait_event(&mut self, name: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.has_event(name) {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "framework exited ({st}) before '{name}'\n{}",
                    self.diagnostics()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for '{name}'\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "framework did not exit within {timeout:?}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The framework id from its `registered` event.
    fn framework_id(&self) -> Option<String> {
        self.events()
            .iter()
            .find(|e| e["event"] == "registered")
            .and_then(|e| e["framework_id"].as_str().map(str::to_string))
    }

    /// Task id → states received, in order.
    fn updates(&self) -> BTreeMap<String, Vec<Value>> {
        let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for e in self.events().into_iter().filter(|e| e["event"] == "update") {
            let id = e["task_id"].as_str().unwrap_or_default().to_string();
            m.entry(id).or_default().push(e);
        }
        m
    }

    /// pymesos logs these when the master's events or replies do not fit it.
    fn assert_no_driver_errors(&self) {
        let log = self.log_text();
        for bad in [
            "Missing `",
            "Unknown type",
            "Failed to send request",
            "Thread abort",
            "Failed to process event",
            "Traceback",
        ] {
            assert!(
                !log.contains(bad),
                "pymesos reported '{bad}'\n{}",
                self.diagnostics()
            );
        }
    }
}

impl Drop for Framework {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn task_ids(n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("t{i}")).collect()
}

/// `/master/state`'s entry for framework `id` among the active frameworks.
fn active_framework(c: &Cluster, id: &str) -> Option<Value> {
    c.get("/master/state")?["frameworks"]
        .as_array()?
        .iter()
        .find(|f| f["id"] == id)
        .cloned()
}

/// Framework `id` from `/master/state`, active or completed.
fn any_framework(c: &Cluster, id: &str) -> Option<Value> {
    let s = c.get("/master/state")?;
    ["frameworks", "completed_frameworks"]
        .into_iter()
        .filter_map(|k| s[k].as_array())
        .flatten()
        .find(|f| f["id"] == id)
        .cloned()
}

#[test]
fn pymesos_framework_launches_100_tasks_across_agents() {
    require_root!();
    require_pymesos!();
    let c = Cluster::new(3, 30.0);
    let mut fw = Framework::start(
        &c,
        "hundred",
        &[
            "--tasks",
            "100",
            "--command",
            "sleep 0.5",
            "--cpus",
            "0.1",
            "--mem",
            "32",
            "--timeout",
            "150",
        ],
    );
    let status = fw.wait_exit(Duration::from_secs(180));
    assert!(
        status.success(),
        "framework failed ({status})\n{}",
        fw.diagnostics()
    );
    fw.assert_no_driver_errors();
    let fw_id = fw.framework_id().expect("a registered event");

    // Every task went RUNNING then FINISHED, and each update pymesos acked carried a uuid.
    let updates = fw.updates();
    assert_eq!(
        updates.keys().cloned().collect::<BTreeSet<_>>(),
        task_ids(100)
    );
    for (id, ups) in &updates {
        let states: Vec<&str> = ups.iter().filter_map(|u| u["state"].as_str()).collect();
        assert!(
            states.contains(&"TASK_RUNNING") && states.last() == Some(&"TASK_FINISHED"),
            "task {id} saw {states:?}"
        );
        assert!(
            ups.iter().all(|u| u["has_uuid"] == true),
            "task {id}: executor updates must carry a uuid for pymesos to ack: {ups:?}"
        );
    }

    // The master agrees, and more than one agent ran them.
    let tasks: Vec<Value> = c
        .tasks()
        .into_iter()
        .filter(|t| t["framework_id"] == fw_id.as_str())
        .collect();
    let finished: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["state"] == "TASK_FINISHED")
        .collect();
    assert_eq!(finished.len(), 100, "tasks in /master/tasks: {tasks:?}");
    let agents: BTreeSet<&str> = finished
        .iter()
        .filter_map(|t| t["slave_id"].as_str())
        .collect();
    assert!(agents.len() > 1, "all 100 tasks ran on {agents:?}");

    // The driver's stop() sent TEARDOWN: the framework is no longer active.
    common::wait_for("the framework torn down", Duration::from_secs(10), || {
        active_framework(&c, &fw_id).is_none().then_some(())
    });
}

#[test]
fn pymesos_framework_failover_keeps_its_tasks() {
    require_root!();
    require_pymesos!();
    let c = Cluster::new(3, 30.0);
    let mut first = Framework::start(
        &c,
        "first",
        &[
            "--tasks",
            "5",
            "--command",
            "sleep 1000",
            "--failover-timeout",
            "300",
            "--hold",
        ],
    );
    first.wait_event("all_running", Duration::from_secs(60));
    first.assert_no_driver_errors();
    let fw_id = first.framework_id().expect("a registered event");
    let _ = first.child.kill(); // SIGKILL: no TEARDOWN, the connection just drops
    let _ = first.child.wait();

    // The master keeps the disconnected framework and its tasks.
    let f = common::wait_for(
        "the framework disconnected",
        Duration::from_secs(10),
        || active_framework(&c, &fw_id).filter(|f| f["connected"] == false),
    );
    assert_eq!(f["failover_timeout"], 300.0, "{f}");
    assert_eq!(f["tasks"].as_array().map(Vec::len), Some(5), "{f}");

    let go = c.dir.path().join("go");
    let go_arg = go.to_str().expect("utf8 path").to_string();
    let mut second = Framework::start(
        &c,
        "second",
        &[
            "--mode",
            "resume",
            "--tasks",
            "5",
            "--framework-id",
            &fw_id,
            "--failover-timeout",
            "300",
            "--go",
            &go_arg,
        ],
    );
    second.wait_event("reconciled", Duration::from_secs(60));
    assert!(second.has_event("reregistered"), "{}", second.diagnostics());
    assert!(!second.has_event("registered"), "{}", second.diagnostics());

    // Reconciliation answered TASK_RUNNING for each of the five, from the master, without uuid.
    let updates = second.updates();
    for id in task_ids(5) {
        let ups = updates.get(&id).cloned().unwrap_or_default();
        assert!(
            ups.iter().any(|u| u["state"] == "TASK_RUNNING"
                && u["reason"] == "REASON_RECONCILIATION"
                && u["has_uuid"] == false),
            "task {id}: no reconciliation TASK_RUNNING in {ups:?}"
        );
    }

    // The re-subscribed framework owns its five running tasks.
    let f = active_framework(&c, &fw_id).expect("framework still active");
    assert_eq!(f["connected"], true, "{f}");
    let running: BTreeSet<String> = f["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(running, task_ids(5), "{f}");

    // Now it kills them and tears down.
    std::fs::write(&go, b"go").expect("go file");
    let status = second.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "second run failed ({status})\n{}",
        second.diagnostics()
    );
    second.assert_no_driver_errors();
    let killed = c
        .tasks()
        .into_iter()
        .filter(|t| t["framework_id"] == fw_id.as_str() && t["state"] == "TASK_KILLED")
        .count();
    assert_eq!(killed, 5);
    common::wait_for("the framework torn down", Duration::from_secs(10), || {
        active_framework(&c, &fw_id).is_none().then_some(())
    });
}

#[test]
fn pymesos_driver_calls_are_all_accepted() {
    require_root!();
    require_pymesos!();
    let c = Cluster::new(1, 30.0);
    // Without --failover-timeout: pymesos sends its default of 100 s.
    let mut fw = Framework::start(&c, "calls", &["--mode", "calls", "--timeout", "60"]);
    fw.wait_event("registered", Duration::from_secs(30));
    let fw_id = fw.framework_id().expect("a registered event");
    // (It may already be torn down: it makes its calls as soon as it is subscribed.)
    let f = common::wait_for(
        "the framework in /master/state",
        Duration::from_secs(10),
        || any_framework(&c, &fw_id),
    );
    assert_eq!(f["failover_timeout"], 100.0, "{f}");

    let status = fw.wait_exit(Duration::from_secs(90));
    let calls: Vec<Value> = fw
        .events()
        .into_iter()
        .filter(|e| e["event"] == "call")
        .collect();
    let failed: Vec<&Value> = calls.iter().filter(|e| e["ok"] != true).collect();
    assert!(failed.is_empty(), "calls answered non-2xx: {failed:?}");
    assert_eq!(calls.len(), 13, "{}", fw.diagnostics());
    assert!(
        status.success(),
        "framework failed ({status})\n{}",
        fw.diagnostics()
    );
    fw.assert_no_driver_errors();

    // Kill and reconcile of an unknown task: TASK_LOST from the master, without uuid (no ack).
    let lost = fw.updates().remove("no-such-task").unwrap_or_default();
    assert!(
        lost.len() >= 2
            && lost.iter().all(|u| u["state"] == "TASK_LOST"
                && u["source"] == "SOURCE_MASTER"
                && u["has_uuid"] == false),
        "{lost:?}"
    );
    common::wait_for("the framework torn down", Duration::from_secs(10), || {
        active_framework(&c, &fw_id).is_none().then_some(())
    });
}

#[test]
fn pymesos_framework_resubscribes_after_a_master_restart() {
    require_root!();
    require_pymesos!();
    let mut c = Cluster::new(2, 30.0);
    let mut fw = Framework::start(
        &c,
        "restart",
        &["--tasks", "3", "--command", "sleep 1000", "--hold"],
    );
    fw.wait_event("all_running", Duration::from_secs(60));
    let fw_id = fw.framework_id().expect("a registered event");

    // kill -9 the master: pymesos sees the stream break, retries with backoff, and re-subscribes
    // with its framework id once a master answers again.
    c.master.as_mut().expect("master").kill9();
    c.start_master();
    c.wait_agents(2);
    fw.wait_event("reregistered", Duration::from_secs(60));
    assert!(fw.has_event("disconnected"), "{}", fw.diagnostics());
    let f = common::wait_for(
        "the framework connected with its 3 running tasks",
        Duration::from_secs(20),
        || {
            active_framework(&c, &fw_id).filter(|f| {
                f["connected"] == true
                    && f["tasks"].as_array().is_some_and(|ts| {
                        ts.len() == 3 && ts.iter().all(|t| t["state"] == "TASK_RUNNING")
                    })
            })
        },
    );
    assert_eq!(f["failover_timeout"], 100.0, "pymesos' default: {f}");
    assert!(
        !fw.log_text().contains("Thread abort"),
        "{}",
        fw.diagnostics()
    );
}
