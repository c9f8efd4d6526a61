//! The routing table: what `GET /v2/apps?embed=apps.tasks` says, turned into services the
//! proxy routes to. Pure: no I/O, no clock; host names are resolved by the caller's resolver.
//!
//! ```text
//!  /v2 apps (+ active canaries) ──build()──▶ Table { services, by_port, by_host, conflicts }
//!                                               │ each Service = (app, port index)
//!                                               ▼   backends: healthy tasks' host:ports[i]
//! ```
//!
//! Labels understood (marathon-lb's, so existing apps keep working, and meseta's own):
//! `HAPROXY_{i}_VHOST` / `MESETA_VHOST` (index 0) — comma-separated virtual hosts;
//! `HAPROXY_{i}_PORT` — the service port instead of `portDefinitions[i].port`;
//! `HAPROXY_GROUP` — which load balancers expose the app (see [`Filter`]);
//! `MESETA_CANARY_WEIGHT` — percent of plain traffic sent to the canary version.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

/// Label naming the canary's share (0–100) of requests that carry no canary header.
pub const CANARY_WEIGHT_LABEL: &str = "MESETA_CANARY_WEIGHT";

/// One task that may get traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The Marathon task id.
    pub task_id: String,
    /// Where it listens (the agent's address and the task's host port).
    pub addr: SocketAddr,
    /// The app version the task runs.
    pub version: String,
    /// Whether the task belongs to the app's running canary.
    pub canary: bool,
}

/// The canary of a service's app, as the table knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryRoute {
    /// The canary's app version.
    pub version: String,
    /// Percent of header-less requests routed to the canary; `None`: in proportion to the
    /// number of backends of each version.
    pub weight: Option<u32>,
}

/// One app port the balancer serves: by TCP service port, by virtual host, or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The app id (`/prod/web`).
    pub app_id: String,
    /// The index into the app's ports.
    pub port_index: usize,
    /// The TCP service port, when the app has one (0 is none).
    pub service_port: Option<u16>,
    /// Virtual hosts routed to this service (lower case, no port).
    pub vhosts: Vec<String>,
    /// Healthy tasks, sorted by task id.
    pub backends: Vec<Backend>,
    /// The app's active canary.
    pub canary: Option<CanaryRoute>,
}

/// A claim the table refused because another app holds the port or host.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    /// `port 10000` or `host www.example.com`.
    pub what: String,
    /// The app that got it (first by id).
    pub holder: String,
    /// The app refused.
    pub refused: String,
}

/// The whole routing table, immutable once built; swapped atomically as a whole.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Services in app id, port index order.
    pub services: Vec<Service>,
    /// TCP service port → index into `services`.
    pub by_port: HashMap<u16, usize>,
    /// Virtual host → index into `services`.
    pub by_host: HashMap<String, usize>,
    /// Claims refused.
    pub conflicts: Vec<Conflict>,
}

/// Which apps this balancer exposes, by their `HAPROXY_GROUP` label.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Groups served; empty serves every app, `*` too.
    pub groups: Vec<String>,
}

impl Filter {
    /// Whether an app with `labels` is served.
    pub fn admits(&self, labels: &Value) -> bool {
        if self.groups.is_empty() || self.groups.iter().any(|g| g == "*") {
            return true;
        }
        let Some(own) = labels.get("HAPROXY_GROUP").and_then(Value::as_str) else {
            return false;
        };
        own.split(',')
            .map(str::trim)
            .any(|g| self.groups.iter().any(|s| s == g))
    }
}

/// Builds the table from the `apps` array of `/v2/apps?embed=apps.tasks`, the active canaries
/// (app id → canary version) and a resolver of agent host names.
pub fn build(
    apps: &[Value],
    canaries: &BTreeMap<String, String>,
    filter: &Filter,
    resolve: &dyn Fn(&str) -> Option<IpAddr>,
) -> Table {
    let mut sorted: Vec<&Value> = apps
        .iter()
        .filter(|a| filter.admits(&a["labels"]))
        .collect();
    sorted.sort_by(|a, b| str_of(a, "id").cmp(str_of(b, "id")));
    let mut table = Table::default();
    for app in sorted {
        for service in services_of(app, canaries, resolve) {
            table.add(service);
        }
    }
    table
}

