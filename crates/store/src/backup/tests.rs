//! Backup and restore against both embedded backends: round trip, refusal, force, leased keys,
//! transaction bounds, the restore marker and schema checks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::mem::MemStore;
use crate::redb::RedbStore;
use crate::{op_bytes, LeaseId, TxnResponse, WatchStream, MAX_TXN_BYTES, MAX_TXN_OPS};

/// A fresh store of each backend (the temp dir lives as long as the store is used).
fn backends() -> Vec<(&'static str, Arc<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let redb = RedbStore::open(&dir.path().join("store.redb")).expect("open redb");
    vec![
        ("mem", Arc::new(MemStore::new()), None),
        ("redb", Arc::new(redb), Some(dir)),
    ]
}

async fn put(s: &dyn Store, key: &str, value: &[u8]) {
    s.put(key, value.to_vec()).await.expect("put");
}

/// A small store as a master leaves it: schema, records, a binary value, a leased key.
async fn populate(s: &dyn Store) {
    crate::schema::check_or_init(s).await.expect("schema");
    put(s, "/meseta/master/agents/a1", br#"{"id":"a1"}"#).await;
    put(s, "/meseta/master/weights/prod", b"2.5").await;
    put(s, "/meseta/services/apps/g/web", &[0, 159, 146, 150, 255]).await;
    put(s, "/meseta/jobs/nightly", br#"{"name":"nightly"}"#).await;
    s.delete("/meseta/master/weights/prod")
        .await
        .expect("delete");
    put(s, "/meseta/master/weights/prod", b"3").await;
    let lease = s.grant_lease(Duration::from_secs(60)).await.expect("lease");
    let op = Op::Put {
        key: "/meseta/master/leader".into(),
        value: b"me".to_vec(),
        lease: Some(lease),
    };
    s.txn(vec![], vec![op], vec![]).await.expect("leased put");
}

#[tokio::test]
async fn round_trip_skips_leased_keys() {
    for ((name, src, _d1), (_, dst, _d2)) in backends().into_iter().zip(backends()) {
        populate(src.as_ref()).await;
        let snap = backup(src.as_ref()).await.expect("backup");
        assert_eq!(
            snap.revision,
            src.revision().await.expect("rev"),
            "{name}: the revision read"
        );
        assert_eq!(snap.schema_version, SCHEMA_VERSION);
        assert_eq!(snap.format, FORMAT);
        assert!(snap.created > 1_600_000_000, "{name}: {}", snap.created);
        let keys: Vec<&str> = snap.keys.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "/meseta/jobs/nightly",
                "/meseta/master/agents/a1",
                "/meseta/master/weights/prod",
                "/meseta/schema",
                "/meseta/services/apps/g/web",
            ],
            "{name}: leased key left out"
        );

        // Through the file format and back.
        let bytes = snap.to_json().expect("encode");
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(json["keys"][4]["value"], "AJ+Slv8=", "{name}: base64 value");
        let back = Snapshot::from_json(&bytes).expect("decode");
        assert_eq!(back, snap);

        let done = restore(dst.as_ref(), &back, false).await.expect("restore");
        assert_eq!(done.keys, 5);
        assert_eq!(done.deleted, 0);
        assert_eq!(
            durable_keys(dst.as_ref()).await.expect("list"),
            durable_keys(src.as_ref()).await.expect("list"),
            "{name}: same keys and values"
        );
        assert!(dst.get(RESTORE_MARKER).await.expect("get").is_none());
        crate::schema::check_or_init(dst.as_ref())
            .await
            .expect("a master starts on the restored store");
    }
}

