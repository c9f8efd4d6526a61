//! A task's page: where it runs, what it holds and uses, and a live tail of its stdout and
//! stderr (the first chunk rendered on the server; the script follows the public logs endpoint).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use meseta_master::usage::used_amounts;

use super::{layout, not_found, num, qenc, respond};
use crate::Page;

/// Bytes of log shown at first.
const TAIL: u64 = 16 * 1024;

/// `GET /ui/tasks/{id}`.
pub(crate) async fn page(ui: Page, Path(id): Path<String>) -> Response {
    let snap = ui.master.usage_snapshot();
    let Some(t) = snap.tasks.iter().find(|t| t.id == id) else {
        if ui
            .master
            .knows_task(&meseta_types::TaskId::new(id.as_str()))
        {
            let body = html! { p { "Task " code { (id) } " has ended; its record is in " a href="/master/tasks" { "/master/tasks" } "." } };
            return respond(StatusCode::OK, layout(&format!("Task {id}"), "", body));
        }
        return not_found(&format!("Task {id}"));
    };
    let mut streams = Vec::new();
    for stream in ["stdout", "stderr"] {
        let chunk = tail(&ui, &id, stream).await;
        streams.push((stream, chunk));
    }
    let u = t.usage.as_ref().map(used_amounts).unwrap_or_default();
    let usage = t.usage.clone().unwrap_or_default();
    let body = html! {
        section data-live="task" aria-labelledby="info" {
            h2 #info { "Task" }
            dl.kv {
                div { dt { "State" } dd #task-state { (t.state.as_str()) } }
                div { dt { "Name" } dd { (t.name) } }
                div { dt { "Node" } dd { a href=(format!("/ui/nodes/{}", qenc(&t.agent_id))) { (t.agent_id) } } }
                div { dt { "Framework" } dd { code { (t.framework_id) } } }
                div { dt { "CPUs used / allocated" } dd { (num(u[0])) " / " (num(t.allocated[0])) } }
                div { dt { "Memory RSS / cache / allocated" } dd { (super::mib(usage.mem_rss_bytes as f64 / 1048576.0)) " / " (super::mib(usage.mem_cache_bytes as f64 / 1048576.0)) " / " (super::mib(t.allocated[1])) } }
                div { dt { "Sandbox" } dd { (super::mib(u[2])) } }
                div { dt { "Processes" } dd { (usage.processes) } }
                div { dt { "Throttled" } dd { (usage.cpus_nr_throttled) " periods, " (num(usage.cpus_throttled_time_secs)) " s" } }
                div { dt { "OOM kills" } dd { (usage.mem_oom_events) } }
            }
        }
        @for (stream, chunk) in &streams {
            section aria-labelledby=(format!("log-{stream}")) {
                h2 id=(format!("log-{stream}")) { (stream) }
                pre.log tabindex="0" data-log-task=(id) data-log-stream=(stream) data-log-offset=(chunk.1) { (chunk.0) }
            }
        }
    };
    respond(StatusCode::OK, layout(&format!("Task {id}"), "", body))
}

/// The last [`TAIL`] bytes of one stream and the offset after them.
async fn tail(ui: &Page, id: &str, stream: &str) -> (String, u64) {
    let client = ui.source.client();
    // A read of length 0 tells the size.
    let size = match client.task_logs(id, stream, 0, 0).await {
        Ok(c) => c.size,
        Err(e) => return (format!("(log unavailable: {e})"), 0),
    };
    let from = size.saturating_sub(TAIL);
    match client.task_logs(id, stream, from, TAIL).await {
        Ok(c) => {
            let end = c.size.min(from + TAIL);
            (c.data, end)
        }
        Err(e) => (format!("(log unavailable: {e})"), 0),
    }
}
