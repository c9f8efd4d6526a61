//! Real-kernel tests of the shim and cgroups (root + cgroupfs required; skipped with a printed
//! reason otherwise). A custom harness: this executable doubles as the `meseta` binary, so
//! `real shim <dir>` runs the shim and `real agent <dir>` plays a short-lived agent.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use meseta_isolation::cgroup::{self, Cgroups, Version};
use meseta_isolation::{shim, write_spec, CommandSpec, ExitRecord, LaunchSpec, Limits};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("shim") => std::process::exit(shim::run(Path::new(&args[2]))),
        Some("agent") => agent(Path::new(&args[2])),
        _ => {}
    }
    // Under CI=true a skipped test would prove nothing: fail instead.
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if !nix::unistd::geteuid().is_root() {
        assert!(!ci, "real isolation tests need root and CI=true");
        println!("skipping real isolation tests: not root");
        return;
    }
    let Ok(cg) = cgroup::detect() else {
        assert!(
            !ci,
            "real isolation tests need a cgroup file system and CI=true"
        );
        println!("skipping real isolation tests: no cgroup file system");
        return;
    };
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let mut failed = 0;
    for (name, case) in CASES {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        match case(cg.as_ref()) {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED: {e:#}");
            }
        }
    }
    remove_test_parent(cg.as_ref());
    if failed > 0 {
        println!("{failed} real test(s) failed");
        std::process::exit(1);
    }
}

type Case = fn(&dyn Cgroups) -> Result<()>;

const CASES: &[(&str, Case)] = &[
    ("exit_code_and_cgroup_removed", exit_code_and_cgroup_removed),
    ("kill_request_sigterm", kill_request_sigterm),
    ("kill_request_runs_term_trap", kill_request_runs_term_trap),
    (
        "kill_ignoring_term_gets_sigkill",
        kill_ignoring_term_gets_sigkill,
    ),
    ("oom_killed", oom_killed),
    ("limits_and_membership", limits_and_membership),
    ("env_and_sandbox_output", env_and_sandbox_output),
    ("exec_with_arguments", exec_with_arguments),
    ("exec_failure_reported", exec_failure_reported),
    ("unknown_user_reported", unknown_user_reported),
    ("runs_as_user", runs_as_user),
    ("survives_agent_sigkill", survives_agent_sigkill),
    ("prune_stale_agent_cgroups", prune_stale_agent_cgroups),
];

/// A task directory plus its spec; the cgroup is unique per case under `meseta-test/`.
struct Task {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    spec: LaunchSpec,
}

fn task(name: &str, shell_cmd: &str) -> Result<Task> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("task");
    std::fs::create_dir(&dir)?;
    let spec = LaunchSpec {
        task_id: name.to_string(),
        command: CommandSpec {
            shell: true,
            value: shell_cmd.to_string(),
            arguments: vec![],
        },
        env: vec![],
        user: None,
        sandbox: dir.join("sandbox"),
        limits: Limits {
            cpus: 0.5,
            mem_mib: 64,
            pids: Some(100),
        },
        cgroup: format!("meseta-test/{}-{name}", std::process::id()),
        kill_grace_secs: 1.0,
    };
    Ok(Task {
        _tmp: tmp,
        dir,
        spec,
    })
}

/// A started shim with its stdout line reader.
struct Running {
    child: Child,
    out: BufReader<ChildStdout>,
}

fn start(t: &Task) -> Result<Running> {
    write_spec(&t.dir, &t.spec)?;
    let exe = std::env::current_exe()?;
    let mut child = shim::command(&exe, &t.dir)?.spawn()?;
    let out = BufReader::new(child.stdout.take().context("stdout piped")?);
    Ok(Running { child, out })
}

fn line(r: &mut Running) -> Result<String> {
    let mut l = String::new();
    r.out.read_line(&mut l)?;
    Ok(l.trim_end().to_string())
}

/// Read "running <pid>", returning the pid and checking it matches task.pid.
fn expect_running(r: &mut Running, t: &Task) -> Result<i32> {
    let l = line(r)?;
    let pid: i32 = l
        .strip_prefix("running ")
        .with_context(|| format!("unexpected first line {l:?}; log: {}", log(t)))?
        .parse()?;
    ensure!(
        shim::read_task_pid(&t.dir) == Some(pid),
        "task.pid mismatch"
    );
    Ok(pid)
}

