//! Readiness checks (reference §1.4): the services framework GETs each new instance's
//! readiness URL until it answers one of the "ready" status codes; only then does a deployment
//! count the instance. A task beside the scheduler asks the engine for the due probes every
//! [`EVERY`], runs each probe as its own task, and reports a pass back as a request.

use std::collections::HashMap;
use std::time::Duration;

use meseta_services::engine::ReadinessProbe;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::handle::ServicesHandle;

/// How often the engine is asked for probes.
const EVERY: Duration = Duration::from_millis(250);

/// Probe until `cancel` (or until the scheduler stops).
pub(crate) async fn run(
    handle: ServicesHandle,
    client: reqwest::Client,
    cancel: CancellationToken,
) {
    let mut readiness = Readiness::default();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(probes) = handle.call(|e, _| e.readiness_probes()).await else {
            return;
        };
        if !probes.is_empty() {
            readiness.run(&client, probes, &handle);
        }
    }
}

/// When each task was last probed.
#[derive(Default)]
struct Readiness {
    last: HashMap<String, Instant>,
}

impl Readiness {
    /// Start the probes that are due; a pass marks the instance ready.
    fn run(&mut self, client: &reqwest::Client, probes: Vec<ReadinessProbe>, h: &ServicesHandle) {
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
            let h = h.clone();
            tokio::spawn(async move {
                let res = client
                    .get(&p.url)
                    .timeout(Duration::from_secs_f64(p.timeout))
                    .send()
                    .await;
                if let Ok(r) = res {
                    if p.ready_codes.contains(&r.status().as_u16()) {
                        let (app, inst, task) = (p.app, p.instance, p.task_id);
                        let _ = h
                            .call(move |e, now| e.mark_ready(&app, &inst, &task, now))
                            .await;
                    }
                }
            });
        }
    }
}
