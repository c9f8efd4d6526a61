//! The one task that owns the services [`Engine`]: recovers it from the store, subscribes as
//! the `marathon` framework, and loops over HTTP jobs, framework events, readiness results and
//! a tick. After every input the engine's outputs are carried out in this order: store writes
//! (one transaction), then launches/kills, then events — so nothing acknowledged or launched is
//! ever missing from the store.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use meseta_api::scheduler::{
    Accept, Acknowledge, CallKind, Decline, Event, Filters, FrameworkInfo, IdValue, Kill, Launch,
    Offer, Operation, Reconcile, ReconcileTask,
};
use meseta_services::engine::{Engine, Launch as EngineLaunch};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::readiness::{Readiness, Ready};
use super::{store, Job, ServicesHandle, FRAMEWORK_NAME};
use crate::{unix_now, FrameworkConnection, Master};

/// One week, as Marathon.
const FAILOVER_TIMEOUT: f64 = 604_800.0;
/// How often time-driven work runs.
const TICK: Duration = Duration::from_millis(250);
/// Declined offers stay away this long while nothing waits (REVIVE brings them back sooner).
const DECLINE_IDLE_SECONDS: f64 = 120.0;
/// … and this long while instances wait but did not fit.
const DECLINE_BUSY_SECONDS: f64 = 1.0;
/// Events handled before one store commit.
const MAX_EVENT_BATCH: usize = 512;
/// Delay before subscribing again after the subscription ended.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);
/// How often live tasks are reconciled.
const RECONCILE_EVERY: Duration = Duration::from_secs(60);

/// Start the runtime for `master`.
pub(crate) fn start(
    master: &Master,
    cancel: CancellationToken,
) -> (ServicesHandle, JoinHandle<()>) {
    let (handle, rx) = ServicesHandle::channel();
    let m = master.clone();
    let h = handle.clone();
    let task = tokio::spawn(async move { run(m, h, rx, cancel).await });
    (handle, task)
}

struct Runtime {
    master: Master,
    handle: ServicesHandle,
    engine: Engine,
    conn: Option<FrameworkConnection>,
    framework_id: Option<String>,
    suppressed: bool,
    recovering: bool,
    next_subscribe: Instant,
    last_reconcile: Instant,
    readiness: Readiness,
    ready_tx: mpsc::Sender<Ready>,
}

enum Wake {
    Job(Option<Job>),
    Event(Option<Event>),
    Ready(Option<Ready>),
    Tick,
}

async fn run(
    master: Master,
    handle: ServicesHandle,
    mut rx: mpsc::Receiver<Job>,
    cancel: CancellationToken,
) {
    let loaded = match store::load(master.store()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "services scheduler cannot load its apps; not running");
            return;
        }
    };
    let framework_id = store::framework_id(master.store()).await.ok().flatten();
    let (apps, instances, deployments) = loaded;
    tracing::info!(
        apps = apps.len(),
        instances = instances.len(),
        deployments = deployments.len(),
        "services scheduler recovered"
    );
    let seed = uuid::Uuid::new_v4().as_u128();
    let (ready_tx, mut ready_rx) = mpsc::channel(256);
    let mut rt = Runtime {
        master,
        handle,
        engine: Engine::restore(seed, apps, instances, deployments),
        conn: None,
        framework_id,
        suppressed: false,
        recovering: true,
        next_subscribe: Instant::now(),
        last_reconcile: Instant::now(),
        readiness: Readiness::default(),
        ready_tx,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        rt.ensure_subscribed().await;
        let wake = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            j = rx.recv() => Wake::Job(j),
            e = next_event(&mut rt.conn) => Wake::Event(e),
            r = ready_rx.recv() => Wake::Ready(r),
            _ = tick.tick() => Wake::Tick,
        };
        let now = unix_now();
        let mut replies: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
        match wake {
            Wake::Job(None) => return,
            Wake::Job(Some(job)) => {
                replies.push(job(&mut rt.engine, now));
                // Take the other waiting requests into the same commit.
                while let Ok(job) = rx.try_recv() {
                    replies.push(job(&mut rt.engine, now));
                }
            }
            Wake::Event(Some(e)) => {
                rt.on_event(e, now).await;
                for _ in 0..MAX_EVENT_BATCH {
                    let Some(conn) = rt.conn.as_mut() else { break };
                    match conn.next_event().now_or_never() {
                        Some(Some(e)) => rt.on_event(e, now).await,
                        Some(None) => {
                            rt.disconnected();
                            break;
                        }
                        None => break,
                    }
                }
            }
            Wake::Event(None) => rt.disconnected(),
            Wake::Ready(Some((app, inst, task))) => rt.engine.mark_ready(&app, &inst, &task, now),
            Wake::Ready(None) => {}
            Wake::Tick => rt.on_tick(now),
        }
        rt.engine.tick(now);
        rt.carry_out().await;
        for r in replies {
            r();
        }
    }
}

