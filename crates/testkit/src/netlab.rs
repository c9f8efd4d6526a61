//! A multi-host fault lab on Linux network namespaces, for tests that need separate "hosts" with
//! their own IP addresses that can be killed, restarted, partitioned and cut off (etcd members,
//! HA masters, agents). Needs root, `ip` (iproute2) and `iptables`; see [`available`].
//!
//! ```text
//!  test process (root namespace) ── 10.A.B.1 ──┐
//!                                               │  bridge nl<id>br (10.A.B.1/24)
//!          ┌──────────────────┬─────────────────┼──────────────────┐
//!      nl<id>h2           nl<id>h3          nl<id>h4           …      bridge-side veth ends
//!          │                  │                 │                       (link_down/up here)
//!  ┌───── eth0 ─────┐ ┌───── eth0 ─────┐ ┌───── eth0 ─────┐
//!  │ netns          │ │ netns          │ │ netns          │
//!  │ netlab-<id>-a  │ │ netlab-<id>-b  │ │ netlab-<id>-c  │
//!  │ 10.A.B.2       │ │ 10.A.B.3       │ │ 10.A.B.4       │
//!  │ lo up          │ │ lo up          │ │ lo up          │
//!  │ iptables chain │ │ iptables chain │ │ iptables chain │  partition/isolate here
//!  │ `netlab`       │ │ `netlab`       │ │ `netlab`       │
//!  └────────────────┘ └────────────────┘ └────────────────┘
//! ```
//!
//! - Each [`Lab`] has a random id, its own bridge and a /24 `10.A.B.0` chosen clear of the host's
//!   addresses and routes and of every other lab (labs of parallel tests coexist). The test process
//!   reaches every host through the bridge's address, the gateway `10.A.B.1`.
//! - [`Lab::add_host`] makes a namespace with one veth into the bridge and the next address.
//!   Namespaces share the filesystem: give each process its own data dir. Fixed ports (etcd's
//!   2379/2380) are fine: each host has its own network stack.
//! - [`Host::spawn`] runs a program inside the host ([`Proc`]); [`Host::connect_tcp`] and
//!   [`Host::bind_tcp`] make sockets inside it from the test process itself.
//! - Faults: [`Lab::partition`]/[`Lab::heal`] drop all traffic between two hosts, both ways, with
//!   iptables rules inside the two namespaces (the test process still reaches both);
//!   [`Host::isolate`]/[`Host::rejoin`] cut a host from every other host (but not from the test
//!   process, so the test can watch it); [`Host::link_down`]/[`Host::link_up`] pull its cable (cut
//!   from everything, the test process too). Dropped packets make connects time out.
//! - Dropping the lab kills every process in its namespaces and deletes namespaces, veths, bridge
//!   and the host FORWARD rule, also when a test panics (drop runs on unwind). A test run killed
//!   outright leaves them behind: [`cleanup_stale`] (called by every [`Lab::new`]) removes labs
//!   whose recording process is dead.
//! - [`Lab::etcd_cluster`] starts `/usr/bin/etcd` on some hosts as one cluster ([`EtcdMembers`]).
//!
//! Docker sets the host's FORWARD policy to DROP, and with `br_netfilter` loaded bridged frames go
//! through that chain: each lab inserts `-i BR -o BR -j ACCEPT` for its bridge.
//!
//! ```ignore
//! if !netlab::available_or_skip() { return; }
//! let lab = Lab::new()?;
//! let (a, b) = (lab.add_host("a")?, lab.add_host("b")?);
//! let mut server = a.spawn("/path/to/server", [format!("--listen={}:8080", a.ip())], &[], &log)?;
//! lab.partition(&a, &b)?;   // b cannot reach a:8080, the test process still can
//! lab.heal(&a, &b)?;
//! server.kill9()?;
//! ```

mod etcd;
mod proc;
mod sys;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use nix::sched::{setns, CloneFlags};

