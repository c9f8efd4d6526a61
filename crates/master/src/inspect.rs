//! Read-only questions in-process frameworks and edges ask the master, beside the framework
//! contract ([`Master::subscribe`]): where the master is reachable, whether agents are still to
//! re-register after a restart, whether a task is known. Each answer is a copy taken under the
//! core's lock; callers never hold the lock.

use std::net::SocketAddr;

use meseta_types::TaskId;

use crate::Master;

impl Master {
    /// The address the master's HTTP server is bound to (`0.0.0.0:0` before it is bound).
    pub fn local_addr(&self) -> SocketAddr {
        self.core().addr
    }

    /// The hostname the master advertises (`--hostname`, or the machine's name).
    pub fn hostname(&self) -> String {
        self.core().config().hostname.clone()
    }

    /// `hostname:port`: how clients should reach this master.
    pub fn advertised_address(&self) -> String {
        let core = self.core();
        format!("{}:{}", core.config().hostname, core.addr.port())
    }

    /// Whether tasks may ask to run as `root` (`--allow-root`); the built-in schedulers refuse
    /// such requests with a 422 otherwise.
    pub fn allows_root_tasks(&self) -> bool {
        self.core().config().allow_root_tasks
    }

    /// The resolver of secret references (`None`: this master has no secrets store); the
    /// built-in schedulers check that the secrets a definition names exist.
    pub fn secret_resolver(&self) -> Option<crate::SecretResolver> {
        self.core().config().secrets.clone()
    }

    /// Whether DOCKER containers may run privileged (`--docker-allow-privileged`); the built-in
    /// schedulers refuse such requests with a 422 otherwise.
    pub fn allows_privileged_containers(&self) -> bool {
        self.core().config().allow_privileged_containers
    }

    /// Those of `ports` that no known agent has in its `ports` ranges; none while no agent is
    /// known (nothing to judge by yet).
    pub fn ports_no_agent_offers(&self, ports: &[u64]) -> Vec<u64> {
        let core = self.core();
        if core.agents.is_empty() {
            return Vec::new();
        }
        let ranges: Vec<_> = core
            .agents
            .values()
            .map(|a| a.record.resources.ranges("ports"))
            .collect();
        ports
            .iter()
            .copied()
            .filter(|p| !ranges.iter().any(|r| r.contains_value(*p)))
            .collect()
    }

    /// After a master restart: are agents known from the store still to re-register? Until they
    /// have, a task missing from the task table may still be running on one of them.
    pub fn agents_transitioning(&self) -> bool {
        self.core().agents_transitioning()
    }

    /// The v1 `GET_STATE` payload and a subscription to the event bus, taken under one lock: the
    /// events that follow apply to exactly this state (none missed, none twice). For edges that
    /// keep their own view of the cluster (DNS).
    pub fn state_and_events(
        &self,
    ) -> (
        serde_json::Value,
        tokio::sync::broadcast::Receiver<std::sync::Arc<crate::bus::ClusterEvent>>,
    ) {
        let core = self.core();
        let rx = core.bus.subscribe();
        (core.v1_state(), rx)
    }

    /// Whether the master knows task `id`: live in its task table, or among the recently
    /// completed tasks of a framework.
    pub fn knows_task(&self, id: &TaskId) -> bool {
        let core = self.core();
        core.tasks.contains_key(id)
            || core
                .frameworks
                .values()
                .any(|f| f.completed_tasks.iter().any(|t| &t.spec.task_id == id))
    }

    /// Agents and live tasks with their allocation and latest usage, taken under one lock
    /// (the UI's history samples it).
    pub fn usage_snapshot(&self) -> crate::usage::UsageSnapshot {
        self.core().usage_snapshot()
    }
}
