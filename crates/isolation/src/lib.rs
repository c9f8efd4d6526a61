//! Task isolation for meseta agents: cgroups v1/v2 control, sandbox setup, user lookup and the
//! `meseta shim` supervisor process.
//!
//! The agent writes a [`LaunchSpec`] into a task directory ([`write_spec`]) and starts
//! `meseta shim <task_dir>` (see [`shim::command`]). The shim creates the cgroup, spawns the task,
//! supervises it independently of the agent and finally writes an [`ExitRecord`] to
//! `<task_dir>/exit.json`. The agent reads results back with the helpers in [`shim`].
//!
//! This is the only meseta crate allowed to use `unsafe`; every block carries a `// SAFETY:` note.

// fork/exec plumbing (pre_exec, setgroups, sigtimedwait) needs unsafe; each block is justified.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cgroup;
mod error;
mod fsutil;
pub mod sandbox;
pub mod shim;
pub mod user;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use cgroup::CgroupError;
pub use error::{IsolationError, ShimError};
pub use fsutil::spread_subdirectories;

/// Name of the launch spec file inside a task directory.
pub const LAUNCH_FILE: &str = "launch.json";
/// Name of the exit record file inside a task directory.
pub const EXIT_FILE: &str = "exit.json";
/// Name of the shim pid file inside a task directory.
pub const SHIM_PID_FILE: &str = "shim.pid";
/// Name of the task pid file inside a task directory.
pub const TASK_PID_FILE: &str = "task.pid";
/// Name of the shim diagnostics log inside a task directory.
pub const SHIM_LOG_FILE: &str = "shim.log";
/// `PATH` given to tasks whose environment does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything the shim needs to launch one task; written by the agent as `launch.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LaunchSpec {
    /// Task id (for logs).
    pub task_id: String,
    /// What to execute.
    pub command: CommandSpec,
    /// Exact environment of the task (plus a default `PATH` when absent).
    pub env: Vec<(String, String)>,
    /// Run as this user (supplementary groups, gid and uid); the sandbox is chowned to it.
    pub user: Option<String>,
    /// Working directory of the task; holds its `stdout` and `stderr` files.
    pub sandbox: PathBuf,
    /// Resource limits applied through the cgroup.
    pub limits: Limits,
    /// Relative cgroup path, e.g. `meseta/<agent-id>/<task-id>`. Empty disables cgroups.
    pub cgroup: String,
    /// Seconds between SIGTERM and SIGKILL of everything in the cgroup on a kill request.
    pub kill_grace_secs: f64,
}

/// The command of a task, Mesos style.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CommandSpec {
    /// `true`: run `/bin/sh -c <value>`; `false`: `execvp(value, arguments)`.
    pub shell: bool,
    /// Shell command line or executable.
    pub value: String,
    /// argv when `shell` is false (`arguments[0]` is argv\[0\] if given).
    pub arguments: Vec<String>,
}

/// Resource limits of a task.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// CPU share/quota in cores.
    pub cpus: f64,
    /// Memory limit in MiB.
    pub mem_mib: u64,
    /// Maximum number of processes, if limited.
    pub pids: Option<u64>,
}

/// How a task ended; written by the shim as `exit.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExitRecord {
    /// Exit code if the task exited normally.
    pub exit_code: Option<i32>,
    /// Terminating signal if the task was killed by a signal.
    pub signal: Option<i32>,
    /// Whether the kernel OOM killer fired in the task's cgroup.
    pub oom_killed: bool,
    /// Launch failure (exec failed, unknown user, ...).
    pub error: Option<String>,
    /// Unix seconds when the shim saw the task end.
    pub finished_at: f64,
}

/// Atomically write `spec` as `<task_dir>/launch.json` (tmp file, rename). Not fsynced: the shim
/// reads it right away, and after a machine crash there is no task left to supervise.
pub fn write_spec(task_dir: &Path, spec: &LaunchSpec) -> Result<(), IsolationError> {
    let path = task_dir.join(LAUNCH_FILE);
    let data = serde_json::to_vec_pretty(spec).map_err(|source| IsolationError::Json {
        path: path.clone(),
        source,
    })?;
    fsutil::write_replace(&path, &data).map_err(|source| IsolationError::Io { path, source })
}

/// Read `<task_dir>/launch.json`.
pub fn read_spec(task_dir: &Path) -> Result<LaunchSpec, IsolationError> {
    let path = task_dir.join(LAUNCH_FILE);
    let data = std::fs::read(&path).map_err(|source| IsolationError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&data).map_err(|source| IsolationError::Json { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LaunchSpec {
        LaunchSpec {
            task_id: "t1".into(),
            command: CommandSpec {
                shell: true,
                value: "echo hi".into(),
                arguments: vec![],
            },
            env: vec![("A".into(), "b".into())],
            user: None,
            sandbox: PathBuf::from("/tmp/x"),
            limits: Limits {
                cpus: 0.5,
                mem_mib: 64,
                pids: Some(10),
            },
            cgroup: "meseta/a/t1".into(),
            kill_grace_secs: 2.0,
        }
    }

    #[test]
    fn spec_roundtrip() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_spec(dir.path(), &spec()).expect("write");
        assert_eq!(read_spec(dir.path()).expect("read"), spec());
        assert!(!dir.path().join("launch.json.tmp").exists());
    }

    #[test]
    fn read_spec_missing_names_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = read_spec(dir.path()).expect_err("missing");
        assert!(err.to_string().contains("launch.json"), "{err}");
    }
}
