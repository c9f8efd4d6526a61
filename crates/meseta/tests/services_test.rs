//! The services scheduler end to end on the real binary: a master and agents as processes,
//! apps through Marathon's `/v2` API, and the `marathon` PyPI client. Tasks are real processes
//! (health checks hit real HTTP servers started by the tasks).

mod common;

use std::time::{Duration, Instant};

use common::{wait_for, Cluster};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn call(c: &Cluster, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let r = c.call(method, path, body);
    (r.status, r.body)
}

fn create(c: &Cluster, app: Value) {
    let (s, body) = call(c, reqwest::Method::POST, "/v2/apps", Some(&app));
    assert_eq!(s, 201, "create {app}: {body}");
}

fn app(c: &Cluster, id: &str) -> Value {
    let (s, body) = call(c, reqwest::Method::GET, &format!("/v2/apps/{id}"), None);
    assert_eq!(s, 200, "{body}");
    body["app"].clone()
}

fn wait_deployed(c: &Cluster, id: &str) -> Value {
    wait_for(&format!("{id} deployed"), WAIT, || {
        let a = app(c, id);
        a["deployments"].as_array()?.is_empty().then_some(a)
    })
}

#[test]
fn marathon_python_client_creates_scales_restarts_kills_and_deletes() {
    require_root!();
    if !common::python_has("marathon", "marathon==0.13.0") {
        return;
    }
    let c = Cluster::new(1, 10.0);
    common::run_python_script("marathon_client.py", &[&c.url()]);
}

#[test]
fn hostname_unique_on_three_agents_runs_three_and_the_queue_says_why() {
    require_root!();
    let c = Cluster::new(3, 10.0);
    create(
        &c,
        json!({"id": "uniq", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 4,
               "constraints": [["hostname", "UNIQUE"]]}),
    );
    wait_for("3 running", WAIT, || {
        (app(&c, "uniq")["tasksRunning"] == 3).then_some(())
    });
    let item = wait_for("a queue reason", WAIT, || {
        let (_, q) = call(&c, reqwest::Method::GET, "/v2/queue", None);
        let item = q["queue"].as_array()?.first()?.clone();
        item["lastUnusedOffers"][0]["reason"][0].as_str()?;
        Some(item)
    });
    assert_eq!(item["count"], 1, "{item}");
    let why = item["lastUnusedOffers"][0]["reason"][0]
        .as_str()
        .unwrap_or("");
    assert!(why.contains("UNIQUE") && why.contains("hostname"), "{why}");
    let rejects = &item["processedOffersSummary"]["rejectSummaryLastOffers"];
    assert!(
        rejects
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["reason"] == "UnfulfilledConstraint")),
        "{rejects}"
    );
    let hosts: std::collections::BTreeSet<String> = app(&c, "uniq")["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["host"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(hosts.len(), 3, "{hosts:?}");
}

/// An app whose tasks serve HTTP on their first port, with an HTTP health check on it.
fn web_app(id: &str, instances: u32) -> Value {
    json!({
        "id": id, "cmd": "exec python3 -m http.server $PORT0 --bind 127.0.0.1", "cpus": 0.05,
        "mem": 64, "instances": instances, "portDefinitions": [{"port": 0, "name": "http"}],
        "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 30,
                          "intervalSeconds": 2, "timeoutSeconds": 10, "maxConsecutiveFailures": 3,
                          "delaySeconds": 0}],
        "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.2}
    })
}

