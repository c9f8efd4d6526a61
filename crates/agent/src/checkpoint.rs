//! On-disk checkpoints of the agent, the source of truth across agent restarts.
//!
//! ```text
//! <work_dir>/agent_id                         the id the master gave us
//! <work_dir>/http_key                         the key the HTTP endpoints require (0600)
//! <work_dir>/tasks/<task_id>/task.json        the TaskSpec (with its framework)
//! <work_dir>/tasks/<task_id>/updates.log      the task's status updates, acknowledgements and
//!                                             latest states, one JSON record per line (appended)
//! <work_dir>/tasks/<task_id>/state.json       the latest state, as older agents recorded it
//! <work_dir>/tasks/<task_id>/kill_requested   marker: a kill was requested
//! <work_dir>/tasks/<task_id>/{launch.json,exit.json,shim.pid,task.pid,sandbox/}   isolation's files
//! <work_dir>/updates/<task_id>/<seq>-<uuid>.json   unacknowledged updates of tasks without a
//!                                             task dir (a launch refused before it), and of
//!                                             older agents
//! <work_dir>/executors/<framework_id>/<executor_id>/executor.json   a live custom executor
//! <work_dir>/executors/<framework_id>/<executor_id>/{launch.json,exit.json,shim.pid,sandbox/}
//! ```
//!
//! Every file write is atomic (tmp file + rename), except the update log, which is only
//! appended to: a record is one line written by one `write`, and a torn last line (the machine
//! went down mid-write) is skipped when the log is read. Appending creates and deletes no
//! files, so a launch costs the filesystem no inode churn for its updates (allocating inodes
//! next to many recently deleted ones is slow on ext4). What must survive the machine going
//! down is fsynced: the agent id, `task.json`, kill markers and terminal updates. Updates that
//! are not terminal, acknowledgements and latest states are not: after a machine crash the
//! task is gone, and its fsynced terminal update or exit record tells the rest (a lost
//! acknowledgement only resends an update, which frameworks acknowledge again). Used by the
//! agent state, launch and recovery.
//! Paths are built from [`PathId`]s only (validated ids). Tasks run as other users: they may
//! traverse `<work_dir>` and `tasks/<task_id>/` (mode 0711) down to their own sandbox, but cannot
//! list them, and every file the agent writes here is 0600 (`updates/` is 0700).

use std::borrow::Cow;
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
/// Update log in a task dir.
const UPDATES_LOG: &str = "updates.log";
/// An update log longer than this is rewritten with only what is still needed (its
/// unacknowledged updates and latest state) when an acknowledgement is appended.
const LOG_COMPACT_BYTES: u64 = 64 * 1024;

