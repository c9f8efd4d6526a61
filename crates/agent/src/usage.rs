//! Periodic usage reports: cgroup memory and cpu time of every running task, sent as
//! [`AgentMessage::Usage`] while connected. Read errors are ignored (the task may just have ended).

use std::sync::Arc;

use meseta_api::agent::{AgentMessage, TaskUsage, UsageReport};
use tokio::time::MissedTickBehavior;

use crate::state::Shared;

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
            .filter_map(|t| t.cgroup.clone().map(|c| (t.spec.task_id.clone(), c)))
            .collect();
        if targets.is_empty() {
            continue;
        }
        let cg = Arc::clone(&cgroups);
        let report = tokio::task::spawn_blocking(move || {
            let tasks = targets
                .into_iter()
                .filter_map(|(task_id, path)| {
                    cg.usage(&path).ok().map(|u| TaskUsage {
                        task_id,
                        mem_bytes: u.mem_bytes,
                        cpu_secs: u.cpu_secs,
                    })
                })
                .collect();
            UsageReport { tasks }
        })
        .await;
        if let Ok(report) = report {
            shared.send_unchecked(AgentMessage::Usage(report));
        }
    }
}
