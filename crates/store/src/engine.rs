//! Transaction semantics shared by the embedded backends: evaluating compares and applying a
//! branch of ops over any key table (`KvTables`), producing the response and watch events.
//! The mem backend runs it over a `BTreeMap`; the redb backend inside a write transaction.

use std::collections::BTreeMap;

use tokio::time::Instant;

use crate::leases::LeaseTable;
use crate::{Compare, KeyValue, LeaseId, Op, Revision, StoreError, TxnResponse, WatchEvent};

/// Key access for one transaction.
pub(crate) trait KvTables {
    /// Reads one key.
    fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    /// All keys starting with `prefix`, sorted.
    fn scan(&mut self, prefix: &str) -> Result<Vec<KeyValue>, StoreError>;
    /// Writes one record.
    fn insert(&mut self, kv: &KeyValue) -> Result<(), StoreError>;
    /// Removes one key.
    fn remove(&mut self, key: &str) -> Result<(), StoreError>;
}

impl KvTables for BTreeMap<String, KeyValue> {
    fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(BTreeMap::get(self, key).cloned())
    }

    fn scan(&mut self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        Ok(scan_map(self, prefix))
    }

    fn insert(&mut self, kv: &KeyValue) -> Result<(), StoreError> {
        BTreeMap::insert(self, kv.key.clone(), kv.clone());
        Ok(())
    }

    fn remove(&mut self, key: &str) -> Result<(), StoreError> {
        BTreeMap::remove(self, key);
        Ok(())
    }
}

/// Keys of `map` under `prefix`, in key order.
pub(crate) fn scan_map(map: &BTreeMap<String, KeyValue>, prefix: &str) -> Vec<KeyValue> {
    map.range::<str, _>((
        std::ops::Bound::Included(prefix),
        std::ops::Bound::Unbounded,
    ))
    .take_while(|(k, _)| k.starts_with(prefix))
    .map(|(_, v)| v.clone())
    .collect()
}

/// Result of applying one transaction.
pub(crate) struct Applied {
    /// What the caller gets back.
    pub(crate) response: TxnResponse,
    /// Events to publish (empty if nothing was written).
    pub(crate) events: Vec<WatchEvent>,
}

/// Rejects empty keys (etcd does too).
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey(key.to_string()));
    }
    Ok(())
}

/// Validates the inputs of a transaction before anything is applied.
fn validate(compares: &[Compare], ops: &[Op], leases: &LeaseTable) -> Result<(), StoreError> {
    for c in compares {
        let (Compare::Version { key, .. }
        | Compare::ModRevision { key, .. }
        | Compare::Value { key, .. }) = c;
        check_key(key)?;
    }
    for op in ops {
        match op {
            Op::Put { key, lease, .. } => {
                check_key(key)?;
                if let Some(id) = lease {
                    if !leases.contains(*id) {
                        return Err(StoreError::LeaseNotFound(id.0));
                    }
                }
            }
            Op::Delete { key } => check_key(key)?,
            Op::DeletePrefix { .. } => {}
        }
    }
    Ok(())
}

fn compare_holds(t: &mut dyn KvTables, c: &Compare) -> Result<bool, StoreError> {
    Ok(match c {
        Compare::Version { key, version } => t.get(key)?.map_or(0, |kv| kv.version) == *version,
        Compare::ModRevision { key, revision } => {
            t.get(key)?.map_or(0, |kv| kv.mod_revision) == *revision
        }
        Compare::Value { key, value } => t.get(key)?.is_some_and(|kv| kv.value == *value),
    })
}

