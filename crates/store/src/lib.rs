//! The meseta `Store`: what the master persists to survive restarts (registered agents,
//! frameworks, later apps and jobs).
//!
//! The [`Store`] trait follows etcd's data model so that an etcd backend can implement it too:
//! a global revision counter bumped once per writing transaction; every key carries its
//! `create_revision`, `mod_revision` and `version` (writes since creation); transactions are
//! "if all compares hold then `success` else `failure`", applied atomically; watches replay a
//! bounded history and then stream live events; leases delete their keys when they expire.
//!
//! Backends: [`mem::MemStore`] (unit tests of other crates), [`redb::RedbStore`] (the
//! embedded, durable default) and [`etcd::EtcdStore`] (an etcd cluster, for highly available
//! masters). [`conformance::run_all`] checks any backend against the contract.
//!
//! Transactions are bounded: etcd refuses more than 128 operations or 1.5 MiB in one request, so
//! writers that may produce many records split them by [`MAX_TXN_OPS`] and [`MAX_TXN_BYTES`].
//! Used by the master (state persistence) and by test harnesses.
#![forbid(unsafe_code)]

pub mod backup;
pub mod conformance;
pub mod election;
mod engine;
mod error;
pub mod etcd;
mod leases;
pub mod mem;
pub mod redb;
pub mod schema;
mod watch;

use std::time::Duration;

pub use error::StoreError;
pub use watch::WatchStream;

/// A point in the store's global history; bumped once per transaction that writes.
/// `0` means "before any write" (and "absent" in [`Compare::ModRevision`]).
pub type Revision = i64;

/// A lease handle from [`Store::grant_lease`]; keys put with it are deleted when it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

/// One stored key with its etcd-style metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The raw value.
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation (1 after the first put).
    pub version: i64,
    /// Lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// A condition of a transaction; all must hold for the success branch to run.
#[derive(Clone, Debug)]
pub enum Compare {
    /// The key's version equals `version` (`0` = the key is absent).
    Version {
        /// Key to check.
        key: String,
        /// Expected version.
        version: i64,
    },
    /// The key's mod revision equals `revision` (`0` = the key is absent).
    ModRevision {
        /// Key to check.
        key: String,
        /// Expected mod revision.
        revision: Revision,
    },
    /// The key exists and its value equals `value`.
    Value {
        /// Key to check.
        key: String,
        /// Expected value.
        value: Vec<u8>,
    },
}

/// A write inside a transaction.
#[derive(Clone, Debug)]
pub enum Op {
    /// Create or overwrite `key`, optionally attached to `lease`.
    Put {
        /// Key to write.
        key: String,
        /// New value.
        value: Vec<u8>,
        /// Lease to attach the key to (must exist).
        lease: Option<LeaseId>,
    },
    /// Delete `key` (no-op if absent).
    Delete {
        /// Key to delete.
        key: String,
    },
    /// Delete every key starting with `prefix`.
    DeletePrefix {
        /// Prefix of the keys to delete.
        prefix: String,
    },
}

/// Outcome of [`Store::txn`].
#[derive(Clone, Debug, PartialEq)]
pub struct TxnResponse {
    /// Whether all compares held (the success branch ran).
    pub succeeded: bool,
    /// Store revision after the transaction (unchanged if it wrote nothing).
    pub revision: Revision,
}

/// A change seen by a watcher.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    /// A key was created or overwritten; its `mod_revision` is the event's revision.
    Put(KeyValue),
    /// A key was deleted at `revision`.
    Delete {
        /// The deleted key.
        key: String,
        /// Revision of the deleting transaction.
        revision: Revision,
    },
}

