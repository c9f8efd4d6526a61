//! The audit log: one entry per mutation (any method but GET/HEAD) and per denial, kept in the
//! store as a ring (`/meseta/audit/<seq>`, the oldest deleted past the bound). Requests hand
//! entries to a writer task over a channel and never wait for the store; the writer stores
//! whatever has queued up within 50 ms in one transaction (a master that dies loses at most
//! those entries).

use std::sync::Arc;

use meseta_store::{Op, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Where entries live.
pub const PREFIX: &str = "/meseta/audit/";

/// One audited request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log (increasing).
    #[serde(default)]
    pub seq: u64,
    /// Unix seconds.
    pub time: f64,
    /// The token's accessor (`""`: none or not valid).
    pub accessor: String,
    /// The framework principal, when one authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// App ids, job names or roles the request names.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Response status.
    pub status: u16,
    /// For a denial, the missing permission or why the token was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<String>,
    /// The version of the app or group a write named, before it (none: it did not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// The version the write produced (the `version` of its answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// The sending end requests use.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<AuditEntry>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

/// How long the writer gathers entries before storing them.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(50);

fn key(seq: u64) -> String {
    format!("{PREFIX}{seq:020}")
}

impl AuditLog {
    /// Starts the writer over `store`, keeping at most `capacity` entries.
    pub async fn start(store: Arc<dyn Store>, capacity: usize) -> Result<AuditLog, StoreError> {
        let last = store
            .list(PREFIX)
            .await?
            .last()
            .and_then(|kv| kv.key.strip_prefix(PREFIX)?.parse::<u64>().ok())
            .unwrap_or(0);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(store.clone(), rx, last, capacity.max(1) as u64));
        Ok(AuditLog { tx, store })
    }

    /// Queues an entry (its `seq` is assigned by the writer).
    pub fn record(&self, e: AuditEntry) {
        let _ = self.tx.send(e);
    }

    /// The newest `limit` entries, oldest first.
    pub async fn newest(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let kvs = self.store.list(PREFIX).await?;
        let skip = kvs.len().saturating_sub(limit);
        Ok(kvs[skip..]
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect())
    }
}

async fn writer(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<AuditEntry>,
    mut seq: u64,
    capacity: u64,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 1000).await > 0 {
        // Coalesce a burst into one store transaction (entries are never awaited by requests).
        tokio::time::sleep(COALESCE).await;
        while let Ok(e) = rx.try_recv() {
            batch.push(e);
        }
        let mut ops = Vec::with_capacity(batch.len() * 2);
        for mut e in batch.drain(..) {
            seq += 1;
            e.seq = seq;
            let value = serde_json::to_vec(&e).expect("audit entries serialize");
            ops.push(Op::Put {
                key: key(seq),
                value,
                lease: None,
            });
            if seq > capacity {
                ops.push(Op::Delete {
                    key: key(seq - capacity),
                });
            }
        }
        if let Err(e) = store.txn(vec![], ops, vec![]).await {
            tracing::warn!(error = %e, "audit entries not stored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> AuditEntry {
        AuditEntry {
            seq: 0,
            time: 1.0,
            accessor: "a".into(),
            principal: None,
            method: "DELETE".into(),
            path: path.into(),
            targets: vec![],
            status: 200,
            denied: None,
            before: None,
            after: None,
        }
    }

    #[tokio::test]
    async fn the_log_is_a_bounded_ring_in_order() {
        let store: Arc<dyn Store> = Arc::new(meseta_store::mem::MemStore::new());
        let log = AuditLog::start(store.clone(), 3).await.expect("start");
        for i in 0..5 {
            log.record(entry(&format!("/p{i}")));
        }
        let mut got = Vec::new();
        for _ in 0..100 {
            got = log.newest(10).await.expect("list");
            if got.last().is_some_and(|e| e.path == "/p4") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let paths: Vec<_> = got.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/p2", "/p3", "/p4"]);
        assert_eq!(got[2].seq, 5);
        // A restarted writer continues the sequence.
        let again = AuditLog::start(store, 3).await.expect("restart");
        again.record(entry("/p5"));
        for _ in 0..100 {
            got = again.newest(1).await.expect("list");
            if got.first().is_some_and(|e| e.path == "/p5") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(got[0].seq, 6);
    }
}
