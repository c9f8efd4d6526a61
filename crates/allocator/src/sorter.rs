//! The sorters of one allocation cycle: a compact copy of the role tree restricted to roles
//! with eligible frameworks (weighted hierarchical DRF order of roles), and per role the
//! eligible frameworks in DRF order. Updated incrementally after each grant, without
//! allocating, so that re-sorting after every grant stays cheap at 10,000 agents.
//!
//! Built and used by the allocation cycle (`cycle.rs`).

use crate::qty::{Names, Qty};
use crate::roles::{self_and_ancestors, RoleTree};
use meseta_types::FrameworkId;
use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// A framework in its role's sorter.
#[derive(Clone, Debug)]
pub(crate) struct FwEntry {
    /// Dominant share in the role.
    pub share: f64,
    /// Agents it holds resources on in the role.
    pub count: u64,
    /// The framework.
    pub id: FrameworkId,
    /// The framework's place among all frameworks ordered by id: the last tie-break, compared
    /// as a number instead of two ids.
    pub rank: u32,
    /// GPU_RESOURCES capability.
    pub gpu_aware: bool,
    /// REGION_AWARE capability.
    pub region_aware: bool,
}

/// DRF order of frameworks: share, holdings, id (by its rank).
pub(crate) fn cmp_entries(a: &FwEntry, b: &FwEntry) -> Ordering {
    a.share
        .total_cmp(&b.share)
        .then(a.count.cmp(&b.count))
        .then(a.rank.cmp(&b.rank))
}

/// One role node of the cycle's sorter.
#[derive(Debug)]
pub(crate) struct SNode {
    /// Role path.
    pub name: Rc<str>,
    /// The role's index among the allocator's interned role names, if interned (every role
    /// with frameworks is: see `Allocator::build_order`).
    pub role: Option<usize>,
    /// The node's place among the cycle's nodes ordered by path (the last tie-break).
    rank: u32,
    weight: f64,
    alloc: Qty,
    count: u64,
    own_alloc: Qty,
    own_count: u64,
    /// Children; a role with frameworks and children lists itself here too (its own
    /// allocation competes as a virtual leaf among its children).
    children: Vec<usize>,
    parent: Option<usize>,
    /// Weighted subtree share (cached).
    share: f64,
    /// Weighted share of exactly this role (cached).
    own_share: f64,
    /// Eligible frameworks of exactly this role, in DRF order (empty for pure inner nodes), as
    /// indices into [`Sorter::entries`]. A ring buffer of small numbers: a grant usually moves
    /// the first framework to the end (its share is now the largest), which moves no other.
    pub fws: VecDeque<u32>,
}

/// The role sorter of one cycle.
#[derive(Debug, Default)]
pub(crate) struct Sorter {
    /// Nodes (roles with eligible frameworks and their ancestors).
    pub nodes: Vec<SNode>,
    tops: Vec<usize>,
    /// Leaf node indices in DRF order.
    pub order: Vec<usize>,
    /// The frameworks of every node's list (a list moves indices, never entries: an entry
    /// moved whole went through the stack piecewise, and reading it back cost more than the
    /// rest of the grant's bookkeeping).
    pub entries: Vec<FwEntry>,
}

impl Sorter {
    /// Builds the sorter over the roles of `fws` (role → eligible frameworks, unsorted).
    pub fn new(
        tree: &RoleTree,
        fws: HashMap<String, Vec<FwEntry>>,
        total: &Qty,
        names: &Names,
        role_names: &Names,
    ) -> Sorter {
        let mut s = Sorter::default();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut roles: Vec<(String, Vec<FwEntry>)> = fws.into_iter().collect();
        roles.sort_by(|a, b| a.0.cmp(&b.0));
        for (role, mut list) in roles {
            list.sort_by(cmp_entries);
            let mut child: Option<usize> = None;
            let paths: Vec<&str> = self_and_ancestors(&role).collect();
            for path in paths {
                let (i, existed) = match index.get(path) {
                    Some(&i) => (i, true),
                    None => {
                        let i = s.add_node(tree, path, role_names.get(path));
                        index.insert(path.to_string(), i);
                        (i, false)
                    }
                };
                if let Some(c) = child {
                    s.nodes[c].parent = Some(i);
                    if !s.nodes[i].children.contains(&c) {
                        s.nodes[i].children.push(c);
                    }
                }
                if path == role {
                    let first = s.entries.len();
                    s.entries.append(&mut list);
                    let ids = first..s.entries.len();
                    s.nodes[i].fws = ids.filter_map(|e| u32::try_from(e).ok()).collect();
                }
                child = Some(i);
                if existed && path != role {
                    break;
                }
            }
            if let Some(top) = child.filter(|&c| s.nodes[c].parent.is_none()) {
                if !s.tops.contains(&top) {
                    s.tops.push(top);
                }
            }
        }
        let mut by_name: Vec<usize> = (0..s.nodes.len()).collect();
        by_name.sort_by(|&a, &b| s.nodes[a].name.cmp(&s.nodes[b].name));
        for (rank, i) in by_name.into_iter().enumerate() {
            s.nodes[i].rank = u32::try_from(rank).unwrap_or(u32::MAX);
        }
        for i in 0..s.nodes.len() {
            if !s.nodes[i].fws.is_empty() && !s.nodes[i].children.is_empty() {
                s.nodes[i].children.push(i);
            }
            s.rekey(i, total, names);
        }
        s.sort();
        s
    }

