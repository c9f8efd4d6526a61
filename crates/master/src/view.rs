//! Read-only views of the core in the Mesos v0 JSON shapes (`/master/state`, `/master/slaves`,
//! `/master/tasks`) and the figures `/metrics` exports.

use meseta_api::state::{
    Framework, LeaderInfo, MasterState, OfferSummary, RecoveredSlave, Slave, Slaves, Task,
    TaskStatusV0, Tasks,
};
use meseta_types::{Resources, TaskState};
use serde_json::{Map, Value};

use crate::core::{AgentEntry, AgentStatus, Core, FrameworkEntry};
use crate::task::TaskEntry;
use crate::MESOS_VERSION;

impl Core {
    fn pid(&self) -> String {
        format!("master@{}", self.addr)
    }

    /// `GET /master/state`.
    pub(crate) fn state_view(&self) -> MasterState {
        let count = |s: AgentStatus| self.agents.values().filter(|a| a.status == s).count() as f64;
        let mut flags = Map::new();
        for (k, v) in [
            (
                "agent_timeout",
                format!("{}secs", self.config().agent_timeout.as_secs_f64()),
            ),
            (
                "allocation_interval",
                format!("{}secs", self.config().allocation_interval.as_secs_f64()),
            ),
            ("hostname", self.config().hostname.clone()),
            ("port", self.addr.port().to_string()),
        ] {
            flags.insert(k.to_string(), Value::String(v));
        }
        let (frameworks, orphans) = self.framework_views();
        MasterState {
            version: MESOS_VERSION.to_string(),
            meseta_version: env!("CARGO_PKG_VERSION").to_string(),
            build_time: 0.0,
            start_time: self.start_time(),
            elected_time: self.start_time(),
            id: self.master_id().to_string(),
            pid: self.pid(),
            hostname: self.config().hostname.clone(),
            capabilities: vec!["AGENT_UPDATE".to_string()],
            domain: self.config().domain.as_ref().map(|d| d.to_mesos_json()),
            activated_slaves: count(AgentStatus::Active),
            deactivated_slaves: count(AgentStatus::Disconnected),
            unreachable_slaves: count(AgentStatus::Unreachable),
            leader: self.pid(),
            leader_info: LeaderInfo {
                id: self.master_id().to_string(),
                pid: self.pid(),
                port: self.addr.port(),
                hostname: self.config().hostname.clone(),
            },
            flags,
            slaves: self.slave_views(false),
            recovered_slaves: self.recovered_views(),
            frameworks,
            completed_frameworks: self
                .completed_frameworks
                .iter()
                .map(|f| self.framework_view(f))
                .collect(),
            orphan_tasks: orphans,
            unregistered_frameworks: vec![],
        }
    }

    /// `GET /master/slaves`.
    pub(crate) fn slaves_view(&self) -> Slaves {
        Slaves {
            slaves: self.slave_views(true),
            recovered_slaves: self.recovered_views(),
        }
    }

    /// `GET /master/tasks`: active then completed, oldest first.
    pub(crate) fn tasks_view(&self) -> Tasks {
        let mut tasks: Vec<Task> = self.tasks.values().map(task_view).collect();
        for fw in self
            .frameworks
            .values()
            .chain(self.completed_frameworks.iter())
        {
            tasks.extend(fw.completed_tasks.iter().map(task_view));
        }
        tasks.sort_by(|a, b| {
            first_ts(a)
                .total_cmp(&first_ts(b))
                .then_with(|| a.id.cmp(&b.id))
        });
        Tasks { tasks }
    }

    fn slave_views(&self, full: bool) -> Vec<Slave> {
        self.agents
            .values()
            .filter(|a| a.status != AgentStatus::Recovered)
            .map(|a| slave_view(a, &self.agent_total(&a.record.id), full))
            .collect()
    }

