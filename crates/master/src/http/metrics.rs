//! `/metrics`: Prometheus text for scrapers and `curl`, the Dropwizard JSON shape
//! (`version`, `gauges`, `counters`, `histograms`, `meters`, `timers`) that Marathon and Chronos
//! serve for their clients, chosen by the `Accept` header.
//!
//! Gauges are filled from the core at scrape time, so they never drift from `/master/state`.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::Master;

type Labels = Vec<(String, String)>;

/// `GET /metrics`: JSON when the client names no type at all (chronos-python) or names
/// `application/json` and no text type (marathon-python); Prometheus text otherwise (`*/*` alone
/// as curl sends, `text/plain`, OpenMetrics).
pub(super) async fn metrics(State(m): State<Master>, headers: HeaderMap) -> Response {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if wants_json(&accept) {
        dropwizard(&m).into_response()
    } else {
        prometheus(&m)
    }
}

/// Whether an `Accept` header (all its values) asks for the JSON shape.
fn wants_json(accept: &[&str]) -> bool {
    let types: Vec<String> = accept
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty())
        .collect();
    if types.is_empty() {
        return true;
    }
    let text = types
        .iter()
        .any(|t| t.starts_with("text/") || t.contains("openmetrics"));
    !text && types.iter().any(|t| t == "application/json")
}

/// The Dropwizard metrics JSON Marathon and Chronos serve: every master metric as a gauge.
fn dropwizard(m: &Master) -> axum::Json<serde_json::Value> {
    let gauges: serde_json::Map<String, serde_json::Value> = m
        .core()
        .metrics_snapshot()
        .into_iter()
        .map(|(k, v)| (k, serde_json::json!({ "value": v })))
        .collect();
    axum::Json(serde_json::json!({
        "version": "4.0.0",
        "gauges": gauges,
        "counters": {},
        "histograms": {},
        "meters": {},
        "timers": {},
    }))
}

fn prometheus(m: &Master) -> Response {
    let tasks = Family::<Labels, Gauge>::default();
    let agents = Family::<Labels, Gauge>::default();
    let total = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let used = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let frameworks = Gauge::<i64>::default();
    {
        let core = m.core();
        for (state, n) in core.task_counts() {
            tasks
                .get_or_create(&vec![("state".to_string(), state.as_str().to_string())])
                .set(n as i64);
        }
        for (state, n) in core.agent_counts() {
            agents
                .get_or_create(&vec![("state".to_string(), state.to_string())])
                .set(n as i64);
        }
        let (t, u) = core.totals();
        for name in ["cpus", "mem", "disk", "gpus"] {
            let l = vec![("resource".to_string(), name.to_string())];
            total.get_or_create(&l).set(t.scalar(name).as_f64());
            used.get_or_create(&l).set(u.scalar(name).as_f64());
        }
        frameworks.set(core.frameworks.len() as i64);
    }
    let mut reg = Registry::with_prefix("meseta");
    reg.register(
        "tasks",
        "Tasks by state (terminal states count since master start)",
        tasks,
    );
    reg.register("agents", "Agents by connection state", agents);
    reg.register(
        "resources_total",
        "Resources of registered agents (mem and disk in MiB)",
        total,
    );
    reg.register(
        "resources_used",
        "Resources used by tasks (mem and disk in MiB)",
        used,
    );
    reg.register("frameworks", "Registered frameworks", frameworks);
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &reg) {
        return super::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}"),
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::wants_json;

    #[test]
    fn accept_picks_the_shape() {
        assert!(wants_json(&[]), "no Accept (chronos-python)");
        assert!(wants_json(&["application/json"]), "marathon-python");
        assert!(wants_json(&["application/json; charset=utf-8"]));
        assert!(!wants_json(&["*/*"]), "curl");
        assert!(
            wants_json(&["application/json, */*"]),
            "json named, anything else tolerated"
        );
        assert!(!wants_json(&["text/plain;version=0.0.4"]));
        assert!(!wants_json(&[
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ]), "Prometheus");
    }
}