pub use etcd::EtcdMembers;
pub use proc::Proc;

/// The iptables chain in each host through which all its non-loopback traffic passes.
const CHAIN: &str = "netlab";
/// The chain `isolate` jumps to: accept the gateway, drop the rest.
const ISOLATE_CHAIN: &str = "netlab-isolate";

/// Whether labs can be made here: root, `ip` and `iptables` present, a namespace (with iptables
/// inside) can be created. `Err` says what is missing.
pub fn available() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root (network namespaces, bridges, iptables)".into());
    }
    sys::ip(&["-V"]).map_err(|e| format!("`ip` (iproute2) is missing: {e:#}"))?;
    sys::run("iptables", &["-V"]).map_err(|e| format!("`iptables` is missing: {e:#}"))?;
    let ns = sys::netns_name(&sys::new_id(), "probe");
    sys::ip(&["netns", "add", &ns]).map_err(|e| format!("cannot create a namespace: {e:#}"))?;
    let inside = sys::iptables_in(&ns, &["-S"]);
    let _ = sys::ip(&["netns", "del", &ns]);
    inside.map_err(|e| format!("iptables does not work inside a namespace: {e:#}"))
}

/// For tests: `true` if labs can be made; otherwise prints why the test is skipped and returns
/// `false` — or panics when env `CI=true`, where a skipped test would prove nothing.
pub fn available_or_skip() -> bool {
    match available() {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "netlab unavailable and CI=true: {why}"
            );
            eprintln!("skipping: netlab unavailable: {why}");
            false
        }
    }
}

/// Remove labs left behind by test processes that died without dropping them (kill -9, abort):
/// every lab whose record names a process that is gone, and `netlab-` namespaces without any
/// record older than ten minutes. Returns the ids of the labs removed. Called by [`Lab::new`].
pub fn cleanup_stale() -> Vec<String> {
    sys::cleanup_stale()
}

/// A lab: one bridge and subnet, and the hosts on it. Dropping it removes everything it made.
pub struct Lab {
    id: String,
    net: [u8; 3],
    record: PathBuf,
    hosts: Mutex<Vec<Host>>,
    /// Partitioned host pairs (by address, lower first), so partition and heal are idempotent.
    partitions: Mutex<BTreeSet<(Ipv4Addr, Ipv4Addr)>>,
}