impl Table {
    /// Adds a service, refusing the port or hosts another service holds.
    fn add(&mut self, mut service: Service) {
        let index = self.services.len();
        if let Some(port) = service.service_port {
            if let Some(&holder) = self.by_port.get(&port) {
                self.refuse(format!("port {port}"), holder, &service.app_id);
                service.service_port = None;
            } else {
                self.by_port.insert(port, index);
            }
        }
        let mut kept = Vec::new();
        for host in std::mem::take(&mut service.vhosts) {
            if let Some(&holder) = self.by_host.get(&host) {
                self.refuse(format!("host {host}"), holder, &service.app_id);
            } else {
                self.by_host.insert(host.clone(), index);
                kept.push(host);
            }
        }
        service.vhosts = kept;
        self.services.push(service);
    }

    fn refuse(&mut self, what: String, holder: usize, refused: &str) {
        let holder = self.services[holder].app_id.clone();
        if holder != refused {
            self.conflicts.push(Conflict {
                what,
                holder,
                refused: refused.to_owned(),
            });
        }
    }

    /// The service listening on TCP `port`.
    pub fn by_port(&self, port: u16) -> Option<&Service> {
        self.by_port.get(&port).map(|&i| &self.services[i])
    }

    /// The service of virtual host `host` (any case, port ignored).
    pub fn by_host(&self, host: &str) -> Option<&Service> {
        let host = normalized_host(host);
        self.by_host.get(host.as_ref()).map(|&i| &self.services[i])
    }
}

/// `Www.Example.com:8080` → `www.example.com`; IPv6 literals keep their brackets.
pub fn normalize_host(host: &str) -> String {
    normalized_host(host).into_owned()
}

/// [`normalize_host`] without a copy when `host` needs no lower-casing (the proxy looks up
/// every request's `Host` this way).
pub fn normalized_host(host: &str) -> std::borrow::Cow<'_, str> {
    let host = host.trim();
    let bare = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let bare = bare.trim_end_matches('.');
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(bare.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(bare)
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The services of one app: one per port definition.
fn services_of(
    app: &Value,
    canaries: &BTreeMap<String, String>,
    resolve: &dyn Fn(&str) -> Option<IpAddr>,
) -> Vec<Service> {
    let id = str_of(app, "id");
    let labels = &app["labels"];
    let ports = port_count(app);
    let canary = canaries.get(id).map(|version| CanaryRoute {
        version: version.clone(),
        weight: label(labels, CANARY_WEIGHT_LABEL)
            .and_then(|w| w.trim().parse::<u32>().ok())
            .map(|w| w.min(100)),
    });
    (0..ports)
        .map(|i| Service {
            app_id: id.to_owned(),
            port_index: i,
            service_port: service_port(app, i),
            vhosts: vhosts(labels, i),
            backends: backends(app, i, canary.as_ref(), resolve),
            canary: canary.clone(),
        })
        .collect()
}

/// How many ports the app's tasks get.
fn port_count(app: &Value) -> usize {
    let defs = app["portDefinitions"].as_array().map_or(0, Vec::len);
    let mappings = app["container"]["portMappings"]
        .as_array()
        .map_or(0, Vec::len);
    defs.max(mappings)
}

fn label<'a>(labels: &'a Value, key: &str) -> Option<&'a str> {
    labels.get(key).and_then(Value::as_str)
}

/// `HAPROXY_{i}_PORT`, else the i-th port definition's (or port mapping's service) port.
fn service_port(app: &Value, i: usize) -> Option<u16> {
    let labels = &app["labels"];
    if let Some(p) = label(labels, &format!("HAPROXY_{i}_PORT")) {
        return p.trim().parse::<u16>().ok().filter(|&p| p != 0);
    }
    let from_defs = app["portDefinitions"][i]["port"].as_u64();
    let from_mappings = app["container"]["portMappings"][i]["servicePort"].as_u64();
    from_defs
        .or(from_mappings)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
}

/// `HAPROXY_{i}_VHOST`, plus `MESETA_VHOST` for the first port.
fn vhosts(labels: &Value, i: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let own = (i == 0).then(|| label(labels, "MESETA_VHOST")).flatten();
    for list in [label(labels, &format!("HAPROXY_{i}_VHOST")), own]
        .into_iter()
        .flatten()
    {
        for h in list
            .split(',')
            .map(normalize_host)
            .filter(|h| !h.is_empty())
        {
            if !out.contains(&h) {
                out.push(h);
            }
        }
    }
    out
}

