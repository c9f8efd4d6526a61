//! The conformance suite every [`Store`] backend must pass: etcd semantics for revisions and
//! versions, prefix listing, transactions, compare-and-swap, watches and leases.
//! Backends call [`run_all`] from their tests; it panics on the first violation. Each check
//! works under its own `conformance/<check>/` prefix, which it clears first, so the suite may
//! also run against a shared (e.g. etcd) store. Needs a tokio runtime with the time driver.

use std::time::Duration;

use crate::{
    get_json, put_json, Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError, WatchEvent,
    WatchStream,
};

/// Longest wait for an expected watch event or lease expiry; generous for loaded machines.
const PATIENCE: Duration = Duration::from_secs(10);

/// Runs every check against `store`; panics (via `assert!`) on the first violation.
pub async fn run_all(store: &dyn Store) {
    basic_get_put_delete(store).await;
    list_by_prefix(store).await;
    txn_branches(store).await;
    create_if_absent(store).await;
    compare_mod_revision(store).await;
    concurrent_writes(store).await;
    invalid_inputs(store).await;
    json_helpers(store).await;
    watch_past_and_future(store).await;
    watch_prefix_isolation(store).await;
    lease_revoke(store).await;
    lease_keep_alive_and_expiry(store).await;
}

async fn clear(store: &dyn Store, prefix: &str) {
    let op = Op::DeletePrefix {
        prefix: prefix.to_string(),
    };
    store
        .txn(vec![], vec![op], vec![])
        .await
        .expect("clear prefix");
}

fn put_op(key: &str, value: &[u8]) -> Op {
    Op::Put {
        key: key.to_string(),
        value: value.to_vec(),
        lease: None,
    }
}

async fn must_get(store: &dyn Store, key: &str) -> KeyValue {
    let kv = store.get(key).await.expect("get");
    kv.unwrap_or_else(|| panic!("key {key:?} should exist"))
}

async fn next_event(w: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(PATIENCE, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended unexpectedly"),
        Err(_) => panic!("no watch event within {PATIENCE:?}"),
    }
}

async fn assert_no_event(w: &mut WatchStream) {
    let got = tokio::time::timeout(Duration::from_millis(200), w.next()).await;
    assert!(got.is_err(), "unexpected watch item: {got:?}");
}

async fn basic_get_put_delete(store: &dyn Store) {
    let p = "conformance/basic/";
    clear(store, p).await;
    let k = "conformance/basic/k";
    assert_eq!(store.get(k).await.expect("get"), None);
    let before = store.revision().await.expect("revision");
    let r1 = store.put(k, b"one".to_vec()).await.expect("put");
    assert!(r1 > before, "put must bump the revision");
    assert_eq!(store.revision().await.expect("revision"), r1);
    let kv = must_get(store, k).await;
    assert_eq!(kv.value, b"one");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r1, 1)
    );
    assert_eq!(kv.lease, None);

    let r2 = store.put(k, b"two".to_vec()).await.expect("put");
    assert!(r2 > r1);
    let kv = must_get(store, k).await;
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );
    assert_eq!(kv.value, b"two");

    assert!(store.delete(k).await.expect("delete"));
    assert_eq!(store.get(k).await.expect("get"), None);
    let after_delete = store.revision().await.expect("revision");
    assert!(after_delete > r2, "delete must bump the revision");
    assert!(!store.delete(k).await.expect("delete absent"));
    assert_eq!(
        store.revision().await.expect("revision"),
        after_delete,
        "deleting an absent key must not bump the revision"
    );

    let r3 = store.put(k, b"again".to_vec()).await.expect("put");
    let kv = must_get(store, k).await;
    assert_eq!((kv.create_revision, kv.version), (r3, 1), "recreate resets");
}

async fn list_by_prefix(store: &dyn Store) {
    let p = "conformance/list/";
    clear(store, p).await;
    for key in ["a/2", "ab", "a/1", "b/1", "a/3"] {
        let full = format!("{p}{key}");
        store
            .put(&full, key.as_bytes().to_vec())
            .await
            .expect("put");
    }
    let keys = |kvs: Vec<KeyValue>| kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>();
    let under_a = keys(store.list(&format!("{p}a/")).await.expect("list"));
    let want: Vec<String> = ["a/1", "a/2", "a/3"]
        .iter()
        .map(|k| format!("{p}{k}"))
        .collect();
    assert_eq!(
        under_a, want,
        "list must be sorted and exclude the sibling `ab`"
    );
    let under_a_any = keys(store.list(&format!("{p}a")).await.expect("list"));
    assert_eq!(under_a_any.len(), 4, "prefix `a` includes `ab`");
    assert!(store
        .list(&format!("{p}zzz"))
        .await
        .expect("list")
        .is_empty());
    let all = store.list(p).await.expect("list");
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].key < w[1].key), "sorted by key");
    let kv = all
        .iter()
        .find(|kv| kv.key == format!("{p}ab"))
        .expect("ab listed");
    assert_eq!(kv.value, b"ab");
}

