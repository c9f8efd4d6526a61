//! Tasks outlive the agent process, and the master's view survives its own kill -9.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{alive, Cluster};

/// Start `n` sleeping tasks and return task id → pid.
fn start_sleepers(c: &Cluster, n: usize) -> (Vec<common::Proc>, BTreeMap<String, i32>) {
    let execs: Vec<_> = (0..n)
        .map(|i| c.execute_bg(&format!("s{i}"), "sleep 1000", "cpus:0.1;mem:32"))
        .collect();
    let mut pids = BTreeMap::new();
    for i in 0..n {
        let t = c.wait_task_state(&format!("s{i}"), "TASK_RUNNING", Duration::from_secs(15));
        let id = t["id"].as_str().expect("id").to_string();
        let pid = common::wait_for("task.pid", Duration::from_secs(5), || c.task_pid(0, &id));
        pids.insert(id, pid);
    }
    (execs, pids)
}

fn running_ids(c: &Cluster) -> Vec<String> {
    let mut v: Vec<String> = c
        .tasks()
        .into_iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

#[test]
fn agent_kill9_leaves_tasks_running_and_restart_reattaches() {
    require_root!();
    let mut c = Cluster::new(1, 30.0);
    let (_execs, pids) = start_sleepers(&c, 5);
    // One more task that ends while the agent is down.
    let _e = c.execute_bg("ender", "sleep 2; exit 7", "cpus:0.1;mem:32");
    c.wait_task_state("ender", "TASK_RUNNING", Duration::from_secs(10));

    c.agents[0].as_mut().expect("agent").kill9();
    std::thread::sleep(Duration::from_secs(3));
    for (id, pid) in &pids {
        assert!(alive(*pid), "task {id} (pid {pid}) died with its agent");
    }
    c.start_agent(0);
    c.wait_agents(1);
    let ids: Vec<String> = pids.keys().cloned().collect();
    common::wait_for(
        "the five tasks RUNNING after agent restart",
        Duration::from_secs(10),
        || (running_ids(&c) == ids).then_some(()),
    );
    for (id, pid) in &pids {
        assert_eq!(
            c.task_pid(0, id),
            Some(*pid),
            "task {id} was restarted, not reattached"
        );
        assert!(alive(*pid));
    }
    // The task that ended meanwhile is reported with its exit status.
    let t = c.wait_task_state("ender", "TASK_FAILED", Duration::from_secs(15));
    let last = t["statuses"]
        .as_array()
        .and_then(|s| s.last().cloned())
        .expect("statuses");
    assert_eq!(last["message"], "Command exited with status 7");
    let used = &c.get("/master/slaves").expect("slaves")["slaves"][0]["used_resources"];
    assert_eq!(used["cpus"], 0.5, "used resources: {used}");
    assert_eq!(used["mem"], 160.0);
}

#[test]
fn master_kill9_and_restart_keeps_agents_and_tasks() {
    require_root!();
    let mut c = Cluster::new(1, 30.0);
    let (_execs, pids) = start_sleepers(&c, 3);
    let before = c.get("/master/slaves").expect("slaves")["slaves"][0].clone();

    c.master.as_mut().expect("master").kill9();
    c.start_master();
    c.wait_agents(1);
    let ids: Vec<String> = pids.keys().cloned().collect();
    common::wait_for(
        "tasks back in /master/state",
        Duration::from_secs(15),
        || (running_ids(&c) == ids).then_some(()),
    );
    let state = c.get("/master/state").expect("state");
    let slave = &state["slaves"][0];
    assert_eq!(slave["id"], before["id"], "the agent kept its id");
    let used = &c.get("/master/slaves").expect("slaves")["slaves"][0]["used_resources"];
    assert_eq!(used["cpus"], 0.3, "used resources: {used}");
    assert_eq!(used["mem"], 96.0);
    for (id, pid) in &pids {
        assert!(alive(*pid), "task {id} died across the master restart");
    }
    // The execute clients re-subscribed: killing a task still reaches its framework.
    let id = ids[0].clone();
    let out = c.cli(&["task", "kill", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::wait_for("killed task", Duration::from_secs(15), || {
        c.tasks()
            .into_iter()
            .find(|t| t["id"] == id.as_str() && t["state"] == "TASK_KILLED")
    });
}

#[test]
fn silent_agent_becomes_unreachable_then_returns() {
    require_root!();
    let c = Cluster::new(1, 2.0);
    let (_execs, pids) = start_sleepers(&c, 1);
    let agent_pid = c.agents[0].as_ref().expect("agent").pid();
    let pid = nix::unistd::Pid::from_raw(agent_pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("stop agent");
    let id = pids.keys().next().expect("one task").clone();
    let seen = common::wait_for("TASK_UNREACHABLE", Duration::from_secs(15), || {
        c.tasks()
            .into_iter()
            .find(|t| t["id"] == id.as_str() && t["state"] == "TASK_UNREACHABLE")
    });
    assert_eq!(seen["state"], "TASK_UNREACHABLE");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("continue agent");
    common::wait_for("TASK_RUNNING again", Duration::from_secs(15), || {
        c.tasks()
            .into_iter()
            .find(|t| t["id"] == id.as_str() && t["state"] == "TASK_RUNNING")
    });
}
