//! The one persisted-change path: every operator change ([`Command`]) locks the core, applies,
//! unlocks, persists what changed, and — when the store refuses — follows the change's policy:
//!
//! - **roll back** (the store still holds the old state): reservations, unreservations and volume
//!   creation (the inverse operation is applied), weights and quotas (the old values return);
//! - **keep dirty and retry** (the change has already reached agents or frameworks, so it stays
//!   and the timer stores it again): volume destruction (the agent is already deleting the
//!   directory) and maintenance changes (inverse offers and kills are already sent);
//! - **log only**: deleting a torn-down framework's record (a stale record only costs a
//!   recovered entry that times out).
//!
//! The timer task ([`Master::store_dirty`]) uses the same writes for what changed on its own
//! (reservations dropped at re-registration, failed writes being retried, removed frameworks).
//!
//! ```text
//! HTTP handler ──Command──▶ Master::execute ──lock──▶ Core::apply_command ──▶ Change{write, undo}
//!                                  └──▶ Write::save(store) ──fails──▶ Undo::run(core) → 503
//! ```

use std::collections::BTreeMap;

use meseta_allocator::{Quota, ResourceOp};
use meseta_store::{Store, StoreError, MAX_TXN_OPS};
use meseta_types::{AgentId, FrameworkId, Resources};
use tokio::time::Instant;

use crate::command::{Command, CommandError};
use crate::core::Core;
use crate::ops_state::Persisted;
use crate::{registry, Master};

/// What a change leaves to persist.
pub(crate) enum Write {
    /// Nothing (the change had no effect to store).
    Nothing,
    /// Every agent's dynamic reservations.
    Reservations(BTreeMap<AgentId, Resources>),
    /// The maintenance schedule and down machines.
    Maintenance(Persisted),
    /// Role weights.
    Weights(Vec<(String, f64)>),
    /// A role's quota (`None`: deleted).
    Quota(String, Option<Quota>),
    /// Delete a removed framework's record.
    ForgetFramework(FrameworkId),
}

impl Write {
    async fn save(&self, store: &dyn Store) -> Result<(), StoreError> {
        match self {
            Write::Nothing => Ok(()),
            Write::Reservations(r) => registry::save_reservations(store, r).await,
            Write::Maintenance(m) => registry::save_maintenance(store, m).await,
            Write::Weights(w) => registry::save_weights(store, w).await,
            Write::Quota(role, q) => registry::save_quota(store, role, q.as_ref()).await,
            Write::ForgetFramework(id) => {
                registry::forget_framework(store, id).await;
                Ok(())
            }
        }
    }
}

/// What happens to an applied change the store refused.
pub(crate) enum Undo {
    /// Apply the inverse operation; the store keeps the old reservations.
    Resources { agent: AgentId, op: ResourceOp },
    /// Keep the reservations as they are and store them again on the next tick.
    RetryReservations,
    /// Keep the maintenance change and store it again on the next tick.
    RetryMaintenance,
    /// Put these weights back (`None`: the role had none).
    Weights(Vec<(String, Option<f64>)>),
    /// Put this quota back (`None`: the role had none).
    Quota(String, Option<Quota>),
    /// Nothing to undo (the write never fails).
    Nothing,
}

impl Undo {
    /// After a refused write that went out in several transactions (weights of more than
    /// [`MAX_TXN_OPS`] roles), put the old records back so the store matches the rolled-back
    /// core. Best effort: if the store refuses this too, the error is logged and the newer
    /// weights of the transactions that landed come back at the next master start.
    async fn unwrite(&self, store: &dyn Store) {
        if let Undo::Weights(before) = self {
            if before.len() > MAX_TXN_OPS {
                if let Err(e) = registry::restore_weights(store, before).await {
                    tracing::warn!(error = %e, "could not restore the stored weights");
                }
            }
        }
    }

    fn run(self, core: &mut Core) {
        match self {
            Undo::Resources { agent, op } => {
                if let Err(e) = core.operator_op(&agent, &op.inverse(), Instant::now()) {
                    tracing::warn!(agent_id = %agent, error = %e, "could not undo an operation");
                }
                core.ops.reservations_dirty = false;
            }
            Undo::RetryReservations => core.ops.reservations_dirty = true,
            Undo::RetryMaintenance => core.ops.maint.dirty = true,
            Undo::Weights(before) => core.restore_weights(before),
            Undo::Quota(role, before) => core.restore_quota(&role, before),
            Undo::Nothing => {}
        }
    }
}

