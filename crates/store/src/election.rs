//! Leader election on a store lease, and fenced writes.
//!
//! Any number of masters share one store (etcd in production). Each campaigns by creating the
//! leader key attached to its own lease, in a transaction that only succeeds while the key is
//! absent; the one that succeeds leads for as long as it keeps the lease alive. The others watch
//! the key and campaign again as soon as it is deleted (the leader resigned, or its lease
//! expired because it died or lost the store).
//!
//! ```text
//!   follower ──campaign: txn(version(LEADER)=0 ⇒ put LEADER{me} lease L)──▶ leader
//!      ▲  │ lost the race: watch LEADER until deleted                         │
//!      │  └───────────────────────────────────────────────┘                   │ keep L alive
//!      └──── lease gone / key replaced / a fenced write refused / resigned ◀───┘
//! ```
//!
//! **Fencing.** A leader that has not yet noticed it was deposed (a long pause, a partition)
//! must not write. [`Leadership::fenced_store`] wraps the store so that every write is a
//! transaction conditioned on the leader key still having the revision this leader created it
//! at. After the lease expired (the key is gone) or another master took over (the key was
//! recreated at a later revision), the condition fails, the write is refused with
//! [`StoreError::Fenced`], and the leadership counts as lost.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError, TxnResponse, WatchEvent};

/// Where the current leader is recorded (attached to its lease).
pub const LEADER_KEY: &str = "/meseta/leader";

/// What a leader publishes about itself under [`LEADER_KEY`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// Unique id of the campaigning process.
    pub id: String,
    /// Base URL clients use to reach it, e.g. `http://10.0.0.2:5050`.
    pub url: String,
    /// Unix time (seconds) it was elected.
    #[serde(default)]
    pub elected_at: f64,
}

impl LeaderInfo {
    /// `host:port` of [`LeaderInfo::url`] (what `/v2/leader` and `/master/redirect` report).
    pub fn host_port(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or(&self.url);
        rest.split('/').next().unwrap_or(rest)
    }
}

/// Campaigns for leadership on one store.
pub struct Election {
    store: Arc<dyn Store>,
    key: String,
    ttl: Duration,
}

impl Election {
    /// An election on `store` whose leader lease lives `ttl` after its last keep-alive.
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Election {
        Election {
            store,
            key: LEADER_KEY.to_string(),
            ttl,
        }
    }

    /// The current leader, if one is elected.
    pub async fn leader(&self) -> Result<Option<LeaderInfo>, StoreError> {
        Ok(self.store.get(&self.key).await?.and_then(|kv| decode(&kv)))
    }