async fn txn_branches(store: &dyn Store) {
    let p = "conformance/txn/";
    clear(store, p).await;
    let (flag, x, y) = (
        "conformance/txn/flag",
        "conformance/txn/x",
        "conformance/txn/y",
    );
    store.put(flag, b"on".to_vec()).await.expect("put");
    let before = store.revision().await.expect("revision");
    let is_on = || Compare::Value {
        key: flag.to_string(),
        value: b"on".to_vec(),
    };
    let resp = store
        .txn(
            vec![is_on()],
            vec![put_op(x, b"s"), put_op(y, b"s")],
            vec![put_op(x, b"f")],
        )
        .await
        .expect("txn");
    assert!(resp.succeeded);
    assert_eq!(resp.revision, before + 1, "one revision per transaction");
    let (kx, ky) = (must_get(store, x).await, must_get(store, y).await);
    assert_eq!(
        (kx.value.as_slice(), ky.value.as_slice()),
        (&b"s"[..], &b"s"[..])
    );
    assert_eq!(
        kx.mod_revision, ky.mod_revision,
        "ops share the txn revision"
    );

    store.put(flag, b"off".to_vec()).await.expect("put");
    let resp = store
        .txn(
            vec![is_on()],
            vec![put_op(x, b"s2")],
            vec![put_op(x, b"f"), Op::Delete { key: y.to_string() }],
        )
        .await
        .expect("txn");
    assert!(!resp.succeeded, "compare on a changed value must fail");
    assert_eq!(must_get(store, x).await.value, b"f", "failure branch ran");
    assert_eq!(
        store.get(y).await.expect("get"),
        None,
        "failure branch deleted"
    );
    assert_eq!(resp.revision, store.revision().await.expect("revision"));

    let now = store.revision().await.expect("revision");
    let resp = store.txn(vec![is_on()], vec![], vec![]).await.expect("txn");
    assert_eq!(
        resp,
        crate::TxnResponse {
            succeeded: false,
            revision: now
        }
    );

    let missing = Compare::Value {
        key: "conformance/txn/missing".to_string(),
        value: vec![],
    };
    let resp = store.txn(vec![missing], vec![], vec![]).await.expect("txn");
    assert!(!resp.succeeded, "value compare on an absent key fails");

    let wipe = Op::DeletePrefix {
        prefix: p.to_string(),
    };
    store.txn(vec![], vec![wipe], vec![]).await.expect("txn");
    assert!(store.list(p).await.expect("list").is_empty());
}

async fn create_if_absent(store: &dyn Store) {
    let p = "conformance/cas/";
    clear(store, p).await;
    let k = "conformance/cas/leader";
    let absent = || Compare::Version {
        key: k.to_string(),
        version: 0,
    };
    let first = store
        .txn(vec![absent()], vec![put_op(k, b"me")], vec![])
        .await
        .expect("txn");
    assert!(first.succeeded, "create-if-absent on a new key succeeds");
    let second = store
        .txn(vec![absent()], vec![put_op(k, b"you")], vec![])
        .await
        .expect("txn");
    assert!(
        !second.succeeded,
        "create-if-absent on an existing key fails"
    );
    assert_eq!(must_get(store, k).await.value, b"me");
    let v1 = Compare::Version {
        key: k.to_string(),
        version: 1,
    };
    let third = store
        .txn(vec![v1], vec![put_op(k, b"next")], vec![])
        .await
        .expect("txn");
    assert!(third.succeeded, "version compare matches");
    assert_eq!(must_get(store, k).await.version, 2);
}

async fn compare_mod_revision(store: &dyn Store) {
    let p = "conformance/modrev/";
    clear(store, p).await;
    let k = "conformance/modrev/k";
    let r = store.put(k, b"1".to_vec()).await.expect("put");
    let at = |revision: Revision| Compare::ModRevision {
        key: k.to_string(),
        revision,
    };
    store
        .put(k, b"2".to_vec())
        .await
        .expect("concurrent writer");
    let stale = store
        .txn(vec![at(r)], vec![put_op(k, b"stale")], vec![])
        .await
        .expect("txn");
    assert!(!stale.succeeded, "stale mod revision must not win");
    let current = must_get(store, k).await.mod_revision;
    let fresh = store
        .txn(vec![at(current)], vec![put_op(k, b"3")], vec![])
        .await
        .expect("txn");
    assert!(fresh.succeeded);
    let absent = Compare::ModRevision {
        key: "conformance/modrev/none".to_string(),
        revision: 0,
    };
    let resp = store.txn(vec![absent], vec![], vec![]).await.expect("txn");
    assert!(resp.succeeded, "mod revision 0 means absent");
}

