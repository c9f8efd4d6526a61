//! Backup and restore as an operator runs them: `meseta backup FILE` against a running
//! cluster (apps in a group, a Chronos job, a weight, a quota, a dynamic reservation), the
//! cluster stopped, `meseta restore FILE --data-dir` into a new data dir, and a master started
//! on it serving the same apps, groups, jobs, roles, quota and reservations. Also: a restore
//! into a non-empty store is refused naming its key count and `--force` replaces it, and a
//! master refuses a store of another schema version or one holding an unfinished restore.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, MESETA};
use meseta_store::redb::RedbStore;
use meseta_store::Store;
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn send(c: &Cluster, method: Method, path: &str, body: &str, content_type: &str) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .request(method, format!("{}{path}", c.url()))
        .header("Content-Type", content_type)
        .body(body.to_string())
        .send()
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or_default())
}

fn sleeper(id: &str, extra: Value) -> Value {
    let mut a = json!({"id": id, "cmd": "sleep 1000", "cpus": 0.05, "mem": 16});
    if let (Value::Object(a), Value::Object(e)) = (&mut a, extra) {
        a.extend(e);
    }
    a
}

/// What must survive a backup and restore, as the APIs show it. Agents are compared by what
/// the master stores about them (id, host name, reservations), not by their connection.
fn views(c: &Cluster) -> Value {
    let get = |p: &str| c.get(p).unwrap_or(Value::Null);
    let slaves: Vec<Value> = get("/master/slaves")["slaves"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            json!({"id": s["id"], "hostname": s["hostname"],
                   "reserved_resources": s["reserved_resources"],
                   "reserved_resources_full": s["reserved_resources_full"]})
        })
        .collect();
    json!({
        "apps": get("/v2/apps"),
        "groups": get("/v2/groups"),
        "jobs": get("/scheduler/jobs"),
        "roles": get("/master/roles"),
        "weights": get("/master/weights"),
        "quota": get("/master/quota"),
        "slaves": slaves,
    })
}

/// SIGTERM, then wait for the process to exit.
fn stop(p: &mut common::Proc) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.pid()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = p.child.wait();
}

fn run(args: &[&str]) -> Output {
    Command::new(MESETA)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run meseta")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The durable keys of the redb store in a master data dir (no master may be running on it).
fn store_keys(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let s = RedbStore::open(&dir.join("store.redb")).expect("open store");
        meseta_store::backup::durable_keys(&s).await.expect("list")
    })
}

