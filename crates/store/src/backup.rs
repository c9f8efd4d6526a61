//! Backup and restore of a store's durable contents, over any [`Store`].
//!
//! [`backup`] reads every key that is not attached to a lease (leased keys — leadership,
//! liveness — belong to running processes and are not backed up) in one consistent read, at
//! one store revision. [`restore`] writes a [`Snapshot`] into an empty store (or, forced, into
//! one whose keys it deletes first).
//!
//! # File format
//!
//! One JSON document (the [`Snapshot`] fields; unknown fields are ignored):
//!
//! ```json
//! {"format": "meseta-backup", "format_version": 1, "schema_version": 1,
//!  "revision": 42, "created": 1700000000, "meseta_version": "0.1.0",
//!  "keys": [{"key": "/meseta/schema", "value": "eyJ2ZXJzaW9uIjoxfQ=="}]}
//! ```
//!
//! `revision` is the source store's revision the keys were read at, `created` the unix time in
//! seconds, `value` the raw value in standard base64. Revisions are not restored: the target
//! store numbers its writes itself.
//!
//! # Restore
//!
//! The first write puts [`RESTORE_MARKER`], the last one deletes it; in between the keys go in
//! transactions of [`crate::txn_chunks`]: at most [`crate::MAX_TXN_OPS`] operations and about
//! [`crate::MAX_TXN_BYTES`] bytes (etcd refuses more than 128 operations or 1.5 MiB per
//! request). A master refuses to start on a
//! store that still holds the marker ([`crate::schema::check_or_init`]), so a restore that
//! stopped half-way is never taken for a good store; running it again with `force` finishes it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::schema::{SchemaRecord, SCHEMA_KEY, SCHEMA_VERSION};
use crate::{txn_chunks, Compare, KeyValue, Op, Revision, Store, StoreError};

/// Marks a store whose restore has started and not finished.
pub const RESTORE_MARKER: &str = "/meseta/restore-in-progress";

/// The prefix of every meseta key; a forced restore deletes everything under it.
pub const KEY_PREFIX: &str = "/meseta/";

/// Value of [`Snapshot::format`].
pub const FORMAT: &str = "meseta-backup";

/// The [`Snapshot::format_version`] this meseta writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A store's durable contents at one revision: what a backup file holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Always [`FORMAT`].
    pub format: String,
    /// The layout of this document ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The store's schema version ([`crate::schema`]).
    pub schema_version: u32,
    /// The source store's revision the keys were read at.
    pub revision: Revision,
    /// When the backup was taken, in seconds since the unix epoch.
    pub created: u64,
    /// The version of the meseta that took it.
    pub meseta_version: String,
    /// Every key not attached to a lease, sorted by key.
    pub keys: Vec<Entry>,
}

/// One key of a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The raw value (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub value: Vec<u8>,
}

impl Snapshot {
    /// Decodes a backup file, checking that it is one this meseta reads.
    pub fn from_json(bytes: &[u8]) -> Result<Snapshot, BackupError> {
        let snap: Snapshot = serde_json::from_slice(bytes)
            .map_err(|e| BackupError::Format(format!("cannot decode it: {e}")))?;
        snap.check_format()?;
        Ok(snap)
    }

    /// Encodes the snapshot as the backup file's JSON document.
    pub fn to_json(&self) -> Result<Vec<u8>, BackupError> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| BackupError::Format(format!("cannot encode it: {e}")))
    }

    fn check_format(&self) -> Result<(), BackupError> {
        if self.format != FORMAT {
            return Err(BackupError::Format(format!(
                "format is {:?}, expected {FORMAT:?}",
                self.format
            )));
        }
        if self.format_version != FORMAT_VERSION {
            return Err(BackupError::Format(format!(
                "format version {} is not {FORMAT_VERSION}, the one this meseta reads",
                self.format_version
            )));
        }
        Ok(())
    }

    /// Checks everything [`restore`] relies on: format, schema version (also of the
    /// snapshot's own [`SCHEMA_KEY`]), no restore marker, no empty or repeated key.
    fn check_restorable(&self) -> Result<(), BackupError> {
        self.check_format()?;
        let refuse = |found| BackupError::Schema {
            found,
            supported: SCHEMA_VERSION,
        };
        if self.schema_version != SCHEMA_VERSION {
            return Err(refuse(self.schema_version));
        }
        let mut seen = HashSet::with_capacity(self.keys.len());
        for e in &self.keys {
            if e.key.is_empty() || e.key == RESTORE_MARKER || !seen.insert(e.key.as_str()) {
                return Err(BackupError::Format(format!(
                    "key {:?} is empty, repeated or the restore marker",
                    e.key
                )));
            }
            if e.key == SCHEMA_KEY {
                let found = SchemaRecord::decode(&e.value)?.version;
                if found != SCHEMA_VERSION {
                    return Err(refuse(found));
                }
            }
        }
        Ok(())
    }
}

