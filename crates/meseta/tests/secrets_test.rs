//! Secrets on the real binary: a value put with `meseta secret put` reaches a Marathon app's
//! task as an environment variable and as a 0400 sandbox file owned by the task user, and
//! appears in no API response, event, log line or backup file; validation names undefined and
//! missing secrets; a token scoped to `/team-a/` can neither put nor reference `/team-b/x`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Cluster;
use reqwest::Method;
use serde_json::{json, Value};

const RES: &str = "cpus:4;mem:4096;disk:2048;ports:[33100-33199]";

/// A fresh key file for `--secrets-key-file` in `dir`.
fn key_file(dir: &std::path::Path) -> String {
    use base64::Engine;
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let path = dir.join("secrets.key");
    std::fs::write(&path, base64::engine::general_purpose::STANDARD.encode(key)).expect("key");
    path.to_string_lossy().into_owned()
}

/// A master with a secrets key (and `extra` flags) and `agents` agents; the key's dir lives as
/// long as the cluster.
fn cluster(agents: usize, extra: &[&str]) -> (Cluster, tempfile::TempDir) {
    let keys = tempfile::tempdir().expect("key dir");
    let key = key_file(keys.path());
    let mut flags = vec!["--secrets-key-file", key.as_str()];
    flags.extend_from_slice(extra);
    (Cluster::with_master_flags(agents, 30.0, RES, &flags), keys)
}

fn call(
    c: &Cluster,
    m: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let (status, _, text) = c.call_text(m, path, token, body);
    (status, text)
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// `meseta secret put PATH` with the value on stdin.
fn put_secret(c: &Cluster, path: &str, value: &str, token: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(common::MESETA);
    cmd.args(["secret", "put", path, "--json"])
        .env("MESETA_MASTER", c.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    let mut child = cmd.spawn().expect("meseta secret put");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{value}\n").as_bytes())
        .expect("write value");
    child.wait_with_output().expect("wait")
}

/// Reads `/v2/events` into a buffer until the process ends.
fn capture_events(c: &Cluster) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let sink = buf.clone();
    let url = format!("{}/v2/events", c.url());
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .expect("client");
        let Ok(resp) = client.get(url).header("Accept", "text/event-stream").send() else {
            return;
        };
        for line in BufReader::new(resp).lines() {
            let Ok(line) = line else { return };
            if let Ok(mut b) = sink.lock() {
                b.push_str(&line);
                b.push('\n');
            }
        }
    });
    buf
}

fn app(id: &str, source: &str) -> Value {
    json!({
        "id": id,
        "cmd": "printf %s \"$DB\" > env.out && sleep 1000",
        "cpus": 0.05, "mem": 32, "instances": 1,
        "secrets": {"s0": {"source": source}},
        "env": {"DB": {"secret": "s0"}, "PLAIN": "visible"},
        "container": {"type": "MESOS",
            "volumes": [{"containerPath": "creds/pw", "mode": "RO", "secret": "s0"}]}
    })
}

