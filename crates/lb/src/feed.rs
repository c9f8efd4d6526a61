//! Following the masters: the leader's `/v2/events` stream says *that* something changed,
//! `GET /v2/apps?embed=apps.tasks` (plus `GET /v2/apps/{id}/canary` for apps running two
//! versions) says *what* the state is now. Reads are debounced after an event and repeated
//! periodically; each produces a new table that is swapped in, never a restart.
//!
//! ```text
//!  /v2/events (SSE) ──any event──▶ notify ─┐
//!  periodic resync ───────────────────────▶├─ debounce ─▶ read /v2 ─▶ table::build ─▶ apply
//!  stream lost: reconnect (leader found by  │                                  routes + TCP sync
//!  meseta_api's client over the masters) ──┘
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meseta_api::client::marathon::app_path;
use meseta_api::client::{ClientError, MasterClient};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::live::Routes;
use crate::table::{self, Filter, Table};
use crate::tcp::Tcp;

/// What the status page shows of the feed.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedState {
    /// The master that answered last.
    pub master: String,
    /// Whether the event stream is attached.
    pub events_attached: bool,
    /// Tables applied.
    pub syncs: u64,
    /// Unix time (s) of the last applied table.
    pub last_sync: Option<f64>,
    /// The last failure to read the masters' state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The feed's settings.
#[derive(Clone, Debug)]
pub struct FeedOptions {
    /// Which apps are served.
    pub filter: Filter,
    /// Wait after an event before reading, to take several events in one read.
    pub debounce: Duration,
    /// Read at least this often even without events.
    pub resync: Duration,
}

/// Follows the masters and keeps `routes` and `tcp` in step.
pub struct Feed {
    client: MasterClient,
    opts: FeedOptions,
    routes: Arc<Routes>,
    tcp: Arc<Tcp>,
    state: Arc<Mutex<FeedState>>,
    changed: Notify,
}

impl Feed {
    /// A feed from the masters of `client`.
    pub fn new(
        client: MasterClient,
        opts: FeedOptions,
        routes: Arc<Routes>,
        tcp: Arc<Tcp>,
    ) -> Arc<Feed> {
        Arc::new(Feed {
            client,
            opts,
            routes,
            tcp,
            state: Arc::new(Mutex::new(FeedState::default())),
            changed: Notify::new(),
        })
    }

