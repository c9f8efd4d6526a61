//! The session: one task that owns a [`Scheduler`] and its subscription. It loops over client
//! requests, framework events and the scheduler's wake-ups; each round ends with the
//! scheduler's tick, the SUPPRESS/REVIVE bookkeeping and only then the replies.
//!
//! ```text
//!  requests ──┐   ┌── events (drained in batches of MAX_EVENT_BATCH)
//!  wake-up ───┼───┤
//!             ▼   ▼
//!        Scheduler callbacks ──▶ [Command] ──▶ execute in order:
//!                                   Persist  → scheduler.persist() → the writer; the rest of
//!                                              the list waits for the write, then persisted()
//!                                   Launch/Decline/Kill/Revive/… → calls on the connection
//!                                   Publish  → the handle's event stream
//!                                   Reply    → after the writes of its round
//! ```
//!
//! One commit is in the store at a time. A `Persist` while one is being written is owed: the
//! commands after it wait, and when the current write ends one commit takes every change made
//! meanwhile (group commit). The session goes on with requests and events all the while, so
//! the store's latency delays what waits for a write and nothing else.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use meseta_api::scheduler::{
    Accept, Acknowledge, CallKind, Decline, Event, Filters, IdValue, Kill, LaunchGroup, Operation,
    Reconcile, TaskGroup,
};
use meseta_master::{FrameworkConnection, Master};
use meseta_store::StoreError;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::handle::Inbox;
use crate::{Command, FrameworkSpec, Reply, Scheduler};

/// Events handled before the round ends (and its one store commit).
const MAX_EVENT_BATCH: usize = 512;
/// Least time between two scheduler ticks (and SUPPRESS/REVIVE checks) in rounds made only
/// of framework events. Both may look at every task the scheduler keeps, and events arrive in
/// small batches when a cluster launches fast: ticking after each batch made the session's
/// cost grow with tasks × batches. Rounds with requests, and timer rounds, always tick.
const EVENT_TICK_GAP: Duration = Duration::from_millis(25);
/// Delay before subscribing again after the subscription ended (or failed).
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Run `scheduler` against `master` until `cancel` fires: the framework id is read from
/// [`FrameworkSpec::framework_id_key`] first (a store error stops the session before it starts,
/// so its handle answers [`Unavailable`](crate::Unavailable)).
pub async fn run<S: Scheduler>(
    master: Master,
    scheduler: S,
    inbox: Inbox<S::Request>,
    cancel: CancellationToken,
) {
    let spec = scheduler.spec();
    let framework_id = match &spec.framework_id_key {
        Some(key) => match meseta_store::get_json(master.store(), key).await {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(framework = %spec.name, error = %e, "cannot read the framework id; not running");
                return;
            }
        },
        None => None,
    };
    inbox.framework_id.send_replace(framework_id.clone());
    let mut session = Session {
        master,
        scheduler,
        spec,
        conn: None,
        framework_id,
        suppressed: false,
        recovering: true,
        next_subscribe: Instant::now(),
        last_reconcile: Instant::now(),
        reconcile_soon: false,
        last_tick: Instant::now(),
        tick_owed: false,
        replies: Vec::new(),
        writing: None,
        owed: None,
        inbox,
    };
    session.run(cancel).await;
}

struct Session<S: Scheduler> {
    master: Master,
    scheduler: S,
    spec: FrameworkSpec,
    conn: Option<FrameworkConnection>,
    framework_id: Option<String>,
    suppressed: bool,
    /// Started after a (possible) master restart and not settled yet.
    recovering: bool,
    next_subscribe: Instant,
    last_reconcile: Instant,
    /// Reconcile at the end of this round (launches were held back).
    reconcile_soon: bool,
    /// When the scheduler last ticked.
    last_tick: Instant,
    /// An event round skipped the tick (it runs within [`EVENT_TICK_GAP`]).
    tick_owed: bool,
    /// Replies of this round, released after its writes (see [`Session::end_round`]).
    replies: Vec<Reply>,
    /// The commit in the store now.
    writing: Option<Writing>,
    /// Commands waiting for a commit not taken yet: it is taken when [`Session::writing`]
    /// ends, so that it covers every change made until then.
    owed: Option<VecDeque<Command>>,
    inbox: Inbox<S::Request>,
}

