//! The master's table of live tasks: entries stored side by side in one slab, found by task id
//! and by agent.
//!
//! A master holds tens of thousands of task entries for as long as the tasks run, and creates
//! them in bursts among the short-lived buffers of a deployment (offers, task descriptions,
//! events). Allocated one by one, the entries ended up spread over pages that the burst's
//! freed buffers otherwise emptied, and those pages stayed resident. In one slab they take
//! `len × entry` bytes of a few large allocations; a removed entry's slot is reused by the
//! next task.
//!
//! The tasks of one agent are found through an index, agent id → slab keys of its live tasks
//! ([`TaskTable::on_agent`]): re-registering, removing or draining an agent costs its own
//! tasks, not every task of the cluster (after a failover, 10,000 agents re-registering
//! against 100,000 tasks were 10^9 comparisons). Each task's position in its agent's list is
//! kept beside its slab key in the id index, so a task leaves the list in constant time (the
//! list's last key takes its place). The index costs 4 bytes per task (plus the lists' spare
//! capacity, at most 4× their length as tasks leave) and one map entry per agent with live
//! tasks; an agent's entry goes with its last task. A task's agent is fixed at construction
//! ([`TaskEntry::agent_id`] has no setter), so the index cannot go stale behind the table.

use crate::task::TaskEntry;
use meseta_types::{AgentId, TaskId};
use slab::Slab;
use std::collections::HashMap;

/// The table holds as many live tasks as slab keys and list positions fit in `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the task table is full ({} live tasks)", u32::MAX)]
pub(crate) struct TableFull;

/// Where a task is: its slab key and its position in its agent's list (8 bytes, as the `usize`
/// key alone was).
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: u32,
    pos: u32,
}

/// Live tasks by id and by agent.
#[derive(Debug, Default)]
pub(crate) struct TaskTable {
    index: HashMap<TaskId, Slot>,
    entries: Slab<TaskEntry>,
    /// Slab keys of each agent's live tasks; agents without live tasks have no entry.
    by_agent: HashMap<AgentId, Vec<u32>>,
}

impl TaskTable {
    /// Whether a task with this id is live.
    pub fn contains_key(&self, id: &TaskId) -> bool {
        self.index.contains_key(id)
    }

    /// The task with this id.
    pub fn get(&self, id: &TaskId) -> Option<&TaskEntry> {
        self.index
            .get(id)
            .and_then(|s| self.entries.get(s.key as usize))
    }

    /// The task with this id, to change (its id and agent cannot change: the entry has no setter
    /// for the agent, and the id is the table's key).
    pub fn get_mut(&mut self, id: &TaskId) -> Option<&mut TaskEntry> {
        let s = *self.index.get(id)?;
        self.entries.get_mut(s.key as usize)
    }

    /// Adds `entry` under its task id, replacing (and returning) a task with the same id, which
    /// may have been on another agent. Nothing changes when the table is full.
    pub fn insert(&mut self, entry: TaskEntry) -> Result<Option<TaskEntry>, TableFull> {
        match self.index.get(&entry.spec.task_id).copied() {
            Some(slot) => self.replace(slot, entry),
            None => self.add(entry).map(|()| None),
        }
    }

    /// Puts a task not in the table into a free slot and its agent's list.
    fn add(&mut self, entry: TaskEntry) -> Result<(), TableFull> {
        let key = u32::try_from(self.entries.vacant_key()).map_err(|_| TableFull)?;
        let pos = self.next_pos(entry.agent_id())?;
        self.by_agent
            .entry(entry.agent_id().clone())
            .or_default()
            .push(key);
        self.index
            .insert(entry.spec.task_id.clone(), Slot { key, pos });
        self.entries.insert(entry);
        Ok(())
    }

    /// Puts `entry` in `slot`, in place of the task with the same id, and moves it to its
    /// agent's list if the agent changed.
    fn replace(&mut self, slot: Slot, entry: TaskEntry) -> Result<Option<TaskEntry>, TableFull> {
        let key = slot.key as usize;
        let Some(old_agent) = self.entries.get(key).map(|e| e.agent_id().clone()) else {
            // Not reached: the id index names occupied slots only. Start the task afresh.
            self.index.remove(&entry.spec.task_id);
            return self.add(entry).map(|()| None);
        };
        if &old_agent != entry.agent_id() {
            let pos = self.next_pos(entry.agent_id())?;
            self.unlink(&old_agent, slot.pos);
            self.by_agent
                .entry(entry.agent_id().clone())
                .or_default()
                .push(slot.key);
            if let Some(s) = self.index.get_mut(&entry.spec.task_id) {
                s.pos = pos;
            }
        }
        Ok(self
            .entries
            .get_mut(key)
            .map(|e| std::mem::replace(e, entry)))
    }

