//! The master's event bus (DESIGN.md decision 8): one broadcast channel that every watcher reads —
//! the v1 operator API `SUBSCRIBE` today; Marathon `/v2/events`, DNS, the load balancer and the UI
//! later. Events are published by the core under its lock, so a subscriber that takes a snapshot
//! under the same lock and then reads the bus misses nothing and sees nothing twice.
//!
//! A subscriber that falls more than [`CAPACITY`] events behind is disconnected (its receiver
//! reports `Lagged`), never silently skipped.
//!
//! Events are built only while somebody subscribes, and the channel keeps the last [`CAPACITY`]
//! of them (JSON trees of agents and tasks, megabytes at scale) for as long as anybody does. A
//! reader that only needs to know *that* something changed reads [`Changes`] instead, a counter
//! bumped on every publication whether or not anybody subscribes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use meseta_types::{AgentId, FrameworkId, TaskState};
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Events a subscriber may be behind before it is cut off.
pub const CAPACITY: usize = 4096;

/// Something that changed in the cluster.
#[derive(Clone, Debug)]
pub enum ClusterEvent {
    /// A task was launched (or adopted from a re-registering agent): v1 `Task` JSON.
    TaskAdded(Value),
    /// A task changed state.
    TaskUpdated {
        /// Its framework.
        framework_id: FrameworkId,
        /// The status (v1 `TaskStatus` JSON).
        status: Value,
        /// The new state.
        state: TaskState,
    },
    /// An agent registered or came back: v1 agent JSON.
    AgentAdded(Value),
    /// An agent became unreachable.
    AgentRemoved(AgentId),
    /// A framework subscribed for the first time: v1 framework JSON.
    FrameworkAdded(Value),
    /// A framework re-subscribed or disconnected: v1 framework JSON.
    FrameworkUpdated(Value),
    /// A framework was torn down: its `FrameworkInfo` JSON.
    FrameworkRemoved(Value),
}

impl ClusterEvent {
    /// The v1 operator API event (`{"type":"TASK_ADDED","task_added":{…}}`).
    pub fn to_v1(&self) -> Value {
        match self {
            ClusterEvent::TaskAdded(task) => {
                json!({"type": "TASK_ADDED", "task_added": {"task": task}})
            }
            ClusterEvent::TaskUpdated {
                framework_id,
                status,
                state,
            } => json!({
                "type": "TASK_UPDATED",
                "task_updated": {"framework_id": {"value": framework_id.as_str()}, "status": status, "state": state},
            }),
            ClusterEvent::AgentAdded(agent) => {
                json!({"type": "AGENT_ADDED", "agent_added": {"agent": agent}})
            }
            ClusterEvent::AgentRemoved(id) => {
                json!({"type": "AGENT_REMOVED", "agent_removed": {"agent_id": {"value": id.as_str()}}})
            }
            ClusterEvent::FrameworkAdded(fw) => {
                json!({"type": "FRAMEWORK_ADDED", "framework_added": {"framework": fw}})
            }
            ClusterEvent::FrameworkUpdated(fw) => {
                json!({"type": "FRAMEWORK_UPDATED", "framework_updated": {"framework": fw}})
            }
            ClusterEvent::FrameworkRemoved(info) => {
                json!({"type": "FRAMEWORK_REMOVED", "framework_removed": {"framework_info": info}})
            }
        }
    }
}

/// How many events the bus has published: a reader that only needs to know whether anything
/// changed (a cache of a listing) compares two counts instead of subscribing.
#[derive(Clone, Debug, Default)]
pub struct Changes(Arc<AtomicU64>);

impl Changes {
    /// Events published so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The sending side, held by the core.
pub(crate) struct Bus {
    tx: broadcast::Sender<Arc<ClusterEvent>>,
    changes: Changes,
}

impl Bus {
    pub fn new() -> Bus {
        let (tx, _) = broadcast::channel(CAPACITY);
        Bus {
            tx,
            changes: Changes::default(),
        }
    }

    /// Publish the event `make` builds — only built when somebody listens (events carry JSON
    /// snapshots, and launches are a hot path). The change count goes up either way.
    pub fn publish_with(&self, make: impl FnOnce() -> ClusterEvent) {
        self.changes.0.fetch_add(1, Ordering::Relaxed);
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::new(make()));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ClusterEvent>> {
        self.tx.subscribe()
    }

    /// The change count.
    pub fn changes(&self) -> Changes {
        self.changes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_events_put_the_payload_under_the_lower_cased_type() {
        for ev in [
            ClusterEvent::TaskAdded(json!({})),
            ClusterEvent::AgentRemoved(AgentId::new("a")),
            ClusterEvent::FrameworkRemoved(json!({})),
            ClusterEvent::TaskUpdated {
                framework_id: FrameworkId::new("f"),
                status: json!({}),
                state: TaskState::Running,
            },
        ] {
            let v = ev.to_v1();
            let ty = v["type"].as_str().expect("type").to_ascii_lowercase();
            assert!(v.get(&ty).is_some(), "{v}");
        }
    }

    #[test]
    fn subscribers_see_what_is_published_after_they_subscribe() {
        let bus = Bus::new();
        bus.publish_with(|| ClusterEvent::AgentRemoved(AgentId::new("before")));
        let mut rx = bus.subscribe();
        bus.publish_with(|| ClusterEvent::AgentRemoved(AgentId::new("after")));
        let got = rx.try_recv().expect("one event");
        assert!(matches!(&*got, ClusterEvent::AgentRemoved(id) if id.as_str() == "after"));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn changes_are_counted_without_subscribers_and_no_event_is_built() {
        let bus = Bus::new();
        let changes = bus.changes();
        bus.publish_with(|| unreachable!("nobody listens: the event is not built"));
        bus.publish_with(|| unreachable!("nobody listens: the event is not built"));
        assert_eq!(changes.count(), 2);
        let mut rx = bus.subscribe();
        bus.publish_with(|| ClusterEvent::AgentRemoved(AgentId::new("a")));
        assert_eq!(changes.count(), 3);
        assert!(rx.try_recv().is_ok());
    }
}
