//! Custom executors: the agent side of the Mesos executor API.
//!
//! A task whose spec names an executor never gets a shim of its own. The first such task of a
//! (framework, executor id) starts the executor's `command` through the shim, in its own cgroup
//! and sandbox (`<work_dir>/executors/<framework>/<executor>/`), with the environment Mesos
//! gives executors; the executor SUBSCRIBEs on `POST /api/v1/executor` ([`api`]) and receives
//! its tasks as LAUNCH events. The tasks' states are what the executor's UPDATE calls say,
//! checkpointed and forwarded like every update; the executor gets ACKNOWLEDGED once its update
//! is checkpointed.
//!
//! ```text
//!  LaunchTask{executor} ─▶ launch_task ─▶ (new) start: executor.json, sandbox, shim
//!                                      └▶ LAUNCH event now, or on SUBSCRIBE
//!  KillTask ─▶ KILL event         FrameworkMessage ─▶ MESSAGE event
//!  ShutdownExecutor/Framework ─▶ SHUTDOWN event, shim killed after the grace period
//!  shim exits ─▶ ended: live tasks TASK_LOST/FAILED (REASON_EXECUTOR_TERMINATED),
//!                ExecutorExited{wait status} to the master, executor.json removed
//!  agent restart ─▶ recover: live shims wait for a SUBSCRIBE within the reregistration timeout
//! ```

pub(crate) mod api;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meseta_api::agent::{AgentMessage, ExecutorSpec, TaskSpec};
use meseta_api::executor::{self as wire, stout_duration, Event};
use meseta_api::scheduler::IdValue;
use meseta_isolation::{shim, CommandSpec, LaunchSpec, Limits};
use meseta_types::{FrameworkId, Resources, TaskId, TaskState};
use tokio::sync::mpsc;

use crate::checkpoint::StateRecord;
use crate::path_id::PathId;
use crate::state::{plain, Shared, TaskEntry};
use crate::users::{self, RunAs};

/// Poll period of an executor's shim.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Grace the shim gives the executor's process group between SIGTERM and SIGKILL once the
/// SHUTDOWN grace period is over.
const KILL_GRACE_SECS: f64 = 1.0;
/// Key of an executor: (framework, executor id).
pub(crate) type Key = (FrameworkId, String);

/// One custom executor on this agent.
#[derive(Debug)]
pub(crate) struct ExecutorEntry {
    /// What the master sent with its first task.
    pub spec: Arc<ExecutorSpec>,
    /// `<work_dir>/executors/<framework>/<executor>`.
    pub dir: PathBuf,
    /// Every task given to it.
    pub tasks: BTreeSet<TaskId>,
    /// The open event stream, once subscribed (replaced on resubscription).
    pub stream: Option<mpsc::UnboundedSender<Event>>,
    /// It subscribed in this agent run.
    pub subscribed: bool,
    /// Tasks sent to the current subscription (or held by the executor when it subscribed).
    pub delivered: BTreeSet<TaskId>,
    /// Tasks whose KILL waits for a subscription.
    pub pending_kills: BTreeSet<TaskId>,
    /// Why it is being stopped (`REASON_…` for its tasks), once it is.
    pub stopping: Option<&'static str>,
    /// Its shim was spawned (a stop before that is carried out by `start`).
    pub started: bool,
}

impl ExecutorEntry {
    fn new(spec: Arc<ExecutorSpec>, dir: PathBuf) -> ExecutorEntry {
        ExecutorEntry {
            spec,
            dir,
            tasks: BTreeSet::new(),
            stream: None,
            subscribed: false,
            delivered: BTreeSet::new(),
            pending_kills: BTreeSet::new(),
            stopping: None,
            started: false,
        }
    }

    /// Send an event on the stream; false when there is none (or it closed).
    pub fn send(&self, ev: Event) -> bool {
        self.stream.as_ref().is_some_and(|s| s.send(ev).is_ok())
    }
}

fn key_of(spec: &TaskSpec) -> Option<Key> {
    let e = spec.executor.as_ref()?;
    Some((spec.framework_id.clone(), e.id().to_string()))
}

