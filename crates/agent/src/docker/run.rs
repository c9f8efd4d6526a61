//! The lifecycle of a DOCKER task: prepare the image, create and start the container, follow its
//! logs into the sandbox, wait for its exit and report it; kill; reattach after an agent restart.
//!
//! Status updates go through [`Shared::emit`] (checkpointed, resent until acknowledged) and the
//! terminal state is derived by [`crate::monitor::exit_status`] as for exec tasks. The container
//! id is checkpointed in the task dir ([`CONTAINER_FILE`]) before the container starts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{
    CreateImageOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use meseta_api::agent::TaskSpec;
use meseta_isolation::ExitRecord;
use meseta_types::{TaskId, TaskState};
use tokio::io::AsyncWriteExt;

use super::config::{self, Context, CONTAINER_SANDBOX};
use super::Engine;
use crate::checkpoint::StateRecord;
use crate::monitor;
use crate::path_id::PathId;
use crate::state::{now_secs, plain, Shared};
use crate::users::RunAs;

/// The file in the task dir holding the container id.
pub(crate) const CONTAINER_FILE: &str = "container_id";
/// How long the log follower may take to drain after the container ended.
const LOG_DRAIN: Duration = Duration::from_secs(5);
/// Extra time given to `docker stop` beyond the grace period before a plain kill.
const STOP_SLACK: Duration = Duration::from_secs(10);

/// A launch that did not get as far as a running container.
struct Failure {
    reason: &'static str,
    message: String,
}

impl Failure {
    fn launch(message: impl Into<String>) -> Failure {
        Failure {
            reason: "REASON_CONTAINER_LAUNCH_FAILED",
            message: message.into(),
        }
    }
}

/// Whether the task runs through Docker.
pub(crate) fn is_docker(spec: &TaskSpec) -> bool {
    config::docker_container(spec).is_some()
}

/// Launch-time checks of a DOCKER task (run by `tasks::admit`): an engine answers, the container
/// is valid and allowed here.
pub(crate) fn admit(shared: &Shared, spec: &TaskSpec) -> Result<(), String> {
    if shared.docker.get().is_none() {
        return Err(format!(
            "the task needs a Docker engine (image {}) and this agent has none",
            config::image(spec)
        ));
    }
    let c = config::docker_container(spec).ok_or("the task has no DOCKER container")?;
    c.validate().map_err(|e| e.to_string())?;
    if c.docker.as_ref().is_some_and(|d| d.privileged) && !shared.cfg.docker_allow_privileged {
        return Err(config::privileged_refused());
    }
    Ok(())
}

/// Prepare, create and start the container, then follow it to its end.
pub(crate) async fn start(shared: Arc<Shared>, spec: TaskSpec, run_as: RunAs) {
    let task_id = spec.task_id.clone();
    match create_and_start(&shared, &spec, &run_as).await {
        Ok(Some(id)) => supervise(shared, task_id, id, false).await,
        Ok(None) => {}
        Err(f) => {
            tracing::error!(task_id = %task_id, message = %f.message, "container launch failed");
            let rec = StateRecord {
                state: TaskState::Failed,
                reason: Some(f.reason.to_string()),
                message: Some(f.message),
                exit_code: None,
                healthy: None,
            };
            shared.emit(&task_id, &spec.framework_id, rec);
        }
    }
}

