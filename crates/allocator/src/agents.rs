//! Per-agent allocator state: free resources, holdings per (framework, role), offer filters and
//! maintenance / inverse-offer bookkeeping.
//!
//! Owned by [`crate::Allocator`]; read by the allocation cycle.

use crate::qty::Names;
use crate::types::{AgentInfo, Unavailability};
use meseta_types::{AgentId, FrameworkId, Resource, Resources, Scalar, Value};
use std::time::Duration;

/// How many scalar entries a [`Bag`] keeps inline (cpus, mem, disk, gpus).
const INLINE: usize = 4;

/// A compact copy of a [`Resources`]: entries as (interned name, interned role, value), the
/// first few scalars inline; persistent volumes (rare) are kept whole with their name index. Building one usually allocates nothing, which lets a grant hand the
/// agent's free pool to the offer without copying it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bag {
    inline: [(usize, usize, i64); INLINE],
    len: usize,
    other: Vec<(usize, usize, Value)>,
    volumes: Vec<(usize, Resource)>,
}

impl Bag {
    /// The entries of `r`, interning names in `names` and roles in `roles`.
    pub fn of(r: &Resources, names: &mut Names, roles: &mut Names) -> Bag {
        let mut bag = Bag::default();
        for e in r.iter() {
            let (n, ro) = (names.intern(&e.name), roles.intern(&e.role));
            if e.disk.is_some() {
                bag.volumes.push((n, e.clone()));
                continue;
            }
            match &e.value {
                Value::Scalar(s) if bag.len < INLINE => {
                    bag.inline[bag.len] = (n, ro, s.milli());
                    bag.len += 1;
                }
                v => bag.other.push((n, ro, v.clone())),
            }
        }
        bag
    }

    /// The scalar entries as (name index, milli, reserved?); role index 0 is `*` (see
    /// [`crate::Allocator::new`]).
    pub fn scalars(&self) -> impl Iterator<Item = (usize, i64, bool)> + Clone + '_ {
        let inline = self.inline[..self.len]
            .iter()
            .map(|&(n, r, v)| (n, v, r != 0));
        let other = self.other.iter().filter_map(|(n, r, v)| match v {
            Value::Scalar(s) => Some((*n, s.milli(), *r != 0)),
            _ => None,
        });
        let volumes = self.volumes.iter().filter_map(|(n, r)| match &r.value {
            Value::Scalar(s) => Some((*n, s.milli(), r.role != meseta_types::UNRESERVED)),
            _ => None,
        });
        inline.chain(other).chain(volumes)
    }

    /// Back to a `Resources`.
    pub fn to_resources(&self, names: &Names, roles: &Names) -> Resources {
        let mut out = Resources::new();
        let inline = self.inline[..self.len]
            .iter()
            .map(|&(n, r, v)| (n, r, Value::Scalar(Scalar::from_milli(v))));
        let other = self.other.iter().cloned();
        for (n, r, v) in inline.chain(other) {
            // Entries come from a valid Resources: push cannot fail.
            let _ = out.push(Resource::new(names.name(n), roles.name(r), v));
        }
        for (_, v) in &self.volumes {
            let _ = out.push(v.clone());
        }
        out
    }
}

/// What one framework holds in one role on an agent (offered or in use).
#[derive(Clone, Debug)]
pub(crate) struct Held {
    /// The holder.
    pub fw: FrameworkId,
    /// The role it holds them in (interned).
    pub role: usize,
    /// The resources.
    pub res: Bag,
}

/// A refusal: `fw` in `role` does not want `refused` (or less) on this agent until `until`.
#[derive(Clone, Debug)]
pub(crate) struct Filter {
    /// The refusing framework.
    pub fw: FrameworkId,
    /// The role of the refused offer.
    pub role: String,
    /// What was refused.
    pub refused: Resources,
    /// Expiry (caller's monotonic clock).
    pub until: Duration,
}

/// Inverse-offer state of one framework on an agent under maintenance.
#[derive(Clone, Debug)]
pub(crate) struct InverseState {
    /// The framework.
    pub fw: FrameworkId,
    /// An inverse offer was sent and not answered.
    pub outstanding: bool,
    /// The framework accepted: nothing more to ask for this window.
    pub accepted: bool,
    /// Declined with a filter until this time.
    pub until: Option<Duration>,
}

/// One registered agent.
#[derive(Clone, Debug)]
pub(crate) struct AgentState {
    /// Its id.
    pub id: AgentId,
    /// What it reported.
    pub info: AgentInfo,
    /// Whether it may receive offers.
    pub active: bool,
    /// `info.total` minus everything held, once the agent was first granted something; `None`
    /// until then, when it is all of `info.total` (see [`AgentState::available`]). An idle
    /// cluster's agents hold no copy of their total besides the one the master shares.
    pub free: Option<Resources>,
    /// Holdings.
    pub held: Vec<Held>,
    /// Whether it has GPUs.
    pub gpu: bool,
    /// Whether it is in a region other than the master's.
    pub foreign: bool,
    /// Maintenance window.
    pub unavailability: Option<Unavailability>,
    /// Offer filters.
    pub filters: Vec<Filter>,
    /// Inverse-offer state per framework.
    pub inverse: Vec<InverseState>,
    /// Listed in the allocator's changed-agents set (`dirty.rs`).
    pub dirty: bool,
}

