//! The no-JavaScript side of the UI's forms: each handler makes the same public API call the
//! page's script would make (on loopback, through the typed client), then redirects back to the
//! page, or renders it again with the API's message next to the field (422) when the API refused.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use meseta_api::client::ClientError;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::pages::services::{render_detail, FormError};
use crate::pages::{app_href, qenc};
use crate::Page;

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// The API's words for a refusal: its message and the details that name fields.
pub(crate) fn api_message(e: &ClientError) -> String {
    match e {
        ClientError::Api(a) if a.details.is_empty() => a.message.clone(),
        ClientError::Api(a) => format!("{}: {}", a.message, a.details.join("; ")),
        other => other.to_string(),
    }
}

/// The scale form.
#[derive(Deserialize)]
pub(crate) struct ScaleForm {
    instances: String,
}

/// A form value as the JSON the API gets: a number when it reads as one, else the text as
/// typed (so the API's validation, not the UI, says what is wrong with it).
fn json_value(s: &str) -> Value {
    serde_json::from_str::<Value>(s.trim())
        .ok()
        .filter(Value::is_number)
        .unwrap_or_else(|| Value::String(s.to_string()))
}

/// `POST /ui/actions/scale/{id}` → `PUT /v2/apps/{id}` `{"instances": n}`.
pub(crate) async fn scale(ui: Page, Path(id): Path<String>, Form(f): Form<ScaleForm>) -> Response {
    let body = json!({ "instances": json_value(&f.instances) });
    match ui
        .source
        .client()
        .marathon()
        .put_app(&id, &body, false)
        .await
    {
        Ok(_) => {
            ui.source.changed();
            see_other(&app_href(&id))
        }
        Err(e) => refused(&ui, &id, "instances", &f.instances, &e).await,
    }
}

/// `POST /ui/actions/restart/{id}` → `POST /v2/apps/{id}/restart`.
pub(crate) async fn restart(ui: Page, Path(id): Path<String>) -> Response {
    match ui.source.client().marathon().restart_app(&id, false).await {
        Ok(_) => {
            ui.source.changed();
            see_other(&app_href(&id))
        }
        Err(e) => refused(&ui, &id, "restart", "", &e).await,
    }
}

/// The rollback form.
#[derive(Deserialize)]
pub(crate) struct RollbackForm {
    version: String,
}

/// `POST /ui/actions/rollback/{id}` → `PUT /v2/apps/{id}` `{"version": v}` (Marathon's rollback).
pub(crate) async fn rollback(
    ui: Page,
    Path(id): Path<String>,
    Form(f): Form<RollbackForm>,
) -> Response {
    let body = json!({ "version": f.version });
    match ui
        .source
        .client()
        .marathon()
        .put_app(&id, &body, false)
        .await
    {
        Ok(_) => {
            ui.source.changed();
            see_other(&app_href(&id))
        }
        Err(e) => refused(&ui, &id, "version", &f.version, &e).await,
    }
}

async fn refused(ui: &Page, id: &str, field: &str, value: &str, e: &ClientError) -> Response {
    if e.is_not_found() {
        return crate::pages::not_found(&format!("Service /{}", id.trim_start_matches('/')));
    }
    let err = FormError {
        field: field.to_string(),
        message: api_message(e),
        value: value.to_string(),
    };
    render_detail(ui, id, None, Some(err)).await
}

fn machines(hostname: &str) -> Value {
    json!([{ "hostname": hostname }])
}

/// `POST /ui/actions/down/{hostname}` → v1 `START_MAINTENANCE`.
pub(crate) async fn down(ui: Page, Path(host): Path<String>) -> Response {
    let call =
        json!({"type": "START_MAINTENANCE", "start_maintenance": {"machines": machines(&host)}});
    maintenance_call(&ui, &host, &call).await
}

/// `POST /ui/actions/up/{hostname}` → v1 `STOP_MAINTENANCE`.
pub(crate) async fn up(ui: Page, Path(host): Path<String>) -> Response {
    let call =
        json!({"type": "STOP_MAINTENANCE", "stop_maintenance": {"machines": machines(&host)}});
    maintenance_call(&ui, &host, &call).await
}

/// `POST /ui/actions/drain/{hostname}` → v1 `GET_MAINTENANCE_SCHEDULE`, then
/// `UPDATE_MAINTENANCE_SCHEDULE` with a window for the host starting now (one hour).
pub(crate) async fn drain(ui: Page, Path(host): Path<String>) -> Response {
    let client = ui.source.client();
    let current = match client
        .operator_call(&json!({"type": "GET_MAINTENANCE_SCHEDULE"}))
        .await
    {
        Ok(v) => v,
        Err(e) => return maintenance_error(&host, &e),
    };
    let mut windows = current
        .pointer("/get_maintenance_schedule/schedule/windows")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    windows.push(json!({
        "machine_ids": machines(&host),
        "unavailability": {"start": {"nanoseconds": now_ns}, "duration": {"nanoseconds": 3_600_000_000_000i64}},
    }));
    let call = json!({"type": "UPDATE_MAINTENANCE_SCHEDULE",
                      "update_maintenance_schedule": {"schedule": {"windows": windows}}});
    maintenance_call(&ui, &host, &call).await
}

async fn maintenance_call(ui: &Page, host: &str, call: &Value) -> Response {
    match ui.source.client().operator_call(call).await {
        Ok(_) => see_other(&node_href(ui, host)),
        Err(e) => maintenance_error(host, &e),
    }
}

fn node_href(ui: &Page, host: &str) -> String {
    ui.master
        .usage_snapshot()
        .agents
        .iter()
        .find(|a| a.hostname.eq_ignore_ascii_case(host))
        .map(|a| format!("/ui/nodes/{}", qenc(&a.id)))
        .unwrap_or_else(|| "/ui/nodes".to_string())
}

fn maintenance_error(host: &str, e: &ClientError) -> Response {
    use maud::html;
    let body = html! {
        p.notice role="alert" { "The master refused the maintenance change for " (host) ": " (api_message(e)) }
        p { a href="/ui/nodes" { "Back to the nodes" } }
    };
    crate::pages::respond(
        StatusCode::BAD_REQUEST,
        crate::pages::layout("Maintenance refused", "/ui/nodes", body),
    )
}
