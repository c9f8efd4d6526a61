//! Server-rendered pages: the common layout (navigation, styles, the live-update script), small
//! widgets (bars, tables, pagination) and the error pages. Every value from the cluster is
//! escaped by maud; nothing is inserted as raw HTML.

pub(crate) mod chart;
pub(crate) mod dashboard;
pub(crate) mod frameworks;
pub(crate) mod jobs;
pub(crate) mod nodes;
pub(crate) mod services;
pub(crate) mod tasks;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

/// Rows per page of every list.
pub(crate) const PAGE_SIZE: usize = 50;

/// The sections in the navigation: (path, label).
const NAV: [(&str, &str); 5] = [
    ("/ui", "Dashboard"),
    ("/ui/services", "Services"),
    ("/ui/jobs", "Jobs"),
    ("/ui/nodes", "Nodes"),
    ("/ui/frameworks", "Frameworks & roles"),
];

/// A whole page: `title`, the active section and the body.
pub(crate) fn layout(title: &str, active: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · meseta" }
                link rel="stylesheet" href="/ui/static/ui.css";
                script src="/ui/static/ui.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    nav aria-label="Sections" {
                        span.brand { "meseta" }
                        ul {
                            @for (path, label) in NAV {
                                li {
                                    @if path == active {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                        span #live-status role="status" aria-live="polite" {}
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// An HTML response with `status`.
pub(crate) fn respond(status: StatusCode, page: Markup) -> Response {
    (status, Html(page.into_string())).into_response()
}

/// The 404 page naming what was not found.
pub(crate) fn not_found(what: &str) -> Response {
    respond(
        StatusCode::NOT_FOUND,
        layout(
            "Not found",
            "",
            html! { p.notice { (what) " does not exist." } p { a href="/ui" { "Back to the dashboard" } } },
        ),
    )
}

/// The page shown when a public read failed: the master refused the viewer (401, 403: what
/// it said, with a way to sign in as someone else), or did not answer.
pub(crate) fn unavailable(active: &str, e: &crate::source::SourceError) -> Response {
    if let Some(status) = e.refusal() {
        return respond(
            StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
            layout(
                "Not permitted",
                active,
                html! {
                    p.notice role="alert" { "The master refused this read: " (e.to_string()) }
                    p { a href="/ui/logout" { "Sign in with another token" } }
                },
            ),
        );
    }
    respond(
        StatusCode::BAD_GATEWAY,
        layout(
            "Unavailable",
            active,
            html! { p.notice role="alert" { "The master did not answer: " (e.to_string()) } },
        ),
    )
}

/// A JSON error in Marathon's shape.
pub(crate) fn json_error(status: StatusCode, message: String) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"message": message, "details": []})),
    )
        .into_response()
}

/// Add `b` into `a`, resource by resource.
pub(crate) fn add_into(a: &mut [f64; 4], b: [f64; 4]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// A string field of a JSON object ("" when absent).
pub(crate) fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A number field of a JSON object (0 when absent).
pub(crate) fn n(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// A number with at most two decimals, trailing zeros dropped.
pub(crate) fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// MiB as a readable size.
pub(crate) fn mib(v: f64) -> String {
    if v >= 1024.0 * 1024.0 {
        format!("{} TiB", num(v / 1024.0 / 1024.0))
    } else if v >= 1024.0 {
        format!("{} GiB", num(v / 1024.0))
    } else {
        format!("{} MiB", num(v))
    }
}

/// A resource amount in its unit.
pub(crate) fn amount(resource: usize, v: f64) -> String {
    match resource {
        1 | 2 => mib(v),
        _ => num(v),
    }
}

/// A horizontal bar of `used` and `allocated` against `total`, with the figures as text.
pub(crate) fn usage_bar(label: &str, resource: usize, total: f64, alloc: f64, used: f64) -> Markup {
    let pct = |v: f64| {
        if total > 0.0 {
            (v / total * 100.0).clamp(0.0, 100.0)
        } else {
            0.0
        }
    };
    html! {
        div.meter {
            div.meter-label {
                strong { (label) } " "
                span { (amount(resource, used)) " used · " (amount(resource, alloc)) " allocated · "
                       (amount(resource, total)) " total" }
            }
            div.bar role="img" aria-label=(format!("{label}: {} used, {} allocated of {}", amount(resource, used), amount(resource, alloc), amount(resource, total))) {
                span.alloc style=(format!("width:{:.1}%", pct(alloc))) {}
                span.used style=(format!("width:{:.1}%", pct(used))) {}
            }
        }
    }
}

/// A health bar of an app: healthy, running (no health result), unhealthy, staged of `instances`.
pub(crate) fn health_bar(app: &Value) -> Markup {
    let inst = n(app, "instances").max(1.0);
    let healthy = n(app, "tasksHealthy");
    let unhealthy = n(app, "tasksUnhealthy");
    let running = (n(app, "tasksRunning") - healthy - unhealthy).max(0.0);
    let staged = n(app, "tasksStaged");
    let w = |v: f64| format!("width:{:.1}%", (v / inst * 100.0).clamp(0.0, 100.0));
    let label = format!(
        "{} healthy, {} running, {} unhealthy, {} staged of {} instances",
        num(healthy),
        num(running),
        num(unhealthy),
        num(staged),
        num(n(app, "instances"))
    );
    html! {
        div.health role="img" aria-label=(label) title=(label) {
            span.healthy style=(w(healthy)) {}
            span.running style=(w(running)) {}
            span.unhealthy style=(w(unhealthy)) {}
            span.staged style=(w(staged)) {}
        }
    }
}

/// Previous / next links for a list of `total` rows at page `page` (0-based); `base` is the
/// query string without `page`.
pub(crate) fn pager(path: &str, base: &str, page: usize, total: usize) -> Markup {
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let link = |p: usize| {
        if base.is_empty() {
            format!("{path}?page={p}")
        } else {
            format!("{path}?{base}&page={p}")
        }
    };
    html! {
        nav.pager aria-label="Pages" {
            @if page > 0 { a href=(link(page - 1)) rel="prev" { "← Previous" } }
            span { "Page " (page + 1) " of " (pages) " (" (total) " in all)" }
            @if page + 1 < pages { a href=(link(page + 1)) rel="next" { "Next →" } }
        }
    }
}

/// Percent-encode a query value (`&`, `=`, `#`, `%`, `+`, space and non-ASCII).
pub(crate) fn qenc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An app's page link (`/ui/services/<id without leading slash>`).
pub(crate) fn app_href(id: &str) -> String {
    format!("/ui/services/{}", qenc(id.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_sizes_read_well() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(0.001), "0");
        assert_eq!(mib(2048.0), "2 GiB");
        assert_eq!(qenc("a b&c"), "a%20b%26c");
    }
}
