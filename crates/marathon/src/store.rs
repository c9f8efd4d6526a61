//! What the services framework persists: each app (definition, versions, backoff, canary)
//! under `/meseta/services/apps<app id>`, each instance under
//! `/meseta/services/instances<app id>/<instance id>`, each running deployment under
//! `/meseta/services/deployments/<id>`, each pod (definition, versions, instances and
//! deployment in one record) under `/meseta/services/pods<pod id>`, and the framework id (written by the kit under
//! [`FRAMEWORK_ID`]). Instances are separate records
//! because they change with every launch and task end while apps rarely do. Not every change
//! of an instance is written: a waiting instance has no record until it is placed (its
//! deployment creates it again after a restart), and a task's start (staging, starting,
//! running) is left to reconciliation (see the services engine's `new_instance` and `on_status`).

use meseta_services::engine::{AppState, Deployment, Engine, Instance, Outputs, PodState};
use meseta_store::{Op, Store, StoreError, MAX_TXN_BYTES, MAX_TXN_OPS};

const APPS: &str = "/meseta/services/apps";
const INSTANCES: &str = "/meseta/services/instances";
const DEPLOYMENTS: &str = "/meseta/services/deployments/";
/// One record per pod: definition, versions, instances and running deployment.
const PODS: &str = "/meseta/services/pods";
/// Where the framework id is kept (so a restarted master re-subscribes the same framework).
pub(crate) const FRAMEWORK_ID: &str = "/meseta/services-scheduler/framework_id";

/// Everything persisted: apps, (app id, instance), deployments, pods.
pub(crate) type Loaded = (
    Vec<AppState>,
    Vec<(String, Instance)>,
    Vec<Deployment>,
    Vec<PodState>,
);

/// Load every record; unreadable ones are skipped with a warning.
pub(crate) async fn load(store: &dyn Store) -> Result<Loaded, StoreError> {
    let mut apps = Vec::new();
    for kv in store.list(&format!("{APPS}/")).await? {
        match serde_json::from_slice::<AppState>(&kv.value) {
            Ok(a) => apps.push(a),
            Err(e) => tracing::warn!(key = %kv.key, error = %e, "skipping unreadable app record"),
        }
    }
    let mut instances = Vec::new();
    for kv in store.list(&format!("{INSTANCES}/")).await? {
        let key = kv.key.as_str();
        let app = key
            .strip_prefix(INSTANCES)
            .and_then(|rest| rest.rsplit_once('/'))
            .map(|(app, _)| app.to_owned());
        match (app, serde_json::from_slice::<Instance>(&kv.value)) {
            (Some(app), Ok(i)) => instances.push((app, i)),
            (_, Err(e)) => tracing::warn!(key, error = %e, "skipping unreadable instance record"),
            (None, _) => tracing::warn!(key, "skipping instance record with a bad key"),
        }
    }
    let mut deployments = Vec::new();
    for kv in store.list(DEPLOYMENTS).await? {
        match serde_json::from_slice::<Deployment>(&kv.value) {
            Ok(d) => deployments.push(d),
            Err(e) => tracing::warn!(key = %kv.key, error = %e, "skipping unreadable deployment"),
        }
    }
    let mut pods = Vec::new();
    for kv in store.list(&format!("{PODS}/")).await? {
        match serde_json::from_slice::<PodState>(&kv.value) {
            Ok(p) => pods.push(p),
            Err(e) => tracing::warn!(key = %kv.key, error = %e, "skipping unreadable pod record"),
        }
    }
    Ok((apps, instances, deployments, pods))
}

