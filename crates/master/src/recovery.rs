//! Building the core from what the store kept: the agents (as recovered, until they
//! re-register), frameworks (disconnected, within their failover timeout), weights, quotas,
//! reservations and the maintenance schedule. Called once by `Master::new`.

use std::collections::{BTreeMap, HashMap, VecDeque};

use meseta_types::Resources;
use tokio::time::Instant;

use crate::allocator::new_allocator;
use crate::core::{AgentEntry, AgentStatus, Core, Counters, FrameworkEntry, MasterConfig};
use crate::ops_state::{MaintState, OpsState};
use crate::records::Recovered;
use crate::unix_now;

impl Core {
    /// The core of a master starting over `recovered`.
    pub fn new(cfg: MasterConfig, recovered: Recovered) -> Core {
        let now = Instant::now();
        let master_id = uuid::Uuid::new_v4().to_string();
        let alloc = new_allocator(cfg.domain.as_ref());
        let mut core = Core {
            addr: cfg.listen,
            cfg,
            master_id,
            start_time: unix_now(),
            agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            tasks: crate::task_table::TaskTable::default(),
            shapes: crate::task::ResourceShapes::default(),
            offers: HashMap::new(),
            counters: Counters::default(),
            bus: crate::bus::Bus::new(),
            allocation_wanted: std::sync::Arc::new(tokio::sync::Notify::new()),
            alloc,
            epoch: now,
            weights: BTreeMap::new(),
            quotas: BTreeMap::new(),
            ops: OpsState::default(),
            next_agent: 0,
            next_framework: 0,
            next_offer: 0,
            next_conn: 0,
        };
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
