//! Access control on the real binary: `meseta master --acl`, tokens and policies made with the
//! CLI, a `/team-a/` token that cannot read, change or delete `/team-b/*` and sees only team A
//! in listings and events, marathon-python and chronos-python with a token, pymesos with a
//! principal and secret, the bulk-delete guard (with ACLs on and off) and the audit log.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Cluster;
use reqwest::Method;
use serde_json::{json, Value};

const RES: &str = "cpus:4;mem:4096;disk:2048;ports:[33000-33099]";

fn call(
    c: &Cluster,
    m: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let (status, _, text) = c.call_text(m, path, token, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Runs the CLI with `--token` and `--json`; its JSON output.
fn cli_json(c: &Cluster, token: &str, args: &[&str]) -> Value {
    let out = Command::new(common::MESETA)
        .args(args)
        .args(["--json", "--token", token])
        .env("MESETA_MASTER", c.url())
        .output()
        .expect("run meseta");
    assert!(
        out.status.success(),
        "meseta {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("CLI JSON")
}

fn write_policy(c: &Cluster, name: &str, rules: Value) -> String {
    let path = c.dir.path().join(format!("{name}.json"));
    std::fs::write(&path, json!({"name": name, "rules": rules}).to_string()).expect("write");
    path.to_string_lossy().into_owned()
}

/// An ACL cluster (no agents: nothing here needs to run) with a bootstrap token.
fn acl_cluster() -> (Cluster, String) {
    let c = Cluster::with_master_flags(0, 30.0, RES, &["--acl"]);
    let out = Command::new(common::MESETA)
        .args(["acl", "bootstrap", "--json"])
        .env("MESETA_MASTER", c.url())
        .output()
        .expect("bootstrap");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let secret = v["secret"].as_str().expect("secret").to_string();
    (c, secret)
}

fn app(id: &str) -> Value {
    json!({"id": id, "cmd": "sleep 1000", "cpus": 0.01, "mem": 16, "instances": 0})
}

fn audit(c: &Cluster, admin: &str) -> Vec<Value> {
    cli_json(c, admin, &["audit", "--limit", "500"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn audited(c: &Cluster, admin: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    common::wait_for(what, Duration::from_secs(10), || {
        audit(c, admin).into_iter().find(&f)
    })
}

#[test]
fn a_team_token_reads_and_changes_only_its_team_and_is_audited() {
    let (c, admin) = acl_cluster();
    let a = Some(admin.as_str());
    // Without a token, with a forged one, and a second bootstrap: refused.
    assert_eq!(call(&c, Method::GET, "/v2/apps", None, None).0, 401);
    assert_eq!(
        call(&c, Method::GET, "/v2/apps", Some("forged"), None).0,
        401
    );
    assert_eq!(
        call(&c, Method::POST, "/api/meseta/v1/acl/bootstrap", None, None).0,
        409
    );

    let file = write_policy(
        &c,
        "team-a",
        json!([
        {"resource": "apps", "prefix": "/team-a/", "access": "write"},
        {"resource": "jobs", "prefix": "team-a-", "access": "write"}]),
    );
    cli_json(&c, &admin, &["acl", "policy", "apply", &file]);
    let listed = cli_json(&c, &admin, &["acl", "policy", "list"]);
    assert_eq!(listed[0]["name"], "team-a", "{listed}");
    let ta = cli_json(
        &c,
        &admin,
        &["acl", "token", "create", "--policy", "team-a"],
    );
    let ta_secret = ta["secret"].as_str().expect("secret").to_string();
    let t = Some(ta_secret.as_str());
    let tokens = cli_json(&c, &admin, &["acl", "token", "list"]);
    assert!(tokens
        .to_string()
        .contains(ta["accessor"].as_str().expect("accessor")));
    assert!(
        !tokens.to_string().contains(&ta_secret),
        "secrets are never listed"
    );

    for id in ["/team-a/web", "/team-b/web"] {
        let (s, b) = call(&c, Method::POST, "/v2/apps", a, Some(&app(id)));
        assert_eq!(s, 201, "{b}");
    }
    let job = |n: &str| json!({"name": n, "command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT1H", "epsilon": "PT60S", "owner": "o@example.com", "cpus": 0.01, "mem": 16});
    let (s, b) = call(
        &c,
        Method::POST,
        "/v1/scheduler/iso8601",
        a,
        Some(&job("team-b-etl")),
    );
    assert!(s < 300, "{s} {b}");

    // Listings are filtered; team B's app can be neither read, changed nor deleted.
    let (s, apps) = call(&c, Method::GET, "/v2/apps", t, None);
    assert_eq!(s, 200);
    let ids: Vec<&str> = apps["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(ids, ["/team-a/web"]);
    let (_, tree) = call(&c, Method::GET, "/v2/groups", t, None);
    assert!(!tree.to_string().contains("team-b"), "{tree}");
    for (m, body) in [
        (Method::GET, None),
        (Method::PUT, Some(app("/team-b/web"))),
        (Method::DELETE, None),
    ] {
        let (s, b) = call(&c, m.clone(), "/v2/apps/team-b/web", t, body.as_ref());
        assert_eq!(s, 403, "{m} {b}");
        assert_eq!(
            b["details"][0]["missing"]
                .as_str()
                .map(|m| m.contains("/team-b/web")),
            Some(true),
            "{b}"
        );
        assert!(
            b["message"]
                .as_str()
                .is_some_and(|m| m.contains("permission denied")),
            "{b}"
        );
    }
    let (s, _) = call(
        &c,
        Method::POST,
        "/v2/apps",
        t,
        Some(&app("/team-b/sneaky")),
    );
    assert_eq!(s, 403);
    let (_, all) = call(&c, Method::GET, "/v2/apps", a, None);
    assert_eq!(
        all["apps"].as_array().map(Vec::len),
        Some(2),
        "nothing changed: {all}"
    );

    // The event stream carries team A's events only.
    let events = sse_lines(&c, &ta_secret);
    std::thread::sleep(Duration::from_millis(500));
    for id in ["team-b/web", "team-a/web"] {
        let mut body = app(&format!("/{id}"));
        body["env"] = json!({"V": "2"});
        let (s, b) = call(&c, Method::PUT, &format!("/v2/apps/{id}"), a, Some(&body));
        assert!(s < 300, "{b}");
    }
    let seen = collect(&events, Duration::from_secs(3));
    assert!(
        seen.iter().any(|l| l.contains("/team-a/web")),
        "team A's events: {seen:?}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("team-b")),
        "no team B event: {seen:?}"
    );

    // marathon-python (auth_token) and chronos-python (a header) work with the token.
    if common::python_has("marathon", "marathon") && common::python_has("chronos", "chronos-python")
    {
        let host = format!("127.0.0.1:{}", c.port);
        common::run_python_script("acl_clients.py", &[&host, &ta_secret]);
        let (_, jobs) = call(&c, Method::GET, "/v1/scheduler/jobs", a, None);
        assert!(
            jobs.to_string().contains("team-b-etl"),
            "team B's job stayed: {jobs}"
        );
    }

    // The root group goes only with confirmation (and admin): nothing deleted meanwhile.
    let (s, b) = call(&c, Method::DELETE, "/v2/groups", a, None);
    assert_eq!(s, 409, "{b}");
    assert!(
        b["message"]
            .as_str()
            .is_some_and(|m| m.contains("would delete all") && m.contains("confirm=true")),
        "{b}"
    );
    let (s, b) = call(
        &c,
        Method::DELETE,
        "/v2/groups/team-a?confirm=true",
        t,
        None,
    );
    assert_eq!(s, 403, "a team token has no admin grant: {b}");
    let (_, all) = call(&c, Method::GET, "/v2/apps", a, None);
    assert!(
        all["apps"].as_array().map(Vec::len) >= Some(2),
        "nothing deleted: {all}"
    );

    // A revoked token is refused.
    let accessor = ta["accessor"].as_str().expect("accessor");
    cli_json(&c, &admin, &["acl", "token", "revoke", accessor]);
    assert_eq!(call(&c, Method::GET, "/v2/apps", t, None).0, 401);

    // The audit log shows each of these.
    audited(&c, &admin, "the 401 without a token", |e| {
        e["status"] == 401 && e["path"] == "/v2/apps"
    });
    audited(&c, &admin, "the 403 on team B", |e| {
        e["status"] == 403
            && e["accessor"] == accessor
            && e["method"] == "DELETE"
            && e["path"] == "/v2/apps/team-b/web"
    });
    audited(&c, &admin, "the refused root delete", |e| {
        e["status"] == 409 && e["path"] == "/v2/groups"
    });
    audited(&c, &admin, "team A's create", |e| {
        e["status"] == 201 && e["targets"][0] == "/team-a/web"
    });
}

/// Lines of `/v2/events` read with `token`, on a channel.
fn sse_lines(c: &Cluster, token: &str) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let url = format!("{}/v2/events", c.url());
    let token = token.to_string();
    std::thread::spawn(move || {
        let resp = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .expect("client")
            .get(url)
            .header("Accept", "text/event-stream")
            .bearer_auth(token)
            .send()
            .expect("events");
        for line in BufReader::new(resp).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn collect(rx: &mpsc::Receiver<String>, d: Duration) -> Vec<String> {
    let end = Instant::now() + d;
    let mut out = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => out.push(l),
            Err(_) => break,
        }
    }
    out
}

#[test]
fn pymesos_registers_with_its_principal_and_secret_only() {
    if !common::python_has("pymesos", "pymesos==0.3.15") {
        return;
    }
    let (c, admin) = acl_cluster();
    let file = write_policy(
        &c,
        "fw",
        json!([
        {"resource": "roles", "prefix": "*", "access": "write"},
        {"resource": "users", "prefix": "*", "access": "write"}]),
    );
    cli_json(&c, &admin, &["acl", "policy", "apply", &file]);
    let fw = cli_json(
        &c,
        &admin,
        &[
            "acl",
            "token",
            "create",
            "--policy",
            "fw",
            "--principal",
            "fw-a",
        ],
    );
    let secret = fw["secret"].as_str().expect("secret");
    let run = |name: &str, secret: &str| {
        let out = c.dir.path().join(format!("{name}.jsonl"));
        let script = format!("{}/tests/py/framework.py", env!("CARGO_MANIFEST_DIR"));
        let master = format!("127.0.0.1:{}", c.port);
        let status = Command::new("python3")
            .arg(script)
            .args(["--master", &master, "--out"])
            .arg(&out)
            .args([
                "--name",
                name,
                "--timeout",
                "6",
                "--principal",
                "fw-a",
                "--secret",
                secret,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("python3 framework.py");
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        (status, text)
    };
    // No agents: the right secret registers (then waits for offers until its timeout).
    let (_, good) = run("good", secret);
    assert!(
        good.contains("\"registered\""),
        "registered with the right secret: {good}"
    );
    let (_, bad) = run("bad", "wrong-secret");
    assert!(
        !bad.contains("\"registered\""),
        "refused with a wrong secret: {bad}"
    );
    audited(&c, &admin, "the refused framework", |e| {
        e["status"] == 401
            && e["path"] == "/api/v1/scheduler"
            && e["denied"].as_str().is_some_and(|d| d.contains("fw-a"))
    });
    audited(&c, &admin, "the subscribed framework", |e| {
        e["status"] == 200 && e["principal"] == "fw-a" && e["targets"].is_array()
    });
}

#[test]
fn a_task_user_the_token_may_not_run_as_fails_the_task_not_the_framework() {
    if !common::python_has("pymesos", "pymesos==0.3.15") {
        return;
    }
    let (mut c, admin) = acl_cluster();
    // The agent after the bootstrap: waiting for it takes a token.
    c.agent_ports.push(0);
    c.agents.push(None);
    c.start_agent(0);
    common::wait_for("the agent", Duration::from_secs(30), || {
        let (_, s) = call(&c, Method::GET, "/master/slaves", Some(&admin), None);
        (s["slaves"].as_array().map(Vec::len) == Some(1)).then_some(())
    });
    let file = write_policy(
        &c,
        "fw-nobody",
        json!([
        {"resource": "roles", "prefix": "*", "access": "write"},
        {"resource": "users", "prefix": "nobody", "access": "write"}]),
    );
    cli_json(&c, &admin, &["acl", "policy", "apply", &file]);
    let fw = cli_json(
        &c,
        &admin,
        &[
            "acl",
            "token",
            "create",
            "--policy",
            "fw-nobody",
            "--principal",
            "fw-n",
        ],
    );
    let secret = fw["secret"].as_str().expect("secret");
    let out = c.dir.path().join("user.jsonl");
    let script = format!("{}/tests/py/framework.py", env!("CARGO_MANIFEST_DIR"));
    let master = format!("127.0.0.1:{}", c.port);
    let _ = Command::new("python3")
        .arg(script)
        .args(["--master", &master, "--out"])
        .arg(&out)
        .args(["--timeout", "30", "--task-user", "daemon"])
        .args(["--principal", "fw-n", "--secret", secret])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("python3 framework.py");
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let update = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "update")
        .unwrap_or_else(|| panic!("no status update: {text}"));
    assert_eq!(update["state"], "TASK_ERROR", "{text}");
    assert_eq!(update["reason"], "REASON_TASK_UNAUTHORIZED", "{text}");
    assert!(
        update["message"]
            .as_str()
            .is_some_and(|m| m.contains("daemon") && m.contains("users")),
        "the message names the user and the grant: {text}"
    );
    // Nothing ran as that user, and the call itself was accepted (the framework lived on to
    // hear of its task).
    let (_, tasks) = call(&c, Method::GET, "/master/tasks", Some(&admin), None);
    assert!(
        !tasks.to_string().contains("TASK_RUNNING"),
        "no task ran: {tasks}"
    );

    // The agent's own endpoints answer only its master, whose proxy of a task's logs needs a
    // token with operator read; /health stays open.
    let out = Command::new(common::MESETA)
        .args([
            "execute",
            "--name",
            "logs-hi",
            "--command",
            "echo hi-from-the-sandbox",
        ])
        .args(["--resources", "cpus:0.1;mem:32", "--token", &admin])
        .env("MESETA_MASTER", c.url())
        .output()
        .expect("meseta execute");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, tasks) = call(&c, Method::GET, "/master/tasks", Some(&admin), None);
    let task = tasks["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == "logs-hi"))
        .cloned()
        .unwrap_or_else(|| panic!("no task logs-hi: {tasks}"));
    let id = task["id"].as_str().expect("task id");
    let logs = format!("/api/meseta/v1/tasks/{id}/logs?stream=stdout");
    let (s, b) = call(&c, Method::GET, &logs, Some(&admin), None);
    assert_eq!(s, 200, "{b}");
    assert!(b.to_string().contains("hi-from-the-sandbox"), "{b}");
    assert_eq!(call(&c, Method::GET, &logs, None, None).0, 401);
    let (_, slaves) = call(&c, Method::GET, "/master/slaves", Some(&admin), None);
    let pid = slaves["slaves"][0]["pid"].as_str().expect("agent pid");
    let agent = pid.split_once('@').map(|(_, a)| a).expect("address");
    let client = reqwest::blocking::Client::new();
    for path in ["/state", "/monitor/statistics", logs.as_str()] {
        let s = client
            .get(format!("http://{agent}{path}"))
            .send()
            .expect("agent")
            .status();
        assert_eq!(s.as_u16(), 401, "{path} on the agent without its key");
    }
    let health = client
        .get(format!("http://{agent}/health"))
        .send()
        .expect("agent");
    assert_eq!(health.status().as_u16(), 200);
    let key_file = c.agent_work_dir(0).join("http_key");
    let meta = std::fs::metadata(&key_file).expect("the agent keeps its key");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn deleting_a_group_of_apps_needs_confirmation_even_without_acls() {
    let c = Cluster::with_master_flags(0, 30.0, RES, &[]);
    for id in ["/g/a", "/g/b"] {
        let (s, b) = call(&c, Method::POST, "/v2/apps", None, Some(&app(id)));
        assert_eq!(s, 201, "{b}");
    }
    let (s, b) = call(&c, Method::DELETE, "/v2/groups/g", None, None);
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["details"][0]["wouldDelete"], 2, "{b}");
    let (_, apps) = call(&c, Method::GET, "/v2/apps", None, None);
    assert_eq!(
        apps["apps"].as_array().map(Vec::len),
        Some(2),
        "nothing deleted: {apps}"
    );
    let (s, b) = call(&c, Method::DELETE, "/v2/groups/g?confirm=true", None, None);
    assert_eq!(s, 200, "{b}");
    common::wait_for("the group's apps gone", Duration::from_secs(20), || {
        let (_, apps) = call(&c, Method::GET, "/v2/apps", None, None);
        (apps["apps"].as_array().map(Vec::len) == Some(0)).then_some(())
    });
    // The audit writer stores what queued up every 50 ms, apart from the requests.
    common::wait_for(
        "the refusal in the audit log",
        Duration::from_secs(10),
        || {
            let (_, log) = call(&c, Method::GET, "/api/meseta/v1/audit", None, None);
            let entries = log.as_array().cloned().unwrap_or_default();
            entries
                .iter()
                .any(|e| e["status"] == 409 && e["path"] == "/v2/groups/g")
                .then_some(())
        },
    );
}

/// A browser-like request to the UI: no redirects followed, the sign-in cookie if given.
fn ui(
    c: &Cluster,
    m: Method,
    path: &str,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut req = client.request(m, format!("{}{path}", c.url()));
    if let Some(v) = cookie {
        req = req.header(reqwest::header::COOKIE, v);
    }
    if let Some(f) = form {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(f)
            .finish();
        req = req
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
    }
    let resp = req.send().expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().unwrap_or_default())
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[test]
fn the_ui_signs_in_with_a_token_and_shows_only_what_it_may_see() {
    let (c, admin) = acl_cluster();
    let a = Some(admin.as_str());
    let file = write_policy(
        &c,
        "team-a",
        json!([{"resource": "apps", "prefix": "/team-a/", "access": "write"}]),
    );
    cli_json(&c, &admin, &["acl", "policy", "apply", &file]);
    let ta = cli_json(
        &c,
        &admin,
        &["acl", "token", "create", "--policy", "team-a"],
    );
    let ta_secret = ta["secret"].as_str().expect("secret").to_string();
    for id in ["/team-a/web", "/team-b/db"] {
        let (s, b) = call(&c, Method::POST, "/v2/apps", a, Some(&app(id)));
        assert_eq!(s, 201, "{b}");
    }

    // A browser without a token is sent to the sign-in form, which says why.
    let (s, h, _) = ui(&c, Method::GET, "/ui/services", None, None);
    assert_eq!(s, 303);
    let to = header(&h, "location");
    assert!(to.starts_with("/ui/login?next="), "{to}");
    let (s, _, page) = ui(&c, Method::GET, to, None, None);
    assert_eq!(s, 200);
    assert!(
        page.contains("Sign in") && page.contains("name=\"token\""),
        "{page}"
    );

    // A forged token is refused by the form; no cookie is set.
    let (s, h, page) = ui(
        &c,
        Method::POST,
        "/ui/login",
        None,
        Some(&[("token", "forged"), ("next", "/ui/services")]),
    );
    assert_eq!(s, 401, "{page}");
    assert!(h.get("set-cookie").is_none());
    assert!(page.contains("does not know this token"), "{page}");

    // Team A's token: an HttpOnly, SameSite=Strict cookie, and back to the page asked.
    let (s, h, _) = ui(
        &c,
        Method::POST,
        "/ui/login",
        None,
        Some(&[("token", ta_secret.as_str()), ("next", "/ui/services")]),
    );
    assert_eq!(s, 303);
    assert_eq!(header(&h, "location"), "/ui/services");
    let set = header(&h, "set-cookie");
    assert!(
        set.starts_with(&format!("meseta_token={ta_secret};"))
            && set.contains("HttpOnly")
            && set.contains("SameSite=Strict"),
        "{set}"
    );
    let team_a = format!("meseta_token={ta_secret}");
    let (s, _, page) = ui(&c, Method::GET, "/ui/services", Some(&team_a), None);
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("/team-a/web"), "{page}");
    assert!(
        !page.contains("team-b"),
        "team B is not shown to team A: {page}"
    );

    // Team B's app page, team B's scale form, and the operator's pages are refused.
    let (s, _, page) = ui(
        &c,
        Method::GET,
        "/ui/services/team-b/db",
        Some(&team_a),
        None,
    );
    assert_eq!(s, 403, "{page}");
    assert!(
        page.contains("/team-b/db") && page.contains("refused"),
        "{page}"
    );
    let (s, _, page) = ui(
        &c,
        Method::POST,
        "/ui/actions/scale/team-b/db",
        Some(&team_a),
        Some(&[("instances", "1")]),
    );
    assert_eq!(s, 403, "{page}");
    let (_, b) = call(&c, Method::GET, "/v2/apps/team-b/db", a, None);
    assert_eq!(b["app"]["instances"], 0, "nothing changed: {b}");
    let (s, _, _) = ui(&c, Method::GET, "/ui/nodes", Some(&team_a), None);
    assert_eq!(s, 403, "the nodes page needs operator read");

    // Team A's own form works through the cookie.
    let (s, h, page) = ui(
        &c,
        Method::POST,
        "/ui/actions/scale/team-a/web",
        Some(&team_a),
        Some(&[("instances", "1")]),
    );
    assert_eq!(s, 303, "{page}");
    assert_eq!(header(&h, "location"), "/ui/services/team-a/web");
    // The UI acted as team A: the audit entry names its token and the versions around it.
    let e = audited(&c, &admin, "the UI's scale in the audit log", |e| {
        e["method"] == "PUT"
            && e["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/v2/apps/team-a/web"))
    });
    assert_eq!(e["accessor"], ta["accessor"], "{e}");
    assert_eq!(e["status"], 200, "{e}");
    let (before, after) = (e["before"].as_str(), e["after"].as_str());
    assert!(
        before.is_some() && after.is_some() && before != after,
        "before and after versions: {e}"
    );

    // The admin sees both teams; signing out forgets the cookie.
    let admin_cookie = format!("meseta_token={admin}");
    let (s, _, page) = ui(&c, Method::GET, "/ui/services", Some(&admin_cookie), None);
    assert_eq!(s, 200);
    assert!(
        page.contains("/team-a/web") && page.contains("/team-b/db"),
        "{page}"
    );
    let (s, _, _) = ui(&c, Method::GET, "/ui", Some(&admin_cookie), None);
    assert_eq!(s, 200, "the admin reads the dashboard");
    let (s, h, _) = ui(&c, Method::GET, "/ui/logout", Some(&team_a), None);
    assert_eq!(s, 303);
    assert!(header(&h, "set-cookie").contains("Max-Age=0"));
}
