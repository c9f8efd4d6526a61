//! Marathon application groups end to end on the real binary: `/v2/groups` creates, scales,
//! replaces and removes apps as one deployment, honouring app dependencies, and refuses bad
//! bodies (422) without storing anything. Also drives the `marathon` PyPI client's group calls
//! when it is installed.

mod common;

use std::time::Duration;

use common::{wait_for, Cluster};
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// Status, `Location` and `Marathon-Deployment-Id` headers, and JSON body of a request.
fn call(c: &Cluster, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let r = c.call(method, path, body);
    (r.status, r.body)
}

fn app(c: &Cluster, id: &str) -> Value {
    let (s, body) = call(c, Method::GET, &format!("/v2/apps/{id}"), None);
    assert_eq!(s, 200, "{id}: {body}");
    body["app"].clone()
}

fn app_ids(c: &Cluster) -> Vec<String> {
    let (_, body) = call(c, Method::GET, "/v2/apps", None);
    body["apps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn no_deployments(c: &Cluster, what: &str) {
    wait_for(what, WAIT, || {
        let (_, d) = call(c, Method::GET, "/v2/deployments", None);
        d.as_array()?.is_empty().then_some(())
    });
}

fn running(c: &Cluster, id: &str, n: u64) -> Value {
    wait_for(&format!("{id}: {n} running"), WAIT, || {
        let a = app(c, id);
        (a["tasksRunning"] == n && a["deployments"].as_array()?.is_empty()).then_some(a)
    })
}

fn sleeper(id: &str, extra: Value) -> Value {
    let mut a = json!({"id": id, "cmd": "sleep 1000", "cpus": 0.05, "mem": 16});
    if let (Value::Object(a), Value::Object(e)) = (&mut a, extra) {
        a.extend(e);
    }
    a
}

#[test]
fn groups_create_scale_replace_and_delete_in_dependency_order() {
    require_root!();
    let c = Cluster::new(1, 10.0);
    let group = json!({"id": "/g", "apps": [
        sleeper("db", json!({})),
        sleeper("web", json!({"dependencies": ["db"]})),
    ]});

    // Create: 201, one deployment whose steps start web after db.
    let reply = c.call(Method::POST, "/v2/groups", Some(&group));
    let (s, body) = (reply.status, &reply.body);
    let (location, dep_header) = (
        reply.header("Location"),
        reply.header("Marathon-Deployment-Id"),
    );
    assert_eq!(s, 201, "{body}");
    assert_eq!(location.as_deref(), Some("/v2/groups/g"));
    assert!(body["version"].is_string(), "{body}");
    let dep_id = body["deploymentId"]
        .as_str()
        .expect("deploymentId")
        .to_owned();
    assert_eq!(dep_header.as_deref(), Some(dep_id.as_str()));
    let (_, deps) = call(&c, Method::GET, "/v2/deployments", None);
    // The deployment lasts until both tasks run, so it is listed right after the POST.
    let d = deps
        .as_array()
        .and_then(|a| a.iter().find(|d| d["id"] == dep_id.as_str()))
        .cloned();
    {
        let d = d.unwrap_or_else(|| panic!("deployment {dep_id} listed: {deps}"));
        assert_eq!(
            d["steps"],
            json!([
                {"actions": [{"action": "StartApplication", "app": "/g/db"},
                             {"action": "StartApplication", "app": "/g/web"}]},
                {"actions": [{"action": "ScaleApplication", "app": "/g/db"}]},
                {"actions": [{"action": "ScaleApplication", "app": "/g/web"}]},
            ]),
            "{d}"
        );
        assert_eq!(d["affectedApps"], json!(["/g/db", "/g/web"]));
    }
    let db = running(&c, "g/db", 1);
    let web = running(&c, "g/web", 1);
    let started = |a: &Value| a["tasks"][0]["startedAt"].as_str().unwrap_or("").to_owned();
    let staged = |a: &Value| a["tasks"][0]["stagedAt"].as_str().unwrap_or("").to_owned();
    assert!(
        staged(&web) >= started(&db),
        "web staged {} before db started {}",
        staged(&web),
        started(&db)
    );
    let (s, g) = call(&c, Method::GET, "/v2/groups/g", None);
    assert_eq!(s, 200, "{g}");
    assert_eq!(g["apps"].as_array().map(Vec::len), Some(2), "{g}");

    // A second POST is a conflict.
    let (s, body) = call(&c, Method::POST, "/v2/groups", Some(&group));
    assert_eq!(s, 409, "{body}");
    assert_eq!(
        body["message"],
        "Group /g is already created. Use PUT to change this group."
    );

    // scaleBy 2: every app doubles, in one deployment.
    let (s, body) = call(
        &c,
        Method::PUT,
        "/v2/groups/g",
        Some(&json!({"scaleBy": 2})),
    );
    assert_eq!(s, 200, "{body}");
    assert!(body["deploymentId"].is_string(), "{body}");
    running(&c, "g/db", 2);
    running(&c, "g/web", 2);

    // A dry run shows the plan and changes nothing.
    let only_db = json!({"apps": [sleeper("db", json!({"instances": 2}))]});
    let (s, body) = call(&c, Method::PUT, "/v2/groups/g?dryRun=true", Some(&only_db));
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["steps"],
        json!([{"actions": [{"action": "StopApplication", "app": "/g/web"}]}])
    );
    assert!(app_ids(&c).contains(&"/g/web".to_owned()));

    // PUT replaces the group's apps: web is removed, db unchanged.
    let (s, body) = call(&c, Method::PUT, "/v2/groups/g", Some(&only_db));
    assert_eq!(s, 200, "{body}");
    assert_eq!(app_ids(&c), vec!["/g/db".to_owned()]);
    no_deployments(&c, "web stopped");
    let (s, apps) = call(&c, Method::GET, "/v2/groups/g/apps", None);
    assert_eq!(s, 200, "{apps}");
    assert_eq!(apps.as_array().map(Vec::len), Some(1), "{apps}");
    assert_eq!(app(&c, "g/db")["tasksRunning"], 2);

    // DELETE removes everything under the group at once, once confirmed.
    let (s, body) = call(&c, Method::DELETE, "/v2/groups/g", None);
    assert_eq!(
        s, 409,
        "a group of apps goes only with ?confirm=true: {body}"
    );
    assert_eq!(app_ids(&c).len(), 1, "nothing deleted without confirmation");
    let (s, body) = call(&c, Method::DELETE, "/v2/groups/g?confirm=true", None);
    assert_eq!(s, 200, "{body}");
    assert!(body["deploymentId"].is_string(), "{body}");
    assert!(app_ids(&c).is_empty());
    let (s, body) = call(&c, Method::GET, "/v2/groups/g", None);
    assert_eq!(s, 404, "{body}");
    no_deployments(&c, "group removed");
    let (s, body) = call(&c, Method::DELETE, "/v2/groups/g", None);
    assert_eq!(s, 404, "{body}");
    assert_eq!(body["message"], "Group '/g' does not exist");
}

