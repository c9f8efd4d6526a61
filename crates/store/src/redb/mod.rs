//! `RedbStore`: the embedded, durable [`Store`] on a single redb file.
//!
//! Writes go to one dedicated writer thread that group-commits everything queued in a single
//! fsync'ed redb transaction and acknowledges each request only after that commit. Reads run
//! on `spawn_blocking` read transactions, which see every acknowledged write. Watches keep the
//! last 10 000 events in memory: after a reopen, only revisions after the
//! reopen are watchable. Leases are in memory only: they do not survive a reopen, and keys
//! still attached to a lease are deleted when the store is reopened (in one revision).
//! Used by the master as its default persistence.

mod codec;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use ::redb::{Database, ReadableDatabase};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::engine::check_key;
use crate::leases::{spawn_expiry, LeaseOwner, LeaseTable};
use crate::watch::WatchHub;
use crate::{
    Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError, TxnResponse, WatchStream,
    WATCH_HISTORY,
};
use writer::{backend, Request, Shared, TxnReply, DATA, META, REVISION_KEY};

struct Inner {
    db: Arc<Database>,
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    expiry_started: Once,
}

/// A durable store in one redb file. Cheap to clone; clones share the database.
/// Needs a tokio runtime for its async methods; dropping the last clone closes the file.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

/// Page cache of the store file.
const CACHE_BYTES: usize = 1024 * 1024;

impl RedbStore {
    /// Opens (creating if absent) the store file at `path`.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        // redb caches up to 1 GiB of pages by default, and the cache counts in the master's
        // resident memory; reads are rare (start-up), so a small cache costs nothing.
        let db = ::redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| {
                StoreError::Backend(format!("opening redb store {}: {e}", path.display()))
            })?;
        let revision = writer::recover(&db)?;
        let db = Arc::new(db);
        let shared = Arc::new(Shared {
            leases: Mutex::new(LeaseTable::default()),
            hub: Mutex::new(WatchHub::new(revision, WATCH_HISTORY)),
            revision: AtomicI64::new(revision),
            notify: Arc::new(Notify::new()),
        });
        let (tx, rx) = mpsc::channel();
        let (wdb, wshared) = (db.clone(), shared.clone());
        let writer = std::thread::Builder::new()
            .name("meseta-store-redb".into())
            .spawn(move || writer::run(wdb, wshared, rx))
            .map_err(|e| StoreError::Io(format!("spawning redb writer thread: {e}")))?;
        Ok(RedbStore {
            inner: Arc::new(Inner {
                db,
                shared,
                tx: Some(tx),
                writer: Some(writer),
                expiry_started: Once::new(),
            }),
        })
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    async fn txn_inner(
        &self,
        compares: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> TxnReply {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Request::Txn {
            compares,
            success,
            failure,
            reply,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

impl Inner {
    fn send(&self, req: Request) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        tx.send(req).map_err(|_| StoreError::Closed)
    }

    async fn revoke(&self, id: LeaseId, expired_at: Option<Instant>) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Revoke {
            id,
            expired_at,
            reply,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel stops the writer after its current batch; joining it makes sure
        // the file is released before a reopen at the same path.
        self.tx.take();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

#[async_trait::async_trait]
impl LeaseOwner for Inner {
    fn lease_schedule(&self, now: Instant) -> (Vec<LeaseId>, Option<Instant>) {
        let leases = self.shared.leases();
        (leases.expired(now), leases.next_deadline())
    }

    fn lease_notify(&self) -> Arc<Notify> {
        self.shared.notify.clone()
    }

    async fn expire_lease(&self, id: LeaseId, now: Instant) {
        // A failure here is a fatal backend error that the next write reports too.
        let _ = self.revoke(id, Some(now)).await;
    }
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        check_key(key)?;
        let key = key.to_string();
        self.read(move |db| {
            let rtx = db.begin_read().map_err(backend("starting read"))?;
            let table = rtx
                .open_table(DATA)
                .map_err(backend("opening data table"))?;
            let guard = table.get(key.as_str()).map_err(backend("reading key"))?;
            guard.map(|g| codec::decode(&key, g.value())).transpose()
        })
        .await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let op = Op::Put {
            key: key.to_string(),
            value,
            lease: None,
        };
        Ok(self.txn_inner(vec![], vec![op], vec![]).await?.0.revision)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let op = Op::Delete {
            key: key.to_string(),
        };
        Ok(self.txn_inner(vec![], vec![op], vec![]).await?.1)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        let prefix = prefix.to_string();
        self.read(move |db| {
            let rtx = db.begin_read().map_err(backend("starting read"))?;
            let table = rtx
                .open_table(DATA)
                .map_err(backend("opening data table"))?;
            writer::scan_table(&table, &prefix)
        })
        .await
    }

    async fn list_with_revision(
        &self,
        prefix: &str,
    ) -> Result<(Revision, Vec<KeyValue>), StoreError> {
        let prefix = prefix.to_string();
        // The writer commits the revision with the data, so one read transaction sees both
        // as of the same commit.
        self.read(move |db| {
            let rtx = db.begin_read().map_err(backend("starting read"))?;
            let meta = rtx
                .open_table(META)
                .map_err(backend("opening meta table"))?;
            let revision = meta
                .get(REVISION_KEY)
                .map_err(backend("reading revision"))?
                .map_or(0, |g| g.value());
            let table = rtx
                .open_table(DATA)
                .map_err(backend("opening data table"))?;
            Ok((revision, writer::scan_table(&table, &prefix)?))
        })
        .await
    }

    async fn txn(
        &self,
        compares: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<TxnResponse, StoreError> {
        Ok(self.txn_inner(compares, success, failure).await?.0)
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        self.inner.shared.hub().subscribe(prefix, from_revision)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.inner
            .expiry_started
            .call_once(|| spawn_expiry(Arc::downgrade(&self.inner)));
        let id = self.inner.shared.leases().grant(ttl, Instant::now());
        self.inner.shared.notify.notify_one();
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.shared.leases().keep_alive(lease, Instant::now())
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.revoke(lease, None).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.shared.revision.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(&dir.path().join("store.redb")).expect("open");
        crate::conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn leased_keys_are_dropped_on_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        {
            let s = RedbStore::open(&path).expect("open");
            let id = s.grant_lease(Duration::from_secs(60)).await.expect("grant");
            let op = Op::Put {
                key: "leased".into(),
                value: vec![1],
                lease: Some(id),
            };
            s.txn(vec![], vec![op], vec![]).await.expect("txn");
            s.put("plain", vec![2]).await.expect("put");
            assert_eq!(s.revision().await.expect("rev"), 2);
        }
        let s = RedbStore::open(&path).expect("reopen");
        assert!(s.get("leased").await.expect("get").is_none());
        assert!(s.get("plain").await.expect("get").is_some());
        assert_eq!(s.revision().await.expect("rev"), 3);
    }
}
