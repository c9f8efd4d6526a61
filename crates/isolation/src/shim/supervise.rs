//! The shim's supervision loop: reap children, turn SIGTERM/SIGINT into a graceful kill of the
//! task (SIGTERM to its process group, SIGKILL to the whole cgroup after the grace period).

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{log, signals, CgRef};
use crate::LaunchSpec;

/// Longest sleep between two checks of the child.
const POLL: Duration = Duration::from_millis(100);

/// How the main task process ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Status {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
}

/// Reap every exited child; returns the status of `main` if it was among them.
fn reap(main: i32) -> Option<Status> {
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == main => {
                found = Some(Status {
                    exit_code: Some(code),
                    signal: None,
                });
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == main => {
                found = Some(Status {
                    exit_code: None,
                    signal: Some(sig as i32),
                });
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}

/// Reap whatever children are left (orphans adopted as subreaper).
pub(super) fn reap_all() {
    let _ = reap(-1);
}

/// Supervise task `pid` until it exits; handles kill requests. Returns its status.
pub(super) fn supervise(pid: i32, spec: &LaunchSpec, cg: CgRef<'_>) -> Status {
    let mut kill_deadline: Option<Instant> = None;
    let mut killed = false;
    loop {
        if let Some(status) = reap(pid) {
            return status;
        }
        if !killed && kill_deadline.is_some_and(|d| Instant::now() >= d) {
            log("grace period over: SIGKILL to everything");
            hard_kill(pid, cg);
            killed = true;
        }
        let timeout = match kill_deadline {
            Some(d) if !killed => d.saturating_duration_since(Instant::now()).min(POLL),
            _ => POLL,
        };
        let sig = signals::wait(timeout);
        if matches!(sig, Some(libc::SIGTERM) | Some(libc::SIGINT)) && kill_deadline.is_none() {
            log(&format!("kill requested: SIGTERM to process group {pid}"));
            let _ = kill(Pid::from_raw(-pid), Signal::SIGTERM);
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            let grace = Duration::try_from_secs_f64(spec.kill_grace_secs.max(0.0))
                .unwrap_or(Duration::ZERO);
            kill_deadline = Some(Instant::now() + grace);
        }
    }
}

fn hard_kill(pid: i32, cg: CgRef<'_>) {
    let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    if let Some((c, path)) = cg {
        if let Err(e) = c.kill_all(path) {
            log(&format!("kill_all: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reap_unknown_pid_returns_none() {
        // No child of ours has this pid; reap must not block or invent a status.
        assert_eq!(reap(i32::MAX), None);
    }
}