/// A commit being written, and the commands that run once it is done.
struct Writing {
    task: JoinHandle<Result<(), StoreError>>,
    gated: VecDeque<Command>,
}

/// The outcome of a write, shared by the replies that waited for it.
type Outcome = Result<(), Arc<StoreError>>;

enum Wake<R> {
    Written(Result<(), StoreError>),
    Request(Option<R>),
    Event(Option<Box<Event>>),
    Timer,
}

impl<S: Scheduler> Session<S> {
    async fn run(&mut self, cancel: CancellationToken) {
        loop {
            self.ensure_subscribed().await;
            let mut sleep = self.scheduler.wake_in(SystemTime::now());
            if self.tick_owed {
                let owed =
                    (self.last_tick + EVENT_TICK_GAP).saturating_duration_since(Instant::now());
                sleep = sleep.min(owed);
            }
            let wake = tokio::select! {
                // Shutdown first: the master closes subscriptions right after cancelling.
                biased;
                _ = cancel.cancelled() => {
                    self.shutdown().await;
                    return;
                }
                // A finished write first: it releases launches and replies.
                r = written(&mut self.writing) => Wake::Written(r),
                r = self.inbox.rx.recv() => Wake::Request(r),
                e = next_event(&mut self.conn) => Wake::Event(e.map(Box::new)),
                _ = tokio::time::sleep(sleep) => Wake::Timer,
            };
            let now = SystemTime::now();
            let events_only = matches!(wake, Wake::Event(Some(_)) | Wake::Written(_));
            match wake {
                Wake::Written(r) => self.finish_write(r, now),
                Wake::Request(None) => {
                    self.shutdown().await;
                    return;
                }
                Wake::Request(Some(r)) => {
                    self.request(r, now);
                    // Take the other waiting requests into the same round (one commit).
                    while let Ok(r) = self.inbox.rx.try_recv() {
                        self.request(r, now);
                    }
                }
                Wake::Event(Some(e)) => self.event_batch(*e, now).await,
                Wake::Event(None) => self.disconnected(),
                Wake::Timer => {}
            }
            self.end_round(now, events_only).await;
        }
    }

    fn request(&mut self, r: S::Request, now: SystemTime) {
        let cmds = self.scheduler.request(r, now);
        self.execute(cmds);
    }

    /// Wait for the write in the store, then write what is left, so that nothing the
    /// scheduler changed is lost when the session stops.
    async fn shutdown(&mut self) {
        if let Some(w) = self.writing.take() {
            let r = join_write(w.task).await;
            self.log_write(&r, "cannot persist at shutdown");
            self.scheduler
                .persisted(r.as_ref().map(|_| ()), SystemTime::now());
        }
        if let Some(commit) = self.scheduler.persist() {
            let r = commit.await;
            self.log_write(&r, "cannot persist at shutdown");
            self.scheduler
                .persisted(r.as_ref().map(|_| ()), SystemTime::now());
        }
    }

    fn log_write(&self, r: &Result<(), StoreError>, what: &str) {
        if let Err(e) = r {
            tracing::error!(framework = %self.spec.name, error = %e, "{what}");
        }
    }

    /// Handle `first` and every event already waiting (at most [`MAX_EVENT_BATCH`]), then
    /// carry out their commands with one write.
    async fn event_batch(&mut self, first: Event, now: SystemTime) {
        let mut cmds = self.on_event(first, now).await;
        for _ in 0..MAX_EVENT_BATCH {
            let Some(conn) = self.conn.as_mut() else {
                break;
            };
            match conn.next_event().now_or_never() {
                Some(Some(e)) => cmds.extend(self.on_event(e, now).await),
                Some(None) => {
                    self.disconnected();
                    break;
                }
                None => break,
            }
        }
        self.execute(one_persist_first(cmds));
    }

