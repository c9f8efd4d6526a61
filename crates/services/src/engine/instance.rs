//! An app's instance as the engine keeps it ([`Instance`], compact: one per running instance)
//! and as the master persists it ([`InstanceRecord`], the stable JSON shape), the shared
//! strings many instances hold ([`Interner`], over [`meseta_types::intern::Interner`]) and a
//! task's host ports ([`Ports`]).

use std::sync::Arc;

use meseta_types::TaskState;
use serde::{Deserialize, Serialize};

use super::condition::{condition_name, Goal, HealthRecord};

/// One instance of an app: a slot that keeps its id across task relaunches (incarnations).
///
/// Kept small because the engine holds one per running instance: strings repeated across
/// instances (version, configuration, agent, host) are shared [`Arc<str>`]s, the task id is
/// derived from the id and incarnation, and what is rarely set (health history, unreachable
/// time, a task id of another shape) lives in a boxed [`InstanceExtra`]. It is persisted and
/// read in the shape of [`InstanceRecord`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "InstanceRecord")]
pub struct Instance {
    /// `<safe app id>.instance-<uuid>`.
    pub id: Arc<str>,
    /// The app version (`version`) the current task was launched with.
    pub version: Arc<str>,
    /// The app configuration (`versionInfo.lastConfigChangeAt`) it runs.
    pub config: Arc<str>,
    /// Agent of the current task.
    pub agent_id: Option<Arc<str>>,
    /// Its hostname.
    pub host: Option<Arc<str>>,
    /// Host ports of the current task.
    pub ports: Ports,
    /// When the current task was launched (unix seconds).
    pub staged_at: Option<f64>,
    /// When it reached TASK_RUNNING.
    pub started_at: Option<f64>,
    /// Rarely set parts (`None`: all at their defaults).
    extra: Option<Box<InstanceExtra>>,
    /// Incarnation of the current (or last) task; 0 before the first launch.
    pub incarnation: u32,
    /// Latest task state; `None` while waiting for an offer.
    pub state: Option<TaskState>,
    /// What the scheduler wants.
    pub goal: Goal,
    /// A canary instance (runs the canary's configuration).
    pub canary: bool,
    /// Latest health report (`None`: no checks or none reported yet).
    pub healthy: Option<bool>,
    /// Readiness (true when the app has no readiness checks).
    pub ready: bool,
    /// Chosen to die first by a `scale=true` kill.
    pub sentenced: bool,
    /// A task was launched (`task_id` is set).
    has_task: bool,
    /// Status updates of the current task are accepted (cleared once it is terminal; not
    /// persisted: a restored instance with a task accepts them again).
    pub(crate) indexed: bool,
}

/// The parts of an [`Instance`] that are usually at their defaults.
#[derive(Debug, Clone, Default, PartialEq)]
struct InstanceExtra {
    /// A task id not of the form `<instance>._app.<incarnation>` (only from a record).
    task_id: Option<Box<str>>,
    /// Health history.
    health: HealthRecord,
    /// When its agent became unreachable.
    unreachable_since: Option<f64>,
}

/// The health history of an instance without reports.
static NO_HEALTH: HealthRecord = HealthRecord {
    first_success: None,
    last_success: None,
    last_failure: None,
    consecutive_failures: 0,
    last_failure_cause: None,
};

impl Instance {
    /// A new instance waiting for its first offer.
    pub(crate) fn waiting(
        id: Arc<str>,
        version: Arc<str>,
        config: Arc<str>,
        canary: bool,
        ready: bool,
    ) -> Instance {
        Instance {
            id,
            version,
            config,
            agent_id: None,
            host: None,
            ports: Ports::default(),
            staged_at: None,
            started_at: None,
            extra: None,
            incarnation: 0,
            state: None,
            goal: Goal::Running,
            canary,
            healthy: None,
            ready,
            sentenced: false,
            has_task: false,
            indexed: false,
        }
    }

    /// The current task id (`<instance>._app.<incarnation>`), once launched.
    pub fn task_id(&self) -> Option<String> {
        if !self.has_task {
            return None;
        }
        match self.extra.as_ref().and_then(|x| x.task_id.as_deref()) {
            Some(t) => Some(t.to_owned()),
            None => Some(task_id_of(&self.id, self.incarnation)),
        }
    }

