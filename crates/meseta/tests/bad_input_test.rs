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

/// Reads one RecordIO record (`<len>\n<json>`) from a SUBSCRIBE stream.
fn read_record(r: &mut impl std::io::Read) -> serde_json::Value {
    let mut len = Vec::new();
    let mut b = [0u8; 1];
    while r.read_exact(&mut b).is_ok() && b[0] != b'\n' {
        len.push(b[0]);
    }
    let n: usize = String::from_utf8_lossy(&len)
        .trim()
        .parse()
        .expect("length");
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).expect("record");
    serde_json::from_slice(&buf).expect("event json")
}

/// Scheduler calls of the wrong shape, undecodable acknowledgements and absurd weights are 400s
/// that say what is wrong, and nothing of them is kept: on a fresh master and after a restart
/// on the same data dir.
#[test]
fn scheduler_calls_and_weights_refuse_nonsense_before_and_after_restart() {
    let mut c = Cluster::new(0, 30.0);
    for round in ["fresh", "restarted"] {
        let client = reqwest::blocking::Client::new();
        let post = |body: &str, stream: Option<&str>| {
            let mut req = client
                .post(format!("{}/api/v1/scheduler", c.url()))
                .header("Content-Type", "application/json")
                .body(body.to_string());
            if let Some(s) = stream {
                req = req.header("Mesos-Stream-Id", s);
            }
            req.send().expect("post")
        };
        let message = |r: reqwest::blocking::Response| -> (u16, String) {
            let code = r.status().as_u16();
            let body: serde_json::Value = r.json().expect("json error body");
            (code, body["message"].as_str().unwrap_or("").to_string())
        };

        let (code, msg) = message(post(r#"{"type":5}"#, None));
        assert_eq!(code, 400, "{round}: {msg}");
        assert!(
            msg.contains("'type'") && !msg.contains("framework_id"),
            "{round}: a numeric type must be named as such: {msg}"
        );
        let (code, msg) = message(post(r#"{"framework_id":{"value":"x"}}"#, None));
        assert_eq!(code, 400, "{round}: {msg}");
        assert!(msg.contains("'type'"), "{round}: {msg}");

        // A subscribed framework acknowledging with a uuid that is not base64.
        let mut stream = client
            .post(format!("{}/api/v1/scheduler", c.url()))
            .header("Content-Type", "application/json")
            .body(r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"bad-acks"}}}"#)
            .send()
            .expect("subscribe");
        assert_eq!(stream.status().as_u16(), 200, "{round}");
        let sid = stream
            .headers()
            .get("Mesos-Stream-Id")
            .and_then(|v| v.to_str().ok())
            .expect("stream id")
            .to_string();
        let ev = read_record(&mut stream);
        assert_eq!(ev["type"], "SUBSCRIBED", "{round}: {ev}");
        let fw = ev["subscribed"]["framework_id"]["value"]
            .as_str()
            .expect("framework id")
            .to_string();
        for uuid in ["!!not base64!!", "aGVsbG8=" /* 5 bytes */] {
            let ack = serde_json::json!({
                "type": "ACKNOWLEDGE", "framework_id": {"value": fw},
                "acknowledge": {"agent_id": {"value": "a"}, "task_id": {"value": "t"}, "uuid": uuid}
            });
            let (code, msg) = message(post(&ack.to_string(), Some(&sid)));
            assert_eq!(code, 400, "{round}: uuid {uuid}: {msg}");
            assert!(msg.contains("uuid"), "{round}: {msg}");
        }
        drop(stream);

        for weight in ["1e308", "1e7", "0", "-1"] {
            let body = format!(r#"[{{"role":"gold","weight":{weight}}}]"#);
            let r = client
                .put(format!("{}/master/weights", c.url()))
                .body(body)
                .send()
                .expect("put weights");
            let (code, msg) = message(r);
            assert_eq!(code, 400, "{round}: weight {weight}: {msg}");
            assert!(msg.contains("gold"), "{round}: {msg}");
        }
        let weights = c.get("/master/weights").expect("weights");
        assert!(
            !weights.to_string().contains("gold"),
            "{round}: a refused weight was kept: {weights}"
        );

        if round == "fresh" {
            c.master.take();
            c.start_master();
        }
    }
}
