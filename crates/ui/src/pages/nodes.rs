//! Nodes: the list (resources allocated vs used vs total, attributes, maintenance state; filters
//! and pages on the server) and one node's page (its tasks, usage chart, and the maintenance
//! drain / down / up forms, which call the public maintenance endpoints).

use std::collections::HashMap;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use meseta_history::{Entity, Series};
use meseta_master::usage::{used_amounts, AgentUsage, TaskUsageRow};
use serde::Deserialize;
use serde_json::Value;

use super::{chart, layout, not_found, num, pager, qenc, respond, s, usage_bar, PAGE_SIZE};
use crate::Page;

/// Filters of the list.
#[derive(Deserialize, Default)]
pub(crate) struct ListParams {
    q: Option<String>,
    page: Option<usize>,
}

/// Hostnames draining and down, from `/maintenance/status`.
fn maintenance(v: Option<&Value>) -> HashMap<String, &'static str> {
    let mut out = HashMap::new();
    let Some(v) = v else { return out };
    for m in v
        .get("draining_machines")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let h = m
            .pointer("/id/hostname")
            .and_then(Value::as_str)
            .unwrap_or("");
        out.insert(h.to_lowercase(), "draining");
    }
    for m in v
        .get("down_machines")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.insert(s(m, "hostname").to_lowercase(), "down");
    }
    out
}

