//! Health checks of running tasks (Mesos `HealthCheck`: HTTP, TCP or COMMAND).
//!
//! ```text
//!  task RUNNING (or reattached) ─▶ spawn_checker ─▶ wait delay_seconds (from the task's start)
//!     └─ every interval_seconds: check (bounded by timeout_seconds) ─▶ Tracker::observe
//!          health changed ─▶ TASK_RUNNING {healthy, reason REASON_TASK_HEALTH_CHECK_STATUS_UPDATED}
//!          consecutive_failures in a row ─▶ health_kill marker + tasks::kill
//!                                           ─▶ TASK_KILLED {healthy: false} (see monitor::finish)
//! ```
//!
//! Failures within `grace_period_seconds` of the start are ignored until the first success. Updates
//! go through [`Shared::emit_if`] (checkpointed, resent until acknowledged) and only while the task
//! is still running. A restarted agent restarts the checker of each reattached task, keeping the
//! last reported health (from the task's recorded state) so it does not report it twice.
//!
//! DOCKER tasks: COMMAND checks run inside the container (`docker exec`, see
//! `docker::exec`); HTTP/TCP checks go to the loopback address at the check's port, which the
//! scheduler sets to the task's host port: the published `hostPort` of a BRIDGE container (the
//! engine forwards it to the `containerPort`) or the port itself for HOST networking, where the
//! container shares the agent's network namespace.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meseta_api::agent::{
    HealthCheck, HealthCheckKind, HealthCommand, HttpCheck, REASON_HEALTH_CHECK,
};
use meseta_isolation::LaunchSpec;
use meseta_types::{TaskId, TaskState};

use crate::checkpoint::StateRecord;
use crate::http_client::{self, Tls};
use crate::path_id::PathId;
use crate::state::Shared;
use crate::tasks;

/// What one check observed: healthy or not, and a message saying why.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Outcome {
    /// The check passed.
    pub ok: bool,
    /// E.g. `HTTP GET http://127.0.0.1:31001/health returned 500`.
    pub message: String,
}

/// What the checker does after an observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    /// Report this new health.
    pub report: Option<bool>,
    /// Kill the task (too many failures in a row).
    pub kill: bool,
}

/// The health state machine of one task (pure).
#[derive(Clone, Debug)]
pub(crate) struct Tracker {
    /// Last reported health (`None`: unknown).
    pub healthy: Option<bool>,
    /// Failures in a row (outside the grace period).
    pub failures: u32,
    /// A check passed at least once (ends the grace period early).
    pub succeeded: bool,
    /// Failures in a row that kill the task; 0 never kills.
    pub max_failures: u32,
}

impl Tracker {
    /// A tracker starting from the last reported health.
    pub fn new(healthy: Option<bool>, max_failures: u32) -> Tracker {
        Tracker {
            healthy,
            failures: 0,
            succeeded: healthy.is_some(),
            max_failures,
        }
    }

    /// Record one check result; `in_grace`: still within the grace period of the start.
    pub fn observe(&mut self, ok: bool, in_grace: bool) -> Step {
        if ok {
            self.failures = 0;
            self.succeeded = true;
            let report = (self.healthy != Some(true)).then_some(true);
            self.healthy = Some(true);
            return Step {
                report,
                kill: false,
            };
        }
        if in_grace && !self.succeeded {
            return Step {
                report: None,
                kill: false,
            };
        }
        self.failures = self.failures.saturating_add(1);
        let report = (self.healthy != Some(false)).then_some(false);
        self.healthy = Some(false);
        Step {
            report,
            kill: self.max_failures > 0 && self.failures >= self.max_failures,
        }
    }
}

/// Start the health checker of `task_id` if it has a check and none runs yet.
pub(crate) fn spawn_checker(shared: &Arc<Shared>, task_id: &TaskId) {
    let Some(entry) = shared.task(task_id) else {
        return;
    };
    let Some(check) = entry.spec.health_check.clone() else {
        return;
    };
    if entry.record.state.is_terminal() || !shared.lock().health_checkers.insert(task_id.clone()) {
        return;
    }
    let shared = Arc::clone(shared);
    let task_id = task_id.clone();
    tokio::spawn(async move {
        let stop = shared.stop.clone();
        tokio::select! {
            () = run(&shared, &task_id, &check, entry.record.healthy) => {}
            () = stop.cancelled() => {}
        }
        shared.lock().health_checkers.remove(&task_id);
    });
}

