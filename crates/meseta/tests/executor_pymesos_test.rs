//! Custom executors with pymesos 0.3.15's own drivers, unchanged: `tests/py/exec_framework.py`
//! (`MesosSchedulerDriver`) launches tasks that name one executor, `tests/py/exec_executor.py`
//! (`MesosExecutorDriver`), which the agent starts through the shim and which runs them over
//! `/api/v1/executor`. Checks the tasks reach TASK_FINISHED through the executor, framework
//! messages travel both ways, the executor gets the Mesos environment, and its exit reaches the
//! scheduler as a FAILURE with the wait status. Skips (with a reason) when pymesos is missing,
//! fails under `CI=true`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::Value;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// An agent that may run root's executor when the tests run as root (pymesos is installed in
/// root's own Python, which other users cannot reach).
fn cluster() -> Cluster {
    let root = nix::unistd::Uid::effective().is_root();
    let flags: &[&str] = if root { &["--allow-root"] } else { &[] };
    Cluster::with_flags(
        1,
        30.0,
        "cpus:4;mem:4096;disk:2048;ports:[34000-34099]",
        &[],
        flags,
    )
}

#[test]
fn pymesos_scheduler_and_executor_run_tasks_and_exchange_messages() {
    if !common::python_has("pymesos", "pymesos==0.3.15") {
        return;
    }
    let c = cluster();
    let out = c.dir.path().join("exec_framework.jsonl");
    let log = c.dir.path().join("exec_framework.log");
    let stderr = std::fs::File::create(&log).expect("log");
    let mut child = Command::new("python3")
        .arg(script("exec_framework.py"))
        .args(["--master", &format!("127.0.0.1:{}", c.port), "--out"])
        .arg(&out)
        .args(["--tasks", "3"])
        .stdin(Stdio::null())
        .stdout(stderr.try_clone().expect("clone"))
        .stderr(stderr)
        .spawn()
        .expect("spawn python3");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("framework timed out:\n{}", diagnostics(&c, &out, &log));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let events = read_jsonl(&out);
    assert!(
        status.success(),
        "framework failed ({status}):\n{}",
        diagnostics(&c, &out, &log)
    );

    // Every task went RUNNING then FINISHED, from the executor, with its id and data.
    for i in 0..3 {
        let id = format!("et{i}");
        let states: Vec<&Value> = events
            .iter()
            .filter(|e| e["event"] == "update" && e["task_id"] == id.as_str())
            .collect();
        let names: Vec<&str> = states.iter().filter_map(|e| e["state"].as_str()).collect();
        assert_eq!(names, ["TASK_RUNNING", "TASK_FINISHED"], "{id}: {states:?}");
        for s in &states {
            assert_eq!(s["executor_id"], "pyexec", "{s}");
            assert_eq!(s["source"], "SOURCE_EXECUTOR", "{s}");
            assert_eq!(s["has_uuid"], true, "{s}");
        }
        assert_eq!(states[0]["data"], "running", "status data is forwarded");
        assert_eq!(states[1]["message"], "done by the custom executor");
        let ran = format!("ran:{id}:payload-{i}");
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "message" && e["data"] == ran.as_str()),
            "executor → scheduler message {ran} missing:\n{}",
            diagnostics(&c, &out, &log)
        );
    }
    // Scheduler → executor → scheduler.
    assert!(events
        .iter()
        .any(|e| e["event"] == "message" && e["data"] == "pong:1"));
    // The executor's exit (code 3) came back as FAILURE with wait status 3 << 8.
    let lost = events
        .iter()
        .find(|e| e["event"] == "executor_lost")
        .expect("executor_lost event");
    assert_eq!(lost["executor_id"], "pyexec");
    assert_eq!(lost["status"], 768);

    // The executor saw one launch per task, the Mesos environment, and ran in its sandbox.
    let sandbox = find_executor_sandbox(&c.agent_work_dir(0)).expect("executor sandbox");
    let seen = read_jsonl(&sandbox.join("executor.jsonl"));
    let launches = seen.iter().filter(|e| e["event"] == "launch").count();
    assert_eq!(launches, 3, "{seen:?}");
    let reg = seen
        .iter()
        .find(|e| e["event"] == "registered")
        .expect("registered");
    let env = &reg["env"];
    assert_eq!(env["MESOS_EXECUTOR_ID"], "pyexec");
    assert_eq!(env["MESOS_SANDBOX"], sandbox.display().to_string());
    assert_eq!(env["MESOS_DIRECTORY"], sandbox.display().to_string());
    assert_eq!(
        env["MESOS_AGENT_ENDPOINT"],
        format!("127.0.0.1:{}", c.agent_ports[0])
    );
    assert_eq!(env["MESOS_CHECKPOINT"], "1");
    assert_eq!(env["MESOS_HTTP_COMMAND_EXECUTOR"], "0");
    assert_eq!(env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"], "2secs");
    assert!(env["MESOS_RECOVERY_TIMEOUT"].is_string());
    assert!(env["MESOS_FRAMEWORK_ID"].is_string());
    assert!(seen
        .iter()
        .any(|e| e["event"] == "message" && e["data"] == "ping:1"));
    assert!(seen.iter().any(|e| e["event"] == "exit" && e["code"] == 3));
}

fn find_executor_sandbox(work: &Path) -> Option<PathBuf> {
    let fws = std::fs::read_dir(work.join("executors")).ok()?;
    for fw in fws.flatten() {
        let dir = fw.path().join("pyexec").join("sandbox");
        if dir.is_dir() {
            return Some(dir);
        }
    }
    None
}

fn diagnostics(c: &Cluster, out: &Path, log: &Path) -> String {
    let agent_log = std::fs::read_to_string(c.dir.path().join("agent-0.log")).unwrap_or_default();
    let exec_log = find_executor_sandbox(&c.agent_work_dir(0))
        .map(|d| std::fs::read_to_string(d.join("stderr")).unwrap_or_default())
        .unwrap_or_default();
    format!(
        "events:\n{}\nframework log:\n{}\nexecutor stderr:\n{}\nagent log (tail):\n{}",
        std::fs::read_to_string(out).unwrap_or_default(),
        std::fs::read_to_string(log).unwrap_or_default(),
        exec_log,
        tail(&agent_log, 60)
    )
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
