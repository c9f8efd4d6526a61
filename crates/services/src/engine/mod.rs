//! The services scheduler as a pure state machine (no I/O, time passed in as unix seconds).
//!
//! The built-in Marathon (`crates/marathon`) owns one [`Engine`]: it feeds
//! it API requests, offers and task status updates, and carries out what the engine leaves in
//! its [`Outputs`]: tasks to launch (returned by [`Engine::offers`]), tasks to kill, Marathon
//! events to publish, and the records to write to the store.
//!
//! ```text
//!  request ──▶ app change + Deployment ──▶ advance(): each step creates/decommissions Instances
//!  offers  ──▶ place(): waiting instances → TaskInfos (constraints, ports, backoff, reasons)
//!  status  ──▶ instance state/health; a failed instance is relaunched after its backoff
//! ```
//!
//! An [`Instance`] is a slot that keeps its id across relaunches (its task id carries the
//! incarnation). Deployments never launch directly: they create instances with goal Running
//! (placed on the next offers) and give instances the goal Decommissioned (killed, forgotten
//! once terminal). Every decision is recomputed from the instance table, so an engine restored
//! from the store continues a deployment where it stopped.

mod canary;
mod claims;
mod condition;
mod groups;
mod instance;
pub mod model;
mod place;
pub mod pods;
mod progress;
mod requests;
mod status;
pub mod view;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use meseta_api::marathon::App;
use serde_json::Value;

pub use groups::{GroupError, GroupOutcome};
pub use model::{
    marathon_ts, AppState, Backoff, Canary, Deployment, DeploymentKind, Goal, HealthRecord,
    Instance, InstanceRecord, OfferStats, Ports, TaskFailure,
};
use model::{Interner, TASK_SEPARATOR};
pub use place::Launch;
pub use pods::{PodChange, PodDeployment, PodInstance, PodLaunchOrder, PodState};
pub use requests::{DeploymentResult, EngineError, KilledTask};
pub use status::{ReadinessProbe, HEALTH_KILL_REASON};

/// How many earlier versions of an app are kept.
pub const MAX_VERSIONS: usize = 20;
/// Most instances of one app created and waiting for an offer at a time; the rest of what a
/// deployment wants is a count until these are placed.
pub const MAX_WAITING: usize = 256;
/// First service port handed out for `portDefinitions[].port: 0`.
const SERVICE_PORT_MIN: u32 = 10_000;

/// A kill the shell must send.
#[derive(Debug, Clone, PartialEq)]
pub struct KillOrder {
    /// Task id.
    pub task_id: String,
    /// Agent, when known.
    pub agent_id: Option<String>,
}

/// Side effects waiting for the shell.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Tasks to kill.
    pub kills: Vec<KillOrder>,
    /// Marathon events (`eventType` set), in order.
    pub events: Vec<Value>,
    /// Apps to write.
    pub apps: BTreeSet<String>,
    /// Apps to delete (with their instances).
    pub forget_apps: BTreeSet<String>,
    /// Instances to write: (app id, instance id).
    pub instances: BTreeSet<(String, String)>,
    /// Instances to delete.
    pub forget_instances: BTreeSet<(String, String)>,
    /// Deployments to write.
    pub deployments: BTreeSet<String>,
    /// Deployments to delete.
    pub forget_deployments: BTreeSet<String>,
    /// Pods to write (definition, versions, instances, deployment in one record).
    pub pods: BTreeSet<String>,
    /// Pods to delete.
    pub forget_pods: BTreeSet<String>,
    /// New instances wait for offers (revive).
    pub revive: bool,
}

impl Outputs {
    /// True when nothing must be written.
    pub fn nothing_to_persist(&self) -> bool {
        self.apps.is_empty()
            && self.forget_apps.is_empty()
            && self.instances.is_empty()
            && self.forget_instances.is_empty()
            && self.deployments.is_empty()
            && self.forget_deployments.is_empty()
            && self.pods.is_empty()
            && self.forget_pods.is_empty()
    }
}

