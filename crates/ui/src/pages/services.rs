//! Services: the list (health bars, filters and pages on the server) and one app's page (tasks,
//! versions, deployment progress, the reserve-vs-use gap and usage chart, and the scale,
//! restart and rollback forms, which call the public `/v2` API).

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use meseta_history::{Entity, Series};
use serde::Deserialize;
use serde_json::Value;

use super::chart;
use super::{app_href, health_bar, layout, n, not_found, num, pager, qenc, respond, s, PAGE_SIZE};
use crate::Page;

/// Filters of the list.
#[derive(Deserialize, Default)]
pub(crate) struct ListParams {
    /// Substring of the app id.
    q: Option<String>,
    /// `all`, `unhealthy`, `deploying`, `waiting`, `suspended`, `healthy`.
    status: Option<String>,
    page: Option<usize>,
}

const STATUSES: [(&str, &str); 6] = [
    ("all", "All"),
    ("unhealthy", "Unhealthy"),
    ("waiting", "Below instance count"),
    ("deploying", "Deploying"),
    ("suspended", "Suspended"),
    ("healthy", "At count and healthy"),
];

fn matches_status(a: &Value, status: &str) -> bool {
    let deploying = a
        .get("deployments")
        .and_then(Value::as_array)
        .is_some_and(|d| !d.is_empty());
    match status {
        "unhealthy" => n(a, "tasksUnhealthy") > 0.0,
        "waiting" => n(a, "tasksRunning") < n(a, "instances"),
        "deploying" => deploying,
        "suspended" => n(a, "instances") == 0.0,
        "healthy" => n(a, "tasksUnhealthy") == 0.0 && n(a, "tasksRunning") >= n(a, "instances"),
        _ => true,
    }
}

/// `GET /ui/services`.
pub(crate) async fn list(ui: Page, Query(p): Query<ListParams>) -> Response {
    let apps = match ui.source.apps_summary().await {
        Ok(v) => v,
        Err(e) => return super::unavailable("/ui/services", &e),
    };
    let all = apps.get("apps").and_then(Value::as_array);
    respond(
        StatusCode::OK,
        layout(
            "Services",
            "/ui/services",
            render_list(all.map_or(&[], Vec::as_slice), &p),
        ),
    )
}

/// The list's body (pure, for tests and the benchmark).
pub(crate) fn render_list(all: &[Value], p: &ListParams) -> Markup {
    let q = p.q.clone().unwrap_or_default();
    let status = p.status.clone().unwrap_or_else(|| "all".into());
    let mut rows: Vec<&Value> = all
        .iter()
        .filter(|a| q.is_empty() || s(a, "id").contains(q.as_str()))
        .filter(|a| matches_status(a, &status))
        .collect();
    rows.sort_by(|a, b| s(a, "id").cmp(s(b, "id")));
    let total = rows.len();
    let page = p.page.unwrap_or(0).min(total.saturating_sub(1) / PAGE_SIZE);
    let base = format!("q={}&status={}", qenc(&q), qenc(&status));
    html! {
        form.filters method="get" action="/ui/services" role="search" {
            label for="q" { "App id contains" }
            input #q type="search" name="q" value=(q);
            label for="status" { "Status" }
            select #status name="status" {
                @for (v, label) in STATUSES {
                    option value=(v) selected[v == status] { (label) }
                }
            }
            button type="submit" { "Filter" }
        }
        div data-live="services" {
            table.list {
                caption { (total) " of " (all.len()) " services" }
                thead { tr {
                    th scope="col" { "App" } th scope="col" { "Instances" } th scope="col" { "Health" }
                    th scope="col" { "CPUs" } th scope="col" { "Memory" } th scope="col" { "Deploying" }
                } }
                tbody {
                    @for a in rows.iter().skip(page * PAGE_SIZE).take(PAGE_SIZE) {
                        tr {
                            th scope="row" { a href=(app_href(s(a, "id"))) { (s(a, "id")) } }
                            td { (n(a, "tasksRunning")) " / " (n(a, "instances")) }
                            td { (health_bar(a)) }
                            td { (num(n(a, "cpus"))) }
                            td { (super::mib(n(a, "mem"))) }
                            td { @if matches_status(a, "deploying") { "yes" } @else { "—" } }
                        }
                    }
                }
            }
            (pager("/ui/services", &base, page, total))
        }
    }
}

