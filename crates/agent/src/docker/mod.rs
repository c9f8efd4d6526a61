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
//! Modules: [`config`] (the pure task → container configuration), [`run`] (the lifecycle),
//! [`exec`] (COMMAND health checks inside the container).

pub(crate) mod config;
pub(crate) mod exec;
pub(crate) mod run;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;

use crate::state::Shared;

/// Label naming the agent that created a container.
pub(crate) const LABEL_AGENT: &str = "meseta.agent_id";
/// Label naming the task a container runs.
pub(crate) const LABEL_TASK: &str = "meseta.task_id";
/// Label naming the task's framework.
pub(crate) const LABEL_FRAMEWORK: &str = "meseta.framework_id";

/// Seconds a request to the engine may take (pulls are streamed and not bound by it).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Seconds between probes of the engine ([`watch`]).
const PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a probe may take before the engine counts as gone.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Probe the engine every [`PROBE_INTERVAL`] until the agent stops, keeping
/// [`Shared::docker_up`] current. A change of it makes the connection register again (see
/// `Shared::advertised_changed`), so the master sees `docker:true` come and go; launches check it
/// too and fail with `REASON_CONTAINER_LAUNCH_FAILED` while the engine is gone.
pub(crate) async fn watch(shared: Arc<Shared>, socket: PathBuf) {
    let stop = shared.stop.clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
            () = stop.cancelled() => return,
        }
        let up = match shared.docker.get() {
            Some(engine) => matches!(
                tokio::time::timeout(PROBE_TIMEOUT, engine.docker.ping()).await,
                Ok(Ok(_))
            ),
            None => match tokio::time::timeout(PROBE_TIMEOUT, Engine::probe(&socket)).await {
                Ok(Some(engine)) => shared.docker.set(engine).is_ok(),
                _ => false,
            },
        };
        let was = shared.docker_up.swap(up, Ordering::SeqCst);
        if was != up {
            if up {
                tracing::info!(socket = %socket.display(), "the Docker engine answers again: offering docker:true");
            } else {
                tracing::warn!(socket = %socket.display(), "the Docker engine stopped answering: DOCKER tasks are refused");
            }
        }
    }
}

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
