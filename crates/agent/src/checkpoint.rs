//! On-disk checkpoints of the agent, the source of truth across agent restarts.
//!
//! ```text
//! <work_dir>/agent_id                         the id the master gave us
//! <work_dir>/http_key                         the key the HTTP endpoints require (0600)
//! <work_dir>/tasks/<task_id>/task.json        the TaskSpec (with its framework)
//! <work_dir>/tasks/<task_id>/state.json       the task's latest state (+ reason/message/exit code)
//! <work_dir>/tasks/<task_id>/kill_requested   marker: a kill was requested
//! <work_dir>/tasks/<task_id>/{launch.json,exit.json,shim.pid,task.pid,sandbox/}   isolation's files
//! <work_dir>/updates/<task_id>/<seq>-<uuid>.json   unacknowledged status updates
//! <work_dir>/executors/<framework_id>/<executor_id>/executor.json   a live custom executor
//! <work_dir>/executors/<framework_id>/<executor_id>/{launch.json,exit.json,shim.pid,sandbox/}
//! ```
//!
//! Every write is atomic (tmp file + rename). What must survive the machine going down is also
//! fsynced (the agent id, `task.json`, unacknowledged updates, kill markers); `state.json` is
//! only replaced atomically: the latest state matters across agent restarts, and after a machine
//! crash the task is gone and its fsynced updates and exit record tell the rest. Used by the
//! agent state, launch and recovery.
//! Paths are built from [`PathId`]s only (validated ids). Tasks run as other users: they may
//! traverse `<work_dir>` and `tasks/<task_id>/` (mode 0711) down to their own sandbox, but cannot
//! list them, and every file the agent writes here is 0600 (`updates/` is 0700).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use meseta_api::agent::{StatusUpdate, TaskSpec};
use meseta_types::{AgentId, TaskState};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::path_id::PathId;
use crate::AgentError;

/// File holding the agent id.
const AGENT_ID_FILE: &str = "agent_id";
const HTTP_KEY_FILE: &str = "http_key";
/// Executor spec file in an executor dir.
const EXECUTOR_FILE: &str = "executor.json";
/// Task spec file in a task dir.
const TASK_FILE: &str = "task.json";
/// Latest state file in a task dir.
const STATE_FILE: &str = "state.json";
/// Kill marker in a task dir.
const KILL_MARKER: &str = "kill_requested";
/// Marker of a kill requested by the health checker (holds the last failure's message).
const HEALTH_KILL_MARKER: &str = "health_kill";

/// The latest state of a task as recorded in its dir.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct StateRecord {
    /// Latest state.
    pub state: TaskState,
    /// Reason of the update that set it.
    #[serde(default)]
    pub reason: Option<String>,
    /// Message of the update that set it.
    #[serde(default)]
    pub message: Option<String>,
    /// Exit code of the update that set it.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Health reported by the update that set it (health-check updates and health kills).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

/// An unacknowledged update loaded from disk.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PendingUpdate {
    /// Global sequence number (orders updates).
    pub seq: u64,
    /// The update.
    pub update: StatusUpdate,
}

/// Paths and atomic file operations under the work dir.
#[derive(Clone, Debug)]
pub(crate) struct Checkpoint {
    work_dir: PathBuf,
}

impl Checkpoint {
    /// Create the work dir layout (`tasks/`, `updates/`).
    pub fn open(work_dir: &Path) -> Result<Checkpoint, AgentError> {
        for dir in [work_dir.join("tasks"), work_dir.join("updates")] {
            fs::create_dir_all(&dir).map_err(|e| AgentError::io(&dir, e))?;
        }
        // Tasks may run as other users: they must be able to traverse down to their sandbox
        // (but not list what is there).
        traversable(work_dir)?;
        set_mode(&work_dir.join("tasks"), 0o711)?;
        set_mode(&work_dir.join("updates"), 0o700)?;
        Ok(Checkpoint {
            work_dir: work_dir.to_path_buf(),
        })
    }

    /// `<work_dir>/executors/<framework_id>/<executor_id>`.
    pub fn executor_dir(&self, framework_id: &PathId, executor_id: &PathId) -> PathBuf {
        self.work_dir
            .join("executors")
            .join(framework_id)
            .join(executor_id)
    }

    /// Record a custom executor (fsynced): recovery reattaches to it while this file exists.
    pub fn write_executor(
        &self,
        dir: &Path,
        spec: &meseta_api::agent::ExecutorSpec,
    ) -> Result<(), AgentError> {
        fs::create_dir_all(dir).map_err(|e| AgentError::io(dir, e))?;
        for d in [dir.parent(), Some(dir)].into_iter().flatten() {
            set_mode(d, 0o711)?;
        }
        if let Some(root) = dir.parent().and_then(Path::parent) {
            set_mode(root, 0o711)?;
        }
        let data = serde_json::to_vec_pretty(spec).map_err(|source| AgentError::Json {
            path: dir.join(EXECUTOR_FILE),
            source,
        })?;
        write_atomic(&dir.join(EXECUTOR_FILE), &data)
    }

