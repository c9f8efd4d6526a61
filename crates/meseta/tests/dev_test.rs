//! `meseta dev` serves a one-machine cluster and stops cleanly on Ctrl-C: tasks killed, no cgroup left.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{alive, free_port, wait_for, MESETA};

#[test]
fn dev_serves_then_ctrl_c_kills_tasks_and_leaves_no_cgroups() {
    require_root!();
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut dev = Command::new(MESETA)
        .args([
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--agent-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .args(["--resources", "cpus:2;mem:1024;disk:1024"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dev");
    wait_for(
        "dev to serve with its agent",
        Duration::from_secs(20),
        || {
            let v: serde_json::Value = reqwest::blocking::get(format!("{url}/master/slaves"))
                .ok()?
                .json()
                .ok()?;
            (v["slaves"].as_array()?.len() == 1).then_some(())
        },
    );
    let version: serde_json::Value = reqwest::blocking::get(format!("{url}/version"))
        .expect("version")
        .json()
        .expect("json");
    let v = version["version"].as_str().expect("version string");
    assert!(
        v.split('.').all(|p| p.parse::<u32>().is_ok()),
        "pymesos parses the version as digits: {v}"
    );

    let mut exec = Command::new(MESETA)
        .args([
            "execute",
            "--name",
            "devtask",
            "--command",
            "sleep 1000",
            "--resources",
            "cpus:0.1;mem:32",
        ])
        .env("MESETA_MASTER", &url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("execute");
    let task_id = wait_for("devtask RUNNING", Duration::from_secs(10), || {
        let v: serde_json::Value = reqwest::blocking::get(format!("{url}/master/tasks"))
            .ok()?
            .json()
            .ok()?;
        v["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["state"] == "TASK_RUNNING")
            .map(|t| t["id"].as_str().unwrap_or("").to_string())
    });
    let task_dir = dir.path().join("agent/tasks").join(&task_id);
    let pid: i32 = std::fs::read_to_string(task_dir.join("task.pid"))
        .expect("task.pid")
        .trim()
        .parse()
        .expect("pid");
    let agent_id = std::fs::read_to_string(dir.path().join("agent/agent_id")).expect("agent_id");
    assert!(alive(pid));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = wait_for("dev to stop", Duration::from_secs(20), || {
        dev.try_wait().ok().flatten()
    });
    assert!(status.success(), "dev exited with {status}");
    wait_for("the task to be gone", Duration::from_secs(5), || {
        (!alive(pid)).then_some(())
    });
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory");
    let agent_cg = if v1.exists() {
        v1.join("meseta")
    } else {
        std::path::PathBuf::from("/sys/fs/cgroup/meseta")
    }
    .join(agent_id.trim());
    assert!(
        !agent_cg.exists(),
        "cgroup left behind: {}",
        agent_cg.display()
    );
    let _ = exec.kill();
    let _ = exec.wait();
}