    /// Recovery, periodic reconciliation, the scheduler's tick, interest; then the replies.
    /// A round of events only ticks when the last tick is [`EVENT_TICK_GAP`] old (else the
    /// tick is owed and the loop wakes for it).
    async fn end_round(&mut self, now: SystemTime, events_only: bool) {
        self.settle_recovery().await;
        if self.reconcile_soon || self.last_reconcile.elapsed() >= self.spec.reconcile_every {
            self.reconcile_soon = false;
            let cmds = self.scheduler.reconcile();
            self.last_reconcile = Instant::now();
            self.execute(cmds);
        }
        if tick_due(events_only, self.last_tick.elapsed()) {
            self.tick_owed = false;
            self.last_tick = Instant::now();
            let cmds = self.scheduler.tick(now);
            self.execute(cmds);
            self.update_interest(SystemTime::now());
        } else {
            self.tick_owed = true;
        }
        // The round's changes are in the commit being written, or in the one owed; replies
        // wait for it (without either, nothing of the round needed writing).
        let replies = std::mem::take(&mut self.replies);
        if let Some(waiting) = self.gated_tail() {
            waiting.extend(replies.into_iter().map(Command::Reply));
        } else {
            for reply in replies {
                reply(Ok(()));
            }
        }
    }

    /// The commands that wait for the latest write (owed, or in the store), if any.
    fn gated_tail(&mut self) -> Option<&mut VecDeque<Command>> {
        match (&mut self.owed, &mut self.writing) {
            (Some(owed), _) => Some(owed),
            (None, Some(w)) => Some(&mut w.gated),
            (None, None) => None,
        }
    }

    /// Subscribe once there is work and the resubscribe delay passed.
    async fn ensure_subscribed(&mut self) {
        if self.conn.is_some() || Instant::now() < self.next_subscribe || !self.scheduler.has_work()
        {
            return;
        }
        self.next_subscribe = Instant::now() + RESUBSCRIBE_AFTER;
        let info = self.spec.info(self.framework_id.as_deref());
        match self.master.subscribe(info).await {
            Ok(conn) => {
                self.conn = Some(conn);
                self.suppressed = false;
            }
            Err(e) => {
                tracing::warn!(framework = %self.spec.name, error = %e, "cannot subscribe; retrying")
            }
        }
    }

    fn disconnected(&mut self) {
        tracing::warn!(framework = %self.spec.name, "subscription ended; subscribing again");
        self.conn = None;
        self.scheduler.disconnected();
    }

    fn call(&self, kind: CallKind) {
        let Some(conn) = &self.conn else { return };
        let name = kind.type_name();
        if let Err(e) = conn.call(kind) {
            tracing::warn!(framework = %self.spec.name, call = name, error = %e, "call refused");
        }
    }

    /// After a restart: once subscribed and every agent known before is back, the scheduler
    /// learns which tasks the master knows, then reconciles.
    async fn settle_recovery(&mut self) {
        if !self.recovering || self.conn.is_none() || self.master.agents_transitioning() {
            return;
        }
        self.recovering = false;
        let master = self.master.clone();
        let mut cmds = self.scheduler.recovery_settled(&|t| master.knows_task(t));
        cmds.extend(self.scheduler.reconcile());
        self.execute(cmds);
    }

    /// SUPPRESS when the scheduler stopped wanting offers, REVIVE when it wants them again.
    fn update_interest(&mut self, now: SystemTime) {
        let wants = self.scheduler.wants_offers(now);
        if wants && self.suppressed {
            self.revive();
        } else if !wants && !self.suppressed && self.conn.is_some() {
            self.call(CallKind::Suppress { suppress: None });
            self.suppressed = true;
        }
    }

    fn revive(&mut self) {
        self.call(CallKind::Revive { revive: None });
        self.suppressed = false;
    }

