//! The private cluster of `meseta bench launch`: one `meseta master` and one `meseta agent`
//! started from the current executable on a free loopback port, with their data in a temporary
//! directory that is removed afterwards. Children are killed on drop, so an error anywhere
//! leaves no process behind.

use anyhow::{bail, Context};
use meseta_api::client::{MasterClient, SchedulerSession};
use meseta_api::scheduler::CallKind;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The agent's resources.
const AGENT_RESOURCES: &str = "cpus:64;mem:65536;disk:10000;ports:[31000-32000]";
/// How long the cluster may take to come up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the teardown may take to end the benchmark's task processes.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// A child process killed (SIGKILL) when dropped.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, args: &[&str], log: PathBuf) -> anyhow::Result<Proc> {
        let exe = std::env::current_exe().context("cannot find the meseta executable")?;
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = std::process::Command::new(&exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {} {name}", exe.display()))?;
        Ok(Proc { name, child, log })
    }

    fn pid(&self) -> Option<Pid> {
        i32::try_from(self.child.id()).ok().map(Pid::from_raw)
    }

    /// Errors (with the tail of its log) if the process has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!(
                "meseta {} exited ({status}) during startup; its log ends with:\n{}",
                self.name,
                log_tail(&self.log)
            );
        }
        Ok(())
    }

    fn rss(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        parse_vm_rss(&text).with_context(|| format!("no VmRSS in {path}"))
    }

    /// SIGTERM, then SIGKILL after `grace`.
    async fn terminate(&mut self, grace: Duration) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Kills the process group led by `child` (children are spawned with `process_group(0)`).
pub(super) fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// A private `meseta master` process (data under `<dir>/master`, a free loopback port), killed
/// on drop. `bench launch` pairs it with an agent; `bench jobs` with simulated agents.
pub(super) struct MasterProcess {
    proc: Proc,
    /// Its base URL.
    pub(super) url: String,
    /// A client of it.
    pub(super) client: MasterClient,
    /// The CA its certificate is signed by, when it serves TLS.
    pub(super) ca: Option<std::path::PathBuf>,
}

impl MasterProcess {
    /// Starts the master and waits for its `/health`.
    pub(super) async fn start(dir: &Path) -> anyhow::Result<MasterProcess> {
        MasterProcess::start_with_args(dir, &[]).await
    }

    /// Starts the master with `extra` flags and waits for its `/health`.
    pub(super) async fn start_with_args(
        dir: &Path,
        extra: &[&str],
    ) -> anyhow::Result<MasterProcess> {
        let data = mkdir(dir, "master")?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let url = format!("http://{listen}");
        let mut args = vec!["master", "--listen", &listen, "--data-dir", &data];
        args.extend_from_slice(extra);
        let mut proc = Proc::spawn("master", &args, dir.join("master.log"))?;
        let client = MasterClient::new(url.clone())?;
        wait_until(&mut proc, "the master's /health", || async {
            client.health().await.is_ok()
        })
        .await?;
        Ok(MasterProcess {
            proc,
            url,
            client,
            ca: None,
        })
    }

    /// Starts the master serving HTTPS (and `wss` to agents) with a certificate of a CA made
    /// in `<dir>/tls`, plus `extra` flags; its client trusts that CA.
    pub(super) async fn start_tls(dir: &Path, extra: &[&str]) -> anyhow::Result<MasterProcess> {
        let (ca, cert, key) = loopback_certificate(&dir.join("tls"))?;
        let data = mkdir(dir, "master")?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let url = format!("https://{listen}");
        let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
        let mut args = vec!["master", "--listen", &listen, "--data-dir", &data];
        args.extend_from_slice(&["--tls-cert", &cert, "--tls-key", &key]);
        args.extend_from_slice(extra);
        let mut proc = Proc::spawn("master", &args, dir.join("master.log"))?;
        let client = MasterClient::with_options(url.clone(), None, Some(&ca))?;
        wait_until(&mut proc, "the master's /health", || async {
            client.health().await.is_ok()
        })
        .await?;
        Ok(MasterProcess {
            proc,
            url,
            client,
            ca: Some(ca),
        })
    }

