//! cgroup control for task isolation: the [`Cgroups`] trait with v1 ([`V1`]) and v2 ([`V2`])
//! implementations. Used by the shim (create, join, kill, remove) and by the agent (usage, oom).
//!
//! Both implementations take a root directory so unit tests can run against a tempdir laid out
//! like a cgroup file system (`with_root`).

mod v1;
mod v2;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Limits;

pub use v1::V1;
pub use v2::V2;

/// Default mount point of the cgroup file system(s).
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// cgroup hierarchy version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Legacy per-controller hierarchies.
    V1,
    /// Unified hierarchy.
    V2,
}

/// Resource usage of a cgroup.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    /// Current memory usage in bytes.
    pub mem_bytes: u64,
    /// Total CPU time consumed in seconds.
    pub cpu_secs: f64,
    /// The detail beside the two totals; each figure is 0 where the host's cgroup files lack it.
    #[serde(default)]
    pub detail: UsageDetail,
}

/// The finer figures of a cgroup's usage (Mesos `ResourceStatistics` fields), read best-effort:
/// a controller or file the host does not have leaves its figure at 0.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct UsageDetail {
    /// CPU time in user mode, seconds.
    pub cpu_user_secs: f64,
    /// CPU time in kernel mode, seconds.
    pub cpu_system_secs: f64,
    /// CFS periods in which the cgroup was throttled.
    pub cpu_nr_throttled: u64,
    /// Total time throttled, seconds.
    pub cpu_throttled_secs: f64,
    /// Anonymous (resident) memory, bytes.
    pub mem_rss_bytes: u64,
    /// Page cache, bytes.
    pub mem_cache_bytes: u64,
    /// Processes (tasks) in the cgroup.
    pub pids: u64,
    /// OOM kills inside the cgroup.
    pub oom_events: u64,
}

/// The value of `key` in a keyed file, 0 when the file or the key is missing or unreadable.
pub(crate) fn keyed_or_zero(path: &Path, key: &str) -> u64 {
    read_file(path)
        .ok()
        .and_then(|c| keyed(path, &c, key).ok().flatten())
        .unwrap_or(0)
}

/// A single-number file, 0 when missing or unreadable.
pub(crate) fn number_or_zero(path: &Path) -> u64 {
    read_file(path)
        .ok()
        .and_then(|c| parse(path, &c).ok())
        .unwrap_or(0)
}

/// Errors of cgroup operations.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// File system failure on `path`.
    #[error("cgroup io error on {path}: {source}")]
    Io {
        /// Failing path.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// A cgroup file had unexpected content.
    #[error("cannot parse cgroup file {path}: {content:?}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Its content.
        content: String,
    },
    /// The cgroup path is absolute or escapes the root.
    #[error("invalid cgroup path {0:?}")]
    InvalidPath(String),
    /// Processes did not go away in time.
    #[error("cgroup {path} still busy: {detail}")]
    Busy {
        /// cgroup directory.
        path: PathBuf,
        /// What was still there.
        detail: String,
    },
    /// No cgroup file system found.
    #[error("no cgroup file system at {0}")]
    NotMounted(PathBuf),
}

