//! Building the core from what the store kept: the agents (as recovered, until they
//! re-register), frameworks (disconnected, within their failover timeout), weights, quotas,
//! reservations and the maintenance schedule. Called once by `Master::new`.

use meseta_types::Resources;
use tokio::time::Instant;

use crate::allocator::new_allocator;
use crate::core::{AgentEntry, AgentStatus, Core, FrameworkEntry, MasterConfig};
use crate::ops_state::MaintState;
use crate::records::Recovered;

impl Core {
    /// The core of a master starting over `recovered`.
    pub fn new(cfg: MasterConfig, recovered: Recovered) -> Core {
        let now = Instant::now();
        let alloc = new_allocator(cfg.domain.as_ref());
        let mut core = Core::empty(cfg, alloc, now);
        core.ops.reservations = recovered.reservations;
        core.ops.maint = MaintState::restore(recovered.maintenance);
        for rec in recovered.agents {
            core.agents.insert(
                rec.id.clone(),
                AgentEntry {
                    record: rec,
                    reregistered_time: None,
                    status: AgentStatus::Recovered,
                    last_seen: now,
                    conn: None,
                    used: Resources::new(),
                    offered: Resources::new(),
                    version: String::new(),
                },
            );
        }
        for (role, w) in recovered.weights {
            match core.alloc.set_weight(&role, w) {
                Ok(()) => {
                    core.weights.insert(role, w);
                }
                Err(e) => tracing::warn!(%role, error = %e, "stored weight ignored"),
            }
        }
        for (role, q) in recovered.quotas {
            match core.alloc.set_quota(&role, q.clone(), true) {
                Ok(()) => {
                    core.quotas.insert(role, q);
                }
                Err(e) => tracing::warn!(%role, error = %e, "stored quota ignored"),
            }
        }
        for rec in recovered.frameworks {
            let mut fw = FrameworkEntry::new(rec.id.clone(), rec.info, rec.registered_time);
            fw.recovered = true;
            fw.disconnected_at = Some(now);
            core.frameworks.insert(rec.id, fw);
        }
        core
    }
}
