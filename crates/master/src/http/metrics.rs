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
    register_usage(&mut reg, &m.core().usage_snapshot());
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

type FloatFamily = Family<Labels, Gauge<f64, AtomicU64>>;

/// Measured usage: cluster-wide, per task (labels `task`, `name`, `framework`, `agent`) and
/// per task name (`app`: a Marathon app's tasks share its id as name), beside what they hold.
fn register_usage(reg: &mut Registry, snap: &crate::usage::UsageSnapshot) {
    use crate::usage::{used_amounts, RESOURCES};
    let cluster = FloatFamily::default();
    let task_cpus = FloatFamily::default();
    let task_mem = FloatFamily::default();
    let task_cache = FloatFamily::default();
    let task_disk = FloatFamily::default();
    let task_throttled = FloatFamily::default();
    let task_ooms = FloatFamily::default();
    let app_used = FloatFamily::default();
    let app_alloc = FloatFamily::default();
    let mut cluster_used = [0.0; 4];
    for t in snap.tasks.iter() {
        let app = vec![("app".to_string(), t.name.clone())];
        for (i, name) in RESOURCES.iter().enumerate() {
            let mut l = app.clone();
            l.push(("resource".to_string(), name.to_string()));
            app_alloc.get_or_create(&l).inc_by(t.allocated[i]);
        }
        let Some(u) = &t.usage else { continue };
        let used = used_amounts(u);
        for (i, name) in RESOURCES.iter().enumerate() {
            cluster_used[i] += used[i];
            let mut l = app.clone();
            l.push(("resource".to_string(), name.to_string()));
            app_used.get_or_create(&l).inc_by(used[i]);
        }
        let l = vec![
            ("task".to_string(), t.id.clone()),
            ("name".to_string(), t.name.clone()),
            ("framework".to_string(), t.framework_id.clone()),
            ("agent".to_string(), t.agent_id.clone()),
        ];
        task_cpus.get_or_create(&l).set(u.cpus_used);
        task_mem.get_or_create(&l).set(u.mem_rss_bytes as f64);
        task_cache.get_or_create(&l).set(u.mem_cache_bytes as f64);
        task_disk.get_or_create(&l).set(u.disk_used_bytes as f64);
        task_throttled
            .get_or_create(&l)
            .set(u.cpus_throttled_time_secs);
        task_ooms.get_or_create(&l).set(u.mem_oom_events as f64);
    }
    for (i, name) in RESOURCES.iter().enumerate() {
        let l = vec![("resource".to_string(), name.to_string())];
        cluster.get_or_create(&l).set(cluster_used[i]);
    }
    let families = [
        (
            "resources_measured",
            "Resources measured in use by tasks (cpus; mem and disk in MiB)",
            cluster,
        ),
        (
            "task_cpus_used",
            "CPUs a task used between its last two usage reports",
            task_cpus,
        ),
        (
            "task_mem_rss_bytes",
            "Resident (anonymous) memory of a task",
            task_mem,
        ),
        (
            "task_mem_cache_bytes",
            "Page cache charged to a task",
            task_cache,
        ),
        (
            "task_disk_used_bytes",
            "Bytes in a task's sandbox",
            task_disk,
        ),
        (
            "task_cpus_throttled_seconds",
            "Time a task was throttled by its cpu quota",
            task_throttled,
        ),
        (
            "task_mem_oom_events",
            "OOM kills in a task's cgroup",
            task_ooms,
        ),
        (
            "app_resources_used",
            "Resources measured in use by the tasks of one name (app)",
            app_used,
        ),
        (
            "app_resources_allocated",
            "Resources held by the live tasks of one name (app)",
            app_alloc,
        ),
    ];
    for (name, help, family) in families {
        reg.register(name, help, family);
    }
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