#[test]
fn rolling_restart_with_full_health_capacity_never_drops_below_ten_healthy() {
    require_root!();
    // Its own port range: another test in this file runs web servers at the same time.
    let c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:2048;ports:[32000-32999]");
    create(&c, web_app("web", 10));
    let before = wait_for("10 healthy", WAIT, || {
        let a = wait_deployed(&c, "web");
        (a["tasksHealthy"] == 10).then_some(a)
    });
    let old_version = before["versionInfo"]["lastConfigChangeAt"].clone();
    let (s, r) = call(&c, reqwest::Method::POST, "/v2/apps/web/restart", None);
    assert_eq!(s, 200, "{r}");
    let start = Instant::now();
    let mut min_healthy = u64::MAX;
    let mut samples = 0;
    loop {
        let a = app(&c, "web");
        let healthy = a["tasksHealthy"].as_u64().unwrap_or(0);
        if healthy < min_healthy && healthy < 10 {
            let brief: Vec<(Value, Value, Value)> = a["tasks"]
                .as_array()
                .map(|ts| {
                    ts.iter()
                        .map(|t| {
                            (
                                t["state"].clone(),
                                t["version"].clone(),
                                t["healthCheckResults"].clone(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            eprintln!("healthy {healthy} at {:?}: {brief:?}", start.elapsed());
        }
        min_healthy = min_healthy.min(healthy);
        samples += 1;
        let done = a["deployments"].as_array().is_some_and(Vec::is_empty);
        if done {
            let tasks = a["tasks"].as_array().cloned().unwrap_or_default();
            assert_eq!(tasks.len(), 10);
            assert!(a["versionInfo"]["lastConfigChangeAt"] != old_version);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "restart did not finish: {a}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(samples > 5, "the restart was sampled");
    assert!(
        min_healthy >= 10,
        "healthy instances dropped to {min_healthy}"
    );
}

#[test]
fn a_task_whose_health_check_starts_failing_is_replaced() {
    require_root!();
    let c = Cluster::new(1, 10.0);
    // Healthy while `sick` does not exist in the sandbox.
    create(
        &c,
        json!({"id": "sick", "cmd": "sleep 1000", "cpus": 0.05, "mem": 16,
               "healthChecks": [{"protocol": "COMMAND", "command": {"value": "test ! -f sick"},
                                 "gracePeriodSeconds": 5, "intervalSeconds": 1, "timeoutSeconds": 2,
                                 "maxConsecutiveFailures": 2, "delaySeconds": 0}]}),
    );
    let first = wait_for("healthy", WAIT, || {
        let a = wait_deployed(&c, "sick");
        (a["tasksHealthy"] == 1).then(|| a["tasks"][0]["id"].as_str().map(str::to_owned))?
    });
    std::fs::write(c.task_dir(0, &first).join("sandbox").join("sick"), b"")
        .expect("make the task sick");
    let second = wait_for("a healthy replacement", WAIT, || {
        let a = app(&c, "sick");
        let t = a["tasks"].as_array()?.first()?.clone();
        let id = t["id"].as_str()?.to_owned();
        (id != first && a["tasksHealthy"] == 1).then_some(id)
    });
    assert_eq!(
        second.split("._app.").next(),
        first.split("._app.").next(),
        "the same instance, relaunched"
    );
    let a = app(&c, "sick");
    assert_eq!(a["lastTaskFailure"]["taskId"], first.as_str(), "{a}");
    // The master's /master/state keeps the health each status reported, as Mesos does.
    let state = c.get("/master/state").expect("state");
    let fw = state["frameworks"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "marathon"))
        .expect("the services framework");
    let second_task = fw["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == second.as_str()))
        .expect("the replacement task");
    let health: Vec<&Value> = second_task["statuses"]
        .as_array()
        .expect("statuses")
        .iter()
        .map(|s| &s["healthy"])
        .collect();
    assert!(health.contains(&&json!(true)), "{second_task}");
}

#[test]
fn master_killed_during_a_deployment_completes_it_after_restart_without_double_launches() {
    require_root!();
    // Below Linux's ephemeral range (32768-60999): a web server bound to a port that an
    // outgoing connection on this machine happens to hold would fail to start.
    let mut c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:2048;ports:[30000-30999]");
    create(&c, web_app("roll", 4));
    wait_for("4 healthy", WAIT, || {
        (wait_deployed(&c, "roll")["tasksHealthy"] == 4).then_some(())
    });
    let (s, _) = call(&c, reqwest::Method::POST, "/v2/apps/roll/restart", None);
    assert_eq!(s, 200);
    // Some of the new instances launched, not all healthy yet.
    wait_for("restart under way", WAIT, || {
        let a = app(&c, "roll");
        (a["tasks"].as_array()?.len() > 4).then_some(())
    });
    if let Some(m) = c.master.as_mut() {
        m.kill9();
    }
    c.start_master();
    c.wait_agents(1);
    let done = wait_for(
        "deployment finished after restart",
        Duration::from_secs(120),
        || {
            let (_, d) = call(&c, reqwest::Method::GET, "/v2/deployments", None);
            if !d.as_array()?.is_empty() {
                return None;
            }
            let a = app(&c, "roll");
            (a["tasksHealthy"] == 4).then_some(a)
        },
    );
    let version = done["versionInfo"]["lastConfigChangeAt"]
        .as_str()
        .expect("version")
        .to_owned();
    let tasks = done["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 4);
    // Every task the agent ever ran for the new configuration is one of the 4 (none twice).
    let all = c.get("/master/tasks").expect("tasks");
    let launched: Vec<&Value> = all["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|t| t["name"] == "roll")
        .collect();
    let running = launched
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .count();
    assert_eq!(running, 4, "{launched:?}");
    assert!(tasks
        .iter()
        .all(|t| t["version"].as_str() >= Some(version.as_str())));
}

#[test]
fn bad_app_definitions_get_marathon_errors_and_store_nothing() {
    let c = Cluster::new(0, 10.0);
    let post = |body: &str| {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/v2/apps", c.url()))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .expect("post");
        let s = r.status().as_u16();
        (
            s,
            serde_json::from_str::<Value>(&r.text().unwrap_or_default()).unwrap_or(Value::Null),
        )
    };
    let (s, b) = post("{not json");
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["message"], "Invalid JSON");
    for (body, path) in [
        (r#"{"id":"a","cmd":"sleep 1","cpus":0}"#, "/cpus"),
        (r#"{"id":"a","cmd":"sleep 1","instances":-1}"#, "/instances"),
        (r#"{"id":"a b!","cmd":"sleep 1"}"#, "/id"),
        (
            r#"{"id":"a","cmd":"sleep 1","constraints":[["hostname","SOMETIMES"]]}"#,
            "/constraints(0)",
        ),
        (
            r#"{"id":"a","cmd":"sleep 1","portDefinitions":[],"healthChecks":[{"protocol":"HTTP","portIndex":2}]}"#,
            "/healthChecks(0)",
        ),
    ] {
        let (s, b) = post(body);
        assert_eq!(s, 422, "{body}: {b}");
        let paths: Vec<&str> = b["details"]
            .as_array()
            .expect("details")
            .iter()
            .filter_map(|d| d["path"].as_str())
            .collect();
        assert!(
            paths.iter().any(|p| p.starts_with(path)),
            "{body}: {paths:?}"
        );
    }
    let big = format!(r#"{{"id":"big","cmd":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let (s, b) = post(&big);
    assert_eq!(s, 413);
    assert!(
        b["message"].as_str().is_some_and(|m| m.contains("1 MiB")),
        "{b}"
    );
    let (_, apps) = call(&c, reqwest::Method::GET, "/v2/apps", None);
    assert_eq!(apps["apps"], json!([]));
    let (s, b) = call(&c, reqwest::Method::GET, "/v2/apps/nope", None);
    assert_eq!(s, 404);
    assert_eq!(b["message"], "App '/nope' does not exist");
}

#[test]
fn draining_a_machine_sends_inverse_offers_and_its_instances_move_when_it_goes_down() {
    require_root!();
    let c = Cluster::new(2, 10.0);
    create(
        &c,
        json!({"id": "mover", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 2}),
    );
    let a = wait_for("2 running", WAIT, || {
        let a = wait_deployed(&c, "mover");
        (a["tasksRunning"] == 2).then_some(a)
    });
    let host = a["tasks"][0]["host"].as_str().expect("host").to_owned();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    let schedule = json!({"windows": [{"machine_ids": [{"hostname": host}],
        "unavailability": {"start": {"nanoseconds": now_ns + 2_000_000_000},
                           "duration": {"nanoseconds": 3_600_000_000_000i64}}}]});
    let (s, b) = call(
        &c,
        reqwest::Method::POST,
        "/master/maintenance/schedule",
        Some(&schedule),
    );
    assert!(s < 300, "schedule: {s} {b}");
    // The services framework has instances there: it gets an inverse offer (and accepts it).
    let status = wait_for("an inverse offer answered", WAIT, || {
        let (_, st) = call(&c, reqwest::Method::GET, "/master/maintenance/status", None);
        let m = st["draining_machines"].as_array()?.first()?.clone();
        (!m["statuses"].as_array()?.is_empty()).then_some(st)
    });
    assert!(status.to_string().contains("ACCEPT"), "{status}");
    let (s, b) = call(
        &c,
        reqwest::Method::POST,
        "/master/machine/down",
        Some(&json!([{"hostname": host}])),
    );
    assert!(s < 300, "down: {s} {b}");
    // Its instances are killed and replaced on the other machine.
    let moved = wait_for("instances off the drained machine", WAIT, || {
        let a = app(&c, "mover");
        let tasks = a["tasks"].as_array()?.clone();
        (tasks.len() == 2
            && tasks
                .iter()
                .all(|t| t["state"] == "TASK_RUNNING" && t["host"].as_str() != Some(host.as_str())))
        .then_some(tasks)
    });
    assert_eq!(moved.len(), 2);
}
