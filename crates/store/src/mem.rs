//! `MemStore`: an in-memory [`Store`] with full etcd semantics (revisions, txns, watches,
//! leases) for unit tests of other crates. Nothing survives the process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::engine::{self, Applied};
use crate::leases::{spawn_expiry, LeaseOwner, LeaseTable};
use crate::watch::WatchHub;
use crate::{
    Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError, TxnResponse, WatchStream,
    WATCH_HISTORY,
};

struct State {
    kv: BTreeMap<String, KeyValue>,
    revision: Revision,
    leases: LeaseTable,
    hub: WatchHub,
}

struct Inner {
    state: Mutex<State>,
    notify: Arc<Notify>,
    expiry_started: Once,
}

/// An in-memory store. Cheap to clone; clones share the data.
#[derive(Clone)]
pub struct MemStore {
    inner: Arc<Inner>,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore::new()
    }
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore").finish_non_exhaustive()
    }
}

impl MemStore {
    /// An empty store at revision 0. Needs no runtime; the lease expiry task starts on the
    /// first [`Store::grant_lease`].
    pub fn new() -> MemStore {
        let state = State {
            kv: BTreeMap::new(),
            revision: 0,
            leases: LeaseTable::default(),
            hub: WatchHub::new(0, WATCH_HISTORY),
        };
        MemStore {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                notify: Arc::new(Notify::new()),
                expiry_started: Once::new(),
            }),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-written: every mutation
        // validates first, so recover the guard instead of propagating the poison.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn txn(
        &self,
        compares: &[Compare],
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<(TxnResponse, bool), StoreError> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let applied = engine::apply_txn(
            &mut st.kv,
            &mut st.leases,
            st.revision,
            compares,
            success,
            failure,
        )?;
        let wrote = !applied.events.is_empty();
        Ok((publish(st, applied), wrote))
    }

    fn revoke(&self, id: LeaseId, expired_at: Option<Instant>) -> Result<(), StoreError> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let applied =
            engine::revoke_lease(&mut st.kv, &mut st.leases, st.revision, id, expired_at)?;
        if let Some(applied) = applied {
            publish(st, applied);
        }
        Ok(())
    }
}

fn publish(st: &mut State, applied: Applied) -> TxnResponse {
    st.revision = applied.response.revision;
    st.hub.publish(st.revision, applied.events);
    applied.response
}

#[async_trait::async_trait]
impl LeaseOwner for Inner {
    fn lease_schedule(&self, now: Instant) -> (Vec<LeaseId>, Option<Instant>) {
        let st = self.lock();
        (st.leases.expired(now), st.leases.next_deadline())
    }

    fn lease_notify(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    async fn expire_lease(&self, id: LeaseId, now: Instant) {
        // In memory nothing can fail but a vanished lease, which `Some(now)` tolerates.
        let _ = self.revoke(id, Some(now));
    }
}

#[async_trait::async_trait]
impl Store for MemStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        engine::check_key(key)?;
        Ok(self.inner.lock().kv.get(key).cloned())
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let op = Op::Put {
            key: key.to_string(),
            value,
            lease: None,
        };
        Ok(self.inner.txn(&[], vec![op], vec![])?.0.revision)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let op = Op::Delete {
            key: key.to_string(),
        };
        Ok(self.inner.txn(&[], vec![op], vec![])?.1)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        Ok(engine::scan_map(&self.inner.lock().kv, prefix))
    }

    async fn list_with_revision(
        &self,
        prefix: &str,
    ) -> Result<(Revision, Vec<KeyValue>), StoreError> {
        let inner = self.inner.lock();
        Ok((inner.revision, engine::scan_map(&inner.kv, prefix)))
    }

    async fn txn(
        &self,
        compares: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<TxnResponse, StoreError> {
        Ok(self.inner.txn(&compares, success, failure)?.0)
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        self.inner.lock().hub.subscribe(prefix, from_revision)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.inner
            .expiry_started
            .call_once(|| spawn_expiry(Arc::downgrade(&self.inner)));
        let id = self.inner.lock().leases.grant(ttl, Instant::now());
        self.inner.notify.notify_one();
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.lock().leases.keep_alive(lease, Instant::now())
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.revoke(lease, None)
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.lock().revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        crate::conformance::run_all(&MemStore::new()).await;
    }

    #[tokio::test]
    async fn batched_puts_go_in_bounded_transactions() {
        let s = MemStore::new();
        let start = s.revision().await.expect("revision");
        let puts = (0..250).map(|i| (format!("b/{i:03}"), vec![b'x'; 10]));
        let n = crate::put_batched(&s, puts.collect()).await.expect("put");
        assert_eq!(n, 250);
        let mid = s.revision().await.expect("revision");
        assert_eq!(mid - start, 3, "250 puts in 100 + 100 + 50");
        assert_eq!(s.list("b/").await.expect("list").len(), 250);
        // Three values of 60% of the byte bound: 1 + 1 + 1 (two do not fit together).
        let big = vec![b'y'; crate::MAX_TXN_BYTES * 3 / 5];
        let puts = (0..3).map(|i| (format!("big/{i}"), big.clone()));
        crate::put_batched(&s, puts.collect()).await.expect("put");
        let end = s.revision().await.expect("revision");
        assert_eq!(end - mid, 3);
        assert_eq!(crate::put_batched(&s, Vec::new()).await.expect("none"), 0);
        assert_eq!(
            s.revision().await.expect("revision"),
            end,
            "nothing written"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn lease_expires_on_tokio_clock() {
        let s = MemStore::new();
        let id = s.grant_lease(Duration::from_secs(30)).await.expect("grant");
        let op = Op::Put {
            key: "l".into(),
            value: vec![1],
            lease: Some(id),
        };
        s.txn(vec![], vec![op], vec![]).await.expect("txn");
        tokio::time::sleep(Duration::from_secs(20)).await;
        s.keep_alive(id).await.expect("alive");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(s.get("l").await.expect("get").is_some());
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert!(s.get("l").await.expect("get").is_none());
        assert!(matches!(
            s.keep_alive(id).await,
            Err(StoreError::LeaseNotFound(_))
        ));
    }
}
