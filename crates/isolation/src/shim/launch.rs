//! Task spawning for the shim: sandbox and output files, user resolution, and the fork with an
//! async-signal-safe `pre_exec` that joins the cgroup, starts a process group and drops
//! privileges.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{chown, fchown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::CgRef;
use crate::{sandbox, user, LaunchSpec, DEFAULT_PATH};

/// Resolved identity for the task (all lookups done before fork).
struct Ids {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

fn resolve_user(name: &str) -> Result<Ids, String> {
    let (uid, gid) = user::lookup(name).map_err(|e| e.to_string())?;
    let groups = user::groups(name, gid).map_err(|e| e.to_string())?;
    Ok(Ids { uid, gid, groups })
}

/// Create the sandbox (owned by the task user, mode 0750) and open its `stdout`/`stderr` for
/// appending. The sandbox may already hold fetched files: a `stdout` or `stderr` that is a
/// symbolic link is refused rather than followed, and ownership is changed on the opened files.
fn prepare_sandbox(sandbox: &Path, ids: Option<&Ids>) -> Result<(File, File), String> {
    fs::create_dir_all(sandbox)
        .map_err(|e| format!("cannot create sandbox {}: {e}", sandbox.display()))?;
    let open = |name: &str| {
        sandbox::open_beneath(
            sandbox,
            Path::new(name),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND,
            Mode::from_bits_truncate(0o640),
        )
        .map_err(|e| format!("cannot open {}: {e}", sandbox.join(name).display()))
    };
    let (out, err) = (open("stdout")?, open("stderr")?);
    if let Some(ids) = ids {
        chown(sandbox, Some(ids.uid), Some(ids.gid))
            .map_err(|e| format!("cannot chown {}: {e}", sandbox.display()))?;
        for (f, name) in [(&out, "stdout"), (&err, "stderr")] {
            fchown(f, Some(ids.uid), Some(ids.gid))
                .map_err(|e| format!("cannot chown {}: {e}", sandbox.join(name).display()))?;
        }
    }
    fs::set_permissions(sandbox, fs::Permissions::from_mode(0o750))
        .map_err(|e| format!("cannot chmod {}: {e}", sandbox.display()))?;
    Ok((out, err))
}

/// Build the command line and environment (no stdio, no pre_exec yet).
fn build_command(spec: &LaunchSpec) -> Command {
    let c = &spec.command;
    let mut cmd = if c.shell {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(&c.value);
        cmd
    } else {
        let mut cmd = Command::new(&c.value);
        if let Some((argv0, rest)) = c.arguments.split_first() {
            cmd.arg0(argv0).args(rest);
        }
        cmd
    };
    cmd.env_clear();
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        cmd.env("PATH", DEFAULT_PATH);
    }
    cmd.current_dir(&spec.sandbox);
    cmd
}

/// Open the cgroup join files before fork so the child only has to write(2) to them.
fn open_procs(cg: CgRef<'_>) -> Result<Vec<File>, String> {
    let Some((c, path)) = cg else {
        return Ok(Vec::new());
    };
    c.join_files(path)
        .iter()
        .map(|p| {
            OpenOptions::new()
                .write(true)
                .open(p)
                .map_err(|e| format!("cannot open {}: {e}", p.display()))
        })
        .collect()
}

/// Spawn the task. Errors are human-readable launch failures for `ExitRecord::error`.
pub(super) fn spawn(spec: &LaunchSpec, cg: CgRef<'_>) -> Result<Child, String> {
    let ids = spec.user.as_deref().map(resolve_user).transpose()?;
    let (out, err) = prepare_sandbox(&spec.sandbox, ids.as_ref())?;
    let procs = open_procs(cg)?;
    let fds: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = build_command(spec);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    // SAFETY: the closure runs in the forked child before exec. It only calls async-signal-safe
    // functions (write, setpgid, setgroups, setgid, setuid) on data allocated before fork
    // (`fds`, `ids`), allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || child_setup(&fds, ids.as_ref()));
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot launch {:?}: {e}", spec.command.value));
    drop(procs);
    child
}

