//! cgroup v1 (one hierarchy per controller: cpu, cpuacct, memory, pids) implementation of
//! [`Cgroups`], used by the shim on legacy hosts.

use std::collections::HashSet;
use std::path::PathBuf;

use super::{
    cfs_quota, cpu_shares, join, keyed, keyed_or_zero, kill_loop, mkdir_all, number_or_zero, parse,
    prune_children, read_file, read_procs, rmdir_retry, write_file, CgroupError, Cgroups, Usage,
    UsageDetail, Version,
};
use crate::Limits;

const MIB: u64 = 1024 * 1024;
/// Clock ticks per second of `cpuacct.stat` (USER_HZ, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;
const CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];
/// v1 reports "unlimited" as a huge page-aligned number; anything above this is unlimited.
const UNLIMITED_BYTES: u64 = 1 << 60;

/// cgroup v1 hierarchies below a root (normally `/sys/fs/cgroup`).
#[derive(Clone, Debug)]
pub struct V1 {
    root: PathBuf,
}

impl V1 {
    /// Use the controller directories `cpu`, `cpuacct`, `memory`, `pids` under `root`.
    pub fn with_root(root: PathBuf) -> V1 {
        V1 { root }
    }

    /// Existing controller mount dirs, deduplicated (cpu and cpuacct are often co-mounted).
    fn controller_roots(&self) -> Vec<PathBuf> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for c in CONTROLLERS {
            let dir = self.root.join(c);
            if !dir.is_dir() {
                continue;
            }
            let canon = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            if seen.insert(canon) {
                out.push(dir);
            }
        }
        out
    }

    fn dir(&self, controller: &str, path: &str) -> Result<PathBuf, CgroupError> {
        join(&self.root.join(controller), path)
    }

    fn dirs(&self, path: &str) -> Result<Vec<PathBuf>, CgroupError> {
        self.controller_roots()
            .iter()
            .map(|r| join(r, path))
            .collect()
    }

    /// The v1 detail: `cpuacct.stat` (user, system in USER_HZ ticks), `cpu.stat` (throttling),
    /// `memory.stat` (rss, cache), `pids.current`, `memory.oom_control` (oom_kill).
    fn detail(&self, path: &str) -> Result<UsageDetail, CgroupError> {
        let acct = self.dir("cpuacct", path)?.join("cpuacct.stat");
        let cpu = self.dir("cpu", path)?.join("cpu.stat");
        let mem = self.dir("memory", path)?;
        let ticks = |key: &str| keyed_or_zero(&acct, key) as f64 / USER_HZ;
        Ok(UsageDetail {
            cpu_user_secs: ticks("user"),
            cpu_system_secs: ticks("system"),
            cpu_nr_throttled: keyed_or_zero(&cpu, "nr_throttled"),
            cpu_throttled_secs: keyed_or_zero(&cpu, "throttled_time") as f64 / 1e9,
            mem_rss_bytes: keyed_or_zero(&mem.join("memory.stat"), "rss"),
            mem_cache_bytes: keyed_or_zero(&mem.join("memory.stat"), "cache"),
            pids: number_or_zero(&self.dir("pids", path)?.join("pids.current")),
            oom_events: keyed_or_zero(&mem.join("memory.oom_control"), "oom_kill"),
        })
    }

    fn write_memory(&self, path: &str, mem_mib: u64) -> Result<(), CgroupError> {
        let dir = self.dir("memory", path)?;
        if mem_mib == 0 || !dir.is_dir() {
            return Ok(());
        }
        let bytes = (mem_mib * MIB).to_string();
        write_file(&dir.join("memory.limit_in_bytes"), &bytes)?;
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            // Optional (swap accounting may be off); failure is harmless.
            let _ = write_file(&memsw, &bytes);
        }
        Ok(())
    }

    fn write_cpu(&self, path: &str, cpus: f64) -> Result<(), CgroupError> {
        let dir = self.dir("cpu", path)?;
        if cpus <= 0.0 || !dir.is_dir() {
            return Ok(());
        }
        write_file(&dir.join("cpu.shares"), &cpu_shares(cpus).to_string())?;
        write_file(&dir.join("cpu.cfs_period_us"), "100000")?;
        write_file(&dir.join("cpu.cfs_quota_us"), &cfs_quota(cpus).to_string())
    }

    fn write_pids(&self, path: &str, pids: Option<u64>) -> Result<(), CgroupError> {
        let dir = self.dir("pids", path)?;
        match pids {
            Some(n) if dir.is_dir() => write_file(&dir.join("pids.max"), &n.to_string()),
            _ => Ok(()),
        }
    }

    fn read_cpus(&self, path: &str) -> Result<f64, CgroupError> {
        let dir = self.dir("cpu", path)?;
        let qf = dir.join("cpu.cfs_quota_us");
        let quota: i64 = parse(&qf, &read_file(&qf)?)?;
        if quota > 0 {
            let pf = dir.join("cpu.cfs_period_us");
            let period: i64 = parse(&pf, &read_file(&pf)?)?;
            return Ok(quota as f64 / period.max(1) as f64);
        }
        let sf = dir.join("cpu.shares");
        let shares: u64 = parse(&sf, &read_file(&sf)?)?;
        Ok(shares as f64 / 1024.0)
    }
}

