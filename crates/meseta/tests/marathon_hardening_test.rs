//! Hostile input on Marathon's `/v2` API, on an in-process `testkit` cluster: resource amounts the
//! fixed-point scalars cannot hold, dependency cycles through an app itself, bodies that are not
//! objects, unknown paths and methods, root users, and a huge app on a small agent — each is a
//! 4xx JSON answer naming the field, or (the huge app) an API that stays small and responsive.

mod common;

use std::time::Duration;

use meseta_testkit::{Cluster, ClusterOptions};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

async fn cluster(resources: &str) -> Cluster {
    let opts = ClusterOptions::new(env!("CARGO_BIN_EXE_meseta"))
        .agent_resources(resources)
        .expect("resources parse");
    Cluster::start(opts).await.expect("cluster starts")
}

/// One request; the status and the JSON body (`Null` when the body is not JSON).
async fn call(c: &Cluster, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let mut req = client.request(method.clone(), format!("{}{path}", c.url));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The paths a Marathon 422 body names.
fn paths(body: &Value) -> Vec<String> {
    body["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["path"].as_str().map(str::to_owned))
        .collect()
}

fn app(id: &str, extra: Value) -> Value {
    let mut a = json!({"id": id, "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 0});
    if let (Some(a), Value::Object(x)) = (a.as_object_mut(), extra) {
        a.extend(x);
    }
    a
}

async fn app_count(c: &Cluster) -> usize {
    let (s, b) = call(c, Method::GET, "/v2/apps", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["apps"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_amounts_beyond_the_fixed_point_range_are_refused_naming_the_field() {
    let mut c = cluster("cpus:1;mem:1024;disk:1024;ports:[31000-31099]").await;
    // The same hostile input on a fresh master and on one restarted over the same store.
    for round in ["fresh", "restarted"] {
        for field in ["cpus", "mem", "disk"] {
            for v in [1e16, 1e308, -1.0] {
                let body = app(&format!("/big-{field}"), json!({field: v}));
                let (s, b) = call(&c, Method::POST, "/v2/apps", Some(body)).await;
                assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}={v}: {b}");
                assert!(paths(&b).contains(&format!("/{field}")), "{field}={v}: {b}");
            }
        }
        // The same through a group, a PUT and a PATCH.
        let group = json!({"id": "/g", "apps": [app("a", json!({"cpus": 1e16}))]});
        let (s, b) = call(&c, Method::POST, "/v2/groups", Some(group)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(paths(&b).contains(&"/apps(0)/cpus".to_owned()), "{b}");
        let (s, b) = call(&c, Method::POST, "/v2/apps", Some(app("/ok", json!({})))).await;
        // Stored in the fresh round, so a conflict after the restart.
        let want = if round == "fresh" {
            StatusCode::CREATED
        } else {
            StatusCode::CONFLICT
        };
        assert_eq!(s, want, "{round}: {b}");
        for method in [Method::PUT, Method::PATCH] {
            let (s, b) = call(
                &c,
                method.clone(),
                "/v2/apps/ok",
                Some(json!({"mem": 1e300})),
            )
            .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{method}: {b}");
            assert!(paths(&b).contains(&"/mem".to_owned()), "{method}: {b}");
        }
        // Counters past Marathon's 32-bit integers.
        let hc = json!({"healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"},
                                          "intervalSeconds": 9_000_000_000_i64}]});
        let (s, b) = call(&c, Method::POST, "/v2/apps", Some(app("/hc", hc))).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(
            paths(&b).contains(&"/healthChecks(0)/intervalSeconds".to_owned()),
            "{b}"
        );
        let (s, b) = call(
            &c,
            Method::POST,
            "/v2/apps",
            Some(app("/many", json!({"instances": 3_000_000_000_i64}))),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(paths(&b).contains(&"/instances".to_owned()), "{b}");
        assert_eq!(app_count(&c).await, 1, "only /ok was stored");
        if round == "fresh" {
            c.restart_master().await.expect("master restarts");
        }
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_or_group_depending_on_itself_is_a_cycle() {
    let mut c = cluster("cpus:1;mem:1024;disk:1024;ports:[31000-31099]").await;
    // The same hostile input on a fresh master and on one restarted over the same store.
    for round in ["fresh", "restarted"] {
        let cyclic = "Dependency graph has cyclic dependencies.";
        let (s, b) = call(
            &c,
            Method::POST,
            "/v2/apps",
            Some(app("/selfish", json!({"dependencies": ["/selfish"]}))),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["details"][0]["errors"][0], cyclic, "{b}");
        // A two-app cycle through /v2/apps alone.
        let (s, b) = call(
            &c,
            Method::POST,
            "/v2/apps",
            Some(app("/a", json!({"dependencies": ["/b"]}))),
        )
        .await;
        // Stored in the fresh round, so a conflict after the restart.
        let want = if round == "fresh" {
            StatusCode::CREATED
        } else {
            StatusCode::CONFLICT
        };
        assert_eq!(s, want, "{round}: {b}");
        let (s, b) = call(
            &c,
            Method::PUT,
            "/v2/apps/b",
            Some(app("/b", json!({"dependencies": ["/a"]}))),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        // A group whose dependencies name the group itself.
        let group = json!({"id": "/g", "dependencies": ["/g"], "apps": [app("x", json!({}))]});
        let (s, b) = call(&c, Method::POST, "/v2/groups", Some(group)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["details"][0]["errors"][0], cyclic, "{b}");
        assert_eq!(app_count(&c).await, 1, "only /a was stored");
        if round == "fresh" {
            c.restart_master().await.expect("master restarts");
        }
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_object_bodies_unknown_paths_and_methods_get_marathon_json_errors() {
    let mut c = cluster("cpus:1;mem:1024;disk:1024;ports:[31000-31099]").await;
    // The same hostile input on a fresh master and on one restarted over the same store.
    for round in ["fresh", "restarted"] {
        for (method, path) in [
            (Method::PUT, "/v2/groups/x"),
            (Method::POST, "/v2/groups"),
            (Method::POST, "/v2/apps"),
            (Method::PUT, "/v2/apps/x"),
        ] {
            let (s, b) = call(&c, method.clone(), path, Some(json!([]))).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{method} {path}: {b}");
            assert_eq!(b["message"], "Invalid JSON", "{method} {path}: {b}");
        }
        assert_eq!(app_count(&c).await, 0);
        for (method, path) in [
            (Method::PUT, "/v2/apps"),
            (Method::DELETE, "/v2/apps"),
            (Method::POST, "/v2/info"),
            (Method::PATCH, "/v2/groups"),
            (Method::POST, "/v2/deployments"),
        ] {
            let (s, b) = call(&c, method.clone(), path, None).await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(b["message"], "Method Not Allowed", "{method} {path}: {b}");
        }
        for path in ["/v2/nope", "/v2", "/v2/apps-x/y"] {
            let (s, b) = call(&c, Method::GET, path, None).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
            assert!(b["message"].is_string(), "{path}: {b}");
        }
        if round == "fresh" {
            c.restart_master().await.expect("master restarts");
        }
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_users_are_refused_unless_the_master_allows_root_tasks() {
    let mut c = cluster("cpus:1;mem:1024;disk:1024;ports:[31000-31099]").await;
    // The same hostile input on a fresh master and on one restarted over the same store.
    for round in ["fresh", "restarted"] {
        assert!(!c.master.allows_root_tasks());
        let (s, b) = call(
            &c,
            Method::POST,
            "/v2/apps",
            Some(app("/r", json!({"user": "root"}))),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(paths(&b).contains(&"/user".to_owned()), "{b}");
        let group = json!({"id": "/g", "groups": [{"id": "in", "apps": [
            app("ok", json!({})), app("r", json!({"user": "root"}))]}]});
        let (s, b) = call(&c, Method::POST, "/v2/groups", Some(group)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(
            paths(&b).contains(&"/groups(0)/apps(1)/user".to_owned()),
            "{b}"
        );
        // An app without a user keeps none (the agent's default applies); it cannot be made root.
        let (s, b) = call(&c, Method::POST, "/v2/apps", Some(app("/n", json!({})))).await;
        // Stored in the fresh round, so a conflict after the restart.
        let want = if round == "fresh" {
            StatusCode::CREATED
        } else {
            StatusCode::CONFLICT
        };
        assert_eq!(s, want, "{round}: {b}");
        if round == "fresh" {
            assert!(b.get("user").is_none_or(Value::is_null), "{b}");
        }
        let (s, b) = call(
            &c,
            Method::PATCH,
            "/v2/apps/n",
            Some(json!({"user": "root"})),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(paths(&b).contains(&"/user".to_owned()), "{b}");
        assert_eq!(app_count(&c).await, 1);
        if round == "fresh" {
            c.restart_master().await.expect("master restarts");
        }
    }
    c.stop().await;

    // A cluster started with --allow-root takes the same app.
    let opts = ClusterOptions::new(env!("CARGO_BIN_EXE_meseta"))
        .agent_resources("cpus:1;mem:1024;disk:1024;ports:[31000-31099]")
        .expect("resources parse")
        .allow_root();
    let c = Cluster::start(opts).await.expect("cluster starts");
    assert!(c.master.allows_root_tasks());
    let (s, b) = call(
        &c,
        Method::POST,
        "/v2/apps",
        Some(app("/r", json!({"user": "root"}))),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["user"], "root", "{b}");
    c.stop().await;
}

/// Instance records the services scheduler stored.
async fn stored_instances(c: &Cluster) -> usize {
    c.master
        .store()
        .list("/meseta/services/instances/")
        .await
        .expect("list")
        .len()
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_instances_on_a_small_agent_store_and_cost_only_what_is_placed() {
    require_root!();
    let c = cluster("cpus:1;mem:1024;disk:1024;ports:[31000-31099]").await;
    let big = app("/huge", json!({"instances": 1_000_000, "cpus": 0.1}));
    let started = std::time::Instant::now();
    let (s, b) = call(&c, Method::POST, "/v2/apps", Some(big)).await;
    eprintln!("POST 1,000,000 instances: {:?}", started.elapsed());
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // Ten fit on the agent.
    until("ten tasks run", async || {
        let (_, b) = call(&c, Method::GET, "/v2/apps/huge", None).await;
        b["app"]["tasksRunning"].as_u64() == Some(10)
    })
    .await;
    let stored = stored_instances(&c).await;
    eprintln!("instance records stored: {stored}");
    assert!(
        stored <= 10 + 1_000,
        "{stored} instance records for 10 placed instances"
    );
    let started = std::time::Instant::now();
    let (s, b) = call(&c, Method::GET, "/v2/apps", None).await;
    eprintln!("GET /v2/apps: {:?}", started.elapsed());
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["apps"][0]["instances"], 1_000_000, "{b}");
    let (s, b) = call(&c, Method::GET, "/v2/queue", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["queue"][0]["count"], 1_000_000 - 10, "{b}");
    let (s, b) = call(&c, Method::GET, "/v2/deployments", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.as_array().map(Vec::len), Some(1), "{b}");
    let started = std::time::Instant::now();
    let (s, b) = call(&c, Method::DELETE, "/v2/apps/huge", None).await;
    eprintln!("DELETE: {:?}", started.elapsed());
    assert_eq!(s, StatusCode::OK, "{b}");
    until("the app is gone", async || app_count(&c).await == 0).await;
    until("its instances are forgotten", async || {
        stored_instances(&c).await == 0
    })
    .await;
    c.stop().await;
}