/// The services scheduler state.
#[derive(Debug, Default)]
pub struct Engine {
    pub(crate) apps: BTreeMap<String, AppState>,
    /// App id → instance id → instance (the key shares the instance's id). Instances are boxed:
    /// map nodes are often half empty, and an empty slot then costs 24 bytes, not 168.
    pub(crate) instances: BTreeMap<String, BTreeMap<Arc<str>, Box<Instance>>>,
    /// Safe app id (the prefix of its instance ids) → the app ids that have it, to find the
    /// app of a task without an index entry per task.
    pub(crate) safe_ids: HashMap<String, Vec<String>>,
    /// Some restored instance has a task id not derived from its instance id (then tasks not
    /// found by their id's form are also searched for among those).
    odd_task_ids: bool,
    /// Versions, configurations, agent ids and hostnames shared by instances.
    pub(crate) strings: Interner,
    pub(crate) deployments: BTreeMap<String, Deployment>,
    /// Pods by id.
    pub(crate) pods: BTreeMap<String, PodState>,
    /// Hostname, attributes and fault domain of agents seen in offers (for constraints).
    pub(crate) agents: HashMap<String, place::AgentInfo>,
    /// App id → how many of its instances wait for an offer ([`Instance::needs_launch`]),
    /// only apps with some; kept in step with every change of an instance's goal or task (see
    /// [`note_waiting`]), so placement and `wants_offers` look at these apps only.
    pub(crate) waiting: BTreeMap<String, usize>,
    id_seed: u128,
    id_counter: u64,
    last_version_ms: i64,
    pub(crate) out: Outputs,
}

impl Engine {
    /// An empty engine; `seed` makes generated ids unique (pass a random value in production).
    pub fn new(seed: u128) -> Engine {
        Engine {
            id_seed: seed,
            ..Engine::default()
        }
    }

    /// An engine over persisted state (apps, their instances, deployments).
    pub fn restore(
        seed: u128,
        apps: Vec<AppState>,
        instances: Vec<(String, Instance)>,
        deployments: Vec<Deployment>,
    ) -> Engine {
        let mut e = Engine::new(seed);
        for a in apps {
            e.add_app_id(&a.app);
            e.apps.insert(a.app.id.clone(), a);
        }
        for (app, mut inst) in instances {
            if !e.apps.contains_key(&app) {
                continue;
            }
            inst.intern(&mut e.strings);
            e.odd_task_ids |= inst.has_odd_task_id();
            e.instances
                .entry(app)
                .or_default()
                .insert(Arc::clone(&inst.id), Box::new(inst));
        }
        for d in deployments {
            e.deployments.insert(d.id.clone(), d);
        }
        e.waiting = e.count_waiting();
        e.trim_waiting();
        e
    }