    /// The executor ended and was settled: recovery no longer considers it.
    pub fn remove_executor(&self, dir: &Path) {
        let _ = fs::remove_file(dir.join(EXECUTOR_FILE));
    }

    /// Every recorded executor with its dir.
    pub fn load_executors(
        &self,
    ) -> Result<Vec<(PathBuf, meseta_api::agent::ExecutorSpec)>, AgentError> {
        let mut out = Vec::new();
        for fw in list_dirs(&self.work_dir.join("executors"))? {
            for dir in list_dirs(&fw)? {
                match read_json(&dir.join(EXECUTOR_FILE)) {
                    Ok(Some(spec)) => out.push((dir, spec)),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(dir = %dir.display(), error = %e,
                        "unreadable executor record skipped"),
                }
            }
        }
        Ok(out)
    }

    /// `<work_dir>/tasks/<task_id>`.
    pub fn task_dir(&self, task_id: &PathId) -> PathBuf {
        self.work_dir.join("tasks").join(task_id)
    }

    fn updates_dir(&self, task_id: &PathId) -> PathBuf {
        self.work_dir.join("updates").join(task_id)
    }

    /// The persisted agent id, if any.
    pub fn read_agent_id(&self) -> Result<Option<AgentId>, AgentError> {
        let path = self.work_dir.join(AGENT_ID_FILE);
        match fs::read_to_string(&path) {
            Ok(s) if s.trim().is_empty() => Ok(None),
            Ok(s) => {
                let id = AgentId::new(s.trim());
                PathId::agent(&id)?;
                Ok(Some(id))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AgentError::io(path, e)),
        }
    }

    /// Persist the agent id (atomically, fsynced).
    pub fn write_agent_id(&self, id: &AgentId) -> Result<(), AgentError> {
        write_atomic(&self.work_dir.join(AGENT_ID_FILE), id.as_str().as_bytes())
    }

    /// The key the master last gave for the HTTP endpoints. An unreadable file (other than a
    /// missing one) yields a key nobody has, so the endpoints stay closed until the master
    /// gives one again.
    pub fn read_http_key(&self) -> Option<String> {
        let path = self.work_dir.join(HTTP_KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(s) => Some(s.trim().to_string()).filter(|k| !k.is_empty()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the HTTP key");
                Some(uuid::Uuid::new_v4().simple().to_string())
            }
        }
    }