/// Query of an app's page.
#[derive(Deserialize, Default)]
pub(crate) struct DetailParams {
    range: Option<String>,
}

/// A form value the API refused: which field, and the API's message.
#[derive(Debug, Clone, Default)]
pub(crate) struct FormError {
    pub field: String,
    pub message: String,
    pub value: String,
}

/// `GET /ui/services/{id}`.
pub(crate) async fn detail(
    ui: Page,
    Path(id): Path<String>,
    Query(p): Query<DetailParams>,
) -> Response {
    render_detail(&ui, &id, p.range.as_deref(), None).await
}

/// An app's page, with a refused form's error when there is one.
pub(crate) async fn render_detail(
    ui: &Page,
    id: &str,
    range: Option<&str>,
    err: Option<FormError>,
) -> Response {
    let id = id.trim_start_matches('/').to_string();
    let app_path = format!("/v2/apps/{}", qenc(&id));
    let detail_path = format!("{app_path}?embed=app.tasks&embed=app.lastTaskFailure");
    let versions_path = format!("{app_path}/versions");
    let (app, versions, deployments) = tokio::join!(
        ui.source.get_opt(&detail_path),
        ui.source.get(&versions_path),
        ui.source.get("/v2/deployments"),
    );
    let app = match app {
        Ok(Some(v)) => v.get("app").cloned().unwrap_or(v),
        Ok(None) => return not_found(&format!("Service /{id}")),
        Err(e) => return super::unavailable("/ui/services", &e),
    };
    let versions = versions.ok();
    let deployments = deployments.ok();
    let range = chart::range_secs(range);
    let status = if err.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let body = html! {
        (summary(&app))
        (actions(&app, versions.as_ref(), err.as_ref()))
        (deployment_progress(&app, deployments.as_ref()))
        (gap(ui, &app, range))
        (tasks_table(&app))
        (labels_env(&app))
    };
    respond(
        status,
        layout(&format!("Service {}", s(&app, "id")), "/ui/services", body),
    )
}

fn summary(app: &Value) -> Markup {
    html! {
        section data-live="summary" aria-labelledby="sum" {
            h2 #sum { "Summary" }
            dl.kv {
                div { dt { "Instances" } dd #instances-count { (n(app, "instances")) } }
                div { dt { "Running" } dd { (n(app, "tasksRunning")) } }
                div { dt { "Healthy" } dd { (n(app, "tasksHealthy")) } }
                div { dt { "Unhealthy" } dd { (n(app, "tasksUnhealthy")) } }
                div { dt { "Staged" } dd { (n(app, "tasksStaged")) } }
                div { dt { "Per instance" } dd { (num(n(app, "cpus"))) " cpus · " (super::mib(n(app, "mem"))) } }
                div { dt { "Version" } dd { (s(app, "version")) } }
                div { dt { "Command" } dd { code { (s(app, "cmd")) } } }
            }
            (health_bar(app))
            @if let Some(f) = app.get("lastTaskFailure") {
                p.notice { "Last failure: " (s(f, "state")) " on " (s(f, "host")) ": " (s(f, "message")) }
            }
        }
    }
}

fn field_error(err: Option<&FormError>, field: &str) -> Markup {
    match err.filter(|e| e.field == field) {
        Some(e) => {
            html! { p.field-error id=(format!("{field}-error")) role="alert" { (e.message) } }
        }
        None => html! { p.field-error id=(format!("{field}-error")) role="alert" hidden {} },
    }
}

fn actions(app: &Value, versions: Option<&Value>, err: Option<&FormError>) -> Markup {
    let id = s(app, "id").trim_start_matches('/');
    let api = format!("/v2/apps/{}", qenc(id));
    let inst_value = match err.filter(|e| e.field == "instances") {
        Some(e) => e.value.clone(),
        None => num(n(app, "instances")),
    };
    let vs: Vec<&str> = versions
        .and_then(|v| v.get("versions"))
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    html! {
        section aria-labelledby="act" {
            h2 #act { "Actions" }
            div.actions {
                form method="post" action=(format!("/ui/actions/scale/{}", qenc(id)))
                    data-api-method="PUT" data-api-path=(api) data-api-body="scale" novalidate {
                    label for="instances" { "Instances" }
                    input #instances name="instances" type="number" min="0" step="1" required
                        value=(inst_value) aria-describedby="instances-error";
                    button type="submit" { "Scale" }
                    (field_error(err, "instances"))
                }
                form method="post" action=(format!("/ui/actions/restart/{}", qenc(id)))
                    data-api-method="POST" data-api-path=(format!("{api}/restart")) data-api-body="empty" {
                    button type="submit" { "Restart" }
                    (field_error(err, "restart"))
                }
                form method="post" action=(format!("/ui/actions/rollback/{}", qenc(id)))
                    data-api-method="PUT" data-api-path=(api) data-api-body="rollback" {
                    label for="version" { "Roll back to version" }
                    select #version name="version" aria-describedby="version-error" {
                        @for v in vs.iter().skip(1) { option value=(v) { (v) } }
                    }
                    button type="submit" disabled[vs.len() < 2] { "Roll back" }
                    (field_error(err, "version"))
                }
            }
        }
    }
}

