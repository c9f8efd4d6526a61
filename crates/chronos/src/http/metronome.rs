//! The Metronome-style jobs API (reference §8): `/v1/jobs`, `/v1/jobs/{id}`, `/v1/jobs/{id}/runs`
//! and `/v1/jobs/{id}/schedules`, with cron schedules. A Metronome job is stored as the same
//! Chronos job the `/scheduler` API sees (one planner behind both): `run.*` maps to the command
//! and resources, a schedule to `schedule` (cron) + `scheduleTimeZone`, `startingDeadlineSeconds`
//! to `epsilon` and `concurrencyPolicy` to `concurrent`. A job without a schedule (run on demand
//! only) carries a far-future placeholder schedule that is hidden here.
//!
//! Status codes: 201 on create, 404 `{"message":"Job 'x' does not exist"}`, 422 Marathon-style
//! `{"message":"Object is not valid","details":[{"path","errors"}]}` on validation.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jiff::Timestamp;
use meseta_api::chronos::{ChronosJob, EnvVar};
use meseta_jobs::job::is_root;
use meseta_jobs::planner::{RunOutcome, RunRecord};
use meseta_jobs::schedule::{looks_iso, Schedule, ScheduleError};
use meseta_types::Scalar;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Chronos;
use crate::{CreateKind, JobView, JobsError};

/// The schedule of a job that only runs on demand (never due in practice).
const ON_DEMAND: &str = "R1/2999-01-01T00:00:00Z/P1D";
/// Default `startingDeadlineSeconds` (15 minutes).
const DEFAULT_DEADLINE: u64 = 900;

/// The Metronome routes.
pub(crate) fn routes() -> Router<Chronos> {
    Router::new()
        .route("/v1/jobs", get(list).post(create))
        .route("/v1/jobs/{id}", get(show).put(update).delete(remove))
        .route("/v1/jobs/{id}/runs", get(runs).post(start_run))
        .route("/v1/jobs/{id}/schedules", get(schedules).post(add_schedule))
}

/// A Metronome job as accepted on input.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MJob {
    id: String,
    description: Option<String>,
    run: MRun,
    /// Legacy `/v0/scheduled-jobs` form: schedules embedded in the job.
    schedules: Vec<MSchedule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MRun {
    cmd: Option<String>,
    args: Vec<String>,
    cpus: Option<f64>,
    mem: Option<f64>,
    disk: Option<f64>,
    user: Option<String>,
    env: BTreeMap<String, Value>,
    secrets: BTreeMap<String, Value>,
    docker: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct MSchedule {
    id: String,
    cron: String,
    timezone: Option<String>,
    starting_deadline_seconds: Option<u64>,
    concurrency_policy: Option<String>,
    enabled: Option<bool>,
}

/// A 422 with Marathon's `details` list.
fn invalid(details: Vec<(String, String)>) -> Response {
    let details: Vec<Value> = details
        .into_iter()
        .map(|(path, e)| json!({"path": path, "errors": [e]}))
        .collect();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"message": "Object is not valid", "details": details})),
    )
        .into_response()
}

fn not_found(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"message": format!("Job '{id}' does not exist")})),
    )
        .into_response()
}