/// Attributes of every agent by id, from `/master/slaves`.
fn attributes(v: Option<&Value>) -> HashMap<String, Vec<(String, String)>> {
    let mut out = HashMap::new();
    for sl in v
        .and_then(|v| v.get("slaves"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let attrs = sl
            .get("attributes")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(s(sl, "id").to_string(), attrs);
    }
    out
}

fn used_by_agent(tasks: &[TaskUsageRow]) -> HashMap<&str, ([f64; 4], usize)> {
    let mut out: HashMap<&str, ([f64; 4], usize)> = HashMap::new();
    for t in tasks {
        let e = out.entry(t.agent_id.as_str()).or_default();
        e.1 += 1;
        if let Some(u) = &t.usage {
            super::add_into(&mut e.0, used_amounts(u));
        }
    }
    out
}

/// `GET /ui/nodes`.
pub(crate) async fn list(ui: Page, Query(p): Query<ListParams>) -> Response {
    let (slaves, maint) = tokio::join!(
        ui.source.get("/master/slaves"),
        ui.source.get("/maintenance/status")
    );
    let attrs = attributes(slaves.as_ref().ok());
    let maint = maintenance(maint.as_ref().ok());
    let snap = ui.master.usage_snapshot();
    let used = used_by_agent(&snap.tasks);
    let q = p.q.clone().unwrap_or_default();
    let mut rows: Vec<&AgentUsage> = snap
        .agents
        .iter()
        .filter(|a| q.is_empty() || a.hostname.contains(q.as_str()) || a.id.contains(q.as_str()))
        .collect();
    rows.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
    let total = rows.len();
    let page = p.page.unwrap_or(0).min(total.saturating_sub(1) / PAGE_SIZE);
    let body = html! {
        form.filters method="get" action="/ui/nodes" role="search" {
            label for="q" { "Host or id contains" }
            input #q type="search" name="q" value=(q);
            button type="submit" { "Filter" }
        }
        div data-live="nodes" {
            table.list {
                caption { (total) " nodes" }
                thead { tr {
                    th scope="col" { "Host" } th scope="col" { "State" } th scope="col" { "Tasks" }
                    th scope="col" { "CPUs used / alloc / total" } th scope="col" { "Memory used / alloc / total" }
                    th scope="col" { "Attributes" }
                } }
                tbody {
                    @for a in rows.iter().skip(page * PAGE_SIZE).take(PAGE_SIZE) {
                        @let (u, n) = used.get(a.id.as_str()).copied().unwrap_or_default();
                        tr {
                            th scope="row" { a href=(format!("/ui/nodes/{}", qenc(&a.id))) { (a.hostname) } }
                            td { (state(a, &maint)) }
                            td { (n) }
                            td { (num(u[0])) " / " (num(a.allocated[0])) " / " (num(a.total[0])) }
                            td { (super::mib(u[1])) " / " (super::mib(a.allocated[1])) " / " (super::mib(a.total[1])) }
                            td { @for (k, v) in attrs.get(&a.id).into_iter().flatten() { span.tag { (k) ":" (v) } " " } }
                        }
                    }
                }
            }
            (pager("/ui/nodes", &format!("q={}", qenc(&q)), page, total))
        }
    };
    respond(StatusCode::OK, layout("Nodes", "/ui/nodes", body))
}

fn state(a: &AgentUsage, maint: &HashMap<String, &'static str>) -> &'static str {
    match maint.get(&a.hostname.to_lowercase()) {
        Some(m) => m,
        None if a.active => "connected",
        None => "disconnected",
    }
}

/// Query of a node's page.
#[derive(Deserialize, Default)]
pub(crate) struct DetailParams {
    range: Option<String>,
}

/// `GET /ui/nodes/{id}`.
pub(crate) async fn detail(
    ui: Page,
    Path(id): Path<String>,
    Query(p): Query<DetailParams>,
) -> Response {
    let (slaves, maint) = tokio::join!(
        ui.source.get("/master/slaves"),
        ui.source.get("/maintenance/status")
    );
    let snap = ui.master.usage_snapshot();
    let Some(agent) = snap.agents.iter().find(|a| a.id == id) else {
        return not_found(&format!("Node {id}"));
    };
    let attrs = attributes(slaves.as_ref().ok());
    let maint = maintenance(maint.as_ref().ok());
    let tasks: Vec<&TaskUsageRow> = snap.tasks.iter().filter(|t| t.agent_id == id).collect();
    let mut used = [0.0; 4];
    for t in &tasks {
        if let Some(u) = &t.usage {
            super::add_into(&mut used, used_amounts(u));
        }
    }
    let range = chart::range_secs(p.range.as_deref());
    let now = super::dashboard::now_secs();
    let e = Entity::Node(id.clone());
    let h = ui.history.lock();
    let cpu = chart::lines(
        &h,
        &e,
        &[
            (Series::CpusTotal, "total", "total"),
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
            (Series::MemTotal, "total", "total"),
            (Series::MemAllocated, "allocated", "alloc"),
            (Series::MemUsed, "used", "used"),
        ],
        now,
        range,
    );
    drop(h);
    let body = html! {
        section data-live="node" aria-labelledby="res" {
            h2 #res { "Resources" }
            p { "Host " strong { (agent.hostname) } " · id " code { (agent.id) } " · " (state(agent, &maint)) }
            div.meters {
                (usage_bar("CPU", 0, agent.total[0], agent.allocated[0], used[0]))
                (usage_bar("Memory", 1, agent.total[1], agent.allocated[1], used[1]))
                (usage_bar("Disk", 2, agent.total[2], agent.allocated[2], used[2]))
                (usage_bar("GPU", 3, agent.total[3], agent.allocated[3], used[3]))
            }
            h3 { "Attributes" }
            dl.kv { @for (k, v) in attrs.get(&id).into_iter().flatten() { div { dt { (k) } dd { (v) } } } }
        }
        (maintenance_forms(&agent.hostname))
        section aria-labelledby="usage" {
            h2 #usage { "Usage over time" }
            (chart::range_links(&format!("/ui/nodes/{}", qenc(&id)), range))
            div.charts {
                (chart::chart("CPU", "cpus", &cpu, now - range, now))
                (chart::chart("Memory", "MiB", &mem, now - range, now))
            }
        }
        section data-live="node-tasks" aria-labelledby="tasks" {
            h2 #tasks { "Tasks (" (tasks.len()) ")" }
            table.list {
                thead { tr { th scope="col" { "Task" } th scope="col" { "Name" } th scope="col" { "State" } th scope="col" { "CPUs used / alloc" } th scope="col" { "Memory used / alloc" } } }
                tbody {
                    @for t in tasks.iter().take(500) {
                        @let u = t.usage.as_ref().map(used_amounts).unwrap_or_default();
                        tr {
                            th scope="row" { a href=(format!("/ui/tasks/{}", qenc(&t.id))) { (t.id) } }
                            td { (t.name) }
                            td { (t.state.as_str()) }
                            td { (num(u[0])) " / " (num(t.allocated[0])) }
                            td { (super::mib(u[1])) " / " (super::mib(t.allocated[1])) }
                        }
                    }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        layout(&format!("Node {}", agent.hostname), "/ui/nodes", body),
    )
}

fn maintenance_forms(hostname: &str) -> Markup {
    let call = |kind: &str| {
        let key = kind.to_lowercase();
        serde_json::json!({"type": kind, key: {"machines": [{"hostname": hostname}]}}).to_string()
    };
    html! {
        section aria-labelledby="maint" {
            h2 #maint { "Maintenance" }
            div.actions {
                form method="post" action=(format!("/ui/actions/drain/{}", qenc(hostname))) {
                    button type="submit" { "Drain (maintenance window from now)" }
                }
                form method="post" action=(format!("/ui/actions/down/{}", qenc(hostname)))
                    data-api-method="POST" data-api-path="/api/v1" data-api-json=(call("START_MAINTENANCE")) {
                    button type="submit" { "Down" }
                    p.field-error role="alert" hidden {}
                }
                form method="post" action=(format!("/ui/actions/up/{}", qenc(hostname)))
                    data-api-method="POST" data-api-path="/api/v1" data-api-json=(call("STOP_MAINTENANCE")) {
                    button type="submit" { "Up" }
                    p.field-error role="alert" hidden {}
                }
            }
        }
    }
}
