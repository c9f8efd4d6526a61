//! Role names and the hierarchical role tree: per-node weight, quota, subtree allocation and
//! reservation totals, subscribed frameworks, and the weighted DRF ordering of roles.
//!
//! Used by [`crate::Allocator`] (accounting and views) and the allocation cycle (sorting).

use crate::qty::Qty;
use crate::types::{AllocatorError, Quota};
use meseta_types::{FrameworkId, UNRESERVED};
use std::collections::{BTreeMap, BTreeSet};

/// Checks a role name: `*`, or `/`-separated path components that are not empty, not `.` or
/// `..`, do not start with `-` and hold no whitespace or control characters.
pub fn validate_role(role: &str) -> Result<(), AllocatorError> {
    let bad = |reason: &str| Err(AllocatorError::InvalidRole(role.into(), reason.into()));
    if role == UNRESERVED {
        return Ok(());
    }
    if role.is_empty() {
        return bad("must not be empty");
    }
    if role.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace or control characters");
    }
    for part in role.split('/') {
        match part {
            "" => return bad("path components must not be empty"),
            "." | ".." => return bad("path components must not be `.` or `..`"),
            p if p.starts_with('-') => return bad("path components must not start with `-`"),
            p if p == UNRESERVED || p.contains('*') => return bad("`*` only as a whole role"),
            _ => {}
        }
    }
    Ok(())
}

/// `role` and its ancestors, innermost first (`a/b/c`, `a/b`, `a`).
pub(crate) fn self_and_ancestors(role: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(role);
    std::iter::from_fn(move || {
        let cur = next?;
        next = cur.rfind('/').map(|i| &cur[..i]);
        Some(cur)
    })
}

/// Whether resources reserved for `owner` may be used in `role` (same role or an ancestor;
/// unreserved resources are usable by every role).
pub(crate) fn usable_in(owner: &str, role: &str) -> bool {
    owner == UNRESERVED
        || owner == role
        || (role.len() > owner.len()
            && role.starts_with(owner)
            && role.as_bytes().get(owner.len()) == Some(&b'/'))
}

/// One role node.
#[derive(Debug, Default)]
pub(crate) struct RoleNode {
    /// DRF weight, if set.
    pub weight: Option<f64>,
    /// Quota, if set.
    pub quota: Option<Quota>,
    /// Allocated scalars (reserved and unreserved) of this subtree.
    pub alloc: Qty,
    /// Allocated scalars of exactly this role.
    pub own_alloc: Qty,
    /// Holdings (framework × agent) in this subtree.
    pub count: u64,
    /// Holdings of exactly this role.
    pub own_count: u64,
    /// Unreserved allocated scalars of this subtree (quota consumption).
    pub unres_alloc: Qty,
    /// Reservations of this subtree on all agents (quota consumption).
    pub reserved: Qty,
    /// Frameworks subscribed to exactly this role.
    pub frameworks: BTreeSet<FrameworkId>,
    /// Direct children paths.
    pub children: BTreeSet<String>,
}

impl RoleNode {
    /// The weight, 1.0 by default.
    pub fn weight(&self) -> f64 {
        self.weight.unwrap_or(1.0)
    }

    /// Quota consumption of scalar `i`: reservations plus unreserved allocation.
    pub fn consumed(&self, i: usize) -> i64 {
        self.reserved.get(i) + self.unres_alloc.get(i)
    }
}

/// All roles ever mentioned, keyed by path.
#[derive(Debug, Default)]
pub(crate) struct RoleTree {
    /// Nodes by path.
    pub nodes: BTreeMap<String, RoleNode>,
}

impl RoleTree {
    /// The node of `role`, creating it and its ancestors.
    pub fn ensure(&mut self, role: &str) -> &mut RoleNode {
        if !self.nodes.contains_key(role) {
            let mut child: Option<String> = None;
            for path in self_and_ancestors(role) {
                let node = self.nodes.entry(path.to_string()).or_default();
                if let Some(c) = child.take() {
                    node.children.insert(c);
                }
                child = Some(path.to_string());
            }
        }
        self.nodes
            .get_mut(role)
            .expect("the node was inserted above when missing")
    }

    /// Applies `f` to `role` and each ancestor (creating them).
    pub fn for_path(&mut self, role: &str, mut f: impl FnMut(&mut RoleNode, bool)) {
        // One lookup per level: the role's own node is created (with its ancestors) only
        // when the first lookup misses.
        for (depth, path) in self_and_ancestors(role).enumerate() {
            match self.nodes.get_mut(path) {
                Some(n) => f(n, depth == 0),
                None if depth == 0 => f(self.ensure(role), true),
                None => {}
            }
        }
    }

    /// The node of `role`, if any.
    pub fn get(&self, role: &str) -> Option<&RoleNode> {
        self.nodes.get(role)
    }

    /// The nearest role at or above `role` with a quota that has guarantees.
    pub fn guarantee_holder<'a>(&self, role: &'a str) -> Option<&'a str> {
        self_and_ancestors(role).find(|p| {
            self.nodes
                .get(*p)
                .and_then(|n| n.quota.as_ref())
                .is_some_and(|q| !q.guarantees.is_empty())
        })
    }

    /// Roles with guarantees that have no ancestor with guarantees (the ones whose
    /// unsatisfied guarantees add up to the required headroom).
    pub fn outermost_guarantee_roles(&self) -> Vec<&str> {
        let has_guarantees =
            |n: &RoleNode| n.quota.as_ref().is_some_and(|q| !q.guarantees.is_empty());
        self.nodes
            .iter()
            .filter(|(_, n)| has_guarantees(n))
            .map(|(k, _)| k.as_str())
            .filter(|k| {
                self_and_ancestors(k)
                    .skip(1)
                    .all(|a| self.nodes.get(a).is_none_or(|n| !has_guarantees(n)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names() {
        for ok in ["*", "web", "eng/web", "a-b", "a.b", "x/y/z"] {
            assert!(validate_role(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", ".", "..", "-x", "a b", "a/", "/a", "a//b", "a/../b", "a\tb", "a/*",
        ] {
            assert!(
                matches!(validate_role(bad), Err(AllocatorError::InvalidRole(..))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ancestry() {
        let all: Vec<&str> = self_and_ancestors("a/b/c").collect();
        assert_eq!(all, ["a/b/c", "a/b", "a"]);
        assert!(usable_in("*", "x"));
        assert!(usable_in("eng", "eng/web"));
        assert!(usable_in("eng/web", "eng/web"));
        assert!(!usable_in("eng/web", "eng"));
        assert!(!usable_in("en", "eng"));
        assert!(!usable_in("ads", "eng"));
    }
}