fn error_response(id: &str, e: JobsError) -> Response {
    match e {
        JobsError::NotFound(_) => not_found(id),
        JobsError::Invalid(errs) => invalid(
            errs.into_iter()
                .map(|f| (format!("/{}", f.field), f.message))
                .collect(),
        ),
        JobsError::Planner(p) => invalid(vec![("/".to_string(), p.to_string())]),
        JobsError::BadRequest(m) => invalid(vec![("/".to_string(), m)]),
        JobsError::Conflict(_) => conflict("Job with this id already exists"),
        JobsError::Store(_) => {
            meseta_master::error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        JobsError::Unavailable => {
            meseta_master::error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

/// Metronome's id rule: dot-separated lower-case segments of letters, digits and inner dashes.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.split('.').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('-')
                && !seg.ends_with('-')
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// The concurrency policies Metronome's schedule schema allows.
const POLICIES: [&str; 2] = ["ALLOW", "FORBID"];

/// Problems of one schedule, with paths under `at` (`/schedules/0` in a job, `` on its own).
fn schedule_errors(s: &MSchedule, at: &str) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let cron = s.cron.trim();
    if cron.is_empty() {
        errs.push((
            format!("{at}/cron"),
            "a schedule needs a cron expression".into(),
        ));
    } else if looks_iso(cron) {
        errs.push((
            format!("{at}/cron"),
            format!(
                "'{cron}' is an ISO 8601 repeating interval, not a cron expression \
                 (those belong to the Chronos API)"
            ),
        ));
    } else {
        match Schedule::parse(cron, s.timezone.as_deref(), Timestamp::now()) {
            Ok(_) => {}
            Err(e @ ScheduleError::TimeZone(_)) => {
                errs.push((format!("{at}/timezone"), e.to_string()));
            }
            Err(e) => errs.push((format!("{at}/cron"), e.to_string())),
        }
    }
    if let Some(p) = s
        .concurrency_policy
        .as_deref()
        .filter(|p| !POLICIES.contains(p))
    {
        errs.push((
            format!("{at}/concurrencyPolicy"),
            format!("unknown concurrency policy '{p}': use ALLOW or FORBID"),
        ));
    }
    errs
}

/// Validate a Metronome job and turn it into the Chronos job stored for it.
fn to_chronos(
    j: &MJob,
    schedule: Option<&MSchedule>,
    allow_root: bool,
) -> Result<ChronosJob, Vec<(String, String)>> {
    let mut errs = Vec::new();
    if !valid_id(&j.id) {
        errs.push((
            "/id".into(),
            format!(
                "invalid job id '{}': use dot-separated lower-case letters, digits and dashes",
                j.id
            ),
        ));
    }
    let cmd = j.run.cmd.clone().unwrap_or_default();
    if cmd.trim().is_empty() && j.run.docker.is_none() {
        errs.push((
            "/run/cmd".into(),
            "a run needs a cmd or a docker image".into(),
        ));
    }
    let (cpus, mem, disk) = (
        j.run.cpus.unwrap_or(1.0),
        j.run.mem.unwrap_or(128.0),
        j.run.disk.unwrap_or(0.0),
    );
    for (name, v) in [("cpus", cpus), ("mem", mem), ("disk", disk)] {
        if !v.is_finite() || v < 0.0 {
            errs.push((
                format!("/run/{name}"),
                format!("{name} must be a non-negative number, got {v}"),
            ));
        } else if let Err(e) = Scalar::from_f64(v) {
            errs.push((format!("/run/{name}"), format!("{name} {v}: {e}")));
        }
    }
    if let Some(u) = j.run.user.as_deref().filter(|u| is_root(u)) {
        if !allow_root {
            errs.push((
                "/run/user".into(),
                format!(
                    "user '{u}': running jobs as root is not allowed on this cluster \
                     (start the master with --allow-root to permit it)"
                ),
            ));
        }
    }
    let mut secret_env = Vec::new();
    for (name, v) in &j.run.secrets {
        match v.get("source").and_then(Value::as_str) {
            Some(src) => {
                if let Err(e) = meseta_api::secret_path::source_problem(src) {
                    errs.push((format!("/run/secrets/{name}/source"), e));
                }
            }
            None => errs.push((
                format!("/run/secrets/{name}"),
                "must be an object {\"source\": \"/path/of/the/secret\"}".into(),
            )),
        }
    }
    for (k, v) in &j.run.env {
        match v {
            Value::String(_) => {}
            Value::Object(o) => match o.get("secret").and_then(Value::as_str) {
                Some(s) => match j
                    .run
                    .secrets
                    .get(s)
                    .and_then(|d| d.get("source"))
                    .and_then(Value::as_str)
                {
                    Some(src) => secret_env.push(meseta_api::chronos::EnvSecret {
                        name: k.clone(),
                        secret: s.to_string(),
                        source: src.to_string(),
                    }),
                    None => errs.push((
                        format!("/run/env/{k}"),
                        format!("references an undefined secret named '{s}'"),
                    )),
                },
                None => errs.push((
                    format!("/run/env/{k}"),
                    format!("the value of {k} must be a string or {{\"secret\": name}}, got {v}"),
                )),
            },
            _ => errs.push((
                format!("/run/env/{k}"),
                format!("the value of {k} must be a string or {{\"secret\": name}}, got {v}"),
            )),
        }
    }
    if !secret_env.is_empty() && j.run.docker.is_some() {
        errs.push((
            "/run/docker".into(),
            "secrets are delivered to plain processes, not DOCKER containers".into(),
        ));
    }
    if j.schedules.len() > 1 {
        errs.push((
            "/schedules".into(),
            format!(
                "{} schedules given: only one schedule per job is supported",
                j.schedules.len()
            ),
        ));
    }
    if let Some(s) = schedule {
        errs.extend(schedule_errors(s, "/schedules/0"));
    }
    if mem < 32.0 {
        errs.push((
            "/run/mem".into(),
            format!("mem must be at least 32 MiB, got {mem}"),
        ));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    // Every value is a string here (checked above).
    let environment_variables = j
        .run
        .env
        .iter()
        .filter_map(|(k, v)| {
            v.as_str().map(|s| EnvVar {
                name: k.clone(),
                value: s.to_string(),
            })
        })
        .collect();
    let mut c = ChronosJob {
        name: j.id.clone(),
        command: cmd,
        shell: j.run.args.is_empty(),
        arguments: j.run.args.clone(),
        description: j.description.clone().unwrap_or_default(),
        cpus,
        mem,
        disk,
        run_as_user: j.run.user.clone().filter(|u| !u.trim().is_empty()),
        environment_variables,
        secret_environment_variables: secret_env,
        container: j
            .run
            .docker
            .clone()
            .map(|d| json!({"type": "DOCKER", "image": d["image"]})),
        retries: 0,
        ..ChronosJob::default()
    };
    apply_schedule(&mut c, schedule);
    Ok(c)
}

/// Set (or clear, with `None`) the schedule of a stored job.
fn apply_schedule(c: &mut ChronosJob, s: Option<&MSchedule>) {
    c.parents = None;
    match s {
        Some(s) => {
            c.schedule = Some(s.cron.clone());
            c.schedule_time_zone = Some(s.timezone.clone().unwrap_or_else(|| "UTC".into()));
            let deadline = s.starting_deadline_seconds.unwrap_or(DEFAULT_DEADLINE);
            c.epsilon = Some(format!("PT{deadline}S"));
            c.concurrent = s.concurrency_policy.as_deref() != Some("FORBID");
            c.disabled = s.enabled == Some(false);
        }
        None => {
            c.schedule = Some(ON_DEMAND.to_string());
            c.schedule_time_zone = None;
            c.disabled = false;
        }
    }
}

/// Metronome timestamps: milliseconds and a `+0000` offset.
fn ts(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

fn has_schedule(j: &JobView) -> bool {
    j.spec
        .schedule_text
        .as_deref()
        .is_some_and(|s| s != ON_DEMAND && !s.starts_with("R1/2999-01-01"))
}

/// The schedules of a stored job (at most one).
fn schedules_json(j: &JobView) -> Vec<Value> {
    if !has_schedule(j) {
        return vec![];
    }
    vec![json!({
        "id": "default",
        "cron": j.spec.schedule_text.clone().unwrap_or_default(),
        "timezone": j.chronos.schedule_time_zone.clone().unwrap_or_else(|| "UTC".into()),
        "startingDeadlineSeconds": j.spec.epsilon.as_secs(),
        "concurrencyPolicy": if j.spec.concurrent { "ALLOW" } else { "FORBID" },
        "enabled": !j.spec.disabled,
        "nextRunAt": j.state.next_due.map(ts),
    })]
}

/// A stored job as Metronome JSON.
fn job_json(j: &JobView) -> Value {
    let env: BTreeMap<&str, &str> = j
        .spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut run = json!({
        "cmd": j.spec.command, "args": j.spec.arguments, "cpus": j.spec.cpus, "mem": j.spec.mem,
        "disk": j.spec.disk, "env": env,
    });
    if let Some(u) = &j.spec.user {
        run["user"] = json!(u);
    }
    if !j.spec.secret_env.is_empty() {
        let mut secrets = serde_json::Map::new();
        for e in &j.spec.secret_env {
            run["env"][&e.name] = json!({"secret": e.secret});
            secrets.insert(e.secret.clone(), json!({"source": e.source}));
        }
        run["secrets"] = Value::Object(secrets);
    }
    json!({"id": j.spec.name, "description": j.spec.description, "labels": {}, "run": run,
           "schedules": schedules_json(j)})
}

fn run_status(o: &RunOutcome) -> &'static str {
    match o {
        RunOutcome::Pending => "STARTING",
        RunOutcome::Running => "ACTIVE",
        RunOutcome::Succeeded => "SUCCESS",
        RunOutcome::Failed | RunOutcome::Killed | RunOutcome::Skipped { .. } => "FAILED",
    }
}

/// One JobRun.
fn run_json(job: &str, r: &RunRecord) -> Value {
    let created = r.started_at.unwrap_or(r.scheduled_for);
    json!({
        "id": r.run_id.0, "jobId": job, "status": run_status(&r.outcome),
        "createdAt": ts(created), "completedAt": r.finished_at.map(ts),
        "tasks": [{"id": r.task_id.clone().unwrap_or_else(|| r.run_id.0.clone()),
                   "startedAt": r.started_at.map(ts), "completedAt": r.finished_at.map(ts),
                   "status": run_status(&r.outcome)}],
    })
}

/// The active runs of a job (those in its history that have not finished).
fn active_runs(j: &JobView) -> Vec<Value> {
    j.state
        .history
        .iter()
        .filter(|r| matches!(r.outcome, RunOutcome::Pending | RunOutcome::Running))
        .map(|r| run_json(&j.spec.name, r))
        .collect()
}

/// Decode a JSON body, or the 422 to answer (boxed: a `Response` is large).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(invalid(vec![(
            "/".to_string(),
            format!("invalid JSON: {e}"),
        )]))
    })
}

