//! Tokens and policies in the `Store` (`/meseta/acl/tokens/<accessor>`,
//! `/meseta/acl/policies/<name>`), and the in-memory snapshot every request is checked
//! against: tokens by secret hash with their grants flattened once, swapped whole whenever
//! the store changes (a watch on `/meseta/acl/`, so masters sharing a store agree).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use meseta_acl::{Grants, Policy, Token};
use meseta_store::{Compare, Op, Store, StoreError};

/// Where ACL records live.
pub const PREFIX: &str = "/meseta/acl/";
const TOKENS: &str = "/meseta/acl/tokens/";
const POLICIES: &str = "/meseta/acl/policies/";
/// Present once the bootstrap token exists.
const BOOTSTRAPPED: &str = "/meseta/acl/bootstrapped";

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record does not parse.
    #[error("stored ACL record {key} is not valid: {reason}")]
    Corrupt {
        /// Its key.
        key: String,
        /// The parse error.
        reason: String,
    },
    /// Bootstrap ran before.
    #[error("ACLs are already bootstrapped: ask an admin token holder for a token")]
    AlreadyBootstrapped,
    /// No such token.
    #[error("no token with accessor {0}")]
    NoToken(String),
    /// No such policy.
    #[error("no policy named {0}")]
    NoPolicy(String),
}

/// A token as checked: the record and what it may do.
#[derive(Debug)]
pub struct Entry {
    /// The stored token.
    pub token: Token,
    /// Its grants, flattened from its policies (shared with the task-user checks of its
    /// framework calls).
    pub grants: Arc<Grants>,
}

/// One consistent view of tokens and policies.
#[derive(Debug, Default)]
pub struct Snapshot {
    by_hash: HashMap<String, Arc<Entry>>,
    /// Tokens by accessor, sorted.
    pub tokens: Vec<Token>,
    /// Policies, sorted by name.
    pub policies: Vec<Policy>,
}

impl Snapshot {
    /// The token whose secret hashes to `hash`.
    pub fn by_hash(&self, hash: &str) -> Option<&Arc<Entry>> {
        self.by_hash.get(hash)
    }
}

/// The store-backed registry with its live snapshot.
pub struct Registry {
    store: Arc<dyn Store>,
    snap: ArcSwap<Snapshot>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

fn parse<T: serde::de::DeserializeOwned>(kv: &meseta_store::KeyValue) -> Result<T, RegistryError> {
    serde_json::from_slice(&kv.value).map_err(|e| RegistryError::Corrupt {
        key: kv.key.clone(),
        reason: e.to_string(),
    })
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("ACL records serialize")
}

impl Registry {
    /// Loads the registry from `store` and keeps it current with a watch.
    pub async fn open(store: Arc<dyn Store>) -> Result<Arc<Registry>, RegistryError> {
        let r = Arc::new(Registry {
            store,
            snap: ArcSwap::from_pointee(Snapshot::default()),
        });
        r.reload().await?;
        let weak = Arc::downgrade(&r);
        tokio::spawn(async move { follow(weak).await });
        Ok(r)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snap.load()
    }

    /// Re-reads everything from the store.
    pub async fn reload(&self) -> Result<(), RegistryError> {
        let policies: Vec<Policy> = self
            .store
            .list(POLICIES)
            .await?
            .iter()
            .map(parse)
            .collect::<Result<_, _>>()?;
        let tokens: Vec<Token> = self
            .store
            .list(TOKENS)
            .await?
            .iter()
            .map(parse)
            .collect::<Result<_, _>>()?;
        let by_hash = tokens
            .iter()
            .map(|t| {
                let e = Entry {
                    grants: Arc::new(Grants::of(t, &policies)),
                    token: t.clone(),
                };
                (t.secret_hash.clone(), Arc::new(e))
            })
            .collect();
        self.snap.store(Arc::new(Snapshot {
            by_hash,
            tokens,
            policies,
        }));
        Ok(())
    }

    /// Stores the bootstrap (management) token through `writes`; refused once one was created.
    pub async fn bootstrap(&self, writes: &dyn Store, token: Token) -> Result<(), RegistryError> {
        let r = writes
            .txn(
                vec![Compare::Version {
                    key: BOOTSTRAPPED.into(),
                    version: 0,
                }],
                vec![
                    put(BOOTSTRAPPED, token.accessor.as_bytes().to_vec()),
                    put(&format!("{TOKENS}{}", token.accessor), json(&token)),
                ],
                vec![],
            )
            .await?;
        if !r.succeeded {
            return Err(RegistryError::AlreadyBootstrapped);
        }
        self.reload().await
    }

    /// Stores a new token through `writes`.
    pub async fn create_token(
        &self,
        writes: &dyn Store,
        token: &Token,
    ) -> Result<(), RegistryError> {
        writes
            .put(&format!("{TOKENS}{}", token.accessor), json(token))
            .await?;
        self.reload().await
    }

    /// Deletes the token `accessor` through `writes`.
    pub async fn revoke(&self, writes: &dyn Store, accessor: &str) -> Result<(), RegistryError> {
        if !writes.delete(&format!("{TOKENS}{accessor}")).await? {
            return Err(RegistryError::NoToken(accessor.to_string()));
        }
        self.reload().await
    }

    /// Creates or replaces a policy (validated by the caller) through `writes`.
    pub async fn apply_policy(&self, writes: &dyn Store, p: &Policy) -> Result<(), RegistryError> {
        writes
            .put(&format!("{POLICIES}{}", p.name), json(p))
            .await?;
        self.reload().await
    }

    /// Deletes the policy `name` through `writes`.
    pub async fn delete_policy(&self, writes: &dyn Store, name: &str) -> Result<(), RegistryError> {
        if !writes.delete(&format!("{POLICIES}{name}")).await? {
            return Err(RegistryError::NoPolicy(name.to_string()));
        }
        self.reload().await
    }
}

fn put(key: &str, value: Vec<u8>) -> Op {
    Op::Put {
        key: key.to_string(),
        value,
        lease: None,
    }
}

/// Reloads on every change under [`PREFIX`] (another master's writes too) until the registry
/// is dropped; a failed watch is retried after a second.
async fn follow(weak: std::sync::Weak<Registry>) {
    loop {
        let Some(r) = weak.upgrade() else { return };
        let watch = r.store.watch(PREFIX, 0).await;
        drop(r);
        let mut stream = match watch {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch ACL records; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(ev) = stream.next().await {
            let Some(r) = weak.upgrade() else { return };
            if ev.is_err() {
                break;
            }
            if let Err(e) = r.reload().await {
                tracing::warn!(error = %e, "reloading ACL records failed");
            }
        }
        let Some(r) = weak.upgrade() else { return };
        let _ = r.reload().await;
        drop(r);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
