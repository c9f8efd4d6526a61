//! `/health`, `/version`, `/master/state`, `/master/slaves` and Prometheus `/metrics` carry the
//! Mesos shapes and the figures of the running tasks.

mod common;

use std::time::Duration;

use common::Cluster;

#[test]
fn state_slaves_and_metrics_describe_the_cluster() {
    require_root!();
    let c = Cluster::new(2, 30.0);
    let _e = c.execute_bg("obs", "sleep 1000", "cpus:0.25;mem:48");
    let task = c.wait_task_state("obs", "TASK_RUNNING", Duration::from_secs(10));

    let health = reqwest::blocking::get(format!("{}/health", c.url())).expect("health");
    assert_eq!(health.status().as_u16(), 200);

    let state = c.get("/master/state").expect("state");
    assert_eq!(state["version"], "1.11.0");
    assert_eq!(state["activated_slaves"], 2.0);
    let fw = state["frameworks"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "meseta-execute"))
        .expect("framework");
    assert_eq!(fw["tasks"][0]["id"], task["id"]);
    assert_eq!(fw["tasks"][0]["resources"]["cpus"], 0.25);
    for s in state["slaves"].as_array().expect("slaves") {
        for k in ["cpus", "mem", "disk", "gpus"] {
            assert!(
                s["resources"][k].is_number(),
                "slave resources lack {k}: {s}"
            );
        }
        assert!(s["pid"].as_str().unwrap_or("").starts_with("slave(1)@"));
    }

    let slaves = c.get("/master/slaves").expect("slaves");
    let used: f64 = slaves["slaves"]
        .as_array()
        .expect("arr")
        .iter()
        .map(|s| s["used_resources"]["cpus"].as_f64().unwrap_or(0.0))
        .sum();
    assert_eq!(used, 0.25);
    assert!(slaves["slaves"][0]["unreserved_resources_full"].is_array());

    let metrics = reqwest::blocking::get(format!("{}/metrics", c.url()))
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics.contains("meseta_tasks{state=\"TASK_RUNNING\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meseta_agents{state=\"active\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meseta_resources_total{resource=\"cpus\"} 8"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meseta_resources_used{resource=\"cpus\"} 0.25"),
        "{metrics}"
    );

    // Marathon's and Chronos' clients get their servers' JSON shape: chronos-python sends no
    // Accept header at all, marathon-python asks for application/json.
    let raw = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", c.port)).expect("connect");
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    };
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    let no_accept: serde_json::Value = serde_json::from_str(body.trim())
        .or_else(|_| {
            // chunked: take the JSON between the first `{` and the last `}`
            let (a, b) = (body.find('{').unwrap_or(0), body.rfind('}').unwrap_or(0));
            serde_json::from_str(&body[a..=b])
        })
        .unwrap_or_else(|e| panic!("no-Accept /metrics is not JSON ({e}): {raw}"));
    let json: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("{}/metrics", c.url()))
        .header("Accept", "application/json")
        .send()
        .expect("metrics")
        .json()
        .expect("json metrics");
    for m in [&no_accept, &json] {
        for k in [
            "version",
            "gauges",
            "counters",
            "histograms",
            "meters",
            "timers",
        ] {
            assert!(!m[k].is_null(), "JSON metrics lack {k}: {m}");
        }
        assert_eq!(m["gauges"]["master/cpus_used"]["value"], 0.25, "{m}");
        assert_eq!(m["gauges"]["master/tasks_running"]["value"], 1.0, "{m}");
    }
}