#[test]
fn a_secret_reaches_the_task_and_nothing_else() {
    require_root!();
    let (c, _keys) = cluster(1, &[]);
    let value = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let path = "/team-a/db/password";

    // Put with the CLI (value on stdin), list shows metadata only.
    let out = put_secret(&c, path, &value, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let put: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(put["id"], path, "{put}");
    assert_eq!(put["version"], 1, "{put}");
    let listed = c.cli(&["secret", "list", "--json"]);
    assert!(listed.status.success());
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed["secrets"][0]["id"], path, "{listed}");
    let table = c.cli(&["secret", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains(path));

    // Validation: an undefined secret name, a source that does not exist.
    let mut bad = app("/bad1", path);
    bad["env"]["X"] = json!({"secret": "nope"});
    let (s, body) = call(&c, Method::POST, "/v2/apps", None, Some(&bad));
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("/env(X)") && body.contains("nope"), "{body}");
    let (s, body) = call(
        &c,
        Method::POST,
        "/v2/apps",
        None,
        Some(&app("/bad2", "/team-a/none")),
    );
    assert_eq!(s, 422, "{body}");
    assert!(
        body.contains("/secrets(s0)/source") && body.contains("/team-a/none"),
        "{body}"
    );
    let mut docker = app("/bad3", path);
    docker["container"] = json!({"type": "DOCKER", "docker": {"image": "busybox"}});
    let (s, body) = call(&c, Method::POST, "/v2/apps", None, Some(&docker));
    assert_eq!(s, 422, "{body}");

    // Deploy while the event stream is captured.
    let events = capture_events(&c);
    std::thread::sleep(Duration::from_millis(300));
    let (s, body) = call(
        &c,
        Method::POST,
        "/v2/apps",
        None,
        Some(&app("/team-a/web", path)),
    );
    assert_eq!(s, 201, "{body}");
    let created = json_of(&body);
    assert_eq!(created["secrets"]["s0"]["source"], path, "{created}");
    assert_eq!(created["env"]["DB"], json!({"secret": "s0"}), "{created}");

    let task_id = common::wait_for("the app's task running", Duration::from_secs(60), || {
        let v = c.get("/v2/apps/team-a/web/tasks")?;
        let t = v["tasks"].as_array()?.first()?.clone();
        (t["state"] == "TASK_RUNNING").then(|| t["id"].as_str().map(str::to_string))?
    });
    let task_dir = c.task_dir(0, &task_id);
    let sandbox = task_dir.join("sandbox");
    let env_out = sandbox.join("env.out");
    let from_env = common::wait_for("env.out", Duration::from_secs(20), || {
        std::fs::read_to_string(&env_out)
            .ok()
            .filter(|s| !s.is_empty())
    });
    assert_eq!(from_env, value, "the task's $DB");
    let pid = common::wait_for("task.pid", Duration::from_secs(10), || {
        c.task_pid(0, &task_id)
    });
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.split('\0').any(|kv| kv == format!("DB={value}")),
        "DB not in the task's environment"
    );
    assert!(environ.split('\0').any(|kv| kv == "PLAIN=visible"));

    let file = sandbox.join("creds/pw");
    assert_eq!(std::fs::read_to_string(&file).expect("secret file"), value);
    let meta = std::fs::symlink_metadata(&file).expect("meta");
    assert_eq!(meta.mode() & 0o777, 0o400, "secret file mode");
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("getpwnam")
        .expect("nobody");
    assert_eq!(meta.uid(), nobody.uid.as_raw(), "owned by the task user");
    let task_uid = std::fs::metadata(format!("/proc/{pid}"))
        .expect("proc")
        .uid();
    assert_eq!(meta.uid(), task_uid, "owned by the user the task runs as");

    // A Metronome job gets the same secret as an environment variable.
    let job = json!({"id": "team-a-job", "run": {
        "cmd": "printf %s \"$DB\" > job.out", "cpus": 0.05, "mem": 32,
        "secrets": {"s0": {"source": path}}, "env": {"DB": {"secret": "s0"}}}});
    let (s, body) = call(&c, Method::POST, "/v1/jobs", None, Some(&job));
    assert_eq!(s, 201, "{body}");
    let shown = json_of(&body);
    assert_eq!(shown["run"]["secrets"]["s0"]["source"], path, "{shown}");
    assert_eq!(
        shown["run"]["env"]["DB"],
        json!({"secret": "s0"}),
        "{shown}"
    );
    let mut missing = job.clone();
    missing["id"] = json!("team-a-missing");
    missing["run"]["secrets"]["s0"]["source"] = json!("/team-a/none");
    let (s, body) = call(&c, Method::POST, "/v1/jobs", None, Some(&missing));
    assert_eq!(s, 422, "{body}");
    assert!(
        body.contains("/run/secrets/s0/source") && body.contains("/team-a/none"),
        "{body}"
    );
    let (s, body) = call(&c, Method::POST, "/v1/jobs/team-a-job/runs", None, None);
    assert!(s == 201 || s == 200, "{s} {body}");
    let run_id = json_of(&body)["id"].as_str().expect("run id").to_string();
    let job_out = c.task_dir(0, &run_id).join("sandbox/job.out");
    let from_job = common::wait_for("job.out", Duration::from_secs(60), || {
        std::fs::read_to_string(&job_out)
            .ok()
            .filter(|s| !s.is_empty())
    });
    assert_eq!(from_job, value, "the job's $DB");

    // Every response we can reach, the events, the logs and a backup: no value anywhere.
    let agent = format!("http://127.0.0.1:{}", c.agent_ports[0]);
    let mut seen: Vec<(String, String)> = Vec::new();
    for p in [
        "/v2/apps?embed=apps.tasks&embed=apps.counts&embed=apps.deployments&embed=apps.lastTaskFailure&embed=apps.taskStats",
        "/v2/apps/team-a/web?embed=app.tasks",
        "/v2/apps/team-a/web/versions",
        "/v2/groups?embed=group.apps&embed=group.apps.tasks",
        "/v2/tasks",
        "/v2/deployments",
        "/v2/queue",
        "/master/state",
        "/master/state.json",
        "/state.json",
        "/master/tasks",
        "/master/frameworks",
        "/api/meseta/v1/secrets",
        "/api/meseta/v1/secrets/team-a/db/password",
        "/api/meseta/v1/audit?limit=1000",
        "/metrics",
        "/v1/jobs?embed=activeRuns&embed=history",
        "/v1/jobs/team-a-job/runs",
        "/scheduler/jobs",
    ] {
        let (s, body) = call(&c, Method::GET, p, None, None);
        assert!(s < 500, "{p}: {s}");
        seen.push((p.to_string(), body));
    }
    for t in ["GET_STATE", "GET_TASKS", "GET_FRAMEWORKS", "GET_AGENTS"] {
        let (s, body) = call(&c, Method::POST, "/api/v1", None, Some(&json!({"type": t})));
        assert_eq!(s, 200, "{t}");
        seen.push((format!("/api/v1 {t}"), body));
    }
    let client = reqwest::blocking::Client::new();
    for p in [
        "/state".to_string(),
        "/monitor/statistics".to_string(),
        format!("/api/meseta/v1/tasks/{task_id}/logs?stream=stdout"),
        format!("/api/meseta/v1/tasks/{task_id}/logs?stream=stderr"),
    ] {
        let r = client.get(format!("{agent}{p}")).send().expect("agent");
        seen.push((format!("agent {p}"), r.text().unwrap_or_default()));
    }
    // The sweep looks at real data: these show the task (and the app its references).
    for (p, needle) in [
        ("/api/v1 GET_STATE", task_id.as_str()),
        ("/master/state", task_id.as_str()),
        ("/master/tasks", task_id.as_str()),
        ("agent /state", task_id.as_str()),
        ("/v2/tasks", task_id.as_str()),
        ("/v2/apps/team-a/web?embed=app.tasks", path),
        ("/v1/jobs?embed=activeRuns&embed=history", path),
        ("/api/meseta/v1/secrets", path),
    ] {
        let body = seen
            .iter()
            .find(|(q, _)| q == p)
            .map(|(_, b)| b.as_str())
            .unwrap_or("");
        assert!(body.contains(needle), "{p} does not show {needle}: {body}");
    }
    let backup = c.dir.path().join("backup.json");
    let out = c.cli(&["backup", backup.to_str().expect("utf8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    seen.push((
        "backup".into(),
        std::fs::read_to_string(&backup).expect("backup file"),
    ));
    assert!(seen
        .last()
        .is_some_and(|(_, b)| b.contains("/meseta/secrets/team-a/db/password")));
    std::thread::sleep(Duration::from_millis(500));
    seen.push((
        "/v2/events".into(),
        events.lock().map(|e| e.clone()).unwrap_or_default(),
    ));
    assert!(
        seen.last().is_some_and(
            |(_, e)| e.contains("deployment_success") || e.contains("status_update_event")
        ),
        "the event stream was captured: {}",
        seen.last().map(|(_, e)| e.len()).unwrap_or(0)
    );
    // Removing the secret: later launches fail, the running task keeps what it has.
    let out = c.cli(&["secret", "remove", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, _) = call(
        &c,
        Method::GET,
        "/api/meseta/v1/secrets/team-a/db/password",
        None,
        None,
    );
    assert_eq!(s, 404);
    // An agent restart: it re-registers with its tasks (from its checkpoints) and the master
    // rebuilds its task table from them, still without the value.
    let mut c = c;
    let old_agent_log = c.agents[0]
        .as_ref()
        .map(|a| a.log_text())
        .unwrap_or_default();
    if let Some(mut a) = c.agents[0].take() {
        a.kill9();
    }
    c.start_agent(0);
    c.wait_agents(1);
    let state = common::wait_for(
        "the task back after the agent restart",
        Duration::from_secs(30),
        || {
            let (_, body) = call(&c, Method::GET, "/master/state", None, None);
            body.contains(&task_id).then_some(body)
        },
    );
    seen.push(("/master/state after the agent restart".into(), state));
    seen.push(("agent log before the restart".into(), old_agent_log));
    seen.push((
        "master log".into(),
        c.master.as_ref().map(|m| m.log_text()).unwrap_or_default(),
    ));
    seen.push((
        "agent log".into(),
        c.agents[0]
            .as_ref()
            .map(|a| a.log_text())
            .unwrap_or_default(),
    ));
    for (what, text) in &seen {
        assert!(!text.is_empty() || what.contains("logs"), "{what} is empty");
        assert!(
            !text.contains(&value),
            "the secret's value appears in {what}"
        );
    }
    // The agent's checkpoint of the task holds references only.
    let task_json = std::fs::read_to_string(task_dir.join("task.json")).expect("task.json");
    assert!(task_json.contains(path) && !task_json.contains(&value));
}

#[test]
fn a_team_token_can_neither_put_nor_reference_another_teams_secret() {
    let (c, _keys) = cluster(0, &["--acl"]);
    let out = c.cli(&["acl", "bootstrap", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = serde_json::from_slice::<Value>(&out.stdout).expect("json")["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let policy = c.dir.path().join("team-a.json");
    std::fs::write(
        &policy,
        json!({"name": "team-a", "rules": [
            {"resource": "apps", "prefix": "/", "access": "write"},
            {"resource": "secrets", "prefix": "/team-a/", "access": "write"}]})
        .to_string(),
    )
    .expect("policy");
    let run = |args: &[&str]| {
        let out = Command::new(common::MESETA)
            .args(args)
            .args(["--json", "--token", &admin])
            .env("MESETA_MASTER", c.url())
            .output()
            .expect("meseta");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)
    };
    run(&["acl", "policy", "apply", policy.to_str().expect("utf8")]);
    let ta = run(&["acl", "token", "create", "--policy", "team-a"]);
    let team_a = ta["secret"].as_str().expect("secret").to_string();
    let t = Some(team_a.as_str());

    let a_value = format!("a-{}", uuid::Uuid::new_v4().simple());
    let b_value = format!("b-{}", uuid::Uuid::new_v4().simple());
    // Team A puts its own; the admin puts team B's; team A cannot put team B's.
    let out = put_secret(&c, "/team-a/x", &a_value, t);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = put_secret(&c, "/team-b/x", &b_value, Some(&admin));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, body) = call(
        &c,
        Method::PUT,
        "/api/meseta/v1/secrets/team-b/x",
        t,
        Some(&json!({"value": "overwrite"})),
    );
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("write on secrets /team-b/x"), "{body}");
    let (s, body) = call(
        &c,
        Method::DELETE,
        "/api/meseta/v1/secrets/team-b/x",
        t,
        None,
    );
    assert_eq!(s, 403, "{body}");
    // Listing: team A sees only its own.
    let (s, body) = call(&c, Method::GET, "/api/meseta/v1/secrets", t, None);
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("/team-a/x") && !body.contains("/team-b/x"),
        "{body}"
    );
    // Referencing: team A's app may name /team-a/x, never /team-b/x.
    let mut mine = app("/apps/mine", "/team-a/x");
    mine["instances"] = json!(0);
    let (s, body) = call(&c, Method::POST, "/v2/apps", t, Some(&mine));
    assert_eq!(s, 201, "{body}");
    let mut theirs = app("/apps/theirs", "/team-b/x");
    theirs["instances"] = json!(0);
    let (s, body) = call(&c, Method::POST, "/v2/apps", t, Some(&theirs));
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("read on secrets /team-b/x"), "{body}");
    let (s, body) = call(
        &c,
        Method::PUT,
        "/v2/apps/apps/mine",
        t,
        Some(&json!({"secrets": {"s0": {"source": "/team-b/x"}}})),
    );
    assert_eq!(s, 403, "{body}");
    let (s, body) = call(&c, Method::GET, "/v2/apps/apps/theirs", Some(&admin), None);
    assert_eq!(s, 404, "nothing half-written: {body}");

    // The audit log shows the puts and the denials, never a value.
    let audit = common::wait_for("audited secret writes", Duration::from_secs(10), || {
        let (_, body) = call(
            &c,
            Method::GET,
            "/api/meseta/v1/audit?limit=1000",
            Some(&admin),
            None,
        );
        (body.contains("/api/meseta/v1/secrets/team-a/x") && body.contains("403")).then_some(body)
    });
    let entries = json_of(&audit);
    let denied_put = entries.as_array().into_iter().flatten().find(|e| {
        e["method"] == "PUT" && e["path"] == "/api/meseta/v1/secrets/team-b/x" && e["status"] == 403
    });
    assert!(denied_put.is_some(), "{audit}");
    for v in [&a_value, &b_value, "overwrite"] {
        assert!(!audit.contains(v), "the audit log holds a value");
    }
    let log = c.master.as_ref().map(|m| m.log_text()).unwrap_or_default();
    assert!(!log.contains(&a_value) && !log.contains(&b_value));
}

