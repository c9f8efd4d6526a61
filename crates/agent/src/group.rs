//! Task groups: the agent acting as Mesos' DEFAULT executor for a LAUNCH_GROUP.
//!
//! The tasks of a group arrive together (`LaunchGroup`) and are admitted all or none. Each runs
//! through its own shim, in a child cgroup of the group's parent
//! (`<root>/<agent>/group.<framework>.<executor>/<task>`), with its own sandbox; the group's
//! shared sandbox is `<work_dir>/executors/<framework>/<executor>/sandbox`, and a task's
//! `SANDBOX_PATH` volume of type `PARENT` appears in its sandbox at `container_path` (a link to
//! that shared directory's `path`). As in Mesos' default executor, a task that ends other than
//! TASK_FINISHED, or is killed, kills the rest of its group; when every task of the executor
//! has ended, the executor is over (`ExecutorExited`, status 0, to the master).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use meseta_api::agent::{AgentMessage, TaskSpec};
use meseta_types::{FrameworkId, Resources, TaskId, TaskState};

use crate::checkpoint::StateRecord;
use crate::path_id::PathId;
use crate::state::Shared;

/// Key of a default executor: (framework, executor id).
pub(crate) type Key = (FrameworkId, String);

/// One default executor on this agent: its resources and the tasks of its groups.
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupEntry {
    /// The executor's own resources (counted once).
    pub resources: Resources,
    /// Every task it runs or ran.
    pub tasks: BTreeSet<TaskId>,
}

/// The default executor of a task, when it belongs to a group.
pub(crate) fn key_of(spec: &TaskSpec) -> Option<Key> {
    let e = spec.executor.as_ref().filter(|e| e.info.is_default())?;
    Some((spec.framework_id.clone(), e.id().to_string()))
}

/// `LaunchGroup`: admit every task or none, then start them all.
pub(crate) fn launch(shared: &Arc<Shared>, specs: Vec<TaskSpec>) {
    let Some(key) = specs.first().and_then(key_of) else {
        tracing::warn!("task group without a DEFAULT executor ignored");
        return;
    };
    match admit_all(shared, &key, &specs) {
        Ok(run_as) => {
            for (spec, run_as) in specs.into_iter().zip(run_as) {
                crate::tasks::start_admitted(shared, spec, run_as);
            }
        }
        Err(message) => {
            tracing::warn!(executor_id = %key.1, %message, "rejecting task group");
            for s in &specs {
                let rec = StateRecord {
                    state: TaskState::Error,
                    reason: Some("REASON_TASK_GROUP_INVALID".into()),
                    message: Some(message.clone()),
                    exit_code: None,
                    healthy: None,
                };
                shared.emit_detached(&s.task_id, &s.framework_id, rec);
            }
        }
    }
}

fn admit_all(
    shared: &Shared,
    key: &Key,
    specs: &[TaskSpec],
) -> Result<Vec<crate::users::RunAs>, String> {
    {
        let st = shared.lock();
        let mut need = Resources::new();
        for s in specs {
            if key_of(s).as_ref() != Some(key) {
                return Err(format!("task {} is not of the group's executor", s.task_id));
            }
            need.add(&s.resources.without_volumes().with_role("*"));
        }
        if !st.groups.contains_key(key) {
            if let Some(e) = specs.first().and_then(|s| s.executor.as_ref()) {
                need.add(&e.info.resources.with_role("*"));
            }
        }
        let free = Shared::free_resources(&st, &shared.resources);
        if !free.contains(&need) {
            return Err(format!(
                "the group's resources {need} exceed the free resources {free} of the agent"
            ));
        }
    }
    let mut admitted: Vec<crate::users::RunAs> = Vec::new();
    for s in specs {
        match crate::tasks::admit_for_group(shared, s) {
            Ok(r) => admitted.push(r),
            Err(why) => {
                // Nothing half-way: forget the members admitted so far.
                let mut st = shared.lock();
                for done in &specs[..admitted.len()] {
                    st.tasks.remove(&done.task_id);
                }
                return Err(format!("task {}: {why}", s.task_id));
            }
        }
    }
    let mut st = shared.lock();
    let entry = st.groups.entry(key.clone()).or_insert_with(|| GroupEntry {
        resources: specs
            .first()
            .and_then(|s| s.executor.as_ref())
            .map(|e| e.info.resources.clone())
            .unwrap_or_default(),
        tasks: BTreeSet::new(),
    });
    entry.tasks.extend(specs.iter().map(|s| s.task_id.clone()));
    Ok(admitted)
}

/// `<root>/<agent>/group.<framework>.<executor>/<task>`.
pub(crate) fn cgroup_path(root: &str, agent: &PathId, spec: &TaskSpec, task: &PathId) -> String {
    let (fw, exec) = key_of(spec).unwrap_or_default();
    format!(
        "{}/group.{fw}.{exec}/{task}",
        crate::tasks::agent_cgroup(root, agent)
    )
}

/// The group's shared sandbox.
pub(crate) fn shared_sandbox(shared: &Shared, spec: &TaskSpec) -> Option<PathBuf> {
    let (fw, exec) = key_of(spec)?;
    let fw = PathId::framework(&fw).ok()?;
    let exec = PathId::parse("executor", &exec).ok()?;
    Some(shared.checkpoint.executor_dir(&fw, &exec).join("sandbox"))
}

