//! DOCKER tasks end to end through the local Docker engine: `meseta execute --docker-image` with
//! its stdout through `meseta task logs`, a Marathon BRIDGE app answering HTTP on its host port, a
//! memory hog ending with the memory reason, a container surviving `kill -9` of its agent and
//! reattached by the restarted one, and a missing image failing the task.
//!
//! No image can be pulled: each test imports its own (`docker import` of a rootfs holding the
//! host's static busybox) under a tag of its own, and removes its containers (by the agent's
//! label) and the tag at the end. Without an engine or busybox the tests skip with the reason,
//! and fail when `CI=true`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::docker::{agent_id, containers_of, docker_ready, inspect, run, EngineRelay, Image};
use common::{wait_for, Cluster, MESETA};
use serde_json::json;

/// `meseta execute --docker-image` to completion: (exit code, stderr status lines).
fn execute(c: &Cluster, name: &str, image: &str, command: &str, resources: &str) -> (i32, String) {
    let out = c.cli(&[
        "execute",
        "--name",
        name,
        "--command",
        command,
        "--resources",
        resources,
        "--docker-image",
        image,
    ]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn execute_docker_task_and_read_its_logs() {
    if !docker_ready() {
        return;
    }
    let mut img = Image::build("execute");
    let c = Cluster::new(1, 10.0);
    img.track(&c);
    // The agent offers docker:true.
    let slaves = c.get("/master/slaves").expect("slaves");
    assert_eq!(
        slaves["slaves"][0]["attributes"]["docker"], "true",
        "{slaves}"
    );
    let (code, log) = execute(
        &c,
        "dk",
        &img.tag,
        "echo hello-from-container; echo to-stderr >&2; test -d /mnt/mesos/sandbox && echo \"task=$MESOS_TASK_ID\"; echo \"uid=$(id -u)\"; touch /mnt/mesos/sandbox/mine && echo wrote-sandbox",
        "cpus:0.1;mem:32",
    );
    assert_eq!(code, 0, "execute failed: {log}");
    let task = c.wait_task_state("dk", "TASK_FINISHED", Duration::from_secs(10));
    let id = task["id"].as_str().expect("task id").to_string();
    let out = c.cli(&["task", "logs", &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("hello-from-container"), "{stdout}");
    assert!(stdout.contains(&format!("task={id}")), "{stdout}");
    // The container runs as the task user (nobody under a root agent), who owns the sandbox.
    assert!(stdout.contains("uid=65534"), "{stdout}");
    assert!(stdout.contains("wrote-sandbox"), "{stdout}");
    let err = c.cli(&["task", "logs", "--stderr", &id]);
    assert!(String::from_utf8_lossy(&err.stdout).contains("to-stderr"));
    // The finished task's container is removed.
    assert!(containers_of(&agent_id(&c, 0)).is_empty());
    // A failing command reports its exit code.
    let (code, log) = execute(&c, "dk-fail", &img.tag, "exit 3", "cpus:0.1;mem:32");
    assert_eq!(code, 3, "{log}");
    assert!(log.contains("TASK_FAILED"), "{log}");
}

#[test]
fn missing_image_fails_prepare_and_memory_hog_is_oom() {
    if !docker_ready() {
        return;
    }
    let mut img = Image::build("fail");
    let c = Cluster::new(1, 10.0);
    img.track(&c);
    let missing = format!("meseta-test/absent:{}", std::process::id());
    let (code, log) = execute(&c, "nope", &missing, "true", "cpus:0.1;mem:32");
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("TASK_FAILED") && log.contains("REASON_CONTAINER_PREPARE_FAILED"),
        "{log}"
    );
    assert!(log.contains(&missing), "the message names the image: {log}");
    // 32 MiB of memory and no swap; the shell holds 200 MB in a variable.
    let (code, log) = execute(
        &c,
        "hog",
        &img.tag,
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}",
        "cpus:0.5;mem:32",
    );
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("TASK_FAILED") && log.contains("REASON_CONTAINER_LIMITATION_MEMORY"),
        "{log}"
    );
}

