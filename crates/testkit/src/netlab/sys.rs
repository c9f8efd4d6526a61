//! What the lab asks of the host: running `ip` and `iptables`, choosing a free /24, the lab
//! records under [`RECORD_DIR`], and tearing a lab down — from its `Drop` or, for a lab whose test
//! process died, from [`cleanup_stale`](super::cleanup_stale).
//!
//! Every name a lab creates carries its id: namespaces `netlab-<id>-<host>`, the bridge `nl<id>br`,
//! the bridge-side veth ends `nl<id>h<n>`, the host FORWARD rule `-i nl<id>br -o nl<id>br`. So a
//! teardown by id finds everything, whether or not the process that made it is still there.

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Where each lab records its owner: one file per subnet, `10.A.B.lab`, created exclusively so two
/// labs never take the same subnet. `/run` is a tmpfs, like `/run/netns`: both vanish on reboot.
pub(super) const RECORD_DIR: &str = "/run/netlab";

/// Prefix of every namespace a lab creates.
pub(super) const NS_PREFIX: &str = "netlab-";

/// A lab writes its record before it creates anything, so a `netlab-` namespace without a record
/// was left by a lab whose record is gone (removed by hand); it is swept once older than this.
const ORPHAN_AGE: Duration = Duration::from_secs(10 * 60);