/// Operations on task cgroups; `path` is always relative to the hierarchy root(s).
pub trait Cgroups: Send + Sync {
    /// Hierarchy version.
    fn version(&self) -> Version;
    /// Create the cgroup (every controller on v1) and write `limits`.
    fn create(&self, path: &str, limits: &Limits) -> Result<(), CgroupError>;
    /// The `cgroup.procs` file(s) listing the cgroup's processes.
    fn procs_files(&self, path: &str) -> Vec<PathBuf>;
    /// The file(s) a freshly forked, single-threaded process writes `0` into to join the
    /// cgroup (the task's child between fork and exec).
    fn join_files(&self, path: &str) -> Vec<PathBuf> {
        self.procs_files(path)
    }
    /// Pids currently in the cgroup.
    fn pids(&self, path: &str) -> Result<Vec<i32>, CgroupError>;
    /// Whether the OOM killer fired in the cgroup.
    fn oom_killed(&self, path: &str) -> Result<bool, CgroupError>;
    /// Memory and CPU usage.
    fn usage(&self, path: &str) -> Result<Usage, CgroupError>;
    /// Limits read back from the cgroup files.
    fn read_limits(&self, path: &str) -> Result<Limits, CgroupError>;
    /// SIGKILL every process until the cgroup is empty (bounded).
    fn kill_all(&self, path: &str) -> Result<(), CgroupError>;
    /// Remove the cgroup directories (retrying briefly while busy). Missing is fine.
    fn remove(&self, path: &str) -> Result<(), CgroupError>;
    /// Remove the stale cgroups directly below `parent` (in every hierarchy) whose names are not in
    /// `keep`: each child subtree is removed bottom-up, empty leaves first, skipping every directory
    /// that holds processes or still has children. Returns the names of the children removed from
    /// every hierarchy. A missing `parent` is fine.
    fn prune_stale(&self, parent: &str, keep: &[&str]) -> Result<Vec<String>, CgroupError>;
}

/// Detect the cgroup version of this host at `/sys/fs/cgroup`.
pub fn detect() -> Result<Box<dyn Cgroups>, CgroupError> {
    detect_at(Path::new(DEFAULT_ROOT))
}

fn detect_at(root: &Path) -> Result<Box<dyn Cgroups>, CgroupError> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    let st = statfs(root).map_err(|e| CgroupError::Io {
        path: root.to_path_buf(),
        source: io::Error::from(e),
    })?;
    if st.filesystem_type() == CGROUP2_SUPER_MAGIC {
        return Ok(Box::new(V2::with_root(root.to_path_buf())));
    }
    if root.join("memory").is_dir() || root.join("cpu").is_dir() {
        return Ok(Box::new(V1::with_root(root.to_path_buf())));
    }
    Err(CgroupError::NotMounted(root.to_path_buf()))
}

/// Join `root` and a relative cgroup path, rejecting absolute paths and `..`.
pub(crate) fn join(root: &Path, path: &str) -> Result<PathBuf, CgroupError> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(CgroupError::InvalidPath(path.to_string()));
    }
    Ok(root.join(trimmed))
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `create_dir_all` retried a few times on NotFound: another agent pruning stale cgroups may remove
/// an empty parent between its creation and the child's.
pub(crate) fn mkdir_all(dir: &Path) -> Result<(), CgroupError> {
    let mut attempts = 0;
    loop {
        match fs::create_dir_all(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 5 => attempts += 1,
            r => return r.map_err(io_err(dir)),
        }
    }
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err(path))
}

pub(crate) fn read_file(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(io_err(path))
}

pub(crate) fn parse<T: std::str::FromStr>(path: &Path, s: &str) -> Result<T, CgroupError> {
    s.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: s.to_string(),
    })
}

/// Value of `key` in a flat-keyed file ("key value" lines), e.g. memory.events.
pub(crate) fn keyed(path: &Path, content: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    for line in content.lines() {
        let mut it = line.split_whitespace();
        if it.next() == Some(key) {
            return it.next().map(|v| parse(path, v)).transpose();
        }
    }
    Ok(None)
}

/// Pids in a `cgroup.procs` file; a missing file means no pids.
pub(crate) fn read_procs(file: &Path) -> Result<Vec<i32>, CgroupError> {
    match fs::read_to_string(file) {
        Ok(s) => s.split_whitespace().map(|p| parse(file, p)).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(file)(e)),
    }
}

