//! The services scheduler on the framework kit: [`Services`] owns the
//! [`Engine`] and turns its decisions into kit [`Command`]s. Every round ends with
//! `engine.tick` and one [`Command::Persist`]; what the engine decided is carried out in this
//! order: store writes, then kills, revives and events ([`Scheduler::persisted`]) — and offers
//! are answered only after the instances placed on them are written, so a master restarted
//! mid-deployment reconciles an instance instead of launching it twice.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use meseta_api::scheduler::{IdValue, InverseOffer, Offer, ReconcileTask, TaskStatus};
use meseta_framework::{Command, Commit, FrameworkSpec, Inbox, Scheduler};
use meseta_master::Master;
use meseta_phases::Phase;
use meseta_services::engine::{Engine, KillOrder, Outputs};
use meseta_store::StoreError;
use tokio_util::sync::CancellationToken;

use crate::handle::{event_type, Job};
use crate::{secs, store, FRAMEWORK_NAME};

/// Declined offers stay away this long while nothing waits (REVIVE brings them back sooner).
const DECLINE_IDLE_SECONDS: f64 = 120.0;
/// … and this long while instances wait but did not fit.
const DECLINE_BUSY_SECONDS: f64 = 1.0;
/// How often live tasks are reconciled.
const RECONCILE_EVERY: Duration = Duration::from_secs(60);

/// Load the apps, instances and deployments, then run the scheduler until `cancel`.
pub(crate) async fn run(master: Master, inbox: Inbox<Job>, cancel: CancellationToken) {
    let (apps, instances, deployments, pods) = match store::load(master.store()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "services scheduler cannot load its apps; not running");
            return;
        }
    };
    tracing::info!(
        apps = apps.len(),
        instances = instances.len(),
        deployments = deployments.len(),
        pods = pods.len(),
        "services scheduler recovered"
    );
    let seed = uuid::Uuid::new_v4().as_u128();
    let services = Services {
        master: master.clone(),
        engine: Engine::restore(seed, apps, instances, deployments).with_pods(pods),
        writing: VecDeque::new(),
    };
    meseta_framework::run(master, services, inbox, cancel).await;
}

fn kill(k: KillOrder) -> Command {
    Command::Kill {
        task_id: k.task_id,
        agent_id: k.agent_id,
    }
}

/// The services scheduler: the engine and the outputs of the writes not finished yet.
pub(crate) struct Services {
    master: Master,
    engine: Engine,
    /// What each commit [`Scheduler::persist`] returned carries, oldest first: the records it
    /// writes (marked again if it fails) and the kills and events that follow it.
    writing: VecDeque<Outputs>,
}

impl Scheduler for Services {
    type Request = Job;

    fn spec(&self) -> FrameworkSpec {
        FrameworkSpec::long_running(FRAMEWORK_NAME, store::FRAMEWORK_ID)
            .reconcile_every(RECONCILE_EVERY)
    }

    /// Subscribe once there is an app (a master without apps shows no services framework).
    fn has_work(&self) -> bool {
        self.engine.apps().next().is_some()
            || self.engine.deployments().next().is_some()
            || self.engine.pods().next().is_some()
            || self.engine.pod_deployments().next().is_some()
    }

    /// Waiting instances, and backed-off ones (they launch when their delay ends).
    fn wants_offers(&self, now: SystemTime) -> bool {
        let now = secs(now);
        self.engine.wants_offers(now) || self.engine.next_backoff_end(now).is_some()
    }