/// The writes `out` marks as changed, serialized now with the current values from `engine`
/// (so that [`write_ops`] needs nothing of the engine and runs while the scheduler goes on):
/// instance records first, then deletions, apps and deployments. They are written in
/// transactions of at most [`MAX_TXN_OPS`] writes and [`MAX_TXN_BYTES`] (what etcd accepts).
/// Splitting is safe because every record stands alone (an instance's record is the whole
/// instance) and no write needs a compare: a crash between two transactions leaves records
/// that are each either old or new; the engine recomputes deployment progress from the
/// instances.
pub(crate) fn encode(engine: &Engine, out: &Outputs) -> Result<Vec<Op>, StoreError> {
    let enc = |e: serde_json::Error| StoreError::Encode(e.to_string());
    let put = |key: String, value: Vec<u8>| Op::Put {
        key,
        value,
        lease: None,
    };
    let mut ops = Vec::new();
    for (app, inst) in &out.instances {
        if let Some(i) = engine.instance(app, inst) {
            ops.push(put(
                instance_key(app, inst),
                serde_json::to_vec(i).map_err(enc)?,
            ));
        }
    }
    for app in &out.forget_apps {
        ops.push(Op::Delete { key: app_key(app) });
    }
    for (app, inst) in &out.forget_instances {
        ops.push(Op::Delete {
            key: instance_key(app, inst),
        });
    }
    for d in &out.forget_deployments {
        ops.push(Op::Delete {
            key: format!("{DEPLOYMENTS}{d}"),
        });
    }
    for app in &out.apps {
        if let Some(a) = engine.app_record(app) {
            ops.push(put(app_key(app), serde_json::to_vec(a).map_err(enc)?));
        }
    }
    for pod in &out.forget_pods {
        ops.push(Op::Delete { key: pod_key(pod) });
    }
    for pod in &out.pods {
        if let Some(p) = engine.pod_record(pod) {
            ops.push(put(pod_key(pod), serde_json::to_vec(p).map_err(enc)?));
        }
    }
    for d in &out.deployments {
        if let Some(dep) = engine.deployment(d) {
            let value = serde_json::to_vec(dep).map_err(enc)?;
            ops.push(put(format!("{DEPLOYMENTS}{d}"), value));
        }
    }
    Ok(ops)
}

/// Write `ops` in order, in bounded transactions sent in waves ([`Batch`]).
pub(crate) async fn write_ops(store: &dyn Store, ops: Vec<Op>) -> Result<(), StoreError> {
    let mut batch = Batch::new(store);
    for op in ops {
        batch.push(op).await?;
    }
    batch.flush().await
}

/// Transactions of one write sent to the store together (a wave). etcd commits concurrent
/// proposals in one raft round and one fsync, so a persist of many transactions costs about one
/// round trip per wave instead of one per transaction. A big deployment's commit is 60-80
/// transactions: 64 sends it in one or two waves (8 took nine round trips).
const WAVE: usize = 64;

/// Writes collected into transactions of at most [`MAX_TXN_OPS`] writes and about
/// [`MAX_TXN_BYTES`], sent in waves of up to [`WAVE`] concurrent transactions. A key may appear
/// once per wave (etcd refuses a transaction that touches one key twice, and concurrent
/// transactions have no order): a second write to a key waits for the wave before it, so the
/// order of writes to one key is kept.
struct Batch<'a> {
    store: &'a dyn Store,
    ops: Vec<Op>,
    bytes: usize,
    /// Full transactions of the current wave, not sent yet.
    wave: Vec<Vec<Op>>,
    /// Keys written by the current wave (its full transactions and `ops`).
    keys: std::collections::HashSet<String>,
}