    /// True when `task_id` is the current task's id.
    pub fn is_task(&self, task_id: &str) -> bool {
        if !self.has_task {
            return false;
        }
        if let Some(t) = self.extra.as_ref().and_then(|x| x.task_id.as_deref()) {
            return t == task_id;
        }
        task_id
            .strip_prefix(&*self.id)
            .and_then(|rest| rest.strip_prefix(TASK_SEPARATOR))
            .is_some_and(|n| is_decimal(n, self.incarnation))
    }

    /// The current task's id differs from `<instance>._app.<incarnation>` (an old record).
    pub(crate) fn has_odd_task_id(&self) -> bool {
        self.has_task && self.extra.as_ref().is_some_and(|x| x.task_id.is_some())
    }

    /// Start the next incarnation; returns its task id.
    pub(crate) fn next_task(&mut self) -> String {
        self.incarnation += 1;
        self.has_task = true;
        self.indexed = true;
        if self.extra.is_some() {
            self.edit_extra(|x| x.task_id = None);
        }
        task_id_of(&self.id, self.incarnation)
    }

    /// Health history.
    pub fn health(&self) -> &HealthRecord {
        self.extra.as_ref().map_or(&NO_HEALTH, |x| &x.health)
    }

    /// Change the health history.
    pub(crate) fn edit_health(&mut self, f: impl FnOnce(&mut HealthRecord)) {
        self.edit_extra(|x| f(&mut x.health));
    }

    /// When its agent became unreachable.
    pub fn unreachable_since(&self) -> Option<f64> {
        self.extra.as_ref().and_then(|x| x.unreachable_since)
    }

    /// Set or clear when its agent became unreachable.
    pub(crate) fn set_unreachable_since(&mut self, since: Option<f64>) {
        if since.is_some() || self.extra.is_some() {
            self.edit_extra(|x| x.unreachable_since = since);
        }
    }

    /// Change the rarely set parts; they are dropped again when back at their defaults.
    fn edit_extra(&mut self, f: impl FnOnce(&mut InstanceExtra)) {
        let x = self.extra.get_or_insert_with(Box::default);
        f(x);
        if **x == InstanceExtra::default() {
            self.extra = None;
        }
    }

    /// Replace the shared strings by the engine's copies.
    pub(crate) fn intern(&mut self, strings: &mut Interner) {
        self.version = strings.intern(&self.version);
        self.config = strings.intern(&self.config);
        self.agent_id = self.agent_id.as_deref().map(|a| strings.intern(a));
        self.host = self.host.as_deref().map(|h| strings.intern(h));
    }

    /// True while the current task is launched and not terminal.
    pub fn active(&self) -> bool {
        self.has_task && self.state.is_some_and(|s| !s.is_terminal())
    }

    /// True when the instance waits for an offer (wanted, no live task).
    pub fn needs_launch(&self) -> bool {
        self.goal == Goal::Running && !self.active()
    }

    /// Running, healthy when checked, and ready: what deployments count.
    pub fn counts(&self, has_checks: bool) -> bool {
        self.state == Some(TaskState::Running)
            && (!has_checks || self.healthy == Some(true))
            && self.ready
    }

    /// Marathon's instance condition name (`instance_changed_event`).
    pub fn condition(&self) -> &'static str {
        match self.state {
            None => "Scheduled",
            Some(s) => condition_name(s),
        }
    }
}

/// Host ports of a task: a single port (the usual case) is kept inline, others in a boxed
/// slice. Reads as a `[u64]` and serializes as a JSON array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports(PortsRepr);

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortsRepr {
    One(u64),
    Many(Box<[u64]>),
}

impl Default for Ports {
    fn default() -> Ports {
        Ports(PortsRepr::Many(Box::default()))
    }
}

impl From<&[u64]> for Ports {
    fn from(ports: &[u64]) -> Ports {
        match ports {
            [one] => Ports(PortsRepr::One(*one)),
            many => Ports(PortsRepr::Many(many.into())),
        }
    }
}

impl std::ops::Deref for Ports {
    type Target = [u64];