async fn list(State(m): State<Chronos>) -> Response {
    let h = &m.jobs;
    match h.list().await {
        Ok(v) => Json(v.iter().map(job_json).collect::<Vec<_>>()).into_response(),
        Err(e) => error_response("", e),
    }
}

fn conflict(message: impl Into<String>) -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({"message": message.into()})),
    )
        .into_response()
}

async fn put_job(m: &Chronos, body: &[u8], path_id: Option<&str>) -> Result<JobView, Response> {
    let h = &m.jobs;
    let mut j: MJob = parse(body).map_err(|r| *r)?;
    if let Some(id) = path_id {
        if j.id.is_empty() {
            j.id = id.to_string();
        } else if j.id != id {
            return Err(invalid(vec![(
                "/id".into(),
                format!("id '{}' does not match the path '{id}'", j.id),
            )]));
        }
    }
    let c = to_chronos(&j, j.schedules.first(), m.master.allows_root_tasks()).map_err(invalid)?;
    // Every secret must exist and open with this master's key.
    let resolver = m.master.secret_resolver();
    let missing: Vec<(String, String)> = c
        .secret_environment_variables
        .iter()
        .filter_map(|e| {
            let why = match &resolver {
                None => Some("this master has no secrets store".to_string()),
                Some(r) => (r.0)(&e.source).err(),
            };
            why.map(|w| (format!("/run/secrets/{}/source", e.secret), w))
        })
        .collect();
    if !missing.is_empty() {
        return Err(invalid(missing));
    }
    // A POST creates (an existing id is a conflict), a PUT replaces.
    let kind = match path_id {
        None => CreateKind::New,
        Some(_) => CreateKind::Any,
    };
    h.put(c, kind).await.map_err(|e| error_response(&j.id, e))?;
    h.get(&j.id).await.map_err(|e| error_response(&j.id, e))
}