/// When the task's process started (`task.pid` is written then; for a DOCKER task the container
/// id, just before the container starts); now if unknown.
fn started_at(task_dir: &Path) -> SystemTime {
    [
        meseta_isolation::TASK_PID_FILE,
        crate::docker::run::CONTAINER_FILE,
    ]
    .iter()
    .find_map(|f| {
        std::fs::metadata(task_dir.join(f))
            .and_then(|m| m.modified())
            .ok()
    })
    .unwrap_or_else(SystemTime::now)
}

/// Where a COMMAND check runs: on the host with the task's launch spec, or in a container.
pub(crate) enum Runner {
    /// A process on the host (exec tasks).
    Host(Option<LaunchSpec>),
    /// `docker exec` in this container.
    Container {
        /// The engine running it.
        engine: crate::docker::Engine,
        /// The container id.
        id: String,
    },
}

/// The runner of `task_id`'s COMMAND checks.
fn runner(shared: &Shared, task_id: &TaskId, dir: &Path) -> Runner {
    let docker = shared
        .task(task_id)
        .is_some_and(|t| crate::docker::run::is_docker(&t.spec));
    if !docker {
        return Runner::Host(meseta_isolation::read_spec(dir).ok());
    }
    let id = std::fs::read_to_string(dir.join(crate::docker::run::CONTAINER_FILE))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    match shared.docker.get() {
        Some(engine) => Runner::Container {
            engine: engine.clone(),
            id,
        },
        None => Runner::Host(None),
    }
}

