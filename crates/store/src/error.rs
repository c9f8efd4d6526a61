//! `StoreError`: what every [`crate::Store`] operation can fail with, split into fatal errors
//! and errors a caller may retry (see [`StoreError::is_retryable`]).

use crate::Revision;

/// Errors of [`crate::Store`] operations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed (disk full, corruption, ...). Fatal.
    #[error("store backend failed: {0}")]
    Backend(String),
    /// A filesystem operation failed. Fatal.
    #[error("store i/o failed: {0}")]
    Io(String),
    /// A watch asked for history the backend no longer keeps; re-list then watch from the
    /// list's revision + 1.
    #[error("revision {requested} is compacted; oldest watchable revision is {oldest}")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision that can still be watched.
        oldest: Revision,
    },
    /// A watcher fell too far behind and was dropped; watch again from `next_revision`.
    #[error("watcher lagged behind; resume from revision {next_revision}")]
    WatchLagged {
        /// The first revision the watcher did not receive.
        next_revision: Revision,
    },
    /// The lease does not exist (never granted, revoked, or expired).
    #[error("lease {0} not found")]
    LeaseNotFound(i64),
    /// The key is not acceptable (empty).
    #[error("invalid key {0:?}")]
    InvalidKey(String),
    /// The store has shut down.
    #[error("store is closed")]
    Closed,
    /// The backend is temporarily unreachable (remote backends). Retryable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend refuses a request this large (etcd: more than `--max-txn-ops` operations in
    /// a transaction, or a request over `--max-request-bytes`). Split the write (see
    /// [`crate::MAX_TXN_OPS`]); retrying the same request fails again.
    #[error("request too large for the store: {0}")]
    TooLarge(String),
    /// A value could not be encoded or decoded.
    #[error("encoding failed: {0}")]
    Encode(String),
    /// A write of a deposed leader was refused (see [`crate::election`]). Not retryable: the
    /// writer must stop acting as leader.
    #[error("write refused: {0}")]
    Fenced(String),
    /// The store was written by a meseta with another schema version (see
    /// [`crate::schema`]). Fatal: this meseta stops rather than misread it.
    #[error(
        "the store holds schema version {found}, but this meseta supports schema version \
         {supported} only; stopping (run a meseta that supports version {found}, or restore \
         a backup taken with this version)"
    )]
    Schema {
        /// The version recorded in the store.
        found: u32,
        /// The version this meseta reads and writes ([`crate::schema::SCHEMA_VERSION`]).
        supported: u32,
    },
    /// The store holds the marker of a restore that has not finished (see
    /// [`crate::backup::restore`]): its contents are incomplete. Fatal.
    #[error(
        "the store holds {marker}: a restore into it did not finish, so its contents are \
         incomplete; refusing to use it (run the restore again with --force)",
        marker = crate::backup::RESTORE_MARKER
    )]
    RestoreInProgress,
}

impl StoreError {
    /// Whether retrying the same call later may succeed. Fatal errors (backend, i/o, closed),
    /// caller mistakes (invalid key, missing lease, bad encoding) and compaction (which needs
    /// a re-list, not a retry) are not retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::WatchLagged { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_split() {
        assert!(StoreError::Unavailable("x".into()).is_retryable());
        assert!(StoreError::WatchLagged { next_revision: 3 }.is_retryable());
        assert!(!StoreError::Backend("disk".into()).is_retryable());
        assert!(!StoreError::Closed.is_retryable());
        assert!(!StoreError::LeaseNotFound(1).is_retryable());
        assert!(!StoreError::TooLarge("129 ops".into()).is_retryable());
        let c = StoreError::Compacted {
            requested: 1,
            oldest: 5,
        };
        assert!(!c.is_retryable());
        assert_eq!(
            c.to_string(),
            "revision 1 is compacted; oldest watchable revision is 5"
        );
    }
}