/// One line of an update log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LogRecord<'a> {
    /// An update, checkpointed before it was sent.
    Update {
        seq: u64,
        update: Cow<'a, StatusUpdate>,
    },
    /// The framework acknowledged the update of this uuid.
    Ack { uuid: Cow<'a, str> },
    /// The task's latest state.
    State(Cow<'a, StateRecord>),
}

/// What an update log holds that still matters.
#[derive(Debug, Default)]
struct LogContents {
    /// Unacknowledged updates, in log order.
    pending: Vec<PendingUpdate>,
    /// The latest state recorded.
    state: Option<StateRecord>,
}

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
        if let Err(e) = meseta_isolation::spread_subdirectories(&work_dir.join("tasks")) {
            tracing::debug!(error = %e, "task dirs are not spread over block groups");
        }
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
            // Written 0600 from the start (see `write_atomic`).
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
        // The update log exists before the dir is fsynced (with task.json), so a terminal
        // update's fsync of the log alone makes it durable.
        let log = dir.join(UPDATES_LOG);
        open_log(&log, true).map_err(|e| AgentError::io(&log, e))?;
        write_json(&dir.join(TASK_FILE), spec)?;
        Ok(dir)
    }

    /// Record the latest state of a task in its update log (not fsynced: see the module docs).
    /// The agent records states with their updates ([`Checkpoint::write_update`]).
    #[cfg(test)]
    pub fn write_state(&self, task_id: &PathId, rec: &StateRecord) -> Result<(), AgentError> {
        let path = self.task_dir(task_id).join(UPDATES_LOG);
        append_log(&path, &[LogRecord::State(Cow::Borrowed(rec))], false)
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
            let logged = read_log(&dir.join(UPDATES_LOG)).unwrap_or_else(|e| {
                tracing::warn!(dir = %dir.display(), error = %e, "unreadable update log");
                None
            });
            let state = match logged.and_then(|l| l.state) {
                Some(state) => Some(state),
                None => read_json(&dir.join(STATE_FILE)).unwrap_or_else(|e| {
                    tracing::warn!(dir = %dir.display(), error = %e, "unreadable task state");
                    None
                }),
            };
            out.push((spec, state, dir.join(KILL_MARKER).exists()));
        }
        Ok(out)
    }

    /// Checkpoint an update before it is sent, with the task's new latest `state` if given
    /// (one append to the task's update log; fsynced when the update is terminal). An update of
    /// a task without a task dir gets a file of its own under `updates/`.
    pub fn write_update(
        &self,
        seq: u64,
        update: &StatusUpdate,
        state: Option<&StateRecord>,
    ) -> Result<(), AgentError> {
        let id = PathId::task(&update.task_id)?;
        let task_dir = self.task_dir(&id);
        if !task_dir.is_dir() {
            let dir = self.updates_dir(&id);
            fs::create_dir_all(&dir).map_err(|e| AgentError::io(&dir, e))?;
            return write_json(&dir.join(update_file_name(seq, &update.uuid)), update);
        }
        let mut records = vec![LogRecord::Update {
            seq,
            update: Cow::Borrowed(update),
        }];
        records.extend(state.map(|s| LogRecord::State(Cow::Borrowed(s))));
        append_log(
            &task_dir.join(UPDATES_LOG),
            &records,
            update.state.is_terminal(),
        )
    }

    /// Drop an acknowledged update (acks may repeat; an update of an invalid id was never
    /// written): its file under `updates/` if it has one, else an acknowledgement appended to
    /// its task's log (which is compacted once long).
    pub fn remove_update(&self, seq: u64, update: &StatusUpdate) -> Result<(), AgentError> {
        let Ok(id) = PathId::task(&update.task_id) else {
            return Ok(());
        };
        let dir = self.updates_dir(&id);
        let path = dir.join(update_file_name(seq, &update.uuid));
        match fs::remove_file(&path) {
            Ok(()) => {
                // Remove the per-task dir once empty; failure (not empty) is expected.
                let _ = fs::remove_dir(&dir);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AgentError::io(path, e)),
        }
        let log = self.task_dir(&id).join(UPDATES_LOG);
        if !log.is_file() {
            return Ok(());
        }
        let ack = LogRecord::Ack {
            uuid: Cow::Borrowed(&update.uuid),
        };
        append_log(&log, &[ack], false)?;
        let len = fs::metadata(&log)
            .map_err(|e| AgentError::io(&log, e))?
            .len();
        if len > LOG_COMPACT_BYTES {
            compact_log(&log)?;
        }
        Ok(())
    }

    /// Every unacknowledged update, in sequence order: those in the task dirs' update logs and
    /// those in files of their own under `updates/`.
    pub fn load_updates(&self) -> Result<Vec<PendingUpdate>, AgentError> {
        let mut out = Vec::new();
        for dir in list_dirs(&self.work_dir.join("tasks"))? {
            match read_log(&dir.join(UPDATES_LOG)) {
                Ok(Some(log)) => out.extend(log.pending),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "skipping unreadable update log")
                }
            }
        }
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

/// Write `data` to `path` via `<path>.tmp` (0600), fsync, rename, fsync of the parent dir.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), AgentError> {
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
    file.sync_all().map_err(|e| AgentError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| AgentError::io(path, e))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Open an update log for appending (0600), creating it when `create`.
fn open_log(path: &Path, create: bool) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .append(true)
        .create(create)
        .mode(0o600)
        .open(path)
}

