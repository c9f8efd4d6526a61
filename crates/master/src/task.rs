//! What the master keeps per task: identity, accounting, state and a short status history.
//!
//! The agent that runs a task holds its whole [`TaskSpec`] (command, environment, health check,
//! fetch list); the master keeps only what its views, the allocator and reconciliation read.
//! With tens of thousands of tasks this is most of the master's memory, so entries stay small:
//! the command and environment are dropped once the spec is sent, tasks holding equal resources
//! share one copy of them ([`ResourceShapes`]), and the first statuses (staging, starting,
//! running) are kept in the entry itself.

use compact_str::CompactString;
use meseta_api::agent::TaskSpec;
use meseta_types::intern::Interner;
use meseta_types::{AgentId, FrameworkId, Resources, TaskId, TaskState};
use smallvec::{smallvec, SmallVec};
use std::sync::Arc;

/// One shared copy of each distinct set of resources that tasks hold.
///
/// The instances of an app ask for the same cpus, mem and disk, and the ports an agent hands
/// out repeat from agent to agent, so a cluster's tasks hold far fewer distinct resource sets
/// than there are tasks; each costs a few hundred bytes. Sets no task holds any more are
/// dropped as the table grows.
#[derive(Debug)]
pub(crate) struct ResourceShapes(Interner<Resources>);

/// The table is not pruned below this many entries.
const MIN_PRUNE: usize = 64;

impl Default for ResourceShapes {
    fn default() -> ResourceShapes {
        ResourceShapes(Interner::new(MIN_PRUNE))
    }
}

impl ResourceShapes {
    /// The shared copy of `r`.
    pub fn intern(&mut self, r: &Resources) -> Arc<Resources> {
        self.0.prune();
        self.0.intern(r)
    }

    /// Distinct sets kept (some may be held by no task until the next prune).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The parts of a [`TaskSpec`] the master keeps after sending it to the agent.
#[derive(Clone, Debug)]
pub(crate) struct TaskMeta {
    pub task_id: TaskId,
    pub framework_id: FrameworkId,
    pub name: CompactString,
    /// Resources the task holds (ports among them), shared with tasks holding the same.
    pub resources: Arc<Resources>,
    /// The role the resources were allocated in.
    pub role: CompactString,
    pub user: Option<String>,
}

impl TaskMeta {
    /// What the master keeps of `spec`.
    pub fn of(spec: &TaskSpec, shapes: &mut ResourceShapes) -> TaskMeta {
        TaskMeta {
            task_id: spec.task_id.clone(),
            framework_id: spec.framework_id.clone(),
            name: CompactString::from(spec.name.as_str()),
            resources: shapes.intern(&spec.resources),
            role: CompactString::from(spec.role.as_str()),
            user: spec.user.clone(),
        }
    }
}

/// One entry of a task's history (24 bytes; message and reason, when there are any, boxed).
#[derive(Clone, Debug)]
pub(crate) struct StatusEntry {
    pub state: TaskState,
    /// The task's health as this status reported it (tasks with health checks only).
    pub healthy: Option<bool>,
    pub timestamp: f64,
    note: Option<Box<StatusNote>>,
}

#[derive(Clone, Debug)]
struct StatusNote {
    message: Option<String>,
    reason: Option<String>,
}

impl StatusEntry {
    /// An entry without message or reason.
    pub fn bare(state: TaskState, timestamp: f64) -> StatusEntry {
        StatusEntry {
            state,
            healthy: None,
            timestamp,
            note: None,
        }
    }

    /// An entry with an optional message and reason.
    pub fn new(
        state: TaskState,
        timestamp: f64,
        message: Option<String>,
        reason: Option<String>,
    ) -> StatusEntry {
        let note = (message.is_some() || reason.is_some())
            .then(|| Box::new(StatusNote { message, reason }));
        StatusEntry {
            state,
            healthy: None,
            timestamp,
            note,
        }
    }

    /// The same entry reporting `healthy`.
    pub fn with_health(self, healthy: Option<bool>) -> StatusEntry {
        StatusEntry { healthy, ..self }
    }

    /// The status message, if any.
    pub fn message(&self) -> Option<&str> {
        self.note.as_ref().and_then(|n| n.message.as_deref())
    }