fn error_rec(state: TaskState, reason: &str, message: String) -> StateRecord {
    StateRecord {
        state,
        reason: Some(reason.to_string()),
        message: Some(message),
        exit_code: None,
        healthy: None,
    }
}

/// `LaunchTask` of a task that names a custom executor.
pub(crate) fn launch_task(shared: &Arc<Shared>, spec: TaskSpec) {
    let Some(key) = key_of(&spec) else {
        return;
    };
    match admit(shared, &spec, &key) {
        Ok(Some(run_as)) => {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                if let Err(why) = start(&shared, &key, run_as).await {
                    tracing::error!(executor_id = %key.1, %why, "executor launch failed");
                    fail_start(&shared, &key, why);
                }
            });
        }
        Ok(None) => deliver(shared, &key),
        Err((state, reason, message)) => {
            tracing::warn!(task_id = %spec.task_id, %message, "rejecting executor task");
            shared.emit_detached(
                &spec.task_id,
                &spec.framework_id,
                error_rec(state, reason, message),
            );
        }
    }
}

type Refusal = (TaskState, &'static str, String);

/// Check and record the task (and its executor when new). `Ok(Some)`: the executor must be
/// started as this user; `Ok(None)`: it exists already.
fn admit(shared: &Shared, spec: &TaskSpec, key: &Key) -> Result<Option<RunAs>, Refusal> {
    let invalid = |m: String| (TaskState::Error, "REASON_TASK_INVALID", m);
    let exec = spec
        .executor
        .as_ref()
        .ok_or_else(|| invalid("no executor".into()))?;
    let task_id = PathId::task(&spec.task_id).map_err(|e| invalid(e.to_string()))?;
    let fw = PathId::framework(&spec.framework_id).map_err(|e| invalid(e.to_string()))?;
    let exec_id = PathId::parse("executor", exec.id()).map_err(|e| invalid(e.to_string()))?;
    let mut st = shared.lock();
    if st.tasks.contains_key(&spec.task_id) || shared.checkpoint.task_dir(&task_id).exists() {
        return Err(invalid(format!(
            "task {task_id} already exists on this agent"
        )));
    }
    let mut need = spec.resources.without_volumes().with_role("*");
    let run_as = match st.executors.get(key) {
        Some(e) if e.stopping.is_some() => {
            return Err((
                TaskState::Lost,
                "REASON_EXECUTOR_TERMINATED",
                format!("executor {exec_id} is shutting down"),
            ))
        }
        Some(e) if !e.spec.info.same_as(&exec.info) => {
            return Err(invalid(format!(
                "ExecutorInfo of executor {exec_id} differs from the running one's"
            )))
        }
        Some(_) => None,
        None => {
            need.add(&exec.info.resources.with_role("*"));
            Some(
                users::task_user(&shared.cfg, &shared.agent_user, exec.user.as_deref())
                    .map_err(invalid)?,
            )
        }
    };
    let free = Shared::free_resources(&st, &shared.resources);
    if !free.contains(&need) {
        return Err(invalid(format!(
            "task and executor resources {need} exceed the free resources {free} of the agent"
        )));
    }
    if run_as.is_some() {
        let dir = shared.checkpoint.executor_dir(&fw, &exec_id);
        st.executors
            .insert(key.clone(), ExecutorEntry::new(exec.clone(), dir));
    }
    if let Err(e) = shared.checkpoint.write_task(spec) {
        return Err(invalid(format!("cannot record the task: {e}")));
    }
    st.tasks.insert(
        spec.task_id.clone(),
        TaskEntry {
            spec: spec.clone(),
            record: plain(TaskState::Staging),
            kill_requested: false,
            cgroup: None,
        },
    );
    if let Some(e) = st.executors.get_mut(key) {
        e.tasks.insert(spec.task_id.clone());
    }
    Ok(run_as)
}

/// Send LAUNCH for every staging task not delivered to the current subscription yet.
pub(crate) fn deliver(shared: &Shared, key: &Key) {
    let mut guard = shared.lock();
    let st = &mut *guard;
    let Some(e) = st.executors.get_mut(key).filter(|e| e.stream.is_some()) else {
        return;
    };
    let due: Vec<TaskId> = e
        .tasks
        .iter()
        .filter(|id| !e.delivered.contains(*id))
        .filter(|id| {
            st.tasks
                .get(*id)
                .is_some_and(|t| t.record.state == TaskState::Staging && !t.kill_requested)
        })
        .cloned()
        .collect();
    for id in due {
        let task = st.tasks.get(&id).and_then(|t| t.spec.executor_task_info());
        let Some(task) = task.and_then(|t| serde_json::to_value(t).ok()) else {
            continue;
        };
        if e.send(Event::Launch {
            launch: wire::Launch { task },
        }) {
            e.delivered.insert(id);
        }
    }
}

/// The executor could not start: its tasks fail, and it is forgotten.
fn fail_start(shared: &Arc<Shared>, key: &Key, why: String) {
    let rec = error_rec(TaskState::Failed, "REASON_CONTAINER_LAUNCH_FAILED", why);
    settle_tasks(shared, key, |_| rec.clone());
    let dir = shared.lock().executors.remove(key).map(|e| e.dir);
    if let Some(dir) = dir {
        shared.checkpoint.remove_executor(&dir);
    }
}

/// Write the executor's files, spawn its shim and watch it.
async fn start(shared: &Arc<Shared>, key: &Key, run_as: RunAs) -> Result<(), String> {
    let (spec, dir, res) = {
        let st = shared.lock();
        let e = st
            .executors
            .get(key)
            .ok_or("executor vanished before launch")?;
        let mut res = e.spec.info.resources.clone();
        for t in e.tasks.iter().filter_map(|id| st.tasks.get(id)) {
            res.add(&t.spec.resources);
        }
        (e.spec.clone(), e.dir.clone(), res)
    };
    shared
        .checkpoint
        .write_executor(&dir, &spec)
        .map_err(|e| e.to_string())?;
    let launch = launch_spec(shared, &key.0, &spec, &dir, &res, &run_as)?;
    let owner = run_as
        .switch
        .then_some((run_as.identity.uid, run_as.identity.gid));
    crate::tasks::prepare_sandbox(&launch.sandbox, owner)?;
    crate::tasks::fetch_as(shared, &spec.fetch, &launch.sandbox, &run_as).await?;
    meseta_isolation::write_spec(&dir, &launch).map_err(|e| e.to_string())?;
    let std_cmd = shim::command(&shared.cfg.meseta_exe, &dir).map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::from(std_cmd)
        .spawn()
        .map_err(|e| format!("cannot start shim {}: {e}", shared.cfg.meseta_exe.display()))?;
    tracing::info!(executor_id = %key.1, pid = ?child.id(), dir = %dir.display(), "executor started");
    let stdout = child.stdout.take();
    let stop_now = {
        let mut st = shared.lock();
        st.executors.get_mut(key).is_some_and(|e| {
            e.started = true;
            e.stopping.is_some()
        })
    };
    if stop_now {
        // Shut down while it was being started.
        tokio::spawn(crate::tasks::request_kill_retrying(dir.clone()));
    }
    let shared2 = Arc::clone(shared);
    let key2 = key.clone();
    tokio::spawn(async move {
        // Drain the shim's progress lines; the exit is read from its files.
        if let Some(out) = stdout {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(_)) = lines.next_line().await {}
        }
        let _ = child.wait().await;
        watch(shared2, key2).await;
    });
    let timeout = shared.cfg.executor_registration_timeout;
    tokio::spawn(stop_unless_subscribed(
        Arc::clone(shared),
        key.clone(),
        timeout,
        "REASON_EXECUTOR_REGISTRATION_TIMEOUT",
    ));
    Ok(())
}

