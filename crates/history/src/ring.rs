//! One fixed-size ring of samples at a fixed step, values stored as 16-bit brain floats
//! (`bf16`: the top half of an `f32`, ~3 significant digits — plenty for a chart, half the
//! memory of `f32`).
//!
//! Slot `s` covers `[s * step, (s + 1) * step)` seconds; the ring holds the `len` slots up to
//! its head, the newest slot written. Moving the head forward clears the slots it passes, so a
//! gap in sampling reads as missing, never as stale data.

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

/// A ring of `len` slots of `step` seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Ring {
    head: Option<i64>,
    values: Box<[u16]>,
}

impl Ring {
    /// An empty ring of `len` slots.
    pub fn new(len: usize) -> Ring {
        Ring {
            head: None,
            values: vec![MISSING; len].into_boxed_slice(),
        }
    }

    /// Its number of slots.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether it has no slots at all.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The newest slot written.
    pub fn head(&self) -> Option<i64> {
        self.head
    }

    /// Whether `slot` is within the window the ring holds.
    pub fn holds(&self, slot: i64) -> bool {
        match self.head {
            Some(h) => slot <= h && slot > h - self.len() as i64,
            None => false,
        }
    }

    fn pos(&self, slot: i64) -> usize {
        slot.rem_euclid(self.len() as i64) as usize
    }

    /// Set `slot` to `bits`, moving the head forward (and clearing the slots it passes) when
    /// `slot` is newer. A slot older than the window is ignored; returns whether it was kept.
    pub fn set_bits(&mut self, slot: i64, bits: u16) -> bool {
        if self.values.is_empty() {
            return false;
        }
        let len = self.len() as i64;
        match self.head {
            Some(h) if slot <= h - len => return false,
            Some(h) if slot > h => {
                let from = (h + 1).max(slot - len + 1);
                for s in from..slot {
                    let p = self.pos(s);
                    self.values[p] = MISSING;
                }
                self.head = Some(slot);
            }
            Some(_) => {}
            None => {
                self.head = Some(slot);
            }
        }
        let p = self.pos(slot);
        self.values[p] = bits;
        true
    }

    /// Set `slot` to `v`.
    pub fn set(&mut self, slot: i64, v: f64) -> bool {
        self.set_bits(slot, to_bf16(v as f32))
    }

    /// The stored bits of `slot` ([`MISSING`] outside the window).
    pub fn bits(&self, slot: i64) -> u16 {
        if self.holds(slot) {
            self.values[self.pos(slot)]
        } else {
            MISSING
        }
    }

    /// The value of `slot`, if sampled and still held.
    pub fn get(&self, slot: i64) -> Option<f64> {
        from_bf16(self.bits(slot)).map(f64::from)
    }

    /// Whether any held slot has a value.
    pub fn has_data(&self) -> bool {
        self.head.is_some() && self.values.iter().any(|&b| b != MISSING)
    }

    /// Bytes on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.values.len() * std::mem::size_of::<u16>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    }
}
