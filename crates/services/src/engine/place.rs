//! Placing waiting instances on offers: resources, ports, constraints, roles and backoff,
//! first fit in offer order, with the reasons offers were rejected kept for `/v2/queue`.
//! Also builds the Mesos `TaskInfo` of an instance (command, env, ports, health check, fetch).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use meseta_api::container::{ContainerInfo, DockerNetwork};
use meseta_api::marathon::App;
use meseta_api::scheduler::{
    CommandInfo, CommandUri, DurationInfo, EnvVariable, Environment, IdValue, KillPolicy, Label,
    Labels, Offer, TaskInfo,
};
use meseta_types::{Range, Ranges, Resource, Resources, Value as ResValue};
use serde_json::{json, Value};

use super::model::{config_of, Goal};
use super::Engine;
use crate::constraints::{AgentView, CompiledConstraints};

/// Tasks to launch on one offer.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The offer.
    pub offer_id: IdValue,
    /// Its agent.
    pub agent_id: IdValue,
    /// Tasks.
    pub tasks: Vec<TaskInfo>,
}

/// What constraints need to know of an agent, learnt from its offers.
#[derive(Debug, Clone, Default)]
pub(crate) struct AgentInfo {
    pub(crate) hostname: String,
    attributes: meseta_types::Attributes,
    region: Option<String>,
    zone: Option<String>,
}

impl AgentInfo {
    /// Records what `o` tells of its agent in `agents`, unless it is known already: offers
    /// come again and again, and a copy made for each would be allocated and freed each time.
    pub(crate) fn learn(agents: &mut HashMap<String, AgentInfo>, o: &Offer) {
        match agents.get(o.agent_id.as_str()) {
            Some(known) if known.describes(o) => {}
            _ => {
                agents.insert(o.agent_id.as_str().to_owned(), AgentInfo::of(o));
            }
        }
    }

    /// Whether this is what `o` says of its agent.
    fn describes(&self, o: &Offer) -> bool {
        let same = |mine: &Option<String>, level: &str| {
            mine.as_deref()
                == o.domain
                    .as_ref()
                    .and_then(|d| d["fault_domain"][level]["name"].as_str())
        };
        self.hostname == o.hostname
            && self.attributes == o.attributes
            && same(&self.region, "region")
            && same(&self.zone, "zone")
    }

    pub(crate) fn of(o: &Offer) -> AgentInfo {
        let name = |level: &str| {
            o.domain
                .as_ref()
                .and_then(|d| d["fault_domain"][level]["name"].as_str().map(str::to_owned))
        };
        AgentInfo {
            hostname: o.hostname.clone(),
            attributes: o.attributes.clone(),
            region: name("region"),
            zone: name("zone"),
        }
    }

    pub(crate) fn view(&self) -> AgentView<'_> {
        AgentView {
            hostname: &self.hostname,
            region: self.region.as_deref(),
            zone: self.zone.as_deref(),
            attributes: &self.attributes,
        }
    }
}

/// Placement passes over one batch of offers (each places up to
/// [`super::MAX_WAITING`] instances of an app).
const MAX_PLACEMENT_ROUNDS: usize = 64;

/// How many reject reasons are kept per app.
const MAX_REASONS: usize = 5;

struct Slot<'a> {
    offer: &'a Offer,
    left: Resources,
    ports: Ranges,
}

impl Engine {
    /// Place waiting instances on `offers`. Returns the launches (offers absent from them were
    /// not used). Instances placed here are recorded as staging before the shell sends them.
    pub fn offers(&mut self, offers: &[Offer], now: f64) -> Vec<Launch> {
        for o in offers {
            AgentInfo::learn(&mut self.agents, o);
        }
        let mut slots: Vec<Slot<'_>> = offers
            .iter()
            .map(|o| Slot {
                offer: o,
                left: o.resources.clone(),
                ports: o.resources.ranges("ports"),
            })
            .collect();
        let mut launches: BTreeMap<usize, Vec<TaskInfo>> = BTreeMap::new();
        // Deployments create a bounded number of waiting instances at a time: while some were
        // placed, let them create the next ones and place those on what is left.
        for _ in 0..MAX_PLACEMENT_ROUNDS {
            let before: usize = launches.values().map(Vec::len).sum();
            self.place_waiting(&mut slots, &mut launches, now);
            let placed = launches.values().map(Vec::len).sum::<usize>() > before;
            if !placed {
                break;
            }
            self.advance(now);
        }
        launches
            .into_iter()
            .map(|(i, tasks)| Launch {
                offer_id: offers[i].id.clone(),
                agent_id: offers[i].agent_id.clone(),
                tasks,
            })
            .collect()
    }