/// Create the group's shared sandbox and link the task's `SANDBOX_PATH`/`PARENT` volumes into
/// its own sandbox.
pub(crate) fn link_volumes(
    shared: &Shared,
    spec: &TaskSpec,
    sandbox: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    let Some(parent) = shared_sandbox(shared, spec) else {
        return Ok(());
    };
    if let Some(exec_dir) = parent.parent() {
        for d in [exec_dir.parent(), Some(exec_dir)].into_iter().flatten() {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
            set_mode(d, 0o711)?;
        }
    }
    crate::tasks::prepare_sandbox(&parent, owner)?;
    let volumes = spec
        .container
        .as_ref()
        .map(|c| c.volumes.clone())
        .unwrap_or_default();
    for v in volumes {
        let source = v.extra.get("source");
        let is_parent = source.is_some_and(|s| {
            s["type"] == "SANDBOX_PATH"
                && s["sandbox_path"]["type"].as_str().unwrap_or("SELF") == "PARENT"
        });
        if !is_parent {
            continue;
        }
        let path = source
            .and_then(|s| s["sandbox_path"]["path"].as_str())
            .unwrap_or_default();
        let inner = safe_relative(path)?;
        let at = safe_relative(&v.container_path)?;
        let target = parent.join(inner);
        std::fs::create_dir_all(&target)
            .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {}: {e}", target.display()))?;
        }
        let link = sandbox.join(at);
        if let Some(dir) = link.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::os::unix::fs::symlink(&target, &link)
            .map_err(|e| format!("cannot link {}: {e}", link.display()))?;
    }
    Ok(())
}

fn set_mode(dir: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))
}

/// A sandbox-relative path without `..`, absolute parts or emptiness.
fn safe_relative(p: &str) -> Result<&Path, String> {
    let path = Path::new(p.trim_start_matches("./"));
    let ok = !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok {
        Ok(path)
    } else {
        Err(format!("volume path {p:?} must stay inside the sandbox"))
    }
}

/// A task of a group ended with `state`: kill the rest of the group unless it finished, and
/// end the executor once all of its tasks have.
pub(crate) fn member_ended(shared: &Arc<Shared>, spec: &TaskSpec, state: TaskState) {
    let Some(key) = key_of(spec) else {
        return;
    };
    if state != TaskState::Finished {
        kill_others(shared, spec);
    }
    let done = {
        let mut st = shared.lock();
        let all_ended = st.groups.get(&key).is_some_and(|g| {
            g.tasks.iter().all(|id| {
                st.tasks
                    .get(id)
                    .is_none_or(|t| t.record.state.is_terminal())
            })
        });
        if all_ended {
            st.groups.remove(&key)
        } else {
            None
        }
    };
    if done.is_some() {
        tracing::info!(executor_id = %key.1, "default executor done: all its tasks ended");
        remove_parent_cgroup(shared, spec);
        shared.send_or_defer(AgentMessage::ExecutorExited {
            framework_id: key.0.clone(),
            executor_id: key.1.clone(),
            status: 0,
        });
    }
}

/// Kill the other live tasks of `spec`'s group (one failing or killed kills the group).
pub(crate) fn kill_others(shared: &Arc<Shared>, spec: &TaskSpec) {
    let others: Vec<TaskId> = {
        let st = shared.lock();
        spec.group
            .iter()
            .filter(|id| **id != spec.task_id)
            .filter(|id| {
                st.tasks
                    .get(*id)
                    .is_some_and(|t| !t.record.state.is_terminal() && !t.kill_requested)
            })
            .cloned()
            .collect()
    };
    for id in others {
        tracing::info!(task_id = %id, cause = %spec.task_id, "killing the rest of the task group");
        crate::tasks::kill_one(shared, &id, None);
    }
}

fn remove_parent_cgroup(shared: &Shared, spec: &TaskSpec) {
    let (Some(cg), Some(agent)) = (shared.cgroups.as_ref(), shared.lock().agent_id.clone()) else {
        return;
    };
    let (Ok(agent), Ok(task)) = (PathId::agent(&agent), PathId::task(&spec.task_id)) else {
        return;
    };
    let child = cgroup_path(&shared.cfg.cgroup_root, &agent, spec, &task);
    if let Some((parent, _)) = child.rsplit_once('/') {
        let _ = cg.remove(parent);
    }
}

/// After recovery: the groups of the tasks still known (their executors' resources count).
pub(crate) fn recover(shared: &Shared) {
    let mut st = shared.lock();
    let mut groups: BTreeMap<Key, GroupEntry> = BTreeMap::new();
    for t in st.tasks.values() {
        let Some(key) = key_of(&t.spec) else { continue };
        let g = groups.entry(key).or_default();
        if let Some(e) = &t.spec.executor {
            g.resources = e.info.resources.clone();
        }
        g.tasks.insert(t.spec.task_id.clone());
    }
    groups.retain(|_, g| {
        g.tasks.iter().any(|id| {
            st.tasks
                .get(id)
                .is_some_and(|t| !t.record.state.is_terminal())
        })
    });
    st.groups = groups;
}