/// SIGKILL the pids returned by `pids` until no live (non-zombie) one is left, for at most ~5 s.
pub(crate) fn kill_loop(
    dir: &Path,
    mut pids: impl FnMut() -> Result<Vec<i32>, CgroupError>,
) -> Result<(), CgroupError> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list: Vec<i32> = pids()?.into_iter().filter(|p| !is_zombie(*p)).collect();
        if list.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CgroupError::Busy {
                path: dir.to_path_buf(),
                detail: format!("pids {list:?} survive SIGKILL"),
            });
        }
        for pid in list {
            // ESRCH (already gone) is fine.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` is a zombie (or already gone): such pids need reaping, not killing.
fn is_zombie(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// rmdir `dirs` (deepest first as given), retrying up to ~2 s while busy; missing is fine.
pub(crate) fn rmdir_retry(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    for dir in dirs {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(io_err(dir)(e)),
            }
        }
    }
    Ok(())
}

/// [`Cgroups::prune_stale`] over the hierarchy directories `parents` (the same relative parent in
/// each hierarchy): a child is reported when it is gone from all of them.
pub(crate) fn prune_children(parents: &[PathBuf], keep: &[&str]) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for parent in parents {
        let Ok(entries) = fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if keep.contains(&name.as_str()) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            names.insert(name);
        }
    }
    names
        .into_iter()
        .filter(|name| {
            // Every hierarchy is pruned, even after one kept its copy.
            let gone: Vec<bool> = parents.iter().map(|p| prune_tree(&p.join(name))).collect();
            gone.iter().all(|g| *g)
        })
        .collect()
}

/// A cgroup younger than this is never pruned: another agent on the host may have just created
/// it and be about to move a task into it.
pub(crate) const PRUNE_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether `dir` was last modified at least [`PRUNE_MIN_AGE`] ago.
fn old_enough(dir: &Path) -> bool {
    fs::metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= PRUNE_MIN_AGE)
}

/// Remove `dir` and its sub-cgroups bottom-up, never one holding processes nor one younger than
/// [`PRUNE_MIN_AGE`]; true when `dir` is gone.
fn prune_tree(dir: &Path) -> bool {
    // Judged before its children go: removing them makes `dir` look modified just now.
    let old = old_enough(dir);
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return e.kind() == io::ErrorKind::NotFound,
    };
    let mut children_gone = true;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            children_gone &= prune_tree(&entry.path());
        }
    }
    if !children_gone || !old || !read_procs(&dir.join("cgroup.procs")).is_ok_and(|p| p.is_empty())
    {
        return false;
    }
    match fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// CFS quota in microseconds per 100 ms period for `cpus` (at least 1000).
pub(crate) fn cfs_quota(cpus: f64) -> u64 {
    ((cpus * 100_000.0).round() as u64).max(1000)
}