async fn next_event(conn: &mut Option<FrameworkConnection>) -> Option<Event> {
    match conn {
        Some(c) => c.next_event().await,
        None => std::future::pending().await,
    }
}

impl Runtime {
    /// Subscribe once there is an app (a master without apps shows no services framework).
    async fn ensure_subscribed(&mut self) {
        if self.conn.is_some()
            || Instant::now() < self.next_subscribe
            || self.engine.apps().next().is_none() && self.engine.deployments().next().is_none()
        {
            return;
        }
        self.next_subscribe = Instant::now() + RESUBSCRIBE_AFTER;
        let info = FrameworkInfo {
            user: "root".to_string(),
            name: FRAMEWORK_NAME.to_string(),
            failover_timeout: Some(FAILOVER_TIMEOUT),
            id: self.framework_id.as_deref().map(IdValue::new),
            capabilities: Some(vec![meseta_api::scheduler::Capability {
                kind: "PARTITION_AWARE".to_string(),
            }]),
            ..FrameworkInfo::default()
        };
        match self.master.subscribe(info).await {
            Ok(conn) => {
                self.conn = Some(conn);
                self.suppressed = false;
            }
            Err(e) => tracing::warn!(error = %e, "services scheduler cannot subscribe; retrying"),
        }
    }

    fn disconnected(&mut self) {
        tracing::warn!("services scheduler subscription ended; subscribing again");
        self.conn = None;
    }

    fn call(&self, kind: CallKind) {
        let Some(conn) = &self.conn else { return };
        let name = kind.type_name();
        if let Err(e) = conn.call(kind) {
            tracing::warn!(call = name, error = %e, "services scheduler call refused");
        }
    }

    fn on_tick(&mut self, now: f64) {
        let _ = now;
        self.settle_recovery();
        if self.last_reconcile.elapsed() >= RECONCILE_EVERY {
            self.reconcile();
        }
        let probes = self.engine.readiness_probes();
        if !probes.is_empty() {
            let client = self.master.http_client().clone();
            self.readiness.run(&client, probes, &self.ready_tx);
        }
    }

    /// After a restart: once every agent known before is back, ask about every live task (those
    /// that ended meanwhile, or never reached an agent, come back terminal and are relaunched).
    fn settle_recovery(&mut self) {
        if !self.recovering || self.conn.is_none() || self.master.core().agents_transitioning() {
            return;
        }
        self.recovering = false;
        self.reconcile();
    }

    fn reconcile(&mut self) {
        self.last_reconcile = Instant::now();
        let tasks: Vec<ReconcileTask> = self
            .engine
            .live_tasks()
            .into_iter()
            .map(|(t, a)| ReconcileTask {
                task_id: IdValue::new(t),
                agent_id: a.map(IdValue::new),
            })
            .collect();
        for k in self.engine.pending_kills() {
            self.call(CallKind::Kill {
                kill: Kill {
                    task_id: IdValue::new(k.task_id),
                    agent_id: k.agent_id.map(IdValue::new),
                },
            });
        }
        if !tasks.is_empty() {
            self.call(CallKind::Reconcile {
                reconcile: Reconcile { tasks },
            });
        }
    }

