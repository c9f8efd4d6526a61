//! Periodic usage reports: cgroup memory, cpu time (user, system, throttling), pids, OOM kills
//! and sandbox bytes of every running task, sent as [`AgentMessage::Usage`] while connected and
//! kept for the agent's `GET /monitor/statistics` (Mesos' shape, [`monitor_statistics`]). Read
//! errors are ignored (the task may just have ended).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meseta_api::agent::{
    AgentMessage, MonitorEntry, ResourceStatistics, TaskSpec, TaskUsage, UsageReport,
};
use meseta_isolation::cgroup::Cgroups;
use meseta_types::TaskId;
use tokio::time::MissedTickBehavior;

use crate::state::{now_secs, Shared};

/// At most this many directory entries are visited when sizing one sandbox (bounds the walk of
/// a task that writes millions of files; the figure is then a lower bound).
const MAX_SANDBOX_ENTRIES: usize = 100_000;

const MIB: f64 = 1024.0 * 1024.0;

/// Send a usage report every `usage_interval` until the agent stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let Some(cgroups) = shared.cgroups.clone() else {
        tracing::info!("no cgroups detected: usage reports disabled");
        return;
    };
    let period = shared
        .cfg
        .usage_interval
        .max(std::time::Duration::from_millis(100));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.stop.cancelled() => return,
        }
        let targets: Vec<_> = shared
            .lock()
            .tasks
            .values()
            .filter(|t| !t.record.state.is_terminal())
            .filter_map(|t| {
                let dir = shared.task_dir(&t.spec.task_id)?.join("sandbox");
                t.cgroup.clone().map(|c| (t.spec.task_id.clone(), c, dir))
            })
            .collect();
        if targets.is_empty() {
            shared.set_last_usage(Vec::new());
            continue;
        }
        let cg = Arc::clone(&cgroups);
        let tasks = tokio::task::spawn_blocking(move || read_all(&*cg, targets)).await;
        if let Ok(tasks) = tasks {
            shared.set_last_usage(tasks.clone());
            shared.send_unchecked(AgentMessage::Usage(UsageReport { tasks }));
        }
    }
}

/// Reads the usage of every `(task, cgroup, sandbox)`; tasks whose cgroup is gone are skipped.
fn read_all(cg: &dyn Cgroups, targets: Vec<(TaskId, String, PathBuf)>) -> Vec<TaskUsage> {
    targets
        .into_iter()
        .filter_map(|(task_id, path, sandbox)| {
            let u = cg.usage(&path).ok()?;
            Some(TaskUsage {
                task_id,
                mem_bytes: u.mem_bytes,
                cpu_secs: u.cpu_secs,
                timestamp: now_secs(),
                cpu_user_secs: u.detail.cpu_user_secs,
                cpu_system_secs: u.detail.cpu_system_secs,
                cpu_nr_throttled: u.detail.cpu_nr_throttled,
                cpu_throttled_secs: u.detail.cpu_throttled_secs,
                mem_rss_bytes: u.detail.mem_rss_bytes,
                mem_cache_bytes: u.detail.mem_cache_bytes,
                pids: u.detail.pids,
                oom_events: u.detail.oom_events,
                disk_bytes: dir_bytes(&sandbox, MAX_SANDBOX_ENTRIES),
            })
        })
        .collect()
}

/// Bytes of the regular files below `dir` (links not followed), visiting at most `limit` entries.
pub(crate) fn dir_bytes(dir: &Path, limit: usize) -> u64 {
    let mut total = 0;
    let mut seen = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > limit {
                return total;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// The Mesos `/monitor/statistics` entry of one task from its latest usage (pure).
pub(crate) fn monitor_entry(spec: &TaskSpec, u: &TaskUsage) -> MonitorEntry {
    let r = &spec.resources;
    MonitorEntry {
        executor_id: spec.task_id.clone(),
        executor_name: spec.name.clone(),
        framework_id: spec.framework_id.clone(),
        source: spec.name.clone(),
        statistics: ResourceStatistics {
            timestamp: u.timestamp,
            processes: u.pids,
            cpus_user_time_secs: u.cpu_user_secs,
            cpus_system_time_secs: u.cpu_system_secs,
            cpus_limit: r.scalar("cpus").as_f64(),
            cpus_nr_throttled: u.cpu_nr_throttled,
            cpus_throttled_time_secs: u.cpu_throttled_secs,
            mem_total_bytes: u.mem_bytes,
            mem_rss_bytes: u.mem_rss_bytes,
            mem_cache_bytes: u.mem_cache_bytes,
            mem_limit_bytes: (r.scalar("mem").as_f64() * MIB) as u64,
            disk_limit_bytes: (r.scalar("disk").as_f64() * MIB) as u64,
            disk_used_bytes: u.disk_bytes,
            mem_oom_events: u.oom_events,
        },
    }
}

/// `GET /monitor/statistics`: the latest figures of every running task.
pub(crate) fn monitor_statistics(shared: &Shared) -> Vec<MonitorEntry> {
    let usage = shared.last_usage();
    let st = shared.lock();
    usage
        .iter()
        .filter_map(|u| {
            let t = st.tasks.get(&u.task_id)?;
            (!t.record.state.is_terminal()).then(|| monitor_entry(&t.spec, u))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_bytes_count_files_below_and_stop_at_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), vec![0u8; 1000]).expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/b"), vec![0u8; 24]).expect("write");
        assert_eq!(dir_bytes(dir.path(), 100), 1024);
        assert!(dir_bytes(dir.path(), 1) <= 1000);
        assert_eq!(dir_bytes(&dir.path().join("missing"), 100), 0);
    }
}
