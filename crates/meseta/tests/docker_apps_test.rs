//! DOCKER apps and jobs beyond a single container: health checks reaching the container (HTTP
//! through a BRIDGE host port, COMMAND through `docker exec`), a rolling restart of a
//! 3-instance BRIDGE app that never drops below its `minimumHealthCapacity`, the `marathon`
//! Python client creating a DOCKER app, a Chronos job with a container, and the bad input the
//! Marathon edge refuses (privileged containers, one host port mapped twice, a host port no
//! agent offers).
//!
//! Images are imported from a busybox rootfs (see `common::docker`); without an engine or
//! busybox the tests skip with the reason, and fail when `CI=true`.

mod common;

use std::time::{Duration, Instant};

use common::docker::{agent_id, containers_of, docker_ready, Image};
use common::{wait_for, Cluster};
use reqwest::Method;
use serde_json::{json, Value};

/// The app's tasks (`/v2/apps/<id>/tasks`).
fn app_tasks(c: &Cluster, id: &str) -> Vec<Value> {
    c.get(&format!("/v2/apps/{id}/tasks"))
        .and_then(|t| t["tasks"].as_array().cloned())
        .unwrap_or_default()
}

/// Whether a Marathon task reports a passing health check.
fn healthy(t: &Value) -> bool {
    t["state"] == "TASK_RUNNING" && t["healthCheckResults"][0]["alive"] == true
}

fn post_app(c: &Cluster, app: &Value) {
    let r = c.call(Method::POST, "/v2/apps", Some(app));
    assert!(r.status < 300, "{} {}", r.status, r.body);
}

/// A busybox httpd serving `text` on container port 80 from the sandbox (the container runs as
/// the task user, who may write only there).
fn httpd(text: &str) -> String {
    format!(
        "mkdir -p $MESOS_SANDBOX/www && echo {text} > $MESOS_SANDBOX/www/index.html && \
         exec httpd -f -p 80 -h $MESOS_SANDBOX/www"
    )
}

#[test]
fn health_checks_reach_the_container() {
    if !docker_ready() {
        return;
    }
    let mut img = Image::build("health");
    let c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:1024;ports:[33300-33399]");
    img.track(&c);
    // HTTP through the BRIDGE container's host port.
    post_app(
        &c,
        &json!({
            "id": "/web-hc", "cmd": httpd("ok"), "cpus": 0.1, "mem": 32, "instances": 1,
            "container": {"type": "DOCKER", "docker": {"image": img.tag},
                          "portMappings": [{"containerPort": 80, "hostPort": 0}]},
            "networks": [{"mode": "container/bridge"}],
            "healthChecks": [{"protocol": "MESOS_HTTP", "path": "/index.html", "portIndex": 0,
                              "intervalSeconds": 1, "timeoutSeconds": 2,
                              "gracePeriodSeconds": 30, "maxConsecutiveFailures": 0}]
        }),
    );
    let t = wait_for("the HTTP check healthy", Duration::from_secs(60), || {
        app_tasks(&c, "web-hc").into_iter().find(healthy)
    });
    let port = t["ports"][0].as_u64().expect("host port");
    assert!((33300..=33399).contains(&port), "{t}");

    // COMMAND runs in the container: the file exists there only once the container made it
    // (it waits for a `go` file in its sandbox, which the test creates), never on the host.
    let ready = format!("/tmp/meseta-ready-{}", std::process::id());
    assert!(!std::path::Path::new(&ready).exists());
    post_app(
        &c,
        &json!({
            "id": "/cmd-hc", "cpus": 0.1, "mem": 32, "instances": 1,
            "cmd": format!("while ! test -f /mnt/mesos/sandbox/go; do sleep 0.2; done; \
                            touch {ready}; exec sleep 600"),
            "container": {"type": "DOCKER", "docker": {"image": img.tag}},
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": format!("test -f {ready}")},
                              "intervalSeconds": 1, "timeoutSeconds": 5,
                              "gracePeriodSeconds": 0, "maxConsecutiveFailures": 0}]
        }),
    );
    let t = wait_for("the command task running", Duration::from_secs(60), || {
        app_tasks(&c, "cmd-hc")
            .into_iter()
            .find(|t| t["state"] == "TASK_RUNNING")
    });
    let id = t["id"].as_str().expect("id").to_string();
    // Unhealthy while the file is missing (several checks ran and failed).
    let t = wait_for("the COMMAND check failing", Duration::from_secs(30), || {
        app_tasks(&c, "cmd-hc")
            .into_iter()
            .find(|t| t["healthCheckResults"][0]["alive"] == false)
    });
    assert!(!healthy(&t), "{t}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !app_tasks(&c, "cmd-hc").iter().any(healthy),
        "healthy before the container created the file"
    );
    std::fs::write(c.task_dir(0, &id).join("sandbox").join("go"), b"").expect("go");
    wait_for("the COMMAND check healthy", Duration::from_secs(30), || {
        app_tasks(&c, "cmd-hc").into_iter().find(healthy)
    });
    assert!(
        !std::path::Path::new(&ready).exists(),
        "the file was made in the container"
    );
    for app in ["web-hc", "cmd-hc"] {
        let r = c.call(Method::DELETE, &format!("/v2/apps/{app}"), None);
        assert!(r.status < 300, "{}", r.body);
    }
    let agent = agent_id(&c, 0);
    wait_for("the containers removed", Duration::from_secs(60), || {
        containers_of(&agent).is_empty().then_some(())
    });
}