    async fn on_event(&mut self, ev: Event, now: f64) {
        match ev {
            Event::Subscribed { subscribed } => {
                let id = subscribed.framework_id;
                if self.framework_id.as_deref() != Some(id.as_str()) {
                    if let Err(e) = store::save_framework_id(self.master.store(), id.as_str()).await
                    {
                        tracing::error!(error = %e, "cannot persist the services framework id");
                    }
                    self.framework_id = Some(id.value);
                }
                tracing::info!(framework_id = ?self.framework_id, "services scheduler subscribed");
                self.suppressed = false;
                if !self.recovering {
                    self.reconcile();
                }
            }
            Event::Offers { offers } => self.on_offers(offers.offers, now).await,
            Event::Update { update } => {
                if let Some(ack) = Acknowledge::for_status(&update.status) {
                    self.call(CallKind::Acknowledge { acknowledge: ack });
                }
                self.engine.on_status(&update.status, now);
            }
            Event::Error { error } => {
                tracing::warn!(message = %error.message, "services scheduler subscription error");
                if error.message.contains("removed") {
                    self.framework_id = None;
                }
                self.disconnected();
            }
            Event::InverseOffers { inverse_offers } => {
                // Instances on a machine going into maintenance are replaced elsewhere when it
                // goes down, so the services scheduler agrees to every window.
                let ids: Vec<serde_json::Value> = inverse_offers
                    .inverse_offers
                    .iter()
                    .map(|io| serde_json::json!({"value": io.id.as_str()}))
                    .collect();
                self.call(CallKind::AcceptInverseOffers {
                    accept_inverse_offers: serde_json::json!({"inverse_offer_ids": ids}),
                });
            }
            Event::Rescind { .. }
            | Event::Message { .. }
            | Event::Failure { .. }
            | Event::Heartbeat => {}
        }
    }

    /// Place waiting instances; persist them before sending the launches.
    async fn on_offers(&mut self, offers: Vec<Offer>, now: f64) {
        let launches: Vec<EngineLaunch> = self.engine.offers(&offers, now);
        // Write-ahead: the instances are recorded as launched before the ACCEPT leaves.
        self.persist().await;
        let used: std::collections::HashSet<&str> =
            launches.iter().map(|l| l.offer_id.as_str()).collect();
        let unused: Vec<IdValue> = offers
            .iter()
            .filter(|o| !used.contains(o.id.as_str()))
            .map(|o| o.id.clone())
            .collect();
        for l in launches {
            self.call(CallKind::Accept {
                accept: Accept {
                    offer_ids: vec![l.offer_id],
                    operations: vec![Operation::Launch {
                        launch: Launch {
                            task_infos: l.tasks,
                        },
                    }],
                    filters: Some(Filters {
                        refuse_seconds: Some(0.0),
                    }),
                },
            });
        }
        if !unused.is_empty() {
            // Waiting instances (or ones backed off) want these offers back soon.
            let refuse = if self.engine.wants_offers(now) {
                DECLINE_BUSY_SECONDS
            } else if let Some(t) = self.engine.next_backoff_end(now) {
                (t - now).clamp(0.1, DECLINE_IDLE_SECONDS)
            } else {
                DECLINE_IDLE_SECONDS
            };
            self.call(CallKind::Decline {
                decline: Decline {
                    offer_ids: unused,
                    filters: Some(Filters {
                        refuse_seconds: Some(refuse),
                    }),
                },
            });
        }
    }

    /// Write what changed; on failure keep the marks so the next round retries.
    async fn persist(&mut self) {
        let out = self.engine.take_outputs();
        if let Err(e) = store::save(self.master.store(), &self.engine, &out).await {
            tracing::error!(error = %e, "services scheduler cannot persist its state");
        }
        self.apply_effects(out);
    }

    async fn carry_out(&mut self) {
        self.persist().await;
        let now = unix_now();
        // Backed-off instances keep offers coming: they launch when their delay ends.
        let wants = self.engine.wants_offers(now) || self.engine.next_backoff_end(now).is_some();
        if wants && self.suppressed {
            self.call(CallKind::Revive { revive: None });
            self.suppressed = false;
        } else if !wants && !self.suppressed && self.conn.is_some() {
            self.call(CallKind::Suppress { suppress: None });
            self.suppressed = true;
        }
    }

    /// Kills, revives and events after the store write.
    fn apply_effects(&mut self, out: meseta_services::engine::Outputs) {
        for k in out.kills {
            self.call(CallKind::Kill {
                kill: Kill {
                    task_id: IdValue::new(k.task_id),
                    agent_id: k.agent_id.map(IdValue::new),
                },
            });
        }
        if out.revive && self.conn.is_some() {
            self.call(CallKind::Revive { revive: None });
            self.suppressed = false;
        }
        for e in out.events {
            self.handle.publish(e);
        }
        let _: Option<Arc<()>> = None;
    }
}