    /// Campaigns until elected. Every change of leader seen while waiting is passed to
    /// `observe` (`None`: no leader right now). Store errors are retried (the store may be
    /// briefly unreachable); only a closed store ends the campaign with an error.
    pub async fn campaign(
        &self,
        me: &LeaderInfo,
        observe: impl Fn(Option<LeaderInfo>),
    ) -> Result<Leadership, StoreError> {
        let value = serde_json::to_vec(me)
            .map_err(|e| StoreError::Encode(format!("encoding leader record: {e}")))?;
        let retry = (self.ttl / 4).max(Duration::from_millis(100));
        loop {
            match self.try_once(&value).await {
                Ok(Some(leadership)) => {
                    observe(Some(me.clone()));
                    return Ok(leadership);
                }
                Ok(None) => {}
                Err(StoreError::Closed) => return Err(StoreError::Closed),
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: store error; retrying");
                    tokio::time::sleep(retry).await;
                    continue;
                }
            }
            // Someone else leads: publish it and wait for the key to go away.
            match self.store.get(&self.key).await {
                Ok(Some(kv)) if decode(&kv).is_some_and(|l| l.id == me.id) => {
                    // Our own record, from a term this process has already ended (it stepped
                    // down when its keep-alives stopped getting through, as during an etcd
                    // election, but the store kept the lease): clear it rather than wait out
                    // the lease. The old term's fenced writes fail from here on.
                    tracing::info!(
                        revision = kv.mod_revision,
                        "leader election: clearing this master's record of an ended term"
                    );
                    if let Err(e) = self.clear(kv.mod_revision).await {
                        tracing::warn!(error = %e, "leader election: clearing the record failed");
                        tokio::time::sleep(retry).await;
                    }
                }
                Ok(Some(kv)) => {
                    observe(decode(&kv));
                    self.wait_for_vacancy(kv.mod_revision).await;
                }
                Ok(None) => observe(None),
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: reading the leader failed");
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }

    /// One attempt: `Some` when elected.
    async fn try_once(&self, value: &[u8]) -> Result<Option<Leadership>, StoreError> {
        let lease = self.store.grant_lease(self.ttl).await?;
        let created = self
            .store
            .txn(
                vec![Compare::Version {
                    key: self.key.clone(),
                    version: 0,
                }],
                vec![Op::Put {
                    key: self.key.clone(),
                    value: value.to_vec(),
                    lease: Some(lease),
                }],
                vec![],
            )
            .await;
        match created {
            Ok(TxnResponse {
                succeeded: true,
                revision,
            }) => Ok(Some(Leadership::start(
                self.store.clone(),
                self.key.clone(),
                lease,
                revision,
                self.ttl,
            ))),
            Ok(_) => {
                let _ = self.store.revoke(lease).await;
                Ok(None)
            }
            Err(e) => {
                let _ = self.store.revoke(lease).await;
                Err(e)
            }
        }
    }

    /// Deletes the leader key if it is still the one written at `revision`.
    async fn clear(&self, revision: Revision) -> Result<(), StoreError> {
        self.store
            .txn(
                vec![Compare::ModRevision {
                    key: self.key.clone(),
                    revision,
                }],
                vec![Op::Delete {
                    key: self.key.clone(),
                }],
                vec![],
            )
            .await
            .map(drop)
    }

    /// Returns once the leader key written at `seen` is deleted or replaced, or after a while
    /// (the caller then simply tries again).
    async fn wait_for_vacancy(&self, seen: Revision) {
        let recheck = self.ttl.max(Duration::from_millis(500));
        let Ok(mut events) = self.store.watch(&self.key, seen + 1).await else {
            tokio::time::sleep(recheck.min(Duration::from_secs(1))).await;
            return;
        };
        let deadline = Instant::now() + recheck * 2;
        loop {
            match tokio::time::timeout_at(deadline, events.next()).await {
                Ok(Some(Ok(ev))) if ev.key() == self.key => match ev {
                    WatchEvent::Delete { .. } => return,
                    WatchEvent::Put(kv) if kv.mod_revision != seen => return,
                    WatchEvent::Put(_) => {}
                },
                Ok(Some(Ok(_))) => {}
                // Stream error or end, or nothing for a while: re-check by campaigning again.
                _ => return,
            }
        }
    }
}

fn decode(kv: &KeyValue) -> Option<LeaderInfo> {
    serde_json::from_slice(&kv.value).ok()
}

/// The state of being leader: the lease is kept alive in the background until it is lost or
/// resigned.
pub struct Leadership {
    store: Arc<dyn Store>,
    lease: LeaseId,
    revision: Revision,
    lost_tx: Arc<watch::Sender<Option<String>>>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Leadership {
    fn start(
        store: Arc<dyn Store>,
        key: String,
        lease: LeaseId,
        revision: Revision,
        ttl: Duration,
    ) -> Leadership {
        let (tx, _) = watch::channel(None);
        let lost_tx = Arc::new(tx);
        let keeper = tokio::spawn(keep(
            store.clone(),
            key,
            lease,
            revision,
            ttl,
            lost_tx.clone(),
        ));
        Leadership {
            store,
            lease,
            revision,
            lost_tx,
            keeper,
        }
    }

    /// The revision at which this leader created the leader key (its term, in effect: a later
    /// leader's is always greater).
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The store as this leader must use it: every write is fenced on the leadership (see the
    /// module docs). A refused write marks the leadership lost.
    pub fn fenced_store(&self) -> Arc<dyn Store> {
        Arc::new(FencedStore {
            inner: self.store.clone(),
            key: LEADER_KEY.to_string(),
            revision: self.revision,
            lost: self.lost_tx.clone(),
        })
    }

    /// Why leadership was lost, once it is (resolves immediately if it already was).
    pub async fn lost(&self) -> String {
        let mut rx = self.lost_tx.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                return "leadership keeper stopped".to_string();
            }
        }
    }

