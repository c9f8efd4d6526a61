//! Marathon pods end to end on the real binary: a master and agents as processes, pods through
//! `/v2/pods`, the `meseta pod` CLI and the `marathon` PyPI client. Containers are real
//! processes of one task group; the HTTP server of a pod serves what another container of the
//! same instance wrote into their shared volume.

mod common;

use std::time::{Duration, Instant};

use common::{wait_for, Cluster};
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

fn call(c: &Cluster, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let r = c.call(method, path, body);
    (r.status, r.body)
}

fn status(c: &Cluster, id: &str) -> Value {
    let (s, body) = call(c, Method::GET, &format!("/v2/pods{id}::status"), None);
    assert_eq!(s, 200, "{body}");
    body
}

/// Instances of the pod's status whose own status is STABLE.
fn stable_instances(st: &Value) -> Vec<Value> {
    st["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["status"] == "STABLE")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the pod has no deployment and `n` stable instances; its status.
fn wait_stable(c: &Cluster, id: &str, n: usize) -> Value {
    wait_for(&format!("{id} stable with {n}"), WAIT, || {
        let st = status(c, id);
        let deploying = deployments_of(c, id) > 0;
        (!deploying && st["status"] == "STABLE" && stable_instances(&st).len() == n).then_some(st)
    })
}

fn deployments_of(c: &Cluster, id: &str) -> usize {
    let (_, d) = call(c, Method::GET, "/v2/deployments", None);
    d.as_array()
        .map(|a| {
            a.iter()
                .filter(|d| {
                    d["affectedPods"]
                        .as_array()
                        .is_some_and(|p| p.contains(&json!(id)))
                })
                .count()
        })
        .unwrap_or(0)
}

/// The host port of endpoint `name` of the first instance.
fn endpoint_port(st: &Value, name: &str) -> Option<u64> {
    st["instances"][0]["containers"]
        .as_array()?
        .iter()
        .flat_map(|c| c["endpoints"].as_array().cloned().unwrap_or_default())
        .find(|e| e["name"] == name)?["allocatedHostPort"]
        .as_u64()
}

fn http_get(port: u64, path: &str) -> Option<String> {
    let r = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(2))
        .send()
        .ok()?;
    r.status().is_success().then(|| r.text().ok()).flatten()
}

fn python3_present() -> bool {
    common::python_has("http.server", "(python3 itself)")
}

/// Writer and server containers sharing the volume `shared`.
fn web_pod(id: &str) -> Value {
    json!({
        "id": id,
        "containers": [
            {"name": "writer", "resources": {"cpus": 0.1, "mem": 32},
             "exec": {"command": {"shell":
                 "echo written-by-writer > data/index.html && exec sleep 600"}},
             "volumeMounts": [{"name": "shared", "mountPath": "data"}]},
            {"name": "server", "resources": {"cpus": 0.1, "mem": 64},
             "exec": {"command": {"shell":
                 "cd data && exec python3 -m http.server --bind 127.0.0.1 $ENDPOINT_HTTP"}},
             "endpoints": [{"name": "http", "hostPort": 0}],
             "volumeMounts": [{"name": "shared", "mountPath": "data"}]}
        ],
        "volumes": [{"name": "shared"}]
    })
}

#[test]
fn two_containers_share_a_volume_one_serves_what_the_other_wrote_and_a_master_restart_keeps_them() {
    require_root!();
    if !python3_present() {
        return;
    }
    let mut c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:2048;ports:[32100-32199]");
    let r = c.call(Method::POST, "/v2/pods", Some(&web_pod("/web")));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("Location").as_deref(), Some("/v2/pods/web"));
    assert!(r.header("Marathon-Deployment-Id").is_some());
    assert_eq!(r.body["id"], "/web");
    assert!(r.body["version"].is_string(), "{}", r.body);

    let st = wait_stable(&c, "/web", 1);
    let port = endpoint_port(&st, "http").expect("allocated host port");
    assert!((32100..=32199).contains(&port), "{st}");
    let served = wait_for("the file served", WAIT, || http_get(port, "/index.html"));
    assert_eq!(served.trim(), "written-by-writer");
    let instance = st["instances"][0]["id"].as_str().expect("id").to_owned();
    let containers = st["instances"][0]["containers"]
        .as_array()
        .expect("c")
        .clone();
    assert_eq!(containers.len(), 2);
    assert!(
        containers.iter().all(|c| c["status"] == "TASK_RUNNING"),
        "{st}"
    );

    // The pod, its instance and its tasks survive a master restart: same instance, still serving.
    if let Some(m) = c.master.as_mut() {
        m.kill9();
    }
    c.start_master();
    c.wait_agents(1);
    let after = wait_for("the pod recovered", WAIT, || {
        let (s, st) = call(&c, Method::GET, "/v2/pods/web::status", None);
        (s == 200 && stable_instances(&st).len() == 1).then_some(st)
    });
    assert_eq!(after["instances"][0]["id"], instance, "{after}");
    assert_eq!(
        http_get(port, "/index.html").map(|s| s.trim().to_owned()),
        Some("written-by-writer".to_owned())
    );

    let r = c.call(Method::DELETE, "/v2/pods/web", None);
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.header("Marathon-Deployment-Id").is_some());
    wait_for("the pod gone", WAIT, || {
        let (s, _) = call(&c, Method::GET, "/v2/pods/web", None);
        (s == 404 && http_get(port, "/index.html").is_none()).then_some(())
    });
}

