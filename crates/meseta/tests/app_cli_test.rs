//! `meseta app` / `meseta deploy` and `meseta bench services --quick` end to end on the real
//! binary: a master and an agent as processes, apps through the CLI, real task processes.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{wait_for, Cluster};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The app `id` in `meseta app list --json`.
fn listed(c: &Cluster, id: &str) -> Option<Value> {
    let out = c.cli(&["app", "list", "--json"]);
    let v: Value = serde_json::from_str(&ok(&out, "app list --json")).expect("list is JSON");
    v["apps"]
        .as_array()?
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
}

fn running_tasks(c: &Cluster, app: &str) -> usize {
    c.get("/v2/tasks")
        .and_then(|v| v["tasks"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|t| t["appId"] == app && t["state"] == "TASK_RUNNING")
        .count()
}

#[test]
fn apps_are_added_listed_scaled_and_removed_through_the_cli() {
    let c = Cluster::new(1, 30.0);
    let file = c.dir.path().join("web.json");
    std::fs::write(
        &file,
        r#"{"id":"/cli-web","cmd":"sleep 1000","cpus":0.1,"mem":16,"instances":2}"#,
    )
    .expect("write app file");
    let path = file.to_str().expect("utf8");

    let out = c.cli(&["app", "add", path, "--wait", "--timeout", "60s"]);
    let text = ok(&out, "app add --wait");
    assert!(text.contains("app /cli-web added (deployment "), "{text}");
    assert!(text.contains("finished"), "{text}");
    let app = listed(&c, "/cli-web").expect("the app is listed");
    assert_eq!(app["instances"], 2, "{app}");
    assert_eq!(
        app["tasksRunning"], 2,
        "add --wait returns once all run: {app}"
    );
    assert_eq!(
        app["deployments"].as_array().map(Vec::len),
        Some(0),
        "{app}"
    );

    let table = ok(&c.cli(&["app", "list"]), "app list");
    let row = table
        .lines()
        .find(|l| l.starts_with("/cli-web"))
        .unwrap_or_default();
    assert!(row.contains("2/2") && row.ends_with('n'), "{table}");
    let show = ok(&c.cli(&["app", "show", "cli-web"]), "app show");
    assert_eq!(show.matches("TASK_RUNNING").count(), 2, "{show}");

    let out = c.cli(&["app", "scale", "cli-web", "1", "--wait", "--timeout", "60s"]);
    ok(&out, "app scale --wait");
    wait_for("one running task", WAIT, || {
        (running_tasks(&c, "/cli-web") == 1).then_some(())
    });
    let app = listed(&c, "/cli-web").expect("still listed");
    assert_eq!(app["instances"], 1, "{app}");
    let versions = ok(&c.cli(&["app", "versions", "/cli-web"]), "app versions");
    assert!(versions.lines().count() >= 3, "two versions: {versions}");

    let missing = c.cli(&["app", "show", "no-such-app"]);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("does not exist") && err.contains("(404)"),
        "{err}"
    );

    let deploys = ok(&c.cli(&["deploy", "list"]), "deploy list");
    assert!(deploys.starts_with("ID"), "{deploys}");

    ok(
        &c.cli(&["app", "remove", "cli-web", "--wait", "--timeout", "60s"]),
        "app remove --wait",
    );
    assert!(listed(&c, "/cli-web").is_none());
    wait_for("the app's tasks gone", WAIT, || {
        (running_tasks(&c, "/cli-web") == 0).then_some(())
    });
}

#[test]
fn bench_services_quick_places_every_instance() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meseta"))
        .args(["bench", "services", "--quick", "--json", "--timeout", "120"])
        .output()
        .expect("run meseta bench services");
    let text = ok(&out, "bench services --quick");
    let r: Value = serde_json::from_str(&text).expect("report JSON");
    assert_eq!(r["instances"], 100, "{r}");
    assert!(r["seconds"].as_f64().is_some_and(|s| s > 0.0), "{r}");
    assert!(
        r["placements_per_s"].as_f64().is_some_and(|p| p > 0.0),
        "{r}"
    );
    assert!(r["master_rss_after"].as_u64().is_some_and(|b| b > 0), "{r}");
    assert!(
        r["master_rss_settled"].as_u64().is_some_and(|b| b > 0),
        "{r}"
    );
    assert_eq!(r["checks"].as_array().map(Vec::len), Some(2), "{r}");
}