/// Wait for "exited" and the shim's exit, then return exit.json.
fn finish(mut r: Running, t: &Task) -> Result<ExitRecord> {
    let mut rest = String::new();
    r.out.read_to_string(&mut rest)?;
    ensure!(rest.ends_with("exited\n"), "missing exited line: {rest:?}");
    let status = r.child.wait()?;
    ensure!(status.success(), "shim exit {status}; log: {}", log(t));
    ensure!(!shim::shim_alive(&t.dir), "shim still alive");
    shim::read_exit(&t.dir)?.context("exit.json missing")
}

fn log(t: &Task) -> String {
    std::fs::read_to_string(t.dir.join("shim.log")).unwrap_or_default()
}

fn sandbox_file(t: &Task, name: &str) -> Result<String> {
    Ok(std::fs::read_to_string(t.spec.sandbox.join(name))?)
}

fn cgroup_exists(cg: &dyn Cgroups, path: &str) -> bool {
    cg.procs_files(path)
        .iter()
        .any(|f| f.parent().is_some_and(Path::is_dir))
}

fn exit_code_and_cgroup_removed(cg: &dyn Cgroups) -> Result<()> {
    let t = task("exit3", "exit 3")?;
    let mut r = start(&t)?;
    expect_running(&mut r, &t)?;
    let rec = finish(r, &t)?;
    ensure!(rec.exit_code == Some(3) && rec.signal.is_none(), "{rec:?}");
    ensure!(!rec.oom_killed && rec.error.is_none(), "{rec:?}");
    ensure!(rec.finished_at > 1.0e9, "finished_at {}", rec.finished_at);
    ensure!(!cgroup_exists(cg, &t.spec.cgroup), "cgroup left behind");
    Ok(())
}

fn kill_and_wait(t: &Task, r: &mut Running) -> Result<Duration> {
    expect_running(r, t)?;
    request_and_wait(t, r)
}

fn request_and_wait(t: &Task, r: &mut Running) -> Result<Duration> {
    ensure!(shim::shim_alive(&t.dir), "shim not alive while running");
    let start = Instant::now();
    shim::request_kill(&t.dir)?;
    let mut probe = String::new();
    r.out.read_line(&mut probe)?;
    ensure!(probe == "exited\n", "expected exited, got {probe:?}");
    Ok(start.elapsed())
}

fn kill_request_sigterm(cg: &dyn Cgroups) -> Result<()> {
    let t = task("term", "sleep 100")?;
    let mut r = start(&t)?;
    kill_and_wait(&t, &mut r)?;
    r.child.wait()?;
    let rec = shim::read_exit(&t.dir)?.context("exit.json")?;
    ensure!(rec.signal == Some(libc::SIGTERM), "{rec:?}");
    ensure!(!cgroup_exists(cg, &t.spec.cgroup), "cgroup left behind");
    Ok(())
}

/// The task gets the kill request's SIGTERM (not blocked by the shim's mask): a shell waiting
/// on a child runs its TERM trap and exits by itself within the grace period.
fn kill_request_runs_term_trap(_cg: &dyn Cgroups) -> Result<()> {
    let t = task(
        "termtrap",
        "trap 'echo term > trapped; exit 7' TERM; touch ready; sleep 100 & wait $!",
    )?;
    let mut r = start(&t)?;
    expect_running(&mut r, &t)?;
    wait_sandbox_file(&t, "ready")?;
    request_and_wait(&t, &mut r)?;
    r.child.wait()?;
    let rec = shim::read_exit(&t.dir)?.context("exit.json")?;
    ensure!(rec.exit_code == Some(7) && rec.signal.is_none(), "{rec:?}");
    ensure!(sandbox_file(&t, "trapped")? == "term\n", "trap output");
    Ok(())
}

