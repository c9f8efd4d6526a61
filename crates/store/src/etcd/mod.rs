//! `EtcdStore`: the [`Store`] on an etcd 3.4+ cluster, for highly available masters.
//!
//! It speaks etcd's v3 API: unary calls over gRPC (`tonic`, with the few `etcdserverpb`
//! messages it needs derived by hand in the `grpc` module, so no `protoc` at build time), and
//! watches through the JSON gateway (grpc-gateway) that every etcd serves on the same client
//! port, as a line stream over `reqwest`. The gateway was the whole API once; it cost the etcd
//! member serving it about three times the CPU of a write over gRPC.
//!
//! | store call | etcd call |
//! |---|---|
//! | `get`, `list`, `revision` | gRPC `KV/Range` (`range_end` = prefix + 1 for lists; `count_only` for the revision) |
//! | `put` | gRPC `KV/Put` |
//! | `delete` | gRPC `KV/DeleteRange` (`deleted` tells whether the key existed) |
//! | `txn` | gRPC `KV/Txn` (compares `VERSION`/`MOD`/`VALUE` with `EQUAL`; puts and range deletes) |
//! | `grant_lease`, `revoke` | gRPC `Lease/LeaseGrant`, `Lease/LeaseRevoke` |
//! | `keep_alive` | gRPC `Lease/LeaseKeepAlive` (a stream: one request, its first answer) |
//! | `watch` | gateway `POST /v3/watch`, a newline-separated stream of `{"result": WatchResponse}` |
//!
//! Gateway encoding (protobuf's JSON mapping): `int64` fields are JSON strings, `bytes` fields
//! (keys, values) are base64, and fields at their zero value are omitted (an absent `succeeded`
//! is `false`, a PUT event has no `type`). Errors arrive as a gRPC status, or from the gateway as
//! HTTP 4xx/5xx with `{"error","code","message"}`; both map to one [`StoreError`] (see the
//! `client` module).

//! Semantics are etcd's own, which the other backends copy: one revision per writing
//! transaction, `version` counting writes since creation, leases deleting their keys when they
//! expire, linearizable reads. Differences to know about:
//! - an empty etcd is at revision 1, not 0 (callers never assume absolute revisions);
//! - etcd refuses a transaction that touches one key twice (a put and a delete of the same key,
//!   or a put inside a deleted prefix);
//! - lease TTLs are whole seconds: [`Store::grant_lease`] rounds up, and etcd may raise a small
//!   TTL to its minimum (about 2 s with default election settings);
//! - watch history is what etcd has not compacted; a watch from a compacted revision fails
//!   with [`StoreError::Compacted`] (`oldest` is etcd's compact revision).
//!
//! Limits: etcd refuses a transaction with more than 128 operations in one branch
//! (`--max-txn-ops`) and requests over 1.5 MiB (`--max-request-bytes`). Both come back as
//! [`StoreError::TooLarge`]; writers split their work with [`crate::MAX_TXN_OPS`] and
//! [`crate::MAX_TXN_BYTES`].
//!
//! Availability: several endpoints may be given; calls go to one member and move to the next on
//! a connection error, a timeout (5 s per call) or a 5xx (see the `client` module for which calls are
//! retried). Watches survive the loss of their member: they resume on another one from the
//! revision after the last event delivered. A member that hangs without closing its connections
//! is noticed by unary calls (timeout) but a watch on it waits for TCP to give up.
//!
//! Keys: the store's keys are stored as they are, or under a namespace taken from the URL path
//! (`etcd://h:2379/prod` keeps every key under `/prod/`) so that several clusters can share one
//! etcd.

mod client;
mod grpc;
mod url;
mod watch;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use client::{with_lease, Client, Retry};
use grpc::{
    path, revision, CompareWith, DeleteRangeRequest, LeaseAnswer, LeaseGrantRequest, PutRequest,
    RangeRequest, RangeResponse, Request, RequestOp, TxnRequest, WriteResponse,
};
use wire::{WireEvent, WireKv};

use crate::{
    Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError, TxnResponse, WatchEvent,
    WatchStream,
};

/// Maps the store's keys to etcd keys and back (the namespace prefix).
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    namespace: Arc<str>,
}

impl Keys {
    /// The etcd key of `key`.
    fn full(&self, key: &str) -> Vec<u8> {
        [self.namespace.as_bytes(), key.as_bytes()].concat()
    }

    /// The etcd key of `key`, after checking it is acceptable.
    fn checked(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        crate::engine::check_key(key)?;
        Ok(self.full(key))
    }

