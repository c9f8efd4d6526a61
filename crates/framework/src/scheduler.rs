//! The [`Scheduler`] trait: what a framework on the kit implements. Every callback is
//! synchronous and pure with respect to the outside world: it gets the input and the time,
//! changes the scheduler's own state, and returns [`Command`]s; [`Scheduler::persist`] returns
//! a [`Commit`], the store write the kit runs for it.

use futures::future::BoxFuture;
use std::time::{Duration, SystemTime};

use meseta_api::scheduler::{Capability, FrameworkInfo, IdValue, InverseOffer, Offer, TaskStatus};
use meseta_store::StoreError;
use meseta_types::TaskId;

use crate::Command;

/// Who the framework is and how the kit runs its session.
#[derive(Clone, Debug)]
pub struct FrameworkSpec {
    /// The framework name.
    pub name: String,
    /// The user tasks run as by default; empty: the agent's default task user.
    pub user: String,
    /// Seconds the master keeps the framework's tasks after it disconnects.
    pub failover_timeout: f64,
    /// Framework capabilities (`PARTITION_AWARE`, …).
    pub capabilities: Vec<String>,
    /// Store key of the framework id (a JSON string), so a restarted master re-subscribes the
    /// same framework; `None`: a new framework every time.
    pub framework_id_key: Option<String>,
    /// How often the tasks the scheduler lists are reconciled.
    pub reconcile_every: Duration,
}

impl FrameworkSpec {
    /// A framework named `name`, running tasks as the agents' default task user (no `user`),
    /// one week of failover, no stored id, reconciling every minute.
    pub fn new(name: impl Into<String>) -> FrameworkSpec {
        FrameworkSpec {
            name: name.into(),
            user: String::new(),
            failover_timeout: 604_800.0,
            capabilities: Vec::new(),
            framework_id_key: None,
            reconcile_every: Duration::from_secs(60),
        }
    }

    /// A framework meant to outlive master restarts, as the built-in schedulers are: its id is
    /// kept under `framework_id_key`, and it is PARTITION_AWARE (a task on a cut-off agent is
    /// UNREACHABLE — it may come back — rather than LOST).
    pub fn long_running(name: impl Into<String>, framework_id_key: &str) -> FrameworkSpec {
        FrameworkSpec::new(name)
            .capability("PARTITION_AWARE")
            .framework_id_key(framework_id_key)
    }

    /// Declare a capability (`PARTITION_AWARE`, …).
    pub fn capability(mut self, kind: &str) -> FrameworkSpec {
        self.capabilities.push(kind.to_string());
        self
    }

    /// Keep the framework id under `key`, so a restarted master re-subscribes the same framework.
    pub fn framework_id_key(mut self, key: &str) -> FrameworkSpec {
        self.framework_id_key = Some(key.to_string());
        self
    }

    /// Reconcile every `every`.
    pub fn reconcile_every(mut self, every: Duration) -> FrameworkSpec {
        self.reconcile_every = every;
        self
    }

    /// The SUBSCRIBE `FrameworkInfo`, with the id of a previous subscription.
    pub(crate) fn info(&self, id: Option<&str>) -> FrameworkInfo {
        let capabilities = (!self.capabilities.is_empty()).then(|| {
            self.capabilities
                .iter()
                .map(|kind| Capability { kind: kind.clone() })
                .collect()
        });
        FrameworkInfo {
            user: self.user.clone(),
            name: self.name.clone(),
            failover_timeout: Some(self.failover_timeout),
            id: id.map(IdValue::new),
            capabilities,
            ..FrameworkInfo::default()
        }
    }
}

/// A framework running on the kit. The kit owns the subscription: it subscribes while
/// [`has_work`](Scheduler::has_work) says so, acknowledges status updates, answers offers with
/// what [`offers`](Scheduler::offers) returns, SUPPRESSes and REVIVEs by
/// [`wants_offers`](Scheduler::wants_offers), reconciles, and settles recovery after a master
/// restart. Commands are executed in the order returned.
pub trait Scheduler: Send + 'static {
    /// What the scheduler's clients (e.g. its HTTP edge) send it; each carries its reply channel.
    type Request: Send + 'static;

    /// Who the framework is.
    fn spec(&self) -> FrameworkSpec;

    /// Is there anything to schedule? The kit subscribes only then (a master without work for
    /// this framework shows no such framework).
    fn has_work(&self) -> bool;

    /// Does the scheduler want offers now? Checked after every round: SUPPRESS when it stops,
    /// REVIVE when it starts again.
    fn wants_offers(&self, now: SystemTime) -> bool;

    /// The longest the kit waits before the next [`tick`](Scheduler::tick).
    fn wake_in(&self, _now: SystemTime) -> Duration {
        Duration::from_millis(250)
    }

    /// Offers to answer: launch on them ([`Command::Launch`]) or decline them.
    fn offers(&mut self, offers: Vec<Offer>, now: SystemTime) -> Vec<Command>;

    /// A status update (the kit has acknowledged it already).
    fn status(&mut self, status: &TaskStatus, now: SystemTime) -> Vec<Command>;

    /// A request from a client.
    fn request(&mut self, request: Self::Request, now: SystemTime) -> Vec<Command>;

    /// Called after every round (request, event batch or wake-up).
    fn tick(&mut self, _now: SystemTime) -> Vec<Command> {
        Vec::new()
    }

    /// (Re)subscribed; `recovering` while a master restart is not settled yet.
    fn subscribed(&mut self, _recovering: bool, _now: SystemTime) -> Vec<Command> {
        Vec::new()
    }

    /// The subscription ended (the kit subscribes again after a delay).
    fn disconnected(&mut self) {}

    /// An offer was rescinded.
    fn rescinded(&mut self, _offer_id: &IdValue) -> Vec<Command> {
        Vec::new()
    }

    /// Maintenance windows announced (by default: no answer).
    fn inverse_offers(&mut self, _offers: &[InverseOffer]) -> Vec<Command> {
        Vec::new()
    }

    /// The tasks to reconcile (a [`Command::Reconcile`], and kills still owed), asked every
    /// [`FrameworkSpec::reconcile_every`] and once recovery settles.
    fn reconcile(&mut self) -> Vec<Command> {
        Vec::new()
    }

    /// After a master restart, every agent known before is back: `known` tells whether the
    /// master knows a task. The kit then asks for [`reconcile`](Scheduler::reconcile).
    fn recovery_settled(&mut self, _known: &dyn Fn(&TaskId) -> bool) -> Vec<Command> {
        Vec::new()
    }

    /// Take what changed since the last call and return its store write, or `None` when
    /// nothing changed ([`Command::Persist`], and at shutdown). Called synchronously: the
    /// [`Commit`] owns what it writes, and the kit runs it in the background, one at a time and
    /// in order, while the scheduler goes on with later rounds; the commands after the
    /// `Persist` wait for it.
    fn persist(&mut self) -> Option<Commit> {
        None
    }

    /// A commit [`persist`](Scheduler::persist) returned finished, with `outcome`; called once
    /// per commit, in the order they were returned. Returns what may run only once it is
    /// written (kills, events), whatever its outcome; after a failure the scheduler marks its
    /// records again so a later write retries them.
    fn persisted(&mut self, _outcome: Result<(), &StoreError>, _now: SystemTime) -> Vec<Command> {
        Vec::new()
    }
}

/// A store write of a scheduler's changes, owning what it writes (see [`Scheduler::persist`]).
pub type Commit = BoxFuture<'static, Result<(), StoreError>>;
