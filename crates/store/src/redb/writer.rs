//! The redb backend's single writer thread. It drains every queued request, applies them in
//! one redb write transaction (group commit, immediate durability = fsync), and only after
//! the commit updates the shared revision, publishes watch events and answers the callers.
//! Also: table definitions, the `KvTables` view of a redb table, and startup recovery.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use ::redb::{Database, ReadableTable, Table, TableDefinition};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::codec;
use crate::engine::{self, Applied, KvTables};
use crate::leases::LeaseTable;
use crate::watch::WatchHub;
use crate::{Compare, KeyValue, LeaseId, Op, Revision, StoreError, TxnResponse};

/// `key → codec record`.
pub(crate) const DATA: TableDefinition<&str, &[u8]> = TableDefinition::new("data");
/// `"revision" → i64`.
pub(crate) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
pub(crate) const REVISION_KEY: &str = "revision";
/// Most requests folded into one commit.
const MAX_BATCH: usize = 1_024;

/// Maps a redb error into a fatal [`StoreError::Backend`] naming what was being done.
pub(crate) fn backend<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Backend(format!("{what}: {e}"))
}

/// State shared between the writer thread and the store handle.
pub(crate) struct Shared {
    pub(crate) leases: Mutex<LeaseTable>,
    pub(crate) hub: Mutex<WatchHub>,
    /// Last committed revision.
    pub(crate) revision: AtomicI64,
    pub(crate) notify: Arc<Notify>,
}

impl Shared {
    pub(crate) fn leases(&self) -> MutexGuard<'_, LeaseTable> {
        // Lease updates are single assignments; a panicked holder leaves the table usable.
        self.leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn hub(&self) -> MutexGuard<'_, WatchHub> {
        self.hub
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Answer of a txn request: the response and whether it wrote anything.
pub(crate) type TxnReply = Result<(TxnResponse, bool), StoreError>;

/// Work for the writer thread.
pub(crate) enum Request {
    /// Run a transaction.
    Txn {
        compares: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
        reply: oneshot::Sender<TxnReply>,
    },
    /// Revoke a lease (only if expired by `expired_at`, when given).
    Revoke {
        id: LeaseId,
        expired_at: Option<Instant>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// A redb data table seen through the engine's `KvTables`.
struct RedbTables<'t> {
    table: Table<'t, &'static str, &'static [u8]>,
}

impl KvTables for RedbTables<'_> {
    fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let guard = self.table.get(key).map_err(backend("reading key"))?;
        guard.map(|g| codec::decode(key, g.value())).transpose()
    }

    fn scan(&mut self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        scan_table(&self.table, prefix)
    }

    fn insert(&mut self, kv: &KeyValue) -> Result<(), StoreError> {
        let bytes = codec::encode(kv);
        self.table
            .insert(kv.key.as_str(), bytes.as_slice())
            .map_err(backend("writing key"))?;
        Ok(())
    }

    fn remove(&mut self, key: &str) -> Result<(), StoreError> {
        self.table.remove(key).map_err(backend("deleting key"))?;
        Ok(())
    }
}

/// Keys of any redb data table under `prefix`, sorted.
pub(crate) fn scan_table(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
) -> Result<Vec<KeyValue>, StoreError> {
    let mut out = Vec::new();
    for item in table.range(prefix..).map_err(backend("scanning keys"))? {
        let (k, v) = item.map_err(backend("scanning keys"))?;
        let key = k.value();
        if !key.starts_with(prefix) {
            break;
        }
        out.push(codec::decode(key, v.value())?);
    }
    Ok(out)
}

/// Creates the tables if needed, deletes keys left attached to leases by a previous run
/// (leases do not survive a restart), and returns the current revision.
pub(crate) fn recover(db: &Database) -> Result<Revision, StoreError> {
    let wtx = db.begin_write().map_err(backend("starting recovery"))?;
    let revision = {
        let mut meta = wtx
            .open_table(META)
            .map_err(backend("opening meta table"))?;
        let table = wtx
            .open_table(DATA)
            .map_err(backend("opening data table"))?;
        let mut revision = meta
            .get(REVISION_KEY)
            .map_err(backend("reading revision"))?
            .map_or(0, |g| g.value());
        let mut tables = RedbTables { table };
        let leased: Vec<KeyValue> = tables
            .scan("")?
            .into_iter()
            .filter(|kv| kv.lease.is_some())
            .collect();
        if !leased.is_empty() {
            revision += 1;
            for kv in leased {
                tables.remove(&kv.key)?;
            }
            meta.insert(REVISION_KEY, revision)
                .map_err(backend("writing revision"))?;
        }
        revision
    };
    wtx.commit().map_err(backend("committing recovery"))?;
    Ok(revision)
}

/// The writer thread's loop; returns when every sender is gone.
pub(crate) fn run(db: Arc<Database>, shared: Arc<Shared>, rx: mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        commit_batch(&db, &shared, batch);
    }
}