    /// The waiting counts recomputed from the instance table.
    pub(crate) fn count_waiting(&self) -> BTreeMap<String, usize> {
        self.instances
            .iter()
            .map(|(app, m)| (app.clone(), m.values().filter(|i| i.needs_launch()).count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Forget never-launched instances past [`MAX_WAITING`] per app (records written before
    /// waiting instances were bounded); the deployments that wanted them create them again as
    /// the others are placed.
    fn trim_waiting(&mut self) {
        let mut extra: Vec<(String, Arc<str>)> = Vec::new();
        for (app, m) in &self.instances {
            let never_launched = m
                .values()
                .filter(|i| i.needs_launch() && i.task_id().is_none());
            for i in never_launched.skip(MAX_WAITING) {
                extra.push((app.clone(), Arc::clone(&i.id)));
            }
        }
        for (app, inst) in extra {
            self.forget_instance(&app, &inst);
        }
    }

    /// Take the side effects accumulated since the last call.
    pub fn take_outputs(&mut self) -> Outputs {
        #[cfg(test)]
        assert_eq!(
            self.waiting,
            self.count_waiting(),
            "waiting counts out of step"
        );
        std::mem::take(&mut self.out)
    }

    /// Marks again the records a failed write carried (`failed`, from
    /// [`Engine::take_outputs`]) so the next write retries them, except where a later change
    /// marked the record the other way (deleted since, or written again since a deletion).
    pub fn mark_unwritten(&mut self, failed: &Outputs) {
        fn again<K: Ord + Clone>(
            failed: &BTreeSet<K>,
            marks: &mut BTreeSet<K>,
            other: &BTreeSet<K>,
        ) {
            marks.extend(failed.iter().filter(|k| !other.contains(k)).cloned());
        }
        let out = &mut self.out;
        again(&failed.instances, &mut out.instances, &out.forget_instances);
        again(
            &failed.forget_instances,
            &mut out.forget_instances,
            &out.instances,
        );
        again(&failed.apps, &mut out.apps, &out.forget_apps);
        again(&failed.forget_apps, &mut out.forget_apps, &out.apps);
        again(
            &failed.deployments,
            &mut out.deployments,
            &out.forget_deployments,
        );
        again(
            &failed.forget_deployments,
            &mut out.forget_deployments,
            &out.deployments,
        );
        again(&failed.pods, &mut out.pods, &out.forget_pods);
        again(&failed.forget_pods, &mut out.forget_pods, &out.pods);
    }

    /// Visible apps (not being removed), by id.
    pub fn apps(&self) -> impl Iterator<Item = &AppState> {
        self.apps.values().filter(|a| !a.deleted)
    }

    /// One visible app.
    pub fn app(&self, id: &str) -> Option<&AppState> {
        self.apps.get(id).filter(|a| !a.deleted)
    }

    /// Any app record, removed ones included (for persistence).
    pub fn app_record(&self, id: &str) -> Option<&AppState> {
        self.apps.get(id)
    }

    /// Instances of an app.
    pub fn instances_of(&self, app: &str) -> impl Iterator<Item = &Instance> {
        self.instances
            .get(app)
            .into_iter()
            .flat_map(|m| m.values().map(|i| &**i))
    }

    /// One instance.
    pub fn instance(&self, app: &str, id: &str) -> Option<&Instance> {
        self.instances
            .get(app)
            .and_then(|m| m.get(id))
            .map(|i| &**i)
    }

    /// Running deployments, oldest id order.
    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.deployments.values()
    }

    /// One deployment.
    pub fn deployment(&self, id: &str) -> Option<&Deployment> {
        self.deployments.get(id)
    }

    /// Ids of deployments touching `app`.
    pub fn deployments_of(&self, app: &str) -> Vec<String> {
        self.deployments
            .values()
            .filter(|d| d.plan.affects(app))
            .map(|d| d.id.clone())
            .collect()
    }

    /// The app and instance a task belongs to (the current task of an instance, until it is
    /// terminal).
    pub fn task_owner(&self, task_id: &str) -> Option<(&str, &str)> {
        self.task_index(task_id).map(|(a, i)| (a, &*i.id))
    }

    /// The app and instance of a current, not yet terminal task.
    pub(crate) fn task_index(&self, task_id: &str) -> Option<(&str, &Instance)> {
        let found = task_id
            .rsplit_once(TASK_SEPARATOR)
            .and_then(|(inst, _)| self.instance_owner(inst))
            .filter(|(_, i)| i.indexed && i.is_task(task_id));
        if found.is_some() || !self.odd_task_ids {
            return found;
        }
        self.instances.iter().find_map(|(a, m)| {
            m.values()
                .find(|i| i.indexed && i.has_odd_task_id() && i.is_task(task_id))
                .map(|i| (a.as_str(), &**i))
        })
    }

    /// The app and instance of an instance id.
    pub(crate) fn instance_owner(&self, inst: &str) -> Option<(&str, &Instance)> {
        let in_app = |a: &str| {
            self.instances
                .get_key_value(a)
                .and_then(|(a, m)| Some((a.as_str(), &**m.get(inst)?)))
        };
        let by_form = inst
            .rsplit_once(".instance-")
            .and_then(|(safe, _)| self.safe_ids.get(safe))
            .and_then(|apps| apps.iter().find_map(|a| in_app(a)));
        // Instance ids of another form (from records) are searched for in every app.
        by_form.or_else(|| self.instances.keys().find_map(|a| in_app(a)))
    }

    /// A mutable instance.
    pub(crate) fn instance_mut(&mut self, app: &str, inst: &str) -> Option<&mut Instance> {
        self.instances.get_mut(app)?.get_mut(inst).map(|i| &mut **i)
    }

    /// Register an app's instance table and safe id.
    pub(crate) fn add_app_id(&mut self, app: &App) {
        self.instances.entry(app.id.clone()).or_default();
        let ids = self.safe_ids.entry(app.safe_id()).or_default();
        if !ids.contains(&app.id) {
            ids.push(app.id.clone());
        }
    }

    /// Forget an app's instance table and safe id.
    pub(crate) fn remove_app_id(&mut self, app: &App) {
        self.instances.remove(&app.id);
        self.waiting.remove(&app.id);
        let safe = app.safe_id();
        if let Some(ids) = self.safe_ids.get_mut(&safe) {
            ids.retain(|a| *a != app.id);
            if ids.is_empty() {
                self.safe_ids.remove(&safe);
            }
        }
    }

    /// Every live task id with its agent (for reconciliation).
    pub fn live_tasks(&self) -> Vec<(String, Option<String>)> {
        let mut tasks = self.pod_live_tasks();
        tasks.extend(self.app_live_tasks());
        tasks
    }

    fn app_live_tasks(&self) -> Vec<(String, Option<String>)> {
        self.instances
            .values()
            .flat_map(|m| m.values())
            .filter(|i| i.active())
            .filter_map(|i| {
                i.task_id()
                    .map(|t| (t, i.agent_id.as_deref().map(str::to_owned)))
            })
            .collect()
    }

    /// Tasks of decommissioned instances still alive (their kill is sent again after a restart
    /// or a lost subscription, when the first one may never have reached the master).
    pub fn pending_kills(&self) -> Vec<KillOrder> {
        let mut kills = self.pod_pending_kills();
        kills.extend(self.app_pending_kills());
        kills
    }

    fn app_pending_kills(&self) -> Vec<KillOrder> {
        self.instances
            .values()
            .flat_map(|m| m.values())
            .filter(|i| i.goal == Goal::Decommissioned && i.active())
            .filter_map(|i| {
                Some(KillOrder {
                    task_id: i.task_id()?,
                    agent_id: i.agent_id.as_deref().map(str::to_owned),
                })
            })
            .collect()
    }

    /// True when some instance waits for an offer.
    pub fn wants_offers(&self, now: f64) -> bool {
        self.pods_want_offers(now)
            || self
                .waiting_apps()
                .any(|(_, a)| !a.deleted && a.backoff.until <= now)
    }

    /// Apps with instances waiting for an offer, by id.
    pub(crate) fn waiting_apps(&self) -> impl Iterator<Item = (&String, &AppState)> {
        self.waiting
            .keys()
            .filter_map(|id| self.apps.get_key_value(id))
    }

    /// Earliest time a backed-off app may launch again (for the shell's timer).
    pub fn next_backoff_end(&self, now: f64) -> Option<f64> {
        self.waiting_apps()
            .filter(|(_, a)| !a.deleted && a.backoff.until > now)
            .map(|(_, a)| a.backoff.until)
            .chain(self.pods_next_backoff_end(now))
            .reduce(f64::min)
    }

    /// A fresh UUID-shaped id.
    pub(crate) fn new_uuid(&mut self) -> String {
        self.id_counter += 1;
        let v = self.id_seed
            ^ u128::from(self.id_counter).rotate_left(64)
            ^ u128::from(self.id_counter);
        uuid::Uuid::from_u128(v).hyphenated().to_string()
    }

    /// A version timestamp strictly after every earlier one.
    pub(crate) fn new_version(&mut self, now: f64) -> String {
        let mut ms = (now * 1000.0).round() as i64;
        if ms <= self.last_version_ms {
            ms = self.last_version_ms + 1;
        }
        self.last_version_ms = ms;
        marathon_ts(ms as f64 / 1000.0)
    }

    /// Service ports already in use by any app.
    pub(crate) fn used_service_ports(&self, except: &str) -> BTreeSet<u32> {
        self.apps
            .values()
            .filter(|a| a.app.id != except)
            .flat_map(|a| a.app.port_definitions.iter().map(|p| p.port))
            .collect()
    }

    /// Give every `port: 0` definition a free service port (non-zero ports are kept).
    pub(crate) fn assign_service_ports(&self, app: &mut App, old: Option<&App>) {
        let mut used = self.used_service_ports(&app.id);
        let mut next = SERVICE_PORT_MIN;
        for (i, pd) in app.port_definitions.iter_mut().enumerate() {
            if pd.port != 0 {
                used.insert(pd.port);
                continue;
            }
            if let Some(prev) = old.and_then(|o| o.port_definitions.get(i)).map(|p| p.port) {
                if prev != 0 && !used.contains(&prev) {
                    pd.port = prev;
                    used.insert(prev);
                    continue;
                }
            }
            while used.contains(&next) {
                next += 1;
            }
            pd.port = next;
            used.insert(next);
        }
    }

    pub(crate) fn persist_instance(&mut self, app: &str, inst: &str) {
        let key = (app.to_owned(), inst.to_owned());
        self.out.forget_instances.remove(&key);
        self.out.instances.insert(key);
    }

    pub(crate) fn forget_instance(&mut self, app: &str, inst: &str) {
        let key = (app.to_owned(), inst.to_owned());
        self.out.instances.remove(&key);
        self.out.forget_instances.insert(key);
        if let Some(m) = self.instances.get_mut(app) {
            if let Some(i) = m.remove(inst) {
                note_waiting(&mut self.waiting, app, i.needs_launch(), false);
            }
        }
    }

    pub(crate) fn persist_app(&mut self, app: &str) {
        self.out.forget_apps.remove(app);
        self.out.apps.insert(app.to_owned());
    }

    pub(crate) fn persist_deployment(&mut self, id: &str) {
        self.out.forget_deployments.remove(id);
        self.out.deployments.insert(id.to_owned());
    }

    pub(crate) fn event(&mut self, kind: &str, now: f64, mut body: Value) {
        if let Value::Object(m) = &mut body {
            m.insert("eventType".into(), Value::String(kind.to_owned()));
            m.insert("timestamp".into(), Value::String(marathon_ts(now)));
        }
        self.out.events.push(body);
    }
}

/// Counts a change of one instance of `app` from waiting (`was`) to waiting (`is`) in
/// [`Engine::waiting`]. Every change of an instance's goal, state or task goes through it.
pub(crate) fn note_waiting(waiting: &mut BTreeMap<String, usize>, app: &str, was: bool, is: bool) {
    match (was, is) {
        (false, true) => *waiting.entry(app.to_owned()).or_default() += 1,
        (true, false) => {
            if let Some(n) = waiting.get_mut(app) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    waiting.remove(app);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod pods_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod waiting_tests;