#[test]
fn rolling_restart_keeps_minimum_health_capacity() {
    if !docker_ready() {
        return;
    }
    let mut img = Image::build("rolling");
    let c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:1024;ports:[33400-33499]");
    img.track(&c);
    post_app(
        &c,
        &json!({
            "id": "/rolling", "cmd": httpd("rolling"), "cpus": 0.1, "mem": 32, "instances": 3,
            "container": {"type": "DOCKER", "docker": {"image": img.tag},
                          "portMappings": [{"containerPort": 80, "hostPort": 0}]},
            "networks": [{"mode": "container/bridge"}],
            "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0},
            "healthChecks": [{"protocol": "MESOS_HTTP", "path": "/index.html", "portIndex": 0,
                              "intervalSeconds": 1, "timeoutSeconds": 2,
                              "gracePeriodSeconds": 30, "maxConsecutiveFailures": 0}]
        }),
    );
    let before: Vec<String> = wait_for("3 healthy instances", Duration::from_secs(90), || {
        let ts = app_tasks(&c, "rolling");
        (ts.iter().filter(|t| healthy(t)).count() == 3).then(|| {
            ts.iter()
                .map(|t| t["id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
    });
    // Each answers on its own host port.
    for t in app_tasks(&c, "rolling") {
        let port = t["ports"][0].as_u64().expect("port");
        let body = reqwest::blocking::get(format!("http://127.0.0.1:{port}/index.html"))
            .and_then(|r| r.text())
            .expect("HTTP on the host port");
        assert!(body.contains("rolling"), "{body}");
    }
    let r = c.call(Method::POST, "/v2/apps/rolling/restart", Some(&json!({})));
    assert!(r.status < 300, "{} {}", r.status, r.body);
    // Ceil(3 × 0.5) = 2 healthy instances at all times.
    let (mut least, mut samples) = (usize::MAX, 0);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let ts = app_tasks(&c, "rolling");
        let up = ts.iter().filter(|t| healthy(t)).count();
        least = least.min(up);
        samples += 1;
        let replaced = ts.len() == 3
            && up == 3
            && ts
                .iter()
                .all(|t| !before.iter().any(|b| t["id"] == b.as_str()));
        let deploying = c
            .get("/v2/deployments")
            .and_then(|d| d.as_array().map(|a| !a.is_empty()))
            .unwrap_or(true);
        if replaced && !deploying {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restart did not finish: {ts:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        samples > 5,
        "the deployment was sampled ({samples} samples)"
    );
    assert!(
        least >= 2,
        "healthy instances dropped to {least} during the restart"
    );
    let r = c.call(Method::DELETE, "/v2/apps/rolling", None);
    assert!(r.status < 300, "{}", r.body);
}

#[test]
fn marathon_python_client_creates_a_docker_app() {
    if !docker_ready() || !common::python_has("marathon", "marathon==0.13.0") {
        return;
    }
    let mut img = Image::build("pyclient");
    let c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:1024;ports:[33500-33599]");
    img.track(&c);
    common::run_python_script("marathon_docker.py", &[&c.url(), &img.tag]);
}

#[test]
fn chronos_job_with_a_container_runs_to_success() {
    if !docker_ready() {
        return;
    }
    let mut img = Image::build("chronos");
    let c = Cluster::new(1, 10.0);
    img.track(&c);
    let marker = format!("in-container-{}", std::process::id());
    // Fails outside the container (no /bin/busybox with this marker there).
    let job = json!({
        "name": "dockerjob", "schedule": "R/2099-01-01T00:00:00Z/PT24H", "epsilon": "PT1M",
        "command": format!("test -x /bin/busybox && test ! -e /usr && echo {marker}"),
        "cpus": 0.1, "mem": 32, "disk": 0, "owner": "ops@example.com", "retries": 0,
        "container": {"type": "DOCKER", "image": img.tag}
    });
    let r = c.call(Method::POST, "/v1/scheduler/iso8601", Some(&job));
    assert_eq!(r.status, 204, "{}", r.body);
    let r = c.call(Method::PUT, "/v1/scheduler/job/dockerjob", None);
    assert!(r.status < 300, "run now: {} {}", r.status, r.body);
    let done = wait_for("the job's run", Duration::from_secs(60), || {
        let j = c.get("/v1/scheduler/job/dockerjob")?;
        let (ok, failed) = (j["successCount"].as_u64()?, j["errorCount"].as_u64()?);
        (ok + failed > 0).then_some((ok, failed))
    });
    assert_eq!(
        done,
        (1, 0),
        "the job ran in its container and succeeded: {:?}\n{}",
        c.tasks(),
        std::fs::read_to_string(c.dir.path().join("agent-0.log")).unwrap_or_default()
    );
    let task = c
        .tasks()
        .into_iter()
        .find(|t| {
            t["state"] == "TASK_FINISHED"
                && t["name"].as_str().is_some_and(|n| n.contains("dockerjob"))
        })
        .expect("the job's task");
    let id = task["id"].as_str().expect("id");
    let out = c.cli(&["task", "logs", id]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&marker),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_docker_input_is_refused() {
    if !docker_ready() {
        return;
    }
    let img = Image::build("badinput");
    let c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:1024;ports:[33600-33699]");
    let app = |id: &str, docker: Value, mappings: Value| {
        json!({"id": id, "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
               "container": {"type": "DOCKER", "docker": docker, "portMappings": mappings},
               "networks": [{"mode": "container/bridge"}]})
    };
    // Privileged: refused unless the master allows it, the field named, nothing stored.
    let privileged = app(
        "/priv",
        json!({"image": img.tag, "privileged": true}),
        json!([]),
    );
    let r = c.call(Method::POST, "/v2/apps", Some(&privileged));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.to_string().contains("/container/docker/privileged"),
        "{}",
        r.body
    );
    assert_eq!(c.call(Method::GET, "/v2/apps/priv", None).status, 404);
    // The same inside a group.
    let mut in_group = privileged.clone();
    in_group["id"] = json!("/g/priv");
    let group = json!({"id": "/g", "apps": [in_group]});
    let r = c.call(Method::POST, "/v2/groups", Some(&group));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.to_string().contains("privileged"), "{}", r.body);
    // Two mappings on one host port.
    let twice = app(
        "/twice",
        json!({"image": img.tag}),
        json!([{"containerPort": 80, "hostPort": 33650}, {"containerPort": 81, "hostPort": 33650}]),
    );
    let r = c.call(Method::POST, "/v2/apps", Some(&twice));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.to_string().contains("hostPort"), "{}", r.body);
    assert_eq!(c.call(Method::GET, "/v2/apps/twice", None).status, 404);
    // A host port outside every agent's port ranges: refused, the mapping named, nothing stored.
    let outside = app(
        "/outside",
        json!({"image": img.tag}),
        json!([{"containerPort": 80, "hostPort": 33650}, {"containerPort": 81, "hostPort": 40999}]),
    );
    let r = c.call(Method::POST, "/v2/apps", Some(&outside));
    assert_eq!(r.status, 422, "{}", r.body);
    let text = r.body.to_string();
    assert!(
        text.contains("/container/portMappings(1)/hostPort") && text.contains("40999"),
        "{text}"
    );
    assert!(!text.contains("portMappings(0)"), "{text}");
    assert_eq!(c.call(Method::GET, "/v2/apps/outside", None).status, 404);
    let mut in_group = outside.clone();
    in_group["id"] = json!("/g/outside");
    let r = c.call(
        Method::POST,
        "/v2/groups",
        Some(&json!({"id": "/g", "apps": [in_group]})),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body
            .to_string()
            .contains("/apps(0)/container/portMappings(1)/hostPort"),
        "{}",
        r.body
    );
    assert_eq!(c.call(Method::GET, "/v2/groups/g", None).status, 404);
    drop(c);

    // A master started with --docker-allow-privileged accepts it (the agent refuses to run it
    // unless it allows privileged containers as well).
    let c = Cluster::with_master_flags(
        1,
        10.0,
        "cpus:4;mem:4096;disk:1024;ports:[33700-33799]",
        &["--docker-allow-privileged"],
    );
    let r = c.call(Method::POST, "/v2/apps", Some(&privileged));
    assert!(r.status < 300, "{} {}", r.status, r.body);
}