#[test]
fn a_rolling_restart_keeps_minimum_health_capacity() {
    require_root!();
    if !python3_present() {
        return;
    }
    let c = Cluster::with_resources(2, 10.0, "cpus:4;mem:4096;disk:2048;ports:[32200-32299]");
    let pod = json!({
        "id": "/rolling",
        "scaling": {"kind": "fixed", "instances": 2},
        "scheduling": {"upgrade": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.5}},
        "containers": [
            {"name": "web", "resources": {"cpus": 0.1, "mem": 64},
             "exec": {"command": {"shell":
                 "exec python3 -m http.server --bind 127.0.0.1 $ENDPOINT_HTTP"}},
             "endpoints": [{"name": "http", "hostPort": 0}],
             "healthCheck": {"http": {"endpoint": "http", "path": "/"},
                             "gracePeriodSeconds": 30, "intervalSeconds": 2,
                             "timeoutSeconds": 1, "maxConsecutiveFailures": 3,
                             "delaySeconds": 1}}
        ]
    });
    let (s, body) = call(&c, Method::POST, "/v2/pods", Some(&pod));
    assert_eq!(s, 201, "{body}");
    let before = wait_stable(&c, "/rolling", 2);
    let old: Vec<String> = before["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect();
    let old_version = before["spec"]["version"].clone();

    // A PUT of the same definition is a new version: every instance is replaced, rolling.
    let started = Instant::now();
    let r = c.call(Method::PUT, "/v2/pods/rolling", Some(&pod));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(r.body["version"], old_version);
    let mut min_stable = usize::MAX;
    let mut max_instances = 0;
    loop {
        let st = status(&c, "/rolling");
        let stable = stable_instances(&st).len();
        min_stable = min_stable.min(stable);
        max_instances = max_instances.max(st["instances"].as_array().map_or(0, Vec::len));
        let ids: Vec<&str> = st["instances"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["id"].as_str()).collect())
            .unwrap_or_default();
        if deployments_of(&c, "/rolling") == 0
            && stable == 2
            && ids.iter().all(|i| !old.iter().any(|o| o == i))
        {
            break;
        }
        assert!(started.elapsed() < WAIT, "restart did not finish: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "rolling restart of 2 instances: {:?}, at least {min_stable} stable, at most {max_instances} instances",
        started.elapsed()
    );
    assert!(min_stable >= 2, "capacity dropped to {min_stable}");
    assert!(max_instances <= 3 + 1, "over capacity: {max_instances}");
}