/// Runs between fork and exec: clear the signal mask, join cgroups, own process group, drop
/// privileges.
fn child_setup(fds: &[i32], ids: Option<&Ids>) -> io::Result<()> {
    // The shim blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD to consume them synchronously; a task
    // inheriting that mask would never see the SIGTERM of a kill request (a shell's TERM trap would
    // not run and only the SIGKILL after the grace period would end it).
    // SAFETY: sigemptyset and sigprocmask are async-signal-safe and only touch `set` and the
    // calling process's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    for fd in fds {
        // "0" means "the writing process" (v2 cgroup.procs, v1 tasks).
        // SAFETY: `fd` is an open descriptor owned by the parent's File (inherited by fork) and
        // the buffer is a valid 1-byte static slice.
        if unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: setpgid(0, 0) only affects the calling process.
    if unsafe { libc::setpgid(0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some(ids) = ids {
        // SAFETY: `groups` is a live Vec; pointer and length describe exactly its elements.
        if unsafe { libc::setgroups(ids.groups.len(), ids.groups.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain syscalls on integer arguments; gid before uid so we still may change it.
        if unsafe { libc::setgid(ids.gid) } != 0 || unsafe { libc::setuid(ids.uid) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CommandSpec, Limits};

    fn spec(shell: bool, value: &str, args: &[&str], env: &[(&str, &str)]) -> LaunchSpec {
        LaunchSpec {
            task_id: "t".into(),
            command: CommandSpec {
                shell,
                value: value.into(),
                arguments: args.iter().map(|s| s.to_string()).collect(),
            },
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            user: None,
            sandbox: "/tmp".into(),
            limits: Limits {
                cpus: 1.0,
                mem_mib: 64,
                pids: None,
            },
            cgroup: String::new(),
            kill_grace_secs: 1.0,
        }
    }

    #[test]
    fn shell_command_and_default_path() {
        let cmd = build_command(&spec(true, "exit 3", &[], &[("A", "1")]));
        assert_eq!(cmd.get_program(), "/bin/sh");
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args, ["-c", "exit 3"]);
        let envs: Vec<_> = cmd.get_envs().collect();
        assert!(envs.contains(&("A".as_ref(), Some("1".as_ref()))));
        assert!(envs.contains(&("PATH".as_ref(), Some(DEFAULT_PATH.as_ref()))));
    }

    #[test]
    fn exec_command_uses_argv0() {
        let cmd = build_command(&spec(
            false,
            "/bin/echo",
            &["myecho", "a"],
            &[("PATH", "/x")],
        ));
        assert_eq!(cmd.get_program(), "/bin/echo");
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args, ["a"]);
        let envs: Vec<_> = cmd.get_envs().collect();
        assert!(envs.contains(&("PATH".as_ref(), Some("/x".as_ref()))));
    }

    #[test]
    fn a_stdout_link_planted_in_the_sandbox_is_not_followed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let sb = tmp.path().join("sandbox");
        fs::create_dir_all(&sb).expect("mkdir");
        let target = tmp.path().join("outside");
        fs::write(&target, "keep").expect("write");
        std::os::unix::fs::symlink(&target, sb.join("stdout")).expect("ln");
        let err = prepare_sandbox(&sb, None).expect_err("refused");
        assert!(err.contains("stdout"), "{err}");
        assert_eq!(fs::read_to_string(&target).expect("read"), "keep");
    }

    #[test]
    fn unknown_user_fails_before_fork() {
        let mut s = spec(true, "true", &[], &[]);
        s.user = Some("no-such-user-meseta".into());
        let err = spawn(&s, None).expect_err("unknown user");
        assert!(err.contains("no-such-user-meseta"), "{err}");
    }
}
