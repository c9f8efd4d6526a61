//! Resource operations of the [`Allocator`]: RESERVE / UNRESERVE (dynamic reservations) and
//! CREATE / DESTROY (persistent volumes), from the operator endpoints ([`Allocator::apply`], on
//! free resources) and inside an ACCEPT ([`Allocator::apply_held`], on what the accepted offer
//! holds).
//!
//! Every operation replaces what it [consumes](ResourceOp::consumes) by what it
//! [produces](ResourceOp::produces) in the agent's total: reserving turns `cpus:1` into
//! `cpus(db):1`; creating turns plain reserved disk (`disk(db):64`) into the volume
//! (`disk(db)[v1:data]:64`), which keeps its identity, is only offered to its role and comes back
//! to it, whole, after the task using it ends. Used by the master (`ops.rs` there).

use crate::allocator::Allocator;
use crate::roles::validate_role;
use crate::types::AllocatorError;
use meseta_types::{AgentId, FrameworkId, Resources, UNRESERVED};

/// One conversion of an agent's resources that keeps their amounts.
#[derive(Clone, Debug, PartialEq)]
pub enum ResourceOp {
    /// Dynamically reserve role-labelled resources (taken from the unreserved ones).
    Reserve(Resources),
    /// Undo a dynamic reservation.
    Unreserve(Resources),
    /// Create persistent volumes on dynamically reserved disk.
    Create(Resources),
    /// Destroy persistent volumes back into plain reserved disk.
    Destroy(Resources),
}

impl ResourceOp {
    /// The resources the operation names (reservations or volumes).
    pub fn resources(&self) -> &Resources {
        match self {
            ResourceOp::Reserve(r)
            | ResourceOp::Unreserve(r)
            | ResourceOp::Create(r)
            | ResourceOp::Destroy(r) => r,
        }
    }

    /// What it takes out of the agent's resources.
    pub fn consumes(&self) -> Resources {
        match self {
            ResourceOp::Reserve(r) => r.with_role(UNRESERVED),
            ResourceOp::Create(v) => v.without_volumes(),
            ResourceOp::Unreserve(r) | ResourceOp::Destroy(r) => r.clone(),
        }
    }

    /// What it puts in their place.
    pub fn produces(&self) -> Resources {
        match self {
            ResourceOp::Unreserve(r) => r.with_role(UNRESERVED),
            ResourceOp::Destroy(v) => v.without_volumes(),
            ResourceOp::Reserve(r) | ResourceOp::Create(r) => r.clone(),
        }
    }

    /// The operation that undoes this one.
    pub fn inverse(&self) -> ResourceOp {
        match self.clone() {
            ResourceOp::Reserve(r) => ResourceOp::Unreserve(r),
            ResourceOp::Unreserve(r) => ResourceOp::Reserve(r),
            ResourceOp::Create(v) => ResourceOp::Destroy(v),
            ResourceOp::Destroy(v) => ResourceOp::Create(v),
        }
    }

    /// CREATE or DESTROY?
    pub fn is_volume_op(&self) -> bool {
        matches!(self, ResourceOp::Create(_) | ResourceOp::Destroy(_))
    }

    /// Does it take the resources from the free pool (RESERVE, CREATE) rather than give free
    /// ones back (UNRESERVE, DESTROY)?
    pub fn takes(&self) -> bool {
        matches!(self, ResourceOp::Reserve(_) | ResourceOp::Create(_))
    }
}

impl Allocator {
    /// Applies `op` to the free resources of `agent` (the operator endpoints). A reservation
    /// whose unreserved amounts are not free may take them from what a framework holds in the
    /// reservation's role (a RESERVE inside an ACCEPT), which then holds the reserved form.
    /// UNRESERVE and DESTROY fail with [`AllocatorError::ReservationInUse`] unless all of the
    /// resources are free (not offered, not used by tasks).
    pub fn apply(&mut self, agent: &AgentId, op: &ResourceOp) -> Result<(), AllocatorError> {
        let ai = self.agent_idx(agent)?;
        let role = self.check_op(ai, agent, op)?;
        let (from, to) = (op.consumes(), op.produces());
        let short = || AllocatorError::InsufficientResources(agent.clone(), from.to_string());
        let a = &self.agents[ai];
        let mut holder = None;
        if !op.takes() {
            if !a.info.total.contains(&from) {
                return Err(short());
            }
            if !a.available().contains(&from) {
                return Err(AllocatorError::ReservationInUse(
                    agent.clone(),
                    from.to_string(),
                ));
            }
        } else if !a.available().contains(&from) {
            let ResourceOp::Reserve(_) = op else {
                return Err(short());
            };
            let fw = self.holder_of(ai, &role, &from).ok_or_else(short)?;
            self.release(ai, &fw, &role, &from);
            holder = Some(fw);
        }
        self.convert(ai, &from, &to);
        self.count_op(op);
        if let Some(fw) = holder {
            self.grant(ai, &fw, &role, &to);
        }
        Ok(())
    }