/// Run one check of a task, COMMAND checks through `runner`.
async fn check_with(check: &HealthCheck, runner: &Runner) -> Outcome {
    match (runner, check.kind, &check.command) {
        (Runner::Container { engine, id }, HealthCheckKind::Command, Some(c)) => {
            crate::docker::exec::command_check(engine, id, c, &describe(check)).await
        }
        (Runner::Host(launch), _, _) => check_once(check, launch.as_ref()).await,
        (Runner::Container { .. }, _, _) => check_once(check, None).await,
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// Whether the checker should go on: the task runs and no kill was requested.
fn still_running(shared: &Shared, task_id: &TaskId) -> bool {
    shared
        .task(task_id)
        .is_some_and(|t| t.record.state == TaskState::Running && !t.kill_requested)
}

async fn run(shared: &Arc<Shared>, task_id: &TaskId, check: &HealthCheck, last: Option<bool>) {
    let Ok(path_id) = PathId::task(task_id) else {
        return;
    };
    let dir = shared.checkpoint.task_dir(&path_id);
    let start = started_at(&dir);
    let since_start = || SystemTime::now().duration_since(start).unwrap_or_default();
    let delay = secs(check.delay_seconds).saturating_sub(since_start());
    tokio::time::sleep(delay).await;
    let runner = runner(shared, task_id, &dir);
    let mut tracker = Tracker::new(last, check.consecutive_failures);
    let interval = secs(check.interval_seconds).max(Duration::from_millis(10));
    let timeout = secs(check.timeout_seconds).max(Duration::from_millis(10));
    tracing::info!(task_id = %task_id, kind = ?check.kind, "health checking started");
    while still_running(shared, task_id) {
        let outcome = match tokio::time::timeout(timeout, check_with(check, &runner)).await {
            Ok(o) => o,
            Err(_) => Outcome {
                ok: false,
                message: format!("{} timed out after {timeout:?}", describe(check)),
            },
        };
        let in_grace = since_start() < secs(check.grace_period_seconds);
        let step = tracker.observe(outcome.ok, in_grace);
        tracing::debug!(task_id = %task_id, ok = outcome.ok, message = %outcome.message,
            failures = tracker.failures, "health check");
        if let Some(healthy) = step.report {
            let Some(entry) = shared.task(task_id) else {
                return;
            };
            let rec = StateRecord {
                state: TaskState::Running,
                reason: Some(REASON_HEALTH_CHECK.to_string()),
                message: Some(outcome.message.clone()),
                exit_code: None,
                healthy: Some(healthy),
            };
            let emitted = shared.emit_if(task_id, &entry.spec.framework_id, rec, |e| {
                e.record.state == TaskState::Running && !e.kill_requested
            });
            if !emitted {
                return;
            }
        }
        if step.kill {
            let why = format!(
                "Task killed after {} consecutive failed health checks: {}",
                tracker.failures, outcome.message
            );
            tracing::warn!(task_id = %task_id, %why, "killing unhealthy task");
            if let Err(e) = shared.checkpoint.mark_health_kill(&path_id, &why) {
                tracing::warn!(task_id = %task_id, error = %e, "cannot persist health kill");
            }
            tasks::kill(shared, task_id, None);
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

/// `HTTP GET http://127.0.0.1:31001/health`, `TCP connect to 127.0.0.1:31001`, `Command 'x'`.
fn describe(check: &HealthCheck) -> String {
    match check.kind {
        HealthCheckKind::Http => match &check.http {
            Some(h) => format!("HTTP GET {}", http_url(h)),
            None => "HTTP GET".to_string(),
        },
        HealthCheckKind::Tcp => match &check.tcp {
            Some(t) => format!("TCP connect to 127.0.0.1:{}", t.port),
            None => "TCP connect".to_string(),
        },
        HealthCheckKind::Command => match &check.command {
            Some(c) => format!("Command '{}'", c.value),
            None => "Command".to_string(),
        },
    }
}

fn http_url(h: &HttpCheck) -> String {
    let path = if h.path.starts_with('/') {
        h.path.clone()
    } else {
        format!("/{}", h.path)
    };
    format!("{}://127.0.0.1:{}{path}", h.scheme, h.port)
}

/// Run one check (the caller bounds it with the timeout).
pub(crate) async fn check_once(check: &HealthCheck, launch: Option<&LaunchSpec>) -> Outcome {
    let what = describe(check);
    let fail = |message: String| Outcome { ok: false, message };
    match check.kind {
        HealthCheckKind::Http => {
            let Some(h) = &check.http else {
                return fail(format!("{what}: no http settings"));
            };
            let uri: hyper::Uri = match http_url(h).parse() {
                Ok(u) => u,
                Err(e) => return fail(format!("{what}: invalid URL: {e}")),
            };
            match http_client::get(&uri, Tls::Insecure).await {
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    let ok = if h.statuses.is_empty() {
                        (200..=399).contains(&code)
                    } else {
                        h.statuses.contains(&u32::from(code))
                    };
                    Outcome {
                        ok,
                        message: format!("{what} returned {code}"),
                    }
                }
                Err(e) => fail(format!("{what} failed: {e}")),
            }
        }
        HealthCheckKind::Tcp => {
            let Some(t) = &check.tcp else {
                return fail(format!("{what}: no tcp settings"));
            };
            let port = u16::try_from(t.port).unwrap_or(0);
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(_) => Outcome {
                    ok: true,
                    message: format!("{what} succeeded"),
                },
                Err(e) => fail(format!("{what} failed: {e}")),
            }
        }
        HealthCheckKind::Command => match &check.command {
            Some(c) => run_command(c, launch, &what).await,
            None => fail(format!("{what}: no command")),
        },
    }
}

/// Run a COMMAND check in the task's sandbox with its environment and user; killed (its whole
/// process group) when the caller's timeout drops it.
async fn run_command(c: &HealthCommand, launch: Option<&LaunchSpec>, what: &str) -> Outcome {
    let fail = |message: String| Outcome { ok: false, message };
    let mut cmd = if c.shell {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c").arg(&c.value);
        cmd
    } else {
        let mut cmd = tokio::process::Command::new(&c.value);
        if let Some((argv0, rest)) = c.arguments.split_first() {
            cmd.arg0(argv0).args(rest);
        }
        cmd
    };
    cmd.env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut has_path = false;
    if let Some(l) = launch {
        cmd.current_dir(&l.sandbox);
        for (k, v) in &l.env {
            has_path |= k == "PATH";
            cmd.env(k, v);
        }
        if let Some(user) = &l.user {
            match meseta_isolation::user::lookup(user) {
                Ok((uid, gid)) => {
                    cmd.uid(uid).gid(gid);
                }
                Err(e) => return fail(format!("{what}: {e}")),
            }
        }
    }
    if !has_path {
        cmd.env("PATH", meseta_isolation::DEFAULT_PATH);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("{what} could not start: {e}")),
    };
    let guard = GroupKill(child.id());
    let status = child.wait().await;
    std::mem::forget(guard);
    match status {
        Ok(s) if s.success() => Outcome {
            ok: true,
            message: format!("{what} succeeded"),
        },
        Ok(s) => match s.code() {
            Some(code) => fail(format!("{what} exited with status {code}")),
            None => fail(format!("{what} was terminated by a signal")),
        },
        Err(e) => fail(format!("{what} could not be waited for: {e}")),
    }
}

/// SIGKILLs a check's process group when dropped (the check timed out); defused by `forget`.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
