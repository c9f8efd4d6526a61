//! The etcd backend against real etcd: the conformance suite on a single member (plain and
//! namespaced) and on a three-member cluster; failover when a member is killed; a watch that
//! resumes across a member kill without losing or repeating events; compaction; and etcd's
//! request limits surfacing as `StoreError::TooLarge`.
//!
//! Needs `etcd` (Debian's `etcd-server`); without it the tests skip with a printed reason, or
//! fail when `CI=true`. The tests run one at a time: several clusters at once on a small
//! machine make elections (and so the suite's timings) flaky.

#[allow(dead_code)]
#[path = "../../testkit/src/etcd.rs"]
mod etcd_launcher;

use std::future::Future;
use std::time::Duration;

use etcd_launcher::{etcd_or_skip, EtcdCluster, EtcdServer};
use meseta_store::etcd::EtcdStore;
use meseta_store::{conformance, Compare, Op, Store, StoreError, WatchEvent, MAX_TXN_OPS};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Longest a test retries a call the store reports as retryable (an election after a kill).
const RETRY_FOR: Duration = Duration::from_secs(30);

/// Runs `f` until it succeeds or fails with a non-retryable error, for at most [`RETRY_FOR`].
async fn retrying<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                eprintln!("{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// Creates `key` if absent: a retry after an ambiguous failure cannot write it twice.
async fn create(store: &EtcdStore, key: &str, value: &str) {
    let (k, v) = (key.to_string(), value.as_bytes().to_vec());
    retrying(key, || {
        let absent = Compare::Version {
            key: k.clone(),
            version: 0,
        };
        let put = Op::Put {
            key: k.clone(),
            value: v.clone(),
            lease: None,
        };
        store.txn(vec![absent], vec![put], vec![])
    })
    .await;
}

async fn next_event(w: &mut meseta_store::WatchStream) -> WatchEvent {
    match tokio::time::timeout(RETRY_FOR, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_single_member_plain_and_namespaced() {
    if !etcd_or_skip("conformance_on_a_single_member_plain_and_namespaced") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let etcd = EtcdServer::start().expect("start etcd");
    let store = EtcdStore::from_url(&etcd.url()).await.expect("connect");
    conformance::run_all(&store).await;

    let spaced = EtcdStore::from_url(&format!("{}/tenant-a", etcd.url()))
        .await
        .expect("connect with a namespace");
    conformance::run_all(&spaced).await;
    let seen_raw = store.list("/tenant-a/conformance/").await.expect("list");
    assert!(
        !seen_raw.is_empty(),
        "namespaced keys live under /tenant-a/"
    );
    let seen = spaced.list("conformance/").await.expect("list");
    assert_eq!(seen.len(), seen_raw.len(), "the namespace is stripped");
    assert!(seen.iter().all(|kv| kv.key.starts_with("conformance/")));

    let plain = EtcdStore::connect(vec![etcd.endpoint()])
        .await
        .expect("connect by endpoint");
    assert_eq!(
        plain.revision().await.expect("revision"),
        store.revision().await.expect("revision")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_three_member_cluster() {
    if !etcd_or_skip("conformance_on_a_three_member_cluster") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let cluster = EtcdCluster::start(3).expect("start cluster");
    let store = EtcdStore::from_url(&cluster.url()).await.expect("connect");
    assert_eq!(store.endpoints(), cluster.members());
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_fails_over_when_its_member_is_killed() {
    if !etcd_or_skip("store_fails_over_when_its_member_is_killed") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut cluster = EtcdCluster::start(3).expect("start cluster");
    let store = EtcdStore::from_url(&cluster.url()).await.expect("connect");
    create(&store, "failover/before", "1").await;
    let used = cluster
        .members()
        .iter()
        .position(|m| m == store.current_endpoint())
        .expect("current endpoint is a member");

    cluster.kill(used);
    create(&store, "failover/after", "2").await;
    assert_ne!(
        store.current_endpoint(),
        cluster.members()[used],
        "moved on"
    );
    let got = retrying("list", || store.list("failover/")).await;
    let keys: Vec<&str> = got.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["failover/after", "failover/before"]);

    // A store whose first endpoint is dead connects through the others.
    let dead_first = {
        let mut m = cluster.members();
        m.rotate_left(used);
        m
    };
    let other = EtcdStore::connect(dead_first)
        .await
        .expect("connect past a dead member");
    let kv = retrying("get", || other.get("failover/after")).await;
    assert_eq!(kv.expect("key").value, b"2");

    cluster.restart(used).expect("restart");
    create(&store, "failover/restarted", "3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_across_a_member_kill_without_gaps_or_repeats() {
    if !etcd_or_skip("watch_resumes_across_a_member_kill_without_gaps_or_repeats") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut cluster = EtcdCluster::start(3).expect("start cluster");
    let store = EtcdStore::from_url(&cluster.url()).await.expect("connect");
    let mut w = store.watch("resume/", 0).await.expect("watch");
    create(&store, "resume/0", "0").await;
    assert_eq!(next_event(&mut w).await.key(), "resume/0");
    let watched = cluster
        .members()
        .iter()
        .position(|m| m == store.current_endpoint())
        .expect("current endpoint is a member");

    cluster.kill(watched);
    let keys: Vec<String> = (1..=5).map(|i| format!("resume/{i}")).collect();
    for k in &keys {
        create(&store, k, "x").await;
    }
    let mut last = 0;
    for k in &keys {
        let ev = next_event(&mut w).await;
        assert_eq!(ev.key(), k, "every write once, in order");
        assert!(ev.revision() > last, "revisions increase");
        last = ev.revision();
    }
    let extra = tokio::time::timeout(Duration::from_millis(500), w.next()).await;
    assert!(extra.is_err(), "no repeated event: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_revision_fails_with_compacted() {
    if !etcd_or_skip("watch_from_a_compacted_revision_fails_with_compacted") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let etcd = EtcdServer::start().expect("start etcd");
    let store = EtcdStore::from_url(&etcd.url()).await.expect("connect");
    let old = store.put("compact/k", b"1".to_vec()).await.expect("put");
    let now = store.put("compact/k", b"2".to_vec()).await.expect("put");
    let body = format!(r#"{{"revision":"{now}"}}"#);
    let compacted = reqwest::Client::new()
        .post(format!("{}/v3/kv/compaction", etcd.endpoint()))
        .body(body)
        .send()
        .await
        .expect("compaction call");
    assert!(compacted.status().is_success(), "{compacted:?}");
    match store.watch("compact/", old).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (old, now));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let mut w = store
        .watch("compact/", now)
        .await
        .expect("watch from the compact revision");
    assert_eq!(next_event(&mut w).await.revision(), now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_request_limits_are_typed_too_large_errors() {
    if !etcd_or_skip("etcd_request_limits_are_typed_too_large_errors") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let etcd = EtcdServer::start().expect("start etcd");
    let store = EtcdStore::from_url(&etcd.url()).await.expect("connect");
    let puts = |n: usize| -> Vec<Op> {
        (0..n)
            .map(|i| Op::Put {
                key: format!("limits/{i}"),
                value: b"v".to_vec(),
                lease: None,
            })
            .collect()
    };
    let before = store.revision().await.expect("revision");
    let err = store.txn(vec![], puts(129), vec![]).await.err();
    assert!(matches!(err, Some(StoreError::TooLarge(_))), "{err:?}");
    assert!(!err.is_some_and(|e| e.is_retryable()));
    assert_eq!(
        store.revision().await.expect("revision"),
        before,
        "nothing written"
    );

    let ok = store
        .txn(vec![], puts(MAX_TXN_OPS), vec![])
        .await
        .expect("txn");
    assert!(ok.succeeded);
    assert_eq!(
        store.list("limits/").await.expect("list").len(),
        MAX_TXN_OPS
    );

    let huge = vec![b'x'; 1600 * 1024];
    let err = store.put("limits/huge", huge).await.err();
    assert!(matches!(err, Some(StoreError::TooLarge(_))), "{err:?}");
}