fn deployment_progress(app: &Value, deployments: Option<&Value>) -> Markup {
    let id = s(app, "id");
    let mine: Vec<&Value> = deployments
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter(|d| {
                    d.get("affectedApps")
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(id)))
                })
                .collect()
        })
        .unwrap_or_default();
    html! {
        section data-live="deployments" aria-labelledby="deps" {
            h2 #deps { "Deployments" }
            @if mine.is_empty() { p { "No deployment in progress." } }
            @for d in &mine {
                @let cur = n(d, "currentStep");
                @let total = n(d, "totalSteps").max(1.0);
                p {
                    (s(d, "id")) ": step " (cur) " of " (total) " "
                    progress value=(cur) max=(total) aria-label="deployment progress" { (cur) "/" (total) }
                    @if let Some(acts) = d.get("currentActions").and_then(Value::as_array) {
                        @for a in acts { " " span.tag { (s(a, "action")) } }
                    }
                }
            }
        }
    }
}

/// What the app's tasks hold against what they use, now and over time.
fn gap(ui: &Page, app: &Value, range: i64) -> Markup {
    let id = s(app, "id");
    let name = id.trim_start_matches('/').replace('/', "_");
    let snap = ui.master.usage_snapshot();
    let mut alloc = [0.0; 4];
    let mut used = [0.0; 4];
    for t in snap.tasks.iter().filter(|t| t.name == name) {
        let u = t
            .usage
            .as_ref()
            .map(meseta_master::usage::used_amounts)
            .unwrap_or([0.0; 4]);
        super::add_into(&mut alloc, t.allocated);
        super::add_into(&mut used, u);
    }
    let now = super::dashboard::now_secs();
    let e = Entity::App(name);
    let h = ui.history.lock();
    let cpu = chart::lines(
        &h,
        &e,
        &[
            (Series::CpusAllocated, "allocated", "alloc"),
            (Series::CpusUsed, "used", "used"),
        ],
        now,
        range,
    );
    let mem = chart::lines(
        &h,
        &e,
        &[
            (Series::MemAllocated, "allocated", "alloc"),
            (Series::MemUsed, "used", "used"),
        ],
        now,
        range,
    );
    drop(h);
    let pct = |i: usize| {
        if alloc[i] > 0.0 {
            format!("{:.0}%", used[i] / alloc[i] * 100.0)
        } else {
            "—".into()
        }
    };
    html! {
        section data-live="gap" aria-labelledby="gap" {
            h2 #gap { "Reserved vs used" }
            table.gap {
                thead { tr { th scope="col" { "Resource" } th scope="col" { "Reserved" } th scope="col" { "Used" } th scope="col" { "Used of reserved" } th scope="col" { "Idle reservation" } } }
                tbody {
                    tr { th scope="row" { "CPUs" } td #cpu-reserved { (num(alloc[0])) } td #cpu-used { (num(used[0])) } td { (pct(0)) } td { (num((alloc[0] - used[0]).max(0.0))) } }
                    tr { th scope="row" { "Memory" } td { (super::mib(alloc[1])) } td { (super::mib(used[1])) } td { (pct(1)) } td { (super::mib((alloc[1] - used[1]).max(0.0))) } }
                    tr { th scope="row" { "Disk" } td { (super::mib(alloc[2])) } td { (super::mib(used[2])) } td { (pct(2)) } td { (super::mib((alloc[2] - used[2]).max(0.0))) } }
                }
            }
            (chart::range_links(&app_href(id), range))
            div.charts {
                (chart::chart("CPU", "cpus", &cpu, now - range, now))
                (chart::chart("Memory", "MiB", &mem, now - range, now))
            }
        }
    }
}

fn tasks_table(app: &Value) -> Markup {
    let tasks = app
        .get("tasks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    html! {
        section data-live="tasks" aria-labelledby="tasks" {
            h2 #tasks { "Tasks (" (tasks.len()) ")" }
            table.list {
                thead { tr { th scope="col" { "Task" } th scope="col" { "State" } th scope="col" { "Host" } th scope="col" { "Ports" } th scope="col" { "Health" } th scope="col" { "Version" } } }
                tbody {
                    @for t in &tasks {
                        tr {
                            th scope="row" { a href=(format!("/ui/tasks/{}", qenc(s(t, "id")))) { (s(t, "id")) } }
                            td { (s(t, "state")) }
                            td { (s(t, "host")) }
                            td { (t.get("ports").map(|p| p.to_string()).unwrap_or_default()) }
                            td { (health_of(t)) }
                            td { (s(t, "version")) }
                        }
                    }
                }
            }
        }
    }
}

fn health_of(t: &Value) -> &'static str {
    match t.get("healthCheckResults").and_then(Value::as_array) {
        Some(r) if !r.is_empty() => {
            if r.iter()
                .all(|c| c.get("alive").and_then(Value::as_bool) == Some(true))
            {
                "healthy"
            } else {
                "unhealthy"
            }
        }
        _ => "—",
    }
}

