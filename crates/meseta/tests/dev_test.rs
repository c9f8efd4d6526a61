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

/// Kills a child process on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dev_on(port: u16, dir: &std::path::Path, stderr: Stdio) -> std::process::Child {
    Command::new(MESETA)
        .args([
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir)
        .args(["--resources", "cpus:1;mem:256;disk:256"])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn dev")
}

/// Two `meseta dev` clusters on one host, each told only its master address: both agents
/// register (the second one does not fight the first for 5051). A master address already in use
/// is an error that names its cause once and the flag to pass.
#[test]
fn two_dev_clusters_share_a_host_and_a_busy_port_is_explained() {
    require_root!();
    let (d1, d2) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let (p1, p2) = (free_port(), free_port());
    let _a = Child(dev_on(p1, d1.path(), Stdio::null()));
    let _b = Child(dev_on(p2, d2.path(), Stdio::null()));
    for port in [p1, p2] {
        wait_for(
            &format!("dev on {port} to have its agent"),
            Duration::from_secs(30),
            || {
                let v: serde_json::Value =
                    reqwest::blocking::get(format!("http://127.0.0.1:{port}/master/slaves"))
                        .ok()?
                        .json()
                        .ok()?;
                (v["slaves"].as_array()?.iter().any(|s| s["active"] == true)).then_some(())
            },
        );
    }

    let d3 = tempfile::tempdir().expect("tmp");
    let third = dev_on(p1, d3.path(), Stdio::piped());
    let out = third.wait_with_output().expect("wait");
    assert!(!out.status.success(), "a second master on {p1} started");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.contains("--listen"), "{line}");
    let cause = "Address already in use";
    assert_eq!(line.matches(cause).count(), 1, "{line}");
}
