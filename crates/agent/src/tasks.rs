//! Launching and killing tasks on behalf of the master.
//!
//! `LaunchTask` → [`launch`]: validate (unique id, fits in free resources) under the state lock, then
//! in a tokio task write `task.json`, fetch the task's URIs into the sandbox ([`crate::fetch`]; a
//! failure ends it `TASK_FAILED`), write `launch.json`, spawn `meseta shim <task_dir>` and hand the child
//! to [`crate::monitor`], which turns the shim's `running`/`exited` lines and `exit.json` into status
//! updates. `KillTask` → [`kill`]: persist the kill marker and SIGTERM the shim.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use meseta_api::agent::TaskSpec;
use meseta_isolation::{CommandSpec, LaunchSpec, Limits};
use meseta_types::{AgentId, TaskId, TaskState};

use crate::checkpoint::StateRecord;
use crate::fetch::Fetcher;
use crate::monitor;
use crate::path_id::PathId;
use crate::state::{plain, Shared, TaskEntry};
use crate::users::{self, RunAs};

/// Default grace between SIGTERM and SIGKILL.
pub(crate) const DEFAULT_KILL_GRACE_SECS: f64 = 3.0;
/// Default pids limit of a task.
const DEFAULT_PIDS_LIMIT: u64 = 4096;
/// Smallest memory limit given to a task (a task without `mem` still needs some).
const MIN_MEM_MIB: u64 = 32;
/// Smallest cpu limit given to a task.
const MIN_CPUS: f64 = 0.01;

/// Handle `LaunchTask`: validate synchronously, then start it in the background.
pub(crate) fn launch(shared: &Arc<Shared>, spec: TaskSpec) {
    if crate::executor::is_executor_task(&spec) {
        crate::executor::launch_task(shared, spec);
        return;
    }
    let run_as = match admit(shared, &spec) {
        Ok(run_as) => run_as,
        Err(message) => {
            tracing::warn!(task_id = %spec.task_id, %message, "rejecting task");
            let rec = StateRecord {
                state: TaskState::Error,
                reason: Some("REASON_TASK_INVALID".into()),
                message: Some(message),
                exit_code: None,
                healthy: None,
            };
            shared.emit_detached(&spec.task_id, &spec.framework_id, rec);
            return;
        }
    };
    if crate::docker::run::is_docker(&spec) {
        // A DOCKER task: the engine runs it (never the shim).
        tokio::spawn(crate::docker::run::start(Arc::clone(shared), spec, run_as));
        return;
    }
    start_admitted(shared, spec, run_as);
}

/// Start an admitted task through the shim in the background (a failure ends it
/// `TASK_FAILED`).
pub(crate) fn start_admitted(shared: &Arc<Shared>, spec: TaskSpec, run_as: RunAs) {
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let task_id = spec.task_id.clone();
        if let Err(message) = start(&shared, spec.clone(), run_as).await {
            tracing::error!(task_id = %task_id, %message, "launch failed");
            let rec = StateRecord {
                state: TaskState::Failed,
                reason: Some("REASON_CONTAINER_LAUNCH_FAILED".into()),
                message: Some(message),
                exit_code: None,
                healthy: None,
            };
            shared.emit(&task_id, &spec.framework_id, rec);
            crate::group::member_ended(&shared, &spec, TaskState::Failed);
        }
    });
}

/// Admit a task of a group (the group's resources were checked as a whole): it runs as a
/// process through the shim, never in DOCKER.
pub(crate) fn admit_for_group(shared: &Shared, spec: &TaskSpec) -> Result<RunAs, String> {
    if crate::docker::run::is_docker(spec) {
        return Err("tasks of a group run as processes (no DOCKER container)".into());
    }
    admit(shared, spec)
}