#[test]
fn marathon_bridge_app_answers_on_its_host_port() {
    if !docker_ready() {
        return;
    }
    let mut img = Image::build("bridge");
    let c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:1024;ports:[33100-33199]");
    img.track(&c);
    let app = json!({
        "id": "/web",
        "cmd": "mkdir -p $MESOS_SANDBOX/www && echo hi-from-docker > $MESOS_SANDBOX/www/index.html && exec httpd -f -p 80 -h $MESOS_SANDBOX/www",
        "cpus": 0.1, "mem": 32, "instances": 1,
        "container": {"type": "DOCKER", "docker": {"image": img.tag},
                      "portMappings": [{"containerPort": 80, "hostPort": 0}]},
        "networks": [{"mode": "container/bridge"}]
    });
    let r = c.call(reqwest::Method::POST, "/v2/apps", Some(&app));
    assert!(r.status < 300, "{} {}", r.status, r.body);
    let port = wait_for(
        "a running task with a host port",
        Duration::from_secs(60),
        || {
            let tasks = c.get("/v2/apps/web/tasks")?;
            let t = tasks["tasks"].as_array()?.first()?.clone();
            (t["state"] == "TASK_RUNNING").then_some(())?;
            t["ports"][0].as_u64()
        },
    );
    assert!(
        (33100..=33199).contains(&port),
        "port {port} comes from the offer"
    );
    let body = wait_for("HTTP on the host port", Duration::from_secs(30), || {
        reqwest::blocking::get(format!("http://127.0.0.1:{port}/index.html"))
            .ok()
            .filter(|r| r.status().is_success())
            .and_then(|r| r.text().ok())
    });
    assert!(body.contains("hi-from-docker"), "{body}");
    // A bad image reference is refused at submission, naming the field.
    let bad = json!({"id": "/bad", "cpus": 0.1, "mem": 32,
        "container": {"type": "DOCKER", "docker": {"image": "Not An Image"}}});
    let r = c.call(reqwest::Method::POST, "/v2/apps", Some(&bad));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.to_string().contains("/container/docker/image"),
        "{}",
        r.body
    );
    let r = c.call(reqwest::Method::DELETE, "/v2/apps/web", None);
    assert!(r.status < 300, "{}", r.body);
    let agent = agent_id(&c, 0);
    wait_for(
        "the app's container removed",
        Duration::from_secs(30),
        || containers_of(&agent).is_empty().then_some(()),
    );
}

