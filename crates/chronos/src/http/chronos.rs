//! The Chronos REST API (reference §7): `/scheduler/*` (Chronos 2) and `/v1/scheduler/*`
//! (Chronos 3, what `chronos-python` uses by default). Each handler parses its request into one
//! call on the jobs runtime ([`crate::JobsHandle`]) and renders the Chronos wire shapes.
//!
//! Errors are Chronos-style: 400 `{"message","status":"Bad Request"}` naming the problem (also
//! for an unknown job), and nothing is stored on error. Mutations answer 204 with an empty body,
//! which `chronos-python` requires. Beyond Chronos, `PUT job/enable/{name}` and
//! `PUT job/disable/{name}` serve `meseta job enable|disable`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use meseta_api::chronos::ChronosJob;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Chronos;
use crate::{CreateKind, JobView, JobsError};

/// The Chronos routes, under both prefixes.
/// `GET /scheduler/leader`: `{"leader":"host:port"}` (a single master leads itself).
async fn leader(State(m): State<Chronos>) -> Json<serde_json::Value> {
    let addr = m.master.local_addr();
    Json(serde_json::json!({ "leader": addr.to_string() }))
}

pub(crate) fn routes() -> Router<Chronos> {
    let mut r = Router::new();
    for p in ["/scheduler", "/v1/scheduler"] {
        r = r
            .route(&format!("{p}/jobs"), get(list))
            .route(&format!("{p}/jobs/search"), get(search))
            .route(&format!("{p}/jobs/summary"), get(summary))
            .route(
                &format!("{p}/job/{{name}}"),
                get(job).put(run).delete(remove),
            )
            .route(
                &format!("{p}/iso8601"),
                put(create_scheduled).post(create_scheduled),
            )
            .route(
                &format!("{p}/dependency"),
                put(create_dependent).post(create_dependent),
            )
            .route(&format!("{p}/task/kill/{{name}}"), delete(kill))
            .route(&format!("{p}/job/success/{{name}}"), put(success))
            .route(&format!("{p}/job/enable/{{name}}"), put(enable))
            .route(&format!("{p}/job/disable/{{name}}"), put(disable))
            .route(&format!("{p}/job/stat/{{name}}"), get(stat))
            .route(&format!("{p}/stats/{{percentile}}"), get(stats))
            .route(&format!("{p}/graph/csv"), get(graph_csv))
            .route(&format!("{p}/graph/dot"), get(graph_dot))
            .route(&format!("{p}/leader"), get(leader));
    }
    r.route("/ping", get(ping))
}

/// A Chronos error response.
pub(crate) fn chronos_error(status: StatusCode, message: impl Into<String>) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    (
        status,
        Json(json!({"message": message.into(), "status": reason})),
    )
        .into_response()
}

fn error_response(e: JobsError) -> Response {
    let status = match e {
        JobsError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        JobsError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    chronos_error(status, e.to_string())
}

/// 204 or the error.
fn no_content(r: Result<(), JobsError>) -> Response {
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error_response(e),
    }
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn ping() -> Response {
    text("pong".to_string())
}

async fn list(State(m): State<Chronos>) -> Response {
    let h = &m.jobs;
    match h.list().await {
        Ok(v) => Json(v.into_iter().map(|j| j.chronos).collect::<Vec<_>>()).into_response(),
        Err(e) => error_response(e),
    }
}

/// `jobs/search` parameters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchQuery {
    name: Option<String>,
    command: Option<String>,
    any: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// Does `job` match the search (lower-cased substrings; `any` matches name or command)?
fn matches(q: &SearchQuery, job: &ChronosJob) -> bool {
    let has = |field: &str, needle: &Option<String>| {
        needle
            .as_ref()
            .is_none_or(|n| field.to_lowercase().contains(&n.to_lowercase()))
    };
    let any_ok = q.any.as_ref().is_none_or(|a| {
        let a = a.to_lowercase();
        job.name.to_lowercase().contains(&a) || job.command.to_lowercase().contains(&a)
    });
    has(&job.name, &q.name) && has(&job.command, &q.command) && any_ok
}

async fn search(State(m): State<Chronos>, Query(q): Query<SearchQuery>) -> Response {
    let h = &m.jobs;
    match h.list().await {
        Ok(v) => {
            let found: Vec<ChronosJob> = v
                .into_iter()
                .map(|j| j.chronos)
                .filter(|j| matches(&q, j))
                .skip(q.offset.unwrap_or(0))
                .take(q.limit.unwrap_or(usize::MAX))
                .collect();
            Json(found).into_response()
        }
        Err(e) => error_response(e),
    }
}

/// One `jobs/summary` entry.
pub(crate) fn summary_entry(j: &JobView) -> Value {
    json!({
        "name": j.spec.name,
        "status": j.status(),
        "state": j.run_state(),
        "schedule": j.chronos.schedule.clone().unwrap_or_default(),
        "parents": j.spec.parents,
        "disabled": j.spec.disabled,
    })
}

async fn summary(State(m): State<Chronos>) -> Response {
    let h = &m.jobs;
    match h.list().await {
        Ok(v) => {
            Json(json!({"jobs": v.iter().map(summary_entry).collect::<Vec<_>>()})).into_response()
        }
        Err(e) => error_response(e),
    }
}

async fn job(State(m): State<Chronos>, Path(name): Path<String>) -> Response {
    let h = &m.jobs;
    match h.get(&name).await {
        Ok(j) => Json(j.chronos).into_response(),
        Err(e) => error_response(e),
    }
}

/// Parse a Chronos job body, naming what is wrong.
pub(crate) fn parse_job(body: &[u8]) -> Result<ChronosJob, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid job JSON: {e}"))
}