impl AgentState {
    /// A fresh agent holding nothing.
    pub fn new(id: AgentId, info: AgentInfo, local_region: Option<&str>) -> AgentState {
        let foreign = match (&info.domain, local_region) {
            (Some(d), Some(local)) => d.region != local,
            _ => false,
        };
        AgentState {
            id,
            gpu: info.total.gpus() > 0.0,
            foreign,
            free: None,
            info,
            active: true,
            held: Vec::new(),
            unavailability: None,
            filters: Vec::new(),
            inverse: Vec::new(),
            dirty: false,
        }
    }

    /// `info.total` minus everything held.
    pub fn available(&self) -> &Resources {
        free_pool(&self.free, &self.info.total)
    }

    /// The free pool, to change: copied from the total on the first change, then kept (its
    /// buffer stays put, which keeps the cycle's walk over agents cache-friendly).
    pub fn available_mut(&mut self) -> &mut Resources {
        let total = &self.info.total;
        self.free.get_or_insert_with(|| Resources::clone(total))
    }

    /// Index of the holding of (fw, interned role).
    pub fn held_index(&self, fw: &FrameworkId, role: usize) -> Option<usize> {
        self.held.iter().position(|h| &h.fw == fw && h.role == role)
    }

    /// The inverse-offer state of `fw`, created on demand.
    pub fn inverse_of(&mut self, fw: &FrameworkId) -> &mut InverseState {
        let pos = match self.inverse.iter().position(|s| &s.fw == fw) {
            Some(p) => p,
            None => {
                self.inverse.push(InverseState {
                    fw: fw.clone(),
                    outstanding: false,
                    accepted: false,
                    until: None,
                });
                self.inverse.len() - 1
            }
        };
        &mut self.inverse[pos]
    }
}

/// An agent's free pool from its parts ([`AgentState::available`] for callers that hold
/// another field of the agent mutably).
pub(crate) fn free_pool<'a>(free: &'a Option<Resources>, total: &'a Resources) -> &'a Resources {
    free.as_ref().unwrap_or(total)
}

/// Whether `offer` to (fw, role) is blocked by an unexpired filter of `filters` covering it.
/// Drops expired filters.
pub(crate) fn is_filtered(
    filters: &mut Vec<Filter>,
    fw: &FrameworkId,
    role: &str,
    offer: &Resources,
    now: Duration,
) -> bool {
    if filters.is_empty() {
        return false;
    }
    filters.retain(|f| f.until > now);
    filters
        .iter()
        .any(|f| &f.fw == fw && f.role == role && f.refused.contains(offer))
}

/// `have - take`, taking of each entry only what `have` holds (scalars are clamped; ranges and
/// sets that are not contained are left alone). Returns (rest, what was actually taken).
pub(crate) fn saturating_sub(have: &Resources, take: &Resources) -> (Resources, Resources) {
    if let Ok(rest) = have.checked_sub(take) {
        return (rest, take.clone());
    }
    let mut taken = Resources::new();
    for want in take.iter() {
        let mine = have.filter(|r| {
            r.name == want.name
                && r.role == want.role
                && r.persistence_id() == want.persistence_id()
        });
        let Some(cur) = mine.iter().next() else {
            continue;
        };
        let part = match (&cur.value, &want.value) {
            (Value::Scalar(a), Value::Scalar(b)) => {
                let mut r = want.clone();
                r.value = Value::Scalar((*a).min(*b));
                r
            }
            _ if cur.value.contains(&want.value) => want.clone(),
            _ => continue,
        };
        // Entries come from valid Resources; a kind conflict is impossible here.
        let _ = taken.push(part);
    }
    let rest = have.checked_sub(&taken).unwrap_or_else(|_| have.clone());
    (rest, taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(s: &str) -> Resources {
        Resources::parse(s).expect("valid resources")
    }

    #[test]
    fn saturating_sub_clamps() {
        let (rest, taken) = saturating_sub(&res("cpus:2;mem:100"), &res("cpus:3;mem:50;disk:1"));
        assert_eq!(rest, res("mem:50"));
        assert_eq!(taken, res("cpus:2;mem:50"));
        let (rest, taken) = saturating_sub(&res("cpus:2"), &res("cpus:1"));
        assert_eq!((rest, taken), (res("cpus:1"), res("cpus:1")));
    }

    #[test]
    fn filters_cover_subsets_and_expire() {
        let info = AgentInfo {
            hostname: "h".into(),
            total: res("cpus:4;mem:1024;gpus:1").into(),
            domain: None,
        };
        let mut a = AgentState::new(AgentId::new("a"), info, None);
        assert!(a.gpu && !a.foreign);
        let fw = FrameworkId::new("f");
        a.filters.push(Filter {
            fw: fw.clone(),
            role: "*".into(),
            refused: res("cpus:4;mem:1024"),
            until: Duration::from_secs(10),
        });
        let now = Duration::from_secs(5);
        assert!(is_filtered(
            &mut a.filters,
            &fw,
            "*",
            &res("cpus:4;mem:1024"),
            now
        ));
        assert!(is_filtered(&mut a.filters, &fw, "*", &res("cpus:1"), now));
        assert!(!is_filtered(&mut a.filters, &fw, "*", &res("cpus:5"), now));
        assert!(!is_filtered(
            &mut a.filters,
            &fw,
            "web",
            &res("cpus:1"),
            now
        ));
        assert!(!is_filtered(
            &mut a.filters,
            &fw,
            "*",
            &res("cpus:1"),
            Duration::from_secs(10)
        ));
        assert!(a.filters.is_empty());
    }
}
