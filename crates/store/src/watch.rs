//! Watch plumbing shared by the embedded backends: [`WatchStream`] (the public receiving end)
//! and `WatchHub`, which keeps a bounded event history and fans new events out to watchers.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use crate::{Revision, StoreError, WatchEvent};

/// A stream of watch events, in revision order. Ends (`None`) when the store shuts down;
/// yields `Err(StoreError::WatchLagged)` and then ends if the consumer falls too far behind.
pub struct WatchStream {
    rx: mpsc::Receiver<Result<WatchEvent, StoreError>>,
}

impl WatchStream {
    /// Wraps a receiver; backends (including out-of-crate ones later) feed the sender.
    pub fn new(rx: mpsc::Receiver<Result<WatchEvent, StoreError>>) -> WatchStream {
        WatchStream { rx }
    }

    /// The next event, or `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        self.rx.recv().await
    }
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

/// Bytes an event holds in the history: its own size plus its key's and value's allocations.
fn weight(ev: &WatchEvent) -> usize {
    let heap = match ev {
        WatchEvent::Put(kv) => kv.key.capacity() + kv.value.capacity(),
        WatchEvent::Delete { key, .. } => key.capacity(),
    };
    std::mem::size_of::<WatchEvent>() + heap
}

/// Drops spare capacity before an event is kept: values arrive in serializer buffers, which
/// are often twice their length.
fn compact(ev: &mut WatchEvent) {
    match ev {
        WatchEvent::Put(kv) => {
            kv.key.shrink_to_fit();
            kv.value.shrink_to_fit();
        }
        WatchEvent::Delete { key, .. } => key.shrink_to_fit(),
    }
}

/// Room per watcher beyond the replayable history, before it counts as lagging.
const LIVE_SLACK: usize = 4_096;

struct Watcher {
    prefix: String,
    from: Revision,
    tx: mpsc::Sender<Result<WatchEvent, StoreError>>,
}

/// The most bytes the history keeps (events, keys and values), whatever its length in events.
/// A watch from an older revision gets `Compacted`, as with etcd, and starts over from a read;
/// the bound keeps a busy store (one write per task status) from holding megabytes of history.
const HISTORY_BYTES: usize = 1024 * 1024;

/// Bounded event history plus the live watchers. Backends publish under their own ordering
/// guarantee (one lock or one writer thread), so events arrive here in revision order.
pub(crate) struct WatchHub {
    history: VecDeque<WatchEvent>,
    capacity: usize,
    /// Bytes of keys and values in `history`.
    bytes: usize,
    /// Oldest revision whose events are all still in `history`.
    oldest: Revision,
    /// Revision of the last published write.
    last: Revision,
    watchers: Vec<Watcher>,
}

impl WatchHub {
    /// A hub for a store currently at `revision`, with no history before it.
    pub(crate) fn new(revision: Revision, capacity: usize) -> WatchHub {
        WatchHub {
            history: VecDeque::new(),
            capacity: capacity.max(1),
            bytes: 0,
            oldest: revision + 1,
            last: revision,
            watchers: Vec::new(),
        }
    }

    /// Records the events of one committed transaction at `revision` and sends them on.
    pub(crate) fn publish(&mut self, revision: Revision, mut events: Vec<WatchEvent>) {
        self.last = self.last.max(revision);
        if events.is_empty() {
            return;
        }
        self.watchers
            .retain(|w| events.iter().all(|ev| deliver(w, ev, revision)));
        events.iter_mut().for_each(compact);
        self.bytes += events.iter().map(weight).sum::<usize>();
        self.history.extend(events);
        self.trim();
    }

    /// Bound the history by events and by bytes (large transactions must not pin megabytes).
    fn trim(&mut self) {
        while self.history.len() > self.capacity || self.bytes > HISTORY_BYTES {
            let Some(dropped) = self.history.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(weight(&dropped));
            let rev = dropped.revision();
            // Drop a whole revision at once so a watch from `oldest` is always complete.
            while self.history.front().is_some_and(|e| e.revision() == rev) {
                if let Some(e) = self.history.pop_front() {
                    self.bytes = self.bytes.saturating_sub(weight(&e));
                }
            }
            self.oldest = rev + 1;
        }
    }

    /// Starts a watch on `prefix` from `from_revision` (`0` = future events only).
    pub(crate) fn subscribe(
        &mut self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        let from = if from_revision <= 0 {
            self.last + 1
        } else {
            from_revision
        };
        if from < self.oldest {
            return Err(StoreError::Compacted {
                requested: from_revision,
                oldest: self.oldest,
            });
        }
        let (tx, rx) = mpsc::channel(self.capacity + LIVE_SLACK);
        let watcher = Watcher {
            prefix: prefix.to_string(),
            from,
            tx,
        };
        for ev in self.history.iter() {
            // The channel holds the whole history, so replay cannot lag.
            if !deliver(&watcher, ev, ev.revision()) {
                return Ok(WatchStream::new(rx));
            }
        }
        self.watchers.push(watcher);
        Ok(WatchStream::new(rx))
    }