/// `meseta dev` without a key creates one (mode 0600) in its data dir beside the store, keeps
/// it across restarts, and a master without any key refuses secret writes with a clear error.
#[test]
fn dev_creates_a_private_key_beside_its_store_and_a_keyless_master_refuses() {
    require_root!();
    let dir = common::task_reachable_dir();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let start = || {
        let child = Command::new(common::MESETA)
            .args(["dev", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--agent-listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(["--resources", "cpus:1;mem:256;disk:256"])
            .env_remove("MESETA_SECRETS_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dev");
        let p = common::Proc {
            child,
            log: dir.path().join("unused.log"),
        };
        common::wait_for("dev /health", Duration::from_secs(30), || {
            reqwest::blocking::get(format!("{url}/health"))
                .ok()
                .filter(|r| r.status().is_success())
        });
        p
    };
    let client = reqwest::blocking::Client::new();
    let put = |v: &str| {
        client
            .put(format!("{url}/api/meseta/v1/secrets/a/b"))
            .json(&json!({"value": v}))
            .send()
            .expect("put")
            .status()
            .as_u16()
    };
    let mut dev = start();
    let key = dir.path().join("secrets.key");
    let meta = std::fs::metadata(&key).expect("secrets.key created");
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert!(!dir.path().join("master/secrets.key").exists());
    assert_eq!(put("v1"), 201);
    assert_eq!(put("v2"), 200);
    let first = std::fs::read_to_string(&key).expect("key");
    dev.kill9();
    let _dev = start();
    assert_eq!(std::fs::read_to_string(&key).expect("key"), first, "kept");
    assert_eq!(put("v3"), 200);

    // A master with no key at all.
    let c = Cluster::with_master_flags(0, 30.0, RES, &[]);
    let (s, body) = call(
        &c,
        Method::PUT,
        "/api/meseta/v1/secrets/a/b",
        None,
        Some(&json!({"value": "v"})),
    );
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("no secrets key"), "{body}");
}
