//! Frameworks and roles: every framework's resources and tasks, and every role's weight, DRF
//! share, quota (guarantee, limit, consumed) and allocation.

use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde_json::Value;

use super::{layout, n, num, respond, s};
use crate::Page;

fn resources(v: Option<&Value>) -> String {
    let Some(v) = v else { return "—".into() };
    format!(
        "{} cpus · {} · {} gpus",
        num(n(v, "cpus")),
        super::mib(n(v, "mem")),
        num(n(v, "gpus"))
    )
}

/// `GET /ui/frameworks`.
pub(crate) async fn page(ui: Page) -> Response {
    let (summary, roles) = tokio::join!(
        ui.source.get("/master/state-summary"),
        ui.source.get("/master/roles")
    );
    let summary = match summary {
        Ok(v) => v,
        Err(e) => return super::unavailable("/ui/frameworks", &e),
    };
    let frameworks = summary
        .get("frameworks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let roles = roles
        .ok()
        .and_then(|r| r.get("roles").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    let body = html! {
        section data-live="frameworks" aria-labelledby="fw" {
            h2 #fw { "Frameworks (" (frameworks.len()) ")" }
            table.list {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Active" } th scope="col" { "Running tasks" } th scope="col" { "Used" } th scope="col" { "Offered" } } }
                tbody {
                    @for f in &frameworks {
                        tr {
                            th scope="row" { (s(f, "name")) }
                            td { code { (s(f, "id")) } }
                            td { @if f.get("active").and_then(Value::as_bool) == Some(true) { "yes" } @else { "no" } }
                            td { (n(f, "TASK_RUNNING")) }
                            td { (resources(f.get("used_resources"))) }
                            td { (resources(f.get("offered_resources"))) }
                        }
                    }
                }
            }
        }
        (roles_table(&roles))
    };
    respond(
        StatusCode::OK,
        layout("Frameworks & roles", "/ui/frameworks", body),
    )
}

fn scalars(v: Option<&Value>) -> String {
    let Some(m) = v.and_then(Value::as_object) else {
        return "—".into();
    };
    if m.is_empty() {
        return "—".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}: {}", num(v.as_f64().unwrap_or(0.0))))
        .collect::<Vec<_>>()
        .join(", ")
}

fn roles_table(roles: &[Value]) -> Markup {
    html! {
        section data-live="roles" aria-labelledby="roles" {
            h2 #roles { "Roles (" (roles.len()) ")" }
            table.list {
                thead { tr {
                    th scope="col" { "Role" } th scope="col" { "Weight" } th scope="col" { "DRF share" }
                    th scope="col" { "Quota guarantee" } th scope="col" { "Quota limit" } th scope="col" { "Consumed" }
                    th scope="col" { "Allocated" } th scope="col" { "Frameworks" }
                } }
                tbody {
                    @for r in roles {
                        @let share = n(r, "share");
                        tr {
                            th scope="row" { (s(r, "name")) }
                            td { (num(n(r, "weight"))) }
                            td {
                                meter min="0" max="1" value=(share) aria-label=(format!("share {}", num(share))) {}
                                " " (format!("{:.1}%", share * 100.0))
                            }
                            td { (scalars(r.pointer("/quota/guarantee"))) }
                            td { (scalars(r.pointer("/quota/limit"))) }
                            td { (scalars(r.pointer("/quota/consumed"))) }
                            td { (scalars(r.get("allocated"))) }
                            td { (r.get("frameworks").and_then(Value::as_array).map(|a| a.len()).unwrap_or(0)) }
                        }
                    }
                }
            }
        }
    }
}
