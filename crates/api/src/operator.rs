//! meseta's own operator endpoints (beyond the Mesos ones): task kill and task logs.
//!
//! - `POST /api/meseta/v1/tasks/{id}/kill` → `202 {}`, or `404` [`ErrorBody`].
//! - `GET  /api/meseta/v1/tasks/{id}/logs?stream=stdout|stderr&offset=N&length=L` → [`LogChunk`].
//!   The master proxies it to the agent that runs the task, which serves the same path.
//!
//! [`v1`] holds the Mesos v1 operator calls (`POST /api/v1`).

use serde::{Deserialize, Serialize};

pub mod v1;

/// Path prefix of meseta's own API.
pub const API_PREFIX: &str = "/api/meseta/v1";

/// The error body of every 4xx/5xx (Marathon's shape).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// What is wrong.
    pub message: String,
    /// Per-field details, when there are several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<serde_json::Value>,
}

/// Query of the logs endpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LogQuery {
    /// `stdout` (default) or `stderr`.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Byte offset to read from.
    #[serde(default)]
    pub offset: u64,
    /// Maximum bytes to return (default 64 KiB, at most 1 MiB).
    #[serde(default)]
    pub length: Option<u64>,
}

fn default_stream() -> String {
    "stdout".to_string()
}

/// A slice of a sandbox file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LogChunk {
    /// The bytes read (lossy UTF-8).
    pub data: String,
    /// Where `data` starts.
    pub offset: u64,
    /// Size of the file now.
    pub size: u64,
}