/// Check the task can run here (valid ids, a user it may run as, free resources) and reserve its
/// entry (state `TASK_STAGING`); returns who it runs as (a DOCKER task's container runs as that
/// user's uid and gid too).
fn admit(shared: &Shared, spec: &TaskSpec) -> Result<RunAs, String> {
    // Task ids become directory and cgroup names: refuse anything that could escape them.
    let id = PathId::task(&spec.task_id).map_err(|e| e.to_string())?;
    PathId::framework(&spec.framework_id).map_err(|e| e.to_string())?;
    let docker = crate::docker::run::is_docker(spec);
    let run_as = users::task_user(&shared.cfg, &shared.agent_user, spec.user.as_deref())?;
    if docker {
        crate::docker::run::admit(shared, spec)?;
    }
    ports_free_on_host(spec)?;
    let mut st = shared.lock();
    if st.tasks.contains_key(&spec.task_id) || shared.checkpoint.task_dir(&id).exists() {
        return Err(format!("task {id} already exists on this agent"));
    }
    let Some(agent_id) = st.agent_id.as_ref().and_then(|a| PathId::agent(a).ok()) else {
        return Err("agent is not registered".into());
    };
    let free = Shared::free_resources(&st, &shared.resources);
    // A volume is disk of the agent like any other.
    if !free.contains(&spec.resources.without_volumes().with_role("*")) {
        return Err(format!(
            "task resources {} exceed the free resources {free} of the agent",
            spec.resources
        ));
    }
    st.tasks.insert(
        spec.task_id.clone(),
        TaskEntry {
            spec: spec.clone().without_secret_values(),
            record: plain(TaskState::Staging),
            kill_requested: false,
            cgroup: (!docker).then(|| {
                if crate::group::key_of(spec).is_some() {
                    crate::group::cgroup_path(&shared.cfg.cgroup_root, &agent_id, spec, &id)
                } else {
                    cgroup_path(&shared.cfg.cgroup_root, &agent_id, &id)
                }
            }),
        },
    );
    Ok(run_as)
}

/// A task's ports must not be held by another process on the host (one that started listening
/// after the agent last registered): its process could not bind them.
fn ports_free_on_host(spec: &TaskSpec) -> Result<(), String> {
    let ports: Vec<u64> = spec.resources.ranges("ports").values().collect();
    if ports.is_empty() {
        return Ok(());
    }
    let listening = crate::resources::host_listening_ports();
    let busy: Vec<String> = ports
        .iter()
        .filter(|p| listening.contains(p))
        .map(u64::to_string)
        .collect();
    if busy.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "port {} of the task is in use by another process on this host",
            busy.join(", ")
        ))
    }
}

/// `<root>/<agent_id>/<task_id>`.
pub(crate) fn cgroup_path(root: &str, agent_id: &PathId, task_id: &PathId) -> String {
    format!("{}/{task_id}", agent_cgroup(root, agent_id))
}

/// `<root>/<agent_id>`, the parent of the agent's task cgroups.
pub(crate) fn agent_cgroup(root: &str, agent_id: &PathId) -> String {
    let root = root.trim_matches('/');
    if root.is_empty() {
        agent_id.to_string()
    } else {
        format!("{root}/{agent_id}")
    }
}

/// Write the task files, spawn the shim and hand it to the monitor.
async fn start(shared: &Arc<Shared>, spec: TaskSpec, run_as: RunAs) -> Result<(), String> {
    let secret_env = crate::secrets::env(&spec)?;
    let task_dir = shared
        .checkpoint
        .write_task(&spec.clone().without_secret_values())
        .map_err(|e| e.to_string())?;
    // No state recorded yet: recovery reads a task dir without one as TASK_STAGING.
    let entry = shared
        .task(&spec.task_id)
        .ok_or_else(|| "task vanished before launch".to_string())?;
    let agent_id = shared.lock().agent_id.clone().unwrap_or_default();
    let mut launch = launch_spec(
        &spec,
        &task_dir,
        &agent_id,
        &shared.hostname,
        entry.cgroup.unwrap_or_default(),
    );
    launch.user = run_as.shim_user();
    launch
        .env
        .retain(|(k, _)| !secret_env.iter().any(|(s, _)| s == k));
    launch.env.extend(secret_env);
    let owner = run_as
        .switch
        .then_some((run_as.identity.uid, run_as.identity.gid));
    prepare_sandbox(&launch.sandbox, owner)?;
    for v in &spec.volumes {
        crate::volumes::attach(&shared.cfg.work_dir, &launch.sandbox, &spec.role, v, owner)
            .map_err(|e| e.to_string())?;
    }
    if crate::group::key_of(&spec).is_some() {
        crate::group::link_volumes(shared, &spec, &launch.sandbox, owner)?;
    }
    crate::secrets::write_files(&spec, &launch.sandbox, owner)?;
    fetch_as(shared, &spec.fetch, &launch.sandbox, &run_as).await?;
    meseta_isolation::write_spec(&task_dir, &launch).map_err(|e| e.to_string())?;
    let std_cmd = meseta_isolation::shim::command(&shared.cfg.meseta_exe, &task_dir)
        .map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::from(std_cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start shim {}: {e}", shared.cfg.meseta_exe.display()))?;
    tracing::info!(task_id = %spec.task_id, pid = ?child.id(), dir = %task_dir.display(), "shim started");
    let stdout = child.stdout.take();
    shared.emit(
        &spec.task_id,
        &spec.framework_id,
        plain(TaskState::Starting),
    );
    // A kill that arrived while staging (see `kill`) is carried out now.
    if shared.task(&spec.task_id).is_some_and(|t| t.kill_requested) {
        tokio::spawn(request_kill_retrying(task_dir.clone()));
    }
    let shared = Arc::clone(shared);
    tokio::spawn(monitor::watch_child(shared, spec.task_id, child, stdout));
    Ok(())
}

/// Create the sandbox: owned by the task user (`owner`), mode 0750, so that other users' tasks
/// cannot read it.
pub(crate) fn prepare_sandbox(sandbox: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| format!("cannot prepare sandbox {}: {e}", sandbox.display());
    std::fs::create_dir_all(sandbox).map_err(fail)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(sandbox, Some(uid), Some(gid)).map_err(fail)?;
    }
    std::fs::set_permissions(sandbox, std::fs::Permissions::from_mode(0o750)).map_err(fail)
}

