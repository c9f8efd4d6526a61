//! The agent's error type, returned by [`crate::Agent::start`] and the [`crate::AgentHandle`] methods.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The HTTP listener could not be bound.
    #[error("cannot bind agent http listener on {addr}: {source}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
    /// File system failure on `path` (work dir, checkpoints, task dirs).
    #[error("io error on {path}: {source}")]
    Io {
        /// Failing path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A checkpoint file holds invalid JSON.
    #[error("invalid json in {path}: {source}")]
    Json {
        /// Failing path.
        path: PathBuf,
        /// Underlying error.
        source: serde_json::Error,
    },
    /// A master URL (of the comma-separated list) cannot be turned into a WebSocket URL.
    #[error("invalid master url {0:?}")]
    InvalidMaster(String),
    /// The master refused the registration.
    #[error("master rejected the agent: {0}")]
    Rejected(String),
    /// `wait_registered` gave up.
    #[error("agent not registered after {0:?}")]
    RegistrationTimeout(std::time::Duration),
    /// An id that cannot name a file or directory (checked before any path is built from it).
    #[error(transparent)]
    InvalidId(#[from] crate::path_id::InvalidId),
    /// The agent stopped (shut down or its loop ended) before the awaited event.
    #[error("agent stopped: {0}")]
    Stopped(String),
}

impl AgentError {
    /// Shorthand for [`AgentError::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> AgentError {
        AgentError::Io {
            path: path.into(),
            source,
        }
    }
}
