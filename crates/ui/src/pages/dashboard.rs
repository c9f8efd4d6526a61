//! The dashboard: cpu, memory, disk and gpu allocated vs used vs total (now and over time),
//! tasks by state, unhealthy services and failing jobs first, and waiting instances with the
//! reason they wait.

use std::collections::BTreeMap;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use meseta_history::{Entity, Series};
use meseta_master::usage::used_amounts;
use serde::Deserialize;
use serde_json::Value;

use super::chart::{self, Line};
use super::{app_href, health_bar, layout, n, respond, s, usage_bar};
use crate::Page;

/// Query of the dashboard.
#[derive(Deserialize, Default)]
pub(crate) struct Params {
    range: Option<String>,
}

/// `GET /ui`.
pub(crate) async fn page(ui: Page, Query(p): Query<Params>) -> Response {
    let (apps, jobs, queue) = tokio::join!(
        ui.source.apps_summary(),
        ui.source.get("/scheduler/jobs"),
        ui.source.get("/v2/queue"),
    );
    let range = chart::range_secs(p.range.as_deref());
    let body = html! {
        (resources(&ui))
        (charts(&ui, range))
        div.columns data-live="attention" {
            (attention_services(apps.as_deref().ok()))
            (attention_jobs(jobs.as_ref().ok()))
        }
        (waiting(queue.as_ref().ok()))
    };
    respond(StatusCode::OK, layout("Dashboard", "/ui", body))
}

/// Bars of the four resources and the task counts, from the master's snapshot.
fn resources(ui: &Page) -> Markup {
    let snap = ui.master.usage_snapshot();
    let mut total = [0.0; 4];
    let mut alloc = [0.0; 4];
    let mut used = [0.0; 4];
    for a in &snap.agents {
        super::add_into(&mut total, a.total);
        super::add_into(&mut alloc, a.allocated);
    }
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &snap.tasks {
        *states.entry(t.state.as_str()).or_default() += 1;
        if let Some(u) = &t.usage {
            super::add_into(&mut used, used_amounts(u));
        }
    }
    let active = snap.agents.iter().filter(|a| a.active).count();
    html! {
        section aria-labelledby="now" data-live="now" {
            h2 #now { "Now" }
            p { (active) " of " (snap.agents.len()) " nodes connected · " (snap.tasks.len()) " live tasks" }
            div.meters {
                (usage_bar("CPU", 0, total[0], alloc[0], used[0]))
                (usage_bar("Memory", 1, total[1], alloc[1], used[1]))
                (usage_bar("Disk", 2, total[2], alloc[2], used[2]))
                (usage_bar("GPU", 3, total[3], alloc[3], used[3]))
            }
            h3 { "Tasks by state" }
            @if states.is_empty() { p #task-states { "No live tasks." } } @else {
                dl.states #task-states {
                    @for (state, count) in &states {
                        div { dt { (state) } dd data-state=(state) { (count) } }
                    }
                }
            }
        }
    }
}

fn charts(ui: &Page, range: i64) -> Markup {
    let now = now_secs();
    let h = ui.history.lock();
    let c = |wanted: &[(Series, &'static str, &'static str)]| -> Vec<Line<'static>> {
        chart::lines(&h, &Entity::Cluster, wanted, now, range)
    };
    let cpu = c(&[
        (Series::CpusTotal, "total", "total"),
        (Series::CpusAllocated, "allocated", "alloc"),
        (Series::CpusUsed, "used", "used"),
    ]);
    let mem = c(&[
        (Series::MemTotal, "total", "total"),
        (Series::MemAllocated, "allocated", "alloc"),
        (Series::MemUsed, "used", "used"),
    ]);
    let disk = c(&[
        (Series::DiskTotal, "total", "total"),
        (Series::DiskAllocated, "allocated", "alloc"),
        (Series::DiskUsed, "used", "used"),
    ]);
    let gpu = c(&[
        (Series::GpusTotal, "total", "total"),
        (Series::GpusAllocated, "allocated", "alloc"),
    ]);
    drop(h);
    html! {
        section aria-labelledby="over-time" data-live="charts" {
            h2 #over-time { "Over time" }
            (chart::range_links("/ui", range))
            div.charts {
                (chart::chart("CPU", "cpus", &cpu, now - range, now))
                (chart::chart("Memory", "MiB", &mem, now - range, now))
                (chart::chart("Disk", "MiB", &disk, now - range, now))
                (chart::chart("GPU", "gpus", &gpu, now - range, now))
            }
        }
    }
}