impl Lab {
    /// A new lab: a bridge with a fresh id, a free /24, the bridge up with the gateway address and
    /// accepted by the host's FORWARD chain. Removes stale labs first ([`cleanup_stale`]).
    pub fn new() -> anyhow::Result<Lab> {
        for id in cleanup_stale() {
            eprintln!("netlab: removed stale lab {id}");
        }
        let id = sys::new_id();
        let (net, record) = sys::reserve_subnet(&id)?;
        // From here on, drop undoes whatever got made.
        let lab = Lab {
            id,
            net,
            record,
            hosts: Mutex::new(Vec::new()),
            partitions: Mutex::new(BTreeSet::new()),
        };
        let br = lab.bridge();
        let gw = format!("{}/24", lab.gateway());
        sys::ip(&["link", "add", &br, "type", "bridge"])?;
        sys::ip(&["addr", "add", &gw, "dev", &br])?;
        sys::ip(&["link", "set", &br, "up"])?;
        sys::iptables_host(&["-I", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"])?;
        Ok(lab)
    }

    /// The lab's id (in every name it creates).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The bridge's name.
    pub fn bridge(&self) -> String {
        sys::bridge_name(&self.id)
    }

    /// The subnet, `10.A.B.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}/24", self.addr(0))
    }

    /// The bridge's address, through which the test process reaches the hosts.
    pub fn gateway(&self) -> Ipv4Addr {
        self.addr(1)
    }

    fn addr(&self, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.net;
        Ipv4Addr::new(a, b, c, last)
    }

    /// The hosts added so far.
    pub fn hosts(&self) -> Vec<Host> {
        self.hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Add a host: namespace `netlab-<id>-<name>`, a veth from the bridge to its `eth0` with the
    /// next free address, `lo` up, and the iptables chains the faults use. `name`: letters, digits
    /// and `-`, unique in the lab.
    pub fn add_host(&self, name: &str) -> anyhow::Result<Host> {
        anyhow::ensure!(
            !name.is_empty()
                && name.len() <= 32
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "host name {name:?}: 1-32 letters, digits or '-'"
        );
        let host = {
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            anyhow::ensure!(
                hosts.iter().all(|h| h.name() != name),
                "host {name:?} exists"
            );
            let n = u8::try_from(hosts.len() + 2)
                .ok()
                .filter(|n| *n < 255)
                .context("a lab holds at most 253 hosts")?;
            let host = Host(Arc::new(HostInner {
                name: name.to_owned(),
                netns: sys::netns_name(&self.id, name),
                veth: sys::veth_name(&self.id, n),
                ip: self.addr(n),
                gateway: self.gateway(),
                isolated: Mutex::new(false),
            }));
            hosts.push(host.clone());
            host
        };
        host.create(&self.bridge())
            .with_context(|| format!("set up host {name} in lab {}", self.id))?;
        Ok(host)
    }

    /// Drop all traffic between `a` and `b`, both ways, until [`Lab::heal`]. Idempotent.
    pub fn partition(&self, a: &Host, b: &Host) -> anyhow::Result<()> {
        let pair = ordered(a, b);
        let mut parts = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if parts.contains(&pair) {
            return Ok(());
        }
        a.drop_peer("-A", b)?;
        b.drop_peer("-A", a)?;
        parts.insert(pair);
        Ok(())
    }

    /// Undo [`Lab::partition`] of `a` and `b` exactly. Idempotent.
    pub fn heal(&self, a: &Host, b: &Host) -> anyhow::Result<()> {
        let pair = ordered(a, b);
        let mut parts = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !parts.contains(&pair) {
            return Ok(());
        }
        a.drop_peer("-D", b)?;
        b.drop_peer("-D", a)?;
        parts.remove(&pair);
        Ok(())
    }

    /// Start etcd on each of `hosts` as one cluster and wait until every member is healthy.
    pub async fn etcd_cluster(&self, hosts: &[&Host]) -> anyhow::Result<EtcdMembers> {
        EtcdMembers::start(&self.id, hosts).await
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        sys::teardown(&self.id, Some(&self.record));
    }
}

fn ordered(a: &Host, b: &Host) -> (Ipv4Addr, Ipv4Addr) {
    (a.ip().min(b.ip()), a.ip().max(b.ip()))
}

/// A host of a [`Lab`]: a network namespace with one address. Cheap to clone; the lab owns the
/// namespace (after the lab is dropped, a host's operations fail).
#[derive(Clone, Debug)]
pub struct Host(Arc<HostInner>);

#[derive(Debug)]
struct HostInner {
    name: String,
    netns: String,
    veth: String,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
    isolated: Mutex<bool>,
}

impl Host {
    /// Its name in the lab.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Its network namespace (`ip netns exec <this> …`).
    pub fn netns(&self) -> &str {
        &self.0.netns
    }

    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        self.0.ip
    }

    /// Run `program` inside this host; stdout and stderr appended to `log_file`; `env` added to
    /// the test process's environment.
    pub fn spawn<I, S>(
        &self,
        program: impl AsRef<OsStr>,
        args: I,
        env: &[(&str, &str)],
        log_file: &Path,
    ) -> anyhow::Result<Proc>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Proc::spawn(self.netns(), program.as_ref(), args, env, log_file)
    }