/// The shim's view of the executor: its command, environment, limits and cgroup.
fn launch_spec(
    shared: &Shared,
    fw: &FrameworkId,
    spec: &ExecutorSpec,
    dir: &std::path::Path,
    res: &Resources,
    run_as: &RunAs,
) -> Result<LaunchSpec, String> {
    let agent_id = shared.lock().agent_id.clone().unwrap_or_default();
    let agent_pid = PathId::agent(&agent_id).map_err(|e| e.to_string())?;
    let sandbox = dir.join("sandbox");
    let cgroup = format!(
        "{}/executor.{}.{}",
        crate::tasks::agent_cgroup(&shared.cfg.cgroup_root, &agent_pid),
        PathId::framework(fw).map_err(|e| e.to_string())?,
        PathId::parse("executor", spec.id()).map_err(|e| e.to_string())?
    );
    let endpoint = endpoint(shared);
    let grace = spec.info.shutdown_grace_secs();
    let mut ours: Vec<(String, String)> = vec![
        ("MESOS_FRAMEWORK_ID".into(), fw.to_string()),
        ("MESOS_EXECUTOR_ID".into(), spec.id().to_string()),
        ("MESOS_AGENT_ENDPOINT".into(), endpoint.clone()),
        ("MESOS_SLAVE_PID".into(), format!("slave(1)@{endpoint}")),
        ("MESOS_SLAVE_ID".into(), agent_id.to_string()),
        ("MESOS_AGENT_ID".into(), agent_id.to_string()),
        ("MESOS_DIRECTORY".into(), sandbox.display().to_string()),
        ("MESOS_SANDBOX".into(), sandbox.display().to_string()),
        (
            "MESOS_CHECKPOINT".into(),
            if spec.checkpoint { "1" } else { "0" }.into(),
        ),
        ("MESOS_HTTP_COMMAND_EXECUTOR".into(), "0".into()),
        (
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD".into(),
            stout_duration(grace),
        ),
        (
            "MESOS_RECOVERY_TIMEOUT".into(),
            stout_duration(shared.cfg.executor_reregistration_timeout.as_secs_f64()),
        ),
        ("MESOS_SUBSCRIPTION_BACKOFF_MAX".into(), "2secs".into()),
        ("HOST".into(), shared.hostname.clone()),
    ];
    if let Some(user) = run_as.shim_user() {
        ours.push(("USER".into(), user));
    }
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .filter(|(k, _)| !ours.iter().any(|(o, _)| o == k))
        .cloned()
        .collect();
    env.append(&mut ours);
    Ok(LaunchSpec {
        task_id: spec.id().to_string(),
        command: CommandSpec {
            shell: spec.command.shell,
            value: spec.command.value.clone(),
            arguments: spec.command.arguments.clone(),
        },
        env,
        user: run_as.shim_user(),
        sandbox,
        limits: Limits {
            cpus: res.cpus().max(0.01),
            mem_mib: (res.mem().ceil() as u64).max(32),
            pids: Some(4096),
        },
        cgroup,
        kill_grace_secs: KILL_GRACE_SECS,
    })
}

