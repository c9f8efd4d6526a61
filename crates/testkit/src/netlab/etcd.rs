//! An etcd cluster in a lab ([`Lab::etcd_cluster`](super::Lab::etcd_cluster)): `/usr/bin/etcd` on
//! each host given, named after the host, clients on `http://IP:2379`, peers on `http://IP:2380`
//! (fixed ports are fine: each host has its own network stack), data dirs and logs in one temp
//! dir. Reads and writes go through etcd's v3 JSON gateway (`/v3/kv/put`, `/v3/kv/range`, keys and
//! values base64) from the test process, which reaches every host through the lab's gateway.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::{Host, Proc};

/// The etcd binary (Debian `etcd-server`).
pub const ETCD: &str = "/usr/bin/etcd";

/// How long one put or get through the gateway may take before it counts as failed (a member
/// without quorum holds a write until etcd's own request timeout, 7 s by default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// How long starting members may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The members of an etcd cluster in a lab; dropping it kills them and removes their data (kept,
/// with the logs, when the test is panicking: the path is printed).
pub struct EtcdMembers {
    members: Vec<Member>,
    http: reqwest::Client,
    dir: Option<tempfile::TempDir>,
}

struct Member {
    host: Host,
    args: Vec<String>,
    log: PathBuf,
    proc: Option<Proc>,
}

impl EtcdMembers {
    /// Whether the etcd binary is present (`Err` says what is missing).
    pub fn available() -> Result<(), String> {
        match std::fs::metadata(ETCD) {
            Ok(m) if m.is_file() => Ok(()),
            _ => Err(format!("{ETCD} is missing (apt-get install etcd-server)")),
        }
    }

    pub(super) async fn start(lab_id: &str, hosts: &[&Host]) -> anyhow::Result<EtcdMembers> {
        anyhow::ensure!(!hosts.is_empty(), "an etcd cluster needs at least one host");
        Self::available().map_err(anyhow::Error::msg)?;
        let dir = tempfile::Builder::new()
            .prefix("netlab-etcd-")
            .tempdir()
            .context("temp dir")?;
        let initial_cluster = hosts
            .iter()
            .map(|h| format!("{}=http://{}:2380", h.name(), h.ip()))
            .collect::<Vec<_>>()
            .join(",");
        let members = hosts
            .iter()
            .map(|h| Member {
                host: (*h).clone(),
                log: dir.path().join(format!("{}.log", h.name())),
                args: member_args(h, &dir.path().join(h.name()), &initial_cluster, lab_id),
                proc: None,
            })
            .collect();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("http client")?;
        let mut cluster = EtcdMembers {
            members,
            http,
            dir: Some(dir),
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        for i in 0..cluster.members.len() {
            cluster.wait_healthy(i, START_TIMEOUT).await?;
        }
        Ok(cluster)
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The host of member `i`.
    pub fn host(&self, i: usize) -> &Host {
        &self.members[i].host
    }

    /// `http://IP:2379` of every member, in order.
    pub fn client_urls(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.client_url(i)).collect()
    }

    /// `http://IP:2379` of member `i`.
    pub fn client_url(&self, i: usize) -> String {
        format!("http://{}:2379", self.members[i].host.ip())
    }

    /// The log file of member `i`.
    pub fn log_path(&self, i: usize) -> &std::path::Path {
        &self.members[i].log
    }

    /// The last lines of member `i`'s log, for a failure message.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether member `i`'s process runs.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.members[i].proc.as_mut().is_some_and(Proc::is_running)
    }

    /// `kill -9` member `i` and wait until it is gone.
    pub fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut p) = self.members[i].proc.take() {
            p.kill9()?;
        }
        Ok(())
    }

    /// Start member `i` again (same name, data dir and flags; it rejoins from its data) and wait
    /// until it is healthy.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill9(i)?;
        self.spawn(i)?;
        self.wait_healthy(i, START_TIMEOUT).await
    }

    /// Wait until `GET /health` of member `i` says `"health":"true"` (it runs and has a leader).
    pub async fn wait_healthy(&mut self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("{}/health", self.client_url(i));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            anyhow::ensure!(
                self.is_running(i),
                "etcd member {i} exited; log:\n{}",
                self.log_tail(i, 30)
            );
            let last = match self.http.get(&url).send().await {
                Ok(resp) => {
                    let body: Value = resp.json().await.unwrap_or_default();
                    if body["health"] == "true" {
                        return Ok(());
                    }
                    body.to_string()
                }
                Err(e) => e.to_string(),
            };
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "etcd member {i} not healthy after {timeout:?} ({last}); log:\n{}",
                self.log_tail(i, 30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Put `key` = `value` through member `i`'s gateway; an error if it fails or takes longer
    /// than 3 s (as it does through a member cut off from the majority).
    pub async fn put(&self, i: usize, key: &str, value: &str) -> anyhow::Result<()> {
        let body = json!({"key": B64.encode(key), "value": B64.encode(value)});
        self.call(i, "/v3/kv/put", body).await.map(drop)
    }

    /// Linearizable read of `key` through member `i` (needs a quorum); `None` if absent.
    pub async fn get(&self, i: usize, key: &str) -> anyhow::Result<Option<String>> {
        self.range(i, key, false).await
    }

    /// Serializable read of `key` from member `i`'s own copy of the data (answers without a
    /// quorum, possibly stale); `None` if absent.
    pub async fn get_local(&self, i: usize, key: &str) -> anyhow::Result<Option<String>> {
        self.range(i, key, true).await
    }

    async fn range(&self, i: usize, key: &str, local: bool) -> anyhow::Result<Option<String>> {
        let body = json!({"key": B64.encode(key), "serializable": local});
        let reply = self.call(i, "/v3/kv/range", body).await?;
        let Some(value) = reply["kvs"][0]["value"].as_str() else {
            return Ok(None);
        };
        let bytes = B64.decode(value).context("value is not base64")?;
        Ok(Some(
            String::from_utf8(bytes).context("value is not UTF-8")?,
        ))
    }

    async fn call(&self, i: usize, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.client_url(i));
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let reply: Value = resp
            .json()
            .await
            .with_context(|| format!("POST {url}: {status}, body not JSON"))?;
        anyhow::ensure!(
            status.is_success() && reply.get("error").is_none(),
            "POST {url}: {status} {reply}"
        );
        Ok(reply)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &mut self.members[i];
        m.proc = Some(m.host.spawn(ETCD, &m.args, &[], &m.log)?);
        Ok(())
    }
}

/// The flags of the member on `host`.
fn member_args(
    host: &Host,
    data: &std::path::Path,
    initial_cluster: &str,
    lab_id: &str,
) -> Vec<String> {
    let ip = host.ip();
    let flags = [
        ("--name", host.name().to_owned()),
        ("--data-dir", data.to_string_lossy().into_owned()),
        ("--listen-client-urls", format!("http://{ip}:2379")),
        ("--advertise-client-urls", format!("http://{ip}:2379")),
        ("--listen-peer-urls", format!("http://{ip}:2380")),
        ("--initial-advertise-peer-urls", format!("http://{ip}:2380")),
        ("--initial-cluster", initial_cluster.to_owned()),
        ("--initial-cluster-token", format!("netlab-{lab_id}")),
        ("--initial-cluster-state", "new".to_owned()),
    ];
    flags
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
}

impl Drop for EtcdMembers {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.proc = None;
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "netlab: etcd data and logs kept in {}",
                    dir.keep().display()
                );
            }
        }
    }
}