/// What [`restore`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restored {
    /// Keys written.
    pub keys: usize,
    /// Keys deleted first (forced restore).
    pub deleted: usize,
    /// The target store's revision once done.
    pub revision: Revision,
}

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store failed (or holds an unfinished restore: [`StoreError::RestoreInProgress`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The target of a restore already holds keys.
    #[error(
        "the target store is not empty: it holds {keys} keys (restore into an empty store, \
         or force the restore to delete them first)"
    )]
    NotEmpty {
        /// How many keys (not attached to a lease) it holds.
        keys: usize,
    },
    /// The snapshot was taken from a store of another schema version.
    #[error(
        "the backup holds schema version {found}, but this meseta supports schema version \
         {supported} only; restore it with a meseta that supports version {found}"
    )]
    Schema {
        /// The snapshot's schema version.
        found: u32,
        /// [`SCHEMA_VERSION`].
        supported: u32,
    },
    /// The document is not a backup this meseta reads.
    #[error("not a meseta backup: {0}")]
    Format(String),
    /// Another restore put [`RESTORE_MARKER`] first.
    #[error(
        "another restore into this store started at the same time ({RESTORE_MARKER} appeared)"
    )]
    Concurrent,
}

/// Takes a snapshot of every key of `store` not attached to a lease, at one revision.
/// Refuses a store holding [`RESTORE_MARKER`] (its contents are incomplete).
pub async fn backup(store: &dyn Store) -> Result<Snapshot, BackupError> {
    let (revision, kvs) = store.list_with_revision("").await?;
    let mut schema_version = SCHEMA_VERSION;
    let mut keys = Vec::with_capacity(kvs.len());
    for kv in kvs.into_iter().filter(|kv| kv.lease.is_none()) {
        if kv.key == RESTORE_MARKER {
            return Err(StoreError::RestoreInProgress.into());
        }
        if kv.key == SCHEMA_KEY {
            schema_version = SchemaRecord::decode(&kv.value)?.version;
        }
        keys.push(Entry {
            key: kv.key,
            value: kv.value,
        });
    }
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Snapshot {
        format: FORMAT.to_string(),
        format_version: FORMAT_VERSION,
        schema_version,
        revision,
        created,
        meseta_version: env!("CARGO_PKG_VERSION").to_string(),
        keys,
    })
}

/// Writes `snap` into `store`. Refuses ([`BackupError::NotEmpty`]) a store that holds any key
/// not attached to a lease unless `force`, which deletes every key under [`KEY_PREFIX`]
/// first. See the module docs for the marker and the transaction bounds.
pub async fn restore(
    store: &dyn Store,
    snap: &Snapshot,
    force: bool,
) -> Result<Restored, BackupError> {
    snap.check_restorable()?;
    let existing = store.list("").await?;
    let durable = existing.iter().filter(|kv| kv.lease.is_none()).count();
    if durable > 0 && !force {
        return Err(BackupError::NotEmpty { keys: durable });
    }
    let marker = Op::Put {
        key: RESTORE_MARKER.to_string(),
        value: marker_value(snap),
        lease: None,
    };
    // Unforced, the store was empty: a marker that appeared since is another restore's.
    let compares = if force {
        vec![]
    } else {
        vec![Compare::Version {
            key: RESTORE_MARKER.to_string(),
            version: 0,
        }]
    };
    if !store.txn(compares, vec![marker], vec![]).await?.succeeded {
        return Err(BackupError::Concurrent);
    }
    // Explicit deletes rather than one prefix delete, which would take the marker with it.
    let deletes: Vec<Op> = existing
        .iter()
        .filter(|kv| kv.key.starts_with(KEY_PREFIX) && kv.key != RESTORE_MARKER)
        .map(|kv| Op::Delete {
            key: kv.key.clone(),
        })
        .collect();
    let deleted = deletes.len();
    let puts = snap.keys.iter().map(|e| Op::Put {
        key: e.key.clone(),
        value: e.value.clone(),
        lease: None,
    });
    // Deletes first: a snapshot key may be one of them.
    for ops in txn_chunks(deletes).into_iter().chain(txn_chunks(puts)) {
        store.txn(vec![], ops, vec![]).await?;
    }
    store.delete(RESTORE_MARKER).await?;
    Ok(Restored {
        keys: snap.keys.len(),
        deleted,
        revision: store.revision().await?,
    })
}

/// The marker's value: where the restore comes from (for whoever finds it left behind).
fn marker_value(snap: &Snapshot) -> Vec<u8> {
    serde_json::json!({
        "from_revision": snap.revision,
        "created": snap.created,
        "keys": snap.keys.len(),
    })
    .to_string()
    .into_bytes()
}

/// Every key of `store` not attached to a lease, as `(key, value)` pairs (tests, tools).
pub async fn durable_keys(store: &dyn Store) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    Ok(store
        .list("")
        .await?
        .into_iter()
        .filter(|kv: &KeyValue| kv.lease.is_none())
        .map(|kv| (kv.key, kv.value))
        .collect())
}

/// Serde of `Vec<u8>` as a standard base64 string.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