/// Applies `compares ? success : failure` at revision `current + 1` (only if it writes).
/// Inputs are validated first, so a rejected transaction changes nothing.
pub(crate) fn apply_txn(
    t: &mut dyn KvTables,
    leases: &mut LeaseTable,
    current: Revision,
    compares: &[Compare],
    success: Vec<Op>,
    failure: Vec<Op>,
) -> Result<Applied, StoreError> {
    validate(compares, &success, leases)?;
    validate(compares, &failure, leases)?;
    let mut succeeded = true;
    for c in compares {
        if !compare_holds(t, c)? {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { success } else { failure };
    let next = current + 1;
    let mut events = Vec::new();
    for op in ops {
        apply_op(t, leases, next, op, &mut events)?;
    }
    let revision = if events.is_empty() { current } else { next };
    Ok(Applied {
        response: TxnResponse {
            succeeded,
            revision,
        },
        events,
    })
}

fn apply_op(
    t: &mut dyn KvTables,
    leases: &mut LeaseTable,
    rev: Revision,
    op: Op,
    events: &mut Vec<WatchEvent>,
) -> Result<(), StoreError> {
    match op {
        Op::Put { key, value, lease } => {
            let kv = put_one(t, leases, rev, key, value, lease)?;
            events.push(WatchEvent::Put(kv));
        }
        Op::Delete { key } => {
            if let Some(old) = t.get(&key)? {
                delete_one(t, leases, rev, old, events)?;
            }
        }
        Op::DeletePrefix { prefix } => {
            for old in t.scan(&prefix)? {
                delete_one(t, leases, rev, old, events)?;
            }
        }
    }
    Ok(())
}

fn put_one(
    t: &mut dyn KvTables,
    leases: &mut LeaseTable,
    rev: Revision,
    key: String,
    value: Vec<u8>,
    lease: Option<LeaseId>,
) -> Result<KeyValue, StoreError> {
    let old = t.get(&key)?;
    if let Some(old_lease) = old.as_ref().and_then(|o| o.lease) {
        leases.detach(old_lease, &key);
    }
    if let Some(id) = lease {
        leases.attach(id, &key);
    }
    let kv = KeyValue {
        create_revision: old.as_ref().map_or(rev, |o| o.create_revision),
        version: old.as_ref().map_or(0, |o| o.version) + 1,
        mod_revision: rev,
        key,
        value,
        lease,
    };
    t.insert(&kv)?;
    Ok(kv)
}

fn delete_one(
    t: &mut dyn KvTables,
    leases: &mut LeaseTable,
    rev: Revision,
    old: KeyValue,
    events: &mut Vec<WatchEvent>,
) -> Result<(), StoreError> {
    if let Some(id) = old.lease {
        leases.detach(id, &old.key);
    }
    t.remove(&old.key)?;
    events.push(WatchEvent::Delete {
        key: old.key,
        revision: rev,
    });
    Ok(())
}

/// Revokes lease `id`, deleting the keys still attached to it, at revision `current + 1`.
/// With `expired_at`, only if it has expired by then (`Ok(None)` otherwise).
pub(crate) fn revoke_lease(
    t: &mut dyn KvTables,
    leases: &mut LeaseTable,
    current: Revision,
    id: LeaseId,
    expired_at: Option<Instant>,
) -> Result<Option<Applied>, StoreError> {
    let Some(keys) = leases.take(id, expired_at)? else {
        return Ok(None);
    };
    let next = current + 1;
    let mut events = Vec::new();
    for key in keys {
        if let Some(old) = t.get(&key)? {
            if old.lease == Some(id) {
                delete_one(t, leases, next, old, &mut events)?;
            }
        }
    }
    let revision = if events.is_empty() { current } else { next };
    Ok(Some(Applied {
        response: TxnResponse {
            succeeded: true,
            revision,
        },
        events,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn put(key: &str, v: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: v.as_bytes().to_vec(),
            lease: None,
        }
    }

    #[test]
    fn versions_and_revisions() {
        let mut m = BTreeMap::new();
        let mut l = LeaseTable::default();
        let a = apply_txn(&mut m, &mut l, 0, &[], vec![put("a", "1")], vec![]).expect("txn");
        assert_eq!(a.response.revision, 1);
        let b = apply_txn(&mut m, &mut l, 1, &[], vec![put("a", "2")], vec![]).expect("txn");
        assert_eq!(b.response.revision, 2);
        let kv = m.get("a").expect("present");
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 2, 2));
    }

    #[test]
    fn missing_lease_rejects_without_changes() {
        let mut m = BTreeMap::new();
        let mut l = LeaseTable::default();
        let ops = vec![
            put("a", "1"),
            Op::Put {
                key: "b".into(),
                value: vec![],
                lease: Some(LeaseId(42)),
            },
        ];
        let err = apply_txn(&mut m, &mut l, 0, &[], ops, vec![]).err();
        assert!(matches!(err, Some(StoreError::LeaseNotFound(42))));
        assert!(m.is_empty());
    }

    #[test]
    fn revoke_deletes_only_keys_still_attached() {
        let mut m = BTreeMap::new();
        let mut l = LeaseTable::default();
        let id = l.grant(Duration::from_secs(1), Instant::now());
        let leased = |k: &str| Op::Put {
            key: k.into(),
            value: vec![],
            lease: Some(id),
        };
        apply_txn(
            &mut m,
            &mut l,
            0,
            &[],
            vec![leased("a"), leased("b")],
            vec![],
        )
        .expect("txn");
        apply_txn(&mut m, &mut l, 1, &[], vec![put("b", "mine")], vec![]).expect("txn");
        let applied = revoke_lease(&mut m, &mut l, 2, id, None)
            .expect("revoke")
            .expect("lease existed");
        assert_eq!(applied.events.len(), 1);
        assert!(!m.contains_key("a") && m.contains_key("b"));
        assert!(revoke_lease(&mut m, &mut l, 3, id, None).is_err());
    }
}