impl Cgroups for V1 {
    fn version(&self) -> Version {
        Version::V1
    }

    fn create(&self, path: &str, limits: &Limits) -> Result<(), CgroupError> {
        for dir in self.dirs(path)? {
            mkdir_all(&dir)?;
        }
        self.write_memory(path, limits.mem_mib)?;
        self.write_cpu(path, limits.cpus)?;
        self.write_pids(path, limits.pids)
    }

    fn procs_files(&self, path: &str) -> Vec<PathBuf> {
        self.dirs(path)
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// `tasks`, not `cgroup.procs`: a process moving itself (`0`) as a single thread skips the
    /// kernel's global threadgroup lock, whose RCU grace period made a `cgroup.procs` write take
    /// up to 15 ms now and then (the tail of the launch latency). The child between fork and
    /// exec has one thread, so it moves whole; threads the task starts later inherit the cgroup.
    fn join_files(&self, path: &str) -> Vec<PathBuf> {
        self.dirs(path)
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.join("tasks"))
            .collect()
    }

    fn pids(&self, path: &str) -> Result<Vec<i32>, CgroupError> {
        let mut all = Vec::new();
        for file in self.procs_files(path) {
            for pid in read_procs(&file)? {
                if !all.contains(&pid) {
                    all.push(pid);
                }
            }
        }
        Ok(all)
    }

    fn oom_killed(&self, path: &str) -> Result<bool, CgroupError> {
        let file = self.dir("memory", path)?.join("memory.oom_control");
        let content = read_file(&file)?;
        match keyed(&file, &content, "oom_kill")? {
            Some(n) => Ok(n > 0),
            None => Ok(keyed(&file, &content, "under_oom")?.unwrap_or(0) > 0),
        }
    }

    fn usage(&self, path: &str) -> Result<Usage, CgroupError> {
        let mf = self.dir("memory", path)?.join("memory.usage_in_bytes");
        let cf = self.dir("cpuacct", path)?.join("cpuacct.usage");
        let mem_bytes = parse(&mf, &read_file(&mf)?)?;
        let cpu_ns: u64 = parse(&cf, &read_file(&cf)?)?;
        Ok(Usage {
            mem_bytes,
            cpu_secs: cpu_ns as f64 / 1e9,
            detail: self.detail(path)?,
        })
    }

    fn read_limits(&self, path: &str) -> Result<Limits, CgroupError> {
        let mf = self.dir("memory", path)?.join("memory.limit_in_bytes");
        let bytes: u64 = parse(&mf, &read_file(&mf)?)?;
        let mem_mib = if bytes >= UNLIMITED_BYTES {
            0
        } else {
            bytes / MIB
        };
        let pf = self.dir("pids", path)?.join("pids.max");
        let pids = match read_file(&pf) {
            Ok(s) if s == "max" => None,
            Ok(s) => Some(parse(&pf, &s)?),
            Err(_) => None,
        };
        Ok(Limits {
            cpus: self.read_cpus(path)?,
            mem_mib,
            pids,
        })
    }

    fn kill_all(&self, path: &str) -> Result<(), CgroupError> {
        let dir = self.dir("memory", path)?;
        kill_loop(&dir, || self.pids(path))
    }

    fn remove(&self, path: &str) -> Result<(), CgroupError> {
        rmdir_retry(&self.dirs(path)?)
    }

    fn prune_stale(&self, parent: &str, keep: &[&str]) -> Result<Vec<String>, CgroupError> {
        Ok(prune_children(&self.dirs(parent)?, keep))
    }
}