#[test]
fn container_survives_agent_kill9_and_is_reattached() {
    if !docker_ready() {
        return;
    }
    let mut img = Image::build("restart");
    let mut c = Cluster::new(1, 30.0);
    img.track(&c);
    let log = c.dir.path().join("execute-long.log");
    let out = std::fs::File::create(&log).expect("log");
    let mut exec = Command::new(MESETA)
        .args([
            "execute",
            "--name",
            "long",
            "--command",
            "echo started; sleep 600",
            "--resources",
            "cpus:0.1;mem:32",
            "--docker-image",
            &img.tag,
        ])
        .env("MESETA_MASTER", c.url())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("execute");
    let task = c.wait_task_state("long", "TASK_RUNNING", Duration::from_secs(60));
    let id = task["id"].as_str().expect("id").to_string();
    let cid_file = c.task_dir(0, &id).join("container_id");
    let cid = std::fs::read_to_string(&cid_file).expect("container id checkpointed");
    let agent = agent_id(&c, 0);
    // An orphan: a container of this agent for a task it does not know.
    let orphan = run(Command::new("docker").args([
        "run",
        "-d",
        "--label",
        &format!("meseta.agent_id={agent}"),
        "--label",
        "meseta.task_id=not-a-task",
        &img.tag,
        "sleep",
        "600",
    ]))
    .trim()
    .to_string();
    c.agents[0].as_mut().expect("agent").kill9();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        inspect(&cid, "{{.State.Running}}"),
        "true",
        "the container outlives its agent"
    );
    c.start_agent(0);
    c.wait_agents(1);
    let agent_log = c.dir.path().join("agent-0.log");
    wait_for("the reattach", Duration::from_secs(30), || {
        std::fs::read_to_string(&agent_log)
            .ok()
            .filter(|t| t.contains("reattaching to running container"))
    });
    wait_for("the orphan removed", Duration::from_secs(30), || {
        inspect(&orphan, "{{.Id}}").is_empty().then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let now = c
        .tasks()
        .into_iter()
        .find(|t| t["id"] == id.as_str())
        .expect("task");
    assert_eq!(now["state"], "TASK_RUNNING", "{now}");
    assert_eq!(inspect(&cid, "{{.State.Running}}"), "true");
    assert_eq!(
        std::fs::read_to_string(&cid_file).expect("id"),
        cid,
        "same container"
    );
    assert_eq!(containers_of(&agent), vec![cid.clone()]);
    // Kill through the master: the container is stopped and the task ends KILLED.
    let out = c.cli(&["task", "kill", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_task_state("long", "TASK_KILLED", Duration::from_secs(30));
    wait_for("the container removed", Duration::from_secs(30), || {
        containers_of(&agent).is_empty().then_some(())
    });
    let _ = exec.kill();
    let _ = exec.wait();
    assert!(Path::new(&log).exists());
}

/// The agent's `docker` attribute (`None` when it offers none).
fn docker_attribute(c: &Cluster) -> Option<String> {
    let slaves = c.get("/master/slaves")?;
    let a = &slaves["slaves"][0]["attributes"]["docker"];
    Some(a.as_str().unwrap_or("").to_string())
}

#[test]
fn an_agent_whose_engine_goes_away_stops_taking_docker_tasks() {
    if !docker_ready() {
        return;
    }
    let mut img = Image::build("gone");
    let socket_dir = tempfile::tempdir().expect("tempdir");
    let socket = socket_dir.path().join("docker.sock");
    let mut relay = EngineRelay::start(&socket);
    let mut c = Cluster::with_resources(0, 10.0, "cpus:4;mem:4096;disk:1024;ports:[33800-33899]");
    c.agent_flags = vec![
        "--docker-socket".to_string(),
        socket.to_str().expect("utf8").to_string(),
    ];
    c.agents.push(None);
    c.agent_ports.push(0);
    c.start_agent(0);
    c.wait_agents(1);
    img.track(&c);
    assert_eq!(docker_attribute(&c).as_deref(), Some("true"));

    // The engine goes away: within a probe interval the agent stops offering docker:true.
    relay.stop();
    wait_for("docker:true withdrawn", Duration::from_secs(40), || {
        docker_attribute(&c).filter(String::is_empty)
    });
    // A DOCKER app now waits, and /v2/queue says why; nothing is launched.
    let app = json!({"id": "/after-engine", "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                     "container": {"type": "DOCKER", "docker": {"image": img.tag}}});
    let r = c.call(reqwest::Method::POST, "/v2/apps", Some(&app));
    assert!(r.status < 300, "{} {}", r.status, r.body);
    let q = wait_for("the app queued", Duration::from_secs(30), || {
        c.get("/v2/queue")?["queue"]
            .as_array()?
            .iter()
            .find(|e| e["app"]["id"] == "/after-engine")
            .cloned()
    });
    assert!(q.to_string().contains("docker"), "{q}");
    std::thread::sleep(Duration::from_secs(2));
    let tasks = c.get("/v2/apps/after-engine/tasks").expect("tasks");
    assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(0), "{tasks}");

    // The engine answers again: docker:true comes back and the app runs.
    let _relay = EngineRelay::start(&socket);
    wait_for("docker:true offered again", Duration::from_secs(40), || {
        docker_attribute(&c).filter(|a| a == "true")
    });
    wait_for("the app running", Duration::from_secs(60), || {
        let t = c.get("/v2/apps/after-engine/tasks")?;
        t["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["state"] == "TASK_RUNNING")
            .cloned()
    });
    assert_eq!(containers_of(&agent_id(&c, 0)).len(), 1);
}