/// Run a program; its stdout, or an error carrying the command line and its stderr.
pub(super) fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {program}"))?;
    anyhow::ensure!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS`.
pub(super) fn ip(args: &[&str]) -> anyhow::Result<String> {
    run("ip", args)
}

/// `iptables -w ARGS` in the host's (root) namespace.
pub(super) fn iptables_host(args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["-w"];
    all.extend_from_slice(args);
    run("iptables", &all).map(drop)
}

/// `iptables -w ARGS` inside network namespace `ns`.
pub(super) fn iptables_in(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["netns", "exec", ns, "iptables", "-w"];
    all.extend_from_slice(args);
    ip(&all).map(drop)
}

/// The bridge of lab `id`.
pub(super) fn bridge_name(id: &str) -> String {
    format!("nl{id}br")
}

/// The bridge-side veth end of host number `n` of lab `id` (at most 15 characters: `nl` + 6 + `h` + 3).
pub(super) fn veth_name(id: &str, n: u8) -> String {
    format!("nl{id}h{n}")
}

/// The namespace of host `host` of lab `id`.
pub(super) fn netns_name(id: &str, host: &str) -> String {
    format!("{NS_PREFIX}{id}-{host}")
}

/// A fresh lab id: six hex digits.
pub(super) fn new_id() -> String {
    format!("{:06x}", fastrand::u32(..0x0100_0000))
}

/// What a lab record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub id: String,
    pub pid: u32,
    /// The owner's start time (clock ticks since boot, `/proc/PID/stat` field 22): a recycled pid
    /// does not pass for the owner.
    pub start: u64,
}

impl Record {
    fn render(&self) -> String {
        format!("id={}\npid={}\nstart={}\n", self.id, self.pid, self.start)
    }

    fn parse(text: &str) -> Option<Record> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .map(str::trim)
        };
        Some(Record {
            id: field("id")?.to_owned(),
            pid: field("pid")?.parse().ok()?,
            start: field("start")?.parse().ok()?,
        })
    }

    /// Whether the process that wrote the record still runs.
    pub fn owner_alive(&self) -> bool {
        process_start(self.pid) == Some(self.start)
    }
}

/// Start time of process `pid` (field 22 of `/proc/PID/stat`), `None` if it does not exist.
pub(super) fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Choose a /24 `10.A.B.0` that overlaps no address or route of the host and no other lab, and
/// reserve it by creating its record. Returns the first three octets and the record's path.
pub(super) fn reserve_subnet(id: &str) -> anyhow::Result<([u8; 3], PathBuf)> {
    fs::create_dir_all(RECORD_DIR).with_context(|| format!("create {RECORD_DIR}"))?;
    let me = std::process::id();
    let record = Record {
        id: id.to_owned(),
        pid: me,
        start: process_start(me).context("read own /proc/self/stat")?,
    };
    let taken = host_prefixes()?;
    for _ in 0..100 {
        // 10.100.0.0 – 10.250.255.0: clear of the 10.0/10.1 ranges VPNs and clouds like.
        let net = [10, fastrand::u8(100..=250), fastrand::u8(..)];
        let addr = Ipv4Addr::new(net[0], net[1], net[2], 0);
        if taken.iter().any(|&(p, len)| overlaps(p, len, addr, 24)) {
            continue;
        }
        let path = Path::new(RECORD_DIR).join(format!("{}.{}.{}.lab", net[0], net[1], net[2]));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(record.render().as_bytes())
                    .with_context(|| format!("write {}", path.display()))?;
                return Ok((net, path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("create {}", path.display())),
        }
    }
    anyhow::bail!("no free 10.x.y.0/24 found in 100 tries")
}

/// Every IPv4 prefix on the host: interface addresses and main-table routes.
fn host_prefixes() -> anyhow::Result<Vec<(Ipv4Addr, u8)>> {
    let addrs = ip(&["-4", "-o", "addr", "show"])?;
    let routes = ip(&["-4", "route", "show"])?;
    let from_addrs = addrs.lines().filter_map(|l| {
        let mut words = l.split_whitespace();
        words.find(|w| *w == "inet")?;
        parse_prefix(words.next()?)
    });
    let from_routes = routes
        .lines()
        .filter_map(|l| parse_prefix(l.split_whitespace().next()?));
    Ok(from_addrs.chain(from_routes).collect())
}

/// `a.b.c.d/len` or `a.b.c.d` (a /32).
fn parse_prefix(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse().ok()?),
        None => (s, 32),
    };
    Some((addr.parse().ok()?, len))
}

/// Whether two prefixes share an address.
fn overlaps(a: Ipv4Addr, alen: u8, b: Ipv4Addr, blen: u8) -> bool {
    let len = u32::from(alen.min(blen).min(32));
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

/// The network namespaces that exist, by name.
pub(super) fn netns_list() -> Vec<String> {
    ip(&["netns", "list"])
        .map(|out| {
            out.lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Names of the root namespace's network interfaces.
pub(super) fn link_names() -> Vec<String> {
    ip(&["-o", "link", "show"])
        .map(|out| {
            out.lines()
                .filter_map(|l| {
                    let name = l.split(": ").nth(1)?;
                    Some(name.split('@').next().unwrap_or(name).to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Pids of the processes inside namespace `ns`.
pub(super) fn netns_pids(ns: &str) -> Vec<i32> {
    ip(&["netns", "pids", ns])
        .map(|out| out.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// SIGKILL every process inside `ns` and wait (up to 3 s) until none is left.
pub(super) fn kill_all_in(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let pids = netns_pids(ns);
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Remove everything of lab `id`: processes in its namespaces, its veths and bridge, its
/// namespaces, the host FORWARD rule, and its record `record` (if known). Best effort: what fails
/// is reported on stderr and the rest still goes.
pub(super) fn teardown(id: &str, record: Option<&Path>) {
    let prefix = netns_name(id, "");
    let namespaces: Vec<String> = netns_list()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    for ns in &namespaces {
        kill_all_in(ns);
    }
    let bridge = bridge_name(id);
    let own = format!("nl{id}");
    // Veths first (deleting one end deletes the pair at once, whereas a deleted namespace frees
    // its devices asynchronously), then the bridge.
    let mut links: Vec<String> = link_names()
        .into_iter()
        .filter(|l| l.starts_with(&own))
        .collect();
    links.sort_by_key(|l| *l == bridge);
    for link in links {
        warn(ip(&["link", "del", &link]), &link);
    }
    for ns in &namespaces {
        warn(ip(&["netns", "del", ns]), ns);
    }
    let rule = ["FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT"];
    let mut check = vec!["-C"];
    check.extend_from_slice(&rule);
    for _ in 0..10 {
        if iptables_host(&check).is_err() {
            break;
        }
        let mut del = vec!["-D"];
        del.extend_from_slice(&rule);
        warn(iptables_host(&del), "FORWARD rule");
    }
    if let Some(path) = record {
        let _ = fs::remove_file(path);
    }
}

fn warn(result: anyhow::Result<impl Sized>, what: &str) {
    if let Err(e) = result {
        eprintln!("netlab: cleanup of {what}: {e:#}");
    }
}

/// See [`cleanup_stale`](super::cleanup_stale).
pub(super) fn cleanup_stale() -> Vec<String> {
    let mut removed = Vec::new();
    let mut live = Vec::new();
    let entries = fs::read_dir(RECORD_DIR).into_iter().flatten().flatten();
    for entry in entries {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("lab") {
            continue;
        }
        let Some(record) = fs::read_to_string(&path)
            .ok()
            .and_then(|t| Record::parse(&t))
        else {
            // Being written right now, or garbage: judge it by age.
            if older_than(&path, ORPHAN_AGE) {
                let _ = fs::remove_file(&path);
            }
            continue;
        };
        if record.owner_alive() {
            live.push(record.id);
        } else {
            teardown(&record.id, Some(&path));
            removed.push(record.id);
        }
    }
    // Namespaces of labs with no record at all (removed by hand), once old enough.
    for ns in netns_list() {
        let Some(id) = ns
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if live.iter().any(|l| l == id) || removed.iter().any(|r| r == id) {
            continue;
        }
        if older_than(&Path::new("/run/netns").join(&ns), ORPHAN_AGE) {
            let id = id.to_owned();
            teardown(&id, None);
            removed.push(id);
        }
    }
    removed
}

fn older_than(path: &Path, age: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|d| d > age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_overlap_when_the_shorter_mask_agrees() {
        let p = |s: &str| parse_prefix(s).expect("literal prefix");
        let (a, al) = p("10.0.0.0/8");
        let (b, bl) = p("10.200.3.0/24");
        assert!(overlaps(a, al, b, bl));
        let (c, cl) = p("10.200.4.7");
        assert!(!overlaps(b, bl, c, cl));
        let (d, dl) = p("0.0.0.0/0");
        assert!(overlaps(d, dl, c, cl));
        assert_eq!(parse_prefix("default"), None);
    }

    #[test]
    fn record_round_trips_and_knows_its_owner() {
        let me = std::process::id();
        let r = Record {
            id: "abc123".into(),
            pid: me,
            start: process_start(me).expect("own stat"),
        };
        assert_eq!(Record::parse(&r.render()), Some(r.clone()));
        assert!(r.owner_alive());
        let recycled = Record {
            start: r.start + 1,
            ..r.clone()
        };
        assert!(!recycled.owner_alive());
    }

    #[test]
    fn names_fit_in_an_interface_name() {
        let id = new_id();
        assert_eq!(id.len(), 6);
        assert!(veth_name(&id, 254).len() <= 15);
        assert!(bridge_name(&id).len() <= 15);
    }
}