    fn rekey(&mut self, i: usize, total: &Qty, names: &Names) {
        let n = &mut self.nodes[i];
        n.share = n.alloc.share(total, names) / n.weight;
        n.own_share = n.own_alloc.share(total, names) / n.weight;
    }

    fn add_node(&mut self, tree: &RoleTree, path: &str, role: Option<usize>) -> usize {
        let src = tree.get(path);
        self.nodes.push(SNode {
            name: Rc::from(path),
            role,
            rank: 0,
            weight: src.map_or(1.0, |n| n.weight()),
            alloc: src.map(|n| n.alloc.clone()).unwrap_or_default(),
            count: src.map_or(0, |n| n.count),
            own_alloc: src.map(|n| n.own_alloc.clone()).unwrap_or_default(),
            own_count: src.map_or(0, |n| n.own_count),
            children: Vec::new(),
            parent: None,
            share: 0.0,
            own_share: 0.0,
            fws: VecDeque::new(),
        });
        self.nodes.len() - 1
    }

    /// Follows a grant to a framework of `node`: adds `scalars` to the allocation of `node` and
    /// its ancestors (and to `node`'s own), `new_holding` to their holding counts, and
    /// recomputes their cached shares. The role tree got the same change
    /// (`Allocator::count_scalars`), so the two stay equal without looking the tree up.
    pub fn charge(
        &mut self,
        node: usize,
        scalars: impl Iterator<Item = (usize, i64, bool)> + Clone,
        new_holding: bool,
        total: &Qty,
        names: &Names,
    ) {
        let holdings = u64::from(new_holding);
        let mut cur = Some(node);
        while let Some(i) = cur {
            let n = &mut self.nodes[i];
            for (r, v, _) in scalars.clone() {
                n.alloc.add(r, v);
                if i == node {
                    n.own_alloc.add(r, v);
                }
            }
            n.count = n.count.saturating_add(holdings);
            if i == node {
                n.own_count = n.own_count.saturating_add(holdings);
            }
            cur = n.parent;
            self.rekey(i, total, names);
        }
    }

    /// Whether the counters of `node` and its ancestors equal the role tree's (the check behind
    /// [`Sorter::charge`], asserted by debug builds after every grant).
    pub fn agrees_with(&self, tree: &RoleTree, node: usize) -> bool {
        let same = |a: &Qty, b: &Qty| (0..a.0.len().max(b.0.len())).all(|i| a.get(i) == b.get(i));
        let mut cur = Some(node);
        while let Some(i) = cur {
            let n = &self.nodes[i];
            let Some(src) = tree.get(&n.name) else {
                return false;
            };
            if !same(&n.alloc, &src.alloc)
                || !same(&n.own_alloc, &src.own_alloc)
                || n.count != src.count
                || n.own_count != src.own_count
            {
                return false;
            }
            cur = n.parent;
        }
        true
    }

    /// Sort key of entry `c` in the child list of `parent` (`c == parent`: its virtual leaf).
    fn key(&self, c: usize, parent: Option<usize>) -> (f64, u64, u32, bool) {
        let n = &self.nodes[c];
        if Some(c) == parent {
            (n.own_share, n.own_count, n.rank, true)
        } else {
            (n.share, n.count, n.rank, n.children.is_empty())
        }
    }

