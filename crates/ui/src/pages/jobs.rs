//! Jobs: the list (success and failure counts, duration percentiles, filters and pages on the
//! server, the dependency graph as SVG) and one job's page (its definition and run history).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::{layout, n, not_found, num, pager, qenc, respond, s, PAGE_SIZE};
use crate::Page;

/// Whether a job's last run failed (errors since the last success).
pub(crate) fn is_failing(j: &Value) -> bool {
    n(j, "errorsSinceLastSuccess") > 0.0
}

/// Filters of the list.
#[derive(Deserialize, Default)]
pub(crate) struct ListParams {
    q: Option<String>,
    /// `all`, `failing`, `ok`, `disabled`.
    status: Option<String>,
    page: Option<usize>,
}

const PERCENTILES: [(&str, &str); 4] = [
    ("median", "p50"),
    ("75thPercentile", "p75"),
    ("95thPercentile", "p95"),
    ("99thPercentile", "p99"),
];

/// `GET /ui/jobs`.
pub(crate) async fn list(ui: Page, Query(p): Query<ListParams>) -> Response {
    let (jobs, p50, p75, p95, p99) = tokio::join!(
        ui.source.get("/scheduler/jobs"),
        ui.source.get("/scheduler/stats/median"),
        ui.source.get("/scheduler/stats/75thPercentile"),
        ui.source.get("/scheduler/stats/95thPercentile"),
        ui.source.get("/scheduler/stats/99thPercentile"),
    );
    let jobs = match jobs {
        Ok(v) => v.as_array().cloned().unwrap_or_default(),
        Err(e) => return super::unavailable("/ui/jobs", &e),
    };
    let mut pct: HashMap<String, [f64; 4]> = HashMap::new();
    for (i, st) in [p50, p75, p95, p99].into_iter().enumerate() {
        for row in st
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
        {
            pct.entry(s(&row, "jobNameLabel").to_string()).or_default()[i] = n(&row, "time");
        }
    }
    respond(
        StatusCode::OK,
        layout("Jobs", "/ui/jobs", render_list(&jobs, &pct, &p)),
    )
}

fn matches(j: &Value, status: &str) -> bool {
    let disabled = j.get("disabled").and_then(Value::as_bool) == Some(true);
    match status {
        "failing" => is_failing(j),
        "ok" => !is_failing(j) && !disabled,
        "disabled" => disabled,
        _ => true,
    }
}

fn render_list(jobs: &[Value], pct: &HashMap<String, [f64; 4]>, p: &ListParams) -> Markup {
    let q = p.q.clone().unwrap_or_default();
    let status = p.status.clone().unwrap_or_else(|| "all".into());
    let mut rows: Vec<&Value> = jobs
        .iter()
        .filter(|j| q.is_empty() || s(j, "name").contains(q.as_str()))
        .filter(|j| matches(j, &status))
        .collect();
    // Failing jobs first, then by name.
    rows.sort_by(|a, b| {
        is_failing(b)
            .cmp(&is_failing(a))
            .then(s(a, "name").cmp(s(b, "name")))
    });
    let total = rows.len();
    let page = p.page.unwrap_or(0).min(total.saturating_sub(1) / PAGE_SIZE);
    let base = format!("q={}&status={}", qenc(&q), qenc(&status));
    html! {
        form.filters method="get" action="/ui/jobs" role="search" {
            label for="q" { "Job name contains" }
            input #q type="search" name="q" value=(q);
            label for="status" { "Status" }
            select #status name="status" {
                @for (v, l) in [("all", "All"), ("failing", "Failing"), ("ok", "Succeeding"), ("disabled", "Disabled")] {
                    option value=(v) selected[v == status] { (l) }
                }
            }
            button type="submit" { "Filter" }
        }
        div data-live="jobs" {
            table.list {
                caption { (total) " of " (jobs.len()) " jobs" }
                thead { tr {
                    th scope="col" { "Job" } th scope="col" { "Schedule / parents" }
                    th scope="col" { "Successes" } th scope="col" { "Failures" } th scope="col" { "Last" }
                    @for (_, l) in PERCENTILES { th scope="col" { "Duration " (l) " (s)" } }
                } }
                tbody {
                    @for j in rows.iter().skip(page * PAGE_SIZE).take(PAGE_SIZE) {
                        @let ps = pct.get(s(j, "name")).copied().unwrap_or_default();
                        tr {
                            th scope="row" { a href=(format!("/ui/jobs/{}", qenc(s(j, "name")))) { (s(j, "name")) } }
                            td { (schedule(j)) }
                            td { (n(j, "successCount")) }
                            td { @if is_failing(j) { strong.bad { (n(j, "errorCount")) } } @else { (n(j, "errorCount")) } }
                            td { (last_outcome(j)) }
                            @for v in ps { td { (num(v)) } }
                        }
                    }
                }
            }
            (pager("/ui/jobs", &base, page, total))
        }
        section aria-labelledby="graph" {
            h2 #graph { "Dependencies" }
            (graph(jobs))
        }
    }
}