    fn deref(&self) -> &[u64] {
        match &self.0 {
            PortsRepr::One(p) => std::slice::from_ref(p),
            PortsRepr::Many(ps) => ps,
        }
    }
}

impl Serialize for Ports {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

/// Between an instance id and the incarnation in a task id.
pub(crate) const TASK_SEPARATOR: &str = "._app.";

/// The task id of an instance's incarnation.
fn task_id_of(instance: &str, incarnation: u32) -> String {
    format!("{instance}{TASK_SEPARATOR}{incarnation}")
}

/// True when `s` is `n` written in decimal (no sign, no leading zeros).
fn is_decimal(s: &str, n: u32) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
        && s.parse::<u32>() == Ok(n)
}

/// An instance as persisted under `/meseta/services/instances<app>/<instance>` (the shape
/// [`Instance`] had before it was made compact; every field in its original order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// `<safe app id>.instance-<uuid>`.
    pub id: String,
    /// Incarnation of the current (or last) task; 0 before the first launch.
    pub incarnation: u32,
    /// The current task id (`<instance>._app.<incarnation>`), once launched.
    pub task_id: Option<String>,
    /// The app version (`version`) the current task was launched with.
    pub version: String,
    /// The app configuration (`versionInfo.lastConfigChangeAt`) it runs.
    pub config: String,
    /// A canary instance (runs the canary's configuration).
    #[serde(default)]
    pub canary: bool,
    /// What the scheduler wants.
    pub goal: Goal,
    /// Latest task state; `None` while waiting for an offer.
    pub state: Option<TaskState>,
    /// Agent of the current task.
    pub agent_id: Option<String>,
    /// Its hostname.
    pub host: Option<String>,
    /// Host ports of the current task.
    #[serde(default)]
    pub ports: Vec<u64>,
    /// When the current task was launched (unix seconds).
    pub staged_at: Option<f64>,
    /// When it reached TASK_RUNNING.
    pub started_at: Option<f64>,
    /// Latest health report (`None`: no checks or none reported yet).
    pub healthy: Option<bool>,
    /// Health history.
    #[serde(default)]
    pub health: HealthRecord,
    /// Readiness (true when the app has no readiness checks).
    pub ready: bool,
    /// When its agent became unreachable.
    pub unreachable_since: Option<f64>,
    /// Chosen to die first by a `scale=true` kill.
    #[serde(default)]
    pub sentenced: bool,
}

/// [`InstanceRecord`] borrowing from an [`Instance`]. Fields at their default (absent
/// options, no health history, not a canary, not sentenced, no ports) are left out: a
/// placement writes one record per instance, and on etcd the bytes of each cost CPU on every
/// member. [`InstanceRecord`] reads them back as the defaults (and reads records that have them).
#[derive(Serialize)]
struct InstanceRecordRef<'a> {
    id: &'a str,
    incarnation: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<String>,
    version: &'a str,
    config: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    canary: bool,
    goal: Goal,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<TaskState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "<[u64]>::is_empty")]
    ports: &'a [u64],
    #[serde(skip_serializing_if = "Option::is_none")]
    staged_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthy: Option<bool>,
    #[serde(skip_serializing_if = "is_no_health")]
    health: &'a HealthRecord,
    ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    unreachable_since: Option<f64>,
    #[serde(skip_serializing_if = "is_false")]
    sentenced: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_no_health(h: &&HealthRecord) -> bool {
    **h == NO_HEALTH
}

impl Serialize for Instance {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        InstanceRecordRef {
            id: &self.id,
            incarnation: self.incarnation,
            task_id: self.task_id(),
            version: &self.version,
            config: &self.config,
            canary: self.canary,
            goal: self.goal,
            state: self.state,
            agent_id: self.agent_id.as_deref(),
            host: self.host.as_deref(),
            ports: &self.ports,
            staged_at: self.staged_at,
            started_at: self.started_at,
            healthy: self.healthy,
            health: self.health(),
            ready: self.ready,
            unreachable_since: self.unreachable_since(),
            sentenced: self.sentenced,
        }
        .serialize(serializer)
    }
}

