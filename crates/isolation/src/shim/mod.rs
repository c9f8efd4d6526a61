//! The `meseta shim <task_dir>` supervisor and the helpers the agent uses to talk to it.
//!
//! The shim is started detached by the agent ([`command`]), reads `launch.json`, creates the
//! cgroup, spawns the task ([`launch`]), supervises it ([`supervise`]) and writes `exit.json`.
//! It keeps running when the agent dies; the agent finds it again through the pid files.

mod launch;
mod signals;
mod supervise;

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroup::{self, Cgroups};
use crate::{
    fsutil, read_spec, ExitRecord, LaunchSpec, ShimError, EXIT_FILE, SHIM_LOG_FILE, SHIM_PID_FILE,
    TASK_PID_FILE,
};

/// Entry point of `meseta shim <task_dir>`; returns the shim's own exit code.
///
/// Must be called before any other thread exists (the shim forks and uses signal masks).
/// Returns 0 once `exit.json` was written (even for failed launches), 1 otherwise.
pub fn run(task_dir: &Path) -> i32 {
    signals::setup();
    let spec = match read_spec(task_dir) {
        Ok(s) => s,
        Err(e) => return finish_failed(task_dir, None, &format!("cannot read launch spec: {e}")),
    };
    log(&format!(
        "shim for task {} in {}",
        spec.task_id,
        task_dir.display()
    ));
    if let Err(e) = write_pid(&task_dir.join(SHIM_PID_FILE), std::process::id() as i32) {
        log(&format!("cannot write shim.pid: {e}"));
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        log(&format!("cannot become child subreaper: {e}"));
    }
    let cg = match setup_cgroup(&spec) {
        Ok(cg) => cg,
        Err(msg) => return finish_failed(task_dir, None, &msg),
    };
    let cgref = cg.as_deref().map(|c| (c, spec.cgroup.as_str()));
    let child = match launch::spawn(&spec, cgref) {
        Ok(c) => c,
        Err(msg) => return finish_failed(task_dir, cgref, &msg),
    };
    let pid = child.id() as i32;
    if let Err(e) = write_pid(&task_dir.join(TASK_PID_FILE), pid) {
        log(&format!("cannot write task.pid: {e}"));
    }
    say(&format!("running {pid}"));
    let status = supervise::supervise(pid, &spec, cgref);
    let oom_killed = cgref
        .map(|(c, p)| c.oom_killed(p).unwrap_or(false))
        .unwrap_or(false);
    let record = ExitRecord {
        exit_code: status.exit_code,
        signal: status.signal,
        oom_killed,
        error: None,
        finished_at: now(),
    };
    finish(task_dir, cgref, &record)
}

type CgRef<'a> = Option<(&'a dyn Cgroups, &'a str)>;

/// Create the task cgroup (None when the spec disables cgroups with an empty path).
fn setup_cgroup(spec: &LaunchSpec) -> Result<Option<Box<dyn Cgroups>>, String> {
    if spec.cgroup.is_empty() {
        log("cgroup disabled by empty path");
        return Ok(None);
    }
    let cg = cgroup::detect().map_err(|e| format!("cgroup detection failed: {e}"))?;
    cg.create(&spec.cgroup, &spec.limits)
        .map_err(|e| format!("cgroup creation failed: {e}"))?;
    Ok(Some(cg))
}

fn finish_failed(task_dir: &Path, cg: CgRef<'_>, msg: &str) -> i32 {
    log(&format!("launch failed: {msg}"));
    let record = ExitRecord {
        exit_code: None,
        signal: None,
        oom_killed: false,
        error: Some(msg.to_string()),
        finished_at: now(),
    };
    finish(task_dir, cg, &record)
}