    #[cfg(test)]
    fn watcher_count(&self) -> usize {
        self.watchers.len()
    }
}

/// Sends `ev` to `w` if it matches; `false` when the watcher must be dropped.
fn deliver(w: &Watcher, ev: &WatchEvent, revision: Revision) -> bool {
    if revision < w.from || !ev.key().starts_with(&w.prefix) {
        return !w.tx.is_closed();
    }
    if w.tx.capacity() <= 1 {
        let _ = w.tx.try_send(Err(StoreError::WatchLagged {
            next_revision: revision,
        }));
        return false;
    }
    w.tx.try_send(Ok(ev.clone())).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyValue;

    fn put(key: &str, rev: Revision) -> WatchEvent {
        WatchEvent::Put(KeyValue {
            key: key.into(),
            value: vec![],
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: None,
        })
    }

    #[tokio::test]
    async fn replays_history_then_live_with_prefix_filter() {
        let mut hub = WatchHub::new(0, 100);
        hub.publish(1, vec![put("a/1", 1)]);
        hub.publish(2, vec![put("b/1", 2)]);
        let mut w = hub.subscribe("a/", 1).expect("subscribe");
        hub.publish(3, vec![put("a/2", 3)]);
        assert_eq!(w.next().await.expect("ev").expect("ok"), put("a/1", 1));
        assert_eq!(w.next().await.expect("ev").expect("ok"), put("a/2", 3));
    }

    #[tokio::test]
    async fn compacts_whole_revisions() {
        let mut hub = WatchHub::new(0, 2);
        hub.publish(1, vec![put("a", 1), put("b", 1)]);
        hub.publish(2, vec![put("c", 2)]);
        match hub.subscribe("", 1) {
            Err(StoreError::Compacted { requested, oldest }) => {
                assert_eq!((requested, oldest), (1, 2));
            }
            other => panic!("expected compacted, got {other:?}"),
        }
        let mut w = hub.subscribe("", 2).expect("rev 2 kept");
        assert_eq!(w.next().await.expect("ev").expect("ok"), put("c", 2));
    }

    #[tokio::test]
    async fn history_is_bounded_by_bytes_counting_spare_capacity() {
        let mut hub = WatchHub::new(0, 1_000_000);
        let total: Revision = 400;
        for rev in 1..=total {
            let mut value = Vec::with_capacity(16 * 1024);
            value.resize(4 * 1024, b'x');
            let ev = WatchEvent::Put(KeyValue {
                value,
                ..match put("k", rev) {
                    WatchEvent::Put(kv) => kv,
                    WatchEvent::Delete { .. } => unreachable!(),
                }
            });
            hub.publish(rev, vec![ev]);
        }
        assert!(hub.bytes <= HISTORY_BYTES, "{} bytes kept", hub.bytes);
        // Kept values lost their spare capacity: ~4 KiB each, so ~250 of them fit.
        assert!(hub.history.len() > 200, "{} events kept", hub.history.len());
        assert!(matches!(
            hub.subscribe("", 1),
            Err(StoreError::Compacted { .. })
        ));
        let mut w = hub.subscribe("", total).expect("the last revision is kept");
        let got = w.next().await.expect("event").expect("ok");
        assert_eq!(got.revision(), total);
    }

    #[tokio::test]
    async fn dropped_stream_removes_watcher() {
        let mut hub = WatchHub::new(0, 10);
        let w = hub.subscribe("", 0).expect("subscribe");
        drop(w);
        hub.publish(1, vec![put("a", 1)]);
        assert_eq!(hub.watcher_count(), 0);
    }

    #[tokio::test]
    async fn slow_watcher_gets_lagged_error() {
        let mut hub = WatchHub::new(0, 1);
        let mut w = hub.subscribe("", 0).expect("subscribe");
        let total = (1 + LIVE_SLACK + 10) as Revision;
        for rev in 1..=total {
            hub.publish(rev, vec![put("k", rev)]);
        }
        assert_eq!(hub.watcher_count(), 0);
        let mut last = None;
        while let Some(item) = w.next().await {
            last = Some(item);
        }
        match last {
            Some(Err(StoreError::WatchLagged { next_revision })) => assert!(next_revision > 1),
            other => panic!("expected lag error, got {other:?}"),
        }
    }
}