/// Apps with unhealthy or missing instances, worst first.
fn attention_services(apps: Option<&Value>) -> Markup {
    let Some(list) = apps.and_then(|v| v.get("apps")).and_then(Value::as_array) else {
        return html! { section { h2 { "Services needing attention" } p.notice { "Services unavailable." } } };
    };
    let mut bad: Vec<&Value> = list
        .iter()
        .filter(|a| n(a, "tasksUnhealthy") > 0.0 || n(a, "tasksRunning") < n(a, "instances"))
        .collect();
    bad.sort_by(|a, b| {
        let gap = |a: &Value| n(a, "tasksUnhealthy") + n(a, "instances") - n(a, "tasksRunning");
        gap(b).total_cmp(&gap(a))
    });
    html! {
        section aria-labelledby="svc-attn" {
            h2 #svc-attn { "Services needing attention" }
            @if bad.is_empty() { p { "All " (list.len()) " services are at their instance count and healthy." } } @else {
                ul.attention {
                    @for a in bad.iter().take(20) {
                        li {
                            a href=(app_href(s(a, "id"))) { (s(a, "id")) }
                            " " (n(a, "tasksRunning")) "/" (n(a, "instances")) " running"
                            @if n(a, "tasksUnhealthy") > 0.0 { ", " strong.bad { (n(a, "tasksUnhealthy")) " unhealthy" } }
                            (health_bar(a))
                        }
                    }
                }
            }
        }
    }
}

/// Jobs whose last run failed.
fn attention_jobs(jobs: Option<&Value>) -> Markup {
    let Some(list) = jobs.and_then(Value::as_array) else {
        return html! { section { h2 { "Failing jobs" } p.notice { "Jobs unavailable." } } };
    };
    let failing: Vec<&Value> = list.iter().filter(|j| super::jobs::is_failing(j)).collect();
    html! {
        section aria-labelledby="job-attn" {
            h2 #job-attn { "Failing jobs" }
            @if failing.is_empty() { p { "No failing jobs (" (list.len()) " in all)." } } @else {
                ul.attention {
                    @for j in failing.iter().take(20) {
                        li {
                            a href=(format!("/ui/jobs/{}", super::qenc(s(j, "name")))) { (s(j, "name")) }
                            " " strong.bad { (n(j, "errorsSinceLastSuccess")) " failures since last success" }
                            " (last error " (s(j, "lastError")) ")"
                        }
                    }
                }
            }
        }
    }
}

/// Instances waiting for resources, and why.
fn waiting(queue: Option<&Value>) -> Markup {
    let items = queue
        .and_then(|q| q.get("queue"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    html! {
        section aria-labelledby="waiting" data-live="waiting" {
            h2 #waiting { "Waiting instances" }
            @if items.is_empty() { p { "Nothing is waiting for resources." } } @else {
                table {
                    thead { tr { th scope="col" { "App" } th scope="col" { "Waiting" } th scope="col" { "Why" } } }
                    tbody {
                        @for q in &items {
                            @let app = q.get("app").unwrap_or(&Value::Null);
                            tr {
                                td { a href=(app_href(s(app, "id"))) { (s(app, "id")) } }
                                td { (n(q, "count")) }
                                td { (why(q)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The reason an app's instances wait: backoff, or the offers' rejection summary.
fn why(q: &Value) -> String {
    if q.pointer("/delay/overdue").and_then(Value::as_bool) == Some(false) {
        return format!(
            "backing off ({} s left)",
            q.pointer("/delay/timeLeftSeconds")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        );
    }
    let reasons: Vec<String> = q
        .pointer("/processedOffersSummary/rejectSummaryLastOffers")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter(|r| n(r, "declined") > 0.0)
                .map(|r| {
                    format!(
                        "{}: {} of {} offers declined",
                        s(r, "reason"),
                        n(r, "declined"),
                        n(r, "processed")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if reasons.is_empty() {
        "waiting for an offer".to_string()
    } else {
        reasons.join("; ")
    }
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