/// How one request of a batch turned out before the commit.
enum Outcome {
    Txn(oneshot::Sender<TxnReply>, Result<Applied, StoreError>),
    Revoke(
        oneshot::Sender<Result<(), StoreError>>,
        Result<Option<Applied>, StoreError>,
    ),
}

fn commit_batch(db: &Database, shared: &Shared, batch: Vec<Request>) {
    let start = shared.revision.load(Ordering::SeqCst);
    let mut outcomes = Vec::with_capacity(batch.len());
    match write_batch(db, shared, start, batch, &mut outcomes) {
        Ok(revision) => {
            shared.revision.store(revision, Ordering::SeqCst);
            answer(shared, outcomes);
        }
        Err(e) => fail_all(outcomes, &e),
    }
}

/// Applies the batch in one write transaction and commits it; returns the new revision.
/// On error nothing is committed (the transaction is dropped, i.e. aborted).
fn write_batch(
    db: &Database,
    shared: &Shared,
    start: Revision,
    batch: Vec<Request>,
    outcomes: &mut Vec<Outcome>,
) -> Result<Revision, StoreError> {
    let wtx = db.begin_write().map_err(backend("starting write"))?;
    let mut revision = start;
    {
        let table = wtx
            .open_table(DATA)
            .map_err(backend("opening data table"))?;
        let mut tables = RedbTables { table };
        let mut leases = shared.leases();
        let mut requests = batch.into_iter();
        for req in requests.by_ref() {
            let outcome = apply(&mut tables, &mut leases, revision, req);
            let fatal = match &outcome {
                Outcome::Txn(_, Ok(a)) | Outcome::Revoke(_, Ok(Some(a))) => {
                    revision = a.response.revision;
                    None
                }
                Outcome::Txn(_, Err(e)) | Outcome::Revoke(_, Err(e)) if is_fatal(e) => {
                    Some(StoreError::Backend(e.to_string()))
                }
                _ => None,
            };
            outcomes.push(outcome);
            if let Some(e) = fatal {
                // The rest of the batch is answered with the same error by `fail_all`.
                outcomes.extend(requests.map(unapplied));
                return Err(e);
            }
        }
        if revision != start {
            let mut meta = wtx
                .open_table(META)
                .map_err(backend("opening meta table"))?;
            meta.insert(REVISION_KEY, revision)
                .map_err(backend("writing revision"))?;
        }
    }
    wtx.commit().map_err(backend("committing"))?;
    Ok(revision)
}

/// A request that never ran because an earlier one in its batch failed fatally.
fn unapplied(req: Request) -> Outcome {
    let e = || StoreError::Backend("not applied".to_string());
    match req {
        Request::Txn { reply, .. } => Outcome::Txn(reply, Err(e())),
        Request::Revoke { reply, .. } => Outcome::Revoke(reply, Err(e())),
    }
}

fn is_fatal(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend(_) | StoreError::Io(_))
}

fn apply(
    tables: &mut RedbTables<'_>,
    leases: &mut LeaseTable,
    revision: Revision,
    req: Request,
) -> Outcome {
    match req {
        Request::Txn {
            compares,
            success,
            failure,
            reply,
        } => {
            let r = engine::apply_txn(tables, leases, revision, &compares, success, failure);
            Outcome::Txn(reply, r)
        }
        Request::Revoke {
            id,
            expired_at,
            reply,
        } => {
            let r = engine::revoke_lease(tables, leases, revision, id, expired_at);
            Outcome::Revoke(reply, r)
        }
    }
}

/// After a successful commit: publish events in order, then answer every caller.
fn answer(shared: &Shared, outcomes: Vec<Outcome>) {
    for outcome in outcomes {
        match outcome {
            Outcome::Txn(reply, Ok(applied)) => {
                let wrote = !applied.events.is_empty();
                let response = publish(shared, applied);
                let _ = reply.send(Ok((response, wrote)));
            }
            Outcome::Txn(reply, Err(e)) => {
                let _ = reply.send(Err(e));
            }
            Outcome::Revoke(reply, Ok(applied)) => {
                if let Some(applied) = applied {
                    publish(shared, applied);
                }
                let _ = reply.send(Ok(()));
            }
            Outcome::Revoke(reply, Err(e)) => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

fn publish(shared: &Shared, applied: Applied) -> TxnResponse {
    shared
        .hub()
        .publish(applied.response.revision, applied.events);
    applied.response
}

/// The commit failed: nobody's write happened. Lease bookkeeping done while applying may now
/// be stale; a failed commit is fatal for the store anyway.
fn fail_all(outcomes: Vec<Outcome>, e: &StoreError) {
    let err = || StoreError::Backend(e.to_string());
    for outcome in outcomes {
        match outcome {
            Outcome::Txn(reply, _) => {
                let _ = reply.send(Err(err()));
            }
            Outcome::Revoke(reply, _) => {
                let _ = reply.send(Err(err()));
            }
        }
    }
}
