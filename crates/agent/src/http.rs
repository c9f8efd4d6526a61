//! The agent's own HTTP server: `GET /health`, `GET /state` (debugging), `GET /monitor/statistics`
//! (Mesos' per-executor usage), `GET /api/meseta/v1/tasks/{id}/logs` (sandbox stdout/stderr,
//! proxied by the master for the CLI), and the executor API `POST /api/v1/executor`
//! (`crate::executor::api`).
//! Sandbox files are read without leaving the sandbox: a task that replaces its `stdout` with a
//! link to a file it cannot read gets a 403, never the file.

use std::io::SeekFrom;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meseta_api::operator::{ErrorBody, LogChunk, LogQuery};
use meseta_isolation::sandbox::open_beneath;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde_json::json;
use sha2::Digest;
use std::io::{Read, Seek};
use std::os::unix::fs::MetadataExt;

use crate::path_id::PathId;
use crate::state::Shared;

/// Default bytes returned by the logs endpoint.
const DEFAULT_LOG_LENGTH: u64 = 64 * 1024;
/// Maximum bytes returned by the logs endpoint.
const MAX_LOG_LENGTH: u64 = 1024 * 1024;

/// The agent's router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let keyed = Router::new()
        .route("/state", get(state))
        .route("/monitor/statistics", get(monitor_statistics))
        .route("/monitor/statistics.json", get(monitor_statistics))
        .route("/api/meseta/v1/tasks/{id}/logs", get(logs))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            require_key,
        ));
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(keyed)
        .route(
            crate::executor::api::PATH,
            axum::routing::post(crate::executor::api::executor),
        )
        .with_state(shared)
}

/// Once the master gave a key (a master with `--acl`), the sandbox logs, the state and the
/// statistics answer only requests that bear it: the master's proxy, which checks the
/// caller's token first. `/health` and the executor API stay open.
async fn require_key(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(key) = shared.http_key() else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Digests compared, so the time taken says nothing about the key.
    let digest = |s: &str| sha2::Sha256::digest(s.as_bytes());
    match presented {
        Some(p) if digest(p) == digest(&key) => next.run(req).await,
        _ => error(
            StatusCode::UNAUTHORIZED,
            "this agent's endpoints answer only its master: ask the master \
             (/api/meseta/v1/tasks/{id}/logs) with a token"
                .to_string(),
        ),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (
        status,
        Json(ErrorBody {
            message,
            details: Vec::new(),
        }),
    )
        .into_response()
}

async fn state(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let st = shared.lock();
    let tasks: Vec<_> = st
        .tasks
        .values()
        .map(|t| json!({"id": t.spec.task_id, "state": t.record.state}))
        .collect();
    Json(json!({
        "id": st.agent_id,
        "hostname": shared.hostname,
        "resources": shared.resources,
        "tasks": tasks,
    }))
}

/// `GET /monitor/statistics`: Mesos' per-executor resource statistics of the running tasks.
async fn monitor_statistics(
    State(shared): State<Arc<Shared>>,
) -> Json<Vec<meseta_api::agent::MonitorEntry>> {
    Json(crate::usage::monitor_statistics(&shared))
}

async fn logs(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    let task_dir = PathId::parse("task", &id).map(|p| shared.checkpoint.task_dir(&p));
    let Some(task_dir) = task_dir.ok().filter(|d| d.is_dir()) else {
        return error(StatusCode::NOT_FOUND, format!("unknown task {id}"));
    };
    if q.stream != "stdout" && q.stream != "stderr" {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid stream {:?}: expected stdout or stderr", q.stream),
        );
    }
    let length = q.length.unwrap_or(DEFAULT_LOG_LENGTH).min(MAX_LOG_LENGTH);
    let sandbox = task_dir.join("sandbox");
    let name = q.stream.clone();
    let read = tokio::task::spawn_blocking(move || {
        read_chunk(&sandbox, Path::new(&name), q.offset, length)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match read {
        Ok(chunk) => Json(chunk).into_response(),
        Err(e) if is_refusal(&e) => error(
            StatusCode::FORBIDDEN,
            format!(
                "{} of task {id} is not a regular file of its sandbox (links are not followed): {e}",
                q.stream
            ),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read {} of task {id}: {e}", q.stream),
        ),
    }
}

/// Errors that mean the task put something other than its own log file there.
fn is_refusal(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied
        || matches!(
            e.raw_os_error(),
            Some(libc::ELOOP | libc::EXDEV | libc::ENOTDIR | libc::ENXIO)
        )
}

/// Read up to `length` bytes at `offset` of `name` in `sandbox`; a missing file is an empty one.
///
/// The file is opened below the sandbox without following links ([`open_beneath`]), without
/// blocking on a FIFO, and must be a regular file with one link (not a hard link to a file
/// elsewhere).
pub(crate) fn read_chunk(
    sandbox: &Path,
    name: &Path,
    offset: u64,
    length: u64,
) -> std::io::Result<LogChunk> {
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let mut file = match open_beneath(sandbox, name, flags, Mode::empty()) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LogChunk {
                data: String::new(),
                offset,
                size: 0,
            })
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() > 1 {
        return Err(std::io::Error::from_raw_os_error(libc::ENXIO));
    }
    let size = meta.len();
    let mut buf = Vec::new();
    if offset < size {
        file.seek(SeekFrom::Start(offset))?;
        file.take(length).read_to_end(&mut buf)?;
    }
    Ok(LogChunk {
        data: String::from_utf8_lossy(&buf).into_owned(),
        offset,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_reads_slices_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("stdout"), b"hello world").expect("write");
        let read = |name: &str, off, len| read_chunk(dir.path(), Path::new(name), off, len);
        let c = read("stdout", 6, 3).expect("read");
        assert_eq!((c.data.as_str(), c.offset, c.size), ("wor", 6, 11));
        let c = read("stdout", 50, 3).expect("read");
        assert_eq!((c.data.as_str(), c.size), ("", 11));
        let c = read("nope", 0, 3).expect("read");
        assert_eq!((c.data.as_str(), c.size), ("", 0));
    }

    #[test]
    fn chunk_refuses_links_fifos_and_hard_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sb = dir.path().join("sandbox");
        std::fs::create_dir(&sb).expect("mkdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "secret").expect("write");
        std::os::unix::fs::symlink(&secret, sb.join("stdout")).expect("ln -s");
        std::fs::hard_link(&secret, sb.join("stderr")).expect("ln");
        nix::unistd::mkfifo(&sb.join("fifo"), Mode::from_bits_truncate(0o644)).expect("fifo");
        for name in ["stdout", "stderr", "fifo"] {
            let err = read_chunk(&sb, Path::new(name), 0, 100).expect_err(name);
            assert!(is_refusal(&err), "{name}: {err}");
        }
    }
}
