//! Weights and quota through the operator APIs: validated (4xx naming the problem, nothing
//! stored), persisted across a master restart, visible in `/master/roles` and the v1 API.

mod common;

use common::Cluster;

fn send(method: reqwest::Method, url: String, body: &str) -> (u16, serde_json::Value) {
    let r = reqwest::blocking::Client::new()
        .request(method, url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or_default())
}

#[test]
fn weights_and_quota_are_validated_persisted_and_shown() {
    require_root!();
    let mut c = Cluster::new(1, 30.0);
    let put = reqwest::Method::PUT;
    let post = reqwest::Method::POST;
    let (s, _) = send(
        put.clone(),
        format!("{}/master/weights", c.url()),
        r#"[{"role":"prod","weight":2.5}]"#,
    );
    assert_eq!(s, 200);
    let (s, v) = send(
        put.clone(),
        format!("{}/master/weights", c.url()),
        r#"[{"role":"dev","weight":-1}]"#,
    );
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap_or("").contains("dev"), "{v}");
    let (s, _) = send(
        put,
        format!("{}/master/weights", c.url()),
        r#"[{"role":" bad","weight":1}]"#,
    );
    assert_eq!(s, 400);

    let quota =
        r#"{"role":"prod","guarantee":[{"name":"cpus","type":"SCALAR","scalar":{"value":1.5}}]}"#;
    let (s, _) = send(post.clone(), format!("{}/master/quota", c.url()), quota);
    assert_eq!(s, 200);
    let bad = r#"{"role":"prod","guarantee":[{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":1,"end":2}]}}]}"#;
    let (s, v) = send(post.clone(), format!("{}/master/quota", c.url()), bad);
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap_or("").contains("ports"), "{v}");
    let (s, _) = send(
        post.clone(),
        format!("{}/master/quota", c.url()),
        "{not json",
    );
    assert_eq!(s, 400);
    let v1 = r#"{"type":"UPDATE_QUOTA","update_quota":{"force":false,"quota_configs":[{"role":"batch","limits":{"cpus":{"value":3}}},{"role":"-x","limits":{"cpus":{"value":1}}}]}}"#;
    let (s, _) = send(post.clone(), format!("{}/api/v1", c.url()), v1);
    assert_eq!(s, 400, "one bad config refuses the whole update");

    // A master restart keeps what was accepted, and only that.
    c.master.as_mut().expect("master").kill9();
    c.start_master();
    c.wait_agents(1);
    let weights = c.get("/master/weights").expect("weights");
    assert_eq!(
        weights,
        serde_json::json!([{"role": "prod", "weight": 2.5}])
    );
    let q = c.get("/master/quota").expect("quota");
    assert_eq!(q["configs"].as_array().map(Vec::len), Some(1), "{q}");
    assert_eq!(q["configs"][0]["role"], "prod");
    assert_eq!(q["configs"][0]["guarantees"]["cpus"]["value"], 1.5);
    let roles = c.get("/master/roles").expect("roles");
    let prod = roles["roles"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "prod").cloned())
        .expect("prod");
    assert_eq!(prod["weight"], 2.5);
    let (s, v) = send(
        post,
        format!("{}/api/v1", c.url()),
        r#"{"type":"GET_QUOTA"}"#,
    );
    assert_eq!(s, 200);
    assert_eq!(v["get_quota"]["status"]["configs"][0]["role"], "prod");

    let (s, _) = send(
        reqwest::Method::DELETE,
        format!("{}/master/quota/prod", c.url()),
        "",
    );
    assert_eq!(s, 200);
    let (s, _) = send(
        reqwest::Method::DELETE,
        format!("{}/master/quota/prod", c.url()),
        "",
    );
    assert_eq!(s, 400, "no quota left to remove");
}

#[test]
fn cli_lists_roles_and_manages_quota() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let out = c.cli(&[
        "quota",
        "set",
        "prod",
        "--guarantee",
        "cpus:1;mem:256",
        "--limit",
        "cpus:2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.cli(&["--json", "quota", "get"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v[0]["role"], "prod");
    assert_eq!(v[0]["limits"]["cpus"]["value"], 2.0);
    let out = c.cli(&["role", "list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("prod") && table.contains("cpus:1"),
        "{table}"
    );
    let out = c.cli(&["quota", "set", "prod", "--guarantee", "ports:[1-2]"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ports"));
    let out = c.cli(&["quota", "remove", "prod"]);
    assert!(out.status.success());
    let out = c.cli(&["quota", "remove", "prod"]);
    assert!(!out.status.success(), "removing twice is an error");
}
