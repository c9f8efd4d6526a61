//! Watching running tasks until they end, and turning how they ended into a status update.
//!
//! ```text
//!  shim stdout ── "running <pid>" ──▶ TASK_RUNNING (+ start the health checker, crate::health)
//!              ── "exited" / EOF ───▶ read exit.json ──▶ exit_status() ──▶ terminal update
//!  reattached task (agent restarted): poll exit.json / shim_alive every 250 ms
//!  shim gone and no exit.json ──▶ TASK_FAILED (REASON_EXECUTOR_TERMINATED)
//! ```
//!
//! Called by [`crate::tasks`] (launched tasks) and [`crate::recovery`] (reattached ones).

use std::sync::Arc;
use std::time::Duration;

use meseta_api::agent::REASON_HEALTH_CHECK;
use meseta_isolation::{shim, ExitRecord};
use meseta_types::{TaskId, TaskState};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout};

use crate::checkpoint::StateRecord;
use crate::health;
use crate::path_id::PathId;
use crate::state::{plain, Shared};

/// Poll period of reattached tasks.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The terminal state implied by an exit record (pure).
pub(crate) fn exit_status(rec: &ExitRecord, kill_requested: bool, mem_mib: f64) -> StateRecord {
    let failed = |reason: Option<&str>, message: String| StateRecord {
        state: TaskState::Failed,
        reason: reason.map(str::to_string),
        message: Some(message),
        exit_code: rec.exit_code,
        healthy: None,
    };
    if let Some(err) = &rec.error {
        return failed(
            Some("REASON_CONTAINER_LAUNCH_FAILED"),
            format!("Failed to launch the command: {err}"),
        );
    }
    if rec.oom_killed {
        return failed(
            Some("REASON_CONTAINER_LIMITATION_MEMORY"),
            format!("Memory limit exceeded: Requested: {mem_mib}MB"),
        );
    }
    let message = match (rec.exit_code, rec.signal) {
        (Some(code), _) => format!("Command exited with status {code}"),
        (None, Some(sig)) => format!("Command terminated with signal {}", signal_name(sig)),
        (None, None) => "Command ended without an exit status".to_string(),
    };
    let state = if kill_requested {
        TaskState::Killed
    } else if rec.exit_code == Some(0) {
        TaskState::Finished
    } else {
        TaskState::Failed
    };
    StateRecord {
        state,
        reason: None,
        message: Some(message),
        exit_code: rec.exit_code,
        healthy: None,
    }
}

/// The shim vanished without writing `exit.json`.
pub(crate) fn executor_terminated() -> StateRecord {
    StateRecord {
        state: TaskState::Failed,
        reason: Some("REASON_EXECUTOR_TERMINATED".into()),
        message: Some("The task's supervisor (shim) terminated without an exit status".into()),
        exit_code: None,
        healthy: None,
    }
}

/// The terminal update of a task the health checker killed: unhealthy, with Mesos' reason.
pub(crate) fn health_killed(rec: StateRecord, why: String) -> StateRecord {
    StateRecord {
        reason: Some(REASON_HEALTH_CHECK.to_string()),
        message: Some(why),
        healthy: Some(false),
        ..rec
    }
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("{sig}"))
}

/// Follow a shim we spawned: its stdout lines, then its exit.
pub(crate) async fn watch_child(
    shared: Arc<Shared>,
    task_id: TaskId,
    mut child: Child,
    stdout: Option<ChildStdout>,
) {
    let stop = shared.stop.clone();
    let follow = async {
        if let Some(out) = stdout {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("running") {
                    running(&shared, &task_id);
                } else if line.trim() == "exited" {
                    break;
                }
            }
        }
        if let Err(e) = child.wait().await {
            tracing::warn!(task_id = %task_id, error = %e, "waiting for the shim failed");
        }
        finish_when_exited(&shared, &task_id).await;
    };
    tokio::select! {
        () = follow => {}
        () = stop.cancelled() => {}
    }
}