/// `ip:port` executors reach the agent at (loopback when it listens on every address).
fn endpoint(shared: &Shared) -> String {
    let mut addr = shared.http_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    }
    addr.to_string()
}

/// Poll the executor's shim until it is gone, then settle the executor.
async fn watch(shared: Arc<Shared>, key: Key) {
    let Some(dir) = shared.lock().executors.get(&key).map(|e| e.dir.clone()) else {
        return;
    };
    let stop = shared.stop.clone();
    let wait = async {
        loop {
            if matches!(shim::read_exit(&dir), Ok(Some(_))) || !shim::shim_alive(&dir) {
                break;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    };
    tokio::select! {
        () = wait => ended(&shared, &key),
        () = stop.cancelled() => {}
    }
}

/// Kill the executor if it has not subscribed after `timeout` (this agent run).
async fn stop_unless_subscribed(
    shared: Arc<Shared>,
    key: Key,
    timeout: Duration,
    reason: &'static str,
) {
    tokio::time::sleep(timeout).await;
    let dir = {
        let mut st = shared.lock();
        match st.executors.get_mut(&key) {
            Some(e) if !e.subscribed && e.stopping.is_none() => {
                e.stopping = Some(reason);
                Some(e.dir.clone())
            }
            _ => None,
        }
    };
    if let Some(dir) = dir {
        tracing::warn!(executor_id = %key.1, reason, "executor did not subscribe in time: killing it");
        crate::tasks::request_kill_retrying(dir).await;
    }
}

/// The executor's process is gone: report its live tasks, tell the master, forget it.
pub(crate) fn ended(shared: &Shared, key: &Key) {
    let Some(entry) = shared.lock().executors.remove(key) else {
        return;
    };
    let exit = shim::read_exit(&entry.dir).ok().flatten();
    let status = exit.as_ref().map_or(9, |x| match (x.exit_code, x.signal) {
        (Some(code), _) => (code & 0xff) << 8,
        (None, Some(sig)) => sig & 0x7f,
        (None, None) => 0,
    });
    let oom = exit.as_ref().is_some_and(|x| x.oom_killed);
    let reason = entry.stopping.unwrap_or("REASON_EXECUTOR_TERMINATED");
    let describe = match exit.as_ref().and_then(|x| x.exit_code) {
        Some(code) => format!("Executor exited with status {code}"),
        None => "Executor terminated".to_string(),
    };
    tracing::info!(executor_id = %key.1, status, reason, "executor ended");
    let ids: Vec<TaskId> = entry.tasks.iter().cloned().collect();
    let st_tasks: Vec<TaskEntry> = {
        let st = shared.lock();
        ids.iter()
            .filter_map(|id| st.tasks.get(id).cloned())
            .collect()
    };
    for t in st_tasks
        .into_iter()
        .filter(|t| !t.record.state.is_terminal())
    {
        let rec = if oom {
            error_rec(
                TaskState::Failed,
                "REASON_CONTAINER_LIMITATION_MEMORY",
                "Memory limit exceeded by the executor's container".into(),
            )
        } else if t.kill_requested {
            error_rec(TaskState::Killed, reason, describe.clone())
        } else if partition_aware(&entry.spec.framework_info) {
            error_rec(TaskState::Gone, reason, describe.clone())
        } else {
            error_rec(TaskState::Lost, reason, describe.clone())
        };
        shared.emit(&t.spec.task_id, &t.spec.framework_id, rec);
    }
    shared.checkpoint.remove_executor(&entry.dir);
    shared.send_or_defer(AgentMessage::ExecutorExited {
        framework_id: key.0.clone(),
        executor_id: key.1.clone(),
        status,
    });
}

/// Whether the framework is PARTITION_AWARE (its tasks of a dead executor go TASK_GONE rather
/// than TASK_LOST, as in Mesos).
fn partition_aware(framework_info: &meseta_api::scheduler::FrameworkInfo) -> bool {
    framework_info
        .capabilities
        .as_ref()
        .is_some_and(|caps| caps.iter().any(|c| c.kind == "PARTITION_AWARE"))
}

/// Emit `rec(task)` for every live task of the executor.
fn settle_tasks(shared: &Shared, key: &Key, rec: impl Fn(&TaskEntry) -> StateRecord) {
    let tasks: Vec<TaskEntry> = {
        let st = shared.lock();
        let Some(e) = st.executors.get(key) else {
            return;
        };
        e.tasks
            .iter()
            .filter_map(|id| st.tasks.get(id).cloned())
            .filter(|t| !t.record.state.is_terminal())
            .collect()
    };
    for t in tasks {
        shared.emit(&t.spec.task_id, &t.spec.framework_id, rec(&t));
    }
}

/// `KillTask` of an executor's task: KILL to the executor (or, not delivered yet, killed here).
pub(crate) fn kill_task(shared: &Shared, task: &TaskEntry, grace_secs: Option<f64>) {
    let Some(key) = key_of(&task.spec) else {
        return;
    };
    let id = &task.spec.task_id;
    let kill_policy =
        grace_secs.map(|g| serde_json::json!({"grace_period": {"nanoseconds": (g * 1e9) as i64}}));
    let sent = {
        let mut st = shared.lock();
        match st.executors.get_mut(&key) {
            Some(e) if task.record.state == TaskState::Staging && e.stream.is_none() => false,
            Some(e) => {
                let ok = e.send(Event::Kill {
                    kill: wire::KillEvent {
                        task_id: IdValue::new(id.as_str()),
                        kill_policy,
                    },
                });
                if !ok {
                    e.pending_kills.insert(id.clone());
                }
                true
            }
            None => false,
        }
    };
    if !sent {
        // Never delivered (or its executor is gone): it ends here.
        let rec = error_rec(
            TaskState::Killed,
            "REASON_TASK_KILLED_DURING_LAUNCH",
            "Task killed before delivery to the executor".into(),
        );
        shared.emit_if(id, &task.spec.framework_id, rec, |t| {
            !t.record.state.is_terminal()
        });
    }
}

/// `ShutdownExecutor`: SHUTDOWN, then the kill after its grace period.
pub(crate) fn shutdown(shared: &Arc<Shared>, key: &Key, reason: &'static str) {
    let (dir, grace, started) = {
        let mut st = shared.lock();
        let Some(e) = st.executors.get_mut(key) else {
            tracing::info!(executor_id = %key.1, "shutdown of an unknown executor ignored");
            return;
        };
        if e.stopping.is_some() {
            return;
        }
        e.stopping = Some(reason);
        let told = e.send(Event::Shutdown);
        let grace = if told {
            e.spec.info.shutdown_grace_secs()
        } else {
            0.0
        };
        (e.dir.clone(), grace, e.started)
    };
    tracing::info!(executor_id = %key.1, grace, started, "shutting down executor");
    if !started {
        return; // `start` kills it as soon as its shim is spawned
    }
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs_f64(grace)).await;
        if shim::read_exit(&dir).ok().flatten().is_none() {
            crate::tasks::request_kill_retrying(dir).await;
        }
    });
}