    /// `[key, range_end)` covering every key that starts with `prefix`.
    fn range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let key = self.full(prefix);
        if key.is_empty() {
            // The whole keyspace: etcd's "\0" .. "\0".
            return (vec![0], vec![0]);
        }
        let end = prefix_end(&key);
        (key, end)
    }

    /// The store key of an etcd key.
    fn strip(&self, raw: Vec<u8>) -> Result<String, StoreError> {
        let rest = raw
            .strip_prefix(self.namespace.as_bytes())
            .ok_or_else(|| StoreError::Backend("etcd sent a key outside the namespace".into()))?;
        String::from_utf8(rest.to_vec())
            .map_err(|e| StoreError::Encode(format!("etcd key is not utf-8: {e}")))
    }

    /// A key-value pair of a gateway answer (watch events).
    fn wire_kv(&self, kv: WireKv) -> Result<KeyValue, StoreError> {
        let key = self.strip(kv.key_bytes()?)?;
        kv.into_kv(key)
    }

    /// A key-value pair of a gRPC answer.
    fn kv(&self, kv: grpc::Kv) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: self.strip(kv.key)?,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: (kv.lease != 0).then_some(LeaseId(kv.lease)),
        })
    }

    /// A watch event as the store reports it.
    pub(crate) fn event(&self, ev: WireEvent) -> Result<WatchEvent, StoreError> {
        if ev.kind == "DELETE" {
            let revision = ev.kv.mod_revision;
            let key = self.strip(ev.kv.key_bytes()?)?;
            Ok(WatchEvent::Delete { key, revision })
        } else {
            Ok(WatchEvent::Put(self.wire_kv(ev.kv)?))
        }
    }
}

/// The smallest key greater than every key starting with `prefix` (`"\0"`: no upper bound).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A [`Store`] on an etcd cluster (see the module docs). Cheap to clone; clones share the
/// connections.
#[derive(Clone)]
pub struct EtcdStore {
    client: Arc<Client>,
    keys: Keys,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.client.endpoints())
            .field("namespace", &self.keys.namespace)
            .finish()
    }
}

impl EtcdStore {
    /// A store on the members at `endpoints` (`http://host:port`, or `host:port`), with no key
    /// namespace. Checks that a member answers.
    pub async fn connect(endpoints: Vec<String>) -> Result<EtcdStore, StoreError> {
        let endpoints = endpoints
            .iter()
            .map(|e| url::parse(e).map(|t| t.endpoints))
            .collect::<Result<Vec<_>, _>>()?
            .concat();
        EtcdStore::open(endpoints, String::new()).await
    }

    /// A store from a URL: `etcd://h1:2379,h2:2379[/namespace]` or `http://h1:2379,...`
    /// (a port-less host gets 2379). Checks that a member answers.
    pub async fn from_url(url: &str) -> Result<EtcdStore, StoreError> {
        let target = url::parse(url)?;
        EtcdStore::open(target.endpoints, target.namespace).await
    }

    async fn open(endpoints: Vec<String>, namespace: String) -> Result<EtcdStore, StoreError> {
        let store = EtcdStore {
            client: Arc::new(Client::new(endpoints)?),
            keys: Keys {
                namespace: namespace.into(),
            },
        };
        store.revision().await?;
        Ok(store)
    }

    /// The member endpoints, in failover order.
    pub fn endpoints(&self) -> &[String] {
        self.client.endpoints()
    }

    /// The endpoint calls currently go to.
    pub fn current_endpoint(&self) -> &str {
        &self.client.endpoints()[self.client.current()]
    }

    fn op(&self, op: Op) -> Result<RequestOp, StoreError> {
        let request = match op {
            Op::Put { key, value, lease } => Request::Put(PutRequest {
                key: self.keys.checked(&key)?,
                value,
                lease: lease.map_or(0, |l| l.0),
            }),
            Op::Delete { key } => Request::Delete(DeleteRangeRequest {
                key: self.keys.checked(&key)?,
                range_end: Vec::new(),
            }),
            Op::DeletePrefix { prefix } => {
                let (key, range_end) = self.keys.range(&prefix);
                Request::Delete(DeleteRangeRequest { key, range_end })
            }
        };
        Ok(RequestOp {
            request: Some(request),
        })
    }

    fn compare(&self, c: Compare) -> Result<grpc::Compare, StoreError> {
        let (target, key, with) = match c {
            Compare::Version { key, version } => {
                (grpc::target::VERSION, key, CompareWith::Version(version))
            }
            Compare::ModRevision { key, revision } => {
                (grpc::target::MOD, key, CompareWith::ModRevision(revision))
            }
            Compare::Value { key, value } => (grpc::target::VALUE, key, CompareWith::Value(value)),
        };
        Ok(grpc::Compare {
            target,
            key: self.keys.checked(&key)?,
            with: Some(with),
        })
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        self.client.unary(path::RANGE, req, Retry::Always).await
    }
}