#[test]
fn bad_input_unknown_pods_conflicts_and_the_marathon_python_client() {
    require_root!();
    let c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:2048;ports:[32300-32399]");
    // Bad input: 422 with the path of each violation; nothing stored.
    let bad = json!({"id": "/bad", "containers": [
        {"name": "Bad_Name", "resources": {"cpus": 0.1, "mem": 16}}
    ]});
    let (s, body) = call(&c, Method::POST, "/v2/pods", Some(&bad));
    assert_eq!(s, 422, "{body}");
    assert!(body["message"].is_string(), "{body}");
    let paths: Vec<&str> = body["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(|d| d["path"].as_str())
        .collect();
    assert!(paths.contains(&"/containers(0)/name"), "{body}");
    assert!(paths.contains(&"/containers(0)"), "no exec: {body}");
    assert!(body["details"][0]["errors"].is_array(), "{body}");
    let (s, body) = call(
        &c,
        Method::POST,
        "/v2/pods",
        Some(&json!({"id": "/x", "bogus": 1})),
    );
    assert_eq!(s, 422, "unknown key: {body}");
    let (s, _) = call(&c, Method::GET, "/v2/pods/bad", None);
    assert_eq!(s, 404);

    // Unknown pods: 404 with Marathon's message.
    for (m, p) in [
        (Method::GET, "/v2/pods/nope"),
        (Method::GET, "/v2/pods/nope::status"),
        (Method::GET, "/v2/pods/nope::versions"),
        (Method::DELETE, "/v2/pods/nope"),
    ] {
        let (s, body) = call(&c, m.clone(), p, None);
        assert_eq!(s, 404, "{m} {p}: {body}");
        assert_eq!(body["message"], "Pod '/nope' does not exist", "{p}");
    }

    // A second create conflicts; a PUT whose id differs from the path is a 400.
    let pod = json!({"id": "/sleepy", "scaling": {"kind": "fixed", "instances": 1},
        "containers": [{"name": "s", "resources": {"cpus": 0.1, "mem": 16},
                        "exec": {"command": {"shell": "exec sleep 600"}}}]});
    let (s, body) = call(&c, Method::POST, "/v2/pods", Some(&pod));
    assert_eq!(s, 201, "{body}");
    let (s, body) = call(&c, Method::POST, "/v2/pods", Some(&pod));
    assert_eq!(s, 409, "{body}");
    let (s, body) = call(&c, Method::PUT, "/v2/pods/other", Some(&pod));
    assert_eq!(s, 400, "{body}");
    let st = wait_stable(&c, "/sleepy", 1);
    let (s, versions) = call(&c, Method::GET, "/v2/pods/sleepy::versions", None);
    assert_eq!(s, 200);
    let v = versions[0].as_str().expect("a version").to_owned();
    assert_eq!(v, st["spec"]["version"].as_str().expect("version"));
    let (s, at) = call(
        &c,
        Method::GET,
        &format!("/v2/pods/sleepy::versions/{v}"),
        None,
    );
    assert_eq!((s, at["id"].clone()), (200, json!("/sleepy")));
    let (s, all) = call(&c, Method::GET, "/v2/pods/::status", None);
    assert_eq!(s, 200);
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");

    // A change while a deployment runs is a 409 unless forced.
    let mut two = pod.clone();
    two["scaling"]["instances"] = json!(2);
    two["containers"][0]["resources"]["mem"] = json!(5000);
    let (s, body) = call(&c, Method::PUT, "/v2/pods/sleepy", Some(&two));
    assert_eq!(s, 200, "{body}");
    let (s, body) = call(&c, Method::PUT, "/v2/pods/sleepy", Some(&pod));
    assert_eq!(s, 409, "an unplaceable deployment holds the pod: {body}");
    let (s, body) = call(&c, Method::PUT, "/v2/pods/sleepy?force=true", Some(&pod));
    assert_eq!(s, 200, "{body}");
    wait_stable(&c, "/sleepy", 1);

    if !common::python_has("marathon", "marathon==0.13.0") {
        return;
    }
    common::run_python_script("marathon_pods.py", &[&c.url()]);
}

#[test]
fn the_pod_cli_adds_lists_shows_scales_kills_restarts_and_removes() {
    require_root!();
    let c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:2048;ports:[32400-32499]");
    let file = c.dir.path().join("pod.json");
    let pod = json!({"id": "/cli/pod", "containers": [
        {"name": "main", "resources": {"cpus": 0.1, "mem": 16},
         "exec": {"command": {"shell": "exec sleep 600"}},
         "endpoints": [{"name": "p", "hostPort": 0}]}]});
    std::fs::write(&file, pod.to_string()).expect("write");
    let ok = |args: &[&str]| -> String {
        let out = c.cli(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "meseta {args:?}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let out = ok(&[
        "pod",
        "add",
        file.to_str().expect("utf8"),
        "--wait",
        "--timeout",
        "90s",
    ]);
    assert!(out.contains("pod /cli/pod added"), "{out}");
    let out = ok(&["pod", "list"]);
    assert!(out.contains("/cli/pod") && out.contains("1/1"), "{out}");
    let listed: Value = serde_json::from_str(&ok(&["pod", "list", "--json"])).expect("json");
    assert_eq!(listed[0]["id"], "/cli/pod");
    let out = ok(&[
        "pod",
        "scale",
        "/cli/pod",
        "2",
        "--wait",
        "--timeout",
        "90s",
    ]);
    assert!(out.contains("scaled to 2"), "{out}");
    let st = wait_stable(&c, "/cli/pod", 2);
    let out = ok(&["pod", "show", "/cli/pod"]);
    let first = st["instances"][0]["id"].as_str().expect("id").to_owned();
    assert!(
        out.contains(&first) && out.contains("TASK_RUNNING"),
        "{out}"
    );
    let out = ok(&["pod", "kill", "/cli/pod", &first]);
    assert!(out.contains("killed"), "{out}");
    let st = wait_for("the killed instance replaced", WAIT, || {
        let st = status(&c, "/cli/pod");
        let ids: Vec<&str> = st["instances"]
            .as_array()?
            .iter()
            .filter_map(|i| i["id"].as_str())
            .collect();
        (stable_instances(&st).len() == 2 && !ids.contains(&first.as_str())).then_some(st.clone())
    });
    let version = st["spec"]["version"].clone();
    let out = ok(&["pod", "restart", "/cli/pod", "--wait", "--timeout", "90s"]);
    assert!(out.contains("restarting"), "{out}");
    let st = wait_stable(&c, "/cli/pod", 2);
    assert_ne!(st["spec"]["version"], version);
    let out = ok(&["pod", "remove", "/cli/pod", "--wait", "--timeout", "90s"]);
    assert!(out.contains("removed"), "{out}");
    let (s, _) = call(&c, Method::GET, "/v2/pods/cli/pod", None);
    assert_eq!(s, 404);
    let out = c.cli(&["pod", "show", "/cli/pod"]);
    assert!(!out.status.success());
}