/// Append `records` to the log at `path` in one write; with `durable`, fsync the log (and its
/// dir when this created it).
fn append_log(path: &Path, records: &[LogRecord<'_>], durable: bool) -> Result<(), AgentError> {
    let line = log_lines(path, records)?;
    let (mut file, created) = match open_log(path, false) {
        Ok(f) => (f, false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            open_log(path, true).map_err(|e| AgentError::io(path, e))?,
            true,
        ),
        Err(e) => return Err(AgentError::io(path, e)),
    };
    let before = file.metadata().map_err(|e| AgentError::io(path, e))?.len();
    if let Err(e) = file.write_all(&line) {
        // A part written (the disk is full) would glue the next record to it: take it back.
        let _ = file.set_len(before);
        return Err(AgentError::io(path, e));
    }
    if durable {
        file.sync_data().map_err(|e| AgentError::io(path, e))?;
        if created {
            if let Some(d) = path.parent().and_then(|p| fs::File::open(p).ok()) {
                let _ = d.sync_all();
            }
        }
    }
    Ok(())
}

/// The unacknowledged updates and latest state in the log at `path`; `Ok(None)` when there is
/// no log. Lines that do not parse are skipped with a warning; a last line without its newline
/// (the machine went down mid-write) is cut off the file, so that the next record appended
/// starts a line of its own.
fn read_log(path: &Path) -> Result<Option<LogContents>, AgentError> {
    let mut data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AgentError::io(path, e)),
    };
    if data.last().is_some_and(|b| *b != b'\n') {
        let whole = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        tracing::warn!(path = %path.display(), bytes = data.len() - whole, "cutting a torn last line off an update log");
        data.truncate(whole);
        open_log(path, false)
            .and_then(|f| f.set_len(whole as u64))
            .map_err(|e| AgentError::io(path, e))?;
    }
    let mut updates = Vec::new();
    let mut acked = std::collections::HashSet::new();
    let mut state = None;
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<LogRecord<'_>>(line) {
            Ok(LogRecord::Update { seq, update }) => updates.push(PendingUpdate {
                seq,
                update: update.into_owned(),
            }),
            Ok(LogRecord::Ack { uuid }) => {
                acked.insert(uuid.into_owned());
            }
            Ok(LogRecord::State(s)) => state = Some(s.into_owned()),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping a torn update log line")
            }
        }
    }
    updates.retain(|p| !acked.contains(&p.update.uuid));
    Ok(Some(LogContents {
        pending: updates,
        state,
    }))
}

/// Rewrite the log at `path` with only its unacknowledged updates and latest state (atomic,
/// fsynced).
fn compact_log(path: &Path) -> Result<(), AgentError> {
    let Some(log) = read_log(path)? else {
        return Ok(());
    };
    let records: Vec<LogRecord<'_>> = log
        .pending
        .iter()
        .map(|p| LogRecord::Update {
            seq: p.seq,
            update: Cow::Borrowed(&p.update),
        })
        .chain(
            log.state
                .as_ref()
                .map(|s| LogRecord::State(Cow::Borrowed(s))),
        )
        .collect();
    write_atomic(path, &log_lines(path, &records)?)
}

