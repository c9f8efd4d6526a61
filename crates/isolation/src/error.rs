//! Error types of the isolation crate (cgroup errors live in [`crate::cgroup`]).

use std::path::PathBuf;

use crate::cgroup::CgroupError;

/// General isolation errors (spec files, users).
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// File system failure on `path`.
    #[error("io error on {path}: {source}")]
    Io {
        /// Failing path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// JSON (de)serialization failure for `path`.
    #[error("invalid json in {path}: {source}")]
    Json {
        /// Failing path.
        path: PathBuf,
        /// Underlying error.
        source: serde_json::Error,
    },
    /// The user does not exist.
    #[error("unknown user {0}")]
    UnknownUser(String),
    /// The user database lookup failed.
    #[error("user lookup of {name} failed: {source}")]
    UserLookup {
        /// User name.
        name: String,
        /// Underlying error.
        source: nix::Error,
    },
    /// Work could not be done with a user's credentials.
    #[error("cannot act as user {name}: {source}")]
    SwitchUser {
        /// User name.
        name: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

/// Errors of the shim helpers used by the agent.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// File system failure on `path`.
    #[error("io error on {path}: {source}")]
    Io {
        /// Failing path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// JSON failure for `path`.
    #[error("invalid json in {path}: {source}")]
    Json {
        /// Failing path.
        path: PathBuf,
        /// Underlying error.
        source: serde_json::Error,
    },
    /// A pid file did not contain a valid pid.
    #[error("invalid pid file {path}: {content:?}")]
    BadPid {
        /// Pid file.
        path: PathBuf,
        /// Its content.
        content: String,
    },
    /// Sending a signal failed.
    #[error("kill of pid {pid} failed: {source}")]
    Signal {
        /// Target pid.
        pid: i32,
        /// Underlying error.
        source: nix::Error,
    },
}
