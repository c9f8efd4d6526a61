//! Bad input gets a clear error, a non-zero exit or a 4xx JSON body, and nothing is launched or stored.

mod common;

use std::time::Duration;

use common::{Cluster, MESETA};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn agent_refuses_negative_or_malformed_resources_and_attributes() {
    for (flag, value, needle) in [
        ("--resources", "cpus:-1", "cpus:-1"),
        ("--resources", "cpus:abc", "cpus:abc"),
        ("--resources", "ports:[5-1]", "ports"),
        ("--attributes", "rack", "rack"),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let out = std::process::Command::new(MESETA)
            .args(["agent", "--master", "http://127.0.0.1:9", "--work-dir"])
            .arg(dir.path())
            .args([flag, value])
            .output()
            .expect("run agent");
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains(needle),
            "{flag} {value}: error does not name the problem: {err}"
        );
    }
}

#[test]
fn execute_rejects_bad_resources_and_tasks_no_agent_can_fit() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let out = c.cli(&[
        "execute",
        "--name",
        "bad",
        "--command",
        "true",
        "--resources",
        "cpus:-1",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cpus:-1"), "{}", stderr(&out));

    let out = c.cli(&[
        "execute",
        "--name",
        "huge",
        "--command",
        "true",
        "--resources",
        "cpus:64;mem:64",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no agent"), "{}", stderr(&out));
    assert!(
        c.tasks().is_empty(),
        "something was launched: {:?}",
        c.tasks()
    );
}

#[test]
fn http_api_answers_4xx_json_for_garbage() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let client = reqwest::blocking::Client::new();
    let post = |body: &str, ctype: &str| {
        client
            .post(format!("{}/api/v1/scheduler", c.url()))
            .header("Content-Type", ctype)
            .body(body.to_string())
            .send()
            .expect("post")
    };
    let r = post("{not json", "application/json");
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().expect("json error body");
    assert!(
        body["message"].as_str().unwrap_or("").contains("JSON"),
        "{body}"
    );

    let r = post(r#"{"type":"ACCEPT"}"#, "application/json");
    assert_eq!(r.status().as_u16(), 400);

    let r = post(
        r#"{"type":"DECLINE","framework_id":{"value":"nope"},"decline":{"offer_ids":[]}}"#,
        "application/json",
    );
    assert_eq!(r.status().as_u16(), 400, "a call without Mesos-Stream-Id");

    let r = post("{}", "text/plain");
    assert_eq!(r.status().as_u16(), 415);

    let r = client
        .post(format!("{}/api/meseta/v1/tasks/no-such-task/kill", c.url()))
        .send()
        .expect("post");
    assert_eq!(r.status().as_u16(), 404);
    let body: serde_json::Value = r.json().expect("json");
    assert!(body["message"]
        .as_str()
        .unwrap_or("")
        .contains("no-such-task"));

    let out = c.cli(&["task", "kill", "no-such-task"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-task"));
    assert!(c.tasks().is_empty());
}

#[test]
fn agent_with_an_unknown_id_is_rejected_with_a_clear_error() {
    require_root!();
    let c = Cluster::new(0, 30.0);
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("agent_id"), "not-a-registered-agent-S9").expect("write id");
    let mut child = std::process::Command::new(MESETA)
        .args([
            "agent",
            "--master",
            &c.url(),
            "--listen",
            "127.0.0.1:0",
            "--resources",
            "cpus:1;mem:256",
            "--work-dir",
        ])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn agent");
    let status = common::wait_for("agent to exit", Duration::from_secs(15), || {
        child.try_wait().ok().flatten()
    });
    assert!(!status.success());
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert!(err.contains("not-a-registered-agent-S9"), "{err}");
    let slaves = c.get("/master/slaves").expect("slaves");
    assert_eq!(slaves["slaves"].as_array().map(Vec::len), Some(0));
}
