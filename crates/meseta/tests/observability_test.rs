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
}