#[test]
fn a_running_cluster_is_backed_up_and_restored_into_a_new_data_dir() {
    require_root!();
    let mut c = Cluster::new(1, 10.0);
    let json_type = "application/json";

    let group = json!({"id": "/shop", "apps": [
        sleeper("db", json!({"labels": {"tier": "data"}})),
        sleeper("web", json!({"dependencies": ["db"], "env": {"PORT": "80"}})),
    ]});
    let r = c.call(Method::POST, "/v2/groups", Some(&group));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = c.call(
        Method::POST,
        "/v2/apps",
        Some(&sleeper("/solo", json!({"instances": 0}))),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let job = json!({"name": "nightly", "command": "true", "schedule": "R/2035-01-01T02:00:00Z/P1D",
                     "epsilon": "PT30M", "cpus": 0.1, "mem": 32, "owner": "ops@example.com"});
    let r = c.call(Method::POST, "/scheduler/iso8601", Some(&job));
    assert_eq!(r.status, 204, "{}", r.body);
    let (s, v) = send(
        &c,
        Method::PUT,
        "/master/weights",
        r#"[{"role":"prod","weight":2.5}]"#,
        json_type,
    );
    assert_eq!(s, 200, "{v}");
    let quota =
        r#"{"role":"prod","guarantee":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}}]}"#;
    let (s, v) = send(&c, Method::POST, "/master/quota", quota, json_type);
    assert_eq!(s, 200, "{v}");
    let agent = c.get("/master/slaves").expect("slaves")["slaves"][0]["id"]
        .as_str()
        .expect("agent id")
        .to_string();
    let resources = serde_json::to_string(
        &meseta_types::Resources::parse("cpus(db):1;mem(db):256").expect("resources"),
    )
    .expect("json");
    let (s, v) = send(
        &c,
        Method::POST,
        "/master/reserve",
        &format!("slaveId={agent}&resources={resources}"),
        "application/x-www-form-urlencoded",
    );
    assert_eq!(s, 202, "{v}");

    // Wait for a settled cluster: both group apps running, nothing deploying.
    let before = common::wait_for("the apps running", WAIT, || {
        let v = views(&c);
        let apps = v["apps"]["apps"].as_array()?;
        let settled = apps.len() == 3
            && apps.iter().all(|a| {
                a["tasksRunning"] == a["instances"]
                    && a["deployments"].as_array().is_some_and(Vec::is_empty)
            });
        settled.then_some(v)
    });
    assert_eq!(
        before["slaves"][0]["reserved_resources"]["db"]["cpus"], 1.0,
        "{before}"
    );
    assert_eq!(before["jobs"].as_array().map(Vec::len), Some(1), "{before}");

    // Backup while it runs (the master named by MESETA_MASTER).
    let file = c.dir.path().join("backups").join("cluster.json");
    std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
    let file_arg = file.to_str().expect("utf8");
    let out = c.cli(&["backup", file_arg, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("--json summary");
    let snapshot: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("backup file")).expect("json");
    let keys: Vec<&str> = snapshot["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["key"].as_str())
        .collect();
    assert_eq!(summary["keys"], keys.len(), "{summary}");
    assert_eq!(summary["revision"], snapshot["revision"], "{summary}");
    assert!(snapshot["revision"].as_i64() > Some(0), "{summary}");
    for want in [
        "/meseta/schema",
        "/meseta/master/reservations",
        "/meseta/master/weights/prod",
    ] {
        assert!(keys.contains(&want), "{want} missing from {keys:?}");
    }
    assert!(
        keys.iter().any(|k| k.starts_with("/meseta/services/")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.starts_with("/meseta/jobs/")),
        "{keys:?}"
    );
    // A plain run prints what it wrote.
    let out = c.cli(&["backup", file_arg]);
    assert!(out.status.success(), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.contains("keys at revision"), "{line}");

    // Stop the cluster; its data dir moves aside, and the restore goes into a new one at the
    // master's path.
    stop(c.master.as_mut().expect("master"));
    stop(c.agents[0].as_mut().expect("agent"));
    let data = c.dir.path().join("master");
    let old = c.dir.path().join("master-old");
    std::fs::rename(&data, &old).expect("move the old data dir aside");
    let data_arg = data.to_str().expect("utf8");
    let out = run(&["restore", file_arg, "--data-dir", data_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("restored {} keys", keys.len())),
        "{}",
        text(&out)
    );

    c.start_master();
    c.start_agent(0);
    c.wait_agents(1);
    let start = Instant::now();
    let after = loop {
        let v = views(&c);
        if v == before || start.elapsed() > WAIT {
            break v;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(after, before, "the restored cluster differs");
    stop(c.master.as_mut().expect("master"));
    stop(c.agents[0].as_mut().expect("agent"));

    // The old data dir is not empty: refused, naming how many keys it holds.
    let old_arg = old.to_str().expect("utf8");
    let held = store_keys(&old).len();
    let out = run(&["restore", file_arg, "--data-dir", old_arg]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("holds {held} keys")),
        "{}",
        text(&out)
    );
    assert!(err.contains("--force"), "{}", text(&out));
    // Forced, it holds exactly the backup.
    let out = run(&[
        "restore",
        file_arg,
        "--data-dir",
        old_arg,
        "--force",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let done: Value = serde_json::from_slice(&out.stdout).expect("--json summary");
    assert_eq!(done["keys"], keys.len(), "{done}");
    let restored: Vec<String> = store_keys(&old).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        restored, keys,
        "the forced restore holds the backup's keys only"
    );
}

/// Runs `meseta master` on `dir` and expects it to exit on its own; its status and output.
fn master_exits(dir: &Path) -> Output {
    let child = Command::new(MESETA)
        .args(["master", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn master");
    let pid = child.id();
    let start = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output().expect("wait"));
    while !waiter.is_finished() {
        if start.elapsed() > WAIT {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let out = waiter.join().expect("join");
            panic!(
                "the master kept running on {}: {}",
                dir.display(),
                text(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    waiter.join().expect("join")
}

fn store_with(dir: &Path, key: &str, value: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let s = RedbStore::open(&dir.join("store.redb")).expect("open store");
        s.put(key, value.as_bytes().to_vec()).await.expect("put");
    });
}

#[test]
fn a_master_refuses_another_schema_version_and_an_unfinished_restore() {
    let tmp = tempfile::tempdir().expect("tempdir");

    let newer = tmp.path().join("newer");
    store_with(
        &newer,
        "/meseta/schema",
        r#"{"version":999,"written_by":"meseta 99.0.0"}"#,
    );
    let out = master_exits(&newer);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("schema version 999") && err.contains("schema version 1"),
        "{}",
        text(&out)
    );

    let half = tmp.path().join("half-restored");
    store_with(&half, "/meseta/restore-in-progress", "{}");
    let out = master_exits(&half);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/meseta/restore-in-progress") && err.contains("did not finish"),
        "{}",
        text(&out)
    );
    // Neither store was changed by the refusing master.
    assert_eq!(store_keys(&half).len(), 1);
    assert_eq!(
        store_keys(&newer),
        vec![(
            "/meseta/schema".to_string(),
            br#"{"version":999,"written_by":"meseta 99.0.0"}"#.to_vec()
        )]
    );
}