    /// The Mesos reason (`REASON_…`), if any.
    pub fn reason(&self) -> Option<&str> {
        self.note.as_ref().and_then(|n| n.reason.as_deref())
    }
}

#[derive(Clone, Debug)]
pub(crate) struct TaskEntry {
    pub spec: TaskMeta,
    /// Set at construction and never changed: the task table indexes tasks by agent.
    agent_id: AgentId,
    pub state: TaskState,
    /// The history; a task that runs has three statuses, kept inline.
    pub statuses: SmallVec<[StatusEntry; 3]>,
    /// The latest usage the agent reported (boxed: most entries in a large table have none yet).
    pub usage: Option<Box<meseta_api::state::TaskUsageView>>,
}

impl TaskEntry {
    /// A task on `agent_id` whose history starts with `state` at `timestamp`.
    pub fn new(spec: TaskMeta, agent_id: AgentId, state: TaskState, timestamp: f64) -> TaskEntry {
        TaskEntry {
            spec,
            agent_id,
            state,
            statuses: smallvec![StatusEntry::bare(state, timestamp)],
            usage: None,
        }
    }

    /// The agent the task runs on.
    pub fn agent_id(&self) -> &AgentId {
        &self.agent_id
    }

    /// Moves to `status.state` and records it (one slot more, not a doubling: a task sees a
    /// handful of states, and there are many tasks).
    pub fn push_status(&mut self, status: StatusEntry) {
        self.state = status.state;
        if self.statuses.spilled() {
            self.statuses.reserve_exact(1);
        }
        self.statuses.push(status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_statuses_inline_then_one_slot_at_a_time() {
        let meta = TaskMeta {
            task_id: TaskId::new("t"),
            framework_id: FrameworkId::new("f"),
            name: "t".into(),
            resources: Arc::new(Resources::new()),
            role: "*".into(),
            user: None,
        };
        let mut t = TaskEntry::new(meta, AgentId::new("a"), TaskState::Staging, 1.0);
        t.push_status(StatusEntry::bare(TaskState::Starting, 2.0));
        t.push_status(StatusEntry::bare(TaskState::Running, 3.0));
        assert_eq!(t.state, TaskState::Running);
        assert_eq!(t.statuses.len(), 3);
        assert!(!t.statuses.spilled());
        t.push_status(StatusEntry::bare(TaskState::Killing, 4.0));
        t.push_status(StatusEntry::bare(TaskState::Killed, 5.0));
        assert_eq!(t.statuses.len(), 5);
        assert!(t.statuses.capacity() <= 8);
        let noted = StatusEntry::new(TaskState::Lost, 4.0, None, Some("REASON_X".into()));
        assert_eq!((noted.message(), noted.reason()), (None, Some("REASON_X")));
        assert_eq!(std::mem::size_of::<StatusEntry>(), 24);
    }

    #[test]
    fn tasks_with_equal_resources_share_one_copy() {
        let mut shapes = ResourceShapes::default();
        let a = Resources::parse("cpus:0.1;mem:32;ports:[31000-31000]").expect("valid");
        let b = Resources::parse("cpus:0.1;mem:32;ports:[31001-31001]").expect("valid");
        let first = shapes.intern(&a);
        let again = shapes.intern(&a.clone());
        assert!(Arc::ptr_eq(&first, &again));
        let other = shapes.intern(&b);
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!((&*first, &*other), (&a, &b));
        assert_eq!(shapes.len(), 2);
    }

    #[test]
    fn sets_no_task_holds_are_swept_as_the_table_grows() {
        let mut shapes = ResourceShapes::default();
        let held: Vec<Arc<Resources>> = (0..10)
            .map(|i| shapes.intern(&Resources::parse(&format!("mem:{}", i + 1)).expect("valid")))
            .collect();
        for i in 10..1000 {
            // Interned and dropped at once, as for tasks that ended.
            shapes.intern(&Resources::parse(&format!("mem:{}", i + 1)).expect("valid"));
        }
        assert!(shapes.len() < 2 * MIN_PRUNE, "{} kept", shapes.len());
        for (i, h) in held.iter().enumerate() {
            let again = shapes.intern(&Resources::parse(&format!("mem:{}", i + 1)).expect("valid"));
            assert!(Arc::ptr_eq(h, &again), "a held set was swept");
        }
    }
}