/// The app's tasks that may get traffic on port index `i`, sorted by task id.
fn backends(
    app: &Value,
    i: usize,
    canary: Option<&CanaryRoute>,
    resolve: &dyn Fn(&str) -> Option<IpAddr>,
) -> Vec<Backend> {
    let checked = app["healthChecks"]
        .as_array()
        .is_some_and(|c| !c.is_empty());
    let not_ready = not_ready_tasks(app);
    let mut out: Vec<Backend> = app["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| healthy(t, checked) && !not_ready.contains(&str_of(t, "id")))
        .filter_map(|t| {
            let port = u16::try_from(t["ports"][i].as_u64()?).ok()?;
            let ip = task_ip(t, resolve)?;
            let version = str_of(t, "version").to_owned();
            Some(Backend {
                task_id: str_of(t, "id").to_owned(),
                addr: SocketAddr::new(ip, port),
                canary: canary.is_some_and(|c| c.version == version),
                version,
            })
        })
        .collect();
    out.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    out
}

/// Running, and every health check (if the app has any) alive.
fn healthy(task: &Value, checked: bool) -> bool {
    if str_of(task, "state") != "TASK_RUNNING" {
        return false;
    }
    if !checked {
        return true;
    }
    let results = task["healthCheckResults"].as_array();
    results.is_some_and(|r| !r.is_empty() && r.iter().all(|h| h["alive"] == true))
}

/// Tasks a running deployment's readiness checks say are not ready yet.
fn not_ready_tasks(app: &Value) -> Vec<&str> {
    app["readinessCheckResults"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["ready"] == false)
        .map(|r| str_of(r, "taskId"))
        .collect()
}

/// The task's agent address: its host resolved (an IP literal as is).
fn task_ip(task: &Value, resolve: &dyn Fn(&str) -> Option<IpAddr>) -> Option<IpAddr> {
    let host = str_of(task, "host");
    host.parse::<IpAddr>().ok().or_else(|| resolve(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_dns(_: &str) -> Option<IpAddr> {
        None
    }

    fn task(id: &str, port: u16, version: &str, alive: Option<bool>) -> Value {
        let checks = alive.map_or(json!([]), |a| json!([{"alive": a}]));
        json!({"id": id, "host": "127.0.0.1", "state": "TASK_RUNNING", "ports": [port],
               "version": version, "healthCheckResults": checks})
    }

    fn app(id: &str, port: u64, labels: Value, tasks: Value) -> Value {
        json!({"id": id, "portDefinitions": [{"port": port}], "labels": labels, "tasks": tasks,
               "healthChecks": [{"protocol": "HTTP"}]})
    }

    #[test]
    fn only_running_healthy_ready_tasks_become_backends() {
        let mut starting = task("web.3", 31003, "v1", Some(true));
        starting["state"] = json!("TASK_STAGING");
        let mut a = app(
            "/web",
            10000,
            json!({}),
            json!([
                task("web.1", 31001, "v1", Some(true)),
                task("web.2", 31002, "v1", Some(false)),
                starting,
                task("web.4", 31004, "v1", None),
                task("web.5", 31005, "v1", Some(true)),
            ]),
        );
        a["readinessCheckResults"] = json!([{"taskId": "web.5", "ready": false}]);
        let t = build(&[a], &BTreeMap::new(), &Filter::default(), &no_dns);
        let s = t.by_port(10000).expect("service on 10000");
        let ids: Vec<&str> = s.backends.iter().map(|b| b.task_id.as_str()).collect();
        assert_eq!(ids, ["web.1"]);
        assert_eq!(s.backends[0].addr, "127.0.0.1:31001".parse().expect("addr"));
    }

    #[test]
    fn apps_without_health_checks_route_to_running_tasks() {
        let mut a = app("/w", 0, json!({}), json!([task("w.1", 31001, "v1", None)]));
        a["healthChecks"] = json!([]);
        let t = build(&[a], &BTreeMap::new(), &Filter::default(), &no_dns);
        assert_eq!(t.services[0].backends.len(), 1);
        assert_eq!(
            t.services[0].service_port, None,
            "port 0 is no service port"
        );
    }

    #[test]
    fn vhosts_and_ports_come_from_marathon_lb_and_meseta_labels() {
        let a = app(
            "/web",
            10000,
            json!({"HAPROXY_0_VHOST": "Www.Example.com, api.example.com", "MESETA_VHOST": "web.local",
                   "HAPROXY_0_PORT": "8081"}),
            json!([]),
        );
        let t = build(&[a], &BTreeMap::new(), &Filter::default(), &no_dns);
        assert!(t.by_port(10000).is_none());
        assert_eq!(t.by_port(8081).map(|s| s.app_id.as_str()), Some("/web"));
        for h in ["www.example.com", "API.example.com:80", "web.local"] {
            assert_eq!(t.by_host(h).map(|s| s.app_id.as_str()), Some("/web"), "{h}");
        }
    }

    #[test]
    fn hosts_are_normalized_without_a_copy_unless_lower_casing_is_needed() {
        use std::borrow::Cow;
        for (h, want) in [
            ("www.example.com", "www.example.com"),
            (" www.example.com.:8080", "www.example.com"),
            ("[::1]:80", "[::1]"),
        ] {
            assert!(
                matches!(normalized_host(h), Cow::Borrowed(b) if b == want),
                "{h}"
            );
        }
        assert!(
            matches!(normalized_host("Www.Example.COM:80"), Cow::Owned(o) if o == "www.example.com")
        );
    }

    #[test]
    fn a_second_claim_on_a_port_or_host_is_refused_and_reported() {
        let a = app("/a", 10000, json!({"MESETA_VHOST": "x.com"}), json!([]));
        let b = app(
            "/b",
            10000,
            json!({"MESETA_VHOST": "x.com,y.com"}),
            json!([]),
        );
        let t = build(&[b, a], &BTreeMap::new(), &Filter::default(), &no_dns);
        assert_eq!(t.by_port(10000).map(|s| s.app_id.as_str()), Some("/a"));
        assert_eq!(t.by_host("x.com").map(|s| s.app_id.as_str()), Some("/a"));
        assert_eq!(t.by_host("y.com").map(|s| s.app_id.as_str()), Some("/b"));
        let what: Vec<&str> = t.conflicts.iter().map(|c| c.what.as_str()).collect();
        assert_eq!(what, ["port 10000", "host x.com"]);
        assert!(t
            .conflicts
            .iter()
            .all(|c| c.holder == "/a" && c.refused == "/b"));
    }

    #[test]
    fn groups_filter_apps_by_haproxy_group() {
        let a = app("/a", 10001, json!({"HAPROXY_GROUP": "external"}), json!([]));
        let b = app("/b", 10002, json!({"HAPROXY_GROUP": "internal"}), json!([]));
        let c = app("/c", 10003, json!({}), json!([]));
        let f = Filter {
            groups: vec!["external".into()],
        };
        let t = build(&[a, b, c], &BTreeMap::new(), &f, &no_dns);
        let ids: Vec<&str> = t.services.iter().map(|s| s.app_id.as_str()).collect();
        assert_eq!(ids, ["/a"]);
        let all = build(&[], &BTreeMap::new(), &Filter::default(), &no_dns);
        assert!(all.services.is_empty());
    }

    #[test]
    fn canary_tasks_are_told_apart_by_version() {
        let a = app(
            "/web",
            10000,
            json!({"MESETA_CANARY_WEIGHT": "250"}),
            json!([
                task("web.1", 31001, "v1", Some(true)),
                task("web.2", 31002, "v2", Some(true))
            ]),
        );
        let canaries = BTreeMap::from([("/web".to_owned(), "v2".to_owned())]);
        let t = build(&[a], &canaries, &Filter::default(), &no_dns);
        let s = &t.services[0];
        assert_eq!(
            s.canary,
            Some(CanaryRoute {
                version: "v2".into(),
                weight: Some(100)
            })
        );
        let flags: Vec<bool> = s.backends.iter().map(|b| b.canary).collect();
        assert_eq!(flags, [false, true]);
    }

    #[test]
    fn agent_names_go_through_the_resolver() {
        let mut t = task("w.1", 31001, "v1", Some(true));
        t["host"] = json!("agent-1");
        let a = app("/w", 10000, json!({}), json!([t]));
        let resolve = |h: &str| (h == "agent-1").then(|| IpAddr::from([10, 0, 0, 7]));
        let t = build(&[a], &BTreeMap::new(), &Filter::default(), &resolve);
        assert_eq!(
            t.services[0].backends[0].addr,
            "10.0.0.7:31001".parse().expect("addr")
        );
    }
}
