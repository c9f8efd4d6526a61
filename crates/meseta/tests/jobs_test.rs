//! The jobs scheduler end to end on the real binary: a master and an agent as processes, jobs
//! through the Chronos API (`/v1/scheduler/*`), chronos-python, the Metronome API and the CLI.
//! Runs are real tasks on the agent.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Reply};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn call(c: &Cluster, method: reqwest::Method, path: &str, body: Option<&Value>) -> Reply {
    c.call(method, path, body)
}

fn post(c: &Cluster, path: &str, body: &Value) -> Reply {
    call(c, reqwest::Method::POST, path, Some(body))
}

/// Create a Chronos job (scheduled or dependent), expecting 204.
fn add(c: &Cluster, job: Value) {
    let path = if job.get("parents").is_some() {
        "/v1/scheduler/dependency"
    } else {
        "/v1/scheduler/iso8601"
    };
    let r = post(c, path, &job);
    assert_eq!(r.status, 204, "adding {job}: {}", r.body);
}

fn job(c: &Cluster, name: &str) -> Value {
    let r = call(
        c,
        reqwest::Method::GET,
        &format!("/v1/scheduler/job/{name}"),
        None,
    );
    assert_eq!(r.status, 200, "GET job {name}: {}", r.body);
    r.body
}

fn history(c: &Cluster, name: &str) -> Vec<Value> {
    let r = call(
        c,
        reqwest::Method::GET,
        &format!("/v1/scheduler/job/stat/{name}"),
        None,
    );
    assert_eq!(r.status, 200, "job stat {name}: {}", r.body);
    r.body["taskStatHistory"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn count(c: &Cluster, name: &str, field: &str) -> u64 {
    job(c, name)[field].as_u64().unwrap_or(0)
}

fn job_names(c: &Cluster) -> Vec<String> {
    let r = call(c, reqwest::Method::GET, "/v1/scheduler/jobs", None);
    assert_eq!(r.status, 200);
    let mut v: Vec<String> = r
        .body
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|j| j["name"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// An ISO 8601 instant `secs` from now (whole seconds, UTC).
fn in_secs(secs: u64) -> String {
    let t = std::time::SystemTime::now() + Duration::from_secs(secs);
    let unix = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs();
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn small(name: &str, command: &str) -> Value {
    json!({"name": name, "command": command, "cpus": 0.1, "mem": 32, "disk": 0,
           "owner": "ops@example.com", "retries": 0})
}

fn scheduled(name: &str, command: &str, schedule: &str, epsilon: &str) -> Value {
    let mut j = small(name, command);
    j["schedule"] = json!(schedule);
    j["epsilon"] = json!(epsilon);
    j
}

fn dependent(name: &str, command: &str, parents: &[&str]) -> Value {
    let mut j = small(name, command);
    j["parents"] = json!(parents);
    j
}

#[test]
fn chronos_python_adds_lists_runs_and_deletes_jobs() {
    require_root!();
    if !common::python_has("chronos", "chronos-python") {
        return;
    }
    let c = Cluster::new(1, 30.0);
    common::run_python_script("chronos_client.py", &[&format!("127.0.0.1:{}", c.port)]);
}

#[test]
fn a_job_every_second_for_a_minute_runs_sixty_times() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    add(&c, scheduled("tick", "true", "R//PT1S", "PT30S"));
    std::thread::sleep(Duration::from_secs(63));
    let r = call(
        &c,
        reqwest::Method::PUT,
        "/v1/scheduler/job/disable/tick",
        None,
    );
    assert_eq!(r.status, 204);
    let runs = history(&c, "tick");
    let mut due: Vec<String> = runs
        .iter()
        .filter(|r| r["attempt"] == 0)
        .filter_map(|r| r["scheduledFor"].as_str().map(str::to_string))
        .collect();
    due.sort();
    let first = due.first().expect("some runs").clone();
    let first_secs = parse_secs(&first);
    let in_first_minute: Vec<&Value> = runs
        .iter()
        .filter(|r| {
            let s = r["scheduledFor"]
                .as_str()
                .map(parse_secs)
                .unwrap_or(i64::MAX);
            s >= first_secs && s < first_secs + 60
        })
        .collect();
    let succeeded = in_first_minute
        .iter()
        .filter(|r| r["status"] == "success")
        .count();
    assert!(
        (59..=61).contains(&succeeded),
        "{succeeded} successful runs scheduled in the first minute: {in_first_minute:?}"
    );
}

/// Seconds since the epoch of an RFC 3339 instant (via date(1), to stay dependency-free).
fn parse_secs(s: &str) -> i64 {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", s, "+%s"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("epoch seconds")
}

#[test]
fn a_child_runs_once_when_both_parents_succeed_and_never_after_a_failure() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let at = in_secs(3);
    add(
        &c,
        scheduled("a", "true", &format!("R1/{at}/PT1H"), "PT60S"),
    );
    add(
        &c,
        scheduled("b", "true", &format!("R1/{at}/PT1H"), "PT60S"),
    );
    add(&c, dependent("c", "true", &["a", "b"]));
    add(
        &c,
        scheduled("d", "true", &format!("R1/{at}/PT1H"), "PT60S"),
    );
    add(
        &c,
        scheduled("e", "exit 3", &format!("R1/{at}/PT1H"), "PT60S"),
    );
    add(&c, dependent("f", "true", &["d", "e"]));

    common::wait_for("c to succeed", WAIT, || {
        (count(&c, "c", "successCount") == 1).then_some(())
    });
    common::wait_for("e to fail", WAIT, || {
        (count(&c, "e", "errorCount") >= 1).then_some(())
    });
    common::wait_for("d to succeed", WAIT, || {
        (count(&c, "d", "successCount") == 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(count(&c, "a", "successCount"), 1);
    assert_eq!(count(&c, "b", "successCount"), 1);
    assert_eq!(count(&c, "c", "successCount"), 1, "c ran more than once");
    assert_eq!(history(&c, "c").len(), 1, "{:?}", history(&c, "c"));
    let e = history(&c, "e");
    assert_eq!(e[0]["exitCode"], 3, "{e:?}");
    assert!(history(&c, "f").is_empty(), "f ran after a parent failed");
    assert_eq!(
        count(&c, "f", "successCount") + count(&c, "f", "errorCount"),
        0
    );
    let csv = call(&c, reqwest::Method::GET, "/v1/scheduler/graph/csv", None);
    assert_eq!(csv.status, 200);
}

#[test]
fn master_kill9_across_a_scheduled_time_runs_once_within_epsilon_and_skips_beyond() {
    require_root!();
    let mut c = Cluster::new(1, 30.0);
    let at = in_secs(6);
    add(
        &c,
        scheduled("within", "true", &format!("R1/{at}/PT1H"), "PT120S"),
    );
    add(
        &c,
        scheduled("beyond", "true", &format!("R1/{at}/PT1H"), "PT2S"),
    );
    c.master.as_mut().expect("master").kill9();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(11).saturating_sub(down.elapsed()));
    c.start_master();
    c.wait_agents(1);
    common::wait_for("the missed run within epsilon", WAIT, || {
        (count(&c, "within", "successCount") == 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let runs = history(&c, "within");
    assert_eq!(runs.len(), 1, "exactly one run: {runs:?}");
    let tasks: Vec<Value> = c
        .tasks()
        .into_iter()
        .filter(|t| t["name"] == "within")
        .collect();
    assert_eq!(tasks.len(), 1, "one task for the run: {tasks:?}");

    let beyond = history(&c, "beyond");
    assert_eq!(beyond.len(), 1, "{beyond:?}");
    assert_eq!(beyond[0]["status"], "skipped", "{beyond:?}");
    assert_eq!(count(&c, "beyond", "successCount"), 0);
    assert!(c.tasks().iter().all(|t| t["name"] != "beyond"));
}

#[test]
fn bad_input_gets_400_naming_the_problem_and_nothing_is_stored() {
    let c = Cluster::new(0, 30.0);
    add(
        &c,
        scheduled("base", "true", "R/2099-01-01T00:00:00Z/PT1H", "PT60S"),
    );
    add(&c, dependent("kid", "true", &["base"]));
    let before = job(&c, "base");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/v1/scheduler/iso8601",
            scheduled("x1", "true", "R/not-a-date/PT1S", "PT1M"),
            "schedule",
        ),
        (
            "/v1/scheduler/iso8601",
            scheduled("x2", "true", "61 * * * *", "PT1M"),
            "schedule",
        ),
        (
            "/v1/scheduler/iso8601",
            scheduled("x3", "true", "R1/1969-01-01T00:00:00Z/PT1S", "PT1M"),
            "schedule",
        ),
        (
            "/v1/scheduler/dependency",
            dependent("x4", "true", &["nope"]),
            "nope",
        ),
        (
            "/v1/scheduler/dependency",
            dependent("base", "true", &["kid"]),
            "cycle",
        ),
        (
            "/v1/scheduler/iso8601",
            scheduled("bad name!", "true", "R//PT1S", "PT1M"),
            "name",
        ),
        (
            "/v1/scheduler/iso8601",
            {
                let mut j = scheduled("x5", "true", "R//PT1S", "PT1M");
                j["cpus"] = json!(-1);
                j
            },
            "cpus",
        ),
        ("/v1/scheduler/iso8601", json!({"name": 5}), "json"),
    ];
    for (path, body, word) in cases {
        let r = post(&c, path, &body);
        assert_eq!(r.status, 400, "{body} → {}", r.body);
        let msg = r.body["message"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(
            msg.contains(word),
            "{body}: message {msg:?} does not name {word:?}"
        );
        assert_eq!(r.body["status"], "Bad Request");
    }
    assert_eq!(job_names(&c), ["base", "kid"]);
    assert_eq!(job(&c, "base"), before, "the rejected cycle changed base");
    let unknown = call(&c, reqwest::Method::GET, "/v1/scheduler/job/nope", None);
    assert_eq!(unknown.status, 400);
    // After a restart, exactly the accepted jobs come back.
    let mut c = c;
    c.master.as_mut().expect("master").kill9();
    c.start_master();
    assert_eq!(job_names(&c), ["base", "kid"]);
}

#[test]
fn metronome_api_and_cli_manage_jobs() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let created = post(
        &c,
        "/v1/jobs",
        &json!({"id": "nightly", "run": {"cmd": "echo hi", "cpus": 0.1, "mem": 32}}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["id"], "nightly");
    let missing = call(&c, reqwest::Method::GET, "/v1/jobs/nope", None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["message"], "Job 'nope' does not exist");
    let bad = post(
        &c,
        "/v1/jobs",
        &json!({"id": "Bad_Id", "run": {"cmd": "true", "cpus": -1}}),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(
        bad.body["details"].as_array().is_some_and(|d| d.len() >= 2),
        "{}",
        bad.body
    );
    let sched = post(
        &c,
        "/v1/jobs/nightly/schedules",
        &json!({"id": "n", "cron": "0 2 * * *", "timezone": "Europe/Berlin"}),
    );
    assert_eq!(sched.status, 201, "{}", sched.body);
    assert!(sched.body["nextRunAt"].is_string(), "{}", sched.body);
    let bad_cron = post(
        &c,
        "/v1/jobs/nightly/schedules",
        &json!({"cron": "99 * * * *"}),
    );
    assert_eq!(bad_cron.status, 422, "{}", bad_cron.body);
    let run = post(&c, "/v1/jobs/nightly/runs", &json!({}));
    assert_eq!(run.status, 201, "{}", run.body);

    // The CLI, over the same jobs.
    let file = c.dir.path().join("job.json");
    std::fs::write(&file, json!({"name": "cli-job", "command": "exit 4", "schedule": "R/2099-01-01T00:00:00Z/PT1H", "cpus": 0.1, "mem": 32, "retries": 0}).to_string()).expect("write");
    let ok = |args: &[&str]| {
        let out = c.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ok(&["job", "add", file.to_str().expect("utf8")]);
    assert!(ok(&["job", "list"]).contains("cli-job"));
    ok(&["job", "run", "cli-job"]);
    common::wait_for("cli-job to fail", WAIT, || {
        (count(&c, "cli-job", "errorCount") == 1).then_some(())
    });
    let hist: Value =
        serde_json::from_str(&ok(&["job", "history", "cli-job", "--json"])).expect("json");
    assert_eq!(hist[0]["exitCode"], 4, "{hist}");
    assert!(ok(&["job", "stats", "cli-job"]).contains("P99"));
    ok(&["job", "disable", "cli-job"]);
    assert_eq!(job(&c, "cli-job")["disabled"], true);
    ok(&["job", "enable", "cli-job"]);
    assert!(ok(&["job", "graph", "--dot"]).contains("cli-job"));
    ok(&["job", "remove", "cli-job"]);
    let out = c.cli(&["job", "show", "cli-job"]);
    assert!(!out.status.success(), "show of a removed job succeeded");
    assert!(ok(&["job", "list", "--json"]).contains("nightly"));
}

#[test]
fn a_run_past_its_max_completion_time_is_killed() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let mut j = scheduled("slow", "sleep 100", "R/2099-01-01T00:00:00Z/PT1H", "PT60S");
    j["maxCompletionTime"] = json!(2);
    add(&c, j);
    let r = call(&c, reqwest::Method::PUT, "/v1/scheduler/job/slow", None);
    assert_eq!(r.status, 204);
    let started = Instant::now();
    common::wait_for("the slow run killed", WAIT, || {
        history(&c, "slow")
            .first()
            .filter(|r| r["status"] == "killed")
            .cloned()
    });
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "killed before maxCompletionTime"
    );
}

#[test]
fn an_async_job_runs_its_child_when_it_reports_success() {
    require_root!();
    let c = Cluster::new(1, 30.0);
    let mut parent = scheduled("load", "true", "R/2030-01-01T00:00:00Z/P1D", "PT60S");
    parent["async"] = Value::Bool(true);
    add(&c, parent);
    add(&c, dependent("report", "true", &["load"]));
    let r = call(&c, reqwest::Method::PUT, "/v1/scheduler/job/load", None);
    assert_eq!(r.status, 204);
    common::wait_for("load to finish", WAIT, || {
        (count(&c, "load", "successCount") == 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        history(&c, "report").is_empty(),
        "the child ran before load reported success"
    );
    let r = call(
        &c,
        reqwest::Method::PUT,
        "/v1/scheduler/job/success/load",
        None,
    );
    assert!(r.status < 300, "job/success: {}", r.status);
    common::wait_for("report to run", WAIT, || {
        (count(&c, "report", "successCount") == 1).then_some(())
    });
    assert_eq!(job(&c, "load")["async"], true);
    let leader = call(&c, reqwest::Method::GET, "/v1/scheduler/leader", None);
    assert_eq!(leader.body["leader"], format!("127.0.0.1:{}", c.port));
}