    /// The TLS configuration agents (and other clients) of this master need, if it serves TLS.
    pub(super) fn client_tls(
        &self,
    ) -> anyhow::Result<Option<std::sync::Arc<meseta_tls::tokio_rustls::rustls::ClientConfig>>>
    {
        self.ca
            .as_deref()
            .map(|ca| {
                meseta_tls::client_config(ca, None)
                    .map(std::sync::Arc::new)
                    .context("the master's CA")
            })
            .transpose()
    }

    /// Starts a master of an HA group on `store` (`etcd://…`) with leader lease `lease` (e.g.
    /// `2s`), on `port` (a free one if `None`), and waits for its `/health` (it may follow).
    pub(super) async fn start_ha(
        dir: &Path,
        store: &str,
        lease: &str,
        port: Option<&str>,
    ) -> anyhow::Result<MasterProcess> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let port = match port {
            Some(p) => p.to_string(),
            None => free_port()?.to_string(),
        };
        let listen = format!("127.0.0.1:{port}");
        let url = format!("http://{listen}");
        let log = dir.join(format!(
            "master-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ));
        let args = [
            "master",
            "--listen",
            &listen,
            "--store",
            store,
            "--lease-ttl",
            lease,
            "--hostname",
            "127.0.0.1",
        ];
        let mut proc = Proc::spawn("master", &args, log)?;
        let client = MasterClient::new(url.clone())?;
        wait_until(&mut proc, "the master's /health", || async {
            client.health().await.is_ok()
        })
        .await?;
        Ok(MasterProcess {
            proc,
            url,
            client,
            ca: None,
        })
    }

    /// Waits until this master of an HA group leads (answers `/v2/apps` itself).
    pub(super) async fn wait_leading(&self, within: Duration) -> anyhow::Result<()> {
        let raw = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(2))
            .build()
            .context("http client")?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(r) = raw.get(format!("{}/v2/apps", self.url)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "the master at {} did not lead within {within:?}; its log ends with:\n{}",
            self.url,
            self.log_tail()
        )
    }

    /// SIGKILL, now.
    pub(super) fn kill(mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
    }

    /// Errors (with the tail of its log) if it has exited.
    pub(super) fn check_alive(&mut self) -> anyhow::Result<()> {
        self.proc.check_alive()
    }

    /// Its pid.
    pub(super) fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// The end of its log (for error messages).
    pub(super) fn log_tail(&self) -> String {
        log_tail(&self.proc.log)
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub(super) async fn stop(mut self, grace: Duration) {
        self.proc.terminate(grace).await;
    }
}

/// The running private cluster.
pub(super) struct Cluster {
    // Field order matters: processes are dropped (killed) before the directory is removed.
    agent: Proc,
    master: MasterProcess,
    client: MasterClient,
    session: Option<SchedulerSession>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a master and an agent and waits until the agent is registered.
    pub(super) async fn start() -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("meseta-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let work = mkdir(dir.path(), "agent")?;
        let master = MasterProcess::start(dir.path()).await?;
        let (url, client) = (master.url.clone(), master.client.clone());
        let agent = Proc::spawn(
            "agent",
            &[
                "agent",
                "--master",
                &url,
                "--work-dir",
                &work,
                "--listen",
                "127.0.0.1:0",
                "--resources",
                AGENT_RESOURCES,
            ],
            dir.path().join("agent.log"),
        )?;
        let mut cluster = Cluster {
            agent,
            master,
            client,
            session: None,
            dir,
        };
        cluster.wait_for_agent().await?;
        Ok(cluster)
    }

    async fn wait_for_agent(&mut self) -> anyhow::Result<()> {
        let client = self.client.clone();
        let registered = || async {
            client.slaves().await.ok().is_some_and(|s| {
                s.get("slaves")
                    .and_then(serde_json::Value::as_array)
                    .is_some_and(|a| !a.is_empty())
            })
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            self.master.check_alive()?;
            self.agent.check_alive()?;
            if registered().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "the agent did not register within {STARTUP_TIMEOUT:?}; its log ends with:\n{}",
            log_tail(&self.agent.log)
        )
    }

    pub(super) fn client(&self) -> &MasterClient {
        &self.client
    }

    /// Keeps the benchmark framework's subscription open until [`Cluster::stop`] tears it down;
    /// returns it for use.
    pub(super) fn hold_session(&mut self, session: SchedulerSession) -> &mut SchedulerSession {
        self.session.insert(session)
    }

