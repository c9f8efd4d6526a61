//! Task usage as the master keeps and shows it: the agent's periodic [`TaskUsage`] reports
//! become one [`TaskUsageView`] per running task (cpus in use derived from the cpu time between
//! two reports), shown in `/master/tasks` and `/metrics`, and read by edges (the UI's history)
//! through [`UsageSnapshot`], a plain copy taken under one lock.
//!
//! ```text
//!  agent ── UsageReport ──▶ Core::agent_usage ── view() ──▶ TaskEntry.usage
//!                                                   ├──▶ /master/tasks, /metrics (per task, per name)
//!                                                   └──▶ Master::usage_snapshot() ──▶ UI history
//! ```

use meseta_api::agent::TaskUsage;
use meseta_api::state::TaskUsageView;
use meseta_types::{Resources, TaskState};

use crate::core::{AgentStatus, Core};

/// The resources the usage figures are kept for, in this order everywhere: cpus, mem (MiB),
/// disk (MiB), gpus.
pub const RESOURCES: [&str; 4] = ["cpus", "mem", "disk", "gpus"];

const MIB: f64 = 1024.0 * 1024.0;

/// The view of a new report `u`, given the task's previous one (pure): cpus in use is the cpu
/// time consumed per second of wall time between the two reads.
pub(crate) fn view(prev: Option<&TaskUsageView>, u: &TaskUsage) -> TaskUsageView {
    let timestamp = if u.timestamp > 0.0 {
        u.timestamp
    } else {
        crate::unix_now()
    };
    let cpus_used = match prev {
        Some(p) if timestamp > p.timestamp && u.cpu_secs >= p.cpus_time_secs => {
            (u.cpu_secs - p.cpus_time_secs) / (timestamp - p.timestamp)
        }
        Some(p) => p.cpus_used,
        None => 0.0,
    };
    TaskUsageView {
        timestamp,
        cpus_used,
        cpus_time_secs: u.cpu_secs,
        cpus_nr_throttled: u.cpu_nr_throttled,
        cpus_throttled_time_secs: u.cpu_throttled_secs,
        mem_total_bytes: u.mem_bytes,
        mem_rss_bytes: u.mem_rss_bytes,
        mem_cache_bytes: u.mem_cache_bytes,
        processes: u.pids,
        disk_used_bytes: u.disk_bytes,
        mem_oom_events: u.oom_events,
    }
}

/// Amounts of [`RESOURCES`]: cpus, mem MiB, disk MiB, gpus.
pub type Amounts = [f64; 4];

/// The amounts of [`RESOURCES`] in `r`.
pub fn amounts(r: &Resources) -> Amounts {
    RESOURCES.map(|n| r.scalar(n).as_f64())
}

/// The used amounts of one task's usage: cpus in use, memory charged (MiB), sandbox (MiB), 0 gpus.
pub fn used_amounts(u: &TaskUsageView) -> Amounts {
    [
        u.cpus_used,
        u.mem_total_bytes as f64 / MIB,
        u.disk_used_bytes as f64 / MIB,
        0.0,
    ]
}

/// One agent in a [`UsageSnapshot`].
#[derive(Clone, Debug)]
pub struct AgentUsage {
    /// Agent id.
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// Whether it is connected.
    pub active: bool,
    /// Its resources.
    pub total: Amounts,
    /// Held by tasks.
    pub allocated: Amounts,
}

/// One non-terminal task in a [`UsageSnapshot`].
#[derive(Clone, Debug)]
pub struct TaskUsageRow {
    /// Task id.
    pub id: String,
    /// Task name (a Marathon app's tasks carry the app's id with `/` as `_`).
    pub name: String,
    /// Framework id.
    pub framework_id: String,
    /// Agent id.
    pub agent_id: String,
    /// State.
    pub state: TaskState,
    /// Resources it holds.
    pub allocated: Amounts,
    /// Its latest usage, if reported.
    pub usage: Option<TaskUsageView>,
}

/// Agents and live tasks with allocation and usage, taken under one lock.
#[derive(Clone, Debug, Default)]
pub struct UsageSnapshot {
    /// Unix seconds when taken.
    pub timestamp: f64,
    /// Registered agents (not those only recovered from the store).
    pub agents: Vec<AgentUsage>,
    /// Non-terminal tasks.
    pub tasks: Vec<TaskUsageRow>,
}

impl Core {
    /// Agents and live tasks with their allocation and latest usage.
    pub(crate) fn usage_snapshot(&self) -> UsageSnapshot {
        let agents = self
            .agents
            .values()
            .filter(|a| a.status != AgentStatus::Recovered)
            .map(|a| AgentUsage {
                id: a.record.id.to_string(),
                hostname: a.record.hostname.clone(),
                active: a.status == AgentStatus::Active,
                total: amounts(&a.record.resources),
                allocated: amounts(&a.used),
            })
            .collect();
        let tasks = self
            .tasks
            .values()
            .filter(|t| !t.state.is_terminal())
            .map(|t| TaskUsageRow {
                id: t.spec.task_id.to_string(),
                name: t.spec.name.to_string(),
                framework_id: t.spec.framework_id.to_string(),
                agent_id: t.agent_id().to_string(),
                state: t.state,
                allocated: amounts(&t.spec.resources),
                usage: t.usage.as_deref().cloned(),
            })
            .collect();
        UsageSnapshot {
            timestamp: crate::unix_now(),
            agents,
            tasks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_types::TaskId;

    fn report(ts: f64, cpu: f64) -> TaskUsage {
        TaskUsage {
            task_id: TaskId::new("t"),
            mem_bytes: 64 << 20,
            cpu_secs: cpu,
            timestamp: ts,
            cpu_user_secs: cpu,
            cpu_system_secs: 0.0,
            cpu_nr_throttled: 3,
            cpu_throttled_secs: 0.5,
            mem_rss_bytes: 60 << 20,
            mem_cache_bytes: 4 << 20,
            pids: 2,
            oom_events: 0,
            disk_bytes: 1 << 20,
        }
    }

    #[test]
    fn cpus_used_is_cpu_time_per_second_between_reports() {
        let first = view(None, &report(100.0, 10.0));
        assert_eq!(first.cpus_used, 0.0, "one report says nothing of the rate");
        let second = view(Some(&first), &report(102.0, 11.5));
        assert!((second.cpus_used - 0.75).abs() < 1e-9);
        assert_eq!(used_amounts(&second)[1], 64.0);
        assert_eq!(used_amounts(&second)[2], 1.0);
        // A report from the same instant (or a reset counter) keeps the last rate.
        let same = view(Some(&second), &report(102.0, 11.6));
        assert!((same.cpus_used - 0.75).abs() < 1e-9);
    }

    #[test]
    fn old_agents_reports_without_the_new_fields_still_parse() {
        let old = r#"{"task_id":"t","mem_bytes":5,"cpu_secs":1.5}"#;
        let u: TaskUsage = serde_json::from_str(old).expect("parses");
        assert_eq!(
            (u.mem_bytes, u.cpu_secs, u.pids, u.timestamp),
            (5, 1.5, 0, 0.0)
        );
        assert!(view(None, &u).timestamp > 0.0, "the master stamps it");
    }
}