    fn recovered_views(&self) -> Vec<RecoveredSlave> {
        self.agents
            .values()
            .filter(|a| a.status == AgentStatus::Recovered)
            .map(|a| RecoveredSlave {
                id: a.record.id.to_string(),
                hostname: a.record.hostname.clone(),
                port: port_of(&a.record.address),
                attributes: a.record.attributes.v0_map(),
            })
            .collect()
    }

    fn framework_views(&self) -> (Vec<Framework>, Vec<Task>) {
        let views = self
            .frameworks
            .values()
            .map(|f| self.framework_view(f))
            .collect();
        let orphans = self
            .tasks
            .values()
            .filter(|t| !self.frameworks.contains_key(&t.spec.framework_id))
            .map(task_view)
            .collect();
        (views, orphans)
    }

    fn framework_view(&self, f: &FrameworkEntry) -> Framework {
        let mine = |t: &&TaskEntry| t.spec.framework_id == f.id;
        let (unreachable, active): (Vec<&TaskEntry>, Vec<&TaskEntry>) = self
            .tasks
            .values()
            .filter(mine)
            .partition(|t| t.state == TaskState::Unreachable);
        Framework {
            id: f.id.to_string(),
            name: f.info.name.clone(),
            used_resources: f.used.v0_summary(),
            offered_resources: f.offered.v0_summary(),
            resources: f.used.plus(&f.offered).v0_summary(),
            capabilities: f
                .info
                .capabilities
                .iter()
                .flatten()
                .map(|c| c.kind.clone())
                .collect(),
            hostname: f.info.hostname.clone().unwrap_or_default(),
            webui_url: f.info.webui_url.clone().unwrap_or_default(),
            active: f.conn.is_some() && !f.suppressed,
            connected: f.conn.is_some(),
            recovered: f.recovered,
            user: f.info.user.clone(),
            failover_timeout: f.info.failover_timeout.unwrap_or(0.0),
            checkpoint: true,
            registered_time: f.registered_time,
            unregistered_time: f.unregistered_time,
            role: f.info.role.clone().unwrap_or_else(|| "*".to_string()),
            tasks: active.into_iter().map(task_view).collect(),
            unreachable_tasks: unreachable.into_iter().map(task_view).collect(),
            completed_tasks: f.completed_tasks.iter().map(task_view).collect(),
            offers: self
                .offers
                .iter()
                .filter(|(_, o)| o.framework_id == f.id)
                .map(|(id, o)| OfferSummary {
                    id: id.to_string(),
                    framework_id: f.id.to_string(),
                    slave_id: o.agent_id.to_string(),
                    resources: o.resources.v0_summary(),
                })
                .collect(),
            executors: self.executor_views(&f.id),
        }
    }