impl<'a> Batch<'a> {
    fn new(store: &'a dyn Store) -> Batch<'a> {
        Batch {
            store,
            ops: Vec::new(),
            bytes: 0,
            wave: Vec::new(),
            keys: std::collections::HashSet::new(),
        }
    }

    #[cfg(test)]
    async fn put(&mut self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        self.push(Op::Put {
            key,
            value,
            lease: None,
        })
        .await
    }

    async fn push(&mut self, op: Op) -> Result<(), StoreError> {
        let (key, size) = match &op {
            Op::Put { key, value, .. } => (key, key.len() + value.len()),
            Op::Delete { key } | Op::DeletePrefix { prefix: key } => (key, key.len()),
        };
        if self.keys.contains(key) {
            self.flush().await?;
        } else if self.bytes + size > MAX_TXN_BYTES {
            self.close_txn().await?;
        }
        self.keys.insert(key.clone());
        self.bytes += size;
        self.ops.push(op);
        if self.ops.len() >= MAX_TXN_OPS {
            self.close_txn().await?;
        }
        Ok(())
    }

    /// The transaction being filled joins the wave; a full wave is sent.
    async fn close_txn(&mut self) -> Result<(), StoreError> {
        if !self.ops.is_empty() {
            self.wave.push(std::mem::take(&mut self.ops));
            self.bytes = 0;
        }
        if self.wave.len() >= WAVE {
            self.send_wave().await?;
        }
        Ok(())
    }

    /// Send everything collected.
    async fn flush(&mut self) -> Result<(), StoreError> {
        if !self.ops.is_empty() {
            self.wave.push(std::mem::take(&mut self.ops));
            self.bytes = 0;
        }
        self.send_wave().await
    }

    async fn send_wave(&mut self) -> Result<(), StoreError> {
        self.keys.clear();
        let store = self.store;
        let txns = std::mem::take(&mut self.wave)
            .into_iter()
            .map(|ops| store.txn(vec![], ops, vec![]));
        for r in futures::future::join_all(txns).await {
            r?;
        }
        Ok(())
    }
}

/// App ids start with `/`.
fn app_key(app: &str) -> String {
    format!("{APPS}{app}")
}

/// Pod ids start with `/`.
fn pod_key(pod: &str) -> String {
    format!("{PODS}{pod}")
}

fn instance_key(app: &str, inst: &str) -> String {
    format!("{INSTANCES}{app}/{inst}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_keys_split_back_into_app_and_instance() {
        let k = instance_key("/prod/web", "prod_web.instance-1");
        let rest = k.strip_prefix(INSTANCES).expect("prefix");
        assert_eq!(
            rest.rsplit_once('/'),
            Some(("/prod/web", "prod_web.instance-1"))
        );
        assert!(!app_key("/a").starts_with(&format!("{INSTANCES}/")));
    }

    #[tokio::test]
    async fn a_pod_record_is_written_read_back_and_deleted_with_its_pod() {
        let store = meseta_store::mem::MemStore::new();
        let mut engine = Engine::new(1);
        let def = meseta_services::pod::pod_from_body(&serde_json::json!({
            "id": "/shop/web", "scaling": {"kind": "fixed", "instances": 2},
            "containers": [{"name": "main", "resources": {"cpus": 0.1, "mem": 16},
                            "exec": {"command": {"shell": "sleep 60"}}}]}))
        .expect("pod");
        engine.put_pod(def, true, false, 1.0).expect("create");
        let out = engine.take_outputs();
        write_ops(&store, encode(&engine, &out).expect("encode"))
            .await
            .expect("save");
        let (_, _, _, pods) = load(&store).await.expect("load");
        assert_eq!(pods.len(), 1);
        assert_eq!(Some(&pods[0]), engine.pod_record("/shop/web"));
        assert_eq!(pods[0].instances.len(), 2, "waiting instances are kept");
        engine.delete_pod("/shop/web", true, 2.0).expect("delete");
        engine.tick(3.0);
        assert!(engine.pod_record("/shop/web").is_none(), "nothing launched");
        let out = engine.take_outputs();
        write_ops(&store, encode(&engine, &out).expect("encode"))
            .await
            .expect("save");
        let (_, _, _, pods) = load(&store).await.expect("load");
        assert!(pods.is_empty());
        assert!(!pod_key("/a").starts_with(&format!("{APPS}/")));
    }

    #[tokio::test]
    async fn big_writes_go_out_in_transactions_of_at_most_max_txn_ops() {
        let store = meseta_store::mem::MemStore::new();
        let start = store.revision().await.expect("revision");
        let ops = (0..250).map(|i| Op::Put {
            key: instance_key("/web", &format!("web.instance-{i}")),
            value: b"{}".to_vec(),
            lease: None,
        });
        write_ops(&store, ops.collect()).await.expect("write");
        let end = store.revision().await.expect("revision");
        assert_eq!(end - start, 3, "250 writes in 100 + 100 + 50");
        let kept = store
            .list(&format!("{INSTANCES}/web/"))
            .await
            .expect("list");
        assert_eq!(kept.len(), 250);
    }

    #[tokio::test]
    async fn big_values_and_repeated_keys_start_a_new_transaction() {
        let store = meseta_store::mem::MemStore::new();
        let start = store.revision().await.expect("revision");
        let mut batch = Batch::new(&store);
        let big = vec![b'x'; MAX_TXN_BYTES / 3];
        for i in 0..3 {
            batch
                .put(app_key(&format!("/a{i}")), big.clone())
                .await
                .expect("put");
        }
        batch.flush().await.expect("flush");
        let mid = store.revision().await.expect("revision");
        assert_eq!(mid - start, 2, "three third-of-the-limit values in 2 + 1");
        batch.put(app_key("/b"), b"1".to_vec()).await.expect("put");
        batch
            .push(Op::Delete { key: app_key("/b") })
            .await
            .expect("delete");
        batch.put(app_key("/b"), b"2".to_vec()).await.expect("put");
        batch.flush().await.expect("flush");
        let end = store.revision().await.expect("revision");
        assert_eq!(end - mid, 3, "each write to /b in its own transaction");
        let kv = store.get(&app_key("/b")).await.expect("get").expect("kept");
        assert_eq!(kv.value, b"2", "order kept");
    }
}