/// v1 cpu.shares for `cpus` (at least 2).
pub(crate) fn cpu_shares(cpus: f64) -> u64 {
    ((cpus * 1024.0).round() as u64).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_rejects_escapes() {
        let root = Path::new("/r");
        assert_eq!(join(root, "a/b").expect("ok"), PathBuf::from("/r/a/b"));
        assert_eq!(join(root, "/a/b/").expect("ok"), PathBuf::from("/r/a/b"));
        assert!(join(root, "a/../b").is_err());
        assert!(join(root, "").is_err());
        assert!(join(root, "a//b").is_err());
    }

    #[test]
    fn cpu_math() {
        assert_eq!(cfs_quota(0.5), 50_000);
        assert_eq!(cfs_quota(0.001), 1000);
        assert_eq!(cpu_shares(0.5), 512);
        assert_eq!(cpu_shares(0.0), 2);
    }

    #[test]
    fn keyed_parses_and_reports_path() {
        let p = Path::new("/x/memory.events");
        let s = "low 0\noom 2\noom_kill 1\n";
        assert_eq!(keyed(p, s, "oom_kill").expect("ok"), Some(1));
        assert_eq!(keyed(p, s, "max").expect("ok"), None);
        let err = keyed(p, "oom_kill x", "oom_kill").expect_err("bad");
        assert!(err.to_string().contains("memory.events"));
    }

    /// Lay out `<root>/meseta/<agent>/<task>` dirs (no files: rmdir works on them as on cgroupfs).
    /// Creates `paths` under `root`, every directory backdated past [`PRUNE_MIN_AGE`].
    fn mkdirs(root: &Path, paths: &[&str]) {
        for p in paths {
            fs::create_dir_all(root.join(p)).expect("mkdir");
            let mut dir = root.join(p);
            while dir != root {
                backdate(&dir);
                dir.pop();
            }
        }
    }

    /// Sets the modification time of `dir` an hour back.
    pub(crate) fn backdate(dir: &Path) {
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::open(dir)
            .and_then(|f| f.set_modified(hour_ago))
            .expect("backdate");
    }

    #[test]
    fn a_young_empty_cgroup_is_never_pruned() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let r = tmp.path();
        mkdirs(r, &["meseta/other"]);
        // Another agent just created a task cgroup and is about to move its task in.
        fs::create_dir_all(r.join("meseta/other/fresh")).expect("mkdir");
        let cg = V2::with_root(r.to_path_buf());
        assert!(cg.prune_stale("meseta", &[]).expect("prune").is_empty());
        assert!(r.join("meseta/other/fresh").is_dir());
        backdate(&r.join("meseta/other/fresh"));
        backdate(&r.join("meseta/other"));
        assert_eq!(cg.prune_stale("meseta", &[]).expect("prune"), ["other"]);
    }

    #[test]
    fn prune_stale_v2_removes_only_empty_foreign_agents() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let r = tmp.path();
        mkdirs(
            r,
            &[
                "meseta/old/t1/nested",
                "meseta/old/t2",
                "meseta/bare",
                "meseta/busy/idle",
                "meseta/busy/t",
                "meseta/mine/t",
            ],
        );
        fs::write(r.join("meseta/busy/t/cgroup.procs"), "4242\n").expect("w");
        fs::write(r.join("meseta/stray-file"), "x").expect("w");
        let cg = V2::with_root(r.to_path_buf());
        let removed = cg.prune_stale("meseta", &["mine"]).expect("prune");
        assert_eq!(removed, vec!["bare".to_string(), "old".to_string()]);
        assert!(!r.join("meseta/old").exists());
        assert!(!r.join("meseta/bare").exists());
        // The busy agent keeps the cgroup holding a process and therefore itself; its empty leaf goes.
        assert!(r.join("meseta/busy/t/cgroup.procs").exists());
        assert!(!r.join("meseta/busy/idle").exists());
        assert!(r.join("meseta/mine/t").is_dir());
        assert!(r.join("meseta/stray-file").is_file());
        // Missing parent: nothing to do.
        assert!(cg.prune_stale("absent", &[]).expect("prune").is_empty());
    }

    #[test]
    fn prune_stale_v1_prunes_every_hierarchy() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let r = tmp.path();
        v1::fake_root(r);
        mkdirs(
            r,
            &[
                "memory/meseta/old/t",
                "cpu/meseta/old/t",
                "pids/meseta/old",
                "memory/meseta/half/t",
                "cpu/meseta/half/t",
                "memory/meseta/mine/t",
            ],
        );
        fs::write(r.join("cpu/meseta/half/t/cgroup.procs"), "77\n").expect("w");
        let cg = V1::with_root(r.to_path_buf());
        let removed = cg.prune_stale("meseta", &["mine"]).expect("prune");
        assert_eq!(removed, vec!["old".to_string()]);
        for c in ["memory", "cpu", "pids"] {
            assert!(!r.join(c).join("meseta/old").exists(), "{c}");
        }
        // "half" still holds a process in cpu; its empty copy in memory goes, the cpu one stays.
        assert!(!r.join("memory/meseta/half").exists());
        assert!(r.join("cpu/meseta/half/t").is_dir());
        assert!(r.join("memory/meseta/mine/t").is_dir());
    }

    #[test]
    fn detect_real_host() {
        // These machines have cgroupfs mounted; detection must succeed.
        let cg = detect().expect("detect");
        let expected = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            Version::V2
        } else {
            Version::V1
        };
        assert_eq!(cg.version(), expected);
    }
}