/// Follow a shim that outlived a previous agent process.
pub(crate) async fn watch_reattached(shared: Arc<Shared>, task_id: TaskId) {
    let Some(dir) = shared.task_dir(&task_id) else {
        return;
    };
    if shim::read_task_pid(&dir).is_some() {
        running(&shared, &task_id);
    }
    let stop = shared.stop.clone();
    tokio::select! {
        () = finish_when_exited(&shared, &task_id) => {}
        () = stop.cancelled() => {}
    }
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

/// Mark the task running and start its health checker (if it has a check).
fn running(shared: &Arc<Shared>, task_id: &TaskId) {
    mark_running(shared, task_id);
    health::spawn_checker(shared, task_id);
}

/// Poll until `exit.json` exists or the shim is gone, then emit the terminal update.
async fn finish_when_exited(shared: &Arc<Shared>, task_id: &TaskId) {
    let Some(dir) = shared.task_dir(task_id) else {
        return;
    };
    loop {
        match shim::read_exit(&dir) {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(e) => tracing::warn!(task_id = %task_id, error = %e, "unreadable exit record"),
        }
        if !shim::shim_alive(&dir) {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    finish(shared, task_id);
}

/// Emit the terminal update implied by the task dir (exit.json, or its absence).
pub(crate) fn finish(shared: &Arc<Shared>, task_id: &TaskId) {
    let Some(entry) = shared.task(task_id) else {
        return;
    };
    if entry.record.state.is_terminal() {
        return;
    }
    let Ok(path_id) = PathId::task(task_id) else {
        return;
    };
    let dir = shared.checkpoint.task_dir(&path_id);
    let mut rec = match shim::read_exit(&dir) {
        Ok(Some(exit)) => exit_status(&exit, entry.kill_requested, entry.spec.resources.mem()),
        Ok(None) => executor_terminated(),
        Err(e) => {
            tracing::warn!(task_id = %task_id, error = %e, "unreadable exit record");
            executor_terminated()
        }
    };
    if rec.state == TaskState::Killed {
        if let Some(why) = shared.checkpoint.health_kill(&path_id) {
            rec = health_killed(rec, why);
        }
    }
    let state = rec.state;
    shared.emit(task_id, &entry.spec.framework_id, rec);
    crate::group::member_ended(shared, &entry.spec, state);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: Option<i32>, signal: Option<i32>) -> ExitRecord {
        ExitRecord {
            exit_code: code,
            signal,
            oom_killed: false,
            error: None,
            finished_at: 1.0,
        }
    }

    #[test]
    fn exit_zero_is_finished() {
        let r = exit_status(&exit(Some(0), None), false, 64.0);
        assert_eq!(r.state, TaskState::Finished);
        assert_eq!(r.message.as_deref(), Some("Command exited with status 0"));
        assert_eq!(r.exit_code, Some(0));
    }

    #[test]
    fn non_zero_is_failed_with_code() {
        let r = exit_status(&exit(Some(3), None), false, 64.0);
        assert_eq!(r.state, TaskState::Failed);
        assert_eq!(r.message.as_deref(), Some("Command exited with status 3"));
        assert_eq!(r.exit_code, Some(3));
        assert_eq!(r.reason, None);
    }

    #[test]
    fn signal_after_kill_is_killed_otherwise_failed() {
        let r = exit_status(&exit(None, Some(15)), true, 64.0);
        assert_eq!(r.state, TaskState::Killed);
        let r = exit_status(&exit(None, Some(9)), false, 64.0);
        assert_eq!(r.state, TaskState::Failed);
        assert_eq!(
            r.message.as_deref(),
            Some("Command terminated with signal SIGKILL")
        );
        assert_eq!(r.exit_code, None);
    }

    #[test]
    fn oom_and_launch_error() {
        let mut e = exit(None, Some(9));
        e.oom_killed = true;
        let r = exit_status(&e, false, 32.0);
        assert_eq!(r.state, TaskState::Failed);
        assert_eq!(
            r.reason.as_deref(),
            Some("REASON_CONTAINER_LIMITATION_MEMORY")
        );
        assert!(r
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("Memory limit exceeded: ")));

        let mut e = exit(None, None);
        e.error = Some("exec failed: nope".into());
        let r = exit_status(&e, true, 32.0);
        assert_eq!(r.state, TaskState::Failed);
        assert_eq!(r.reason.as_deref(), Some("REASON_CONTAINER_LAUNCH_FAILED"));
        assert!(r.message.as_deref().is_some_and(|m| m.contains("nope")));
    }

    #[test]
    fn health_kill_keeps_killed_and_marks_unhealthy() {
        let r = exit_status(&exit(None, Some(15)), true, 64.0);
        let r = health_killed(r, "3 failed".into());
        assert_eq!(r.state, TaskState::Killed);
        assert_eq!(r.healthy, Some(false));
        assert_eq!(
            r.reason.as_deref(),
            Some("REASON_TASK_HEALTH_CHECK_STATUS_UPDATED")
        );
        assert_eq!(r.message.as_deref(), Some("3 failed"));
    }

    #[test]
    fn terminated_shim() {
        let r = executor_terminated();
        assert_eq!(r.state, TaskState::Failed);
        assert_eq!(r.reason.as_deref(), Some("REASON_EXECUTOR_TERMINATED"));
    }
}
