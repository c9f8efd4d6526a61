//! One shared copy of values many records hold ([`Interner`]): strings such as versions and
//! host names in the services engine, resource sets of tasks in the master.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

/// A set of shared values. [`Interner::intern`] hands out the one copy of a value;
/// [`Interner::prune`] drops the copies nobody else holds any more, once the set has doubled
/// since the last prune (and holds at least the minimum given to [`Interner::new`]), so pruning
/// costs amortized O(1) per value interned.
#[derive(Debug)]
pub struct Interner<T: ?Sized> {
    set: HashSet<Arc<T>>,
    /// Size after the last prune.
    kept: usize,
    /// No pruning below this size.
    min_prune: usize,
}

impl<T: ?Sized + Eq + Hash> Interner<T> {
    /// An empty interner that is not pruned below `min_prune` values.
    pub fn new(min_prune: usize) -> Interner<T> {
        Interner {
            set: HashSet::new(),
            kept: 0,
            min_prune,
        }
    }

    /// The shared copy of `value` (made with `Arc::from` when there is none yet).
    pub fn intern(&mut self, value: &T) -> Arc<T>
    where
        for<'a> Arc<T>: From<&'a T>,
    {
        if let Some(a) = self.set.get(value) {
            return Arc::clone(a);
        }
        let a = Arc::from(value);
        self.set.insert(Arc::clone(&a));
        a
    }

    /// Drops the copies only the interner holds, once it has grown enough to make it worthwhile.
    pub fn prune(&mut self) {
        if self.set.len() >= (2 * self.kept).max(self.min_prune) {
            self.set.retain(|v| Arc::strong_count(v) > 1);
            self.kept = self.set.len();
        }
    }

    /// Number of values held (some perhaps by nobody else until the next prune).
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_prunes_what_nobody_else_holds() {
        let mut s: Interner<str> = Interner::new(16);
        let a = s.intern("v1");
        assert!(Arc::ptr_eq(&a, &s.intern("v1")));
        for n in 0..15 {
            s.intern(&format!("garbage-{n}"));
        }
        assert_eq!(s.len(), 16);
        s.prune();
        assert_eq!(s.len(), 1, "only the value still held survives");
        assert!(Arc::ptr_eq(&a, &s.intern("v1")));
        // Below twice the size kept and below the minimum: no pass over the set.
        s.intern("v2");
        s.prune();
        assert_eq!(s.len(), 2);
        assert!(!s.is_empty());
    }
}