/// An applied change: what to persist, how to undo it, and what to say when the store fails.
pub(crate) struct Change {
    pub write: Write,
    pub undo: Undo,
    /// Start of the 503 message (the store's error follows).
    pub failure: &'static str,
    /// Ask for an allocation once stored (weights and quotas change the shares).
    pub allocate_after: bool,
}

impl Master {
    /// Apply an operator change and persist it (see the module docs for what a store failure
    /// does to it).
    pub(crate) async fn execute(&self, cmd: Command) -> Result<(), CommandError> {
        match cmd {
            Command::Quotas { configs, force } => self.set_quotas(configs, force).await,
            cmd => self.execute_one(cmd).await,
        }
    }

    async fn execute_one(&self, cmd: Command) -> Result<(), CommandError> {
        let change = self.core().apply_command(cmd, Instant::now())?;
        if let Err(e) = change.write.save(self.store()).await {
            change.undo.unwrite(self.store()).await;
            change.undo.run(&mut self.core());
            return Err(CommandError::NotStored(format!("{}: {e}", change.failure)));
        }
        if change.allocate_after {
            self.core().allocate(Instant::now());
        }
        Ok(())
    }

    /// Several quotas: all apply, or none (a refused one undoes those before it, forcefully).
    async fn set_quotas(
        &self,
        configs: Vec<(String, Quota)>,
        force: bool,
    ) -> Result<(), CommandError> {
        let before: Vec<(String, Option<Quota>)> = {
            let core = self.core();
            configs
                .iter()
                .map(|(r, _)| (r.clone(), core.quotas.get(r).cloned()))
                .collect()
        };
        for (i, (role, q)) in configs.into_iter().enumerate() {
            let set = Command::Quota {
                role,
                quota: Some(q),
                force,
            };
            if let Err(e) = self.execute_one(set).await {
                for (role, old) in before.into_iter().take(i) {
                    let undo = Command::Quota {
                        role,
                        quota: old,
                        force: true,
                    };
                    let _ = self.execute_one(undo).await;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Store what changed without a request (the timer task): forget `removed` frameworks, and
    /// store dirty reservations and maintenance, marking them dirty again when that fails.
    pub(crate) async fn store_dirty(&self, removed: Vec<FrameworkId>) {
        let (reservations, maintenance) = {
            let mut core = self.core();
            (
                core.take_dirty_reservations(),
                core.take_dirty_maintenance(),
            )
        };
        for fw in removed {
            registry::forget_framework(self.store(), &fw).await;
        }
        let writes = [
            (
                reservations.map(Write::Reservations),
                Undo::RetryReservations,
                "reservations",
            ),
            (
                maintenance.map(Write::Maintenance),
                Undo::RetryMaintenance,
                "maintenance schedule",
            ),
        ];
        for (write, undo, what) in writes {
            let Some(write) = write else { continue };
            if let Err(e) = write.save(self.store()).await {
                tracing::warn!(error = %e, "{what} not stored; retrying");
                undo.run(&mut self.core());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::MaintenanceChange;
    use crate::core::MasterConfig;
    use crate::records::Recovered;
    use meseta_api::maintenance::{MachineId, Nanos, Schedule, Window, WindowTime};

    fn r(s: &str) -> Resources {
        Resources::parse(s).expect("resources")
    }

    /// A core with one agent `a1` of `total` known to the allocator.
    fn core_with_agent(total: &str) -> (Core, AgentId) {
        let mut core = Core::new(MasterConfig::default(), Recovered::default());
        let agent = AgentId::new("a1");
        let info = meseta_allocator::AgentInfo {
            hostname: "h".into(),
            total: r(total).into(),
            domain: None,
        };
        core.alloc
            .add_agent(agent.clone(), info, &[])
            .expect("agent");
        (core, agent)
    }

    fn apply(core: &mut Core, cmd: Command) -> Result<Change, CommandError> {
        core.apply_command(cmd, Instant::now())
    }

    #[test]
    fn a_reservation_the_store_refuses_is_rolled_back() {
        let (mut core, agent) = core_with_agent("cpus:4;mem:128");
        let op = ResourceOp::Reserve(r("cpus(db):1"));
        let cmd = Command::Resources {
            agent: agent.clone(),
            op,
        };
        let change = apply(&mut core, cmd).expect("applied");
        let Write::Reservations(stored) = &change.write else {
            panic!("reservations are written")
        };
        assert_eq!(stored.get(&agent), Some(&r("cpus(db):1")));
        assert_eq!(change.failure, "reservation not stored");
        change.undo.run(&mut core);
        assert!(core.ops.reservations.is_empty());
        assert!(!core.ops.reservations_dirty);
        assert_eq!(core.agent_total(&agent), r("cpus:4;mem:128"));
    }

    #[test]
    fn refused_changes_change_nothing_and_name_why() {
        let (mut core, agent) = core_with_agent("cpus:4");
        let cmd = Command::Resources {
            agent: agent.clone(),
            op: ResourceOp::Unreserve(r("cpus(db):1")),
        };
        assert!(matches!(
            apply(&mut core, cmd),
            Err(CommandError::Conflict(_))
        ));
        let cmd = Command::Resources {
            agent,
            op: ResourceOp::Reserve(r("cpus(db):9")),
        };
        assert!(matches!(
            apply(&mut core, cmd),
            Err(CommandError::Conflict(_))
        ));
        assert!(!core.ops.reservations_dirty);
        let err = apply(&mut core, Command::RemoveQuota("db".into())).err();
        assert_eq!(
            err,
            Some(CommandError::Invalid("no quota set for role 'db'".into()))
        );
        let err = apply(&mut core, Command::Teardown(FrameworkId::new("f"))).err();
        assert_eq!(
            err,
            Some(CommandError::Invalid(
                "no framework found with id 'f'".into()
            ))
        );
        let bad = Command::Weights(vec![("db".into(), -1.0)]);
        assert!(matches!(
            apply(&mut core, bad),
            Err(CommandError::Invalid(_))
        ));
    }

    #[test]
    fn weights_and_quotas_the_store_refuses_come_back() {
        let mut core = Core::new(MasterConfig::default(), Recovered::default());
        core.weights.insert("web".into(), 3.0);
        let cmd = Command::Weights(vec![("db".into(), 2.0), ("web".into(), 5.0)]);
        let change = apply(&mut core, cmd).expect("applied");
        assert!(change.allocate_after);
        assert_eq!(core.weights.get("db"), Some(&2.0));
        change.undo.run(&mut core);
        assert_eq!(core.weights.get("db"), None);
        assert_eq!(core.weights.get("web"), Some(&3.0));

        let quota = Quota::default();
        let cmd = Command::Quota {
            role: "db".into(),
            quota: Some(quota),
            force: true,
        };
        let change = apply(&mut core, cmd).expect("applied");
        assert!(core.quotas.contains_key("db"));
        assert!(matches!(&change.write, Write::Quota(role, Some(_)) if role == "db"));
        change.undo.run(&mut core);
        assert!(!core.quotas.contains_key("db"));
    }

    #[test]
    fn a_maintenance_change_the_store_refuses_stays_and_is_stored_again() {
        let mut core = Core::new(MasterConfig::default(), Recovered::default());
        let machine = MachineId {
            hostname: Some("h1".into()),
            ip: None,
        };
        let schedule = Schedule {
            windows: vec![Window {
                machine_ids: vec![machine],
                unavailability: WindowTime {
                    start: Nanos { nanoseconds: 1 },
                    duration: None,
                },
            }],
        };
        let cmd = Command::Maintenance(MaintenanceChange::Schedule(schedule.clone()));
        let change = apply(&mut core, cmd).expect("applied");
        assert!(matches!(&change.write, Write::Maintenance(p) if p.schedule == schedule));
        assert!(!core.ops.maint.dirty);
        change.undo.run(&mut core);
        assert!(core.ops.maint.dirty, "the timer stores it again");
        assert_eq!(core.ops.maint.schedule, schedule);
    }
}
