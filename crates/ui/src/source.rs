//! The UI's reads: the master's public HTTP endpoints on loopback through the typed client of
//! `meseta-api` (the same calls the CLI makes), and the master's exported read
//! `Master::usage_snapshot`. Each page reads as its viewer: the client forwards the viewer's
//! credential (an `Authorization` header, or the UI's sign-in cookie), so under `--acl` the
//! master filters and refuses exactly as it would for the viewer's own calls. The apps list,
//! which the services list and the dashboard need and which is the largest read, is shared
//! between the pages of one credential until the cluster changes (any event of the master's
//! bus, or an action of the UI) or a second has passed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use meseta_api::client::{ClientError, MasterClient};
use meseta_master::bus::Changes;
use meseta_master::Master;
use serde_json::Value;

/// A read failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// The public endpoint answered with an error or could not be reached.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The read took longer than the UI waits.
    #[error("the master did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

impl SourceError {
    /// The master's status when it refused the viewer (401 or 403).
    pub(crate) fn refusal(&self) -> Option<u16> {
        match self {
            SourceError::Client(e) => e.status().filter(|s| matches!(s, 401 | 403)),
            SourceError::Timeout(_) => None,
        }
    }
}

/// How long a read of `/v2/apps` serves the pages when nothing changed in the cluster.
const APPS_MAX_AGE: Duration = Duration::from_secs(1);
/// How long it may serve them while a newer read is made in the background.
const APPS_STALE_LIMIT: Duration = Duration::from_secs(5);
/// Credentials whose apps summaries are kept at once; past it the cache starts afresh.
const VIEWERS_KEPT: usize = 256;

/// Whose reads: the `Authorization` value forwarded, `None` without a credential.
type Viewer = Option<String>;

/// One apps summary: when it was read, at which `changes`.
struct Cached {
    at: Instant,
    seen: u64,
    apps: Arc<Value>,
}

/// The loopback client of the UI's own master, shared by all viewers.
pub(crate) struct Source {
    client: MasterClient,
    /// Counts the events of the master's bus (a task, agent or framework changed). A count,
    /// not a subscription: a subscriber keeps the bus building every event and holding the
    /// last thousands of them.
    cluster: Changes,
    /// Counts the actions the UI made.
    actions: AtomicU64,
    /// The last apps summary of each viewer.
    apps: Mutex<HashMap<Viewer, Cached>>,
    /// Held while a page waits for a read, so that pages asked at once share one.
    reading: tokio::sync::Mutex<()>,
    /// Viewers whose summary is being read again in the background.
    refreshing: Mutex<HashSet<Viewer>>,
}

impl Source {
    /// A client of `master`'s own listener, which counts the master's changes. It has no token
    /// of its own: every read carries its viewer's credential.
    pub fn new(master: &Master) -> Result<Source, SourceError> {
        let client =
            MasterClient::with_options(format!("http://{}", master.local_addr()), None, None)?;
        Ok(Source {
            client,
            cluster: master.changes(),
            actions: AtomicU64::new(0),
            apps: Mutex::new(HashMap::new()),
            reading: tokio::sync::Mutex::new(()),
            refreshing: Mutex::new(HashSet::new()),
        })
    }

    /// Changes so far: events of the master's bus plus actions of the UI (both only grow).
    fn changes(&self) -> u64 {
        self.cluster
            .count()
            .wrapping_add(self.actions.load(Ordering::Relaxed))
    }

    /// The reads of one viewer, whose credential is `authorization` (if any).
    pub fn reader(self: &Arc<Self>, authorization: Option<HeaderValue>) -> Reader {
        let viewer = authorization
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Reader {
            client: self.client.acting_as(authorization),
            source: self.clone(),
            viewer,
        }
    }
}

/// The reads of one page, made with its viewer's credential.
pub(crate) struct Reader {
    source: Arc<Source>,
    client: MasterClient,
    viewer: Viewer,
}

impl Reader {
    /// Something changed (an action of the UI): the next page reads afresh.
    pub fn changed(&self) {
        self.source.actions.fetch_add(1, Ordering::Relaxed);
    }

    /// The typed client, acting as the viewer.
    pub fn client(&self) -> &MasterClient {
        &self.client
    }

