//! Readiness checks (reference §1.4): the services framework GETs each new instance's
//! readiness URL until it answers one of the "ready" status codes; only then does a deployment
//! count the instance. Probes run as tasks and report back through a channel.

use std::collections::HashMap;
use std::time::Duration;

use meseta_services::engine::ReadinessProbe;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A probe that passed: (app, instance, task id).
pub(crate) type Ready = (String, String, String);

/// Probes in flight and when each task was last probed.
#[derive(Default)]
pub(crate) struct Readiness {
    last: HashMap<String, Instant>,
}

impl Readiness {
    /// Start the probes that are due; results arrive on `tx`.
    pub(crate) fn run(
        &mut self,
        client: &reqwest::Client,
        probes: Vec<ReadinessProbe>,
        tx: &mpsc::Sender<Ready>,
    ) {
        let live: std::collections::HashSet<&str> =
            probes.iter().map(|p| p.task_id.as_str()).collect();
        self.last.retain(|t, _| live.contains(t.as_str()));
        for p in probes {
            let due = self
                .last
                .get(&p.task_id)
                .is_none_or(|t| t.elapsed() >= Duration::from_secs_f64(p.interval));
            if !due {
                continue;
            }
            self.last.insert(p.task_id.clone(), Instant::now());
            let client = client.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let res = client
                    .get(&p.url)
                    .timeout(Duration::from_secs_f64(p.timeout))
                    .send()
                    .await;
                if let Ok(r) = res {
                    if p.ready_codes.contains(&r.status().as_u16()) {
                        let _ = tx.send((p.app, p.instance, p.task_id)).await;
                    }
                }
            });
        }
    }
}