    /// The position a task added to `agent`'s list takes.
    fn next_pos(&self, agent: &AgentId) -> Result<u32, TableFull> {
        let len = self.by_agent.get(agent).map_or(0, Vec::len);
        u32::try_from(len).map_err(|_| TableFull)
    }

    /// Takes position `pos` out of `agent`'s list: the list's last key moves there (and its
    /// task's slot is told), and the agent's entry goes when its list empties.
    fn unlink(&mut self, agent: &AgentId, pos: u32) {
        let Some(list) = self.by_agent.get_mut(agent) else {
            return;
        };
        let at = pos as usize;
        if at >= list.len() {
            return;
        }
        list.swap_remove(at);
        if let Some(&key) = list.get(at) {
            let id = self.entries.get(key as usize).map(|e| &e.spec.task_id);
            if let Some(s) = id.and_then(|id| self.index.get_mut(id)) {
                s.pos = pos;
            }
        }
        if list.is_empty() {
            self.by_agent.remove(agent);
        } else if list.capacity() > 4 * list.len() {
            list.shrink_to(2 * list.len());
        }
    }

    /// Removes the task with this id.
    pub fn remove(&mut self, id: &TaskId) -> Option<TaskEntry> {
        let slot = self.index.remove(id)?;
        let entry = self.entries.try_remove(slot.key as usize)?;
        self.unlink(entry.agent_id(), slot.pos);
        Some(entry)
    }