async fn create(State(m): State<Chronos>, body: Bytes) -> Response {
    match put_job(&m, &body, None).await {
        Ok(v) => (StatusCode::CREATED, Json(job_json(&v))).into_response(),
        Err(r) => r,
    }
}

async fn update(State(m): State<Chronos>, Path(id): Path<String>, body: Bytes) -> Response {
    let h = &m.jobs;
    if let Err(e) = h.get(&id).await {
        return error_response(&id, e);
    }
    match put_job(&m, &body, Some(&id)).await {
        Ok(v) => Json(job_json(&v)).into_response(),
        Err(r) => r,
    }
}

async fn show(State(m): State<Chronos>, Path(id): Path<String>) -> Response {
    match m.jobs.get(&id).await {
        Ok(v) => Json(job_json(&v)).into_response(),
        Err(e) => error_response(&id, e),
    }
}

async fn remove(State(m): State<Chronos>, Path(id): Path<String>) -> Response {
    let h = &m.jobs;
    if let Err(e) = h.get(&id).await {
        return error_response(&id, e);
    }
    match h.remove(&id).await {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => error_response(&id, e),
    }
}

async fn runs(State(m): State<Chronos>, Path(id): Path<String>) -> Response {
    match m.jobs.get(&id).await {
        Ok(v) => Json(active_runs(&v)).into_response(),
        Err(e) => error_response(&id, e),
    }
}

