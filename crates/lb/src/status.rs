//! The admin listener: `GET /status` (JSON: listeners, apps and their backends, versions'
//! request and error counts, draining backends, refused claims, the feed), `GET /` (the same
//! as a simple HTML page), `GET /metrics` (Prometheus) and `GET /health`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::balancer::Endpoint;
use crate::feed::Feed;
use crate::live::Routes;
use crate::metrics::Metrics;
use crate::tcp::Tcp;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct Admin {
    /// The routes.
    pub routes: Arc<Routes>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The TCP listeners.
    pub tcp: Arc<Tcp>,
    /// The feed.
    pub feed: Arc<Feed>,
    /// The HTTP listener's address.
    pub http_addr: SocketAddr,
    /// The admin listener's address.
    pub admin_addr: SocketAddr,
}

/// The admin router.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/", get(html))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .with_state(admin)
}

fn endpoint_json(e: &Endpoint, now: Instant) -> Value {
    json!({
        "task": e.task_id,
        "address": e.addr.to_string(),
        "version": e.version,
        "canary": e.canary,
        "ejected": e.ejected(now),
        "outstanding": e.outstanding.load(Ordering::Relaxed),
        "requests": e.requests.get(),
        "failures": e.failures.load(Ordering::Relaxed),
    })
}

/// The status document.
pub fn status_json(a: &Admin) -> Value {
    let live = a.routes.load();
    let now = Instant::now();
    let apps: Vec<Value> = live
        .services
        .iter()
        .map(|s| {
            let svc = &s.service;
            json!({
                "id": svc.app_id,
                "portIndex": svc.port_index,
                "servicePort": svc.service_port,
                "vhosts": svc.vhosts,
                "canary": svc.canary.as_ref().map(|c| json!({"version": c.version, "weight": c.weight})),
                "backends": s.endpoints.iter().map(|e| endpoint_json(e, now)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let versions: Vec<Value> = a
        .metrics
        .versions()
        .into_iter()
        .map(|((app, version), (requests, errors))| {
            let rate = if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            };
            json!({"app": app, "version": version, "requests": requests, "errors": errors,
                   "errorRate": rate})
        })
        .collect();
    let draining: Vec<Value> = a
        .routes
        .draining()
        .iter()
        .map(|e| endpoint_json(e, now))
        .collect();
    json!({
        "listeners": {"http": a.http_addr.to_string(), "admin": a.admin_addr.to_string()},
        "ports": a.tcp.ports(),
        "feed": a.feed.state(),
        "apps": apps,
        "versions": versions,
        "draining": draining,
        "conflicts": live.table.conflicts,
    })
}

async fn status(State(a): State<Admin>) -> Json<Value> {
    Json(status_json(&a))
}

async fn metrics(State(a): State<Admin>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        a.metrics.render(),
    )
        .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn html(State(a): State<Admin>) -> Html<String> {
    let s = status_json(&a);
    let mut rows = String::new();
    for app in s["apps"].as_array().into_iter().flatten() {
        for b in app["backends"].as_array().into_iter().flatten() {
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(app["id"].as_str().unwrap_or("")),
                escape(&app["servicePort"].to_string()),
                escape(&app["vhosts"].to_string()),
                escape(b["address"].as_str().unwrap_or("")),
                escape(b["version"].as_str().unwrap_or("")),
                if b["canary"] == true { "canary" } else { "" },
                b["requests"],
                if b["ejected"] == true { "ejected" } else { "in rotation" },
            ));
        }
    }
    Html(format!(
        "<!doctype html><html><head><title>meseta lb</title></head><body>\
         <h1>meseta lb</h1><p>HTTP on {} · master {} · {} syncs</p>\
         <table border=1><tr><th>app</th><th>service port</th><th>virtual hosts</th>\
         <th>backend</th><th>version</th><th></th><th>requests</th><th>state</th></tr>\n{rows}</table>\
         <p><a href=\"/status\">JSON</a> · <a href=\"/metrics\">metrics</a></p></body></html>",
        escape(s["listeners"]["http"].as_str().unwrap_or("")),
        escape(s["feed"]["master"].as_str().unwrap_or("")),
        s["feed"]["syncs"],
    ))
}