    fn sort_list(&self, list: &mut [usize], parent: Option<usize>) {
        // Tiny lists: insertion sort, no allocation.
        for i in 1..list.len() {
            let mut j = i;
            while j > 0 && self.before(list[j], list[j - 1], parent) {
                list.swap(j, j - 1);
                j -= 1;
            }
        }
    }

    fn before(&self, a: usize, b: usize, parent: Option<usize>) -> bool {
        let (ka, kb) = (self.key(a, parent), self.key(b, parent));
        ka.0.total_cmp(&kb.0)
            .then(ka.1.cmp(&kb.1))
            .then(ka.2.cmp(&kb.2))
            .then(kb.3.cmp(&ka.3))
            == Ordering::Less
    }

    /// Recomputes the DRF order of leaves from the cached shares.
    pub fn sort(&mut self) {
        let mut tops = std::mem::take(&mut self.tops);
        self.sort_list(&mut tops, None);
        self.tops = tops;
        for i in 0..self.nodes.len() {
            if self.nodes[i].children.len() > 1 {
                let mut kids = std::mem::take(&mut self.nodes[i].children);
                self.sort_list(&mut kids, Some(i));
                self.nodes[i].children = kids;
            }
        }
        let mut out = std::mem::take(&mut self.order);
        out.clear();
        self.emit(&self.tops, None, &mut out);
        self.order = out;
    }

    fn emit(&self, list: &[usize], parent: Option<usize>, out: &mut Vec<usize>) {
        for &c in list {
            let n = &self.nodes[c];
            if Some(c) == parent || n.children.is_empty() {
                if !n.fws.is_empty() {
                    out.push(c);
                }
            } else {
                self.emit(&n.children, Some(c), out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> FwEntry {
        FwEntry {
            share: 0.0,
            count: 0,
            id: FrameworkId::new(id),
            rank: 0,
            gpu_aware: false,
            region_aware: false,
        }
    }

    fn leaves(s: &Sorter) -> Vec<String> {
        s.order
            .iter()
            .map(|&i| s.nodes[i].name.to_string())
            .collect()
    }

    #[test]
    fn hierarchical_order_compares_subtrees() {
        let mut names = Names::new(&[]);
        let cpus = names.intern("cpus");
        let mut total = Qty::default();
        total.add(cpus, 100_000);
        let mut tree = RoleTree::default();
        let mut fws = HashMap::new();
        for (role, fw, alloc) in [
            ("eng/web", "f1", 10),
            ("eng/db", "f2", 30),
            ("ads", "f3", 35),
        ] {
            fws.insert(role.to_string(), vec![entry(fw)]);
            tree.for_path(role, |n, own| {
                n.alloc.add(cpus, alloc * 1000);
                if own {
                    n.own_alloc.add(cpus, alloc * 1000);
                }
            });
        }
        let mut fws2 = fws.clone();
        fws2.insert("eng".to_string(), vec![entry("f4")]);
        // eng (40) competes against ads (35) as a whole.
        let s = Sorter::new(&tree, fws.clone(), &total, &names, &names);
        assert_eq!(leaves(&s), ["ads", "eng/web", "eng/db"]);
        tree.ensure("eng").weight = Some(2.0);
        let s = Sorter::new(&tree, fws, &total, &names, &names);
        assert_eq!(leaves(&s), ["eng/web", "eng/db", "ads"]);
        // A role with frameworks and children competes as a virtual leaf among them.
        let mut s = Sorter::new(&tree, fws2, &total, &names, &names);
        assert_eq!(leaves(&s), ["eng", "eng/web", "eng/db", "ads"]);
        // After a grant, charge + sort reflects the new counters.
        tree.for_path("eng", |n, own| {
            n.alloc.add(cpus, 50_000);
            if own {
                n.own_alloc.add(cpus, 50_000);
            }
        });
        let eng = s
            .nodes
            .iter()
            .position(|n| &*n.name == "eng")
            .expect("eng node");
        let mut grant = Qty::default();
        grant.add(cpus, 50_000);
        let scalars = grant.0.iter().enumerate().map(|(i, v)| (i, *v, false));
        s.charge(eng, scalars, true, &total, &names);
        s.sort();
        // eng's own leaf: 50/100 ÷ weight 2 = 0.25, between eng/web (0.1) and eng/db (0.3).
        assert_eq!(leaves(&s), ["ads", "eng/web", "eng", "eng/db"]);
    }
}