impl From<InstanceRecord> for Instance {
    fn from(r: InstanceRecord) -> Instance {
        let derived = r
            .task_id
            .as_deref()
            .is_some_and(|t| t == task_id_of(&r.id, r.incarnation));
        let extra = InstanceExtra {
            task_id: r.task_id.as_deref().filter(|_| !derived).map(Box::from),
            health: r.health,
            unreachable_since: r.unreachable_since,
        };
        Instance {
            id: Arc::from(r.id),
            version: Arc::from(r.version),
            config: Arc::from(r.config),
            agent_id: r.agent_id.map(Arc::from),
            host: r.host.map(Arc::from),
            ports: Ports::from(r.ports.as_slice()),
            staged_at: r.staged_at,
            started_at: r.started_at,
            extra: (extra != InstanceExtra::default()).then(|| Box::new(extra)),
            incarnation: r.incarnation,
            state: r.state,
            goal: r.goal,
            canary: r.canary,
            healthy: r.healthy,
            ready: r.ready,
            sentenced: r.sentenced,
            has_task: r.task_id.is_some(),
            indexed: r.task_id.is_some(),
        }
    }
}

/// One shared copy of each string many instances hold (versions, configurations, agent ids,
/// hostnames). Copies nobody else holds any more are dropped by [`Interner::prune`].
#[derive(Debug)]
pub(crate) struct Interner(meseta_types::intern::Interner<str>);

/// The interner is pruned when it has grown past twice its last size and at least this.
const INTERNER_PRUNE_MIN: usize = 256;

impl Default for Interner {
    fn default() -> Interner {
        Interner(meseta_types::intern::Interner::new(INTERNER_PRUNE_MIN))
    }
}

