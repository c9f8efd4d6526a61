//! The names a [`Model`] gets (Mesos-DNS's naming, see [`crate::names`]). Pure: the same model
//! always gives the same names.
//!
//! For domain `D`, with `<fw>` the framework's name and `<task>` the task's name as a label:
//!
//! | name | type | what |
//! |---|---|---|
//! | `leader.D`, `master.D` | A | the leading master |
//! | `_leader._tcp.D` | SRV | the leading master's HTTP port (target `leader.D`) |
//! | `slave.D`, `agent.D` | A | every reachable agent |
//! | `<agent-id>.slave.D`, `<agent-host>.slave.D` | A | one agent (SRV targets) |
//! | `<task>.<fw>.D`, `<task>.<fw>.slave.D` | A | the agents of the task's (app's) served tasks |
//! | `<task>-<tag>.<fw>.D` | A | one task's agent |
//! | `_<task>._tcp.<fw>.D`, `_<task>._udp.<fw>.D` | SRV | every host port of every served task, target `<agent-id>.slave.D` |
//!
//! A task is served when it is `TASK_RUNNING` and, if it reports health, healthy; it needs its
//! agent's address and its framework's name. Every name between one of these and `D` exists too,
//! without records (so that it answers NOERROR, not NXDOMAIN).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::model::Model;
use crate::names;

/// One SRV answer: the target name, its port and (for the HTTP API) the target's address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Srv {
    /// The target's name (an A record of this set).
    pub target: String,
    /// The host port.
    pub port: u16,
    /// The target's address.
    pub ip: Ipv4Addr,
}

/// Every name with its records; names are lower-case, fully qualified, without the root dot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Names {
    /// A records.
    pub hosts: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// SRV records.
    pub services: BTreeMap<String, BTreeSet<Srv>>,
    /// Names that exist without records of their own (parents of the others, and the domain).
    pub empty: BTreeSet<String>,
}

impl Names {
    fn host(&mut self, name: String, ip: Ipv4Addr) {
        self.hosts.entry(name).or_default().insert(ip);
    }

    fn service(&mut self, name: String, srv: Srv) {
        self.services.entry(name).or_default().insert(srv);
    }

    /// Whether `name` exists (with or without records).
    pub fn exists(&self, name: &str) -> bool {
        self.hosts.contains_key(name)
            || self.services.contains_key(name)
            || self.empty.contains(name)
    }
}

