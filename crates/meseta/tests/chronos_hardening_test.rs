//! Hostile input and real clients against the jobs scheduler on the real binary: every refusal
//! names its field, nothing refused is stored, the scheduler stays responsive, and everything
//! holds both on a fresh master and on one restarted (kill -9) on the same data dir. A job
//! record written by an older version with a sub-resolution period is loaded disabled instead
//! of stalling recovery.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, Reply};
use meseta_store::Store;
use serde_json::{json, Value};

fn post(c: &Cluster, path: &str, body: &Value) -> Reply {
    c.call(reqwest::Method::POST, path, Some(body))
}

fn get(c: &Cluster, path: &str) -> Reply {
    c.call(reqwest::Method::GET, path, None)
}

fn chronos_job(name: &str, schedule: &str) -> Value {
    json!({"name": name, "command": "true", "schedule": schedule, "epsilon": "PT60S",
           "cpus": 0.1, "mem": 32})
}

fn job_names(c: &Cluster, prefix: &str) -> Vec<String> {
    let r = get(c, &format!("{prefix}/jobs"));
    assert_eq!(r.status, 200, "{prefix}/jobs: {}", r.body);
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

fn metronome_ids(c: &Cluster) -> Vec<String> {
    let r = get(c, "/v1/jobs");
    assert_eq!(r.status, 200, "/v1/jobs: {}", r.body);
    let mut v: Vec<String> = r
        .body
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|j| j["id"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Chronos bodies refused with 400 and a message naming the field.
fn chronos_cases() -> Vec<(&'static str, Value, &'static str)> {
    let with = |mut j: Value, key: &str, v: Value| {
        j[key] = v;
        j
    };
    let base = || chronos_job("ok-name", "R/2099-01-01T00:00:00Z/PT1H");
    vec![
        (
            "/scheduler/iso8601",
            chronos_job("tiny", "R//PT0.000001S"),
            "schedule",
        ),
        (
            "/v1/scheduler/iso8601",
            chronos_job("tiny", "R//PT0.000001S"),
            "schedule",
        ),
        (
            "/v1/scheduler/iso8601",
            chronos_job("tiny2", "R/2026-01-01T00:00:00Z/PT0.5S"),
            "resolution",
        ),
        (
            "/v1/scheduler/iso8601",
            chronos_job("empty", ""),
            "schedule",
        ),
        (
            "/v1/scheduler/iso8601",
            with(base(), "name", json!(".")),
            "name",
        ),
        (
            "/v1/scheduler/iso8601",
            with(base(), "name", json!("..")),
            "name",
        ),
        (
            "/scheduler/iso8601",
            with(base(), "name", json!("..")),
            "name",
        ),
        (
            "/v1/scheduler/iso8601",
            with(base(), "name", json!("")),
            "name",
        ),
        (
            "/v1/scheduler/iso8601",
            with(base(), "name", json!("x".repeat(10_000))),
            "name",
        ),
        (
            "/v1/scheduler/iso8601",
            with(base(), "name", json!("job with spaces")),
            "name",
        ),
        (
            "/v1/scheduler/iso8601",
            with(base(), "command", Value::Null),
            "command",
        ),
        (
            "/v1/scheduler/iso8601",
            with(base(), "command", json!("")),
            "command",
        ),
        (
            "/v1/scheduler/iso8601",
            with(base(), "cpus", json!(1e16)),
            "cpus",
        ),
        (
            "/v1/scheduler/iso8601",
            with(base(), "mem", json!(1e308)),
            "mem",
        ),
        (
            "/v1/scheduler/iso8601",
            with(base(), "disk", json!(1e300)),
            "disk",
        ),
        (
            "/v1/scheduler/iso8601",
            with(base(), "runAsUser", json!("root")),
            "runasuser",
        ),
        (
            "/scheduler/iso8601",
            with(base(), "runAsUser", json!("root")),
            "root",
        ),
    ]
}

fn metronome_job(id: &str) -> Value {
    json!({"id": id, "run": {"cmd": "true", "cpus": 0.1, "mem": 32, "disk": 0}})
}

/// Metronome bodies refused with 422 naming the path.
fn metronome_cases() -> Vec<(Value, &'static str)> {
    let with_run = |key: &str, v: Value| {
        let mut j = metronome_job("bad");
        j["run"][key] = v;
        j
    };
    let with_schedules = |s: Value| {
        let mut j = metronome_job("bad");
        j["schedules"] = s;
        j
    };
    vec![
        (
            with_schedules(json!([{"id": "s", "cron": "R//PT0.000001S"}])),
            "/schedules/0/cron",
        ),
        (
            with_schedules(json!([{"id": "s", "cron": "R/2026-01-01T00:00:00Z/PT1H"}])),
            "/schedules/0/cron",
        ),
        (
            with_schedules(
                json!([{"id": "s", "cron": "* * * * *", "concurrencyPolicy": "SOMETIMES"}]),
            ),
            "/schedules/0/concurrencyPolicy",
        ),
        (
            with_schedules(
                json!([{"id": "a", "cron": "* * * * *"}, {"id": "b", "cron": "0 * * * *"}]),
            ),
            "/schedules",
        ),
        (with_run("env", json!({"A": "x", "N": 5})), "/run/env/N"),
        (
            with_run("env", json!({"S": {"secret": "pw"}})),
            "/run/env/S",
        ),
        (with_run("cpus", json!(1e16)), "/run/cpus"),
        (with_run("mem", json!(1e308)), "/run/mem"),
        (with_run("disk", json!(1e300)), "/run/disk"),
        (with_run("user", json!("root")), "/run/user"),
    ]
}

fn check_refusals(c: &Cluster, when: &str) {
    for (path, body, word) in chronos_cases() {
        let r = post(c, path, &body);
        let shown: String = body.to_string().chars().take(200).collect();
        assert_eq!(r.status, 400, "{when}: {path} {shown} → {}", r.body);
        let msg = r.body["message"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(
            msg.contains(word),
            "{when}: {path} {shown}: {msg:?} does not name {word:?}"
        );
    }
    for (body, path) in metronome_cases() {
        let r = post(c, "/v1/jobs", &body);
        assert_eq!(r.status, 422, "{when}: {body} → {}", r.body);
        let paths: Vec<&str> = r.body["details"]
            .as_array()
            .map(|d| d.iter().filter_map(|e| e["path"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            paths.contains(&path),
            "{when}: {body}: details {paths:?} do not name {path}"
        );
    }
    // The same schedule text on its own schedule endpoint, and a second schedule.
    let r = post(
        c,
        "/v1/jobs/keep/schedules",
        &json!({"id": "t", "cron": "R//PT0.000001S"}),
    );
    assert_eq!(r.status, 422, "{when}: {}", r.body);
    assert_eq!(r.body["details"][0]["path"], "/cron", "{when}: {}", r.body);
    let r = post(
        c,
        "/v1/jobs/keep/schedules",
        &json!({"id": "u", "cron": "0 3 * * *", "concurrencyPolicy": "NEVER"}),
    );
    assert_eq!(r.status, 422, "{when}: {}", r.body);
    let r = post(
        c,
        "/v1/jobs/keep/schedules",
        &json!({"id": "second", "cron": "0 4 * * *"}),
    );
    assert_eq!(r.status, 409, "{when}: a second schedule: {}", r.body);
    // A taken id.
    let r = post(c, "/v1/jobs", &metronome_job("keep"));
    assert_eq!(r.status, 409, "{when}: a taken id: {}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("already exists")),
        "{when}: {}",
        r.body
    );
    // Nothing refused was stored, what was accepted is unchanged, and the APIs still answer.
    assert_eq!(
        job_names(c, "/v1/scheduler"),
        ["keep", "past", "spaced out"],
        "{when}"
    );
    assert_eq!(job_names(c, "/scheduler"), job_names(c, "/v1/scheduler"));
    let keep = get(c, "/v1/jobs/keep");
    assert_eq!(keep.status, 200, "{when}");
    assert_eq!(keep.body["schedules"][0]["cron"], "0 2 * * *", "{when}");
    assert_eq!(keep.body["schedules"].as_array().map(Vec::len), Some(1));
    assert!(metronome_ids(c).contains(&"keep".to_string()));
}

#[test]
fn hostile_jobs_are_refused_naming_the_field_on_a_fresh_and_a_restarted_master() {
    let mut c = Cluster::new(0, 30.0);
    // Accepted: a Metronome job with one schedule, a past schedule with no repetitions left,
    // and a name with spaces on the Chronos 2 API.
    let mut keep = metronome_job("keep");
    keep["schedules"] = json!([{"id": "default", "cron": "0 2 * * *",
                                "concurrencyPolicy": "FORBID"}]);
    let r = post(&c, "/v1/jobs", &keep);
    assert_eq!(r.status, 201, "{}", r.body);
    let r = post(
        &c,
        "/v1/scheduler/iso8601",
        &chronos_job("past", "R0/2014-01-01T00:00:00Z/PT60M"),
    );
    assert_eq!(r.status, 204, "a past schedule: {}", r.body);
    let r = post(
        &c,
        "/scheduler/iso8601",
        &chronos_job("spaced out", "R/2099-01-01T00:00:00Z/PT1H"),
    );
    assert_eq!(r.status, 204, "spaces on /scheduler: {}", r.body);
    check_refusals(&c, "fresh");
    c.master.as_mut().expect("master").kill9();
    c.start_master();
    check_refusals(&c, "restarted");
}

#[test]
fn a_past_schedule_without_repetitions_is_listed_searchable_with_stats_and_in_the_graph() {
    let mut c = Cluster::new(0, 30.0);
    let r = get(&c, "/v1/scheduler/graph/csv");
    assert_eq!(r.status, 200);
    let r = post(
        &c,
        "/v1/scheduler/iso8601",
        &chronos_job("myjob", "R0/2014-01-01T00:00:00Z/PT60M"),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    for when in ["fresh", "restarted"] {
        assert_eq!(job_names(&c, "/v1/scheduler"), ["myjob"], "{when}");
        let found = get(&c, "/v1/scheduler/jobs/search?name=myjob");
        assert_eq!(found.body.as_array().map(Vec::len), Some(1), "{when}");
        let stat = get(&c, "/v1/scheduler/job/stat/myjob");
        assert_eq!(stat.status, 200, "{when}");
        assert_eq!(stat.body["histogram"]["count"], 0, "{when}");
        assert_eq!(stat.body["taskStatHistory"], json!([]), "{when}");
        for which in ["99thPercentile", "median", "mean"] {
            let r = get(&c, &format!("/v1/scheduler/stats/{which}"));
            assert_eq!(
                r.body,
                json!([{"jobNameLabel": "myjob", "time": 0.0}]),
                "{when}: {which}"
            );
        }
        let csv = c.call(reqwest::Method::GET, "/v1/scheduler/graph/csv", None);
        assert_eq!(csv.status, 200, "{when}");
        c.master.as_mut().expect("master").kill9();
        c.start_master();
    }
}

#[test]
fn the_empty_csv_graph_is_a_non_empty_200() {
    let c = Cluster::new(0, 30.0);
    for prefix in ["/scheduler", "/v1/scheduler"] {
        let r = reqwest::blocking::get(format!("{}{prefix}/graph/csv", c.url())).expect("GET");
        assert_eq!(r.status(), 200);
        let body = r.text().expect("body");
        assert!(
            !body.is_empty(),
            "{prefix}: chronos-python reads an empty 200 as a failure"
        );
        assert_eq!(body.trim(), "", "{prefix}: no nodes: {body:?}");
    }
}

#[test]
fn chronos_python_integration_scenarios_pass_fresh_and_restarted() {
    if !common::python_has("chronos", "chronos-python") {
        return;
    }
    let mut c = Cluster::new(0, 30.0);
    let server = format!("127.0.0.1:{}", c.port);
    common::run_python_script("chronos_itest.py", &[&server]);
    // Again on a master restarted on the same data dir, with a job kept across the restart.
    let r = post(
        &c,
        "/scheduler/iso8601",
        &chronos_job("kept job", "R0/2014-01-01T00:00:00Z/PT60M"),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    c.master.as_mut().expect("master").kill9();
    c.start_master();
    assert_eq!(job_names(&c, "/scheduler"), ["kept job"]);
    common::run_python_script("chronos_itest.py", &[&server]);
}

/// Rewrites the stored record of `job` as a version without the resolution limit would have
/// written it: the same job with a one-microsecond period.
fn poison_stored_job(data_dir: &std::path::Path, job: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(
            meseta_store::redb::RedbStore::open(&data_dir.join("store.redb")).expect("open store"),
        );
        let key = format!("/meseta/jobs/{job}");
        let kv = store.get(&key).await.expect("read").expect("job stored");
        let mut record: Value = serde_json::from_slice(&kv.value).expect("job record json");
        assert_eq!(record["spec"]["schedule"]["period"], "PT1S", "{record}");
        record["spec"]["schedule"]["period"] = json!("PT0.000001S");
        record["spec"]["schedule_text"] = json!("R//PT0.000001S");
        let bytes = serde_json::to_vec(&record).expect("encode");
        store.put(&key, bytes).await.expect("write");
    });
}

#[test]
fn a_stored_sub_resolution_job_does_not_stall_recovery_and_can_be_deleted() {
    let mut c = Cluster::new(0, 30.0);
    let r = post(
        &c,
        "/v1/scheduler/iso8601",
        &json!({"name": "poison", "command": "true", "schedule": "R//PT1S",
                "epsilon": "PT5M", "concurrent": true}),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let r = post(
        &c,
        "/v1/scheduler/iso8601",
        &chronos_job("healthy", "R/2099-01-01T00:00:00Z/PT1H"),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    c.master.as_mut().expect("master").kill9();
    poison_stored_job(&c.dir.path().join("master"), "poison");
    c.start_master();

    // Recovery finished: both jobs are there; the poisoned one is disabled and stays so.
    assert_eq!(job_names(&c, "/v1/scheduler"), ["healthy", "poison"]);
    assert_eq!(metronome_ids(&c), ["healthy", "poison"]);
    let poison = get(&c, "/v1/scheduler/job/poison");
    assert_eq!(poison.status, 200);
    assert_eq!(poison.body["disabled"], true, "{}", poison.body);
    let r = c.call(
        reqwest::Method::PUT,
        "/v1/scheduler/job/enable/poison",
        None,
    );
    assert_eq!(r.status, 400, "enabling it is refused: {}", r.body);
    assert_eq!(get(&c, "/v1/scheduler/job/poison").body["disabled"], true);
    // New work is still accepted, and the poisoned job can be deleted.
    let r = post(
        &c,
        "/v1/scheduler/iso8601",
        &chronos_job("after", "R/2099-01-01T00:00:00Z/PT1H"),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let r = c.call(reqwest::Method::DELETE, "/v1/scheduler/job/poison", None);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(job_names(&c, "/v1/scheduler"), ["after", "healthy"]);
    c.master.as_mut().expect("master").kill9();
    c.start_master();
    assert_eq!(job_names(&c, "/v1/scheduler"), ["after", "healthy"]);

    // And the master stops on SIGTERM within its grace period (15 s).
    let master = c.master.as_mut().expect("master");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(master.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = common::wait_for("the master to stop", Duration::from_secs(20), || {
        master.child.try_wait().ok().flatten()
    });
    assert!(status.success(), "master exited with {status}");
}
