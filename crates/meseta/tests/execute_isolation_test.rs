//! `meseta execute` runs a real, isolated task: its cgroup holds the limits, exit codes and the
//! memory limit come back as Mesos states, and `task kill` / `task logs` work.

mod common;

use std::time::Duration;

use common::Cluster;

fn cgroup_file(controller: &str, task_id: &str, file: &str) -> Option<String> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let base = if root.join("cgroup.controllers").exists() {
        root.join("meseta") // cgroup v2: one hierarchy
    } else {
        root.join(controller).join("meseta")
    };
    for agent in std::fs::read_dir(&base).ok()?.flatten() {
        let p = agent.path().join(task_id).join(file);
        if let Ok(s) = std::fs::read_to_string(&p) {
            return Some(s.trim().to_string());
        }
    }
    None
}

#[test]
fn sleep_task_runs_in_its_cgroup_with_cpu_and_memory_limits() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let mut exec = c.execute_bg("sleeper", "sleep 1000", "cpus:0.5;mem:64");
    let task = c.wait_task_state("sleeper", "TASK_RUNNING", Duration::from_secs(10));
    let id = task["id"].as_str().expect("task id").to_string();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v2 {
        assert_eq!(
            cgroup_file("", &id, "memory.max").as_deref(),
            Some("67108864")
        );
        assert_eq!(
            cgroup_file("", &id, "cpu.max").as_deref(),
            Some("50000 100000")
        );
    } else {
        assert_eq!(
            cgroup_file("memory", &id, "memory.limit_in_bytes").as_deref(),
            Some("67108864")
        );
        assert_eq!(
            cgroup_file("cpu", &id, "cpu.cfs_quota_us").as_deref(),
            Some("50000")
        );
        assert_eq!(
            cgroup_file("cpu", &id, "cpu.cfs_period_us").as_deref(),
            Some("100000")
        );
    }
    let pid = c.task_pid(0, &id).expect("task pid recorded");
    let procs = cgroup_file("memory", &id, "cgroup.procs").unwrap_or_default();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "task pid {pid} not in its cgroup: {procs}"
    );

    // /master/slaves used resources match the running task.
    let slaves = c.get("/master/slaves").expect("slaves");
    assert_eq!(slaves["slaves"][0]["used_resources"]["cpus"], 0.5);
    assert_eq!(slaves["slaves"][0]["used_resources"]["mem"], 64.0);

    // Kill through the CLI: TASK_KILLED, the execute client exits, the cgroup is gone.
    let out = c.cli(&["task", "kill", &id]);
    assert!(
        out.status.success(),
        "task kill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_task_state("sleeper", "TASK_KILLED", Duration::from_secs(15));
    let status = common::wait_for("execute to exit", Duration::from_secs(10), || {
        exec.child.try_wait().ok().flatten()
    });
    assert_ne!(status.code(), Some(0));
    common::wait_for("cgroup removed", Duration::from_secs(5), || {
        cgroup_file("memory", &id, "cgroup.procs")
            .is_none()
            .then_some(())
    });
    let slaves = c.get("/master/slaves").expect("slaves");
    assert_eq!(slaves["slaves"][0]["used_resources"]["cpus"], 0.0);
}

/// An agent starting removes the empty cgroup tree of an agent that no longer exists (every
/// hierarchy on v1), leaving the cgroups of running agents alone.
#[test]
fn agent_start_removes_stale_empty_agent_cgroups() {
    require_root!();
    let root = std::path::Path::new("/sys/fs/cgroup");
    let stale = format!("stale-agent-{}", std::process::id());
    let bases: Vec<std::path::PathBuf> = if root.join("cgroup.controllers").exists() {
        vec![root.join("meseta")]
    } else {
        ["memory", "cpu", "pids"]
            .iter()
            .map(|c| root.join(c).join("meseta"))
            .collect()
    };
    // Left behind long ago: agents leave cgroups younger than ten minutes alone.
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for b in &bases {
        std::fs::create_dir_all(b.join(&stale).join("old-task")).expect("mkdir stale cgroup");
        for d in [b.join(&stale).join("old-task"), b.join(&stale)] {
            std::fs::File::open(&d)
                .and_then(|f| f.set_modified(hour_ago))
                .expect("backdate stale cgroup");
        }
    }
    let c = Cluster::new(1, 30.0);
    let mut exec = c.execute_bg("survivor", "sleep 1000", "cpus:0.1;mem:32");
    let task = c.wait_task_state("survivor", "TASK_RUNNING", Duration::from_secs(10));
    let id = task["id"].as_str().expect("task id").to_string();
    for b in &bases {
        assert!(
            !b.join(&stale).exists(),
            "{} left",
            b.join(&stale).display()
        );
    }
    // A second agent starting now leaves the first one's (busy) cgroup alone.
    let c2 = Cluster::new(1, 30.0);
    assert!(cgroup_file("memory", &id, "cgroup.procs").is_some_and(|p| !p.is_empty()));
    drop(c2);
    let out = c.cli(&["task", "kill", &id]);
    assert!(out.status.success(), "task kill failed");
    c.wait_task_state("survivor", "TASK_KILLED", Duration::from_secs(15));
    let _ = exec.child.kill();
}

