//! The master's table of live tasks: entries stored side by side in one slab, found by task id.
//!
//! A master holds tens of thousands of task entries for as long as the tasks run, and creates
//! them in bursts among the short-lived buffers of a deployment (offers, task descriptions,
//! events). Allocated one by one, the entries ended up spread over pages that the burst's
//! freed buffers otherwise emptied, and those pages stayed resident. In one slab they take
//! `len × entry` bytes of a few large allocations; a removed entry's slot is reused by the
//! next task.

use crate::task::TaskEntry;
use meseta_types::TaskId;
use slab::Slab;
use std::collections::HashMap;

/// Live tasks by id.
#[derive(Debug, Default)]
pub(crate) struct TaskTable {
    index: HashMap<TaskId, usize>,
    entries: Slab<TaskEntry>,
}

impl TaskTable {
    /// Whether a task with this id is live.
    pub fn contains_key(&self, id: &TaskId) -> bool {
        self.index.contains_key(id)
    }

    /// The task with this id.
    pub fn get(&self, id: &TaskId) -> Option<&TaskEntry> {
        self.index.get(id).and_then(|&i| self.entries.get(i))
    }

    /// The task with this id, to change.
    pub fn get_mut(&mut self, id: &TaskId) -> Option<&mut TaskEntry> {
        let i = *self.index.get(id)?;
        self.entries.get_mut(i)
    }

    /// Adds `entry` under its task id, replacing (and returning) a task with the same id.
    pub fn insert(&mut self, entry: TaskEntry) -> Option<TaskEntry> {
        let id = entry.spec.task_id.clone();
        match self.index.get(&id) {
            Some(&i) => self.entries.get_mut(i).map(|e| std::mem::replace(e, entry)),
            None => {
                self.index.insert(id, self.entries.insert(entry));
                None
            }
        }
    }

    /// Removes the task with this id.
    pub fn remove(&mut self, id: &TaskId) -> Option<TaskEntry> {
        let i = self.index.remove(id)?;
        self.entries.try_remove(i)
    }

    /// Every live task, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &TaskEntry> {
        self.entries.iter().map(|(_, e)| e)
    }

    /// Every live task with its id, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&TaskId, &TaskEntry)> {
        self.values().map(|e| (&e.spec.task_id, e))
    }

    /// Number of live tasks.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no task is live.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskMeta;
    use meseta_types::{AgentId, FrameworkId, Resources, TaskState};
    use std::sync::Arc;

    fn entry(id: &str, state: TaskState) -> TaskEntry {
        let meta = TaskMeta {
            task_id: TaskId::new(id),
            framework_id: FrameworkId::new("f"),
            name: id.into(),
            resources: Arc::new(Resources::new()),
            role: "*".into(),
            user: None,
        };
        TaskEntry::new(meta, AgentId::new("a"), state, 1.0)
    }

    #[test]
    fn finds_replaces_and_removes_by_id() {
        let mut t = TaskTable::default();
        assert!(t.insert(entry("a", TaskState::Staging)).is_none());
        assert!(t.insert(entry("b", TaskState::Staging)).is_none());
        let old = t.insert(entry("a", TaskState::Running));
        assert_eq!(old.map(|e| e.state), Some(TaskState::Staging));
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.get(&TaskId::new("a")).map(|e| e.state),
            Some(TaskState::Running)
        );
        if let Some(e) = t.get_mut(&TaskId::new("b")) {
            e.state = TaskState::Killing;
        }
        assert!(!t.is_empty());
        let removed = t.remove(&TaskId::new("b"));
        assert_eq!(removed.map(|e| e.state), Some(TaskState::Killing));
        assert!(!t.contains_key(&TaskId::new("b")));
        assert!(t.remove(&TaskId::new("b")).is_none());
        let ids: Vec<&str> = t.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a"]);
    }

    #[test]
    fn a_removed_slot_is_reused() {
        let mut t = TaskTable::default();
        for i in 0..100 {
            t.insert(entry(&format!("t{i}"), TaskState::Running));
        }
        let slots = t.entries.capacity();
        for i in 0..50 {
            t.remove(&TaskId::new(format!("t{i}").as_str()));
        }
        for i in 100..150 {
            t.insert(entry(&format!("t{i}"), TaskState::Running));
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.entries.capacity(), slots);
        assert!(t.values().all(|e| e.state == TaskState::Running));
    }
}