/// Lay out a fake v1 root (controller dirs) for tests.
#[cfg(test)]
pub(crate) fn fake_root(root: &std::path::Path) {
    for c in CONTROLLERS {
        std::fs::create_dir_all(root.join(c)).expect("mkdir controller");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            cpus: 0.5,
            mem_mib: 64,
            pids: Some(20),
        }
    }

    #[test]
    fn create_writes_limit_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_root(tmp.path());
        let cg = V1::with_root(tmp.path().to_path_buf());
        cg.create("meseta/a/t", &limits()).expect("create");
        let r = |p: &str| std::fs::read_to_string(tmp.path().join(p)).expect(p);
        assert_eq!(r("memory/meseta/a/t/memory.limit_in_bytes"), "67108864");
        assert_eq!(r("cpu/meseta/a/t/cpu.shares"), "512");
        assert_eq!(r("cpu/meseta/a/t/cpu.cfs_period_us"), "100000");
        assert_eq!(r("cpu/meseta/a/t/cpu.cfs_quota_us"), "50000");
        assert_eq!(r("pids/meseta/a/t/pids.max"), "20");
        assert!(tmp.path().join("cpuacct/meseta/a/t").is_dir());
        assert_eq!(cg.read_limits("meseta/a/t").expect("read"), limits());
    }

    #[test]
    fn memsw_written_only_if_present() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_root(tmp.path());
        let dir = tmp.path().join("memory/x");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("memory.memsw.limit_in_bytes"), "9").expect("w");
        let cg = V1::with_root(tmp.path().to_path_buf());
        cg.create("x", &limits()).expect("create");
        let v = std::fs::read_to_string(dir.join("memory.memsw.limit_in_bytes")).expect("r");
        assert_eq!(v, "67108864");
        assert!(!tmp
            .path()
            .join("memory/y/memory.memsw.limit_in_bytes")
            .exists());
    }

    #[test]
    fn procs_pids_oom_usage() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_root(tmp.path());
        let cg = V1::with_root(tmp.path().to_path_buf());
        cg.create("x", &limits()).expect("create");
        assert_eq!(cg.procs_files("x").len(), 4);
        assert!(cg.join_files("x").iter().all(|f| f.ends_with("tasks")));
        assert_eq!(cg.join_files("x").len(), 4);
        std::fs::write(tmp.path().join("memory/x/cgroup.procs"), "5\n7\n").expect("w");
        std::fs::write(tmp.path().join("cpu/x/cgroup.procs"), "7\n9\n").expect("w");
        let mut pids = cg.pids("x").expect("pids");
        pids.sort();
        assert_eq!(pids, vec![5, 7, 9]);
        let oc = tmp.path().join("memory/x/memory.oom_control");
        std::fs::write(&oc, "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n").expect("w");
        assert!(!cg.oom_killed("x").expect("oom"));
        std::fs::write(&oc, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").expect("w");
        assert!(cg.oom_killed("x").expect("oom"));
        std::fs::write(tmp.path().join("memory/x/memory.usage_in_bytes"), "4096\n").expect("w");
        std::fs::write(tmp.path().join("cpuacct/x/cpuacct.usage"), "1500000000\n").expect("w");
        let u = cg.usage("x").expect("usage");
        assert_eq!(u.mem_bytes, 4096);
        assert!((u.cpu_secs - 1.5).abs() < 1e-9);
    }

    #[test]
    fn unlimited_reads_back_as_none() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_root(tmp.path());
        let cg = V1::with_root(tmp.path().to_path_buf());
        let l = Limits {
            cpus: 1.0,
            mem_mib: 0,
            pids: None,
        };
        cg.create("u", &l).expect("create");
        std::fs::write(
            tmp.path().join("memory/u/memory.limit_in_bytes"),
            "9223372036854771712",
        )
        .expect("w");
        std::fs::write(tmp.path().join("pids/u/pids.max"), "max").expect("w");
        assert_eq!(cg.read_limits("u").expect("read"), l);
    }

    #[test]
    fn missing_file_error_names_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_root(tmp.path());
        let cg = V1::with_root(tmp.path().to_path_buf());
        let err = cg.oom_killed("nope").expect_err("missing");
        assert!(err.to_string().contains("memory.oom_control"), "{err}");
    }
}