impl WatchEvent {
    /// The key this event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the transaction that produced this event.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// A key-value store with etcd semantics (see the crate docs).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    /// Writes one key (detaching it from any lease); returns the new revision.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError>;
    /// Deletes one key; `true` if it existed.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;
    /// All keys starting with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError>;
    /// [`Store::list`] together with the store revision the keys were read at.
    ///
    /// The default reads the revision before and after the list and retries until no write
    /// came in between; backends that read both in one transaction override it.
    async fn list_with_revision(
        &self,
        prefix: &str,
    ) -> Result<(Revision, Vec<KeyValue>), StoreError> {
        for _ in 0..LIST_AT_REVISION_ATTEMPTS {
            let before = self.revision().await?;
            let kvs = self.list(prefix).await?;
            let after = self.revision().await?;
            if before == after && kvs.iter().all(|kv| kv.mod_revision <= before) {
                return Ok((before, kvs));
            }
        }
        Err(StoreError::Unavailable(format!(
            "the store changed during each of {LIST_AT_REVISION_ATTEMPTS} attempts to list \
             {prefix:?} at one revision"
        )))
    }
    /// Atomically: if every compare holds run `success`, else run `failure`.
    async fn txn(
        &self,
        compares: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<TxnResponse, StoreError>;
    /// Events with revision `>= from_revision` (`0` = only future events) for keys under
    /// `prefix`, in order. Backends keep a bounded history; older starts fail with
    /// [`StoreError::Compacted`].
    async fn watch(&self, prefix: &str, from_revision: Revision)
        -> Result<WatchStream, StoreError>;
    /// Creates a lease that expires `ttl` after its last keep-alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError>;
    /// Restarts the lease's ttl.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;
    /// Ends the lease now, deleting the keys attached to it.
    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError>;
    /// The current store revision.
    async fn revision(&self) -> Result<Revision, StoreError>;
}

/// Reads `key` and decodes its value as JSON.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    s: &dyn Store,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match s.get(key).await? {
        None => Ok(None),
        Some(kv) => serde_json::from_slice(&kv.value)
            .map(Some)
            .map_err(|e| StoreError::Encode(format!("decoding json value of key {key:?}: {e}"))),
    }
}

/// Encodes `v` as JSON and writes it to `key`; returns the new revision.
pub async fn put_json<T: serde::Serialize>(
    s: &dyn Store,
    key: &str,
    v: &T,
) -> Result<Revision, StoreError> {
    let bytes = serde_json::to_vec(v)
        .map_err(|e| StoreError::Encode(format!("encoding json value of key {key:?}: {e}")))?;
    s.put(key, bytes).await
}

/// Most operations a writer puts in one transaction branch. etcd refuses more than 128
/// (`--max-txn-ops`, answered with [`StoreError::TooLarge`]); 100 leaves room for the compares
/// and puts a caller adds around a batch.
pub const MAX_TXN_OPS: usize = 100;

/// Most bytes of keys and values a writer puts in one transaction. etcd refuses requests over
/// 1.5 MiB (`--max-request-bytes`); 1 MiB leaves room for the request's framing.
pub const MAX_TXN_BYTES: usize = 1024 * 1024;

/// Splits `ops` into transactions of at most [`MAX_TXN_OPS`] operations and about
/// [`MAX_TXN_BYTES`] bytes of keys and values (a single larger operation goes alone), in order.
/// The operations must touch distinct keys (etcd refuses a transaction that touches one twice).
pub fn txn_chunks(ops: impl IntoIterator<Item = Op>) -> Vec<Vec<Op>> {
    let mut out = Vec::new();
    let mut cur: Vec<Op> = Vec::new();
    let mut bytes = 0;
    for op in ops {
        let size = op_bytes(&op);
        if !cur.is_empty() && (cur.len() == MAX_TXN_OPS || bytes + size > MAX_TXN_BYTES) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        cur.push(op);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn op_bytes(op: &Op) -> usize {
    match op {
        Op::Put { key, value, .. } => key.len() + value.len(),
        Op::Delete { key } => key.len(),
        Op::DeletePrefix { prefix } => prefix.len(),
    }
}

/// Puts of distinct keys, written in the transactions of [`txn_chunks`], one after the other:
/// far fewer store writes than one `put` each (on etcd, each is a raft proposal). Each
/// transaction stands alone: after an error, the ones before it are written and the rest are
/// not tried. Returns how many puts were written.
pub async fn put_batched(
    store: &dyn Store,
    puts: Vec<(String, Vec<u8>)>,
) -> Result<usize, (usize, StoreError)> {
    let ops = puts.into_iter().map(|(key, value)| Op::Put {
        key,
        value,
        lease: None,
    });
    let mut written = 0;
    for txn in txn_chunks(ops) {
        let n = txn.len();
        store
            .txn(vec![], txn, vec![])
            .await
            .map_err(|e| (written, e))?;
        written += n;
    }
    Ok(written)
}

/// How often [`Store::list_with_revision`]'s default retries a list that raced a write.
const LIST_AT_REVISION_ATTEMPTS: usize = 20;

/// How many events each backend keeps for watches that start in the past.
pub(crate) const WATCH_HISTORY: usize = 10_000;
