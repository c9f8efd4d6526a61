//! Applying an operator [`Command`] to the core: the change itself, what it leaves to persist
//! and how it is undone ([`Change`]). Runs under the master's lock, called only by
//! `Master::execute` (`persist.rs`), which persists the result.

use meseta_allocator::{AllocatorError, Quota};
use tokio::time::Instant;

use crate::command::{Command, CommandError, MaintenanceChange};
use crate::core::Core;
use crate::persist::{Change, Undo, Write};

impl Core {
    /// Apply `cmd`; a refused command changes nothing.
    pub(crate) fn apply_command(
        &mut self,
        cmd: Command,
        now: Instant,
    ) -> Result<Change, CommandError> {
        match cmd {
            Command::Resources { agent, op } => {
                self.operator_op(&agent, &op, now)?;
                let write = self
                    .take_dirty_reservations()
                    .map_or(Write::Nothing, Write::Reservations);
                // A destroyed volume's directory is already being deleted: only the others
                // are undone.
                let (undo, failure) = match &op {
                    meseta_allocator::ResourceOp::Destroy(_) => {
                        (Undo::RetryReservations, "volumes not stored")
                    }
                    op if op.is_volume_op() => (
                        Undo::Resources {
                            agent,
                            op: op.clone(),
                        },
                        "volumes not stored",
                    ),
                    op => (
                        Undo::Resources {
                            agent,
                            op: op.clone(),
                        },
                        "reservation not stored",
                    ),
                };
                Ok(change(write, undo, failure, false))
            }
            Command::Weights(new) => {
                let undo = self.set_weights(&new)?;
                Ok(change(
                    Write::Weights(new),
                    undo,
                    "weights not stored",
                    true,
                ))
            }
            Command::RemoveQuota(role) => {
                if !self.quotas.contains_key(&role) {
                    return Err(CommandError::Invalid(format!(
                        "no quota set for role '{role}'"
                    )));
                }
                self.apply_command(
                    Command::Quota {
                        role,
                        quota: None,
                        force: true,
                    },
                    now,
                )
            }
            Command::Quota { role, quota, force } => {
                let before = self.quotas.get(&role).cloned();
                self.set_quota(&role, quota.clone(), force)?;
                let undo = Undo::Quota(role.clone(), before);
                Ok(change(
                    Write::Quota(role, quota),
                    undo,
                    "quota not stored",
                    true,
                ))
            }
            Command::Quotas { .. } => Err(CommandError::Invalid(
                "several quotas are set one by one".into(),
            )),
            Command::Maintenance(m) => {
                let r = match m {
                    MaintenanceChange::Schedule(s) => self.update_schedule(s, now),
                    MaintenanceChange::Down(ids) => self.machines_down(ids, now),
                    MaintenanceChange::Up(ids) => self.machines_up(ids, now),
                };
                r.map_err(CommandError::Invalid)?;
                let write = self
                    .take_dirty_maintenance()
                    .map_or(Write::Nothing, Write::Maintenance);
                let failure = "maintenance change applied but not stored yet";
                Ok(change(write, Undo::RetryMaintenance, failure, false))
            }
            Command::Teardown(id) => {
                if !self.frameworks.contains_key(&id) {
                    return Err(CommandError::Invalid(format!(
                        "no framework found with id '{id}'"
                    )));
                }
                self.teardown(&id);
                self.allocate(now);
                Ok(change(Write::ForgetFramework(id), Undo::Nothing, "", false))
            }
        }
    }

    /// Set role weights, all or none; returns how to put the old ones back.
    fn set_weights(&mut self, new: &[(String, f64)]) -> Result<Undo, CommandError> {
        for (role, w) in new {
            meseta_allocator::validate_role(role)
                .map_err(|e| CommandError::Invalid(e.to_string()))?;
            meseta_allocator::validate_weight(role, *w)
                .map_err(|e| CommandError::Invalid(e.to_string()))?;
        }
        let before = new
            .iter()
            .map(|(role, _)| (role.clone(), self.weights.get(role).copied()))
            .collect();
        for (role, w) in new {
            let _ = self.alloc.set_weight(role, *w);
            self.weights.insert(role.clone(), *w);
        }
        Ok(Undo::Weights(before))
    }

    /// Put weights back (`None`: the role had none, so the default 1.0).
    pub(crate) fn restore_weights(&mut self, before: Vec<(String, Option<f64>)>) {
        for (role, old) in before {
            let _ = self.alloc.set_weight(&role, old.unwrap_or(1.0));
            match old {
                Some(w) => self.weights.insert(role, w),
                None => self.weights.remove(&role),
            };
        }
    }

    /// Set (or remove, with `None`) a role's quota. 409 when a limit is below what the role
    /// already consumes, 400 for other refusals.
    fn set_quota(&mut self, role: &str, q: Option<Quota>, force: bool) -> Result<(), CommandError> {
        match q {
            Some(q) => {
                if let Err(e) = self.alloc.set_quota(role, q.clone(), force) {
                    return Err(match e {
                        AllocatorError::LimitBelowConsumption(..) => {
                            CommandError::Conflict(e.to_string())
                        }
                        _ => CommandError::Invalid(e.to_string()),
                    });
                }
                self.quotas.insert(role.to_string(), q);
            }
            None => {
                self.alloc.remove_quota(role);
                self.quotas.remove(role);
            }
        }
        Ok(())
    }

    /// Put a quota back (`None`: the role had none).
    pub(crate) fn restore_quota(&mut self, role: &str, before: Option<Quota>) {
        let _ = self.set_quota(role, before, true);
    }
}

fn change(write: Write, undo: Undo, failure: &'static str, allocate_after: bool) -> Change {
    Change {
        write,
        undo,
        failure,
        allocate_after,
    }
}