#[test]
fn mesos_operator_endpoints_and_framework_teardown() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let mut exec = c.execute_bg("op", "sleep 1000", "cpus:0.5;mem:64");
    let task = c.wait_task_state("op", "TASK_RUNNING", Duration::from_secs(10));

    let snap = c.get("/metrics/snapshot").expect("snapshot");
    assert_eq!(snap["master/cpus_total"], 4.0);
    assert_eq!(snap["master/cpus_used"], 0.5);
    assert_eq!(snap["master/cpus_percent"], 0.125);
    assert_eq!(snap["master/tasks_running"], 1.0);
    assert_eq!(snap["master/slaves_active"], 1.0);
    assert_eq!(snap["master/elected"], 1.0);
    assert_eq!(snap["master/frameworks_active"], 1.0);

    let summary = c.get("/master/state-summary").expect("summary");
    assert_eq!(summary["slaves"][0]["TASK_RUNNING"], 1);
    assert_eq!(summary["frameworks"][0]["TASK_RUNNING"], 1);
    assert_eq!(
        summary["frameworks"][0]["slave_ids"][0],
        summary["slaves"][0]["id"]
    );

    let list = c.cli(&["--json", "framework", "list"]);
    assert!(list.status.success());
    let fws: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json list");
    let fw_id = fws[0]["id"].as_str().expect("framework id").to_string();
    assert_eq!(fws[0]["name"], "meseta-execute");

    let out = c.cli(&["framework", "teardown", &fw_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = task["id"].as_str().expect("id");
    common::wait_for("task killed by teardown", Duration::from_secs(15), || {
        c.tasks()
            .into_iter()
            .find(|t| t["id"] == id && t["state"] == "TASK_KILLED")
    });
    let done = c.get("/master/frameworks").expect("frameworks");
    assert_eq!(done["completed_frameworks"][0]["id"], fw_id.as_str());
    let again = c.cli(&["framework", "teardown", &fw_id]);
    assert!(
        !again.status.success(),
        "a removed framework cannot be torn down twice"
    );
    let _ = exec.child.kill();
}

#[test]
fn v1_operator_api_answers_read_calls() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let _e = c.execute_bg("v1", "sleep 1000", "cpus:0.2;mem:32");
    let task = c.wait_task_state("v1", "TASK_RUNNING", Duration::from_secs(10));
    let client = reqwest::blocking::Client::new();
    let call = |body: &str| {
        let r = client
            .post(format!("{}/api/v1", c.url()))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().unwrap_or_default())
    };
    let (s, v) = call(r#"{"type":"GET_TASKS"}"#);
    assert_eq!(s, 200);
    assert_eq!(v["type"], "GET_TASKS");
    assert_eq!(v["get_tasks"]["tasks"][0]["task_id"]["value"], task["id"]);
    assert_eq!(v["get_tasks"]["tasks"][0]["state"], "TASK_RUNNING");

    let (s, v) = call(r#"{"type":"GET_AGENTS"}"#);
    assert_eq!(s, 200);
    assert_eq!(
        v["get_agents"]["agents"][0]["agent_info"]["hostname"],
        "agent-0"
    );
    assert_eq!(
        v["get_agents"]["agents"][0]["allocated_resources"][0]["name"],
        "cpus"
    );

    let (s, v) = call(r#"{"type":"GET_STATE"}"#);
    assert_eq!(s, 200);
    assert!(
        v["get_state"]["get_frameworks"]["frameworks"][0]["framework_info"]["name"]
            == "meseta-execute"
    );

    let (s, v) = call(r#"{"type":"NO_SUCH_CALL"}"#);
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap_or("").contains("NO_SUCH_CALL"));
    let (s, _) = call("not json");
    assert_eq!(s, 400);
}

#[test]
fn v1_operator_subscribe_streams_state_then_task_events() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let mut resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1", c.url()))
        .header("Content-Type", "application/json")
        .body(r#"{"type":"SUBSCRIBE"}"#)
        .send()
        .expect("subscribe");
    assert_eq!(resp.status().as_u16(), 200);
    let mut decoder = meseta_api::recordio::Decoder::new();
    let mut next = move || -> serde_json::Value {
        use std::io::Read;
        loop {
            if let Some(rec) = decoder.next_record().expect("valid recordio") {
                return serde_json::from_slice(&rec).expect("json event");
            }
            let mut buf = [0u8; 4096];
            let n = resp.read(&mut buf).expect("read stream");
            assert!(n > 0, "stream ended");
            decoder.feed(&buf[..n]);
        }
    };
    let first = next();
    assert_eq!(first["type"], "SUBSCRIBED");
    assert_eq!(
        first["subscribed"]["get_state"]["get_agents"]["agents"][0]["agent_info"]["hostname"],
        "agent-0"
    );

    let _e = c.execute_bg("bus", "sleep 1000", "cpus:0.1;mem:32");
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &serde_json::Value| {
        e["type"] == "TASK_UPDATED" && e["task_updated"]["state"] == "TASK_RUNNING"
    }) {
        let ev = next();
        if ev["type"] != "HEARTBEAT" {
            seen.push(ev);
        }
        assert!(seen.len() < 50, "no TASK_RUNNING among {seen:?}");
    }
    let types: Vec<&str> = seen.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(types.contains(&"FRAMEWORK_ADDED"), "{types:?}");
    let added = seen
        .iter()
        .find(|e| e["type"] == "TASK_ADDED")
        .expect("TASK_ADDED");
    assert_eq!(added["task_added"]["task"]["name"], "bus");
    assert_eq!(added["task_added"]["task"]["state"], "TASK_STAGING");
}
