//! Real etcd processes for tests: [`EtcdServer`] (one member) and [`EtcdCluster`] (several
//! members on loopback, which tests kill and restart). Each runs `etcd` (from `$ETCD_BIN`, or
//! `etcd` on the `PATH`; Debian's `etcd-server` installs `/usr/bin/etcd`) on free ports with a
//! temporary data directory, waits until it reports healthy, and is killed when dropped.
//!
//! Only std, `anyhow` and `tempfile` are used, so the store crate's tests include this file by
//! path instead of depending on the whole testkit.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Longest wait for a started member (or a whole cluster) to report healthy.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Attempts at starting with fresh ports (another process may take a port picked in advance).
const ATTEMPTS: usize = 3;

/// The etcd binary: `$ETCD_BIN`, else `etcd` on the `PATH`, else `/usr/bin/etcd`.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ETCD_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .chain(std::iter::once(PathBuf::from("/usr/bin/etcd")))
        .find(|p| p.is_file())
}

/// Whether etcd is installed here.
pub fn etcd_available() -> bool {
    etcd_binary().is_some()
}

/// For tests that need etcd: `true` when it is installed. Otherwise prints why `test` is
/// skipped and returns `false` — or panics when `CI=true`, where a missing etcd is a failure.
pub fn etcd_or_skip(test: &str) -> bool {
    if etcd_available() {
        return true;
    }
    let why = "etcd is not installed (apt-get install etcd-server, or set ETCD_BIN)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// A loopback port nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Whether the member on `port` answers `/health` with `"health":"true"`.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}

/// One member's fixed identity: name, ports and data directory (kept across restarts).
#[derive(Clone, Debug)]
struct MemberSpec {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
}

impl MemberSpec {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Starts the member; `initial_cluster` is `name=peer_url,...` of every member.
    fn spawn(&self, initial_cluster: &str, token: &str) -> anyhow::Result<Child> {
        let bin = etcd_binary().context("etcd is not installed")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the etcd log")?;
        let client = self.endpoint();
        let peer = self.peer_url();
        Command::new(bin)
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-token", token])
            .args(["--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting etcd")
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// The last lines of the member's log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// Waits until every member in `specs` is healthy, or fails (a member that exited is reported
/// at once).
fn wait_ready(specs: &[MemberSpec], children: &mut [Option<Child>]) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        for (spec, child) in specs.iter().zip(children.iter_mut()) {
            if let Some(c) = child {
                if let Some(status) = c.try_wait()? {
                    bail!("etcd {} exited ({status}):\n{}", spec.name, spec.log_tail());
                }
            }
        }
        let ready = specs
            .iter()
            .zip(children.iter())
            .all(|(s, c)| c.is_none() || healthy(s.client_port));
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = specs.iter().map(|s| s.log_tail()).collect();
            bail!(
                "etcd not healthy within {READY_WITHIN:?}:\n{}",
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A group of members started together; shared by [`EtcdServer`] and [`EtcdCluster`].
struct Members {
    specs: Vec<MemberSpec>,
    children: Vec<Option<Child>>,
    initial_cluster: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Members {
    /// Starts `n` members, retrying with fresh ports when a start fails.
    fn start(n: usize) -> anyhow::Result<Members> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match Members::try_start(n) {
                Ok(m) => return Ok(m),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    fn try_start(n: usize) -> anyhow::Result<Members> {
        let dir = tempfile::Builder::new()
            .prefix("meseta-etcd-")
            .tempdir()
            .context("creating the etcd data directory")?;
        let specs = (0..n)
            .map(|i| {
                Ok(MemberSpec {
                    name: format!("m{i}"),
                    client_port: free_port()?,
                    peer_port: free_port()?,
                    data_dir: dir.path().join(format!("m{i}")),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let initial_cluster = specs
            .iter()
            .map(|s| format!("{}={}", s.name, s.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("meseta-test-{}", specs[0].peer_port);
        let mut m = Members {
            children: Vec::new(),
            specs,
            initial_cluster,
            token,
            _dir: dir,
        };
        for spec in &m.specs {
            m.children
                .push(Some(spec.spawn(&m.initial_cluster, &m.token)?));
        }
        wait_ready(&m.specs, &mut m.children)?;
        Ok(m)
    }

    fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let spec = self.specs.get(i).context("no such member")?.clone();
        kill(&mut self.children[i]);
        self.children[i] = Some(spec.spawn(&self.initial_cluster, &self.token)?);
        let only = [spec];
        let mut child = [self.children[i].take()];
        let res = wait_ready(&only, &mut child);
        self.children[i] = child[0].take();
        res
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        self.children.iter_mut().for_each(kill);
    }
}

/// One etcd member on free loopback ports with a temporary data directory; killed on drop.
pub struct EtcdServer {
    members: Members,
}

impl EtcdServer {
    /// Starts etcd and waits until it is healthy.
    pub fn start() -> anyhow::Result<EtcdServer> {
        Ok(EtcdServer {
            members: Members::start(1)?,
        })
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn endpoint(&self) -> String {
        self.members.specs[0].endpoint()
    }

    /// `etcd://127.0.0.1:<client port>`, for `EtcdStore::from_url`.
    pub fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.members.specs[0].client_port)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.members.specs[0].data_dir
    }
}

/// Several etcd members forming one cluster on loopback; all killed on drop.
pub struct EtcdCluster {
    members: Members,
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one is healthy (a leader is elected).
    pub fn start(n: usize) -> anyhow::Result<EtcdCluster> {
        if n == 0 {
            bail!("a cluster needs at least one member");
        }
        Ok(EtcdCluster {
            members: Members::start(n)?,
        })
    }

    /// Every member's client endpoint, `http://127.0.0.1:<port>`.
    pub fn members(&self) -> Vec<String> {
        self.members
            .specs
            .iter()
            .map(MemberSpec::endpoint)
            .collect()
    }

    /// Every member's own URL, `etcd://127.0.0.1:<port>`.
    pub fn urls(&self) -> Vec<String> {
        let ports = self.members.specs.iter().map(|s| s.client_port);
        ports.map(|p| format!("etcd://127.0.0.1:{p}")).collect()
    }

    /// One URL naming every member, `etcd://127.0.0.1:<p1>,127.0.0.1:<p2>,...`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .specs
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.client_port))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// Kills member `i` with SIGKILL (its data directory stays for [`EtcdCluster::restart`]).
    pub fn kill(&mut self, i: usize) {
        if let Some(child) = self.members.children.get_mut(i) {
            kill(child);
        }
    }

    /// Whether member `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.members.children.get(i).is_some_and(Option::is_some)
    }

    /// Starts member `i` again on its ports and data, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.members.restart(i)
    }
}
