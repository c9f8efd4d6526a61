//! The master's read API for its HTTP edge: views built under the lock and returned by value, so
//! that handlers never hold the core themselves. Mesos v0 shapes (`meseta_api::state`), the
//! metrics snapshot, roles with their weights and quotas, maintenance, and the tasks' agents.

use std::collections::BTreeMap;

use meseta_api::maintenance::Schedule;
use meseta_api::state::{MasterState, Slaves, Tasks};
use meseta_types::TaskId;

use crate::Master;

impl Master {
    /// `/master/state`.
    pub(crate) fn state_view(&self) -> MasterState {
        self.core().state_view()
    }

    /// `/master/slaves`.
    pub(crate) fn slaves_view(&self) -> Slaves {
        self.core().slaves_view()
    }

    /// `/master/tasks`.
    pub(crate) fn tasks_view(&self) -> Tasks {
        self.core().tasks_view()
    }

    /// The flat Mesos `/metrics/snapshot` map.
    pub(crate) fn metrics_snapshot(&self) -> BTreeMap<String, f64> {
        self.core().metrics_snapshot()
    }

    /// The address the master serves on.
    pub(crate) fn address(&self) -> std::net::SocketAddr {
        self.core().addr
    }

    /// The maintenance schedule.
    pub(crate) fn maintenance_schedule(&self) -> Schedule {
        self.core().ops.maint.schedule.clone()
    }

    /// `/master/maintenance/status`.
    pub(crate) fn maintenance_status(&self) -> serde_json::Value {
        self.core().maintenance_status()
    }

    /// Every role the allocator knows, with its weight, quota, consumption and frameworks.
    pub(crate) fn roles(&self) -> Vec<meseta_allocator::RoleInfo> {
        self.core().alloc.roles()
    }

    /// The weights operators set, by role.
    pub(crate) fn weights(&self) -> BTreeMap<String, f64> {
        self.core().weights.clone()
    }

    /// The quotas operators set, by role.
    pub(crate) fn quotas(&self) -> BTreeMap<String, meseta_allocator::Quota> {
        self.core().quotas.clone()
    }

    /// The address of the agent that runs or ran a task.
    pub(crate) fn task_agent_address(&self, id: &TaskId) -> Option<String> {
        self.core().task_agent_address(id)
    }
}