/// Fetch the task's URIs with the task user's permissions. When the agent switches users this
/// runs on a thread of the task user's, which also checks that the user can reach its sandbox
/// (every directory above the work dir must be searchable by it).
pub(crate) async fn fetch_as(
    shared: &Shared,
    uris: &[meseta_api::agent::FetchUri],
    sandbox: &Path,
    run_as: &RunAs,
) -> Result<(), String> {
    let fetcher = Fetcher::for_user(&shared.cfg.work_dir, run_as.identity.uid);
    if !run_as.switch {
        if uris.is_empty() {
            return Ok(());
        }
        fetcher.prepare_cache(None)?;
        return fetcher.fetch_all(uris, sandbox).await;
    }
    if !uris.is_empty() {
        fetcher.prepare_cache(Some((run_as.identity.uid, run_as.identity.gid)))?;
    }
    let (uris, sandbox, who) = (
        uris.to_vec(),
        sandbox.to_path_buf(),
        run_as.identity.clone(),
    );
    let name = who.name.clone();
    let work = move || -> Result<(), String> {
        use nix::unistd::{access, AccessFlags};
        access(&sandbox, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
            format!(
                "task user {name:?} cannot reach its sandbox {}: {e} (every directory above \
                 the agent's work dir must be searchable by it)",
                sandbox.display()
            )
        })?;
        if uris.is_empty() {
            return Ok(());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the fetcher: {e}"))?;
        rt.block_on(fetcher.fetch_all(&uris, &sandbox))
    };
    tokio::task::spawn_blocking(move || meseta_isolation::user::run_as(&who, work))
        .await
        .map_err(|e| format!("fetcher failed: {e}"))?
        .map_err(|e| e.to_string())?
}

/// The shim's view of the task.
pub(crate) fn launch_spec(
    spec: &TaskSpec,
    task_dir: &Path,
    agent_id: &AgentId,
    hostname: &str,
    cgroup: String,
) -> LaunchSpec {
    let sandbox = task_dir.join("sandbox");
    LaunchSpec {
        task_id: spec.task_id.to_string(),
        command: CommandSpec {
            shell: spec.command.shell,
            value: spec.command.value.clone(),
            arguments: spec.command.arguments.clone(),
        },
        env: task_env(spec, &sandbox, agent_id, hostname),
        user: spec.user.clone(),
        sandbox,
        limits: limits(spec),
        cgroup,
        kill_grace_secs: spec
            .kill_grace_secs
            .filter(|g| g.is_finite() && *g >= 0.0)
            .unwrap_or(DEFAULT_KILL_GRACE_SECS),
    }
}

/// cgroup limits from the task's resources.
pub(crate) fn limits(spec: &TaskSpec) -> Limits {
    Limits {
        cpus: spec.resources.cpus().max(MIN_CPUS),
        mem_mib: (spec.resources.mem().ceil() as u64).max(MIN_MEM_MIB),
        pids: Some(DEFAULT_PIDS_LIMIT),
    }
}