/// `Ok(None)`: the task was killed before its container started.
async fn create_and_start(
    shared: &Shared,
    spec: &TaskSpec,
    run_as: &RunAs,
) -> Result<Option<String>, Failure> {
    let engine = shared
        .docker
        .get()
        .filter(|_| shared.docker_answers())
        .ok_or_else(|| Failure::launch(engine_gone(shared)))?;
    let task_dir = shared
        .checkpoint
        .write_task(spec)
        .map_err(|e| Failure::launch(e.to_string()))?;
    let sandbox = task_dir.join("sandbox");
    let owner = (run_as.identity.uid, run_as.identity.gid);
    prepare_sandbox(&sandbox, owner).map_err(Failure::launch)?;
    let mut volumes = Vec::new();
    for v in &spec.volumes {
        volumes.push(
            crate::volumes::for_container(&shared.cfg.work_dir, &spec.role, v, Some(owner))
                .map_err(|e| Failure::launch(e.to_string()))?,
        );
    }
    let agent_id = shared.lock().agent_id.clone().unwrap_or_default();
    let env = crate::tasks::task_env(
        spec,
        Path::new(CONTAINER_SANDBOX),
        &agent_id,
        &shared.hostname,
    );
    let ctx = Context {
        agent_id: agent_id.as_str(),
        sandbox: &sandbox,
        env,
        allow_privileged: shared.cfg.docker_allow_privileged,
        user: (run_as.identity.uid != 0).then_some(owner),
        allow_root: shared.cfg.allow_root,
        volumes,
    };
    let body = config::create_body(spec, &ctx).map_err(|e| Failure::launch(e.0))?;
    let force_pull = config::docker_container(spec)
        .and_then(|c| c.docker.as_ref())
        .is_some_and(|d| d.force_pull_image);
    ensure_image(engine, config::image(spec), force_pull).await?;
    shared.emit(
        &spec.task_id,
        &spec.framework_id,
        plain(TaskState::Starting),
    );
    let created = engine
        .docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .map_err(|e| Failure::launch(format!("cannot create the container: {e}")))?;
    let id = created.id;
    crate::checkpoint::write_atomic(&task_dir.join(CONTAINER_FILE), id.as_bytes())
        .map_err(|e| Failure::launch(e.to_string()))?;
    // A kill that arrived before the id was written is carried out here (see `kill`).
    if shared.task(&spec.task_id).is_some_and(|t| t.kill_requested) {
        remove(engine, &id).await;
        let rec = StateRecord {
            state: TaskState::Killed,
            reason: None,
            message: Some("Killed before the container started".into()),
            exit_code: None,
            healthy: None,
        };
        shared.emit(&spec.task_id, &spec.framework_id, rec);
        return Ok(None);
    }
    if let Err(e) = engine
        .docker
        .start_container(
            &id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
    {
        remove(engine, &id).await;
        return Err(Failure::launch(format!("cannot start the container: {e}")));
    }
    tracing::info!(task_id = %spec.task_id, container = %id, image = %config::image(spec), "container started");
    Ok(Some(id))
}

/// Why a DOCKER task cannot launch while the engine does not answer.
fn engine_gone(shared: &Shared) -> String {
    let socket = shared
        .cfg
        .docker_socket
        .as_ref()
        .map(|s| s.display().to_string())
        .unwrap_or_default();
    format!("the Docker engine at {socket} does not answer: this agent takes no DOCKER tasks until it does")
}

/// The sandbox with empty `stdout`/`stderr`, mode 0750.
fn prepare_sandbox(sandbox: &Path, (uid, gid): (u32, u32)) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| format!("cannot prepare sandbox {}: {e}", sandbox.display());
    std::fs::create_dir_all(sandbox).map_err(fail)?;
    std::fs::set_permissions(sandbox, std::fs::Permissions::from_mode(0o750)).map_err(fail)?;
    // The container runs as the task user: the sandbox is its to write (the log files the agent
    // writes stay the agent's).
    std::os::unix::fs::chown(sandbox, Some(uid), Some(gid)).map_err(fail)?;
    for f in ["stdout", "stderr"] {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sandbox.join(f))
            .map_err(fail)?;
    }
    Ok(())
}

/// Use the local image; pull it when forced or missing. A failed pull of a missing image is
/// `REASON_CONTAINER_PREPARE_FAILED`.
async fn ensure_image(engine: &Engine, image: &str, force_pull: bool) -> Result<(), Failure> {
    let present = engine.docker.inspect_image(image).await.is_ok();
    if present && !force_pull {
        return Ok(());
    }
    let opts = CreateImageOptions {
        from_image: Some(image.to_string()),
        ..CreateImageOptions::default()
    };
    let mut pull = engine.docker.create_image(Some(opts), None, None);
    let mut failed = None;
    while let Some(item) = pull.next().await {
        match item {
            Ok(info) => {
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    failed = Some(e);
                }
            }
            Err(e) => {
                failed = Some(e.to_string());
                break;
            }
        }
    }
    match failed {
        None => Ok(()),
        Some(e) if present => {
            tracing::warn!(%image, error = %e, "forced pull failed: using the local image");
            Ok(())
        }
        Some(e) => Err(Failure {
            reason: "REASON_CONTAINER_PREPARE_FAILED",
            message: format!("image {image} is not on this agent and cannot be pulled: {e}"),
        }),
    }
}

