//! A process running inside a lab host's network namespace ([`Host::spawn`](super::Host::spawn)).
//!
//! It is started as `ip netns exec NS PROGRAM ARGS…`: `ip` enters the namespace and `exec`s the
//! program, so the pid is the program's own. It leads a new process group, stdin is `/dev/null`,
//! stdout and stderr are appended to the log file given. Dropping a [`Proc`] kills its group.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// A process in a lab host; killed (with its process group) on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    program: String,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    pub(super) fn spawn<I, S>(
        netns: &str,
        program: &OsStr,
        args: I,
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<Proc>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open log {}", log.display()))?;
        let err = out.try_clone().context("clone log handle")?;
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawn {} in {netns}", program.to_string_lossy()))?;
        Ok(Proc {
            child,
            program: program.to_string_lossy().into_owned(),
            log: log.to_owned(),
            exited: None,
        })
    }

    /// The process id (the program's own: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file its stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Send SIGKILL (to the process alone, like `kill -9 PID`: children it made in other process
    /// groups or sessions keep running) and wait until it is gone.
    pub fn kill9(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal(Signal::SIGKILL)?;
        self.wait_exit(Duration::from_secs(10))
            .with_context(|| format!("{} did not die of SIGKILL", self.program))
    }

    /// Send SIGTERM; does not wait (see [`Proc::wait_exit`]).
    pub fn term(&mut self) -> anyhow::Result<()> {
        self.signal(Signal::SIGTERM)
    }

    /// Wait up to `timeout` for the process to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.poll() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.poll().is_none()
    }

    /// The last lines of the log, to put into a test failure.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn poll(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    fn signal(&mut self, sig: Signal) -> anyhow::Result<()> {
        if self.poll().is_some() {
            return Ok(());
        }
        kill(self.pid_t(), sig).with_context(|| format!("{sig} to {}", self.program))
    }

    fn pid_t(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited.is_some() {
            // Reaped: its pid may belong to a stranger by now; the lab's teardown kills whatever
            // else is left in the namespace.
            return;
        }
        // Not reaped yet, so the pid (and the group id it leads) is still ours, zombie or not.
        // The group too: helpers it started in its own group go with it.
        let _ = killpg(self.pid_t(), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