/// Chronos 2 (the unprefixed `/scheduler` API) accepted names with spaces; Chronos 3
/// (`/v1/scheduler`) refuses them. Each prefix keeps its own rule.
fn legacy_names(uri: &Uri) -> bool {
    !uri.path().starts_with("/v1/")
}

async fn create(m: &Chronos, uri: &Uri, body: &[u8], kind: CreateKind) -> Response {
    let h = &m.jobs;
    let job = match parse_job(body) {
        Ok(j) => j,
        Err(msg) => return chronos_error(StatusCode::BAD_REQUEST, msg),
    };
    no_content(h.put_with(job, kind, legacy_names(uri)).await)
}

async fn create_scheduled(State(m): State<Chronos>, uri: Uri, body: Bytes) -> Response {
    create(&m, &uri, &body, CreateKind::Scheduled).await
}

async fn create_dependent(State(m): State<Chronos>, uri: Uri, body: Bytes) -> Response {
    create(&m, &uri, &body, CreateKind::Dependent).await
}

async fn run(State(m): State<Chronos>, Path(name): Path<String>) -> Response {
    no_content(m.jobs.run_now(&name).await)
}

async fn remove(State(m): State<Chronos>, Path(name): Path<String>) -> Response {
    no_content(m.jobs.remove(&name).await)
}

async fn kill(State(m): State<Chronos>, Path(name): Path<String>) -> Response {
    no_content(m.jobs.kill(&name).await)
}

async fn enable(State(m): State<Chronos>, Path(name): Path<String>) -> Response {
    no_content(m.jobs.set_disabled(&name, false).await)
}

async fn disable(State(m): State<Chronos>, Path(name): Path<String>) -> Response {
    no_content(m.jobs.set_disabled(&name, true).await)
}

async fn success(State(m): State<Chronos>, Path(name): Path<String>) -> Response {
    let h = &m.jobs;
    match h.mark_success(&name).await {
        Ok(()) => text(format!("marked job {name} as successful: true")),
        Err(e) => error_response(e),
    }
}

async fn stat(State(m): State<Chronos>, Path(name): Path<String>) -> Response {
    let h = &m.jobs;
    match h.get(&name).await {
        Ok(j) => Json(crate::view::job_stat(&j)).into_response(),
        Err(e) => error_response(e),
    }
}

async fn stats(State(m): State<Chronos>, Path(percentile): Path<String>) -> Response {
    let h = &m.jobs;
    match h.list().await {
        Ok(v) => match crate::view::percentile_stats(&v, &percentile) {
            Some(out) => Json(out).into_response(),
            None => chronos_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown statistic '{percentile}': use 99thPercentile, 98thPercentile, \
                     95thPercentile, 75thPercentile, median or mean"
                ),
            ),
        },
        Err(e) => error_response(e),
    }
}

async fn graph_csv(State(m): State<Chronos>) -> Response {
    graph(&m, false).await
}

async fn graph_dot(State(m): State<Chronos>) -> Response {
    graph(&m, true).await
}

async fn graph(m: &Chronos, dot: bool) -> Response {
    match m.jobs.graph(dot).await {
        Ok(g) => text(non_empty(g)),
        Err(e) => error_response(e),
    }
}

/// Chronos answers the CSV graph of no jobs with an empty 200 body, which its own Python client
/// reports as a failed request; an empty CSV here is one empty line, still 200 `text/plain`.
fn non_empty(graph: String) -> String {
    if graph.is_empty() {
        "\n".to_string()
    } else {
        graph
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, command: &str) -> ChronosJob {
        parse_job(
            json!({"name": name, "command": command, "schedule": "R//PT1S"})
                .to_string()
                .as_bytes(),
        )
        .expect("valid json")
    }

    #[test]
    fn search_is_case_insensitive_and_any_ors_name_and_command() {
        let j = job("ETL-daily", "python etl.py");
        let q = |name: Option<&str>, command: Option<&str>, any: Option<&str>| SearchQuery {
            name: name.map(str::to_string),
            command: command.map(str::to_string),
            any: any.map(str::to_string),
            ..SearchQuery::default()
        };
        assert!(matches(&q(Some("etl"), None, None), &j));
        assert!(!matches(&q(Some("report"), None, None), &j));
        assert!(matches(&q(None, Some("PYTHON"), None), &j));
        assert!(matches(&q(None, None, Some("etl.py")), &j));
        assert!(matches(&q(None, None, Some("daily")), &j));
        assert!(!matches(&q(None, None, Some("nope")), &j));
    }

    #[test]
    fn bad_json_names_the_problem() {
        let e = parse_job(b"{\"name\": 3}").expect_err("invalid");
        assert!(e.starts_with("invalid job JSON"), "{e}");
    }

    #[test]
    fn errors_have_the_chronos_shape() {
        let r = error_response(JobsError::NotFound("x".into()));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = chronos_error(StatusCode::BAD_REQUEST, "m");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