/// Wait (up to 10 s) until the task created `name` in its sandbox, e.g. once its traps are set.
fn wait_sandbox_file(t: &Task, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !t.spec.sandbox.join(name).exists() {
        ensure!(Instant::now() < deadline, "task never created {name}");
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn kill_ignoring_term_gets_sigkill(cg: &dyn Cgroups) -> Result<()> {
    let t = task("trap", "trap '' TERM; touch ready; sleep 100; echo after")?;
    let mut r = start(&t)?;
    expect_running(&mut r, &t)?;
    wait_sandbox_file(&t, "ready")?;
    let took = request_and_wait(&t, &mut r)?;
    r.child.wait()?;
    let rec = shim::read_exit(&t.dir)?.context("exit.json")?;
    ensure!(rec.signal == Some(libc::SIGKILL), "{rec:?}");
    ensure!(
        took >= Duration::from_millis(900),
        "grace not respected: {took:?}"
    );
    ensure!(!cgroup_exists(cg, &t.spec.cgroup), "cgroup left behind");
    Ok(())
}

fn oom_killed(_cg: &dyn Cgroups) -> Result<()> {
    let mut t = task("oom", "head -c 200M /dev/zero | tail")?;
    t.spec.limits.mem_mib = 32;
    let mut r = start(&t)?;
    expect_running(&mut r, &t)?;
    let rec = finish(r, &t)?;
    ensure!(rec.oom_killed, "not oom killed: {rec:?}");
    ensure!(rec.exit_code != Some(0), "{rec:?}");
    Ok(())
}

fn limits_and_membership(cg: &dyn Cgroups) -> Result<()> {
    let mut t = task("limits", "sleep 100")?;
    t.spec.limits.pids = Some(50);
    let mut r = start(&t)?;
    let pid = expect_running(&mut r, &t)?;
    let limits = cg.read_limits(&t.spec.cgroup)?;
    ensure!(
        limits.mem_mib == 64 && limits.pids == Some(50),
        "{limits:?}"
    );
    ensure!((limits.cpus - 0.5).abs() < 1e-9, "{limits:?}");
    let quota_file = match cg.version() {
        Version::V1 => PathBuf::from("/sys/fs/cgroup/cpu")
            .join(&t.spec.cgroup)
            .join("cpu.cfs_quota_us"),
        Version::V2 => PathBuf::from("/sys/fs/cgroup")
            .join(&t.spec.cgroup)
            .join("cpu.max"),
    };
    let quota = std::fs::read_to_string(&quota_file)?;
    ensure!(quota.starts_with("50000"), "quota file says {quota:?}");
    for file in cg.procs_files(&t.spec.cgroup) {
        let procs = std::fs::read_to_string(&file)?;
        ensure!(
            procs.lines().any(|l| l == pid.to_string()),
            "task {pid} not in {}: {procs:?}",
            file.display()
        );
    }
    let own = std::process::id() as i32;
    ensure!(
        !cg.pids(&t.spec.cgroup)?.contains(&own),
        "test process joined the cgroup"
    );
    let usage = cg.usage(&t.spec.cgroup)?;
    ensure!(usage.mem_bytes > 0, "{usage:?}");
    ensure!(!cg.oom_killed(&t.spec.cgroup)?, "spurious oom");
    request_and_wait(&t, &mut r)?;
    r.child.wait()?;
    ensure!(!cgroup_exists(cg, &t.spec.cgroup), "cgroup left behind");
    Ok(())
}

fn env_and_sandbox_output(_cg: &dyn Cgroups) -> Result<()> {
    let script =
        "echo \"foo=$FOO\"; echo \"path=$PATH\"; echo \"home=${HOME-unset}\"; pwd; echo oops >&2";
    let mut t = task("env", script)?;
    t.spec.env = vec![("FOO".into(), "bar baz".into())];
    let r = {
        let mut r = start(&t)?;
        expect_running(&mut r, &t)?;
        r
    };
    let rec = finish(r, &t)?;
    ensure!(rec.exit_code == Some(0), "{rec:?}");
    let out = sandbox_file(&t, "stdout")?;
    let expected = format!(
        "foo=bar baz\npath={}\nhome=unset\n{}\n",
        meseta_isolation::DEFAULT_PATH,
        t.spec.sandbox.display()
    );
    ensure!(out == expected, "stdout {out:?} != {expected:?}");
    ensure!(sandbox_file(&t, "stderr")? == "oops\n", "stderr wrong");
    Ok(())
}

fn exec_with_arguments(_cg: &dyn Cgroups) -> Result<()> {
    let mut t = task("exec", "")?;
    t.spec.command = CommandSpec {
        shell: false,
        value: "sh".into(),
        arguments: vec![
            "custom-argv0".into(),
            "-c".into(),
            "echo \"$0|$1\"; tr '\\0' ' ' < /proc/$$/cmdline".into(),
            "x".into(),
            "y".into(),
        ],
    };
    let mut r = start(&t)?;
    expect_running(&mut r, &t)?;
    let rec = finish(r, &t)?;
    ensure!(rec.exit_code == Some(0), "{rec:?}");
    let out = sandbox_file(&t, "stdout")?;
    ensure!(out.starts_with("x|y\ncustom-argv0 -c "), "stdout {out:?}");
    Ok(())
}

fn exec_failure_reported(cg: &dyn Cgroups) -> Result<()> {
    let mut t = task("execfail", "")?;
    t.spec.command = CommandSpec {
        shell: false,
        value: "/nonexistent/meseta-binary".into(),
        arguments: vec![],
    };
    let mut r = start(&t)?;
    let l = line(&mut r)?;
    ensure!(l == "exited", "expected exited, got {l:?}");
    r.child.wait()?;
    let rec = shim::read_exit(&t.dir)?.context("exit.json")?;
    let err = rec.error.clone().context("no error recorded")?;
    ensure!(err.contains("/nonexistent/meseta-binary"), "{err}");
    ensure!(rec.exit_code.is_none() && rec.signal.is_none(), "{rec:?}");
    ensure!(!cgroup_exists(cg, &t.spec.cgroup), "cgroup left behind");
    Ok(())
}

fn unknown_user_reported(_cg: &dyn Cgroups) -> Result<()> {
    let mut t = task("nouser", "true")?;
    t.spec.user = Some("no-such-user-meseta".into());
    let mut r = start(&t)?;
    ensure!(line(&mut r)? == "exited", "expected exited");
    r.child.wait()?;
    let rec = shim::read_exit(&t.dir)?.context("exit.json")?;
    let err = rec.error.context("no error")?;
    ensure!(err.contains("no-such-user-meseta"), "{err}");
    Ok(())
}

fn runs_as_user(_cg: &dyn Cgroups) -> Result<()> {
    let t = {
        let mut t = task("user", "id -u; id -g; touch mine")?;
        t.spec.user = Some("nobody".into());
        t
    };
    // The task must be able to reach its sandbox below the (root-only) tempdir.
    use std::os::unix::fs::PermissionsExt;
    let parent = t.dir.parent().context("parent")?;
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
    let (uid, gid) = meseta_isolation::user::lookup("nobody")?;
    let mut r = start(&t)?;
    expect_running(&mut r, &t)?;
    let rec = finish(r, &t)?;
    ensure!(
        rec.exit_code == Some(0),
        "{rec:?}; stderr {:?}",
        sandbox_file(&t, "stderr")
    );
    let out = sandbox_file(&t, "stdout")?;
    ensure!(out == format!("{uid}\n{gid}\n"), "stdout {out:?}");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(t.spec.sandbox.join("mine"))?;
    ensure!(meta.uid() == uid, "file owned by {}", meta.uid());
    Ok(())
}

/// `real agent <dir>`: start the shim like the agent does, report the task pid, then hang.
fn agent(dir: &Path) -> ! {
    let run = || -> Result<()> {
        let exe = std::env::current_exe()?;
        let mut child = shim::command(&exe, dir)?.spawn()?;
        let mut out = BufReader::new(child.stdout.take().context("stdout")?);
        let mut l = String::new();
        out.read_line(&mut l)?;
        print!("{l}");
        std::thread::sleep(Duration::from_secs(300));
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("agent: {e:#}");
    }
    std::process::exit(1)
}

fn survives_agent_sigkill(cg: &dyn Cgroups) -> Result<()> {
    let t = task("orphan", "sleep 100")?;
    write_spec(&t.dir, &t.spec)?;
    let mut agent = Command::new(std::env::current_exe()?)
        .arg("agent")
        .arg(&t.dir)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(agent.stdout.take().context("stdout")?);
    let mut l = String::new();
    out.read_line(&mut l)?;
    ensure!(l.starts_with("running "), "agent said {l:?}");
    agent.kill()?;
    agent.wait()?;
    std::thread::sleep(Duration::from_millis(300));
    ensure!(
        shim::shim_alive(&t.dir),
        "shim died with its agent; log: {}",
        log(&t)
    );
    let pid = shim::read_task_pid(&t.dir).context("task.pid")?;
    ensure!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok(),
        "task died"
    );
    ensure!(
        shim::read_exit(&t.dir)?.is_none(),
        "exit.json written early"
    );
    shim::request_kill(&t.dir)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let rec = loop {
        if let Some(rec) = shim::read_exit(&t.dir)? {
            break rec;
        }
        if Instant::now() > deadline {
            bail!("no exit.json after kill request; log: {}", log(&t));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure!(rec.signal == Some(libc::SIGTERM), "{rec:?}");
    while shim::shim_alive(&t.dir) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(!shim::shim_alive(&t.dir), "shim did not exit");
    ensure!(!cgroup_exists(cg, &t.spec.cgroup), "cgroup left behind");
    Ok(())
}

/// Best-effort removal of the shared `meseta-test` parent (other runs may still use it).
/// Sets the modification time of every directory of cgroup `path` an hour back.
fn backdate(cg: &dyn Cgroups, path: &str) -> Result<()> {
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for f in cg.procs_files(path) {
        if let Some(dir) = f.parent() {
            std::fs::File::open(dir)?.set_modified(hour_ago)?;
        }
    }
    Ok(())
}

/// Stale empty agent cgroups under the real hierarchy are removed; one holding a process is kept.
fn prune_stale_agent_cgroups(cg: &dyn Cgroups) -> Result<()> {
    let parent = format!("meseta-test/{}-prune", std::process::id());
    let limits = Limits {
        cpus: 0.1,
        mem_mib: 16,
        pids: Some(10),
    };
    for p in ["stale/t1", "stale/t2", "busy/t", "busy/idle", "mine/t"] {
        cg.create(&format!("{parent}/{p}"), &limits)?;
    }
    // Agents leave cgroups younger than ten minutes alone (another agent may be about to use
    // them): make these look old, except the one young leaf that must survive.
    for p in [
        "stale/t1",
        "stale/t2",
        "stale",
        "busy/idle",
        "busy",
        "mine/t",
        "mine",
    ] {
        backdate(cg, &format!("{parent}/{p}"))?;
    }
    cg.create(&format!("{parent}/young/t"), &limits)?;
    backdate(cg, &format!("{parent}/young"))?;
    let mut sleeper = Command::new("sleep").arg("60").spawn()?;
    let busy = format!("{parent}/busy/t");
    let joined = cg
        .procs_files(&busy)
        .iter()
        .try_for_each(|f| std::fs::write(f, sleeper.id().to_string()));
    let pruned = joined
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(cg.prune_stale(&parent, &["mine"])?));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let checks = pruned.and_then(|removed| {
        ensure!(removed == vec!["stale".to_string()], "removed {removed:?}");
        ensure!(!cgroup_exists(cg, &format!("{parent}/stale")), "stale kept");
        ensure!(cgroup_exists(cg, &busy), "cgroup holding a process removed");
        ensure!(
            !cgroup_exists(cg, &format!("{parent}/busy/idle")),
            "idle leaf kept"
        );
        ensure!(
            cgroup_exists(cg, &format!("{parent}/mine/t")),
            "own cgroup removed"
        );
        ensure!(
            cgroup_exists(cg, &format!("{parent}/young/t")),
            "a cgroup younger than ten minutes was removed"
        );
        Ok(())
    });
    for p in [
        "busy/t", "busy", "mine/t", "mine", "young/t", "young", "stale/t1", "stale/t2", "stale", "",
    ] {
        let path = format!("{parent}/{p}");
        let _ = cg.kill_all(path.trim_end_matches('/'));
        let _ = cg.remove(path.trim_end_matches('/'));
    }
    checks
}

fn remove_test_parent(cg: &dyn Cgroups) {
    let _ = cg.remove("meseta-test");
}