/// `records` as the lines of the log at `path`, each ended by a newline.
fn log_lines(path: &Path, records: &[LogRecord<'_>]) -> Result<Vec<u8>, AgentError> {
    let mut data = Vec::with_capacity(512);
    for r in records {
        serde_json::to_writer(&mut data, r).map_err(|source| AgentError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        data.push(b'\n');
    }
    Ok(data)
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
        cp.write_update(10, &u1, None).expect("w1");
        cp.write_update(2, &u2, None).expect("w2");
        cp.write_update(11, &u3, None).expect("w3");
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
            .write_update(1, &update(escape, "u1", TaskState::Error), None)
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
        cp.write_update(1, &update("t1", "u1", TaskState::Running), None)
            .expect("update");
        cp.write_update(2, &update("t2", "u2", TaskState::Error), None)
            .expect("update of a task without a dir");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&task_dir), 0o711);
        assert_eq!(mode(&task_dir.join(TASK_FILE)), 0o600);
        assert_eq!(mode(&task_dir.join(UPDATES_LOG)), 0o600);
        assert_eq!(mode(&dir.path().join("tasks")), 0o711);
        assert_eq!(mode(&dir.path().join("updates")), 0o700);
        let file = dir
            .path()
            .join("updates/t2")
            .join(update_file_name(2, "u2"));
        assert_eq!(mode(&file), 0o600);
        assert_eq!(cp.load_updates().expect("load").len(), 2);
    }

    #[test]
    fn task_updates_go_to_its_log_and_survive_a_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = Checkpoint::open(dir.path()).expect("open");
        let task_dir = cp
            .write_task(&crate::tasks::tests::spec("t1", "cpus:1;mem:32"))
            .expect("task");
        let starting = update("t1", "u1", TaskState::Starting);
        let running = update("t1", "u2", TaskState::Running);
        let rec = crate::state::plain;
        cp.write_update(1, &starting, Some(&rec(TaskState::Starting)))
            .expect("w1");
        cp.write_update(2, &running, Some(&rec(TaskState::Running)))
            .expect("w2");
        cp.remove_update(1, &starting).expect("ack");
        cp.remove_update(1, &starting)
            .expect("repeated ack is fine");
        // No file of its own, and nothing under updates/.
        assert_eq!(
            std::fs::read_dir(dir.path().join("updates"))
                .expect("ls")
                .count(),
            0
        );
        // A write torn by a crash leaves a partial last line.
        let log = task_dir.join(UPDATES_LOG);
        let mut f = open_log(&log, false).expect("open");
        f.write_all(b"{\"update\":{\"seq\":3,\"upd").expect("torn");
        let pending = cp.load_updates().expect("load");
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].seq, &pending[0].update), (2, &running));
        let tasks = cp.load_tasks().expect("tasks");
        assert_eq!(tasks[0].1, Some(rec(TaskState::Running)));
        // The torn part is cut off: what the restarted agent appends next reads back.
        let failed = update("t1", "u3", TaskState::Failed);
        cp.write_update(3, &failed, Some(&rec(TaskState::Failed)))
            .expect("w3");
        let pending = cp.load_updates().expect("load");
        let uuids: Vec<&str> = pending.iter().map(|p| p.update.uuid.as_str()).collect();
        assert_eq!(uuids, ["u2", "u3"]);
        assert_eq!(
            cp.load_tasks().expect("tasks")[0].1,
            Some(rec(TaskState::Failed))
        );
    }

    #[test]
    fn a_long_log_is_compacted_to_what_is_still_needed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = Checkpoint::open(dir.path()).expect("open");
        let task_dir = cp
            .write_task(&crate::tasks::tests::spec("t1", "cpus:1;mem:32"))
            .expect("task");
        let healthy = StateRecord {
            healthy: Some(true),
            ..crate::state::plain(TaskState::Running)
        };
        let last = 1_000;
        for seq in 1..=last {
            let u = update("t1", &format!("u{seq}"), TaskState::Running);
            cp.write_update(seq, &u, Some(&healthy)).expect("write");
            if seq < last {
                cp.remove_update(seq, &u).expect("ack");
            }
        }
        let len = std::fs::metadata(task_dir.join(UPDATES_LOG))
            .expect("stat")
            .len();
        assert!(len <= LOG_COMPACT_BYTES, "log of {len} bytes");
        let pending = cp.load_updates().expect("load");
        let uuids: Vec<&str> = pending.iter().map(|p| p.update.uuid.as_str()).collect();
        assert_eq!(uuids, ["u1000"]);
        assert_eq!(cp.load_tasks().expect("tasks")[0].1, Some(healthy));
    }

    #[test]
    fn checkpoints_of_older_agents_still_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = Checkpoint::open(dir.path()).expect("open");
        let task_dir = cp
            .write_task(&crate::tasks::tests::spec("t1", "cpus:1;mem:32"))
            .expect("task");
        // An older agent wrote no log, its state to state.json and each update to a file.
        std::fs::remove_file(task_dir.join(UPDATES_LOG)).expect("rm log");
        let rec = crate::state::plain(TaskState::Running);
        write_json(&task_dir.join(STATE_FILE), &rec).expect("state.json");
        let old = update("t1", "u7", TaskState::Running);
        let updates = dir.path().join("updates/t1");
        std::fs::create_dir_all(&updates).expect("mkdir");
        write_json(&updates.join(update_file_name(7, "u7")), &old).expect("update file");
        let pending = cp.load_updates().expect("load");
        assert_eq!((pending[0].seq, &pending[0].update), (7, &old));
        assert_eq!(cp.load_tasks().expect("tasks")[0].1, Some(rec));
        // Its acknowledgement removes the file; the next update starts the log.
        cp.remove_update(7, &old).expect("ack");
        assert!(!updates.exists());
        let done = update("t1", "u8", TaskState::Finished);
        cp.write_update(8, &done, None).expect("terminal update");
        assert_eq!(cp.load_updates().expect("load")[0].update, done);
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