/// The first lease a transaction's puts use (to name it in `LeaseNotFound`).
fn first_lease(ops: &[Op]) -> i64 {
    ops.iter()
        .find_map(|op| match op {
            Op::Put { lease: Some(l), .. } => Some(l.0),
            _ => None,
        })
        .unwrap_or(0)
}

/// etcd lease TTLs are whole seconds: round up, at least 1.
fn ttl_seconds(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let req = RangeRequest {
            key: self.keys.checked(key)?,
            ..RangeRequest::default()
        };
        let resp = self.range(req).await?;
        resp.kvs
            .into_iter()
            .next()
            .map(|kv| self.keys.kv(kv))
            .transpose()
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let req = PutRequest {
            key: self.keys.checked(key)?,
            value,
            lease: 0,
        };
        let resp: WriteResponse = self.client.unary(path::PUT, req, Retry::IfNotSent).await?;
        Ok(revision(&resp.header))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let req = DeleteRangeRequest {
            key: self.keys.checked(key)?,
            range_end: Vec::new(),
        };
        let resp: WriteResponse = self
            .client
            .unary(path::DELETE_RANGE, req, Retry::IfNotSent)
            .await?;
        Ok(resp.deleted > 0)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        Ok(self.list_with_revision(prefix).await?.1)
    }

    /// One range request: etcd answers it at one revision, which its header names.
    async fn list_with_revision(
        &self,
        prefix: &str,
    ) -> Result<(Revision, Vec<KeyValue>), StoreError> {
        let (key, range_end) = self.keys.range(prefix);
        let req = RangeRequest {
            key,
            range_end,
            ..RangeRequest::default()
        };
        let resp = self.range(req).await?;
        let revision = revision(&resp.header);
        let kvs = resp
            .kvs
            .into_iter()
            .map(|kv| self.keys.kv(kv))
            .collect::<Result<_, _>>()?;
        Ok((revision, kvs))
    }

    async fn txn(
        &self,
        compares: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<TxnResponse, StoreError> {
        let lease = first_lease(&success).max(first_lease(&failure));
        let convert = |ops: Vec<Op>| -> Result<Vec<RequestOp>, StoreError> {
            ops.into_iter().map(|op| self.op(op)).collect()
        };
        let req = TxnRequest {
            compare: compares
                .into_iter()
                .map(|c| self.compare(c))
                .collect::<Result<_, _>>()?,
            success: convert(success)?,
            failure: convert(failure)?,
        };
        let resp: grpc::TxnResponse = self
            .client
            .unary(path::TXN, req, Retry::IfNotSent)
            .await
            .map_err(|e| with_lease(e, lease))?;
        Ok(TxnResponse {
            succeeded: resp.succeeded,
            revision: revision(&resp.header),
        })
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        let (key, end) = self.keys.range(prefix);
        watch::start(
            self.client.clone(),
            self.keys.clone(),
            key,
            end,
            from_revision,
        )
        .await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let req = LeaseGrantRequest {
            ttl: ttl_seconds(ttl),
        };
        let resp: LeaseAnswer = self
            .client
            .unary(path::LEASE_GRANT, req, Retry::IfNotSent)
            .await?;
        if resp.id == 0 {
            return Err(StoreError::Backend(
                "etcd granted a lease without an id".into(),
            ));
        }
        Ok(LeaseId(resp.id))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let answer = self.client.keep_alive(lease.0).await?;
        if answer.ttl <= 0 {
            return Err(StoreError::LeaseNotFound(lease.0));
        }
        Ok(())
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        let req = grpc::LeaseId { id: lease.0 };
        let _: WriteResponse = self
            .client
            .unary(path::LEASE_REVOKE, req, Retry::IfNotSent)
            .await
            .map_err(|e| with_lease(e, lease.0))?;
        Ok(())
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let (key, _) = self.keys.range("");
        let req = RangeRequest {
            key,
            count_only: true,
            limit: 1,
            ..RangeRequest::default()
        };
        Ok(revision(&self.range(req).await?.header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        let keys = Keys {
            namespace: "".into(),
        };
        assert_eq!(keys.range(""), (vec![0], vec![0]));
        let keys = Keys {
            namespace: "/ns/".into(),
        };
        assert_eq!(keys.range(""), (b"/ns/".to_vec(), b"/ns0".to_vec()));
        assert_eq!(keys.strip(b"/ns/k".to_vec()).expect("strip"), "k");
        assert!(keys.strip(b"/other/k".to_vec()).is_err());
    }

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(2_001)), 3);
        assert_eq!(ttl_seconds(Duration::from_secs(5)), 5);
    }
}
