//! Dense scalar vectors indexed by interned resource names, used for DRF shares and quota
//! accounting (fast arithmetic in the allocation loop instead of string-keyed maps).
//!
//! Used by the role tree, framework accounting and the allocation cycle.

use meseta_types::{Resources, Scalar, Value, UNRESERVED};
use std::collections::{BTreeMap, HashMap};

/// A `HashMap` keyed by short strings and ids, hashed with rustc's Fx hash: the allocation cycle
/// hashes resource names, roles and framework ids (40-byte UUIDs in a real cluster) several times
/// per grant, and Fx takes eight bytes per step where SipHash (or byte-wise FNV) is several times
/// slower. DoS resistance is not needed: the keys come from the master's own state.
pub(crate) type FastMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

/// Up to this many names, [`Names::get`] compares names in order instead of hashing.
const SCAN_NAMES: usize = 8;

/// Interned scalar resource names.
#[derive(Debug, Default)]
pub(crate) struct Names {
    list: Vec<String>,
    index: FastMap<String, usize>,
    excluded: Vec<bool>,
    excluded_names: Vec<String>,
}

impl Names {
    /// A table whose names in `excluded` do not count in DRF shares.
    pub(crate) fn new(excluded: &[String]) -> Names {
        Names {
            excluded_names: excluded.to_vec(),
            ..Names::default()
        }
    }

    /// The index of `name`, adding it if new.
    pub(crate) fn intern(&mut self, name: &str) -> usize {
        if let Some(i) = self.get(name) {
            return i;
        }
        let i = self.list.len();
        self.list.push(name.to_string());
        self.index.insert(name.to_string(), i);
        self.excluded
            .push(self.excluded_names.iter().any(|n| n == name));
        i
    }

    /// The index of `name` if known. A table of a few names (resource names, roles of most
    /// clusters) is searched in order, which is cheaper than hashing on every grant.
    pub(crate) fn get(&self, name: &str) -> Option<usize> {
        if self.list.len() <= SCAN_NAMES {
            return self.list.iter().position(|n| n == name);
        }
        self.index.get(name).copied()
    }

    /// The name at `i`.
    pub(crate) fn name(&self, i: usize) -> &str {
        self.list.get(i).map(String::as_str).unwrap_or("")
    }

    /// Whether `i` is excluded from fair sharing.
    pub(crate) fn excluded(&self, i: usize) -> bool {
        self.excluded.get(i).copied().unwrap_or(false)
    }

    /// The scalar entries of `r` as `(name index, milli, reserved?)`, interning names.
    pub(crate) fn scalars(&mut self, r: &Resources) -> Vec<(usize, i64, bool)> {
        r.iter()
            .filter_map(|e| match &e.value {
                Value::Scalar(s) => Some((self.intern(&e.name), s.milli(), e.role != UNRESERVED)),
                _ => None,
            })
            .collect()
    }

    /// A name-keyed map of a vector's non-zero entries.
    pub(crate) fn to_map(&self, q: &Qty) -> BTreeMap<String, Scalar> {
        q.0.iter()
            .enumerate()
            .filter(|(_, v)| **v > 0)
            .map(|(i, v)| (self.name(i).to_string(), Scalar::from_milli(*v)))
            .collect()
    }
}

/// Milli-unit amounts by name index; missing indices are zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Qty(pub(crate) Vec<i64>);

impl Qty {
    /// The amount at `i`.
    pub(crate) fn get(&self, i: usize) -> i64 {
        self.0.get(i).copied().unwrap_or(0)
    }

    /// Adds `v` (may be negative) at `i`.
    pub(crate) fn add(&mut self, i: usize, v: i64) {
        if self.0.len() <= i {
            self.0.resize(i + 1, 0);
        }
        self.0[i] += v;
    }

    /// Whether every entry is zero.
    pub(crate) fn is_zero(&self) -> bool {
        self.0.iter().all(|v| *v == 0)
    }

    /// Dominant share: max over non-excluded names with a positive total of self / total.
    pub(crate) fn share(&self, total: &Qty, names: &Names) -> f64 {
        let mut best = 0.0f64;
        for (i, v) in self.0.iter().enumerate() {
            let t = total.get(i);
            if t > 0 && *v > 0 && !names.excluded(i) {
                best = best.max(*v as f64 / t as f64);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_is_dominant_and_skips_excluded() {
        let mut names = Names::new(&["gpus".to_string()]);
        let r = Resources::parse("cpus:1;mem:4096;gpus:1").expect("valid");
        let t = Resources::parse("cpus:10;mem:8192;gpus:1").expect("valid");
        let (mut a, mut b) = (Qty::default(), Qty::default());
        for (i, v, _) in names.scalars(&r) {
            a.add(i, v);
        }
        for (i, v, _) in names.scalars(&t) {
            b.add(i, v);
        }
        assert_eq!(a.share(&b, &names), 0.5);
        assert!(!a.is_zero());
        assert_eq!(names.to_map(&a).len(), 3);
        assert_eq!(Qty::default().share(&b, &names), 0.0);
    }
}