/// Follow a started (or reattached) container: RUNNING, logs into the sandbox, wait, terminal
/// update, removal.
pub(crate) async fn supervise(shared: Arc<Shared>, task_id: TaskId, id: String, reattached: bool) {
    let Some(engine) = shared.docker.get().cloned() else {
        return;
    };
    let Some(entry) = shared.task(&task_id) else {
        return;
    };
    mark_running(&shared, &task_id);
    // HTTP/TCP checks go to the host port, COMMAND checks run in the container (`exec`).
    crate::health::spawn_checker(&shared, &task_id);
    if entry.kill_requested {
        tokio::spawn(stop(engine.clone(), id.clone(), grace(&entry.spec)));
    }
    let sandbox = shared.task_dir(&task_id).map(|d| d.join("sandbox"));
    let logs = sandbox.map(|sb| {
        let since = if reattached { now_secs() as i32 } else { 0 };
        tokio::spawn(follow_logs(engine.clone(), id.clone(), sb, since))
    });
    let stop_token = shared.stop.clone();
    let waited = tokio::select! {
        r = wait_exit(&engine, &id) => Some(r),
        () = stop_token.cancelled() => None,
    };
    let Some(exit) = waited else {
        // The agent is stopping: the container keeps running; a restarted agent reattaches.
        return;
    };
    if let Some(l) = logs {
        let _ = tokio::time::timeout(LOG_DRAIN, l).await;
    }
    report_exit(&shared, &task_id, exit);
    remove(&engine, &id).await;
}

/// Emit `TASK_RUNNING` unless the task already moved past it.
fn mark_running(shared: &Shared, task_id: &TaskId) {
    let Some(entry) = shared.task(task_id) else {
        return;
    };
    if matches!(entry.record.state, TaskState::Staging | TaskState::Starting) {
        shared.emit(task_id, &entry.spec.framework_id, plain(TaskState::Running));
    }
}

/// How a container ended: exit code and OOM flag (`None`: the engine lost it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exit {
    code: Option<i64>,
    oom_killed: bool,
}

/// Wait for the container to stop and read how it ended.
async fn wait_exit(engine: &Engine, id: &str) -> Option<Exit> {
    let opts = WaitContainerOptions {
        condition: "not-running".to_string(),
    };
    let mut wait = engine.docker.wait_container(id, Some(opts));
    // A non-zero exit arrives as an error item; either way the container stopped (or is gone).
    let _ = wait.next().await;
    inspect_exit(engine, id).await
}

/// The exit of a stopped container (`None` when it cannot be inspected).
async fn inspect_exit(engine: &Engine, id: &str) -> Option<Exit> {
    let info = engine
        .docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .ok()?;
    let st = info.state?;
    Some(Exit {
        code: st.exit_code,
        oom_killed: st.oom_killed.unwrap_or(false),
    })
}