    /// `GET path` → JSON, bounded by [`crate::READ_TIMEOUT`].
    pub async fn get(&self, path: &str) -> Result<Value, SourceError> {
        tokio::time::timeout(crate::READ_TIMEOUT, self.client.get_path(path))
            .await
            .map_err(|_| SourceError::Timeout(crate::READ_TIMEOUT))?
            .map_err(SourceError::from)
    }

    /// `GET path` → JSON, `None` when the path answers 404.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>, SourceError> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(SourceError::Client(e)) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v2/apps` with only what the lists show of each app (id, instance and task
    /// counts, cpus, mem, gpus, running deployments), as `{"apps": [...]}`.
    ///
    /// A read is shared by the viewer's pages asked while nothing changed in the cluster: for
    /// [`APPS_MAX_AGE`] as it is, then up to [`APPS_STALE_LIMIT`] while a new read is made in
    /// the background. After a change (an event of the master's bus, an action of the UI) the
    /// page waits for a new read.
    pub async fn apps_summary(&self) -> Result<Arc<Value>, SourceError> {
        let src = &self.source;
        let now = src.changes();
        {
            let cache = src.apps.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = cache.get(&self.viewer) {
                let age = c.at.elapsed();
                if c.seen == now && age < APPS_MAX_AGE {
                    return Ok(c.apps.clone());
                }
                if c.seen == now && age < APPS_STALE_LIMIT {
                    let first = src
                        .refreshing
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(self.viewer.clone());
                    if first {
                        let me = Reader {
                            source: src.clone(),
                            client: self.client.clone(),
                            viewer: self.viewer.clone(),
                        };
                        tokio::spawn(async move {
                            let _ = me.read_apps(now).await;
                            me.source
                                .refreshing
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&me.viewer);
                        });
                    }
                    return Ok(c.apps.clone());
                }
            }
        }
        let _one = src.reading.lock().await;
        // Another page of the same viewer may have read while this one waited.
        if let Some(c) = src
            .apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.viewer)
        {
            if c.seen == src.changes() && c.seen >= now {
                return Ok(c.apps.clone());
            }
        }
        self.read_apps(now).await
    }

    /// Reads `/v2/apps` and keeps it as of `changes` = `seen`.
    async fn read_apps(&self, seen: u64) -> Result<Arc<Value>, SourceError> {
        let list: AppList =
            tokio::time::timeout(crate::READ_TIMEOUT, self.client.get_path_as("/v2/apps"))
                .await
                .map_err(|_| SourceError::Timeout(crate::READ_TIMEOUT))??;
        let v = Arc::new(serde_json::json!({ "apps": list.apps }));
        let mut cache = self.source.apps.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VIEWERS_KEPT && !cache.contains_key(&self.viewer) {
            cache.clear();
        }
        cache.insert(
            self.viewer.clone(),
            Cached {
                at: Instant::now(),
                seen,
                apps: v.clone(),
            },
        );
        Ok(v)
    }
}

/// `/v2/apps` as the lists read it.
#[derive(serde::Deserialize)]
struct AppList {
    apps: Vec<AppSummary>,
}

/// The fields of a Marathon app the lists show; the rest of the app is skipped unread.
#[derive(serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AppSummary {
    id: String,
    #[serde(default)]
    instances: u64,
    #[serde(default)]
    cpus: f64,
    #[serde(default)]
    mem: f64,
    #[serde(default)]
    gpus: f64,
    #[serde(default)]
    tasks_running: u64,
    #[serde(default)]
    tasks_staged: u64,
    #[serde(default)]
    tasks_healthy: u64,
    #[serde(default)]
    tasks_unhealthy: u64,
    #[serde(default)]
    deployments: Vec<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_summaries_keep_what_the_lists_read() {
        let text = r#"{"apps":[{"id":"/a","instances":3,"cpus":0.5,"mem":64,"tasksRunning":2,
            "tasksHealthy":1,"tasksUnhealthy":1,"tasksStaged":0,"deployments":[{"id":"d1"}],
            "cmd":"sleep 1","labels":{"x":"y"},"container":null}]}"#;
        let list: AppList = serde_json::from_str(text).expect("parses");
        let v = serde_json::json!({ "apps": list.apps });
        let a = &v["apps"][0];
        assert_eq!(a["id"], "/a");
        assert_eq!(a["instances"], 3);
        assert_eq!(a["tasksRunning"], 2);
        assert_eq!(a["tasksUnhealthy"], 1);
        assert_eq!(a["deployments"][0]["id"], "d1");
        assert!(a.get("cmd").is_none());
    }
}
