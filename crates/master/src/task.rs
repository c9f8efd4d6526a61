//! What the master keeps per task: identity, accounting, state and a short status history.
//!
//! The agent that runs a task holds its whole [`TaskSpec`] (command, environment, health check,
//! fetch list); the master keeps only what its views, the allocator and reconciliation read.
//! With tens of thousands of tasks this is most of the master's memory, so entries stay small:
//! the command and environment are dropped once the spec is sent, and statuses grow one slot at
//! a time.

use meseta_api::agent::TaskSpec;
use meseta_types::{AgentId, FrameworkId, Resources, TaskId, TaskState};

/// The parts of a [`TaskSpec`] the master keeps after sending it to the agent.
#[derive(Clone, Debug)]
pub(crate) struct TaskMeta {
    pub task_id: TaskId,
    pub framework_id: FrameworkId,
    pub name: String,
    /// Resources the task holds (ports among them).
    pub resources: Resources,
    /// The role the resources were allocated in.
    pub role: String,
    pub user: Option<String>,
}

impl TaskMeta {
    /// What the master keeps of `spec`.
    pub fn of(spec: &TaskSpec) -> TaskMeta {
        TaskMeta {
            task_id: spec.task_id.clone(),
            framework_id: spec.framework_id.clone(),
            name: spec.name.clone(),
            resources: spec.resources.clone(),
            role: spec.role.clone(),
            user: spec.user.clone(),
        }
    }
}

impl From<TaskSpec> for TaskMeta {
    fn from(spec: TaskSpec) -> TaskMeta {
        TaskMeta {
            task_id: spec.task_id,
            framework_id: spec.framework_id,
            name: spec.name,
            resources: spec.resources,
            role: spec.role,
            user: spec.user,
        }
    }
}

/// One entry of a task's history (24 bytes; message and reason, when there are any, boxed).
#[derive(Clone, Debug)]
pub(crate) struct StatusEntry {
    pub state: TaskState,
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
            timestamp,
            note,
        }
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
    pub agent_id: AgentId,
    pub state: TaskState,
    pub statuses: Vec<StatusEntry>,
    pub usage: Option<(u64, f64)>,
}

impl TaskEntry {
    /// A task on `agent_id` whose history starts with `state` at `timestamp`.
    pub fn new(spec: TaskMeta, agent_id: AgentId, state: TaskState, timestamp: f64) -> TaskEntry {
        TaskEntry {
            spec,
            agent_id,
            state,
            statuses: vec![StatusEntry::bare(state, timestamp)],
            usage: None,
        }
    }

    /// Moves to `status.state` and records it (one slot more, not a doubling: a task sees a
    /// handful of states, and there are many tasks).
    pub fn push_status(&mut self, status: StatusEntry) {
        self.state = status.state;
        self.statuses.reserve_exact(1);
        self.statuses.push(status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_grow_one_slot_at_a_time() {
        let meta = TaskMeta {
            task_id: TaskId::new("t"),
            framework_id: FrameworkId::new("f"),
            name: "t".into(),
            resources: Resources::new(),
            role: "*".into(),
            user: None,
        };
        let mut t = TaskEntry::new(meta, AgentId::new("a"), TaskState::Staging, 1.0);
        t.push_status(StatusEntry::bare(TaskState::Starting, 2.0));
        t.push_status(StatusEntry::bare(TaskState::Running, 3.0));
        assert_eq!(t.state, TaskState::Running);
        assert_eq!(t.statuses.len(), 3);
        assert_eq!(t.statuses.capacity(), 3);
        let noted = StatusEntry::new(TaskState::Lost, 4.0, None, Some("REASON_X".into()));
        assert_eq!((noted.message(), noted.reason()), (None, Some("REASON_X")));
        assert_eq!(std::mem::size_of::<StatusEntry>(), 24);
    }
}