fn labels_env(app: &Value) -> Markup {
    let obj = |k: &str| {
        app.get(k)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let labels = obj("labels");
    let env = obj("env");
    html! {
        section aria-labelledby="labels" {
            h2 #labels { "Labels and environment" }
            dl.kv {
                @for (k, v) in &labels { div { dt { (k) } dd.label-value { (v.as_str().unwrap_or(&v.to_string())) } } }
                @for (k, v) in &env { div { dt { "env " (k) } dd { (v.as_str().unwrap_or(&v.to_string())) } } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(id: &str, instances: u64, running: u64, unhealthy: u64) -> Value {
        json!({"id": id, "instances": instances, "tasksRunning": running, "tasksHealthy": 0,
               "tasksUnhealthy": unhealthy, "tasksStaged": 0, "cpus": 0.1, "mem": 32,
               "deployments": []})
    }

    #[test]
    fn the_list_escapes_ids_filters_and_pages_on_the_server() {
        let mut apps: Vec<Value> = (0..120)
            .map(|i| app(&format!("/svc-{i:03}"), 2, 2, 0))
            .collect();
        apps.push(app("/<script>alert(1)</script>", 1, 0, 0));
        apps.push(app("/sick", 3, 3, 2));
        let all = render_list(&apps, &ListParams::default()).into_string();
        assert!(all.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!all.contains("<script>alert(1)"));
        assert!(all.contains("Page 1 of 3 (122 in all)"), "{all}");
        let sick = render_list(
            &apps,
            &ListParams {
                status: Some("unhealthy".into()),
                ..Default::default()
            },
        )
        .into_string();
        assert!(sick.contains("/sick") && !sick.contains("/svc-001"));
        let found = render_list(
            &apps,
            &ListParams {
                q: Some("svc-11".into()),
                page: Some(7),
                ..Default::default()
            },
        )
        .into_string();
        assert!(
            found.contains("/svc-119") && found.contains("Page 1 of 1 (10 in all)"),
            "{found}"
        );
    }
}
