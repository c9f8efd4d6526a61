//! Detection of an agent's total resources when none are configured: online cpus, memory,
//! free disk of the work dir's file system, and the default port range. Used by [`crate::Agent::start`].

use std::path::Path;

use meseta_types::Resources;

/// Memory kept for the host, MiB.
const MEM_RESERVED_MIB: u64 = 1024;
/// Smallest memory offered, MiB.
const MEM_MIN_MIB: u64 = 256;
/// Disk kept for the host, MiB.
const DISK_RESERVED_MIB: u64 = 5 * 1024;
/// Smallest disk offered, MiB.
const DISK_MIN_MIB: u64 = 1024;
/// Default port range offered.
const DEFAULT_PORTS: &str = "[31000-32000]";

/// cpus = online cpus; mem = MemTotal − 1 GiB (min 256); disk = free space of the work dir's file
/// system − 5 GiB (min 1024), in MiB; ports `[31000-32000]`.
pub fn detect_resources(work_dir: &Path) -> Resources {
    let cpus = online_cpus();
    let mem = mem_total_mib()
        .map(|m| m.saturating_sub(MEM_RESERVED_MIB))
        .unwrap_or(0)
        .max(MEM_MIN_MIB);
    let disk = free_disk_mib(work_dir)
        .map(|d| d.saturating_sub(DISK_RESERVED_MIB))
        .unwrap_or(0)
        .max(DISK_MIN_MIB);
    let text = format!("cpus:{cpus};mem:{mem};disk:{disk};ports:{DEFAULT_PORTS}");
    Resources::parse(&text).unwrap_or_else(|e| {
        tracing::error!(resources = %text, error = %e, "cannot build detected resources");
        Resources::new()
    })
}

fn online_cpus() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
    }
}

fn mem_total_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total_kib(&text).map(|kib| kib / 1024)
}

/// `MemTotal:  16314600 kB` → KiB.
fn parse_mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Free space available to unprivileged users on the fs of `dir` (or its closest existing ancestor).
fn free_disk_mib(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    let st = nix::sys::statvfs::statvfs(existing).ok()?;
    let bytes = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
    Some(bytes / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detected_resources_are_sane() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = detect_resources(&dir.path().join("not/yet/created"));
        assert!(r.cpus() >= 1.0);
        assert!(r.mem() >= MEM_MIN_MIB as f64);
        assert!(r.disk() >= DISK_MIN_MIB as f64);
        assert_eq!(r.ranges("ports").count(), 1001);
        let expected = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        assert!(
            r.cpus() >= expected,
            "cpus {} < available {expected}",
            r.cpus()
        );
    }

    #[test]
    fn meminfo_parsing() {
        let text = "MemTotal:       16314600 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_mem_total_kib(text), Some(16_314_600));
        assert_eq!(parse_mem_total_kib("nothing"), None);
    }
}
