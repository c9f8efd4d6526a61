//! The agent's own HTTP server: `GET /health`, `GET /state` (debugging) and
//! `GET /api/meseta/v1/tasks/{id}/logs` (sandbox stdout/stderr, proxied by the master for the CLI).

use std::io::SeekFrom;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meseta_api::operator::{ErrorBody, LogChunk, LogQuery};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::state::Shared;
use crate::tasks::valid_task_id;

/// Default bytes returned by the logs endpoint.
const DEFAULT_LOG_LENGTH: u64 = 64 * 1024;
/// Maximum bytes returned by the logs endpoint.
const MAX_LOG_LENGTH: u64 = 1024 * 1024;

/// The agent's router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/state", get(state))
        .route("/api/meseta/v1/tasks/{id}/logs", get(logs))
        .with_state(shared)
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

async fn logs(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    let task_dir = shared.checkpoint.task_dir(&id);
    if !valid_task_id(&id) || !task_dir.is_dir() {
        return error(StatusCode::NOT_FOUND, format!("unknown task {id}"));
    }
    if q.stream != "stdout" && q.stream != "stderr" {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid stream {:?}: expected stdout or stderr", q.stream),
        );
    }
    let length = q.length.unwrap_or(DEFAULT_LOG_LENGTH).min(MAX_LOG_LENGTH);
    let path = task_dir.join("sandbox").join(&q.stream);
    match read_chunk(&path, q.offset, length).await {
        Ok(chunk) => Json(chunk).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read {}: {e}", path.display()),
        ),
    }
}

/// Read up to `length` bytes at `offset`; a missing file is an empty one.
pub(crate) async fn read_chunk(path: &Path, offset: u64, length: u64) -> std::io::Result<LogChunk> {
    let mut file = match tokio::fs::File::open(path).await {
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
    let size = file.metadata().await?.len();
    let mut buf = Vec::new();
    if offset < size {
        file.seek(SeekFrom::Start(offset)).await?;
        file.take(length).read_to_end(&mut buf).await?;
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

    #[tokio::test]
    async fn chunk_reads_slices_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("stdout");
        std::fs::write(&p, b"hello world").expect("write");
        let c = read_chunk(&p, 6, 3).await.expect("read");
        assert_eq!((c.data.as_str(), c.offset, c.size), ("wor", 6, 11));
        let c = read_chunk(&p, 50, 3).await.expect("read");
        assert_eq!((c.data.as_str(), c.size), ("", 11));
        let c = read_chunk(&dir.path().join("nope"), 0, 3)
            .await
            .expect("read");
        assert_eq!((c.data.as_str(), c.size), ("", 0));
    }
}