    pub(super) fn master_rss(&self) -> anyhow::Result<u64> {
        self.master.proc.rss()
    }

    pub(super) fn agent_rss(&self) -> anyhow::Result<u64> {
        self.agent.rss()
    }

    /// Tears the framework down (killing its tasks), stops both processes, kills any task
    /// process still running from the private work directory, and removes the directory.
    pub(super) async fn stop(mut self) {
        let dir = self.dir.path().to_path_buf();
        let own = [self.master.proc.child.id(), self.agent.child.id()];
        if let Some(session) = self.session.take() {
            match session.call(CallKind::Teardown).await {
                Ok(()) => wait_processes_gone(&dir, &own).await,
                Err(e) => eprintln!("cannot tear the benchmark framework down: {e}"),
            }
        }
        self.agent.terminate(Duration::from_secs(10)).await;
        self.master.proc.terminate(Duration::from_secs(5)).await;
        let left = processes_under(&dir, &[]);
        if !left.is_empty() {
            eprintln!("killing {} leftover task processes", left.len());
            for pid in left {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        if let Err(e) = self.dir.close() {
            eprintln!("cannot remove {}: {e}", dir.display());
        }
    }
}

/// Waits until no process (but `own`) runs from `dir`: the tasks are gone.
async fn wait_processes_gone(dir: &Path, own: &[u32]) {
    let deadline = Instant::now() + TEARDOWN_TIMEOUT;
    while Instant::now() < deadline {
        if processes_under(dir, own).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("task processes still running {TEARDOWN_TIMEOUT:?} after the teardown");
}

/// Processes other than `own` whose working directory or command line lies in `dir`.
fn processes_under(dir: &Path, own: &[u32]) -> Vec<Pid> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && !own.contains(pid))
        .filter(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cwd.to_string_lossy().contains(&needle)
                || String::from_utf8_lossy(&cmdline).contains(&needle)
        })
        .filter_map(|pid| i32::try_from(pid).ok().map(Pid::from_raw))
        .collect()
}

async fn wait_until<F, Fut>(proc_: &mut Proc, what: &str, ready: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while Instant::now() < deadline {
        proc_.check_alive()?;
        if ready().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{what} not ready within {STARTUP_TIMEOUT:?}; the log ends with:\n{}",
        log_tail(&proc_.log)
    )
}

/// A CA made in `dir` and a certificate it signed for a master on 127.0.0.1: the CA's
/// certificate, then the master's certificate and key (all PEM files in `dir`).
pub(super) fn loopback_certificate(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let ca = meseta_tls::dev::make_ca(dir).context("making a CA")?;
    let req = meseta_tls::dev::CertRequest {
        name: "master".into(),
        ips: vec![std::net::IpAddr::from([127, 0, 0, 1])],
        ..Default::default()
    };
    let (cert, key) = meseta_tls::dev::make_cert(dir, &req, dir).context("a certificate")?;
    Ok((ca, cert, key))
}

fn mkdir(root: &Path, name: &str) -> anyhow::Result<String> {
    let p = root.join(name);
    std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
    p.into_os_string()
        .into_string()
        .map_err(|p| anyhow::anyhow!("non-UTF-8 temporary path {p:?}"))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The last 20 lines of a log file.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
pub(super) fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        Some("mB") => Some(value * 1024 * 1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_parsed_in_bytes() {
        let status = "Name:\tmeseta\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(4321 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        let text = std::fs::read_to_string("/proc/self/status").expect("procfs");
        assert!(parse_vm_rss(&text).is_some_and(|b| b > 0));
    }

    #[test]
    fn finds_processes_running_in_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(dir.path())
            .spawn()
            .expect("spawn sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        let found = processes_under(dir.path(), &[]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&Pid::from_raw(pid)), "{found:?}");
        assert!(processes_under(dir.path(), &[]).is_empty());
    }

    #[test]
    fn log_tail_keeps_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.log");
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).expect("write");
        let tail = log_tail(&p);
        assert!(
            tail.starts_with("line 10") && tail.ends_with("line 29"),
            "{tail}"
        );
        assert_eq!(log_tail(&dir.path().join("missing")), "");
    }
}