async fn concurrent_writes(store: &dyn Store) {
    let p = "conformance/concurrent/";
    clear(store, p).await;
    let keys: Vec<String> = (0..4).map(|i| format!("{p}k{i}")).collect();
    let (r0, r1, r2, r3) = tokio::join!(
        store.put(&keys[0], b"0".to_vec()),
        store.put(&keys[1], b"1".to_vec()),
        store.put(&keys[2], b"2".to_vec()),
        store.put(&keys[3], b"3".to_vec()),
    );
    let mut revs = vec![
        r0.expect("put"),
        r1.expect("put"),
        r2.expect("put"),
        r3.expect("put"),
    ];
    for (key, rev) in keys.iter().zip(&revs) {
        assert_eq!(must_get(store, key).await.mod_revision, *rev);
    }
    revs.sort();
    revs.dedup();
    assert_eq!(revs.len(), 4, "concurrent puts get distinct revisions");

    let k = format!("{p}lock");
    let claim = |who: &'static str| {
        let cas = Compare::Version {
            key: k.clone(),
            version: 0,
        };
        store.txn(vec![cas], vec![put_op(&k, who.as_bytes())], vec![])
    };
    let (a, b) = tokio::join!(claim("a"), claim("b"));
    let (a, b) = (a.expect("txn"), b.expect("txn"));
    assert!(a.succeeded != b.succeeded, "exactly one racing create wins");
    let winner: &[u8] = if a.succeeded { b"a" } else { b"b" };
    assert_eq!(must_get(store, &k).await.value, winner);
}

async fn invalid_inputs(store: &dyn Store) {
    let p = "conformance/invalid/";
    clear(store, p).await;
    let k = "conformance/invalid/k";
    // Another key: etcd refuses a transaction that writes one key twice.
    let ghost = Op::Put {
        key: "conformance/invalid/ghost".to_string(),
        value: vec![],
        lease: Some(LeaseId(i64::MAX - 7)),
    };
    let before = store.revision().await.expect("revision");
    let err = store
        .txn(vec![], vec![put_op(k, b"x"), ghost], vec![])
        .await
        .err();
    assert!(
        matches!(err, Some(StoreError::LeaseNotFound(_))),
        "put with an unknown lease: {err:?}"
    );
    assert_eq!(
        store.list(p).await.expect("list"),
        vec![],
        "rejected txn is atomic"
    );
    assert_eq!(store.revision().await.expect("revision"), before);
    let err = store.put("", b"x".to_vec()).await.err();
    assert!(matches!(err, Some(StoreError::InvalidKey(_))), "{err:?}");
}

async fn json_helpers(store: &dyn Store) {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Agent {
        id: String,
        cpus: f64,
    }
    let p = "conformance/json/";
    clear(store, p).await;
    let k = "conformance/json/agent";
    let a = Agent {
        id: "a1".into(),
        cpus: 2.5,
    };
    put_json(store, k, &a).await.expect("put_json");
    let back: Option<Agent> = get_json(store, k).await.expect("get_json");
    assert_eq!(back, Some(a));
    let none: Option<Agent> = get_json(store, "conformance/json/none").await.expect("get");
    assert_eq!(none, None);
    store.put(k, b"not json".to_vec()).await.expect("put");
    let err = get_json::<Agent>(store, k).await.err();
    assert!(matches!(err, Some(StoreError::Encode(_))), "{err:?}");
}

async fn watch_past_and_future(store: &dyn Store) {
    let p = "conformance/watch/";
    clear(store, p).await;
    let (a, b) = ("conformance/watch/a", "conformance/watch/b");
    let r1 = store.put(a, b"1".to_vec()).await.expect("put");
    let r2 = store.put(b, b"2".to_vec()).await.expect("put");
    store.delete(a).await.expect("delete");
    let r3 = store.revision().await.expect("revision");

    let mut past = store.watch(p, r2).await.expect("watch from the past");
    let mut future = store.watch(p, 0).await.expect("watch future");
    let ev = next_event(&mut past).await;
    match &ev {
        WatchEvent::Put(kv) => {
            assert_eq!((kv.key.as_str(), kv.value.as_slice()), (b, &b"2"[..]));
            assert_eq!(kv.mod_revision, r2);
        }
        other => panic!("expected put of b, got {other:?}"),
    }
    let want_delete = WatchEvent::Delete {
        key: a.to_string(),
        revision: r3,
    };
    assert_eq!(next_event(&mut past).await, want_delete);
    assert!(r1 < r2, "events before from_revision are not replayed");

    let r4 = store.put(a, b"4".to_vec()).await.expect("put");
    for w in [&mut past, &mut future] {
        let ev = next_event(w).await;
        assert_eq!(ev.revision(), r4, "live event after replay, in order");
        assert_eq!(ev.key(), a);
    }
    assert_no_event(&mut future).await;
}