/// The names of `model` under `domain` (already a valid lower-case domain, see
/// [`names::domain`]).
pub fn build(model: &Model, domain: &str) -> Names {
    let mut n = Names::default();
    if let Some((ip, port)) = model.master {
        n.host(format!("leader.{domain}"), ip);
        n.host(format!("master.{domain}"), ip);
        n.service(
            format!("_leader._tcp.{domain}"),
            Srv {
                target: format!("leader.{domain}"),
                port,
                ip,
            },
        );
    }
    // Agents: their names, by id.
    let mut agent_names: BTreeMap<&str, (String, Ipv4Addr)> = BTreeMap::new();
    for (id, a) in &model.agents {
        let Some(ip) = a.ip else { continue };
        n.host(format!("slave.{domain}"), ip);
        n.host(format!("agent.{domain}"), ip);
        if let Some(h) = names::label(&a.hostname) {
            n.host(format!("{h}.slave.{domain}"), ip);
        }
        if let Some(l) = names::label(id) {
            let name = format!("{l}.slave.{domain}");
            n.host(name.clone(), ip);
            agent_names.insert(id.as_str(), (name, ip));
        }
    }
    for (task_id, t) in &model.tasks {
        if !t.is_served() {
            continue;
        }
        let (Some((agent_name, ip)), Some(fw_name)) = (
            agent_names.get(t.agent_id.as_str()),
            model.frameworks.get(&t.framework_id),
        ) else {
            continue;
        };
        let (Some(fw), Some(task)) = (names::label(fw_name), names::task_label(fw_name, &t.name))
        else {
            continue;
        };
        n.host(format!("{task}.{fw}.{domain}"), *ip);
        n.host(format!("{task}.{fw}.slave.{domain}"), *ip);
        let inst = names::task_instance_label(&task, task_id);
        n.host(format!("{inst}.{fw}.{domain}"), *ip);
        for proto in ["tcp", "udp"] {
            for port in &t.ports {
                n.service(
                    format!("_{task}._{proto}.{fw}.{domain}"),
                    Srv {
                        target: agent_name.clone(),
                        port: *port,
                        ip: *ip,
                    },
                );
            }
        }
    }
    // Every name between a record's and the domain exists.
    let mut empty = BTreeSet::new();
    empty.insert(domain.to_string());
    for name in n.hosts.keys().chain(n.services.keys()) {
        let mut rest = name.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            if parent.len() < domain.len() {
                break;
            }
            empty.insert(parent.to_string());
            rest = parent;
        }
    }
    n.empty = empty;
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Agent, Task};

    fn model() -> Model {
        let mut m = Model {
            master: Some((Ipv4Addr::new(10, 0, 0, 1), 5050)),
            ..Model::default()
        };
        for (id, ip) in [("a1", 2), ("a2", 3)] {
            m.agents.insert(
                id.into(),
                Agent {
                    hostname: format!("host-{id}.example.com"),
                    address_ip: Some(Ipv4Addr::new(10, 0, 0, ip)),
                    ip: Some(Ipv4Addr::new(10, 0, 0, ip)),
                },
            );
        }
        m.frameworks.insert("fw".into(), "marathon".into());
        let task = |agent: &str, port: u16, state: &str, healthy: Option<bool>| Task {
            name: "prod_web".into(),
            framework_id: "fw".into(),
            agent_id: agent.into(),
            state: state.into(),
            healthy,
            ports: vec![port],
        };
        m.tasks
            .insert("t1".into(), task("a1", 31000, "TASK_RUNNING", None));
        m.tasks
            .insert("t2".into(), task("a2", 31001, "TASK_RUNNING", Some(true)));
        m.tasks
            .insert("t3".into(), task("a2", 31002, "TASK_RUNNING", Some(false)));
        m.tasks
            .insert("t4".into(), task("a1", 31003, "TASK_STAGING", None));
        m
    }

    fn ips(n: &Names, name: &str) -> Vec<Ipv4Addr> {
        n.hosts
            .get(name)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    #[test]
    fn apps_get_a_records_of_their_served_tasks_agents() {
        let n = build(&model(), "meseta");
        let both = vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)];
        assert_eq!(ips(&n, "web-prod.marathon.meseta"), both);
        assert_eq!(ips(&n, "web-prod.marathon.slave.meseta"), both);
        assert_eq!(ips(&n, "leader.meseta"), vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(ips(&n, "master.meseta"), vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(ips(&n, "slave.meseta"), both);
        assert_eq!(
            ips(&n, "host-a1-example-com.slave.meseta"),
            vec![Ipv4Addr::new(10, 0, 0, 2)]
        );
        let inst = format!(
            "{}.marathon.meseta",
            names::task_instance_label("web-prod", "t1")
        );
        assert_eq!(ips(&n, &inst), vec![Ipv4Addr::new(10, 0, 0, 2)]);
    }

    #[test]
    fn srv_records_list_host_ports_of_served_tasks_only() {
        let n = build(&model(), "meseta");
        let srv: Vec<(String, u16)> = n.services["_web-prod._tcp.marathon.meseta"]
            .iter()
            .map(|s| (s.target.clone(), s.port))
            .collect();
        assert_eq!(
            srv,
            vec![
                ("a1.slave.meseta".to_string(), 31000),
                ("a2.slave.meseta".to_string(), 31001)
            ],
            "unhealthy (31002) and staging (31003) tasks are left out"
        );
        assert!(n.services.contains_key("_web-prod._udp.marathon.meseta"));
        for s in &n.services["_web-prod._tcp.marathon.meseta"] {
            assert!(n.hosts.contains_key(&s.target), "targets resolve");
        }
    }

    #[test]
    fn parents_exist_and_other_names_do_not() {
        let n = build(&model(), "mesos");
        assert!(n.exists("marathon.mesos"));
        assert!(n.exists("_tcp.marathon.mesos"));
        assert!(n.exists("mesos"));
        assert!(!n.exists("nothing.marathon.mesos"));
        assert!(
            !n.exists("web-prod.marathon.meseta"),
            "domain is configurable"
        );
    }

    #[test]
    fn tasks_without_agent_address_or_framework_are_skipped() {
        let mut m = model();
        m.frameworks.clear();
        let n = build(&m, "meseta");
        assert!(!n.exists("web-prod.marathon.meseta"));
        let mut m = model();
        for a in m.agents.values_mut() {
            a.ip = None;
        }
        let n = build(&m, "meseta");
        assert!(n.services.keys().all(|k| k.starts_with("_leader")));
    }
}
