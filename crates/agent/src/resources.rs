//! Detection of an agent's total resources when none are configured: online cpus, memory,
//! free disk of the work dir's file system, and the default port range. Used by [`crate::Agent::start`].
//!
//! Also the ports other processes on the host listen on ([`host_listening_ports`], from
//! `/proc/net/tcp{,6}`): the agent leaves them out of the resources it registers with
//! ([`without_ports`]), so no framework is offered a port its task could not bind.

use std::collections::BTreeSet;
use std::path::Path;

use meseta_types::{Range, Ranges, Resources, Value};

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

/// TCP ports in the LISTEN state on the host (IPv4 and IPv6), as `/proc/net/tcp{,6}` list them.
pub(crate) fn host_listening_ports() -> BTreeSet<u64> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| parse_listening(&text))
        .collect()
}

/// The local ports of the LISTEN (`0A`) sockets of a `/proc/net/tcp` table.
fn parse_listening(table: &str) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != "0A" {
                return None;
            }
            let port = local.rsplit(':').next()?;
            u64::from_str_radix(port, 16).ok()
        })
        .collect()
}

/// `total` without the given ports (from every `ports` resource, whatever its role).
pub(crate) fn without_ports(total: &Resources, ports: &BTreeSet<u64>) -> Resources {
    let mut out = Resources::new();
    for r in total.iter() {
        let mut r = r.clone();
        if let (true, Value::Ranges(ranges)) = (r.name == "ports", &r.value) {
            let gone: Vec<Range> = ports
                .iter()
                .filter(|p| ranges.contains_value(**p))
                .map(|p| Range::new(*p, *p))
                .collect();
            if !gone.is_empty() {
                let left = ranges.checked_sub(&Ranges::new(gone)).unwrap_or_default();
                if left.count() == 0 {
                    continue;
                }
                r.value = Value::Ranges(left);
            }
        }
        if let Err(e) = out.push(r) {
            tracing::warn!(error = %e, "cannot keep a resource");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_ports_come_from_listen_sockets_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:7A69 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:7A6A 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 00000000000000000000000000000000:7A6B 00000000000000000000000000000000:0000 0A 0 0 0 0 0 3";
        assert_eq!(parse_listening(table), vec![31337, 31339]);
    }

    #[test]
    fn ports_are_taken_out_of_every_range() {
        let total = Resources::parse("cpus:1;ports:[31000-31002,31005-31005]").expect("res");
        let left = without_ports(&total, &BTreeSet::from([31001, 31005, 40000]));
        let ports: Vec<u64> = left.ranges("ports").values().collect();
        assert_eq!(ports, vec![31000, 31002]);
        assert_eq!(left.cpus(), 1.0);
        let none = without_ports(&total, &BTreeSet::from([31000, 31001, 31002, 31005]));
        assert_eq!(none.ranges("ports").count(), 0);
    }

    #[test]
    fn a_listener_of_this_process_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = u64::from(l.local_addr().expect("addr").port());
        assert!(host_listening_ports().contains(&port));
    }

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