#[test]
fn bad_group_bodies_are_refused_with_every_detail_and_store_nothing() {
    require_root!();
    let c = Cluster::new(1, 10.0);
    let bad_type = json!({"id": "/bad", "apps": [
        sleeper("a", json!({"cpus": "lots"})),
        sleeper("/elsewhere/b", json!({})),
        sleeper("c", json!({})),
    ]});
    let (s, body) = call(&c, Method::POST, "/v2/groups", Some(&bad_type));
    assert_eq!(s, 422, "{body}");
    let paths: Vec<&str> = body["details"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["path"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(paths, vec!["/apps(0)", "/apps(1)/id"], "{body}");

    let cycle = json!({"id": "/cyc", "apps": [
        sleeper("a", json!({"dependencies": ["b"]})),
        sleeper("b", json!({"dependencies": ["a"]})),
    ]});
    let (s, body) = call(&c, Method::POST, "/v2/groups", Some(&cycle));
    assert_eq!(s, 422, "{body}");
    assert!(
        body["details"][0]["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("cyclic")),
        "{body}"
    );
    let (s, body) = call(
        &c,
        Method::PUT,
        "/v2/groups/cyc",
        Some(&json!({"version": "x"})),
    );
    assert_eq!(s, 400, "rollback is not supported: {body}");

    assert!(app_ids(&c).is_empty());
    for g in ["bad", "cyc"] {
        let (s, body) = call(&c, Method::GET, &format!("/v2/groups/{g}"), None);
        assert_eq!(s, 404, "{g}: {body}");
    }
    let (_, d) = call(&c, Method::GET, "/v2/deployments", None);
    assert_eq!(d, json!([]));
}

#[test]
fn marathon_python_client_drives_groups() {
    require_root!();
    if !common::python_has("marathon", "marathon==0.13.0") {
        return;
    }
    let c = Cluster::new(1, 10.0);
    common::run_python_script("marathon_groups.py", &[&c.url()]);
}
