//! Inclusive `u64` value ranges (Mesos `Value.Ranges`), always kept normalized.
//!
//! Used for the `ports` resource and for range attributes. Normalized means sorted,
//! coalesced (adjacent and overlapping ranges merged) and non-overlapping, so equality
//! is set equality.

use crate::error::ResourceError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One inclusive range `begin..=end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Range {
    /// First value (inclusive).
    pub begin: u64,
    /// Last value (inclusive).
    pub end: u64,
}

impl Range {
    /// Creates a range; callers should ensure `begin <= end` (invalid ranges are dropped by [`Ranges::new`]).
    pub fn new(begin: u64, end: u64) -> Range {
        Range { begin, end }
    }

    /// Number of values in the range (saturating for the full `u64` span).
    pub fn count(&self) -> u64 {
        (self.end - self.begin).saturating_add(1)
    }
}

/// A normalized set of inclusive ranges. Serializes as Mesos JSON `{"range":[{"begin":..,"end":..}]}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "RangesJson", into = "RangesJson")]
pub struct Ranges(Vec<Range>);

/// Mesos JSON shape of `Value.Ranges`.
#[derive(Serialize, Deserialize)]
struct RangesJson {
    #[serde(default)]
    range: Vec<Range>,
}

impl TryFrom<RangesJson> for Ranges {
    type Error = ResourceError;

    fn try_from(j: RangesJson) -> Result<Ranges, ResourceError> {
        Ranges::checked_new(j.range)
    }
}

impl From<Ranges> for RangesJson {
    fn from(r: Ranges) -> RangesJson {
        RangesJson { range: r.0 }
    }
}

impl Ranges {
    /// Normalizes `v` (sorts and coalesces); ranges with `begin > end` are dropped.
    pub fn new(v: Vec<Range>) -> Ranges {
        let mut v: Vec<Range> = v.into_iter().filter(|r| r.begin <= r.end).collect();
        v.sort_unstable();
        let mut out: Vec<Range> = Vec::with_capacity(v.len());
        for r in v {
            match out.last_mut() {
                Some(last) if r.begin <= last.end.saturating_add(1) => {
                    last.end = last.end.max(r.end);
                }
                _ => out.push(r),
            }
        }
        Ranges(out)
    }

    /// Like [`Ranges::new`] but rejects any range with `begin > end`.
    pub fn checked_new(v: Vec<Range>) -> Result<Ranges, ResourceError> {
        if let Some(bad) = v.iter().find(|r| r.begin > r.end) {
            return Err(ResourceError::InvalidRanges {
                text: format!("{}-{}", bad.begin, bad.end),
                reason: "begin is greater than end".into(),
            });
        }
        Ok(Ranges::new(v))
    }

    /// Parses `"[31000-32000,33000-34000]"` (whitespace ignored; `"[]"` is empty; a bare `80` item means `80-80`).
    pub fn parse(s: &str) -> Result<Ranges, ResourceError> {
        let text: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let bad = |reason: &str| ResourceError::InvalidRanges {
            text: s.to_owned(),
            reason: reason.to_owned(),
        };
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .ok_or_else(|| bad("expected `[begin-end,...]`"))?;
        if inner.is_empty() {
            return Ok(Ranges::default());
        }
        let mut v = Vec::new();
        for item in inner.split(',') {
            v.push(parse_range(item).map_err(|reason| bad(&reason))?);
        }
        Ok(Ranges::new(v))
    }

    /// The normalized ranges.
    pub fn ranges(&self) -> &[Range] {
        &self.0
    }

    /// Number of values covered (saturating).
    pub fn count(&self) -> u64 {
        self.0.iter().fold(0u64, |n, r| n.saturating_add(r.count()))
    }

    /// Whether every value of `o` is in `self`.
    pub fn contains(&self, o: &Ranges) -> bool {
        o.0.iter().all(|want| {
            self.0
                .iter()
                .any(|have| have.begin <= want.begin && want.end <= have.end)
        })
    }