/// Emit the terminal update of an ended container.
fn report_exit(shared: &Shared, task_id: &TaskId, exit: Option<Exit>) {
    let Some(entry) = shared.task(task_id) else {
        return;
    };
    if entry.record.state.is_terminal() {
        return;
    }
    let mut rec = match exit {
        Some(e) => {
            let code = e.code.and_then(|c| i32::try_from(c).ok());
            let r = ExitRecord {
                exit_code: code,
                signal: None,
                oom_killed: e.oom_killed,
                error: None,
                finished_at: now_secs(),
            };
            let mut rec =
                monitor::exit_status(&r, entry.kill_requested, entry.spec.resources.mem());
            if rec.state == TaskState::Failed && rec.reason.is_none() {
                rec.message = Some(format!(
                    "Container exited with status {}",
                    code.unwrap_or(-1)
                ));
            }
            rec
        }
        None => StateRecord {
            state: TaskState::Failed,
            reason: Some("REASON_EXECUTOR_TERMINATED".into()),
            message: Some("The task's container is gone without an exit status".into()),
            exit_code: None,
            healthy: None,
        },
    };
    if rec.state == TaskState::Killed {
        if let Some(why) = PathId::task(task_id)
            .ok()
            .and_then(|p| shared.checkpoint.health_kill(&p))
        {
            rec = monitor::health_killed(rec, why);
        }
    }
    shared.emit(task_id, &entry.spec.framework_id, rec);
}

/// Append the container's stdout/stderr to the sandbox files until it ends.
async fn follow_logs(engine: Engine, id: String, sandbox: std::path::PathBuf, since: i32) {
    let mut options = tokio::fs::OpenOptions::new();
    // The sandbox is the task user's: never follow a link it put in place of a log file.
    options
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW);
    let (out, err) = (
        options.open(sandbox.join("stdout")).await,
        options.open(sandbox.join("stderr")).await,
    );
    let (Ok(mut out), Ok(mut err)) = (out, err) else {
        tracing::warn!(container = %id, sandbox = %sandbox.display(), "cannot open the sandbox logs");
        return;
    };
    let opts = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        since,
        ..LogsOptions::default()
    };
    let mut logs = engine.docker.logs(&id, Some(opts));
    while let Some(item) = logs.next().await {
        let written = match item {
            Ok(bollard::container::LogOutput::StdErr { message }) => err.write_all(&message).await,
            Ok(bollard::container::LogOutput::StdOut { message })
            | Ok(bollard::container::LogOutput::Console { message }) => {
                out.write_all(&message).await
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(container = %id, error = %e, "log stream ended");
                break;
            }
        };
        if let Err(e) = written {
            tracing::warn!(container = %id, error = %e, "cannot write the sandbox logs");
            break;
        }
    }
    let _ = out.flush().await;
    let _ = err.flush().await;
}

/// The task's kill grace.
fn grace(spec: &TaskSpec) -> Duration {
    let g = spec
        .kill_grace_secs
        .filter(|g| g.is_finite() && *g >= 0.0)
        .unwrap_or(crate::tasks::DEFAULT_KILL_GRACE_SECS);
    Duration::from_secs_f64(g)
}

/// Handle `KillTask` of a DOCKER task (the kill marker is already persisted): stop its container
/// with the task's grace period, then kill it. Before the container id is written, the launch
/// sees the flag and removes it instead.
pub(crate) fn kill(shared: &Shared, task_id: &TaskId) {
    let Some(engine) = shared.docker.get().cloned() else {
        return;
    };
    let Some(entry) = shared.task(task_id) else {
        return;
    };
    let Some(id) = shared
        .task_dir(task_id)
        .and_then(|d| std::fs::read_to_string(d.join(CONTAINER_FILE)).ok())
    else {
        return;
    };
    tokio::spawn(stop(engine, id.trim().to_string(), grace(&entry.spec)));
}

/// `docker stop -t <grace>`, then `docker kill` if it is still not done.
async fn stop(engine: Engine, id: String, grace: Duration) {
    let secs = i32::try_from(grace.as_secs_f64().ceil() as i64).unwrap_or(i32::MAX);
    let opts = StopContainerOptions {
        t: Some(secs),
        signal: None,
    };
    let stopped = tokio::time::timeout(
        grace + STOP_SLACK,
        engine.docker.stop_container(&id, Some(opts)),
    )
    .await;
    match stopped {
        Ok(Ok(())) => {}
        Ok(Err(DockerError::DockerResponseServerError {
            status_code: 304, ..
        })) => {}
        other => {
            tracing::warn!(container = %id, result = ?other.map(|r| r.err()), "stop failed: killing");
            let opts = KillContainerOptions {
                signal: "SIGKILL".to_string(),
            };
            let _ = engine.docker.kill_container(&id, Some(opts)).await;
        }
    }
}