/// `ShutdownFramework`: every executor of the framework.
pub(crate) fn shutdown_framework(shared: &Arc<Shared>, fw: &FrameworkId) {
    let keys: Vec<Key> = shared
        .lock()
        .executors
        .keys()
        .filter(|(f, _)| f == fw)
        .cloned()
        .collect();
    for key in keys {
        shutdown(shared, &key, "REASON_EXECUTOR_TERMINATED");
    }
}

/// `FrameworkMessage`: MESSAGE to the executor (dropped when it has no stream, as in Mesos).
pub(crate) fn message(shared: &Shared, key: &Key, data: String) {
    let st = shared.lock();
    let sent = st.executors.get(key).is_some_and(|e| {
        e.send(Event::Message {
            message: wire::MessagePayload { data },
        })
    });
    if !sent {
        tracing::info!(executor_id = %key.1, "framework message dropped: executor not subscribed");
    }
}

/// At agent start: executors whose shim lives wait for their SUBSCRIBE; the others are settled.
pub(crate) fn recover(shared: &Arc<Shared>) -> Result<(), crate::AgentError> {
    for (dir, spec) in shared.checkpoint.load_executors()? {
        let fw = spec
            .info
            .framework_id
            .as_ref()
            .map(|f| FrameworkId::new(f.as_str()))
            .unwrap_or_default();
        let key = (fw, spec.id().to_string());
        let mut entry = ExecutorEntry::new(Arc::new(spec), dir.clone());
        entry.started = true;
        {
            let mut st = shared.lock();
            entry.tasks = st
                .tasks
                .values()
                .filter(|t| key_of(&t.spec).as_ref() == Some(&key))
                .map(|t| t.spec.task_id.clone())
                .collect();
            st.executors.insert(key.clone(), entry);
        }
        let exited = matches!(shim::read_exit(&dir), Ok(Some(_)));
        if !exited && shim::shim_alive(&dir) {
            tracing::info!(executor_id = %key.1, "waiting for the executor to subscribe again");
            tokio::spawn(watch(Arc::clone(shared), key.clone()));
            tokio::spawn(stop_unless_subscribed(
                Arc::clone(shared),
                key,
                shared.cfg.executor_reregistration_timeout,
                "REASON_EXECUTOR_REREGISTRATION_TIMEOUT",
            ));
        } else {
            tracing::info!(executor_id = %key.1, "executor ended while the agent was down");
            ended(shared, &key);
        }
    }
    Ok(())
}

/// Whether a task runs in a custom executor (no shim of its own).
pub(crate) fn is_executor_task(spec: &TaskSpec) -> bool {
    spec.executor.as_ref().is_some_and(|e| !e.info.is_default())
}