fn schedule(j: &Value) -> String {
    match j.get("parents").and_then(Value::as_array) {
        Some(p) if !p.is_empty() => format!(
            "after {}",
            p.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => s(j, "schedule").to_string(),
    }
}

fn last_outcome(j: &Value) -> String {
    let (ok, err) = (s(j, "lastSuccess"), s(j, "lastError"));
    match (ok.is_empty(), err.is_empty()) {
        (true, true) => "never ran".into(),
        (false, true) => format!("success {ok}"),
        (true, false) => format!("failure {err}"),
        (false, false) if err > ok => format!("failure {err}"),
        _ => format!("success {ok}"),
    }
}

/// The dependency graph: jobs with parents or children, in columns by depth, edges as lines.
fn graph(jobs: &[Value]) -> Markup {
    let parents: BTreeMap<&str, Vec<&str>> = jobs
        .iter()
        .map(|j| {
            let ps = j
                .get("parents")
                .and_then(Value::as_array)
                .map(|p| p.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            (s(j, "name"), ps)
        })
        .collect();
    let has_child: std::collections::HashSet<&str> = parents.values().flatten().copied().collect();
    let nodes: Vec<&str> = parents
        .iter()
        .filter(|(k, p)| !p.is_empty() || has_child.contains(*k))
        .map(|(k, _)| *k)
        .take(200)
        .collect();
    if nodes.is_empty() {
        return html! { p { "No job depends on another." } };
    }
    let mut depth: HashMap<&str, usize> = HashMap::new();
    for _ in 0..nodes.len() {
        for k in &nodes {
            let d = parents
                .get(k)
                .map(|ps| {
                    ps.iter()
                        .map(|p| depth.get(p).copied().unwrap_or(0) + 1)
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0)
                .min(nodes.len());
            depth.insert(k, d);
        }
    }
    let mut rows_at: HashMap<usize, usize> = HashMap::new();
    let mut pos: HashMap<&str, (f64, f64)> = HashMap::new();
    for k in &nodes {
        let d = depth.get(k).copied().unwrap_or(0);
        let r = rows_at.entry(d).or_default();
        pos.insert(k, (10.0 + d as f64 * 180.0, 20.0 + *r as f64 * 34.0));
        *r += 1;
    }
    let w = 200.0 + depth.values().max().copied().unwrap_or(0) as f64 * 180.0;
    let h = 40.0 + rows_at.values().max().copied().unwrap_or(1) as f64 * 34.0;
    let failing: std::collections::HashSet<&str> = jobs
        .iter()
        .filter(|j| is_failing(j))
        .map(|j| s(j, "name"))
        .collect();
    html! {
        svg.graph viewBox=(format!("0 0 {w} {h}")) width=(w) height=(h) role="img" {
            title { "Job dependency graph" }
            desc { (nodes.len()) " jobs in dependency chains" }
            @for k in &nodes {
                @for p in parents.get(k).into_iter().flatten() {
                    @if let (Some(a), Some(b)) = (pos.get(p), pos.get(k)) {
                        line.edge x1=(a.0 + 160.0) y1=(a.1) x2=(b.0) y2=(b.1) {}
                    }
                }
            }
            @for k in &nodes {
                @let (x, y) = pos[k];
                a href=(format!("/ui/jobs/{}", qenc(k))) {
                    rect class=(if failing.contains(k) { "node bad" } else { "node" }) x=(x) y=(y - 12.0) width="160" height="24" rx="4" {}
                    text x=(x + 6.0) y=(y + 4.0) { (k) }
                }
            }
        }
    }
}

/// `GET /ui/jobs/{name}`.
pub(crate) async fn detail(ui: Page, Path(name): Path<String>) -> Response {
    let stat_path = format!("/scheduler/job/stat/{}", qenc(&name));
    let (jobs, stat) = tokio::join!(ui.source.get("/scheduler/jobs"), ui.source.get(&stat_path));
    let jobs = match jobs {
        Ok(v) => v.as_array().cloned().unwrap_or_default(),
        Err(e) => return super::unavailable("/ui/jobs", &e),
    };
    let Some(job) = jobs.iter().find(|j| s(j, "name") == name) else {
        return not_found(&format!("Job {name}"));
    };
    let stat = stat.unwrap_or(Value::Null);
    let hist = stat.get("histogram").cloned().unwrap_or(Value::Null);
    let runs = stat
        .get("taskStatHistory")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let body = html! {
        section data-live="job" aria-labelledby="def" {
            h2 #def { "Definition" }
            dl.kv {
                div { dt { "Command" } dd { code { (s(job, "command")) } } }
                div { dt { "Schedule" } dd { (schedule(job)) } }
                div { dt { "Owner" } dd { (s(job, "owner")) } }
                div { dt { "Successes" } dd { (n(job, "successCount")) } }
                div { dt { "Failures" } dd { (n(job, "errorCount")) } }
                div { dt { "Last" } dd { (last_outcome(job)) } }
                @for (k, l) in PERCENTILES { div { dt { "Duration " (l) } dd { (num(n(&hist, k))) " s" } } }
            }
        }
        section data-live="runs" aria-labelledby="runs" {
            h2 #runs { "Run history (" (runs.len()) ")" }
            table.list {
                thead { tr { th scope="col" { "Task" } th scope="col" { "Status" } th scope="col" { "Started" } th scope="col" { "Ended" } th scope="col" { "Duration" } th scope="col" { "Exit" } } }
                tbody {
                    @for r in runs.iter().take(200) {
                        tr {
                            td { (s(r, "taskId")) }
                            td { (s(r, "status")) }
                            td { (s(r, "startTime")) }
                            td { (s(r, "endTime")) }
                            td { (s(r, "duration")) }
                            td { (r.get("exitCode").map(|c| c.to_string()).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        layout(&format!("Job {name}"), "/ui/jobs", body),
    )
}
