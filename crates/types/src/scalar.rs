//! Mesos-style fixed-point scalar amounts (milli-units, three decimals).
//!
//! Used by [`crate::Resources`] and [`crate::Attributes`] so that resource arithmetic is
//! exact: ten additions of `0.1` equal `1`.

use crate::error::ResourceError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign};

/// A non-negative fixed-point amount stored as milli-units (0.001 precision).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "f64", into = "f64")]
pub struct Scalar(i64);

impl Scalar {
    /// Zero.
    pub const ZERO: Scalar = Scalar(0);

    /// Converts a float, rounding to the nearest 0.001. NaN, infinities and negatives are errors.
    pub fn from_f64(v: f64) -> Result<Scalar, ResourceError> {
        if !v.is_finite() {
            return Err(ResourceError::NotFinite {
                what: v.to_string(),
            });
        }
        if v < 0.0 {
            return Err(ResourceError::Negative {
                what: v.to_string(),
                value: v,
            });
        }
        let milli = (v * 1000.0).round();
        // i64::MAX as f64 rounds up to 2^63, so `>=` rejects everything that cannot fit.
        if milli >= i64::MAX as f64 {
            return Err(ResourceError::TooLarge {
                what: v.to_string(),
                value: v,
            });
        }
        // In range [0, 2^63) and integral after round(): the cast is exact.
        Ok(Scalar(milli as i64))
    }

    /// Builds a scalar from milli-units; negative inputs are clamped to zero.
    pub fn from_milli(m: i64) -> Scalar {
        Scalar(m.max(0))
    }

    /// The amount in milli-units.
    pub fn milli(self) -> i64 {
        self.0
    }

    /// The amount as a float (e.g. `1.5`).
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// Subtracts, or `None` if the result would be negative.
    pub fn checked_sub(self, o: Scalar) -> Option<Scalar> {
        self.0.checked_sub(o.0).filter(|m| *m >= 0).map(Scalar)
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl Add for Scalar {
    type Output = Scalar;

    /// Adds, saturating at the maximum representable amount.
    fn add(self, o: Scalar) -> Scalar {
        Scalar(self.0.saturating_add(o.0))
    }
}

impl AddAssign for Scalar {
    fn add_assign(&mut self, o: Scalar) {
        *self = *self + o;
    }
}

impl std::iter::Sum for Scalar {
    fn sum<I: Iterator<Item = Scalar>>(iter: I) -> Scalar {
        iter.fold(Scalar::ZERO, Add::add)
    }
}

impl TryFrom<f64> for Scalar {
    type Error = ResourceError;

    fn try_from(v: f64) -> Result<Scalar, ResourceError> {
        Scalar::from_f64(v)
    }
}

impl From<Scalar> for f64 {
    fn from(s: Scalar) -> f64 {
        s.as_f64()
    }
}

impl fmt::Display for Scalar {
    /// Shortest exact form: `4`, `0.5`, `1.125`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 1000;
        let frac = self.0 % 1000;
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{frac:03}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_f64_rounds_to_milli() {
        assert_eq!(Scalar::from_f64(0.1).expect("ok").milli(), 100);
        assert_eq!(Scalar::from_f64(1.0005).expect("ok").milli(), 1001);
        assert_eq!(Scalar::from_f64(0.0004).expect("ok"), Scalar::ZERO);
        assert_eq!(Scalar::from_f64(-0.0).expect("ok"), Scalar::ZERO);
    }

    #[test]
    fn from_f64_rejects_bad_values() {
        assert!(matches!(
            Scalar::from_f64(-1.0),
            Err(ResourceError::Negative { .. })
        ));
        assert!(matches!(
            Scalar::from_f64(f64::NAN),
            Err(ResourceError::NotFinite { .. })
        ));
        assert!(matches!(
            Scalar::from_f64(f64::INFINITY),
            Err(ResourceError::NotFinite { .. })
        ));
        assert!(matches!(
            Scalar::from_f64(1e300),
            Err(ResourceError::TooLarge { .. })
        ));
    }

    #[test]
    fn display_is_shortest() {
        assert_eq!(Scalar::from_milli(4000).to_string(), "4");
        assert_eq!(Scalar::from_milli(500).to_string(), "0.5");
        assert_eq!(Scalar::from_milli(1125).to_string(), "1.125");
        assert_eq!(Scalar::from_milli(1020).to_string(), "1.02");
        assert_eq!(Scalar::from_milli(1).to_string(), "0.001");
        assert_eq!(Scalar::ZERO.to_string(), "0");
    }

    #[test]
    fn arithmetic() {
        let mut s = Scalar::ZERO;
        for _ in 0..10 {
            s += Scalar::from_f64(0.1).expect("ok");
        }
        assert_eq!(s, Scalar::from_f64(1.0).expect("ok"));
        assert_eq!(s.as_f64(), 1.0);
        assert_eq!(s.checked_sub(Scalar::from_milli(1001)), None);
        assert_eq!(s.checked_sub(s), Some(Scalar::ZERO));
        assert_eq!(Scalar::from_milli(-5), Scalar::ZERO);
        assert_eq!(
            Scalar::from_milli(i64::MAX) + Scalar::from_milli(1),
            Scalar::from_milli(i64::MAX)
        );
    }

    #[test]
    fn serde_as_number() {
        let s = Scalar::from_milli(1500);
        assert_eq!(serde_json::to_string(&s).expect("ser"), "1.5");
        let back: Scalar = serde_json::from_str("1.5").expect("de");
        assert_eq!(back, s);
        let int: Scalar = serde_json::from_str("4").expect("de int");
        assert_eq!(int.milli(), 4000);
        assert!(serde_json::from_str::<Scalar>("-1").is_err());
    }
}