    /// Place waiting instances (apps first, then pods on the offers left); persist them
    /// before the launches leave.
    fn offers(&mut self, offers: Vec<Offer>, now: SystemTime) -> Vec<Command> {
        let now = secs(now);
        let launches = meseta_phases::timed(Phase::Placement, || self.engine.offers(&offers, now));
        let mut used: HashSet<String> = launches
            .iter()
            .map(|l| l.offer_id.as_str().to_owned())
            .collect();
        let left: Vec<&Offer> = offers
            .iter()
            .filter(|o| !used.contains(o.id.as_str()))
            .collect();
        let groups = if left.is_empty() {
            Vec::new()
        } else {
            meseta_phases::timed(Phase::Placement, || self.engine.pod_offers(&left, now))
        };
        used.extend(groups.iter().map(|g| g.offer_id.as_str().to_owned()));
        let unused: Vec<IdValue> = offers
            .iter()
            .filter(|o| !used.contains(o.id.as_str()))
            .map(|o| o.id.clone())
            .collect();
        // Write-ahead: the instances are recorded as launched before the ACCEPT leaves.
        let mut cmds = vec![Command::Persist];
        cmds.extend(launches.into_iter().map(|l| Command::Launch {
            offer_id: l.offer_id,
            tasks: l.tasks,
        }));
        cmds.extend(groups.into_iter().map(|g| Command::LaunchGroup {
            offer_id: g.offer_id,
            executor: Box::new(g.executor),
            tasks: g.tasks,
        }));
        if !unused.is_empty() {
            // Waiting instances (or ones backed off) want these offers back soon.
            let refuse_seconds = if self.engine.wants_offers(now) {
                DECLINE_BUSY_SECONDS
            } else if let Some(t) = self.engine.next_backoff_end(now) {
                (t - now).clamp(0.1, DECLINE_IDLE_SECONDS)
            } else {
                DECLINE_IDLE_SECONDS
            };
            cmds.push(Command::Decline {
                offer_ids: unused,
                refuse_seconds,
            });
        }
        cmds
    }

    fn status(&mut self, status: &TaskStatus, now: SystemTime) -> Vec<Command> {
        meseta_phases::timed(Phase::StatusServices, || {
            self.engine.on_status(status, secs(now))
        });
        Vec::new()
    }

    /// The answer is released only once the change is written: a request whose write failed
    /// (the store is unreachable, or this master no longer leads and its write was fenced) is
    /// answered 503, never acknowledged.
    fn request(&mut self, job: Job, now: SystemTime) -> Vec<Command> {
        let answer = job(&mut self.engine, secs(now));
        vec![Command::Reply(Box::new(move |written| {
            if written.is_ok() {
                answer();
            }
        }))]
    }

    fn tick(&mut self, now: SystemTime) -> Vec<Command> {
        self.engine.tick(secs(now));
        vec![Command::Persist]
    }

    fn subscribed(&mut self, recovering: bool, _now: SystemTime) -> Vec<Command> {
        if recovering {
            Vec::new()
        } else {
            self.reconcile()
        }
    }

    /// Instances on a machine going into maintenance are replaced elsewhere when it goes
    /// down, so the services scheduler agrees to every window.
    fn inverse_offers(&mut self, offers: &[InverseOffer]) -> Vec<Command> {
        vec![Command::AcceptInverseOffers(
            offers.iter().map(|io| io.id.clone()).collect(),
        )]
    }

    /// Kills still owed, and every live task (those that ended meanwhile, or never reached an
    /// agent, come back terminal and are relaunched).
    fn reconcile(&mut self) -> Vec<Command> {
        let tasks: Vec<ReconcileTask> = self
            .engine
            .live_tasks()
            .into_iter()
            .map(|(t, a)| ReconcileTask {
                task_id: IdValue::new(t),
                agent_id: a.map(IdValue::new),
            })
            .collect();
        let mut cmds: Vec<Command> = self.engine.pending_kills().into_iter().map(kill).collect();
        cmds.push(Command::Reconcile(tasks));
        cmds
    }

    /// What changed, serialized now and written in the background.
    fn persist(&mut self) -> Option<Commit> {
        let out = self.engine.take_outputs();
        if out.nothing_to_persist() && out.kills.is_empty() && out.events.is_empty() && !out.revive
        {
            return None;
        }
        let ops = store::encode(&self.engine, &out);
        self.writing.push_back(out);
        let store = self.master.shared_store();
        Some(Box::pin(async move {
            let ops = ops?;
            if ops.is_empty() {
                return Ok(());
            }
            store::write_ops(&*store, ops).await
        }))
    }

    /// Kills, revives and events after the store write; after a failed write its records are
    /// marked again, so the next write retries them.
    fn persisted(&mut self, outcome: Result<(), &StoreError>, _now: SystemTime) -> Vec<Command> {
        let Some(out) = self.writing.pop_front() else {
            return Vec::new();
        };
        if outcome.is_err() {
            self.engine.mark_unwritten(&out);
        }
        let mut cmds: Vec<Command> = out.kills.into_iter().map(kill).collect();
        if out.revive {
            cmds.push(Command::Revive);
        }
        cmds.extend(out.events.into_iter().map(|data| Command::Publish {
            kind: event_type(&data),
            data,
        }));
        cmds
    }
}