#[tokio::test]
async fn a_non_empty_store_is_refused_unless_forced() {
    for ((name, src, _d1), (_, dst, _d2)) in backends().into_iter().zip(backends()) {
        populate(src.as_ref()).await;
        let snap = backup(src.as_ref()).await.expect("backup");
        put(dst.as_ref(), "/meseta/master/agents/old", b"old").await;
        put(dst.as_ref(), "/meseta/jobs/nightly", b"older").await;
        put(dst.as_ref(), "/meseta/schema", br#"{"version":1}"#).await;
        let before = durable_keys(dst.as_ref()).await.expect("list");

        let e = restore(dst.as_ref(), &snap, false)
            .await
            .expect_err("refused");
        assert!(
            matches!(e, BackupError::NotEmpty { keys: 3 }),
            "{name}: {e:?}"
        );
        assert!(e.to_string().contains("holds 3 keys"), "{e}");
        assert_eq!(
            durable_keys(dst.as_ref()).await.expect("list"),
            before,
            "{name}: untouched"
        );

        let done = restore(dst.as_ref(), &snap, true).await.expect("forced");
        assert_eq!((done.keys, done.deleted), (5, 3));
        assert_eq!(
            durable_keys(dst.as_ref()).await.expect("list"),
            durable_keys(src.as_ref()).await.expect("list"),
            "{name}: exactly the snapshot"
        );
    }
}

#[tokio::test]
async fn leased_keys_alone_do_not_make_a_store_non_empty() {
    for (name, dst, _d) in backends() {
        let lease = dst
            .grant_lease(Duration::from_secs(60))
            .await
            .expect("lease");
        let op = Op::Put {
            key: "/meseta/master/leader".into(),
            value: b"other".to_vec(),
            lease: Some(lease),
        };
        dst.txn(vec![], vec![op], vec![]).await.expect("put");
        let snap = Snapshot {
            keys: vec![Entry {
                key: "/meseta/jobs/a".into(),
                value: b"1".to_vec(),
            }],
            ..empty_snapshot()
        };
        restore(dst.as_ref(), &snap, false)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

fn empty_snapshot() -> Snapshot {
    Snapshot {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        schema_version: SCHEMA_VERSION,
        revision: 7,
        created: 1_700_000_000,
        meseta_version: "0.0.0".into(),
        keys: vec![],
    }
}

/// A store that records every transaction and fails the ones after `fail_after`.
struct Recording {
    inner: Arc<dyn Store>,
    txns: Mutex<Vec<Vec<Op>>>,
    deletes: Mutex<Vec<String>>,
    fail_after: Option<usize>,
}

impl Recording {
    fn new(inner: Arc<dyn Store>, fail_after: Option<usize>) -> Recording {
        Recording {
            inner,
            txns: Mutex::new(vec![]),
            deletes: Mutex::new(vec![]),
            fail_after,
        }
    }

    fn txns(&self) -> Vec<Vec<Op>> {
        self.txns.lock().expect("lock").clone()
    }
}

#[async_trait::async_trait]
impl Store for Recording {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        self.inner.put(key, value).await
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.deletes.lock().expect("lock").push(key.to_string());
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn txn(
        &self,
        compares: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<TxnResponse, StoreError> {
        {
            let mut txns = self.txns.lock().expect("lock");
            if self.fail_after.is_some_and(|n| txns.len() >= n) {
                return Err(StoreError::Unavailable("injected failure".into()));
            }
            txns.push(success.clone());
        }
        self.inner.txn(compares, success, failure).await
    }
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        self.inner.watch(prefix, from).await
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

fn op_size(ops: &[Op]) -> usize {
    ops.iter().map(op_bytes).sum()
}

#[tokio::test]
async fn many_keys_go_in_bounded_transactions_between_marker_writes() {
    for ((name, src, _d1), (_, dst, _d2)) in backends().into_iter().zip(backends()) {
        crate::schema::check_or_init(src.as_ref())
            .await
            .expect("schema");
        let ops: Vec<Op> = (0..350)
            .map(|i| Op::Put {
                key: format!("/meseta/services/apps/app-{i:04}"),
                value: format!("{{\"instances\":{i}}}").into_bytes(),
                lease: None,
            })
            .collect();
        for chunk in ops.chunks(50) {
            src.txn(vec![], chunk.to_vec(), vec![]).await.expect("fill");
        }
        // Large values: no more than two fit into one transaction.
        for i in 0..5 {
            put(
                src.as_ref(),
                &format!("/meseta/jobs/big-{i}"),
                &vec![b'x'; 400 * 1024],
            )
            .await;
        }
        let snap = backup(src.as_ref()).await.expect("backup");
        assert_eq!(snap.keys.len(), 356);
        for e in [
            "/meseta/master/agents/stale-1",
            "/meseta/master/agents/stale-2",
        ] {
            put(dst.as_ref(), e, b"stale").await;
        }

        let rec = Recording::new(dst.clone(), None);
        restore(&rec, &snap, true).await.expect("restore");
        let txns = rec.txns();
        assert!(txns.len() >= 7, "{name}: {} transactions", txns.len());
        for (i, t) in txns.iter().enumerate() {
            assert!(
                t.len() <= MAX_TXN_OPS,
                "{name}: txn {i} has {} ops",
                t.len()
            );
            assert!(
                op_size(t) <= MAX_TXN_BYTES,
                "{name}: txn {i} has {} bytes",
                op_size(t)
            );
        }
        // The marker is the first write, and deleted by the last.
        assert!(
            matches!(&txns[0][..], [Op::Put { key, .. }] if key == RESTORE_MARKER),
            "{name}: {:?}",
            txns[0]
        );
        assert!(
            matches!(&txns[1][..], [Op::Delete { .. }, Op::Delete { .. }]),
            "{name}: stale keys deleted next: {:?}",
            txns[1]
        );
        assert_eq!(
            *rec.deletes.lock().expect("lock"),
            vec![RESTORE_MARKER.to_string()]
        );
        assert_eq!(
            durable_keys(dst.as_ref()).await.expect("list"),
            durable_keys(src.as_ref()).await.expect("list"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_interrupted_restore_leaves_the_marker_and_a_forced_one_finishes() {
    for ((name, src, _d1), (_, dst, _d2)) in backends().into_iter().zip(backends()) {
        crate::schema::check_or_init(src.as_ref())
            .await
            .expect("schema");
        for i in 0..250 {
            put(src.as_ref(), &format!("/meseta/jobs/j{i:03}"), b"{}").await;
        }
        let snap = backup(src.as_ref()).await.expect("backup");

        // The marker and the first chunk are written, then the store goes away.
        let rec = Recording::new(dst.clone(), Some(2));
        let e = restore(&rec, &snap, false).await.expect_err("interrupted");
        assert!(
            matches!(e, BackupError::Store(StoreError::Unavailable(_))),
            "{e:?}"
        );
        assert!(
            dst.get(RESTORE_MARKER).await.expect("get").is_some(),
            "{name}"
        );
        let e = crate::schema::check_or_init(dst.as_ref())
            .await
            .expect_err("a master refuses the half-restored store");
        assert!(matches!(e, StoreError::RestoreInProgress), "{name}: {e:?}");
        let e = backup(dst.as_ref())
            .await
            .expect_err("no backup of it either");
        assert!(
            matches!(e, BackupError::Store(StoreError::RestoreInProgress)),
            "{name}: {e:?}"
        );

        // Unforced, the marker (and the keys written) count as contents.
        let e = restore(dst.as_ref(), &snap, false)
            .await
            .expect_err("refused");
        assert!(
            matches!(e, BackupError::NotEmpty { keys: 101 }),
            "{name}: {e:?}"
        );
        restore(dst.as_ref(), &snap, true).await.expect("forced");
        assert!(dst.get(RESTORE_MARKER).await.expect("get").is_none());
        assert_eq!(
            durable_keys(dst.as_ref()).await.expect("list"),
            durable_keys(src.as_ref()).await.expect("list"),
            "{name}"
        );
        crate::schema::check_or_init(dst.as_ref())
            .await
            .expect("starts");
    }
}

#[tokio::test]
async fn another_schema_version_is_refused() {
    let dst = MemStore::new();
    let newer = Snapshot {
        schema_version: 2,
        ..empty_snapshot()
    };
    let e = restore(&dst, &newer, true).await.expect_err("refused");
    assert!(
        matches!(
            e,
            BackupError::Schema {
                found: 2,
                supported: 1
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("version 2") && msg.contains("version 1"),
        "{msg}"
    );

    let lying = Snapshot {
        keys: vec![Entry {
            key: SCHEMA_KEY.into(),
            value: br#"{"version":999}"#.to_vec(),
        }],
        ..empty_snapshot()
    };
    let e = restore(&dst, &lying, true).await.expect_err("refused");
    assert!(matches!(e, BackupError::Schema { found: 999, .. }), "{e:?}");
    assert_eq!(dst.revision().await.expect("rev"), 0, "nothing written");

    // A store of another version is backed up as it is, and then refused by restore.
    let src = MemStore::new();
    put(&src, SCHEMA_KEY, br#"{"version":3}"#).await;
    let snap = backup(&src).await.expect("backup");
    assert_eq!(snap.schema_version, 3);
    assert!(matches!(
        restore(&dst, &snap, false).await,
        Err(BackupError::Schema { found: 3, .. })
    ));
}

#[tokio::test]
async fn malformed_snapshots_are_refused() {
    let dst = MemStore::new();
    for keys in [
        vec![("/meseta/a", "x"), ("/meseta/a", "y")],
        vec![(RESTORE_MARKER, "{}")],
        vec![("", "x")],
    ] {
        let snap = Snapshot {
            keys: keys
                .iter()
                .map(|(k, v)| Entry {
                    key: k.to_string(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
            ..empty_snapshot()
        };
        let e = restore(&dst, &snap, false).await.expect_err("refused");
        assert!(matches!(e, BackupError::Format(_)), "{keys:?}: {e:?}");
    }
    assert_eq!(dst.revision().await.expect("rev"), 0, "nothing written");

    let e = Snapshot::from_json(br#"{"format":"other"}"#).expect_err("not a backup");
    assert!(matches!(e, BackupError::Format(_)), "{e:?}");
    let mut doc = serde_json::to_value(empty_snapshot()).expect("json");
    doc["format_version"] = 2.into();
    let e = Snapshot::from_json(doc.to_string().as_bytes()).expect_err("newer format");
    assert!(e.to_string().contains("format version 2"), "{e}");
    doc["format_version"] = 1.into();
    doc["keys"] = serde_json::json!([{"key": "/meseta/a", "value": "not base64!"}]);
    let e = Snapshot::from_json(doc.to_string().as_bytes()).expect_err("bad base64");
    assert!(matches!(e, BackupError::Format(_)), "{e:?}");
}

#[tokio::test]
async fn a_concurrent_restore_is_detected_by_the_marker() {
    // A store that is empty when listed, but another restore puts the marker right after.
    struct Racing(MemStore);
    #[async_trait::async_trait]
    impl Store for Racing {
        async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
            self.0.get(key).await
        }
        async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
            self.0.put(key, value).await
        }
        async fn delete(&self, key: &str) -> Result<bool, StoreError> {
            self.0.delete(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
            let kvs = self.0.list(prefix).await;
            self.0.put(RESTORE_MARKER, b"{}".to_vec()).await?;
            kvs
        }
        async fn txn(
            &self,
            compares: Vec<Compare>,
            success: Vec<Op>,
            failure: Vec<Op>,
        ) -> Result<TxnResponse, StoreError> {
            self.0.txn(compares, success, failure).await
        }
        async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
            self.0.watch(prefix, from).await
        }
        async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
            self.0.grant_lease(ttl).await
        }
        async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
            self.0.keep_alive(lease).await
        }
        async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
            self.0.revoke(lease).await
        }
        async fn revision(&self) -> Result<Revision, StoreError> {
            self.0.revision().await
        }
    }
    let s = Racing(MemStore::new());
    let e = restore(&s, &empty_snapshot(), false)
        .await
        .expect_err("raced");
    assert!(matches!(e, BackupError::Concurrent), "{e:?}");
}

#[tokio::test]
async fn list_with_revision_reads_keys_and_revision_together() {
    for (name, s, _d) in backends() {
        put(s.as_ref(), "/meseta/a", b"1").await;
        put(s.as_ref(), "/meseta/b", b"2").await;
        s.delete("/meseta/a").await.expect("delete");
        let (rev, kvs) = s.list_with_revision("/meseta/").await.expect("list");
        assert_eq!(rev, 3, "{name}");
        assert_eq!(kvs.len(), 1, "{name}");
        // The default implementation (other backends) agrees.
        let plain = Recording::new(s.clone(), None);
        let (rev2, kvs2) = plain.list_with_revision("/meseta/").await.expect("list");
        assert_eq!((rev2, kvs2), (rev, kvs), "{name}");
    }
}