impl Interner {
    /// The shared copy of `s`.
    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        self.0.intern(s)
    }

    /// Drop copies only the interner holds, once it has grown enough to make it worthwhile.
    pub(crate) fn prune(&mut self) {
        self.0.prune();
    }

    /// Number of strings held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the engine wrote it before instances were made compact.
    const RECORD: &str = concat!(
        r#"{"id":"prod_web.instance-6f2c1a9e-0000-4000-8000-000000000001","incarnation":2,"#,
        r#""task_id":"prod_web.instance-6f2c1a9e-0000-4000-8000-000000000001._app.2","#,
        r#""version":"2026-01-02T03:04:05.678Z","config":"2026-01-02T03:04:05.000Z","#,
        r#""canary":true,"goal":"Running","state":"TASK_RUNNING","agent_id":"agent-7","#,
        r#""host":"host-7","ports":[31001,31002],"staged_at":10.5,"started_at":11.25,"#,
        r#""healthy":false,"health":{"first_success":11.5,"last_success":12.0,"#,
        r#""last_failure":13.0,"consecutive_failures":1,"last_failure_cause":"boom"},"#,
        r#""ready":true,"unreachable_since":14.0,"sentenced":true}"#
    );

    fn round_trip(json: &str) -> (Instance, String) {
        let i: Instance = serde_json::from_str(json).expect("instance");
        let back = serde_json::to_string(&i).expect("encode");
        (i, back)
    }

    #[test]
    fn records_in_the_original_shape_load_and_are_written_back_identically() {
        let (i, back) = round_trip(RECORD);
        assert_eq!(back, RECORD);
        assert_eq!(
            i.task_id().as_deref(),
            Some("prod_web.instance-6f2c1a9e-0000-4000-8000-000000000001._app.2")
        );
        assert!(!i.has_odd_task_id());
        assert_eq!(i.health().last_failure_cause.as_deref(), Some("boom"));
        assert_eq!(i.unreachable_since(), Some(14.0));
        // The record type itself still reads and writes that shape.
        let r: InstanceRecord = serde_json::from_str(RECORD).expect("record");
        assert_eq!(serde_json::to_string(&r).expect("encode"), RECORD);
        assert_eq!(Instance::from(r), i);
    }

    #[test]
    fn waiting_instances_and_defaulted_fields_round_trip() {
        let waiting = concat!(
            r#"{"id":"a.instance-1","incarnation":0,"task_id":null,"version":"v","config":"c","#,
            r#""canary":true,"goal":"Decommissioned","state":null,"agent_id":null,"host":null,"#,
            r#""ports":[],"staged_at":null,"started_at":null,"healthy":null,"#,
            r#""health":{"first_success":null,"last_success":null,"last_failure":null,"#,
            r#""consecutive_failures":0,"last_failure_cause":null},"ready":false,"#,
            r#""unreachable_since":null,"sentenced":false}"#
        );
        let (i, back) = round_trip(waiting);
        assert_eq!(
            back,
            concat!(
                r#"{"id":"a.instance-1","incarnation":0,"version":"v","config":"c","#,
                r#""canary":true,"goal":"Decommissioned","ready":false}"#
            ),
            "fields at their defaults are left out"
        );
        let (again, _) = round_trip(&back);
        assert_eq!(again, i);
        assert_eq!(i.task_id(), None);
        assert!(!i.is_task("a.instance-1._app.0"));
        // `canary`, `health` and `sentenced` may be missing (older records).
        let old = waiting
            .replace(r#""canary":true,"#, "")
            .replace(r#","sentenced":false"#, "");
        let (j, _) = round_trip(&old);
        assert!(!j.canary && !j.sentenced);
    }

    #[test]
    fn task_ids_of_another_form_are_kept() {
        let odd = RECORD.replace("._app.2\"", "._app.02\"");
        let (i, back) = round_trip(&odd);
        assert_eq!(back, odd);
        assert!(i.has_odd_task_id());
        assert!(i.is_task("prod_web.instance-6f2c1a9e-0000-4000-8000-000000000001._app.02"));
        assert!(!i.is_task("prod_web.instance-6f2c1a9e-0000-4000-8000-000000000001._app.2"));
        let mut next = i.clone();
        assert_eq!(
            next.next_task(),
            "prod_web.instance-6f2c1a9e-0000-4000-8000-000000000001._app.3"
        );
        assert!(!next.has_odd_task_id());
    }

    #[test]
    fn derived_task_ids_match_only_their_exact_form() {
        let mut i = Instance::waiting("x.instance-1".into(), "v".into(), "c".into(), false, true);
        assert_eq!(i.next_task(), "x.instance-1._app.1");
        assert!(i.is_task("x.instance-1._app.1"));
        for other in [
            "x.instance-1._app.01",
            "x.instance-1._app.+1",
            "x.instance-1._app.2",
            "x.instance-1._app.",
            "x.instance-10._app.1",
            "x.instance-1",
        ] {
            assert!(!i.is_task(other), "{other}");
        }
    }

    #[test]
    fn rarely_set_parts_are_dropped_when_back_at_defaults() {
        let mut i = Instance::waiting("x.instance-1".into(), "v".into(), "c".into(), false, true);
        i.set_unreachable_since(Some(3.0));
        i.edit_health(|h| h.consecutive_failures = 2);
        assert!(i.extra.is_some());
        i.set_unreachable_since(None);
        i.edit_health(|h| *h = HealthRecord::default());
        assert!(i.extra.is_none());
    }

    #[test]
    fn an_instance_is_much_smaller_than_its_record() {
        let (compact, record) = (
            std::mem::size_of::<Instance>(),
            std::mem::size_of::<InstanceRecord>(),
        );
        println!("size_of Instance {compact} B, InstanceRecord {record} B");
        assert!(compact <= 152, "Instance is {compact} bytes");
        assert_eq!(std::mem::size_of::<Ports>(), 16);
        assert!(compact * 2 <= record, "{compact} vs {record}");
    }

    #[test]
    fn ports_read_and_serialize_as_a_slice() {
        for ports in [&[][..], &[31000], &[31000, 31001, 31002]] {
            let p = Ports::from(ports);
            assert_eq!(&*p, ports);
            assert_eq!(
                serde_json::to_string(&p).expect("encode"),
                serde_json::to_string(ports).expect("encode")
            );
        }
        assert!(Ports::default().is_empty());
    }

    #[test]
    fn the_interner_shares_and_prunes() {
        let mut s = Interner::default();
        let a = s.intern("v1");
        assert!(Arc::ptr_eq(&a, &s.intern("v1")));
        for n in 0..INTERNER_PRUNE_MIN {
            s.intern(&format!("garbage-{n}"));
        }
        s.prune();
        assert_eq!(s.len(), 1, "only the string still held survives");
        assert!(Arc::ptr_eq(&a, &s.intern("v1")));
    }
}
