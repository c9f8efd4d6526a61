//! Prometheus `/metrics`: tasks by state, agents by state, resources total and used.
//!
//! Gauges are filled from the core at scrape time, so they never drift from `/master/state`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::Master;

type Labels = Vec<(String, String)>;

pub(super) async fn prometheus(State(m): State<Master>) -> Response {
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
