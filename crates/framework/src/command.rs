//! What a [`Scheduler`](crate::Scheduler) asks the kit to do. Callbacks return a list of
//! commands; the kit carries them out in order, so a [`Command::Persist`] placed before a
//! [`Command::Launch`] is on disk before the ACCEPT leaves.

use std::sync::Arc;

use meseta_api::executor::ExecutorInfo;
use meseta_api::scheduler::{IdValue, ReconcileTask, TaskInfo};
use meseta_store::StoreError;

/// Released once the writes of its round are done; told the outcome of the write it waited for
/// (`Ok` when there was none).
pub type Reply = Box<dyn FnOnce(Result<(), Arc<StoreError>>) + Send>;

/// One thing for the kit to do.
pub enum Command {
    /// ACCEPT `offer_id` with one LAUNCH of `tasks` (the unused rest is refused for 0 s).
    Launch {
        /// The offer.
        offer_id: IdValue,
        /// The tasks to start on its agent.
        tasks: Vec<TaskInfo>,
    },
    /// ACCEPT `offer_id` with one LAUNCH_GROUP: `tasks` start together under `executor` (a
    /// DEFAULT executor runs them as one task group, all or none).
    LaunchGroup {
        /// The offer.
        offer_id: IdValue,
        /// The executor of the group (boxed: it is large beside the other commands).
        executor: Box<ExecutorInfo>,
        /// The tasks of the group.
        tasks: Vec<TaskInfo>,
    },
    /// DECLINE offers; the master keeps them away for `refuse_seconds` (REVIVE clears it).
    Decline {
        /// The offers.
        offer_ids: Vec<IdValue>,
        /// How long they stay away.
        refuse_seconds: f64,
    },
    /// KILL a task.
    Kill {
        /// The task.
        task_id: String,
        /// Its agent, when known.
        agent_id: Option<String>,
    },
    /// REVIVE: clear declined-offer filters and ask for offers again.
    Revive,
    /// SUPPRESS: stop offers until the next REVIVE.
    Suppress,
    /// RECONCILE these tasks (none: nothing is sent, the reconciliation clock still restarts).
    Reconcile(Vec<ReconcileTask>),
    /// Agree to the maintenance windows of these inverse offers.
    AcceptInverseOffers(Vec<IdValue>),
    /// Write the scheduler's changes ([`Scheduler::persist`](crate::Scheduler::persist)); the
    /// commands after it, with those [`Scheduler::persisted`](crate::Scheduler::persisted)
    /// returns first, run once the write is done.
    Persist,
    /// Publish an event to the handle's event stream (serialized only when someone listens).
    Publish {
        /// The event's kind (what readers filter on).
        kind: String,
        /// The event.
        data: serde_json::Value,
    },
    /// Answer a request once the writes of its round are done (after a [`Command::Persist`] of
    /// the same list: with that write's outcome).
    Reply(Reply),
}

impl Command {
    /// A reply that ignores the persistence outcome.
    pub fn reply(f: impl FnOnce() + Send + 'static) -> Command {
        Command::Reply(Box::new(move |_| f()))
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Launch { offer_id, tasks } => f
                .debug_struct("Launch")
                .field("offer_id", &offer_id.as_str())
                .field("tasks", &tasks.len())
                .finish(),
            Command::LaunchGroup {
                offer_id,
                executor,
                tasks,
            } => f
                .debug_struct("LaunchGroup")
                .field("offer_id", &offer_id.as_str())
                .field("executor", &executor.executor_id.as_str())
                .field("tasks", &tasks.len())
                .finish(),
            Command::Decline {
                offer_ids,
                refuse_seconds,
            } => f
                .debug_struct("Decline")
                .field("offers", &offer_ids.len())
                .field("refuse_seconds", refuse_seconds)
                .finish(),
            Command::Kill { task_id, agent_id } => f
                .debug_struct("Kill")
                .field("task_id", task_id)
                .field("agent_id", agent_id)
                .finish(),
            Command::Revive => f.write_str("Revive"),
            Command::Suppress => f.write_str("Suppress"),
            Command::Reconcile(t) => f.debug_tuple("Reconcile").field(&t.len()).finish(),
            Command::AcceptInverseOffers(ids) => f
                .debug_tuple("AcceptInverseOffers")
                .field(&ids.len())
                .finish(),
            Command::Persist => f.write_str("Persist"),
            Command::Publish { kind, .. } => f.debug_tuple("Publish").field(kind).finish(),
            Command::Reply(_) => f.write_str("Reply"),
        }
    }
}