/// A kill's SIGTERM reaches the task (the shim's blocked signals are not inherited): a shell
/// waiting on a child runs its TERM trap and exits by itself well within the grace period.
#[test]
fn killed_task_gets_sigterm_and_its_trap_runs() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let mut exec = c.execute_bg(
        "trapper",
        "trap 'echo trapped; exit 0' TERM; echo ready; sleep 1000 & wait $!",
        "cpus:0.1;mem:32",
    );
    let task = c.wait_task_state("trapper", "TASK_RUNNING", Duration::from_secs(10));
    let id = task["id"].as_str().expect("task id").to_string();
    let logs = |c: &Cluster| {
        let out = c.cli(&["task", "logs", &id]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    common::wait_for("the trap to be set", Duration::from_secs(10), || {
        logs(&c).contains("ready").then_some(())
    });
    let out = c.cli(&["task", "kill", &id]);
    assert!(
        out.status.success(),
        "task kill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task = c.wait_task_state("trapper", "TASK_KILLED", Duration::from_secs(15));
    let last = task["statuses"]
        .as_array()
        .and_then(|s| s.last().cloned())
        .expect("statuses");
    assert_eq!(last["message"], "Command exited with status 0", "{task}");
    assert_eq!(logs(&c).lines().collect::<Vec<_>>(), ["ready", "trapped"]);
    let _ = common::wait_for("execute to exit", Duration::from_secs(10), || {
        exec.child.try_wait().ok().flatten()
    });
}

#[test]
fn exit_code_and_logs_come_back() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let out = c.cli(&[
        "execute",
        "--name",
        "three",
        "--command",
        "echo out-line; echo err-line >&2; exit 3",
        "--resources",
        "cpus:0.1;mem:32",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task = c.wait_task_state("three", "TASK_FAILED", Duration::from_secs(5));
    let id = task["id"].as_str().expect("id");
    let last = task["statuses"]
        .as_array()
        .and_then(|s| s.last().cloned())
        .expect("statuses");
    assert_eq!(last["message"], "Command exited with status 3");
    let logs = c.cli(&["task", "logs", id]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout).trim(), "out-line");
    let logs = c.cli(&["task", "logs", id, "--stderr"]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout).trim(), "err-line");

    let ok = c.cli(&[
        "execute",
        "--name",
        "zero",
        "--command",
        "true",
        "--resources",
        "cpus:0.1;mem:32",
    ]);
    assert_eq!(ok.status.code(), Some(0));
    c.wait_task_state("zero", "TASK_FINISHED", Duration::from_secs(5));
}

#[test]
fn task_past_its_memory_limit_fails_with_the_memory_reason() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let out = c.cli(&[
        "execute",
        "--name",
        "hog",
        "--command",
        "head -c 200M /dev/zero | tail",
        "--resources",
        "cpus:0.5;mem:32",
    ]);
    assert_ne!(out.status.code(), Some(0));
    let task = c.wait_task_state("hog", "TASK_FAILED", Duration::from_secs(10));
    let last = task["statuses"]
        .as_array()
        .and_then(|s| s.last().cloned())
        .expect("statuses");
    assert_eq!(
        last["reason"], "REASON_CONTAINER_LIMITATION_MEMORY",
        "task: {task}"
    );
}

#[test]
fn environment_carries_the_mesos_variables() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let out = c.cli(&[
        "execute",
        "--name",
        "env",
        "--command",
        "echo \"$MESOS_TASK_ID|$MESOS_SANDBOX|$HOST\"",
        "--resources",
        "cpus:0.1;mem:32",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let task = c.wait_task_state("env", "TASK_FINISHED", Duration::from_secs(5));
    let id = task["id"].as_str().expect("id");
    let logs = String::from_utf8_lossy(&c.cli(&["task", "logs", id]).stdout)
        .trim()
        .to_string();
    let parts: Vec<&str> = logs.split('|').collect();
    assert_eq!(parts.len(), 3, "{logs}");
    assert_eq!(parts[0], id);
    assert!(parts[1].ends_with("sandbox"), "{logs}");
    assert_eq!(parts[2], "agent-0");
}

#[test]
fn task_runs_as_the_requested_user() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    // Task users must reach their sandbox below the test's private temp dir.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(c.dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let out = c.cli(&[
        "execute",
        "--name",
        "who",
        "--user",
        "nobody",
        "--command",
        "id -u; touch mine",
        "--resources",
        "cpus:0.1;mem:32",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task = c.wait_task_state("who", "TASK_FINISHED", Duration::from_secs(5));
    let id = task["id"].as_str().expect("id");
    let uid = String::from_utf8_lossy(&c.cli(&["task", "logs", id]).stdout)
        .trim()
        .to_string();
    let nobody = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .expect("user nobody")
        .uid;
    assert_eq!(uid, nobody.to_string());
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(c.task_dir(0, id).join("sandbox/mine"))
        .expect("file the task made")
        .uid();
    assert_eq!(owner, nobody.as_raw());
}

#[test]
fn task_logs_follow_streams_until_the_task_ends() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let _e = c.execute_bg(
        "ticker",
        "for i in 1 2 3 4; do echo tick-$i; sleep 0.4; done",
        "cpus:0.1;mem:32",
    );
    let task = c.wait_task_state("ticker", "TASK_RUNNING", Duration::from_secs(10));
    let id = task["id"].as_str().expect("id");
    let out = c.cli(&["task", "logs", id, "--follow"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, vec!["tick-1", "tick-2", "tick-3", "tick-4"]);
    // It returned because the task ended, not because it gave up.
    c.wait_task_state("ticker", "TASK_FINISHED", Duration::from_secs(1));
}
