//! The store's schema version: which layout of keys and values a store holds.
//!
//! `/meseta/schema` holds `{"version": 1, "written_by": "meseta <version>"}`. A master calls
//! [`check_or_init`] before it reads anything else: an empty store gets the key, a store of
//! this version is used, and a store of another version (or one holding the marker of an
//! unfinished restore, [`crate::backup::RESTORE_MARKER`]) stops the master with an error
//! naming both versions. Bump [`SCHEMA_VERSION`] whenever a release changes how existing keys
//! are laid out or encoded, so that an older meseta never misreads a newer store.

use serde::{Deserialize, Serialize};

use crate::{Compare, Op, Store, StoreError};

/// The schema version this meseta reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The key holding the store's [`SchemaRecord`].
pub const SCHEMA_KEY: &str = "/meseta/schema";

/// The value of [`SCHEMA_KEY`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRecord {
    /// The schema version of the store's keys and values.
    pub version: u32,
    /// Which meseta first wrote the record, e.g. `meseta 0.1.0` (informational).
    #[serde(default)]
    pub written_by: String,
}

impl SchemaRecord {
    /// The record this meseta writes.
    pub fn current() -> SchemaRecord {
        SchemaRecord {
            version: SCHEMA_VERSION,
            written_by: format!("meseta {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Decodes a stored value of [`SCHEMA_KEY`].
    pub fn decode(value: &[u8]) -> Result<SchemaRecord, StoreError> {
        serde_json::from_slice(value)
            .map_err(|e| StoreError::Encode(format!("decoding {SCHEMA_KEY}: {e}")))
    }

    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self)
            .map_err(|e| StoreError::Encode(format!("encoding {SCHEMA_KEY}: {e}")))
    }
}

/// The schema version a store holds: `None` when it has no [`SCHEMA_KEY`] yet.
pub async fn stored_version(store: &dyn Store) -> Result<Option<u32>, StoreError> {
    match store.get(SCHEMA_KEY).await? {
        None => Ok(None),
        Some(kv) => Ok(Some(SchemaRecord::decode(&kv.value)?.version)),
    }
}

/// Makes sure `store` may be used by this meseta: refuses a store holding an unfinished
/// restore ([`StoreError::RestoreInProgress`]) or another schema version
/// ([`StoreError::Schema`]); writes [`SCHEMA_KEY`] into a store that has none (only if still
/// absent, so masters starting together on one empty store all succeed).
pub async fn check_or_init(store: &dyn Store) -> Result<(), StoreError> {
    if store.get(crate::backup::RESTORE_MARKER).await?.is_some() {
        return Err(StoreError::RestoreInProgress);
    }
    let found = match stored_version(store).await? {
        Some(v) => v,
        None => {
            let put = Op::Put {
                key: SCHEMA_KEY.to_string(),
                value: SchemaRecord::current().encode()?,
                lease: None,
            };
            let absent = Compare::Version {
                key: SCHEMA_KEY.to_string(),
                version: 0,
            };
            if store.txn(vec![absent], vec![put], vec![]).await?.succeeded {
                return Ok(());
            }
            // Another master wrote it first: check what it wrote.
            stored_version(store).await?.ok_or_else(|| {
                StoreError::Backend(format!("{SCHEMA_KEY} vanished while it was written"))
            })?
        }
    };
    if found == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(StoreError::Schema {
            found,
            supported: SCHEMA_VERSION,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemStore;

    #[tokio::test]
    async fn an_empty_store_gets_the_current_version_once() {
        let s = MemStore::new();
        check_or_init(&s).await.expect("init");
        let kv = s.get(SCHEMA_KEY).await.expect("get").expect("written");
        let rec = SchemaRecord::decode(&kv.value).expect("decode");
        assert_eq!(rec, SchemaRecord::current());
        let json: serde_json::Value = serde_json::from_slice(&kv.value).expect("json");
        assert_eq!(json["version"], 1);
        assert_eq!(
            json["written_by"],
            format!("meseta {}", env!("CARGO_PKG_VERSION"))
        );
        let rev = s.revision().await.expect("rev");
        check_or_init(&s).await.expect("second start");
        assert_eq!(s.revision().await.expect("rev"), rev, "no rewrite");
    }

    #[tokio::test]
    async fn racing_masters_all_succeed() {
        let s = std::sync::Arc::new(MemStore::new());
        let runs: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { check_or_init(s.as_ref()).await })
            })
            .collect();
        for r in runs {
            r.await.expect("join").expect("check");
        }
        assert_eq!(
            s.get(SCHEMA_KEY).await.expect("get").expect("key").version,
            1
        );
    }

    #[tokio::test]
    async fn another_version_is_refused_naming_both() {
        let s = MemStore::new();
        s.put(
            SCHEMA_KEY,
            br#"{"version":999,"written_by":"meseta 9.0.0"}"#.to_vec(),
        )
        .await
        .expect("put");
        let e = check_or_init(&s).await.expect_err("refused");
        assert!(
            matches!(
                e,
                StoreError::Schema {
                    found: 999,
                    supported: SCHEMA_VERSION
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("999") && msg.contains("version 1"), "{msg}");
        assert!(msg.contains("stopping"), "{msg}");
    }

    #[tokio::test]
    async fn an_undecodable_record_is_an_error() {
        let s = MemStore::new();
        s.put(SCHEMA_KEY, b"nope".to_vec()).await.expect("put");
        let e = check_or_init(&s).await.expect_err("refused");
        assert!(matches!(e, StoreError::Encode(_)), "{e:?}");
    }

    #[tokio::test]
    async fn an_unfinished_restore_is_refused() {
        let s = MemStore::new();
        check_or_init(&s).await.expect("init");
        s.put(crate::backup::RESTORE_MARKER, b"{}".to_vec())
            .await
            .expect("put");
        let e = check_or_init(&s).await.expect_err("refused");
        assert!(matches!(e, StoreError::RestoreInProgress), "{e:?}");
        assert!(e.to_string().contains(crate::backup::RESTORE_MARKER), "{e}");
    }
}