    /// Whether the single value `v` is in `self`.
    pub fn contains_value(&self, v: u64) -> bool {
        self.0.iter().any(|r| r.begin <= v && v <= r.end)
    }

    /// Adds all values of `o` (set union).
    pub fn add(&mut self, o: &Ranges) {
        let mut v = std::mem::take(&mut self.0);
        v.extend_from_slice(&o.0);
        *self = Ranges::new(v);
    }

    /// `self` minus `o`, or `None` unless `self` contains `o`.
    pub fn checked_sub(&self, o: &Ranges) -> Option<Ranges> {
        if !self.contains(o) {
            return None;
        }
        Some(self.difference(o))
    }

    /// Set difference `self \ o` (values of `o` not in `self` are ignored).
    pub fn difference(&self, o: &Ranges) -> Ranges {
        let mut out = Vec::new();
        for r in &self.0 {
            subtract_one(*r, &o.0, &mut out);
        }
        Ranges(out)
    }

    /// The `n` lowest values, or `None` if there are fewer than `n`.
    pub fn take_first(&self, n: u64) -> Option<Ranges> {
        let mut left = n;
        let mut out = Vec::new();
        for r in &self.0 {
            if left == 0 {
                break;
            }
            let take = r.count().min(left);
            out.push(Range::new(r.begin, r.begin + (take - 1)));
            left -= take;
        }
        (left == 0).then_some(Ranges(out))
    }

    /// All values in ascending order.
    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flat_map(|r| r.begin..=r.end)
    }

    /// Whether no value is covered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Mesos v0 `/state` form: `"[31000-32000, 33000-34000]"`.
    pub fn to_v0_string(&self) -> String {
        self.join(", ")
    }

    fn join(&self, sep: &str) -> String {
        let items: Vec<String> = self
            .0
            .iter()
            .map(|r| format!("{}-{}", r.begin, r.end))
            .collect();
        format!("[{}]", items.join(sep))
    }
}

/// Parses one `begin-end` (or bare `v`) item.
fn parse_range(item: &str) -> Result<Range, String> {
    let num = |t: &str| {
        t.parse::<u64>()
            .map_err(|_| format!("`{t}` is not a non-negative integer"))
    };
    let (begin, end) = match item.split_once('-') {
        Some((b, e)) => (num(b)?, num(e)?),
        None => {
            let v = num(item)?;
            (v, v)
        }
    };
    if begin > end {
        return Err(format!("range `{item}` has begin greater than end"));
    }
    Ok(Range::new(begin, end))
}

/// Pushes the parts of `r` not covered by the sorted, disjoint `holes` onto `out`.
fn subtract_one(r: Range, holes: &[Range], out: &mut Vec<Range>) {
    let mut cur = r.begin;
    for h in holes {
        if h.end < cur || h.begin > r.end {
            continue;
        }
        if h.begin > cur {
            out.push(Range::new(cur, h.begin - 1));
        }
        match h.end.checked_add(1) {
            Some(next) => cur = next,
            None => return,
        }
        if cur > r.end {
            return;
        }
    }
    out.push(Range::new(cur, r.end));
}

impl fmt::Display for Ranges {
    /// `"[31000-32000,33000-34000]"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.join(","))
    }
}