/// Remove a container (and its anonymous volumes); errors are logged.
async fn remove(engine: &Engine, id: &str) {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..RemoveContainerOptions::default()
    };
    if let Err(e) = engine.docker.remove_container(id, Some(opts)).await {
        tracing::warn!(container = %id, error = %e, "cannot remove the container");
    }
}

/// After an agent restart: reattach to the running containers of the DOCKER tasks in `tasks`
/// (not terminal in the checkpoints), report those that ended meanwhile, fail those whose
/// container is gone, and remove every other container labelled with this agent's id.
pub(crate) async fn recover(shared: Arc<Shared>, tasks: Vec<TaskId>) {
    let Some(engine) = shared.docker.get().cloned() else {
        for t in &tasks {
            gone(
                &shared,
                t,
                "the Docker engine does not answer since the agent restarted",
            );
        }
        return;
    };
    let Some(agent_id) = shared.lock().agent_id.clone() else {
        return;
    };
    let mut filters = std::collections::HashMap::new();
    filters.insert(
        "label".to_string(),
        vec![format!("{}={agent_id}", super::LABEL_AGENT)],
    );
    let opts = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..ListContainersOptions::default()
    };
    let listed = match engine.docker.list_containers(Some(opts)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot list the agent's containers");
            Vec::new()
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    for c in listed {
        let Some(id) = c.id.clone() else { continue };
        let task = c
            .labels
            .as_ref()
            .and_then(|l| l.get(super::LABEL_TASK))
            .map(|t| TaskId::new(t.as_str()));
        let known = task.as_ref().filter(|t| tasks.contains(t)).cloned();
        let Some(task_id) = known else {
            tracing::info!(container = %id, task = ?task, "removing orphan container");
            remove(&engine, &id).await;
            continue;
        };
        seen.insert(task_id.clone());
        let running = matches!(
            c.state,
            Some(ContainerSummaryStateEnum::RUNNING) | Some(ContainerSummaryStateEnum::PAUSED)
        );
        if running {
            tracing::info!(task_id = %task_id, container = %id, "reattaching to running container");
            tokio::spawn(supervise(Arc::clone(&shared), task_id, id, true));
        } else if c.state == Some(ContainerSummaryStateEnum::CREATED) {
            // Created by a launch that never started it.
            remove(&engine, &id).await;
            gone(
                &shared,
                &task_id,
                "the agent restarted before the container started",
            );
        } else {
            tracing::info!(task_id = %task_id, container = %id, "container ended while the agent was down");
            if let Some(dir) = shared.task_dir(&task_id) {
                let sb = dir.join("sandbox");
                // Whatever the container wrote since the agent went down.
                let _ = tokio::time::timeout(
                    LOG_DRAIN,
                    follow_logs(engine.clone(), id.clone(), sb, logs_since(&dir)),
                )
                .await;
            }
            let exit = inspect_exit(&engine, &id).await;
            report_exit(&shared, &task_id, exit);
            remove(&engine, &id).await;
        }
    }
    for t in tasks.iter().filter(|t| !seen.contains(*t)) {
        gone(&shared, t, "the task's container is gone");
    }
}

/// Seconds since the epoch when the sandbox stdout was last written (0: everything).
fn logs_since(task_dir: &Path) -> i32 {
    std::fs::metadata(task_dir.join("sandbox").join("stdout"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i32)
        .unwrap_or(0)
}

/// `TASK_FAILED` for a DOCKER task whose container cannot be found.
fn gone(shared: &Shared, task_id: &TaskId, why: &str) {
    let Some(entry) = shared.task(task_id) else {
        return;
    };
    if entry.record.state.is_terminal() {
        return;
    }
    let state = if entry.kill_requested {
        TaskState::Killed
    } else {
        TaskState::Failed
    };
    let rec = StateRecord {
        state,
        reason: Some("REASON_EXECUTOR_TERMINATED".into()),
        message: Some(why.to_string()),
        exit_code: None,
        healthy: None,
    };
    shared.emit(task_id, &entry.spec.framework_id, rec);
}