    /// One pass of first-fit placement of every waiting instance.
    fn place_waiting(
        &mut self,
        slots: &mut [Slot<'_>],
        launches: &mut BTreeMap<usize, Vec<TaskInfo>>,
        now: f64,
    ) {
        let waiting: Vec<(String, Vec<Arc<str>>)> = self
            .waiting_apps()
            .filter(|(_, a)| !a.deleted && a.backoff.until <= now)
            .map(|(id, _)| {
                let w: Vec<Arc<str>> = self
                    .instances_of(id)
                    .filter(|i| i.needs_launch())
                    .map(|i| Arc::clone(&i.id))
                    .collect();
                (id.clone(), w)
            })
            .filter(|(_, w)| !w.is_empty())
            .collect();
        for (app_id, insts) in waiting {
            self.place_app(&app_id, &insts, slots, launches, now);
        }
    }

    fn place_app(
        &mut self,
        app_id: &str,
        insts: &[Arc<str>],
        slots: &mut [Slot<'_>],
        launches: &mut BTreeMap<usize, Vec<TaskInfo>>,
        now: f64,
    ) {
        let Some(st) = self.apps.get(app_id) else {
            return;
        };
        let main = st.app.clone();
        let canary_app = st.canary.as_ref().map(|c| c.app.clone());
        let compiled = |app: &App| CompiledConstraints::new(&app.constraints).ok();
        let (main_cc, canary_cc) = (compiled(&main), canary_app.as_ref().and_then(compiled));
        // Agents of the app's live instances, for constraints.
        let mut placed: Vec<(Arc<str>, Arc<str>)> = self
            .instances_of(app_id)
            .filter(|i| i.goal == Goal::Running && i.active())
            .filter_map(|i| Some((i.agent_id.clone()?, i.host.clone().unwrap_or_default())))
            .collect();
        let mut stats_rejects: BTreeMap<String, u64> = BTreeMap::new();
        let mut reasons: Vec<String> = Vec::new();
        let mut processed = 0u64;
        let mut used_any = false;
        // Offers that cannot fit this app's resources stay unfit for the rest of this round.
        let mut unfit = vec![false; slots.len()];
        for inst_id in insts {
            let Some(inst) = self.instance(app_id, inst_id) else {
                continue;
            };
            let canary = inst.canary && canary_app.is_some();
            let (app, cc) = match (&canary_app, canary) {
                (Some(c), true) => (c, canary_cc.as_ref()),
                _ => (&main, main_cc.as_ref()),
            };
            let Some(need) = scalars(app) else {
                *stats_rejects.entry("InvalidResources".into()).or_default() += 1;
                continue;
            };
            let nports = app.port_definitions.len() as u64;
            let docker_ports = docker_host_ports(app);
            let mut chosen = None;
            for (si, slot) in slots.iter().enumerate() {
                if unfit[si] {
                    continue;
                }
                processed += 1;
                if let Some(why) = resource_shortfall(&slot.left, &need, &slot.ports, nports, app)
                    .or_else(|| docker_shortfall(slot, docker_ports.as_deref()))
                {
                    unfit[si] = true;
                    *stats_rejects.entry(why.to_owned()).or_default() += 1;
                    if why == NO_DOCKER && reasons.len() < MAX_REASONS {
                        reasons.push(NO_DOCKER_REASON.to_owned());
                    }
                    continue;
                }
                if let Some(cc) = cc {
                    let placed_info: Vec<AgentInfo> = placed
                        .iter()
                        .map(|(a, h)| {
                            self.agents.get(&**a).cloned().unwrap_or_else(|| AgentInfo {
                                hostname: h.to_string(),
                                ..AgentInfo::default()
                            })
                        })
                        .collect();
                    let placed_views: Vec<AgentView<'_>> =
                        placed_info.iter().map(AgentInfo::view).collect();
                    let me = AgentInfo::of(slot.offer);
                    if let Err(unmet) = cc.check(&me.view(), &placed_views) {
                        *stats_rejects
                            .entry("UnfulfilledConstraint".into())
                            .or_default() += 1;
                        if reasons.len() < MAX_REASONS {
                            reasons.push(unmet.to_string());
                        }
                        continue;
                    }
                }
                chosen = Some(si);
                break;
            }
            let Some(si) = chosen else { continue };
            let slot = &mut slots[si];
            let ports = if let Some(wanted) = &docker_ports {
                take_host_ports(&slot.ports, wanted)
            } else if app.require_ports {
                app.port_definitions
                    .iter()
                    .map(|p| u64::from(p.port))
                    .collect::<Vec<_>>()
            } else {
                slot.ports
                    .take_first(nports)
                    .map(|r| r.values().collect())
                    .unwrap_or_default()
            };
            let mut res = need.clone();
            if !ports.is_empty() {
                let ranges = Ranges::new(ports.iter().map(|&p| Range::new(p, p)).collect());
                slot.ports = slot.ports.difference(&ranges);
                let _ = res.push(Resource::new("ports", "*", ResValue::Ranges(ranges)));
            }
            slot.left = slot.left.checked_sub(&need).unwrap_or_default();
            let agent = slot.offer.agent_id.clone();
            let host = slot.offer.hostname.clone();
            placed.push((
                self.strings.intern(agent.as_str()),
                self.strings.intern(&host),
            ));
            used_any = true;
            let app = app.clone();
            if let Some(task) = self.stage(app_id, inst_id, &app, &agent, &host, &ports, res, now) {
                launches.entry(si).or_default().push(task);
            }
        }
        if let Some(st) = self.apps.get_mut(app_id) {
            let s = &mut st.offers;
            s.processed += processed;
            for (k, v) in stats_rejects {
                *s.rejects.entry(k).or_default() += v;
            }
            if !reasons.is_empty() {
                s.last_reasons = reasons;
            }
            if used_any {
                s.last_used_at = Some(now);
            } else {
                s.unused += processed;
                s.last_unused_at = Some(now);
            }
        }
    }

    /// Record the instance as launched on `agent` and build its task.
    #[allow(clippy::too_many_arguments)]
    fn stage(
        &mut self,
        app_id: &str,
        inst_id: &str,
        app: &App,
        agent: &IdValue,
        host: &str,
        ports: &[u64],
        resources: Resources,
        now: f64,
    ) -> Option<TaskInfo> {
        let strings = &mut self.strings;
        let i = self.instances.get_mut(app_id)?.get_mut(inst_id)?;
        let was_waiting = i.needs_launch();
        let task_id = i.next_task();
        i.state = Some(meseta_types::TaskState::Staging);
        super::note_waiting(&mut self.waiting, app_id, was_waiting, i.needs_launch());
        i.agent_id = Some(strings.intern(agent.as_str()));
        i.host = Some(strings.intern(host));
        i.ports = ports.into();
        i.staged_at = Some(now);
        i.started_at = None;
        i.healthy = None;
        i.ready = app.readiness_checks.is_empty();
        i.version = strings.intern(app.version.as_deref().unwrap_or_default());
        i.config = strings.intern(&config_of(app));
        i.sentenced = false;
        self.persist_instance(app_id, inst_id);
        if let Some(st) = self.apps.get_mut(app_id) {
            st.waiting_since = None;
        }
        Some(task_info(app, &task_id, agent, ports, resources))
    }
}

/// The reject kind of an offer whose agent runs no Docker engine, for a DOCKER app.
const NO_DOCKER: &str = "NoDockerEngine";
/// What `/v2/queue` says about it.
const NO_DOCKER_REASON: &str =
    "the app runs a DOCKER container: no agent offering docker:true (a Docker engine)";

/// Whether the app runs in a Docker container.
fn is_docker(app: &App) -> bool {
    app.container
        .as_ref()
        .is_some_and(|c| c.get("type").and_then(Value::as_str) == Some("DOCKER"))
}

/// For a DOCKER app: the host ports of its port mappings in order (0: any of the offer's).
fn docker_host_ports(app: &App) -> Option<Vec<u64>> {
    let c = app.container.as_ref().filter(|_| is_docker(app))?;
    Some(meseta_api::container::marathon_host_ports(c))
}

/// Why a DOCKER app cannot use the offer: its agent runs no engine, or lacks the ports.
fn docker_shortfall(slot: &Slot<'_>, wanted: Option<&[u64]>) -> Option<&'static str> {
    let wanted = wanted?;
    let docker = matches!(slot.offer.attributes.get("docker"),
        Some(meseta_types::AttrValue::Text(t)) if t == "true");
    if !docker {
        return Some(NO_DOCKER);
    }
    let fixed: Vec<u64> = wanted.iter().copied().filter(|p| *p != 0).collect();
    let dynamic = wanted.len() - fixed.len();
    if fixed.iter().any(|p| !slot.ports.contains_value(*p))
        || slot.ports.count() < (dynamic + fixed.len()) as u64
    {
        return Some("InsufficientPorts");
    }
    None
}

/// Host ports for `wanted` (in order; 0 takes the lowest free port of `offered` that no fixed
/// one names).
fn take_host_ports(offered: &Ranges, wanted: &[u64]) -> Vec<u64> {
    let fixed: Vec<u64> = wanted.iter().copied().filter(|p| *p != 0).collect();
    let mut free = offered.values().filter(|p| !fixed.contains(p));
    wanted
        .iter()
        .filter_map(|&p| if p == 0 { free.next() } else { Some(p) })
        .collect()
}

/// cpus/mem/disk/gpus an instance needs, or `None` when an amount is not representable (an
/// app stored before amounts were validated): such an instance is never placed, rather than
/// launched without the resource.
fn scalars(app: &App) -> Option<Resources> {
    let mut r = Resources::new();
    for (name, v) in [
        ("cpus", app.cpus),
        ("mem", app.mem),
        ("disk", app.disk),
        ("gpus", f64::from(app.gpus)),
    ] {
        if v > 0.0 {
            r.push(Resource::scalar(name, v).ok()?).ok()?;
        }
    }
    Some(r)
}

/// Why an offer cannot hold one instance (Marathon's reject reason names), if it cannot.
fn resource_shortfall(
    left: &Resources,
    need: &Resources,
    ports: &Ranges,
    nports: u64,
    app: &App,
) -> Option<&'static str> {
    if left.cpus() + 1e-9 < need.cpus() {
        return Some("InsufficientCpus");
    }
    if left.mem() + 1e-9 < need.mem() {
        return Some("InsufficientMemory");
    }
    if left.disk() + 1e-9 < need.disk() {
        return Some("InsufficientDisk");
    }
    if left.gpus() + 1e-9 < need.gpus() {
        return Some("InsufficientGpus");
    }
    if !left.contains(need) {
        return Some("InsufficientCpus");
    }
    if app.require_ports {
        if app
            .port_definitions
            .iter()
            .any(|p| !ports.contains_value(u64::from(p.port)))
        {
            return Some("InsufficientPorts");
        }
    } else if ports.count() < nports {
        return Some("InsufficientPorts");
    }
    None
}

/// The Mesos task of one instance.
pub fn task_info(
    app: &App,
    task_id: &str,
    agent: &IdValue,
    ports: &[u64],
    resources: Resources,
) -> TaskInfo {
    let mut vars: Vec<EnvVariable> = app
        .env
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .map(|(name, value)| EnvVariable { name, value })
        .collect();
    let mut add = |name: String, value: String| vars.push(EnvVariable { name, value });
    add("MARATHON_APP_ID".into(), app.id.clone());
    add(
        "MARATHON_APP_VERSION".into(),
        app.version.clone().unwrap_or_default(),
    );
    add("MARATHON_APP_RESOURCE_CPUS".into(), app.cpus.to_string());
    add("MARATHON_APP_RESOURCE_MEM".into(), app.mem.to_string());
    for (i, p) in ports.iter().enumerate() {
        add(format!("PORT{i}"), p.to_string());
        if let Some(name) = app.port_definitions.get(i).and_then(|d| d.name.clone()) {
            add(
                format!("PORT_{}", name.to_uppercase().replace('-', "_")),
                p.to_string(),
            );
        }
    }
    if let Some(p) = ports.first() {
        add("PORT".into(), p.to_string());
    }
    if !ports.is_empty() {
        add(
            "PORTS".into(),
            ports
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let docker = is_docker(app);
    let (shell, value, arguments) = match (&app.cmd, app.args.first()) {
        (Some(cmd), _) => (true, Some(cmd.clone()), None),
        // A container's `args` are the image's arguments (its entrypoint stays).
        (None, Some(_)) if docker => (false, None, Some(app.args.clone())),
        (None, Some(first)) => (false, Some(first.clone()), Some(app.args.clone())),
        // A container without cmd/args runs the image's own command.
        (None, None) if docker => (false, None, None),
        (None, None) => (true, Some(String::new()), None),
    };
    let uris: Vec<CommandUri> = app
        .fetch
        .iter()
        .map(|f| CommandUri {
            value: f.uri.clone(),
            executable: Some(f.executable),
            extract: Some(f.extract),
            cache: Some(f.cache),
            output_file: f.dest_path.clone(),
        })
        .collect();
    let command = CommandInfo {
        shell,
        value,
        arguments,
        environment: Some(Environment { variables: vars }),
        user: app.user.clone(),
        uris: (!uris.is_empty()).then_some(uris),
        secret_env: crate::secrets::env(app),
    };
    let labels = (!app.labels.is_empty()).then(|| Labels {
        labels: app
            .labels
            .iter()
            .map(|(k, v)| Label {
                key: k.clone(),
                value: Some(v.clone()),
            })
            .collect(),
    });
    TaskInfo {
        name: app.safe_id(),
        task_id: IdValue::new(task_id),
        agent_id: Some(agent.clone()),
        resources,
        command: Some(command),
        container: app
            .container
            .as_ref()
            .and_then(|c| ContainerInfo::from_marathon(c, docker_network(app), ports))
            .map(|mut c| {
                c.volumes.extend(crate::secrets::volumes(app));
                c
            }),
        labels,
        health_check: app
            .health_checks
            .first()
            .and_then(|h| mesos_health_check(h, ports)),
        kill_policy: app.task_kill_grace_period_seconds.map(|g| KillPolicy {
            grace_period: Some(DurationInfo {
                nanoseconds: (g * 1e9) as i64,
            }),
        }),
        ..TaskInfo::default()
    }
}

/// The Docker network of the app's `networks` (Marathon's `container/bridge` is BRIDGE,
/// `container` is USER, `host` is HOST).
fn docker_network(app: &App) -> Option<DockerNetwork> {
    match app.networks.first().map(|n| n.mode.as_str()) {
        Some("container/bridge") => Some(DockerNetwork::Bridge),
        Some("container") => Some(DockerNetwork::User),
        Some("host") => Some(DockerNetwork::Host),
        _ => None,
    }
}

/// A Marathon health check as the Mesos `HealthCheck` the agent runs (`None`: no port to check).
pub fn mesos_health_check(h: &meseta_api::marathon::HealthCheck, ports: &[u64]) -> Option<Value> {
    let port = match (h.port, h.port_index) {
        (Some(p), _) if p > 0 => Some(p as u64),
        (_, idx) => ports.get(idx.unwrap_or(0).max(0) as usize).copied(),
    };
    let proto = h.protocol.trim_start_matches("MESOS_");
    let mut v = json!({
        "delay_seconds": h.delay_seconds.max(0),
        "interval_seconds": h.interval_seconds.max(1),
        "timeout_seconds": h.timeout_seconds.max(1),
        "consecutive_failures": h.max_consecutive_failures.max(0),
        "grace_period_seconds": h.grace_period_seconds.max(0),
    });
    let m = v.as_object_mut()?;
    match proto {
        "HTTP" | "HTTPS" => {
            m.insert("type".into(), json!("HTTP"));
            m.insert(
                "http".into(),
                json!({"scheme": proto.to_lowercase(), "port": port?, "path": h.path.clone().unwrap_or_else(|| "/".into())}),
            );
        }
        "TCP" => {
            m.insert("type".into(), json!("TCP"));
            m.insert("tcp".into(), json!({"port": port?}));
        }
        "COMMAND" => {
            m.insert("type".into(), json!("COMMAND"));
            m.insert(
                "command".into(),
                json!({"shell": true, "value": h.command.as_ref().map(|c| c.value.clone()).unwrap_or_default()}),
            );
        }
        _ => return None,
    }
    Some(v)
}
