//! The Docker containerizer: tasks whose container is `type: DOCKER` run through the local Docker
//! engine (bollard over the unix socket), never as plain processes.
//!
//! ```text
//!  agent start ── Engine::probe (socket, negotiate the API version) ── attribute docker:true
//!  LaunchTask (DOCKER) ── run::start: image (local; pulled only if forced or missing)
//!        ── create (labels meseta.agent_id/task_id/framework_id, env, limits, network, binds)
//!        ── container id checkpointed in the task dir ── start ── TASK_RUNNING
//!        ── logs (follow) → sandbox stdout/stderr ── wait ── inspect (exit code, OOMKilled)
//!        ── terminal update through Shared::emit ── container removed
//!  KillTask ── run::kill: stop with the task's grace, then kill
//!  agent restart ── run::recover: list by meseta.agent_id label, reattach running ones, report
//!        exited ones, remove orphans
//! ```
//!
//! Modules: [`config`] (the pure task → container configuration), [`run`] (the lifecycle).

pub(crate) mod config;
pub(crate) mod run;

use std::path::Path;

use bollard::Docker;

/// Label naming the agent that created a container.
pub(crate) const LABEL_AGENT: &str = "meseta.agent_id";
/// Label naming the task a container runs.
pub(crate) const LABEL_TASK: &str = "meseta.task_id";
/// Label naming the task's framework.
pub(crate) const LABEL_FRAMEWORK: &str = "meseta.framework_id";

/// Seconds a request to the engine may take (pulls are streamed and not bound by it).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// A Docker engine that answered at agent start.
#[derive(Clone, Debug)]
pub(crate) struct Engine {
    /// The client, at the API version the engine negotiated.
    pub docker: Docker,
}

impl Engine {
    /// Connect to the engine at `socket` and negotiate the API version; `None` (logged) when no
    /// engine answers.
    pub(crate) async fn probe(socket: &Path) -> Option<Engine> {
        let path = socket.to_string_lossy();
        let docker = match Docker::connect_with_unix(
            &path,
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ) {
            Ok(d) => d,
            Err(e) => {
                tracing::info!(socket = %path, error = %e, "no Docker engine: DOCKER tasks are refused");
                return None;
            }
        };
        let docker = match docker.negotiate_version().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(socket = %path, error = %e, "the Docker engine does not answer: DOCKER tasks are refused");
                return None;
            }
        };
        let version = match docker.version().await {
            Ok(v) => v.version.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(socket = %path, error = %e, "the Docker engine does not answer: DOCKER tasks are refused");
                return None;
            }
        };
        tracing::info!(socket = %path, %version, api = ?docker.client_version(), "Docker engine found");
        Some(Engine { docker })
    }
}