    /// The feed's state now.
    pub fn state(&self) -> FeedState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut FeedState)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Reads once now and applies the table.
    pub async fn sync_now(&self) -> Result<(), ClientError> {
        let result = read_table(&self.client, &self.opts.filter).await;
        let master = self.client.base_url();
        match result {
            Ok(table) => {
                let conflicts = table.conflicts.len();
                let gone = self.routes.apply(table);
                self.tcp.sync().await;
                if !gone.is_empty() || conflicts > 0 {
                    tracing::info!(removed = gone.len(), conflicts, "routing table swapped");
                }
                self.update(|s| {
                    s.master = master;
                    s.syncs += 1;
                    s.last_sync = Some(unix_now());
                    s.last_error = None;
                });
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the masters' apps");
                self.update(|s| s.last_error = Some(e.to_string()));
                Err(e)
            }
        }
    }

    /// Runs until `stop`: the event follower and the reader.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let events = tokio::spawn(self.clone().follow_events(stop.clone()));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.changed.notified() => {
                    tokio::time::sleep(self.opts.debounce).await;
                }
                _ = tokio::time::sleep(self.opts.resync) => {}
            }
            let _ = self.sync_now().await;
        }
        events.abort();
    }

    /// Attaches to the leader's event stream and notifies on every event; reattaches when the
    /// stream ends or fails (a new leader, a restarted master).
    async fn follow_events(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        while !stop.is_cancelled() {
            match self.client.marathon().all_events().await {
                Ok(mut stream) => {
                    tracing::info!(master = %self.client.base_url(), "event stream attached");
                    self.update(|s| s.events_attached = true);
                    backoff = Duration::from_millis(200);
                    self.changed.notify_one();
                    loop {
                        let next = tokio::select! {
                            _ = stop.cancelled() => return,
                            n = stream.next_data() => n,
                        };
                        match next {
                            Ok(Some(_)) => self.changed.notify_one(),
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "event stream failed");
                                break;
                            }
                        }
                    }
                    self.update(|s| s.events_attached = false);
                    self.changed.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot attach to the event stream");
                    self.update(|s| s.last_error = Some(e.to_string()));
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Reads the apps, their active canaries and the agents' addresses, and builds the table.
pub async fn read_table(client: &MasterClient, filter: &Filter) -> Result<Table, ClientError> {
    let body = client.get_path("/v2/apps?embed=apps.tasks").await?;
    let apps: Vec<Value> = body["apps"].as_array().cloned().unwrap_or_default();
    let mut canaries = BTreeMap::new();
    for app in apps.iter().filter(|a| runs_two_versions(a)) {
        let id = app["id"].as_str().unwrap_or_default();
        let path = format!("{}/canary", app_path(id));
        let Ok(c) = client.get_path(&path).await else {
            continue; // 404: no canary, a plain rolling deployment
        };
        let state = c["state"].as_str().unwrap_or_default();
        if let (true, Some(v)) = (
            matches!(state, "deploying" | "holding"),
            c["canaryVersion"].as_str(),
        ) {
            canaries.insert(id.to_owned(), v.to_owned());
        }
    }
    let hosts = resolve_hosts(client, &apps).await;
    let resolve = |h: &str| hosts.get(h).copied();
    Ok(table::build(&apps, &canaries, filter, &resolve))
}

/// Whether some task of `app` runs another version than the app's.
fn runs_two_versions(app: &Value) -> bool {
    let version = app["version"].as_str().unwrap_or_default();
    app["tasks"]
        .as_array()
        .is_some_and(|ts| ts.iter().any(|t| t["version"].as_str() != Some(version)))
}

/// The addresses of the agents named by tasks (names that are not IP literals): by DNS, else
/// the address the agent registered with (`/master/slaves`, `pid` = `slave(1)@IP:PORT`).
async fn resolve_hosts(client: &MasterClient, apps: &[Value]) -> HashMap<String, IpAddr> {
    let mut out = HashMap::new();
    let mut unresolved = Vec::new();
    let names = apps
        .iter()
        .flat_map(|a| a["tasks"].as_array().into_iter().flatten())
        .filter_map(|t| t["host"].as_str());
    for name in names {
        if out.contains_key(name) || unresolved.contains(&name) || name.parse::<IpAddr>().is_ok() {
            continue;
        }
        match tokio::net::lookup_host((name, 0)).await {
            Ok(mut addrs) => match addrs.next() {
                Some(a) => {
                    out.insert(name.to_owned(), a.ip());
                }
                None => unresolved.push(name),
            },
            Err(_) => unresolved.push(name),
        }
    }
    if unresolved.is_empty() {
        return out;
    }
    let agents = client.slaves().await.unwrap_or_default();
    for (name, ip) in registered_addresses(&agents) {
        if unresolved.contains(&name.as_str()) {
            out.insert(name, ip);
        }
    }
    for name in unresolved.iter().filter(|n| !out.contains_key(**n)) {
        tracing::warn!(host = name, "cannot resolve agent host");
    }
    out
}

/// Agent host name → the IP it registered from, out of `/master/slaves`.
fn registered_addresses(slaves: &Value) -> Vec<(String, IpAddr)> {
    slaves["slaves"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let name = s["hostname"].as_str()?;
            let addr = s["pid"].as_str()?.rsplit('@').next()?;
            let ip = addr.parse::<std::net::SocketAddr>().ok()?.ip();
            (!ip.is_unspecified()).then(|| (name.to_owned(), ip))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agents_resolve_to_the_address_they_registered_from() {
        let slaves = json!({"slaves": [
            {"hostname": "agent-0", "pid": "slave(1)@127.0.0.1:5051"},
            {"hostname": "agent-1", "pid": "slave(1)@0.0.0.0:5051"},
            {"hostname": "agent-2"}
        ]});
        assert_eq!(
            registered_addresses(&slaves),
            [("agent-0".to_owned(), IpAddr::from([127, 0, 0, 1]))]
        );
    }

    #[test]
    fn two_versions_are_seen_on_tasks() {
        let one = json!({"version": "v1", "tasks": [{"version": "v1"}]});
        let two = json!({"version": "v1", "tasks": [{"version": "v1"}, {"version": "v2"}]});
        assert!(!runs_two_versions(&one) && runs_two_versions(&two));
    }
}