/// The task's environment: `spec.env` plus the Mesos/Marathon variables (which win on conflict).
pub(crate) fn task_env(
    spec: &TaskSpec,
    sandbox: &Path,
    agent_id: &AgentId,
    hostname: &str,
) -> Vec<(String, String)> {
    let mut ours: Vec<(String, String)> = vec![
        ("MESOS_TASK_ID".into(), spec.task_id.to_string()),
        ("MESOS_SANDBOX".into(), sandbox.display().to_string()),
        ("MESOS_AGENT_ID".into(), agent_id.to_string()),
        ("MESOS_FRAMEWORK_ID".into(), spec.framework_id.to_string()),
        ("HOST".into(), hostname.to_string()),
    ];
    let ports: Vec<u64> = spec.resources.ranges("ports").values().collect();
    for (i, port) in ports.iter().enumerate() {
        ours.push((format!("PORT{i}"), port.to_string()));
        ours.push((format!("PORT_{port}"), port.to_string()));
    }
    if let Some(first) = ports.first() {
        ours.push(("PORT".into(), first.to_string()));
        let all: Vec<String> = ports.iter().map(u64::to_string).collect();
        ours.push(("PORTS".into(), all.join(",")));
    }
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .filter(|(k, _)| !ours.iter().any(|(o, _)| o == k))
        .cloned()
        .collect();
    env.extend(ours);
    env
}

/// Handle `KillTask`.
pub(crate) fn kill(shared: &Arc<Shared>, task_id: &TaskId, grace_secs: Option<f64>) {
    kill_one(shared, task_id, grace_secs);
    // Killing one task of a group kills the group (Mesos' default executor).
    if let Some(t) = shared.task(task_id) {
        crate::group::kill_others(shared, &t.spec);
    }
}

/// Kill one task (its group left alone).
pub(crate) fn kill_one(shared: &Arc<Shared>, task_id: &TaskId, grace_secs: Option<f64>) {
    let entry = {
        let mut st = shared.lock();
        match st.tasks.get_mut(task_id) {
            Some(e) => {
                if !e.record.state.is_terminal() {
                    e.kill_requested = true;
                }
                Some(e.clone())
            }
            None => None,
        }
    };
    let Some(entry) = entry else {
        tracing::info!(task_id = %task_id, "kill of unknown task: answering TASK_LOST");
        send_lost(shared, task_id);
        return;
    };
    if entry.record.state.is_terminal() {
        // The master still believes it runs: tell it again how it ended.
        shared.emit(task_id, &entry.spec.framework_id, entry.record);
        return;
    }
    let marked = PathId::task(task_id)
        .map_err(crate::AgentError::from)
        .and_then(|id| shared.checkpoint.mark_kill_requested(&id));
    if let Err(e) = marked {
        tracing::warn!(task_id = %task_id, error = %e, "cannot persist kill marker");
    }
    tracing::info!(task_id = %task_id, "killing task");
    if crate::executor::is_executor_task(&entry.spec) {
        crate::executor::kill_task(shared, &entry, grace_secs);
        return;
    }
    // While staging the shim is not spawned yet: `start` sees the flag once it is (STARTING is
    // emitted under the same lock that set the flag, so one of the two always sends the request).
    if crate::docker::run::is_docker(&entry.spec) {
        crate::docker::run::kill(shared, task_id);
    } else if entry.record.state != TaskState::Staging {
        if let Some(dir) = shared.task_dir(task_id) {
            tokio::spawn(request_kill_retrying(dir));
        }
    }
}

/// A `TASK_LOST` answer for a task this agent does not know (not checkpointed: nothing to recover).
fn send_lost(shared: &Shared, task_id: &TaskId) {
    let update = meseta_api::agent::StatusUpdate {
        uuid: uuid::Uuid::new_v4().to_string(),
        task_id: task_id.clone(),
        framework_id: meseta_types::FrameworkId::default(),
        state: TaskState::Lost,
        reason: Some("REASON_RECONCILIATION".into()),
        message: Some("Task is unknown to the agent".into()),
        timestamp: crate::state::now_secs(),
        exit_code: None,
        healthy: None,
        executor_id: None,
        data: None,
    };
    shared.send_unchecked(meseta_api::agent::AgentMessage::StatusUpdate(update));
}