/// Kill leftovers, write exit.json, print `exited`, remove the cgroup.
fn finish(task_dir: &Path, cg: CgRef<'_>, record: &ExitRecord) -> i32 {
    if let Some((c, p)) = cg {
        if let Err(e) = c.kill_all(p) {
            log(&format!("kill_all: {e}"));
        }
    }
    supervise::reap_all();
    let path = task_dir.join(EXIT_FILE);
    let written = serde_json::to_vec_pretty(record)
        .map_err(io::Error::other)
        .and_then(|data| fsutil::write_atomic(&path, &data));
    if let Err(e) = &written {
        log(&format!("cannot write {}: {e}", path.display()));
    }
    say("exited");
    if let Some((c, p)) = cg {
        if let Err(e) = c.remove(p) {
            log(&format!("cgroup remove: {e}"));
        }
    }
    log(&format!("done: {record:?}"));
    i32::from(written.is_err())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One line to the agent on stdout; errors (EPIPE when the agent died) are ignored.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Diagnostics to stderr (shim.log); errors are ignored.
fn log(line: &str) {
    let _ = writeln!(io::stderr().lock(), "meseta-shim: {line}");
}

/// Pid files are read by a restarted agent to find live processes; a machine crash takes the
/// processes with it, so they are replaced atomically but not fsynced.
fn write_pid(path: &Path, pid: i32) -> io::Result<()> {
    fsutil::write_replace(path, format!("{pid}\n").as_bytes())
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ShimError {
    let path: PathBuf = path.to_path_buf();
    move |source| ShimError::Io { path, source }
}

fn read_pid(path: &Path) -> Result<i32, ShimError> {
    let content = fs::read_to_string(path).map_err(io_err(path))?;
    match content.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(ShimError::BadPid {
            path: path.to_path_buf(),
            content,
        }),
    }
}

/// A std Command that starts the shim detached in a process group of its own (so Ctrl-C at the
/// agent's terminal and the agent's death don't reach it), stdin null, stdout piped (the
/// "running"/"exited" lines), stderr to `<task_dir>/shim.log`. Without a `pre_exec` hook std
/// starts it with `posix_spawn` (a vfork-like clone): a launch does not copy the agent's page
/// tables, nor make the agent's next writes fault on copy-on-write pages.
pub fn command(meseta_exe: &Path, task_dir: &Path) -> Result<Command, ShimError> {
    let log_path = task_dir.join(SHIM_LOG_FILE);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(io_err(&log_path))?;
    let mut cmd = Command::new(meseta_exe);
    cmd.arg("shim")
        .arg(task_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .process_group(0);
    Ok(cmd)
}

/// Ask a running shim to kill its task: SIGTERM to the shim pid read from `<task_dir>/shim.pid`.
pub fn request_kill(task_dir: &Path) -> Result<(), ShimError> {
    let pid = read_pid(&task_dir.join(SHIM_PID_FILE))?;
    kill(Pid::from_raw(pid), Signal::SIGTERM).map_err(|source| ShimError::Signal { pid, source })
}

/// Read `exit.json` if present.
pub fn read_exit(task_dir: &Path) -> Result<Option<ExitRecord>, ShimError> {
    let path = task_dir.join(EXIT_FILE);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|source| ShimError::Json { path, source })
}

/// Is the shim of this task dir still alive (signal 0 to shim.pid succeeds and its
/// `/proc/<pid>/cmdline` contains "shim")? Zombies and recycled pids count as dead.
pub fn shim_alive(task_dir: &Path) -> bool {
    let Ok(pid) = read_pid(&task_dir.join(SHIM_PID_FILE)) else {
        return false;
    };
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(_) => return false,
    }
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|arg| arg == b"shim"))
        .unwrap_or(false)
}

/// The task pid from `<task_dir>/task.pid`, if written and valid.
pub fn read_task_pid(task_dir: &Path) -> Option<i32> {
    read_pid(&task_dir.join(TASK_PID_FILE)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_and_exit_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_task_pid(dir.path()), None);
        assert!(!shim_alive(dir.path()));
        assert!(read_exit(dir.path()).expect("read").is_none());
        write_pid(&dir.path().join(TASK_PID_FILE), 42).expect("write");
        assert_eq!(read_task_pid(dir.path()), Some(42));
        fs::write(dir.path().join(TASK_PID_FILE), "junk").expect("write");
        assert_eq!(read_task_pid(dir.path()), None);
        let rec = ExitRecord {
            exit_code: Some(3),
            signal: None,
            oom_killed: false,
            error: None,
            finished_at: 1.5,
        };
        fs::write(
            dir.path().join(EXIT_FILE),
            serde_json::to_vec(&rec).expect("json"),
        )
        .expect("write");
        assert_eq!(read_exit(dir.path()).expect("read"), Some(rec));
    }

    #[test]
    fn shim_alive_checks_cmdline() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The test process is alive but its cmdline has no "shim" argument.
        write_pid(&dir.path().join(SHIM_PID_FILE), std::process::id() as i32).expect("write");
        assert!(!shim_alive(dir.path()));
    }

    #[test]
    fn request_kill_without_pid_file_names_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = request_kill(dir.path()).expect_err("no pid");
        assert!(err.to_string().contains("shim.pid"), "{err}");
    }

    #[test]
    fn command_sets_args_and_creates_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cmd = command(Path::new("/usr/bin/meseta"), dir.path()).expect("command");
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args[0], "shim");
        assert_eq!(args[1], dir.path().as_os_str());
        assert!(dir.path().join(SHIM_LOG_FILE).exists());
    }
}