    /// Applies `op` inside an ACCEPT: it converts part of what `fw` holds in `role` on `agent`
    /// (the offer being accepted), and `fw` then holds the result. New reservations and volumes
    /// must be of `role`.
    pub fn apply_held(
        &mut self,
        agent: &AgentId,
        fw: &FrameworkId,
        role: &str,
        op: &ResourceOp,
    ) -> Result<(), AllocatorError> {
        let ai = self.agent_idx(agent)?;
        let target = self.check_op(ai, agent, op)?;
        if op.takes() && target != role {
            let why = match op {
                ResourceOp::Reserve(_) => {
                    format!("reservation role `{target}` differs from the offer's role `{role}`")
                }
                _ => format!("volumes must be of the offer's role `{role}`"),
            };
            return Err(AllocatorError::InvalidReservation(agent.clone(), why));
        }
        let (from, to) = (op.consumes(), op.produces());
        if !self.held_by(ai, fw, role).contains(&from) {
            return Err(AllocatorError::InsufficientResources(
                agent.clone(),
                from.to_string(),
            ));
        }
        self.release(ai, fw, role, &from);
        self.convert(ai, &from, &to);
        self.count_op(op);
        self.grant(ai, fw, role, &to);
        Ok(())
    }

    /// Checks `op`'s resources; returns their role.
    fn check_op(
        &self,
        ai: usize,
        agent: &AgentId,
        op: &ResourceOp,
    ) -> Result<String, AllocatorError> {
        match op {
            ResourceOp::Reserve(r) | ResourceOp::Unreserve(r) => single_reserved_role(agent, r),
            ResourceOp::Create(v) => self.check_new(ai, agent, v),
            ResourceOp::Destroy(v) => volume_role(agent, v),
        }
    }

    /// Reservations count towards their role's quota consumption.
    fn count_op(&mut self, op: &ResourceOp) {
        match op {
            ResourceOp::Reserve(r) => self.count_reservations(r, 1),
            ResourceOp::Unreserve(r) => self.count_reservations(r, -1),
            ResourceOp::Create(_) | ResourceOp::Destroy(_) => {}
        }
    }

    /// A framework holding `need` in `role` on agent `ai`.
    fn holder_of(&self, ai: usize, role: &str, need: &Resources) -> Option<FrameworkId> {
        let ri = self.role_names.get(role);
        self.agents[ai]
            .held
            .iter()
            .find(|h| {
                Some(h.role) == ri
                    && h.res
                        .to_resources(&self.names, &self.role_names)
                        .contains(need)
            })
            .map(|h| h.fw.clone())
    }

    /// The role of `volumes`, if valid and none of their persistence ids exists on agent `ai`.
    fn check_new(
        &self,
        ai: usize,
        agent: &AgentId,
        volumes: &Resources,
    ) -> Result<String, AllocatorError> {
        let role = volume_role(agent, volumes)?;
        let existing: Vec<&str> = self.agents[ai]
            .info
            .total
            .volumes()
            .filter(|v| v.role == role)
            .filter_map(|v| v.persistence_id())
            .collect();
        if let Some(dup) = volumes
            .volumes()
            .filter_map(|v| v.persistence_id())
            .find(|id| existing.contains(id))
        {
            return Err(AllocatorError::InvalidReservation(
                agent.clone(),
                format!("a volume with persistence id `{dup}` already exists"),
            ));
        }
        Ok(role)
    }
}

/// The one reservation role of `resources`; errors if empty, unreserved parts, several roles or
/// an invalid role.
fn single_reserved_role(agent: &AgentId, resources: &Resources) -> Result<String, AllocatorError> {
    let bad = |why: &str| {
        Err(AllocatorError::InvalidReservation(
            agent.clone(),
            why.into(),
        ))
    };
    let roles = resources.roles();
    let mut it = roles.into_iter();
    match (it.next(), it.next()) {
        (None, _) => bad("no resources given"),
        (Some(_), Some(_)) => bad("resources of several roles"),
        (Some(r), None) if r == UNRESERVED => bad("cannot reserve for or unreserve `*`"),
        (Some(r), None) => {
            validate_role(&r)?;
            Ok(r)
        }
    }
}

/// Checks that `volumes` are all persistent volumes of one reserved role; returns the role.
fn volume_role(agent: &AgentId, volumes: &Resources) -> Result<String, AllocatorError> {
    let bad = |why: &str| AllocatorError::InvalidReservation(agent.clone(), why.to_string());
    if volumes.is_empty() {
        return Err(bad("no volumes given"));
    }
    if volumes.iter().any(|r| r.disk.is_none()) {
        return Err(bad("a volume needs `disk.persistence.id`"));
    }
    let roles = volumes.roles();
    let mut it = roles.into_iter();
    match (it.next(), it.next()) {
        (Some(r), None) if r != UNRESERVED => Ok(r),
        (Some(_), None) => Err(bad("a volume must be on disk reserved for a role")),
        _ => Err(bad("volumes of several roles")),
    }
}

#[cfg(test)]
mod tests;