async fn watch_prefix_isolation(store: &dyn Store) {
    let p = "conformance/wprefix/";
    clear(store, p).await;
    let mut w = store
        .watch("conformance/wprefix/a/", 0)
        .await
        .expect("watch");
    store
        .put("conformance/wprefix/ab", b"x".to_vec())
        .await
        .expect("put");
    let r = store
        .put("conformance/wprefix/a/1", b"y".to_vec())
        .await
        .expect("put");
    let ev = next_event(&mut w).await;
    assert_eq!(
        (ev.key(), ev.revision()),
        ("conformance/wprefix/a/1", r),
        "sibling `ab` must not reach a watch on `a/`"
    );
}

async fn put_leased(store: &dyn Store, key: &str, lease: LeaseId) {
    let op = Op::Put {
        key: key.to_string(),
        value: b"leased".to_vec(),
        lease: Some(lease),
    };
    store
        .txn(vec![], vec![op], vec![])
        .await
        .expect("leased put");
}

async fn lease_revoke(store: &dyn Store) {
    let p = "conformance/lrevoke/";
    clear(store, p).await;
    let id = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant");
    let (k1, k2, k3) = (
        "conformance/lrevoke/1",
        "conformance/lrevoke/2",
        "conformance/lrevoke/3",
    );
    put_leased(store, k1, id).await;
    put_leased(store, k2, id).await;
    put_leased(store, k3, id).await;
    assert_eq!(must_get(store, k1).await.lease, Some(id));
    store.put(k3, b"detached".to_vec()).await.expect("put");
    assert_eq!(must_get(store, k3).await.lease, None, "plain put detaches");
    store.keep_alive(id).await.expect("keep alive");
    let mut w = store.watch(p, 0).await.expect("watch");
    store.revoke(id).await.expect("revoke");
    assert_eq!(store.get(k1).await.expect("get"), None);
    assert_eq!(store.get(k2).await.expect("get"), None);
    assert!(
        store.get(k3).await.expect("get").is_some(),
        "detached key kept"
    );
    let (e1, e2) = (next_event(&mut w).await, next_event(&mut w).await);
    assert!(matches!(e1, WatchEvent::Delete { .. }) && matches!(e2, WatchEvent::Delete { .. }));
    assert_eq!(
        e1.revision(),
        e2.revision(),
        "revoke deletes in one revision"
    );
    let err = store.keep_alive(id).await.err();
    assert!(matches!(err, Some(StoreError::LeaseNotFound(_))), "{err:?}");
    let err = store.revoke(id).await.err();
    assert!(matches!(err, Some(StoreError::LeaseNotFound(_))), "{err:?}");
}

async fn lease_keep_alive_and_expiry(store: &dyn Store) {
    let p = "conformance/lexpire/";
    clear(store, p).await;
    let ttl = Duration::from_secs(2);
    let kept = store.grant_lease(ttl).await.expect("grant");
    let dying = store.grant_lease(ttl).await.expect("grant");
    let (kk, kd) = ("conformance/lexpire/kept", "conformance/lexpire/dying");
    put_leased(store, kk, kept).await;
    let mut w = store.watch(p, 0).await.expect("watch");
    put_leased(store, kd, dying).await;
    assert!(matches!(next_event(&mut w).await, WatchEvent::Put(_)));

    // Renew `kept` well inside its ttl until `dying` has expired.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut expired = None;
    while expired.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease never expired"
        );
        store.keep_alive(kept).await.expect("keep alive");
        if let Ok(item) = tokio::time::timeout(ttl / 6, w.next()).await {
            expired = Some(item.expect("watch open").expect("watch ok"));
        }
    }
    match expired {
        Some(WatchEvent::Delete { key, .. }) => assert_eq!(key, kd),
        other => panic!("expected delete of the expired key, got {other:?}"),
    }
    assert_eq!(store.get(kd).await.expect("get"), None);
    assert!(
        store.get(kk).await.expect("get").is_some(),
        "renewed lease kept"
    );
    let err = store.keep_alive(dying).await.err();
    assert!(matches!(err, Some(StoreError::LeaseNotFound(_))), "{err:?}");
    store.revoke(kept).await.expect("revoke");
}
