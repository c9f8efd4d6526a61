//! cgroup v2 (unified hierarchy) implementation of [`Cgroups`], used by the shim on modern hosts.

use std::path::{Path, PathBuf};

use super::{
    cfs_quota, cpu_shares, join, keyed, keyed_or_zero, kill_loop, mkdir_all, number_or_zero, parse,
    prune_children, read_file, read_procs, rmdir_retry, write_file, CgroupError, Cgroups, Usage,
    UsageDetail, Version,
};
use crate::Limits;

const MIB: u64 = 1024 * 1024;
const CPU_PERIOD: u64 = 100_000;

/// The cgroup v2 unified hierarchy below a root (normally `/sys/fs/cgroup`).
#[derive(Clone, Debug)]
pub struct V2 {
    root: PathBuf,
}

/// cpu.weight equivalent of v1 cpu.shares (the runc/systemd conversion).
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

fn weight_to_cpus(weight: u64) -> f64 {
    let shares = 2 + (weight.saturating_sub(1) * 262_142) / 9999;
    shares as f64 / 1024.0
}

impl V2 {
    /// Use the unified hierarchy mounted at `root`.
    pub fn with_root(root: PathBuf) -> V2 {
        V2 { root }
    }

    fn dir(&self, path: &str) -> Result<PathBuf, CgroupError> {
        join(&self.root, path)
    }

    /// Enable cpu, memory and pids for the children of every ancestor of `dir`.
    fn enable_controllers(&self, dir: &Path) {
        let mut ancestors: Vec<&Path> = dir
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(&self.root))
            .collect();
        ancestors.reverse();
        for a in ancestors {
            let file = a.join("cgroup.subtree_control");
            if write_file(&file, "+cpu +memory +pids").is_err() {
                // Some controller may be unavailable: enable what we can.
                for c in ["+cpu", "+memory", "+pids"] {
                    let _ = write_file(&file, c);
                }
            }
        }
    }

    fn write_limits(&self, dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
        if limits.mem_mib > 0 {
            write_file(&dir.join("memory.max"), &(limits.mem_mib * MIB).to_string())?;
            // Swap accounting may be disabled; failure is harmless.
            let _ = write_file(&dir.join("memory.swap.max"), "0");
        }
        if limits.cpus > 0.0 {
            let quota = cfs_quota(limits.cpus);
            write_file(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD}"))?;
            let weight = shares_to_weight(cpu_shares(limits.cpus));
            write_file(&dir.join("cpu.weight"), &weight.to_string())?;
        }
        if let Some(n) = limits.pids {
            write_file(&dir.join("pids.max"), &n.to_string())?;
        }
        Ok(())
    }

    fn read_cpus(&self, dir: &Path) -> Result<f64, CgroupError> {
        let file = dir.join("cpu.max");
        let content = read_file(&file)?;
        let mut it = content.split_whitespace();
        let quota = it.next().unwrap_or("max");
        if quota != "max" {
            let q: f64 = parse(&file, quota)?;
            let p: f64 = parse(&file, it.next().unwrap_or("100000"))?;
            return Ok(q / p.max(1.0));
        }
        let wf = dir.join("cpu.weight");
        let weight: u64 = parse(&wf, &read_file(&wf)?)?;
        Ok(weight_to_cpus(weight))
    }
}

impl Cgroups for V2 {
    fn version(&self) -> Version {
        Version::V2
    }

    fn create(&self, path: &str, limits: &Limits) -> Result<(), CgroupError> {
        let dir = self.dir(path)?;
        mkdir_all(&dir)?;
        self.enable_controllers(&dir);
        self.write_limits(&dir, limits)
    }

    fn procs_files(&self, path: &str) -> Vec<PathBuf> {
        self.dir(path)
            .map(|d| vec![d.join("cgroup.procs")])
            .unwrap_or_default()
    }

    fn pids(&self, path: &str) -> Result<Vec<i32>, CgroupError> {
        read_procs(&self.dir(path)?.join("cgroup.procs"))
    }

    fn oom_killed(&self, path: &str) -> Result<bool, CgroupError> {
        let file = self.dir(path)?.join("memory.events");
        let content = read_file(&file)?;
        Ok(keyed(&file, &content, "oom_kill")?.unwrap_or(0) > 0)
    }

    fn usage(&self, path: &str) -> Result<Usage, CgroupError> {
        let dir = self.dir(path)?;
        let mf = dir.join("memory.current");
        let cf = dir.join("cpu.stat");
        let mem_bytes = parse(&mf, &read_file(&mf)?)?;
        let usec = keyed(&cf, &read_file(&cf)?, "usage_usec")?.unwrap_or(0);
        Ok(Usage {
            mem_bytes,
            cpu_secs: usec as f64 / 1e6,
            detail: detail(&dir),
        })
    }

    fn read_limits(&self, path: &str) -> Result<Limits, CgroupError> {
        let dir = self.dir(path)?;
        let mf = dir.join("memory.max");
        let mem = read_file(&mf)?;
        let mem_mib = if mem == "max" {
            0
        } else {
            parse::<u64>(&mf, &mem)? / MIB
        };
        let pf = dir.join("pids.max");
        let pids = match read_file(&pf) {
            Ok(s) if s == "max" => None,
            Ok(s) => Some(parse(&pf, &s)?),
            Err(_) => None,
        };
        Ok(Limits {
            cpus: self.read_cpus(&dir)?,
            mem_mib,
            pids,
        })
    }

