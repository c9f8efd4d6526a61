//! One fixed-size ring of samples at a fixed step, values stored as 16-bit brain floats
//! (`bf16`: the top half of an `f32`, ~3 significant digits — plenty for a chart, half the
//! memory of `f32`).
//!
//! Slot `s` covers `[s * step, (s + 1) * step)` seconds; the ring holds the `len` slots up to
//! its head, the newest slot written. Moving the head forward clears the slots it passes, so a
//! gap in sampling reads as missing, never as stale data.
//!
//! Most series change rarely: an agent's totals never, its allocations and task count when
//! tasks come and go. A ring therefore starts as *runs* — the first slot of each stretch of
//! equal values — and takes one value per slot (`2 × len` bytes) only once the runs would cost
//! more than half of that; a dense ring whose window holds few runs again goes back to runs
//! each time its head completes a lap. Both forms read the same: the form is invisible outside
//! this module.

/// The stored bits of "no sample" (a quiet NaN).
pub const MISSING: u16 = 0x7fc0;

/// `v` as a rounded bf16; NaN is [`MISSING`].
pub fn to_bf16(v: f32) -> u16 {
    if v.is_nan() {
        return MISSING;
    }
    let bits = v.to_bits();
    // Round to nearest, ties to even, on the 16 bits dropped.
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The value of bf16 bits; `None` for [`MISSING`] (any NaN).
pub fn from_bf16(b: u16) -> Option<f32> {
    let v = f32::from_bits(u32::from(b) << 16);
    (!v.is_nan()).then_some(v)
}

/// One stretch of equal values: its first slot and the value's bits. It lasts until the next
/// run's first slot, or the head.
type Run = (i64, u16);

/// How the slots are kept.
#[derive(Clone, Debug)]
enum Slots {
    /// Runs in increasing slot order; slots before the first run read as missing.
    Runs(Vec<Run>),
    /// One value per slot, slot `s` at `s mod len`.
    Dense(Box<[u16]>),
}

/// A ring of `len` slots of `step` seconds.
#[derive(Clone, Debug)]
pub struct Ring {
    head: Option<i64>,
    len: usize,
    slots: Slots,
}

impl PartialEq for Ring {
    /// Rings are equal when they hold the same window with the same values, in either form.
    fn eq(&self, other: &Ring) -> bool {
        self.len == other.len
            && self.head == other.head
            && self.window().all(|s| self.bits(s) == other.bits(s))
    }
}

impl Ring {
    /// An empty ring of `len` slots (it takes memory as values come).
    pub fn new(len: usize) -> Ring {
        Ring {
            head: None,
            len,
            slots: Slots::Runs(Vec::new()),
        }
    }

    /// Its number of slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no slots at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The newest slot written.
    pub fn head(&self) -> Option<i64> {
        self.head
    }

    /// Whether `slot` is within the window the ring holds.
    pub fn holds(&self, slot: i64) -> bool {
        match self.head {
            Some(h) => slot <= h && slot > h - self.len as i64,
            None => false,
        }
    }

    /// The slots of the window, oldest first (none before the first value).
    fn window(&self) -> std::ops::Range<i64> {
        match self.head {
            Some(h) => (h - self.len as i64 + 1)..(h + 1),
            None => 0..0,
        }
    }

    fn pos(&self, slot: i64) -> usize {
        slot.rem_euclid(self.len as i64) as usize
    }

    /// The most runs kept before the ring turns dense: runs cost 16 bytes each, a dense ring
    /// 2 bytes per slot.
    fn max_runs(&self) -> usize {
        (self.len / 16).max(2)
    }

    /// Set `slot` to `bits`, moving the head forward (and clearing the slots it passes) when
    /// `slot` is newer. A slot older than the window is ignored; returns whether it was kept.
    pub fn set_bits(&mut self, slot: i64, bits: u16) -> bool {
        if self.len == 0 {
            return false;
        }
        let len = self.len as i64;
        let mut new_lap = false;
        match self.head {
            Some(h) if slot <= h - len => return false,
            Some(h) if slot > h => {
                self.advance(h, slot);
                new_lap = slot.div_euclid(len) != h.div_euclid(len);
            }
            Some(_) => {}
            None => self.head = Some(slot),
        }
        self.write(slot, bits);
        if new_lap {
            self.compact();
        }
        true
    }

    /// Moves the head from `h` to `slot`, clearing the slots in between.
    fn advance(&mut self, h: i64, slot: i64) {
        let from = (h + 1).max(slot - self.len as i64 + 1);
        match &mut self.slots {
            Slots::Runs(runs) => {
                if from < slot {
                    push_run(runs, from, MISSING);
                }
            }
            Slots::Dense(values) => {
                let len = values.len() as i64;
                for s in from..slot {
                    values[s.rem_euclid(len) as usize] = MISSING;
                }
            }
        }
        self.head = Some(slot);
    }

    /// Stores `bits` at `slot`, which the window holds.
    fn write(&mut self, slot: i64, bits: u16) {
        let p = self.pos(slot);
        let head = self.head.unwrap_or(slot);
        let start = head - self.len as i64 + 1;
        let max = self.max_runs();
        match &mut self.slots {
            Slots::Dense(values) => values[p] = bits,
            Slots::Runs(runs) => {
                set_in_runs(runs, slot, bits, head);
                // Runs that ended before the window are of no use.
                let keep_from = runs.partition_point(|r| r.0 <= start).saturating_sub(1);
                if keep_from > 0 {
                    runs.drain(..keep_from);
                }
                let bytes = runs.capacity() * std::mem::size_of::<Run>();
                if runs.len() > max || bytes > self.max_heap_bytes() {
                    self.densify();
                }
            }
        }
    }

    /// Turns runs into one value per slot.
    fn densify(&mut self) {
        let mut values = vec![MISSING; self.len].into_boxed_slice();
        for s in self.window() {
            values[self.pos(s)] = self.bits(s);
        }
        self.slots = Slots::Dense(values);
    }

    /// Turns a dense ring whose window holds few runs back into runs.
    fn compact(&mut self) {
        if !matches!(self.slots, Slots::Dense(_)) {
            return;
        }
        let mut runs = Vec::new();
        for s in self.window() {
            let b = self.bits(s);
            if runs.last().map_or(MISSING, |r: &Run| r.1) != b {
                if runs.len() == self.max_runs() / 2 {
                    return;
                }
                runs.push((s, b));
            }
        }
        runs.shrink_to_fit();
        if runs.capacity() * std::mem::size_of::<Run>() <= self.max_heap_bytes() {
            self.slots = Slots::Runs(runs);
        }
    }

    /// Set `slot` to `v`.
    pub fn set(&mut self, slot: i64, v: f64) -> bool {
        self.set_bits(slot, to_bf16(v as f32))
    }

    /// The stored bits of `slot` ([`MISSING`] outside the window).
    pub fn bits(&self, slot: i64) -> u16 {
        if !self.holds(slot) {
            return MISSING;
        }
        match &self.slots {
            Slots::Dense(values) => values[self.pos(slot)],
            Slots::Runs(runs) => run_at(runs, slot).map_or(MISSING, |i| runs[i].1),
        }
    }

    /// The value of `slot`, if sampled and still held.
    pub fn get(&self, slot: i64) -> Option<f64> {
        from_bf16(self.bits(slot)).map(f64::from)
    }

    /// Whether any held slot has a value.
    pub fn has_data(&self) -> bool {
        let Some(h) = self.head else {
            return false;
        };
        match &self.slots {
            Slots::Dense(values) => values.iter().any(|&b| b != MISSING),
            Slots::Runs(runs) => {
                let start = h - self.len as i64 + 1;
                runs.iter().enumerate().any(|(i, r)| {
                    let end = runs.get(i + 1).map_or(h, |next| next.0 - 1);
                    r.1 != MISSING && end >= start
                })
            }
        }
    }

    /// Bytes on the heap.
    pub fn heap_bytes(&self) -> usize {
        match &self.slots {
            Slots::Dense(values) => std::mem::size_of_val(&**values),
            Slots::Runs(runs) => runs.capacity() * std::mem::size_of::<Run>(),
        }
    }

    /// Bytes on the heap at most: one value per slot.
    pub fn max_heap_bytes(&self) -> usize {
        self.len * std::mem::size_of::<u16>()
    }
}

/// The index of the run holding `slot`, if any run starts at or before it.
fn run_at(runs: &[Run], slot: i64) -> Option<usize> {
    runs.partition_point(|r| r.0 <= slot).checked_sub(1)
}

/// Appends a run from `slot` (newer than every run) unless the last one (with none, the
/// missing value before the first) has the same value.
fn push_run(runs: &mut Vec<Run>, slot: i64, bits: u16) {
    if runs.last().map_or(MISSING, |r| r.1) != bits {
        runs.push((slot, bits));
    }
}

/// Sets `slot` (at most `head`) to `bits`: splits the run holding it and merges neighbours
/// that end up equal.
fn set_in_runs(runs: &mut Vec<Run>, slot: i64, bits: u16, head: i64) {
    let at = run_at(runs, slot);
    let old = at.map_or(MISSING, |i| runs[i].1);
    if old == bits {
        return;
    }
    // The slot after keeps the old value: it needs a run of its own unless one starts there.
    let next = at.map_or(0, |i| i + 1);
    if slot < head && runs.get(next).map(|r| r.0) != Some(slot + 1) {
        runs.insert(next, (slot + 1, old));
    }
    let i = match at {
        Some(i) if runs[i].0 == slot => {
            runs[i].1 = bits;
            i
        }
        _ => {
            runs.insert(next, (slot, bits));
            next
        }
    };
    // Merge with the run after, then with the run before, when equal.
    if runs.get(i + 1).is_some_and(|r| r.1 == bits) {
        runs.remove(i + 1);
    }
    let before = if i > 0 { runs[i - 1].1 } else { MISSING };
    if before == bits {
        runs.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious ring, one value per slot, that the runs must read like.
    struct Model {
        head: Option<i64>,
        values: Vec<u16>,
    }

    impl Model {
        fn set(&mut self, slot: i64, bits: u16) -> bool {
            let len = self.values.len() as i64;
            if len == 0 {
                return false;
            }
            match self.head {
                Some(h) if slot <= h - len => return false,
                Some(h) if slot > h => {
                    for s in (h + 1).max(slot - len + 1)..slot {
                        self.values[s.rem_euclid(len) as usize] = MISSING;
                    }
                    self.head = Some(slot);
                }
                Some(_) => {}
                None => self.head = Some(slot),
            }
            self.values[slot.rem_euclid(len) as usize] = bits;
            true
        }

        fn bits(&self, slot: i64) -> u16 {
            let len = self.values.len() as i64;
            match self.head {
                Some(h) if slot <= h && slot > h - len => {
                    self.values[slot.rem_euclid(len) as usize]
                }
                _ => MISSING,
            }
        }
    }

    #[test]
    fn head_moves_and_clears_the_slots_it_passes() {
        let mut r = Ring::new(4);
        assert!(r.set(10, 1.0));
        assert!(r.set(11, 2.0));
        assert_eq!(
            (r.get(10), r.get(11), r.get(12)),
            (Some(1.0), Some(2.0), None)
        );
        // Skip 12 and 13: the slots the head passes read as missing, not as slots 8 and 9.
        assert!(r.set(14, 5.0));
        assert_eq!((r.get(12), r.get(13), r.get(14)), (None, None, Some(5.0)));
        assert_eq!(r.get(10), None, "out of the window");
        assert!(!r.set(10, 9.0), "too old to keep");
        assert!(r.set(11, 3.0), "inside the window");
        assert_eq!(r.get(11), Some(3.0));
        // A jump of more than the whole ring clears everything.
        assert!(r.set(100, 7.0));
        assert_eq!((r.get(11), r.get(14), r.get(100)), (None, None, Some(7.0)));
    }

    #[test]
    fn bf16_keeps_three_digits_and_nan_is_missing() {
        assert_eq!(from_bf16(to_bf16(f32::NAN)), None);
        assert_eq!(from_bf16(to_bf16(0.0)), Some(0.0));
        assert_eq!(from_bf16(to_bf16(1.0)), Some(1.0));
    }

    #[test]
    fn a_steady_series_stays_a_few_runs_and_a_changing_one_turns_dense_then_back() {
        let len = 2160;
        let mut r = Ring::new(len);
        for s in 0..3 * len as i64 {
            r.set(s, 4.0);
        }
        assert!(r.heap_bytes() <= 64, "{} bytes", r.heap_bytes());
        for s in 3 * len as i64..4 * len as i64 {
            r.set(s, (s % 7) as f64);
        }
        assert_eq!(r.heap_bytes(), r.max_heap_bytes());
        assert!(r.has_data());
        // A lap of steady values later the window holds one run again.
        for s in 4 * len as i64..6 * len as i64 {
            r.set(s, 4.0);
        }
        assert!(r.heap_bytes() <= 64, "{} bytes", r.heap_bytes());
        assert_eq!(r.get(6 * len as i64 - 1), Some(4.0));
    }

    #[test]
    fn a_ring_of_missing_values_has_no_data() {
        let mut r = Ring::new(8);
        r.set_bits(3, MISSING);
        assert!(!r.has_data());
        r.set(4, 1.0);
        assert!(r.has_data());
        r.set(20, f64::NAN);
        assert!(!r.has_data(), "the value left the window");
    }

    proptest! {
        #[test]
        fn bf16_relative_error_is_below_half_a_percent(v in 1e-3f32..1e9) {
            let back = from_bf16(to_bf16(v)).expect("a number");
            prop_assert!(((back - v) / v).abs() < 0.005, "{v} -> {back}");
        }

        #[test]
        fn a_ring_returns_the_last_len_slots_written(
            start in -1000i64..1000, n in 1usize..50, len in 1usize..20
        ) {
            let mut r = Ring::new(len);
            for i in 0..n {
                r.set(start + i as i64, i as f64);
            }
            let head = start + n as i64 - 1;
            for s in (start - 2)..(head + 3) {
                let expected = (s <= head && s > head - len as i64 && s >= start)
                    .then(|| (s - start) as f64);
                prop_assert_eq!(r.get(s), expected);
            }
        }

        #[test]
        fn runs_and_dense_slots_read_like_one_value_per_slot(
            len in 1usize..80,
            ops in proptest::collection::vec((-5i64..200, 0u16..4), 1..300),
        ) {
            let mut r = Ring::new(len);
            let mut m = Model { head: None, values: vec![MISSING; len] };
            for (slot, v) in ops {
                // Few distinct values, MISSING among them, so runs form and break.
                let bits = if v == 0 { MISSING } else { v };
                prop_assert_eq!(r.set_bits(slot, bits), m.set(slot, bits));
                prop_assert_eq!(r.head(), m.head);
                if let Some(h) = m.head {
                    for s in (h - len as i64 - 2)..(h + 3) {
                        prop_assert_eq!(r.bits(s), m.bits(s), "slot {}", s);
                    }
                }
                let any = m.head.is_some() && m.values.iter().any(|&b| b != MISSING);
                prop_assert_eq!(r.has_data(), any);
                prop_assert!(r.heap_bytes() <= r.max_heap_bytes());
            }
        }
    }
}
