//! The store-backed registry: one JSON record per secret under [`PREFIX`] (ciphertext, nonce,
//! version, the key's fingerprint, timestamps), an in-memory copy of the records kept current
//! by a watch (masters sharing a store agree), and decryption on demand with the master's key.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use meseta_store::{Compare, Op, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::key::SecretKey;
use crate::seal::{open, seal, OpenError, Sealed};
use meseta_api::secret_path::{validate_path, PathError};

/// Where secret records live: `/meseta/secrets/team-a/db/password`.
pub const PREFIX: &str = "/meseta/secrets";

/// Longest value accepted (bytes).
const MAX_VALUE: usize = 512 * 1024;

/// Why a secret operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The master has no key.
    #[error(
        "this master has no secrets key: start it with --secrets-key-file FILE or \
         MESETA_SECRETS_KEY (base64 of 32 bytes)"
    )]
    NoKey,
    /// The path is not valid.
    #[error(transparent)]
    Path(#[from] PathError),
    /// No secret at the path.
    #[error("no secret at {0}")]
    NotFound(String),
    /// The value is too large.
    #[error("the value of {path} is {len} bytes; at most {MAX_VALUE} are allowed")]
    TooLarge {
        /// The path.
        path: String,
        /// Its length.
        len: usize,
    },
    /// The value is not text.
    #[error("the value of {0} is not UTF-8 text")]
    NotText(String),
    /// The secret was written with another key.
    #[error(
        "the secret {path} was encrypted with key {stored}, but this master's key is {ours}: \
         start it with the key the secret was written with"
    )]
    OtherKey {
        /// The path.
        path: String,
        /// Fingerprint stored with the secret.
        stored: String,
        /// Fingerprint of this master's key.
        ours: String,
    },
    /// Decryption failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A concurrent writer won.
    #[error("the secret {0} was changed concurrently; retry")]
    Conflict(String),
    /// A stored record does not parse.
    #[error("stored secret record {key} is not valid: {why}")]
    Corrupt {
        /// Its key.
        key: String,
        /// The parse error.
        why: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One stored secret: never its value.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// 1 at creation, +1 per replacement.
    pub version: u64,
    /// Base64 of the 12-byte nonce.
    pub nonce: String,
    /// Base64 of the ciphertext with its tag.
    pub ciphertext: String,
    /// Fingerprint of the key that sealed it ([`SecretKey::fingerprint`]).
    pub key_id: String,
    /// Unix seconds of creation.
    pub created: f64,
    /// Unix seconds of the last write.
    pub updated: f64,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("version", &self.version)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// What the API shows of a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The secret's path.
    pub id: String,
    /// Its version.
    pub version: u64,
    /// Unix seconds of creation.
    pub created: f64,
    /// Unix seconds of the last write.
    pub updated: f64,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Record {
    fn meta(&self, id: &str) -> Meta {
        Meta {
            id: id.to_string(),
            version: self.version,
            created: self.created,
            updated: self.updated,
        }
    }

    fn sealed(&self, key: &str) -> Result<Sealed, SecretError> {
        let corrupt = |why: String| SecretError::Corrupt {
            key: key.to_string(),
            why,
        };
        let nonce = b64()
            .decode(&self.nonce)
            .map_err(|e| corrupt(e.to_string()))?
            .try_into()
            .map_err(|_| corrupt("the nonce is not 12 bytes".into()))?;
        let ciphertext = b64()
            .decode(&self.ciphertext)
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(Sealed { nonce, ciphertext })
    }
}

fn store_key(path: &str) -> String {
    format!("{PREFIX}{path}")
}

/// The secrets of one master: its key (if any) and the records, kept current.
pub struct Secrets {
    store: Arc<dyn Store>,
    key: Option<SecretKey>,
    records: RwLock<BTreeMap<String, Record>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Secrets {
    /// Loads the records from `store` and follows its changes (until dropped).
    pub async fn open(
        store: Arc<dyn Store>,
        key: Option<SecretKey>,
    ) -> Result<Arc<Secrets>, SecretError> {
        let s = Arc::new(Secrets {
            store,
            key,
            records: RwLock::new(BTreeMap::new()),
        });
        s.reload().await?;
        let weak = Arc::downgrade(&s);
        tokio::spawn(follow(weak));
        Ok(s)
    }

    /// Whether this master holds a key.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// Re-reads every record.
    pub async fn reload(&self) -> Result<(), SecretError> {
        let mut fresh = BTreeMap::new();
        for kv in self.store.list(&format!("{PREFIX}/")).await? {
            let rec: Record =
                serde_json::from_slice(&kv.value).map_err(|e| SecretError::Corrupt {
                    key: kv.key.clone(),
                    why: e.to_string(),
                })?;
            if let Some(path) = kv.key.strip_prefix(PREFIX) {
                fresh.insert(path.to_string(), rec);
            }
        }
        *self.records.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn record(&self, path: &str) -> Option<Record> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned()
    }

    /// Every secret's metadata, by path.
    pub fn list(&self) -> Vec<Meta> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(p, r)| r.meta(p))
            .collect()
    }

    /// One secret's metadata.
    pub fn get(&self, path: &str) -> Option<Meta> {
        self.record(path).map(|r| r.meta(path))
    }

    /// Whether a secret exists at `path`.
    pub fn exists(&self, path: &str) -> bool {
        self.record(path).is_some()
    }

    /// Creates or replaces the secret at `path`; `true` when it was created.
    pub async fn put(&self, path: &str, value: &str) -> Result<(Meta, bool), SecretError> {
        validate_path(path)?;
        let key = self.key.as_ref().ok_or(SecretError::NoKey)?;
        if value.len() > MAX_VALUE {
            return Err(SecretError::TooLarge {
                path: path.to_string(),
                len: value.len(),
            });
        }
        let skey = store_key(path);
        let current = self.store.get(&skey).await?;
        let old: Option<Record> = match &current {
            Some(kv) => serde_json::from_slice(&kv.value).ok(),
            None => None,
        };
        let now = unix_now();
        let sealed = seal(key, path, value.as_bytes());
        let rec = Record {
            version: old.as_ref().map_or(1, |o| o.version + 1),
            nonce: b64().encode(sealed.nonce),
            ciphertext: b64().encode(&sealed.ciphertext),
            key_id: key.fingerprint(),
            created: old.as_ref().map_or(now, |o| o.created),
            updated: now,
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| SecretError::Corrupt {
            key: skey.clone(),
            why: e.to_string(),
        })?;
        let r = self
            .store
            .txn(
                vec![Compare::Version {
                    key: skey.clone(),
                    version: current.as_ref().map_or(0, |kv| kv.version),
                }],
                vec![Op::Put {
                    key: skey,
                    value: bytes,
                    lease: None,
                }],
                vec![],
            )
            .await?;
        if !r.succeeded {
            return Err(SecretError::Conflict(path.to_string()));
        }
        let meta = rec.meta(path);
        self.records
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_string(), rec);
        Ok((meta, old.is_none()))
    }

    /// Deletes the secret at `path`.
    pub async fn delete(&self, path: &str) -> Result<(), SecretError> {
        validate_path(path)?;
        if !self.store.delete(&store_key(path)).await? {
            return Err(SecretError::NotFound(path.to_string()));
        }
        self.records
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(path);
        Ok(())
    }

    /// The value of the secret at `path`, decrypted with this master's key.
    pub fn resolve(&self, path: &str) -> Result<String, SecretError> {
        let key = self.key.as_ref().ok_or(SecretError::NoKey)?;
        let rec = self
            .record(path)
            .ok_or_else(|| SecretError::NotFound(path.to_string()))?;
        let ours = key.fingerprint();
        if rec.key_id != ours {
            return Err(SecretError::OtherKey {
                path: path.to_string(),
                stored: rec.key_id,
                ours,
            });
        }
        let plain = open(key, path, &rec.sealed(&store_key(path))?)?;
        String::from_utf8(plain).map_err(|_| SecretError::NotText(path.to_string()))
    }
}