async fn start_run(State(m): State<Chronos>, Path(id): Path<String>) -> Response {
    let h = &m.jobs;
    if let Err(e) = h.get(&id).await {
        return error_response(&id, e);
    }
    if let Err(e) = h.run_now(&id).await {
        return error_response(&id, e);
    }
    match h.get(&id).await {
        Ok(v) => {
            let newest = v
                .state
                .history
                .iter()
                .rev()
                .find(|r| matches!(r.outcome, RunOutcome::Pending | RunOutcome::Running));
            let body = newest.map(|r| run_json(&id, r)).unwrap_or_else(|| {
                json!({"jobId": id, "status": "INITIAL", "createdAt": null,
                       "completedAt": null, "tasks": []})
            });
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(e) => error_response(&id, e),
    }
}

async fn schedules(State(m): State<Chronos>, Path(id): Path<String>) -> Response {
    match m.jobs.get(&id).await {
        Ok(v) => Json(schedules_json(&v)).into_response(),
        Err(e) => error_response(&id, e),
    }
}

async fn add_schedule(State(m): State<Chronos>, Path(id): Path<String>, body: Bytes) -> Response {
    let h = &m.jobs;
    let s: MSchedule = match parse(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let errs = schedule_errors(&s, "");
    if !errs.is_empty() {
        return invalid(errs);
    }
    let mut job = match h.get(&id).await {
        Ok(v) if has_schedule(&v) => {
            return conflict("Only one schedule supported at the moment");
        }
        Ok(v) => v.chronos,
        Err(e) => return error_response(&id, e),
    };
    apply_schedule(&mut job, Some(&s));
    if let Err(e) = h.put(job, CreateKind::Any).await {
        return error_response(&id, e);
    }
    match h.get(&id).await {
        Ok(v) => {
            let mut out = schedules_json(&v).into_iter().next().unwrap_or(Value::Null);
            if !s.id.is_empty() {
                out["id"] = json!(s.id);
            }
            (StatusCode::CREATED, Json(out)).into_response()
        }
        Err(e) => error_response(&id, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mjob(v: Value) -> MJob {
        serde_json::from_value(v).expect("metronome json")
    }

    #[test]
    fn ids_follow_metronome_rules() {
        assert!(valid_id("prod.example.app"));
        assert!(valid_id("a-b.c1"));
        assert!(!valid_id("Prod"));
        assert!(!valid_id("a..b"));
        assert!(!valid_id("-a"));
        assert!(!valid_id("a_b"));
        assert!(!valid_id(""));
    }

    #[test]
    fn a_job_with_a_schedule_becomes_a_cron_chronos_job() {
        let j =
            mjob(json!({"id": "nightly", "run": {"cmd": "echo hi", "mem": 64, "env": {"K": "v"}}}));
        let s = MSchedule {
            cron: "0 2 * * *".into(),
            timezone: Some("Europe/Berlin".into()),
            starting_deadline_seconds: Some(60),
            concurrency_policy: Some("FORBID".into()),
            ..MSchedule::default()
        };
        let c = to_chronos(&j, Some(&s), false).expect("valid");
        assert_eq!(c.name, "nightly");
        assert_eq!(c.schedule.as_deref(), Some("0 2 * * *"));
        assert_eq!(c.schedule_time_zone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(c.epsilon.as_deref(), Some("PT60S"));
        assert!(!c.concurrent);
        assert_eq!(c.cpus, 1.0);
        assert_eq!(c.environment_variables[0].name, "K");
    }

    #[test]
    fn without_a_schedule_the_job_is_on_demand() {
        let c = to_chronos(
            &mjob(json!({"id": "x", "run": {"cmd": "true"}})),
            None,
            false,
        )
        .expect("valid");
        assert_eq!(c.schedule.as_deref(), Some(ON_DEMAND));
    }

    #[test]
    fn every_problem_is_reported() {
        let j = mjob(json!({"id": "Bad_Id", "run": {"cpus": -1, "mem": 16}}));
        let errs = to_chronos(&j, None, false).expect_err("invalid");
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert!(paths.contains(&"/id"), "{errs:?}");
        assert!(paths.contains(&"/run/cmd"), "{errs:?}");
        assert!(paths.contains(&"/run/cpus"), "{errs:?}");
        assert!(paths.contains(&"/run/mem"), "{errs:?}");
    }

    fn paths(errs: &[(String, String)]) -> Vec<&str> {
        errs.iter().map(|(p, _)| p.as_str()).collect()
    }

    fn schedule(cron: &str, policy: Option<&str>) -> MSchedule {
        MSchedule {
            id: "default".into(),
            cron: cron.into(),
            concurrency_policy: policy.map(Into::into),
            ..MSchedule::default()
        }
    }

    #[test]
    fn hostile_schedules_are_refused_naming_their_field() {
        let j = mjob(json!({"id": "x", "run": {"cmd": "true"}}));
        for (s, path) in [
            (schedule("R//PT0.000001S", None), "/schedules/0/cron"),
            (
                schedule("R/2026-01-01T00:00:00Z/PT1H", None),
                "/schedules/0/cron",
            ),
            (schedule("61 * * * *", None), "/schedules/0/cron"),
            (schedule("  ", None), "/schedules/0/cron"),
            (
                schedule("* * * * *", Some("SOMETIMES")),
                "/schedules/0/concurrencyPolicy",
            ),
        ] {
            let errs = to_chronos(&j, Some(&s), false).expect_err(&s.cron);
            assert_eq!(paths(&errs), [path], "{s:?}: {errs:?}");
        }
        let ok = to_chronos(&j, Some(&schedule("*/5 * * * *", Some("FORBID"))), false);
        assert!(ok.is_ok());
        // On its own (POST /v1/jobs/{id}/schedules) the paths are relative to the schedule.
        let errs = schedule_errors(&schedule("R//PT1S", Some("X")), "");
        assert_eq!(paths(&errs), ["/cron", "/concurrencyPolicy"]);
    }

    #[test]
    fn a_second_schedule_is_refused() {
        let j = mjob(json!({"id": "x", "run": {"cmd": "true"}, "schedules": [
            {"id": "a", "cron": "* * * * *"}, {"id": "b", "cron": "0 * * * *"}]}));
        let errs = to_chronos(&j, j.schedules.first(), false).expect_err("two schedules");
        assert_eq!(paths(&errs), ["/schedules"]);
    }

    #[test]
    fn non_string_env_values_and_undefined_secrets_are_refused() {
        let j = mjob(json!({"id": "x", "run": {"cmd": "true",
            "env": {"A": "ok", "B": 5, "C": {"secret": "s"}, "D": null}}}));
        let errs = to_chronos(&j, None, false).expect_err("non-string env");
        assert_eq!(paths(&errs), ["/run/env/B", "/run/env/C", "/run/env/D"]);
        let j = mjob(json!({"id": "x", "run": {"cmd": "true",
            "secrets": {"s0": {"source": "/team-a/db"}, "s1": {"source": "rel"}},
            "env": {"DB": {"secret": "s0"}}}}));
        let errs = to_chronos(&j, None, false).expect_err("bad source");
        assert_eq!(paths(&errs), ["/run/secrets/s1/source"]);
    }

    #[test]
    fn secret_env_is_kept_by_reference_and_shown_as_given() {
        let j = mjob(json!({"id": "x", "run": {"cmd": "true",
            "secrets": {"s0": {"source": "/team-a/db"}},
            "env": {"DB": {"secret": "s0"}, "A": "1"}}}));
        let c = to_chronos(&j, None, false).expect("valid");
        assert_eq!(
            c.secret_environment_variables,
            vec![meseta_api::chronos::EnvSecret {
                name: "DB".into(),
                secret: "s0".into(),
                source: "/team-a/db".into()
            }]
        );
        assert_eq!(c.environment_variables.len(), 1);
    }

    #[test]
    fn resources_beyond_the_fixed_point_range_are_refused() {
        for (field, v) in [("cpus", 1e16), ("mem", 1e308), ("disk", 1e17)] {
            let j = mjob(json!({"id": "x", "run": {"cmd": "true", field: v}}));
            let errs = to_chronos(&j, None, false).expect_err(field);
            assert_eq!(paths(&errs), [format!("/run/{field}")], "{errs:?}");
        }
    }

    #[test]
    fn root_is_refused_unless_allowed() {
        let j = mjob(json!({"id": "x", "run": {"cmd": "true", "user": "root"}}));
        let errs = to_chronos(&j, None, false).expect_err("root");
        assert_eq!(paths(&errs), ["/run/user"]);
        let c = to_chronos(&j, None, true).expect("allowed");
        assert_eq!(c.run_as_user.as_deref(), Some("root"));
        let none = to_chronos(
            &mjob(json!({"id": "x", "run": {"cmd": "true"}})),
            None,
            false,
        );
        assert_eq!(none.expect("valid").run_as_user, None);
    }

    #[test]
    fn timestamps_use_a_plus_zero_offset() {
        let t: Timestamp = "2016-07-15T13:02:59.735Z".parse().expect("ts");
        assert_eq!(ts(t), "2016-07-15T13:02:59.735+0000");
    }
}