    /// Keep `key` (0600, fsynced), or remove it for `None`.
    pub fn write_http_key(&self, key: Option<&str>) -> Result<(), AgentError> {
        let path = self.work_dir.join(HTTP_KEY_FILE);
        match key {
            // Written 0600 from the start (see `write_via_tmp`).
            Some(k) => write_atomic(&path, k.as_bytes()),
            None => match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(AgentError::io(path, e)),
            },
        }
    }

    /// Create the task dir (0711: its user traverses it to the sandbox) and write `task.json`.
    pub fn write_task(&self, spec: &TaskSpec) -> Result<PathBuf, AgentError> {
        let dir = self.task_dir(&PathId::task(&spec.task_id)?);
        fs::create_dir_all(&dir).map_err(|e| AgentError::io(&dir, e))?;
        set_mode(&dir, 0o711)?;
        write_json(&dir.join(TASK_FILE), spec)?;
        Ok(dir)
    }

    /// Record the latest state of a task in its dir (atomic, not fsynced: see the module docs).
    pub fn write_state(&self, task_id: &PathId, rec: &StateRecord) -> Result<(), AgentError> {
        let path = self.task_dir(task_id).join(STATE_FILE);
        let data = serde_json::to_vec_pretty(rec).map_err(|source| AgentError::Json {
            path: path.clone(),
            source,
        })?;
        write_via_tmp(&path, &data, false)
    }

    /// Persist the kill marker of a task.
    pub fn mark_kill_requested(&self, task_id: &PathId) -> Result<(), AgentError> {
        write_atomic(&self.task_dir(task_id).join(KILL_MARKER), b"1")
    }

    /// Persist that the health checker killed the task, and why.
    pub fn mark_health_kill(&self, task_id: &PathId, message: &str) -> Result<(), AgentError> {
        write_atomic(
            &self.task_dir(task_id).join(HEALTH_KILL_MARKER),
            message.as_bytes(),
        )
    }

    /// Why the health checker killed the task, if it did.
    pub fn health_kill(&self, task_id: &PathId) -> Option<String> {
        fs::read_to_string(self.task_dir(task_id).join(HEALTH_KILL_MARKER)).ok()
    }

    /// Every task dir holding a readable `task.json`: (spec, latest state, kill requested).
    /// Unreadable dirs, and dirs whose `task.json` names an invalid id or another dir, are skipped
    /// with a warning.
    pub fn load_tasks(&self) -> Result<Vec<(TaskSpec, Option<StateRecord>, bool)>, AgentError> {
        let mut out = Vec::new();
        for dir in list_dirs(&self.work_dir.join("tasks"))? {
            let spec: TaskSpec = match read_json(&dir.join(TASK_FILE)) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "skipping unreadable task dir");
                    continue;
                }
            };
            let named_here = PathId::task(&spec.task_id)
                .is_ok_and(|id| dir.file_name() == Some(id.as_str().as_ref()));
            if !named_here {
                tracing::warn!(dir = %dir.display(), task_id = %spec.task_id,
                    "skipping task dir whose task.json names another task");
                continue;
            }
            let state = read_json(&dir.join(STATE_FILE)).unwrap_or_else(|e| {
                tracing::warn!(dir = %dir.display(), error = %e, "unreadable task state");
                None
            });
            out.push((spec, state, dir.join(KILL_MARKER).exists()));
        }
        Ok(out)
    }

    /// Checkpoint an update before it is sent.
    pub fn write_update(&self, seq: u64, update: &StatusUpdate) -> Result<(), AgentError> {
        let dir = self.updates_dir(&PathId::task(&update.task_id)?);
        fs::create_dir_all(&dir).map_err(|e| AgentError::io(&dir, e))?;
        write_json(&dir.join(update_file_name(seq, &update.uuid)), update)
    }

    /// Drop an acknowledged update (missing files are fine: acks may repeat; an update of an
    /// invalid id was never written).
    pub fn remove_update(&self, seq: u64, update: &StatusUpdate) -> Result<(), AgentError> {
        let Ok(id) = PathId::task(&update.task_id) else {
            return Ok(());
        };
        let dir = self.updates_dir(&id);
        let path = dir.join(update_file_name(seq, &update.uuid));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AgentError::io(path, e)),
        }
        // Remove the per-task dir once empty; failure (not empty) is expected and ignored.
        let _ = fs::remove_dir(&dir);
        Ok(())
    }

    /// Every unacknowledged update, in sequence order.
    pub fn load_updates(&self) -> Result<Vec<PendingUpdate>, AgentError> {
        let mut out = Vec::new();
        for dir in list_dirs(&self.work_dir.join("updates"))? {
            let entries = fs::read_dir(&dir).map_err(|e| AgentError::io(&dir, e))?;
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(seq) = parse_seq(&path) else {
                    continue;
                };
                match read_json::<StatusUpdate>(&path) {
                    Ok(Some(update)) => out.push(PendingUpdate { seq, update }),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "skipping bad update")
                    }
                }
            }
        }
        out.sort_by_key(|p| p.seq);
        Ok(out)
    }
}

fn update_file_name(seq: u64, uuid: &str) -> String {
    format!("{seq:020}-{uuid}.json")
}

fn parse_seq(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    if !name.ends_with(".json") {
        return None;
    }
    name.split('-').next()?.parse().ok()
}

fn list_dirs(dir: &Path) -> Result<Vec<PathBuf>, AgentError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AgentError::io(dir, e)),
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Serialize `value` as JSON into `path` atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), AgentError> {
    let data = serde_json::to_vec_pretty(value).map_err(|source| AgentError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &data)
}

/// Read JSON from `path`; `Ok(None)` when the file does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, AgentError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AgentError::io(path, e)),
    };
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|source| AgentError::Json {
            path: path.to_path_buf(),
            source,
        })
}

/// Write `data` to `path` via `<path>.tmp`, fsync, rename, fsync of the parent dir.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), AgentError> {
    write_via_tmp(path, data, true)
}