    /// The scheduler's commands for one event (carried out by [`Session::event_batch`]).
    async fn on_event(&mut self, ev: Event, now: SystemTime) -> Vec<Command> {
        match ev {
            Event::Subscribed { subscribed } => self.subscribed(subscribed.framework_id, now).await,
            Event::Offers { offers } => {
                // Offers may be what a restored scheduler waited for: settle first.
                self.settle_recovery().await;
                self.scheduler.offers(offers.offers, now)
            }
            Event::Rescind { rescind } => self.scheduler.rescinded(&rescind.offer_id),
            Event::Update { update } => {
                if let Some(ack) = Acknowledge::for_status(&update.status) {
                    self.call(CallKind::Acknowledge { acknowledge: ack });
                }
                self.scheduler.status(&update.status, now)
            }
            Event::InverseOffers { inverse_offers } => self
                .scheduler
                .inverse_offers(&inverse_offers.inverse_offers),
            Event::Error { error } => {
                tracing::warn!(framework = %self.spec.name, message = %error.message, "subscription error");
                if error.message.contains("removed") {
                    // Torn down by an operator: come back as a new framework.
                    self.framework_id = None;
                    self.inbox.framework_id.send_replace(None);
                }
                self.disconnected();
                Vec::new()
            }
            Event::Message { .. } | Event::Failure { .. } | Event::Heartbeat => Vec::new(),
        }
    }

    async fn subscribed(&mut self, id: IdValue, now: SystemTime) -> Vec<Command> {
        if self.framework_id.as_deref() != Some(id.as_str()) {
            if let Some(key) = &self.spec.framework_id_key {
                if let Err(e) = meseta_store::put_json(self.master.store(), key, &id.as_str()).await
                {
                    tracing::error!(framework = %self.spec.name, error = %e, "cannot persist the framework id");
                }
            }
            self.framework_id = Some(id.value);
        }
        self.inbox
            .framework_id
            .send_replace(self.framework_id.clone());
        tracing::info!(framework = %self.spec.name, framework_id = ?self.framework_id, "subscribed");
        self.suppressed = false;
        self.scheduler.subscribed(self.recovering, now)
    }

    /// Carry out `cmds` in order; what follows a [`Command::Persist`] waits for its write.
    fn execute(&mut self, cmds: Vec<Command>) {
        self.run_commands(cmds.into(), None);
    }

    /// Carry out `work` in order. `after` is the outcome of the write these commands waited
    /// for (`None`: none). After a failed write no launch it guarded leaves: what it launched
    /// is not stored (the store is unreachable, or this master no longer leads and its write
    /// was fenced), so its offer is declined instead and the tasks are reconciled at the end of
    /// the round (the master reports them unknown, and the scheduler launches them again once
    /// its write goes through).
    fn run_commands(&mut self, mut work: VecDeque<Command>, after: Option<&Outcome>) {
        let unwritten = matches!(after, Some(Err(_)));
        while let Some(c) = work.pop_front() {
            match c {
                Command::Launch { offer_id, tasks } if unwritten => {
                    tracing::warn!(framework = %self.spec.name, offer = offer_id.as_str(), tasks = tasks.len(), "launch held back: its write failed");
                    self.send(Command::Decline {
                        offer_ids: vec![offer_id],
                        refuse_seconds: 1.0,
                    });
                    self.reconcile_soon = true;
                }
                Command::LaunchGroup {
                    offer_id, tasks, ..
                } if unwritten => {
                    tracing::warn!(framework = %self.spec.name, offer = offer_id.as_str(), tasks = tasks.len(), "group launch held back: its write failed");
                    self.send(Command::Decline {
                        offer_ids: vec![offer_id],
                        refuse_seconds: 1.0,
                    });
                    self.reconcile_soon = true;
                }
                Command::Persist => {
                    self.gate(work);
                    return;
                }
                Command::Reply(r) => match after {
                    Some(outcome) => r(outcome.clone()),
                    None => self.replies.push(r),
                },
                Command::Publish { kind, data } => self.inbox.publish(kind, &data),
                Command::Revive => self.revive(),
                Command::Reconcile(tasks) => {
                    self.last_reconcile = Instant::now();
                    if !tasks.is_empty() {
                        self.call(CallKind::Reconcile {
                            reconcile: Reconcile { tasks },
                        });
                    }
                }
                other => self.send(other),
            }
        }
    }