/// Reloads on every change under [`PREFIX`] until the registry is dropped; a failed watch is
/// retried after a second.
async fn follow(weak: std::sync::Weak<Secrets>) {
    loop {
        let Some(s) = weak.upgrade() else { return };
        let watch = s.store.watch(&format!("{PREFIX}/"), 0).await;
        drop(s);
        let mut stream = match watch {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch secret records; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(ev) = stream.next().await {
            let Some(s) = weak.upgrade() else { return };
            if ev.is_err() {
                break;
            }
            if let Err(e) = s.reload().await {
                tracing::warn!(error = %e, "reloading secret records failed");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn registry(key: Option<SecretKey>) -> (Arc<dyn Store>, Arc<Secrets>) {
        let store: Arc<dyn Store> = Arc::new(meseta_store::mem::MemStore::new());
        let s = Secrets::open(store.clone(), key).await.expect("open");
        (store, s)
    }

    #[tokio::test]
    async fn put_resolve_list_delete() {
        let (store, s) = registry(Some(SecretKey::generate())).await;
        let (m, created) = s.put("/team-a/db", "pw-1").await.expect("put");
        assert!(created);
        assert_eq!(m.version, 1);
        let (m, created) = s.put("/team-a/db", "pw-2").await.expect("replace");
        assert!(!created);
        assert_eq!(m.version, 2);
        assert_eq!(s.resolve("/team-a/db").expect("resolve"), "pw-2");
        assert_eq!(s.list().len(), 1);
        let raw = store
            .get("/meseta/secrets/team-a/db")
            .await
            .expect("get")
            .expect("stored");
        let text = String::from_utf8_lossy(&raw.value);
        assert!(!text.contains("pw-2"), "{text}");
        s.delete("/team-a/db").await.expect("delete");
        assert!(matches!(
            s.resolve("/team-a/db"),
            Err(SecretError::NotFound(_))
        ));
        assert!(matches!(
            s.delete("/team-a/db").await,
            Err(SecretError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn no_key_and_wrong_key_are_clear() {
        let (store, s) = registry(Some(SecretKey::generate())).await;
        s.put("/a", "v").await.expect("put");
        let other = Secrets::open(store.clone(), Some(SecretKey::generate()))
            .await
            .expect("open");
        let e = other.resolve("/a").expect_err("other key").to_string();
        assert!(e.contains("encrypted with key"), "{e}");
        let none = Secrets::open(store, None).await.expect("open");
        assert!(none.exists("/a"));
        assert!(matches!(none.resolve("/a"), Err(SecretError::NoKey)));
        assert!(matches!(none.put("/b", "v").await, Err(SecretError::NoKey)));
    }

    #[tokio::test]
    async fn tampered_record_does_not_open() {
        let key = SecretKey::generate();
        let (store, s) = registry(Some(key.clone())).await;
        s.put("/a", "value").await.expect("put");
        let kv = store
            .get("/meseta/secrets/a")
            .await
            .expect("get")
            .expect("kv");
        let mut rec: Record = serde_json::from_slice(&kv.value).expect("json");
        let mut ct = b64().decode(&rec.ciphertext).expect("b64");
        ct[0] ^= 0x80;
        rec.ciphertext = b64().encode(ct);
        store
            .put("/meseta/secrets/a", serde_json::to_vec(&rec).expect("json"))
            .await
            .expect("put");
        s.reload().await.expect("reload");
        let e = s.resolve("/a").expect_err("tampered").to_string();
        assert!(e.contains("altered"), "{e}");
    }

    #[tokio::test]
    async fn bad_paths_are_refused() {
        let (_, s) = registry(Some(SecretKey::generate())).await;
        assert!(matches!(
            s.put("/a/../b", "v").await,
            Err(SecretError::Path(_))
        ));
    }
}