    /// Every live task, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &TaskEntry> {
        self.entries.iter().map(|(_, e)| e)
    }

    /// Every live task with its id, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&TaskId, &TaskEntry)> {
        self.values().map(|e| (&e.spec.task_id, e))
    }

    /// The live tasks on `agent`, in no particular order; costs their number, not the table's.
    pub fn on_agent(&self, agent: &AgentId) -> impl Iterator<Item = &TaskEntry> + '_ {
        self.by_agent
            .get(agent)
            .into_iter()
            .flatten()
            .filter_map(|&key| self.entries.get(key as usize))
    }

    /// The ids of the live tasks on `agent`, in no particular order.
    pub fn ids_on_agent(&self, agent: &AgentId) -> impl Iterator<Item = &TaskId> + '_ {
        self.on_agent(agent).map(|e| &e.spec.task_id)
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
    use meseta_types::{FrameworkId, Resources, TaskState};
    use std::collections::BTreeSet;
    use std::sync::Arc;

    fn on(id: &str, agent: &str, state: TaskState) -> TaskEntry {
        let meta = TaskMeta {
            task_id: TaskId::new(id),
            framework_id: FrameworkId::new("f"),
            name: id.into(),
            resources: Arc::new(Resources::new()),
            role: "*".into(),
            user: None,
        };
        TaskEntry::new(meta, AgentId::new(agent), state, 1.0)
    }

    fn entry(id: &str, state: TaskState) -> TaskEntry {
        on(id, "a", state)
    }

    fn add(t: &mut TaskTable, e: TaskEntry) -> Option<TaskEntry> {
        t.insert(e).expect("room in the table")
    }

    /// The ids `on_agent` yields for `agent`, sorted.
    fn ids_on(t: &TaskTable, agent: &str) -> Vec<String> {
        let mut ids: Vec<String> = t
            .on_agent(&AgentId::new(agent))
            .map(|e| e.spec.task_id.as_str().to_string())
            .collect();
        ids.sort();
        ids
    }

    /// The same ids found by scanning every task.
    fn ids_scanned(t: &TaskTable, agent: &str) -> Vec<String> {
        let mut ids: Vec<String> = t
            .values()
            .filter(|e| e.agent_id().as_str() == agent)
            .map(|e| e.spec.task_id.as_str().to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Every list position in the id index points back at its own task.
    fn assert_consistent(t: &TaskTable) {
        for (id, slot) in &t.index {
            let e = t.entries.get(slot.key as usize).expect("occupied slot");
            assert_eq!(&e.spec.task_id, id);
            let list = t.by_agent.get(e.agent_id()).expect("agent listed");
            assert_eq!(list.get(slot.pos as usize), Some(&slot.key), "{id}");
        }
        let listed: usize = t.by_agent.values().map(Vec::len).sum();
        assert_eq!(listed, t.len());
        assert!(t.by_agent.values().all(|l| !l.is_empty()));
    }

    #[test]
    fn finds_replaces_and_removes_by_id() {
        let mut t = TaskTable::default();
        assert!(add(&mut t, entry("a", TaskState::Staging)).is_none());
        assert!(add(&mut t, entry("b", TaskState::Staging)).is_none());
        let old = add(&mut t, entry("a", TaskState::Running));
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
        assert_consistent(&t);
    }

    #[test]
    fn a_removed_slot_is_reused() {
        let mut t = TaskTable::default();
        for i in 0..100 {
            add(&mut t, entry(&format!("t{i}"), TaskState::Running));
        }
        let slots = t.entries.capacity();
        for i in 0..50 {
            t.remove(&TaskId::new(format!("t{i}").as_str()));
        }
        for i in 100..150 {
            add(&mut t, entry(&format!("t{i}"), TaskState::Running));
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.entries.capacity(), slots);
        assert!(t.values().all(|e| e.state == TaskState::Running));
        assert_consistent(&t);
    }

    #[test]
    fn on_agent_yields_exactly_that_agents_tasks() {
        let mut t = TaskTable::default();
        add(&mut t, on("t1", "a1", TaskState::Running));
        add(&mut t, on("t2", "a2", TaskState::Running));
        add(&mut t, on("t3", "a1", TaskState::Staging));
        assert_eq!(ids_on(&t, "a1"), ["t1", "t3"]);
        assert_eq!(ids_on(&t, "a2"), ["t2"]);
        assert!(ids_on(&t, "a3").is_empty());
        let mut ids: Vec<&str> = t
            .ids_on_agent(&AgentId::new("a1"))
            .map(TaskId::as_str)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, ["t1", "t3"]);
        assert_consistent(&t);
    }

    #[test]
    fn replacing_a_task_on_another_agent_moves_it() {
        let mut t = TaskTable::default();
        add(&mut t, on("t1", "a1", TaskState::Running));
        add(&mut t, on("t2", "a1", TaskState::Running));
        let old = add(&mut t, on("t1", "a2", TaskState::Staging));
        assert_eq!(old.map(|e| e.agent_id().clone()), Some(AgentId::new("a1")));
        assert_eq!(ids_on(&t, "a1"), ["t2"]);
        assert_eq!(ids_on(&t, "a2"), ["t1"]);
        assert_consistent(&t);
        // Replaced on the same agent: it stays listed once.
        add(&mut t, on("t2", "a1", TaskState::Killing));
        assert_eq!(ids_on(&t, "a1"), ["t2"]);
        assert_eq!(t.len(), 2);
        assert_consistent(&t);
    }

    #[test]
    fn an_agent_goes_from_the_index_with_its_last_task() {
        let mut t = TaskTable::default();
        add(&mut t, on("t1", "a1", TaskState::Running));
        add(&mut t, on("t2", "a1", TaskState::Running));
        add(&mut t, on("t3", "a2", TaskState::Running));
        t.remove(&TaskId::new("t1"));
        assert!(t.by_agent.contains_key(&AgentId::new("a1")));
        t.remove(&TaskId::new("t2"));
        assert!(!t.by_agent.contains_key(&AgentId::new("a1")));
        assert!(ids_on(&t, "a1").is_empty());
        // Moving an agent's last task elsewhere drops the agent too.
        add(&mut t, on("t3", "a3", TaskState::Running));
        assert!(!t.by_agent.contains_key(&AgentId::new("a2")));
        assert_eq!(t.by_agent.len(), 1);
        t.remove(&TaskId::new("t3"));
        assert!(t.by_agent.is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn the_index_follows_a_churn_of_inserts_replaces_and_removes() {
        let mut t = TaskTable::default();
        let agents = ["a0", "a1", "a2", "a3", "a4"];
        // A deterministic mix: ids reused, agents changed, removals in and out of order.
        for step in 0u32..2000 {
            let id = format!("t{}", step.wrapping_mul(7919) % 97);
            let agent = agents[(step.wrapping_mul(31) % 5) as usize];
            if step % 3 == 0 {
                t.remove(&TaskId::new(id.as_str()));
            } else {
                add(&mut t, on(&id, agent, TaskState::Running));
            }
            if step % 97 == 0 {
                assert_consistent(&t);
            }
        }
        assert_consistent(&t);
        let mut seen = BTreeSet::new();
        for a in agents {
            assert_eq!(ids_on(&t, a), ids_scanned(&t, a), "{a}");
            seen.extend(ids_on(&t, a));
        }
        assert_eq!(seen.len(), t.len());
    }

    #[test]
    fn the_index_is_small() {
        // The id index's value stays 8 bytes (slab key and list position); the agent lists hold
        // 4 bytes per task, and a drained list gives back its spare capacity.
        assert_eq!(std::mem::size_of::<Slot>(), std::mem::size_of::<usize>());
        let mut t = TaskTable::default();
        for i in 0..1000 {
            add(&mut t, on(&format!("t{i}"), "a", TaskState::Running));
        }
        for i in 0..990 {
            t.remove(&TaskId::new(format!("t{i}").as_str()));
        }
        let list = t.by_agent.get(&AgentId::new("a")).expect("listed");
        assert_eq!(list.len(), 10);
        assert!(list.capacity() <= 40, "capacity {}", list.capacity());
        assert_consistent(&t);
    }
}