    /// Run `f` on a thread inside this host's network namespace: sockets it creates belong to the
    /// host (and stay there when handed back to other threads).
    pub fn in_netns<F, R>(&self, f: F) -> anyhow::Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let path = format!("/run/netns/{}", self.netns());
        let ns = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
        std::thread::scope(|s| {
            let thread = s.spawn(move || {
                setns(&ns, CloneFlags::CLONE_NEWNET).context("setns")?;
                Ok(f())
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// A TCP connection from this host to `addr`, giving up after `timeout`.
    pub fn connect_tcp(&self, addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
        self.in_netns(|| TcpStream::connect_timeout(&addr, timeout))
            .map_err(std::io::Error::other)?
    }

    /// A TCP listener on this host's address (`port` 0: any free port).
    pub fn bind_tcp(&self, port: u16) -> std::io::Result<TcpListener> {
        let ip = self.ip();
        self.in_netns(|| TcpListener::bind((ip, port)))
            .map_err(std::io::Error::other)?
    }

    /// Cut this host from every other host of the lab, both ways, until [`Host::rejoin`]; the test
    /// process (the gateway) still reaches it. Idempotent.
    pub fn isolate(&self) -> anyhow::Result<()> {
        let mut isolated = self
            .0
            .isolated
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !*isolated {
            sys::iptables_in(self.netns(), &["-I", CHAIN, "1", "-j", ISOLATE_CHAIN])?;
            *isolated = true;
        }
        Ok(())
    }

    /// Undo [`Host::isolate`]. Idempotent.
    pub fn rejoin(&self) -> anyhow::Result<()> {
        let mut isolated = self
            .0
            .isolated
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *isolated {
            sys::iptables_in(self.netns(), &["-D", CHAIN, "-j", ISOLATE_CHAIN])?;
            *isolated = false;
        }
        Ok(())
    }

    /// Pull the cable: the bridge-side end of its veth goes down, so nothing (the test process
    /// included) reaches it and it reaches nothing, until [`Host::link_up`].
    pub fn link_down(&self) -> anyhow::Result<()> {
        sys::ip(&["link", "set", &self.0.veth, "down"]).map(drop)
    }

    /// Plug the cable back in.
    pub fn link_up(&self) -> anyhow::Result<()> {
        sys::ip(&["link", "set", &self.0.veth, "up"]).map(drop)
    }

    /// Namespace, veth into `bridge`, addresses, links up, iptables chains.
    fn create(&self, bridge: &str) -> anyhow::Result<()> {
        let (ns, veth) = (self.netns(), self.0.veth.as_str());
        sys::ip(&["netns", "add", ns])?;
        sys::ip(&[
            "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        sys::ip(&["link", "set", veth, "master", bridge, "up"])?;
        let addr = format!("{}/24", self.ip());
        sys::ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
        sys::ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        sys::ip(&["-n", ns, "link", "set", "lo", "up"])?;
        let gw = self.0.gateway.to_string();
        for rule in [
            &["-N", CHAIN][..],
            &["-A", "INPUT", "!", "-i", "lo", "-j", CHAIN],
            &["-A", "OUTPUT", "!", "-o", "lo", "-j", CHAIN],
            &["-N", ISOLATE_CHAIN],
            &["-A", ISOLATE_CHAIN, "-s", &gw, "-j", "RETURN"],
            &["-A", ISOLATE_CHAIN, "-d", &gw, "-j", "RETURN"],
            &["-A", ISOLATE_CHAIN, "-j", "DROP"],
        ] {
            sys::iptables_in(ns, rule)?;
        }
        Ok(())
    }

    /// Add (`-A`) or delete (`-D`) the rules dropping traffic from and to `peer`.
    fn drop_peer(&self, op: &str, peer: &Host) -> anyhow::Result<()> {
        let peer = peer.ip().to_string();
        sys::iptables_in(self.netns(), &[op, CHAIN, "-s", &peer, "-j", "DROP"])?;
        sys::iptables_in(self.netns(), &[op, CHAIN, "-d", &peer, "-j", "DROP"])
    }
}