    /// A [`Command::Persist`] with the commands after it: they wait for a write that covers
    /// every change made so far. While a commit is in the store, that is the next one (owed);
    /// otherwise the scheduler's changes are taken now and written in the background.
    fn gate(&mut self, rest: VecDeque<Command>) {
        if let Some(owed) = &mut self.owed {
            owed.extend(rest);
        } else if self.writing.is_some() {
            self.owed = Some(rest);
        } else if let Some(commit) = self.scheduler.persist() {
            let task = tokio::spawn(async move {
                let _timer = meseta_phases::time(meseta_phases::Phase::StoreWrites);
                commit.await
            });
            self.writing = Some(Writing { task, gated: rest });
        } else {
            self.run_commands(rest, None);
        }
    }

    /// The commit in the store ended with `result`: what the scheduler runs after it, then the
    /// commands that waited for it; then the owed commit, if any, is taken and started.
    fn finish_write(&mut self, result: Result<(), StoreError>, now: SystemTime) {
        let Some(w) = self.writing.take() else {
            return;
        };
        self.log_write(&result, "cannot persist");
        let outcome: Outcome = result.map_err(Arc::new);
        let after = self
            .scheduler
            .persisted(outcome.as_ref().map(|_| ()).map_err(|e| &**e), now);
        let work = after_write(after, w.gated);
        self.run_commands(work, Some(&outcome));
        if let Some(owed) = self.owed.take() {
            match &mut self.writing {
                // A commit started by the commands above took every change made so far.
                Some(w) => w.gated.extend(owed),
                None => self.gate(owed),
            }
        }
    }

    /// The commands that are one call each.
    fn send(&mut self, c: Command) {
        let kind = match c {
            Command::Launch { offer_id, tasks } => CallKind::Accept {
                accept: Accept::launch(offer_id, tasks, 0.0),
            },
            Command::LaunchGroup {
                offer_id,
                executor,
                tasks,
            } => CallKind::Accept {
                accept: Accept {
                    offer_ids: vec![offer_id],
                    operations: vec![Operation::LaunchGroup {
                        launch_group: LaunchGroup {
                            executor: serde_json::to_value(&executor).ok(),
                            task_group: TaskGroup {
                                tasks,
                                malformed: 0,
                            },
                        },
                    }],
                    filters: Some(Filters {
                        refuse_seconds: Some(0.0),
                    }),
                },
            },
            Command::Decline {
                offer_ids,
                refuse_seconds,
            } => CallKind::Decline {
                decline: Decline {
                    offer_ids,
                    filters: Some(Filters {
                        refuse_seconds: Some(refuse_seconds),
                    }),
                },
            },
            Command::Kill { task_id, agent_id } => CallKind::Kill {
                kill: Kill {
                    task_id: IdValue::new(task_id),
                    agent_id: agent_id.map(IdValue::new),
                },
            },
            Command::Suppress => {
                if self.conn.is_some() {
                    self.suppressed = true;
                }
                CallKind::Suppress { suppress: None }
            }
            Command::AcceptInverseOffers(ids) => {
                let ids: Vec<serde_json::Value> = ids
                    .iter()
                    .map(|id| serde_json::json!({"value": id.as_str()}))
                    .collect();
                CallKind::AcceptInverseOffers {
                    accept_inverse_offers: serde_json::json!({"inverse_offer_ids": ids}),
                }
            }
            Command::Persist
            | Command::Reply(_)
            | Command::Publish { .. }
            | Command::Revive
            | Command::Reconcile(_) => return,
        };
        self.call(kind);
    }
}

