//! Lease bookkeeping for the embedded backends: the lease table (ttl, deadline, attached keys)
//! and the tokio task that expires leases. Deadlines use `tokio::time` only, never the wall
//! clock. Leases live in memory: they do not survive a restart of the embedded store.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{LeaseId, StoreError};

struct Lease {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

/// All live leases of one store.
#[derive(Default)]
pub(crate) struct LeaseTable {
    next_id: i64,
    leases: HashMap<LeaseId, Lease>,
}

impl LeaseTable {
    /// Creates a lease expiring `ttl` after `now`.
    pub(crate) fn grant(&mut self, ttl: Duration, now: Instant) -> LeaseId {
        self.next_id += 1;
        let id = LeaseId(self.next_id);
        let lease = Lease {
            ttl,
            deadline: now + ttl,
            keys: BTreeSet::new(),
        };
        self.leases.insert(id, lease);
        id
    }

    /// Pushes the lease's deadline to `now + ttl`.
    pub(crate) fn keep_alive(&mut self, id: LeaseId, now: Instant) -> Result<(), StoreError> {
        let lease = self
            .leases
            .get_mut(&id)
            .ok_or(StoreError::LeaseNotFound(id.0))?;
        lease.deadline = now + lease.ttl;
        Ok(())
    }

    /// Whether the lease exists.
    pub(crate) fn contains(&self, id: LeaseId) -> bool {
        self.leases.contains_key(&id)
    }

    /// Records that `key` is now attached to `id`.
    pub(crate) fn attach(&mut self, id: LeaseId, key: &str) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.insert(key.to_string());
        }
    }

    /// Records that `key` is no longer attached to `id`.
    pub(crate) fn detach(&mut self, id: LeaseId, key: &str) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.remove(key);
        }
    }

    /// Removes the lease and returns its keys. With `expired_at`, only if its deadline has
    /// passed by then (`Ok(None)` otherwise, or if it is already gone).
    pub(crate) fn take(
        &mut self,
        id: LeaseId,
        expired_at: Option<Instant>,
    ) -> Result<Option<BTreeSet<String>>, StoreError> {
        match (self.leases.get(&id), expired_at) {
            (None, None) => Err(StoreError::LeaseNotFound(id.0)),
            (None, Some(_)) => Ok(None),
            (Some(lease), Some(now)) if lease.deadline > now => Ok(None),
            (Some(_), _) => Ok(self.leases.remove(&id).map(|l| l.keys)),
        }
    }

    /// Leases whose deadline is at or before `now`.
    pub(crate) fn expired(&self, now: Instant) -> Vec<LeaseId> {
        let mut ids: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// The earliest deadline of any lease.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.leases.values().map(|l| l.deadline).min()
    }
}

/// A store whose leases the expiry task can drive.
#[async_trait::async_trait]
pub(crate) trait LeaseOwner: Send + Sync + 'static {
    /// Leases due at `now`, and the next deadline after that.
    fn lease_schedule(&self, now: Instant) -> (Vec<LeaseId>, Option<Instant>);
    /// Wakes the expiry task when leases are granted (signal it with `notify_one`).
    fn lease_notify(&self) -> Arc<Notify>;
    /// Revokes `id` if it is still expired at `now` (deleting its keys).
    async fn expire_lease(&self, id: LeaseId, now: Instant);
}

/// Longest nap of the expiry task, so it notices a dropped store even when idle.
const MAX_NAP: Duration = Duration::from_secs(1);

/// Runs until the owner is dropped, revoking leases as their deadlines pass.
pub(crate) fn spawn_expiry<O: LeaseOwner>(owner: Weak<O>) {
    tokio::spawn(async move {
        loop {
            let Some(strong) = owner.upgrade() else {
                return;
            };
            let now = Instant::now();
            let (due, next) = strong.lease_schedule(now);
            for id in due {
                strong.expire_lease(id, now).await;
            }
            let wake = next.map_or(now + MAX_NAP, |d| d.min(now + MAX_NAP));
            let notify = strong.lease_notify();
            drop(strong);
            let notified = notify.notified();
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_keep_alive_take() {
        let mut t = LeaseTable::default();
        let now = Instant::now();
        let id = t.grant(Duration::from_secs(5), now);
        t.attach(id, "a");
        assert!(t.contains(id));
        assert!(t.expired(now + Duration::from_secs(4)).is_empty());
        t.keep_alive(id, now + Duration::from_secs(4))
            .expect("alive");
        assert!(t.expired(now + Duration::from_secs(6)).is_empty());
        assert_eq!(t.expired(now + Duration::from_secs(9)), vec![id]);
        let later = now + Duration::from_secs(6);
        assert_eq!(t.take(id, Some(later)).expect("ok"), None);
        let keys = t.take(id, None).expect("ok").expect("present");
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), vec!["a".to_string()]);
        assert!(matches!(
            t.take(id, None),
            Err(StoreError::LeaseNotFound(_))
        ));
        assert!(t.keep_alive(id, now).is_err());
    }
}