    /// The executors (CUSTOM, and DEFAULT ones of task groups) of framework `fw` that run on
    /// agents, as Mesos' v0 state lists them: the `ExecutorInfo` with `slave_id`, `role`, its
    /// `type` and v0 `resources`, ordered by agent and executor id.
    fn executor_views(&self, fw: &meseta_types::FrameworkId) -> Vec<Value> {
        let mut mine: Vec<_> = self
            .ops
            .custom_executors
            .iter()
            .filter(|((_, f, _), _)| f == fw)
            .collect();
        mine.sort_by(|a, b| (&a.0 .0, &a.0 .2).cmp(&(&b.0 .0, &b.0 .2)));
        mine.into_iter()
            .map(|((agent, f, _), rec)| {
                let mut v = match serde_json::to_value(&rec.spec.info) {
                    Ok(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                v.insert("framework_id".into(), Value::from(f.to_string()));
                v.insert("slave_id".into(), Value::from(agent.to_string()));
                v.insert("role".into(), Value::from(rec.role.clone()));
                v.insert(
                    "type".into(),
                    Value::from(
                        rec.spec
                            .info
                            .kind
                            .clone()
                            .unwrap_or_else(|| "CUSTOM".into()),
                    ),
                );
                v.insert(
                    "resources".into(),
                    Value::Object(rec.spec.info.resources.v0_summary()),
                );
                Value::Object(v)
            })
            .collect()
    }

    /// Tasks by state, for `/metrics`.
    pub(crate) fn task_counts(&self) -> Vec<(TaskState, u64)> {
        TaskState::ALL
            .iter()
            .map(|s| {
                let live = self.tasks.values().filter(|t| t.state == *s).count() as u64;
                let done = self.counters.terminal.get(s).copied().unwrap_or(0);
                (*s, live + done)
            })
            .collect()
    }

    /// Agents by status, for `/metrics`.
    pub(crate) fn agent_counts(&self) -> Vec<(&'static str, u64)> {
        [
            (AgentStatus::Active, "active"),
            (AgentStatus::Disconnected, "disconnected"),
            (AgentStatus::Unreachable, "unreachable"),
            (AgentStatus::Recovered, "recovered"),
        ]
        .iter()
        .map(|(s, name)| {
            (
                *name,
                self.agents.values().filter(|a| a.status == *s).count() as u64,
            )
        })
        .collect()
    }
}

fn first_ts(t: &Task) -> f64 {
    t.statuses.first().map(|s| s.timestamp).unwrap_or(0.0)
}

fn port_of(address: &str) -> u16 {
    address
        .parse::<std::net::SocketAddr>()
        .map(|a| a.port())
        .unwrap_or(0)
}

fn slave_view(a: &AgentEntry, total: &Resources, full: bool) -> Slave {
    let mut reserved = Map::new();
    let mut reserved_full = Map::new();
    for role in total.roles() {
        if role == "*" {
            continue;
        }
        let r = total.reserved(&role);
        reserved.insert(role.clone(), Value::Object(r.v0_summary()));
        reserved_full.insert(role, json_of(&r));
    }
    let unreserved = total.unreserved();
    Slave {
        id: a.record.id.to_string(),
        hostname: a.record.hostname.clone(),
        port: port_of(&a.record.address),
        attributes: a.record.attributes.v0_map(),
        pid: format!("slave(1)@{}", a.record.address),
        registered_time: a.record.registered_time,
        reregistered_time: a.reregistered_time,
        resources: total.v0_summary(),
        used_resources: a.used.v0_summary(),
        offered_resources: a.offered.v0_summary(),
        reserved_resources: reserved,
        unreserved_resources: unreserved.v0_summary(),
        active: a.status == AgentStatus::Active,
        deactivated: false,
        version: MESOS_VERSION.to_string(),
        capabilities: vec!["MULTI_ROLE".to_string(), "HIERARCHICAL_ROLE".to_string()],
        domain: a.record.domain.as_ref().map(|d| d.to_mesos_json()),
        unreserved_resources_full: full.then(|| json_of(&unreserved)),
        used_resources_full: full.then(|| json_of(&a.used)),
        offered_resources_full: full.then(|| json_of(&a.offered)),
        reserved_resources_full: full.then_some(Value::Object(reserved_full)),
    }
}

fn json_of(r: &Resources) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Array(vec![]))
}

fn task_view(t: &TaskEntry) -> Task {
    Task {
        id: t.spec.task_id.to_string(),
        name: t.spec.name.to_string(),
        framework_id: t.spec.framework_id.to_string(),
        executor_id: String::new(),
        slave_id: t.agent_id().to_string(),
        state: t.state.as_str().to_string(),
        resources: t.spec.resources.v0_summary(),
        role: "*".to_string(),
        statuses: t
            .statuses
            .iter()
            .map(|s| TaskStatusV0 {
                state: s.state.as_str().to_string(),
                timestamp: s.timestamp,
                message: s.message().map(str::to_owned),
                reason: s.reason().map(str::to_owned),
                healthy: s.healthy,
            })
            .collect(),
        user: t.spec.user.clone(),
        usage: t.usage.as_deref().cloned(),
    }
}