    /// Whether leadership is known to be lost.
    pub fn is_lost(&self) -> bool {
        self.lost_tx.borrow().is_some()
    }

    /// Gives leadership up now (revokes the lease, deleting the leader key) so another master
    /// takes over without waiting for the lease to expire.
    pub async fn resign(self) {
        self.keeper.abort();
        mark_lost(&self.lost_tx, "resigned");
        if let Err(e) = self.store.revoke(self.lease).await {
            tracing::warn!(error = %e, "resigning leadership: revoking the lease failed");
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

fn mark_lost(tx: &watch::Sender<Option<String>>, why: &str) {
    tx.send_if_modified(|v| {
        if v.is_none() {
            *v = Some(why.to_string());
            true
        } else {
            false
        }
    });
}

/// Keeps the lease alive every `ttl / 3`. Leadership is lost when the lease is gone, when the
/// leader key no longer is ours, or when no keep-alive succeeded for `ttl` (the store may have
/// expired the lease meanwhile: step down rather than risk two leaders acting).
async fn keep(
    store: Arc<dyn Store>,
    key: String,
    lease: LeaseId,
    revision: Revision,
    ttl: Duration,
    lost: Arc<watch::Sender<Option<String>>>,
) {
    let period = (ttl / 3).max(Duration::from_millis(50));
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(period).await;
        if lost.borrow().is_some() {
            return;
        }
        let alive = async {
            store.keep_alive(lease).await?;
            store.get(&key).await
        };
        match tokio::time::timeout(period.max(Duration::from_millis(500)), alive).await {
            Ok(Ok(Some(kv))) if kv.mod_revision == revision => last_ok = Instant::now(),
            Ok(Ok(_)) => return mark_lost(&lost, "the leader key is no longer ours"),
            Ok(Err(StoreError::LeaseNotFound(_))) => {
                return mark_lost(&lost, "the leadership lease expired")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "leadership keep-alive failed"),
            Err(_) => tracing::warn!("leadership keep-alive timed out"),
        }
        if last_ok.elapsed() >= ttl {
            return mark_lost(
                &lost,
                &format!("no keep-alive reached the store for {ttl:?}"),
            );
        }
    }
}

/// A store whose every write is conditioned on a leadership (see the module docs).
struct FencedStore {
    inner: Arc<dyn Store>,
    key: String,
    revision: Revision,
    lost: Arc<watch::Sender<Option<String>>>,
}

impl FencedStore {
    fn fence(&self) -> Compare {
        Compare::ModRevision {
            key: self.key.clone(),
            revision: self.revision,
        }
    }

    /// Whether the fence still holds (a failed transaction may have failed on it).
    async fn still_leader(&self) -> Result<bool, StoreError> {
        let held = matches!(
            self.inner.get(&self.key).await?,
            Some(kv) if kv.mod_revision == self.revision
        );
        if !held {
            mark_lost(&self.lost, "a write was refused: another master leads");
        }
        Ok(held)
    }

    fn refused(&self) -> StoreError {
        StoreError::Fenced(format!(
            "this master no longer leads (its leadership from revision {} ended); the write was refused",
            self.revision
        ))
    }

    /// A write guarded by the fence and by `compares`; `Ok(None)` when the fence holds but a
    /// compare failed.
    async fn guarded(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
    ) -> Result<Option<TxnResponse>, StoreError> {
        if self.lost.borrow().is_some() {
            return Err(self.refused());
        }
        let mut all = Vec::with_capacity(compares.len() + 1);
        all.push(self.fence());
        all.extend(compares);
        let r = self.inner.txn(all, ops, vec![]).await?;
        if r.succeeded {
            return Ok(Some(r));
        }
        if self.still_leader().await? {
            Ok(None)
        } else {
            Err(self.refused())
        }
    }
}

/// Whether `c` holds for the key's current state `kv`.
fn holds(c: &Compare, kv: Option<&KeyValue>) -> bool {
    match c {
        Compare::Version { version, .. } => kv.map_or(0, |k| k.version) == *version,
        Compare::ModRevision { revision, .. } => kv.map_or(0, |k| k.mod_revision) == *revision,
        Compare::Value { value, .. } => kv.is_some_and(|k| &k.value == value),
    }
}

fn compare_key(c: &Compare) -> &str {
    match c {
        Compare::Version { key, .. }
        | Compare::ModRevision { key, .. }
        | Compare::Value { key, .. } => key,
    }
}

#[async_trait::async_trait]
impl Store for FencedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let op = Op::Put {
            key: key.to_string(),
            value,
            lease: None,
        };
        match self.guarded(vec![], vec![op]).await? {
            Some(r) => Ok(r.revision),
            None => Err(self.refused()),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        loop {
            let current = self.inner.get(key).await?;
            let seen = current.as_ref().map_or(0, |kv| kv.mod_revision);
            let compare = Compare::ModRevision {
                key: key.to_string(),
                revision: seen,
            };
            let op = Op::Delete {
                key: key.to_string(),
            };
            if self.guarded(vec![compare], vec![op]).await?.is_some() {
                return Ok(current.is_some());
            }
            // The key changed between the read and the delete: read again.
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        self.inner.list(prefix).await
    }

    async fn list_with_revision(
        &self,
        prefix: &str,
    ) -> Result<(Revision, Vec<KeyValue>), StoreError> {
        self.inner.list_with_revision(prefix).await
    }

    async fn txn(
        &self,
        compares: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<TxnResponse, StoreError> {
        if failure.is_empty() {
            return match self.guarded(compares, success).await? {
                Some(r) => Ok(r),
                None => Ok(TxnResponse {
                    succeeded: false,
                    revision: self.inner.revision().await?,
                }),
            };
        }
        // Two branches under a fence: evaluate the compares on a read; run the branch they pick
        // guarded by the fence and by "none of the compared keys changed since that read", which
        // makes the pair as atomic as one transaction. Retry if they changed.
        loop {
            let mut seen = Vec::with_capacity(compares.len());
            let mut all_hold = true;
            for c in &compares {
                let kv = self.inner.get(compare_key(c)).await?;
                all_hold &= holds(c, kv.as_ref());
                seen.push(Compare::ModRevision {
                    key: compare_key(c).to_string(),
                    revision: kv.map_or(0, |k| k.mod_revision),
                });
            }
            let branch = if all_hold { &success } else { &failure };
            if let Some(r) = self.guarded(seen, branch.clone()).await? {
                return Ok(TxnResponse {
                    succeeded: all_hold,
                    revision: r.revision,
                });
            }
        }
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<crate::WatchStream, StoreError> {
        self.inner.watch(prefix, from_revision).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.inner.grant_lease(ttl).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.keep_alive(lease).await
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.revoke(lease).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemStore;

    fn info(id: &str) -> LeaderInfo {
        LeaderInfo {
            id: id.to_string(),
            url: format!("http://{id}:5050"),
            elected_at: 0.0,
        }
    }

    #[test]
    fn host_port_of_url() {
        assert_eq!(info("m1").host_port(), "m1:5050");
        let bare = LeaderInfo {
            url: "10.0.0.1:5050".into(),
            ..info("x")
        };
        assert_eq!(bare.host_port(), "10.0.0.1:5050");
    }

    #[tokio::test]
    async fn one_leader_then_takeover_after_resign() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let e1 = Election::new(store.clone(), Duration::from_secs(5));
        let e2 = Election::new(store.clone(), Duration::from_secs(5));
        let l1 = e1.campaign(&info("m1"), |_| {}).await.expect("m1 leads");
        assert_eq!(e2.leader().await.expect("read"), Some(info("m1")));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let m2 = tokio::spawn(async move {
            e2.campaign(&info("m2"), move |l| {
                s.lock().expect("lock").push(l.map(|l| l.id));
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!m2.is_finished(), "m2 must not lead while m1 does");
        l1.resign().await;
        let l2 = tokio::time::timeout(Duration::from_secs(5), m2)
            .await
            .expect("m2 elected promptly")
            .expect("join")
            .expect("campaign");
        assert!(l2.revision() > 0);
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.first(), Some(&Some("m1".to_string())));
        assert_eq!(seen.last(), Some(&Some("m2".to_string())));
    }

    #[tokio::test]
    async fn a_deposed_leader_cannot_write() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let e = Election::new(store.clone(), Duration::from_secs(5));
        let l1 = e.campaign(&info("m1"), |_| {}).await.expect("m1 leads");
        let fenced1 = l1.fenced_store();
        fenced1
            .put("/meseta/x", b"1".to_vec())
            .await
            .expect("leader writes");
        // The key disappears behind m1's back (its lease expired, say) and m2 takes over.
        store.delete(LEADER_KEY).await.expect("delete");
        let l2 = e.campaign(&info("m2"), |_| {}).await.expect("m2 leads");
        let err = fenced1
            .put("/meseta/x", b"stale".to_vec())
            .await
            .expect_err("the old leader's write must fail");
        assert!(matches!(err, StoreError::Fenced(_)), "{err}");
        assert!(l1.is_lost());
        assert!(fenced1.delete("/meseta/x").await.is_err());
        let r = fenced1
            .txn(
                vec![],
                vec![Op::Delete {
                    key: "/meseta/x".into(),
                }],
                vec![],
            )
            .await;
        assert!(r.is_err());
        let kv = store.get("/meseta/x").await.expect("get").expect("kept");
        assert_eq!(kv.value, b"1");
        // The new leader writes.
        l2.fenced_store()
            .put("/meseta/x", b"2".to_vec())
            .await
            .expect("new leader writes");
        assert!(!l2.is_lost());
    }

    #[tokio::test]
    async fn a_master_that_stepped_down_does_not_wait_out_its_own_lease() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let e = Election::new(store.clone(), Duration::from_secs(30));
        let l = e.campaign(&info("m1"), |_| {}).await.expect("leads");
        let old = l.fenced_store();
        // It gives up without resigning (its keep-alives timed out): the key and lease stay.
        mark_lost(&l.lost_tx, "no keep-alive reached the store");
        drop(l);
        assert_eq!(e.leader().await.expect("read"), Some(info("m1")));
        // Another master waits for the lease; the same process campaigns again at once.
        let other = Election::new(store.clone(), Duration::from_secs(30));
        let waiting = tokio::spawn(async move { other.campaign(&info("m2"), |_| {}).await });
        let again = tokio::time::timeout(Duration::from_secs(3), e.campaign(&info("m1"), |_| {}))
            .await
            .expect("re-elected without waiting out the 30 s lease")
            .expect("campaign");
        assert!(old.put("/meseta/x", b"stale".to_vec()).await.is_err());
        again
            .fenced_store()
            .put("/meseta/x", b"new".to_vec())
            .await
            .expect("the new term writes");
        assert!(!waiting.is_finished(), "m2 must not lead while m1 does");
        waiting.abort();
    }

    #[tokio::test]
    async fn lease_expiry_loses_leadership() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let e = Election::new(store.clone(), Duration::from_millis(600));
        let l = e.campaign(&info("m1"), |_| {}).await.expect("leads");
        // Someone revokes the lease (as etcd would let it expire).
        let lease = l.lease;
        store.revoke(lease).await.expect("revoke");
        let why = tokio::time::timeout(Duration::from_secs(5), l.lost())
            .await
            .expect("noticed");
        assert!(why.contains("lease") || why.contains("key"), "{why}");
    }

    #[tokio::test]
    async fn fenced_store_passes_the_conformance_suite() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let e = Election::new(store.clone(), Duration::from_secs(30));
        let l = e.campaign(&info("m1"), |_| {}).await.expect("leads");
        crate::conformance::run_all(l.fenced_store().as_ref()).await;
        assert!(!l.is_lost());
    }
}