/// A batch's commands with their writes made one, carried out first. Every callback of the
/// batch has already changed the scheduler's state, so that one [`Command::Persist`] covers what
/// each of theirs would have, and still precedes every launch it guards.
fn one_persist_first(cmds: Vec<Command>) -> Vec<Command> {
    let n = cmds.len();
    let rest: Vec<Command> = cmds
        .into_iter()
        .filter(|c| !matches!(c, Command::Persist))
        .collect();
    if rest.len() == n {
        return rest;
    }
    std::iter::once(Command::Persist).chain(rest).collect()
}

/// The outcome of the commit being written, or pending forever while none is.
async fn written(writing: &mut Option<Writing>) -> Result<(), StoreError> {
    match writing {
        Some(w) => join_write(&mut w.task).await,
        None => std::future::pending().await,
    }
}

/// A write task's result (a write that panicked is a failed write).
async fn join_write(
    task: impl std::future::Future<Output = Result<Result<(), StoreError>, tokio::task::JoinError>>,
) -> Result<(), StoreError> {
    task.await.unwrap_or_else(|e| {
        Err(StoreError::Unavailable(format!(
            "the write did not finish: {e}"
        )))
    })
}

/// The next framework event, or pending forever while not subscribed.
async fn next_event(conn: &mut Option<FrameworkConnection>) -> Option<Event> {
    match conn {
        Some(c) => c.next_event().await,
        None => std::future::pending().await,
    }
}

/// Whether a round ends with the scheduler's tick: always, unless it was made only of events
/// and the last tick is more recent than [`EVENT_TICK_GAP`].
fn tick_due(events_only: bool, since_last: Duration) -> bool {
    !events_only || since_last >= EVENT_TICK_GAP
}

/// The commands to run once a write ended: what the scheduler answers to the write, then the
/// commands that waited for it, then any REVIVE among the former. A REVIVE asked for by a change
/// in this write must come last: a command that waited for the same write may be a DECLINE with
/// a long filter, decided before that change (nothing was waiting then), and a REVIVE sent
/// before it would be undone by it, leaving the declined agents filtered while instances wait.
fn after_write(after: Vec<Command>, gated: VecDeque<Command>) -> VecDeque<Command> {
    let (revives, rest): (Vec<Command>, Vec<Command>) = after
        .into_iter()
        .partition(|c| matches!(c, Command::Revive));
    let mut work = VecDeque::from(rest);
    work.extend(gated);
    work.extend(revives);
    work
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revive_goes_after_the_declines_that_waited_for_the_same_write() {
        let after = vec![Command::Revive, Command::Suppress];
        let gated = VecDeque::from([
            Command::Decline {
                offer_ids: vec![IdValue::new("o1")],
                refuse_seconds: 120.0,
            },
            Command::Persist,
        ]);
        let work: Vec<Command> = after_write(after, gated).into();
        let order: Vec<String> = names(&work)
            .into_iter()
            .map(|n| n.split_whitespace().next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(order, ["Suppress", "Decline", "Persist", "Revive"]);
    }

    #[test]
    fn event_rounds_tick_at_most_once_per_gap_others_always() {
        assert!(tick_due(false, Duration::ZERO));
        assert!(!tick_due(true, Duration::ZERO));
        assert!(!tick_due(true, EVENT_TICK_GAP - Duration::from_millis(1)));
        assert!(tick_due(true, EVENT_TICK_GAP));
    }

    fn names(cmds: &[Command]) -> Vec<String> {
        cmds.iter().map(|c| format!("{c:?}")).collect()
    }

    #[test]
    fn a_batch_writes_once_before_everything_else() {
        let cmds = vec![
            Command::Revive,
            Command::Persist,
            Command::Suppress,
            Command::Persist,
            Command::Revive,
        ];
        assert_eq!(
            names(&one_persist_first(cmds)),
            ["Persist", "Revive", "Suppress", "Revive"]
        );
    }

    #[test]
    fn a_batch_without_a_write_stays_as_it_is() {
        let cmds = vec![Command::Suppress, Command::Revive];
        assert_eq!(names(&one_persist_first(cmds)), ["Suppress", "Revive"]);
    }
}