    fn kill_all(&self, path: &str) -> Result<(), CgroupError> {
        let dir = self.dir(path)?;
        let kill_file = dir.join("cgroup.kill");
        if kill_file.exists() {
            // Kernel >= 5.14: kills the whole subtree atomically; the loop below verifies.
            let _ = write_file(&kill_file, "1");
        }
        kill_loop(&dir, || self.pids(path))
    }

    fn remove(&self, path: &str) -> Result<(), CgroupError> {
        rmdir_retry(&[self.dir(path)?])
    }

    fn prune_stale(&self, parent: &str, keep: &[&str]) -> Result<Vec<String>, CgroupError> {
        Ok(prune_children(&[self.dir(parent)?], keep))
    }
}

/// The v2 detail: `cpu.stat` (user, system, throttling), `memory.stat` (anon, file),
/// `pids.current`, `memory.events` (oom_kill).
fn detail(dir: &std::path::Path) -> UsageDetail {
    let cpu = dir.join("cpu.stat");
    let mem = dir.join("memory.stat");
    let secs = |key: &str| keyed_or_zero(&cpu, key) as f64 / 1e6;
    UsageDetail {
        cpu_user_secs: secs("user_usec"),
        cpu_system_secs: secs("system_usec"),
        cpu_nr_throttled: keyed_or_zero(&cpu, "nr_throttled"),
        cpu_throttled_secs: secs("throttled_usec"),
        mem_rss_bytes: keyed_or_zero(&mem, "anon"),
        mem_cache_bytes: keyed_or_zero(&mem, "file"),
        pids: number_or_zero(&dir.join("pids.current")),
        oom_events: keyed_or_zero(&dir.join("memory.events"), "oom_kill"),
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
    fn create_writes_files_and_enables_controllers() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cg = V2::with_root(tmp.path().to_path_buf());
        cg.create("meseta/a/t", &limits()).expect("create");
        let r = |p: &str| std::fs::read_to_string(tmp.path().join(p)).expect(p);
        assert_eq!(r("meseta/a/t/memory.max"), "67108864");
        assert_eq!(r("meseta/a/t/memory.swap.max"), "0");
        assert_eq!(r("meseta/a/t/cpu.max"), "50000 100000");
        assert_eq!(
            r("meseta/a/t/cpu.weight"),
            shares_to_weight(512).to_string()
        );
        assert_eq!(r("meseta/a/t/pids.max"), "20");
        for parent in ["", "meseta/", "meseta/a/"] {
            let f = format!("{parent}cgroup.subtree_control");
            assert_eq!(r(&f), "+cpu +memory +pids");
        }
        assert!(!tmp
            .path()
            .join("meseta/a/t/cgroup.subtree_control")
            .exists());
        assert_eq!(cg.read_limits("meseta/a/t").expect("read"), limits());
        assert_eq!(
            cg.procs_files("meseta/a/t"),
            vec![tmp.path().join("meseta/a/t/cgroup.procs")]
        );
    }

    #[test]
    fn weight_conversion() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert!((weight_to_cpus(shares_to_weight(1024)) - 1.0).abs() < 0.05);
    }

    #[test]
    fn events_usage_pids() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cg = V2::with_root(tmp.path().to_path_buf());
        cg.create("x", &limits()).expect("create");
        let d = tmp.path().join("x");
        std::fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n",
        )
        .expect("w");
        assert!(!cg.oom_killed("x").expect("oom"));
        std::fs::write(d.join("memory.events"), "oom 1\noom_kill 1\n").expect("w");
        assert!(cg.oom_killed("x").expect("oom"));
        std::fs::write(d.join("memory.current"), "8192\n").expect("w");
        std::fs::write(d.join("cpu.stat"), "usage_usec 2500000\nuser_usec 1\n").expect("w");
        let u = cg.usage("x").expect("usage");
        assert_eq!(u.mem_bytes, 8192);
        assert!((u.cpu_secs - 2.5).abs() < 1e-9);
        std::fs::write(d.join("cgroup.procs"), "11\n12\n").expect("w");
        assert_eq!(cg.pids("x").expect("pids"), vec![11, 12]);
    }

    #[test]
    fn unlimited_memory_and_cpu_read_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cg = V2::with_root(tmp.path().to_path_buf());
        cg.create("x", &limits()).expect("create");
        let d = tmp.path().join("x");
        std::fs::write(d.join("memory.max"), "max\n").expect("w");
        std::fs::write(d.join("cpu.max"), "max 100000\n").expect("w");
        std::fs::write(d.join("pids.max"), "max\n").expect("w");
        let l = cg.read_limits("x").expect("read");
        assert_eq!(l.mem_mib, 0);
        assert_eq!(l.pids, None);
        assert!((l.cpus - 0.5).abs() < 0.05, "{l:?}");
    }

    #[test]
    fn remove_missing_is_ok() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cg = V2::with_root(tmp.path().to_path_buf());
        cg.remove("never/created").expect("remove");
        let d = tmp.path().join("gone");
        std::fs::create_dir(&d).expect("mkdir");
        cg.remove("gone").expect("remove");
        assert!(!d.exists());
    }
}