impl FromIterator<Range> for Ranges {
    fn from_iter<I: IntoIterator<Item = Range>>(iter: I) -> Ranges {
        Ranges::new(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(s: &str) -> Ranges {
        Ranges::parse(s).expect("valid ranges")
    }

    #[test]
    fn new_normalizes() {
        let v = Ranges::new(vec![
            Range::new(10, 20),
            Range::new(1, 5),
            Range::new(6, 8),
            Range::new(15, 30),
            Range::new(9, 3),
        ]);
        assert_eq!(v.ranges(), &[Range::new(1, 8), Range::new(10, 30)]);
        assert_eq!(v.count(), 8 + 21);
    }

    #[test]
    fn parse_good() {
        assert_eq!(
            r("[31000-32000, 33000-34000]").ranges(),
            &[Range::new(31000, 32000), Range::new(33000, 34000)]
        );
        assert_eq!(r(" [ 1-2 ,3-4 ] ").ranges(), &[Range::new(1, 4)]);
        assert!(r("[]").is_empty());
        assert_eq!(r("[80]").ranges(), &[Range::new(80, 80)]);
    }

    #[test]
    fn parse_bad() {
        for s in [
            "[5-1]", "1-2", "[1-2", "[a-b]", "[1-2,]", "[-1-2]", "[1-2-3]", "",
        ] {
            assert!(
                matches!(Ranges::parse(s), Err(ResourceError::InvalidRanges { .. })),
                "{s} should fail"
            );
        }
    }

    #[test]
    fn display_forms() {
        let v = r("[31000-32000,33000-34000]");
        assert_eq!(v.to_string(), "[31000-32000,33000-34000]");
        assert_eq!(v.to_v0_string(), "[31000-32000, 33000-34000]");
        assert_eq!(Ranges::default().to_string(), "[]");
    }

    #[test]
    fn contains_sub_add() {
        let a = r("[1-10,20-30]");
        assert!(a.contains(&r("[2-3,25-30]")));
        assert!(!a.contains(&r("[9-11]")));
        assert_eq!(a.checked_sub(&r("[9-11]")), None);
        assert_eq!(
            a.checked_sub(&r("[1-1,5-6,30-30]")),
            Some(r("[2-4,7-10,20-29]"))
        );
        assert_eq!(a.checked_sub(&a), Some(Ranges::default()));
        let mut b = r("[11-19]");
        b.add(&a);
        assert_eq!(b, r("[1-30]"));
        assert!(a.contains_value(20) && !a.contains_value(15));
    }

    #[test]
    fn take_first_and_values() {
        let a = r("[1-3,10-12]");
        assert_eq!(a.take_first(4), Some(r("[1-3,10-10]")));
        assert_eq!(a.take_first(0), Some(Ranges::default()));
        assert_eq!(a.take_first(7), None);
        assert_eq!(a.values().collect::<Vec<_>>(), vec![1, 2, 3, 10, 11, 12]);
    }

    #[test]
    fn extreme_values() {
        let full = Ranges::new(vec![Range::new(0, u64::MAX)]);
        assert_eq!(full.count(), u64::MAX);
        let top = Ranges::new(vec![Range::new(u64::MAX - 1, u64::MAX)]);
        assert_eq!(
            full.checked_sub(&top),
            Some(Ranges::new(vec![Range::new(0, u64::MAX - 2)]))
        );
    }

    #[test]
    fn json_shape() {
        let a = r("[31000-32000]");
        let j = serde_json::to_value(&a).expect("ser");
        assert_eq!(
            j,
            serde_json::json!({"range":[{"begin":31000,"end":32000}]})
        );
        let back: Ranges = serde_json::from_value(j).expect("de");
        assert_eq!(back, a);
        assert!(serde_json::from_value::<Ranges>(
            serde_json::json!({"range":[{"begin":5,"end":1}]})
        )
        .is_err());
    }

    fn arb_ranges() -> impl Strategy<Value = Ranges> {
        prop::collection::vec((0u64..200, 0u64..20), 0..6)
            .prop_map(|v| v.into_iter().map(|(b, l)| Range::new(b, b + l)).collect())
    }

    proptest! {
        #[test]
        fn add_then_sub_roundtrips(a in arb_ranges(), b in arb_ranges()) {
            let b = b.difference(&a);
            let mut sum = a.clone();
            sum.add(&b);
            prop_assert!(sum.contains(&a));
            prop_assert_eq!(sum.count(), a.count() + b.count());
            prop_assert_eq!(sum.checked_sub(&b), Some(a));
        }

        #[test]
        fn parse_display_roundtrip(a in arb_ranges()) {
            prop_assert_eq!(Ranges::parse(&a.to_string()), Ok(a.clone()));
            prop_assert_eq!(Ranges::parse(&a.to_v0_string()), Ok(a));
        }
    }
}