/// SIGTERM the shim; retries briefly while its pid file is not written yet.
pub(crate) async fn request_kill_retrying(task_dir: std::path::PathBuf) {
    for attempt in 0..20 {
        match meseta_isolation::shim::request_kill(&task_dir) {
            Ok(()) => return,
            Err(e) if attempt == 19 => {
                tracing::warn!(dir = %task_dir.display(), error = %e, "kill request failed");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use meseta_api::agent::Command;
    use meseta_types::{FrameworkId, Resources};

    pub(crate) fn spec(id: &str, res: &str) -> TaskSpec {
        TaskSpec {
            task_id: TaskId::new(id),
            framework_id: FrameworkId::new("fw-1"),
            name: "web".into(),
            resources: Resources::parse(res).expect("resources"),
            command: Command {
                shell: true,
                value: "sleep 1".into(),
                arguments: vec![],
            },
            env: vec![("A".into(), "1".into()), ("PORT0".into(), "bogus".into())],
            user: None,
            kill_grace_secs: None,
            role: "*".to_string(),
            health_check: None,
            fetch: vec![],
            volumes: vec![],
            container: None,
            executor: None,
            task_info: None,
            group: vec![],
            secrets: vec![],
        }
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn env_has_ports_in_order_and_mesos_vars() {
        let s = spec("t1", "cpus:1;mem:64;ports:[31005-31006,31001-31001]");
        let env = task_env(&s, Path::new("/w/sb"), &AgentId::new("ag"), "host1");
        assert_eq!(get(&env, "A"), Some("1"));
        assert_eq!(get(&env, "PORT0"), Some("31001"));
        assert_eq!(get(&env, "PORT1"), Some("31005"));
        assert_eq!(get(&env, "PORT2"), Some("31006"));
        assert_eq!(get(&env, "PORT_31005"), Some("31005"));
        assert_eq!(get(&env, "PORT"), Some("31001"));
        assert_eq!(get(&env, "PORTS"), Some("31001,31005,31006"));
        assert_eq!(get(&env, "MESOS_TASK_ID"), Some("t1"));
        assert_eq!(get(&env, "MESOS_SANDBOX"), Some("/w/sb"));
        assert_eq!(get(&env, "MESOS_AGENT_ID"), Some("ag"));
        assert_eq!(get(&env, "MESOS_FRAMEWORK_ID"), Some("fw-1"));
        assert_eq!(get(&env, "HOST"), Some("host1"));
        assert_eq!(env.iter().filter(|(k, _)| k == "PORT0").count(), 1);
    }

    #[test]
    fn env_without_ports_has_no_port_vars() {
        let s = spec("t1", "cpus:1;mem:64");
        let env = task_env(&s, Path::new("/s"), &AgentId::new("ag"), "h");
        assert_eq!(get(&env, "PORT"), None);
        assert_eq!(get(&env, "PORTS"), None);
        assert_eq!(
            get(&env, "PORT0"),
            Some("bogus"),
            "user vars stay when not overridden"
        );
    }

    #[test]
    fn launch_spec_limits_and_cgroup() {
        let mut s = spec("t1", "cpus:0.5;mem:100.5");
        s.kill_grace_secs = Some(1.5);
        let pid = |s: &str| PathId::parse("test", s).expect("id");
        let cg = cgroup_path("meseta/", &pid("ag"), &pid("t1"));
        assert_eq!(cg, "meseta/ag/t1");
        let l = launch_spec(&s, Path::new("/w/t1"), &AgentId::new("ag"), "h", cg);
        assert_eq!(l.limits.cpus, 0.5);
        assert_eq!(l.limits.mem_mib, 101);
        assert_eq!(l.limits.pids, Some(4096));
        assert_eq!(l.kill_grace_secs, 1.5);
        assert_eq!(l.sandbox, Path::new("/w/t1/sandbox"));
        assert!(l.command.shell);
        let l = launch_spec(
            &spec("t2", "cpus:1"),
            Path::new("/w"),
            &AgentId::new("a"),
            "h",
            String::new(),
        );
        assert_eq!(l.kill_grace_secs, DEFAULT_KILL_GRACE_SECS);
        assert_eq!(l.limits.mem_mib, MIN_MEM_MIB);
    }
}