/// `<path>.tmp` (0600), rename; with `durable`, fsync of the file before and of the parent dir
/// after the rename.
fn write_via_tmp(path: &Path, data: &[u8], durable: bool) -> Result<(), AgentError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| AgentError::io(&tmp, e))?;
    file.write_all(data).map_err(|e| AgentError::io(&tmp, e))?;
    if durable {
        file.sync_all().map_err(|e| AgentError::io(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| AgentError::io(path, e))?;
    if !durable {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Set the permission bits of a directory the agent owns.
fn set_mode(dir: &Path, mode: u32) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(|e| AgentError::io(dir, e))
}

/// Add `--x` for group and others to a directory the agent owns.
fn traversable(dir: &Path) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(dir).map_err(|e| AgentError::io(dir, e))?;
    let mode = meta.permissions().mode();
    if mode & 0o011 != 0o011 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o011))
            .map_err(|e| AgentError::io(dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_types::{FrameworkId, TaskId};

    fn update(task: &str, uuid: &str, state: TaskState) -> StatusUpdate {
        StatusUpdate {
            uuid: uuid.to_string(),
            task_id: TaskId::new(task),
            framework_id: FrameworkId::new("fw"),
            state,
            reason: None,
            message: None,
            timestamp: 1.0,
            exit_code: None,
            healthy: None,
            executor_id: None,
            data: None,
        }
    }

    #[test]
    fn agent_id_roundtrip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = Checkpoint::open(dir.path()).expect("open");
        assert_eq!(cp.read_agent_id().expect("read"), None);
        cp.write_agent_id(&AgentId::new("a-1")).expect("write");
        assert_eq!(cp.read_agent_id().expect("read"), Some(AgentId::new("a-1")));
        assert!(!dir.path().join("agent_id.tmp").exists());
    }

    #[test]
    fn updates_write_load_ack_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = Checkpoint::open(dir.path()).expect("open");
        let u1 = update("t1", "u1", TaskState::Starting);
        let u2 = update("t2", "u2", TaskState::Starting);
        let u3 = update("t1", "u3", TaskState::Running);
        cp.write_update(10, &u1).expect("w1");
        cp.write_update(2, &u2).expect("w2");
        cp.write_update(11, &u3).expect("w3");
        let loaded = cp.load_updates().expect("load");
        let seqs: Vec<u64> = loaded.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, vec![2, 10, 11]);
        assert_eq!(loaded[1].update, u1);

        cp.remove_update(10, &u1).expect("ack");
        cp.remove_update(10, &u1).expect("repeated ack is fine");
        let left: Vec<String> = cp
            .load_updates()
            .expect("load")
            .into_iter()
            .map(|p| p.update.uuid)
            .collect();
        assert_eq!(left, vec!["u2".to_string(), "u3".to_string()]);
        cp.remove_update(2, &u2).expect("ack");
        assert!(!dir.path().join("updates/t2").exists(), "empty dir removed");
    }

    #[test]
    fn ids_that_leave_the_work_dir_write_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        let cp = Checkpoint::open(&work).expect("open");
        let escape = "../../escaped/a/b";
        let err = cp
            .write_update(1, &update(escape, "u1", TaskState::Error))
            .expect_err("refused");
        assert!(matches!(err, AgentError::InvalidId(_)), "{err}");
        let mut spec = crate::tasks::tests::spec(escape, "cpus:1");
        assert!(cp.write_task(&spec).is_err());
        spec.task_id = meseta_types::TaskId::new("..");
        assert!(cp.write_task(&spec).is_err());
        assert!(!dir.path().join("escaped").exists());
        assert_eq!(
            std::fs::read_dir(work.join("updates")).expect("ls").count(),
            0
        );
    }

    #[test]
    fn checkpoints_are_private_to_the_agent() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = Checkpoint::open(dir.path()).expect("open");
        let spec = crate::tasks::tests::spec("t1", "cpus:1;mem:32");
        let task_dir = cp.write_task(&spec).expect("task");
        cp.write_update(1, &update("t1", "u1", TaskState::Running))
            .expect("update");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&task_dir), 0o711);
        assert_eq!(mode(&task_dir.join(TASK_FILE)), 0o600);
        assert_eq!(mode(&dir.path().join("tasks")), 0o711);
        assert_eq!(mode(&dir.path().join("updates")), 0o700);
        let upd = cp.load_updates().expect("load");
        let file = dir
            .path()
            .join("updates/t1")
            .join(update_file_name(upd[0].seq, "u1"));
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn tasks_state_and_kill_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = Checkpoint::open(dir.path()).expect("open");
        let spec = crate::tasks::tests::spec("t1", "cpus:1;mem:32");
        cp.write_task(&spec).expect("task");
        let rec = StateRecord {
            state: TaskState::Failed,
            reason: None,
            message: Some("Command exited with status 3".into()),
            exit_code: Some(3),
            healthy: Some(false),
        };
        let t1 = PathId::parse("task", "t1").expect("id");
        cp.write_state(&t1, &rec).expect("state");
        cp.mark_kill_requested(&t1).expect("kill");
        assert_eq!(cp.health_kill(&t1), None);
        cp.mark_health_kill(&t1, "TCP check failed")
            .expect("health kill");
        let tasks = cp.load_tasks().expect("load");
        assert_eq!(tasks, vec![(spec, Some(rec), true)]);
        assert_eq!(cp.health_kill(&t1).as_deref(), Some("TCP check failed"));
    }
}
